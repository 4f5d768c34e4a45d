//! The sync repository: a private bare clone in the tool home, kept next to the user's remote,
//! and the compare-and-swap commit that every change goes through.
//!
//! * [`Store::open`] makes sure the clone exists, points at the configured remote, is not left
//!   broken by a crash (a broken clone is set aside and cloned again; everything in it is also in
//!   the remote or on the local disk), and holds a file lock so one process at a time works on it.
//! * [`Store::fetch`] brings the remote branch into `refs/remotes/origin/<branch>`.
//! * [`Store::commit_and_push`] builds a commit on the remote head with `fast-import` and pushes
//!   it without force. When another machine pushed first the push is rejected; the store fetches
//!   and builds again on the new head, with back-off, a bounded number of times.

pub mod format;
pub mod git;
pub mod github;
pub mod layout;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::de::DeserializeOwned;

use crate::config::Home;
pub use git::{BlobReader, Git, Oid, PushOutcome, TreeEntry, Txn};

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
    author: String,
    /// Held for the life of the store: one process at a time works on the clone.
    _lock: File,
}

impl Store {
    /// Open (creating or repairing as needed) the local clone for `remote`, waiting up to ten
    /// minutes for another ccsync process to finish with it.
    pub fn open(home: &Home, remote: &str, branch: &str, machine: &str) -> Result<Store> {
        Self::open_waiting(home, remote, branch, machine, Duration::from_secs(600))
    }

    /// The store of a machine's configured remote (waiting up to ten minutes for the clone).
    pub fn of(home: &Home, config: &crate::config::Config) -> Result<Store> {
        Self::open(home, &config.remote, &config.branch, &config.machine_id)
    }

    /// [`Store::of`], waiting at most `wait` for another ccsync process.
    pub fn of_waiting(
        home: &Home,
        config: &crate::config::Config,
        wait: Duration,
    ) -> Result<Store> {
        Self::open_waiting(
            home,
            &config.remote,
            &config.branch,
            &config.machine_id,
            wait,
        )
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
        if dir.exists() && !git.is_valid() {
            let aside = home.root.join(format!(
                "repo.git.broken-{}",
                chrono::Utc::now().format("%Y%m%d%H%M%S")
            ));
            tracing::warn!(
                "the local clone {} is damaged; moving it to {} and cloning again",
                dir.display(),
                aside.display()
            );
            std::fs::rename(&dir, &aside).with_context(|| {
                format!("cannot move the damaged clone {} aside", dir.display())
            })?;
        }
        if !dir.exists() {
            let local = is_local_remote(remote)
                .then(|| local_remote_path(remote))
                .filter(|p| Git::new(p).is_valid());
            match local {
                // A remote on this machine: clone it locally (hard links, no pack transfer).
                Some(src) => clone_local(&src, &dir)?,
                None => {
                    Git::init_bare(&dir)?;
                }
            }
            crate::os::make_private(&dir).ok();
        }
        remove_stale_git_locks(&dir);
        let store = Store {
            git,
            remote: remote.to_string(),
            branch: branch.to_string(),
            author: format!("ccsync <{machine}@ccsync>"),
            _lock: lock,
        };
        store.configure()?;
        Ok(store)
    }

    fn configure(&self) -> Result<()> {
        let current = self
            .git
            .run(["config", "--get", "remote.origin.url"])
            .ok()
            .map(|s| s.trim().to_string());
        if current.as_deref() != Some(self.remote.as_str()) {
            if current.is_some() {
                self.git
                    .run(["remote", "set-url", "origin", &self.remote])?;
            } else {
                self.git.run(["remote", "add", "origin", &self.remote])?;
            }
            // Refs of another remote mean nothing here.
            let _ = self.git.set_ref(&self.tracking_ref(), None);
        }
        let fetch = format!("+refs/heads/{b}:refs/remotes/origin/{b}", b = self.branch);
        for (k, v) in [
            ("remote.origin.fetch", fetch.as_str()),
            ("core.compression", "1"),
            ("pack.compression", "1"),
            ("pack.window", "0"),
            ("gc.auto", "0"),
            ("fetch.unpackLimit", "1"),
            ("core.bigFileThreshold", "1m"),
        ] {
            if self
                .git
                .run(["config", "--get", k])
                .ok()
                .map(|s| s.trim().to_string())
                .as_deref()
                != Some(v)
            {
                self.git.run(["config", k, v])?;
            }
        }
        Ok(())
    }

    pub fn tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }

    /// The remote head as of the last fetch or push (no network).
    pub fn known_head(&self) -> Result<Option<Oid>> {
        self.git.resolve(&self.tracking_ref())
    }

    /// Fetch the remote branch; returns its head (`None`: the remote has no such branch yet).
    pub fn fetch(&self, timeout: Duration) -> Result<Option<Oid>> {
        let refspec = format!("+refs/heads/{b}:refs/remotes/origin/{b}", b = self.branch);
        let out = self.git.run_timeout(
            ["fetch", "--quiet", "--no-tags", "origin", &refspec],
            timeout,
        );
        match out {
            Ok(_) => self.known_head(),
            Err(e) => {
                let msg = e.to_string();
                if msg.contains("couldn't find remote ref") {
                    // An empty remote (or no such branch): nothing to build on.
                    self.git.set_ref(&self.tracking_ref(), None).ok();
                    return Ok(None);
                }
                Err(anyhow!(
                    "cannot reach the sync remote {}: {}",
                    self.remote,
                    msg
                ))
            }
        }
    }

    /// All files of a commit.
    pub fn tree(&self, commit: &Oid) -> Result<Vec<TreeEntry>> {
        self.git.ls_tree(commit, None)
    }

    /// One file of a commit, if present.
    pub fn read_file(&self, commit: &Oid, path: &str) -> Result<Option<Vec<u8>>> {
        let out = self
            .git
            .cmd()
            .args(["cat-file", "blob", &format!("{}:{path}", commit.0)])
            .output()
            .map_err(|e| anyhow!("cannot run git: {e}"))?;
        if !out.status.success() {
            return Ok(None);
        }
        Ok(Some(out.stdout))
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
            let mut txn = self.git.transaction()?;
            build(head.as_ref(), &mut txn)?;
            if !txn.has_changes() {
                return Ok(None);
            }
            let commit = txn.commit(head.as_ref(), &self.author, message)?;
            let t1 = Instant::now();
            let pushed = self
                .git
                .push(&self.remote, &commit, &self.branch, timeout)?;
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
        bail!(
            "the sync remote kept changing during {:.0} s ({MAX_PUSH_ATTEMPTS} attempts): try again in a moment",
            started.elapsed().as_secs_f64()
        )
    }
}

fn clone_local(src: &Path, dir: &Path) -> Result<()> {
    let out = std::process::Command::new(git::git_exe())
        .args(["clone", "--bare", "--local", "--quiet", "--no-tags"])
        .arg(src)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow!("cannot run git: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(dir);
        Git::init_bare(dir)?;
    }
    Ok(())
}

fn backoff(attempt: u32) {
    // 40 ms doubling to about 2.5 s, with jitter so racing machines fall out of step.
    let base = 40u64 << attempt.min(6);
    let jitter =
        (std::process::id() as u64 ^ Instant::now().elapsed().subsec_nanos() as u64 ^ nanos())
            % (base + 1);
    std::thread::sleep(Duration::from_millis(base / 2 + jitter));
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

/// Take the clone lock, waiting for another ccsync process to finish (up to `wait`).
fn lock_clone(path: &Path, wait: Duration) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    crate::os::make_private(path).ok();
    let start = Instant::now();
    let mut said = false;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => {
                if !said && start.elapsed() > Duration::from_secs(2) {
                    tracing::warn!(
                        "waiting for another ccsync process to finish with {}",
                        path.display()
                    );
                    said = true;
                }
                if start.elapsed() > wait {
                    bail!(
                        "another ccsync process has been using {} for {} s: try again when it is done",
                        path.display(),
                        wait.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
    }
}

/// Git `*.lock` files left by a process killed inside git. Only ccsync uses this clone and we
/// hold its lock, so any such file is stale.
fn remove_stale_git_locks(dir: &Path) {
    for rel in [
        "index.lock",
        "packed-refs.lock",
        "config.lock",
        "HEAD.lock",
        "shallow.lock",
    ] {
        let _ = std::fs::remove_file(dir.join(rel));
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
                txn.put(&format!("files/{name}"), m);
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
}
