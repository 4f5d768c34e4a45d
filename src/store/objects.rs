//! The object interface of the sync repository: the one place that turns what the engine
//! reads and writes — files by repository path, their plaintext, their plaintext sizes — into
//! git blobs, trees and paths, and back.
//!
//! How, is the repository's [`Codec`]:
//!
//! * **Plain** (format version 1): the identity.
//! * **Packed** (version 3): the segments of logs (`…/transcript/000001.jsonl`, see
//!   [`layout::is_segment_path`]) are stored zstd-compressed under a name carrying their
//!   plaintext size (`000001.<size>.jsonl.zst`); every other file is stored as it is.
//! * **Sealed** (version 2, encrypted, [`Seal`]): every blob is sealed on the way in and opened
//!   on the way out, and every path component is a sealed name (a file's carrying its
//!   plaintext size).
//!
//! Nothing above this module ever sees ciphertext, a compressed segment or a stored name.
//! Object ids stay visible as opaque version handles: the same blob is the same version (a
//! stored segment is written once and never encrypted or compressed again).
//!
//! Reading a plain repository does not depend on its version: a compressed segment is known by
//! its stored name wherever it is (a repository that lost its marker, say), and its blob is
//! decompressed whenever it is read — the blobs listings named as compressed segments are
//! remembered for the life of the process ([`is_packed`]), since readers get object ids only.
//!
//! Two names stay in the clear at the root of an encrypted repository: the format marker
//! `ccsync.json` (so that any ccsync can tell the repository is encrypted) and `keys/` (the
//! wrapped keys, see [`super::keys`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, anyhow};

use super::git::{self, Git, Mark, Oid, TreeEntry};
use super::layout;
use super::seal::{MAX_PLAINTEXT, Seal, SealError};

/// How a repository's files are stored (see the module's documentation).
#[derive(Debug, Clone)]
pub enum Codec {
    /// As they are (format version 1).
    Plain,
    /// Log segments zstd-compressed (format version 3).
    Packed,
    /// Everything sealed (format version 2, encrypted).
    Sealed(Arc<Seal>),
}

impl Codec {
    /// The seal of an encrypted repository.
    pub fn seal(&self) -> Option<&Arc<Seal>> {
        match self {
            Codec::Sealed(s) => Some(s),
            _ => None,
        }
    }
}

/// Blobs this process saw named as compressed segments (object ids are content hashes, so
/// this holds for every repository and every commit).
static PACKED: std::sync::LazyLock<std::sync::RwLock<HashSet<Oid>>> =
    std::sync::LazyLock::new(Default::default);

/// Remember that `oid` is a compressed segment.
fn note_packed(oid: &Oid) {
    if let Ok(mut p) = PACKED.write() {
        p.insert(oid.clone());
    }
}

/// Whether `oid` was named as a compressed segment by a listing this process read.
pub fn is_packed(oid: &Oid) -> bool {
    PACKED.read().is_ok_and(|p| p.contains(oid))
}

/// Compress a segment as a version-3 repository stores it (the content size is in the frame
/// header).
pub fn pack(plain: &[u8]) -> Result<Vec<u8>> {
    zstd::bulk::compress(plain, super::seal::ZSTD_LEVEL)
        .map_err(|e| anyhow!("cannot compress a segment: {e}"))
}

/// A compressed segment's plaintext (at most [`MAX_PLAINTEXT`] bytes), or why not.
pub fn unpack(packed: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read as _;
    match zstd::zstd_safe::get_frame_content_size(packed) {
        Ok(Some(n)) if n > MAX_PLAINTEXT => {
            return Err(format!(
                "it says it holds {n} bytes, more than {MAX_PLAINTEXT}"
            ));
        }
        Ok(Some(n)) => {
            // One decompression context per thread, reused: making one allocates and faults in
            // more than a small segment takes to decompress.
            thread_local! {
                static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            return DCTX.with(|cell| {
                let mut slot = cell.try_borrow_mut().map_err(|e| format!("zstd: {e}"))?;
                let dctx = match slot.as_mut() {
                    Some(d) => d,
                    None => slot
                        .insert(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?),
                };
                dctx.decompress(packed, n as usize)
                    .map_err(|e| format!("zstd: {e}"))
            });
        }
        Ok(None) => {}
        Err(_) => return Err("zstd: not a zstd frame".into()),
    }
    let dec = zstd::stream::read::Decoder::with_buffer(packed).map_err(|e| format!("zstd: {e}"))?;
    let mut out = Vec::new();
    dec.take(MAX_PLAINTEXT + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() as u64 > MAX_PLAINTEXT {
        return Err(format!("it holds more than {MAX_PLAINTEXT} bytes"));
    }
    Ok(out)
}

/// Decompress the compressed segment `oid`, or say which object is damaged.
fn unpack_object(oid: &Oid, data: &[u8]) -> Result<Vec<u8>> {
    unpack(data).map_err(|why| {
        anyhow::Error::new(StoreError::Damaged(format!(
            "object {} of the sync repository (a compressed segment) does not open: {why}",
            oid.short()
        )))
    })
}

/// The stored path of a compressed segment at logical `path` of `size` plaintext bytes
/// (`None`: `path` is not a segment's).
pub fn packed_path(path: &str, size: u64) -> Option<String> {
    if !layout::is_segment_path(path) {
        return None;
    }
    let (dir, name) = path.rsplit_once('/')?;
    Some(format!(
        "{dir}/{}",
        layout::packed_segment_name(name, size)?
    ))
}

/// A stored path back, when it names a compressed segment: its logical path and plaintext
/// size. Any other stored path (a malformed `.zst` name, one outside a log folder) is not one,
/// and stays as it is.
pub fn unpacked_path(stored: &str) -> Option<(String, u64)> {
    if !stored.ends_with(".zst") {
        return None;
    }
    let (dir, name) = stored.rsplit_once('/')?;
    let (seg, size) = layout::unpack_segment_name(name)?;
    let logical = format!("{dir}/{seg}");
    layout::is_segment_path(&logical).then_some((logical, size))
}

/// The root folder of wrapped keys (in the clear).
pub const KEYS_DIR: &str = "keys";

/// What a failure at the store's boundary was: the kinds a caller may act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// This machine has no key for the encrypted repository (the sentence says what to do).
    #[error("{0}")]
    NoKey(String),
    /// This machine's key does not open the repository (another repository's, or a wrong
    /// passphrase).
    #[error("{0}")]
    WrongKey(String),
    /// The remote kept rejecting the push (other machines kept pushing).
    #[error("{0}")]
    Rejected(String),
    /// The remote could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// A stored file or name does not open: damaged, or not written by ccsync.
    #[error("{0}")]
    Damaged(String),
}

/// The [`StoreError`] anywhere in an error's chain.
pub fn store_error(e: &anyhow::Error) -> Option<&StoreError> {
    e.chain().find_map(|c| c.downcast_ref::<StoreError>())
}

/// Whether a repository path is kept in the clear in an encrypted repository.
pub fn clear_path(path: &str) -> bool {
    path == super::format::FORMAT_FILE || path == KEYS_DIR || path.starts_with("keys/")
}

/// The logical path given to a stored entry whose name does not open (never a path the engine
/// uses: `check_rel_path` refuses it, and it is under no folder of ours).
pub(crate) const UNOPENED: &str = "?sealed";

/// Reads stored files as plaintext (a long-lived `git cat-file --batch`).
pub struct BlobReader {
    raw: git::BlobReader,
    codec: Codec,
}

impl BlobReader {
    pub(crate) fn new(raw: git::BlobReader, codec: Codec) -> Self {
        BlobReader { raw, codec }
    }

    /// A reader of a plain repository.
    pub fn plain(git: &Git) -> Result<BlobReader> {
        Ok(BlobReader::new(git.reader()?, Codec::Plain))
    }

    /// The plaintext of a stored file (a compressed segment is decompressed here, in the
    /// reader's thread).
    pub fn read(&mut self, oid: &Oid) -> Result<Vec<u8>> {
        let data = self.raw.read(oid)?;
        match &self.codec {
            Codec::Sealed(seal) => open(seal, oid, &data),
            Codec::Plain | Codec::Packed if is_packed(oid) => unpack_object(oid, &data),
            Codec::Plain | Codec::Packed => Ok(data),
        }
    }

    /// The stored bytes as they are (the clear files of an encrypted repository).
    pub fn read_clear(&mut self, oid: &Oid) -> Result<Vec<u8>> {
        self.raw.read(oid)
    }
}

/// Open sealed bytes, or say which object did not open.
fn open(seal: &Seal, oid: &Oid, data: &[u8]) -> Result<Vec<u8>> {
    seal.open(data).map_err(|e| {
        let what = format!("object {} of the sync repository", oid.short());
        anyhow::Error::new(match e {
            SealError::WrongKey => StoreError::WrongKey(format!(
                "{what} does not open with this machine's key of the encrypted repository"
            )),
            SealError::Corrupt(why) => StoreError::Damaged(format!("{what} does not open: {why}")),
        })
    })
}

/// The stored form of one logical path.
#[derive(Debug, Clone)]
struct Stored {
    path: String,
}

/// A commit's files, logical path → stored path: every file of an encrypted repository, the
/// segments of a plain one.
#[derive(Debug, Default)]
pub struct Listing {
    files: HashMap<String, String>,
    /// Whether it was read with a seal (a repository converted in place is listed both ways).
    sealed: bool,
}

/// The last listing read, by commit: the engine lists a head and then builds on it.
pub type ListingCache = Arc<Mutex<Option<(Oid, Arc<Listing>)>>>;

/// A `fast-import` transaction on logical paths: write files, record tree changes, commit.
pub struct Txn {
    raw: git::Txn,
    codec: Codec,
    git: Git,
    /// The commit this transaction builds on.
    base: Option<Oid>,
    cache: ListingCache,
    /// Plaintext sizes of the blobs written.
    sizes: HashMap<Mark, u64>,
    /// Logical files set (`Some(stored path)`) or removed (`None`) so far.
    set: HashMap<String, Option<Stored>>,
    /// Logical paths set or removed so far.
    touched: HashSet<String>,
    /// Blobs written in the clear.
    clear: HashSet<Mark>,
    /// Blobs written as compressed segments.
    packed: HashSet<Mark>,
}

impl Txn {
    pub(crate) fn new(
        git: &Git,
        codec: Codec,
        base: Option<&Oid>,
        cache: ListingCache,
    ) -> Result<Txn> {
        let raw = match codec {
            // Ciphertext does not compress: do not make zlib try.
            Codec::Sealed(_) => git.transaction_with(0)?,
            Codec::Packed => git.transaction_with(PACKED_ZLIB_LEVEL)?,
            Codec::Plain => git.transaction()?,
        };
        Ok(Txn {
            raw,
            codec,
            git: git.clone(),
            base: base.cloned(),
            cache,
            sizes: HashMap::new(),
            set: HashMap::new(),
            touched: HashSet::new(),
            clear: HashSet::new(),
            packed: HashSet::new(),
        })
    }

    /// A transaction on a plain repository (tests).
    pub fn plain(git: &Git) -> Result<Txn> {
        Txn::new(git, Codec::Plain, None, Arc::default())
    }

    /// Whether this transaction writes to an encrypted repository.
    pub fn sealed(&self) -> bool {
        self.codec.seal().is_some()
    }

    /// Write a file's content; returns its mark.
    pub fn blob(&mut self, data: &[u8]) -> Result<Mark> {
        let mark = match &self.codec {
            Codec::Plain | Codec::Packed => self.raw.blob(data)?,
            Codec::Sealed(seal) => {
                let sealed = seal.seal(data)?;
                self.raw.blob(&sealed)?
            }
        };
        self.sizes.insert(mark, data.len() as u64);
        Ok(mark)
    }

    /// Write the content of the file that will be put at `path` (a log segment is compressed
    /// in a version-3 repository); returns its mark, which may be put only at such a path.
    pub fn blob_for(&mut self, path: &str, data: &[u8]) -> Result<Mark> {
        if !matches!(self.codec, Codec::Packed) || !layout::is_segment_path(path) {
            return self.blob(data);
        }
        let packed = pack(data).with_context(|| format!("cannot store {path}"))?;
        let mark = self.raw.blob(&packed)?;
        self.sizes.insert(mark, data.len() as u64);
        self.packed.insert(mark);
        Ok(mark)
    }

    /// Write a file in the clear (the marker and wrapped keys of an encrypted repository).
    pub fn clear_blob(&mut self, data: &[u8]) -> Result<Mark> {
        let mark = self.raw.blob(data)?;
        self.sizes.insert(mark, data.len() as u64);
        self.clear.insert(mark);
        Ok(mark)
    }

    /// Write bytes sealed already (a file of `keys/` sealed to the repository key).
    pub fn blob_sealed_raw(&mut self, data: Vec<u8>) -> Result<Mark> {
        let mark = self.raw.blob(&data)?;
        self.sizes.insert(mark, data.len() as u64);
        Ok(mark)
    }

    /// Write `data` at `path`: in the clear at a clear path ([`clear_path`]), else sealed.
    pub fn put_bytes(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let m = if clear_path(path) {
            self.clear_blob(data)?
        } else {
            self.blob_for(path, data)?
        };
        self.put(path, m)
    }

    /// Set `path` to a blob written in this transaction.
    pub fn put(&mut self, path: &str, mark: Mark) -> Result<()> {
        self.touched.insert(path.to_string());
        // The marker is always in the clear; `keys/` holds age files of either kind; every
        // other file is sealed.
        let must_be_clear = path == super::format::FORMAT_FILE;
        let may_be_clear = clear_path(path);
        let is_clear = self.clear.contains(&mark);
        if self.sealed() && ((must_be_clear && !is_clear) || (!may_be_clear && is_clear)) {
            anyhow::bail!(
                "{path} would be stored {} in an encrypted repository",
                if clear_path(path) {
                    "encrypted where it must be in the clear"
                } else {
                    "in the clear"
                }
            );
        }
        let size = self.sizes.get(&mark).copied().unwrap_or(0);
        if !self.sealed() {
            let packed = self.packed.contains(&mark);
            let stored = if packed {
                packed_path(path, size).ok_or_else(|| {
                    anyhow!("{path} would be stored compressed, which only log segments are")
                })?
            } else {
                path.to_string()
            };
            if layout::is_segment_path(path) {
                self.replace(path, &stored)?;
                self.set.insert(
                    path.to_string(),
                    Some(Stored {
                        path: stored.clone(),
                    }),
                );
            }
            self.raw.put(&stored, mark);
            return Ok(());
        }
        if clear_path(path) {
            self.raw.put(path, mark);
            return Ok(());
        }
        let stored = self.stored_file(path, size);
        self.replace(path, &stored)?;
        self.raw.put(&stored, mark);
        self.set
            .insert(path.to_string(), Some(Stored { path: stored }));
        Ok(())
    }

    /// Set `path` to a file already in the repository (its blob and plaintext size, as a
    /// listing gave them).
    pub fn put_existing(&mut self, path: &str, oid: &Oid, size: u64) -> Result<()> {
        self.touched.insert(path.to_string());
        if !self.sealed() && layout::is_segment_path(path) {
            // A compressed segment keeps its stored form (whatever the repository's version).
            let stored = match is_packed(oid) {
                true => packed_path(path, size).unwrap_or_else(|| path.to_string()),
                false => path.to_string(),
            };
            self.replace(path, &stored)?;
            self.raw.put_oid(&stored, oid);
            self.set
                .insert(path.to_string(), Some(Stored { path: stored }));
            return Ok(());
        }
        if !self.sealed() || clear_path(path) {
            self.raw.put_oid(path, oid);
            return Ok(());
        }
        let stored = self.stored_file(path, size);
        self.replace(path, &stored)?;
        self.raw.put_oid(&stored, oid);
        self.set
            .insert(path.to_string(), Some(Stored { path: stored }));
        Ok(())
    }

    /// Remove a stored path as it is (converting a plain repository in place).
    pub fn delete_stored(&mut self, stored: &str) {
        self.raw.delete(stored);
    }

    /// Remove `path` (a file or a whole folder).
    pub fn delete(&mut self, path: &str) -> Result<()> {
        self.touched.insert(path.to_string());
        if !self.sealed() && layout::is_segment_path(path) {
            let old = self.current(path)?.unwrap_or_else(|| path.to_string());
            self.raw.delete(&old);
            self.set.insert(path.to_string(), None);
            return Ok(());
        }
        if !self.sealed() || clear_path(path) {
            self.raw.delete(path);
            let prefix = format!("{path}/");
            for (p, s) in self.set.iter_mut() {
                if p.starts_with(&prefix) {
                    *s = None;
                }
            }
            return Ok(());
        }
        if let Some(old) = self.current(path)? {
            self.raw.delete(&old);
            self.set.insert(path.to_string(), None);
            return Ok(());
        }
        // A folder (folder names do not depend on content).
        let dir = self.stored_dir(path);
        self.raw.delete(&dir);
        let prefix = format!("{path}/");
        for (p, s) in self.set.iter_mut() {
            if p.starts_with(&prefix) {
                *s = None;
            }
        }
        Ok(())
    }

    /// Whether `path` itself was set or removed in this transaction.
    pub fn touches(&self, path: &str) -> bool {
        self.touched.contains(path)
    }

    /// Whether any tree change was recorded.
    pub fn has_changes(&self) -> bool {
        self.raw.has_changes()
    }

    /// Commit the recorded changes on top of `parent` (or as a first commit).
    pub fn commit(self, parent: Option<&Oid>, author: &str, message: &str) -> Result<Oid> {
        Ok(self.commit_mapped(parent, author, message)?.0)
    }

    /// [`Txn::commit`], with the stored path of every file this transaction set.
    pub(crate) fn commit_mapped(
        self,
        parent: Option<&Oid>,
        author: &str,
        message: &str,
    ) -> Result<(Oid, HashMap<String, String>)> {
        let written = self
            .set
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|s| (k.clone(), s.path.clone())))
            .collect();
        let c = self.raw.commit(parent, author, message)?;
        Ok((c, written))
    }

    fn stored_file(&self, path: &str, size: u64) -> String {
        match self.codec.seal() {
            Some(seal) => encode_path(seal, path, Some(size)),
            None => path.to_string(),
        }
    }

    fn stored_dir(&self, path: &str) -> String {
        match self.codec.seal() {
            Some(seal) => encode_path(seal, path, None),
            None => path.to_string(),
        }
    }

    /// Remove the stored file at `path` when it has another stored name than `stored` (a file
    /// whose size changed).
    fn replace(&mut self, path: &str, stored: &str) -> Result<()> {
        if let Some(old) = self.current(path)?
            && old != stored
        {
            self.raw.delete(&old);
        }
        Ok(())
    }

    /// The stored path of the file at logical `path` now: set in this transaction, else in
    /// the commit it builds on.
    fn current(&mut self, path: &str) -> Result<Option<String>> {
        if let Some(s) = self.set.get(path) {
            return Ok(s.as_ref().map(|s| s.path.clone()));
        }
        let Some(base) = self.base.clone() else {
            return Ok(None);
        };
        if self.codec.seal().is_none() && !layout::is_segment_path(path) {
            return Ok(Some(path.to_string()));
        }
        let listing = listing(
            &self.git,
            self.codec.seal().map(|s| &**s),
            &base,
            &self.cache,
        )?;
        Ok(listing.files.get(path).cloned())
    }
}

/// zlib level of the objects of a version-3 repository's transactions. Its large blobs are
/// zstd output, which zlib does not shrink: level 0 stores them as they are, so git spends no
/// time deflating them on the way in or inflating them on the way out (its small files —
/// `meta.json`, trees — cost a few kB more). Measured on 300 sessions (157 MB): a first push
/// takes 1.28 s of CPU at level 0 and 1.98 s at level 1, for a remote of 19.7 MB either way.
const PACKED_ZLIB_LEVEL: u8 = 0;

/// The stored path of a logical path (`size`: the plaintext size of the file it names; `None`
/// for a folder).
pub fn encode_path(seal: &Seal, path: &str, size: Option<u64>) -> String {
    if clear_path(path) {
        return path.to_string();
    }
    let parts: Vec<&str> = path.split('/').collect();
    let last = parts.len().saturating_sub(1);
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| seal.encode_name(p, if i == last { size } else { None }))
        .collect::<Vec<_>>()
        .join("/")
}

/// A stored path back: the logical path and, for a file, its plaintext size. Clear paths stay
/// as they are; a path that does not open is named under `?sealed/`.
pub fn decode_path(seal: &Seal, stored: &str, is_file: bool) -> (String, Option<u64>) {
    if clear_path(stored) {
        return (stored.to_string(), None);
    }
    let parts: Vec<&str> = stored.split('/').collect();
    let last = parts.len().saturating_sub(1);
    let mut out = Vec::with_capacity(parts.len());
    let mut size = None;
    for (i, p) in parts.iter().enumerate() {
        match seal.decode_name(p) {
            Ok((name, s)) if (i == last && is_file) == s.is_some() => {
                if name.contains('/') || name.is_empty() {
                    return (format!("{UNOPENED}/{stored}"), None);
                }
                out.push(name);
                size = s;
            }
            _ => return (format!("{UNOPENED}/{stored}"), None),
        }
    }
    (out.join("/"), size)
}

/// Decode `git ls-tree --long` entries of an encrypted repository.
fn decode_entries(seal: &Seal, raw: Vec<TreeEntry>) -> (Vec<TreeEntry>, Listing) {
    let mut listing = Listing {
        sealed: true,
        ..Listing::default()
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut refused = 0usize;
    for mut e in raw {
        let Some(stored) = e.path_str().map(str::to_string) else {
            refused += 1;
            continue;
        };
        let is_file = e.kind == "blob";
        let (logical, size) = decode_path(seal, &stored, is_file);
        if logical.starts_with(UNOPENED) {
            refused += 1;
        } else if !clear_path(&logical) {
            e.size = size;
        }
        if is_file {
            listing.files.insert(logical.clone(), stored);
        }
        e.path = logical.into_bytes();
        out.push(e);
    }
    if refused > 0 {
        tracing::warn!(
            "{refused} entr{} of the encrypted sync repository do not open with its name key: ignored",
            if refused == 1 { "y" } else { "ies" }
        );
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    (out, listing)
}

/// Decode `git ls-tree --long` entries of a plain repository: a compressed segment gets its
/// logical path and plaintext size (and its blob is remembered as compressed). The listing
/// maps the logical path of every segment to its stored path.
fn decode_plain(raw: Vec<TreeEntry>) -> (Vec<TreeEntry>, Listing) {
    let mut listing = Listing::default();
    let mut out = Vec::with_capacity(raw.len());
    let mut renamed = false;
    let mut twice = 0usize;
    for mut e in raw {
        if e.kind == "blob"
            && let Some(stored) = e.path_str().map(str::to_string)
        {
            let logical = match unpacked_path(&stored) {
                Some((logical, size)) => {
                    note_packed(&e.oid);
                    e.size = Some(size);
                    e.path = logical.clone().into_bytes();
                    renamed = true;
                    logical
                }
                None => stored.clone(),
            };
            if layout::is_segment_path(&logical) {
                if listing.files.contains_key(&logical) {
                    // Stored both as it is and compressed, or compressed twice: not written
                    // by ccsync; the first one stands.
                    twice += 1;
                    continue;
                }
                listing.files.insert(logical, stored);
            }
        }
        out.push(e);
    }
    if twice > 0 {
        tracing::warn!(
            "{twice} segment{} of the sync repository {} stored twice (as it is and compressed): ignored",
            if twice == 1 { "" } else { "s" },
            if twice == 1 { "is" } else { "are" }
        );
    }
    if renamed {
        out.sort_by(|a, b| a.path.cmp(&b.path));
    }
    (out, listing)
}

/// The full listing of `commit` (cached for the last commit): sealed with `seal`, else plain.
fn listing(
    git: &Git,
    seal: Option<&Seal>,
    commit: &Oid,
    cache: &ListingCache,
) -> Result<Arc<Listing>> {
    if let Ok(c) = cache.lock()
        && let Some((oid, l)) = c.as_ref()
        && oid == commit
        && l.sealed == seal.is_some()
    {
        return Ok(l.clone());
    }
    let raw = git.ls_tree(commit, None)?;
    let (_, l) = match seal {
        Some(seal) => decode_entries(seal, raw),
        None => decode_plain(raw),
    };
    let l = Arc::new(l);
    if let Ok(mut c) = cache.lock() {
        *c = Some((commit.clone(), l.clone()));
    }
    Ok(l)
}

/// Every file of a commit (or of the folder or file at `prefix`), with logical paths and
/// plaintext sizes.
pub fn ls_tree(
    git: &Git,
    codec: &Codec,
    commit: &Oid,
    prefix: Option<&str>,
    cache: &ListingCache,
) -> Result<Vec<TreeEntry>> {
    let Some(seal) = codec.seal() else {
        return ls_tree_plain(git, commit, prefix, cache);
    };
    let Some(prefix) = prefix.filter(|p| !clear_path(p)) else {
        if prefix.is_some() {
            return git.ls_tree(commit, prefix);
        }
        let (entries, l) = decode_entries(seal, git.ls_tree(commit, None)?);
        if let Ok(mut c) = cache.lock() {
            *c = Some((commit.clone(), Arc::new(l)));
        }
        return Ok(entries);
    };
    let prefix = prefix.trim_end_matches('/');
    // A folder: its names do not depend on content.
    let dir = encode_path(seal, prefix, None);
    let found = git.ls_tree(commit, Some(&dir))?;
    if !found.is_empty() {
        return Ok(decode_entries(seal, found).0);
    }
    // A file: look in its folder for the name that opens to it.
    let (parent, name) = match prefix.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, prefix),
    };
    let mut args = vec![
        "ls-tree".to_string(),
        "-z".into(),
        "--long".into(),
        "--full-tree".into(),
        commit.0.clone(),
    ];
    if let Some(p) = parent {
        args.push("--".into());
        args.push(format!("{}/", encode_path(seal, p, None)));
    }
    let out = git
        .cmd()
        .args(&args)
        .output()
        .map_err(|e| anyhow!("cannot run git ls-tree: {e}"))?;
    if !out.status.success() {
        // No such folder.
        return Ok(Vec::new());
    }
    let entries = git::parse_ls_tree(&out.stdout)?;
    Ok(decode_entries(seal, entries)
        .0
        .into_iter()
        .filter(|e| {
            e.kind == "blob"
                && e.path_str().is_some_and(|p| {
                    p.rsplit('/').next() == Some(name) && p.starts_with(parent.unwrap_or(""))
                })
        })
        .collect())
}

/// [`ls_tree`] of a plain repository.
fn ls_tree_plain(
    git: &Git,
    commit: &Oid,
    prefix: Option<&str>,
    cache: &ListingCache,
) -> Result<Vec<TreeEntry>> {
    let Some(prefix) = prefix else {
        let (entries, l) = decode_plain(git.ls_tree(commit, None)?);
        if let Ok(mut c) = cache.lock() {
            *c = Some((commit.clone(), Arc::new(l)));
        }
        return Ok(entries);
    };
    let prefix = prefix.trim_end_matches('/');
    if layout::is_segment_path(prefix)
        && let Some((dir, _)) = prefix.rsplit_once('/')
    {
        // One segment: its stored name may carry its size; look in its folder.
        return Ok(decode_plain(git.ls_tree(commit, Some(&format!("{dir}/")))?)
            .0
            .into_iter()
            .filter(|e| e.path_str() == Some(prefix))
            .collect());
    }
    Ok(decode_plain(git.ls_tree(commit, Some(prefix))?).0)
}

/// The names at the root of a commit (folders and files), logical.
pub fn top_names(git: &Git, seal: Option<&Seal>, commit: &Oid) -> Result<Vec<String>> {
    let out = git.run(["ls-tree", "-z", &commit.0])?;
    let mut names = Vec::new();
    for rec in out.split('\0').filter(|r| !r.is_empty()) {
        let Some((head, name)) = rec.split_once('\t') else {
            continue;
        };
        let is_file = head.split_whitespace().nth(1) == Some("blob");
        names.push(match seal {
            None => name.to_string(),
            Some(s) => decode_path(s, name, is_file).0,
        });
    }
    Ok(names)
}

/// What changed between two commits, file by file: (`A`dded, `M`odified, `D`eleted, logical
/// path). A file of an encrypted repository whose size changed is one modification, not a
/// deletion and an addition.
pub fn diff_names(git: &Git, seal: Option<&Seal>, a: &Oid, b: &Oid) -> Result<Vec<(char, String)>> {
    let mut renamed = false;
    let text = git.run([
        "diff-tree",
        "-r",
        "-z",
        "--no-renames",
        "--name-status",
        &a.0,
        &b.0,
    ])?;
    let mut out: Vec<(char, String)> = Vec::new();
    let mut fields = text.split('\0').filter(|f| !f.is_empty());
    while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
        let st = status.chars().next().unwrap_or('M');
        let logical = match seal {
            None => match unpacked_path(path) {
                Some((l, _)) => {
                    renamed = true;
                    l
                }
                None => path.to_string(),
            },
            Some(s) => decode_path(s, path, true).0,
        };
        out.push((st, logical));
    }
    if seal.is_some() || renamed {
        merge_renames(&mut out, |c| c.0, |c| &c.1, |c, s| c.0 = s);
    }
    Ok(out)
}

/// Fold a deletion and an addition of one logical path into one modification.
fn merge_renames<T>(
    items: &mut Vec<T>,
    status: impl Fn(&T) -> char,
    path: impl Fn(&T) -> &String,
    set: impl Fn(&mut T, char),
) {
    let mut added: HashMap<String, usize> = HashMap::new();
    let mut deleted: HashMap<String, usize> = HashMap::new();
    for (i, it) in items.iter().enumerate() {
        match status(it) {
            'A' => {
                added.insert(path(it).clone(), i);
            }
            'D' => {
                deleted.insert(path(it).clone(), i);
            }
            _ => {}
        }
    }
    let mut drop = HashSet::new();
    for (p, ai) in &added {
        if let Some(di) = deleted.get(p) {
            set(&mut items[*ai], 'M');
            drop.insert(*di);
        }
    }
    if drop.is_empty() {
        return;
    }
    let mut i = 0;
    items.retain(|_| {
        let keep = !drop.contains(&i);
        i += 1;
        keep
    });
}

/// The changes of first-parent commits of `head` to files matching `patterns` (`*` matches
/// any run of characters, `/` included), logical, newest first.
pub fn changes(
    git: &Git,
    seal: Option<&Seal>,
    head: &Oid,
    patterns: &[&str],
) -> Result<Vec<(Oid, Vec<super::history::RawChange>)>> {
    let mut all = match seal {
        None => super::history::changes(git, head, patterns)?,
        Some(_) => super::history::changes(git, head, &[])?,
    };
    for (_, list) in all.iter_mut() {
        let mut renamed = false;
        for c in list.iter_mut() {
            match seal {
                Some(seal) => c.path = decode_path(seal, &c.path, true).0,
                None => {
                    if let Some((logical, _)) = unpacked_path(&c.path) {
                        for oid in [&c.old, &c.new].into_iter().flatten() {
                            note_packed(oid);
                        }
                        c.path = logical;
                        renamed = true;
                    }
                }
            }
        }
        if seal.is_none() && !renamed {
            continue;
        }
        if seal.is_some() {
            list.retain(|c| patterns.iter().any(|p| glob(p, &c.path)));
        }
        // A deletion and an addition of one path in one commit: a modification.
        let mut by_path: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in list.iter().enumerate() {
            by_path.entry(c.path.clone()).or_default().push(i);
        }
        let mut drop = HashSet::new();
        for idx in by_path.values().filter(|v| v.len() == 2) {
            let (a, b) = (idx[0], idx[1]);
            let (add, del) = match (list[a].status, list[b].status) {
                ('A', 'D') => (a, b),
                ('D', 'A') => (b, a),
                _ => continue,
            };
            list[add].old = list[del].old.clone();
            list[add].old_regular = list[del].old_regular;
            list[add].status = 'M';
            drop.insert(del);
        }
        let mut i = 0;
        list.retain(|c| {
            // A file renamed with its content unchanged (a key rotation renames every file):
            // no change at all.
            let renamed = c.status == 'M' && c.old.is_some() && c.old == c.new;
            let keep = !drop.contains(&i) && !renamed;
            i += 1;
            keep
        });
    }
    all.retain(|(_, l)| !l.is_empty());
    Ok(all)
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The plaintext sizes of blobs (those the repository lacks are left out).
pub fn blob_sizes(git: &Git, codec: &Codec, oids: &[Oid]) -> Result<HashMap<Oid, u64>> {
    let Some(seal) = codec.seal() else {
        let mut sizes = super::history::blob_sizes(git, oids)?;
        let packed: Vec<Oid> = sizes.keys().filter(|o| is_packed(o)).cloned().collect();
        if !packed.is_empty() {
            let mut reader = git.reader()?;
            for oid in packed {
                // A compressed segment's frame header holds its plaintext size.
                let data = reader.read(&oid)?;
                match zstd::zstd_safe::get_frame_content_size(&data) {
                    Ok(Some(n)) => {
                        sizes.insert(oid, n);
                    }
                    _ => {
                        sizes.insert(oid.clone(), unpack_object(&oid, &data)?.len() as u64);
                    }
                }
            }
        }
        return Ok(sizes);
    };
    let present = super::history::blob_sizes(git, oids)?;
    let mut reader = BlobReader::new(git.reader()?, Codec::Sealed(seal.clone()));
    let mut out = HashMap::new();
    for oid in present.keys() {
        if let Ok(b) = reader.read(oid) {
            out.insert(oid.clone(), b.len() as u64);
        }
    }
    Ok(out)
}

/// The blobs at logical `paths` of `commit` (paths that are not files there are left out).
/// `written` maps logical to stored paths of the transaction that made `commit`, when known.
pub fn resolve_paths(
    git: &Git,
    seal: Option<&Seal>,
    commit: &Oid,
    paths: &[String],
    written: Option<&HashMap<String, String>>,
    cache: &ListingCache,
) -> Result<HashMap<String, Oid>> {
    let mut out = HashMap::new();
    // Stored path → logical path.
    let mut want: Vec<(String, String)> = Vec::with_capacity(paths.len());
    let mut listing: Option<Arc<Listing>> = None;
    for p in paths {
        if seal.is_none() && !layout::is_segment_path(p) {
            want.push((p.clone(), p.clone()));
            continue;
        }
        if let Some(s) = written.and_then(|w| w.get(p)) {
            want.push((s.clone(), p.clone()));
            continue;
        }
        if listing.is_none() {
            listing = Some(self::listing(git, seal, commit, cache)?);
        }
        if let Some(s) = listing.as_ref().and_then(|l| l.files.get(p)) {
            want.push((s.clone(), p.clone()));
        }
    }
    let logical: HashMap<&str, &str> = want.iter().map(|(s, l)| (s.as_str(), l.as_str())).collect();
    let stored: Vec<String> = want.iter().map(|(s, _)| s.clone()).collect();
    for chunk in stored.chunks(256) {
        let mut args = vec![
            "ls-tree".to_string(),
            "-r".into(),
            "-z".into(),
            "--full-tree".into(),
            commit.0.clone(),
            "--".into(),
        ];
        args.extend(chunk.iter().cloned());
        let text = git.run(&args)?;
        for rec in text.split('\0').filter(|r| !r.is_empty()) {
            let Some((head, path)) = rec.split_once('\t') else {
                continue;
            };
            if let (Some(oid), Some(l)) = (
                head.split_whitespace().nth(2).and_then(Oid::parse),
                logical.get(path),
            ) {
                if seal.is_none() && unpacked_path(path).is_some() {
                    note_packed(&oid);
                }
                out.insert(l.to_string(), oid);
            }
        }
    }
    Ok(out)
}

/// Read one file of a commit by logical path.
pub fn read_file(
    git: &Git,
    codec: &Codec,
    commit: &Oid,
    path: &str,
    cache: &ListingCache,
) -> Result<Option<Vec<u8>>> {
    let seal = codec.seal();
    if (seal.is_none() && !layout::is_segment_path(path)) || clear_path(path) {
        let out = git
            .cmd()
            .args(["cat-file", "blob", &format!("{}:{path}", commit.0)])
            .output()
            .map_err(|e| anyhow!("cannot run git: {e}"))?;
        if !out.status.success() {
            return Ok(None);
        }
        return Ok(Some(out.stdout));
    }
    let Some(e) = ls_tree(git, codec, commit, Some(path), cache)?
        .into_iter()
        .find(|e| e.is_regular_file() && e.path_str() == Some(path))
    else {
        return Ok(None);
    };
    let mut r = BlobReader::new(git.reader()?, codec.clone());
    r.read(&e.oid)
        .with_context(|| format!("cannot read {path} from the sync repository"))
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_across_folders() {
        assert!(glob("projects/*/memory/*", "projects/a/memory/x/y.md"));
        assert!(glob("global/*", "global/plans/p.md"));
        assert!(!glob(
            "projects/*/memory/*",
            "projects/a/sessions/s/meta.json"
        ));
        assert!(glob(
            "projects/*/sessions/*/meta.json",
            "projects/a/sessions/s/meta.json"
        ));
        assert!(!glob(
            "projects/*/sessions/*/meta.json",
            "projects/a/sessions/s/x.json"
        ));
    }

    /// A bare repository to write into.
    fn repo() -> (tempfile::TempDir, Git) {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::init_bare(&dir.path().join("r.git")).unwrap();
        (dir, git)
    }

    fn names(entries: &[TreeEntry]) -> Vec<(String, Option<u64>)> {
        entries
            .iter()
            .map(|e| (e.path_str().unwrap().to_string(), e.size))
            .collect()
    }

    #[test]
    fn packed_paths_round_trip_only_in_log_folders() {
        let p = "projects/a/sessions/s/transcript/000001.jsonl";
        let stored = packed_path(p, 1234).unwrap();
        assert_eq!(
            stored,
            "projects/a/sessions/s/transcript/000001.1234.jsonl.zst"
        );
        assert_eq!(unpacked_path(&stored), Some((p.to_string(), 1234)));
        assert_eq!(packed_path("projects/a/memory/000001.jsonl", 3), None);
        assert_eq!(packed_path("projects/a/sessions/s/meta.json", 3), None);
        for not in [
            "projects/a/memory/000001.5.jsonl.zst",
            "projects/a/sessions/s/transcript/000001.05.jsonl.zst",
            "projects/a/sessions/s/transcript/000001.x.jsonl.zst",
            "projects/a/sessions/s/transcript/1.5.jsonl.zst",
            "000001.5.jsonl.zst",
            "history/000001.5.jsonl",
        ] {
            assert_eq!(unpacked_path(not), None, "{not}");
        }
    }

    #[test]
    fn a_version_3_transaction_compresses_segments_only_and_reads_them_back() {
        let (_d, git) = repo();
        let cache = ListingCache::default();
        let seg = "history/000001.jsonl";
        let text = b"{\"ab\":1}\n".repeat(100);
        let mut txn = Txn::new(&git, Codec::Packed, None, cache.clone()).unwrap();
        let m = txn.blob_for(seg, &text).unwrap();
        txn.put(seg, m).unwrap();
        txn.put_bytes("projects/p/sessions/s/meta.json", b"{}")
            .unwrap();
        txn.put_bytes("projects/p/memory/000001.jsonl", b"not a segment\n")
            .unwrap();
        // A compressed blob cannot go where a segment does not.
        let m2 = txn.blob_for("history/000002.jsonl", b"x\n").unwrap();
        assert!(txn.put("projects/p/memory/x.md", m2).is_err());
        let c1 = txn.commit(None, "t <t@t>", "one").unwrap();
        let raw: Vec<String> = git
            .ls_tree(&c1, None)
            .unwrap()
            .iter()
            .map(|e| e.path_str().unwrap().to_string())
            .collect();
        assert_eq!(
            raw,
            [
                "history/000001.900.jsonl.zst",
                "projects/p/memory/000001.jsonl",
                "projects/p/sessions/s/meta.json"
            ]
        );
        let listed = ls_tree(&git, &Codec::Packed, &c1, None, &cache).unwrap();
        assert_eq!(
            names(&listed),
            [
                (seg.to_string(), Some(900)),
                ("projects/p/memory/000001.jsonl".to_string(), Some(14)),
                ("projects/p/sessions/s/meta.json".to_string(), Some(2)),
            ]
        );
        // Any reader, of either plain version, gets the plaintext.
        for codec in [Codec::Plain, Codec::Packed] {
            let mut r = BlobReader::new(git.reader().unwrap(), codec.clone());
            assert_eq!(r.read(&listed[0].oid).unwrap(), text);
            assert_eq!(
                read_file(&git, &codec, &c1, seg, &ListingCache::default())
                    .unwrap()
                    .unwrap(),
                text
            );
        }
        assert_eq!(
            ls_tree(
                &git,
                &Codec::Plain,
                &c1,
                Some(seg),
                &ListingCache::default()
            )
            .unwrap(),
            listed[..1]
        );
        assert_eq!(
            blob_sizes(&git, &Codec::Packed, &[listed[0].oid.clone()]).unwrap()[&listed[0].oid],
            900
        );
        // A new size is a new stored name; the old one goes in the same commit, and the
        // history sees one modification.
        let mut txn = Txn::new(&git, Codec::Packed, Some(&c1), cache.clone()).unwrap();
        let m = txn.blob_for(seg, &text[..450]).unwrap();
        txn.put(seg, m).unwrap();
        let (c2, written) = txn.commit_mapped(Some(&c1), "t <t@t>", "two").unwrap();
        assert_eq!(written[seg], "history/000001.450.jsonl.zst");
        let listed = ls_tree(&git, &Codec::Packed, &c2, Some("history"), &cache).unwrap();
        assert_eq!(names(&listed), [(seg.to_string(), Some(450))]);
        assert_eq!(
            diff_names(&git, None, &c1, &c2).unwrap(),
            [('M', seg.to_string())]
        );
        let ch = changes(&git, None, &c2, &["history/*"]).unwrap();
        assert_eq!(ch.len(), 2, "{ch:?}");
        assert_eq!(ch[0].1.len(), 1, "{ch:?}");
        assert_eq!((ch[0].1[0].status, ch[0].1[0].path.as_str()), ('M', seg));
        let at = resolve_paths(&git, None, &c2, &[seg.to_string()], None, &cache).unwrap();
        assert_eq!(at[seg], listed[0].oid);
        // Deleting it by its logical path removes the stored file.
        let mut txn = Txn::new(&git, Codec::Plain, Some(&c2), cache.clone()).unwrap();
        txn.delete(seg).unwrap();
        let c3 = txn.commit(Some(&c2), "t <t@t>", "three").unwrap();
        assert!(git.ls_tree(&c3, Some("history")).unwrap().is_empty());
    }

    #[test]
    fn a_version_1_transaction_stores_segments_as_they_are() {
        let (_d, git) = repo();
        let seg = "history/000001.jsonl";
        let mut txn = Txn::new(&git, Codec::Plain, None, ListingCache::default()).unwrap();
        let m = txn.blob_for(seg, b"{}\n").unwrap();
        txn.put(seg, m).unwrap();
        let c = txn.commit(None, "t <t@t>", "one").unwrap();
        let raw = git.ls_tree(&c, None).unwrap();
        assert_eq!(names(&raw), [(seg.to_string(), Some(3))]);
        let mut r = git.reader().unwrap();
        assert_eq!(r.read(&raw[0].oid).unwrap(), b"{}\n");
    }

    #[test]
    fn a_damaged_compressed_segment_is_refused_naming_it_and_odd_names_stay_as_they_are() {
        let (_d, git) = repo();
        let mut raw = git.transaction().unwrap();
        let bad = raw.blob(b"{\"not\":\"zstd\"}\n").unwrap();
        raw.put("history/000001.16.jsonl.zst", bad);
        let odd = raw.blob(b"odd").unwrap();
        raw.put("history/000002.x.jsonl.zst", odd);
        raw.put("projects/p/memory/000001.3.jsonl.zst", odd);
        let c = raw.commit(None, "t <t@t>", "x").unwrap();
        let listed = ls_tree(&git, &Codec::Packed, &c, None, &ListingCache::default()).unwrap();
        assert_eq!(
            names(&listed),
            [
                ("history/000001.jsonl".to_string(), Some(16)),
                ("history/000002.x.jsonl.zst".to_string(), Some(3)),
                ("projects/p/memory/000001.3.jsonl.zst".to_string(), Some(3)),
            ]
        );
        let mut r = BlobReader::new(git.reader().unwrap(), Codec::Packed);
        let e = r.read(&listed[0].oid).unwrap_err();
        assert!(
            matches!(store_error(&e), Some(StoreError::Damaged(_))),
            "{e:#}"
        );
        let msg = format!("{e:#}");
        assert!(msg.contains(listed[0].oid.short()), "{msg}");
        assert!(msg.contains("compressed segment"), "{msg}");
        // The odd names are ordinary files, read as they are.
        assert_eq!(r.read(&listed[1].oid).unwrap(), b"odd");
        // A frame that says it holds more than the bound is refused before it is opened.
        let mut big = pack(b"x").unwrap();
        assert!(unpack(&big).is_ok());
        big.truncate(big.len() - 2);
        assert!(unpack(&big).is_err());
        assert!(unpack(b"").is_err());
    }

    #[test]
    fn paths_round_trip_and_clear_names_stay_clear() {
        let seal = Seal::generate();
        let p = "projects/PROJECTS-app-12345678/sessions/abc/transcript/000001.jsonl";
        let stored = encode_path(&seal, p, Some(42));
        assert!(!stored.contains("PROJECTS") && !stored.contains("abc"));
        assert_eq!(stored.matches('/').count(), 5);
        assert_eq!(decode_path(&seal, &stored, true), (p.to_string(), Some(42)));
        // A folder's name is a prefix of its files' names.
        let dir = encode_path(&seal, "projects/PROJECTS-app-12345678/sessions", None);
        assert!(stored.starts_with(&format!("{dir}/")));
        assert_eq!(encode_path(&seal, "ccsync.json", Some(3)), "ccsync.json");
        assert_eq!(
            encode_path(&seal, "keys/passphrase.age", Some(3)),
            "keys/passphrase.age"
        );
        assert!(
            decode_path(&seal, "projects/x", true)
                .0
                .starts_with(UNOPENED)
        );
        assert!(
            decode_path(&Seal::generate(), &stored, true)
                .0
                .starts_with(UNOPENED)
        );
    }
}
