//! The sync engine: push, pull and merge, using the Claude Code model ([`crate::claude`]), the
//! path mapper ([`crate::paths`]) and the sync repository ([`crate::store`]).
//!
//! * [`push`] sends local changes: new lines of transcripts as new segments, changed plain files,
//!   history entries. It decides "nothing changed" from `stat` alone, reads only appended bytes
//!   when it can, and commits with the store's compare-and-swap push.
//! * [`pull`] brings remote changes: the union of lines into local transcripts (never shrinking
//!   them, never touching a live one), three-way merged plain files, history entries.
//!
//! What each file looked like when last in step is kept in the state index ([`state::Index`]).

pub mod branches;
pub mod files;
pub mod forget;
pub mod history;
pub mod lines;
pub mod log;
pub mod place;
pub mod pull;
pub mod push;
pub mod relocate;
pub mod remote;
pub mod restore;
pub mod snapshot;
pub mod state;
pub mod unsynced;

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use serde::Serialize;

use crate::catalog::Entry;
use crate::claude::ClaudeDir;
use crate::config::{Config, Home, SecretMode};
use crate::os::IoAt;
use crate::paths::{Context, Direction, MapStream, Mapper};
use crate::secrets;

pub use forget::forget;
pub use lines::{Chunk, complete_end, for_each_chunk};
pub use pull::{PullOptions, PullReport, pull};
pub use push::{PushOptions, PushReport, push};

/// The secret state of one file being sent: the values its lines gave so far (each later
/// occurrence is redacted too, see [`secrets::Known`]), and where in the local file the lines
/// that gave them are (offset and length), so that the next push learns them again by reading
/// those lines only. Never written anywhere with the values.
#[derive(Debug, Default, Clone)]
pub struct FileSecrets {
    pub known: secrets::Known,
    pub lines: Vec<(u64, u64)>,
}

/// A secret found in what push sends (never the secret itself).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SecretReport {
    pub kind: String,
    /// The local file and the line number in it.
    pub file: String,
    pub line: u64,
}

/// Where long work reports how far it got (a progress bar on a terminal; nothing otherwise).
pub trait Progress: Sync {
    /// Work of `total` units (bytes) begins.
    fn begin(&self, what: &str, total: u64);
    fn advance(&self, n: u64);
    fn end(&self);
}

/// What push and pull work with.
pub struct Engine<'a> {
    pub claude: &'a ClaudeDir,
    pub home: &'a Home,
    pub config: &'a Config,
    pub mapper: Mapper,
    pub scanner: Option<secrets::Scanner>,
    pub progress: Option<&'a dyn Progress>,
}

impl<'a> Engine<'a> {
    pub fn new(claude: &'a ClaudeDir, home: &'a Home, config: &'a Config) -> Result<Engine<'a>> {
        let mapper = config
            .mapper()
            .map_err(|e| anyhow!("{e} (fix it with `ccsync config add-placeholder`)"))?;
        let scanner = (config.secret_scan != SecretMode::Off).then(secrets::Scanner::new);
        Ok(Engine {
            claude,
            home,
            config,
            mapper,
            scanner,
            progress: None,
        })
    }

    /// The key of a local file in the state index: its path relative to the Claude Code dir.
    pub fn key(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.claude.root).unwrap_or(path);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// A local path from an index key.
    pub fn local_path(&self, key: &str) -> PathBuf {
        let mut p = self.claude.root.clone();
        for c in key.split('/') {
            p.push(c);
        }
        p
    }

    fn progress_begin(&self, what: &str, total: u64) {
        if let Some(p) = self.progress {
            p.begin(what, total);
        }
    }
    fn progress_advance(&self, n: u64) {
        if let Some(p) = self.progress {
            p.advance(n);
        }
    }
    fn progress_end(&self) {
        if let Some(p) = self.progress {
            p.end();
        }
    }

    /// Local JSONL bytes (whole lines) → what is stored: paths mapped, secrets handled.
    /// `line_no` is the number of the first line, for reports; `at` is the offset of `chunk`
    /// in the local file, and `st` the file's secret state (the values its earlier lines gave,
    /// found again wherever they occur; it learns this chunk's).
    #[allow(clippy::too_many_arguments)]
    pub fn outbound(
        &self,
        chunk: &[u8],
        out: &mut Vec<u8>,
        file: &str,
        line_no: u64,
        found: &mut Vec<SecretReport>,
        st: &mut FileSecrets,
        at: u64,
    ) {
        let mut mapped = Vec::with_capacity(chunk.len() + 64);
        self.mapper.to_portable(chunk, Context::Json, &mut mapped);
        let Some(scanner) = &self.scanner else {
            out.extend_from_slice(&mapped);
            return;
        };
        let mut start = 0;
        let mut n = line_no;
        // The same line in the local chunk (mapping changes no line breaks).
        let mut local = at;
        let mut local_rest = chunk;
        while start < mapped.len() {
            let end =
                memchr::memchr(b'\n', &mapped[start..]).map_or(mapped.len(), |i| start + i + 1);
            let line = &mapped[start..end];
            let local_len = memchr::memchr(b'\n', local_rest).map_or(local_rest.len(), |i| i + 1);
            local_rest = &local_rest[local_len..];
            let before = st.known.len();
            let hits = scanner.scan_json_line_known(line, &mut st.known);
            if st.known.len() > before {
                st.lines.push((local, local_len as u64));
            }
            local += local_len as u64;
            if hits.is_empty() {
                out.extend_from_slice(line);
            } else {
                for h in &hits {
                    found.push(SecretReport {
                        kind: h.kind.to_string(),
                        file: file.to_string(),
                        line: n,
                    });
                }
                if self.config.secret_scan == SecretMode::Redact {
                    out.extend_from_slice(&scanner.redact(line, &hits));
                } else {
                    out.extend_from_slice(line);
                }
            }
            start = end;
            n += 1;
        }
    }

    /// Stored JSONL bytes → this machine's form.
    pub fn inbound(&self, data: &[u8], out: &mut Vec<u8>) {
        self.mapper.to_local(data, Context::Json, out);
    }

    /// [`Engine::outbound`] of one line too large to hold (see [`lines`]), at `at` (its start
    /// and end) in the local file: `replay` streams the local line (it is called twice when
    /// secrets are scanned), `sink` takes the stored form in pieces. The first pass finds the
    /// line's protected ranges and its values, so a value is redacted wherever it occurs in the
    /// line, before its first naming as after; the values of earlier lines of the file are
    /// redacted in it too.
    #[allow(clippy::too_many_arguments)]
    pub fn outbound_huge(
        &self,
        replay: &mut lines::Replay<'_>,
        file: &str,
        line_no: u64,
        found: &mut Vec<SecretReport>,
        sink: &mut lines::Sink<'_>,
        st: &mut FileSecrets,
        at: (u64, u64),
    ) -> Result<()> {
        let mut redact = match &self.scanner {
            None => None,
            Some(scanner) => {
                // First pass: the ranges the JSON protects and the values, in the mapped line.
                let mut pass = scanner.first_pass();
                let mut map = MapStream::new(&self.mapper, Direction::ToPortable, Context::Json);
                let mut mapped = Vec::new();
                replay(&mut |piece| {
                    mapped.clear();
                    map.feed(piece, &mut mapped);
                    pass.feed(&mapped);
                    Ok(())
                })?;
                mapped.clear();
                map.finish(&mut mapped);
                pass.feed(&mapped);
                let before = st.known.len();
                let passed = pass.finish(&mut st.known);
                if st.known.len() > before {
                    st.lines.push((at.0, at.1 - at.0));
                }
                let redact = self.config.secret_scan == SecretMode::Redact;
                Some(scanner.redact_stream(passed, &st.known, redact))
            }
        };
        let mut map = MapStream::new(&self.mapper, Direction::ToPortable, Context::Json);
        let mut mapped = Vec::new();
        let mut out = Vec::new();
        let mut step = |piece: Option<&[u8]>, sink: &mut lines::Sink<'_>| -> Result<()> {
            mapped.clear();
            match piece {
                Some(p) => map.feed(p, &mut mapped),
                None => map.finish(&mut mapped),
            }
            let Some(r) = redact.as_mut() else {
                return sink(&mapped);
            };
            out.clear();
            r.feed(&mapped, &mut out);
            if piece.is_none() {
                r.finish(&mut out);
            }
            sink(&out)
        };
        replay(&mut |piece| step(Some(piece), &mut *sink))?;
        step(None, sink)?;
        for kind in redact.map(|r| r.found).unwrap_or_default() {
            found.push(SecretReport {
                kind: kind.to_string(),
                file: file.to_string(),
                line: line_no,
            });
        }
        Ok(())
    }

    /// The secret state of a local log at the end of its first `rec.local_len` bytes: its
    /// lines that gave values, read again (or, when the record does not tell, every line).
    pub fn restore_secrets(&self, path: &Path, rec: &state::LogRecord) -> Result<FileSecrets> {
        let mut st = FileSecrets::default();
        if self.scanner.is_none() || rec.local_len == 0 {
            return Ok(st);
        }
        let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut ignore = |_: &[u8]| -> Result<()> { Ok(()) };
        match &rec.secret_lines {
            Some(list) => {
                for &(start, len) in list {
                    let end = start.saturating_add(len).min(rec.local_len);
                    if start >= end {
                        continue;
                    }
                    if end - start > lines::HUGE_LINE as u64 {
                        let mut replay =
                            |sink: &mut lines::Sink<'_>| lines::replay_file(path, start, end, sink);
                        self.outbound_huge(
                            &mut replay,
                            "",
                            0,
                            &mut Vec::new(),
                            &mut ignore,
                            &mut st,
                            (start, end),
                        )?;
                    } else {
                        use std::io::{Read, Seek, SeekFrom};
                        let mut buf = vec![0u8; (end - start) as usize];
                        f.seek(SeekFrom::Start(start)).at("read", path)?;
                        f.read_exact(&mut buf).at("read", path)?;
                        self.outbound(
                            &buf,
                            &mut Vec::new(),
                            "",
                            0,
                            &mut Vec::new(),
                            &mut st,
                            start,
                        );
                    }
                }
            }
            None => {
                for_each_chunk(
                    &mut f,
                    path,
                    0,
                    rec.local_len,
                    4 << 20,
                    lines::HUGE_LINE,
                    |c| match c {
                        Chunk::Lines(chunk, at) => {
                            self.outbound(
                                chunk,
                                &mut Vec::new(),
                                "",
                                0,
                                &mut Vec::new(),
                                &mut st,
                                at,
                            );
                            Ok(())
                        }
                        Chunk::Huge { start, end } => {
                            let mut replay = |sink: &mut lines::Sink<'_>| {
                                lines::replay_file(path, start, end, sink)
                            };
                            self.outbound_huge(
                                &mut replay,
                                "",
                                0,
                                &mut Vec::new(),
                                &mut ignore,
                                &mut st,
                                (start, end),
                            )
                        }
                    },
                )?;
            }
        }
        Ok(st)
    }

    /// [`Engine::inbound`] of one stored line too large to hold.
    pub fn inbound_huge(
        &self,
        replay: &mut lines::Replay<'_>,
        sink: &mut lines::Sink<'_>,
    ) -> Result<()> {
        let mut map = MapStream::new(&self.mapper, Direction::ToLocal, Context::Json);
        let mut out = Vec::new();
        replay(&mut |piece| {
            out.clear();
            map.feed(piece, &mut out);
            sink(&out)
        })?;
        out.clear();
        map.finish(&mut out);
        sink(&out)
    }
}

/// How many of these sessions changed since they were last pushed (judged by `stat` against
/// the state index).
pub fn pending_sessions(home: &Home, entries: &[&Entry]) -> usize {
    let remote = home
        .load_config()
        .ok()
        .flatten()
        .map(|c| c.remote)
        .unwrap_or_default();
    let index = state::Index::load(home, &remote);
    entries
        .iter()
        .filter(|e| {
            let key = index
                .sessions
                .get(&e.session.id)
                .map(|s| s.local.clone())
                .unwrap_or_default();
            match index.logs.get(&key) {
                Some(r) => r.size != e.session.size || r.mtime_ns != e.session.mtime_ns,
                None => true,
            }
        })
        .count()
}

/// Append whole lines to a local file atomically (a copy with the lines, then a rename), keeping
/// its modification time so the session keeps its place in Claude Code's newest-first lists. A
/// last line without a newline gets one first.
pub fn append_lines(path: &Path, lines: &[Vec<u8>]) -> Result<()> {
    use anyhow::Context as _;
    use std::io::Write;
    let mtime = mtime_secs(path);
    let mut tmp = crate::os::temp_beside(path)
        .with_context(|| format!("cannot create a temporary file beside {}", path.display()))?;
    {
        let mut out = std::io::BufWriter::new(tmp.as_file_mut());
        let mut src =
            File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        std::io::copy(&mut src, &mut out).at("copy", path)?;
        let len = src.metadata().at("read the metadata of", path)?.len();
        if len > 0 && !pull::file_ends_with_newline(&mut src, len).at("read", path)? {
            out.write_all(b"\n").at("write", path)?;
        }
        for l in lines {
            out.write_all(l).at("write", path)?;
            if !l.ends_with(b"\n") {
                out.write_all(b"\n").at("write", path)?;
            }
        }
        out.flush().at("write", path)?;
    }
    tmp.as_file_mut().sync_data().at("write", path)?;
    crate::os::persist(tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(t) = mtime {
        crate::os::set_mtime(path, t)
            .with_context(|| format!("cannot set the time of {}", path.display()))?;
    }
    Ok(())
}

/// Seconds since the epoch of a file's modification time (`None` if unknown).
pub fn mtime_secs(path: &Path) -> Option<i64> {
    let m = std::fs::metadata(path).ok()?;
    Some((crate::os::mtime_ns(&m) / 1_000_000_000) as i64)
}
