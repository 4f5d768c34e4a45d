//! Waiting for another ccsync process is bounded: a process that holds the local clone (a
//! session-end hook still pushing, the daemon) never makes the session-start hook or `resume`
//! wait longer than their bounds, and they say who it is. The session-end worker holds nothing
//! while it waits for Claude Code to exit.

mod common;

use std::fs::File;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// How long a test lets a command run before calling it hung.
const HUNG: Duration = Duration::from_secs(30);
const WHAT: &str = "the session-end hook pushing session 0f0f0f0f after Claude Code exited";

fn machine(w: &World, name: &str) -> Machine {
    let m = w.machine(name);
    m.init(&w.path().join("sync.git"), &["--sync-dir", "~"]);
    m.fake_claude();
    m
}

/// Hold `m`'s clone lock as another ccsync process would, saying what it does.
fn hold_clone(m: &Machine) -> File {
    let path = m.tool.join("repo.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.try_lock().expect("the clone lock is free");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Who holds it is written beside the lock (on Windows a locked file cannot be read).
    std::fs::write(
        m.tool.join("repo.lock.holder"),
        format!("{} {since} {WHAT}\n", std::process::id()),
    )
    .unwrap();
    f
}

fn set_config(m: &Machine, key: &str, value: serde_json::Value) {
    let mut cfg = m.config();
    cfg[key] = value;
    std::fs::write(
        m.tool.join("config.json"),
        serde_json::to_vec_pretty(&cfg).unwrap(),
    )
    .unwrap();
}

fn spawn(mut c: Command, input: Option<&str>) -> Child {
    let mut child = c
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(i) = input {
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    }
    child
}

/// Wait for a child (bounded), returning its output and how long it ran since `start`.
fn finish(mut child: Child, start: Instant, what: &str) -> (Output, Duration) {
    loop {
        if child.try_wait().unwrap().is_some() {
            let took = start.elapsed();
            return (child.wait_with_output().unwrap(), took);
        }
        if start.elapsed() > HUNG {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`ccsync {what}` was still running after {} s",
                HUNG.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait (bounded, polling) until `cond` holds.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < HUNG, "{what}: not within {HUNG:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn session(m: &Machine, sid: &str) -> String {
    let cwd = format!("{}/work", m.home.display());
    std::fs::create_dir_all(&cwd).unwrap();
    m.write_transcript(&cwd, sid, conversation(sid, &cwd, "/", 2, 1).as_bytes());
    cwd
}

#[test]
fn the_start_hook_does_not_queue_behind_a_process_holding_the_clone() {
    let w = World::new();
    let m = machine(&w, "a");
    set_config(&m, "hook_timeout_secs", 1.into());
    let sid = "b0000000-0000-4000-8000-000000000001";
    let cwd = session(&m, sid);
    m.ok(&["push"]);
    let held = hold_clone(&m);
    let input = serde_json::json!({"session_id": sid, "cwd": cwd, "hook_event_name": "SessionStart", "source": "resume", "transcript_path": ""}).to_string();
    let mut c = m.cmd();
    c.args(["hook", "session-start"]);
    let start = Instant::now();
    let (out, took) = finish(spawn(c, Some(&input)), start, "hook session-start");
    drop(held);
    eprintln!(
        "the start hook behind a held clone ended in {} ms",
        took.as_millis()
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    let msg = v["systemMessage"].as_str().unwrap_or_default();
    eprintln!("{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id()))
            && msg.contains(WHAT)
            && msg.contains("is using the local clone")
            && msg.contains("not locked"),
        "{msg}"
    );
    assert!(
        repo_file(&w.path().join("sync.git"), &format!("locks/{sid}.json")).is_none(),
        "no lock taken"
    );
}

#[test]
fn resume_waits_a_bounded_time_for_the_clone_then_resumes_what_is_local() {
    let w = World::new();
    let m = machine(&w, "a");
    set_config(&m, "pull_timeout_secs", 1.into());
    let sid = "b0000000-0000-4000-8000-000000000002";
    session(&m, sid);
    m.ok(&["push"]);
    let held = hold_clone(&m);
    let mut c = m.cmd();
    c.args(["resume", sid]);
    let start = Instant::now();
    let child = spawn(c, None);
    // Claude Code starts although the clone is held; once it runs, the holder finishes.
    wait_for("Claude Code's start", || {
        m.claude_log().iter().any(|l| l.starts_with("start"))
    });
    let started = start.elapsed();
    drop(held);
    let (out, _) = finish(child, start, "resume");
    let err = stderr(&out);
    eprintln!("{err}");
    eprintln!(
        "resume behind a held clone started Claude Code after {} ms",
        started.as_millis()
    );
    assert!(out.status.success(), "{err}");
    assert!(started < Duration::from_secs(10), "took {started:?}");
    assert!(
        err.contains(&format!("pid {}", std::process::id()))
            && err.contains(WHAT)
            && err.contains("resuming from what is on this machine"),
        "{err}"
    );
    assert!(
        m.claude_log()
            .iter()
            .any(|l| l.contains(&format!("--resume {sid}")))
    );
    // After Claude Code, the clone was free again: the session was pushed.
    assert!(err.contains("Pushed"), "{err}");
}

#[test]
fn resume_of_a_session_only_in_the_repository_fails_at_once_when_the_clone_is_busy() {
    let w = World::new();
    let a = machine(&w, "a");
    let b = machine(&w, "b");
    set_config(&a, "pull_timeout_secs", 1.into());
    let sid = "b0000000-0000-4000-8000-000000000003";
    session(&b, sid);
    b.ok(&["push"]);
    let held = hold_clone(&a);
    let mut c = a.cmd();
    c.args(["resume", sid]);
    let start = Instant::now();
    let (out, took) = finish(spawn(c, None), start, "resume");
    drop(held);
    let err = stderr(&out);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ")
            && last.contains(&format!("pid {}", std::process::id()))
            && last.contains(&format!("run `ccsync resume {sid}` again when it is done")),
        "{err}"
    );
    assert!(a.claude_log().is_empty(), "Claude Code did not start");
}

#[test]
fn the_session_end_worker_holds_nothing_while_it_waits_for_claude_code() {
    let w = World::new();
    let m = machine(&w, "a");
    let remote = w.path().join("sync.git");
    let sid = "b0000000-0000-4000-8000-000000000004";
    let cwd = session(&m, sid);
    // A running "Claude Code" for the session, as Claude Code registers it.
    let mut claude = Command::new("sleep").arg("600").spawn().unwrap();
    let sessions = m.claude.join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    std::fs::write(
        sessions.join(format!("{}.json", claude.id())),
        format!(r#"{{"pid":{},"sessionId":"{sid}"}}"#, claude.id()),
    )
    .unwrap();
    let input = serde_json::json!({"session_id": sid, "cwd": cwd, "hook_event_name": "SessionStart", "source": "resume", "transcript_path": ""}).to_string();
    let mut c = m.cmd();
    c.args(["hook", "session-start"]);
    let (out, _) = finish(spawn(c, Some(&input)), Instant::now(), "hook session-start");
    assert!(out.status.success());
    assert!(repo_file(&remote, &format!("locks/{sid}.json")).is_some());
    let mut c = m.cmd();
    c.args(["hook", "session-end"]);
    let (out, _) = finish(spawn(c, Some(&input)), Instant::now(), "hook session-end");
    assert!(out.status.success());
    let log = || std::fs::read_to_string(m.tool.join("logs/hooks.log")).unwrap_or_default();
    wait_for("the worker waiting for Claude Code", || {
        log().contains(&format!(
            "session-end {sid}: waiting for Claude Code (pid {}) to exit",
            claude.id()
        ))
    });
    // Meanwhile the clone is free: other commands run at once.
    let f = File::open(m.tool.join("repo.lock")).unwrap();
    assert!(f.try_lock().is_ok(), "the worker holds the clone lock");
    drop(f);
    let start = Instant::now();
    m.ok(&["pull"]);
    assert!(start.elapsed() < Duration::from_secs(10));
    // Another resume (or update) leaves the run to its worker.
    let o = m.run(&["update"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("earlier run"),
        "not finished twice: {}",
        stderr(&o)
    );
    // Claude Code exits: the worker pushes and releases.
    let _ = claude.kill();
    let _ = claude.wait();
    wait_for("the worker's push", || {
        log().contains(&format!("session-end {sid}: pushed"))
    });
    assert!(repo_file(&remote, &format!("locks/{sid}.json")).is_none());
    assert!(
        std::fs::read_dir(m.tool.join("state/held"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "the record is gone"
    );
}

/// A "Claude Code" process for session `sid`, registered as Claude Code registers it.
fn fake_claude_process(m: &Machine, sid: &str) -> Child {
    let child = Command::new("sleep").arg("600").spawn().unwrap();
    let sessions = m.claude.join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    std::fs::write(
        sessions.join(format!("{}.json", child.id())),
        format!(r#"{{"pid":{},"sessionId":"{sid}"}}"#, child.id()),
    )
    .unwrap();
    child
}

#[test]
fn the_session_end_worker_leaves_the_lock_of_a_run_that_started_again() {
    let w = World::new();
    let m = machine(&w, "a");
    let remote = w.path().join("sync.git");
    let sid = "b0000000-0000-4000-8000-000000000005";
    let cwd = session(&m, sid);
    let mut first = fake_claude_process(&m, sid);
    let input = serde_json::json!({"session_id": sid, "cwd": cwd, "hook_event_name": "SessionStart", "source": "resume", "transcript_path": ""}).to_string();
    for hook in ["session-start", "session-end"] {
        let mut c = m.cmd();
        c.args(["hook", hook]);
        let (out, _) = finish(spawn(c, Some(&input)), Instant::now(), hook);
        assert!(out.status.success());
    }
    let log = || std::fs::read_to_string(m.tool.join("logs/hooks.log")).unwrap_or_default();
    wait_for("the worker waiting for Claude Code", || {
        log().contains(&format!("session-end {sid}: waiting for Claude Code"))
    });
    // The session is opened again before the first run's worker got to release its lock.
    let mut second = fake_claude_process(&m, sid);
    let _ = first.kill();
    let _ = first.wait();
    wait_for("the worker's push", || {
        log().contains(&format!("session-end {sid}: pushed"))
    });
    let _ = second.kill();
    let _ = second.wait();
    assert!(
        log().contains(&format!(
            "the lock is kept: Claude Code (pid {}) has the session open again",
            second.id()
        )),
        "{}",
        log()
    );
    assert!(
        repo_file(&remote, &format!("locks/{sid}.json")).is_some(),
        "the new run's lock stays"
    );
}

#[test]
fn the_start_hook_ends_at_its_bound_even_when_local_work_hangs() {
    let w = World::new();
    let m = machine(&w, "a");
    set_config(&m, "hook_timeout_secs", 1.into());
    let sid = "b0000000-0000-4000-8000-000000000006";
    let cwd = session(&m, sid);
    m.ok(&["push"]);
    // Local git commands that read the clone hang (a slow disk, a huge transcript): nothing
    // bounds them but the hook's own bound.
    let pids = w.path().join("hung-git-pids");
    let git = m.script(
        "slow-git",
        &format!(
            "case \" $* \" in *\" cat-file \"*|*\" ls-tree \"*) echo $$ >> '{}'; exec sleep 600;; esac\nexec git \"$@\"\n",
            pids.display()
        ),
    );
    let input = serde_json::json!({"session_id": sid, "cwd": cwd, "hook_event_name": "SessionStart", "source": "resume", "transcript_path": ""}).to_string();
    let mut c = m.cmd();
    c.env("CCSYNC_GIT", &git).args(["hook", "session-start"]);
    let start = Instant::now();
    let (out, took) = finish(spawn(c, Some(&input)), start, "hook session-start");
    let hung: Vec<String> = std::fs::read_to_string(&pids)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    for p in &hung {
        let _ = Command::new("kill").args(["-KILL", p]).status();
    }
    eprintln!(
        "the start hook with hung local git ended in {} ms",
        took.as_millis()
    );
    assert!(!hung.is_empty(), "local git was reached");
    assert_eq!(out.status.code(), Some(0));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    let msg = v["systemMessage"].as_str().unwrap_or_default();
    assert!(
        msg.contains("did not finish syncing this session within the 1 s")
            && msg.contains("hook_timeout_secs"),
        "{msg}"
    );
    assert!(
        std::fs::read_to_string(m.tool.join("logs/hooks.log"))
            .unwrap_or_default()
            .contains("stopped after 1 s"),
    );
}
