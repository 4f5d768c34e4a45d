//! Plain files (project memory, CLAUDE.md, plans, subagent meta files, tool results): a
//! three-way merge against the version both sides last agreed on.
//!
//! * Changed on one side only: that side wins (a deletion included).
//! * Changed on both: a line merge; when the same lines changed differently, the local file is
//!   kept and the other version is written beside it as `<name>.conflict-<time>.<ext>`, so both
//!   stay visible. A file deleted on one side and changed on the other is kept.
//!
//! Push handles local changes and pull handles remote ones; whichever meets a change on both
//! sides resolves it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

use super::snapshot::StoredFile;
use super::state::FileRecord;
use crate::os::IoAt;
use crate::paths::{Context, Mapper};
use crate::store::{BlobReader, Oid};

/// Which direction the caller is syncing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Push,
    Pull,
}

/// The base a new record will have once the commit exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    None,
    Stored(Oid),
    /// Written in this commit at this repository path; resolved after the push.
    Written(String),
}

/// A record to store after the sync succeeds.
#[derive(Debug, Clone)]
pub struct RecordDraft {
    pub local_key: String,
    pub repo_path: String,
    pub base: Base,
    pub local_hash: Option<String>,
}

/// What reconciling one file decided.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// The file's key in the state index.
    pub local_key: String,
    pub repo_put: Vec<(String, Vec<u8>)>,
    pub repo_delete: Vec<String>,
    pub records: Vec<RecordDraft>,
    /// The record of this file is to be removed (both sides gone).
    pub forget: bool,
    pub pushed: bool,
    pub pulled: bool,
    /// A conflict copy written locally.
    pub conflict: Option<PathBuf>,
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The mapping context for a file name: JSON for `.json`/`.jsonl`, text otherwise.
pub fn context_for(name: &str) -> Context {
    if name.ends_with(".json") || name.ends_with(".jsonl") {
        Context::Json
    } else {
        Context::Text
    }
}

fn read_local(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// `notes.md` → `notes.conflict-20261125T101500.md` (same folder).
pub fn conflict_name(rel: &str, when: chrono::DateTime<chrono::Utc>) -> String {
    let (dir, name) = match rel.rfind('/') {
        Some(i) => (&rel[..=i], &rel[i + 1..]),
        None => ("", rel),
    };
    let stamp = when.format("%Y%m%dT%H%M%S");
    match name.rfind('.').filter(|&i| i > 0) {
        Some(i) => format!("{dir}{}.conflict-{stamp}{}", &name[..i], &name[i..]),
        None => format!("{dir}{name}.conflict-{stamp}"),
    }
}

/// Everything needed to reconcile one file.
pub struct FileSides<'a> {
    /// Key in the state index (path relative to the Claude Code dir).
    pub local_key: String,
    pub local_path: PathBuf,
    pub repo_path: String,
    pub stored: Option<&'a StoredFile>,
    pub record: Option<&'a FileRecord>,
}

/// Reconcile one plain file. Local writes happen here (atomically) unless `dry_run`; repository
/// changes are returned for the caller's commit.
pub fn reconcile(
    sides: FileSides<'_>,
    dir: Direction,
    mapper: &Mapper,
    reader: &mut BlobReader,
    dry_run: bool,
) -> Result<Reconciled> {
    let FileSides {
        local_key,
        local_path,
        repo_path,
        stored,
        record,
    } = sides;
    let ctx = context_for(&repo_path);
    let local = read_local(&local_path)?;
    let local_hash = local.as_deref().map(sha256_hex);
    let local_changed = match record {
        Some(r) => r.local_hash != local_hash,
        None => local.is_some(),
    };
    let repo_changed = match record {
        Some(r) => r.base.as_ref() != stored.map(|s| &s.oid),
        None => stored.is_some(),
    };
    let mut out = Reconciled {
        local_key: local_key.clone(),
        ..Reconciled::default()
    };
    let portable = |data: &[u8]| {
        let mut v = Vec::with_capacity(data.len());
        mapper.to_portable(data, ctx, &mut v);
        v
    };
    let localize = |data: &[u8]| {
        let mut v = Vec::with_capacity(data.len());
        mapper.to_local(data, ctx, &mut v);
        v
    };
    let draft = |base: Base, hash: Option<String>| RecordDraft {
        local_key: local_key.clone(),
        repo_path: repo_path.clone(),
        base,
        local_hash: hash,
    };
    let stored_base = || stored.map_or(Base::None, |s| Base::Stored(s.oid.clone()));

    match (local_changed, repo_changed) {
        (false, false) => {
            if local.is_none() && stored.is_none() {
                out.forget = true;
            } else {
                out.records.push(draft(stored_base(), local_hash));
            }
        }
        (true, false) => {
            if dir == Direction::Pull {
                return Ok(out);
            }
            match &local {
                Some(l) => {
                    out.repo_put.push((repo_path.clone(), portable(l)));
                    out.records
                        .push(draft(Base::Written(repo_path.clone()), local_hash));
                }
                None => {
                    if stored.is_some() {
                        out.repo_delete.push(repo_path.clone());
                    }
                    out.forget = true;
                }
            }
            out.pushed = true;
        }
        (false, true) => {
            if dir == Direction::Push {
                return Ok(out);
            }
            match stored {
                Some(s) => {
                    let theirs = localize(&reader.read(&s.oid)?);
                    if !dry_run {
                        write_local(&local_path, &theirs)?;
                    }
                    out.records
                        .push(draft(stored_base(), Some(sha256_hex(&theirs))));
                }
                None => {
                    if !dry_run && local.is_some() {
                        std::fs::remove_file(&local_path)
                            .with_context(|| format!("cannot remove {}", local_path.display()))?;
                    }
                    out.forget = true;
                }
            }
            out.pulled = true;
        }
        (true, true) => {
            let theirs = match stored {
                Some(s) => Some(localize(&reader.read(&s.oid)?)),
                None => None,
            };
            match (&local, &theirs) {
                (None, None) => out.forget = true,
                (Some(l), Some(t)) if l == t => out.records.push(draft(stored_base(), local_hash)),
                (None, Some(t)) => {
                    // Deleted here, changed there: keep their version.
                    if !dry_run {
                        write_local(&local_path, t)?;
                    }
                    out.records.push(draft(stored_base(), Some(sha256_hex(t))));
                    out.pulled = true;
                }
                (Some(l), None) => {
                    // Deleted there, changed here: keep ours.
                    if dir == Direction::Push {
                        out.repo_put.push((repo_path.clone(), portable(l)));
                        out.records
                            .push(draft(Base::Written(repo_path.clone()), local_hash));
                        out.pushed = true;
                    } else {
                        out.records.push(draft(Base::None, None));
                    }
                }
                (Some(l), Some(t)) => {
                    let base = match record.and_then(|r| r.base.as_ref()) {
                        Some(o) => localize(&reader.read(o)?),
                        None => Vec::new(),
                    };
                    let merged = match (
                        std::str::from_utf8(&base),
                        std::str::from_utf8(l),
                        std::str::from_utf8(t),
                    ) {
                        (Ok(b), Ok(o), Ok(th)) => {
                            diffy::merge(b, o, th).ok().map(String::into_bytes)
                        }
                        _ => None,
                    };
                    match merged {
                        Some(m) => {
                            if !dry_run && &m != l {
                                write_local(&local_path, &m)?;
                            }
                            if dir == Direction::Push {
                                out.repo_put.push((repo_path.clone(), portable(&m)));
                                out.records.push(draft(
                                    Base::Written(repo_path.clone()),
                                    Some(sha256_hex(&m)),
                                ));
                                out.pushed = true;
                            } else {
                                out.records.push(draft(stored_base(), Some(sha256_hex(t))));
                            }
                            out.pulled = true;
                        }
                        None => {
                            let now = chrono::Utc::now();
                            let file_name = local_path
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            let copy_name = conflict_name(&file_name, now);
                            let copy_path = local_path.with_file_name(&copy_name);
                            if !dry_run {
                                write_local(&copy_path, t)?;
                            }
                            out.conflict = Some(copy_path);
                            let copy_repo = conflict_name(&repo_path, now);
                            let copy_key = conflict_name(&local_key, now);
                            if dir == Direction::Push {
                                out.repo_put.push((repo_path.clone(), portable(l)));
                                out.repo_put.push((copy_repo.clone(), portable(t)));
                                out.records
                                    .push(draft(Base::Written(repo_path.clone()), local_hash));
                                out.records.push(RecordDraft {
                                    local_key: copy_key,
                                    repo_path: copy_repo,
                                    base: Base::Written(conflict_name(&repo_path, now)),
                                    local_hash: Some(sha256_hex(t)),
                                });
                                out.pushed = true;
                            } else {
                                out.records.push(draft(stored_base(), Some(sha256_hex(t))));
                            }
                            out.pulled = true;
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Replace a local file atomically, creating its folder.
pub fn write_local(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).at("create the folder", dir)?;
    }
    crate::os::write_atomic(path, data, false)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:15:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            conflict_name("memory/notes.md", t),
            "memory/notes.conflict-20261125T101500.md"
        );
        assert_eq!(
            conflict_name("README", t),
            "README.conflict-20261125T101500"
        );
        assert_eq!(
            conflict_name(".hidden", t),
            ".hidden.conflict-20261125T101500"
        );
    }

    #[test]
    fn diffy_merges_different_lines_and_flags_same_line() {
        let base = "a\nb\nc\n";
        assert_eq!(
            diffy::merge(base, "A\nb\nc\n", "a\nb\nC\n").unwrap(),
            "A\nb\nC\n"
        );
        assert!(diffy::merge(base, "a\nX\nc\n", "a\nY\nc\n").is_err());
    }
}
