//! Plain files (project memory, CLAUDE.md, plans, subagent meta files, tool results): a
//! three-way merge against the version both sides last agreed on.
//!
//! * Changed on one side only: that side wins (a deletion included).
//! * Changed on both: a line merge; when the same lines changed differently, the local file is
//!   kept and the other version is written beside it as a conflict copy (see [`conflict_name`]),
//!   so both stay visible. A conflict copy never replaces an existing file, local or stored, and
//!   is then synced like any other file. A file deleted on one side and changed on the other is
//!   kept.
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

/// The file name of a conflict copy of `name`:
/// `<stem>.conflict-<machine>-<yyyymmddThhmmss>-<6 hex>.<ext>`, the hex being the start of the
/// SHA-256 of the copy's content (as stored). Two machines never make the same name, and one
/// machine makes the same name only for the same content in the same second. A copy of a copy
/// is named after the original file (its older `.conflict-…` part is dropped).
pub fn conflict_name(
    name: &str,
    machine: &str,
    when: chrono::DateTime<chrono::Utc>,
    content: &[u8],
) -> String {
    let (base, ext) = conflict_parts(name, machine, when, content);
    format!("{base}{ext}")
}

/// A conflict copy's name before and after the place where a counter goes.
fn conflict_parts(
    name: &str,
    machine: &str,
    when: chrono::DateTime<chrono::Utc>,
    content: &[u8],
) -> (String, String) {
    let (stem, ext) = match name.rfind('.').filter(|&i| i > 0) {
        Some(i) if !name[i + 1..].starts_with("conflict-") => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let stem = match stem.rfind(".conflict-").filter(|&i| i > 0) {
        Some(i) => &stem[..i],
        None => stem,
    };
    let stamp = when.format("%Y%m%dT%H%M%S");
    let hash = sha256_hex(content);
    (
        format!("{stem}.conflict-{machine}-{stamp}-{}", &hash[..6]),
        ext.to_string(),
    )
}

/// [`conflict_name`], made unique: while `taken` says a name is in use (a local file, a stored
/// one), `-2`, `-3`, … is added before the extension.
pub fn unique_conflict_name(
    name: &str,
    machine: &str,
    when: chrono::DateTime<chrono::Utc>,
    content: &[u8],
    taken: impl Fn(&str) -> bool,
) -> Result<String> {
    let (base, ext) = conflict_parts(name, machine, when, content);
    let first = format!("{base}{ext}");
    if !taken(&first) {
        return Ok(first);
    }
    for n in 2..100_000u32 {
        let candidate = format!("{base}-{n}{ext}");
        if !taken(&candidate) {
            return Ok(candidate);
        }
    }
    anyhow::bail!("no free name for a conflict copy of {name}")
}

/// A conflict copy beside `path` (a `/`-separated path) whose name `taken` does not know.
pub fn conflict_path(
    path: &str,
    machine: &str,
    when: chrono::DateTime<chrono::Utc>,
    content: &[u8],
    taken: impl Fn(&str) -> bool,
) -> Result<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let copy = unique_conflict_name(name, machine, when, content, |n| taken(&with_last(path, n)))?;
    Ok(with_last(path, &copy))
}

/// `path` with its last `/`-separated component replaced by `name`.
fn with_last(path: &str, name: &str) -> String {
    match path.rfind('/') {
        Some(i) => format!("{}{name}", &path[..=i]),
        None => name.to_string(),
    }
}

/// How recent a file's modification time may be for its recorded stat to be trusted: a change
/// within the file system's timestamp granularity (coarse clocks, whole seconds on some file
/// systems) would leave the stat as it was.
const RACY_NS: i128 = 3_000_000_000;

/// Whether a key (relative to the Claude Code dir) names a file people and Claude Code edit in
/// place: project memory, CLAUDE.md (and its conflict copies), plans.
pub fn edited_in_place(key: &str) -> bool {
    let memory = key
        .strip_prefix("projects/")
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(_, tail)| tail.starts_with("memory/"));
    memory
        || key == "CLAUDE.md"
        || (key.starts_with("CLAUDE.conflict-") && !key.contains('/'))
        || key.starts_with("plans/")
}

/// The stat to record for a plain file. For files edited in place ([`edited_in_place`]) it is
/// blank when the modification time is too recent to trust, and [`differs`] then compares
/// contents; other files (session attachments, written once) keep their stat.
pub fn stat_to_record(key: &str, size: u64, mtime_ns: i128) -> (u64, i128) {
    let now = chrono::Utc::now()
        .timestamp_nanos_opt()
        .map_or(i128::MAX, i128::from);
    if edited_in_place(key) && mtime_ns >= now - RACY_NS {
        (0, 0)
    } else {
        (size, mtime_ns)
    }
}

/// Whether a plain file may differ from its record: its stat changed, and when the record's
/// stat was left blank, its content differs from the recorded one.
pub fn differs(record: Option<&FileRecord>, path: &Path, size: u64, mtime_ns: i128) -> bool {
    let Some(r) = record else { return true };
    if r.size == size && r.mtime_ns == mtime_ns {
        return false;
    }
    if r.size != 0 || r.mtime_ns != 0 || r.local_hash.is_none() {
        return true;
    }
    match std::fs::read(path) {
        Ok(b) => Some(sha256_hex(&b)) != r.local_hash,
        Err(_) => true,
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
    /// Bring the stored version back when the file was deleted here (`pull --force`).
    pub restore: bool,
    /// Whether the repository holds a file at this path (a conflict copy never takes the name
    /// of one).
    pub repo_has: &'a dyn Fn(&str) -> bool,
}

/// A file's name as a string (empty when it has none).
fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reconcile one plain file. Local writes happen here (atomically) unless `dry_run`; repository
/// changes are returned for the caller's commit (push redacts them).
/// `machine` (this machine's id) goes into the names of conflict copies. With a `scanner`, a
/// stored version comes back with this machine's own secrets in place of their redaction
/// tokens (see [`crate::secrets::Scanner::restore_own`]), so that a file changed elsewhere
/// never loses them here.
#[allow(clippy::too_many_arguments)]
pub fn reconcile(
    sides: FileSides<'_>,
    dir: Direction,
    mapper: &Mapper,
    machine: &str,
    reader: &mut BlobReader,
    dry_run: bool,
    scanner: Option<crate::secrets::Scanner>,
) -> Result<Reconciled> {
    let FileSides {
        local_key,
        local_path,
        repo_path,
        stored,
        record,
        restore,
        repo_has,
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
    let json_file = repo_path.ends_with(".json");
    let localize = |data: &[u8]| {
        let mut v = Vec::with_capacity(data.len());
        mapper.to_local(data, ctx, &mut v);
        match (scanner, &local) {
            (Some(sc), Some(l)) => sc.restore_own(l, &v, json_file).into_owned(),
            _ => v,
        }
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
                // Deleted here: brought back only when asked (`pull --force`).
                if let (None, Some(s), true) = (&local, stored, restore) {
                    let theirs = localize(&reader.read(&s.oid)?);
                    if !dry_run {
                        write_local(&local_path, &theirs)?;
                    }
                    out.records
                        .push(draft(stored_base(), Some(sha256_hex(&theirs))));
                    out.pulled = true;
                }
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
            let stored_bytes = match stored {
                Some(s) => Some(reader.read(&s.oid)?),
                None => None,
            };
            let theirs = stored_bytes.as_deref().map(localize);
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
                            // Both versions stay: theirs beside ours, under a name nothing
                            // local or stored has.
                            let copy_name = unique_conflict_name(
                                &file_name_of(&local_path),
                                machine,
                                chrono::Utc::now(),
                                stored_bytes.as_deref().unwrap_or_default(),
                                |n| {
                                    std::fs::symlink_metadata(local_path.with_file_name(n)).is_ok()
                                        || repo_has(&with_last(&repo_path, n))
                                },
                            )?;
                            let copy_path = local_path.with_file_name(&copy_name);
                            if !dry_run {
                                write_local(&copy_path, t)?;
                            }
                            out.conflict = Some(copy_path);
                            let copy_repo = with_last(&repo_path, &copy_name);
                            let copy_key = with_last(&local_key, &copy_name);
                            if dir == Direction::Push {
                                out.repo_put.push((repo_path.clone(), portable(l)));
                                out.repo_put.push((copy_repo.clone(), portable(t)));
                                out.records
                                    .push(draft(Base::Written(repo_path.clone()), local_hash));
                                out.records.push(RecordDraft {
                                    local_key: copy_key,
                                    repo_path: copy_repo.clone(),
                                    base: Base::Written(copy_repo),
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

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn conflict_names() {
        let t = at("2026-11-25T10:15:00Z");
        let h = &sha256_hex(b"x")[..6];
        assert_eq!(
            conflict_name("notes.md", "laptop", t, b"x"),
            format!("notes.conflict-laptop-20261125T101500-{h}.md")
        );
        assert_eq!(
            conflict_name("README", "m", t, b"x"),
            format!("README.conflict-m-20261125T101500-{h}")
        );
        assert_eq!(
            conflict_name(".hidden", "m", t, b"x"),
            format!(".hidden.conflict-m-20261125T101500-{h}")
        );
        // A copy of a copy is named after the original.
        let first = conflict_name("notes.md", "a", t, b"one");
        assert_eq!(
            conflict_name(&first, "b", t, b"x"),
            format!("notes.conflict-b-20261125T101500-{h}.md")
        );
        let first = conflict_name("README", "a", t, b"one");
        assert_eq!(
            conflict_name(&first, "b", t, b"x"),
            format!("README.conflict-b-20261125T101500-{h}")
        );
    }

    #[test]
    fn a_taken_name_is_never_used() {
        let t = at("2026-11-25T10:15:00Z");
        let first = conflict_name("notes.md", "a", t, b"x");
        let taken = [first.clone(), first.replace(".md", "-2.md")];
        let got = unique_conflict_name("notes.md", "a", t, b"x", |n| taken.iter().any(|x| x == n))
            .unwrap();
        assert_eq!(got, first.replace(".md", "-3.md"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, .. Default::default() })]

        /// Copies made by different machines, or of different contents, never share a name;
        /// a copy keeps the extension, is never the file itself and never a taken name.
        #[test]
        fn conflict_names_never_collide(
            name in "[A-Za-z_.][A-Za-z0-9_.-]{0,12}(\\.[a-z]{1,4})?",
            m1 in "[a-z0-9][a-z0-9._-]{0,8}",
            m2 in "[a-z0-9][a-z0-9._-]{0,8}",
            c1 in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            c2 in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            secs in 0i64..4_000_000_000,
            copies in 0usize..5,
        ) {
            let t = chrono::DateTime::from_timestamp(secs, 0).unwrap();
            let a = conflict_name(&name, &m1, t, &c1);
            let b = conflict_name(&name, &m2, t, &c2);
            proptest::prop_assert_ne!(&a, &name);
            if m1 != m2 || sha256_hex(&c1)[..6] != sha256_hex(&c2)[..6] {
                proptest::prop_assert_ne!(&a, &b);
            }
            if let Some(i) = name.rfind('.').filter(|&i| i > 0 && !name[i + 1..].starts_with("conflict-")) {
                proptest::prop_assert!(a.ends_with(&name[i..]));
            }
            let mut used: Vec<String> = Vec::new();
            for _ in 0..copies {
                let n = unique_conflict_name(&name, &m1, t, &c1, |n| used.iter().any(|u| u == n)).unwrap();
                proptest::prop_assert!(!used.contains(&n));
                used.push(n);
            }
        }
    }

    #[test]
    fn a_recent_stat_is_not_trusted_and_contents_decide() {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap() as i128;
        let key = "projects/-x/memory/MEMORY.md";
        assert_eq!(stat_to_record(key, 10, now), (0, 0));
        assert_eq!(
            stat_to_record(key, 10, now - 60_000_000_000),
            (10, now - 60_000_000_000)
        );
        // Files written once keep their stat.
        assert_eq!(
            stat_to_record("projects/-x/s/tool-results/t", 10, now),
            (10, now)
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("MEMORY.md");
        std::fs::write(&p, "same\n").unwrap();
        let mut r = FileRecord {
            repo_path: "r".into(),
            base: None,
            local_hash: Some(sha256_hex(b"same\n")),
            size: 0,
            mtime_ns: 0,
        };
        assert!(!differs(Some(&r), &p, 5, now), "blank stat, same content");
        std::fs::write(&p, "edit\n").unwrap();
        assert!(differs(Some(&r), &p, 5, now), "blank stat, other content");
        r.size = 5;
        r.mtime_ns = now;
        assert!(!differs(Some(&r), &p, 5, now), "same stat");
        assert!(differs(Some(&r), &p, 5, now + 1), "other stat");
        assert!(differs(None, &p, 5, now), "no record");
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
