//! The sync repository: a private bare clone in the tool home, kept next to the user's remote,
//! and the compare-and-swap commit that every change goes through.
//!
//! * [`Store::open`] makes sure the clone exists, points at the configured remote, is not left
//!   broken by a crash, and holds a file lock so one process at a time works on it. A damaged
//!   clone — it does not open, a ref names a missing or unreadable object, or an earlier command
//!   found an object or pack it cannot read ([`git::CloneDamaged`]) — is moved aside (kept, named
//!   with the time) and cloned again: everything in it is also in the remote or on the local disk.
//! * [`Store::fetch`] brings the remote branch into `refs/remotes/origin/<branch>`;
//!   [`peek_remote_head`] only looks at where it points, cheaply.
//! * [`Store::commit_and_push`] builds a commit on the remote head with `fast-import` and pushes
//!   it without force. When another machine pushed first the push is rejected; the store fetches
//!   and builds again on the new head, with back-off, a bounded number of times. A store opened
//!   with a machine's configuration ([`Store::of`]) also puts back, in any commit it makes, the
//!   format marker, `shared_placeholders.json` and its own `machines/<id>.json` when the
//!   repository lacks them, so a repository that lost them is repaired rather than refused.

pub mod format;
pub mod git;
pub mod github;
pub mod history;
pub mod keys;
pub mod layout;
pub mod members;
pub mod objects;
pub mod seal;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use serde::de::DeserializeOwned;

use crate::config::Home;
use format::{FORMAT_FILE, FormatMarker, MachineRecord, SHARED_PLACEHOLDERS, SharedPlaceholders};
pub use git::{CloneDamaged, Git, Oid, PushOutcome, TreeEntry, is_clone_damage};
pub use objects::{BlobReader, Codec, StoreError, Txn, store_error};
use seal::Seal;

/// The file in the clone naming its generation: a new one for every clone made, so that what
/// was recorded against an older clone can be checked again.
const GENERATION_FILE: &str = "ccsync-generation";

/// Damaged clones set aside that are kept (the oldest beyond this many are removed).
const KEEP_BROKEN: usize = 3;

/// How many times a rejected push is rebuilt before giving up.
pub const MAX_PUSH_ATTEMPTS: u32 = 10;

/// Is `remote` a path on this machine (not a URL or `host:path`)?
pub fn is_local_remote(remote: &str) -> bool {
    if remote.contains("://") {
        return remote.starts_with("file://");
    }
    // scp-like `host:path`, but not a Windows drive path `C:\x`.
    let b = remote.as_bytes();
    let drive = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
    match remote.find(':') {
        Some(i) if !drive => remote[..i].contains('/'),
        _ => true,
    }
}

/// The filesystem path of a local remote.
pub fn local_remote_path(remote: &str) -> PathBuf {
    PathBuf::from(remote.strip_prefix("file://").unwrap_or(remote))
}

/// The sync repository as this machine sees it.
pub struct Store {
    pub git: Git,
    pub remote: String,
    pub branch: String,
    /// The machine id this store writes as.
    machine: String,
    author: String,
    /// What this machine puts back when the repository lacks it (see [`Skeleton`]).
    skeleton: Option<Skeleton>,
    /// The clone was made by this open: a failure now cannot be an old clone's damage.
    fresh: bool,
    /// Whether the repository is encrypted, and its seal (see [`Store::resolve_seal`]).
    seal: Mutex<SealState>,
    /// This machine's keys (encrypted repositories).
    keys: keys::LocalKeys,
    /// The last listing read (encrypted repositories).
    listings: objects::ListingCache,
    /// The stored paths of the files the last commit this store made set (encrypted
    /// repositories).
    written: Mutex<Option<(Oid, std::collections::HashMap<String, String>)>>,
    /// Small files read, by commit, path and whether read as stored (commits do not change):
    /// the marker and the root JSON files are read by several steps of one command.
    small: Mutex<SmallFiles>,
    /// A `cat-file --batch` reading files as stored by `COMMIT:PATH`, started on first use
    /// (one process instead of one per file).
    named: Mutex<Option<git::BlobReader>>,
    /// The names at the root of the last commit asked about.
    tops: Mutex<Option<(Oid, Vec<String>)>>,
    /// The clone was just made from a remote on this machine, which set its tracking ref: the
    /// first fetch has nothing to add.
    cloned_fresh: std::sync::atomic::AtomicBool,
    /// Held for the life of the store: one process at a time works on the clone.
    _lock: File,
}

/// Small files read: (commit, path, read as stored) → content (`None`: no such file).
type SmallFiles = std::collections::HashMap<(Oid, String, bool), Option<Vec<u8>>>;

/// The files every ccsync repository has, as this machine writes them: the format marker,
/// its record in `machines/`, and its placeholders in `shared_placeholders.json`.
#[derive(Debug, Clone)]
pub struct Skeleton {
    pub me: MachineRecord,
    pub placeholders: BTreeMap<String, String>,
}

/// How a commit is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// As the format marker at the head says, after the key check (every ordinary commit).
    Check,
    /// With the seal the store holds now ([`Store::use_keyring`]: encrypting a repository,
    /// rotating its key).
    Current,
    /// Nothing sealed: only clear files (`keys/requests/` of a machine that has no key yet).
    ClearOnly,
}

/// Whether a store's repository is encrypted (or plain, of which version), once found out.
#[derive(Clone)]
enum SealState {
    Unresolved,
    /// Plain, version 1: segments stored as they are.
    Plain,
    /// Plain, version 3: segments compressed.
    Packed,
    Sealed(Arc<Seal>, keys::Encryption),
}

/// The names a ccsync repository has at its root; a root with only these (and no marker) is a
/// damaged ccsync repository, not someone else's.
pub const OWN_ROOT_NAMES: &[&str] = &[
    format::FORMAT_FILE,
    format::SHARED_PLACEHOLDERS,
    format::MACHINES_DIR,
    format::LOCKS_DIR,
    format::FORGOTTEN_FILE,
    format::PROJECTS_DIR,
    format::GLOBAL_DIR,
    format::HISTORY_DIR,
    objects::KEYS_DIR,
];

impl Store {
    /// Open (creating or repairing as needed) the local clone for `remote`, waiting up to ten
    /// minutes for another ccsync process to finish with it.
    pub fn open(home: &Home, remote: &str, branch: &str, machine: &str) -> Result<Store> {
        Self::open_waiting(home, remote, branch, machine, Duration::from_secs(600))
    }

    /// The store of a machine's configured remote (waiting up to ten minutes for the clone).
    pub fn of(home: &Home, config: &crate::config::Config) -> Result<Store> {
        Self::of_waiting(home, config, Duration::from_secs(600))
    }

    /// [`Store::of`], waiting at most `wait` for another ccsync process.
    pub fn of_waiting(
        home: &Home,
        config: &crate::config::Config,
        wait: Duration,
    ) -> Result<Store> {
        let mut store = Self::open_waiting(
            home,
            &config.remote,
            &config.branch,
            &config.machine_id,
            wait,
        )?;
        store.skeleton = Some(Skeleton {
            me: crate::config::shared::my_record(config),
            placeholders: config.placeholders.clone(),
        });
        Ok(store)
    }

    /// [`Store::open`], waiting at most `wait` for another ccsync process.
    pub fn open_waiting(
        home: &Home,
        remote: &str,
        branch: &str,
        machine: &str,
        wait: Duration,
    ) -> Result<Store> {
        home.ensure()?;
        let lock = lock_clone(&home.root.join("repo.lock"), wait)?;
        let dir = home.repo_dir();
        let git = Git::new(&dir);
        // Only ccsync uses this clone and we hold its lock: any git lock file in it is stale.
        remove_stale_git_locks(&dir);
        if dir.exists()
            && let Some(why) = clone_damage(&git)
        {
            set_aside(home, &dir, &why)?;
        }
        let mut fresh = false;
        let mut cloned = false;
        if !dir.exists() {
            let local = is_local_remote(remote)
                .then(|| local_remote_path(remote))
                .filter(|p| Git::new(p).is_valid());
            match local {
                // A remote on this machine: clone it locally (hard links, no pack transfer).
                Some(src) => cloned = clone_local(&src, &dir, branch)?,
                None => {
                    Git::init_bare(&dir)?;
                }
            }
            crate::os::make_private(&dir).ok();
            let generation = format!(
                "{}-{}\n",
                chrono::Utc::now().format("%Y%m%dT%H%M%S%.f"),
                crate::util::random_hex(4)
            );
            let gen_path = dir.join(GENERATION_FILE);
            std::fs::write(&gen_path, generation)
                .with_context(|| format!("cannot write {}", gen_path.display()))?;
            fresh = true;
        }
        let store = Store {
            git,
            remote: remote.to_string(),
            branch: branch.to_string(),
            machine: machine.to_string(),
            author: format!("ccsync <{machine}@ccsync>"),
            skeleton: None,
            fresh,
            seal: Mutex::new(SealState::Unresolved),
            keys: keys::LocalKeys::new(&home.root),
            listings: Arc::default(),
            written: Mutex::new(None),
            small: Mutex::default(),
            named: Mutex::new(None),
            tops: Mutex::new(None),
            cloned_fresh: std::sync::atomic::AtomicBool::new(cloned),
            _lock: lock,
        };
        store.configure()?;
        Ok(store)
    }

    fn configure(&self) -> Result<()> {
        // One read of the clone's own config (keys in lower case), then only what differs.
        let listing = self.git.run(["config", "--local", "--list", "-z"])?;
        let have: std::collections::HashMap<String, String> = listing
            .split('\0')
            .filter(|e| !e.is_empty())
            .map(|e| match e.split_once('\n') {
                Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
                None => (e.to_ascii_lowercase(), String::new()),
            })
            .collect();
        let current = have.get("remote.origin.url");
        if current.map(String::as_str) != Some(self.remote.as_str()) {
            if current.is_some() {
                self.git
                    .run(["remote", "set-url", "origin", &self.remote])?;
            } else {
                self.git.run(["remote", "add", "origin", &self.remote])?;
            }
            // Refs of another remote mean nothing here (a clone just made from this one's
            // folder names it by its path: its refs are this remote's).
            if !self.cloned_fresh.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = self.git.set_ref(&self.tracking_ref(), None);
            }
        }
        for (k, v) in clone_settings(&self.branch) {
            if have.get(&k.to_ascii_lowercase()) != Some(&v) {
                self.git.run(["config", k, &v])?;
            }
        }
        Ok(())
    }

    /// `machines/<id>.json` of the machine this store was opened for.
    pub fn machine_record_path(&self) -> String {
        format::machine_path(&self.machine)
    }

    pub fn tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }

    /// The remote head as of the last fetch or push (no network).
    pub fn known_head(&self) -> Result<Option<Oid>> {
        self.git.resolve(&self.tracking_ref())
    }

    /// Fetch the remote branch; returns its head (`None`: the remote has no such branch yet).
    /// A failure the local clone causes is a [`CloneDamaged`] error naming the clone; any
    /// other is the remote's.
    pub fn fetch(&self, timeout: Duration) -> Result<Option<Oid>> {
        // A local clone made by this open fetched already: the same answer, milliseconds ago.
        if self
            .cloned_fresh
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return self.known_head();
        }
        let refspec = format!("+refs/heads/{b}:refs/remotes/origin/{b}", b = self.branch);
        // `--progress` without `--quiet`: a long download then shows a sign of life at least
        // once a second ("Receiving objects"), which `--quiet` would silence; what fetch says
        // besides its progress (`From …`, the updated ref) is left out of any error.
        let args: Vec<std::ffi::OsString> =
            ["fetch", "--progress", "--no-tags", "origin", &refspec]
                .iter()
                .map(Into::into)
                .collect();
        git::known_silent(&self.remote, "git fetch")?;
        let out = self
            .git
            .output_timeout(&args, git::net_bound(timeout))
            .map_err(|e| {
                if git::is_cut_short(&e) {
                    git::network_error(&self.remote, "git fetch", e)
                } else {
                    anyhow!("cannot reach the sync remote {}: {e:#}", self.remote)
                }
            })?;
        if out.status.success() {
            // What the repository is (plain or encrypted, which key generation) is found out
            // again at the new head.
            if let Ok(mut s) = self.seal.lock() {
                *s = SealState::Unresolved;
            }
            return self.known_head();
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("couldn't find remote ref") {
            // An empty remote (or no such branch): nothing to build on.
            self.git.set_ref(&self.tracking_ref(), None).ok();
            return Ok(None);
        }
        // Is the clone at fault? Its refs must name readable objects; and a complaint about
        // objects is the clone's unless the clone was just made (then it is the remote's).
        if let Err(why) = self.git.check_refs() {
            return Err(self.git.damaged(why));
        }
        if !self.fresh
            && let Some(why) = git::local_damage(&stderr).or_else(|| {
                stderr
                    .contains("did not send all necessary objects")
                    .then(|| "git fetch found objects missing from the clone".to_string())
            })
        {
            return Err(self.git.damaged(why));
        }
        let msg = git::first_error_line(&stderr)
            .unwrap_or_else(|| format!("git fetch failed ({})", out.status));
        Err(anyhow::Error::new(StoreError::Unreachable(format!(
            "cannot reach the sync remote {}: {}",
            self.remote, msg
        ))))
    }

    /// The generation of a clone (see `GENERATION_FILE`; empty for a clone made before
    /// generations were recorded).
    pub fn generation_of(git: &Git) -> String {
        std::fs::read_to_string(git.dir.join(GENERATION_FILE))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// The seal of an encrypted repository, `None` for a plain one (found out from the format
    /// marker at the last known head the first time it is needed).
    pub fn seal(&self) -> Result<Option<Arc<Seal>>> {
        let state = self
            .seal
            .lock()
            .map(|s| s.clone())
            .unwrap_or(SealState::Unresolved);
        match state {
            SealState::Unresolved => {
                let head = self.known_head()?;
                self.resolve_seal(head.as_ref())?;
                match self.seal.lock().map(|s| s.clone()) {
                    Ok(SealState::Sealed(s, _)) => Ok(Some(s)),
                    _ => Ok(None),
                }
            }
            SealState::Plain | SealState::Packed => Ok(None),
            SealState::Sealed(s, _) => Ok(Some(s)),
        }
    }

    /// How the repository's files are stored (found out like [`Store::seal`]).
    pub fn codec(&self) -> Result<Codec> {
        let seal = self.seal()?;
        Ok(match (seal, self.seal.lock().map(|s| s.clone())) {
            (Some(s), _) => Codec::Sealed(s),
            (None, Ok(SealState::Packed)) => Codec::Packed,
            (None, _) => Codec::Plain,
        })
    }

    /// Whether the repository is encrypted (an error when this machine cannot tell because it
    /// has no key).
    pub fn sealed(&self) -> Result<bool> {
        Ok(self.seal()?.is_some())
    }

    /// How the repository is encrypted, if it is.
    pub fn encryption(&self) -> Result<Option<keys::Encryption>> {
        self.seal()?;
        Ok(match self.seal.lock().map(|s| s.clone()) {
            Ok(SealState::Sealed(_, e)) => Some(e),
            _ => None,
        })
    }

    /// This machine's key files.
    pub fn local_keys(&self) -> &keys::LocalKeys {
        &self.keys
    }

    /// Encrypt with `ring` from now on (a repository being encrypted, a rotation).
    pub fn use_keyring(&self, ring: &keys::Keyring) -> Result<()> {
        let enc = ring.encryption()?;
        let seal = ring
            .seal(&enc)
            .map_err(|_| anyhow!("the new keyring does not open itself"))?;
        if let Ok(mut s) = self.seal.lock() {
            *s = SealState::Sealed(Arc::new(seal), enc);
        }
        Ok(())
    }

    /// Find out from the format marker at `head` whether the repository is encrypted, and open
    /// its keys: this machine's keyring, else the one a member left for it in the repository.
    /// This is the key check every command passes before it reads or writes anything: a
    /// machine with no key or the wrong one gets a [`StoreError`] saying so in one sentence.
    pub fn resolve_seal(&self, head: Option<&Oid>) -> Result<()> {
        let marker: Option<FormatMarker> = match head {
            Some(h) => self
                .read_clear(h, FORMAT_FILE)?
                .and_then(|b| serde_json::from_slice(&b).ok()),
            None => None,
        };
        let local = self.keys.ring()?.filter(|r| r.remote == self.remote);
        let state = match (marker.as_ref().and_then(|m| m.encryption.clone()), local) {
            (Some(enc), _) => SealState::Sealed(Arc::new(self.open_keys(head, &enc)?), enc),
            // The marker is gone (an emptied or rewound remote): this machine keeps encrypting
            // what it stores there, and puts the marker back.
            (None, Some(ring)) if marker.is_none() => {
                let enc = ring.encryption()?;
                let seal = ring.seal(&enc).map_err(|_| {
                    anyhow::Error::new(StoreError::WrongKey(format!(
                        "this machine's key of {} is damaged: run `ccsync key unlock` with the passphrase",
                        self.remote
                    )))
                })?;
                SealState::Sealed(Arc::new(seal), enc)
            }
            (None, Some(_)) => {
                return Err(anyhow::Error::new(StoreError::WrongKey(format!(
                    "the sync repository {} is not encrypted any more, but this machine encrypted what it stored there (the repository was replaced by a plain one): run `ccsync encrypt` to encrypt it again",
                    self.remote
                ))));
            }
            // A plain repository: version 3 compresses its segments; a new one (no commit
            // yet) is made version 3. One without a marker that holds files (damaged, or the
            // Python tool's) stays as it is: version 3 if it holds compressed segments (it lost
            // a version-3 marker), else version 1 — the marker written back says which.
            (None, None) => match (&marker, head) {
                (Some(m), _) => match m.packs_segments() {
                    true => SealState::Packed,
                    false => SealState::Plain,
                },
                (None, None) => SealState::Packed,
                (None, Some(h)) => {
                    let packed = self.git.ls_tree(h, None)?.iter().any(|e| {
                        e.path_str()
                            .is_some_and(|p| objects::unpacked_path(p).is_some())
                    });
                    match packed {
                        true => SealState::Packed,
                        false => SealState::Plain,
                    }
                }
            },
        };
        if let Ok(mut s) = self.seal.lock() {
            *s = state;
        }
        Ok(())
    }

    /// The seal for an encrypted repository: this machine's keyring when it has the marker's
    /// generation, else the keyring a member wrapped for this machine in `keys/`.
    fn open_keys(&self, head: Option<&Oid>, enc: &keys::Encryption) -> Result<Seal> {
        let no_key = || {
            anyhow::Error::new(StoreError::NoKey(format!(
                "the sync repository {} is encrypted and this machine has no key for it: run `ccsync key unlock` with its passphrase (--passphrase-file FILE or CCSYNC_PASSPHRASE), or `ccsync key request` and have a machine that has the key approve it",
                self.remote
            )))
        };
        let other = |what: &str| {
            anyhow::Error::new(StoreError::WrongKey(format!(
                "{what} does not open the encrypted sync repository {} (it is another repository's): run `ccsync key unlock` with its passphrase",
                self.remote
            )))
        };
        let local = self.keys.ring()?.filter(|r| r.repository == enc.repository);
        let held = local.as_ref().map_or(0, keys::Keyring::generation);
        if let Some(ring) = &local {
            match ring.seal(enc) {
                Ok(s) => return Ok(s),
                Err(keys::KeyProblem::Old(_)) => {}
                Err(keys::KeyProblem::Other) => return Err(other("this machine's key")),
            }
        }
        let me = self.keys.machine()?;
        let path = keys::machine_file(&me.to_public().to_string());
        let wrapped = match head {
            Some(h) => self.read_clear(h, &path)?,
            None => None,
        };
        let Some(wrapped) = wrapped else {
            if local.is_some() {
                return Err(anyhow::Error::new(StoreError::NoKey(format!(
                    "this machine was removed from the encrypted sync repository {} (it holds its key up to generation {held}, the repository now uses {}): it can still read what was stored before, not what is stored now; to join again run `ccsync key unlock` with the passphrase",
                    self.remote, enc.generation
                ))));
            }
            return Err(no_key());
        };
        let mut ring = match keys::unwrap(&wrapped, &me) {
            Ok(r) => r,
            Err(seal::SealError::WrongKey) => return Err(other("this machine's key")),
            Err(seal::SealError::Corrupt(why)) => {
                return Err(anyhow::Error::new(StoreError::Damaged(format!(
                    "the key left for this machine in {} ({path}) is damaged: {why}",
                    self.remote
                ))));
            }
        };
        if let Some(l) = &local {
            ring.absorb(l);
        }
        ring.remote = self.remote.clone();
        let seal = ring.seal(enc).map_err(|p| match p {
            keys::KeyProblem::Old(_) => no_key(),
            keys::KeyProblem::Other => other("the key left for this machine"),
        })?;
        self.keys.save_ring(&ring)?;
        Ok(seal)
    }

    /// The format marker this machine writes: an encrypted repository's, or a plain one of
    /// the version the repository has (3 for a new one).
    pub fn new_marker(&self, machine: &str) -> Result<FormatMarker> {
        Ok(match self.codec()? {
            Codec::Sealed(_) => match self.encryption()? {
                Some(e) => FormatMarker::encrypted(e),
                None => FormatMarker::new(machine),
            },
            Codec::Packed => FormatMarker::packed(machine),
            Codec::Plain => FormatMarker::new(machine),
        })
    }

    /// A reader of stored files (their plaintext).
    pub fn reader(&self) -> Result<BlobReader> {
        Ok(BlobReader::new(self.git.reader()?, self.codec()?))
    }

    /// A transaction building on `base`.
    pub fn transaction(&self, base: Option<&Oid>) -> Result<Txn> {
        Txn::new(&self.git, self.codec()?, base, self.listings.clone())
    }

    /// All files of a commit.
    pub fn tree(&self, commit: &Oid) -> Result<Vec<TreeEntry>> {
        self.ls_tree(commit, None)
    }

    /// The files of a commit under `prefix` (a folder, or one file), with their repository
    /// paths and plaintext sizes.
    pub fn ls_tree(&self, commit: &Oid, prefix: Option<&str>) -> Result<Vec<TreeEntry>> {
        objects::ls_tree(&self.git, &self.codec()?, commit, prefix, &self.listings)
    }

    /// The names at the root of a commit.
    pub fn top_names(&self, commit: &Oid) -> Result<Vec<String>> {
        if let Ok(t) = self.tops.lock()
            && let Some((c, names)) = t.as_ref()
            && c == commit
        {
            return Ok(names.clone());
        }
        let names = objects::top_names(&self.git, self.seal()?.as_deref(), commit)?;
        if let Ok(mut t) = self.tops.lock() {
            *t = Some((commit.clone(), names.clone()));
        }
        Ok(names)
    }

    /// The files that changed between two commits (`A`, `M`, `D` and the path).
    pub fn diff_names(&self, a: &Oid, b: &Oid) -> Result<Vec<(char, String)>> {
        objects::diff_names(&self.git, self.seal()?.as_deref(), a, b)
    }

    /// The changes of the first-parent commits of `head` to files matching `patterns`.
    pub fn changes(
        &self,
        head: &Oid,
        patterns: &[&str],
    ) -> Result<Vec<(Oid, Vec<history::RawChange>)>> {
        objects::changes(&self.git, self.seal()?.as_deref(), head, patterns)
    }

    /// The plaintext sizes of stored files.
    pub fn blob_sizes(&self, oids: &[Oid]) -> Result<std::collections::HashMap<Oid, u64>> {
        objects::blob_sizes(&self.git, &self.codec()?, oids)
    }

    /// The blobs at `paths` of `commit`.
    pub fn resolve_paths(
        &self,
        commit: &Oid,
        paths: &[String],
    ) -> Result<std::collections::HashMap<String, Oid>> {
        let written = self.written.lock().ok().and_then(|w| w.clone());
        let written = written
            .as_ref()
            .filter(|(c, _)| c == commit)
            .map(|(_, m)| m);
        objects::resolve_paths(
            &self.git,
            self.seal()?.as_deref(),
            commit,
            paths,
            written,
            &self.listings,
        )
    }

    /// Which of `oids` the clone lacks.
    pub fn missing_objects(&self, oids: &[Oid]) -> Result<std::collections::HashSet<Oid>> {
        self.git.missing_objects(oids)
    }

    /// The commits of `head` along the first parent, newest first.
    pub fn commits(&self, head: &Oid) -> Result<Vec<history::Commit>> {
        history::commits(&self.git, head)
    }

    /// One file of a commit, if present.
    pub fn read_file(&self, commit: &Oid, path: &str) -> Result<Option<Vec<u8>>> {
        let codec = self.codec()?;
        // Files stored as they are: read by name through the clone's one reader.
        let as_stored = match &codec {
            Codec::Plain => true,
            Codec::Packed => !layout::is_segment_path(path),
            Codec::Sealed(_) => false,
        };
        if as_stored {
            return self.read_clear(commit, path);
        }
        if let Some(hit) = self.cached(commit, path, false) {
            return Ok(hit);
        }
        let got = objects::read_file(&self.git, &codec, commit, path, &self.listings)?;
        self.remember(commit, path, false, &got);
        Ok(got)
    }

    /// One file of a commit as stored (the clear files of an encrypted repository).
    pub fn read_clear(&self, commit: &Oid, path: &str) -> Result<Option<Vec<u8>>> {
        if let Some(hit) = self.cached(commit, path, true) {
            return Ok(hit);
        }
        let got = self.read_named(&format!("{}:{path}", commit.0))?;
        self.remember(commit, path, true, &got);
        Ok(got)
    }

    /// The blob git names `rev`, through this store's long-lived `cat-file --batch`.
    fn read_named(&self, rev: &str) -> Result<Option<Vec<u8>>> {
        let mut slot = self
            .named
            .lock()
            .map_err(|_| anyhow!("the reader of the local clone failed earlier"))?;
        let reader = match slot.as_mut() {
            Some(r) => r,
            None => slot.insert(self.git.reader()?),
        };
        let got = reader.read_named(rev);
        if got.is_err() {
            // Start a new one next time.
            *slot = None;
        }
        got
    }

    fn cached(&self, commit: &Oid, path: &str, clear: bool) -> Option<Option<Vec<u8>>> {
        let small = self.small.lock().ok()?;
        small
            .get(&(commit.clone(), path.to_string(), clear))
            .cloned()
    }

    fn remember(&self, commit: &Oid, path: &str, clear: bool, got: &Option<Vec<u8>>) {
        /// Larger files are read once by whoever needs them.
        const SMALL: usize = 256 << 10;
        if got.as_ref().is_none_or(|b| b.len() <= SMALL)
            && let Ok(mut small) = self.small.lock()
        {
            small.insert((commit.clone(), path.to_string(), clear), got.clone());
        }
    }

    /// One JSON file of a commit, parsed; a file that does not parse is an error naming it.
    pub fn read_json<T: DeserializeOwned>(&self, commit: &Oid, path: &str) -> Result<Option<T>> {
        match self.read_file(commit, path)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| anyhow!("{path} in the sync repository is not valid: {e}")),
        }
    }

    /// Build a commit on the remote head with `build` and push it; on rejection fetch and build
    /// again. `build` gets the head it builds on and records its changes in the transaction;
    /// recording none means there is nothing to do (`Ok(None)`). With `fetch_first`, the remote
    /// is fetched before the first attempt; otherwise the last known head is tried first.
    pub fn commit_and_push<F>(
        &self,
        message: &str,
        fetch_first: bool,
        timeout: Duration,
        build: F,
    ) -> Result<Option<Oid>>
    where
        F: FnMut(Option<&Oid>, &mut Txn) -> Result<()>,
    {
        self.commit_and_push_as(Sealing::Check, message, fetch_first, timeout, build)
    }

    /// [`Store::commit_and_push`], sealing as `sealing` says.
    pub fn commit_and_push_as<F>(
        &self,
        sealing: Sealing,
        message: &str,
        fetch_first: bool,
        timeout: Duration,
        mut build: F,
    ) -> Result<Option<Oid>>
    where
        F: FnMut(Option<&Oid>, &mut Txn) -> Result<()>,
    {
        let mut head = if fetch_first {
            self.fetch(timeout)?
        } else {
            self.known_head()?
        };
        let started = Instant::now();
        for attempt in 0..MAX_PUSH_ATTEMPTS {
            let t0 = Instant::now();
            let mut txn = match sealing {
                Sealing::Check => {
                    // The key check, before anything is written: the repository at this head
                    // must open with this machine's keys (or be a plain one).
                    self.resolve_seal(head.as_ref())?;
                    self.transaction(head.as_ref())?
                }
                Sealing::Current => self.transaction(head.as_ref())?,
                Sealing::ClearOnly => Txn::new(
                    &self.git,
                    Codec::Plain,
                    head.as_ref(),
                    self.listings.clone(),
                )?,
            };
            let local_remote =
                is_local_remote(&self.remote).then(|| local_remote_path(&self.remote));
            let packs_before = match &local_remote {
                Some(_) => self.git.packs(),
                None => Default::default(),
            };
            build(head.as_ref(), &mut txn)?;
            if let Some(sk) = &self.skeleton
                && sealing != Sealing::ClearOnly
            {
                self.repair_skeleton(sk, head.as_ref(), &mut txn)?;
            }
            if !txn.has_changes() {
                return Ok(None);
            }
            let (commit, written) = txn.commit_mapped(head.as_ref(), &self.author, message)?;
            if let Ok(mut w) = self.written.lock() {
                *w = Some((commit.clone(), written));
            }
            let t1 = Instant::now();
            let by_files = match &local_remote {
                Some(dir) => self.git.push_by_objects(
                    dir,
                    &commit,
                    &self.branch,
                    head.as_ref(),
                    &packs_before,
                )?,
                None => None,
            };
            let pushed = match by_files {
                Some(outcome) => outcome,
                None => self
                    .git
                    .push(&self.remote, &commit, &self.branch, timeout)?,
            };
            tracing::debug!(
                "commit {} built in {:.2} s, pushed in {:.2} s",
                commit.short(),
                (t1 - t0).as_secs_f64(),
                t1.elapsed().as_secs_f64()
            );
            match pushed {
                PushOutcome::Pushed => {
                    self.git.set_ref(&self.tracking_ref(), Some(&commit))?;
                    return Ok(Some(commit));
                }
                PushOutcome::Rejected => {
                    tracing::info!(
                        "the remote moved (attempt {}); fetching and merging again",
                        attempt + 1
                    );
                    backoff(attempt);
                    head = self.fetch(timeout)?;
                }
            }
        }
        Err(anyhow::Error::new(StoreError::Rejected(format!(
            "the sync remote kept changing during {:.0} s ({MAX_PUSH_ATTEMPTS} attempts): try again in a moment",
            started.elapsed().as_secs_f64()
        ))))
    }
}

impl Store {
    /// Put back what `head` lacks of the skeleton (unless the transaction already writes it):
    /// the format marker, this machine's record, and — when the marker or the record was
    /// missing — this machine's placeholders. A repository that holds something other than
    /// ccsync's own folders is left alone.
    fn repair_skeleton(&self, sk: &Skeleton, head: Option<&Oid>, txn: &mut Txn) -> Result<()> {
        let rec_path = format::machine_path(&sk.me.machine_id);
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut present: BTreeSet<String> = BTreeSet::new();
        if let Some(h) = head {
            for n in self.top_names(h)? {
                if n == FORMAT_FILE || n == SHARED_PLACEHOLDERS {
                    present.insert(n.clone());
                }
                names.insert(n);
            }
            if names.contains(format::MACHINES_DIR)
                && self
                    .ls_tree(h, Some(&rec_path))?
                    .iter()
                    .any(|e| e.path_str() == Some(rec_path.as_str()))
            {
                present.insert(rec_path.clone());
            }
        }
        if !present.contains(FORMAT_FILE)
            && names.iter().any(|n| !OWN_ROOT_NAMES.contains(&n.as_str()))
        {
            // Without a marker and with other things in it: someone else's repository.
            return Ok(());
        }
        // An encrypted repository keeps this machine's wrapped key (a repository that lost
        // it, or a member added before keys were wrapped per machine, gets it back).
        if txn.sealed()
            && let Some(ring) = self.keys.ring()?
        {
            let mine = self.keys.recipient()?;
            let path = keys::machine_file(&mine);
            let has = match head {
                Some(h) => self.read_clear(h, &path)?.is_some(),
                None => false,
            };
            if !has && !txn.touches(&path) {
                txn.put_bytes(&path, &keys::wrap(&ring, &mine)?)?;
            }
        }
        let marker_missing = !present.contains(FORMAT_FILE) && !txn.touches(FORMAT_FILE);
        let record_missing = !present.contains(&rec_path) && !txn.touches(&rec_path);
        if !marker_missing && !record_missing {
            return Ok(());
        }
        if head.is_some() {
            tracing::info!(
                "the sync repository lacks {}: writing it again",
                [
                    marker_missing.then_some(FORMAT_FILE),
                    record_missing.then_some(rec_path.as_str())
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" and ")
            );
        }
        if marker_missing {
            let marker = self.new_marker(&sk.me.machine_id)?;
            txn.put_bytes(FORMAT_FILE, &format::to_json_bytes(&marker)?)?;
        }
        if record_missing {
            let m = txn.blob(&format::to_json_bytes(&sk.me)?)?;
            txn.put(&rec_path, m)?;
        }
        if !txn.touches(SHARED_PLACEHOLDERS) {
            let old: Option<SharedPlaceholders> = match head {
                Some(h) if present.contains(SHARED_PLACEHOLDERS) => {
                    match self.read_json(h, SHARED_PLACEHOLDERS) {
                        Ok(sp) => sp,
                        // Not ours to overwrite: someone can still read and fix it.
                        Err(e) => {
                            tracing::warn!("{e:#}");
                            return Ok(());
                        }
                    }
                }
                _ => None,
            };
            let missing = old.is_none();
            let mut sp = old.unwrap_or_default();
            let mut changed = false;
            for (name, path) in &sk.placeholders {
                changed |= sp.set(name, &sk.me.machine_id, path);
            }
            if changed || missing {
                let m = txn.blob(&format::to_json_bytes(&sp)?)?;
                txn.put(SHARED_PLACEHOLDERS, m)?;
            }
        }
        Ok(())
    }
}

/// Where the remote branch points now, without fetching: read from the repository's own refs
/// when the remote is on this machine (no process at all in the usual case), else asked with
/// `git ls-remote`. `Ok(None)`: the branch does not exist (or the repository is empty).
pub fn peek_remote_head(remote: &str, branch: &str, timeout: Duration) -> Result<Option<Oid>> {
    if is_local_remote(remote) {
        let dir = local_remote_path(remote);
        let refname = format!("refs/heads/{branch}");
        if !dir.join("HEAD").is_file() || dir.join("reftable").exists() {
            // Not a plain bare repository (a work tree, reftable refs): let git read it.
            return git::ls_remote(remote, branch, timeout);
        }
        match std::fs::read_to_string(dir.join(&refname)) {
            Ok(text) => {
                return match Oid::parse(&text) {
                    Some(o) => Ok(Some(o)),
                    None => git::ls_remote(remote, branch, timeout),
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return git::ls_remote(remote, branch, timeout),
        }
        let packed = match std::fs::read_to_string(dir.join("packed-refs")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(_) => return git::ls_remote(remote, branch, timeout),
        };
        return Ok(packed
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(_, name)| *name == refname)
            .and_then(|(oid, _)| Oid::parse(oid)));
    }
    git::ls_remote(remote, branch, timeout)
}

/// Why a clone cannot be used as it is, if it cannot: it does not open, a ref names an object
/// that is missing or unreadable, or an earlier command found it damaged.
fn clone_damage(git: &Git) -> Option<String> {
    if let Some(note) = git.damage_note() {
        return Some(note);
    }
    git.check_refs().err()
}

/// Move a damaged clone aside (kept, named with the time) so that a new one is made.
fn set_aside(home: &Home, dir: &Path, why: &str) -> Result<()> {
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let mut aside = home.root.join(format!("repo.git.broken-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = home.root.join(format!("repo.git.broken-{stamp}-{n}"));
    }
    tracing::warn!(
        "the local clone {} is damaged ({why}); it was moved to {} and is cloned again (nothing local is lost)",
        dir.display(),
        aside.display()
    );
    std::fs::rename(dir, &aside).with_context(|| {
        format!(
            "the local clone {} is damaged ({why}) and cannot be moved aside",
            dir.display()
        )
    })?;
    // Keep the newest few.
    let mut old: Vec<PathBuf> = std::fs::read_dir(&home.root)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("repo.git.broken-")
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    if old.len() > KEEP_BROKEN {
        old.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        for p in &old[..old.len() - KEEP_BROKEN] {
            let _ = std::fs::remove_dir_all(p);
        }
    }
    Ok(())
}

/// Run `op`; when it fails because the local clone is damaged ([`CloneDamaged`]), run it once
/// more: the store it opens sets the damaged clone aside and clones again. `op` must be safe to
/// repeat (push and pull are: their local writes are atomic and the index is saved last).
pub fn with_clone_repair<T>(mut op: impl FnMut() -> Result<T>) -> Result<T> {
    match op() {
        Err(e) if is_clone_damage(&e) => {
            tracing::info!("{e:#}: setting it aside, cloning again and retrying");
            op()
        }
        r => r,
    }
}

/// The settings of the local clone (`git config` keys and values).
fn clone_settings(branch: &str) -> Vec<(&'static str, String)> {
    let mut v = vec![
        (
            "remote.origin.fetch",
            format!("+refs/heads/{branch}:refs/remotes/origin/{branch}"),
        ),
        ("core.compression", "1".into()),
        ("pack.compression", "1".into()),
        ("pack.window", "0".into()),
        ("gc.auto", "0".into()),
        // With gc.auto at 0 the upkeep a fetch starts does nothing: not even start it.
        ("maintenance.auto", "false".into()),
        ("fetch.unpackLimit", "1".into()),
        ("core.bigFileThreshold", "1m".into()),
    ];
    // Git for Windows: paths of more than 260 characters (a deep home folder).
    if crate::os::native_is_windows() {
        v.push(("core.longpaths", "true".into()));
    }
    v
}

/// Clone a remote on this machine (hard links, no pack transfer) with the clone's settings, so
/// that its tracking ref is set as by a fetch; returns whether it did (else `dir` is a new empty
/// repository).
fn clone_local(src: &Path, dir: &Path, branch: &str) -> Result<bool> {
    let mut cmd = std::process::Command::new(git::git_exe());
    cmd.args(["clone", "--bare", "--local", "--quiet", "--no-tags"]);
    for (k, v) in clone_settings(branch) {
        cmd.arg("--config").arg(format!("{k}={v}"));
    }
    let out = cmd
        .arg(src)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow!("cannot run git: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(dir);
        Git::init_bare(dir)?;
        return Ok(false);
    }
    Ok(true)
}

fn backoff(attempt: u32) {
    // 40 ms doubling to about 2.5 s, with jitter so racing machines fall out of step.
    let base = 40u64 << attempt.min(6);
    let jitter =
        (std::process::id() as u64 ^ Instant::now().elapsed().subsec_nanos() as u64 ^ nanos())
            % (base + 1);
    let pause = Duration::from_millis(base / 2 + jitter);
    // Never past this process's deadline: the next step would not start anyway.
    std::thread::sleep(git::deadline_left().map_or(pause, |left| pause.min(left)));
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

/// Another ccsync process kept the local clone longer than this one waits: who it is (its pid,
/// what it is doing, for how long), in words, and its pid.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.sentence())]
pub struct CloneBusy {
    /// "another ccsync process (pid 123, `ccsync pull`, for 40 s)"
    pub holder: String,
    pub pid: Option<u32>,
    pub path: PathBuf,
    /// How long this process waited, in whole seconds (0: it did not wait).
    pub waited: u64,
}

impl CloneBusy {
    fn sentence(&self) -> String {
        if self.waited == 0 {
            format!(
                "{} is using {}: try again when it is done",
                self.holder,
                self.path.display()
            )
        } else {
            format!(
                "{} has been using {} for longer than the {} s this command waits: try again when it is done",
                self.holder,
                self.path.display(),
                self.waited
            )
        }
    }
}

/// The clone lock was busy (anywhere in the error's chain).
pub fn clone_busy(e: &anyhow::Error) -> Option<&CloneBusy> {
    e.chain().find_map(|c| c.downcast_ref::<CloneBusy>())
}

/// What this process says it is doing, for whoever waits for the clone lock it holds (default:
/// its command line).
static ACTIVITY: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Say what this process is doing while it holds the clone lock ("the session-end hook, pushing
/// session 0a1b2c3d"): a process waiting for the lock shows it.
pub fn set_activity(what: &str) {
    if let Ok(mut g) = ACTIVITY.lock() {
        *g = Some(what.replace(['\n', '\r'], " "));
    }
}

/// How much longer, in all, this process may wait for the clone lock (`None`: each wait is
/// bounded by its own caller only).
static CLONE_WAIT_LEFT: std::sync::Mutex<Option<Duration>> = std::sync::Mutex::new(None);

/// Bound the total time this process spends waiting for the clone lock, over every wait from
/// now on (`None`: no total). Once it is used up, a busy clone fails at once.
pub fn limit_clone_waits(total: Option<Duration>) {
    if let Ok(mut g) = CLONE_WAIT_LEFT.lock() {
        *g = total;
    }
}

fn clone_wait_left() -> Option<Duration> {
    CLONE_WAIT_LEFT.lock().ok().and_then(|g| *g)
}

fn spend_clone_wait(d: Duration) {
    if let Ok(mut g) = CLONE_WAIT_LEFT.lock()
        && let Some(left) = g.as_mut()
    {
        *left = left.saturating_sub(d);
    }
}

/// Take the clone lock, waiting for another ccsync process to finish (up to `wait`, and never
/// longer than this process's total for such waits or its deadline). A file beside the lock
/// file then says who holds it (pid, what it is doing, since when), so that a process waiting
/// for it can name the holder. (Not the lock file itself: on Windows a locked file cannot be
/// read through any other handle.)
fn lock_clone(path: &Path, wait: Duration) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    crate::os::make_private(path).ok();
    let wait = [clone_wait_left(), git::deadline_left()]
        .into_iter()
        .flatten()
        .fold(wait, Duration::min);
    let start = Instant::now();
    let mut said = false;
    loop {
        match f.try_lock() {
            Ok(()) => {
                spend_clone_wait(start.elapsed());
                note_holder(path);
                return Ok(f);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                if !said && start.elapsed() > Duration::from_secs(1) && start.elapsed() < wait {
                    tracing::warn!(
                        "waiting up to {} s for {} to finish with {}",
                        wait.as_secs_f64().ceil() as u64,
                        holder_of(path).1,
                        path.display()
                    );
                    said = true;
                }
                if start.elapsed() >= wait {
                    spend_clone_wait(start.elapsed());
                    let (pid, holder) = holder_of(path);
                    return Err(anyhow::Error::new(CloneBusy {
                        holder,
                        pid,
                        path: path.to_path_buf(),
                        waited: if wait.is_zero() {
                            0
                        } else {
                            wait.as_secs_f64().ceil() as u64
                        },
                    }));
                }
                std::thread::sleep(
                    Duration::from_millis(50).min(wait.saturating_sub(start.elapsed())),
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
    }
}

/// The file naming the holder of the lock `path`: `repo.lock.holder`.
fn holder_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".holder");
    PathBuf::from(p)
}

/// Write who holds the clone lock beside the lock file: `pid unix-seconds what…`, where `what`
/// is the activity this process declared ([`set_activity`]), else its command line.
fn note_holder(path: &Path) {
    let what = ACTIVITY
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_else(|| {
            let words: Vec<String> = std::env::args()
                .skip(1)
                .take(3)
                .map(|a| a.replace(['\n', '\r'], " "))
                .collect();
            format!("`ccsync {}`", words.join(" "))
        });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let line = format!("{} {now} {what}\n", std::process::id());
    let holder = holder_path(path);
    if std::fs::write(&holder, line).is_ok() {
        crate::os::make_private(&holder).ok();
    }
}

/// Who holds the clone lock, as the file beside it says: its pid and "another ccsync process
/// (pid 123, `ccsync pull`, for 40 s)".
fn holder_of(path: &Path) -> (Option<u32>, String) {
    let text = std::fs::read_to_string(holder_path(path)).unwrap_or_default();
    let mut it = text.trim().splitn(3, ' ');
    let (Some(pid), since) = (it.next().and_then(|p| p.parse::<u32>().ok()), it.next()) else {
        return (None, "another ccsync process".to_string());
    };
    let what = it.next().unwrap_or("").trim();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let age = since
        .and_then(|s| s.parse::<u64>().ok())
        .map(|s| format!(", for {} s", now.saturating_sub(s)))
        .unwrap_or_default();
    let what = if what.is_empty() {
        String::new()
    } else {
        format!(", {what}")
    };
    (
        Some(pid),
        format!("another ccsync process (pid {pid}{what}{age})"),
    )
}

/// Git `*.lock` files left by a process killed inside git. Only ccsync uses this clone and we
/// hold its lock, so any such file is stale.
fn remove_stale_git_locks(dir: &Path) {
    // `index.lock`, `packed-refs.lock`, `config.lock`, `HEAD.lock`, `shallow.lock`, …
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_file() && p.extension().is_some_and(|x| x == "lock") {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    fn walk(d: &Path) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p);
                } else if p.extension().is_some_and(|x| x == "lock") {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    }
    walk(&dir.join("refs"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remote_head_is_read_without_fetching() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Git::init_bare(&dir.path().join("remote.git")).unwrap();
        let r = remote.dir.to_string_lossy().into_owned();
        let t = Duration::from_secs(30);
        assert_eq!(peek_remote_head(&r, "main", t).unwrap(), None, "empty");
        let mut txn = remote.transaction().unwrap();
        let m = txn.blob(b"x").unwrap();
        txn.put("x", m);
        let c = txn.commit(None, "t <t@t>", "one").unwrap();
        remote.set_ref("refs/heads/main", Some(&c)).unwrap();
        assert_eq!(peek_remote_head(&r, "main", t).unwrap(), Some(c.clone()));
        assert_eq!(
            peek_remote_head(&format!("file://{r}"), "main", t).unwrap(),
            Some(c.clone())
        );
        remote.run(["pack-refs", "--all"]).unwrap();
        assert!(!remote.dir.join("refs/heads/main").exists());
        assert_eq!(peek_remote_head(&r, "main", t).unwrap(), Some(c));
        assert_eq!(peek_remote_head(&r, "other", t).unwrap(), None);
    }

    #[test]
    fn a_commit_puts_back_the_skeleton_a_repository_lost() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Git::init_bare(&dir.path().join("remote.git")).unwrap();
        let r = remote.dir.to_string_lossy().into_owned();
        let home = Home::new(dir.path().join("a"));
        let t = Duration::from_secs(30);
        let mut store = Store::open(&home, &r, "main", "a").unwrap();
        store.skeleton = Some(Skeleton {
            me: MachineRecord {
                machine_id: "a".into(),
                hostname: "h".into(),
                path_style: crate::paths::PathStyle::Posix,
                registered_at: None,
                last_seen: None,
                ccsync_version: String::new(),
                install_id: String::new(),
            },
            placeholders: [("HOME".to_string(), "/home/a".to_string())].into(),
        });
        let put = |s: &Store, path: &str| {
            s.commit_and_push("t", true, t, |_, txn| {
                let m = txn.blob(b"x")?;
                txn.put(path, m)?;
                Ok(())
            })
            .unwrap()
            .unwrap()
        };
        let names = |c: &Oid| -> Vec<String> {
            store
                .tree(c)
                .unwrap()
                .into_iter()
                .map(|e| e.path_str().unwrap().to_string())
                .collect()
        };
        let c = put(&store, "history/000001.jsonl");
        assert_eq!(
            names(&c),
            [
                "ccsync.json",
                "history/000001.jsonl",
                "machines/a.json",
                "shared_placeholders.json"
            ]
        );
        let sp: SharedPlaceholders = store.read_json(&c, SHARED_PLACEHOLDERS).unwrap().unwrap();
        assert_eq!(
            sp.for_machine("a").get("HOME").map(String::as_str),
            Some("/home/a")
        );
        // Present: nothing rewritten.
        let c2 = put(&store, "history/000002.jsonl");
        assert_eq!(
            store
                .git
                .run(["diff-tree", "--name-only", "-r", &c.0, &c2.0])
                .unwrap()
                .trim(),
            "history/000002.jsonl"
        );
        // Someone else's repository (no marker, other things at its root) is left alone.
        let mut txn = remote.transaction().unwrap();
        let m = txn.blob(b"readme").unwrap();
        txn.put("README.md", m);
        let foreign = txn.commit(None, "t <t@t>", "other").unwrap();
        remote
            .run(["update-ref", "refs/heads/main", &foreign.0])
            .unwrap();
        let c3 = put(&store, "history/000003.jsonl");
        assert_eq!(names(&c3), ["README.md", "history/000003.jsonl"]);
    }

    #[test]
    fn local_remote_detection() {
        for local in [
            "/srv/sync.git",
            "relative/dir",
            "file:///srv/x.git",
            "C:\\sync",
            "C:/sync",
            "./a:b",
        ] {
            assert!(is_local_remote(local), "{local}");
        }
        for url in [
            "https://github.com/a/b.git",
            "git@github.com:a/b.git",
            "ssh://host/x",
            "host:repo.git",
        ] {
            assert!(!is_local_remote(url), "{url}");
        }
    }

    #[test]
    fn commit_messages_never_carry_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Git::init_bare(&dir.path().join("remote.git")).unwrap();
        let r = remote.dir.to_string_lossy().into_owned();
        let home = Home::new(dir.path().join("a"));
        let t = Duration::from_secs(30);
        let s = Store::open(&home, &r, "main", "a").unwrap();
        // Built at run time: no secret-shaped literal in the source.
        let token = ["gh", "p_", "Zq7Xw2Lm9Kp4Rt6Vy8Bn3Cd5Fg1Hj0As2Qe4"].concat();
        let c = s
            .commit_and_push(&format!("a: push with {token}"), false, t, |_, txn| {
                let m = txn.blob(b"x")?;
                txn.put("files/x", m)?;
                Ok(())
            })
            .unwrap()
            .unwrap();
        let raw = remote.run(["cat-file", "commit", &c.0]).unwrap();
        assert!(!raw.contains(&token), "{raw}");
        assert!(
            raw.contains("a: push with [REDACTED:github-token:"),
            "{raw}"
        );
    }

    #[test]
    fn broken_clone_is_replaced_and_concurrent_commits_both_land() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Git::init_bare(&dir.path().join("remote.git")).unwrap();
        let r = remote.dir.to_string_lossy().into_owned();
        let home_a = Home::new(dir.path().join("a"));
        let home_b = Home::new(dir.path().join("b"));
        let t = Duration::from_secs(30);
        let put = |s: &Store, name: &str| {
            s.commit_and_push("test", false, t, |head, txn| {
                let m = txn.blob(name.as_bytes())?;
                txn.put(&format!("files/{name}"), m)?;
                let _ = head;
                Ok(())
            })
            .unwrap()
            .unwrap()
        };
        {
            let a = Store::open(&home_a, &r, "main", "a").unwrap();
            assert_eq!(a.fetch(t).unwrap(), None, "empty remote");
            put(&a, "one");
        }
        {
            // B builds on a stale head (it never fetched): rejected, refetched, rebuilt.
            let b = Store::open(&home_b, &r, "main", "b").unwrap();
            let c = put(&b, "two");
            let names: Vec<_> = b
                .tree(&c)
                .unwrap()
                .into_iter()
                .map(|e| e.path_str().unwrap().to_string())
                .collect();
            assert_eq!(names, ["files/one", "files/two"]);
        }
        // Break A's clone: it is set aside and recreated.
        std::fs::write(home_a.repo_dir().join("HEAD"), "garbage").unwrap();
        let a = Store::open(&home_a, &r, "main", "a").unwrap();
        let head = a.fetch(t).unwrap().unwrap();
        assert_eq!(a.read_file(&head, "files/two").unwrap().unwrap(), b"two");
        assert!(std::fs::read_dir(&home_a.root).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("repo.git.broken-")
        }));
    }

    /// Bytes that do not compress (so that a pack of them is as large as they are).
    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn a_push_to_a_local_remote_hands_over_its_object_files_and_stays_a_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Git::init_bare(&dir.path().join("remote.git")).unwrap();
        let r = remote.dir.to_string_lossy().into_owned();
        let t = Duration::from_secs(30);
        // Over 100 objects: fast-import writes fewer as loose objects, not a pack.
        let put = |s: &Store, name: &str, data: &[u8]| {
            s.commit_and_push("test", false, t, |_, txn| {
                let m = txn.blob(data)?;
                txn.put(&format!("files/{name}"), m)?;
                for i in 0..120 {
                    let m = txn.blob(format!("{name} {i}").as_bytes())?;
                    txn.put(&format!("small/{name}/{i}"), m)?;
                }
                Ok(())
            })
            .unwrap()
            .unwrap()
        };
        let big_a = noise(1, 6 << 20);
        let big_b = noise(2, 6 << 20);
        let a = Store::open(&Home::new(dir.path().join("a")), &r, "main", "a").unwrap();
        let b = Store::open(&Home::new(dir.path().join("b")), &r, "main", "b").unwrap();
        assert_eq!(a.fetch(t).unwrap(), None);
        let ca = put(&a, "a", &big_a);
        assert_eq!(remote.resolve("refs/heads/main").unwrap(), Some(ca.clone()));
        // The remote holds A's own pack, not one `git push` made.
        let shared: Vec<_> = a
            .git
            .packs()
            .intersection(&remote.packs())
            .cloned()
            .collect();
        assert_eq!(shared.len(), 1, "{shared:?}");
        // B never fetched: its first try expects an empty branch, is refused, fetches, builds
        // again on A's commit.
        let cb = put(&b, "b", &big_b);
        assert_eq!(remote.resolve("refs/heads/main").unwrap(), Some(cb.clone()));
        let names: Vec<_> = b
            .tree(&cb)
            .unwrap()
            .into_iter()
            .map(|e| e.path_str().unwrap().to_string())
            .filter(|p| p.starts_with("files/"))
            .collect();
        assert_eq!(names, ["files/a", "files/b"]);
        assert_eq!(b.tree(&cb).unwrap().len(), 242);
        remote.run(["fsck", "--strict", "--no-dangling"]).unwrap();
        let mut rd = remote.reader().unwrap();
        let ids = remote.ls_tree(&cb, Some("files")).unwrap();
        assert!(rd.read(&ids[0].oid).unwrap() == big_a);
        assert!(rd.read(&ids[1].oid).unwrap() == big_b);

        // A small push: its loose objects are handed over as they are.
        let cs = b
            .commit_and_push("small", false, t, |_, txn| {
                let m = txn.blob(b"one more line\n")?;
                txn.put("files/small", m)
            })
            .unwrap()
            .unwrap();
        assert_eq!(remote.resolve("refs/heads/main").unwrap(), Some(cs.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            let name = format!("objects/{}/{}", &cs.0[..2], &cs.0[2..]);
            let ino = |g: &Git| std::fs::metadata(g.dir.join(&name)).unwrap().ino();
            assert_eq!(
                ino(&b.git),
                ino(&remote),
                "the commit was not handed over as a file"
            );
        }
        remote.run(["fsck", "--strict", "--no-dangling"]).unwrap();

        // A remote with a hook gets `git push`, which runs it.
        let hooked = Git::init_bare(&dir.path().join("hooked.git")).unwrap();
        let ran = dir.path().join("hook-ran");
        let hook = hooked.dir.join("hooks/post-receive");
        std::fs::write(&hook, format!("#!/bin/sh\ntouch '{}'\n", ran.display())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let h = hooked.dir.to_string_lossy().into_owned();
        let c = Store::open(&Home::new(dir.path().join("c")), &h, "main", "c").unwrap();
        put(&c, "c", &big_a);
        assert!(c.git.packs().intersection(&hooked.packs()).next().is_none());
        #[cfg(unix)]
        assert!(ran.exists(), "the remote's hook did not run");
    }

    #[test]
    fn a_process_waiting_for_the_clone_lock_is_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo.lock");
        let held = lock_clone(&path, Duration::from_secs(1)).unwrap();
        let start = Instant::now();
        let e = lock_clone(&path, Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("for longer than the 1 s"), "{e}");
        drop(held);
        assert!(lock_clone(&path, Duration::from_millis(200)).is_ok());
    }
}
