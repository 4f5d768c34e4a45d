//! Drive the real Claude Code client (a pinned npm release, see `scripts/install-claude-code.sh`)
//! in tmux on a simulated [`Machine`], against the loopback Messages API of `messages_api.rs`.
//!
//! The client runs with a cleared environment: the machine's HOME, CLAUDE_CONFIG_DIR and
//! CCSYNC_HOME, `ANTHROPIC_BASE_URL` pointing at the stand-in, a fake API key, and every switch the
//! client has for traffic other than the API turned off (checked with `strace -e connect`: the
//! only connections are to the stand-in). `CLAUDE_CODE_DISABLE_TERMINAL_TITLE` is left unset on
//! purpose: in the interactive client it also turns off the AI session title (`ai-title` lines),
//! which real users get.
//!
//! The per-machine `$CLAUDE_CONFIG_DIR/.claude.json` skips the first-run screens:
//! `hasCompletedOnboarding` (onboarding and theme picker), `customApiKeyResponses.approved`
//! holding the last 20 characters of the key (the "use this API key?" prompt), and
//! `projects[<dir>].hasTrustDialogAccepted` (the folder-trust dialog; the client also accepts a
//! trusted ancestor, so the machine's base directory is trusted).
//!
//! Waiting is always polling for a condition with a deadline ([`WAIT`]): text on the screen, the
//! end of a turn ("✻ Brewed for 0s"), a reply's line in the transcript, the client's exit.
//!
//! Each [`Tui`] has its own tmux server on a private socket (killed on drop), with
//! `remain-on-exit` so the last screen can still be read after the client ends; the launcher
//! script records the client's exit status.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Machine;
use super::messages_api::MessagesApi;

/// The environment variable naming the real `claude` binary.
pub const ENV: &str = "CCSYNC_REAL_CLAUDE";
pub const SKIP_MESSAGE: &str = "SKIPPED: real Claude Code not installed (run scripts/install-claude-code.sh and set CCSYNC_REAL_CLAUDE)";
/// A syntactically plausible key; only the stand-in ever sees it.
pub const API_KEY: &str = "sk-ant-api03-ccsync-conformance-0000000000000000000000000000-testAA";
/// The version the tests were written against.
pub const PINNED_VERSION: &str = "2.1.197";
pub const COLUMNS: u16 = 200;
pub const ROWS: u16 = 50;

/// The real client named by `CCSYNC_REAL_CLAUDE`. When it is unset: `None` after a loud note on
/// stderr, or a failure when `CI` is set (CI must run these tests).
pub fn find() -> Option<PathBuf> {
    let Some(exe) = std::env::var_os(ENV).filter(|v| !v.is_empty()) else {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
            panic!(
                "CI is set but {ENV} is not: the conformance tests must run against the real \
                 client in CI. Run `export {ENV}=$(scripts/install-claude-code.sh | tail -1)`."
            );
        }
        // Straight to the stderr stream, not `eprintln!`, which the test harness captures and
        // shows only for failing tests.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "\n*** {SKIP_MESSAGE} ***\n");
        return None;
    };
    let exe = PathBuf::from(exe);
    assert!(
        exe.is_file(),
        "{ENV}={} is not a file; run scripts/install-claude-code.sh",
        exe.display()
    );
    let v = version(&exe);
    if !v.starts_with(&format!("{PINNED_VERSION} ")) {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "note: {ENV} is Claude Code {v}; these tests were written against {PINNED_VERSION}"
        );
    }
    let tmux = Command::new("tmux").arg("-V").output();
    assert!(
        tmux.is_ok_and(|o| o.status.success()),
        "{ENV} is set but tmux is not installed; the real client is driven through tmux"
    );
    Some(exe)
}

/// `claude --version`, e.g. `2.1.197 (Claude Code)`.
pub fn version(exe: &Path) -> String {
    let out = Command::new(exe).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Quote for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The real client set up on one simulated machine.
pub struct Client {
    pub exe: PathBuf,
    pub home: PathBuf,
    pub claude_dir: PathBuf,
    pub tool: PathBuf,
    pub bin: PathBuf,
    pub base_url: String,
    /// Extra environment for the client (after the defaults, so it can override them).
    pub env: Vec<(String, String)>,
}

impl Client {
    /// Set up `exe` on machine `m` talking to `api`: writes the machine's `.claude.json` so the
    /// first-run screens are skipped, trusting the machine's base directory (the parent of HOME).
    pub fn new(exe: &Path, m: &Machine, api: &MessagesApi) -> Client {
        let c = Client {
            exe: exe.to_path_buf(),
            home: m.home.clone(),
            claude_dir: m.claude.clone(),
            tool: m.tool.clone(),
            bin: m.bin.clone(),
            base_url: api.base_url(),
            env: Vec::new(),
        };
        let base = m.home.parent().unwrap_or(&m.home).to_path_buf();
        c.trust(&base);
        c
    }

    /// `$CLAUDE_CONFIG_DIR/.claude.json` (the client's global config file when CLAUDE_CONFIG_DIR
    /// is set).
    pub fn global_config_path(&self) -> PathBuf {
        self.claude_dir.join(".claude.json")
    }

    /// The global config, with the first-run keys set and `dir` trusted; keeps what the client
    /// wrote there itself.
    pub fn trust(&self, dir: &Path) {
        let path = self.global_config_path();
        let mut cfg: Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| json!({}));
        let key_tail = &API_KEY[API_KEY.len() - 20..];
        cfg["hasCompletedOnboarding"] = json!(true);
        cfg["lastOnboardingVersion"] = json!(PINNED_VERSION);
        cfg["theme"] = json!("dark");
        cfg["customApiKeyResponses"] = json!({"approved": [key_tail], "rejected": []});
        if !cfg["projects"].is_object() {
            cfg["projects"] = json!({});
        }
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        cfg["projects"][dir.to_string_lossy().as_ref()]["hasTrustDialogAccepted"] = json!(true);
        std::fs::create_dir_all(&self.claude_dir).unwrap();
        std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    }

    /// Add an environment variable for the client.
    pub fn with_env(mut self, key: &str, value: &str) -> Client {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The client's environment (it starts from an empty one).
    pub fn environment(&self, cwd: &Path) -> Vec<(String, String)> {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), path),
            ("HOME".into(), s(&self.home)),
            ("CLAUDE_CONFIG_DIR".into(), s(&self.claude_dir)),
            ("CCSYNC_HOME".into(), s(&self.tool)),
            ("PWD".into(), s(cwd)),
            ("TERM".into(), "xterm-256color".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("TZ".into(), "UTC".into()),
            ("ANTHROPIC_BASE_URL".into(), self.base_url.clone()),
            ("ANTHROPIC_API_KEY".into(), API_KEY.into()),
            ("DISABLE_AUTOUPDATER".into(), "1".into()),
            ("DISABLE_UPDATES".into(), "1".into()),
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                "1".into(),
            ),
            ("DISABLE_TELEMETRY".into(), "1".into()),
            ("DISABLE_ERROR_REPORTING".into(), "1".into()),
            ("DISABLE_GROWTHBOOK".into(), "1".into()),
            ("CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY".into(), "1".into()),
            (
                "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL".into(),
                "1".into(),
            ),
            ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ];
        for (k, v) in &self.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }

    /// Run `claude ARGS` in `cwd` without a terminal (print mode, `-p`), with the same
    /// environment; killed after `timeout` (a failure). Returns its output.
    pub fn run(&self, cwd: &Path, args: &[&str], timeout: Duration) -> Output {
        use std::io::Read as _;
        let mut cmd = Command::new(&self.exe);
        cmd.env_clear()
            .current_dir(cwd)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in self.environment(cwd) {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start claude");
        // Drain the pipes in threads so a chatty client cannot block on them.
        let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
        let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "claude {args:?} in {} did not end within {timeout:?}; stderr:\n{}",
                    cwd.display(),
                    String::from_utf8_lossy(&err.join().unwrap_or_default())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    }

    /// Start `claude ARGS` in `cwd` (which must exist) in a fresh tmux server.
    pub fn start(&self, cwd: &Path, args: &[&str]) -> Tui {
        assert!(cwd.is_dir(), "{} is not a directory", cwd.display());
        let dir = tempfile::Builder::new()
            .prefix("ccsync-tmux-")
            .tempdir()
            .unwrap();
        let socket = dir.path().join("sock");
        let conf = dir.path().join("tmux.conf");
        std::fs::write(
            &conf,
            "set -g remain-on-exit on\nset -g history-limit 50000\nset -g status off\n",
        )
        .unwrap();
        // The client runs in the foreground (it needs the terminal) of an inner shell that
        // records its own pid and then becomes the client (`exec`), so `Drop` can wait for it.
        let pid_file = dir.path().join("pid");
        let mut script = String::from("#!/bin/sh\n");
        script += &format!(
            "cd {} || exit 97\nsh -c 'echo $$ > \"$0\"; exec \"$@\"' {} env -i",
            sh_quote(&cwd.to_string_lossy()),
            sh_quote(&pid_file.to_string_lossy())
        );
        for (k, v) in self.environment(cwd) {
            script += &format!(" {}", sh_quote(&format!("{k}={v}")));
        }
        script += &format!(" {}", sh_quote(&self.exe.to_string_lossy()));
        for a in args {
            script += &format!(" {}", sh_quote(a));
        }
        // The exit status, written atomically once the client has ended (tmux's own
        // `pane_dead_status` is sometimes still empty when the pane is already dead).
        let status = dir.path().join("status");
        let status_s = sh_quote(&status.to_string_lossy());
        let tmp_s = sh_quote(&dir.path().join("status.tmp").to_string_lossy());
        script += &format!("\necho $? > {tmp_s} && mv {tmp_s} {status_s}\n");
        let launcher = dir.path().join("run-claude.sh");
        std::fs::write(&launcher, script).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let tui = Tui {
            socket,
            conf,
            status,
            pid_file,
            claude_dir: self.claude_dir.clone(),
            dir,
            cwd: cwd.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        let out = tui.tmux(&[
            "new-session",
            "-d",
            "-s",
            "claude",
            "-x",
            &COLUMNS.to_string(),
            "-y",
            &ROWS.to_string(),
            "-c",
            &cwd.to_string_lossy(),
            &launcher.to_string_lossy(),
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tui
    }
}

/// One run of the client in its own tmux server.
pub struct Tui {
    socket: PathBuf,
    conf: PathBuf,
    status: PathBuf,
    /// Holds the client's pid once it runs.
    pid_file: PathBuf,
    claude_dir: PathBuf,
    dir: tempfile::TempDir,
    pub cwd: PathBuf,
    pub args: Vec<String>,
}

/// How long the client may take to show something (start-up is 1–3 s here).
pub const WAIT: Duration = Duration::from_secs(30);

impl Tui {
    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .env_remove("TMUX")
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Send tmux key names (`Enter`, `Escape`, `C-d`, `Down`, …).
    pub fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "claude"];
        args.extend_from_slice(keys);
        let out = self.tmux(&args);
        assert!(
            out.status.success(),
            "tmux send-keys {keys:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Type `text` literally (no key-name interpretation).
    pub fn type_text(&self, text: &str) {
        let out = self.tmux(&["send-keys", "-t", "claude", "-l", text]);
        assert!(
            out.status.success(),
            "tmux send-keys -l: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn capture(&self, from: Option<&str>) -> String {
        let mut args = vec!["capture-pane", "-p", "-J", "-t", "claude"];
        if let Some(f) = from {
            args.extend(["-S", f]);
        }
        let out = self.tmux(&args);
        // The client draws the prompt marker as "❯" + NO-BREAK SPACE: read it as a plain space.
        String::from_utf8_lossy(&out.stdout)
            .replace('\u{a0}', " ")
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The visible screen (wrapped lines joined, trailing blanks trimmed, no-break spaces as
    /// spaces).
    pub fn screen(&self) -> String {
        self.capture(None)
    }

    /// The scroll-back history and the visible screen.
    pub fn history(&self) -> String {
        self.capture(Some("-"))
    }

    /// Poll (bounded) until `pred(history)` holds; returns that text. Panics with the screen
    /// on timeout, or when the client ended first.
    pub fn wait_until(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.history();
            if pred(&text) {
                return text;
            }
            if let Some(status) = self.exit_status() {
                let text = self.history();
                if pred(&text) {
                    return text;
                }
                panic!(
                    "claude {:?} in {} exited ({status}) before {what}; screen:\n{text}",
                    self.args,
                    self.cwd.display()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what} (claude {:?} in {}); screen:\n{}",
                    self.args,
                    self.cwd.display(),
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (bounded) until `text` is on the screen or in the scroll-back.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        self.wait_until(&format!("{text:?}"), timeout, |s| s.contains(text))
    }

    /// Wait until the prompt input is ready (the start-up screen is drawn).
    pub fn wait_ready(&self) {
        self.wait_for("? for shortcuts", WAIT);
    }

    /// Type `text` into the prompt, wait until the input box shows it, press Enter.
    pub fn submit(&self, text: &str) {
        self.type_text(text);
        let shown = format!("❯ {text}");
        let deadline = Instant::now() + WAIT;
        while !self.screen().contains(&shown) {
            assert!(
                Instant::now() < deadline,
                "the input box never showed {text:?}; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
        self.send_keys(&["Enter"]);
    }

    /// Wait for `reply` (a text of the scripted answer) and then for the end of the turn: the
    /// client's "✻ <Verb>ed for Ns" line below it. The answer is drawn while it streams, before
    /// the turn is recorded; a command typed in between (such as `/exit`) can end the client
    /// before the turn's lines reach the transcript.
    pub fn wait_reply(&self, reply: &str) -> String {
        self.wait_until(&format!("{reply:?} and the end of its turn"), WAIT, |s| {
            s.rfind(reply)
                .is_some_and(|at| s[at..].lines().skip(1).any(is_turn_done_line))
        })
    }

    /// How many times `text` occurs in the transcripts of this client's config dir (every
    /// `projects/*/*.jsonl`). `text` must be the same in JSON (no quotes, backslashes, control
    /// characters).
    pub fn recorded(&self, text: &str) -> usize {
        let Ok(folders) = std::fs::read_dir(self.claude_dir.join("projects")) else {
            return 0;
        };
        folders
            .filter_map(|f| f.ok())
            .filter_map(|f| std::fs::read_dir(f.path()).ok())
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|t| t.matches(text).count())
            .sum()
    }

    /// Wait (bounded) until `text` occurs at least `times` times in the transcripts. The client
    /// writes transcript lines through a queue drained every 100 ms; an `/exit` right after a
    /// turn has been seen to lose that turn's lines, so exit only once they are on disk.
    pub fn wait_recorded(&self, text: &str, times: usize) {
        let deadline = Instant::now() + WAIT;
        while self.recorded(text) < times {
            assert!(
                Instant::now() < deadline,
                "{text:?} never reached a transcript under {}; screen:\n{}",
                self.claude_dir.display(),
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send a prompt and wait for `reply` (a text the scripted answer contains, JSON-safe as for
    /// [`Tui::recorded`]), the end of the turn and the reply's line in the transcript.
    pub fn ask(&self, prompt: &str, reply: &str) -> String {
        let before = self.recorded(reply);
        self.submit(prompt);
        let screen = self.wait_reply(reply);
        self.wait_recorded(reply, before + 1);
        screen
    }

    /// `/rename NAME`, waiting for the client's confirmation.
    pub fn rename(&self, name: &str) {
        self.submit(&format!("/rename {name}"));
        self.wait_for(&format!("Session renamed to: {name}"), WAIT);
    }

    /// Whether the pane's process (the launcher shell) has ended.
    fn pane_dead(&self) -> bool {
        let out = self.tmux(&["display-message", "-p", "-t", "claude", "#{pane_dead}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    /// The client's exit status once it has ended (-1 when the launcher itself died).
    pub fn exit_status(&self) -> Option<i32> {
        if let Ok(s) = std::fs::read_to_string(&self.status) {
            return Some(s.trim().parse().unwrap_or(-1));
        }
        // Read the file again after seeing the pane dead: it may have been written in between.
        if self.pane_dead() {
            return Some(
                std::fs::read_to_string(&self.status)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(-1),
            );
        }
        None
    }

    /// Wait (bounded) for the client to end; returns its exit status.
    pub fn wait_exit(&self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exit_status() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "claude did not exit within {timeout:?}; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/exit`, then wait for the process to end (status 0 expected).
    pub fn exit(&self) {
        self.submit("/exit");
        let status = self.wait_exit(WAIT);
        assert_eq!(
            status,
            0,
            "claude exited with {status}; screen:\n{}",
            self.screen()
        );
    }

    /// Ctrl-D twice (the second within the client's "Press Ctrl-D again to exit" window).
    pub fn ctrl_d_twice(&self) -> i32 {
        self.send_keys(&["C-d"]);
        self.wait_for("again to exit", WAIT);
        self.send_keys(&["C-d"]);
        self.wait_exit(WAIT)
    }
}

/// The line the client draws when a turn has ended, e.g. "✻ Brewed for 0s" (while the turn
/// runs the spinner line reads like "✻ Brewing… (esc to interrupt)").
fn is_turn_done_line(line: &str) -> bool {
    let l = line.trim();
    l.starts_with("✻ ")
        && l.contains(" for ")
        && l.ends_with('s')
        && !l.contains('…')
        && !l.contains('(')
}

/// Whether process `pid` still exists (a zombie counts).
fn alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Tui {
    /// Kill the tmux server; a client still running (a failed test) gets its hang-up and is
    /// waited for (bounded, then killed), so it cannot write into the machine's directories
    /// after the test has removed them.
    fn drop(&mut self) {
        let running = self.exit_status().is_none();
        let _ = self.tmux(&["kill-server"]);
        let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .map(|p| p.trim().to_string())
            .filter(|p| running && !p.is_empty())
        else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(&pid) {
            if Instant::now() >= deadline {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The client's project folder name for `cwd` (a realpath), written out here independently of
/// ccsync: every UTF-16 unit outside `[A-Za-z0-9]` becomes `-`; past 200 units the name is its
/// first 200, `-`, and the base-36 absolute value of the Java-style 32-bit hash of the path.
pub fn folder_name(cwd: &str) -> String {
    let short = super::enc(cwd);
    if short.len() <= 200 {
        return short;
    }
    let mut h: i32 = 0;
    for u in cwd.encode_utf16() {
        h = h.wrapping_shl(5).wrapping_sub(h).wrapping_add(u as i32);
    }
    let mut n = (h as i64).unsigned_abs();
    let mut digits = Vec::new();
    loop {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    format!("{}-{}", &short[..200], String::from_utf8(digits).unwrap())
}

/// The session ids (UUID-named transcripts) in the project folder of `cwd` under `claude_dir`.
pub fn session_ids(claude_dir: &Path, cwd: &Path) -> Vec<String> {
    let folder = claude_dir
        .join("projects")
        .join(folder_name(&cwd.to_string_lossy()));
    let mut ids: Vec<String> = std::fs::read_dir(&folder)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".jsonl"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}
