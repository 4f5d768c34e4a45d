//! Append-only logs (transcripts, subagent transcripts, history): reading lines, line identity,
//! the stored form as segments, and the union merge.
//!
//! A log is a multiset of lines. A line's identity is its top-level `uuid` when it has one, else
//! its exact portable bytes; a line that occurs k times is kept k times. Merging keeps the
//! existing order and appends what the other side lacks, so every machine converges on the same
//! bytes and nothing is ever dropped.
//!
//! Lines are byte ranges ending in `\n`; only the last line of a log may lack it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

use crate::claude::jsonscan::{TopScanner, Want};
use crate::os::IoAt;
use crate::store::git::Mark;
use crate::store::layout::{SEGMENT_MAX, parse_segment_name, segment_name};
use crate::store::{BlobReader, Oid, Txn};

/// A line identity (128 bits of SHA-256 over the uuid or the bytes).
pub type Ident = [u8; 16];

static UUID_WANT: &[Want] = &[Want {
    key: "uuid",
    cap: 200,
}];

/// The identity of a portable line (without its newline).
pub fn identity(line: &[u8]) -> Ident {
    let line = strip_nl(line);
    let mut h = Sha256::new();
    let mut scanner = TopScanner::new(UUID_WANT);
    // The uuid sits near the end of big lines; the scanner skips strings with memchr.
    scanner.feed(line);
    match scanner.get_str("uuid").filter(|u| !u.is_empty()) {
        Some(u) => {
            h.update(b"u\0");
            h.update(u.as_bytes());
        }
        None => {
            h.update(b"b\0");
            h.update(line);
        }
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

pub fn strip_nl(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// A multiset of identities.
#[derive(Debug, Default)]
pub struct IdentBag {
    counts: HashMap<Ident, u32>,
}

impl IdentBag {
    pub fn add(&mut self, id: Ident) {
        *self.counts.entry(id).or_default() += 1;
    }
    /// Take one occurrence; false when there is none.
    pub fn take(&mut self, id: &Ident) -> bool {
        match self.counts.get_mut(id) {
            Some(c) if *c > 0 => {
                *c -= 1;
                true
            }
            _ => false,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.counts.values().all(|c| *c == 0)
    }
}

/// Call `f` with each line of `r` (with its `\n`, the last one possibly without).
pub fn for_each_line<R: Read>(r: R, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut br = BufReader::with_capacity(1 << 20, r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = br.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        f(&buf)?;
    }
}

/// One stored segment of a log in the repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seg {
    pub name: String,
    pub oid: Oid,
    pub size: u64,
}

/// Whether `prefix` is the first part of `all` (same names and objects).
pub fn is_prefix(prefix: &[Seg], all: &[Seg]) -> bool {
    prefix.len() <= all.len()
        && prefix
            .iter()
            .zip(all)
            .all(|(a, b)| a.name == b.name && a.oid == b.oid)
}

/// Stream the lines of a stored log (segments in order; a line may span segments).
pub fn for_each_repo_line(
    reader: &mut BlobReader,
    segs: &[Seg],
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut carry: Vec<u8> = Vec::new();
    for s in segs {
        let data = reader.read(&s.oid)?;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &data) {
            if carry.is_empty() {
                f(&data[start..=nl])?;
            } else {
                carry.extend_from_slice(&data[start..=nl]);
                f(&carry)?;
                carry.clear();
            }
            start = nl + 1;
        }
        carry.extend_from_slice(&data[start..]);
    }
    if !carry.is_empty() {
        f(&carry)?;
    }
    Ok(())
}

/// Where a stored log lives and what it holds.
#[derive(Debug, Clone, Default)]
pub struct StoredLog {
    /// Folder of the segments in the repository (`…/transcript`).
    pub dir: String,
    /// Segments in order.
    pub segs: Vec<Seg>,
}

impl StoredLog {
    pub fn size(&self) -> u64 {
        self.segs.iter().map(|s| s.size).sum()
    }
    fn next_number(&self) -> u64 {
        self.segs
            .iter()
            .filter_map(|s| parse_segment_name(&s.name))
            .max()
            .map_or(1, |n| n + 1)
    }
}

enum Content {
    Stored(Oid),
    New(Vec<u8>),
}

struct Pending {
    name: String,
    size: u64,
    content: Content,
}

/// Appends bytes to a stored log as new segments.
///
/// Full segments go to git as soon as they are cut, so memory stays at one segment however much
/// is appended. A small append is kept until [`SegmentWriter::finish`], which compacts the tail
/// so that many small appends do not leave many small files: the last two segments merge while
/// the earlier one is at most twice the later and together they fit in [`SEGMENT_MAX`]. Each byte
/// is rewritten a logarithmic number of times; an append costs about its own size.
pub struct SegmentWriter {
    log: StoredLog,
    next: u64,
    buf: Vec<u8>,
    /// Segments already written to the transaction (name, mark, size).
    flushed: Vec<(String, Mark, u64)>,
    /// Bytes appended.
    pub appended: u64,
    /// Lines appended.
    pub lines: u64,
}

impl SegmentWriter {
    pub fn new(log: StoredLog) -> Self {
        let next = log.next_number();
        SegmentWriter {
            log,
            next,
            buf: Vec::new(),
            flushed: Vec::new(),
            appended: 0,
            lines: 0,
        }
    }

    /// Append bytes (whole lines, or the start of a line that continues in the next call).
    pub fn push(&mut self, data: &[u8], txn: &mut Txn) -> Result<()> {
        self.appended += data.len() as u64;
        self.lines += memchr::memchr_iter(b'\n', data).count() as u64;
        let mut rest = data;
        while !rest.is_empty() {
            let room = SEGMENT_MAX - self.buf.len();
            let take = rest.len().min(room);
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() >= SEGMENT_MAX {
                self.cut(txn)?;
            }
        }
        Ok(())
    }

    /// Close the current segment at a line boundary if it is large (call between lines).
    pub fn maybe_cut(&mut self, txn: &mut Txn) -> Result<()> {
        if self.buf.len() >= SEGMENT_MAX / 2 {
            self.cut(txn)?;
        }
        Ok(())
    }

    fn cut(&mut self, txn: &mut Txn) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mark = txn.blob(&self.buf)?;
        let name = segment_name(self.next);
        self.next += 1;
        self.flushed.push((name, mark, self.buf.len() as u64));
        self.buf.clear();
        Ok(())
    }

    /// Whether anything was appended.
    pub fn is_empty(&self) -> bool {
        self.appended == 0
    }

    /// Record the new segments (and the compacted tail) in `txn`; returns the log's new segment
    /// list, with `None` objects for segments written in this transaction.
    pub fn finish(
        mut self,
        txn: &mut Txn,
        reader: &mut BlobReader,
    ) -> Result<Vec<(String, Option<Oid>, u64)>> {
        let mut out: Vec<(String, Option<Oid>, u64)> = Vec::new();
        if !self.flushed.is_empty() {
            // A large append: its segments are full already; no compaction this time.
            self.cut(txn)?;
            out.extend(
                self.log
                    .segs
                    .iter()
                    .map(|s| (s.name.clone(), Some(s.oid.clone()), s.size)),
            );
            for (name, mark, size) in &self.flushed {
                txn.put(&format!("{}/{name}", self.log.dir), *mark);
                out.push((name.clone(), None, *size));
            }
            return Ok(out);
        }
        let mut all: Vec<Pending> = self
            .log
            .segs
            .iter()
            .map(|s| Pending {
                name: s.name.clone(),
                size: s.size,
                content: Content::Stored(s.oid.clone()),
            })
            .collect();
        if !self.buf.is_empty() {
            let name = segment_name(self.next);
            all.push(Pending {
                name,
                size: self.buf.len() as u64,
                content: Content::New(std::mem::take(&mut self.buf)),
            });
        }
        while all.len() >= 2 {
            let n = all.len();
            if all[n - 2].size + all[n - 1].size > SEGMENT_MAX as u64
                || all[n - 2].size > 2 * all[n - 1].size
            {
                break;
            }
            let (Some(b), Some(a)) = (all.pop(), all.pop()) else {
                break;
            };
            let mut data = match a.content {
                Content::New(d) => d,
                Content::Stored(o) => reader.read(&o)?,
            };
            match b.content {
                Content::New(d) => data.extend_from_slice(&d),
                Content::Stored(o) => data.extend_from_slice(&reader.read(&o)?),
            }
            all.push(Pending {
                name: a.name,
                size: data.len() as u64,
                content: Content::New(data),
            });
        }
        // Stored segments merged into an earlier one disappear.
        let names: std::collections::HashSet<&str> = all.iter().map(|p| p.name.as_str()).collect();
        for s in &self.log.segs {
            if !names.contains(s.name.as_str()) {
                txn.delete(&format!("{}/{}", self.log.dir, s.name));
            }
        }
        for p in all {
            match p.content {
                Content::Stored(o) => out.push((p.name, Some(o), p.size)),
                Content::New(d) => {
                    let m = txn.blob(&d)?;
                    txn.put(&format!("{}/{}", self.log.dir, p.name), m);
                    out.push((p.name, None, p.size));
                }
            }
        }
        Ok(out)
    }
}

/// A line of a local file, remembered for the merge.
#[derive(Debug, Clone, Copy)]
struct LocalLine {
    offset: u64,
    len: u32,
}

/// The result of merging a stored log into a local file.
#[derive(Debug, Default)]
pub struct LocalMerge {
    /// Whether the local file changed (it was written).
    pub written: bool,
    /// Lines that came from the repository.
    pub added_lines: u64,
    /// Local lines the repository lacks (to be pushed).
    pub local_only: u64,
    /// Length of the local file's prefix that is exactly the stored log's lines.
    pub repo_part_len: u64,
    /// New size of the local file.
    pub size: u64,
}

/// Merge a stored log into a local file: the stored lines in their order (taking the local
/// bytes of lines the local file has), then the local lines the log lacks, in local order.
/// `to_portable` gives a local line's portable form (for identity); `to_local` maps a stored line
/// for this machine. The file is replaced atomically, and only when the result differs.
pub fn merge_into_local(
    local: &Path,
    reader: &mut BlobReader,
    segs: &[Seg],
    to_portable: &mut dyn FnMut(&[u8]) -> Vec<u8>,
    to_local: &mut dyn FnMut(&[u8], &mut Vec<u8>),
) -> Result<LocalMerge> {
    let mut lines: Vec<LocalLine> = Vec::new();
    let mut by_id: HashMap<Ident, Vec<u32>> = HashMap::new();
    let mut local_file = match File::open(local) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(crate::os::errors::path_error(e, "read", local).into()),
    };
    let mut local_size = 0u64;
    if let Some(f) = local_file.as_mut() {
        let mut off = 0u64;
        for_each_line(&mut *f, |line| {
            let id = identity(&to_portable(strip_nl(line)));
            by_id.entry(id).or_default().push(lines.len() as u32);
            lines.push(LocalLine {
                offset: off,
                len: line.len() as u32,
            });
            off += line.len() as u64;
            Ok(())
        })
        .with_context(|| format!("cannot read {}", local.display()))?;
        local_size = off;
    }
    // Occurrence queues are consumed front to back.
    let mut cursor: HashMap<Ident, usize> = HashMap::new();
    let mut consumed = vec![false; lines.len()];
    let dir = local
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).at("create the folder", dir)?;
    let mut tmp = crate::os::temp_beside(local)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
    let mut res = LocalMerge::default();
    let mut same = true;
    let mut next_local = 0usize;
    let mut written_len = 0u64;
    let mut last_had_nl = true;
    let mut mapped = Vec::new();
    let mut linebuf = Vec::new();
    let emit = |out: &mut std::io::BufWriter<&mut File>,
                bytes: &[u8],
                last_had_nl: &mut bool,
                written_len: &mut u64|
     -> Result<()> {
        if !*last_had_nl {
            out.write_all(b"\n").at("write a new copy of", local)?;
            *written_len += 1;
        }
        out.write_all(bytes).at("write a new copy of", local)?;
        *written_len += bytes.len() as u64;
        *last_had_nl = bytes.ends_with(b"\n");
        Ok(())
    };
    if lines.is_empty() {
        // Nothing local to merge with: the stored lines, mapped, are the file.
        for_each_repo_line(reader, segs, |line| {
            res.added_lines += 1;
            mapped.clear();
            to_local(line, &mut mapped);
            emit(&mut out, &mapped, &mut last_had_nl, &mut written_len)
        })?;
        same = false;
    } else {
        for_each_repo_line(reader, segs, |line| {
            let id = identity(strip_nl(line));
            let taken = by_id.get(&id).and_then(|q| {
                let c = cursor.entry(id).or_default();
                let idx = *q.get(*c)?;
                *c += 1;
                Some(idx as usize)
            });
            match (taken, local_file.as_mut()) {
                (Some(i), Some(f)) => {
                    consumed[i] = true;
                    if i != next_local {
                        same = false;
                    }
                    next_local = i + 1;
                    let l = lines[i];
                    linebuf.resize(l.len as usize, 0);
                    f.seek(SeekFrom::Start(l.offset))
                        .and_then(|_| f.read_exact(&mut linebuf))
                        .at("read", local)?;
                    emit(&mut out, &linebuf, &mut last_had_nl, &mut written_len)?;
                }
                _ => {
                    same = false;
                    res.added_lines += 1;
                    mapped.clear();
                    to_local(line, &mut mapped);
                    emit(&mut out, &mapped, &mut last_had_nl, &mut written_len)?;
                }
            }
            Ok(())
        })?;
    }
    res.repo_part_len = written_len;
    for (i, l) in lines.iter().enumerate() {
        if consumed[i] {
            continue;
        }
        res.local_only += 1;
        if i != next_local {
            same = false;
        }
        next_local = i + 1;
        if let Some(f) = local_file.as_mut() {
            linebuf.resize(l.len as usize, 0);
            f.seek(SeekFrom::Start(l.offset))
                .and_then(|_| f.read_exact(&mut linebuf))
                .at("read", local)?;
            emit(&mut out, &linebuf, &mut last_had_nl, &mut written_len)?;
        }
    }
    out.flush().at("write a new copy of", local)?;
    drop(out);
    res.size = written_len;
    if same && local_file.is_some() && written_len == local_size {
        return Ok(res);
    }
    tmp.as_file_mut()
        .sync_data()
        .at("write a new copy of", local)?;
    tmp.persist(local)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", local.display()))?;
    res.written = true;
    Ok(res)
}

/// Append stored lines to a local file that holds exactly the log's earlier lines: copy, append,
/// replace atomically. Returns the number of lines added.
pub fn append_to_local(
    local: &Path,
    reader: &mut BlobReader,
    extra: &[Seg],
    ends_with_newline: bool,
    to_local: &mut dyn FnMut(&[u8], &mut Vec<u8>),
) -> Result<u64> {
    let mut tmp = crate::os::temp_beside(local)?;
    {
        let mut src =
            File::open(local).with_context(|| format!("cannot read {}", local.display()))?;
        std::io::copy(&mut src, tmp.as_file_mut()).at("copy", local)?;
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
    let mut added = 0u64;
    let mut need_nl = !ends_with_newline;
    let mut mapped = Vec::new();
    for_each_repo_line(reader, extra, |line| {
        if need_nl {
            out.write_all(b"\n").at("write a new copy of", local)?;
            need_nl = false;
        }
        mapped.clear();
        to_local(line, &mut mapped);
        out.write_all(&mapped).at("write a new copy of", local)?;
        need_nl = !mapped.ends_with(b"\n");
        added += 1;
        Ok(())
    })?;
    out.flush().at("write a new copy of", local)?;
    drop(out);
    tmp.as_file_mut()
        .sync_data()
        .at("write a new copy of", local)?;
    tmp.persist(local)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", local.display()))?;
    Ok(added)
}

/// FNV-1a of the (up to) 64 bytes before `end`: tells whether a file still starts the same.
pub fn fingerprint(file: &mut File, end: u64) -> std::io::Result<u64> {
    let start = end.saturating_sub(64);
    let mut buf = vec![0u8; (end - start) as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut buf)?;
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in &buf {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uses_top_level_uuid() {
        let a = identity(br#"{"uuid":"x","text":"one"}"#);
        let b = identity(br#"{"text":"two","uuid":"x"}"#);
        assert_eq!(a, b);
        let nested = identity(br#"{"m":{"uuid":"x"}}"#);
        assert_ne!(a, nested);
        assert_eq!(identity(b"junk\n"), identity(b"junk"));
        assert_ne!(identity(b"junk"), identity(b"junk2"));
    }

    /// The log stored under `t/` at a commit.
    fn stored(git: &crate::store::Git, head: Option<&Oid>) -> StoredLog {
        let mut segs: Vec<Seg> = match head {
            Some(h) => git
                .ls_tree(h, Some("t"))
                .unwrap()
                .into_iter()
                .map(|e| Seg {
                    name: e.path_str().unwrap().trim_start_matches("t/").to_string(),
                    oid: e.oid,
                    size: e.size.unwrap(),
                })
                .collect(),
            None => Vec::new(),
        };
        segs.sort_by(|a, b| a.name.cmp(&b.name));
        StoredLog {
            dir: "t".into(),
            segs,
        }
    }

    /// Append to a stored log through the writer, commit, and read the log back.
    fn append(git: &crate::store::Git, head: Option<&Oid>, data: &[u8]) -> (Oid, StoredLog) {
        let mut reader = git.reader().unwrap();
        let mut txn = git.transaction().unwrap();
        let mut w = SegmentWriter::new(stored(git, head));
        for line in data.split_inclusive(|b| *b == b'\n') {
            w.push(line, &mut txn).unwrap();
            w.maybe_cut(&mut txn).unwrap();
        }
        w.finish(&mut txn, &mut reader).unwrap();
        let c = txn.commit(head, "t <t@t>", "x").unwrap();
        let log = stored(git, Some(&c));
        (c, log)
    }

    #[test]
    fn segments_stay_few_and_bounded_and_concatenate_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let git = crate::store::Git::init_bare(&dir.path().join("r.git")).unwrap();
        let mut head = None;
        let mut want = Vec::new();
        let mut log = StoredLog::default();
        for i in 0..64 {
            let line = format!("{{\"uuid\":\"{i}\",\"pad\":\"{}\"}}\n", "x".repeat(100));
            want.extend_from_slice(line.as_bytes());
            let (c, l) = append(&git, head.as_ref(), line.as_bytes());
            head = Some(c);
            log = l;
            assert!(
                log.segs.len() <= 8,
                "after {} appends: {} segments",
                i + 1,
                log.segs.len()
            );
        }
        let mut reader = git.reader().unwrap();
        let mut got = Vec::new();
        for_each_repo_line(&mut reader, &log.segs, |l| {
            got.extend_from_slice(l);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, want);
        // A large append is cut into segments no larger than SEGMENT_MAX.
        let big_line = format!("{{\"uuid\":\"big\",\"pad\":\"{}\"}}\n", "y".repeat(1 << 20));
        let big: Vec<u8> = big_line.as_bytes().repeat(40);
        let (_, log) = append(&git, head.as_ref(), &big);
        assert!(log.segs.iter().all(|s| s.size <= SEGMENT_MAX as u64));
        assert_eq!(log.size(), (want.len() + big.len()) as u64);
    }

    #[test]
    fn bag_counts_occurrences() {
        let mut bag = IdentBag::default();
        let id = identity(b"x");
        bag.add(id);
        bag.add(id);
        assert!(bag.take(&id) && bag.take(&id) && !bag.take(&id));
        assert!(bag.is_empty());
    }
}
