//! A remote that never answers: an ssh transport that accepts and stays silent. Every command
//! ends within its bound, says so in one sentence, and leaves no git or ssh behind. And a slow
//! link: a transfer that keeps moving may take longer than `network_timeout_secs` (which bounds
//! silence, not the whole transfer); one that stalls midway is stopped after that much silence;
//! and no error shows git's progress.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SILENT: &str = "ssh://silent.invalid/repo.git";
/// How long a test lets a command run before calling it hung.
const HUNG: Duration = Duration::from_secs(30);

/// A machine set up on a local remote, then pointed at a silent ssh remote, with a fake `ssh`
/// that records its pid and then sleeps without a word.
fn silent_machine(w: &World, timeout_secs: Option<u64>) -> (Machine, PathBuf) {
    let m = w.machine("a");
    m.init(&w.path().join("sync.git"), &["--sync-dir", "~"]);
    let pids = w.path().join("ssh-pids");
    m.script(
        "silent-ssh",
        &format!("echo $$ >> '{}'\nexec sleep 600\n", pids.display()),
    );
    let cfg_path = m.tool.join("config.json");
    let mut cfg = m.config();
    cfg["remote"] = SILENT.into();
    if let Some(t) = timeout_secs {
        cfg["network_timeout_secs"] = t.into();
    }
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    (m, pids)
}

fn silent_cmd(m: &Machine) -> Command {
    let mut c = m.cmd();
    c.env("GIT_SSH_COMMAND", m.bin.join("silent-ssh"));
    c
}

/// Run to the end, or kill it after `limit` and fail.
fn run_bounded(c: Command, limit: Duration, what: &str) -> (Output, Duration) {
    run_bounded_with(c, None, limit, what)
}

/// [`run_bounded`], with `input` on stdin.
fn run_bounded_with(
    mut c: Command,
    input: Option<&str>,
    limit: Duration,
    what: &str,
) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = c
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    if let Some(i) = input {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(i.as_bytes()).unwrap();
    }
    loop {
        if child.try_wait().unwrap().is_some() {
            let took = start.elapsed();
            return (child.wait_with_output().unwrap(), took);
        }
        if start.elapsed() > limit {
            kill_group(&child);
            let _ = child.wait();
            panic!(
                "`ccsync {what}` was still running after {} s",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_group(child: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
}

/// Whether a process runs (a zombie does not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

fn ssh_pids(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Every fake ssh started is gone within a couple of seconds.
fn assert_no_ssh_left(file: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = ssh_pids(file).into_iter().filter(|p| running(*p)).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for p in &left {
                let _ = Command::new("kill")
                    .args(["-KILL", &p.to_string()])
                    .status();
            }
            panic!("ssh processes left behind: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

use std::os::unix::process::CommandExt as _;

#[test]
fn every_network_command_ends_within_its_bound_on_a_silent_remote() {
    let w = World::new();
    let (m, pids) = silent_machine(&w, Some(2));
    let cwd = format!("{}/work", m.home.display());
    m.write_transcript(
        &cwd,
        "a1100000-0000-4000-8000-000000000001",
        conversation("a1100000-0000-4000-8000-000000000001", &cwd, "/", 2, 1).as_bytes(),
    );
    for args in [
        &["push"][..],
        &["pull"],
        &["sync"],
        &["update"],
        &["daemon", "--once"],
    ] {
        let mut c = silent_cmd(&m);
        c.args(args);
        let what = args.join(" ");
        let (out, took) = run_bounded(c, HUNG, &what);
        let err = stderr(&out);
        eprintln!("{what}: {}", err.trim());
        eprintln!("`ccsync {what}` ended in {} ms", took.as_millis());
        if args[0] != "daemon" {
            assert!(!out.status.success(), "{what}: {err}");
        }
        let said = if args[0] == "daemon" {
            std::fs::read_to_string(m.tool.join("state/daemon.json")).unwrap_or_default() + &err
        } else {
            err.clone()
        };
        assert!(
            said.contains(SILENT) && said.contains("2 s") && said.contains("network_timeout_secs"),
            "{what}: {said}"
        );
        assert!(took < Duration::from_secs(20), "{what} took {took:?}");
        assert_no_ssh_left(&pids);
    }
}

#[test]
fn the_daemon_stops_at_once_on_sigterm_while_git_hangs() {
    let w = World::new();
    // A long bound: only the signal can end the hung fetch in time.
    let (m, pids) = silent_machine(&w, Some(600));
    let mut c = silent_cmd(&m);
    let start = Instant::now();
    let mut child = c
        .args(["daemon", "--interval", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // Wait until git is hanging in the fake ssh.
    while ssh_pids(&pids).is_empty() {
        if start.elapsed() > HUNG {
            kill_group(&child);
            let _ = child.wait();
            panic!("the daemon never reached the remote");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let asked = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if asked.elapsed() > HUNG {
            kill_group(&child);
            let _ = child.wait();
            panic!("the daemon ignored SIGTERM for {} s", HUNG.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = asked.elapsed();
    eprintln!("the daemon stopped {} ms after SIGTERM", took.as_millis());
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(!m.tool.join("daemon.pid").exists());
    assert_no_ssh_left(&pids);
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

fn hook_input(sid: &str, cwd: &str, source: &str) -> String {
    serde_json::json!({
        "session_id": sid, "cwd": cwd, "hook_event_name": "SessionStart",
        "source": source, "transcript_path": "", "reason": "exit",
    })
    .to_string()
}

fn hooks_log(m: &Machine) -> String {
    std::fs::read_to_string(m.tool.join("logs/hooks.log")).unwrap_or_default()
}

/// Wait (bounded, polling) until `cond` holds.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_session_start_hook_ends_within_its_bound_with_a_message_on_a_silent_remote() {
    let w = World::new();
    // A network bound far beyond the hook's: only the hook's own bound can end it in time.
    let (m, pids) = silent_machine(&w, Some(600));
    set_config(&m, "hook_timeout_secs", 2.into());
    let cwd = format!("{}/work", m.home.display());
    let sid = "a1100000-0000-4000-8000-000000000002";
    m.write_transcript(&cwd, sid, conversation(sid, &cwd, "/", 2, 1).as_bytes());
    for source in ["resume", "startup"] {
        let mut c = silent_cmd(&m);
        c.args(["hook", "session-start"]);
        let input = hook_input(sid, &cwd, source);
        let (out, took) = run_bounded_with(c, Some(&input), HUNG, "hook session-start");
        eprintln!(
            "session-start ({source}) on a silent remote ended in {} ms",
            took.as_millis()
        );
        assert_eq!(out.status.code(), Some(0), "a hook never fails Claude Code");
        assert!(took < Duration::from_secs(10), "{source}: took {took:?}");
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim())
            .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
        let msg = v["systemMessage"].as_str().unwrap_or_default();
        eprintln!("{source}: {msg}");
        assert!(
            msg.contains(SILENT)
                && msg.contains("did not answer within the 2 s")
                && msg.contains("hook_timeout_secs")
                && msg.contains("not locked"),
            "{source}: {msg}"
        );
        assert_eq!(
            msg.contains("newer turns from other machines were not brought"),
            source == "resume",
            "{msg}"
        );
        assert_no_ssh_left(&pids);
    }
    assert!(hooks_log(&m).contains("locked=false"), "{}", hooks_log(&m));
}

#[test]
fn the_session_end_worker_ends_within_its_bound_and_releases_everything_on_a_silent_remote() {
    let w = World::new();
    let (m, pids) = silent_machine(&w, Some(1));
    let cwd = format!("{}/work", m.home.display());
    let sid = "a1100000-0000-4000-8000-000000000003";
    m.write_transcript(&cwd, sid, conversation(sid, &cwd, "/", 2, 1).as_bytes());
    let input = w.path().join("end-input.json");
    std::fs::write(&input, hook_input(sid, &cwd, "resume")).unwrap();
    // As Claude Code runs it: the hook's parent (here a shell, standing for Claude Code) exits
    // right after it.
    let mut c = silent_cmd(&m);
    c.env_remove("CCSYNC_HOME");
    let mut sh = Command::new("sh");
    sh.envs(c.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .env("CCSYNC_HOME", &m.tool)
        .arg("-c")
        .arg("\"$0\" hook session-end < \"$1\"")
        .arg(bin_path())
        .arg(&input);
    let start = Instant::now();
    let (out, _) = run_bounded(sh, HUNG, "hook session-end");
    assert_eq!(out.status.code(), Some(0));
    let done = format!("session-end {sid}: push failed");
    wait_for(HUNG, "the worker's end", || hooks_log(&m).contains(&done));
    // The worker named itself beside the clone's lock file; it is gone, and so is every lock.
    let lock_file = std::fs::read_to_string(m.tool.join("repo.lock.holder")).unwrap();
    assert!(
        lock_file.contains("the session-end hook pushing session"),
        "{lock_file}"
    );
    let worker: u32 = lock_file.split(' ').next().unwrap().parse().unwrap();
    wait_for(Duration::from_secs(10), "the worker's exit", || {
        !running(worker)
    });
    let took = start.elapsed();
    eprintln!(
        "the session-end worker on a silent remote ended {} ms after the hook started",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let log = hooks_log(&m);
    assert!(
        log.contains(SILENT) && log.contains("did not answer within 1 s"),
        "{log}"
    );
    let f = std::fs::File::open(m.tool.join("repo.lock")).unwrap();
    assert!(f.try_lock().is_ok(), "the clone lock is free");
    assert_no_ssh_left(&pids);
    // What it could not do is left for `ccsync update`: the stashed input is gone.
    assert!(
        std::fs::read_dir(m.tool.join("state/hook-inputs"))
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    );
}

#[test]
fn resume_ends_within_its_bound_on_a_silent_remote() {
    let w = World::new();
    let (m, pids) = silent_machine(&w, Some(2));
    m.fake_claude();
    let cwd = format!("{}/work", m.home.display());
    std::fs::create_dir_all(&cwd).unwrap();
    let sid = "a1100000-0000-4000-8000-000000000004";
    m.write_transcript(&cwd, sid, conversation(sid, &cwd, "/", 2, 1).as_bytes());
    let mut c = silent_cmd(&m);
    c.args(["resume", sid]);
    let (out, took) = run_bounded(c, HUNG, "resume");
    let err = stderr(&out);
    eprintln!("resume: {}", err.trim());
    eprintln!(
        "`ccsync resume ID` on a silent remote ended in {} ms",
        took.as_millis()
    );
    assert!(out.status.success(), "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        m.claude_log()
            .iter()
            .any(|l| l.contains(&format!("--resume {sid}"))),
        "Claude Code ran on what is local"
    );
    assert!(
        err.contains("could not pull") && err.contains("could not push"),
        "{err}"
    );
    assert!(err.contains("ccsync update"), "{err}");
    assert_no_ssh_left(&pids);
}

#[test]
fn a_push_to_an_unreachable_remote_says_so_once() {
    let w = World::new();
    let (m, pids) = silent_machine(&w, Some(2));
    let cwd = format!("{}/work", m.home.display());
    let sid = "a1100000-0000-4000-8000-000000000005";
    m.write_transcript(&cwd, sid, conversation(sid, &cwd, "/", 2, 1).as_bytes());
    // Silent: one sentence naming the bound.
    let mut c = silent_cmd(&m);
    c.arg("push");
    let (out, _) = run_bounded(c, HUNG, "push");
    let err = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(err.matches("did not answer").count(), 1, "{err}");
    assert_eq!(err.matches(SILENT).count(), 1, "{err}");
    assert_no_ssh_left(&pids);
    // Refusing: the same.
    m.script(
        "refusing-ssh",
        "echo 'ssh: connect to host silent.invalid port 22: Connection refused' >&2\nexit 255\n",
    );
    let mut c = m.cmd();
    c.env("GIT_SSH_COMMAND", m.bin.join("refusing-ssh"))
        .arg("push");
    let (out, _) = run_bounded(c, HUNG, "push");
    let err = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // Nothing to send: the check is the only news, said once.
    let mut c = m.cmd();
    c.env("GIT_SSH_COMMAND", m.bin.join("refusing-ssh"))
        .args(["push", "--dry-run"]);
    let (out, _) = run_bounded(c, HUNG, "push --dry-run");
    let err = stderr(&out);
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
}

#[test]
fn a_hung_gh_is_stopped_within_the_network_bound() {
    let w = World::new();
    let m = w.machine("a");
    m.init(&w.path().join("sync.git"), &[]);
    m.ok(&["config", "set", "network_timeout_secs", "1"]);
    let pids = w.path().join("gh-pids");
    m.script(
        "gh",
        &format!("echo $$ >> '{}'\nexec sleep 600\n", pids.display()),
    );
    let before = m.config();
    let mut c = m.cmd();
    c.args(["init", "--yes", "--github", "sessions"]);
    let (out, took) = run_bounded(c, HUNG, "init --github");
    let err = stderr(&out);
    eprintln!("init --github with a hung gh: {}", err.trim());
    eprintln!("ended in {} ms", took.as_millis());
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        err.contains("`gh api user` did not answer within 1 s")
            && err.contains("gh auth status")
            && err.contains("network_timeout_secs"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!ssh_pids(&pids).is_empty(), "gh ran");
    assert_no_ssh_left(&pids);
    assert_eq!(m.config(), before, "nothing changed");
}

/// The bound on silence in the tests below: git reports progress about once a second while data
/// moves, so a steady transfer never goes this long without a word.
const IDLE_SECS: u64 = 2;

/// A machine set up on the local remote `sync.git`, then pointed at the same repository over a
/// fake ssh, with a short bound on silence.
fn ssh_machine(w: &World, name: &str) -> Machine {
    let m = w.machine(name);
    m.init(&w.path().join("sync.git"), &["--sync-dir", "~"]);
    let remote = format!("ssh://h{}/sync.git", w.path().display());
    set_config(&m, "remote", remote.into());
    set_config(&m, "network_timeout_secs", IDLE_SECS.into());
    m
}

/// The longest connection through [`relay_ssh`] so far.
fn longest_connection(w: &World) -> Duration {
    let ms = std::fs::read_to_string(w.path().join("relay-ms"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    Duration::from_millis(ms)
}

fn via(m: &Machine, ssh: &Path) -> Command {
    let mut c = m.cmd();
    c.env("GIT_SSH_COMMAND", ssh);
    c
}

const PROGRESS_WORDS: &[&str] = &[
    "Enumerating",
    "Counting objects",
    "Compressing",
    "Writing objects",
    "Receiving objects",
    "Resolving deltas",
    "Total ",
    "%",
    "\r",
];

#[test]
fn a_slow_but_steady_push_takes_longer_than_the_bound_and_succeeds() {
    let w = World::new();
    let m = ssh_machine(&w, "a");
    let ssh = relay_ssh(&m, &w, "slow-ssh", None);
    let sid = "a1100000-0000-4000-8000-000000000011";
    big_session(&m, sid, 1_500_000);
    let mut c = via(&m, &ssh);
    c.arg("push");
    let (out, took) = run_bounded(c, HUNG, "push");
    let err = stderr(&out);
    let transfer = longest_connection(&w);
    eprintln!(
        "a push over a slow link ended in {} ms, its transfer took {} ms (bound on silence: {IDLE_SECS} s)",
        took.as_millis(),
        transfer.as_millis()
    );
    assert!(out.status.success(), "{err}");
    assert!(
        transfer > Duration::from_secs(IDLE_SECS) + Duration::from_millis(500),
        "the transfer was meant to outlast the bound: {transfer:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(!PROGRESS_WORDS.iter().any(|p| err.contains(p)), "{err}");
    assert!(
        repo_paths(&w.path().join("sync.git"))
            .iter()
            .any(|p| p.contains(sid)),
        "the session is in the repository"
    );
    assert_no_ssh_left(&w.path().join("ssh-pids"));
}

#[test]
fn a_slow_but_steady_pull_takes_longer_than_the_bound_and_succeeds() {
    let w = World::new();
    let a = w.machine("a");
    a.init(&w.path().join("sync.git"), &["--sync-dir", "~"]);
    let b = ssh_machine(&w, "b");
    let sid = "a1100000-0000-4000-8000-000000000012";
    big_session(&a, sid, 1_500_000);
    a.ok(&["push"]);
    let ssh = relay_ssh(&b, &w, "slow-ssh", None);
    let mut c = via(&b, &ssh);
    c.arg("pull");
    let (out, took) = run_bounded(c, HUNG, "pull");
    let err = stderr(&out);
    let transfer = longest_connection(&w);
    eprintln!(
        "a pull over a slow link ended in {} ms, its transfer took {} ms (bound on silence: {IDLE_SECS} s)",
        took.as_millis(),
        transfer.as_millis()
    );
    assert!(out.status.success(), "{err}");
    assert!(
        transfer > Duration::from_secs(IDLE_SECS) + Duration::from_millis(500),
        "the transfer was meant to outlast the bound: {transfer:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(!PROGRESS_WORDS.iter().any(|p| err.contains(p)), "{err}");
    let cwd = format!("{}/work", b.home.display());
    let got = std::fs::metadata(b.transcript_path(&cwd, sid)).map_or(0, |m| m.len());
    assert!(got > 1_500_000, "the session arrived whole: {got} bytes");
    assert_no_ssh_left(&w.path().join("ssh-pids"));
}

#[test]
fn a_push_that_stalls_midway_is_stopped_after_the_bound_on_silence() {
    let w = World::new();
    let m = ssh_machine(&w, "a");
    let ssh = relay_ssh(&m, &w, "stalling-ssh", Some((200_000, "stall")));
    let sid = "a1100000-0000-4000-8000-000000000013";
    big_session(&m, sid, 1_500_000);
    let mut c = via(&m, &ssh);
    c.arg("push");
    let (out, took) = run_bounded(c, HUNG, "push");
    let err = stderr(&out);
    eprintln!("push, stalled midway: {}", err.trim());
    eprintln!("ended in {} ms", took.as_millis());
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("stopped answering")
            && err.contains(&format!("no progress for {IDLE_SECS} s"))
            && err.contains("network_timeout_secs"),
        "{err}"
    );
    assert!(!PROGRESS_WORDS.iter().any(|p| err.contains(p)), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_no_ssh_left(&w.path().join("ssh-pids"));
}

#[test]
fn a_push_whose_connection_drops_midway_says_why_without_its_progress() {
    let w = World::new();
    let m = ssh_machine(&w, "a");
    let ssh = relay_ssh(&m, &w, "dropping-ssh", Some((200_000, "drop")));
    let sid = "a1100000-0000-4000-8000-000000000014";
    big_session(&m, sid, 1_500_000);
    let mut c = via(&m, &ssh);
    c.arg("push");
    let (out, took) = run_bounded(c, HUNG, "push");
    let err = stderr(&out);
    eprintln!("push, connection dropped midway: {}", err.trim());
    eprintln!("ended in {} ms", took.as_millis());
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("git push"), "{err}");
    assert!(!PROGRESS_WORDS.iter().any(|p| err.contains(p)), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_no_ssh_left(&w.path().join("ssh-pids"));
}
