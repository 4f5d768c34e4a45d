//! What this machine remembers between runs (in the tool home's `state/`): when it last pushed
//! and pulled, and (from the sync engine) what each local file looked like when it was last in
//! step with the repository.
//!
//! Those records say what the repository holds, so they hold only while the remote keeps its
//! history. The index remembers the remote head it last saw ([`Index::seen`]). When a later head
//! no longer contains it — the branch was deleted, the repository emptied or replaced, or
//! rewound by a force-push — or a later commit deleted what ccsync never deletes (the marker,
//! the shared placeholders, this machine's record, a session not forgotten on purpose), the
//! remote lost data: [`check_history`] drops the records of what is stored (see
//! [`Index::forget_stored`]), so that the next push sends everything this machine has again (a
//! union: nothing is sent twice). Push checks before it trusts the index ([`verify_remote`]:
//! one look at the remote head, a fetch only when it moved), pull after every fetch.

use std::time::Duration;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::shared::{self, RepoKind};
use crate::config::{Config, Home};
use crate::store::{Oid, Store};

/// One completed push or pull.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub sessions: usize,
}

/// `state/status.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    #[serde(default)]
    pub remote: Option<String>,
    #[serde(default)]
    pub last_push: Option<Event>,
    #[serde(default)]
    pub last_pull: Option<Event>,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Access to the state files.
pub struct State;

impl State {
    fn status_path(home: &Home) -> std::path::PathBuf {
        home.state_dir().join("status.json")
    }

    pub fn load_status(home: &Home) -> Status {
        std::fs::read(Self::status_path(home))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save_status(home: &Home, status: &Status) -> Result<()> {
        crate::os::create_private_dir(&home.state_dir())?;
        let p = Self::status_path(home);
        crate::os::write_atomic(&p, &serde_json::to_vec_pretty(status)?, true)
            .with_context(|| format!("cannot write {}", p.display()))
    }

    /// Forget everything tied to the current remote (after `config set-remote`): the next push
    /// sends everything.
    pub fn forget_remote(home: &Home) -> Result<()> {
        for name in ["status.json", "index.json"] {
            let p = home.state_dir().join(name);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot remove {}", p.display())),
            }
        }
        Ok(())
    }
}

/// What one local log looked like when it was last in step with the repository.
///
/// Invariant: the first `local_len` bytes of the local file are lines all present in the
/// stored log `segs`. With `equal`, they are exactly the stored lines (as a multiset).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LogRecord {
    /// Folder of the log's segments in the repository.
    pub repo_dir: String,
    pub segs: Vec<crate::sync::log::Seg>,
    pub local_len: u64,
    pub local_fp: u64,
    /// Lines in the first `local_len` bytes (for line numbers in reports).
    #[serde(default)]
    pub local_lines: u64,
    pub equal: bool,
    /// `stat` of the local file when recorded.
    pub size: u64,
    pub mtime_ns: i128,
    /// The lines of the first `local_len` bytes whose secret values later lines must not show
    /// (offset and length in the local file): read again by the next push (see
    /// [`crate::sync::FileSecrets`]). `None`: not known, every line is read again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_lines: Option<Vec<(u64, u64)>>,
}

/// What one plain file (memory, CLAUDE.md, plans, subagent meta, tool-results) looked like
/// when last in step: the stored version (the base of three-way merges) and the local content.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    pub repo_path: String,
    /// The stored blob at the last sync (`None`: it did not exist).
    pub base: Option<crate::store::Oid>,
    /// SHA-256 (hex) of the local content at the last sync (`None`: the file did not exist).
    pub local_hash: Option<String>,
    pub size: u64,
    pub mtime_ns: i128,
}

/// Where a session lives on both sides.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SessionRecord {
    /// `projects/<slug>/sessions/<id>` in the repository.
    pub repo_dir: String,
    /// The transcript relative to the Claude Code dir.
    pub local: String,
    /// The stored `meta.json` object when last pulled (a new one may place the session
    /// elsewhere, after `relocate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
}

/// `state/index.json`: the local state index. Keys of `logs` and `files` are paths relative
/// to the Claude Code dir, with `/` separators.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Index {
    pub version: u32,
    #[serde(default)]
    pub remote: String,
    #[serde(default)]
    pub logs: std::collections::BTreeMap<String, LogRecord>,
    #[serde(default)]
    pub files: std::collections::BTreeMap<String, FileRecord>,
    #[serde(default)]
    pub sessions: std::collections::BTreeMap<String, SessionRecord>,
    /// Local project folder name → portable cwd (to place memory of folders without sessions).
    #[serde(default)]
    pub projects: std::collections::BTreeMap<String, String>,
    /// The last complete pull: when the remote head and the settings are the same again, and
    /// nothing was deferred, there is nothing to pull.
    #[serde(default)]
    pub pulled: Option<PullMark>,
    /// Sessions deleted from the repository with `forget`: never pushed again from here.
    #[serde(default)]
    pub forgotten: std::collections::BTreeSet<String>,
    /// The placement rules every local session was last checked against
    /// ([`crate::sync::pull::PLACEMENT_VERSION`]).
    #[serde(default)]
    pub placement: u32,
    /// Files missing here whose deletion a push held back as a loss (key → why): they stay
    /// out of deletions until they are back (`pull --force`) or deleted on purpose
    /// (`push --allow-deletions`), and one written anew meanwhile merges as a new file.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub lost: std::collections::BTreeMap<String, String>,
    /// The remote head as of this machine's last push, pull or check of the remote: the records
    /// above describe it or one of its ancestors (see [`check_history`]).
    #[serde(default)]
    pub seen: Option<String>,
    /// The generation of the local clone the records were last checked against (a new clone,
    /// after damage, has a new one: see [`check_history`]).
    #[serde(default)]
    pub clone: String,
}

/// See [`Index::pulled`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PullMark {
    pub head: String,
    /// What decides which sessions a pull brings (placeholders, sync directories, …).
    pub settings: String,
    /// Sessions deferred because Claude Code had them open.
    pub deferred: Vec<String>,
}

pub const INDEX_VERSION: u32 = 1;

impl Index {
    fn path(home: &Home) -> std::path::PathBuf {
        home.state_dir().join("index.json")
    }

    /// The index for `remote` (empty when missing, unreadable, or made for another remote).
    pub fn load(home: &Home, remote: &str) -> Index {
        let idx = std::fs::read(Self::path(home))
            .ok()
            .and_then(|b| serde_json::from_slice::<Index>(&b).ok())
            .filter(|i| i.version == INDEX_VERSION && i.remote == remote);
        idx.unwrap_or_else(|| Index {
            version: INDEX_VERSION,
            remote: remote.to_string(),
            ..Index::default()
        })
    }

    pub fn save(&self, home: &Home) -> Result<()> {
        crate::os::create_private_dir(&home.state_dir())?;
        let p = Self::path(home);
        crate::os::write_atomic(&p, &serde_json::to_vec(self)?, true)
            .with_context(|| format!("cannot write {}", p.display()))
    }
}

impl Index {
    /// Forget what this machine recorded as stored, after the remote lost some of it: the log
    /// records and the pull mark are dropped (the next push compares every log with what the
    /// repository has and sends the lines it lacks; the next pull merges everything). A plain
    /// file's record keeps, as the base of its three-way merge, the version the repository had
    /// at `common` — the last commit both the lost history and the new one contain (none: the
    /// file is new to both sides) — and counts the local file as changed. So a file the remote
    /// now has in an older version gets the local one back, and one another machine changed
    /// since `common` is merged, never silently reverted or dropped.
    pub fn forget_stored(&mut self, store: &Store, common: Option<&Oid>) -> Result<()> {
        self.logs.clear();
        self.pulled = None;
        let at = match common {
            Some(c) => {
                let paths: Vec<String> = self.files.values().map(|r| r.repo_path.clone()).collect();
                store.resolve_paths(c, &paths)?
            }
            None => Default::default(),
        };
        for r in self.files.values_mut() {
            r.base = at.get(&r.repo_path).cloned();
            r.local_hash = None;
            r.size = 0;
            r.mtime_ns = 0;
        }
        Ok(())
    }

    /// After this machine pushed `commit`, built on `built_on`: `commit` is the head seen, unless
    /// the remote lost what was seen before (then that stays, for [`check_history`] to notice).
    pub fn pushed(&mut self, store: &Store, commit: &Oid, built_on: Option<&Oid>) {
        let keeps_history = match self.seen.as_deref() {
            None => true,
            Some(s) => {
                built_on.is_some_and(|b| b.0 == s)
                    || Oid::parse(s).is_some_and(|s| store.git.is_ancestor(&s, commit))
            }
        };
        if keeps_history {
            self.seen = Some(commit.0.clone());
        }
    }

    /// Drop the records that name objects the clone does not have (after a new clone).
    fn drop_missing(&mut self, store: &Store) -> Result<usize> {
        let mut oids: Vec<Oid> = Vec::new();
        for r in self.logs.values() {
            oids.extend(r.segs.iter().map(|s| s.oid.clone()));
        }
        oids.extend(self.files.values().filter_map(|r| r.base.clone()));
        oids.sort();
        oids.dedup();
        let missing = store.missing_objects(&oids)?;
        if missing.is_empty() {
            return Ok(0);
        }
        let before = self.logs.len() + self.files.len();
        self.logs
            .retain(|_, r| r.segs.iter().all(|s| !missing.contains(&s.oid)));
        self.files
            .retain(|_, r| r.base.as_ref().is_none_or(|b| !missing.contains(b)));
        self.pulled = None;
        Ok(before - self.logs.len() - self.files.len())
    }
}

/// What [`check_history`] found.
#[derive(Debug, Default)]
pub struct Checked {
    /// The remote lost data, in words ("the sync remote X was rewound …"); the records were
    /// dropped.
    pub lost: Option<String>,
    /// The index changed (save it).
    pub changed: bool,
    /// The remote could not be asked, so nothing was checked: why, in one sentence. The caller
    /// says it only if nothing else will (a push that goes on to the remote fails there, with
    /// its own sentence about the same problem).
    pub unchecked: Option<String>,
}

/// Check the fetched remote `head` against what this machine last saw, and the records against
/// the clone. The remote lost data when the head seen is no longer in its history (the branch is
/// gone, the repository is empty or was replaced, or was rewound), when it lost its format
/// marker, or when a later commit deleted what ccsync never deletes (the marker, the shared
/// placeholders, this machine's record, a session not forgotten on purpose); then the records
/// of what is stored are dropped ([`Index::forget_stored`]; for lost sessions only theirs).
/// Records naming objects a new clone lacks are dropped too. Afterwards `head` is the head seen.
pub fn check_history(store: &Store, head: Option<&Oid>, index: &mut Index) -> Result<Checked> {
    let mut out = Checked::default();
    let generation = Store::generation_of(&store.git);
    if index.clone != generation {
        let dropped = index.drop_missing(store)?;
        if dropped > 0 {
            tracing::info!(
                "{dropped} record(s) named objects the local clone lacks: they are checked again"
            );
        }
        index.clone = generation;
        out.changed = true;
    }
    let now = head.map(|h| h.0.clone());
    if index.seen == now {
        return Ok(out);
    }
    // (A head that is not an object id — a hand-edited index — counts as none seen.)
    let seen = index.seen.as_deref().and_then(Oid::parse);
    let marker_lost = || {
        format!(
            "lost its format marker {} (only part of a ccsync repository is left)",
            crate::store::format::FORMAT_FILE
        )
    };
    // What the remote lost, in words, and the last commit both histories share.
    let loss: Option<(String, Option<Oid>)> = match (&seen, head) {
        (Some(_), None) => Some((
            format!(
                "no longer has the branch {} (it was deleted, or the repository emptied or replaced)",
                store.branch
            ),
            None,
        )),
        (Some(s), Some(h)) if !store.git.is_ancestor(s, h) => {
            if shared::classify(store, head)? == RepoKind::Empty {
                Some(("is empty (it was emptied or replaced)".to_string(), None))
            } else {
                Some((
                    format!(
                        "was rewound or replaced (commit {} that this machine last saw is no longer in its history)",
                        s.short()
                    ),
                    store.git.merge_base(s, h),
                ))
            }
        }
        (Some(s), Some(h)) => {
            // The history goes on from what was seen: did a later commit delete what no ccsync
            // command deletes? (The marker included: what was seen was checked to have it.)
            let d = deleted_since(store, s, h)?;
            if d.skeleton
                .iter()
                .any(|p| p == crate::store::format::FORMAT_FILE)
            {
                Some((marker_lost(), seen.clone()))
            } else if !d.skeleton.is_empty() {
                Some((
                    format!(
                        "lost {} (deleted by a later commit)",
                        d.skeleton.join(" and ")
                    ),
                    seen.clone(),
                ))
            } else if !d.sessions.is_empty() {
                // Only those sessions need sending again.
                let n = d.sessions.len();
                let inside = |p: &str| {
                    d.sessions
                        .iter()
                        .any(|dir| p.starts_with(&format!("{dir}/")))
                };
                index.logs.retain(|_, r| !inside(&r.repo_dir));
                index.files.retain(|_, r| !inside(&r.repo_path));
                index.pulled = None;
                let sentence = format!(
                    "the sync remote {} lost {n} session{} (a later commit deleted {} without `ccsync forget`)",
                    store.remote,
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "it" } else { "them" }
                );
                tracing::info!("{sentence}: sending them again");
                out.lost = Some(sentence);
                None
            } else {
                None
            }
        }
        // Nothing seen yet (a first sync, or an index from before heads were recorded): only
        // a repository that is visibly damaged tells of a loss.
        (None, Some(_)) if shared::inspect(store, head)?.1 => Some((marker_lost(), None)),
        _ => None,
    };
    if let Some((what, common)) = loss {
        let sentence = format!("the sync remote {} {what}", store.remote);
        tracing::info!("{sentence}: forgetting what this machine recorded as stored there");
        index.forget_stored(store, common.as_ref())?;
        out.lost = Some(sentence);
    }
    index.seen = now;
    out.changed = true;
    Ok(out)
}

/// After this machine encrypted its repository: every object id it recorded names a plain
/// blob that the encrypted tree no longer has. The next push compares every log with what is
/// stored (and sends nothing twice), the next pull merges everything once.
pub fn reset_after_encryption(home: &Home, remote: &str) -> Result<()> {
    let mut index = Index::load(home, remote);
    index.logs.clear();
    index.pulled = None;
    index.seen = None;
    for r in index.files.values_mut() {
        r.base = None;
        r.local_hash = None;
        r.size = 0;
        r.mtime_ns = 0;
    }
    index.save(home)
}

/// What commits after `seen` deleted that ccsync never deletes.
#[derive(Debug, Default)]
struct Deleted {
    /// Files every ccsync repository has: the marker, the placeholders, this machine's record.
    skeleton: Vec<String>,
    /// Session folders (`projects/<slug>/sessions/<id>`) gone without `ccsync forget`.
    sessions: Vec<String>,
}

/// Compare the trees of `seen` and `head` (one `git diff-tree`, proportional to what changed).
fn deleted_since(store: &Store, seen: &Oid, head: &Oid) -> Result<Deleted> {
    use crate::store::format::{FORGOTTEN_FILE, FORMAT_FILE, SHARED_PLACEHOLDERS};
    let changes = store.diff_names(seen, head)?;
    let me = store.machine_record_path();
    let mut out = Deleted::default();
    let mut gone = std::collections::BTreeSet::new();
    let mut kept = std::collections::BTreeSet::new();
    for (status, path) in &changes {
        let (status, path) = (*status, path.as_str());
        let session = {
            let parts: Vec<&str> = path.splitn(5, '/').collect();
            match parts.as_slice() {
                ["projects", slug, "sessions", sid, _] => {
                    Some(format!("projects/{slug}/sessions/{sid}"))
                }
                _ => None,
            }
        };
        if status == 'D' {
            if path == FORMAT_FILE || path == SHARED_PLACEHOLDERS || path == me {
                out.skeleton.push(path.to_string());
            }
            if let Some(dir) = session {
                gone.insert(dir);
            }
        } else if let Some(dir) = session {
            kept.insert(dir);
        }
    }
    let candidates: Vec<String> = gone.difference(&kept).cloned().collect();
    if candidates.is_empty() {
        return Ok(out);
    }
    let forgotten: std::collections::BTreeSet<String> = store
        .read_file(head, FORGOTTEN_FILE)?
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("sessions")
                .and_then(|s| s.as_object())
                .map(|o| o.keys().cloned().collect())
        })
        .unwrap_or_default();
    for dir in candidates {
        let sid = dir.rsplit('/').next().unwrap_or_default();
        if forgotten.contains(sid)
            || store
                .read_file(head, &format!("{dir}/meta.json"))?
                .is_some()
        {
            continue;
        }
        out.sessions.push(dir);
    }
    Ok(out)
}

/// Before a push trusts the index to say what the repository holds: has the remote lost any of
/// it? One cheap look at where the remote branch points (a file read for a remote on this
/// machine, `git ls-remote` otherwise); only when it moved since this machine last saw it is it
/// fetched and checked ([`check_history`]). The index is saved when the check changed it and
/// `save` is set. A remote that cannot be reached is not checked ([`Checked::unchecked`] says
/// why).
pub fn verify_remote(
    home: &Home,
    config: &Config,
    index: &mut Index,
    timeout: Duration,
    save: bool,
) -> Result<Checked> {
    let now = match crate::store::peek_remote_head(&config.remote, &config.branch, timeout) {
        Ok(h) => h,
        Err(e) => {
            return Ok(Checked {
                unchecked: Some(format!(
                    "cannot check what the sync remote {} holds: {e:#}",
                    config.remote
                )),
                ..Checked::default()
            });
        }
    };
    if now.as_ref().map(|o| &o.0) == index.seen.as_ref()
        && Store::generation_of(&crate::store::Git::new(home.repo_dir())) == index.clone
    {
        return Ok(Checked::default());
    }
    let store = Store::of_waiting(home, config, timeout)?;
    let head = store.fetch(timeout)?;
    let checked = check_history(&store, head.as_ref(), index)?;
    if save && checked.changed {
        index.save(home)?;
    }
    Ok(checked)
}
