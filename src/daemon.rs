//! Background sync: watch the Claude Code dir, push soon after transcripts stop changing, and at
//! every interval pull, push, keep the hooks' locks alive and clean expired locks.
//!
//! One daemon per machine: it holds an exclusive lock on `daemon.lock` in the tool home for its
//! whole life, and writes `daemon.pid` (pid and process start time, so a reused pid is never
//! taken for it). It stops on SIGTERM/SIGINT (or a `daemon.stop` file, for Windows), releasing
//! the locks it kept. Failures (offline remote, bad credentials) are logged and retried with
//! back-off; nothing stops the loop but a stop request. While nothing changes it sleeps.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::claude::ClaudeDir;
use crate::config::Home;
use crate::lock::{self, Holder, Refreshed, held};
use crate::store::Store;
use crate::sync::{Engine, PullOptions, PushOptions};

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub interval: Duration,
    pub debounce: Duration,
    pub push_only: bool,
    /// One full cycle, then exit.
    pub once: bool,
    /// The log file when detached (rotated at 2 MB).
    pub log_file: Option<PathBuf>,
}

/// `daemon.pid`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PidFile {
    pub pid: u32,
    #[serde(default)]
    pub started: Option<u64>,
    pub started_at: DateTime<Utc>,
}

/// One completed or failed operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Op {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub summary: String,
}

/// `state/daemon.json`: what the daemon did last.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    #[serde(default)]
    pub last_push: Option<Op>,
    #[serde(default)]
    pub last_pull: Option<Op>,
    #[serde(default)]
    pub last_error: Option<Op>,
}

pub fn pid_path(home: &Home) -> PathBuf {
    home.root.join("daemon.pid")
}
fn lock_path(home: &Home) -> PathBuf {
    home.root.join("daemon.lock")
}
fn stop_path(home: &Home) -> PathBuf {
    home.root.join("daemon.stop")
}
fn status_path(home: &Home) -> PathBuf {
    home.state_dir().join("daemon.json")
}
pub fn log_path(home: &Home) -> PathBuf {
    home.logs_dir().join("daemon.log")
}

/// The running daemon, if any (its pid file names a live process that is the one it recorded).
pub fn running(home: &Home) -> Option<PidFile> {
    let p: PidFile = serde_json::from_slice(&std::fs::read(pid_path(home)).ok()?).ok()?;
    crate::os::process_matches(p.pid, p.started).then_some(p)
}

pub fn load_status(home: &Home) -> Status {
    std::fs::read(status_path(home))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_status(home: &Home, s: &Status) {
    if crate::os::create_private_dir(&home.state_dir()).is_ok()
        && let Ok(b) = serde_json::to_vec_pretty(s)
    {
        let _ = crate::os::write_atomic(&status_path(home), &b, true);
    }
}

/// Run the daemon until stopped (or one cycle with `once`).
pub fn run(claude: &ClaudeDir, home: &Home, opts: &Options) -> Result<()> {
    home.ensure()?;
    let lockfile = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(lock_path(home))
        .with_context(|| format!("cannot open {}", lock_path(home).display()))?;
    if lockfile.try_lock().is_err() {
        let who = running(home)
            .map(|p| {
                format!(
                    " (pid {}, since {})",
                    p.pid,
                    p.started_at.format("%Y-%m-%d %H:%M:%S UTC")
                )
            })
            .unwrap_or_default();
        bail!(
            "a ccsync daemon is already running on this machine{who}: `ccsync daemon --stop` stops it"
        );
    }
    let me = std::process::id();
    let pid = PidFile {
        pid: me,
        started: crate::os::process_start_time(me),
        started_at: Utc::now(),
    };
    crate::os::write_atomic(&pid_path(home), &serde_json::to_vec_pretty(&pid)?, true)?;
    let _ = std::fs::remove_file(stop_path(home));
    crate::os::install_stop_handler();
    // The stop file (`daemon --stop`; the only way on Windows) also cuts a running git short.
    crate::os::stop_when_file_appears(stop_path(home));
    let result = main_loop(claude, home, opts);
    // Leaving: the hooks' locks this daemon kept alive are released.
    if let Ok(Some(config)) = home.load_config() {
        release_kept_locks(home, &config);
    }
    let _ = std::fs::remove_file(pid_path(home));
    drop(lockfile);
    result
}

fn stop_wanted(home: &Home) -> bool {
    crate::os::stop_requested() || stop_path(home).exists()
}

/// Paths whose changes matter: transcripts and their folders, memory, global files; not the
/// client's `sessions/` records of running processes (with either separator).
fn relevant(p: &Path) -> bool {
    let s = p.to_string_lossy();
    !s.contains(".ccsync-tmp-")
        && !p.components().any(|c| c.as_os_str() == "sessions")
        && !s.ends_with(".lock")
}

fn main_loop(claude: &ClaudeDir, home: &Home, opts: &Options) -> Result<()> {
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
            && ev.paths.iter().any(|p| relevant(p))
        {
            let _ = tx.send(());
        }
    })
    .map_err(|e| anyhow!("cannot watch {}: {e}", claude.root.display()))?;
    use notify::Watcher;
    let watch = |w: &mut notify::RecommendedWatcher, p: &Path, mode| {
        if p.exists()
            && let Err(e) = w.watch(p, mode)
        {
            tracing::warn!("cannot watch {}: {e}", p.display());
        }
    };
    std::fs::create_dir_all(claude.projects()).ok();
    watch(
        &mut watcher,
        &claude.projects(),
        notify::RecursiveMode::Recursive,
    );
    watch(
        &mut watcher,
        &claude.plans(),
        notify::RecursiveMode::Recursive,
    );
    watch(
        &mut watcher,
        &claude.root,
        notify::RecursiveMode::NonRecursive,
    );
    tracing::info!(
        "daemon started (pid {}): push {} s after changes, full sync every {} s{}",
        std::process::id(),
        opts.debounce.as_secs(),
        opts.interval.as_secs(),
        if opts.push_only { ", push only" } else { "" }
    );

    let mut status = load_status(home);
    let mut last_change: Option<Instant> = None;
    let mut next_full = Instant::now();
    // Failures are retried after a pause that doubles up to the interval.
    let base = opts
        .interval
        .clamp(Duration::from_secs(1), Duration::from_secs(10));
    let mut backoff = base;
    let mut retry_at: Option<Instant> = None;
    loop {
        if stop_wanted(home) {
            tracing::info!("stop requested");
            return Ok(());
        }
        let now = Instant::now();
        let due_push = last_change.is_some_and(|t| now.duration_since(t) >= opts.debounce);
        let due_full = now >= next_full;
        let may_run = retry_at.is_none_or(|t| now >= t);
        if may_run && (due_full || due_push) {
            // Each attempt asks the remote again, even if it was silent last time.
            crate::store::git::forget_silent_remote();
            let r = if due_full {
                full_cycle(claude, home, opts, &mut status)
            } else {
                push_cycle(claude, home, &mut status)
            };
            last_change = None;
            if due_full {
                next_full = Instant::now() + opts.interval;
            }
            match r {
                Ok(()) => {
                    backoff = base;
                    retry_at = None;
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    tracing::warn!("sync failed ({msg}); retrying in {} s", backoff.as_secs());
                    status.last_error = Some(Op {
                        at: Utc::now(),
                        ok: false,
                        summary: msg,
                    });
                    retry_at = Some(Instant::now() + backoff);
                    // Retry sooner than the interval, backing off up to it.
                    next_full = next_full.min(Instant::now() + backoff);
                    backoff = (backoff * 2).min(opts.interval.max(Duration::from_secs(10)));
                }
            }
            save_status(home, &status);
            rotate_log(opts);
            if opts.once {
                return Ok(());
            }
        }
        // Sleep until the next deadline, a change, or (at most a second) a stop check.
        let mut wait = next_full.saturating_duration_since(Instant::now());
        if let Some(t) = last_change {
            wait = wait.min((t + opts.debounce).saturating_duration_since(Instant::now()));
        }
        if let Some(t) = retry_at {
            wait = wait.max(t.saturating_duration_since(Instant::now()));
        }
        match rx.recv_timeout(wait.min(Duration::from_secs(1))) {
            Ok(()) => {
                // Coalesce a burst of events into one change.
                while rx.try_recv().is_ok() {}
                last_change = Some(Instant::now());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the file watcher stopped"),
        }
    }
}

fn push_cycle(claude: &ClaudeDir, home: &Home, status: &mut Status) -> Result<()> {
    let config = home.require_config()?;
    let engine = Engine::new(claude, home, &config)?;
    let r = crate::sync::push(&engine, &PushOptions::default());
    record_push(status, &r);
    r.map(|_| ())
}

fn record_push(status: &mut Status, r: &Result<crate::sync::PushReport>) {
    let op = match r {
        Ok(p) if p.up_to_date => None,
        Ok(p) => Some(Op {
            at: Utc::now(),
            ok: p.blocked.is_empty(),
            summary: format!(
                "{} new, {} updated session(s), +{} lines",
                p.sessions_new, p.sessions_updated, p.lines
            ),
        }),
        Err(e) => Some(Op {
            at: Utc::now(),
            ok: false,
            summary: format!("{e:#}"),
        }),
    };
    if let Some(op) = op {
        tracing::info!("push: {}", op.summary);
        status.last_push = Some(op);
    } else if let Some(p) = status.last_push.as_mut() {
        p.at = Utc::now();
        p.ok = true;
    } else {
        status.last_push = Some(Op {
            at: Utc::now(),
            ok: true,
            summary: "up to date".into(),
        });
    }
}

fn full_cycle(claude: &ClaudeDir, home: &Home, opts: &Options, status: &mut Status) -> Result<()> {
    let config = home.require_config()?;
    let engine = Engine::new(claude, home, &config)?;
    let t = Duration::from_secs(300);
    // Runs whose ccsync is gone (or sessions started by the hooks whose Claude Code exited).
    for r in crate::launch::recover(&engine, t, false) {
        if let Some(e) = r
            .outcome
            .push_error
            .as_ref()
            .or(r.outcome.release_error.as_ref())
        {
            tracing::warn!(
                "could not finish session {}: {e}",
                r.session_id.as_deref().unwrap_or("?")
            );
        }
    }
    refresh_kept_locks(home, &config, t);
    if !opts.push_only {
        let r = crate::sync::pull(
            &engine,
            &PullOptions {
                timeout: Some(t),
                ..PullOptions::default()
            },
        );
        status.last_pull = Some(match &r {
            Ok(p) => Op {
                at: Utc::now(),
                ok: true,
                summary: if p.up_to_date {
                    "up to date".into()
                } else {
                    format!(
                        "{} new, {} updated session(s), +{} lines",
                        p.sessions_new, p.sessions_updated, p.lines
                    )
                },
            },
            Err(e) => Op {
                at: Utc::now(),
                ok: false,
                summary: format!("{e:#}"),
            },
        });
        if let Ok(p) = &r
            && !p.up_to_date
        {
            tracing::info!(
                "pull: {}",
                status
                    .last_pull
                    .as_ref()
                    .map(|o| o.summary.as_str())
                    .unwrap_or("")
            );
        }
        r?;
    }
    let r = crate::sync::push(
        &engine,
        &PushOptions {
            timeout: Some(t),
            ..PushOptions::default()
        },
    );
    record_push(status, &r);
    r?;
    let store = Store::of_waiting(home, &config, t)?;
    let cleaned = lock::cleanup(&store, &config.machine_id, t)?;
    if !cleaned.is_empty() {
        tracing::info!("removed {} expired lock(s)", cleaned.len());
    }
    Ok(())
}

/// Sessions the hooks locked whose Claude Code still runs.
fn kept(home: &Home) -> Vec<String> {
    held::all(home)
        .into_iter()
        .filter(|(_, h)| h.ccsync_pid == 0 && h.locked && h.claude_alive())
        .filter_map(|(_, h)| h.session_id)
        .collect()
}

fn refresh_kept_locks(home: &Home, config: &crate::config::Config, t: Duration) {
    let sessions = kept(home);
    if sessions.is_empty() {
        return;
    }
    let holder = Holder::new(&config.machine_id, config.lock_ttl_secs);
    let Ok(store) = Store::of_waiting(home, config, t) else {
        return;
    };
    for sid in sessions {
        match lock::refresh(&store, &holder, &sid, t) {
            Ok(Refreshed::Yes(_)) => tracing::debug!("kept the lock of {sid}"),
            Ok(Refreshed::Lost(by)) => {
                tracing::warn!(
                    "the lock of {sid} was taken by {}",
                    by.map(|l| l.machine_id).unwrap_or_else(|| "nobody".into())
                )
            }
            Err(e) => tracing::warn!("could not refresh the lock of {sid}: {e:#}"),
        }
    }
}

fn release_kept_locks(home: &Home, config: &crate::config::Config) {
    let sessions: Vec<String> = held::all(home)
        .into_iter()
        .filter(|(_, h)| h.ccsync_pid == 0 && h.locked)
        .filter_map(|(_, h)| h.session_id)
        .collect();
    if sessions.is_empty() {
        return;
    }
    // Leaving must be prompt (a signal asked for it): a short bound, whatever the remote does.
    let t = Duration::from_secs(5);
    crate::store::git::within(t, || {
        if let Ok(store) = Store::of_waiting(home, config, t) {
            for sid in sessions {
                match lock::release(&store, &config.machine_id, &sid, false, t) {
                    Ok(_) => tracing::info!("released the lock of {sid}"),
                    Err(e) => tracing::warn!("could not release the lock of {sid}: {e:#}"),
                }
            }
        }
    });
}

/// Rotate a detached daemon's log at 2 MB, keeping three old ones.
fn rotate_log(opts: &Options) {
    let Some(p) = &opts.log_file else { return };
    if std::fs::metadata(p).is_ok_and(|m| m.len() > 2 << 20) {
        for i in (1..3).rev() {
            let _ = std::fs::rename(
                p.with_extension(format!("log.{i}")),
                p.with_extension(format!("log.{}", i + 1)),
            );
        }
        let _ = std::fs::rename(p, p.with_extension("log.1"));
        let _ = crate::os::redirect_output(p);
    }
}

/// Ask the running daemon to stop and wait for it (up to `wait`).
pub fn stop(home: &Home, wait: Duration) -> Result<Option<u32>> {
    let Some(p) = running(home) else {
        let _ = std::fs::remove_file(pid_path(home));
        return Ok(None);
    };
    std::fs::write(stop_path(home), b"stop").ok();
    crate::os::request_stop(p.pid);
    let start = Instant::now();
    while running(home).is_some() {
        if start.elapsed() > wait {
            bail!(
                "the daemon (pid {}) did not stop within {} s",
                p.pid,
                wait.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(stop_path(home));
    Ok(Some(p.pid))
}

/// The service definition for the platform's user service manager, with where it goes and how
/// to enable it.
pub fn service_file(home: &Home) -> Result<(PathBuf, String, String)> {
    let exe = std::env::current_exe().context("cannot find the ccsync executable")?;
    let exe = exe.to_string_lossy();
    let mut env = Vec::new();
    for var in ["CCSYNC_HOME", "CLAUDE_CONFIG_DIR"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            env.push((var, v));
        }
    }
    let user_home =
        crate::os::home_dir().ok_or_else(|| anyhow!("{} is not set", crate::os::home_var()))?;
    let _ = home;
    if cfg!(target_os = "macos") {
        let path = user_home.join("Library/LaunchAgents/dev.ccsync.daemon.plist");
        let envs: String = env
            .iter()
            .map(|(k, v)| format!("      <key>{k}</key><string>{}</string>\n", xml_escape(v)))
            .collect();
        let text = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n  <key>Label</key><string>dev.ccsync.daemon</string>\n  <key>ProgramArguments</key>\n  <array><string>{}</string><string>daemon</string></array>\n  <key>EnvironmentVariables</key>\n  <dict>\n{envs}  </dict>\n  <key>RunAtLoad</key><true/>\n  <key>KeepAlive</key><true/>\n</dict>\n</plist>\n",
            xml_escape(&exe)
        );
        let how = format!("launchctl load -w {}", path.display());
        Ok((path, text, how))
    } else if cfg!(target_os = "linux") {
        let config_home = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| user_home.join(".config"));
        let path = config_home.join("systemd/user/ccsync.service");
        let envs: String = env
            .iter()
            .map(|(k, v)| format!("Environment=\"{k}={}\"\n", v.replace('"', "\\\"")))
            .collect();
        let text = format!(
            "[Unit]\nDescription=ccsync: keep Claude Code sessions in step across machines\nAfter=network-online.target\n\n[Service]\nExecStart=\"{exe}\" daemon\n{envs}Restart=on-failure\nRestartSec=30\n\n[Install]\nWantedBy=default.target\n"
        );
        let how = "systemctl --user daemon-reload && systemctl --user enable --now ccsync.service"
            .to_string();
        Ok((path, text, how))
    } else {
        bail!(
            "`daemon install` knows systemd (Linux) and launchd (macOS); on this system run `ccsync daemon --detach` at log-in instead"
        )
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_records_temporary_files_and_locks_are_not_changes() {
        let root = std::env::temp_dir().join(".claude");
        let t = root.join("projects").join("-p").join("0a.jsonl");
        assert!(relevant(&t));
        assert!(relevant(&root.join("history.jsonl")));
        assert!(!relevant(&root.join("sessions").join("4242.json")));
        assert!(!relevant(&root.join("projects").join(".ccsync-tmp-x1")));
        assert!(!relevant(&root.join("projects").join("-p").join("a.lock")));
    }

    /// The pid file names the running daemon only while that process lives and is the one that
    /// wrote it (same start time: a reused pid is not the daemon).
    #[test]
    fn the_pid_file_names_a_daemon_only_while_that_process_runs() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let write = |pid: u32, started: Option<u64>| {
            let p = PidFile {
                pid,
                started,
                started_at: Utc::now(),
            };
            std::fs::write(pid_path(&home), serde_json::to_vec(&p).unwrap()).unwrap();
            p
        };
        assert_eq!(running(&home), None, "no pid file");
        let me = std::process::id();
        let started = crate::os::process_start_time(me);
        assert!(started.is_some(), "this system tells a process's start");
        let mine = write(me, started);
        assert_eq!(running(&home), Some(mine));
        write(me, started.map(|t| t + 1));
        assert_eq!(
            running(&home),
            None,
            "the pid was reused by another process"
        );
        let mut child = if cfg!(windows) {
            let mut c = std::process::Command::new("cmd");
            c.args(["/C", "exit 0"]);
            c
        } else {
            std::process::Command::new("true")
        };
        let mut child = child.spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        write(gone, None);
        assert_eq!(running(&home), None, "an ended process");
        std::fs::write(pid_path(&home), b"{not json").unwrap();
        assert_eq!(running(&home), None);
    }
}
