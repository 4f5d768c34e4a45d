//! No hidden turns: when a merge leaves a transcript with two branches, every turn stays
//! visible in Claude Code, the same way on every machine.
//!
//! Claude Code shows one branch of a transcript (see [`crate::claude::tree`]), chosen by the
//! order of lines in the file — and every machine's file has its own order. After a pull merged
//! lines into a transcript, [`settle`] looks at its branch ends:
//!
//! * Branches the user left on purpose (a rewind) are left alone.
//! * The **main** branch is the one whose last turn is newest (then the greatest uuid): a fact
//!   about the set of lines, so every machine picks the same one. When the client would show
//!   another, a `last-prompt` line naming the main leaf is appended — the line the client itself
//!   writes — so it shows the main branch.
//! * Every other branch is **surfaced as its own session** in the same project folder, as
//!   `claude --fork-session` would make one: the lines from the root to that branch's end with
//!   `sessionId` set to the new id, a `custom-title` naming the branch, and a `last-prompt`
//!   naming its end. Its id is derived from the session and the branch's first turn, so every
//!   machine makes the same file, and the ordinary sync carries it; a fork that exists already is
//!   only completed (union by uuid), never duplicated.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

use super::lines::Replay;
use super::log::{self, for_each_line};
use crate::claude::tree::{LineFacts, Tree};
use crate::os::IoAt;

/// Transcripts larger than this are not analysed (their tree would not fit the memory budget).
pub const MAX_ANALYSED: u64 = 512 << 20;

/// What settling a transcript did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Settled {
    /// A `last-prompt` line was appended so the client shows the main branch.
    pub pinned: bool,
    /// Sessions written (or completed) for branches the client would hide.
    pub forks: Vec<String>,
}

/// The id of the session that surfaces the branch of `sid` starting at message `root`.
pub fn fork_id(sid: &str, root: &str) -> String {
    let d = Sha256::digest(format!("ccsync-branch\0{sid}\0{root}").as_bytes());
    let h: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    // Shaped like a version-4 UUID so Claude Code's picker, which lists UUID-named files,
    // shows it.
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn read_tree(path: &Path) -> Result<Tree> {
    let mut tree = Tree::default();
    super::lines::for_each_line_facts(path, |f| tree.add(f))?;
    Ok(tree)
}

/// Make every branch of the transcript at `path` (session `sid`) visible, as described in the
/// module documentation. `title` names the session in fork titles. The caller makes sure no
/// Claude Code process has the file open.
pub fn settle(path: &Path, sid: &str, title: Option<&str>) -> Result<Settled> {
    let mut out = Settled::default();
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > MAX_ANALYSED {
        tracing::info!(
            "{} is too large to look for hidden branches",
            path.display()
        );
        return Ok(out);
    }
    let tree = read_tree(path)?;
    let leaves: Vec<String> = tree
        .leaves()
        .into_iter()
        .filter(|l| !tree.abandoned(l))
        .collect();
    if leaves.len() < 2 {
        return Ok(out);
    }
    let Some(main) = tree.newest(&leaves).cloned() else {
        return Ok(out);
    };
    if tree.client_leaf().as_deref() != Some(main.as_str()) {
        super::append_lines(path, &[pin_line(sid, &main, tree.prompt_of(&main))])?;
        out.pinned = true;
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    for leaf in leaves.iter().filter(|l| **l != main) {
        let Some(root) = tree.branch_root(leaf, &main) else {
            continue;
        };
        let id = fork_id(sid, &root);
        let when = tree
            .get(leaf)
            .and_then(|n| chrono::DateTime::from_timestamp_millis(n.ts))
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        let base = tree
            .prompt_of(leaf)
            .or(title)
            .map(|t| crate::util::truncate(t.trim(), 60))
            .unwrap_or_else(|| format!("session {}", crate::util::short_id(sid)));
        let fork_title = format!("{base} (other branch, {when})");
        let path_ids = tree.branch(leaf);
        write_fork(
            path,
            &folder.join(format!("{id}.jsonl")),
            sid,
            &id,
            &path_ids,
            &[
                custom_title_line(&id, &fork_title),
                pin_line(&id, leaf, tree.prompt_of(leaf)),
            ],
            tree.get(leaf).map(|n| n.ts / 1000).filter(|t| *t > 0),
        )?;
        out.forks.push(id);
    }
    Ok(out)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A `last-prompt` line as the client writes it, naming `leaf`.
fn pin_line(sid: &str, leaf: &str, prompt: Option<&str>) -> Vec<u8> {
    let prompt = prompt
        .map(|p| format!("\"lastPrompt\":{},", json_str(p)))
        .unwrap_or_default();
    format!(
        "{{\"type\":\"last-prompt\",{prompt}\"leafUuid\":{},\"sessionId\":{}}}\n",
        json_str(leaf),
        json_str(sid)
    )
    .into_bytes()
}

pub(crate) fn custom_title_line(sid: &str, title: &str) -> Vec<u8> {
    format!(
        "{{\"type\":\"custom-title\",\"customTitle\":{},\"sessionId\":{}}}\n",
        json_str(title),
        json_str(sid)
    )
    .into_bytes()
}

/// `"sessionId":"<from>"` → `"sessionId":"<to>"` in one line, bytes otherwise untouched.
pub(crate) fn with_session_id(line: &[u8], from: &str, to: &str) -> Vec<u8> {
    let pat = format!("\"sessionId\":{}", json_str(from));
    let rep = format!("\"sessionId\":{}", json_str(to));
    let mut out = Vec::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = memchr::memmem::find(rest, pat.as_bytes()) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(rep.as_bytes());
        rest = &rest[i + pat.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Write (or complete) the fork session `fork` of `sid` at `target`: the lines of `source`
/// on the branch (`path_ids`), and `extra` lines at the end.
fn write_fork(
    source: &Path,
    target: &PathBuf,
    sid: &str,
    fork: &str,
    path_ids: &HashSet<String>,
    extra: &[Vec<u8>],
    mtime: Option<i64>,
) -> Result<()> {
    // What the fork already holds (by identity), so that it is only ever completed.
    let mut have = log::IdentBag::default();
    let existing = match File::open(target) {
        Ok(f) => {
            for_each_line(BufReader::new(f), |l| {
                have.add(log::identity(l));
                Ok(())
            })
            .with_context(|| format!("cannot read {}", target.display()))?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", target.display())),
    };
    let mut tmp = crate::os::temp_beside(target)
        .with_context(|| format!("cannot create a temporary file beside {}", target.display()))?;
    let mut added = 0usize;
    {
        let mut out = std::io::BufWriter::new(tmp.as_file_mut());
        if existing {
            let mut f =
                File::open(target).with_context(|| format!("cannot read {}", target.display()))?;
            std::io::copy(&mut f, &mut out).at("copy", target)?;
            let len = f.metadata().at("read the metadata of", target)?.len();
            if len > 0 && !super::pull::file_ends_with_newline(&mut f, len).at("read", target)? {
                out.write_all(b"\n").at("write", target)?;
            }
        }
        let src =
            File::open(source).with_context(|| format!("cannot read {}", source.display()))?;
        let mut emit = |line: Vec<u8>, out: &mut std::io::BufWriter<&mut File>| -> Result<()> {
            let mut line = line;
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            if have.take(&log::identity(&line)) {
                return Ok(());
            }
            out.write_all(&line).at("write", target)?;
            added += 1;
            Ok(())
        };
        for_each_line(BufReader::new(src), |line| {
            let f = LineFacts::of(log::strip_nl(line));
            let keep = match f.kind.as_deref() {
                Some("user" | "assistant" | "attachment" | "system") => {
                    f.uuid.as_ref().is_some_and(|u| path_ids.contains(u))
                }
                Some("file-history-snapshot") => {
                    message_id(line).is_some_and(|m| path_ids.contains(&m))
                }
                _ => false,
            };
            if keep {
                emit(with_session_id(line, sid, fork), &mut out)?;
            }
            Ok(())
        })
        .with_context(|| format!("cannot copy {} to {}", source.display(), target.display()))?;
        for l in extra {
            emit(l.clone(), &mut out)?;
        }
        out.flush().at("write", target)?;
    }
    if added == 0 {
        return Ok(());
    }
    tmp.as_file_mut().sync_data().at("write", target)?;
    crate::os::persist(tmp, target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    if let Some(t) = mtime {
        crate::os::set_mtime(target, t)
            .with_context(|| format!("cannot set the time of {}", target.display()))?;
    }
    Ok(())
}

/// Where a transcript of `len` bytes ends, as far as the next appended turn is concerned: its
/// last non-sidechain message and the progress lines after it (a new message may hang from
/// either). Reads at most the last 4 MiB; `None` when no message is found there.
pub fn tail_anchor(path: &Path, len: u64) -> Option<HashSet<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path).ok()?;
    let start = len.saturating_sub(4 << 20);
    let mut buf = vec![0u8; (len - start) as usize];
    f.seek(SeekFrom::Start(start)).ok()?;
    f.read_exact(&mut buf).ok()?;
    let mut anchors = HashSet::new();
    for line in buf.split(|b| *b == b'\n').rev() {
        if line.is_empty() {
            continue;
        }
        let facts = LineFacts::of(line);
        match facts.kind.as_deref() {
            Some("progress") => {
                if let Some(u) = facts.uuid {
                    anchors.insert(u);
                }
            }
            Some("user" | "assistant" | "attachment" | "system") if !facts.sidechain => {
                anchors.insert(facts.uuid?);
                return Some(anchors);
            }
            _ => {}
        }
    }
    None
}

/// Watches lines appended to a transcript and tells whether they continue it in a straight
/// line (the first new message hangs from its end) — then no branch can have appeared.
#[derive(Debug)]
pub struct AppendWatch {
    anchor: Option<HashSet<String>>,
    first_parent: Option<Option<String>>,
}

impl AppendWatch {
    pub fn new(path: &Path, len: u64) -> Self {
        AppendWatch {
            anchor: if len == 0 {
                Some(HashSet::new())
            } else {
                tail_anchor(path, len)
            },
            first_parent: None,
        }
    }

    /// See one appended line (stored form).
    pub fn see(&mut self, line: &[u8]) {
        if self.first_parent.is_some() {
            return;
        }
        self.see_facts(LineFacts::of(log::strip_nl(line)));
    }

    /// See one appended line too large to hold.
    pub fn see_huge(&mut self, replay: &mut Replay<'_>) -> Result<()> {
        if self.first_parent.is_some() {
            return Ok(());
        }
        let mut s = LineFacts::scanner();
        replay(&mut |piece| {
            s.feed(piece);
            Ok(())
        })?;
        self.see_facts(LineFacts::from_scanner(&s));
        Ok(())
    }

    fn see_facts(&mut self, f: LineFacts) {
        if matches!(
            f.kind.as_deref(),
            Some("user" | "assistant" | "attachment" | "system")
        ) && !f.sidechain
            && f.uuid.is_some()
        {
            self.first_parent = Some(f.parent);
        }
    }

    /// Whether the appended lines may have made a second branch.
    pub fn may_branch(&self) -> bool {
        match (&self.first_parent, &self.anchor) {
            (None, _) => false,
            (Some(None), Some(a)) => !a.is_empty(),
            (Some(Some(p)), Some(a)) => !a.contains(p),
            (Some(_), None) => true,
        }
    }
}

static MESSAGE_ID: &[crate::claude::jsonscan::Want] = &[crate::claude::jsonscan::Want {
    key: "messageId",
    cap: 200,
}];

fn message_id(line: &[u8]) -> Option<String> {
    let mut s = crate::claude::jsonscan::TopScanner::new(MESSAGE_ID);
    s.feed(log::strip_nl(line));
    s.get_str("messageId")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: &str, sid: &str, uuid: &str, parent: Option<&str>, minute: u32) -> String {
        let p = parent.map_or("null".to_string(), |p| format!("\"{p}\""));
        format!(
            "{{\"parentUuid\":{p},\"isSidechain\":false,\"sessionId\":\"{sid}\",\"type\":\"{kind}\",\"message\":{{\"content\":\"{uuid} text\"}},\"uuid\":\"{uuid}\",\"timestamp\":\"2026-11-01T10:{minute:02}:00.000Z\"}}\n"
        )
    }
    fn lp(sid: &str, leaf: &str) -> String {
        format!(
            "{{\"type\":\"last-prompt\",\"lastPrompt\":\"prompt {leaf}\",\"leafUuid\":\"{leaf}\",\"sessionId\":\"{sid}\"}}\n"
        )
    }

    /// Common start, then machine A's and machine B's continuations, in `order`.
    fn diverged(first_a: bool) -> String {
        let s = "s1";
        let common = msg("user", s, "u1", None, 1) + &msg("assistant", s, "a1", Some("u1"), 2);
        let a = msg("user", s, "ua", Some("a1"), 3)
            + &msg("assistant", s, "ra", Some("ua"), 4)
            + &lp(s, "ra");
        let b = msg("user", s, "ub", Some("a1"), 5)
            + &msg("assistant", s, "rb", Some("ub"), 6)
            + &lp(s, "rb");
        if first_a {
            common + &a + &b
        } else {
            common + &b + &a
        }
    }

    fn leaf_of(path: &Path) -> Option<String> {
        read_tree(path).unwrap().client_leaf()
    }

    #[test]
    fn both_orders_end_showing_the_same_branch_and_the_same_fork() {
        let dir = tempfile::tempdir().unwrap();
        let mut forks = Vec::new();
        for (name, first_a) in [("x", true), ("y", false)] {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            let p = d.join("s1.jsonl");
            std::fs::write(&p, diverged(first_a)).unwrap();
            let r = settle(&p, "s1", Some("Fix the parser")).unwrap();
            // B's branch is newest: the main branch everywhere.
            assert_eq!(leaf_of(&p).as_deref(), Some("rb"), "{name}");
            assert_eq!(r.pinned, !first_a, "{name}");
            assert_eq!(r.forks.len(), 1);
            let fork = d.join(format!("{}.jsonl", r.forks[0]));
            let text = std::fs::read_to_string(&fork).unwrap();
            // The fork holds A's branch from the root, under its own id, and shows it.
            for u in ["\"u1\"", "\"a1\"", "\"ua\"", "\"ra\""] {
                assert!(text.contains(u), "{u} missing from the fork");
            }
            assert!(!text.contains("\"ub\""));
            assert!(!text.contains("\"sessionId\":\"s1\""));
            assert!(text.contains("(other branch, 2026-11-01 10:04 UTC)"));
            assert_eq!(leaf_of(&fork).as_deref(), Some("ra"));
            forks.push(text);
            // Settling again changes nothing.
            let before = std::fs::read(&p).unwrap();
            let again = settle(&p, "s1", None).unwrap();
            assert!(!again.pinned);
            assert_eq!(std::fs::read(&p).unwrap(), before);
            assert_eq!(
                std::fs::read_to_string(&fork).unwrap(),
                forks[forks.len() - 1]
            );
        }
        // The fork is byte-identical whatever the order of the original.
        assert_eq!(forks[0], forks[1]);
    }

    #[test]
    fn a_single_branch_or_a_rewind_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        let s = "s";
        let text = msg("user", s, "u1", None, 1)
            + &msg("assistant", s, "a1", Some("u1"), 2)
            + &msg("user", s, "old", Some("a1"), 3)
            + &msg("assistant", s, "oldr", Some("old"), 4)
            + "{\"type\":\"last-prompt\",\"leafUuid\":\"a1\",\"explicit\":true,\"sessionId\":\"s\"}\n"
            + &msg("user", s, "new", Some("a1"), 5)
            + &msg("assistant", s, "newr", Some("new"), 6);
        std::fs::write(&p, &text).unwrap();
        assert_eq!(settle(&p, s, None).unwrap(), Settled::default());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn fork_ids_are_uuid_shaped_and_stable() {
        let id = fork_id("s1", "ua");
        assert_eq!(id, fork_id("s1", "ua"));
        assert_ne!(id, fork_id("s1", "ub"));
        assert_eq!(id.len(), 36);
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4') && parts[3].starts_with('8'));
    }

    #[test]
    fn session_id_is_replaced_only_where_it_is_the_field() {
        let l = br#"{"sessionId":"s1","x":"sessionId s1","y":{"sessionId":"s1"}}"#;
        assert_eq!(
            with_session_id(l, "s1", "f"),
            br#"{"sessionId":"f","x":"sessionId s1","y":{"sessionId":"f"}}"#
        );
    }
}
