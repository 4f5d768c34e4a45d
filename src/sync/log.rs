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

use super::lines::{Chunk, HUGE_LINE, Replay, Sink, for_each_chunk, replay_file};
use super::push::split_lines;
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

/// [`identity`] of a line fed in pieces (a line too large to hold); its final newline, if
/// any, is left out as [`identity`] leaves it out.
pub struct IdentityBuilder {
    scanner: TopScanner,
    bytes: Sha256,
    /// The last piece ended with a newline not yet known to be the line's last byte.
    held_nl: bool,
}

impl Default for IdentityBuilder {
    fn default() -> Self {
        let mut bytes = Sha256::new();
        bytes.update(b"b\0");
        IdentityBuilder {
            scanner: TopScanner::new(UUID_WANT),
            bytes,
            held_nl: false,
        }
    }
}

impl IdentityBuilder {
    pub fn feed(&mut self, piece: &[u8]) {
        if piece.is_empty() {
            return;
        }
        if std::mem::take(&mut self.held_nl) {
            self.take(b"\n");
        }
        let body = match piece.strip_suffix(b"\n") {
            Some(b) => {
                self.held_nl = true;
                b
            }
            None => piece,
        };
        self.take(body);
    }

    fn take(&mut self, bytes: &[u8]) {
        self.scanner.feed(bytes);
        self.bytes.update(bytes);
    }

    pub fn finish(self) -> Ident {
        let d = match self.scanner.get_str("uuid").filter(|u| !u.is_empty()) {
            Some(u) => {
                let mut h = Sha256::new();
                h.update(b"u\0");
                h.update(u.as_bytes());
                h.finalize()
            }
            None => self.bytes.finalize(),
        };
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        out
    }
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

/// What [`for_each_repo_item`] hands over.
#[derive(Debug)]
pub enum RepoItem<'a> {
    Line(&'a [u8]),
    /// A line longer than [`HUGE_LINE`], to be streamed with [`replay_repo`].
    Huge(RepoSpan),
}

/// Where a stored line starts (a segment and an offset in it) and how long it is.
#[derive(Debug, Clone, Copy)]
pub struct RepoSpan {
    pub seg: usize,
    pub offset: usize,
    pub len: u64,
}

/// [`for_each_repo_line`], except that a line longer than [`HUGE_LINE`] (one spanning
/// segments) is not assembled: it comes as a [`RepoSpan`] of `segs`. `f` gets the reader back
/// to replay it.
pub fn for_each_repo_item(
    reader: &mut BlobReader,
    segs: &[Seg],
    mut f: impl FnMut(RepoItem<'_>, &mut BlobReader) -> Result<()>,
) -> Result<()> {
    enum Open {
        None,
        Carry(Vec<u8>, usize, usize),
        Huge(RepoSpan),
    }
    let mut open = Open::None;
    for (si, s) in segs.iter().enumerate() {
        let data = reader.read(&s.oid)?;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &data) {
            match std::mem::replace(&mut open, Open::None) {
                Open::None => f(RepoItem::Line(&data[start..=nl]), reader)?,
                Open::Carry(mut carry, _, _) => {
                    carry.extend_from_slice(&data[start..=nl]);
                    f(RepoItem::Line(&carry), reader)?;
                }
                Open::Huge(mut span) => {
                    span.len += (nl + 1 - start) as u64;
                    f(RepoItem::Huge(span), reader)?;
                }
            }
            start = nl + 1;
        }
        let tail = &data[start..];
        if tail.is_empty() {
            continue;
        }
        open = match std::mem::replace(&mut open, Open::None) {
            Open::None => Open::Carry(tail.to_vec(), si, start),
            Open::Carry(mut carry, cs, co) => {
                carry.extend_from_slice(tail);
                Open::Carry(carry, cs, co)
            }
            Open::Huge(mut span) => {
                span.len += tail.len() as u64;
                Open::Huge(span)
            }
        };
        if let Open::Carry(carry, seg, offset) = &open
            && carry.len() > HUGE_LINE
        {
            open = Open::Huge(RepoSpan {
                seg: *seg,
                offset: *offset,
                len: carry.len() as u64,
            });
        }
    }
    match open {
        Open::None => Ok(()),
        Open::Carry(carry, _, _) => f(RepoItem::Line(&carry), reader),
        Open::Huge(span) => f(RepoItem::Huge(span), reader),
    }
}

/// A piece of a stored log in this machine's form ([`for_each_local`]).
#[derive(Debug)]
pub enum LocalPiece<'a> {
    /// A whole line, with its newline (the last line of a log may lack it).
    Line(&'a [u8]),
    /// A part of a line longer than [`HUGE_LINE`], in order (the line is never held whole;
    /// its last part ends with its newline).
    HugePart(&'a [u8]),
}

/// Stream a stored log in this machine's form: every line's paths mapped by `mapper` (what
/// pull writes), a line longer than [`HUGE_LINE`] in pieces. The one reading of stored lines
/// for people: `restore`, `restore show` and the archive (`show`, `export`, `search`, MCP).
pub fn for_each_local(
    reader: &mut BlobReader,
    segs: &[Seg],
    mapper: &crate::paths::Mapper,
    mut f: impl FnMut(LocalPiece<'_>) -> Result<()>,
) -> Result<()> {
    use crate::paths::{Context, Direction, MapStream};
    let mut mapped = Vec::new();
    for_each_repo_item(reader, segs, |item, reader| match item {
        RepoItem::Line(l) => {
            mapped.clear();
            mapper.to_local(l, Context::Json, &mut mapped);
            f(LocalPiece::Line(&mapped))
        }
        RepoItem::Huge(span) => {
            let mut map = MapStream::new(mapper, Direction::ToLocal, Context::Json);
            replay_repo(reader, segs, span, &mut |piece| {
                mapped.clear();
                map.feed(piece, &mut mapped);
                f(LocalPiece::HugePart(&mapped))
            })?;
            mapped.clear();
            map.finish(&mut mapped);
            f(LocalPiece::HugePart(&mapped))
        }
    })
}

/// Stream a stored line's bytes to `sink`, a segment's part at a time.
pub fn replay_repo(
    reader: &mut BlobReader,
    segs: &[Seg],
    span: RepoSpan,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let mut left = span.len;
    let mut offset = span.offset;
    for s in &segs[span.seg.min(segs.len())..] {
        if left == 0 {
            break;
        }
        let data = reader.read(&s.oid)?;
        let part = data.get(offset..).unwrap_or_default();
        let n = (part.len() as u64).min(left) as usize;
        for piece in part[..n].chunks(1 << 20) {
            sink(piece)?;
        }
        left -= n as u64;
        offset = 0;
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
        let name = segment_name(self.next);
        let mark = txn.blob_for(&format!("{}/{name}", self.log.dir), &self.buf)?;
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
                txn.put(&format!("{}/{name}", self.log.dir), *mark)?;
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
                txn.delete(&format!("{}/{}", self.log.dir, s.name))?;
            }
        }
        for p in all {
            match p.content {
                Content::Stored(o) => out.push((p.name, Some(o), p.size)),
                Content::New(d) => {
                    let path = format!("{}/{}", self.log.dir, p.name);
                    let m = txn.blob_for(&path, &d)?;
                    txn.put(&path, m)?;
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
    len: u64,
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

/// How lines go between this machine's form and the stored form, for merges (the engine's
/// mapping and redaction), whole or, for lines too large to hold, streamed.
pub trait Codec {
    /// A local line's stored form (for its identity).
    fn outbound(&mut self, line: &[u8]) -> Vec<u8>;
    /// A stored line's local form, appended to `out`.
    fn inbound(&mut self, line: &[u8], out: &mut Vec<u8>);
    fn outbound_huge(&mut self, replay: &mut Replay<'_>, sink: &mut Sink<'_>) -> Result<()>;
    fn inbound_huge(&mut self, replay: &mut Replay<'_>, sink: &mut Sink<'_>) -> Result<()>;
}

/// Writes a new copy of a local log, adding a newline between lines where one lacks it.
struct LineOut<'a> {
    out: std::io::BufWriter<&'a mut File>,
    path: &'a Path,
    last_had_nl: bool,
    len: u64,
}

impl LineOut<'_> {
    fn line(&mut self, bytes: &[u8]) -> Result<()> {
        self.begin()?;
        self.piece(bytes)
    }

    /// Start a line that comes in pieces.
    fn begin(&mut self) -> Result<()> {
        if !self.last_had_nl {
            self.out
                .write_all(b"\n")
                .at("write a new copy of", self.path)?;
            self.len += 1;
            self.last_had_nl = true;
        }
        Ok(())
    }

    fn piece(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.out
            .write_all(bytes)
            .at("write a new copy of", self.path)?;
        self.len += bytes.len() as u64;
        self.last_had_nl = bytes.ends_with(b"\n");
        Ok(())
    }

    /// Write a stored line in this machine's form (`mapped` is scratch space).
    fn stored(
        &mut self,
        item: RepoItem<'_>,
        reader: &mut BlobReader,
        segs: &[Seg],
        codec: &mut dyn Codec,
        mapped: &mut Vec<u8>,
    ) -> Result<()> {
        match item {
            RepoItem::Line(line) => {
                mapped.clear();
                codec.inbound(line, mapped);
                self.line(mapped)
            }
            RepoItem::Huge(span) => {
                self.begin()?;
                let mut replay = |sink: &mut Sink<'_>| replay_repo(reader, segs, span, sink);
                codec.inbound_huge(&mut replay, &mut |piece| self.piece(piece))
            }
        }
    }

    /// Copy a line of the local file.
    fn local_line(&mut self, f: &mut File, l: LocalLine, buf: &mut Vec<u8>) -> Result<()> {
        self.begin()?;
        f.seek(SeekFrom::Start(l.offset)).at("read", self.path)?;
        let mut left = l.len;
        while left > 0 {
            let n = left.min(1 << 20) as usize;
            buf.resize(n, 0);
            f.read_exact(buf).at("read", self.path)?;
            self.piece(buf)?;
            left -= n as u64;
        }
        Ok(())
    }
}

/// Merge a stored log into a local file: the stored lines in their order (taking the local
/// bytes of lines the local file has), then the local lines the log lacks, in local order.
/// `codec` maps lines between the two forms (a local line's stored form gives its identity).
/// The file is replaced atomically, and only when the result differs. No line is held whole
/// if it is longer than [`HUGE_LINE`].
pub fn merge_into_local(
    local: &Path,
    reader: &mut BlobReader,
    segs: &[Seg],
    codec: &mut dyn Codec,
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
        let size = f.metadata().at("read the metadata of", local)?.len();
        let mut add = |id: Ident, offset: u64, len: u64| {
            by_id.entry(id).or_default().push(lines.len() as u32);
            lines.push(LocalLine { offset, len });
        };
        for_each_chunk(f, local, 0, size, 4 << 20, HUGE_LINE, |c| match c {
            Chunk::Lines(chunk, mut off) => {
                for line in split_lines(chunk) {
                    add(
                        identity(&codec.outbound(strip_nl(line))),
                        off,
                        line.len() as u64,
                    );
                    off += line.len() as u64;
                }
                Ok(())
            }
            Chunk::Huge { start, end } => {
                let mut id = IdentityBuilder::default();
                let mut replay = |sink: &mut Sink<'_>| replay_file(local, start, end, sink);
                codec.outbound_huge(&mut replay, &mut |piece| {
                    id.feed(piece);
                    Ok(())
                })?;
                add(id.finish(), start, end - start);
                Ok(())
            }
        })?;
        local_size = size;
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
    let mut out = LineOut {
        out: std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut()),
        path: local,
        last_had_nl: true,
        len: 0,
    };
    let mut res = LocalMerge::default();
    let mut same = true;
    let mut next_local = 0usize;
    let mut mapped = Vec::new();
    let mut linebuf = Vec::new();
    if lines.is_empty() {
        // Nothing local to merge with: the stored lines, mapped, are the file.
        for_each_repo_item(reader, segs, |item, reader| {
            res.added_lines += 1;
            out.stored(item, reader, segs, codec, &mut mapped)
        })?;
        same = false;
    } else {
        for_each_repo_item(reader, segs, |item, reader| {
            let id = match &item {
                RepoItem::Line(line) => identity(strip_nl(line)),
                RepoItem::Huge(span) => {
                    let mut id = IdentityBuilder::default();
                    replay_repo(reader, segs, *span, &mut |piece| {
                        id.feed(piece);
                        Ok(())
                    })?;
                    id.finish()
                }
            };
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
                    out.local_line(f, lines[i], &mut linebuf)?;
                }
                _ => {
                    same = false;
                    res.added_lines += 1;
                    out.stored(item, reader, segs, codec, &mut mapped)?;
                }
            }
            Ok(())
        })?;
    }
    res.repo_part_len = out.len;
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
            out.local_line(f, *l, &mut linebuf)?;
        }
    }
    out.out.flush().at("write a new copy of", local)?;
    let written_len = out.len;
    drop(out);
    res.size = written_len;
    if same && local_file.is_some() && written_len == local_size {
        return Ok(res);
    }
    crate::os::sync_before_rename(tmp.as_file()).at("write a new copy of", local)?;
    // Our own handle on the file to replace is closed first (Windows refuses the replace).
    drop(local_file);
    crate::os::persist(tmp, local)
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
    codec: &mut dyn Codec,
) -> Result<u64> {
    let mut tmp = crate::os::temp_beside(local)?;
    {
        let mut src =
            File::open(local).with_context(|| format!("cannot read {}", local.display()))?;
        std::io::copy(&mut src, tmp.as_file_mut()).at("copy", local)?;
    }
    let mut out = LineOut {
        out: std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut()),
        path: local,
        last_had_nl: ends_with_newline,
        len: 0,
    };
    let mut added = 0u64;
    let mut mapped = Vec::new();
    for_each_repo_item(reader, extra, |item, reader| {
        added += 1;
        out.stored(item, reader, extra, codec, &mut mapped)
    })?;
    out.out.flush().at("write a new copy of", local)?;
    drop(out);
    crate::os::sync_before_rename(tmp.as_file()).at("write a new copy of", local)?;
    crate::os::persist(tmp, local)
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
    fn identity_of_pieces_is_identity_of_the_line() {
        let lines: [&[u8]; 5] = [
            b"{\"type\":\"user\",\"message\":\"a\\nb\",\"uuid\":\"u-1\"}\n",
            b"{\"type\":\"summary\",\"summary\":\"no uuid\"}\n",
            b"{\"type\":\"summary\",\"summary\":\"no newline\"}",
            b"not json at all\n\n",
            b"{\"uuid\":\"\",\"x\":1}\n",
        ];
        for line in lines {
            for cut in 1..line.len() {
                let mut b = IdentityBuilder::default();
                for piece in line.chunks(cut) {
                    b.feed(piece);
                }
                assert_eq!(b.finish(), identity(line), "{line:?} in pieces of {cut}");
            }
        }
        assert_ne!(identity(lines[1]), identity(lines[2]));
    }

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

    use crate::store::Codec as Stored;

    /// The log stored under `history/` at a commit.
    fn stored(git: &crate::store::Git, codec: &Stored, head: Option<&Oid>) -> StoredLog {
        let mut segs: Vec<Seg> = match head {
            Some(h) => {
                crate::store::objects::ls_tree(git, codec, h, Some("history"), &Default::default())
                    .unwrap()
                    .into_iter()
                    .map(|e| Seg {
                        name: e
                            .path_str()
                            .unwrap()
                            .trim_start_matches("history/")
                            .to_string(),
                        oid: e.oid,
                        size: e.size.unwrap(),
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        segs.sort_by(|a, b| a.name.cmp(&b.name));
        StoredLog {
            dir: "history".into(),
            segs,
        }
    }

    /// Append to a stored log through the writer, commit, and read the log back.
    fn append(
        git: &crate::store::Git,
        codec: &Stored,
        head: Option<&Oid>,
        data: &[u8],
    ) -> (Oid, StoredLog) {
        let mut reader = BlobReader::new(git.reader().unwrap(), codec.clone());
        let mut txn = Txn::new(git, codec.clone(), head, Default::default()).unwrap();
        let mut w = SegmentWriter::new(stored(git, codec, head));
        for line in data.split_inclusive(|b| *b == b'\n') {
            w.push(line, &mut txn).unwrap();
            w.maybe_cut(&mut txn).unwrap();
        }
        w.finish(&mut txn, &mut reader).unwrap();
        let c = txn.commit(head, "t <t@t>", "x").unwrap();
        let log = stored(git, codec, Some(&c));
        (c, log)
    }

    #[test]
    fn segments_stay_few_and_bounded_and_concatenate_to_the_log() {
        segments_of(Stored::Plain);
    }

    #[test]
    fn packed_segments_stay_few_and_bounded_and_concatenate_to_the_log() {
        segments_of(Stored::Packed);
    }

    #[test]
    fn sealed_segments_stay_few_and_bounded_and_concatenate_to_the_log() {
        segments_of(Stored::Sealed(std::sync::Arc::new(
            crate::store::seal::Seal::generate(),
        )));
    }

    fn segments_of(codec: Stored) {
        let dir = tempfile::tempdir().unwrap();
        let git = crate::store::Git::init_bare(&dir.path().join("r.git")).unwrap();
        let mut head = None;
        let mut want = Vec::new();
        let mut log = StoredLog::default();
        for i in 0..64 {
            let line = format!("{{\"uuid\":\"{i}\",\"pad\":\"{}\"}}\n", "x".repeat(100));
            want.extend_from_slice(line.as_bytes());
            let (c, l) = append(&git, &codec, head.as_ref(), line.as_bytes());
            head = Some(c);
            log = l;
            assert!(
                log.segs.len() <= 8,
                "after {} appends: {} segments",
                i + 1,
                log.segs.len()
            );
        }
        let mut reader = BlobReader::new(git.reader().unwrap(), codec.clone());
        let mut got = Vec::new();
        for_each_repo_line(&mut reader, &log.segs, |l| {
            got.extend_from_slice(l);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, want);
        assert_eq!(log.size(), want.len() as u64, "plaintext sizes");
        // A large append is cut into segments no larger than SEGMENT_MAX.
        let big_line = format!("{{\"uuid\":\"big\",\"pad\":\"{}\"}}\n", "y".repeat(1 << 20));
        let big: Vec<u8> = big_line.as_bytes().repeat(40);
        let (c, log) = append(&git, &codec, head.as_ref(), &big);
        assert!(log.segs.iter().all(|s| s.size <= SEGMENT_MAX as u64));
        assert_eq!(log.size(), (want.len() + big.len()) as u64);
        let raw = git.ls_tree(&c, None).unwrap();
        if let Stored::Packed = codec {
            // Every segment is stored compressed, under a name carrying its plaintext size.
            let mut r = git.reader().unwrap();
            assert!(!raw.is_empty());
            for e in &raw {
                let p = e.path_str().unwrap();
                let (logical, size) = crate::store::objects::unpacked_path(p).unwrap();
                let seg = log
                    .segs
                    .iter()
                    .find(|s| format!("history/{}", s.name) == logical);
                assert_eq!(seg.map(|s| s.size), Some(size), "{p}");
                let b = r.read(&e.oid).unwrap();
                assert_eq!(
                    crate::store::objects::unpack(&b).unwrap().len() as u64,
                    size
                );
            }
        }
        if codec.seal().is_some() {
            // Nothing of the content or the names is in the clear.
            assert!(raw.iter().all(|e| !e.path_str().unwrap().contains("jsonl")));
            let mut r = git.reader().unwrap();
            assert!(raw.iter().all(|e| {
                let b = r.read(&e.oid).unwrap();
                !b.windows(4).any(|w| w == b"uuid")
            }));
        }
    }

    /// Lines as they are (no mapping).
    struct Plain;

    impl Codec for Plain {
        fn outbound(&mut self, line: &[u8]) -> Vec<u8> {
            line.to_vec()
        }
        fn inbound(&mut self, line: &[u8], out: &mut Vec<u8>) {
            out.extend_from_slice(line);
        }
        fn outbound_huge(&mut self, replay: &mut Replay<'_>, sink: &mut Sink<'_>) -> Result<()> {
            replay(sink)
        }
        fn inbound_huge(&mut self, replay: &mut Replay<'_>, sink: &mut Sink<'_>) -> Result<()> {
            replay(sink)
        }
    }

    /// A merge replaces the local file it has just read (on Windows, only once its own handle
    /// on it is closed: the replace is refused with "Access denied" while it is open).
    #[test]
    fn a_merge_replaces_the_local_file_it_read_with_the_union() {
        let dir = tempfile::tempdir().unwrap();
        let git = crate::store::Git::init_bare(&dir.path().join("r.git")).unwrap();
        let codec = Stored::Packed;
        let (_, log) = append(&git, &codec, None, b"{\"uuid\":\"a\"}\n{\"uuid\":\"b\"}\n");
        let local = dir.path().join("s.jsonl");
        std::fs::write(&local, b"{\"uuid\":\"a\"}\n{\"uuid\":\"mine\"}\n").unwrap();
        let mut reader = BlobReader::new(git.reader().unwrap(), codec.clone());
        let res = merge_into_local(&local, &mut reader, &log.segs, &mut Plain).unwrap();
        assert!(res.written);
        assert_eq!((res.added_lines, res.local_only), (1, 1));
        assert_eq!(
            std::fs::read(&local).unwrap(),
            b"{\"uuid\":\"a\"}\n{\"uuid\":\"b\"}\n{\"uuid\":\"mine\"}\n"
        );
        // Again: nothing new, nothing written.
        let res = merge_into_local(&local, &mut reader, &log.segs, &mut Plain).unwrap();
        assert!(!res.written);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporary file left beside");
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
