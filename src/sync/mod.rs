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
pub mod log;
pub mod place;
pub mod pull;
pub mod push;
pub mod relocate;
pub mod remote;
pub mod restore;
pub mod snapshot;
pub mod state;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use serde::Serialize;

use crate::catalog::Entry;
use crate::claude::ClaudeDir;
use crate::config::{Config, Home, SecretMode};
use crate::os::IoAt;
use crate::paths::{Context, Mapper};
use crate::secrets;

pub use forget::forget;
pub use pull::{PullOptions, PullReport, pull};
pub use push::{PushOptions, PushReport, push};

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
    /// `line_no` is the number of the first line, for reports.
    pub fn outbound(
        &self,
        chunk: &[u8],
        out: &mut Vec<u8>,
        file: &str,
        line_no: u64,
        found: &mut Vec<SecretReport>,
    ) {
        let mut mapped = Vec::with_capacity(chunk.len() + 64);
        self.mapper.to_portable(chunk, Context::Json, &mut mapped);
        let Some(scanner) = &self.scanner else {
            out.extend_from_slice(&mapped);
            return;
        };
        let mut start = 0;
        let mut n = line_no;
        while start < mapped.len() {
            let end =
                memchr::memchr(b'\n', &mapped[start..]).map_or(mapped.len(), |i| start + i + 1);
            let line = &mapped[start..end];
            let hits = scanner.scan_json_line(line);
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
}

/// The end of the last complete line of a file of size `size` (0 if none). Reads backwards in
/// blocks, so a huge last line costs its own length at most.
pub fn complete_end(file: &mut File, size: u64) -> std::io::Result<u64> {
    let mut end = size;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = memchr::memrchr(b'\n', &buf[..n]) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Call `f` with chunks of whole lines of `file` between `from` and `to` (the last chunk may
/// end without a newline when `to` does). Chunks are about `chunk` bytes; a longer line is one
/// chunk of its own. `path` names the file in errors.
pub fn for_each_chunk(
    file: &mut File,
    path: &Path,
    from: u64,
    to: u64,
    chunk: usize,
    mut f: impl FnMut(&[u8], u64) -> Result<()>,
) -> Result<()> {
    file.seek(SeekFrom::Start(from)).at("read", path)?;
    let mut left = to.saturating_sub(from);
    let mut buf: Vec<u8> = Vec::with_capacity(chunk);
    let mut offset = from;
    while left > 0 {
        let want = (chunk.max(1)).min(left as usize);
        let old = buf.len();
        buf.resize(old + want, 0);
        file.read_exact(&mut buf[old..]).at("read", path)?;
        left -= want as u64;
        let cut = if left == 0 {
            Some(buf.len())
        } else {
            memchr::memrchr(b'\n', &buf).map(|i| i + 1)
        };
        if let Some(cut) = cut {
            f(&buf[..cut], offset)?;
            offset += cut as u64;
            buf.drain(..cut);
        }
    }
    if !buf.is_empty() {
        f(&buf, offset)?;
    }
    Ok(())
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
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_end_and_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"a\nbb\nccc").unwrap();
        let mut f = File::open(&p).unwrap();
        assert_eq!(complete_end(&mut f, 8).unwrap(), 5);
        std::fs::write(&p, b"no newline").unwrap();
        let mut f = File::open(&p).unwrap();
        assert_eq!(complete_end(&mut f, 10).unwrap(), 0);
        std::fs::write(&p, b"l1\nline2\nl3\nlast").unwrap();
        let mut f = File::open(&p).unwrap();
        let mut got = Vec::new();
        for_each_chunk(&mut f, &p, 3, 16, 4, |c, off| {
            got.push((String::from_utf8(c.to_vec()).unwrap(), off));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            got,
            [
                ("line2\n".to_string(), 3),
                ("l3\n".to_string(), 9),
                ("last".to_string(), 12)
            ]
        );
    }
}
