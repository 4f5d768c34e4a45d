//! Interactive use in a real terminal, driven through tmux (`send-keys`, `capture-pane`): the
//! resume picker (filter, select, cancel), the questions of `init`, and git's progress during a
//! long transfer.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

struct Tmux {
    socket: String,
}

impl Tmux {
    /// A private tmux server, or `None` when tmux is not installed (CI installs it).
    fn new(w: &World) -> Option<Tmux> {
        if !Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            eprintln!("tmux is not installed: skipping the terminal tests");
            return None;
        }
        Some(Tmux {
            socket: w.path().join("tmux.sock").to_string_lossy().into_owned(),
        })
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-S", &self.socket]);
        c
    }

    /// Run `shell` (a command line) in a new 120×30 window named `name`.
    fn run(&self, name: &str, shell: &str) {
        let st = self
            .cmd()
            .args([
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "30",
                "-s",
                name,
                shell,
            ])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn screen(&self, name: &str) -> String {
        let o = self
            .cmd()
            .args(["capture-pane", "-p", "-t", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn keys(&self, name: &str, keys: &[&str]) {
        let mut c = self.cmd();
        c.args(["send-keys", "-t", name]).args(keys);
        assert!(c.status().unwrap().success());
    }

    /// Wait until the screen shows `text`; returns how long it took.
    fn wait_for(&self, name: &str, text: &str) -> Duration {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if self.screen(name).contains(text) {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{text:?} never appeared:\n{}", self.screen(name));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// A shell command line running ccsync on machine `m` with its environment, writing the exit
/// status to `status_file`.
fn shell_line(m: &Machine, args: &str, status_file: &Path) -> String {
    let path = format!(
        "{}:{}",
        m.bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    format!(
        "env -i PATH='{path}' HOME='{}' CLAUDE_CONFIG_DIR='{}' CCSYNC_HOME='{}' GIT_CONFIG_GLOBAL=/dev/null TERM=xterm-256color LANG=C.UTF-8 '{}' {args}; echo $? > '{}'; sleep 30",
        m.home.display(),
        m.claude.display(),
        m.tool.display(),
        bin_path().display(),
        status_file.display()
    )
}

fn wait_file(p: &Path) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(s) = std::fs::read_to_string(p)
            && !s.is_empty()
        {
            return s.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} never written", p.display());
}

#[test]
fn picker_filters_selects_and_cancels() {
    let w = World::new();
    let Some(tmux) = Tmux::new(&w) else { return };
    let remote = w.path().join("sync.git");
    let m = w.machine("a");
    m.init(&remote, &["--sync-dir", "~"]);
    m.fake_claude();
    let cwd = format!("{}/work", m.home.display());
    std::fs::create_dir_all(&cwd).unwrap();
    let ids = [
        "aaaa0000-0000-4000-8000-000000000001",
        "bbbb0000-0000-4000-8000-000000000002",
        "cccc0000-0000-4000-8000-000000000003",
    ];
    let titles = [
        "alpha parser work",
        "beta documentation",
        "gamma flaky tests",
    ];
    for (i, (id, title)) in ids.iter().zip(titles).enumerate() {
        let line = user_line(
            id,
            &cwd,
            &format!("u{i}"),
            None,
            &ts_at(i as u32 * 10),
            title,
        );
        m.write_transcript(&cwd, id, format!("{line}\n").as_bytes());
    }
    m.ok(&["push"]);

    // Filter and select.
    let status = w.path().join("status1");
    tmux.run("pick", &shell_line(&m, "resume", &status));
    let took = tmux.wait_for("pick", "Resume a session");
    eprintln!(
        "picker visible after {} ms (including process start and the quick pull)",
        took.as_millis()
    );
    let screen = tmux.screen("pick");
    for t in titles {
        assert!(screen.contains(t), "{screen}");
    }
    assert!(
        screen.contains("MACHINE") && screen.contains("AGE"),
        "{screen}"
    );
    tmux.keys("pick", &["-l", "flaky"]);
    tmux.wait_for("pick", "1/3 sessions");
    let screen = tmux.screen("pick");
    assert!(
        screen.contains("gamma flaky tests") && !screen.contains("alpha parser"),
        "{screen}"
    );
    tmux.keys("pick", &["Enter"]);
    assert_eq!(wait_file(&status), "0");
    let log = m.claude_log();
    assert!(!log.is_empty());
    assert!(log[0].contains(&format!("--resume {}", ids[2])), "{log:?}");

    // Arrow keys move the selection.
    let status = w.path().join("status2");
    tmux.run("arrows", &shell_line(&m, "resume", &status));
    tmux.wait_for("arrows", "3/3 sessions");
    tmux.keys("arrows", &["Down"]);
    tmux.keys("arrows", &["Enter"]);
    assert_eq!(wait_file(&status), "0");
    let starts: Vec<String> = m
        .claude_log()
        .into_iter()
        .filter(|l| l.starts_with("start"))
        .collect();
    assert_eq!(starts.len(), 2);
    // Newest first: gamma (just resumed), then beta.
    assert!(
        starts[1].contains(ids[1]) || starts[1].contains(ids[0]),
        "{starts:?}"
    );

    // Esc cancels: exit 0, Claude Code not started.
    let status = w.path().join("status3");
    tmux.run("cancel", &shell_line(&m, "resume", &status));
    tmux.wait_for("cancel", "Resume a session");
    tmux.keys("cancel", &["Escape"]);
    assert_eq!(wait_file(&status), "0");
    assert_eq!(
        m.claude_log()
            .iter()
            .filter(|l| l.starts_with("start"))
            .count(),
        2
    );
}

#[test]
fn init_asks_for_the_paths_other_machines_defined() {
    let w = World::new();
    let Some(tmux) = Tmux::new(&w) else { return };
    let remote = w.path().join("sync.git");
    let a = w.machine("a");
    a.init(&remote, &["--add-placeholder", "PROJECTS=/srv/a/projects"]);
    let b = w.machine("b");
    let status = w.path().join("status");
    tmux.run(
        "init",
        &shell_line(
            &b,
            &format!("init --machine-id b --remote '{}'", remote.display()),
            &status,
        ),
    );
    tmux.wait_for("init", "Path of PROJECTS on this machine");
    assert!(tmux.screen("init").contains("a: /srv/a/projects"));
    tmux.keys("init", &["-l", "~/code"]);
    tmux.keys("init", &["Enter"]);
    assert_eq!(wait_file(&status), "0");
    assert_eq!(
        b.config()["placeholders"]["PROJECTS"],
        format!("{}/code", b.home.display())
    );
}

#[test]
fn ctrl_c_reaches_claude_and_the_clean_up_still_runs() {
    let w = World::new();
    let Some(tmux) = Tmux::new(&w) else { return };
    let remote = w.path().join("sync.git");
    let m = w.machine("a");
    m.init(&remote, &["--sync-dir", "~"]);
    m.fake_claude();
    m.set("claude.sleep", "60");
    let cwd = format!("{}/work", m.home.display());
    std::fs::create_dir_all(&cwd).unwrap();
    let id = "dddd0000-0000-4000-8000-000000000004";
    let line = user_line(id, &cwd, "u0", None, &ts_at(0), "interrupt me");
    m.write_transcript(&cwd, id, format!("{line}\n").as_bytes());
    m.ok(&["push"]);
    let status = w.path().join("status");
    tmux.run("ctrlc", &shell_line(&m, &format!("resume {id}"), &status));
    let start = Instant::now();
    while !m.claude_log().iter().any(|l| l.starts_with("start")) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "claude never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        repo_file(&remote, &format!("locks/{id}.json")).is_some(),
        "locked while Claude Code runs"
    );
    tmux.keys("ctrlc", &["C-c"]);
    assert_eq!(wait_file(&status), "0", "ccsync itself was not interrupted");
    assert!(
        !m.claude_log().iter().any(|l| l.starts_with("end")),
        "Claude Code got the interrupt"
    );
    assert!(
        repo_file(&remote, &format!("locks/{id}.json")).is_none(),
        "released after the interrupt"
    );
    let stored = repo_paths(&remote)
        .into_iter()
        .filter(|p| p.contains(id) && p.contains("transcript/"))
        .count();
    assert!(stored >= 1);
}

#[test]
fn a_long_transfer_shows_gits_progress_on_the_terminal_and_then_clears_it() {
    let w = World::new();
    let Some(t) = Tmux::new(&w) else { return };
    let m = w.machine("a");
    m.init(&w.path().join("sync.git"), &["--sync-dir", "~"]);
    let mut cfg = m.config();
    cfg["remote"] = format!("ssh://h{}/sync.git", w.path().display()).into();
    std::fs::write(
        m.tool.join("config.json"),
        serde_json::to_vec_pretty(&cfg).unwrap(),
    )
    .unwrap();
    // First on PATH: git's ssh is the slow link.
    relay_ssh(&m, &w, "ssh", None);
    big_session(&m, "a1100000-0000-4000-8000-000000000021", 1_500_000);
    let status = w.path().join("push-status");
    t.run("push", &shell_line(&m, "push", &status));
    t.wait_for("push", "Writing objects");
    let during = t.screen("push");
    eprintln!(
        "during the push: {}",
        during
            .lines()
            .find(|l| l.contains("Writing objects"))
            .unwrap_or_default()
    );
    assert_eq!(wait_file(&status), "0", "{}", t.screen("push"));
    let screen = t.screen("push");
    assert!(!screen.contains("Writing objects"), "cleared:\n{screen}");
    assert!(screen.contains("Pushed"), "{screen}");
}
