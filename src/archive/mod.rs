//! The archive, read-only: every session the sync repository holds and every session on this
//! machine, their metadata, and their lines in this machine's form.
//!
//! **For:** `search`, `show`, `export` and the MCP server — reading what was said, on any
//! machine, including sessions Claude Code's clean-up deleted here. **Not for:** changing
//! anything: it never pushes, pulls, locks or writes the Claude Code dir (it keeps a cache of
//! sessions that exist only in the repository, in the tool home).
//!
//! A session on this machine is read from its local files (what this machine has, which pull
//! keeps in step with the repository); a session only in the repository is read from its stored
//! segments, mapped to this machine's paths, and cached as a plain file so the next read is as
//! fast as a local one.
//!
//! It is built on the store's read side only (the sealed store's listings and blobs, so an
//! encrypted repository reads the same) and the path mapper; it never builds the push engine.
//! Stored lines are read by [`crate::sync::log::for_each_local`], the reading `restore` uses
//! too.

pub mod mcp;
pub mod render;
pub mod search;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};

use crate::catalog;
use crate::claude::ClaudeDir;
use crate::claude::tree::{LineFacts, Tree};
use crate::config::{Config, Home, SecretMode};
use crate::os::IoAt;
use crate::paths::Mapper;
use crate::secrets::Scanner;
use crate::store::{Oid, Store};
use crate::sync::log::{self, StoredLog};
use crate::sync::snapshot::Snapshot;
use render::Turn;

/// How much of the sync repository the archive reads.
#[derive(Debug, Clone, Copy)]
pub enum Repo {
    /// None: this machine is not connected.
    None,
    /// What was last fetched.
    Known,
    /// Fetch first (bounded); on failure, what was last fetched.
    Fetch(std::time::Duration),
}

/// Where a session's lines are read from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A transcript on this machine.
    Local(PathBuf),
    /// Segments of the repository (and the cache file they are copied to).
    Stored { log: StoredLog, cache: PathBuf },
}

/// One log of a session: its transcript, or a subagent's.
#[derive(Debug, Clone)]
pub struct Log {
    /// `transcript`, or the subagent's name (`agent-<id>`).
    pub name: String,
    pub source: Source,
}

/// A session in the archive.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    /// The project directory in this machine's form (`None` when this machine lacks one of its
    /// placeholders; then `portable_cwd` says where it was).
    pub cwd: Option<String>,
    pub portable_cwd: Option<String>,
    pub title: Option<String>,
    /// The machine that last added lines (this machine for a session only here).
    pub machine: String,
    pub first_activity: Option<DateTime<Utc>>,
    pub last_activity: Option<DateTime<Utc>>,
    pub size: u64,
    /// Whether this machine has it locally.
    pub local: bool,
    pub transcript: Log,
    pub subagents: Vec<Log>,
}

/// Every session of the archive and this machine.
pub struct Archive<'a> {
    /// This machine's Claude Code dir.
    pub claude: &'a ClaudeDir,
    /// Stored paths ↔ this machine's paths.
    pub mapper: Mapper,
    /// The secret scanner (`None` when scanning is off), for what leaves through export, MCP
    /// and `show --redact`: the same rules push applies.
    pub scanner: Option<Scanner>,
    store: Option<Store>,
    head: Option<Oid>,
    cache_dir: PathBuf,
    pub sessions: Vec<Session>,
    /// What could not be read (a warning each).
    pub warnings: Vec<String>,
}

impl<'a> Archive<'a> {
    /// Open the archive: this machine's sessions, and the repository's as `repo` says.
    pub fn open(
        claude: &'a ClaudeDir,
        home: &'a Home,
        config: &'a Config,
        repo: Repo,
    ) -> Result<Archive<'a>> {
        let mapper = config
            .mapper()
            .map_err(|e| anyhow::anyhow!("{e} (fix it with `ccsync config add-placeholder`)"))?;
        let scanner = (config.secret_scan != SecretMode::Off).then(Scanner::new);
        let mut warnings = Vec::new();
        let catalog = catalog::load(claude, Some(&home.state_dir().join("catalog.json")))?;
        let me = config.machine_id.clone();
        let mut sessions: HashMap<String, Session> = HashMap::new();
        for e in &catalog.entries {
            let subagents = e
                .session
                .attachments
                .iter()
                .filter(|a| a.rel.starts_with("subagents/") && a.rel.ends_with(".jsonl"))
                .map(|a| Log {
                    name: agent_name(&a.rel),
                    source: Source::Local(a.path.clone()),
                })
                .chain(e.session.legacy_agents.iter().map(|a| Log {
                    name: agent_name(&a.rel),
                    source: Source::Local(a.path.clone()),
                }))
                .collect();
            let cwd = e.meta.effective_cwd().map(str::to_string);
            sessions.insert(
                e.session.id.clone(),
                Session {
                    id: e.session.id.clone(),
                    portable_cwd: cwd.as_deref().map(|c| mapper.portable_path(c)),
                    cwd,
                    title: e.meta.title().map(str::to_string),
                    machine: me.clone(),
                    first_activity: e.meta.first_activity,
                    last_activity: e.meta.last_activity,
                    size: e.session.size,
                    local: true,
                    transcript: Log {
                        name: "transcript".into(),
                        source: Source::Local(e.session.transcript.clone()),
                    },
                    subagents,
                },
            );
        }
        let cache_dir = home.state_dir().join("archive");
        let opened = match repo {
            Repo::None => None,
            Repo::Known | Repo::Fetch(_) => Some(Store::of_waiting(
                home,
                config,
                std::time::Duration::from_secs(10),
            )),
        };
        let fetch = match repo {
            Repo::Fetch(t) => Some(t),
            _ => None,
        };
        let (store, head) = match opened {
            None => (None, None),
            Some(Ok(store)) => {
                let head = match fetch.map(|t| store.fetch(t)) {
                    Some(Ok(h)) => h,
                    Some(Err(e)) => {
                        warnings.push(format!("{e}; reading what was last fetched"));
                        store.known_head()?
                    }
                    None => store.known_head()?,
                };
                (Some(store), head)
            }
            Some(Err(e)) => {
                warnings.push(format!(
                    "cannot open the sync repository ({e:#}); only this machine's sessions are read"
                ));
                (None, None)
            }
        };
        if let Some(store) = &store {
            let metas = crate::sync::remote::sessions_at(
                store,
                head.as_ref(),
                Some(&home.state_dir().join("remote-meta.json")),
            )?;
            let snap = Snapshot::load(store, head.as_ref())?;
            for rs in metas {
                let m = rs.meta;
                let stored = snap.sessions.get(&m.session_id);
                let cwd = mapper.local_path(&m.cwd).ok();
                match sessions.get_mut(&m.session_id) {
                    Some(s) => {
                        // Here and in the repository: the repository knows who added last.
                        s.machine = m.last_machine.clone();
                        if s.title.is_none() {
                            s.title = m.title.clone();
                        }
                    }
                    None => {
                        let Some(stored) = stored else { continue };
                        let Some(t) = stored.transcript() else {
                            continue;
                        };
                        let cache = |name: &str| {
                            cache_dir
                                .join(&m.session_id)
                                .join(format!("{}.jsonl", name.replace('/', "_")))
                        };
                        let subagents = stored
                            .logs
                            .iter()
                            .filter(|(rel, _)| rel.as_str() != crate::store::layout::TRANSCRIPT_LOG)
                            .map(|(rel, log)| Log {
                                name: agent_name(rel),
                                source: Source::Stored {
                                    log: log.clone(),
                                    cache: cache(rel),
                                },
                            })
                            .collect();
                        sessions.insert(
                            m.session_id.clone(),
                            Session {
                                id: m.session_id.clone(),
                                cwd,
                                portable_cwd: Some(m.cwd.clone()),
                                title: m.title.clone(),
                                machine: m.last_machine.clone(),
                                first_activity: m.first_activity,
                                last_activity: m.last_activity,
                                size: m.size,
                                local: false,
                                transcript: Log {
                                    name: "transcript".into(),
                                    source: Source::Stored {
                                        log: t.clone(),
                                        cache: cache("transcript"),
                                    },
                                },
                                subagents,
                            },
                        );
                    }
                }
            }
        }
        let mut sessions: Vec<Session> = sessions.into_values().collect();
        sessions.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(Archive {
            claude,
            mapper,
            scanner,
            store,
            head,
            cache_dir,
            sessions,
            warnings,
        })
    }

    /// The session with this id, or the only one whose id starts with it.
    pub fn find(&self, id: &str) -> Result<&Session> {
        if let Some(s) = self.sessions.iter().find(|s| s.id == id) {
            return Ok(s);
        }
        let matches: Vec<&Session> = self
            .sessions
            .iter()
            .filter(|s| s.id.starts_with(id))
            .collect();
        match matches.as_slice() {
            [s] => Ok(s),
            [] => bail!(
                "no session {id} on this machine or in the sync repository (`ccsync list --remote` lists them)"
            ),
            _ => bail!(
                "{id} is the start of {} session ids; give more of it",
                matches.len()
            ),
        }
    }

    /// The file holding a log's lines in this machine's form: the local transcript, or the
    /// cache copy of the stored one (written now when missing or stale).
    pub fn file(&self, log: &Log) -> Result<PathBuf> {
        match &log.source {
            Source::Local(p) => Ok(p.clone()),
            Source::Stored { log: stored, cache } => {
                self.fill_cache(stored, cache)?;
                Ok(cache.clone())
            }
        }
    }

    fn fill_cache(&self, stored: &StoredLog, cache: &Path) -> Result<()> {
        let stamp = cache.with_extension("segs");
        let want: String = stored
            .segs
            .iter()
            .map(|s| format!("{} {}\n", s.name, s.oid))
            .collect();
        if cache.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
            return Ok(());
        }
        let Some(store) = &self.store else {
            bail!("the sync repository cannot be opened to read this session");
        };
        let dir = cache.parent().unwrap_or(&self.cache_dir);
        std::fs::create_dir_all(dir).at("create the folder", dir)?;
        let mut tmp = crate::os::temp_beside(cache)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        {
            let mut out = std::io::BufWriter::new(tmp.as_file_mut());
            let mut reader = store.reader()?;
            log::for_each_local(&mut reader, &stored.segs, &self.mapper, |piece| {
                let (log::LocalPiece::Line(b) | log::LocalPiece::HugePart(b)) = piece;
                Ok(out.write_all(b).at("write", cache)?)
            })?;
            out.flush().at("write", cache)?;
        }
        crate::os::persist(tmp, cache)
            .with_context(|| format!("cannot write {}", cache.display()))?;
        std::fs::write(&stamp, want).at("write", &stamp)?;
        Ok(())
    }

    /// A log's turns in order, in this machine's form. With `shown_only`, only the branch Claude
    /// Code shows. With `redact`, secrets are replaced as push replaces them. Lines over 8 MiB
    /// are not read whole: each becomes a one-line note.
    pub fn turns(&self, log: &Log, shown_only: bool, redact: bool) -> Result<Vec<Turn>> {
        let file = self.file(log)?;
        let branch = if shown_only {
            shown_branch(&file)?
        } else {
            None
        };
        let mut f = std::fs::File::open(&file).at("read", &file)?;
        let size = f.metadata().at("read the metadata of", &file)?.len();
        let scanner = redact.then_some(self.scanner).flatten();
        let mut turns = Vec::new();
        // Values found once are redacted wherever they come again, as push does.
        let mut known = crate::secrets::Known::default();
        let mut take = |line: &[u8], turns: &mut Vec<Turn>| {
            let line = crate::sync::log::strip_nl(line);
            let redacted;
            let line = match &scanner {
                Some(sc) => {
                    let hits = sc.scan_json_line_known(line, &mut known);
                    redacted = sc.redact(line, &hits);
                    &redacted[..]
                }
                None => line,
            };
            if let Some(t) = Turn::of_line(line)
                && branch
                    .as_ref()
                    .is_none_or(|b| t.uuid.as_ref().is_none_or(|u| b.contains(u)))
            {
                turns.push(t);
            }
        };
        crate::sync::lines::for_each_chunk(
            &mut f,
            &file,
            0,
            size,
            4 << 20,
            crate::sync::lines::HUGE_LINE,
            |c| {
                match c {
                    crate::sync::lines::Chunk::Lines(chunk, _) => {
                        for line in crate::sync::push::split_lines(chunk) {
                            take(line, &mut turns);
                        }
                    }
                    crate::sync::lines::Chunk::Huge { start, end } => turns.push(Turn {
                        role: render::Role::System,
                        time: None,
                        uuid: None,
                        blocks: vec![render::Block::Text(format!(
                            "(a line of {} MB is not shown)",
                            (end - start) >> 20
                        ))],
                    }),
                }
                Ok(())
            },
        )?;
        Ok(turns)
    }

    /// The head of the repository the archive was read at.
    pub fn head(&self) -> Option<&Oid> {
        self.head.as_ref()
    }
}

/// `subagents/agent-x.jsonl` → `agent-x`.
fn agent_name(rel: &str) -> String {
    let base = rel.rsplit('/').next().unwrap_or(rel);
    base.strip_suffix(".jsonl").unwrap_or(base).to_string()
}

/// The uuids of the branch Claude Code shows for a transcript (its leaf's ancestry), or `None`
/// when the transcript has no message tree (every line is shown then).
pub fn shown_branch(file: &Path) -> Result<Option<std::collections::HashSet<String>>> {
    let mut tree = Tree::default();
    crate::sync::lines::for_each_line_facts(file, |f: &LineFacts| tree.add(f))?;
    Ok(tree.client_leaf().map(|leaf| tree.branch(&leaf)))
}
