//! A transcript as the tree Claude Code sees: lines linked by `uuid`/`parentUuid`, and the one
//! branch the client shows.
//!
//! The client (2.1.197, its transcript loader) reads the file in order and keeps:
//! * every message line (`user`, `assistant`, `attachment`, `system` with a `uuid`) by uuid;
//!   `progress` lines are not messages: a message whose parent is a progress line hangs from
//!   that line's own parent;
//! * `O`, the last non-sidechain message in file order;
//! * `L`, the `leafUuid` of the last `last-prompt` line (a compact boundary clears it), and
//!   whether that line was `explicit` and nothing followed it.
//!
//! It shows the branch ending at `L` — unless the last message `O` descends from `L`, then at
//! `O` — walking up to the nearest `user`/`assistant` message. Other branches stay in the file,
//! invisible. [`Tree::client_leaf`] is that rule; [`Tree::leaves`] lists every branch end, and
//! [`Tree::abandoned`] tells the branches the user left on purpose (a rewind writes an explicit
//! `last-prompt` naming the message it went back to).
//!
//! Only the few top-level fields needed are kept per line (never a line's content), so a tree
//! costs about a hundred bytes a message.

use std::collections::{HashMap, HashSet};

use super::jsonscan::{TopScanner, Want};

static WANTS: &[Want] = &[
    Want {
        key: "type",
        cap: 64,
    },
    Want {
        key: "uuid",
        cap: 200,
    },
    Want {
        key: "parentUuid",
        cap: 200,
    },
    Want {
        key: "isSidechain",
        cap: 8,
    },
    Want {
        key: "timestamp",
        cap: 64,
    },
    Want {
        key: "leafUuid",
        cap: 200,
    },
    Want {
        key: "explicit",
        cap: 8,
    },
    Want {
        key: "subtype",
        cap: 64,
    },
    Want {
        key: "lastPrompt",
        cap: 4096,
    },
    Want {
        key: "logicalParentUuid",
        cap: 200,
    },
];

/// What a message line is, for the leaf rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `user` or `assistant`: a turn a person reads.
    Turn,
    /// `attachment` or `system`.
    Other,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub uuid: String,
    pub parent: Option<String>,
    pub kind: Kind,
    pub sidechain: bool,
    /// Milliseconds since the epoch (`i64::MIN` when unknown).
    pub ts: i64,
}

/// The fields of one line that the tree needs.
#[derive(Debug, Default, Clone)]
pub struct LineFacts {
    pub kind: Option<String>,
    pub uuid: Option<String>,
    pub parent: Option<String>,
    pub sidechain: bool,
    pub ts: Option<String>,
    pub leaf: Option<String>,
    /// `leafUuid` was JSON `null`.
    pub leaf_null: bool,
    pub explicit: bool,
    pub subtype: Option<String>,
    pub last_prompt: Option<String>,
    /// A compact boundary's link to the conversation it summarises.
    pub logical_parent: Option<String>,
}

impl LineFacts {
    /// Read the facts of one line (without its newline). Huge lines are skimmed, never held.
    pub fn of(line: &[u8]) -> LineFacts {
        let mut s = LineFacts::scanner();
        s.feed(line);
        LineFacts::from_scanner(&s)
    }

    /// A scanner to feed a line too large to hold, piece by piece (then [`LineFacts::from_scanner`]).
    pub fn scanner() -> TopScanner {
        TopScanner::new(WANTS)
    }

    pub fn from_scanner(s: &TopScanner) -> LineFacts {
        let raw_is = |k: &str, v: &[u8]| s.get(k).is_some_and(|c| c.raw == v);
        LineFacts {
            kind: s.get_str("type"),
            uuid: s.get_str("uuid").filter(|u| !u.is_empty()),
            parent: s.get_str("parentUuid").filter(|u| !u.is_empty()),
            sidechain: raw_is("isSidechain", b"true"),
            ts: s.get_str("timestamp"),
            leaf: s.get_str("leafUuid").filter(|u| !u.is_empty()),
            leaf_null: raw_is("leafUuid", b"null"),
            explicit: raw_is("explicit", b"true"),
            subtype: s.get_str("subtype"),
            last_prompt: s.get_str("lastPrompt"),
            logical_parent: s.get_str("logicalParentUuid").filter(|u| !u.is_empty()),
        }
    }
}

/// A transcript's message tree and the client's reading state at its end.
#[derive(Debug, Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
    by_uuid: HashMap<String, usize>,
    /// Progress line uuid → the message it stands for (its nearest non-progress ancestor).
    progress: HashMap<String, Option<String>>,
    /// Last non-sidechain message in file order.
    last: Option<String>,
    /// `leafUuid` of the last `last-prompt` line.
    leaf: Option<String>,
    /// That line was explicit and no message followed it.
    explicit_last: bool,
    /// An explicit `last-prompt` with a null leaf ended the file: the client shows nothing.
    cleared: bool,
    /// Every message an explicit `last-prompt` named (rewind anchors).
    explicit_anchors: HashSet<String>,
    /// `(leafUuid, lastPrompt)` of every `last-prompt` line, in file order. The client names
    /// the turn's trailing line (often a `system` line after the answer), not the turn itself.
    prompts: Vec<(String, String)>,
}

fn parse_ms(ts: Option<&str>) -> i64 {
    ts.and_then(crate::claude::transcript::parse_timestamp)
        .map_or(i64::MIN, |t| t.timestamp_millis())
}

impl Tree {
    /// Build the tree from lines in file order.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Tree {
        let mut t = Tree::default();
        for l in lines {
            t.add(&LineFacts::of(l));
        }
        t
    }

    /// Take one more line, in file order.
    pub fn add(&mut self, f: &LineFacts) {
        let Some(kind) = f.kind.as_deref() else {
            return;
        };
        match kind {
            "progress" => {
                if let Some(u) = &f.uuid {
                    let target = match &f.parent {
                        Some(p) => match self.progress.get(p) {
                            Some(t) => t.clone(),
                            None => Some(p.clone()),
                        },
                        None => None,
                    };
                    self.progress.insert(u.clone(), target);
                }
            }
            "user" | "assistant" | "attachment" | "system" => {
                let Some(u) = &f.uuid else { return };
                // A compact boundary starts a new chain; for branches it continues the old one.
                let parent = f.parent.as_ref().or(f.logical_parent.as_ref());
                let parent = match parent {
                    Some(p) => match self.progress.get(p) {
                        Some(t) => t.clone(),
                        None => Some(p.clone()),
                    },
                    None => None,
                };
                let node = Node {
                    uuid: u.clone(),
                    parent,
                    kind: if kind == "user" || kind == "assistant" {
                        Kind::Turn
                    } else {
                        Kind::Other
                    },
                    sidechain: f.sidechain,
                    ts: parse_ms(f.ts.as_deref()),
                };
                match self.by_uuid.get(u) {
                    Some(&i) => self.nodes[i] = node,
                    None => {
                        self.by_uuid.insert(u.clone(), self.nodes.len());
                        self.nodes.push(node);
                    }
                }
                if !f.sidechain {
                    self.last = Some(u.clone());
                    self.explicit_last = false;
                    self.cleared = false;
                }
                if kind == "system" && f.subtype.as_deref() == Some("compact_boundary") {
                    self.leaf = None;
                    self.explicit_last = false;
                }
            }
            "last-prompt" => {
                if let Some(leaf) = &f.leaf {
                    self.explicit_last =
                        f.explicit || (self.explicit_last && self.leaf.as_ref() == Some(leaf));
                    self.leaf = Some(leaf.clone());
                    self.cleared = false;
                    if f.explicit {
                        self.explicit_anchors.insert(leaf.clone());
                    }
                    if let Some(p) = &f.last_prompt {
                        self.prompts.push((leaf.clone(), p.clone()));
                    }
                } else if f.leaf_null && f.explicit {
                    self.cleared = true;
                    self.leaf = None;
                    self.explicit_last = false;
                }
            }
            _ => {}
        }
    }

    pub fn get(&self, uuid: &str) -> Option<&Node> {
        self.by_uuid.get(uuid).map(|&i| &self.nodes[i])
    }

    pub fn contains(&self, uuid: &str) -> bool {
        self.by_uuid.contains_key(uuid)
    }

    /// The uuids from `uuid` up to the root (cycles cut).
    pub fn ancestry(&self, uuid: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut cur = self.get(uuid);
        while let Some(n) = cur {
            if !seen.insert(n.uuid.as_str()) {
                break;
            }
            out.push(n.uuid.clone());
            cur = n.parent.as_deref().and_then(|p| self.get(p));
        }
        out
    }

    /// The nearest `user`/`assistant` message at or above `uuid`.
    fn turn_at_or_above(&self, uuid: &str) -> Option<String> {
        self.ancestry(uuid)
            .into_iter()
            .find(|u| self.get(u).is_some_and(|n| n.kind == Kind::Turn))
    }

    /// Whether `anc` is `uuid` or one of its ancestors.
    pub fn is_ancestor(&self, anc: &str, uuid: &str) -> bool {
        self.ancestry(uuid).iter().any(|u| u == anc)
    }

    /// The leaf of the branch Claude Code shows for this file (`None`: it shows nothing).
    pub fn client_leaf(&self) -> Option<String> {
        if self.cleared {
            return None;
        }
        let mut ne = self.leaf.clone().filter(|l| self.contains(l));
        if let (Some(n), false, Some(o)) = (&ne, self.explicit_last, &self.last)
            && o != n
            && self.contains(o)
            && self.is_ancestor(n, o)
        {
            ne = Some(o.clone());
        }
        let ne = ne.or_else(|| self.last.clone())?;
        if let Some(t) = self.turn_at_or_above(&ne) {
            return Some(t);
        }
        // The client then looks at every branch end and picks the one of `L`, else of `O`.
        let leaves = self.leaves();
        if leaves.len() == 1 {
            return leaves.into_iter().next();
        }
        let pick = self
            .leaf
            .clone()
            .filter(|l| leaves.contains(l))
            .or_else(|| self.last.clone())?;
        self.turn_at_or_above(&pick)
    }

    /// Every branch end: the `user`/`assistant` messages (not sidechain) with no
    /// `user`/`assistant` message below them.
    pub fn leaves(&self) -> Vec<String> {
        let mut parents: HashSet<&str> = HashSet::new();
        let mut turn_parents: HashSet<&str> = HashSet::new();
        for n in &self.nodes {
            if let Some(p) = n.parent.as_deref() {
                parents.insert(p);
                if n.kind == Kind::Turn {
                    turn_parents.insert(p);
                }
            }
        }
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for n in &self.nodes {
            if parents.contains(n.uuid.as_str()) {
                continue;
            }
            if let Some(t) = self.turn_at_or_above(&n.uuid)
                && !turn_parents.contains(t.as_str())
                && self.get(&t).is_some_and(|x| !x.sidechain)
                && seen.insert(t.clone())
            {
                out.push(t);
            }
        }
        out
    }

    /// Whether the branch ending at `leaf` was left on purpose: a rewind (an explicit
    /// `last-prompt`) went back to one of its ancestors and a newer branch grew from there.
    pub fn abandoned(&self, leaf: &str) -> bool {
        let path = self.ancestry(leaf);
        for (i, anc) in path.iter().enumerate().skip(1) {
            if !self.explicit_anchors.contains(anc) {
                continue;
            }
            let child = &path[i - 1];
            let child_ts = self.get(child).map_or(i64::MIN, |n| n.ts);
            let newer_sibling = self.nodes.iter().any(|n| {
                n.parent.as_deref() == Some(anc.as_str()) && n.uuid != *child && n.ts > child_ts
            });
            if newer_sibling {
                return true;
            }
        }
        false
    }

    /// The newest of these leaves (by timestamp, then uuid): the same answer on every machine.
    pub fn newest<'a>(&self, leaves: &'a [String]) -> Option<&'a String> {
        leaves
            .iter()
            .max_by_key(|l| (self.get(l).map_or(i64::MIN, |n| n.ts), l.as_str()))
    }

    /// The first message of the branch of `leaf` that is not on `main`'s branch; `None` when the
    /// two share no message (separate trees are not branches of one conversation).
    pub fn branch_root(&self, leaf: &str, main: &str) -> Option<String> {
        let on_main: HashSet<String> = self.ancestry(main).into_iter().collect();
        let path = self.ancestry(leaf);
        let mut root = None;
        for u in path {
            if on_main.contains(&u) {
                return root;
            }
            root = Some(u);
        }
        None
    }

    /// The `lastPrompt` text last recorded for the branch ending at turn `leaf`, if any.
    pub fn prompt_of(&self, leaf: &str) -> Option<&str> {
        self.prompts
            .iter()
            .rev()
            .find(|(l, _)| l == leaf || self.turn_at_or_above(l).as_deref() == Some(leaf))
            .map(|(_, p)| p.as_str())
    }

    /// The messages of the branch ending at turn `leaf`: its ancestry, and the lines hanging
    /// below the turn that are not turns themselves (the `system` line closing an answer).
    pub fn branch(&self, leaf: &str) -> HashSet<String> {
        let mut out: HashSet<String> = self.ancestry(leaf).into_iter().collect();
        for n in &self.nodes {
            if n.kind == Kind::Other && self.turn_at_or_above(&n.uuid).as_deref() == Some(leaf) {
                out.insert(n.uuid.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: &str, uuid: &str, parent: Option<&str>, ts_min: u32) -> String {
        let p = parent.map_or("null".to_string(), |p| format!("\"{p}\""));
        format!(
            r#"{{"type":"{kind}","uuid":"{uuid}","parentUuid":{p},"isSidechain":false,"timestamp":"2026-11-01T10:{ts_min:02}:00.000Z","message":{{"content":"x"}}}}"#
        )
    }
    fn lp(leaf: &str, explicit: bool) -> String {
        if explicit {
            format!(
                r#"{{"type":"last-prompt","lastPrompt":"p","leafUuid":"{leaf}","explicit":true,"sessionId":"s"}}"#
            )
        } else {
            format!(
                r#"{{"type":"last-prompt","lastPrompt":"p {leaf}","leafUuid":"{leaf}","sessionId":"s"}}"#
            )
        }
    }
    fn tree(lines: &[String]) -> Tree {
        Tree::from_lines(lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn linear_transcript_shows_its_last_turn() {
        let t = tree(&[
            msg("user", "u1", None, 1),
            msg("assistant", "a1", Some("u1"), 2),
            msg("user", "u2", Some("a1"), 3),
            msg("assistant", "a2", Some("u2"), 4),
            lp("a2", false),
        ]);
        assert_eq!(t.client_leaf().as_deref(), Some("a2"));
        assert_eq!(t.leaves(), ["a2"]);
        assert_eq!(t.prompt_of("a2"), Some("p a2"));
    }

    #[test]
    fn two_branches_the_last_prompt_line_decides() {
        // The union of two machines' continuations: the client shows the branch named by the
        // last `last-prompt` line in file order, whichever was written where.
        let common = [
            msg("user", "u1", None, 1),
            msg("assistant", "a1", Some("u1"), 2),
        ];
        let a = [
            msg("user", "ua", Some("a1"), 3),
            msg("assistant", "aa", Some("ua"), 4),
            lp("aa", false),
        ];
        let b = [
            msg("user", "ub", Some("a1"), 5),
            msg("assistant", "ab", Some("ub"), 6),
            lp("ab", false),
        ];
        let ab: Vec<String> = common.iter().chain(&a).chain(&b).cloned().collect();
        let ba: Vec<String> = common.iter().chain(&b).chain(&a).cloned().collect();
        assert_eq!(tree(&ab).client_leaf().as_deref(), Some("ab"));
        assert_eq!(tree(&ba).client_leaf().as_deref(), Some("aa"));
        let t = tree(&ab);
        let mut leaves = t.leaves();
        leaves.sort();
        assert_eq!(leaves, ["aa", "ab"]);
        assert_eq!(t.newest(&leaves).map(String::as_str), Some("ab"));
        assert_eq!(t.branch_root("aa", "ab").as_deref(), Some("ua"));
        assert!(!t.abandoned("aa") && !t.abandoned("ab"));
    }

    #[test]
    fn the_prompt_and_branch_of_a_turn_include_its_trailing_system_line() {
        let t = tree(&[
            msg("user", "u1", None, 1),
            msg("assistant", "a1", Some("u1"), 2),
            msg("system", "s1", Some("a1"), 3),
            lp("s1", false),
        ]);
        assert_eq!(t.leaves(), ["a1"]);
        assert_eq!(t.prompt_of("a1"), Some("p s1"));
        let b = t.branch("a1");
        assert!(b.contains("s1") && b.contains("u1") && b.len() == 3);
    }

    #[test]
    fn last_message_below_the_named_leaf_wins() {
        let t = tree(&[
            msg("user", "u1", None, 1),
            msg("assistant", "a1", Some("u1"), 2),
            lp("a1", false),
            msg("user", "u2", Some("a1"), 3),
            msg("assistant", "a2", Some("u2"), 4),
        ]);
        assert_eq!(t.client_leaf().as_deref(), Some("a2"));
    }

    #[test]
    fn progress_lines_are_skipped_and_attachments_climb_to_a_turn() {
        let t = tree(&[
            msg("user", "u1", None, 1),
            msg("assistant", "a1", Some("u1"), 2),
            r#"{"type":"progress","uuid":"p1","parentUuid":"a1"}"#.to_string(),
            msg("user", "u2", Some("p1"), 3),
            msg("attachment", "t1", Some("u2"), 4),
        ]);
        assert_eq!(t.get("u2").unwrap().parent.as_deref(), Some("a1"));
        assert_eq!(t.client_leaf().as_deref(), Some("u2"));
        assert_eq!(t.leaves(), ["u2"]);
    }

    #[test]
    fn without_last_prompt_the_last_message_in_file_order_is_shown() {
        let t = tree(&[
            msg("user", "u1", None, 1),
            msg("assistant", "x", Some("u1"), 9),
            msg("assistant", "y", Some("u1"), 2),
        ]);
        assert_eq!(t.client_leaf().as_deref(), Some("y"));
    }

    #[test]
    fn a_rewind_abandons_the_older_branch_only() {
        let t = tree(&[
            msg("user", "u1", None, 1),
            msg("assistant", "a1", Some("u1"), 2),
            msg("user", "old", Some("a1"), 3),
            msg("assistant", "oldr", Some("old"), 4),
            lp("a1", true),
            msg("user", "new", Some("a1"), 5),
            msg("assistant", "newr", Some("new"), 6),
        ]);
        assert_eq!(t.client_leaf().as_deref(), Some("newr"));
        assert!(t.abandoned("oldr"));
        assert!(!t.abandoned("newr"));
    }

    #[test]
    fn explicit_null_leaf_shows_nothing_and_odd_lines_are_ignored() {
        let t = tree(&[
            msg("user", "u1", None, 1),
            r#"{"type":"last-prompt","leafUuid":null,"explicit":true}"#.to_string(),
            "not json".to_string(),
            r#"{"type":"user"}"#.to_string(),
        ]);
        assert_eq!(t.client_leaf(), None);
        assert!(tree(&[]).client_leaf().is_none());
    }

    #[test]
    fn a_compaction_continues_the_conversation_and_separate_trees_are_not_branches() {
        let t = tree(&[
            msg("user", "u1", None, 1),
            msg("assistant", "a1", Some("u1"), 2),
            r#"{"type":"system","subtype":"compact_boundary","uuid":"cb","parentUuid":null,"logicalParentUuid":"a1","timestamp":"2026-11-01T10:03:00.000Z"}"#.to_string(),
            msg("user", "u2", Some("cb"), 4),
            msg("assistant", "a2", Some("u2"), 5),
            msg("user", "lone", None, 6),
        ]);
        let mut leaves = t.leaves();
        leaves.sort();
        assert_eq!(leaves, ["a2", "lone"], "the summarised part is no branch");
        assert_eq!(t.branch_root("lone", "a2"), None);
        assert_eq!(t.branch_root("a2", "lone"), None);
    }

    #[test]
    fn parent_cycles_do_not_hang() {
        let t = tree(&[
            msg("user", "u1", Some("a1"), 1),
            msg("assistant", "a1", Some("u1"), 2),
        ]);
        assert_eq!(t.ancestry("a1").len(), 2);
        let _ = t.client_leaf();
        let _ = t.leaves();
    }
}
