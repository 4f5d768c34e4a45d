//! `push`: send local changes to the sync repository.
//!
//! 1. From `stat` alone (against the state index) find what changed; nothing changed means no
//!    reading and no git at all.
//! 2. Build one commit on the remote head: for each changed log only the new lines (the bytes
//!    after what the index says is stored, or a union against the stored lines when the index
//!    cannot tell), mapped to the portable form, secrets handled; changed plain files merged
//!    three-way; session metadata refreshed.
//! 3. Push it as a compare-and-swap; when another machine pushed first, build again on its head.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use chrono::Utc;
use serde::Serialize;

use super::files::{self, Base, Direction, FileSides, RecordDraft};
use super::lines::{HUGE_LINE, Replay, Sink, replay_file};
use super::log::{self, IdentBag, SegmentWriter, StoredLog};
use super::snapshot::{RepoSession, Snapshot};
use super::state::{Event, FileRecord, Index, LogRecord, SessionRecord, State};
use super::{Chunk, Engine, SecretReport, complete_end, for_each_chunk};
use crate::catalog::{self, Entry};
use crate::claude::discover::{Attachment, SkipReason, link_below, walk};
use crate::config::SecretMode;
use crate::os::IoAt;
use crate::secrets::Known;
use crate::store::layout::{
    self, META_FILE, PROJECT_FILE, ProjectRecord, SessionMeta, TRANSCRIPT_LOG,
};
use crate::store::{BlobReader, Oid, Store, Txn};

/// Bytes of local transcript read per step.
const CHUNK: usize = 4 << 20;
/// A trailing line without a newline is pushed once the file has been quiet this long and no
/// live Claude Code process has it open.
const QUIET_NS: i128 = 10_000_000_000;

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub dry_run: bool,
    /// Ignore the sync directories.
    pub all: bool,
    /// Only these sessions (and no memory, global files or history).
    pub only: Option<BTreeSet<String>>,
    pub timeout: Option<Duration>,
    /// Delete from the repository every file missing here, even when that looks like a loss
    /// (see [`Withheld`]).
    pub allow_deletions: bool,
}

/// A push deletes at most this many files of one folder from the repository at once (unless
/// they are at most half of its files, or `--allow-deletions` confirms it).
pub const MASS_DELETION_FILES: usize = 3;

/// Files missing here that this push did not delete from the repository: their disappearance
/// looks like a loss (a wiped or reinstalled Claude Code dir, a purged project, many files gone
/// at once), not an intent. `pull --force` brings them back; `push --allow-deletions` deletes
/// them everywhere.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Withheld {
    /// Their folder, relative to the Claude Code dir.
    pub folder: String,
    /// The files (paths relative to the Claude Code dir).
    pub files: Vec<String>,
    pub reason: String,
}

/// A session that was not pushed, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Skipped {
    pub session: String,
    pub reason: String,
}

/// A local file push left out, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotSent {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PushReport {
    pub up_to_date: bool,
    pub dry_run: bool,
    pub sessions_new: usize,
    pub sessions_updated: usize,
    pub files: usize,
    pub history_lines: u64,
    pub lines: u64,
    pub bytes: u64,
    /// Secrets found in what was sent (or, in a dry run, in what would be), never the secrets.
    pub secrets: Vec<SecretReport>,
    /// What was done with them: `redact` (replaced in what was stored), `warn` (sent as they
    /// are), `block` (what holds them was not sent), `off` (not looked for).
    pub secret_scan: String,
    /// Sessions (and files, history lines) not sent because they hold secrets (`block`).
    pub blocked: Vec<String>,
    pub skipped: Vec<Skipped>,
    pub conflicts: Vec<String>,
    /// Sessions written to show a branch Claude Code would hide (see [`super::branches`]).
    pub branches: Vec<String>,
    /// Project folders whose memory could not be synced: nothing tells their directory.
    pub memory_unplaced: Vec<String>,
    /// Files deleted here whose deletion this push sent (paths relative to the Claude Code dir).
    pub deleted: Vec<String>,
    /// Files missing here whose deletion this push held back.
    pub withheld: Vec<Withheld>,
    /// Local files left out, and why: symbolic links (never followed), names the repository
    /// cannot hold or that would not read back.
    pub not_sent: Vec<NotSent>,
    /// Sessions whose last line is unfinished (no newline yet): it is sent once the file has
    /// been quiet for a while and no Claude Code process has it open.
    pub held_back: Vec<String>,
    /// The remote had lost what this machine sent before (see [`super::state::check_history`]):
    /// what happened, in words. Everything this machine has was sent again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_lost: Option<String>,
    pub commit: Option<String>,
    pub seconds: f64,
}

struct LogItem {
    key: String,
    path: PathBuf,
    /// Name of the log inside the session folder (`transcript`, `files/<rel>`, `legacy/<name>`).
    rel: String,
    size: u64,
    mtime_ns: i128,
}

struct FileItem {
    key: String,
    path: PathBuf,
    repo_path_rel: String,
    size: u64,
    mtime_ns: i128,
}

struct SessionWork<'e> {
    entry: &'e Entry,
    logs: Vec<LogItem>,
    files: Vec<FileItem>,
    new: bool,
}

/// A plain file outside sessions (memory, CLAUDE.md, plans) with its repository path.
struct LooseFile {
    key: String,
    path: PathBuf,
    repo_path: String,
    size: u64,
    mtime_ns: i128,
    exists: bool,
    /// For memory: the project's portable directory (recorded in `project.json`).
    project: Option<String>,
}

/// Log record draft: segment objects written in this commit are resolved after the push.
pub(crate) struct LogDraft {
    pub key: String,
    pub repo_dir: String,
    pub segs: Vec<(String, Option<Oid>, u64)>,
    pub local_len: u64,
    pub local_fp: u64,
    pub local_lines: u64,
    pub equal: bool,
    pub size: u64,
    pub mtime_ns: i128,
    pub secret_lines: Option<Vec<(u64, u64)>>,
}

impl LogDraft {
    fn record(&self, segs: Vec<log::Seg>) -> LogRecord {
        LogRecord {
            repo_dir: self.repo_dir.clone(),
            segs,
            local_len: self.local_len,
            local_fp: self.local_fp,
            local_lines: self.local_lines,
            equal: self.equal,
            size: self.size,
            mtime_ns: self.mtime_ns,
            secret_lines: self.secret_lines.clone(),
        }
    }
}

#[derive(Default)]
struct Staged {
    forgotten: Vec<String>,
    logs: Vec<LogDraft>,
    files: Vec<(RecordDraft, u64, i128)>,
    forget: Vec<String>,
    sessions: Vec<(String, SessionRecord)>,
    projects: Vec<(String, String)>,
    report: PushReport,
    history: Option<LogDraft>,
    /// Transcripts whose new lines may have started a second branch (see [`super::branches`]).
    settle: Vec<(String, PathBuf, Option<String>)>,
}

fn changed_log(index: &Index, key: &str, size: u64, mtime_ns: i128) -> bool {
    index
        .logs
        .get(key)
        .is_none_or(|r| r.size != size || r.mtime_ns != mtime_ns)
}

/// A log whose last push held back an unfinished last line: looked at again on every push
/// (its stat may never change again), until the line is complete or the file is quiet.
fn held_back(index: &Index, key: &str) -> bool {
    index.logs.get(key).is_some_and(|r| r.local_len < r.size)
}

/// Why pull would refuse this session, checked before it is sent (the same rules: one session
/// id rule, and a working directory that is an absolute path here and maps back to itself).
fn unsendable(engine: &Engine, id: &str, cwds: [&str; 2]) -> Option<String> {
    if !layout::valid_session_id(id) {
        return Some(format!(
            "its file name {id:?}.jsonl is not a session id the sync repository can hold ({})",
            layout::SESSION_ID_RULE
        ));
    }
    for cwd in cwds {
        if let Err(why) = crate::paths::check_cwd(engine.config.path_style, cwd) {
            return Some(format!(
                "its working directory {cwd:?} is not usable: {why}"
            ));
        }
        let portable = engine.mapper.portable_path(cwd);
        if engine.mapper.local_path(&portable).as_deref() != Ok(cwd) {
            return Some(format!(
                "its working directory {cwd:?} would not come back the same from its portable form {portable:?}"
            ));
        }
    }
    None
}

fn changed_file(index: &Index, key: &str, path: &Path, size: u64, mtime_ns: i128) -> bool {
    files::differs(index.files.get(key), path, size, mtime_ns)
}

/// Send local changes. When the lines sent may have started a second branch of a conversation,
/// the transcript is settled afterwards (see [`super::branches`]) and what that wrote — a
/// `last-prompt` pin, a session for the other branch — is sent too.
pub fn push(engine: &Engine, opts: &PushOptions) -> Result<PushReport> {
    let (mut report, settle) = crate::store::with_clone_repair(|| push_once(engine, opts))?;
    if opts.dry_run || settle.is_empty() {
        return Ok(report);
    }
    let mut again = false;
    let mut only = opts.only.clone();
    for (sid, path, title) in settle {
        let s = super::branches::settle(&path, &sid, title.as_deref())?;
        again |= s.pinned || !s.forks.is_empty();
        if let Some(o) = only.as_mut() {
            o.extend(s.forks.iter().cloned());
        }
        report.branches.extend(s.forks);
    }
    if again {
        // The same sessions again (with the pin), and the sessions just written for branches.
        let again = PushOptions {
            only,
            ..opts.clone()
        };
        let (second, _) = crate::store::with_clone_repair(|| push_once(engine, &again))?;
        report.sessions_new += second.sessions_new;
        report.sessions_updated += second.sessions_updated;
        report.lines += second.lines;
        report.bytes += second.bytes;
        report.commit = second.commit.or(report.commit);
        report.up_to_date = false;
    }
    Ok(report)
}

#[allow(clippy::type_complexity)]
fn push_once(
    engine: &Engine,
    opts: &PushOptions,
) -> Result<(PushReport, Vec<(String, PathBuf, Option<String>)>)> {
    let started = Instant::now();
    let cfg = engine.config;
    let mut index = Index::load(engine.home, &cfg.remote);
    if !opts.dry_run {
        super::unsynced::settle(
            engine.home,
            &engine.claude.root,
            &mut index,
            crate::clock::now().timestamp(),
        )?;
    }
    // Whether the remote still holds what the index says it does; if not, the records are gone
    // and everything below counts as changed.
    let verified = super::state::verify_remote(
        engine.home,
        cfg,
        &mut index,
        opts.timeout.unwrap_or(Duration::from_secs(120)),
        !opts.dry_run,
    )?;
    let remote_lost = verified.lost;
    // Said only when this push does not go on to the remote (which would fail with its own
    // sentence about the same problem, or succeed).
    let unchecked = || {
        if let Some(why) = &verified.unchecked {
            tracing::warn!("{why}");
        }
    };
    let cat = catalog::load(
        engine.claude,
        Some(&engine.home.state_dir().join("catalog.json")),
    )?;

    // 1. What changed, from stat alone.
    let mut report = PushReport {
        dry_run: opts.dry_run,
        remote_lost: remote_lost.clone(),
        secret_scan: cfg.secret_scan.to_string(),
        ..PushReport::default()
    };
    for (path, why) in &cat.unreadable {
        report.not_sent.push(NotSent {
            path: path.display().to_string(),
            reason: format!("it cannot be read ({why})"),
        });
    }
    for skip in &cat.discovery.skipped {
        report.not_sent.push(NotSent {
            path: skip.path.display().to_string(),
            reason: skip.reason.describe().to_string(),
        });
    }
    let mut work: Vec<SessionWork> = Vec::new();
    let mut folder_cwd: BTreeMap<String, String> = BTreeMap::new();
    for e in &cat.entries {
        if let Some(only) = &opts.only
            && !only.contains(&e.session.id)
        {
            continue;
        }
        if index.forgotten.contains(&e.session.id) {
            continue;
        }
        let Some(cwd) = e.meta.cwd.as_deref() else {
            if e.meta.lines > 0 {
                report.skipped.push(Skipped {
                    session: e.session.id.clone(),
                    reason: "no line tells its working directory".into(),
                });
            }
            continue;
        };
        // Where the session lives now (after a `/cd` or a relocation).
        let here = e.meta.effective_cwd().unwrap_or(cwd);
        if !opts.all && !cfg.in_sync_dirs(cwd) && !cfg.in_sync_dirs(here) {
            continue;
        }
        // Never stored where no machine could take it back from: refused here, with the reason.
        if let Some(reason) = unsendable(engine, &e.session.id, [cwd, here]) {
            report.skipped.push(Skipped {
                session: e.session.id.clone(),
                reason,
            });
            continue;
        }
        folder_cwd
            .entry(e.session.project_folder.clone())
            .or_insert_with(|| here.to_string());
        let s = &e.session;
        let key = engine.key(&s.transcript);
        let new = !index.logs.contains_key(&key);
        let mut w = SessionWork {
            entry: e,
            logs: Vec::new(),
            files: Vec::new(),
            new,
        };
        if changed_log(&index, &key, s.size, s.mtime_ns) || held_back(&index, &key) {
            w.logs.push(LogItem {
                key,
                path: s.transcript.clone(),
                rel: TRANSCRIPT_LOG.into(),
                size: s.size,
                mtime_ns: s.mtime_ns,
            });
        }
        let mut sendable = |rel: &str, is_log: bool, a: &Attachment| match layout::check_session_rel(
            rel, is_log,
        ) {
            Ok(()) => true,
            Err(why) => {
                report.not_sent.push(NotSent {
                    path: a.path.display().to_string(),
                    reason: format!("its name cannot be stored in the sync repository: {why}"),
                });
                false
            }
        };
        for a in &s.attachments {
            let k = engine.key(&a.path);
            let rel = format!("files/{}", a.rel);
            let is_log = a.rel.ends_with(".jsonl");
            if !sendable(&rel, is_log, a) {
                continue;
            }
            if is_log {
                if changed_log(&index, &k, a.size, a.mtime_ns) || held_back(&index, &k) {
                    w.logs.push(LogItem {
                        key: k,
                        path: a.path.clone(),
                        rel,
                        size: a.size,
                        mtime_ns: a.mtime_ns,
                    });
                }
            } else if changed_file(&index, &k, &a.path, a.size, a.mtime_ns) {
                w.files.push(FileItem {
                    key: k,
                    path: a.path.clone(),
                    repo_path_rel: rel,
                    size: a.size,
                    mtime_ns: a.mtime_ns,
                });
            }
        }
        for a in &s.file_history {
            let k = engine.key(&a.path);
            let rel = format!("{}/{}", layout::FILE_HISTORY_DIR, a.rel);
            if sendable(&rel, false, a) && changed_file(&index, &k, &a.path, a.size, a.mtime_ns) {
                w.files.push(FileItem {
                    key: k,
                    path: a.path.clone(),
                    repo_path_rel: rel,
                    size: a.size,
                    mtime_ns: a.mtime_ns,
                });
            }
        }
        for a in &s.legacy_agents {
            let k = engine.key(&a.path);
            let rel = format!("{}/{}", layout::LEGACY_DIR, a.rel);
            if !sendable(&rel, true, a) {
                continue;
            }
            if changed_log(&index, &k, a.size, a.mtime_ns) || held_back(&index, &k) {
                w.logs.push(LogItem {
                    key: k,
                    path: a.path.clone(),
                    rel,
                    size: a.size,
                    mtime_ns: a.mtime_ns,
                });
            }
        }
        if !w.logs.is_empty() || !w.files.is_empty() {
            work.push(w);
        }
    }
    let loose = if opts.only.is_some() {
        Vec::new()
    } else {
        loose_files(engine, &cat, &index, &folder_cwd, opts.all, &mut report)?
    };
    let held = if opts.only.is_some() {
        HeldBack::default()
    } else {
        hold_back(engine, &index, &loose, opts.allow_deletions)
    };
    report.withheld = held.report.clone();
    let loose_changed: Vec<&LooseFile> = loose
        .iter()
        .filter(|f| !held.skip.contains(&f.key))
        .filter(|f| {
            if f.exists {
                changed_file(&index, &f.key, &f.path, f.size, f.mtime_ns)
            } else {
                index.files.contains_key(&f.key)
            }
        })
        .collect();
    let history_path = engine.claude.history();
    let history_stat = if opts.only.is_some() {
        None
    } else {
        match std::fs::symlink_metadata(&history_path) {
            Ok(m) if m.file_type().is_symlink() => {
                report.not_sent.push(NotSent {
                    path: history_path.display().to_string(),
                    reason: SkipReason::Link.describe().to_string(),
                });
                None
            }
            Ok(m) => Some((m.len(), crate::os::mtime_ns(&m))),
            Err(_) => None,
        }
    };
    let history_changed =
        history_stat.is_some_and(|(sz, mt)| changed_log(&index, super::history::KEY, sz, mt));

    // A transcript that cannot be read (gone, permissions) is reported and skipped; it must not
    // stop the others from being pushed.
    work.retain(|w| {
        let unreadable = w
            .logs
            .iter()
            .find_map(|l| File::open(&l.path).err().map(|e| (l, e)));
        match unreadable {
            Some((l, e)) => {
                report.skipped.push(Skipped {
                    session: w.entry.session.id.clone(),
                    reason: format!("cannot read {}: {e}", l.path.display()),
                });
                false
            }
            None => true,
        }
    });

    if opts.dry_run {
        report.deleted = loose_changed
            .iter()
            .filter(|f| !f.exists)
            .map(|f| f.key.clone())
            .collect();
    }
    if work.is_empty() && loose_changed.is_empty() && !history_changed {
        unchecked();
        report.up_to_date = report.remote_lost.is_none();
        if !opts.dry_run && remember_lost(&mut index, &held) {
            index.save(engine.home)?;
        }
        report.seconds = started.elapsed().as_secs_f64();
        return Ok((report, Vec::new()));
    }
    if opts.dry_run {
        unchecked();
        for w in &work {
            if w.new {
                report.sessions_new += 1;
            } else {
                report.sessions_updated += 1;
            }
            for l in &w.logs {
                report.bytes += l.size
                    - index
                        .logs
                        .get(&l.key)
                        .map_or(0, |r| r.local_len.min(l.size));
            }
            report.files += w.files.len();
        }
        report.files += loose_changed.len();
        // What the push would find in what it sends, and so do with it.
        let history_from = history_changed.then(|| {
            index
                .logs
                .get(super::history::KEY)
                .map_or(0, |r| r.local_len)
        });
        report.secrets = dry_run_secrets(
            engine,
            &work,
            &loose_changed,
            &index,
            history_from,
            opts.all,
        )?;
        if cfg.secret_scan == SecretMode::Block {
            let mut blocked: BTreeSet<String> = BTreeSet::new();
            for s in &report.secrets {
                let session = work.iter().find(|w| {
                    w.logs.iter().any(|l| l.key == s.file)
                        || w.files.iter().any(|f| f.key == s.file)
                });
                blocked.insert(match session {
                    Some(w) => w.entry.session.id.clone(),
                    None if s.file == super::history::KEY => format!("{} line {}", s.file, s.line),
                    None => s.file.clone(),
                });
            }
            report.blocked = blocked.into_iter().collect();
        }
        report.seconds = started.elapsed().as_secs_f64();
        return Ok((report, Vec::new()));
    }

    let total: u64 = work
        .iter()
        .flat_map(|w| w.logs.iter())
        .map(|l| {
            l.size
                .saturating_sub(index.logs.get(&l.key).map_or(0, |r| r.local_len))
        })
        .sum();
    engine.progress_begin("push", total);

    // 2 and 3. Build on the remote head and push; rebuilt when the remote moved.
    let wait = opts.timeout.unwrap_or(Duration::from_secs(600));
    let store = Store::of_waiting(engine.home, cfg, wait)?;
    let live = crate::claude::live::live_ids(engine.claude);
    let timeout = opts.timeout.unwrap_or(Duration::from_secs(300));
    let mut staged = Staged::default();
    let message = format!("{}: push", cfg.machine_id);
    let mut built_on: Option<Oid> = None;
    let commit = store.commit_and_push(&message, false, timeout, |head, txn| {
        staged = Staged::default();
        built_on = head.cloned();
        let snap = Snapshot::load(&store, head)?;
        for (p, why) in snap.refused.iter().take(5) {
            tracing::warn!("ignoring {p} in the sync repository: {why}");
        }
        let mut reader = store.reader()?;
        let forgotten = snap.forgotten_ids(&store)?;
        for w in &work {
            if forgotten.contains(&w.entry.session.id) {
                // Deleted from the archive on purpose: remembered here, never pushed again.
                staged.forgotten.push(w.entry.session.id.clone());
                continue;
            }
            push_session(
                engine,
                w,
                &snap,
                &index,
                &live,
                txn,
                &mut reader,
                &mut staged,
            )?;
        }
        let mut written_records = BTreeSet::new();
        for f in &loose_changed {
            // `secret_scan = block`: a file with a secret stays here (and is retried).
            if cfg.secret_scan == SecretMode::Block
                && f.exists
                && let found = file_secrets(engine, &f.key, &f.path, &Known::default())
                && !found.is_empty()
            {
                staged.report.secrets.extend(found);
                staged.report.blocked.push(f.key.clone());
                continue;
            }
            let stored = stored_loose(&snap, &f.repo_path);
            // In a folder that lost its files and sessions, what is here was made anew: it is
            // merged with the stored version as a new file, never replacing it.
            let rec = index
                .files
                .get(&f.key)
                .filter(|_| !held.fresh.contains(&f.key));
            let r = files::reconcile(
                FileSides {
                    local_key: f.key.clone(),
                    local_path: f.path.clone(),
                    repo_path: f.repo_path.clone(),
                    stored: stored.as_ref(),
                    record: rec,
                    restore: false,
                    repo_has: &|p| stored_loose(&snap, p).is_some(),
                },
                Direction::Push,
                &engine.mapper,
                &cfg.machine_id,
                &mut reader,
                false,
                engine.scanner,
            )?;
            apply_reconciled(
                engine,
                r,
                txn,
                &mut staged,
                (f.size, f.mtime_ns),
                &Known::default(),
            )?;
            // A project that only has memory (no session stored yet) still records its
            // directory, so that every machine knows where the memory goes.
            if let Some(cwd) = &f.project {
                let slug = layout::project_slug(cwd);
                if snap.projects.get(&slug).is_none_or(|p| p.record.is_none())
                    && written_records.insert(slug.clone())
                {
                    let rec =
                        crate::store::format::to_json_bytes(&ProjectRecord { cwd: cwd.clone() })?;
                    let m = txn.blob(&rec)?;
                    txn.put(&format!("{}/{PROJECT_FILE}", layout::project_dir(&slug)), m)?;
                }
                if let Some(folder) = f.key.split('/').nth(1) {
                    staged.projects.push((folder.to_string(), cwd.clone()));
                }
            }
        }
        if history_changed && let Some((sz, mt)) = history_stat {
            staged.history = super::history::push(
                engine,
                &snap,
                sz,
                mt,
                opts.all,
                txn,
                &mut reader,
                &mut staged.report,
            )?;
        }
        Ok(())
    })?;

    engine.progress_end();
    // What was found before the commit was built (sessions and files left out) still holds.
    let before = report;
    let settle = std::mem::take(&mut staged.settle);
    let mut report = std::mem::take(&mut staged.report);
    report.dry_run = false;
    if let Some(c) = &commit {
        // Resolve the objects written in this commit, then remember everything.
        let mut want: Vec<String> = Vec::new();
        for d in staged.logs.iter().chain(staged.history.iter()) {
            for (name, oid, _) in &d.segs {
                if oid.is_none() {
                    want.push(format!("{}/{name}", d.repo_dir));
                }
            }
        }
        for (d, _, _) in &staged.files {
            if let Base::Written(p) = &d.base {
                want.push(p.clone());
            }
        }
        let resolved = store.resolve_paths(c, &want)?;
        for d in staged.logs.iter().chain(staged.history.iter()) {
            let mut segs = Vec::with_capacity(d.segs.len());
            for (name, oid, size) in &d.segs {
                let oid = match oid {
                    Some(o) => o.clone(),
                    None => resolved
                        .get(&format!("{}/{name}", d.repo_dir))
                        .cloned()
                        .with_context(|| {
                            format!(
                                "segment {}/{name} is missing from the new commit",
                                d.repo_dir
                            )
                        })?,
                };
                segs.push(log::Seg {
                    name: name.clone(),
                    oid,
                    size: *size,
                });
            }
            index.logs.insert(d.key.clone(), d.record(segs));
        }
        report.commit = Some(c.0.clone());
    } else {
        // Nothing new reached the repository; the records of what was read still hold.
        for d in staged.logs.iter().chain(staged.history.iter()) {
            if d.segs.iter().all(|(_, o, _)| o.is_some()) {
                let segs = d
                    .segs
                    .iter()
                    .filter_map(|(n, o, s)| {
                        o.clone().map(|oid| log::Seg {
                            name: n.clone(),
                            oid,
                            size: *s,
                        })
                    })
                    .collect();
                index.logs.insert(d.key.clone(), d.record(segs));
            }
        }
        report.up_to_date = report.blocked.is_empty()
            && report.skipped.is_empty()
            && report.held_back.is_empty()
            && report.remote_lost.is_none();
    }
    let resolved_files = match &commit {
        Some(c) => {
            let want: Vec<String> = staged
                .files
                .iter()
                .filter_map(|(d, _, _)| {
                    if let Base::Written(p) = &d.base {
                        Some(p.clone())
                    } else {
                        None
                    }
                })
                .collect();
            store.resolve_paths(c, &want)?
        }
        None => HashMap::new(),
    };
    for (d, size, mtime) in &staged.files {
        let base = match &d.base {
            Base::None => None,
            Base::Stored(o) => Some(o.clone()),
            Base::Written(p) => resolved_files.get(p).cloned(),
        };
        // A file the merge rewrote locally has a new stat; one too recent to trust is left
        // blank (the next push compares contents).
        let (size, mtime) = match std::fs::metadata(engine.local_path(&d.local_key)) {
            Ok(m) if d.local_hash.is_some() => {
                let now = (m.len(), crate::os::mtime_ns(&m));
                if now.0 == *size && now.1 == *mtime {
                    files::stat_to_record(&d.local_key, *size, *mtime)
                } else {
                    files::stat_to_record(&d.local_key, now.0, now.1)
                }
            }
            _ => files::stat_to_record(&d.local_key, *size, *mtime),
        };
        index.lost.remove(&d.local_key);
        index.files.insert(
            d.local_key.clone(),
            FileRecord {
                repo_path: d.repo_path.clone(),
                base,
                local_hash: d.local_hash.clone(),
                size,
                mtime_ns: mtime,
            },
        );
    }
    for k in &staged.forget {
        index.files.remove(k);
        index.lost.remove(k);
    }
    remember_lost(&mut index, &held);
    index.forgotten.extend(staged.forgotten.drain(..));
    for (sid, rec) in staged.sessions.drain(..) {
        index.sessions.insert(sid, rec);
    }
    for (folder, cwd) in staged.projects.drain(..) {
        index.projects.insert(folder, cwd);
    }
    // A pull that was complete at the head we built on stays complete: the commit only adds
    // what this machine has.
    if let (Some(c), Some(mark)) = (&commit, index.pulled.as_mut())
        && built_on.as_ref().is_some_and(|b| b.0 == mark.head)
    {
        mark.head = c.0.clone();
    }
    if let Some(c) = &commit {
        index.pushed(&store, c, built_on.as_ref());
    }
    index.save(engine.home)?;
    if commit.is_some() {
        let mut status = State::load_status(engine.home);
        status.remote = Some(cfg.remote.clone());
        status.last_push = Some(Event {
            at: Utc::now(),
            commit: report.commit.clone(),
            sessions: report.sessions_new + report.sessions_updated,
        });
        status.last_error = None;
        State::save_status(engine.home, &status)?;
    }
    report.secret_scan = before.secret_scan;
    report.memory_unplaced = before.memory_unplaced;
    report.withheld = before.withheld;
    report.remote_lost = before.remote_lost;
    report.not_sent.splice(0..0, before.not_sent);
    report.skipped.splice(0..0, before.skipped);
    report.seconds = started.elapsed().as_secs_f64();
    Ok((report, settle))
}

/// The secrets of a plain file's content as stored at `repo_path` (JSON files scanned as JSON,
/// the rest as text, with `known` values), and the redacted content when `secret_scan` is
/// `redact` and it had any.
fn outbound_file(
    engine: &Engine,
    key: &str,
    repo_path: &str,
    data: &[u8],
    known: &Known,
) -> (Vec<SecretReport>, Option<Vec<u8>>) {
    let Some(sc) = &engine.scanner else {
        return (Vec::new(), None);
    };
    let mut known = known.clone();
    let fs = match files::context_for(repo_path) {
        crate::paths::Context::Json if !repo_path.ends_with(".jsonl") => {
            sc.scan_json_line_known(data, &mut known)
        }
        crate::paths::Context::Json => sc.scan_jsonl(data),
        _ => sc.scan_text_known(data, &mut known),
    };
    // Findings come sorted: count lines once.
    let (mut pos, mut line) = (0usize, 1u64);
    let reports = fs
        .iter()
        .map(|f| {
            let to = f.start.min(data.len()).max(pos);
            line += memchr::memchr_iter(b'\n', &data[pos..to]).count() as u64;
            pos = to;
            SecretReport {
                kind: f.kind.to_string(),
                file: key.to_string(),
                line,
            }
        })
        .collect();
    let redacted = (!fs.is_empty() && engine.config.secret_scan == SecretMode::Redact)
        .then(|| sc.redact(data, &fs).into_owned());
    (reports, redacted)
}

/// The secrets of a local plain file as it would be stored (unreadable: none, push reports it).
fn file_secrets(engine: &Engine, key: &str, path: &Path, known: &Known) -> Vec<SecretReport> {
    let Ok(data) = std::fs::read(path) else {
        return Vec::new();
    };
    let name = path.to_string_lossy();
    let mut mapped = Vec::with_capacity(data.len());
    engine
        .mapper
        .to_portable(&data, files::context_for(&name), &mut mapped);
    outbound_file(engine, key, &name, &mapped, known).0
}

/// The secrets a push would find in what it sends: the new lines of changed logs (read from
/// where the last push stopped, with what the lines before gave), changed plain files, and new
/// history lines (from `history_from`) of synced projects.
fn dry_run_secrets(
    engine: &Engine,
    work: &[SessionWork],
    loose: &[&LooseFile],
    index: &Index,
    history_from: Option<u64>,
    all: bool,
) -> Result<Vec<SecretReport>> {
    let mut found = Vec::new();
    if engine.scanner.is_none() {
        return Ok(found);
    }
    let mut ignore = |_: &[u8]| -> Result<()> { Ok(()) };
    for w in work {
        let mut session_known = Known::default();
        if !w.logs.iter().any(|i| i.rel == TRANSCRIPT_LOG)
            && let Some(r) = index.logs.get(&engine.key(&w.entry.session.transcript))
        {
            session_known.extend(
                &engine
                    .restore_secrets(&w.entry.session.transcript, r)?
                    .known,
            );
        }
        for l in &w.logs {
            let rec = index.logs.get(&l.key);
            let mut st = match rec {
                Some(r) if r.local_len <= l.size => engine.restore_secrets(&l.path, r)?,
                _ => super::FileSecrets::default(),
            };
            st.known.extend(&session_known);
            let from = rec.map_or(0, |r| r.local_len).min(l.size);
            let mut line_no = rec.map_or(0, |r| r.local_lines) + 1;
            let mut f =
                File::open(&l.path).with_context(|| format!("cannot read {}", l.path.display()))?;
            for_each_chunk(
                &mut f,
                &l.path,
                from,
                l.size,
                CHUNK,
                HUGE_LINE,
                |c| match c {
                    Chunk::Lines(chunk, at) => {
                        engine.outbound(
                            chunk,
                            &mut Vec::new(),
                            &l.key,
                            line_no,
                            &mut found,
                            &mut st,
                            at,
                        );
                        line_no += memchr::memchr_iter(b'\n', chunk).count() as u64;
                        Ok(())
                    }
                    Chunk::Huge { start, end } => {
                        let mut replay =
                            |sink: &mut Sink<'_>| replay_file(&l.path, start, end, sink);
                        let no = line_no;
                        line_no += 1;
                        engine.outbound_huge(
                            &mut replay,
                            &l.key,
                            no,
                            &mut found,
                            &mut ignore,
                            &mut st,
                            (start, end),
                        )
                    }
                },
            )?;
            session_known.extend(&st.known);
        }
        for f in &w.files {
            found.extend(file_secrets(engine, &f.key, &f.path, &session_known));
        }
    }
    for f in loose.iter().filter(|f| f.exists) {
        found.extend(file_secrets(engine, &f.key, &f.path, &Known::default()));
    }
    if let Some(from) = history_from {
        let path = engine.claude.history();
        let data =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut st = super::FileSecrets::default();
        let mut at = 0u64;
        for (i, line) in split_lines(&data).enumerate() {
            let mut hits = Vec::new();
            engine.outbound(
                line,
                &mut Vec::new(),
                super::history::KEY,
                i as u64 + 1,
                &mut hits,
                &mut st,
                at,
            );
            if at >= from && super::history::synced_line(engine, line, all) {
                found.extend(hits);
            }
            at += line.len() as u64;
        }
    }
    Ok(found)
}

fn apply_reconciled(
    engine: &Engine,
    r: files::Reconciled,
    txn: &mut Txn,
    staged: &mut Staged,
    (size, mtime_ns): (u64, i128),
    known: &Known,
) -> Result<()> {
    for (path, data) in &r.repo_put {
        // Secrets handled in what is stored (the local file is untouched).
        let (found, redacted) = outbound_file(engine, &r.local_key, path, data, known);
        staged.report.secrets.extend(found);
        let data = redacted.as_deref().unwrap_or(data);
        let m = txn.blob(data)?;
        txn.put(path, m)?;
        staged.report.bytes += data.len() as u64;
    }
    for path in &r.repo_delete {
        txn.delete(path)?;
        staged.report.deleted.push(r.local_key.clone());
    }
    if r.pushed {
        staged.report.files += 1;
    }
    if let Some(c) = &r.conflict {
        staged.report.conflicts.push(c.display().to_string());
    }
    if r.forget {
        staged.forget.push(r.local_key.clone());
    }
    for d in r.records {
        staged.files.push((d, size, mtime_ns));
    }
    Ok(())
}

/// Push one session's changed logs and files, and refresh its metadata.
#[allow(clippy::too_many_arguments)]
fn push_session(
    engine: &Engine,
    w: &SessionWork,
    snap: &Snapshot,
    index: &Index,
    live: &std::collections::HashSet<String>,
    txn: &mut Txn,
    reader: &mut BlobReader,
    staged: &mut Staged,
) -> Result<()> {
    let e = w.entry;
    let sid = &e.session.id;
    let cwd = e.meta.cwd.as_deref().unwrap_or_default();
    let portable_cwd = engine.mapper.portable_path(cwd);
    let existing: Option<&RepoSession> = snap.sessions.get(sid);
    let slug = existing
        .map(|r| r.slug.clone())
        .unwrap_or_else(|| layout::project_slug(&portable_cwd));
    let dir = existing
        .map(|r| r.dir.clone())
        .unwrap_or_else(|| layout::session_dir(&slug, sid));
    let is_live = live.contains(sid);
    let mut secrets_found = Vec::new();
    let mut drafts = Vec::new();
    let mut appended_lines = 0u64;
    let mut transcript_touched = false;
    // What the session's logs gave: later logs (subagents after the transcript), its tool
    // results and its title must not show it either. The transcript's, when it did not change,
    // from the lines its record names.
    let mut session_known = Known::default();
    if engine.scanner.is_some() && !w.logs.iter().any(|i| i.rel == TRANSCRIPT_LOG) {
        let key = engine.key(&e.session.transcript);
        if let Some(r) = index.logs.get(&key) {
            session_known.extend(&engine.restore_secrets(&e.session.transcript, r)?.known);
        }
    }
    for item in &w.logs {
        let stored = existing
            .and_then(|r| r.logs.get(&item.rel))
            .cloned()
            .unwrap_or_else(|| StoredLog {
                dir: format!("{dir}/{}", item.rel),
                segs: vec![],
            });
        let record = index
            .logs
            .get(&item.key)
            .filter(|r| r.repo_dir == stored.dir);
        let out = push_log(
            engine,
            item,
            stored,
            record,
            is_live,
            txn,
            reader,
            &mut secrets_found,
            &session_known,
        )?;
        session_known.extend(&out.secrets.known);
        if item.rel == TRANSCRIPT_LOG {
            appended_lines = out.lines;
            transcript_touched = !out.writer.is_empty();
            if out.may_branch && !is_live {
                staged.settle.push((
                    sid.clone(),
                    item.path.clone(),
                    e.meta.title().map(str::to_string),
                ));
            }
        }
        drafts.push((item, out));
    }
    // A log whose last line is unfinished keeps it back until the file is quiet; its record
    // (local_len < size) brings it back to the next push even if its stat never changes.
    if drafts.iter().any(|(item, out)| out.local_len < item.size) {
        staged.report.held_back.push(sid.clone());
    }
    // Nothing of the conversation stored or sent yet (its only line is unfinished): send
    // nothing, so that the repository never lists a session it cannot give back.
    let transcript_stored = existing
        .and_then(|r| r.transcript())
        .is_some_and(|t| !t.segs.is_empty());
    let transcript_sent = drafts
        .iter()
        .any(|(item, out)| item.rel == TRANSCRIPT_LOG && !out.writer.is_empty());
    if !transcript_stored && !transcript_sent {
        return Ok(());
    }
    if engine.config.secret_scan == SecretMode::Block {
        for f in &w.files {
            secrets_found.extend(file_secrets(engine, &f.key, &f.path, &session_known));
        }
    }
    let blocked = engine.config.secret_scan == SecretMode::Block && !secrets_found.is_empty();
    staged.report.secrets.extend(secrets_found);
    if blocked {
        staged.report.blocked.push(sid.clone());
        return Ok(());
    }
    let mut changed = false;
    let mut transcript_segs: Option<Vec<(String, Option<Oid>, u64)>> = None;
    for (item, out) in drafts {
        let LogOut {
            writer,
            stored,
            local_len,
            local_fp,
            local_lines,
            equal,
            lines,
            secrets,
            ..
        } = out;
        let repo_dir = stored.dir.clone();
        let segs = if !writer.is_empty() {
            staged.report.bytes += writer.appended;
            // Lines sent, counting a last one without its newline (`writer.lines` counts
            // newlines).
            staged.report.lines += lines;
            changed = true;
            writer.finish(txn, reader)?
        } else {
            stored
                .segs
                .iter()
                .map(|s| (s.name.clone(), Some(s.oid.clone()), s.size))
                .collect()
        };
        if item.rel == TRANSCRIPT_LOG {
            transcript_segs = Some(segs.clone());
        }
        staged.logs.push(LogDraft {
            key: item.key.clone(),
            repo_dir,
            segs,
            local_len,
            local_fp,
            local_lines,
            equal,
            size: item.size,
            mtime_ns: item.mtime_ns,
            secret_lines: Some(secrets.lines),
        });
    }
    for f in &w.files {
        let repo_path = format!("{dir}/{}", f.repo_path_rel);
        let stored = existing
            .and_then(|r| r.files.get(&f.repo_path_rel))
            .cloned();
        let r = files::reconcile(
            FileSides {
                local_key: f.key.clone(),
                local_path: f.path.clone(),
                repo_path,
                stored: stored.as_ref(),
                record: index.files.get(&f.key),
                restore: false,
                repo_has: &|p| existing.is_some_and(|r| r.files.values().any(|s| s.path == p)),
            },
            Direction::Push,
            &engine.mapper,
            &engine.config.machine_id,
            reader,
            false,
            engine.scanner,
        )?;
        changed |= r.pushed;
        apply_reconciled(engine, r, txn, staged, (f.size, f.mtime_ns), &session_known)?;
    }
    let meta_missing = existing.is_none_or(|r| r.meta.is_none());
    if changed || meta_missing {
        let old: Option<SessionMeta> = match existing.and_then(|r| r.meta.as_ref()) {
            Some(m) => serde_json::from_slice(&reader.read(&m.oid)?).ok(),
            None => None,
        };
        let size = match &transcript_segs {
            Some(s) => s.iter().map(|x| x.2).sum(),
            None => existing
                .and_then(|r| r.transcript())
                .map_or(0, |t| t.size()),
        };
        let mut meta = merged_meta(
            engine,
            old,
            e,
            &portable_cwd,
            size,
            appended_lines,
            transcript_touched,
        );
        // The title (a prompt, a summary) with what the session's logs gave too.
        if let (Some(sc), Some(t)) = (&engine.scanner, meta.title.clone()) {
            let fs = sc.scan_text_known(t.as_bytes(), &mut session_known.clone());
            for f in &fs {
                staged.report.secrets.push(SecretReport {
                    kind: f.kind.to_string(),
                    file: format!("the title of {}", engine.key(&e.session.transcript)),
                    line: 0,
                });
            }
            if !fs.is_empty() && engine.config.secret_scan == SecretMode::Redact {
                meta.title =
                    Some(String::from_utf8_lossy(&sc.redact(t.as_bytes(), &fs)).into_owned());
            }
        }
        let bytes = crate::store::format::to_json_bytes(&meta)?;
        let m = txn.blob(&bytes)?;
        txn.put(&format!("{dir}/{META_FILE}"), m)?;
        if snap.projects.get(&slug).is_none_or(|p| p.record.is_none()) {
            let rec = crate::store::format::to_json_bytes(&ProjectRecord {
                cwd: portable_cwd.clone(),
            })?;
            let m = txn.blob(&rec)?;
            txn.put(&format!("{}/{PROJECT_FILE}", layout::project_dir(&slug)), m)?;
        }
        if existing.is_none() {
            staged.report.sessions_new += 1;
        } else {
            staged.report.sessions_updated += 1;
        }
    }
    staged.sessions.push((
        sid.clone(),
        SessionRecord {
            repo_dir: dir.clone(),
            local: engine.key(&e.session.transcript),
            // The metadata this machine last pulled: a push that rewrote it makes the next
            // pull look at the session once more (cheaply).
            meta: index.sessions.get(sid).and_then(|r| r.meta.clone()),
        },
    ));
    staged
        .projects
        .push((e.session.project_folder.clone(), portable_cwd));
    Ok(())
}

/// The metadata of a session after this push.
fn merged_meta(
    engine: &Engine,
    old: Option<SessionMeta>,
    e: &Entry,
    portable_cwd: &str,
    size: u64,
    appended: u64,
    touched: bool,
) -> SessionMeta {
    let mut m = old.unwrap_or_default();
    m.session_id = e.session.id.clone();
    if m.cwd.is_empty() {
        m.cwd = portable_cwd.to_string();
    }
    let local = &e.meta;
    if local.custom_title.is_some() {
        // A name given to the session (`/rename`): Claude Code's title.
        m.title = local.title().map(str::to_string);
        m.custom_title = true;
    } else if !m.custom_title && (m.title.is_none() || local.title().is_some()) {
        m.title = local.title().map(str::to_string).or(m.title);
    }
    m.picker_hidden = local.picker_hidden_reason().map(str::to_string);
    m.is_sidechain = local.is_sidechain;
    m.entrypoint = local.entrypoint.clone().or(m.entrypoint);
    if let Some(to) = &local.relocated_cwd {
        m.relocated_cwd = Some(engine.mapper.portable_path(to));
    }
    m.first_activity = match (m.first_activity, local.first_activity) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    m.last_activity = match (m.last_activity, local.last_activity) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if touched || m.last_machine.is_empty() {
        m.last_machine = engine.config.machine_id.clone();
    }
    m.size = size;
    m.lines = if m.lines == 0 && !touched {
        local.lines
    } else {
        m.lines + appended
    };
    let mut subs: BTreeSet<String> = m.subagents.into_iter().collect();
    for a in e
        .session
        .attachments
        .iter()
        .chain(e.session.legacy_agents.iter())
    {
        let name = a.rel.rsplit('/').next().unwrap_or(&a.rel);
        if let Some(id) = name
            .strip_suffix(".jsonl")
            .filter(|n| n.starts_with("agent-"))
        {
            subs.insert(id.to_string());
        }
    }
    m.subagents = subs.into_iter().collect();
    m.updated_at = Some(Utc::now());
    m
}

struct LogOut {
    writer: SegmentWriter,
    stored: StoredLog,
    lines: u64,
    local_len: u64,
    local_fp: u64,
    local_lines: u64,
    equal: bool,
    /// The local lines sent may have started a second branch of the conversation.
    may_branch: bool,
    /// The file's secret state after its first `local_len` bytes.
    secrets: super::FileSecrets,
}

/// Work out what of one local log the stored log lacks, into a segment writer.
#[allow(clippy::too_many_arguments)]
fn push_log(
    engine: &Engine,
    item: &LogItem,
    stored: StoredLog,
    record: Option<&LogRecord>,
    live: bool,
    txn: &mut Txn,
    reader: &mut BlobReader,
    found: &mut Vec<SecretReport>,
    session: &Known,
) -> Result<LogOut> {
    let mut f =
        File::open(&item.path).with_context(|| format!("cannot read {}", item.path.display()))?;
    let size = f.metadata().at("read the metadata of", &item.path)?.len();
    let quiet =
        !live && (Utc::now().timestamp_nanos_opt().unwrap_or(0) as i128 - item.mtime_ns) > QUIET_NS;
    let end = if quiet {
        size
    } else {
        complete_end(&mut f, size).at("read", &item.path)?
    };
    let fp = if end > 0 {
        log::fingerprint(&mut f, end).at("read", &item.path)?
    } else {
        0
    };
    let key = &item.key;
    let mut writer = SegmentWriter::new(stored.clone());
    let mut lines_out = 0u64;

    // Fast path: the index says what is stored, and the stored log only grew since.
    if let Some(r) = record
        && r.local_len <= end
        && (r.local_len == 0
            || log::fingerprint(&mut f, r.local_len).at("read", &item.path)? == r.local_fp)
        && log::is_prefix(&r.segs, &stored.segs)
    {
        let extras = &stored.segs[r.segs.len()..];
        // What the lines already sent gave, so that their values stay redacted in new lines.
        let mut secrets = engine.restore_secrets(&item.path, r)?;
        secrets.known.extend(session);
        let mut bag = IdentBag::default();
        if !extras.is_empty() {
            log::for_each_repo_line(reader, extras, |l| {
                bag.add(log::identity(l));
                Ok(())
            })?;
        }
        let dedupe = !extras.is_empty();
        let mut dropped = false;
        let mut line_no = r.local_lines + 1;
        // Turns appended here that do not continue the conversation's end make a branch.
        let mut watch = (item.rel == TRANSCRIPT_LOG && r.local_len < end)
            .then(|| super::branches::AppendWatch::new(&item.path, r.local_len));
        let path = &item.path;
        for_each_chunk(
            &mut f,
            path,
            r.local_len,
            end,
            CHUNK,
            HUGE_LINE,
            |chunk| match chunk {
                Chunk::Lines(chunk, at) => {
                    engine.progress_advance(chunk.len() as u64);
                    if let Some(w) = watch.as_mut() {
                        for line in split_lines(chunk) {
                            w.see(line);
                        }
                    }
                    let mut out = Vec::with_capacity(chunk.len());
                    engine.outbound(chunk, &mut out, key, line_no, found, &mut secrets, at);
                    line_no += memchr::memchr_iter(b'\n', chunk).count() as u64;
                    if dedupe {
                        for line in split_lines(&out) {
                            if bag.take(&log::identity(line)) {
                                dropped = true;
                            } else {
                                writer.push(line, txn)?;
                                lines_out += 1;
                            }
                        }
                    } else {
                        // Whole lines, the last one possibly without its newline (a quiet file).
                        lines_out += split_lines(&out).count() as u64;
                        writer.push(&out, txn)?;
                    }
                    writer.maybe_cut(txn)?;
                    Ok(())
                }
                Chunk::Huge { start, end } => {
                    engine.progress_advance(end - start);
                    let mut replay = |sink: &mut Sink<'_>| replay_file(path, start, end, sink);
                    if let Some(w) = watch.as_mut() {
                        w.see_huge(&mut replay)?;
                    }
                    let no = line_no;
                    // Lines are counted by their newlines (a last one without is not, yet).
                    line_no += u64::from(ends_with_newline(path, end)?);
                    if dedupe
                        && bag.take(&huge_identity(
                            engine,
                            &mut replay,
                            key,
                            no,
                            &mut secrets,
                            (start, end),
                        )?)
                    {
                        dropped = true;
                        return Ok(());
                    }
                    engine.outbound_huge(
                        &mut replay,
                        key,
                        no,
                        found,
                        &mut |piece| writer.push(piece, txn),
                        &mut secrets,
                        (start, end),
                    )?;
                    lines_out += 1;
                    writer.maybe_cut(txn)
                }
            },
        )?;
        let equal = r.equal && extras.is_empty() && !dropped;
        let local_lines = line_no - 1;
        return Ok(LogOut {
            writer,
            stored,
            lines: lines_out,
            local_len: end,
            local_fp: fp,
            local_lines,
            equal,
            may_branch: watch.is_some_and(|w| w.may_branch()),
            secrets,
        });
    }

    // Slow path: union against every stored line.
    let mut bag = IdentBag::default();
    if !stored.segs.is_empty() {
        log::for_each_repo_line(reader, &stored.segs, |l| {
            bag.add(log::identity(l));
            Ok(())
        })?;
    }
    let mut line_no = 1u64;
    let mut secrets = super::FileSecrets::default();
    secrets.known.extend(session);
    let stored_ends_nl = stored_ends_with_newline(reader, &stored)?;
    let mut first = true;
    let path = &item.path;
    for_each_chunk(
        &mut f,
        path,
        0,
        end,
        CHUNK,
        HUGE_LINE,
        |chunk| match chunk {
            Chunk::Lines(chunk, at) => {
                engine.progress_advance(chunk.len() as u64);
                let mut out = Vec::with_capacity(chunk.len());
                engine.outbound(chunk, &mut out, key, line_no, found, &mut secrets, at);
                line_no += memchr::memchr_iter(b'\n', chunk).count() as u64;
                for line in split_lines(&out) {
                    if !stored.segs.is_empty() && bag.take(&log::identity(line)) {
                        continue;
                    }
                    if first && !stored_ends_nl {
                        writer.push(b"\n", txn)?;
                    }
                    first = false;
                    writer.push(line, txn)?;
                    lines_out += 1;
                }
                writer.maybe_cut(txn)?;
                Ok(())
            }
            Chunk::Huge { start, end } => {
                engine.progress_advance(end - start);
                let mut replay = |sink: &mut Sink<'_>| replay_file(path, start, end, sink);
                let no = line_no;
                line_no += u64::from(ends_with_newline(path, end)?);
                if !stored.segs.is_empty()
                    && bag.take(&huge_identity(
                        engine,
                        &mut replay,
                        key,
                        no,
                        &mut secrets,
                        (start, end),
                    )?)
                {
                    return Ok(());
                }
                if first && !stored_ends_nl {
                    writer.push(b"\n", txn)?;
                }
                first = false;
                engine.outbound_huge(
                    &mut replay,
                    key,
                    no,
                    found,
                    &mut |piece| writer.push(piece, txn),
                    &mut secrets,
                    (start, end),
                )?;
                lines_out += 1;
                writer.maybe_cut(txn)
            }
        },
    )?;
    let equal = bag.is_empty();
    let local_lines = line_no - 1;
    // Local lines joined a stored log that had lines of its own: the two may have diverged.
    let may_branch = item.rel == TRANSCRIPT_LOG && lines_out > 0 && !stored.segs.is_empty();
    Ok(LogOut {
        writer,
        stored,
        lines: lines_out,
        local_len: end,
        local_fp: fp,
        local_lines,
        equal,
        may_branch,
        secrets,
    })
}

/// Whether the byte before `end` in the file at `path` is a newline (`end` > 0).
fn ends_with_newline(path: &Path, end: u64) -> Result<bool> {
    let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(super::pull::file_ends_with_newline(&mut f, end).at("read", path)?)
}

/// The identity of a huge local line's stored form (its secrets are reported when it is sent).
fn huge_identity(
    engine: &Engine,
    replay: &mut Replay<'_>,
    key: &str,
    line_no: u64,
    secrets: &mut super::FileSecrets,
    at: (u64, u64),
) -> Result<log::Ident> {
    let mut id = log::IdentityBuilder::default();
    engine.outbound_huge(
        replay,
        key,
        line_no,
        &mut Vec::new(),
        &mut |piece| {
            id.feed(piece);
            Ok(())
        },
        secrets,
        at,
    )?;
    Ok(id.finish())
}

/// Whether the stored log is empty or ends with a newline.
fn stored_ends_with_newline(reader: &mut BlobReader, stored: &StoredLog) -> Result<bool> {
    match stored.segs.iter().rev().find(|s| s.size > 0) {
        None => Ok(true),
        Some(s) => Ok(reader.read(&s.oid)?.ends_with(b"\n")),
    }
}

/// The lines of a buffer, each with its newline (the last may lack it).
pub fn split_lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= buf.len() {
            return None;
        }
        let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |i| start + i + 1);
        let line = &buf[start..end];
        start = end;
        Some(line)
    })
}

/// Memory files of project folders, CLAUDE.md and plans, present or remembered.
fn loose_files(
    engine: &Engine,
    cat: &catalog::Catalog,
    index: &Index,
    folder_cwd: &BTreeMap<String, String>,
    all: bool,
    report: &mut PushReport,
) -> Result<Vec<LooseFile>> {
    let cfg = engine.config;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let not_sent = std::cell::RefCell::new(Vec::new());
    let root = engine.claude.root.clone();
    let mut add = |out: &mut Vec<LooseFile>,
                   key: String,
                   path: PathBuf,
                   repo_path: String,
                   att: Option<&Attachment>,
                   project: Option<&String>| {
        // Not through a symbolic link (a remembered file whose folder became one: what
        // discovery found has none), and only names the repository can hold and give back.
        if att.is_none()
            && let Some(link) = link_below(&root, &path)
        {
            not_sent.borrow_mut().push(NotSent {
                path: link.display().to_string(),
                reason: SkipReason::Link.describe().to_string(),
            });
            return;
        }
        if let Err(why) = crate::store::format::check_rel_path(&repo_path) {
            not_sent.borrow_mut().push(NotSent {
                path: path.display().to_string(),
                reason: format!("its name cannot be stored in the sync repository: {why}"),
            });
            return;
        }
        if seen.insert(key.clone()) {
            out.push(LooseFile {
                key,
                path,
                repo_path,
                size: att.map_or(0, |a| a.size),
                mtime_ns: att.map_or(0, |a| a.mtime_ns),
                exists: att.is_some(),
                project: project.cloned(),
            });
        }
    };
    // Claude Code keeps memory per git root (the main worktree's), not per working directory:
    // the folder of each session's git root holds the memory of all its sessions.
    let mut roots: HashMap<&str, String> = HashMap::new();
    let mut root_of_folder: BTreeMap<String, String> = BTreeMap::new();
    for e in &cat.entries {
        let Some(cwd) = e.meta.effective_cwd() else {
            continue;
        };
        let root = roots.entry(cwd).or_insert_with(|| {
            crate::claude::naming::git_root(Path::new(&crate::claude::naming::client_path(cwd)))
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_else(|| cwd.to_string())
        });
        root_of_folder
            .entry(crate::claude::naming::project_folder_name(root))
            .or_insert_with(|| root.clone());
    }
    for p in &cat.discovery.projects {
        // The folder's directory: the git root of a session, else a session's own directory,
        // else what an earlier sync recorded.
        let portable = match root_of_folder.get(&p.name).or(folder_cwd.get(&p.name)) {
            Some(cwd) => Some(engine.mapper.portable_path(cwd)),
            None => index.projects.get(&p.name).cloned(),
        };
        let Some(portable) = portable else {
            if !p.memory.is_empty() {
                report.memory_unplaced.push(p.name.clone());
            }
            continue;
        };
        if !all
            && let Ok(local) = engine.mapper.local_path(&portable)
            && !cfg.in_sync_dirs(&local)
        {
            continue;
        }
        let mem_dir = layout::memory_dir(&layout::project_slug(&portable));
        for a in &p.memory {
            let key = engine.key(&a.path);
            add(
                &mut out,
                key,
                a.path.clone(),
                format!("{mem_dir}/{}", a.rel),
                Some(a),
                Some(&portable),
            );
        }
        for (k, r) in records_under(index, &format!("projects/{}/memory/", p.name)) {
            add(
                &mut out,
                k.clone(),
                engine.local_path(k),
                r.repo_path.clone(),
                None,
                Some(&portable),
            );
        }
    }
    // Memory synced from project folders that are not here any more (the push tells, and
    // deletes it only when confirmed).
    let here: BTreeSet<&str> = cat
        .discovery
        .projects
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let remembered: Vec<(String, String)> = index
        .files
        .iter()
        .filter(|(k, _)| memory_folder(k).is_some_and(|f| !here.contains(f)))
        .map(|(k, r)| (k.clone(), r.repo_path.clone()))
        .collect();
    for (k, repo_path) in remembered {
        add(
            &mut out,
            k.clone(),
            engine.local_path(&k),
            repo_path,
            None,
            None,
        );
    }
    // Global instructions and plans.
    let claude_md = engine.claude.claude_md();
    let att = std::fs::symlink_metadata(&claude_md)
        .ok()
        .filter(|m| {
            if m.file_type().is_symlink() {
                not_sent.borrow_mut().push(NotSent {
                    path: claude_md.display().to_string(),
                    reason: SkipReason::Link.describe().to_string(),
                });
            }
            m.is_file()
        })
        .map(|m| Attachment {
            rel: "CLAUDE.md".into(),
            path: claude_md.clone(),
            size: m.len(),
            mtime_ns: crate::os::mtime_ns(&m),
        });
    let claude_md_link = std::fs::symlink_metadata(&claude_md).is_ok_and(|m| m.is_symlink());
    if !claude_md_link && (att.is_some() || index.files.contains_key("CLAUDE.md")) {
        add(
            &mut out,
            "CLAUDE.md".into(),
            claude_md,
            layout::claude_md_path(),
            att.as_ref(),
            None,
        );
    }
    // Conflict copies of CLAUDE.md, beside it.
    let mut copies = Vec::new();
    match std::fs::read_dir(&engine.claude.root) {
        Ok(rd) => {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !is_claude_md_copy(&name) {
                    continue;
                }
                if let Ok(m) = e
                    .metadata()
                    .map_err(|_| ())
                    .and_then(|m| if m.is_file() { Ok(m) } else { Err(()) })
                {
                    copies.push(Attachment {
                        rel: name,
                        path: e.path(),
                        size: m.len(),
                        mtime_ns: crate::os::mtime_ns(&m),
                    });
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot list {}", engine.claude.root.display()));
        }
    }
    copies.sort_by(|a, b| a.rel.cmp(&b.rel));
    for a in &copies {
        add(
            &mut out,
            a.rel.clone(),
            a.path.clone(),
            format!("{}/{}", crate::store::format::GLOBAL_DIR, a.rel),
            Some(a),
            None,
        );
    }
    let remembered: Vec<(String, String)> = index
        .files
        .iter()
        .filter(|(k, _)| is_claude_md_copy(k))
        .map(|(k, r)| (k.clone(), r.repo_path.clone()))
        .collect();
    for (k, repo_path) in remembered {
        add(
            &mut out,
            k.clone(),
            engine.local_path(&k),
            repo_path,
            None,
            None,
        );
    }
    let mut plans = Vec::new();
    let mut skipped = Vec::new();
    walk(&engine.claude.plans(), "", &mut plans, &mut skipped)?;
    for skip in skipped {
        not_sent.borrow_mut().push(NotSent {
            path: skip.path.display().to_string(),
            reason: skip.reason.describe().to_string(),
        });
    }
    for a in &plans {
        add(
            &mut out,
            format!("plans/{}", a.rel),
            a.path.clone(),
            format!("{}/{}", layout::plans_dir(), a.rel),
            Some(a),
            None,
        );
    }
    for (k, r) in records_under(index, "plans/") {
        add(
            &mut out,
            k.clone(),
            engine.local_path(k),
            r.repo_path.clone(),
            None,
            None,
        );
    }
    let mut not_sent = not_sent.into_inner();
    not_sent.sort_by(|a, b| a.path.cmp(&b.path));
    not_sent.dedup();
    report.not_sent.extend(not_sent);
    Ok(out)
}

/// Whether a name (in the Claude Code dir) is a conflict copy of `CLAUDE.md`.
pub(crate) fn is_claude_md_copy(name: &str) -> bool {
    name.starts_with("CLAUDE.conflict-") && !name.contains('/')
}

/// The deletions a push holds back, and why.
#[derive(Default)]
struct HeldBack {
    report: Vec<Withheld>,
    /// Keys of files whose deletion is not sent.
    skip: BTreeSet<String>,
    /// Keys of files written anew after a loss (lost earlier, or in a folder whose sessions
    /// and some files are gone): their records no longer tell what this machine last agreed
    /// on, so they merge as new files.
    fresh: BTreeSet<String>,
}

/// The project folder of a memory file's key (`projects/<folder>/memory/…`).
fn memory_folder(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("projects/")?;
    let (folder, tail) = rest.split_once('/')?;
    tail.starts_with("memory/").then_some(folder)
}

/// The folder a loose file's key belongs to, for counting deletions: a project's memory folder,
/// `plans`, or the Claude Code dir itself (`""`).
fn deletion_group(key: &str) -> String {
    if let Some(folder) = memory_folder(key) {
        return format!("projects/{folder}/memory");
    }
    if key.starts_with("plans/") {
        return "plans".into();
    }
    String::new()
}

/// Which deletions of loose files look like a loss rather than an intent. Only a file deleted
/// on its own propagates: its folder is there, the sessions around it are there, and few of
/// its folder's files went at once (at most [`MASS_DELETION_FILES`], or at most half of them).
/// A missing `projects/` dir (which also holds back CLAUDE.md), project folder or `memory/`
/// folder, a project whose sessions are gone too, many files gone at once, or plans as old as
/// Claude Code's clean-up deletes, are held back, and so is a file held back before (the index remembers it as lost until it
/// is back or deleted on purpose). `allow` (`push --allow-deletions`) holds nothing back.
fn hold_back(engine: &Engine, index: &Index, loose: &[LooseFile], allow: bool) -> HeldBack {
    let mut out = HeldBack::default();
    // A file lost earlier and written anew since: its record tells nothing about it.
    for f in loose {
        if f.exists && index.lost.contains_key(&f.key) {
            out.fresh.insert(f.key.clone());
        }
    }
    if allow {
        return out;
    }
    let mut held: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let projects_gone = !engine.claude.projects().is_dir();
    // Files missing here, by folder.
    let mut missing: BTreeMap<String, Vec<&LooseFile>> = BTreeMap::new();
    let mut present: BTreeMap<String, Vec<&LooseFile>> = BTreeMap::new();
    for f in loose {
        let group = deletion_group(&f.key);
        if f.exists {
            present.entry(group).or_default().push(f);
        } else if index.files.contains_key(&f.key) {
            missing.entry(group).or_default().push(f);
        }
    }
    let cutoff = engine
        .claude
        .cleanup_period(None)
        .map(|d| Utc::now() - chrono::Duration::days(i64::from(d)))
        .and_then(|c| c.timestamp_nanos_opt())
        .map(i128::from);
    for (group, files) in missing {
        let mut keys: Vec<String> = files.iter().map(|f| f.key.clone()).collect();
        if group == "plans" {
            // Claude Code's clean-up deletes plans older than cleanupPeriodDays.
            let (old, rest): (Vec<String>, Vec<String>) = keys.into_iter().partition(|k| {
                let m = index.files.get(k).map_or(0, |r| r.mtime_ns);
                cutoff.is_some_and(|c| m > 0 && m < c)
            });
            for k in old {
                held.entry((
                    group.clone(),
                    "Claude Code's clean-up deletes plans that old".into(),
                ))
                .or_default()
                .push(k);
            }
            keys = rest;
        }
        let dir = engine.local_path(&group);
        let total = records_under(index, &format!("{group}/")).count();
        let reason = if group.is_empty() && projects_gone {
            // CLAUDE.md gone with the rest of the Claude Code dir (a reinstall).
            Some("the projects folder is gone too".to_string())
        } else if !group.is_empty() && !dir.is_dir() {
            Some(if group == "plans" {
                "the plans folder is gone".to_string()
            } else if projects_gone {
                "the projects folder is gone".to_string()
            } else if !dir.parent().is_some_and(Path::is_dir) {
                "its project folder is gone".to_string()
            } else {
                "its memory folder is gone".to_string()
            })
        } else if let Some(folder) = group
            .strip_prefix("projects/")
            .and_then(|g| g.strip_suffix("/memory"))
            && sessions_gone(engine, index, folder)
        {
            // What is left in the folder was made after the loss.
            for f in present.get(&group).into_iter().flatten() {
                out.fresh.insert(f.key.clone());
            }
            Some("the sessions of that project are gone too".to_string())
        } else if keys.len() > MASS_DELETION_FILES && keys.len() * 2 > total {
            Some(format!(
                "{} of its {total} files are gone at once",
                keys.len()
            ))
        } else {
            None
        };
        for k in keys {
            let why = match (&reason, index.lost.get(&k)) {
                (Some(r), _) => r.clone(),
                (None, Some(earlier)) => earlier.clone(),
                (None, None) => continue,
            };
            held.entry((group.clone(), why)).or_default().push(k);
        }
    }
    for ((folder, reason), files) in held {
        out.skip.extend(files.iter().cloned());
        out.report.push(Withheld {
            folder,
            files,
            reason,
        });
    }
    out
}

/// Remember the files a push held back as lost (until they are back or deleted on purpose);
/// returns whether the index changed.
fn remember_lost(index: &mut Index, held: &HeldBack) -> bool {
    let mut changed = false;
    for w in &held.report {
        for k in &w.files {
            if !index.lost.contains_key(k) {
                index.lost.insert(k.clone(), w.reason.clone());
                changed = true;
            }
        }
    }
    changed
}

/// Whether the sessions this machine last synced in a project folder are all gone (the folder
/// was emptied, not a file deleted in it).
fn sessions_gone(engine: &Engine, index: &Index, folder: &str) -> bool {
    let prefix = format!("projects/{folder}/");
    let mut known = index
        .sessions
        .values()
        .filter(|s| s.local.starts_with(&prefix))
        .peekable();
    known.peek().is_some() && known.all(|s| !engine.local_path(&s.local).exists())
}

/// File records whose key starts with `prefix` (files remembered from earlier syncs).
fn records_under<'i>(
    index: &'i Index,
    prefix: &str,
) -> impl Iterator<Item = (&'i String, &'i FileRecord)> {
    let p = prefix.to_string();
    index
        .files
        .range(p.clone()..)
        .take_while(move |(k, _)| k.starts_with(&p))
}

/// The stored version of a loose file.
pub(crate) fn stored_loose(
    snap: &Snapshot,
    repo_path: &str,
) -> Option<super::snapshot::StoredFile> {
    if let Some(rest) = repo_path.strip_prefix("global/") {
        return snap.global.get(rest).cloned();
    }
    let rest = repo_path.strip_prefix("projects/")?;
    let (slug, rest) = rest.split_once('/')?;
    let rel = rest.strip_prefix("memory/")?;
    snap.projects.get(slug)?.memory.get(rel).cloned()
}
