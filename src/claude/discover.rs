//! Finding sessions and project memory under `projects/`.
//!
//! A session is `projects/<ENC>/<id>.jsonl`. What belongs to it travels with it:
//! everything under `projects/<ENC>/<id>/` (subagent transcripts `subagents/agent-*.jsonl` and
//! their `.meta.json`, `tool-results/`, future additions), and legacy `agent-*.jsonl` files beside
//! the sessions, attached through the `sessionId` of their first line. Project memory is
//! `projects/<ENC>/memory/**`.
//!
//! Discovery only lists and stats; it reads a file only to attach a legacy agent transcript.
//!
//! Symbolic links are never followed, at any depth: Claude Code writes none in its dir, and a
//! link (`memory -> /elsewhere`) would make a sync read or write files outside it. They are
//! listed in [`Discovery::skipped`], as are names that are not UTF-8, so that push can say what
//! it left out.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::ClaudeDir;
use super::jsonscan::{TopScanner, Want};
use crate::os::IoAt;

/// Why discovery left an entry of the Claude Code dir out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A symbolic link (never followed).
    Link,
    /// A name that is not valid UTF-8 (cannot be stored portably).
    NotUtf8,
}

impl SkipReason {
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Link => {
                "a symbolic link, not followed: ccsync reads and writes only inside the Claude Code dir (put the folder or file itself there to sync it)"
            }
            SkipReason::NotUtf8 => "its name is not valid UTF-8, so it cannot be stored portably",
        }
    }
}

/// An entry discovery left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub path: PathBuf,
    pub reason: SkipReason,
}

/// The first symbolic link among `path` and its ancestors below `root` (`root` itself may be a
/// link: it is where the user keeps the Claude Code dir). `None` when there is none, when `path`
/// is not below `root`, or when the path does not exist (yet).
pub fn link_below(root: &Path, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(root).ok()?;
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return Some(cur),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// A file that belongs to a session, with its path relative to the session folder
/// (`subagents/agent-1.jsonl`) or, for a legacy agent, its file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub rel: String,
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i128,
}

/// A session found on disk.
#[derive(Debug, Clone)]
pub struct LocalSession {
    pub id: String,
    /// Name of the folder under `projects/` holding it.
    pub project_folder: String,
    pub transcript: PathBuf,
    pub size: u64,
    pub mtime_ns: i128,
    /// Files under `<id>/`, sorted by `rel`.
    pub attachments: Vec<Attachment>,
    /// Legacy `agent-*.jsonl` files beside the sessions whose `sessionId` is this session.
    pub legacy_agents: Vec<Attachment>,
    /// Pre-edit snapshots `/rewind` needs: files under `<claude>/file-history/<id>/`, relative
    /// to that folder.
    pub file_history: Vec<Attachment>,
}

impl LocalSession {
    /// Subagent transcripts (new and legacy layouts).
    pub fn subagent_count(&self) -> usize {
        let new = self
            .attachments
            .iter()
            .filter(|a| a.rel.starts_with("subagents/") && a.rel.ends_with(".jsonl"))
            .count();
        new + self.legacy_agents.len()
    }
}

/// A folder under `projects/` and its memory files.
#[derive(Debug, Clone)]
pub struct ProjectFolder {
    pub name: String,
    pub path: PathBuf,
    /// Files under `memory/`, relative to it, sorted.
    pub memory: Vec<Attachment>,
}

/// Everything discovery found.
#[derive(Debug, Default)]
pub struct Discovery {
    pub sessions: Vec<LocalSession>,
    pub projects: Vec<ProjectFolder>,
    /// Legacy agent transcripts whose parent session is not on disk.
    pub orphan_agents: Vec<PathBuf>,
    /// Entries left out: symbolic links, names that are not UTF-8.
    pub skipped: Vec<Skip>,
}

impl Discovery {
    pub fn session(&self, id: &str) -> Option<&LocalSession> {
        self.sessions.iter().find(|s| s.id == id)
    }
}

/// Whether a file name is a session transcript name (`<id>.jsonl`, not a legacy agent).
pub fn session_id_from_file_name(name: &str) -> Option<&str> {
    let id = name.strip_suffix(".jsonl")?;
    if id.is_empty() || id.starts_with("agent-") || id.starts_with('.') {
        return None;
    }
    Some(id)
}

/// List all sessions and project folders. A missing `projects/` is an empty result. Errors
/// name the path that failed.
pub fn discover(claude: &ClaudeDir) -> io::Result<Discovery> {
    let mut out = Discovery::default();
    let root = claude.projects();
    let Some(rd) = read_dir_here(&root, &mut out.skipped)? else {
        return Ok(out);
    };
    let mut legacy: Vec<(String, Attachment)> = Vec::new();
    for entry in rd {
        let entry = entry.at("list", &root)?;
        let Some((folder, ft)) = entry_kind(&entry, &mut out.skipped)? else {
            continue;
        };
        if !ft.is_dir() {
            continue;
        }
        let dir = entry.path();
        let mut memory = Vec::new();
        let mut sessions: Vec<LocalSession> = Vec::new();
        let mut session_dirs: HashMap<String, PathBuf> = HashMap::new();
        for e in fs::read_dir(&dir).at("list", &dir)? {
            let e = e.at("list", &dir)?;
            let Some((name, ft)) = entry_kind(&e, &mut out.skipped)? else {
                continue;
            };
            if ft.is_dir() {
                if name == "memory" {
                    walk(&e.path(), "", &mut memory, &mut out.skipped)?;
                } else {
                    session_dirs.insert(name, e.path());
                }
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let meta = e.metadata().at("read the metadata of", &e.path())?;
            if let Some(id) = session_id_from_file_name(&name) {
                sessions.push(LocalSession {
                    id: id.to_string(),
                    project_folder: folder.clone(),
                    transcript: e.path(),
                    size: meta.len(),
                    mtime_ns: crate::os::mtime_ns(&meta),
                    attachments: Vec::new(),
                    legacy_agents: Vec::new(),
                    file_history: Vec::new(),
                });
            } else if name.starts_with("agent-") && name.ends_with(".jsonl") {
                let att = Attachment {
                    rel: name,
                    path: e.path(),
                    size: meta.len(),
                    mtime_ns: crate::os::mtime_ns(&meta),
                };
                match first_session_id(&att.path) {
                    Some(parent) => legacy.push((parent, att)),
                    None => out.orphan_agents.push(att.path),
                }
            }
        }
        for s in &mut sessions {
            if let Some(d) = session_dirs.get(&s.id) {
                walk(d, "", &mut s.attachments, &mut out.skipped)?;
            }
        }
        memory.sort_by(|a, b| a.rel.cmp(&b.rel));
        out.projects.push(ProjectFolder {
            name: folder,
            path: dir,
            memory,
        });
        out.sessions.extend(sessions);
    }
    let index: HashMap<String, usize> = out
        .sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    for (parent, att) in legacy {
        match index.get(&parent) {
            Some(&i) => out.sessions[i].legacy_agents.push(att),
            None => out.orphan_agents.push(att.path),
        }
    }
    // File history, kept outside the project folders, by session id.
    let fh_root = claude.file_history();
    if let Some(rd) = read_dir_here(&fh_root, &mut out.skipped)? {
        for e in rd {
            let e = e.at("list", &fh_root)?;
            let Some((name, ft)) = entry_kind(&e, &mut out.skipped)? else {
                continue;
            };
            if let Some(&i) = index.get(&name)
                && ft.is_dir()
            {
                walk(
                    &e.path(),
                    "",
                    &mut out.sessions[i].file_history,
                    &mut out.skipped,
                )?;
            }
        }
    }
    for s in &mut out.sessions {
        s.attachments.sort_by(|a, b| a.rel.cmp(&b.rel));
        s.legacy_agents.sort_by(|a, b| a.rel.cmp(&b.rel));
        s.file_history.sort_by(|a, b| a.rel.cmp(&b.rel));
    }
    out.sessions
        .sort_by(|a, b| (&a.project_folder, &a.id).cmp(&(&b.project_folder, &b.id)));
    out.projects.sort_by(|a, b| a.name.cmp(&b.name));
    out.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// `read_dir` of a folder discovery starts from: `None` when it is missing, and (noted in
/// `skipped`) when it is a symbolic link.
fn read_dir_here(dir: &Path, skipped: &mut Vec<Skip>) -> io::Result<Option<fs::ReadDir>> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            skipped.push(Skip {
                path: dir.to_path_buf(),
                reason: SkipReason::Link,
            });
            return Ok(None);
        }
        Ok(m) if !m.is_dir() => return Ok(None),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at("read the metadata of", dir),
    }
    match fs::read_dir(dir) {
        Ok(rd) => Ok(Some(rd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at("list", dir),
    }
}

/// The UTF-8 name and type (not following links) of a folder entry; `None`, noted in `skipped`,
/// for a symbolic link or a name that is not UTF-8.
fn entry_kind(
    e: &fs::DirEntry,
    skipped: &mut Vec<Skip>,
) -> io::Result<Option<(String, fs::FileType)>> {
    let ft = e.file_type().at("read the type of", &e.path())?;
    let reason = if ft.is_symlink() {
        SkipReason::Link
    } else {
        match e.file_name().to_str() {
            Some(name) => return Ok(Some((name.to_string(), ft))),
            None => SkipReason::NotUtf8,
        }
    };
    skipped.push(Skip {
        path: e.path(),
        reason,
    });
    Ok(None)
}

/// Every regular file below `dir`, with `/`-separated paths relative to it. Symbolic links
/// (including `dir` itself being one) are not followed.
pub fn walk_files(dir: &Path, prefix: &str, out: &mut Vec<Attachment>) -> io::Result<()> {
    walk(dir, prefix, out, &mut Vec::new())
}

/// [`walk_files`], noting in `skipped` what it leaves out (symbolic links, names that are not
/// UTF-8).
pub fn walk(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<Attachment>,
    skipped: &mut Vec<Skip>,
) -> io::Result<()> {
    let rd = if prefix.is_empty() {
        match read_dir_here(dir, skipped)? {
            Some(rd) => rd,
            None => return Ok(()),
        }
    } else {
        match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).at("list", dir),
        }
    };
    for e in rd {
        let e = e.at("list", dir)?;
        let Some((name, ft)) = entry_kind(&e, skipped)? else {
            continue;
        };
        if name.starts_with(".ccsync-tmp-") {
            continue;
        }
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if ft.is_dir() {
            walk(&e.path(), &rel, out, skipped)?;
        } else if ft.is_file() {
            let meta = e.metadata().at("read the metadata of", &e.path())?;
            out.push(Attachment {
                rel,
                path: e.path(),
                size: meta.len(),
                mtime_ns: crate::os::mtime_ns(&meta),
            });
        }
    }
    Ok(())
}

static SID_WANTS: &[Want] = &[Want {
    key: "sessionId",
    cap: 256,
}];

/// The `sessionId` of the first line of a transcript (reads at most 1 MB).
pub fn first_session_id(path: &Path) -> Option<String> {
    let mut f = File::open(path).ok()?;
    let mut scanner = TopScanner::new(SID_WANTS);
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0usize;
    while read < 1024 * 1024 && !scanner.done() {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let end = memchr::memchr(b'\n', chunk);
        scanner.feed(&chunk[..end.unwrap_or(n)]);
        if end.is_some() {
            break;
        }
        read += n;
    }
    scanner.get_str("sessionId")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn finds_sessions_attachments_legacy_agents_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let claude = ClaudeDir::new(dir.path());
        let p = "projects/-home-a-my-app";
        put(dir.path(), &format!("{p}/s1.jsonl"), "{}\n");
        put(dir.path(), &format!("{p}/s2.jsonl"), "");
        put(
            dir.path(),
            &format!("{p}/s1/subagents/agent-x.jsonl"),
            "{}\n",
        );
        put(
            dir.path(),
            &format!("{p}/s1/subagents/agent-x.meta.json"),
            "{}",
        );
        put(dir.path(), &format!("{p}/s1/tool-results/t1.txt"), "out");
        put(
            dir.path(),
            &format!("{p}/agent-old.jsonl"),
            "{\"sessionId\":\"s2\",\"type\":\"user\"}\n",
        );
        put(
            dir.path(),
            &format!("{p}/agent-lost.jsonl"),
            "{\"sessionId\":\"nope\"}\n",
        );
        put(dir.path(), &format!("{p}/memory/MEMORY.md"), "# m");
        put(dir.path(), &format!("{p}/memory/topics/a.md"), "a");
        put(dir.path(), "projects/-other/s3.jsonl", "{}\n");
        put(dir.path(), "file-history/s1/abc@v1", "old text");
        put(dir.path(), "file-history/gone/abc@v1", "no session");
        put(dir.path(), "projects/stray-file.txt", "x");

        let d = discover(&claude).unwrap();
        let ids: Vec<_> = d.sessions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["s1", "s2", "s3"]);
        let s1 = d.session("s1").unwrap();
        let rels: Vec<_> = s1.attachments.iter().map(|a| a.rel.as_str()).collect();
        assert_eq!(
            rels,
            [
                "subagents/agent-x.jsonl",
                "subagents/agent-x.meta.json",
                "tool-results/t1.txt"
            ]
        );
        assert_eq!(s1.subagent_count(), 1);
        let fh: Vec<_> = s1.file_history.iter().map(|a| a.rel.as_str()).collect();
        assert_eq!(fh, ["abc@v1"]);
        let s2 = d.session("s2").unwrap();
        assert_eq!(s2.legacy_agents.len(), 1);
        assert_eq!(s2.subagent_count(), 1);
        assert_eq!(d.orphan_agents.len(), 1);
        let proj = d
            .projects
            .iter()
            .find(|p| p.name == "-home-a-my-app")
            .unwrap();
        let mem: Vec<_> = proj.memory.iter().map(|a| a.rel.as_str()).collect();
        assert_eq!(mem, ["MEMORY.md", "topics/a.md"]);
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_listed_never_followed() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("claude");
        let out = dir.path().join("outside");
        put(&out, "mem/MEMORY.md", "outside");
        put(&out, "s.jsonl", "{}\n");
        put(&out, "proj/s9.jsonl", "{}\n");
        let claude = ClaudeDir::new(&root);
        let p = root.join("projects/-home-a-app");
        put(&root, "projects/-home-a-app/s1.jsonl", "{}\n");
        put(&root, "projects/-home-a-app/s1/tool-results/t.txt", "in");
        symlink(out.join("mem"), p.join("memory")).unwrap();
        symlink(out.join("mem"), p.join("s1/subagents")).unwrap();
        symlink(out.join("s.jsonl"), p.join("s2.jsonl")).unwrap();
        symlink(out.join("proj"), root.join("projects/-linked")).unwrap();
        fs::create_dir_all(root.join("file-history")).unwrap();
        symlink(out.join("mem"), root.join("file-history/s1")).unwrap();
        symlink(&out, root.join("plans")).unwrap();
        let d = discover(&claude).unwrap();
        let ids: Vec<_> = d.sessions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["s1"]);
        let s1 = d.session("s1").unwrap();
        let rels: Vec<_> = s1.attachments.iter().map(|a| a.rel.as_str()).collect();
        assert_eq!(rels, ["tool-results/t.txt"]);
        assert!(s1.file_history.is_empty());
        assert!(d.projects.iter().all(|p| p.memory.is_empty()));
        let skipped: Vec<_> = d.skipped.iter().map(|s| s.path.clone()).collect();
        assert_eq!(
            skipped,
            [
                root.join("file-history/s1"),
                p.join("memory"),
                p.join("s1/subagents"),
                p.join("s2.jsonl"),
                root.join("projects/-linked"),
            ]
        );
        assert!(d.skipped.iter().all(|s| s.reason == SkipReason::Link));
        let mut plans = Vec::new();
        let mut skipped = Vec::new();
        walk(&root.join("plans"), "", &mut plans, &mut skipped).unwrap();
        assert!(plans.is_empty());
        assert_eq!(skipped.len(), 1);
        // A path through a link, found from the Claude Code dir down.
        assert_eq!(
            link_below(&root, &p.join("memory/MEMORY.md")),
            Some(p.join("memory"))
        );
        assert_eq!(link_below(&root, &p.join("s1.jsonl")), None);
        assert_eq!(link_below(&root, &p.join("new/x.md")), None);
    }

    #[test]
    fn missing_projects_dir_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let d = discover(&ClaudeDir::new(dir.path().join("nope"))).unwrap();
        assert!(d.sessions.is_empty() && d.projects.is_empty());
    }
}
