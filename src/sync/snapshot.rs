//! One commit of the sync repository, read as sessions, projects, global files and history,
//! from a single `ls-tree`. Entries a hostile repository could use to escape (symbolic links,
//! submodules, odd names, `..`) are refused here, with a reason, and never reach the disk.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;

use super::log::{Seg, StoredLog};
use crate::store::format::{FORGOTTEN_FILE, GLOBAL_DIR, HISTORY_DIR, PROJECTS_DIR, check_rel_path};
use crate::store::layout::{
    FILE_HISTORY_DIR, LEGACY_DIR, META_FILE, PROJECT_FILE, TRANSCRIPT_LOG, parse_segment_name,
    valid_session_id,
};
use crate::store::{Oid, Store};

/// A stored plain file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub path: String,
    pub oid: Oid,
    pub size: u64,
}

/// A session in the repository.
#[derive(Debug, Clone, Default)]
pub struct RepoSession {
    pub id: String,
    pub slug: String,
    /// `projects/<slug>/sessions/<id>`.
    pub dir: String,
    pub meta: Option<StoredFile>,
    /// Logs by name relative to the session folder: `transcript`, `files/<rel>.jsonl`,
    /// `legacy/<name>.jsonl`.
    pub logs: BTreeMap<String, StoredLog>,
    /// Plain files by path relative to the session folder (`files/<rel>`).
    pub files: BTreeMap<String, StoredFile>,
}

impl RepoSession {
    pub fn transcript(&self) -> Option<&StoredLog> {
        self.logs.get(TRANSCRIPT_LOG)
    }
}

/// A project folder in the repository.
#[derive(Debug, Clone, Default)]
pub struct RepoProject {
    pub slug: String,
    pub record: Option<StoredFile>,
    /// Memory files by path relative to `memory/`.
    pub memory: BTreeMap<String, StoredFile>,
}

/// `forgotten.json`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Forgotten {
    /// Session id → when and by which machine.
    #[serde(default)]
    pub sessions: BTreeMap<String, serde_json::Value>,
}

/// The repository at one commit.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub head: Option<Oid>,
    pub sessions: HashMap<String, RepoSession>,
    pub projects: BTreeMap<String, RepoProject>,
    /// `global/…` files by path relative to `global/`.
    pub global: BTreeMap<String, StoredFile>,
    pub history: StoredLog,
    /// `forgotten.json`: sessions deleted from the archive on purpose (never pushed again).
    pub forgotten: Option<StoredFile>,
    /// Entries not used, with the reason.
    pub refused: Vec<(String, String)>,
}

impl Snapshot {
    /// The ids of sessions deleted from the archive on purpose.
    pub fn forgotten_ids(&self, store: &Store) -> Result<std::collections::BTreeSet<String>> {
        let Some(f) = &self.forgotten else {
            return Ok(Default::default());
        };
        let b = store.reader()?.read(&f.oid)?;
        let v: Forgotten = serde_json::from_slice(&b).unwrap_or_default();
        Ok(v.sessions.into_keys().collect())
    }

    /// Read the tree of `head` (an empty snapshot without one).
    pub fn load(store: &Store, head: Option<&Oid>) -> Result<Snapshot> {
        Self::load_under(store, head, None)
    }

    /// Read the part of the tree of `head` under the folder `prefix` (all of it with `None`),
    /// with the same checks as [`Snapshot::load`]: one session folder of an old commit, say.
    pub fn load_under(store: &Store, head: Option<&Oid>, prefix: Option<&str>) -> Result<Snapshot> {
        let mut snap = Snapshot {
            head: head.cloned(),
            ..Snapshot::default()
        };
        snap.history.dir = HISTORY_DIR.to_string();
        let Some(head) = head else { return Ok(snap) };
        let entries = store.ls_tree(head, prefix)?;
        for e in entries {
            let Some(path) = e.path_str().map(str::to_string) else {
                snap.refused.push((
                    String::from_utf8_lossy(&e.path).into_owned(),
                    "path is not UTF-8".into(),
                ));
                continue;
            };
            if path == FORGOTTEN_FILE && e.is_regular_file() {
                snap.forgotten = Some(StoredFile {
                    path: path.clone(),
                    oid: e.oid.clone(),
                    size: e.size.unwrap_or(0),
                });
                continue;
            }
            let ours = path.starts_with(&format!("{PROJECTS_DIR}/"))
                || path.starts_with(&format!("{GLOBAL_DIR}/"))
                || path.starts_with(&format!("{HISTORY_DIR}/"));
            if !ours {
                continue;
            }
            if !e.is_regular_file() {
                snap.refused
                    .push((path, format!("not a regular file (mode {})", e.mode)));
                continue;
            }
            if let Err(why) = check_rel_path(&path) {
                snap.refused.push((path, why));
                continue;
            }
            let file = StoredFile {
                path: path.clone(),
                oid: e.oid.clone(),
                size: e.size.unwrap_or(0),
            };
            if let Err(why) = snap.place(file) {
                snap.refused.push((path, why));
            }
        }
        for s in snap.sessions.values_mut() {
            for log in s.logs.values_mut() {
                log.segs
                    .sort_by_key(|g| parse_segment_name(&g.name).unwrap_or(u64::MAX));
            }
        }
        snap.history
            .segs
            .sort_by_key(|g| parse_segment_name(&g.name).unwrap_or(u64::MAX));
        Ok(snap)
    }

    fn place(&mut self, f: StoredFile) -> Result<(), String> {
        let parts: Vec<&str> = f.path.split('/').collect();
        let seg = |name: &str| -> Result<Seg, String> {
            parse_segment_name(name).ok_or_else(|| format!("{name:?} is not a segment name"))?;
            Ok(Seg {
                name: name.to_string(),
                oid: f.oid.clone(),
                size: f.size,
            })
        };
        match parts.as_slice() {
            [HISTORY_DIR, name] => {
                self.history.segs.push(seg(name)?);
                Ok(())
            }
            [GLOBAL_DIR, rest @ ..] if !rest.is_empty() => {
                self.global.insert(rest.join("/"), f.clone());
                Ok(())
            }
            [PROJECTS_DIR, slug, PROJECT_FILE] => {
                self.project(slug).record = Some(f.clone());
                Ok(())
            }
            [PROJECTS_DIR, slug, "memory", rest @ ..] if !rest.is_empty() => {
                self.project(slug).memory.insert(rest.join("/"), f.clone());
                Ok(())
            }
            [PROJECTS_DIR, slug, "sessions", id, rest @ ..] if !rest.is_empty() => {
                if !valid_session_id(id) {
                    return Err(format!("{id:?} is not a session id"));
                }
                let (slug, id) = (slug.to_string(), id.to_string());
                if let Some(other) = self.sessions.get(&id)
                    && other.slug != slug
                {
                    return Err(format!(
                        "session {id} is also stored under project {}",
                        other.slug
                    ));
                }
                let s = self
                    .sessions
                    .entry(id.clone())
                    .or_insert_with(|| RepoSession {
                        dir: format!("{PROJECTS_DIR}/{slug}/sessions/{id}"),
                        id,
                        slug,
                        ..RepoSession::default()
                    });
                match rest {
                    [META_FILE] => s.meta = Some(f.clone()),
                    [TRANSCRIPT_LOG, name] => {
                        let g = seg(name)?;
                        let dir = format!("{}/{TRANSCRIPT_LOG}", s.dir);
                        s.logs
                            .entry(TRANSCRIPT_LOG.to_string())
                            .or_insert_with(|| StoredLog { dir, segs: vec![] })
                            .segs
                            .push(g);
                    }
                    [first @ ("files" | LEGACY_DIR), mid @ .., logname, name]
                        if logname.ends_with(".jsonl") =>
                    {
                        let mut rel = vec![*first];
                        rel.extend_from_slice(mid);
                        rel.push(logname);
                        let rel = rel.join("/");
                        let g = seg(name)?;
                        let dir = format!("{}/{rel}", s.dir);
                        s.logs
                            .entry(rel)
                            .or_insert_with(|| StoredLog { dir, segs: vec![] })
                            .segs
                            .push(g);
                    }
                    [FILE_HISTORY_DIR | "files", ..] => {
                        s.files.insert(rest.join("/"), f.clone());
                    }
                    _ => return Err("unknown file in a session folder".into()),
                }
                Ok(())
            }
            _ => Err("unknown place in the repository".into()),
        }
    }

    fn project(&mut self, slug: &str) -> &mut RepoProject {
        self.projects
            .entry(slug.to_string())
            .or_insert_with(|| RepoProject {
                slug: slug.to_string(),
                ..RepoProject::default()
            })
    }
}
