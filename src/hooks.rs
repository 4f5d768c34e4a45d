//! Claude Code hooks, so that a plain `claude` run is synced and locked without typing ccsync:
//!
//! * `setup-hooks` adds a SessionStart and a SessionEnd hook to Claude Code's user settings,
//!   editing the file as text (every other byte stays), after writing a backup; `--remove` takes
//!   exactly that away again.
//! * session start: within a short budget, bring the session's newer turns from the repository,
//!   take its lock (warning when another machine holds it) and record it as held.
//! * session end: hand the work to a detached process — push the session, release its lock — so
//!   Claude Code exits at once.
//!
//! A hook never makes Claude Code fail: the command always exits 0 and problems go to
//! `logs/hooks.log` in the tool home.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::claude::ClaudeDir;
use crate::claude::settings::{self, Created, HookSpec};
use crate::config::Home;
use crate::lock::{self, Acquired, Holder, held};
use crate::store::Store;
use crate::sync::files::sha256_hex;
use crate::sync::{Engine, PullOptions, PushOptions};

/// What ccsync remembers of an installation (`state/hooks.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    settings: PathBuf,
    created: Created,
    /// SHA-256 of the file ccsync wrote.
    installed_sha: String,
    /// The file before ccsync touched it (absent: there was none).
    backup: Option<PathBuf>,
}

fn state_path(home: &Home) -> PathBuf {
    home.state_dir().join("hooks.json")
}

fn load_state(home: &Home) -> Option<State> {
    std::fs::read(state_path(home))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// The hook ccsync installs for `event` (`SessionStart`): this executable with `hook <word>`,
/// and `--home` when the tool home is not the default one. Exec form: no shell parses it, so
/// no quoting can go wrong and Windows needs neither Git Bash nor PowerShell syntax.
pub fn hook_spec(event: &'static str, word: &str, home: &Home) -> Result<HookSpec> {
    let exe = std::env::current_exe().context("cannot find the ccsync executable")?;
    let mut args = vec!["hook".to_string(), word.to_string()];
    if std::env::var_os("CCSYNC_HOME").is_some_and(|h| !h.is_empty()) {
        args.push("--home".into());
        args.push(home.root.to_string_lossy().into_owned());
    }
    Ok(HookSpec {
        event,
        program: exe.to_string_lossy().into_owned(),
        args,
        timeout_secs: 30,
    })
}

/// What `setup-hooks` did.
#[derive(Debug)]
pub struct Installed {
    pub settings: PathBuf,
    pub changed: bool,
    pub backup: Option<PathBuf>,
}

fn read_settings(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8(b).map_err(|_| {
            anyhow!("{} is not UTF-8 text: left alone", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Install the hooks (idempotent).
pub fn install(claude: &ClaudeDir, home: &Home) -> Result<Installed> {
    let path = claude.settings();
    let before = read_settings(&path)?;
    let text = before.clone().unwrap_or_default();
    settings::check(&text).map_err(|e| {
        anyhow!(
            "{} is not valid ({e}): fix it first; nothing was changed",
            path.display()
        )
    })?;
    let specs = vec![
        hook_spec("SessionStart", "session-start", home)?,
        hook_spec("SessionEnd", "session-end", home)?,
    ];
    let (new, created) = settings::install(&text, &specs)
        .map_err(|e| anyhow!("cannot add hooks to {}: {e}", path.display()))?;
    if before.as_deref() == Some(new.as_str()) {
        return Ok(Installed {
            settings: path,
            changed: false,
            backup: None,
        });
    }
    let old_state = load_state(home);
    let backup = match &before {
        Some(b) => {
            let bp = path.with_file_name(format!(
                "settings.json.ccsync-backup-{}",
                Utc::now().format("%Y%m%dT%H%M%S")
            ));
            crate::os::write_atomic(&bp, b.as_bytes(), true)
                .with_context(|| format!("cannot write the backup {}", bp.display()))?;
            Some(bp)
        }
        None => None,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::os::write_atomic(&path, new.as_bytes(), false)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // A re-installation keeps what the first one created and the first backup.
    let state = match old_state.filter(|s| s.settings == path) {
        Some(mut s) => {
            s.installed_sha = sha256_hex(new.as_bytes());
            s.created.hooks_object |= created.hooks_object;
            for e in created.events {
                if !s.created.events.contains(&e) {
                    s.created.events.push(e);
                }
            }
            s
        }
        None => State {
            settings: path.clone(),
            created,
            installed_sha: sha256_hex(new.as_bytes()),
            backup: backup.clone(),
        },
    };
    crate::os::create_private_dir(&home.state_dir())?;
    crate::os::write_atomic(&state_path(home), &serde_json::to_vec_pretty(&state)?, true)?;
    Ok(Installed {
        settings: path,
        changed: true,
        backup,
    })
}

/// Remove the hooks. When the file is still what ccsync wrote, the original comes back byte
/// for byte; otherwise ccsync's entries (and the containers it created, when empty) are cut out.
pub fn uninstall(claude: &ClaudeDir, home: &Home) -> Result<bool> {
    let path = claude.settings();
    let Some(text) = read_settings(&path)? else {
        return Ok(false);
    };
    settings::check(&text).map_err(|e| {
        anyhow!(
            "{} is not valid ({e}): fix it first; nothing was changed",
            path.display()
        )
    })?;
    let state = load_state(home).filter(|s| s.settings == path);
    let restored = match &state {
        Some(s) if s.installed_sha == sha256_hex(text.as_bytes()) => match &s.backup {
            Some(b) => Some(
                std::fs::read(b)
                    .with_context(|| format!("cannot read the backup {}", b.display()))?,
            ),
            None => None,
        },
        _ => None,
    };
    let new = match restored {
        Some(bytes) => bytes,
        None => {
            let created = state
                .as_ref()
                .map(|s| s.created.clone())
                .unwrap_or_default();
            let t = settings::remove(&text, &created)
                .map_err(|e| anyhow!("cannot edit {}: {e}", path.display()))?;
            if state.as_ref().is_some_and(|s| {
                s.backup.is_none() && s.installed_sha == sha256_hex(text.as_bytes())
            }) {
                // ccsync created the file: remove it.
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
                let _ = std::fs::remove_file(state_path(home));
                return Ok(true);
            }
            t.into_bytes()
        }
    };
    let changed = new != text.as_bytes();
    if changed {
        crate::os::write_atomic(&path, &new, false)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let _ = std::fs::remove_file(state_path(home));
    Ok(changed)
}

/// Whether the hooks are in the settings file.
pub fn is_installed(claude: &ClaudeDir) -> bool {
    read_settings(&claude.settings())
        .ok()
        .flatten()
        .is_some_and(|t| settings::installed(&t))
}

/// Append a line to `logs/hooks.log` (rotated at 1 MB).
pub fn log(home: &Home, msg: &str) {
    let dir = home.logs_dir();
    if crate::os::create_private_dir(&dir).is_err() {
        return;
    }
    let p = dir.join("hooks.log");
    if std::fs::metadata(&p).is_ok_and(|m| m.len() > 1 << 20) {
        let _ = std::fs::rename(&p, dir.join("hooks.log.1"));
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
    {
        crate::os::make_private(&p).ok();
        let _ = writeln!(
            f,
            "{} [{}] {msg}",
            Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
            std::process::id()
        );
    }
}

/// The part of the hook input ccsync uses.
#[derive(Debug, Deserialize)]
pub struct HookInput {
    pub session_id: String,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
}

pub fn parse_input(data: &[u8]) -> Result<HookInput> {
    let input: HookInput = serde_json::from_slice(data)
        .map_err(|e| anyhow!("hook input is not the JSON Claude Code sends: {e}"))?;
    if !crate::store::layout::valid_session_id(&input.session_id) {
        bail!("hook input names an odd session id {:?}", input.session_id);
    }
    Ok(input)
}

/// The Claude Code process of a session (from `sessions/<pid>.json`), else the parent of this
/// hook (Claude Code runs its hooks itself).
pub fn claude_pid(claude: &ClaudeDir, sid: &str) -> u32 {
    crate::claude::live::live_sessions(claude)
        .into_iter()
        .find(|l| l.session_id == sid)
        .map(|l| l.pid)
        .unwrap_or_else(crate::os::parent_pid)
}

/// What the session-start hook has to tell the user.
#[derive(Debug, Default)]
pub struct Started {
    /// Another machine holds the session's lock.
    pub warning: Option<String>,
    /// Lines that arrived after Claude Code had loaded the transcript (it loads before the hook
    /// runs, so it does not show them).
    pub late_lines: u64,
    pub session_id: String,
    /// Sync was cut short (the remote did not answer in time, another ccsync process holds the
    /// clone, …): what was not done and why, in one sentence.
    pub skipped: Option<String>,
}

impl Started {
    /// The message for the user, if any.
    pub fn message(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.late_lines > 0 {
            parts.push(format!(
                "ccsync brought {} newer line(s) of this conversation from another machine after Claude Code had loaded it, so they are not shown. Exit now and run `claude --resume {}` (or `ccsync resume {}`) to see them; continuing here would branch the conversation.",
                self.late_lines, self.session_id, self.session_id
            ));
        }
        if let Some(w) = &self.warning {
            parts.push(w.clone());
        }
        if let Some(s) = &self.skipped {
            parts.push(s.clone());
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// Why the start hook's sync stopped, in words for the user (the log has the details).
fn why_skipped(engine: &Engine, e: &anyhow::Error, budget: Duration) -> String {
    if let Some(busy) = crate::store::clone_busy(e) {
        return format!("{} is using the local clone", busy.holder);
    }
    if crate::store::git::is_cut_short(e) {
        let busy = e.chain().any(|c| {
            c.downcast_ref::<crate::store::git::RemoteSilent>()
                .is_some_and(|r| r.cut == crate::store::git::Cut::OverDeadline)
        });
        return format!(
            "the sync remote {} {} within the {} s the hook may take (hook_timeout_secs)",
            engine.config.remote,
            if busy {
                "was still sending and did not finish"
            } else {
                "did not answer"
            },
            budget.as_secs_f64().ceil() as u64
        );
    }
    crate::cli::output::error_line(e)
}

/// Whether nothing more can be done in time after `e`: another process holds the clone, or the
/// remote did not answer (or the time is up).
fn nothing_more(e: &anyhow::Error) -> bool {
    crate::store::clone_busy(e).is_some() || crate::store::git::is_cut_short(e)
}

/// Session start: newer turns, the lock, the record — all by `deadline` (the network steps and
/// the wait for the clone lock end then; see [`crate::store::git::set_deadline`]).
pub fn session_start(engine: &Engine, input: &HookInput, deadline: Instant) -> Result<Started> {
    let cfg = engine.config;
    let budget = Duration::from_secs(cfg.hook_timeout_secs.max(1));
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100))
    };
    let sid = &input.session_id;
    // The record first: whatever happens below, the session-end worker finds Claude Code's pid.
    let mut record = held::Held {
        session_id: Some(sid.clone()),
        ccsync_pid: 0,
        ccsync_started: None,
        claude_pid: Some(claude_pid(engine.claude, sid)),
        started_at: Utc::now(),
        cwd: input.cwd.clone().unwrap_or_default(),
        locked: false,
        worker: None,
    };
    let record_path = held::record(engine.home, &record)?;
    let mut late_lines = 0;
    let mut trouble: Option<anyhow::Error> = None;
    let pulling = input.source.as_deref() != Some("startup");
    let mut not_brought = false;
    if pulling {
        let opts = PullOptions {
            only: Some([sid.clone()].into_iter().collect()),
            ignore_live: true,
            all: true,
            timeout: Some(left()),
            ..PullOptions::default()
        };
        match crate::sync::pull(engine, &opts) {
            Ok(r) => late_lines = r.lines,
            Err(e) => {
                log(
                    engine.home,
                    &format!("session-start {sid}: could not bring newer turns: {e:#}"),
                );
                trouble = Some(e);
                not_brought = true;
            }
        }
    }
    let mut warning = None;
    let mut locked = false;
    if !trouble.as_ref().is_some_and(nothing_more) {
        let holder = Holder::new(&cfg.machine_id, cfg.lock_ttl_secs);
        match Store::open_waiting(
            engine.home,
            &cfg.remote,
            &cfg.branch,
            &cfg.machine_id,
            left(),
        )
        .and_then(|s| lock::acquire(&s, &holder, sid, false, left()))
        {
            Ok(Acquired::Yes(_)) | Ok(Acquired::TookOver { .. }) => locked = true,
            Ok(Acquired::HeldBy(l)) => {
                warning = Some(format!(
                    "ccsync: session {sid} is also being worked on by {}; both machines' turns will be kept",
                    l.describe()
                ));
            }
            Err(e) => {
                log(
                    engine.home,
                    &format!("session-start {sid}: could not take the lock: {e:#}"),
                );
                trouble = trouble.or(Some(e));
            }
        }
    }
    if locked {
        record.locked = true;
        held::update(&record_path, &record)?;
    }
    let skipped = trouble.as_ref().filter(|_| !locked || not_brought).map(|e| {
        let not_done = match (not_brought, locked) {
            (true, false) => {
                "newer turns from other machines were not brought and the session is not locked"
            }
            (true, true) => "newer turns from other machines were not brought",
            _ => "the session is not locked",
        };
        format!(
            "ccsync did not sync this session at start: {}, so {not_done} (both machines' turns are kept either way, and it is pushed when Claude Code exits; details in {}).",
            why_skipped(engine, e, budget),
            engine.home.logs_dir().join("hooks.log").display()
        )
    });
    log(
        engine.home,
        &format!("session-start {sid}: locked={locked}, late lines={late_lines}"),
    );
    Ok(Started {
        warning,
        late_lines,
        session_id: sid.clone(),
        skipped,
    })
}

/// How long the session-end worker may work once Claude Code has exited (waiting for the clone
/// lock, pushing, releasing): twice the bound on one network step (`network_timeout_secs`),
/// two minutes by default.
pub fn worker_budget() -> Duration {
    crate::store::git::network_timeout() * 2
}

/// How long the session-end worker waits for Claude Code to exit, holding nothing.
pub const CLAUDE_EXIT_WAIT: Duration = Duration::from_secs(60);

/// Session end, in the detached worker: wait for Claude Code to exit (holding nothing: no clone
/// lock, no session lock of its own), then, within [`worker_budget`], push the session, release
/// its lock and drop the record.
pub fn session_end(engine: &Engine, input: &HookInput, claude: Option<u32>) -> Result<()> {
    let cfg = engine.config;
    let sid = &input.session_id;
    crate::store::set_activity(&format!(
        "the session-end hook pushing session {} after Claude Code exited",
        crate::util::short_id(sid)
    ));
    let me = std::process::id();
    let me_started = crate::os::process_start_time(me);
    let mut records: Vec<(PathBuf, held::Held)> = held::all(engine.home)
        .into_iter()
        .filter(|(_, h)| h.ccsync_pid == 0 && h.session_id.as_deref() == Some(sid))
        .collect();
    // While this worker lives the run is its own: `resume` and `update` leave it alone.
    for (p, h) in &mut records {
        h.worker = Some((me, me_started));
        let _ = held::update(p, h);
    }
    // The worker's parent is the hook that started it, not Claude Code: the pid comes from the
    // start hook's record, the hook, or Claude Code's own session file.
    let pid = records
        .iter()
        .find_map(|(_, h)| h.claude_pid)
        .or(claude)
        .or_else(|| {
            crate::claude::live::live_sessions(engine.claude)
                .into_iter()
                .find(|l| l.session_id == *sid)
                .map(|l| l.pid)
        })
        .unwrap_or(0);
    let waiting = Instant::now();
    if crate::os::pid_alive(pid) && pid != me {
        log(
            engine.home,
            &format!("session-end {sid}: waiting for Claude Code (pid {pid}) to exit"),
        );
    }
    while crate::os::pid_alive(pid) && pid != me && waiting.elapsed() < CLAUDE_EXIT_WAIT {
        std::thread::sleep(Duration::from_millis(100));
    }
    // From here on the clone and the remote are used, within a bound.
    let budget = worker_budget();
    let deadline = Instant::now() + budget;
    crate::store::git::set_deadline(Some(deadline), budget);
    let pushed = crate::sync::push(
        engine,
        &PushOptions {
            only: Some([sid.clone()].into_iter().collect()),
            timeout: Some(budget),
            ..PushOptions::default()
        },
    );
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    // The session may be running here again already (`claude --resume`, `ccsync resume`): its
    // lock is then that run's (a renewal by this machine looks the same), and stays.
    let again = running_again(engine, sid, pid);
    let released = match &again {
        Some(_) => Ok(lock::Released::NotLocked),
        None => Store::of_waiting(engine.home, cfg, left)
            .and_then(|s| lock::release(&s, &cfg.machine_id, sid, false, left)),
    };
    match (&pushed, &released) {
        (Ok(p), Ok(r)) => {
            let lock = match (r, &again) {
                (_, Some(who)) => format!("the lock is kept: {who}"),
                (lock::Released::Yes, _) => "lock released".to_string(),
                (lock::Released::NotLocked, _) => "no lock to release".to_string(),
                (lock::Released::HeldBy(l), _) => {
                    format!("the lock is {}'s, left alone", l.describe())
                }
            };
            log(
                engine.home,
                &format!("session-end {sid}: pushed (+{} lines), {lock}", p.lines),
            );
            for (p, _) in records {
                // Unless a new run's start hook wrote its own record there meanwhile.
                let mine = std::fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<held::Held>(&b).ok())
                    .is_some_and(|h| h.worker == Some((me, me_started)));
                if mine {
                    held::remove(&p);
                }
            }
        }
        _ => {
            if let Err(e) = &pushed {
                log(
                    engine.home,
                    &format!("session-end {sid}: push failed: {e:#} (ccsync update retries)"),
                );
            }
            if let Err(e) = &released {
                log(
                    engine.home,
                    &format!("session-end {sid}: lock not released: {e:#} (ccsync update retries)"),
                );
            }
        }
    }
    Ok(())
}

/// Who runs session `sid` on this machine again, other than the Claude Code process `ended`: a
/// live Claude Code with it open, or a `ccsync resume` that locked it.
fn running_again(engine: &Engine, sid: &str, ended: u32) -> Option<String> {
    if let Some(l) = crate::claude::live::live_sessions(engine.claude)
        .into_iter()
        .find(|l| l.session_id == sid && l.pid != ended)
    {
        return Some(format!(
            "Claude Code (pid {}) has the session open again",
            l.pid
        ));
    }
    held::all(engine.home)
        .into_iter()
        .find(|(_, h)| {
            h.session_id.as_deref() == Some(sid) && h.ccsync_pid != 0 && h.locked && !h.abandoned()
        })
        .map(|(_, h)| format!("ccsync (pid {}) runs the session again", h.ccsync_pid))
}

/// Where the session-end hook leaves its input for the detached worker.
pub fn stash_input(home: &Home, data: &[u8]) -> Result<PathBuf> {
    let dir = home.state_dir().join("hook-inputs");
    crate::os::create_private_dir(&dir)?;
    let p = dir.join(format!(
        "{}-{}.json",
        Utc::now().format("%Y%m%dT%H%M%S%.f"),
        std::process::id()
    ));
    crate::os::write_atomic(&p, data, true)?;
    Ok(p)
}
