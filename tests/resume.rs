//! `resume`, `start`, `update`, `lock`, `list --remote` with simulated machines and a fake
//! `claude`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const SID: &str = "4e5a0000-0000-4000-8000-00000000000a";

type M = ProjectMachine;

fn machine(w: &World, name: &str, remote: &Path) -> M {
    ProjectMachine::new(w, name, remote)
}

/// A on which a session exists and was pushed; B knows nothing yet.
fn setup(w: &World) -> (std::path::PathBuf, M, M) {
    let remote = w.path().join("sync.git");
    let a = machine(w, "a", &remote);
    let b = machine(w, "b", &remote);
    a.m.write_transcript(
        &a.cwd(),
        SID,
        conversation(SID, &a.cwd(), "/", 2, 0).as_bytes(),
    );
    std::fs::create_dir_all(a.cwd()).unwrap();
    a.m.ok(&["push"]);
    (remote, a, b)
}

fn lock_in(remote: &Path, sid: &str) -> Option<serde_json::Value> {
    repo_file(remote, &format!("locks/{sid}.json")).map(|t| serde_json::from_str(&t).unwrap())
}

/// ccsync on `m` with its clock moved: `now` is a `CCSYNC_TEST_NOW` value such as `+13m`.
fn at(m: &Machine, now: &str, args: &[&str]) -> std::process::Output {
    m.cmd()
        .env("CCSYNC_TEST_NOW", now)
        .args(args)
        .output()
        .unwrap()
}

/// Keep `m`'s fake Claude Code open until [`let_claude_go`] (a minute at most).
fn hold_claude(m: &Machine) {
    let go = m.bin.join("claude.go");
    let _ = std::fs::remove_file(&go);
    m.set(
        "claude.during",
        &format!(
            "i=0; while [ ! -f '{}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done",
            go.display()
        ),
    );
}

fn let_claude_go(m: &Machine) {
    m.set("claude.go", "");
}

/// Wait (30 s at most) until `done` says so: an event, not time passing.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn starts(m: &Machine) -> usize {
    m.claude_log()
        .iter()
        .filter(|l| l.starts_with("start"))
        .count()
}

#[test]
fn resume_on_b_runs_claude_in_b_directory_and_the_turns_reach_a() {
    let w = World::new();
    let (remote, a, b) = setup(&w);
    std::fs::create_dir_all(b.cwd()).unwrap();
    // While Claude Code runs, the lock is in the repository.
    b.m.set(
        "claude.during",
        &format!(
            "git --git-dir={} show main:locks/$1.json > {}/lock-during.json",
            remote.display(),
            b.m.bin.display()
        ),
    );
    b.m.set("claude.append", "2");
    let o = b.m.run(&["resume", &SID[..8]]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = b.m.claude_log();
    assert!(log[0].contains(&format!("argv=--resume {SID}")), "{log:?}");
    assert!(log[0].ends_with(&format!("cwd={}", b.cwd())), "{log:?}");
    let during: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.m.bin.join("lock-during.json")).unwrap())
            .unwrap();
    assert_eq!(during["machine_id"], "b");
    assert!(lock_in(&remote, SID).is_none(), "released after exit");
    assert!(stderr(&o).contains("Released the lock"), "{}", stderr(&o));
    a.m.ok(&["pull"]);
    let text = std::fs::read_to_string(a.m.transcript_path(&a.cwd(), SID)).unwrap();
    assert_eq!(text.matches("from b\"").count(), 2, "B's turns reached A");
    assert!(
        text.contains(&format!("\"cwd\":\"{}\"", a.cwd())),
        "mapped back to A's paths"
    );
    // The same session resumes on A, where it was made.
    let o = a.m.run(&["resume", "--latest"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(a.m.claude_log()[0].contains(SID));
}

#[test]
fn two_machines_resuming_at_once_exactly_one_runs() {
    let w = World::new();
    let (_remote, a, b) = setup(&w);
    std::fs::create_dir_all(b.cwd()).unwrap();
    b.m.ok(&["pull"]);
    for m in [&a.m, &b.m] {
        m.set("claude.append", "0");
    }
    for round in 0..20 {
        // The winner's Claude Code stays open until the loser has given up.
        hold_claude(&a.m);
        hold_claude(&b.m);
        let before = (starts(&a.m), starts(&b.m));
        let mut ca =
            a.m.cmd()
                .args(["resume", SID])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
        let mut cb =
            b.m.cmd()
                .args(["resume", SID])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
        wait_until("one of the two to finish", || {
            ca.try_wait().unwrap().is_some() || cb.try_wait().unwrap().is_some()
        });
        let_claude_go(&a.m);
        let_claude_go(&b.m);
        let oa = ca.wait_with_output().unwrap();
        let ob = cb.wait_with_output().unwrap();
        let ran = (starts(&a.m) - before.0) + (starts(&b.m) - before.1);
        assert_eq!(
            ran,
            1,
            "round {round}: a: {} b: {}",
            stderr(&oa),
            stderr(&ob)
        );
        let loser = if oa.status.success() { &ob } else { &oa };
        assert_eq!(loser.status.code(), Some(1), "round {round}");
        assert!(
            stderr(loser).contains("locked by machine"),
            "round {round}: {}",
            stderr(loser)
        );
    }
}

fn craft_lock(remote: &Path, machine: &str, expires_in_secs: i64) {
    let now = chrono::Utc::now();
    let l = json!({
        "session_id": SID, "machine_id": machine, "hostname": "far-away", "pid": 42,
        "acquired_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
        "expires_at": (now + chrono::Duration::seconds(expires_in_secs)).to_rfc3339(),
        "ttl_secs": 600
    })
    .to_string();
    fast_import_commit(
        remote,
        &[("100644", &format!("locks/{SID}.json"), l.as_bytes())],
        true,
    );
}

#[test]
fn expired_locks_are_taken_live_ones_need_take_over() {
    let w = World::new();
    let (remote, _a, b) = setup(&w);
    std::fs::create_dir_all(b.cwd()).unwrap();
    // Its times say it expired an hour ago, but they were written with another machine's clock:
    // a lock this machine never saw before is live.
    craft_lock(&remote, "zz", -3600);
    let o = b.m.run(&["resume", SID]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("locked by machine zz")
            && stderr(&o).contains("first seen from this machine just now")
            && stderr(&o).contains("--take-over"),
        "{}",
        stderr(&o)
    );
    assert_eq!(starts(&b.m), 0);
    // Eleven minutes later by this machine's clock it is still the same lock: still live.
    let o = at(&b.m, "+11m", &["resume", SID]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("seen unchanged from this machine for 11 min"),
        "{}",
        stderr(&o)
    );
    // After longer than its TTL plus margin (12 min) unchanged, it is expired: taken without
    // asking.
    let o = at(&b.m, "+13m", &["resume", SID]);
    assert!(
        o.status.success(),
        "an expired lock is taken without asking: {}",
        stderr(&o)
    );
    assert_eq!(starts(&b.m), 1);
    craft_lock(&remote, "zz", 600);
    let o = b.m.run(&["resume", SID]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("locked by machine zz") && stderr(&o).contains("--take-over"),
        "{}",
        stderr(&o)
    );
    assert_eq!(starts(&b.m), 1, "claude did not run");
    let o = b.m.run(&["resume", SID, "--take-over"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("Took over the lock"), "{}", stderr(&o));
    assert!(lock_in(&remote, SID).is_none());
    // lock show / release / cleanup
    craft_lock(&remote, "zz", 600);
    let v = b.m.json(&["lock", "show"]);
    assert_eq!(v[0]["machine"], "zz");
    assert_eq!(v[0]["expired"], false);
    assert_eq!(v[0]["seen_unchanged_secs"], 0);
    assert_eq!(v[0]["expires_after_unchanged_secs"], 720);
    let v = serde_json::from_slice::<serde_json::Value>(
        &at(&b.m, "+5m", &["lock", "show", "--format", "json"]).stdout,
    )
    .unwrap();
    assert_eq!(v[0]["expired"], false);
    assert!(
        (299..=301).contains(&v[0]["seen_unchanged_secs"].as_i64().unwrap()),
        "{v}"
    );
    let text = stdout(&at(&b.m, "+5m", &["lock", "show"]));
    assert!(
        text.contains("live") && text.contains("seen unchanged from this machine for 5 min"),
        "{text}"
    );
    let o = b.m.run(&["lock", "release", &SID[..6]]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "another machine's lock needs --force"
    );
    b.m.ok(&["lock", "release", &SID[..6], "--force"]);
    assert!(lock_in(&remote, SID).is_none());
    craft_lock(&remote, "zz", -3600);
    assert!(
        b.m.ok(&["lock", "cleanup"]).contains("No expired locks"),
        "first seen now"
    );
    assert!(lock_in(&remote, SID).is_some());
    let o = at(&b.m, "+13m", &["lock", "cleanup"]);
    assert!(stdout(&o).contains("Removed 1"), "{}", stderr(&o));
    assert!(lock_in(&remote, SID).is_none());
}

#[test]
fn heartbeat_keeps_a_short_lock_alive_through_a_long_session() {
    let w = World::new();
    let (remote, a, b) = setup(&w);
    std::fs::create_dir_all(b.cwd()).unwrap();
    // A 10 s lock: refreshed every 3 s, expired after 15 s unchanged.
    a.m.ok(&["config", "set", "lock_ttl_secs", "10"]);
    hold_claude(&a.m);
    let child =
        a.m.cmd()
            .args(["resume", SID])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    wait_until("A's lock", || lock_in(&remote, SID).is_some());
    let first = lock_in(&remote, SID).unwrap();
    assert_eq!(first["machine_id"], "a");
    // B sees the lock now …
    let v = b.m.json(&["lock", "show"]);
    assert_eq!(v[0]["expired"], false);
    // … A's heartbeat refreshes it …
    wait_until("a refresh of the lock", || {
        lock_in(&remote, SID).is_some_and(|l| l["expires_at"] != first["expires_at"])
    });
    let refreshed = lock_in(&remote, SID).unwrap();
    assert_eq!(refreshed["acquired_at"], first["acquired_at"]);
    // … so 22 s later by B's clock (the lock unrefreshed would have expired) it is still held.
    let o = at(&b.m, "+22s", &["resume", SID]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("locked by machine a"), "{}", stderr(&o));
    assert_eq!(starts(&b.m), 0);
    let_claude_go(&a.m);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Released the lock"),
        "{}",
        stderr(&out)
    );
    assert!(lock_in(&remote, SID).is_none());
}

#[test]
fn missing_directory_missing_claude_and_cwd_override() {
    let w = World::new();
    let (remote, _a, b) = setup(&w);
    // B's directory for the session does not exist.
    let o = b.m.run(&["resume", SID]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&b.cwd()) && err.contains("--cwd"), "{err}");
    assert!(lock_in(&remote, SID).is_none(), "no lock left behind");
    assert_eq!(starts(&b.m), 0, "never started somewhere else");
    // --cwd runs it elsewhere; the session moves to that project folder.
    let other = w.path().join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    let o = b.m.run(&["resume", SID, "--cwd", other.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(b.m.claude_log()[0].ends_with(&format!("cwd={}", other.display())));
    assert!(b.m.transcript_path(other.to_str().unwrap(), SID).exists());
    // No claude: a clear error and no lock.
    let mut cmd = b.m.cmd();
    cmd.env("CCSYNC_CLAUDE", w.path().join("no-such-claude"));
    let o = cmd.args(["resume", SID]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Claude Code") && stderr(&o).contains("CCSYNC_CLAUDE"),
        "{}",
        stderr(&o)
    );
    assert!(lock_in(&remote, SID).is_none());
}

#[test]
fn unreachable_remote_resumes_locally_and_update_catches_up() {
    let w = World::new();
    let (remote, a, b) = setup(&w);
    std::fs::create_dir_all(b.cwd()).unwrap();
    b.m.ok(&["pull"]);
    let away = w.path().join("away.git");
    std::fs::rename(&remote, &away).unwrap();
    let started = Instant::now();
    let o = b.m.run(&["resume", SID]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(20), "bounded time");
    let err = stderr(&o);
    assert!(
        err.contains("could not pull") && err.contains("ccsync update"),
        "{err}"
    );
    assert_eq!(starts(&b.m), 1);
    std::fs::rename(&away, &remote).unwrap();
    let o = b.m.run(&["update"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Finished an earlier run") || stdout(&o).contains("Pushed"),
        "{}",
        stderr(&o)
    );
    a.m.ok(&["pull"]);
    assert!(
        std::fs::read_to_string(a.m.transcript_path(&a.cwd(), SID))
            .unwrap()
            .contains("from b\"")
    );
}

#[test]
fn killed_claude_and_killed_ccsync() {
    let w = World::new();
    let (remote, a, b) = setup(&w);
    std::fs::create_dir_all(b.cwd()).unwrap();
    // Claude Code killed: the clean-up still runs.
    b.m.set("claude.during", "kill -9 $$");
    let o = b.m.run(&["resume", SID]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(lock_in(&remote, SID).is_none());
    std::fs::remove_file(b.m.bin.join("claude.during")).unwrap();

    // ccsync killed while Claude Code runs: the next update pushes and releases, and the Claude
    // Code process is left to finish on its own.
    hold_claude(&b.m);
    let mut child =
        b.m.cmd()
            .args(["resume", SID])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while starts(&b.m) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(lock_in(&remote, SID).is_some(), "locked while running");
    child.kill().unwrap();
    child.wait().unwrap();
    let_claude_go(&b.m);
    // Wait for the orphaned fake claude to finish by itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    while b
        .m
        .claude_log()
        .iter()
        .filter(|l| l.starts_with("end"))
        .count()
        < 2
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        b.m.claude_log()
            .iter()
            .filter(|l| l.starts_with("end"))
            .count(),
        2,
        "claude finished on its own"
    );
    let out = b.m.run(&["update"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Finished an earlier run"),
        "{}",
        stderr(&out)
    );
    assert!(lock_in(&remote, SID).is_none(), "released");
    a.m.ok(&["pull"]);
    assert_eq!(
        std::fs::read_to_string(a.m.transcript_path(&a.cwd(), SID))
            .unwrap()
            .matches("from b\"")
            .count(),
        2
    );
}

#[test]
fn start_pushes_the_new_session_and_list_remote_shows_holders() {
    let w = World::new();
    let (remote, a, b) = setup(&w);
    std::fs::create_dir_all(b.cwd()).unwrap();
    let mut cmd = b.m.cmd();
    cmd.current_dir(b.cwd());
    let o = cmd.args(["start"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = a.m.json(&["list", "--remote"]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert!(rows.iter().any(|r| r["machine"] == "b"));
    let from_a = a.m.json(&["list", "--remote", "--from", "a"]);
    assert_eq!(from_a.as_array().unwrap().len(), 1);
    assert_eq!(from_a[0]["session_id"], SID);
    craft_lock(&remote, "zz", 600);
    let v = a.m.json(&["list", "--remote", "--from", "a"]);
    assert_eq!(v[0]["locked_by"], "zz");
    let text = a.m.ok(&["list", "--remote"]);
    assert!(text.contains("locked by zz"), "{text}");
    // Without a terminal and an id, resume lists and asks for one.
    let o = a.m.run(&["resume"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(&SID[..8]) && stderr(&o).contains("ccsync resume ID"),
        "{}",
        stderr(&o)
    );
    // An ambiguous prefix lists the candidates.
    let o = a.m.run(&["resume", ""]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("matches 2 sessions"), "{}", stderr(&o));
    // update releases every lock this machine holds.
    let other = "4e5a0000-0000-4000-8000-0000000000bb";
    let l = json!({"session_id": other, "machine_id": "a", "acquired_at": chrono::Utc::now().to_rfc3339(),
                   "expires_at": (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339(), "ttl_secs": 600}).to_string();
    fast_import_commit(
        &remote,
        &[("100644", &format!("locks/{other}.json"), l.as_bytes())],
        true,
    );
    assert!(a.m.ok(&["update"]).contains("Released 1 lock"));
    assert!(lock_in(&remote, other).is_none());
    assert!(lock_in(&remote, SID).is_some(), "not this machine's lock");
}

#[test]
fn an_old_session_only_in_the_repository_is_fetched_on_demand() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    let old = "01d00000-0000-4000-8000-00000000000c";
    let line = user_line(
        old,
        &a.cwd(),
        "o1",
        None,
        "2020-03-01T10:00:00.000Z",
        "an old conversation",
    );
    a.m.write_transcript(&a.cwd(), old, format!("{line}\n").as_bytes());
    a.m.ok(&["push"]);
    std::fs::create_dir_all(b.cwd()).unwrap();
    let out = b.m.ok(&["pull"]);
    assert!(out.contains("cleanupPeriodDays"), "{out}");
    let path = b.m.transcript_path(&b.cwd(), old);
    assert!(!path.exists(), "not pulled by default");
    b.m.set("claude.append", "0");
    let o = b.m.run(&["resume", &old[..6]]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(b.m.claude_log()[0].contains(&format!("--resume {old}")));
    let age = std::fs::metadata(&path)
        .unwrap()
        .modified()
        .unwrap()
        .elapsed()
        .unwrap();
    assert!(
        age < Duration::from_secs(600),
        "a fresh time, so Claude Code does not delete it at once"
    );
}
