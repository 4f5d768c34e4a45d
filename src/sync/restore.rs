//! `restore`: what the repository's history holds that is gone now — a forgotten session, a
//! memory file, `CLAUDE.md` or plan deleted or overwritten, a transcript as it was at a date —
//! listed ([`list`]), shown ([`show`]) and brought back ([`restore`]).
//!
//! The history is the first-parent line of the sync branch in the local clone (every push is a
//! compare-and-swap, so it is a line), read with [`crate::store::history`]. "As it was at DATE"
//! is the tree of the newest commit stamped no later than DATE; a commit id names one exactly.
//!
//! Bringing back never overwrites anything silently:
//!
//! * A session gone from the repository (forgotten, or deleted) comes back whole under its own
//!   id: one commit puts its folder back as it last was (every machine's lines, its subagents,
//!   tool results and file history) and lifts its tombstone from `forgotten.json`; then it is
//!   placed here the way `pull` places a session (a union with any local copy, never shrinking
//!   it). Every machine takes it up again at its next pull, and pushes its lines again.
//! * An earlier state of a session (`--at`) comes back as a **new session** with a fresh id in
//!   the same project folder (its lines, `sessionId` set to the new id, and a `custom-title`
//!   saying what it is): the current session is not touched. Only the transcript comes back.
//! * A memory file, `CLAUDE.md` or plan is written back where Claude Code reads it; when a
//!   different file is there, that one is first kept beside it as a conflict copy
//!   (`NAME.conflict-<machine>-<time>-<hash>.md`, the name sync gives conflict copies), so both
//!   stay. The next push sends both like any local change.
//! * With an output file (`-o`) the content goes there instead (a file that exists is refused).
//!
//! Local writes are atomic, never go through a symbolic link inside the Claude Code dir, and
//! errors name their paths. A dry run reads and reports, and writes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Engine;
use super::files;
use super::log::{LocalPiece, for_each_local};
use super::snapshot::{RepoSession, Snapshot, StoredFile};
use crate::claude::discover::link_below;
use crate::claude::naming;
use crate::config::shared::{self, RepoKind};
use crate::os::IoAt;
use crate::store::format::{FORGOTTEN_FILE, GLOBAL_DIR, PROJECTS_DIR, check_rel_path};
use crate::store::history::Commit;
use crate::store::layout::{self, META_FILE, PROJECT_FILE, ProjectRecord, SessionMeta};
use crate::store::{BlobReader, Oid, Store};

/// The paths whose history `restore` reads: memory, global files, session metadata.
const PATHSPECS: &[&str] = &[
    "projects/*/memory/*",
    "global/*",
    "projects/*/sessions/*/meta.json",
];

/// A point in the history (`--at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// As it was at this instant: just before the first commit stamped later.
    Time(DateTime<Utc>),
    /// As it was at this commit of the sync branch (an id or a unique prefix of one).
    Commit(String),
}

impl At {
    /// `--at`: a commit id (7 to 64 hex digits), else a date as [`parse_date`] reads it, taken
    /// at the end of the period it names (`2030-01-01` is that whole day).
    pub fn parse(s: &str) -> Result<At> {
        let s = s.trim();
        if (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(At::Commit(s.to_ascii_lowercase()));
        }
        parse_date(s, true)
            .map(At::Time)
            .map_err(|e| anyhow!("{e}, or a commit id (7 or more hex digits)"))
    }
}

pub use crate::clock::parse_date;

/// One change of a file in the history: the commit (its position in [`History::commits`]),
/// the path, and the blob written there, or, for a deletion, the blob deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub commit: usize,
    pub path: String,
    pub deleted: bool,
    pub oid: Oid,
}

/// The repository's history as `restore` reads it.
#[derive(Debug, Default)]
pub struct History {
    pub head: Option<Oid>,
    /// First-parent commits of the head, newest first (the head is 0).
    pub commits: Vec<Commit>,
    /// Memory files, `CLAUDE.md`, plans (and their conflict copies) by repository path: their
    /// changes, newest first.
    pub files: BTreeMap<String, Vec<Change>>,
    /// Sessions by id: the changes of their `meta.json`, newest first (every push that adds
    /// lines writes it).
    pub sessions: BTreeMap<String, Vec<Change>>,
    /// The repository at the head.
    pub now: Snapshot,
    /// Sessions the head's `forgotten.json` lists.
    pub forgotten: BTreeSet<String>,
}

enum Class {
    File,
    Meta(String),
}

/// What a repository path is to `restore` (paths that fail the checks are nothing).
fn classify(path: &str) -> Option<Class> {
    check_rel_path(path).ok()?;
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [PROJECTS_DIR, _, "memory", rest @ ..] if !rest.is_empty() => Some(Class::File),
        [GLOBAL_DIR, rest @ ..] if global_target(&rest.join("/")).is_some() => Some(Class::File),
        [PROJECTS_DIR, _, "sessions", id, META_FILE] if layout::valid_session_id(id) => {
            Some(Class::Meta(id.to_string()))
        }
        _ => None,
    }
}

/// Where a file of `global/` goes, relative to the Claude Code dir.
fn global_target(rel: &str) -> Option<String> {
    if rel == "CLAUDE.md" || super::push::is_claude_md_copy(rel) {
        return Some(rel.to_string());
    }
    let plan = rel.strip_prefix("plans/")?;
    (!plan.is_empty()).then(|| format!("plans/{plan}"))
}

impl History {
    /// Read the history of `head` (empty without one).
    pub fn load(store: &Store, head: Option<&Oid>) -> Result<History> {
        let now = Snapshot::load(store, head)?;
        let forgotten = now.forgotten_ids(store)?;
        let mut h = History {
            head: head.cloned(),
            now,
            forgotten,
            ..History::default()
        };
        let Some(head) = head else { return Ok(h) };
        h.commits = store.commits(head)?;
        let pos: HashMap<Oid, usize> = h
            .commits
            .iter()
            .enumerate()
            .map(|(i, c)| (c.oid.clone(), i))
            .collect();
        for (oid, changes) in store.changes(head, PATHSPECS)? {
            let Some(&i) = pos.get(&oid) else { continue };
            for c in changes {
                let Some(class) = classify(&c.path) else {
                    continue;
                };
                let (deleted, blob) = match (&c.new, &c.old) {
                    (Some(n), _) if c.new_regular => (false, n.clone()),
                    // Deleted, or turned into something that is not a file.
                    (_, Some(o)) if c.old_regular => (true, o.clone()),
                    _ => continue,
                };
                let ch = Change {
                    commit: i,
                    path: c.path,
                    deleted,
                    oid: blob,
                };
                match class {
                    Class::File => h.files.entry(ch.path.clone()).or_default().push(ch),
                    Class::Meta(id) => h.sessions.entry(id).or_default().push(ch),
                }
            }
        }
        Ok(h)
    }

    /// The commit that `at` names: its position in [`History::commits`].
    pub fn commit_index(&self, at: &At) -> Result<usize> {
        match at {
            At::Time(t) => {
                // The state just before the first commit stamped later than `t` (the head when
                // there is none): a machine whose clock is behind, committing afterwards with
                // older stamps, does not make a later state pass for an earlier one.
                let first_after = self.commits.iter().rposition(|c| c.time > *t);
                match first_after {
                    None if !self.commits.is_empty() => Ok(0),
                    Some(i) if i + 1 < self.commits.len() => Ok(i + 1),
                    _ => match self.commits.last() {
                        Some(first) => bail!(
                            "the repository's history starts at {} (commit {}): nothing is as old as {}",
                            rfc(first.time),
                            first.oid.short(),
                            rfc(*t)
                        ),
                        None => bail!("the sync repository is empty"),
                    },
                }
            }
            At::Commit(prefix) => {
                let hits: Vec<usize> = self
                    .commits
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.oid.0.starts_with(prefix.as_str()))
                    .map(|(i, _)| i)
                    .collect();
                match hits.as_slice() {
                    [one] => Ok(*one),
                    [] => bail!(
                        "no commit {prefix} in the history of the sync branch (`ccsync restore list` shows the commits of each version)"
                    ),
                    many => bail!("{prefix} names {} commits: give more of it", many.len()),
                }
            }
        }
    }

    /// The version in force at commit `c` among `changes` (newest first): the newest change
    /// at or before it, unless that one deleted the file.
    fn version_at(changes: &[Change], c: usize) -> Option<&Change> {
        changes
            .iter()
            .find(|ch| ch.commit >= c)
            .filter(|ch| !ch.deleted)
    }

    /// The stored plain file at the head.
    fn head_file(&self, path: &str) -> Option<StoredFile> {
        super::push::stored_loose(&self.now, path)
    }

    /// Every plain file the history or the head knows (repository paths).
    fn known_files(&self) -> BTreeSet<String> {
        let mut all: BTreeSet<String> = self.files.keys().cloned().collect();
        for rel in self.now.global.keys() {
            if global_target(rel).is_some() {
                all.insert(format!("{GLOBAL_DIR}/{rel}"));
            }
        }
        for (slug, p) in &self.now.projects {
            for rel in p.memory.keys() {
                all.insert(format!("{}/{rel}", layout::memory_dir(slug)));
            }
        }
        all
    }

    /// Every session id the history or the head knows.
    fn known_sessions(&self) -> BTreeSet<&str> {
        self.sessions
            .keys()
            .map(String::as_str)
            .chain(self.now.sessions.keys().map(String::as_str))
            .collect()
    }

    /// For a session not at the head: the commit that deleted it (its last change).
    fn deletion_of(&self, id: &str) -> Option<&Change> {
        self.sessions
            .get(id)
            .and_then(|c| c.first())
            .filter(|c| c.deleted)
    }
}

/// What the history holds that `restore list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A session `forget` deleted (its tombstone is in `forgotten.json`).
    ForgottenSession,
    /// A session gone from the repository without a tombstone.
    DeletedSession,
    /// A memory file, `CLAUDE.md` or plan deleted from the repository.
    DeletedFile,
    /// An earlier version of a memory file, `CLAUDE.md` or plan, replaced by a later one.
    EarlierVersion,
    /// One stored state of a session (`list --session ID`).
    SessionVersion,
}

/// One thing the history holds.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub kind: Kind,
    /// What `restore` and `restore show` take: a session id, or the file's repository path.
    pub item: String,
    /// The session folder or the file in the repository.
    pub repo_path: String,
    /// Where it goes on this machine (the transcript, the memory file), when it can be placed.
    pub local_path: Option<String>,
    /// The project directory: this machine's form, else the portable one.
    pub project: Option<String>,
    pub title: Option<String>,
    /// Lines of the stored transcript (sessions).
    pub lines: Option<u64>,
    /// Bytes of this version (the stored transcript of a session).
    pub size: u64,
    /// When this version was stored, and by which machine.
    pub stored_at: DateTime<Utc>,
    pub stored_by: Option<String>,
    /// The commit to give `--at` for exactly this version.
    pub commit: String,
    /// When it was forgotten, deleted or replaced, and by which machine.
    pub gone_at: Option<DateTime<Utc>>,
    pub gone_by: Option<String>,
}

/// What `restore list` shows.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only this session (an id or a unique prefix): every stored state of it.
    pub session: Option<String>,
    /// Only what belongs to this project directory (an absolute path or `~/…`: it and below;
    /// else any project whose path contains it).
    pub project: Option<String>,
    /// Only memory files, `CLAUDE.md` and plans.
    pub memory: bool,
    /// Only what went (or, with `session`, was stored) at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// What the history holds that is not present now, newest first.
pub fn list(engine: &Engine, opts: &ListOptions) -> Result<Vec<Item>> {
    crate::store::with_clone_repair(|| {
        let (store, head) = open(engine)?;
        let hist = History::load(&store, head.as_ref())?;
        let mut ctx = Ctx::new(engine, &store, &hist)?;
        ctx.list(opts)
    })
}

/// Write a stored file, or a session's transcript, as it was at `at` (default: its latest
/// stored version) in this machine's form to `out`.
pub fn show(engine: &Engine, item: &str, at: Option<&At>, out: &mut dyn Write) -> Result<()> {
    crate::store::with_clone_repair(|| {
        let (store, head) = open(engine)?;
        let hist = History::load(&store, head.as_ref())?;
        let mut ctx = Ctx::new(engine, &store, &hist)?;
        match ctx.resolve(item)? {
            Target::File(path) => {
                let v = ctx.file_version(&path, at, true)?;
                let data = ctx.local_content(&path, &v.oid)?;
                out.write_all(&data).context("cannot write the output")?;
            }
            Target::Session(id) => {
                let (rs, _, _) = ctx.session_version(&id, at)?;
                let Some(t) = rs.transcript() else {
                    bail!("session {id} has no stored transcript in that version");
                };
                for_each_local(&mut ctx.reader, &t.segs, &engine.mapper, |piece| {
                    let (LocalPiece::Line(b) | LocalPiece::HugePart(b)) = piece;
                    out.write_all(b).context("cannot write the output")
                })?;
            }
        }
        out.flush().context("cannot write the output")
    })
}

/// How to bring something back.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The version as it was then (default: the last one stored). For a session, an earlier
    /// state comes back as a new session.
    pub at: Option<At>,
    /// Say what would be written; write nothing.
    pub dry_run: bool,
    /// Write the content to this file (which must not exist) instead.
    pub output: Option<PathBuf>,
}

/// What [`restore`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Restored {
    pub dry_run: bool,
    /// The session id or the file's repository path.
    pub item: String,
    pub is_session: bool,
    /// The version brought back: when it was stored, by which machine, in which commit.
    pub stored_at: Option<DateTime<Utc>>,
    pub stored_by: Option<String>,
    pub commit: Option<String>,
    /// The file written (or to be written).
    pub written: Option<PathBuf>,
    /// It was written to the output file asked for, not the Claude Code dir.
    pub to_output: bool,
    pub lines: u64,
    pub bytes: u64,
    /// A session's earlier state, written as a new session: its id.
    pub new_session: Option<String>,
    /// The different file that was at the place, kept under this name first.
    pub kept_current_as: Option<PathBuf>,
    /// The local file already held this version: nothing written.
    pub unchanged: bool,
    /// A session gone from the repository was put back in it.
    pub put_back: bool,
    /// Its tombstone was lifted from `forgotten.json`.
    pub tombstone_lifted: bool,
    /// What placing a put-back session here met (a running Claude Code, a missing placeholder).
    pub notes: Vec<String>,
}

/// Bring back what `item` names (see the module documentation).
pub fn restore(engine: &Engine, item: &str, opts: &RestoreOptions) -> Result<Restored> {
    crate::store::with_clone_repair(|| restore_once(engine, item, opts))
}

fn restore_once(engine: &Engine, item: &str, opts: &RestoreOptions) -> Result<Restored> {
    let (store, head) = open(engine)?;
    let hist = History::load(&store, head.as_ref())?;
    let mut ctx = Ctx::new(engine, &store, &hist)?;
    match ctx.resolve(item)? {
        Target::File(path) => ctx.restore_file(&path, opts),
        Target::Session(id) if opts.at.is_some() || opts.output.is_some() => {
            ctx.copy_session(&id, opts)
        }
        Target::Session(id) => {
            let plan = ctx.bring_back_plan(&id, opts.dry_run)?;
            drop(ctx);
            if opts.dry_run {
                return Ok(plan.report);
            }
            bring_back(engine, store, plan)
        }
    }
}

/// The clone, fetched (an unreachable remote is a warning: the history the clone has is read).
fn open(engine: &Engine) -> Result<(Store, Option<Oid>)> {
    let store = Store::of(engine.home, engine.config)?;
    let head = match store.fetch(Duration::from_secs(120)) {
        Ok(h) => h,
        Err(e) if crate::store::is_clone_damage(&e) => return Err(e),
        Err(e) => {
            tracing::warn!("{e:#}; reading the history fetched before");
            store.known_head()?
        }
    };
    match shared::classify(&store, head.as_ref())? {
        RepoKind::Ccsync(m) => m.check()?,
        RepoKind::Empty => {}
        RepoKind::Legacy => bail!(
            "the sync repository {} was written by the Python claude-session-sync: run `ccsync pull` once to convert it",
            engine.config.remote
        ),
        RepoKind::Foreign(n) => bail!(
            "the remote {} is not a ccsync repository ({n} entries at its root)",
            engine.config.remote
        ),
    }
    Ok((store, head))
}

enum Target {
    Session(String),
    File(String),
}

/// A stored version of a plain file.
struct FileVersion {
    oid: Oid,
    /// The commit that stored it (position in the history), when the history shows it.
    commit: Option<usize>,
}

/// Reading the history for one command.
struct Ctx<'a> {
    engine: &'a Engine<'a>,
    store: &'a Store,
    hist: &'a History,
    reader: BlobReader,
    /// Project folder → its directory on this machine (or why there is none).
    cwds: HashMap<String, std::result::Result<(String, String), String>>,
}

impl<'a> Ctx<'a> {
    fn new(engine: &'a Engine<'a>, store: &'a Store, hist: &'a History) -> Result<Self> {
        Ok(Ctx {
            engine,
            store,
            hist,
            reader: store.reader()?,
            cwds: HashMap::new(),
        })
    }

    fn commit(&self, i: usize) -> Option<&'a Commit> {
        self.hist.commits.get(i)
    }

    fn when(&self, i: usize) -> String {
        self.commit(i)
            .map(|c| format!("{} (commit {})", rfc(c.time), c.oid.short()))
            .unwrap_or_else(|| "then".into())
    }

    // ---- where things go on this machine ----

    /// The directory of a project folder of the repository on this machine, and its portable
    /// form, from its `project.json` at the head or else at commit `c`.
    fn project_cwd(
        &mut self,
        slug: &str,
        c: usize,
    ) -> std::result::Result<(String, String), String> {
        if let Some(r) = self.cwds.get(slug) {
            return r.clone();
        }
        let record_path = format!("{}/{PROJECT_FILE}", layout::project_dir(slug));
        let at_head = self
            .hist
            .now
            .projects
            .get(slug)
            .and_then(|p| p.record.as_ref())
            .map(|f| f.oid.clone());
        let oid = at_head.or_else(|| {
            let commit = self.commit(c)?;
            self.store
                .ls_tree(&commit.oid, Some(&record_path))
                .ok()?
                .into_iter()
                .find(|e| e.is_regular_file() && e.path_str() == Some(record_path.as_str()))
                .map(|e| e.oid)
        });
        let r = match oid {
            None => Err(format!("the repository has no {record_path}")),
            Some(oid) => match self
                .reader
                .read(&oid)
                .ok()
                .and_then(|b| serde_json::from_slice::<ProjectRecord>(&b).ok())
            {
                None => Err(format!("{record_path} is not valid")),
                Some(rec) => match self.engine.mapper.local_path(&rec.cwd) {
                    Ok(local) => Ok((local, rec.cwd)),
                    Err(missing) => Err(no_placeholder(&missing)),
                },
            },
        };
        self.cwds.insert(slug.to_string(), r.clone());
        r
    }

    /// Where a stored plain file goes on this machine (or why it cannot go anywhere).
    fn local_file(&mut self, repo_path: &str, c: usize) -> std::result::Result<PathBuf, String> {
        let parts: Vec<&str> = repo_path.split('/').collect();
        match parts.as_slice() {
            [PROJECTS_DIR, slug, "memory", rest @ ..] if !rest.is_empty() => {
                let (local_cwd, _) = self.project_cwd(slug, c)?;
                let mut p = naming::project_folder(self.engine.claude, &local_cwd).join("memory");
                for part in rest {
                    p.push(part);
                }
                Ok(p)
            }
            [GLOBAL_DIR, rest @ ..] => {
                let rel = global_target(&rest.join("/"))
                    .ok_or_else(|| "not a file ccsync places".to_string())?;
                Ok(self.engine.local_path(&rel))
            }
            _ => Err("not a file ccsync places".into()),
        }
    }

    /// The project directory of a plain file (`None` for global files).
    fn file_project(&mut self, repo_path: &str, c: usize) -> Option<(Option<String>, String)> {
        let slug = repo_path
            .strip_prefix("projects/")?
            .split('/')
            .next()?
            .to_string();
        Some(match self.project_cwd(&slug, c) {
            Ok((local, portable)) => (Some(local), portable),
            Err(_) => (None, slug),
        })
    }

    /// A stored plain file in this machine's form.
    fn local_content(&mut self, repo_path: &str, oid: &Oid) -> Result<Vec<u8>> {
        let data = self.reader.read(oid)?;
        let mut out = Vec::with_capacity(data.len());
        self.engine
            .mapper
            .to_local(&data, files::context_for(repo_path), &mut out);
        Ok(out)
    }

    fn meta_of(&mut self, oid: &Oid) -> Option<SessionMeta> {
        serde_json::from_slice(&self.reader.read(oid).ok()?).ok()
    }

    /// A session's directory here and where its transcript goes, from its metadata.
    fn session_place(&self, meta: &SessionMeta) -> (Option<String>, Option<PathBuf>) {
        let cwd = super::pull::effective_cwd(meta);
        match self.engine.mapper.local_path(cwd) {
            Ok(local) => {
                let t = naming::session_file(self.engine.claude, &local, &meta.session_id).ok();
                (Some(local), t)
            }
            Err(_) => (Some(cwd.to_string()), None),
        }
    }

    // ---- naming what the user means ----

    fn resolve(&mut self, item: &str) -> Result<Target> {
        let item = item.trim();
        if item.is_empty() {
            bail!("name a session id or a file: `ccsync restore list` shows what can be restored");
        }
        if layout::valid_session_id(item) {
            match self.sessions_named(item).as_slice() {
                [one] => return Ok(Target::Session(one.clone())),
                [] => {}
                many => bail!(
                    "{item:?} matches {} sessions in the repository's history ({}): give more of the id",
                    many.len(),
                    many.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                ),
            }
        }
        // A file: its path in the repository, its path here, its path in the Claude Code dir,
        // or a unique end of one of these (`memory/notes.md`, `plans/next.md`).
        let wanted = self.expand(item);
        let rel = item.trim_start_matches("./").replace('\\', "/");
        let mut exact = Vec::new();
        let mut ends = Vec::new();
        for path in self.hist.known_files() {
            let c = self
                .hist
                .files
                .get(&path)
                .and_then(|ch| ch.first())
                .map_or(0, |ch| ch.commit);
            let local = self.local_file(&path, c).ok();
            let key = local.as_ref().map(|l| self.engine.key(l));
            if path == item
                || local.as_deref() == Some(wanted.as_path())
                || key.as_deref() == Some(rel.as_str())
            {
                exact.push(path);
                continue;
            }
            let tail = format!("/{rel}");
            if !rel.is_empty()
                && (path.ends_with(&tail) || key.as_deref().is_some_and(|k| k.ends_with(&tail)))
            {
                ends.push((path, local));
            }
        }
        match exact.as_slice() {
            [one] => return Ok(Target::File(one.clone())),
            [] => {}
            many => bail!(
                "{item:?} names {} stored files ({}): give the path in the repository",
                many.len(),
                many.join(", ")
            ),
        }
        match ends.as_slice() {
            [(one, _)] => Ok(Target::File(one.clone())),
            [] => bail!(
                "the repository's history holds no session or file {item:?}: `ccsync restore list` shows what can be restored"
            ),
            many => bail!(
                "{item:?} matches {} files ({}): give more of the path",
                many.len(),
                many.iter()
                    .take(5)
                    .map(|(p, l)| l
                        .as_ref()
                        .map_or_else(|| p.clone(), |l| l.display().to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// `~/x` with this machine's home.
    fn expand(&self, s: &str) -> PathBuf {
        if let Some(home) = self.engine.config.placeholders.get("HOME")
            && let Some(rest) = s.strip_prefix("~/").or(s.strip_prefix("~\\"))
        {
            return Path::new(home).join(rest);
        }
        PathBuf::from(s)
    }

    // ---- versions ----

    /// The version of a plain file at `at`; without `at`, the one at the head, or the last
    /// one stored when the file is gone (`present_ok` false: a file present at the head needs
    /// `at`, unless this machine lacks it).
    fn file_version(
        &mut self,
        path: &str,
        at: Option<&At>,
        present_ok: bool,
    ) -> Result<FileVersion> {
        let changes: &[Change] = self.hist.files.get(path).map_or(&[], Vec::as_slice);
        if let Some(at) = at {
            let c = self.hist.commit_index(at)?;
            return match History::version_at(changes, c) {
                Some(ch) => Ok(FileVersion {
                    oid: ch.oid.clone(),
                    commit: Some(ch.commit),
                }),
                None => bail!(
                    "{} was not in the repository at {}{}",
                    self.name_of(path),
                    self.when(c),
                    self.file_span(changes)
                ),
            };
        }
        if let Some(f) = self.hist.head_file(path) {
            let local = self.local_file(path, 0).ok();
            if !present_ok && local.as_ref().is_none_or(|l| l.exists()) {
                bail!(
                    "{} is in the repository now: give --at DATE or --at COMMIT for an earlier version (`ccsync restore list --memory` shows them)",
                    self.name_of(path)
                );
            }
            return Ok(FileVersion {
                commit: History::version_at(changes, 0)
                    .filter(|ch| ch.oid == f.oid)
                    .map(|ch| ch.commit),
                oid: f.oid,
            });
        }
        match changes.iter().find(|ch| !ch.deleted) {
            Some(ch) => Ok(FileVersion {
                oid: ch.oid.clone(),
                commit: Some(ch.commit),
            }),
            None => bail!("the repository's history holds no version of {path}"),
        }
    }

    /// " (it was stored from … to …)" for error messages.
    fn file_span(&self, changes: &[Change]) -> String {
        match (changes.last(), changes.first()) {
            (Some(first), Some(last)) => format!(
                " (its history runs from {} to {})",
                rfc(self.commit(first.commit).map_or_else(Utc::now, |c| c.time)),
                rfc(self.commit(last.commit).map_or_else(Utc::now, |c| c.time))
            ),
            _ => String::new(),
        }
    }

    fn name_of(&mut self, path: &str) -> String {
        let c = self
            .hist
            .files
            .get(path)
            .and_then(|ch| ch.first())
            .map_or(0, |ch| ch.commit);
        match self.local_file(path, c) {
            Ok(l) => l.display().to_string(),
            Err(_) => path.to_string(),
        }
    }

    /// A session as it was at `at` (default: now, or as it last was when it is gone): its
    /// stored folder, the commit read, and its metadata.
    fn session_version(
        &mut self,
        id: &str,
        at: Option<&At>,
    ) -> Result<(RepoSession, usize, SessionMeta)> {
        let changes: &[Change] = self.hist.sessions.get(id).map_or(&[], Vec::as_slice);
        let (c, dir) = match at {
            Some(at) => {
                let c = self.hist.commit_index(at)?;
                let Some(ch) = History::version_at(changes, c) else {
                    bail!(
                        "session {id} was not in the repository at {}{}",
                        self.when(c),
                        self.file_span(changes)
                    );
                };
                (c, session_dir_of(&ch.path))
            }
            None => match self.hist.now.sessions.get(id) {
                Some(s) => (0, s.dir.clone()),
                None => {
                    let d = self.hist.deletion_of(id).ok_or_else(|| {
                        anyhow!("the repository's history holds no version of session {id}")
                    })?;
                    (d.commit + 1, session_dir_of(&d.path))
                }
            },
        };
        let commit = self
            .commit(c)
            .ok_or_else(|| anyhow!("the repository's history holds no version of session {id}"))?;
        let snap = Snapshot::load_under(self.store, Some(&commit.oid), Some(&dir))?;
        for (p, why) in &snap.refused {
            tracing::warn!("ignoring {p} in the sync repository: {why}");
        }
        let Some(rs) = snap.sessions.get(id).cloned() else {
            bail!("session {id} was not in the repository at {}", self.when(c));
        };
        let meta = rs
            .meta
            .as_ref()
            .and_then(|m| self.meta_of(&m.oid))
            .ok_or_else(|| {
                anyhow!(
                    "{dir}/{META_FILE} is missing or not valid at {}",
                    self.when(c)
                )
            })?;
        Ok((rs, c, meta))
    }

    /// The commit that stored the state of a session read at commit `c`: the last write of
    /// its metadata (every push that adds lines writes it), else `c` itself.
    fn session_stored(&self, id: &str, c: usize) -> Option<&'a Commit> {
        let hist = self.hist;
        hist.sessions
            .get(id)
            .and_then(|ch| History::version_at(ch, c))
            .and_then(|ch| hist.commits.get(ch.commit))
            .or_else(|| hist.commits.get(c))
    }

    // ---- list ----

    fn list(&mut self, opts: &ListOptions) -> Result<Vec<Item>> {
        if let Some(s) = &opts.session {
            return match self.sessions_named(s).as_slice() {
                [id] => self.timeline(id, opts),
                [] => bail!("the repository's history holds no session {s}"),
                many => bail!(
                    "{s:?} matches {} sessions in the repository's history ({}): give more of the id",
                    many.len(),
                    many.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                ),
            };
        }
        let mut items = Vec::new();
        if !opts.memory {
            self.gone_sessions(opts, &mut items)?;
        }
        self.gone_files(opts, &mut items)?;
        items.sort_by(|a, b| {
            b.gone_at
                .cmp(&a.gone_at)
                .then_with(|| b.stored_at.cmp(&a.stored_at))
                .then_with(|| a.item.cmp(&b.item))
        });
        Ok(items)
    }

    /// The session ids the history knows that `s` names: itself, else those it begins.
    fn sessions_named(&self, s: &str) -> Vec<String> {
        let ids = self.hist.known_sessions();
        if ids.contains(s) {
            return vec![s.to_string()];
        }
        ids.into_iter()
            .filter(|i| i.starts_with(s))
            .map(str::to_string)
            .collect()
    }

    fn project_matches(&self, local: Option<&str>, portable: &str, want: &str) -> bool {
        let style = self.engine.config.path_style;
        let expanded = self.expand(want).to_string_lossy().into_owned();
        let absolute = crate::paths::check_cwd(style, &expanded).is_ok();
        if absolute {
            local.is_some_and(|l| crate::config::path_is_under(style, l, &expanded))
        } else {
            local.is_some_and(|l| l.contains(want)) || portable.contains(want)
        }
    }

    fn gone_sessions(&mut self, opts: &ListOptions, items: &mut Vec<Item>) -> Result<()> {
        let gone: Vec<String> = self
            .hist
            .sessions
            .keys()
            .filter(|id| !self.hist.now.sessions.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            let Some(del) = self.hist.deletion_of(&id).cloned() else {
                continue;
            };
            let Some(version) = self.commit(del.commit + 1) else {
                continue;
            };
            let gone_commit = self.commit(del.commit);
            if let (Some(since), Some(g)) = (opts.since, gone_commit)
                && g.time < since
            {
                continue;
            }
            let Some(meta) = self.meta_of(&del.oid) else {
                continue;
            };
            // When the last version was stored: the last write of its metadata.
            let stored = self.hist.sessions[&id]
                .iter()
                .find(|c| !c.deleted)
                .and_then(|c| self.commit(c.commit))
                .unwrap_or(version);
            let (project, local) = self.session_place(&meta);
            if let Some(p) = &opts.project
                && !self.project_matches(project.as_deref(), super::pull::effective_cwd(&meta), p)
            {
                continue;
            }
            let kind = if self.hist.forgotten.contains(&id) {
                Kind::ForgottenSession
            } else {
                Kind::DeletedSession
            };
            items.push(Item {
                kind,
                item: id.clone(),
                repo_path: session_dir_of(&del.path),
                local_path: local.map(|p| p.display().to_string()),
                project,
                title: meta.title.clone(),
                lines: Some(meta.lines),
                size: meta.size,
                stored_at: stored.time,
                stored_by: stored.machine.clone(),
                commit: version.oid.0.clone(),
                gone_at: gone_commit.map(|c| c.time),
                gone_by: gone_commit.and_then(|c| c.machine.clone()),
            });
        }
        Ok(())
    }

    fn gone_files(&mut self, opts: &ListOptions, items: &mut Vec<Item>) -> Result<()> {
        // The blob of each file item, for their sizes (read in one go at the end).
        let mut blobs: Vec<(usize, Oid)> = Vec::new();
        let paths: Vec<String> = self.hist.files.keys().cloned().collect();
        for path in paths {
            let changes = self.hist.files[&path].clone();
            let present = self.hist.head_file(&path).is_some();
            if opts.project.is_some() && !path.starts_with("projects/") {
                continue;
            }
            let last = changes.first().map_or(0, |c| c.commit);
            let project = self.file_project(&path, last);
            if let Some(p) = &opts.project {
                let Some((local, portable)) = &project else {
                    continue;
                };
                if !self.project_matches(local.as_deref(), portable, p) {
                    continue;
                }
            }
            let local = self.local_file(&path, last).ok();
            // Versions oldest first; each lasts until the next change.
            for (i, ch) in changes.iter().enumerate().rev() {
                if ch.deleted {
                    continue;
                }
                // The change that ended this version (newer: a smaller index).
                let ended = (i > 0).then(|| &changes[i - 1]);
                let newest_version = changes[..i].iter().all(|c| c.deleted);
                let kind = match ended {
                    None => continue, // the current version
                    Some(e) if e.deleted && newest_version && !present => Kind::DeletedFile,
                    Some(_) => Kind::EarlierVersion,
                };
                let gone = ended.and_then(|e| self.commit(e.commit));
                if let (Some(since), Some(g)) = (opts.since, gone)
                    && g.time < since
                {
                    continue;
                }
                let Some(stored) = self.commit(ch.commit) else {
                    continue;
                };
                blobs.push((items.len(), ch.oid.clone()));
                items.push(Item {
                    kind,
                    item: path.clone(),
                    repo_path: path.clone(),
                    local_path: local.as_ref().map(|p| p.display().to_string()),
                    project: project
                        .as_ref()
                        .map(|(l, p)| l.clone().unwrap_or(p.clone())),
                    title: None,
                    lines: None,
                    size: 0,
                    stored_at: stored.time,
                    stored_by: stored.machine.clone(),
                    commit: stored.oid.0.clone(),
                    gone_at: gone.map(|g| g.time),
                    gone_by: gone.and_then(|g| g.machine.clone()),
                });
            }
        }
        let oids: Vec<Oid> = blobs.iter().map(|(_, o)| o.clone()).collect();
        let sizes = self.store.blob_sizes(&oids)?;
        for (i, oid) in &blobs {
            if let (Some(item), Some(size)) = (items.get_mut(*i), sizes.get(oid)) {
                item.size = *size;
            }
        }
        Ok(())
    }

    fn timeline(&mut self, id: &str, opts: &ListOptions) -> Result<Vec<Item>> {
        let changes = self.hist.sessions.get(id).cloned().unwrap_or_default();
        let gone = !self.hist.now.sessions.contains_key(id);
        let mut items = Vec::new();
        for (i, ch) in changes.iter().enumerate() {
            if ch.deleted {
                continue;
            }
            let Some(stored) = self.commit(ch.commit) else {
                continue;
            };
            if opts.since.is_some_and(|s| stored.time < s) {
                continue;
            }
            let Some(meta) = self.meta_of(&ch.oid) else {
                continue;
            };
            let (project, local) = self.session_place(&meta);
            let ended = (i > 0 && gone)
                .then(|| &changes[i - 1])
                .filter(|e| e.deleted)
                .and_then(|e| self.commit(e.commit));
            items.push(Item {
                kind: Kind::SessionVersion,
                item: id.to_string(),
                repo_path: session_dir_of(&ch.path),
                local_path: local.map(|p| p.display().to_string()),
                project,
                title: meta.title.clone(),
                lines: Some(meta.lines),
                size: meta.size,
                stored_at: stored.time,
                stored_by: stored.machine.clone(),
                commit: stored.oid.0.clone(),
                gone_at: ended.map(|c| c.time),
                gone_by: ended.and_then(|c| c.machine.clone()),
            });
        }
        Ok(items)
    }

    // ---- bringing back ----

    fn restore_file(&mut self, path: &str, opts: &RestoreOptions) -> Result<Restored> {
        let v = self.file_version(path, opts.at.as_ref(), opts.output.is_some())?;
        let content = self.local_content(path, &v.oid)?;
        let stored = v.commit.and_then(|c| self.commit(c));
        let mut report = Restored {
            dry_run: opts.dry_run,
            item: path.to_string(),
            stored_at: stored.map(|c| c.time),
            stored_by: stored.and_then(|c| c.machine.clone()),
            commit: stored.map(|c| c.oid.0.clone()),
            bytes: content.len() as u64,
            lines: memchr::memchr_iter(b'\n', &content).count() as u64,
            ..Restored::default()
        };
        if let Some(out) = &opts.output {
            refuse_existing(out)?;
            report.written = Some(out.clone());
            report.to_output = true;
            if !opts.dry_run {
                write_new(out, &content, false)?;
            }
            return Ok(report);
        }
        let c = v.commit.unwrap_or(0);
        let target = self
            .local_file(path, c)
            .map_err(|why| anyhow!("{path} cannot be placed on this machine: {why}"))?;
        if let Some(link) = link_below(&self.engine.claude.root, &target) {
            bail!(
                "{} is a symbolic link: ccsync never writes through one (put the folder or file itself in place)",
                link.display()
            );
        }
        report.written = Some(target.clone());
        let current = match std::fs::read(&target) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Err::<Option<Vec<u8>>, _>(e).at("read", &target)?,
        };
        if let Some(cur) = &current {
            if *cur == content {
                report.unchanged = true;
                return Ok(report);
            }
            // Never silently replaced: the file there now is kept beside it first.
            let mut portable = Vec::new();
            self.engine
                .mapper
                .to_portable(cur, files::context_for(path), &mut portable);
            let dir = target.parent().unwrap_or(Path::new("."));
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let repo_dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
            let hist = self.hist;
            let copy = files::unique_conflict_name(
                &name,
                &self.engine.config.machine_id,
                Utc::now(),
                &portable,
                |n| {
                    std::fs::symlink_metadata(dir.join(n)).is_ok()
                        || hist.head_file(&format!("{repo_dir}/{n}")).is_some()
                },
            )?;
            let copy = dir.join(copy);
            report.kept_current_as = Some(copy.clone());
            if !opts.dry_run {
                write_new(&copy, cur, false)?;
            }
        }
        if !opts.dry_run {
            files::write_local(&target, &content)?;
        }
        Ok(report)
    }

    /// A session as it was at `--at` (or last was), written as a new session or to a file.
    fn copy_session(&mut self, id: &str, opts: &RestoreOptions) -> Result<Restored> {
        let (rs, c, meta) = self.session_version(id, opts.at.as_ref())?;
        let Some(t) = rs.transcript().cloned() else {
            bail!("session {id} has no stored transcript at {}", self.when(c));
        };
        let commit = self.session_stored(id, c);
        let mut report = Restored {
            dry_run: opts.dry_run,
            item: id.to_string(),
            is_session: true,
            stored_at: commit.map(|c| c.time),
            stored_by: commit.and_then(|c| c.machine.clone()),
            commit: commit.map(|c| c.oid.0.clone()),
            ..Restored::default()
        };
        let engine = self.engine;
        if let Some(out) = &opts.output {
            refuse_existing(out)?;
            report.written = Some(out.clone());
            report.to_output = true;
            let mut sink = Sink::new(out, opts.dry_run, false)?;
            for_each_local(&mut self.reader, &t.segs, &engine.mapper, |piece| {
                let (LocalPiece::Line(b) | LocalPiece::HugePart(b)) = piece;
                sink.write(b)
            })?;
            (report.lines, report.bytes) = sink.finish(None)?;
            return Ok(report);
        }
        let placed = match super::pull::placement(engine, &rs, &mut self.reader)? {
            Ok(p) => p,
            Err(super::pull::Unplaced::Refused(r)) => {
                bail!("{} cannot be restored: {}", r.path, r.reason)
            }
            Err(super::pull::Unplaced::Skipped(why)) => {
                bail!("session {id} cannot be placed on this machine: {why}")
            }
        };
        let new_id = new_session_id();
        let folder = placed
            .transcript
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| engine.claude.projects());
        let target = folder.join(format!("{new_id}.jsonl"));
        if let Some(link) = link_below(&engine.claude.root, &target) {
            bail!(
                "{} is a symbolic link: ccsync never writes through one",
                link.display()
            );
        }
        report.new_session = Some(new_id.clone());
        report.written = Some(target.clone());
        let when = commit
            .map(|c| c.time.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        let base = meta
            .title
            .as_deref()
            .map(|t| crate::util::truncate(t.trim(), 60))
            .unwrap_or_else(|| format!("session {}", crate::util::short_id(id)));
        let title =
            super::branches::custom_title_line(&new_id, &format!("{base} (restored as of {when})"));
        let mut sink = Sink::new(&target, opts.dry_run, true)?;
        // The restored copy is a new session: its lines name it (a line too large to hold
        // keeps the old id; Claude Code takes a session's id from its file name).
        for_each_local(
            &mut self.reader,
            &t.segs,
            &engine.mapper,
            |piece| match piece {
                LocalPiece::Line(b) => {
                    sink.write(&super::branches::with_session_id(b, id, &new_id))
                }
                LocalPiece::HugePart(b) => sink.write(b),
            },
        )?;
        (report.lines, report.bytes) = sink.finish(Some(&title))?;
        Ok(report)
    }

    /// What putting a gone session back takes (nothing is written here).
    fn bring_back_plan(&mut self, id: &str, dry_run: bool) -> Result<BringBack> {
        if self.hist.now.sessions.contains_key(id) {
            bail!(
                "session {id} is in the repository now: `ccsync pull --force` (or `ccsync resume {id}`) brings it here; give --at DATE or --at COMMIT to bring back an earlier state of it as a new session"
            );
        }
        let (rs, c, meta) = self.session_version(id, None)?;
        let commit = self
            .commit(c)
            .ok_or_else(|| anyhow!("no version of session {id}"))?;
        // A session this machine cannot place (a placeholder it lacks) still goes back into
        // the repository, for the machines that can; this one is told why not here.
        let mut notes = Vec::new();
        let transcript = match super::pull::placement(self.engine, &rs, &mut self.reader)? {
            Ok(p) => Some(p.transcript),
            Err(super::pull::Unplaced::Refused(r)) => {
                bail!("{} cannot be restored: {}", r.path, r.reason)
            }
            Err(super::pull::Unplaced::Skipped(why)) => {
                notes.push(format!("session {id} is not placed on this machine: {why}"));
                None
            }
        };
        let mut files: Vec<(String, Oid, u64)> = Vec::new();
        if let Some(m) = &rs.meta {
            files.push((m.path.clone(), m.oid.clone(), m.size));
        }
        for log in rs.logs.values() {
            for s in &log.segs {
                files.push((format!("{}/{}", log.dir, s.name), s.oid.clone(), s.size));
            }
        }
        for f in rs.files.values() {
            files.push((f.path.clone(), f.oid.clone(), f.size));
        }
        let record_path = format!("{}/{PROJECT_FILE}", layout::project_dir(&rs.slug));
        let project = self
            .store
            .ls_tree(&commit.oid, Some(&record_path))?
            .into_iter()
            .find(|e| e.is_regular_file() && e.path_str() == Some(record_path.as_str()))
            .map(|e| (record_path.clone(), e.oid, e.size.unwrap_or(0)));
        let stored = self.session_stored(id, c).unwrap_or(commit);
        let report = Restored {
            dry_run,
            item: id.to_string(),
            is_session: true,
            stored_at: Some(stored.time),
            stored_by: stored.machine.clone(),
            commit: Some(stored.oid.0.clone()),
            written: transcript,
            notes,
            lines: meta.lines,
            bytes: meta.size,
            put_back: true,
            tombstone_lifted: self.hist.forgotten.contains(id),
            ..Restored::default()
        };
        Ok(BringBack {
            id: id.to_string(),
            slug: rs.slug.clone(),
            files,
            project,
            report,
        })
    }
}

/// The repository folder of a session from the path of its `meta.json`.
fn session_dir_of(meta_path: &str) -> String {
    meta_path
        .strip_suffix(&format!("/{META_FILE}"))
        .unwrap_or(meta_path)
        .to_string()
}

/// What putting a session back into the repository writes.
struct BringBack {
    id: String,
    slug: String,
    /// Every file of its folder as it last was (repository path, blob).
    files: Vec<(String, Oid, u64)>,
    /// Its project's `project.json` then, put back if the head lacks one.
    project: Option<(String, Oid, u64)>,
    report: Restored,
}

/// Put a gone session back (one commit: its folder, its project record if missing, its
/// tombstone lifted), then place it here as `pull` does.
fn bring_back(engine: &Engine, store: Store, plan: BringBack) -> Result<Restored> {
    let mut report = plan.report;
    let message = format!("{}: restore session {}", engine.config.machine_id, plan.id);
    let (mut put, mut lifted) = (false, false);
    store.commit_and_push(&message, false, Duration::from_secs(300), |head, txn| {
        (put, lifted) = (false, false);
        let snap = Snapshot::load(&store, head)?;
        if !snap.sessions.contains_key(&plan.id) {
            for (path, oid, size) in &plan.files {
                txn.put_existing(path, oid, *size)?;
            }
            let has_record = snap
                .projects
                .get(&plan.slug)
                .is_some_and(|p| p.record.is_some());
            if let (false, Some((path, oid, size))) = (has_record, &plan.project) {
                txn.put_existing(path, oid, *size)?;
            }
            put = true;
        }
        if let Some(f) = &snap.forgotten {
            let bytes = store.reader()?.read(&f.oid)?;
            let mut tomb: serde_json::Value =
                serde_json::from_slice(&bytes).with_context(|| {
                    format!("{FORGOTTEN_FILE} in the sync repository is not valid JSON")
                })?;
            let removed = tomb
                .get_mut("sessions")
                .and_then(|s| s.as_object_mut())
                .and_then(|s| s.remove(&plan.id))
                .is_some();
            if removed {
                let empty = tomb
                    .get("sessions")
                    .and_then(|s| s.as_object())
                    .is_some_and(|s| s.is_empty());
                if empty && tomb.as_object().is_some_and(|o| o.len() == 1) {
                    txn.delete(FORGOTTEN_FILE)?;
                } else {
                    let m = txn.blob(&crate::store::format::to_json_bytes(&tomb)?)?;
                    txn.put(FORGOTTEN_FILE, m)?;
                }
                lifted = true;
            }
        }
        Ok(())
    })?;
    report.put_back = put;
    report.tombstone_lifted = lifted;
    // The clone is free again for the pull that places it (it takes the clone's lock).
    drop(store);
    let only: BTreeSet<String> = [plan.id.clone()].into();
    let pulled = super::pull(
        engine,
        &super::PullOptions {
            only: Some(only),
            no_fetch: true,
            ..Default::default()
        },
    )?;
    for d in &pulled.deferred {
        report.notes.push(format!(
            "session {d} is open in a running Claude Code here: it is placed at the first pull after Claude Code exits"
        ));
    }
    // (A session this machine cannot place has its note already.)
    for s in pulled.skipped.iter().filter(|_| report.written.is_some()) {
        report.notes.push(format!(
            "session {} was not placed here: {}",
            s.session, s.reason
        ));
    }
    for r in &pulled.refused {
        report
            .notes
            .push(format!("{} was refused: {}", r.path, r.reason));
    }
    for l in &pulled.links {
        report.notes.push(format!(
            "{l} is a symbolic link: nothing was written through it"
        ));
    }
    Ok(report)
}

/// A fresh session id, shaped like a version-4 UUID (Claude Code's picker lists UUID-named
/// files).
pub fn new_session_id() -> String {
    let h = crate::util::random_hex(16);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn no_placeholder(missing: &BTreeSet<String>) -> String {
    let names: Vec<&str> = missing.iter().map(String::as_str).collect();
    format!(
        "no path on this machine for {} (ccsync config add-placeholder {}=PATH)",
        names.join(", "),
        names.first().copied().unwrap_or("NAME")
    )
}

fn rfc(t: DateTime<Utc>) -> String {
    crate::util::rfc3339(t)
}

/// Refuse an output file that exists (a symbolic link included).
fn refuse_existing(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        bail!(
            "{} exists: restore never replaces a file, give a new name",
            path.display()
        );
    }
    Ok(())
}

/// Write a file that must not exist yet, atomically (a temporary file beside it, then a link
/// that fails if the name was taken meanwhile).
fn write_new(path: &Path, data: &[u8], make_dirs: bool) -> Result<()> {
    let mut sink = Sink::new(path, false, make_dirs)?;
    sink.write(data)?;
    sink.finish(None)?;
    Ok(())
}

/// A new file being written: a temporary file beside it, made the file at the end (never
/// replacing one); or, in a dry run, only counted.
struct Sink {
    path: PathBuf,
    tmp: Option<std::io::BufWriter<tempfile::NamedTempFile>>,
    lines: u64,
    bytes: u64,
    ends_nl: bool,
}

impl Sink {
    /// A sink for `path`; with `make_dirs`, its folder is created when missing (a folder of
    /// the Claude Code dir, not one the user named).
    fn new(path: &Path, dry_run: bool, make_dirs: bool) -> Result<Sink> {
        let tmp = if dry_run {
            None
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && make_dirs
            {
                std::fs::create_dir_all(dir).at("create the folder", dir)?;
            }
            Some(std::io::BufWriter::new(crate::os::temp_beside(path)?))
        };
        Ok(Sink {
            path: path.to_path_buf(),
            tmp,
            lines: 0,
            bytes: 0,
            ends_nl: true,
        })
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if let Some(w) = &mut self.tmp {
            w.write_all(data).at("write", &self.path)?;
        }
        self.bytes += data.len() as u64;
        self.lines += memchr::memchr_iter(b'\n', data).count() as u64;
        self.ends_nl = data.ends_with(b"\n");
        Ok(())
    }

    /// Finish, with a last line added (after a newline if the content lacks one); returns the
    /// lines and bytes written.
    fn finish(mut self, last: Option<&[u8]>) -> Result<(u64, u64)> {
        if let Some(l) = last {
            if !self.ends_nl {
                self.write(b"\n")?;
            }
            self.write(l)?;
        }
        let Some(w) = self.tmp.take() else {
            return Ok((self.lines, self.bytes));
        };
        let mut tmp = w
            .into_inner()
            .map_err(|e| e.into_error())
            .at("write", &self.path)?;
        tmp.as_file_mut().sync_data().at("write", &self.path)?;
        tmp.persist_noclobber(&self.path)
            .map_err(|e| e.error)
            .at("create", &self.path)?;
        Ok((self.lines, self.bytes))
    }
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
