//! What this machine remembers between runs (in the tool home's `state/`): when it last pushed
//! and pulled, and (from the sync engine) what each local file looked like when it was last in
//! step with the repository.

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Home;

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
