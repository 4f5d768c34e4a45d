//! Locks between machines whose clocks disagree, and `doctor`'s clock check. Clocks are moved
//! with `CCSYNC_TEST_NOW` (test-only); no test waits for time to pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SID: &str = "c10c0000-0000-4000-8000-00000000000a";

type M = ProjectMachine;

fn machine(w: &World, name: &str, remote: &Path) -> M {
    let pm = ProjectMachine::new(w, name, remote);
    std::fs::create_dir_all(pm.cwd()).unwrap();
    pm
}

/// A has a pushed session; B has pulled it.
fn setup(w: &World) -> (PathBuf, M, M) {
    let remote = w.path().join("sync.git");
    let a = machine(w, "a", &remote);
    let b = machine(w, "b", &remote);
    a.m.write_transcript(
        &a.cwd(),
        SID,
        conversation(SID, &a.cwd(), "/", 2, 0).as_bytes(),
    );
    a.m.ok(&["push"]);
    b.m.ok(&["pull"]);
    (remote, a, b)
}

/// ccsync on `m` with its clock moved by `now` (a `CCSYNC_TEST_NOW` value).
fn at(m: &Machine, now: &str, args: &[&str]) -> Output {
    m.cmd()
        .env("CCSYNC_TEST_NOW", now)
        .args(args)
        .output()
        .unwrap()
}

fn json_at(m: &Machine, now: &str, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let o = at(m, now, &a);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn lock_in(remote: &Path) -> Option<serde_json::Value> {
    repo_file(remote, &format!("locks/{SID}.json")).map(|t| serde_json::from_str(&t).unwrap())
}

fn starts(m: &Machine) -> usize {
    m.claude_log()
        .iter()
        .filter(|l| l.starts_with("start"))
        .count()
}

/// Wait (30 s at most) until `done` says so: an event, not time passing.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `resume` on A with A's clock at `a_now`, its Claude Code kept open until [`finish`]; returns
/// once A holds the lock.
fn a_runs_claude(remote: &Path, a: &M, a_now: &str) -> Child {
    let go = a.m.bin.join("claude.go");
    let _ = std::fs::remove_file(&go);
    a.m.set(
        "claude.during",
        &format!(
            "i=0; while [ ! -f '{}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done",
            go.display()
        ),
    );
    let child =
        a.m.cmd()
            .env("CCSYNC_TEST_NOW", a_now)
            .args(["resume", SID])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    wait_until("A's lock and Claude Code", || {
        lock_in(remote).is_some() && starts(&a.m) == 1
    });
    child
}

fn finish(a: &M, child: Child) -> Output {
    a.m.set("claude.go", "");
    child.wait_with_output().unwrap()
}

fn lock_time(l: &serde_json::Value, key: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(l[key].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// A's clock is `skew` off; B judges A's live lock on its own clock only.
fn skewed(a_now: &str, a_offset_mins: i64) {
    let w = World::new();
    let (remote, a, b) = setup(&w);
    let child = a_runs_claude(&remote, &a, a_now);
    let lock = lock_in(&remote).unwrap();
    assert_eq!(lock["machine_id"], "a");
    // The lock carries A's (wrong) clock, in UTC.
    let off = lock_time(&lock, "acquired_at") - chrono::Utc::now();
    assert!(
        (off - chrono::Duration::minutes(a_offset_mins))
            .num_seconds()
            .abs()
            < 60,
        "{lock}"
    );

    // B, two minutes later by its own clock: the lock is live, whatever A's times say.
    let o = at(&b.m, "+2m", &["resume", SID]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("locked by machine a") && stderr(&o).contains("--take-over"),
        "{}",
        stderr(&o)
    );
    assert_eq!(starts(&b.m), 0, "B did not start Claude Code");
    let v = json_at(&b.m, "+3m", &["lock", "show"]);
    assert_eq!(v[0]["expired"], false, "{v}");
    assert_eq!(v[0]["seen_unchanged_secs"], 60, "{v}");
    // Nor does cleanup remove it, on B's clock or with B's clock hours ahead, as long as B has
    // not watched it long enough.
    assert!(stdout(&at(&b.m, "+3m", &["lock", "cleanup"])).contains("No expired locks"));
    assert!(lock_in(&remote).is_some());
    // First seen at +2m; watched unchanged for 13 min (> 10 min TTL + 2 min margin) by B's
    // clock: abandoned.
    let v = json_at(&b.m, "+13m30s", &["lock", "show"]);
    assert_eq!(v[0]["expired"], false, "11.5 min unchanged: {v}");
    let o = at(&b.m, "+15m", &["resume", SID]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(starts(&b.m), 1);
    assert!(lock_in(&remote).is_none(), "B released it after its run");
    // A learns at exit that its lock was taken; its turns are still pushed.
    let out = finish(&a, child);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the lock was taken over"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_clock_ten_minutes_ahead_never_makes_its_lock_look_expired_too_late_or_too_soon() {
    skewed("+10m", 10);
}

#[test]
fn a_clock_ten_minutes_behind_never_makes_a_live_lock_look_expired() {
    // Before, B compared A's expiry (10 min behind) with its own clock and took the lock of a
    // session that was still open on A.
    skewed("-10m", -10);
}

#[test]
fn a_clock_hours_off_changes_nothing() {
    let w = World::new();
    let (remote, a, b) = setup(&w);
    let child = a_runs_claude(&remote, &a, "-5h");
    // B's clock is three hours ahead, A's five hours behind: B first sees the lock, then again
    // 11 minutes later by its clock.
    for b_now in ["+3h", "+3h11m"] {
        let o = at(&b.m, b_now, &["resume", SID]);
        assert_eq!(o.status.code(), Some(1), "B at {b_now}: {}", stderr(&o));
    }
    let v = json_at(&b.m, "+3h11m", &["lock", "show"]);
    assert_eq!(v[0]["expired"], false, "{v}");
    assert_eq!(v[0]["seen_unchanged_secs"], 660, "{v}");
    // B's clock is then set back five hours: that is no time watched at all.
    let v = json_at(&b.m, "-2h", &["lock", "show"]);
    assert_eq!(v[0]["seen_unchanged_secs"], 0, "{v}");
    assert_eq!(v[0]["expired"], false, "{v}");
    assert_eq!(starts(&b.m), 0);
    let out = finish(&a, child);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Released the lock"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_lock_of_this_machine_whose_process_is_gone_is_cleaned_by_its_own_clock() {
    let w = World::new();
    let (remote, a, b) = setup(&w);
    // A lock of A from a run that is gone (no ccsync or Claude Code of A holds it), written
    // an hour ago by A's own clock.
    let then = chrono::Utc::now() - chrono::Duration::hours(1);
    let l = serde_json::json!({
        "session_id": SID, "machine_id": "a", "hostname": "a", "pid": 2_147_483_000u32,
        "acquired_at": then.to_rfc3339(), "expires_at": (then + chrono::Duration::minutes(10)).to_rfc3339(),
        "ttl_secs": 600
    })
    .to_string();
    fast_import_commit(
        &remote,
        &[("100644", &format!("locks/{SID}.json"), l.as_bytes())],
        true,
    );
    // B has never seen it: live for B.
    assert!(b.m.ok(&["lock", "cleanup"]).contains("No expired locks"));
    // A wrote it with this very clock, and nothing of A holds it: expired at once.
    let v = a.m.json(&["lock", "show"]);
    assert_eq!(v[0]["mine"], true);
    assert_eq!(v[0]["expired"], true, "{v}");
    assert!(a.m.ok(&["lock", "cleanup"]).contains("Removed 1"));
    assert!(lock_in(&remote).is_none());
}

#[test]
fn the_daemon_cleans_only_locks_it_has_watched_long_enough() {
    let w = World::new();
    let (remote, a, b) = setup(&w);
    let child = a_runs_claude(&remote, &a, "-10m");
    // One daemon cycle on B now, one 13 minutes later by B's clock.
    let once = |now: &str| {
        let o = at(&b.m, now, &["daemon", "--once"]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    once("+0s");
    assert!(lock_in(&remote).is_some(), "first seen: kept");
    once("+5m");
    assert!(lock_in(&remote).is_some(), "5 min unchanged: kept");
    once("+13m");
    assert!(lock_in(&remote).is_none(), "13 min unchanged: cleaned");
    let out = finish(&a, child);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn doctor_warns_the_machine_whose_clock_is_off_not_the_others() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    let c = machine(&w, "c", &remote);
    let clock_lines = |o: &Output| -> Vec<String> {
        stdout(o)
            .lines()
            .filter(|l| l.contains("clock"))
            .map(str::to_string)
            .collect()
    };
    // A's clock is 10 minutes ahead; B and C agree with the remote's.
    for (now, word) in [("+10m", "ahead of"), ("-10m", "behind")] {
        let lines = clock_lines(&at(&a.m, now, &["doctor"]));
        assert!(
            lines.iter().any(|l| l.starts_with("warn")
                && l.contains("this machine's clock is 10 min")
                && l.contains(word)),
            "{lines:?}"
        );
        for m in [&b.m, &c.m] {
            // Others commit while A's clock is off; they are not blamed.
            m.ok(&["push"]);
            let lines = clock_lines(&m.run(&["doctor"]));
            assert!(
                lines.iter().all(|l| !l.starts_with("warn")),
                "{}: {lines:?}",
                m.name
            );
            assert!(lines.iter().any(|l| l.starts_with("ok")), "{lines:?}");
        }
    }
    // A few seconds off is not worth a word.
    let lines = clock_lines(&at(&a.m, "+20s", &["doctor"]));
    assert!(lines.iter().all(|l| l.starts_with("ok")), "{lines:?}");
    // Nothing is left behind in the remote.
    assert!(
        std::fs::read_dir(&remote)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains("clock-probe"))
    );
}
