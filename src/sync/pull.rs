//! `pull`: bring remote changes into the Claude Code dir.
//!
//! For every stored session that changed since this machine last saw it: place it under
//! `projects/<ENC(mapped cwd)>/`, merge the stored lines into the local transcript (a union:
//! never shrinking it), merge subagent logs and files the same way, and give the file the
//! session's last-activity time. A session a live Claude Code process is writing is deferred;
//! one Claude Code would delete at once (older than `cleanupPeriodDays`), or that was deleted
//! here and not changed since, is not brought back unless asked for. Memory, CLAUDE.md and
//! plans are merged three-way; history entries are appended.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use rayon::prelude::*;
use serde::Serialize;

use super::files::{self, Base, Direction, FileSides};
use super::lines::{Replay, Sink};
use super::log::{self, StoredLog};
use super::push::Skipped;
use super::snapshot::{RepoSession, Snapshot};
use super::state::{Event, FileRecord, Index, LogRecord, PullMark, SessionRecord, State};
use super::{Engine, branches, history};
use crate::claude::discover::{self, LocalSession, SkipReason, link_below};
use crate::claude::naming;
use crate::config::shared::{self, RepoKind};
use crate::os::IoAt;
use crate::paths::check_cwd;
use crate::store::layout::{self, PROJECT_FILE, ProjectRecord, SessionMeta, TRANSCRIPT_LOG};
use crate::store::{BlobReader, Store};

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub dry_run: bool,
    /// Merge every session again, ignoring what the index says, and bring back sessions deleted
    /// here (a union still: local lines are never dropped).
    pub force: bool,
    /// Ignore the sync directories.
    pub all: bool,
    /// Only these sessions (and no memory, global files or history); they are brought even when
    /// old, with a fresh modification time.
    pub only: Option<BTreeSet<String>>,
    /// Do not fetch; use what the last fetch brought.
    pub no_fetch: bool,
    /// Merge even sessions a live Claude Code has open (the session-start hook runs while
    /// Claude Code waits for it, before it writes).
    pub ignore_live: bool,
    pub timeout: Option<Duration>,
}

/// An entry of the repository that was not used.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Refused {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PullReport {
    pub up_to_date: bool,
    pub dry_run: bool,
    pub sessions_new: usize,
    pub sessions_updated: usize,
    pub lines: u64,
    pub files: usize,
    pub history_lines: u64,
    pub deferred: Vec<String>,
    pub skipped: Vec<Skipped>,
    pub conflicts: Vec<String>,
    pub refused: Vec<Refused>,
    /// Sessions written to show a branch Claude Code would hide (see [`super::branches`]).
    pub branches: Vec<String>,
    /// Sessions moved into the folder Claude Code looks in (or merged from two folders).
    pub moved: Vec<String>,
    /// Files the repository has that were deleted here and not brought back (paths relative to
    /// the Claude Code dir; `pull --force` brings them back).
    pub deleted_here: Vec<String>,
    /// Symbolic links inside the Claude Code dir that a file would have been written through:
    /// not followed, nothing written there.
    pub links: Vec<String>,
    /// The remote had lost what this machine saw there (see
    /// [`super::state::check_history`]): what happened, in words. Pull brought what it still
    /// has; the next push sends everything this machine has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_lost: Option<String>,
    pub head: Option<String>,
    pub seconds: f64,
    /// Set when this pull converted a repository of the Python claude-session-sync.
    pub migrated: Option<crate::migrate::MigrationReport>,
}

/// Bring remote changes (once more with a new clone when the local clone was found damaged).
pub fn pull(engine: &Engine, opts: &PullOptions) -> Result<PullReport> {
    crate::store::with_clone_repair(|| pull_once(engine, opts))
}

fn pull_once(engine: &Engine, opts: &PullOptions) -> Result<PullReport> {
    let started = Instant::now();
    let cfg = engine.config;
    let mut report = PullReport {
        dry_run: opts.dry_run,
        ..PullReport::default()
    };
    let wait = opts.timeout.unwrap_or(Duration::from_secs(600));
    let store = Store::of_waiting(engine.home, cfg, wait)?;
    let timeout = opts.timeout.unwrap_or(Duration::from_secs(300));
    let mut head = if opts.no_fetch {
        store.known_head()?
    } else {
        store.fetch(timeout)?
    };
    let mut index = Index::load(engine.home, &cfg.remote);
    if !opts.dry_run {
        super::unsynced::settle(
            engine.home,
            &engine.claude.root,
            &mut index,
            crate::clock::now().timestamp(),
        )?;
    }
    let checked = super::state::check_history(&store, head.as_ref(), &mut index)?;
    report.remote_lost = checked.lost;
    match shared::classify(&store, head.as_ref())? {
        RepoKind::Empty => {
            report.up_to_date = report.remote_lost.is_none();
            if checked.changed && !opts.dry_run {
                index.save(engine.home)?;
            }
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        RepoKind::Ccsync(m) => m.check()?,
        RepoKind::Legacy => {
            let me = crate::migrate::ThisMachine {
                id: &cfg.machine_id,
                style: cfg.path_style,
                placeholders: &cfg.placeholders,
            };
            report.migrated = Some(crate::migrate::migrate(&store, head.as_ref(), me, timeout)?);
            head = store.known_head()?;
        }
        RepoKind::Foreign(n) => bail!(
            "the remote {} is not a ccsync repository ({n} entries at its root)",
            cfg.remote
        ),
    }
    report.head = head.as_ref().map(|h| h.0.clone());
    index.seen.clone_from(&report.head);
    let settings = format!(
        "{:?}|{:?}|{}|{:?}|{}|{}",
        cfg.placeholders,
        cfg.sync_directories,
        cfg.path_style,
        engine.claude.cleanup_period(None),
        opts.all,
        PLACEMENT_VERSION,
    );
    let full = opts.only.is_none() && !opts.force && !opts.dry_run;
    if full
        && let (Some(mark), Some(h)) = (&index.pulled, &report.head)
        && mark.head == *h
        && mark.settings == settings
        && mark.deferred.is_empty()
        && !has_duplicates(engine)
    {
        // The repository did not change since the last complete pull.
        if checked.changed {
            index.save(engine.home)?;
        }
        report.up_to_date = true;
        report.deleted_here = deleted_here(engine, &index);
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let snap = Snapshot::load(&store, head.as_ref())?;
    if !index.forgotten.is_empty() {
        // A session stored again and no longer in `forgotten.json` was brought back on purpose
        // (`ccsync restore`): this machine pushes its lines again.
        let tombs = snap.forgotten_ids(&store)?;
        index
            .forgotten
            .retain(|id| tombs.contains(id) || !snap.sessions.contains_key(id));
    }
    report.refused = snap
        .refused
        .iter()
        .map(|(p, r)| Refused {
            path: p.clone(),
            reason: r.clone(),
        })
        .collect();
    let mut disc = discover::discover(engine.claude)
        .with_context(|| format!("cannot list {}", engine.claude.projects().display()))?;
    let live = crate::claude::live::live_ids(engine.claude);
    // Every session in the one folder Claude Code looks in: move what is elsewhere first.
    let mut reader = store.reader()?;
    {
        let all = index.placement < PLACEMENT_VERSION || opts.force;
        let moves = plan_moves(engine, &snap, &disc, &index, all, &mut reader)?;
        for m in &moves {
            if opts.only.as_ref().is_some_and(|o| !o.contains(&m.session)) {
                continue;
            }
            if live.contains(&m.session) && !opts.ignore_live {
                report.deferred.push(m.session.clone());
                continue;
            }
            if !opts.dry_run {
                for c in disc.sessions.iter().filter(|c| c.id == m.session) {
                    super::place::move_session(engine.claude, c, &m.to, &mut index)?;
                }
            }
            report.moved.push(m.session.clone());
        }
        if !report.moved.is_empty() && !opts.dry_run {
            disc = discover::discover(engine.claude)
                .with_context(|| format!("cannot list {}", engine.claude.projects().display()))?;
        }
        if opts.only.is_none() && !opts.dry_run {
            index.placement = PLACEMENT_VERSION;
        }
    }
    let local: HashMap<&str, &LocalSession> =
        disc.sessions.iter().map(|s| (s.id.as_str(), s)).collect();
    let cutoff = Cutoffs::new();
    let mut ids: Vec<&String> = snap
        .sessions
        .keys()
        .filter(|sid| opts.only.as_ref().is_none_or(|o| o.contains(*sid)))
        .filter(|sid| {
            let loc = local.get(sid.as_str()).copied();
            opts.force
                || opts.only.is_some()
                || loc.is_none()
                || !unchanged(engine, &snap.sessions[*sid], loc, &index)
        })
        .collect();
    ids.sort();
    let total: u64 = ids
        .iter()
        .map(|sid| {
            snap.sessions[*sid]
                .logs
                .values()
                .map(|l| l.size())
                .sum::<u64>()
        })
        .sum();
    engine.progress_begin("pull", total);
    // Sessions are independent: pull them in parallel, each worker with a git reader of its
    // own, taken from a pool (one per thread at most: starting a reader costs a process).
    // Sessions this machine does not have at all are written without a flush per file (see
    // `unsynced`): the repository holds them.
    let new_ids: Vec<String> = ids
        .iter()
        .filter(|sid| !local.contains_key(sid.as_str()))
        .map(|sid| (*sid).clone())
        .collect();
    let defer = !opts.dry_run
        && super::unsynced::begin(engine.home, &new_ids, crate::clock::now().timestamp())?;
    // The reader the moves used is the pool's first (starting one costs a process).
    let readers: std::sync::Mutex<Vec<BlobReader>> = std::sync::Mutex::new(vec![reader]);
    let deltas: Vec<Result<Delta>> = ids
        .par_iter()
        .map(|sid| {
            let pooled = readers.lock().ok().and_then(|mut p| p.pop());
            let mut reader = match pooled {
                Some(r) => r,
                None => store.reader()?,
            };
            let mut d = Delta::default();
            let rs = &snap.sessions[*sid];
            let loc = local.get(sid.as_str()).copied();
            let mut one = || {
                pull_session(
                    engine,
                    opts,
                    rs,
                    loc,
                    &live,
                    &cutoff,
                    &index,
                    &mut reader,
                    &mut d,
                )
            };
            if defer && loc.is_none() {
                crate::os::deferring_sync(one)?;
            } else {
                one()?;
            }
            if let Ok(mut p) = readers.lock() {
                p.push(reader);
            }
            engine.progress_advance(rs.logs.values().map(|l| l.size()).sum());
            Ok(d)
        })
        .collect();
    engine.progress_end();
    let mut to_settle = Vec::new();
    for d in deltas {
        d?.apply(&mut index, &mut report, &mut to_settle);
    }
    // No hidden turns: after every session is in, make each branch a merge made visible.
    for (sid, path, title) in to_settle {
        let s = super::branches::settle(&path, &sid, title.as_deref())?;
        if s.pinned {
            // The appended line is this machine's to push.
            let key = engine.key(&path);
            if let Some(r) = index.logs.get_mut(&key) {
                r.size = 0;
                r.mtime_ns = 0;
            }
        }
        report.branches.extend(s.forks);
    }
    let pooled = readers.into_inner().ok().and_then(|mut p| p.pop());
    let mut reader = match pooled {
        Some(r) => r,
        None => store.reader()?,
    };
    if opts.only.is_none() {
        let mut d = Delta::default();
        pull_memory(engine, opts, &snap, &index, &mut reader, &mut d)?;
        pull_global(engine, opts, &snap, &index, &mut reader, &mut d)?;
        d.apply(&mut index, &mut report, &mut Vec::new());
        let (n, rec) = history::pull(
            engine,
            &snap,
            index.logs.get(history::KEY),
            &mut reader,
            opts.dry_run,
        )?;
        report.history_lines = n;
        if let Some(r) = rec
            && !opts.dry_run
        {
            index.logs.insert(history::KEY.to_string(), r);
        }
    }
    if full && let Some(h) = &report.head {
        index.pulled = Some(PullMark {
            head: h.clone(),
            settings,
            deferred: report.deferred.clone(),
        });
    }
    if opts.only.is_none() {
        report.deleted_here = deleted_here(engine, &index);
    }
    if !opts.dry_run {
        index.save(engine.home)?;
        let mut status = State::load_status(engine.home);
        status.remote = Some(cfg.remote.clone());
        status.last_pull = Some(Event {
            at: Utc::now(),
            commit: report.head.clone(),
            sessions: report.sessions_new + report.sessions_updated,
        });
        State::save_status(engine.home, &status)?;
    }
    report.up_to_date = report.sessions_new + report.sessions_updated + report.files == 0
        && report.history_lines == 0
        && report.remote_lost.is_none();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The key and local path of a session's log named `rel`.
fn log_target(engine: &Engine, transcript: &Path, sid: &str, rel: &str) -> (String, PathBuf) {
    let folder = transcript.parent().unwrap_or(Path::new("."));
    let path = if rel == TRANSCRIPT_LOG {
        transcript.to_path_buf()
    } else if let Some(r) = rel.strip_prefix("files/") {
        let mut p = folder.join(sid);
        for c in r.split('/') {
            p.push(c);
        }
        p
    } else if let Some(r) = rel.strip_prefix(&format!("{}/", layout::FILE_HISTORY_DIR)) {
        let mut p = engine.claude.file_history().join(sid);
        for c in r.split('/') {
            p.push(c);
        }
        p
    } else if let Some(name) = rel.strip_prefix(&format!("{}/", layout::LEGACY_DIR)) {
        folder.join(name)
    } else {
        folder.join(sid).join(rel)
    };
    (engine.key(&path), path)
}

/// Nothing stored for this session changed since this machine last saw it.
fn unchanged(engine: &Engine, rs: &RepoSession, loc: Option<&LocalSession>, index: &Index) -> bool {
    let Some(loc) = loc else { return false };
    let same_meta = index
        .sessions
        .get(&rs.id)
        .is_some_and(|r| r.meta.as_deref() == rs.meta.as_ref().map(|m| m.oid.0.as_str()));
    same_meta
        && rs.logs.iter().all(|(rel, stored)| {
            let (key, _) = log_target(engine, &loc.transcript, &rs.id, rel);
            index
                .logs
                .get(&key)
                .is_some_and(|r| r.equal && r.segs == stored.segs && r.repo_dir == stored.dir)
        })
        && rs.files.iter().all(|(rel, f)| {
            let (key, _) = log_target(engine, &loc.transcript, &rs.id, rel);
            index
                .files
                .get(&key)
                .is_some_and(|r| r.base.as_ref() == Some(&f.oid))
        })
}

#[allow(clippy::too_many_arguments)]
fn pull_session(
    engine: &Engine,
    opts: &PullOptions,
    rs: &RepoSession,
    loc: Option<&LocalSession>,
    live: &std::collections::HashSet<String>,
    cutoff: &Cutoffs,
    index: &Index,
    reader: &mut BlobReader,
    d: &mut Delta,
) -> Result<()> {
    let report = &mut d.report;
    let sid = &rs.id;
    let skip = |report: &mut PullReport, reason: String| {
        report.skipped.push(Skipped {
            session: sid.clone(),
            reason,
        })
    };
    let Placed {
        meta,
        local_cwd,
        transcript: expected,
    } = match placement(engine, rs, reader)? {
        Ok(p) => p,
        Err(Unplaced::Refused(r)) => {
            report.refused.push(r);
            return Ok(());
        }
        Err(Unplaced::Skipped(why)) => {
            skip(report, why);
            return Ok(());
        }
    };
    if !opts.all && opts.only.is_none() && !engine.config.in_sync_dirs(&local_cwd) {
        return Ok(());
    }
    // Where the local copy is (moved into place before this, unless live), else where Claude
    // Code will look for it.
    let transcript = loc.map_or(expected, |l| l.transcript.clone());
    let cutoff = cutoff.at(engine, &local_cwd);
    if live.contains(sid) && !opts.ignore_live {
        report.deferred.push(sid.clone());
        return Ok(());
    }
    let tkey = engine.key(&transcript);
    let stored_t = rs.transcript();
    let exists = transcript.exists();
    if !exists && opts.only.is_none() {
        let old = meta.last_activity.zip(cutoff).is_some_and(|(t, c)| t < c);
        if old {
            skip(
                report,
                "older than Claude Code's cleanupPeriodDays (ccsync resume ID brings it back)"
                    .into(),
            );
            return Ok(());
        }
        let deleted_here = index.sessions.contains_key(sid)
            && stored_t.is_some_and(|t| index.logs.get(&tkey).is_some_and(|r| r.segs == t.segs));
        if deleted_here && !opts.force {
            skip(
                report,
                "deleted on this machine (pull --force brings it back)".into(),
            );
            return Ok(());
        }
    }
    if opts.dry_run {
        if exists {
            report.sessions_updated += 1;
        } else {
            report.sessions_new += 1;
        }
        return Ok(());
    }
    let prior_mtime = super::mtime_secs(&transcript);
    let mut changed = false;
    for (rel, stored) in &rs.logs {
        let (key, path) = log_target(engine, &transcript, sid, rel);
        if let Some(link) = link_below(&engine.claude.root, &path) {
            report.links.push(link.display().to_string());
            continue;
        }
        let record = index
            .logs
            .get(&key)
            .filter(|r| r.repo_dir == stored.dir && !opts.force)
            .cloned();
        let m = merge_log(engine, &path, stored, record.as_ref(), reader)?;
        if m.added > 0 {
            changed = true;
            report.lines += m.added;
        }
        if m.may_branch && rel == TRANSCRIPT_LOG {
            d.settle
                .push((sid.clone(), path.clone(), meta.title.clone()));
        }
        d.changes.logs.insert(key, m.record);
    }
    for (rel, stored) in &rs.files {
        let (key, path) = log_target(engine, &transcript, sid, rel);
        if let Some(link) = link_below(&engine.claude.root, &path) {
            d.report.links.push(link.display().to_string());
            continue;
        }
        let r = files::reconcile(
            FileSides {
                local_key: key.clone(),
                local_path: path.clone(),
                repo_path: stored.path.clone(),
                stored: Some(stored),
                record: index.files.get(&key),
                restore: opts.force,
                repo_has: &|p| rs.files.values().any(|f| f.path == p),
            },
            Direction::Pull,
            &engine.mapper,
            &engine.config.machine_id,
            reader,
            false,
            engine.scanner,
        )?;
        changed |= r.pulled;
        apply_records(engine, d, r);
    }
    let report = &mut d.report;
    if changed && transcript.exists() {
        let when = if opts.only.is_some() {
            Utc::now().timestamp()
        } else {
            let last = meta
                .last_activity
                .map(|t| t.timestamp())
                .unwrap_or_else(|| Utc::now().timestamp());
            prior_mtime.map_or(last, |p| p.max(last))
        };
        crate::os::set_mtime(&transcript, when)
            .with_context(|| format!("cannot set the time of {}", transcript.display()))?;
        // The record's stat must match the file as it is now.
        if let (Some(r), Ok(m)) = (
            d.changes.logs.get_mut(&tkey),
            std::fs::metadata(&transcript),
        ) && r.size != 0
        {
            r.size = m.len();
            r.mtime_ns = crate::os::mtime_ns(&m);
        }
        if exists {
            report.sessions_updated += 1;
        } else {
            report.sessions_new += 1;
        }
    }
    d.changes.sessions.insert(
        sid.clone(),
        SessionRecord {
            repo_dir: rs.dir.clone(),
            local: tkey,
            meta: rs.meta.as_ref().map(|m| m.oid.0.clone()),
        },
    );
    if let Some(folder) = transcript
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
    {
        d.changes.projects.insert(folder, meta.cwd.clone());
    }
    Ok(())
}

/// Whether a session id is in more than one project folder here (Claude Code then finds none):
/// one directory walk, no reading.
fn has_duplicates(engine: &Engine) -> bool {
    let Ok(d) = discover::discover(engine.claude) else {
        return false;
    };
    let mut seen = std::collections::HashSet::new();
    d.sessions.iter().any(|s| !seen.insert(s.id.as_str()))
}

/// Bump when the rules of [`placement`] change: the next pull checks every session again.
pub const PLACEMENT_VERSION: u32 = 2;

/// A session whose local copies are not (only) where Claude Code looks for it.
#[derive(Debug, Clone, Serialize)]
pub struct Move {
    pub session: String,
    pub from: Vec<PathBuf>,
    pub to: PathBuf,
}

/// The local sessions to move into place: those the repository says changed (`all`: every
/// stored session with a local copy), in the wrong folder or in more than one.
pub fn plan_moves(
    engine: &Engine,
    snap: &Snapshot,
    disc: &discover::Discovery,
    index: &Index,
    all: bool,
    reader: &mut BlobReader,
) -> Result<Vec<Move>> {
    let mut copies: HashMap<&str, Vec<&LocalSession>> = HashMap::new();
    for s in &disc.sessions {
        copies.entry(s.id.as_str()).or_default().push(s);
    }
    let mut out = Vec::new();
    let mut ids: Vec<&&str> = copies.keys().collect();
    ids.sort();
    for sid in ids {
        let here = &copies[*sid];
        let Some(rs) = snap.sessions.get(*sid) else {
            continue;
        };
        if !all && here.len() == 1 && unchanged(engine, rs, Some(here[0]), index) {
            continue;
        }
        let Ok(Ok(placed)) = placement(engine, rs, reader) else {
            continue;
        };
        if here.len() == 1 && super::place::in_place(here[0], &placed.transcript) {
            continue;
        }
        out.push(Move {
            session: sid.to_string(),
            from: here.iter().map(|c| c.transcript.clone()).collect(),
            to: placed.transcript,
        });
    }
    Ok(out)
}

/// Where a stored session belongs on this machine.
pub(crate) struct Placed {
    pub meta: SessionMeta,
    /// The working directory in this machine's form (the directory of its last `/cd`).
    pub local_cwd: String,
    /// The transcript path Claude Code uses for it.
    pub transcript: PathBuf,
}

pub(crate) enum Unplaced {
    Refused(Refused),
    Skipped(String),
}

/// Read a stored session's metadata and work out where it belongs here.
pub(crate) fn placement(
    engine: &Engine,
    rs: &RepoSession,
    reader: &mut BlobReader,
) -> Result<std::result::Result<Placed, Unplaced>> {
    let refused = |path: &str, reason: String| {
        Ok(Err(Unplaced::Refused(Refused {
            path: path.to_string(),
            reason,
        })))
    };
    let Some(meta_file) = &rs.meta else {
        return refused(&rs.dir, "session folder without meta.json".into());
    };
    let meta: SessionMeta = match serde_json::from_slice(&reader.read(&meta_file.oid)?) {
        Ok(m) => m,
        Err(e) => return refused(&meta_file.path, format!("not valid: {e}")),
    };
    if meta.session_id != rs.id {
        return refused(&meta_file.path, "names another session".into());
    }
    let local_cwd = match engine.mapper.local_path(effective_cwd(&meta)) {
        Ok(c) => c,
        Err(missing) => {
            let names: Vec<String> = missing.into_iter().collect();
            return Ok(Err(Unplaced::Skipped(format!(
                "no path on this machine for {} (ccsync config add-placeholder {}=PATH)",
                names.join(", "),
                names.first().map_or("NAME", String::as_str)
            ))));
        }
    };
    // The shape of a working directory, not the characters of a placeholder value: a cwd may
    // hold quotes, backslashes, tabs, newlines or braces, and only names a project folder
    // through Claude Code's encoding (which push checks with the same function).
    if let Err(why) = check_cwd(engine.config.path_style, &local_cwd) {
        return refused(
            &meta_file.path,
            format!("working directory {local_cwd:?} is not usable here: {why}"),
        );
    }
    let transcript = match naming::session_file(engine.claude, &local_cwd, &rs.id) {
        Ok(t) => t,
        Err(e) => return refused(&meta_file.path, format!("{e:#}")),
    };
    // Never through a symbolic link inside the Claude Code dir: it could point anywhere.
    let folder = transcript.parent().unwrap_or(&engine.claude.root);
    for p in [
        transcript.clone(),
        folder.join(&rs.id),
        engine.claude.file_history().join(&rs.id),
    ] {
        if let Some(link) = link_below(&engine.claude.root, &p) {
            return Ok(Err(Unplaced::Skipped(format!(
                "{} is {}",
                link.display(),
                SkipReason::Link.describe()
            ))));
        }
    }
    Ok(Ok(Placed {
        meta,
        local_cwd,
        transcript,
    }))
}

/// The working directory Claude Code files a session under: the directory of its last `/cd`,
/// else where it started (portable form).
pub(crate) fn effective_cwd(meta: &SessionMeta) -> &str {
    meta.relocated_cwd.as_deref().unwrap_or(&meta.cwd)
}

/// Claude Code's clean-up horizon for each project: sessions whose last activity is older are
/// deleted by the client (the merged settings of that project; `None`: it deletes nothing).
pub(crate) struct Cutoffs {
    now: chrono::DateTime<Utc>,
    by_cwd: std::sync::Mutex<HashMap<String, Option<chrono::DateTime<Utc>>>>,
}

impl Cutoffs {
    pub fn new() -> Self {
        Cutoffs {
            now: Utc::now(),
            by_cwd: Default::default(),
        }
    }

    /// The horizon for sessions of `local_cwd`.
    pub fn at(&self, engine: &Engine, local_cwd: &str) -> Option<chrono::DateTime<Utc>> {
        if let Ok(m) = self.by_cwd.lock()
            && let Some(c) = m.get(local_cwd)
        {
            return *c;
        }
        let days = engine.claude.cleanup_period(Some(Path::new(local_cwd)));
        let c = days.map(|d| self.now - chrono::Duration::days(d as i64));
        if let Ok(mut m) = self.by_cwd.lock() {
            m.insert(local_cwd.to_string(), c);
        }
        c
    }
}

/// A local log after a merge.
struct Merged {
    added: u64,
    record: LogRecord,
    /// The merge may have left the transcript with a second branch (see [`branches`]).
    may_branch: bool,
}

/// Merge a stored log into a local file; returns the lines added and the new record.
fn merge_log(
    engine: &Engine,
    path: &Path,
    stored: &StoredLog,
    record: Option<&LogRecord>,
    reader: &mut BlobReader,
) -> Result<Merged> {
    // Fast path: the local file is exactly what was stored, and the stored log only grew.
    if let Some(r) = record
        && r.equal
        && let Ok(m) = std::fs::metadata(path)
        && m.len() == r.local_len
        && log::is_prefix(&r.segs, &stored.segs)
    {
        let mut f =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        if r.local_len == 0 || log::fingerprint(&mut f, r.local_len).at("read", path)? == r.local_fp
        {
            let extras = &stored.segs[r.segs.len()..];
            let mut added = 0;
            let mut watch = None;
            if !extras.is_empty() {
                let ends_nl = r.local_len == 0
                    || file_ends_with_newline(&mut f, r.local_len).at("read", path)?;
                // Closed before the file is replaced (Windows refuses while we hold it).
                drop(f);
                let w = watch.insert(branches::AppendWatch::new(path, r.local_len));
                let mut codec = EngineCodec {
                    engine,
                    key: String::new(),
                    watch: Some(w),
                    secrets: Default::default(),
                };
                added = log::append_to_local(path, reader, extras, ends_nl, &mut codec)?;
            }
            return Ok(Merged {
                added,
                record: after_write(path, stored, true)?,
                may_branch: watch.is_some_and(|w| w.may_branch()),
            });
        }
    }
    let mut codec = EngineCodec {
        engine,
        key: engine.key(path),
        watch: None,
        secrets: Default::default(),
    };
    let had_lines = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
    let res = log::merge_into_local(path, reader, &stored.segs, &mut codec)?;
    let mut rec = after_write(path, stored, res.local_only == 0)?;
    rec.local_len = res.repo_part_len;
    if res.repo_part_len > 0 {
        let mut f = std::fs::File::open(path).at("read", path)?;
        rec.local_fp = log::fingerprint(&mut f, res.repo_part_len).at("read", path)?;
    }
    Ok(Merged {
        added: res.added_lines,
        record: rec,
        may_branch: had_lines && res.written && res.added_lines > 0,
    })
}

/// The engine's mapping for merges; secrets found on the way are not reported here (push
/// reports them). With a watch, every stored line is shown to it.
struct EngineCodec<'e, 'w> {
    engine: &'e Engine<'e>,
    /// The local file's index key (for secret reports).
    key: String,
    /// The secret state of the local lines seen so far (they are seen in order, from the
    /// first, as push sends them), so that a local line's stored form is the one push gives.
    secrets: super::FileSecrets,
    watch: Option<&'w mut branches::AppendWatch>,
}

impl log::Codec for EngineCodec<'_, '_> {
    fn outbound(&mut self, line: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(line.len());
        self.engine.outbound(
            line,
            &mut out,
            &self.key,
            0,
            &mut Vec::new(),
            &mut self.secrets,
            0,
        );
        out
    }

    fn inbound(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if let Some(w) = self.watch.as_mut() {
            w.see(line);
        }
        self.engine.inbound(line, out);
    }

    fn outbound_huge(&mut self, replay: &mut Replay<'_>, sink: &mut Sink<'_>) -> Result<()> {
        self.engine.outbound_huge(
            replay,
            &self.key,
            0,
            &mut Vec::new(),
            sink,
            &mut self.secrets,
            (0, 0),
        )
    }

    fn inbound_huge(&mut self, replay: &mut Replay<'_>, sink: &mut Sink<'_>) -> Result<()> {
        if let Some(w) = self.watch.as_mut() {
            w.see_huge(replay)?;
        }
        self.engine.inbound_huge(replay, sink)
    }
}

/// Whether the first `len` bytes of a file end with a newline (`len` > 0).
pub(crate) fn file_ends_with_newline(f: &mut std::fs::File, len: u64) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    f.seek(SeekFrom::Start(len - 1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(b[0] == b'\n')
}

/// The record of a log that now holds every stored line. With `all_pushed` false, local lines
/// the repository lacks remain, and the record's stat is left blank so that push sends them.
fn after_write(path: &Path, stored: &StoredLog, all_pushed: bool) -> Result<LogRecord> {
    let m = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut f = std::fs::File::open(path).at("read", path)?;
    let len = m.len();
    let fp = if len > 0 {
        log::fingerprint(&mut f, len).at("read", path)?
    } else {
        0
    };
    let (size, mtime_ns) = if all_pushed {
        (len, crate::os::mtime_ns(&m))
    } else {
        (0, 0)
    };
    Ok(LogRecord {
        repo_dir: stored.dir.clone(),
        segs: stored.segs.clone(),
        local_len: len,
        local_fp: fp,
        local_lines: 0,
        equal: true,
        size,
        mtime_ns,
        // The file was written anew: the next push learns its values again.
        secret_lines: None,
    })
}

/// What pulling part of the repository changes in the state index and the report; parts
/// are pulled in parallel and their deltas applied in order.
#[derive(Default)]
struct Delta {
    changes: Index,
    /// Transcripts to look at for hidden branches once every session is pulled.
    settle: Vec<(String, PathBuf, Option<String>)>,
    forget: Vec<String>,
    report: PullReport,
}

impl Delta {
    fn apply(
        self,
        index: &mut Index,
        report: &mut PullReport,
        settle: &mut Vec<(String, PathBuf, Option<String>)>,
    ) {
        settle.extend(self.settle);
        index.logs.extend(self.changes.logs);
        for k in self.changes.files.keys() {
            // Back (or merged anew): no longer lost.
            index.lost.remove(k);
        }
        index.files.extend(self.changes.files);
        index.sessions.extend(self.changes.sessions);
        index.projects.extend(self.changes.projects);
        for k in self.forget {
            index.files.remove(&k);
            index.lost.remove(&k);
        }
        let r = self.report;
        report.sessions_new += r.sessions_new;
        report.sessions_updated += r.sessions_updated;
        report.lines += r.lines;
        report.files += r.files;
        report.deferred.extend(r.deferred);
        report.skipped.extend(r.skipped);
        report.conflicts.extend(r.conflicts);
        report.refused.extend(r.refused);
        for l in r.links {
            if !report.links.contains(&l) {
                report.links.push(l);
            }
        }
    }
}

fn apply_records(engine: &Engine, delta: &mut Delta, r: files::Reconciled) {
    if r.pulled {
        delta.report.files += 1;
    }
    if let Some(c) = &r.conflict {
        delta.report.conflicts.push(c.display().to_string());
    }
    for d in r.records {
        let base = match d.base {
            Base::Stored(o) => Some(o),
            Base::None | Base::Written(_) => None,
        };
        // When the local file is not what the record says (a merge or a conflict left local
        // changes to push), a blank stat makes the next push look at it.
        let path = engine.local_path(&d.local_key);
        let current = std::fs::read(&path).ok().map(|b| files::sha256_hex(&b));
        let (size, mtime_ns) = match std::fs::metadata(&path) {
            Ok(m) if current == d.local_hash => {
                files::stat_to_record(&d.local_key, m.len(), crate::os::mtime_ns(&m))
            }
            _ => (0, 0),
        };
        delta.changes.files.insert(
            d.local_key,
            FileRecord {
                repo_path: d.repo_path,
                base,
                local_hash: d.local_hash,
                size,
                mtime_ns,
            },
        );
    }
    if r.forget {
        delta.forget.push(r.local_key);
    }
}

fn pull_memory(
    engine: &Engine,
    opts: &PullOptions,
    snap: &Snapshot,
    index: &Index,
    reader: &mut BlobReader,
    d: &mut Delta,
) -> Result<()> {
    for (slug, p) in &snap.projects {
        let remembered: Vec<String> = index
            .files
            .iter()
            .filter(|(_, r)| {
                r.repo_path
                    .starts_with(&format!("{}/", layout::memory_dir(slug)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        if p.memory.is_empty() && remembered.is_empty() {
            continue;
        }
        let Some(rec_file) = &p.record else { continue };
        let Ok(rec) = serde_json::from_slice::<ProjectRecord>(&reader.read(&rec_file.oid)?) else {
            d.report.refused.push(Refused {
                path: format!("{}/{PROJECT_FILE}", layout::project_dir(slug)),
                reason: "not valid".into(),
            });
            continue;
        };
        let Ok(local_cwd) = engine.mapper.local_path(&rec.cwd) else {
            continue;
        };
        if !opts.all && !engine.config.in_sync_dirs(&local_cwd) {
            continue;
        }
        // The folder Claude Code reads this project's memory from (its git root's, realpath).
        let folder = naming::project_folder(engine.claude, &local_cwd);
        let mem_root = folder.join("memory");
        let mut rels: BTreeSet<String> = p.memory.keys().cloned().collect();
        let prefix = format!("{}/", layout::memory_dir(slug));
        for k in &remembered {
            if let Some(r) = index
                .files
                .get(k)
                .and_then(|r| r.repo_path.strip_prefix(&prefix))
            {
                rels.insert(r.to_string());
            }
        }
        for rel in rels {
            let mut local_path = mem_root.clone();
            for c in rel.split('/') {
                local_path.push(c);
            }
            let key = engine.key(&local_path);
            pull_file(
                engine,
                opts,
                key,
                local_path,
                format!("{prefix}{rel}"),
                snap,
                index,
                reader,
                d,
            )?;
        }
        if let Some(name) = folder.file_name() {
            d.changes
                .projects
                .insert(name.to_string_lossy().into_owned(), rec.cwd.clone());
        }
    }
    Ok(())
}

/// Reconcile one plain file outside sessions in the pull direction.
#[allow(clippy::too_many_arguments)]
fn pull_file(
    engine: &Engine,
    opts: &PullOptions,
    key: String,
    local_path: PathBuf,
    repo_path: String,
    snap: &Snapshot,
    index: &Index,
    reader: &mut BlobReader,
    d: &mut Delta,
) -> Result<()> {
    if let Some(link) = link_below(&engine.claude.root, &local_path) {
        d.report.links.push(link.display().to_string());
        return Ok(());
    }
    // A file lost here and written anew since merges as a new file.
    let anew = index.lost.contains_key(&key) && local_path.exists();
    let record = index.files.get(&key).filter(|_| !anew);
    let stored = super::push::stored_loose(snap, &repo_path);
    let r = files::reconcile(
        FileSides {
            local_key: key,
            local_path,
            repo_path,
            stored: stored.as_ref(),
            record,
            restore: opts.force,
            repo_has: &|p| super::push::stored_loose(snap, p).is_some(),
        },
        Direction::Pull,
        &engine.mapper,
        &engine.config.machine_id,
        reader,
        opts.dry_run,
        engine.scanner,
    )?;
    if !opts.dry_run {
        apply_records(engine, d, r);
    } else if r.pulled {
        d.report.files += 1;
    }
    Ok(())
}

fn pull_global(
    engine: &Engine,
    opts: &PullOptions,
    snap: &Snapshot,
    index: &Index,
    reader: &mut BlobReader,
    d: &mut Delta,
) -> Result<()> {
    let mut rels: BTreeSet<String> = snap.global.keys().cloned().collect();
    for (k, r) in &index.files {
        if (k == "CLAUDE.md" || k.starts_with("plans/") || super::push::is_claude_md_copy(k))
            && let Some(rel) = r.repo_path.strip_prefix("global/")
        {
            rels.insert(rel.to_string());
        }
    }
    for rel in rels {
        let (key, local_path) = if rel == "CLAUDE.md" {
            ("CLAUDE.md".to_string(), engine.claude.claude_md())
        } else if super::push::is_claude_md_copy(&rel) {
            (rel.clone(), engine.claude.root.join(&rel))
        } else if let Some(p) = rel.strip_prefix("plans/") {
            let mut lp = engine.claude.plans();
            for c in p.split('/') {
                lp.push(c);
            }
            (format!("plans/{p}"), lp)
        } else {
            continue;
        };
        pull_file(
            engine,
            opts,
            key,
            local_path,
            format!("global/{rel}"),
            snap,
            index,
            reader,
            d,
        )?;
    }
    Ok(())
}

/// Files this machine synced that the repository still has and that were deleted here (by
/// hand, or lost): reported by every pull, brought back only by `pull --force`. Left out: files
/// of sessions deleted here (reported as skipped sessions), and what Claude Code's clean-up
/// deletes on its own (tool results and file history; plans older than `cleanupPeriodDays`).
fn deleted_here(engine: &Engine, index: &Index) -> Vec<String> {
    let cutoff = engine
        .claude
        .cleanup_period(None)
        .map(|d| Utc::now() - chrono::Duration::days(i64::from(d)))
        .and_then(|c| c.timestamp_nanos_opt())
        .map(i128::from);
    let cleaned = |r: &FileRecord| cutoff.is_some_and(|c| r.mtime_ns > 0 && r.mtime_ns < c);
    let mut out = Vec::new();
    for (k, r) in &index.files {
        if r.base.is_none() || r.local_hash.is_none() {
            continue;
        }
        let in_project = k
            .strip_prefix("projects/")
            .and_then(|rest| rest.split_once('/'));
        let keep = if in_project.is_some_and(|(_, tail)| tail.starts_with("memory/"))
            || k == "CLAUDE.md"
            || super::push::is_claude_md_copy(k)
        {
            true
        } else if k.starts_with("plans/") {
            !cleaned(r)
        } else if let Some((folder, tail)) = in_project
            && let Some((sid, rest)) = tail.split_once('/')
            && !rest.starts_with("tool-results/")
        {
            // A session's subagent file: only while its transcript is here.
            engine
                .local_path(&format!("projects/{folder}/{sid}.jsonl"))
                .exists()
        } else {
            false
        };
        if keep && std::fs::symlink_metadata(engine.local_path(k)).is_err() {
            out.push(k.clone());
        }
    }
    out
}
