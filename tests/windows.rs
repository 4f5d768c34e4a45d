//! ccsync as a Windows program: `ccsync.exe` under Wine (see `common::windows`) and a Linux
//! machine sharing one local bare remote; resume launching a Windows `claude.exe`; the test git
//! relay carrying any byte.
//!
//! Skipped (passing, with the reason printed) where Wine or the Windows build is missing,
//! unless `CCSYNC_WINDOWS_TESTS=1`. Build and run them with
//! `scripts/build-windows.sh --tests && CCSYNC_WINDOWS_TESTS=1 cargo test --test windows`.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Output, Stdio};

use common::windows::wine;
use common::*;
use serde_json::json;

const SID: &str = "3d1c0000-0000-4000-8000-0000000000a1";

/// How one machine spells the test project: its folder and separator, and a second spelling of
/// the same folder that only a Windows machine has (another case, the other separator).
struct Spec {
    projects: String,
    sep: &'static str,
    odd: String,
    odd_sep: &'static str,
}

impl Spec {
    fn of(p: &ProjectMachine) -> Spec {
        let (odd, odd_sep) = if p.m.windows {
            // `Z:\tmp\…\win\home\projects` as `z:/TMP/…/WIN/HOME/PROJECTS`.
            let upper = p.projects[1..].replace('\\', "/").to_uppercase();
            (format!("z{upper}"), "/")
        } else {
            (p.projects.clone(), "/")
        };
        Spec {
            projects: p.projects.clone(),
            sep: p.m.sep(),
            odd,
            odd_sep,
        }
    }

    /// The same, with the second spelling as the first (what a pull writes: the machine's own).
    fn plain(&self) -> Spec {
        Spec {
            projects: self.projects.clone(),
            sep: self.sep,
            odd: self.projects.clone(),
            odd_sep: self.sep,
        }
    }

    fn cwd(&self) -> String {
        format!("{}{}app", self.projects, self.sep)
    }
}

/// A session whose lines hold the project's paths in values, keys, a command and prose, and
/// once in the second spelling.
fn transcript(s: &Spec, sid: &str) -> String {
    let cwd = s.cwd();
    let file = |f: &str| format!("{cwd}{0}src{0}{f}", s.sep);
    let lines = [
        json!({"parentUuid": null, "cwd": cwd, "sessionId": sid, "type": "user", "uuid": format!("{sid}-u1"),
               "timestamp": ts_at(0), "message": {"role": "user", "content": format!("fix {} please", file("lib.rs"))}}),
        json!({"parentUuid": format!("{sid}-u1"), "cwd": cwd, "sessionId": sid, "type": "assistant", "uuid": format!("{sid}-a1"),
               "timestamp": ts_at(1), "message": {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash",
                  "input": {"command": format!("cd {cwd} && cargo test"), "file_path": file("main.rs")}}]}}),
        json!({"type": "file-history-snapshot", "messageId": format!("{sid}-u1"),
               "snapshot": {"trackedFileBackups": {file("lib.rs"): {"version": 1}}}}),
        json!({"parentUuid": format!("{sid}-a1"), "cwd": cwd, "sessionId": sid, "type": "user", "uuid": format!("{sid}-u2"),
               "timestamp": ts_at(2), "toolUseResult": {"stdout": format!("{0}{1}app{1}README.md\nliteral {{{{PROJECTS}}}}", s.odd, s.odd_sep)},
               "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}}),
    ];
    lines
        .iter()
        .map(|l| serde_json::to_string(l).unwrap() + "\n")
        .collect()
}

/// One more turn, added on the machine `s` describes.
fn turn(s: &Spec, sid: &str, n: u32) -> String {
    let l = json!({"parentUuid": format!("{sid}-u2"), "cwd": s.cwd(), "sessionId": sid, "type": "user",
                   "uuid": format!("{sid}-t{n}"), "timestamp": ts_at(10 + n),
                   "message": {"role": "user", "content": format!("now {}{}Cargo.toml", s.cwd(), s.sep)}});
    serde_json::to_string(&l).unwrap() + "\n"
}

fn append(p: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn read(p: &Path) -> String {
    String::from_utf8(std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// A Windows machine and a Linux one on one remote, or `None` (skip) without Wine.
fn pair(w: &World) -> Option<(ProjectMachine, ProjectMachine)> {
    let remote = w.path().join("remote.git");
    let win = ProjectMachine::on(w.windows_machine("win")?, &remote);
    let lin = ProjectMachine::new(w, "lin", &remote);
    Some((win, lin))
}

fn ids(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .filter_map(|s| s["id"].as_str().or(s["session_id"].as_str()))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_session_pushed_on_windows_is_pulled_on_linux_with_every_path_mapped_and_back() {
    let w = World::new();
    let Some((win, lin)) = pair(&w) else { return };
    let (sw, sl) = (Spec::of(&win), Spec::of(&lin));
    let original = transcript(&sw, SID);
    let on_win = win.m.write_transcript(&win.cwd(), SID, original.as_bytes());
    win.m.ok(&["push"]);
    assert!(ids(&win.m.json(&["list"])).contains(&SID.to_string()));

    lin.m.ok(&["pull"]);
    let on_lin = lin.m.transcript_path(&lin.cwd(), SID);
    assert_eq!(
        read(&on_lin),
        transcript(&sl, SID),
        "every Windows spelling (either case, either separator) became the Linux path"
    );
    assert!(ids(&lin.m.json(&["list"])).contains(&SID.to_string()));

    // Linux adds a turn; Windows gets it in its own spelling, after its own bytes unchanged
    // (appended to the file it has).
    append(&on_lin, &turn(&sl, SID, 1));
    lin.m.ok(&["push"]);
    win.m.ok(&["pull"]);
    let mut want_win = original.clone() + &turn(&sw, SID, 1);
    assert_eq!(read(&on_win), want_win);

    // Both add a turn: Windows merges (the union replaces the file it has), and both end
    // with every turn, each in its own spelling.
    append(&on_lin, &turn(&sl, SID, 2));
    lin.m.ok(&["push"]);
    append(&on_win, &turn(&sw, SID, 3));
    win.m.ok(&["pull"]);
    want_win += &(turn(&sw, SID, 2) + &turn(&sw, SID, 3));
    assert_eq!(read(&on_win), want_win);
    win.m.ok(&["push"]);
    lin.m.ok(&["pull"]);
    assert_eq!(
        read(&on_lin),
        transcript(&sl, SID) + &turn(&sl, SID, 1) + &turn(&sl, SID, 2) + &turn(&sl, SID, 3)
    );
}

#[test]
fn a_session_pushed_on_linux_comes_back_from_windows_byte_for_byte() {
    let w = World::new();
    let Some((win, lin)) = pair(&w) else { return };
    let (sw, sl) = (Spec::of(&win).plain(), Spec::of(&lin));
    let original = transcript(&sl, SID);
    let on_lin = lin.m.write_transcript(&lin.cwd(), SID, original.as_bytes());
    lin.m.ok(&["push"]);

    win.m.ok(&["pull"]);
    let on_win = win.m.transcript_path(&win.cwd(), SID);
    let pulled = read(&on_win);
    assert_eq!(
        pulled,
        transcript(&sw, SID),
        "Windows paths, with backslashes"
    );
    assert!(
        pulled.contains(&format!(r#""cwd":"{}""#, sw.cwd().replace('\\', r"\\"))),
        "{pulled}"
    );
    assert!(ids(&win.m.json(&["list"])).contains(&SID.to_string()));

    // Windows pushes what it has (and a turn of its own); Linux's own lines come back as they
    // were, the new one in Linux's spelling.
    win.m.ok(&["push"]);
    append(&on_win, &turn(&sw, SID, 1));
    win.m.ok(&["push"]);
    lin.m.ok(&["pull"]);
    assert_eq!(read(&on_lin), original + &turn(&sl, SID, 1));
    let remote = lin.m.json(&["list", "--remote"]);
    assert!(ids(&remote).contains(&SID.to_string()), "{remote}");
}

#[test]
fn resume_on_windows_runs_claude_exe_in_the_mapped_folder_and_pushes_after() {
    let w = World::new();
    let Some((win, lin)) = pair(&w) else { return };
    let sl = Spec::of(&lin);
    lin.m
        .write_transcript(&lin.cwd(), SID, transcript(&sl, SID).as_bytes());
    lin.m.ok(&["push"]);
    std::fs::create_dir_all(win.m.home.join("projects").join("app")).unwrap();

    win.m.ok(&["resume", SID]);
    let log = win.m.claude_log();
    assert_eq!(log.len(), 1, "claude.exe ran once: {log:?}");
    let run: serde_json::Value = serde_json::from_str(&log[0]).unwrap();
    assert_eq!(run["argv"], json!(["--resume", SID]), "{run}");
    let cwd = run["cwd"].as_str().unwrap();
    assert!(
        cwd.eq_ignore_ascii_case(&win.cwd()),
        "claude.exe ran in {cwd}, not {}",
        win.cwd()
    );

    // The turn claude.exe added was pushed when it exited, and the lock released.
    lin.m.ok(&["pull"]);
    let text = read(&lin.m.transcript_path(&lin.cwd(), SID));
    let added = text
        .lines()
        .find(|l| l.contains("a turn from claude.exe"))
        .unwrap_or_else(|| panic!("the new turn is missing:\n{text}"));
    assert!(
        added.contains(&format!(r#""cwd":"{}""#, lin.cwd())),
        "mapped to Linux: {added}"
    );
    let remote = w.path().join("remote.git");
    assert_eq!(repo_file(&remote, &format!("locks/{SID}.json")), None);
}

/// `git.exe` under Wine, relayed to the host's git, with `stdin`.
fn relayed_git(args: &[&str], stdin: &[u8]) -> Output {
    let wine = wine().expect("checked by the caller");
    let mut c = wine.command(&wine.exe("git.exe"));
    c.args(args)
        .env(wintest::proto::RELAY_VAR, &wine.relay)
        .env("GIT_CONFIG_GLOBAL", "NUL")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    out
}

fn host_git(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = std::process::Command::new("git")
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    out
}

#[test]
fn the_git_relay_carries_every_byte_both_ways_and_the_exit_code() {
    let Some(wine) = wine() else { return };
    let w = World::new();
    // Every byte value, then 3 MiB more of them in a pattern that no chunking hides.
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend(
        (0..3 * 1024 * 1024 + 17).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8),
    );
    let want = host_git(&["hash-object", "--stdin"], &data);
    assert!(want.status.success());

    let out = relayed_git(&["hash-object", "--stdin"], &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        stdout(&want),
        "the same object id as the host's git"
    );

    // Into a repository named by its Windows path, and back out on standard output.
    let repo = w.path().join("bytes.git");
    let repo_win = wine.win(&repo);
    let out = relayed_git(&["init", "--bare", "--quiet", &repo_win], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(repo.join("HEAD").is_file(), "created at the host path");
    let out = relayed_git(
        &["--git-dir", &repo_win, "hash-object", "-w", "--stdin"],
        &data,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let oid = stdout(&out).trim().to_string();
    let out = relayed_git(&["--git-dir", &repo_win, "cat-file", "blob", &oid], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == data, "the blob came back byte for byte");

    // git's exit code and its messages, with the path in the Windows spelling.
    let out = relayed_git(
        &[
            "--git-dir",
            &repo_win,
            "rev-parse",
            "--verify",
            "-q",
            "refs/heads/none",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let missing = wine.win(&w.path().join("missing.git"));
    let out = relayed_git(&["--git-dir", &missing, "log"], b"");
    assert_eq!(out.status.code(), Some(128));
    assert!(stderr(&out).contains(&missing), "{}", stderr(&out));
}

/// Wait (60 s at most) until `done` says so: an event, not time passing.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Whether the remote holds a line with this text (in any transcript segment).
fn remote_has(remote: &Path, text: &str) -> bool {
    common::repo_paths(remote)
        .iter()
        .filter(|p| p.starts_with("projects/"))
        .any(|p| common::repo_file(remote, p).is_some_and(|t| t.contains(text)))
}

#[test]
fn a_detached_daemon_on_windows_pushes_and_stops_through_its_stop_file() {
    let w = World::new();
    let Some((win, _lin)) = pair(&w) else { return };
    let remote = w.path().join("remote.git");
    win.m.ok(&["config", "set", "daemon_debounce_secs", "1"]);
    // A pid file naming no running process does not count.
    std::fs::write(
        win.m.tool.join("daemon.pid"),
        r#"{"pid": 4000000, "started": 1, "started_at": "2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(win.m.json(&["daemon", "--status"])["running"], false);

    // Whatever happens below, the daemon is asked to stop when the test ends.
    struct StopFile(std::path::PathBuf);
    impl Drop for StopFile {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.0, b"stop");
        }
    }
    let _stop = StopFile(win.m.tool.join("daemon.stop"));

    // `--detach` returns at once. (Whether the daemon keeps the caller's pipes open cannot be
    // seen under Wine: Wine starts the daemon's host process with the host descriptors 0-2 of
    // the one that started it, whatever its Windows handles are; so the output goes nowhere.)
    let mut start = win.m.cmd();
    start
        .args(["daemon", "--detach", "--interval", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = start.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "daemon --detach returned"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success());
    let mut status = serde_json::Value::Null;
    wait_for("the daemon to run", || {
        status = win.m.json(&["daemon", "--status"]);
        status["running"] == true
    });
    assert_ne!(status["daemon"]["pid"], 4000000, "{status}");

    // It pushes what Claude Code writes.
    let sw = Spec::of(&win).plain();
    win.m
        .write_transcript(&win.cwd(), SID, transcript(&sw, SID).as_bytes());
    wait_for("the daemon's push", || {
        remote_has(&remote, &format!("{SID}-u2"))
    });

    // Stopped through the stop file (Windows has no SIGTERM): it leaves, removing its pid file.
    let out = win.m.ok(&["daemon", "--stop"]);
    assert!(out.contains("Stopped"), "{out}");
    assert!(!win.m.tool.join("daemon.pid").exists());
    assert_eq!(win.m.json(&["daemon", "--status"])["running"], false);
}

/// Run `c` with `input` on its standard input; its output must close within 60 s.
fn bounded(mut c: std::process::Command, input: &[u8], what: &str) -> Output {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} did not return, or left its output open"))
        .unwrap()
}

#[test]
fn hooks_on_windows_run_in_the_exec_form_and_the_end_hook_pushes_in_the_background() {
    let w = World::new();
    let Some((win, _lin)) = pair(&w) else { return };
    let wine = wine().expect("checked by pair");
    let remote = w.path().join("remote.git");
    win.m.ok(&["setup-hooks"]);
    let settings: serde_json::Value =
        serde_json::from_str(&read(&win.m.claude.join("settings.json"))).unwrap();
    let hook = &settings["hooks"]["SessionEnd"][0]["hooks"][0];
    // The exec form: no shell (Git Bash, PowerShell or cmd) parses it.
    let program = hook["command"].as_str().unwrap();
    assert!(
        program.eq_ignore_ascii_case(&wine.win(&wine.exe("ccsync.exe"))),
        "{hook}"
    );
    assert_eq!(
        hook["args"],
        json!(["hook", "session-end", "--home", wine.win(&win.m.tool)]),
        "{hook}"
    );

    // Claude Code on Windows ends a session: the hook answers at once and pushes it in the
    // background (a detached worker that keeps none of the hook's handles).
    let sw = Spec::of(&win).plain();
    let path = win
        .m
        .write_transcript(&win.cwd(), SID, transcript(&sw, SID).as_bytes());
    let input = json!({"session_id": SID, "cwd": win.cwd(), "hook_event_name": "SessionEnd",
                       "reason": "exit", "transcript_path": wine.win(&path)})
    .to_string();
    let mut c = common::windows::program_command(&win.m, program);
    c.args(
        hook["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap()),
    );
    let out = bounded(c, input.as_bytes(), "the session-end hook");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    wait_for("the hook's push", || {
        remote_has(&remote, &format!("{SID}-u2"))
    });
}
