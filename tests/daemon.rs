//! The background daemon and the Claude Code hooks, with simulated machines.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn machine(w: &World, name: &str, remote: &Path) -> Machine {
    let m = w.machine(name);
    m.init(remote, &["--sync-dir", "~"]);
    m.ok(&["config", "set", "daemon_debounce_secs", "1"]);
    m.fake_claude();
    m
}

fn cwd(m: &Machine) -> String {
    format!("{}/work", m.home.display())
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(m: &Machine, interval: u64) -> Daemon {
    let child = m
        .cmd()
        .args(["daemon", "--interval", &interval.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon(child);
    wait_until(
        Duration::from_secs(10),
        || m.tool.join("daemon.pid").exists(),
        "the daemon's pid file",
    );
    d
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool, what: &str) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn append(m: &Machine, sid: &str, uuid: &str) {
    let p = m.transcript_path(&cwd(m), sid);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let line = user_line(
        sid,
        &cwd(m),
        uuid,
        None,
        &ts_at(100),
        &format!("turn {uuid}"),
    );
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    use std::io::Write;
    writeln!(f, "{line}").unwrap();
}

/// Whether the remote holds a line with this uuid (in any transcript segment).
fn remote_has(remote: &Path, uuid: &str) -> bool {
    common::repo_paths(remote)
        .iter()
        .filter(|p| p.starts_with("projects/"))
        .any(|p| common::repo_file(remote, p).is_some_and(|t| t.contains(uuid)))
}

const SID: &str = "dae00000-0000-4000-8000-000000000001";

#[test]
fn daemon_pushes_soon_after_changes_and_stops_cleanly() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let d = start_daemon(&a, 300);
    // A second daemon is refused, naming the first.
    let o = a.run(&["daemon"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("already running") && stderr(&o).contains(&format!("pid {}", d.0.id())),
        "{}",
        stderr(&o)
    );
    append(&a, SID, "first-turn");
    let took = wait_until(
        Duration::from_secs(15),
        || remote_has(&remote, "first-turn"),
        "the first push",
    );
    eprintln!("pushed {} ms after the change", took.as_millis());
    append(&a, SID, "second-turn");
    wait_until(
        Duration::from_secs(15),
        || remote_has(&remote, "second-turn"),
        "the second push",
    );
    let st = a.json(&["daemon", "--status"]);
    assert_eq!(st["running"], true);
    assert_eq!(st["daemon"]["pid"], d.0.id());
    assert!(st["daemon"]["last_push"]["summary"].as_str().is_some());
    let out = a.ok(&["daemon", "--stop"]);
    assert!(out.contains("Stopped"), "{out}");
    assert!(!a.tool.join("daemon.pid").exists());
    assert_eq!(a.json(&["daemon", "--status"])["running"], false);
}

#[test]
fn a_stale_pid_file_does_not_block_a_start() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    std::fs::write(
        a.tool.join("daemon.pid"),
        r#"{"pid": 2147483000, "started": 1, "started_at": "2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(a.json(&["daemon", "--status"])["running"], false);
    let o = a.run(&["daemon", "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _d = start_daemon(&a, 300);
    let pid: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.tool.join("daemon.pid")).unwrap()).unwrap();
    assert_ne!(pid["pid"], 2147483000u64);
    a.ok(&["daemon", "--stop"]);
}

#[test]
fn daemon_survives_the_remote_going_away_and_coming_back() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let mut d = start_daemon(&a, 2);
    let away = w.path().join("away.git");
    std::fs::rename(&remote, &away).unwrap();
    append(&a, SID, "offline-turn");
    wait_until(
        Duration::from_secs(20),
        || {
            a.json(&["daemon", "--status"])["daemon"]["last_error"]["summary"]
                .as_str()
                .is_some()
        },
        "the failure to be recorded",
    );
    assert!(d.0.try_wait().unwrap().is_none(), "still running");
    std::fs::rename(&away, &remote).unwrap();
    wait_until(
        Duration::from_secs(40),
        || remote_has(&remote, "offline-turn"),
        "the push once the remote is back",
    );
    a.ok(&["daemon", "--stop"]);
    assert!(d.0.wait().unwrap().success());
}

#[test]
fn a_turn_on_one_machine_reaches_the_other_within_an_interval() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    std::fs::create_dir_all(cwd(&b)).unwrap();
    let _da = start_daemon(&a, 3);
    let _db = start_daemon(&b, 3);
    append(&a, SID, "from-a");
    let bp = b.transcript_path(&cwd(&b), SID);
    let took = wait_until(
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&bp).is_ok_and(|t| {
                t.contains("from-a") && t.contains(&format!("\"cwd\":\"{}\"", cwd(&b)))
            })
        },
        "A's turn on B",
    );
    eprintln!("A's turn reached B after {} ms", took.as_millis());
    a.ok(&["daemon", "--stop"]);
    b.ok(&["daemon", "--stop"]);
}

#[test]
fn cli_pushes_and_the_daemon_share_the_clone_safely() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let _d = start_daemon(&a, 1);
    for i in 0..8 {
        append(&a, SID, &format!("cli-{i}"));
        let o = a.run(&["push"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    a.ok(&["daemon", "--stop"]);
    for i in 0..8 {
        assert!(remote_has(&remote, &format!("cli-{i}")), "cli-{i}");
    }
    let fsck = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(a.tool.join("repo.git"))
        .args(["fsck", "--no-progress"])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}

const SETTINGS: &str = "{\n    \"model\": \"opus\",\n    \"hooks\": {\n        \"PreToolUse\": [\n            { \"matcher\": \"Bash\", \"hooks\": [ { \"type\": \"command\", \"command\": \"audit.sh\" } ] }\n        ]\n    },\n    \"cleanupPeriodDays\": 60\n}\n";

#[test]
fn setup_hooks_round_trip_is_byte_identical() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let settings = a.claude.join("settings.json");
    std::fs::write(&settings, SETTINGS).unwrap();
    let out = a.ok(&["setup-hooks"]);
    assert!(out.contains("Added"), "{out}");
    let text = std::fs::read_to_string(&settings).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["hooks"]["PreToolUse"][0]["hooks"][0]["command"], "audit.sh",
        "other hooks kept"
    );
    // Exec form: the program and its arguments, no shell (so it also runs under PowerShell).
    for (event, word) in [
        ("SessionStart", "session-start"),
        ("SessionEnd", "session-end"),
    ] {
        let h = &v["hooks"][event][0]["hooks"][0];
        assert_eq!(h["command"], bin_path().to_str().unwrap(), "{event}");
        assert_eq!(
            h["args"],
            serde_json::json!(["hook", word, "--home", a.tool.to_str().unwrap()]),
            "{event}"
        );
    }
    assert!(
        text.starts_with("{\n    \"model\": \"opus\",\n    \"hooks\": {\n        \"PreToolUse\""),
        "untouched bytes stay: {text}"
    );
    let backups: Vec<_> = std::fs::read_dir(&a.claude)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("settings.json.ccsync-backup")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read_to_string(backups[0].path()).unwrap(),
        SETTINGS
    );
    assert!(a.ok(&["setup-hooks"]).contains("already"), "idempotent");
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), text);
    assert!(a.json(&["status"])["hooks_installed"].as_bool().unwrap());
    a.ok(&["setup-hooks", "--remove"]);
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        SETTINGS,
        "byte-identical after remove"
    );
    // Also when the file changed in between (the user added a setting): only ccsync's part goes.
    a.ok(&["setup-hooks"]);
    let edited = std::fs::read_to_string(&settings)
        .unwrap()
        .replace("\"model\": \"opus\"", "\"model\": \"sonnet\"");
    std::fs::write(&settings, &edited).unwrap();
    a.ok(&["setup-hooks", "--remove"]);
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        SETTINGS.replace("opus", "sonnet")
    );
}

#[test]
fn malformed_settings_and_malformed_hook_input() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let settings = a.claude.join("settings.json");
    std::fs::write(&settings, "{ \"model\": \"opus\", ").unwrap();
    let o = a.run(&["setup-hooks"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("settings.json") && stderr(&o).contains("nothing was changed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        "{ \"model\": \"opus\", "
    );
    for input in [
        &b"not json"[..],
        b"",
        b"{\"session_id\": \"../../etc\"}",
        b"\xff\xfe",
    ] {
        let mut c = a.cmd();
        c.args(["hook", "session-start"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "a hook never fails Claude Code");
        assert!(out.stdout.is_empty(), "nothing added to Claude's context");
    }
    let log = std::fs::read_to_string(a.tool.join("logs/hooks.log")).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");
    assert!(
        log.contains("not the JSON Claude Code sends") && log.contains("odd session id"),
        "{log}"
    );
}

#[test]
fn with_hooks_a_plain_claude_run_is_synced_and_locked() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    std::fs::create_dir_all(cwd(&a)).unwrap();
    std::fs::create_dir_all(cwd(&b)).unwrap();
    // The session exists on B already (pulled before) and A continues it with plain claude.
    append(&b, SID, "made-on-b");
    b.ok(&["push"]);
    a.ok(&["pull"]);
    a.ok(&["setup-hooks"]);
    a.set("claude.hooks", "");
    // While it runs, the session is locked by A.
    a.set(
        "claude.during",
        &format!(
            "git --git-dir={} show main:locks/$1.json > {}/lock-during.json",
            remote.display(),
            a.bin.display()
        ),
    );
    let mut claude = std::process::Command::new(a.bin.join("claude"));
    claude
        .arg("--resume")
        .arg(SID)
        .current_dir(cwd(&a))
        .env_clear()
        .env(
            "PATH",
            format!("{}:{}", a.bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("HOME", &a.home)
        .env("CLAUDE_CONFIG_DIR", &a.claude)
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    let started = Instant::now();
    let st = claude.status().unwrap();
    assert!(st.success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "hooks do not slow Claude Code down much"
    );
    let during: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.bin.join("lock-during.json")).unwrap())
            .unwrap();
    assert_eq!(during["machine_id"], "a");
    // The session-end work happens in the background, after Claude Code exited.
    wait_until(
        Duration::from_secs(20),
        || remote_has(&remote, "fake-a-"),
        "A's turn in the repository",
    );
    wait_until(
        Duration::from_secs(20),
        || repo_file(&remote, &format!("locks/{SID}.json")).is_none(),
        "the lock's release",
    );
    b.ok(&["pull"]);
    assert!(
        std::fs::read_to_string(b.transcript_path(&cwd(&b), SID))
            .unwrap()
            .contains("from a")
    );
}

#[test]
fn stopping_the_daemon_releases_the_locks_it_keeps() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    std::fs::create_dir_all(cwd(&a)).unwrap();
    append(&a, SID, "t0");
    a.ok(&["push"]);
    // A running "Claude Code" for the session, as Claude Code registers it.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let sessions = a.claude.join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    std::fs::write(
        sessions.join(format!("{}.json", sleeper.id())),
        format!(r#"{{"pid":{},"sessionId":"{SID}"}}"#, sleeper.id()),
    )
    .unwrap();
    let mut hook = a.cmd();
    hook.args(["hook", "session-start"]).stdin(Stdio::piped());
    let mut child = hook.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            format!(
                r#"{{"session_id":"{SID}","cwd":"{}","source":"resume"}}"#,
                cwd(&a)
            )
            .as_bytes(),
        )
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        repo_file(&remote, &format!("locks/{SID}.json")).is_some(),
        "the hook took the lock"
    );
    let _d = start_daemon(&a, 300);
    a.ok(&["daemon", "--stop"]);
    assert!(
        repo_file(&remote, &format!("locks/{SID}.json")).is_none(),
        "released when the daemon stopped"
    );
    assert!(!a.tool.join("daemon.pid").exists());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn daemon_install_writes_a_user_service() {
    let w = World::new();
    let a = w.machine("a");
    let xdg = w.path().join("xdg");
    let mut c = a.cmd();
    c.env("XDG_CONFIG_HOME", &xdg).args(["daemon", "install"]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let unit = xdg.join("systemd/user/ccsync.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains(&format!("ExecStart=\"{}\" daemon", bin_path().display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("Environment=\"CCSYNC_HOME={}\"", a.tool.display())),
        "{text}"
    );
    assert!(stdout(&o).contains("systemctl --user"), "{}", stdout(&o));
    let mut c = a.cmd();
    c.env("XDG_CONFIG_HOME", &xdg).args(["daemon", "uninstall"]);
    assert!(c.output().unwrap().status.success());
    assert!(!unit.exists());
}

/// Run a hook with `input` on stdin; returns its stdout.
fn run_hook(m: &Machine, event: &str, input: &str) -> String {
    let mut c = m.cmd();
    c.args(["hook", event])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "a hook never fails Claude Code");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn turns_the_start_hook_brings_too_late_are_announced_visibly() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    let sid = "0d3c1a2b-0000-4000-8000-00000000000a";
    append(&a, sid, "first");
    a.ok(&["push"]);
    b.ok(&["pull"]);
    let input = serde_json::json!({"session_id": sid, "cwd": cwd(&b), "hook_event_name": "SessionStart", "source": "resume", "transcript_path": ""}).to_string();
    // Nothing new: the hook says nothing to the user.
    let quiet = run_hook(&b, "session-start", &input);
    assert!(quiet.trim().is_empty(), "{quiet}");
    b.ok(&["lock", "release"]);
    // A added a turn; Claude Code on B had already loaded the transcript when the hook pulled it.
    append(&a, sid, "second");
    a.ok(&["push"]);
    let out = run_hook(&b, "session-start", &input);
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let msg = v["systemMessage"].as_str().unwrap();
    assert!(
        msg.contains("1 newer line") && msg.contains(&format!("claude --resume {sid}")),
        "{msg}"
    );
}
