//! Running Claude Code on a session: the lock is kept alive by a heartbeat while it runs, the
//! terminal belongs to it (Ctrl-C reaches Claude Code, not ccsync), and when it exits — however
//! it exits — the session is pushed and the lock released.
//!
//! A record in `state/held/` says what is running; if ccsync itself is killed, the next `resume`
//! or `update` finds the record ([`recover`]) and finishes the job without touching any process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, anyhow};
use chrono::Utc;

use crate::lock::{self, Holder, Refreshed, Released, held};
use crate::store::Store;
use crate::sync::{Engine, PushOptions, PushReport};

/// The Claude Code executable: `$CCSYNC_CLAUDE`, else `claude` on PATH.
pub fn claude_executable() -> Result<PathBuf> {
    let name = std::env::var("CCSYNC_CLAUDE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "claude".into());
    crate::os::find_in_path(&name).ok_or_else(|| {
        anyhow!("Claude Code (`{name}`) is not installed or not on PATH: install it, or set CCSYNC_CLAUDE to its path")
    })
}

/// What to run.
pub struct Launch {
    /// The session to resume; `None` starts a new one.
    pub session_id: Option<String>,
    pub cwd: PathBuf,
    pub claude: PathBuf,
    /// Whether this run holds the session's lock (and keeps it alive).
    pub locked: bool,
    /// Network operations (heartbeat, push, release) give up after this long.
    pub timeout: Duration,
}

/// What happened.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Claude Code's exit code (`None` when killed by a signal).
    pub exit_code: Option<i32>,
    /// Sessions pushed after it exited.
    pub pushed: Option<PushReport>,
    pub push_error: Option<String>,
    pub released: bool,
    pub release_error: Option<String>,
    /// Another machine took the lock over while Claude Code ran.
    pub lock_lost: Option<String>,
    /// Sessions Claude Code created or changed (for `start`).
    pub sessions: Vec<String>,
}

/// Run Claude Code, then push and release.
pub fn run(engine: &Engine, l: &Launch) -> Result<Outcome> {
    let cfg = engine.config;
    let me = std::process::id();
    let mut record = held::Held {
        session_id: l.session_id.clone(),
        ccsync_pid: me,
        ccsync_started: crate::os::process_start_time(me),
        claude_pid: None,
        started_at: Utc::now(),
        cwd: l.cwd.to_string_lossy().into_owned(),
        locked: l.locked,
        worker: None,
    };
    let record_path = held::record(engine.home, &record)?;
    let started = SystemTime::now();

    let mut cmd = Command::new(&l.claude);
    if let Some(sid) = &l.session_id {
        cmd.arg("--resume").arg(sid);
    }
    cmd.current_dir(&l.cwd);
    let foreground = crate::os::ChildForeground::enter();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            drop(foreground);
            held::remove(&record_path);
            return Err(anyhow!(
                "cannot start Claude Code ({}): {e}",
                l.claude.display()
            ));
        }
    };
    record.claude_pid = Some(child.id());
    let _ = held::update(&record_path, &record);

    // Keep the lock alive while Claude Code runs.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let lost = Arc::new(std::sync::Mutex::new(None::<String>));
    let heartbeat = match (&l.session_id, l.locked) {
        (Some(sid), true) => {
            let period = Duration::from_secs((cfg.lock_ttl_secs / 3).max(1));
            let (home, remote, branch, machine) = (
                engine.home.clone(),
                cfg.remote.clone(),
                cfg.branch.clone(),
                cfg.machine_id.clone(),
            );
            let holder = Holder::new(&cfg.machine_id, cfg.lock_ttl_secs);
            let sid = sid.clone();
            let lost = Arc::clone(&lost);
            let timeout = l.timeout;
            Some(std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(period) {
                    let r = Store::open_waiting(&home, &remote, &branch, &machine, period)
                        .and_then(|s| lock::refresh(&s, &holder, &sid, timeout));
                    match r {
                        Ok(Refreshed::Yes(_)) => tracing::debug!("lock of {sid} refreshed"),
                        Ok(Refreshed::Lost(by)) => {
                            let who = by
                                .map(|l| l.describe())
                                .unwrap_or_else(|| "nobody (it was released)".into());
                            if let Ok(mut g) = lost.lock() {
                                *g = Some(who);
                            }
                            return;
                        }
                        Err(e) => tracing::warn!("could not refresh the lock of {sid}: {e}"),
                    }
                }
            }))
        }
        _ => None,
    };
    let status = child.wait();
    drop(stop_tx);
    if let Some(h) = heartbeat {
        let _ = h.join();
    }
    drop(foreground);
    let status = status.context("waiting for Claude Code")?;

    let mut out = Outcome {
        exit_code: status.code(),
        ..Outcome::default()
    };
    out.lock_lost = lost.lock().ok().and_then(|g| g.clone());
    out.sessions = match &l.session_id {
        Some(s) => vec![s.clone()],
        None => sessions_touched_since(engine, &l.cwd, started),
    };
    finish(
        engine,
        &out.sessions.clone(),
        l.locked && out.lock_lost.is_none(),
        l.timeout,
        &mut out,
    );
    if out.push_error.is_none() && out.release_error.is_none() {
        held::remove(&record_path);
    }
    Ok(out)
}

/// Push `sessions` and, with `release`, release their locks.
fn finish(
    engine: &Engine,
    sessions: &[String],
    release: bool,
    timeout: Duration,
    out: &mut Outcome,
) {
    let cfg = engine.config;
    if !sessions.is_empty() {
        let opts = PushOptions {
            only: Some(sessions.iter().cloned().collect()),
            timeout: Some(timeout),
            ..PushOptions::default()
        };
        match crate::sync::push(engine, &opts) {
            Ok(r) => out.pushed = Some(r),
            Err(e) => out.push_error = Some(format!("{e:#}")),
        }
    }
    if release {
        let r = Store::of_waiting(engine.home, cfg, timeout).and_then(|s| {
            let mut lost = None;
            for sid in sessions {
                match lock::release(&s, &cfg.machine_id, sid, false, timeout)? {
                    Released::Yes => {}
                    // Another machine judged it abandoned (or forced it) and took it or removed it.
                    Released::HeldBy(l) => lost = Some(l.describe()),
                    Released::NotLocked => {
                        lost = lost.or_else(|| Some("nobody (it was released)".to_string()))
                    }
                }
            }
            Ok(lost)
        });
        match r {
            Ok(None) => out.released = true,
            Ok(Some(who)) => out.lock_lost = out.lock_lost.take().or(Some(who)),
            Err(e) => out.release_error = Some(format!("{e:#}")),
        }
    }
}

/// Sessions in the project folder of `cwd` written since `since` (what a `start` created).
fn sessions_touched_since(engine: &Engine, cwd: &Path, since: SystemTime) -> Vec<String> {
    let folder = crate::claude::naming::project_folder(engine.claude, &cwd.to_string_lossy());
    let Ok(rd) = std::fs::read_dir(&folder) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = crate::claude::discover::session_id_from_file_name(&name) else {
            continue;
        };
        if e.metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since)
        {
            out.push(id.to_string());
        }
    }
    out.sort();
    out
}

/// What [`recover`] did for one abandoned run.
#[derive(Debug)]
pub struct Recovered {
    pub session_id: Option<String>,
    /// Claude Code still runs (it was not touched).
    pub claude_running: bool,
    pub outcome: Outcome,
}

/// Finish the runs of ccsync processes that are gone: push their sessions and release their
/// locks. A Claude Code process that still runs is left alone; its lock is kept unless
/// `release_running` (as `update` does, at the user's request).
pub fn recover(engine: &Engine, timeout: Duration, release_running: bool) -> Vec<Recovered> {
    let mut done = Vec::new();
    for (path, h) in held::abandoned(engine.home) {
        let running = h.claude_alive();
        let mut out = Outcome::default();
        let sessions = match &h.session_id {
            Some(s) => vec![s.clone()],
            None => {
                let since = SystemTime::UNIX_EPOCH
                    + Duration::from_secs(h.started_at.timestamp().max(0) as u64);
                sessions_touched_since(engine, Path::new(&h.cwd), since)
            }
        };
        finish(
            engine,
            &sessions,
            h.locked && (!running || release_running),
            timeout,
            &mut out,
        );
        if out.push_error.is_none() && out.release_error.is_none() && (!running || release_running)
        {
            held::remove(&path);
        }
        done.push(Recovered {
            session_id: h.session_id.clone(),
            claude_running: running,
            outcome: out,
        });
    }
    done
}
