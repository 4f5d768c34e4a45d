//! Sessions a pull created without waiting for the disk, and what a later command does about
//! them.
//!
//! Every file ccsync writes is written atomically (a temporary file renamed into place). An
//! update of a file this machine had is also flushed to the disk before the rename, so that a
//! system crash leaves the old version or the new one. A session this machine did not have at
//! all is different: the repository holds all of it, so a crash can cost nothing but the copy
//! being written. A pull writes such sessions without a flush per file (on a first pull that is
//! most of the time it would take) and records them first, flushed, in `state/unsynced.json`
//! with the system's boot id:
//!
//! * The same boot, a minute later or more: the kernel has written them out long since; one
//!   `syncfs` makes sure, and the record goes.
//! * The same boot, sooner: nothing to do yet (the files are whole in memory; every reader sees
//!   them whole).
//! * Another boot (the system crashed or restarted before the record went): every file of those
//!   sessions is checked against what the index says was written. A session with a file that
//!   is torn (shorter, or not starting with what was written), or with files but no records
//!   (the crash came before the index was saved), is moved aside whole into
//!   `recovered/<time>/` in the tool home, never deleted, and its records dropped, so the next
//!   pull writes it again.
//!
//! Where the boot id is not known (not Linux) every file is flushed as before.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::config::Home;
use crate::sync::state::Index;

/// How long after a pull its files are surely written out by the kernel (Linux writes dirty
/// pages out after 30 s by default).
const SETTLED_SECS: i64 = 60;

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Pending {
    boot: String,
    /// When the last of these sessions was written (Unix seconds).
    at: i64,
    sessions: Vec<String>,
}

fn path(home: &Home) -> PathBuf {
    home.state_dir().join("unsynced.json")
}

fn load(home: &Home) -> Option<Pending> {
    let bytes = std::fs::read(path(home)).ok()?;
    // A record that does not parse is treated as one from another boot with no sessions
    // known: nothing to check, and it is replaced.
    Some(serde_json::from_slice(&bytes).unwrap_or_default())
}

/// Record `sessions` as about to be written without flushing, before any of them is; returns
/// whether to (false: this system's boot is not known, flush every file).
pub fn begin(home: &Home, sessions: &[String], now: i64) -> Result<bool> {
    let Some(boot) = crate::os::boot_id() else {
        return Ok(false);
    };
    if sessions.is_empty() {
        return Ok(false);
    }
    let mut p = load(home).filter(|p| p.boot == boot).unwrap_or_default();
    p.boot = boot;
    p.at = now;
    for s in sessions {
        if !p.sessions.contains(s) {
            p.sessions.push(s.clone());
        }
    }
    crate::os::create_private_dir(&home.state_dir())?;
    let file = path(home);
    crate::os::write_atomic(&file, &serde_json::to_vec(&p)?, true)
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(true)
}

/// What [`settle`] did.
#[derive(Debug, Default, PartialEq)]
pub struct Settled {
    /// Sessions moved aside after a crash (the next pull writes them again).
    pub recovered: Vec<String>,
    /// Where they went.
    pub to: Option<PathBuf>,
}

/// Deal with the sessions an earlier pull wrote without flushing (see the module text); called
/// by push and pull before they read local files. `claude_root` is the Claude Code dir the
/// index keys are relative to.
pub fn settle(home: &Home, claude_root: &Path, index: &mut Index, now: i64) -> Result<Settled> {
    let Some(p) = load(home) else {
        return Ok(Settled::default());
    };
    let boot = crate::os::boot_id();
    if boot.as_deref() == Some(p.boot.as_str()) {
        if now - p.at < SETTLED_SECS {
            return Ok(Settled::default());
        }
        crate::os::sync_file_system(claude_root)
            .with_context(|| format!("cannot flush {} to the disk", claude_root.display()))?;
        remove(home)?;
        return Ok(Settled::default());
    }
    let mut out = Settled::default();
    let stamp = chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%S");
    let aside = home.root.join("recovered").join(stamp.to_string());
    for sid in &p.sessions {
        let files = session_files(claude_root, sid);
        if files.is_empty() || session_whole(claude_root, sid, &files, index) {
            continue;
        }
        for f in &files {
            let rel = f.strip_prefix(claude_root).unwrap_or(f);
            let dest = aside.join(rel);
            if let Some(d) = dest.parent() {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("cannot create {}", d.display()))?;
            }
            std::fs::rename(f, &dest).with_context(|| {
                format!("cannot move {} aside to {}", f.display(), dest.display())
            })?;
        }
        let mine = |k: &str| key_of_session(k, sid);
        index.logs.retain(|k, _| !mine(k));
        index.files.retain(|k, _| !mine(k));
        index.sessions.remove(sid);
        index.pulled = None;
        out.recovered.push(sid.clone());
    }
    if !out.recovered.is_empty() {
        tracing::warn!(
            "the system stopped before {} session(s) this machine pulled were on the disk; their copies were moved to {} and the next pull writes them again",
            out.recovered.len(),
            aside.display()
        );
        index.save(home)?;
        out.to = Some(aside);
    }
    remove(home)?;
    Ok(out)
}

fn remove(home: &Home) -> Result<()> {
    let p = path(home);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", p.display())),
    }
}

/// Whether an index key (a path relative to the Claude Code dir) belongs to session `sid`:
/// its transcript `projects/<folder>/<sid>.jsonl` or anything under `projects/<folder>/<sid>/`.
fn key_of_session(key: &str, sid: &str) -> bool {
    let mut parts = key.split('/');
    parts.next() == Some("projects")
        && parts.next().is_some()
        && parts
            .next()
            .is_some_and(|p| p == sid || p.strip_suffix(".jsonl") == Some(sid))
}

/// Every file of session `sid` in the Claude Code dir: its transcripts and its folders' files.
fn session_files(claude_root: &Path, sid: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(projects) = std::fs::read_dir(claude_root.join("projects")) else {
        return out;
    };
    for p in projects.flatten() {
        let dir = p.path();
        let t = dir.join(format!("{sid}.jsonl"));
        if t.is_file() {
            out.push(t);
        }
        let d = dir.join(sid);
        if d.is_dir() {
            collect(&d, &mut out);
        }
    }
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => collect(&p, out),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// Whether every file of a session is as the index says the pull wrote it (a log may have grown
/// since: Claude Code appends).
fn session_whole(claude_root: &Path, sid: &str, files: &[PathBuf], index: &Index) -> bool {
    let key = |f: &Path| {
        f.strip_prefix(claude_root)
            .unwrap_or(f)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    };
    let recorded = index.logs.keys().any(|k| key_of_session(k, sid))
        || index.files.keys().any(|k| key_of_session(k, sid));
    if !recorded {
        // The crash came before the index was saved: nothing says what these files should be.
        return false;
    }
    for f in files {
        let k = key(f);
        if let Some(r) = index.logs.get(&k) {
            let Ok(mut file) = std::fs::File::open(f) else {
                return false;
            };
            let len = file.metadata().map_or(0, |m| m.len());
            if len < r.local_len
                || (r.local_len > 0
                    && crate::sync::log::fingerprint(&mut file, r.local_len).ok()
                        != Some(r.local_fp))
            {
                return false;
            }
        } else if let Some(r) = index.files.get(&k) {
            let Some(want) = &r.local_hash else {
                continue;
            };
            let Ok(data) = std::fs::read(f) else {
                return false;
            };
            if &crate::sync::files::sha256_hex(&data) != want {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pending(home: &Home, boot: &str, at: i64, sessions: &[&str]) {
        std::fs::create_dir_all(home.state_dir()).unwrap();
        let p = Pending {
            boot: boot.to_string(),
            at,
            sessions: sessions.iter().map(|s| s.to_string()).collect(),
        };
        std::fs::write(path(home), serde_json::to_vec(&p).unwrap()).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_same_boot_keeps_the_record_a_minute_then_flushes_and_drops_it() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path().join("tool"));
        let claude = t.path().join("claude");
        std::fs::create_dir_all(claude.join("projects")).unwrap();
        assert!(begin(&home, &["s1".to_string()], 1000).unwrap());
        assert!(begin(&home, &["s2".to_string()], 1010).unwrap());
        assert_eq!(
            load(&home).unwrap().sessions,
            ["s1", "s2"],
            "records add up"
        );
        let mut index = Index::default();
        assert_eq!(
            settle(&home, &claude, &mut index, 1030).unwrap(),
            Settled::default()
        );
        assert!(path(&home).exists(), "too soon: kept");
        settle(&home, &claude, &mut index, 1010 + SETTLED_SECS).unwrap();
        assert!(!path(&home).exists(), "flushed and dropped");
        assert_eq!(load(&home), None);
    }

    #[test]
    fn after_another_boot_a_session_without_records_is_moved_aside_whole() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path().join("tool"));
        let claude = t.path().join("claude");
        let dir = claude.join("projects/-w");
        std::fs::create_dir_all(dir.join("s1/subagents")).unwrap();
        std::fs::write(dir.join("s1.jsonl"), b"{\"a\":1}\n{\"b").unwrap();
        std::fs::write(dir.join("s1/subagents/agent-x.jsonl"), b"{}\n").unwrap();
        std::fs::write(dir.join("s2.jsonl"), b"{}\n").unwrap();
        write_pending(&home, "a boot that is over", 5, &["s1", "gone"]);
        let mut index = Index {
            pulled: Some(Default::default()),
            ..Index::default()
        };
        let s = settle(&home, &claude, &mut index, 100).unwrap();
        assert_eq!(s.recovered, ["s1"]);
        let to = s.to.unwrap();
        assert_eq!(
            std::fs::read(to.join("projects/-w/s1.jsonl")).unwrap(),
            b"{\"a\":1}\n{\"b"
        );
        assert!(to.join("projects/-w/s1/subagents/agent-x.jsonl").is_file());
        assert!(!dir.join("s1.jsonl").exists());
        assert!(
            dir.join("s2.jsonl").exists(),
            "another session is not touched"
        );
        assert_eq!(index.pulled, None, "the next pull is a full one");
        assert!(!path(&home).exists());
    }

    #[test]
    fn after_another_boot_a_session_as_recorded_or_grown_stays() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path().join("tool"));
        let claude = t.path().join("claude");
        let dir = claude.join("projects/-w");
        std::fs::create_dir_all(&dir).unwrap();
        let body = b"{\"a\":1}\n{\"b\":2}\n";
        let f = dir.join("s1.jsonl");
        std::fs::write(&f, body).unwrap();
        let fp = crate::sync::log::fingerprint(&mut std::fs::File::open(&f).unwrap(), 16).unwrap();
        let mut index = Index::default();
        index.logs.insert(
            "projects/-w/s1.jsonl".into(),
            crate::sync::state::LogRecord {
                local_len: body.len() as u64,
                local_fp: fp,
                ..Default::default()
            },
        );
        // Claude Code appended a line since.
        std::fs::write(&f, [&body[..], b"{\"c\":3}\n"].concat()).unwrap();
        write_pending(&home, "a boot that is over", 5, &["s1"]);
        let s = settle(&home, &claude, &mut index, 100).unwrap();
        assert_eq!(s, Settled::default());
        assert!(f.exists());
        // The same record, the file now torn: moved aside.
        std::fs::write(&f, &body[..10]).unwrap();
        write_pending(&home, "a boot that is over", 5, &["s1"]);
        let s = settle(&home, &claude, &mut index, 100).unwrap();
        assert_eq!(s.recovered, ["s1"]);
        assert!(!f.exists() && index.logs.is_empty());
    }

    #[test]
    fn keys_of_a_session() {
        assert!(key_of_session("projects/-home-a/abc.jsonl", "abc"));
        assert!(key_of_session(
            "projects/-home-a/abc/subagents/x.jsonl",
            "abc"
        ));
        assert!(!key_of_session("projects/-home-a/abcd.jsonl", "abc"));
        assert!(!key_of_session("projects/-home-a/memory/abc.jsonl", "abc"));
        assert!(!key_of_session("history.jsonl", "abc"));
    }
}
