//! Where a session belongs on this machine, and moving it there.
//!
//! A session belongs in the project folder Claude Code would use for its working directory
//! ([`crate::claude::naming`]: the realpath, the exact long-path hash, the directory of its
//! last `/cd`). Sessions that an earlier ccsync placed elsewhere, or that were moved with
//! `relocate`, are moved there, and a session found in two folders is merged into the one
//! Claude Code looks in: exactly one copy stays, and no line is lost (the copies are
//! union-merged by line identity).
//!
//! A move takes the transcript, its `<id>/` folder (subagents, tool results) and legacy
//! `agent-*.jsonl` files; the state index follows the files.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::log::{self, for_each_line};
use super::state::Index;
use crate::claude::ClaudeDir;
use crate::claude::discover::LocalSession;
use crate::os::IoAt;

/// Whether two folder names are the same folder here (Windows: case does not matter).
fn same_folder(a: &Path, b: &Path) -> bool {
    if cfg!(windows) {
        a.to_string_lossy()
            .eq_ignore_ascii_case(&b.to_string_lossy())
    } else {
        a == b
    }
}

/// Whether the session's transcript is already where it belongs.
pub fn in_place(s: &LocalSession, target: &Path) -> bool {
    same_folder(&s.transcript, target)
}

/// The key of a local path in the state index.
fn key_of(claude: &ClaudeDir, p: &Path) -> String {
    let rel = p.strip_prefix(&claude.root).unwrap_or(p);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Move session `s` so that its transcript is `target` (`<folder>/<id>.jsonl`). When `target`
/// exists already (a second copy), both are merged into it. The caller makes sure no Claude
/// Code process has the session open.
pub fn move_session(
    claude: &ClaudeDir,
    s: &LocalSession,
    target: &Path,
    index: &mut Index,
) -> Result<()> {
    if in_place(s, target) {
        return Ok(());
    }
    let folder = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).at("create the folder", folder)?;
    let mut moves: Vec<(PathBuf, PathBuf)> = vec![(s.transcript.clone(), target.to_path_buf())];
    let src_dir = s.transcript.parent().map(|p| p.join(&s.id));
    for a in &s.attachments {
        if let Some(d) = &src_dir
            && let Ok(rel) = a.path.strip_prefix(d)
        {
            moves.push((a.path.clone(), folder.join(&s.id).join(rel)));
        }
    }
    for a in &s.legacy_agents {
        moves.push((a.path.clone(), folder.join(&a.rel)));
    }
    for (from, to) in &moves {
        // A record describes the file it was made for: it follows a plain move, and is
        // dropped when two copies were merged (the next sync compares again).
        let merged = to.exists();
        move_file(from, to)?;
        let (fk, tk) = (key_of(claude, from), key_of(claude, to));
        if let Some(r) = index.logs.remove(&fk)
            && !merged
        {
            index.logs.insert(tk.clone(), r);
        }
        if let Some(r) = index.files.remove(&fk)
            && !merged
        {
            index.files.insert(tk, r);
        }
    }
    if let Some(d) = src_dir {
        remove_empty_dirs(&d);
    }
    if let Some(r) = index.sessions.get_mut(&s.id) {
        r.local = key_of(claude, target);
    }
    Ok(())
}

/// Move one file; when the target exists, merge: logs by line identity (union), other files
/// kept both ways (the moved one beside the target when they differ).
fn move_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).at("create the folder", dir)?;
    }
    if !to.exists() {
        return std::fs::rename(from, to)
            .with_context(|| format!("cannot move {} to {}", from.display(), to.display()));
    }
    let is_log = to.extension().is_some_and(|e| e == "jsonl");
    if is_log {
        union_into(from, to)?;
    } else if std::fs::read(from).ok() != std::fs::read(to).ok() {
        let mut other = to.as_os_str().to_owned();
        other.push(".other-copy");
        let other = PathBuf::from(other);
        if !other.exists() {
            return std::fs::rename(from, &other)
                .with_context(|| format!("cannot move {} to {}", from.display(), other.display()));
        }
        union_into(from, &other)?;
    }
    std::fs::remove_file(from).with_context(|| format!("cannot remove {}", from.display()))
}

/// Append to `to` the lines of `from` it lacks (by line identity), atomically.
pub fn union_into(from: &Path, to: &Path) -> Result<()> {
    let mut have = log::IdentBag::default();
    let f = File::open(to).with_context(|| format!("cannot read {}", to.display()))?;
    for_each_line(BufReader::new(f), |l| {
        have.add(log::identity(l));
        Ok(())
    })
    .with_context(|| format!("cannot read {}", to.display()))?;
    let mut missing: Vec<Vec<u8>> = Vec::new();
    let src = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    for_each_line(BufReader::new(src), |l| {
        if !have.take(&log::identity(l)) {
            missing.push(l.to_vec());
        }
        Ok(())
    })
    .with_context(|| format!("cannot read {}", from.display()))?;
    if missing.is_empty() {
        return Ok(());
    }
    super::append_lines(to, &missing)
}

/// Remove `dir` and the empty folders below it, if they are empty.
fn remove_empty_dirs(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claude::discover::discover;

    fn put(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn a_session_moves_whole_and_two_copies_become_one() {
        let dir = tempfile::tempdir().unwrap();
        let claude = ClaudeDir::new(dir.path());
        let wrong = dir.path().join("projects/-wrong");
        let right = dir.path().join("projects/-right");
        put(
            &wrong.join("s1.jsonl"),
            "{\"uuid\":\"a\"}\n{\"uuid\":\"b\"}\n",
        );
        put(
            &wrong.join("s1/subagents/agent-x.jsonl"),
            "{\"uuid\":\"x\"}\n",
        );
        put(&wrong.join("s1/tool-results/t.txt"), "out");
        put(
            &right.join("s1.jsonl"),
            "{\"uuid\":\"a\"}\n{\"uuid\":\"c\"}",
        );
        put(&right.join("s1/tool-results/t.txt"), "other out");
        let d = discover(&claude).unwrap();
        let s = d
            .sessions
            .iter()
            .find(|s| s.project_folder == "-wrong")
            .unwrap();
        let mut index = Index::default();
        index.logs.insert(
            "projects/-wrong/s1/subagents/agent-x.jsonl".into(),
            Default::default(),
        );
        move_session(&claude, s, &right.join("s1.jsonl"), &mut index).unwrap();
        assert_eq!(
            std::fs::read_to_string(right.join("s1.jsonl")).unwrap(),
            "{\"uuid\":\"a\"}\n{\"uuid\":\"c\"}\n{\"uuid\":\"b\"}\n"
        );
        assert!(right.join("s1/subagents/agent-x.jsonl").exists());
        assert_eq!(
            std::fs::read_to_string(right.join("s1/tool-results/t.txt")).unwrap(),
            "other out"
        );
        assert_eq!(
            std::fs::read_to_string(right.join("s1/tool-results/t.txt.other-copy")).unwrap(),
            "out"
        );
        assert!(!wrong.join("s1.jsonl").exists() && !wrong.join("s1").exists());
        assert!(
            index
                .logs
                .contains_key("projects/-right/s1/subagents/agent-x.jsonl")
        );
        let d = discover(&claude).unwrap();
        assert_eq!(d.sessions.iter().filter(|s| s.id == "s1").count(), 1);
    }
}
