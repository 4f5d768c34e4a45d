//! Running `git`: one-shot commands, a long-lived `cat-file --batch` reader, and `fast-import`
//! transactions that build a commit without any working tree.
//!
//! Git is always driven through the `git` executable, so the user's credential helpers, SSH
//! configuration and `gh` authentication apply to network operations.

use std::ffi::OsStr;
use std::fmt;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::os::IoAt;
use anyhow::{Context as _, Result, anyhow, bail};

/// A git object id (hex).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Oid(pub String);

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Oid {
    pub fn parse(s: &str) -> Option<Oid> {
        let s = s.trim();
        (s.len() >= 40 && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Oid(s.to_string()))
    }
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(10)]
    }
}

/// A git repository directory (bare), driven through the `git` command.
#[derive(Debug, Clone)]
pub struct Git {
    pub dir: PathBuf,
}

/// The result of a push attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Pushed,
    /// The remote branch moved since we built our commit (the compare-and-swap failed).
    Rejected,
}

/// The local clone is at fault (a ref naming a missing object, a corrupt or missing object or
/// pack, a broken config): not the remote. [`Git::mark_damaged`] has recorded it, and the next
/// [`crate::store::Store::open`] sets the clone aside and clones again.
#[derive(Debug, thiserror::Error)]
#[error("the local clone {} is damaged ({detail})", clone.display())]
pub struct CloneDamaged {
    pub clone: PathBuf,
    pub detail: String,
}

/// Whether an error (anywhere in its chain) is [`CloneDamaged`].
pub fn is_clone_damage(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<CloneDamaged>().is_some())
}

/// The file in a clone that records it was found damaged.
const DAMAGED_FILE: &str = "ccsync-damaged";

/// The first line of git's stderr that says the local repository is broken, if any. Lines the
/// remote sent (`remote: …`) never count: they describe the remote.
pub fn local_damage(stderr: &str) -> Option<String> {
    const SIGNS: &[&str] = &[
        "is corrupt",
        "inflate:",
        "unable to unpack",
        "bad object",
        "missing object",
        "missing blob",
        "missing tree",
        "missing commit",
        "invalid object",
        "does not point to a valid object",
        "packfile",
        "bad config",
        "unable to read",
        "object file",
        "loose object",
        "not a git repository",
        "not a valid object name",
        "bad packed object",
        "pack has bad object",
        "index file",
    ];
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("remote:") && !l.starts_with("hint:"))
        .find(|l| {
            let low = l.to_ascii_lowercase();
            SIGNS.iter().any(|s| low.contains(s))
        })
        .map(|l| {
            l.trim_start_matches("fatal: ")
                .trim_start_matches("error: ")
                .to_string()
        })
}

/// The git executable: `$CCSYNC_GIT` (tests) or `git`.
pub fn git_exe() -> std::ffi::OsString {
    std::env::var_os("CCSYNC_GIT")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "git".into())
}

/// `git --version` as (major, minor), or an error saying git is missing.
pub fn git_version() -> Result<(u32, u32, String)> {
    let out = Command::new(git_exe())
        .arg("--version")
        .output()
        .map_err(|e| {
            anyhow!("git is not installed or not on PATH ({e}): install git 2.20 or newer")
        })?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let ver = text.split_whitespace().nth(2).unwrap_or("");
    let mut it = ver.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    Ok((it.next().unwrap_or(0), it.next().unwrap_or(0), text))
}

impl Git {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Git { dir: dir.into() }
    }

    /// A `git` command on this repository. Network prompts are disabled unless a person can
    /// answer them.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(git_exe());
        c.arg("--git-dir").arg(&self.dir);
        c.env("GIT_ASKPASS_REQUIRE", "never");
        // Without a person to answer, git must not wait for a password. (SSH settings are the
        // user's own; a detached process has no terminal to ask on, and network steps have
        // timeouts.)
        if !crate::os::stdin_is_tty() {
            c.env("GIT_TERMINAL_PROMPT", "0");
        }
        c.stdin(Stdio::null());
        c
    }

    /// Run git with `args`; fail with its stderr when it fails.
    pub fn run<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = os_args(args);
        let out = self
            .cmd()
            .args(&args)
            .output()
            .map_err(|e| anyhow!("cannot run git: {e}"))?;
        self.check(&args, out)
    }

    /// Run git as a network step, bounded by [`net_bound`]`(timeout)` (the process is killed).
    pub fn run_timeout<I, S>(&self, args: I, timeout: Duration) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = os_args(args);
        let out = self.output_timeout(&args, net_bound(timeout))?;
        self.check(&args, out)
    }

    /// Run git as a network step, stopped at `bound` (see [`wait_with_timeout`]); the caller
    /// judges the exit status.
    pub fn output_timeout(&self, args: &[std::ffi::OsString], bound: NetBound) -> Result<Output> {
        let child = spawn_network(
            self.cmd()
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )?;
        wait_with_timeout(child, bound).with_context(|| describe(args))
    }

    /// The output of a finished git command, or an error: [`CloneDamaged`] when git's complaint
    /// is about this repository's own objects, refs or config.
    fn check(&self, args: &[std::ffi::OsString], out: Output) -> Result<String> {
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Some(detail) = local_damage(&stderr) {
            return Err(self.damaged(format!("{}: {detail}", describe(args))));
        }
        let why =
            first_error_line(&stderr).unwrap_or_else(|| format!("exit status {}", out.status));
        bail!(
            "{} failed: {why}{}",
            describe(args),
            disk_advice(&self.dir, &stderr)
        )
    }

    /// Record that this repository is damaged (the next open sets it aside) and say so.
    pub fn damaged(&self, detail: String) -> anyhow::Error {
        self.mark_damaged(&detail);
        anyhow::Error::new(CloneDamaged {
            clone: self.dir.clone(),
            detail,
        })
    }

    /// Leave a note in the repository that it is damaged; [`Git::damage_note`] reads it.
    pub fn mark_damaged(&self, detail: &str) {
        if self.dir.is_dir() {
            let _ = std::fs::write(self.dir.join(DAMAGED_FILE), detail.as_bytes());
        }
    }

    /// What [`Git::mark_damaged`] recorded, if anything.
    pub fn damage_note(&self) -> Option<String> {
        std::fs::read(self.dir.join(DAMAGED_FILE))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
    }

    /// A cheap health check of the repository: it opens (config and `HEAD` readable), and every
    /// ref names an object that exists and whose header reads. `Err` says what is wrong. (It does
    /// not read every object: `fsck` would take far too long to run every time.)
    pub fn check_refs(&self) -> std::result::Result<(), String> {
        let out = self
            .cmd()
            .args([
                "for-each-ref",
                "--format=%(objectname) %(objecttype) %(refname)",
            ])
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(first_error_line(&stderr)
                .unwrap_or_else(|| format!("git for-each-ref failed ({})", out.status)));
        }
        // for-each-ref skips (with a message) refs whose objects are missing.
        if let Some(l) = first_error_line(&stderr) {
            return Err(l);
        }
        Ok(())
    }

    /// `git cat-file --batch-check=FORMAT` over object ids (which must be valid ids: each is a
    /// line of git's input); its output, a line per id answered.
    pub fn batch_check(&self, format: &str, oids: &[Oid]) -> Result<String> {
        let mut child = self
            .cmd()
            .arg("cat-file")
            .arg(format!("--batch-check={format}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow!("cannot run git cat-file: {e}"))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("git cat-file has no stdin"))?;
        let input: String = oids.iter().map(|o| format!("{}\n", o.0)).collect();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = child
            .wait_with_output()
            .map_err(|e| anyhow!("git cat-file in {}: {e}", self.dir.display()))?;
        let _ = writer.join();
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Which of `oids` this repository lacks (or cannot read the header of).
    pub fn missing_objects(&self, oids: &[Oid]) -> Result<std::collections::HashSet<Oid>> {
        // Something that is not an object id is missing by definition (and must not reach
        // git's input, where a newline would shift every answer).
        let (oids, bad): (Vec<Oid>, Vec<Oid>) = oids
            .iter()
            .cloned()
            .partition(|o| Oid::parse(&o.0).is_some_and(|p| p == *o));
        let mut missing: std::collections::HashSet<Oid> = bad.into_iter().collect();
        if oids.is_empty() {
            return Ok(missing);
        }
        let out = self.batch_check("%(objectname)", &oids)?;
        let mut answered = 0;
        for line in out.lines() {
            answered += 1;
            if let Some(name) = line.strip_suffix(" missing") {
                missing.insert(Oid(name.to_string()));
            }
        }
        if answered < oids.len() {
            // cat-file stopped early (a corrupt object): whatever it did not answer is unknown.
            missing.extend(oids[answered..].iter().cloned());
        }
        Ok(missing)
    }

    /// Whether the directory is a usable git repository.
    pub fn is_valid(&self) -> bool {
        self.dir.is_dir()
            && self
                .cmd()
                .args(["rev-parse", "--git-dir"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    /// `git init --bare` at `dir`.
    pub fn init_bare(dir: &Path) -> Result<Git> {
        std::fs::create_dir_all(dir).at("create the folder", dir)?;
        let out = Command::new(git_exe())
            .arg("init")
            .arg("--bare")
            .arg("--quiet")
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| anyhow!("cannot run git ({e}): install git"))?;
        check(Some(dir), &["init".into(), "--bare".into()], out)?;
        let git = Git::new(dir);
        // So that people browsing the repository see the sync branch.
        git.run(["symbolic-ref", "HEAD", "refs/heads/main"])?;
        Ok(git)
    }

    /// The commit a ref points to, if it exists.
    pub fn resolve(&self, refname: &str) -> Result<Option<Oid>> {
        let out = self
            .cmd()
            .args([
                "rev-parse",
                "--verify",
                "-q",
                &format!("{refname}^{{commit}}"),
            ])
            .output()
            .map_err(|e| anyhow!("cannot run git: {e}"))?;
        if !out.status.success() {
            return Ok(None);
        }
        Ok(Oid::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Point a local ref at a commit (or delete it with `None`).
    pub fn set_ref(&self, refname: &str, oid: Option<&Oid>) -> Result<()> {
        match oid {
            Some(o) => self.run(["update-ref", refname, &o.0])?,
            None => self.run(["update-ref", "-d", refname])?,
        };
        Ok(())
    }

    /// Whether `ancestor` is an ancestor of (or equal to) `descendant`.
    pub fn is_ancestor(&self, ancestor: &Oid, descendant: &Oid) -> bool {
        self.cmd()
            .args(["merge-base", "--is-ancestor", &ancestor.0, &descendant.0])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The best common ancestor of two commits, if they have one.
    pub fn merge_base(&self, a: &Oid, b: &Oid) -> Option<Oid> {
        let out = self
            .cmd()
            .args(["merge-base", &a.0, &b.0])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| Oid::parse(&String::from_utf8_lossy(&out.stdout)))
            .flatten()
    }

    /// Push `commit` to `branch` of `remote` without force: the remote accepts it only if it is
    /// a descendant of what the branch holds, which makes every push a compare-and-swap.
    pub fn push(
        &self,
        remote: &str,
        commit: &Oid,
        branch: &str,
        timeout: Duration,
    ) -> Result<PushOutcome> {
        let spec = format!("{}:refs/heads/{branch}", commit.0);
        let args: Vec<std::ffi::OsString> = vec![
            "-c".into(),
            "pack.window=0".into(),
            "-c".into(),
            "pack.compression=1".into(),
            "push".into(),
            "--porcelain".into(),
            "--quiet".into(),
            // Progress on the pipe: a long transfer that keeps moving shows a sign of life at
            // least once a second (`--quiet` leaves it on, and keeps the rest quiet).
            "--progress".into(),
            remote.into(),
            spec.into(),
        ];
        known_silent(remote, "git push")?;
        let timeout = net_bound(timeout);
        let child = spawn_network(
            self.cmd()
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )?;
        let out =
            wait_with_timeout(child, timeout).map_err(|e| network_error(remote, "git push", e))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return Ok(PushOutcome::Pushed);
        }
        // A concurrent update shows as a rejected fast-forward, or, when two pushes meet on the
        // remote, as a ref that could not be locked or had moved: both mean "build again".
        let raced = |l: &str| {
            l.contains("non-fast-forward")
                || l.contains("fetch first")
                || l.contains("stale info")
                || l.contains("cannot lock ref")
                || l.contains("failed to update ref")
                || l.contains("incorrect old value")
                || l.contains("but expected")
        };
        if stdout.lines().chain(stderr.lines()).any(raced) {
            return Ok(PushOutcome::Rejected);
        }
        // Packing objects this clone cannot read is the clone's fault, not the remote's.
        if let Some(detail) = local_damage(&stderr) {
            return Err(self.damaged(format!("git push: {detail}")));
        }
        let detail = stdout
            .lines()
            .find(|l| l.starts_with('!'))
            .and_then(|l| l.split('\t').nth(2))
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let why = first_error_line(&stderr).unwrap_or_else(|| stdout.trim().to_string());
        if stderr.contains("Could not read from remote repository") {
            bail!(
                "cannot reach the sync remote {remote} (git push: {why}): check the network and your access to it (`ccsync doctor` tests both)"
            )
        }
        bail!("git push to {remote} failed: {why}{detail}")
    }

    /// The pack files of this repository (`pack-<id>`, without extension).
    pub fn packs(&self) -> std::collections::HashSet<String> {
        std::fs::read_dir(self.dir.join("objects/pack"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.strip_suffix(".pack").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Push `commit` to `branch` of a bare repository on this machine by handing it the objects
    /// it lacks as files — the packs this clone wrote since `before` and the loose objects of
    /// the commit — by hard link (a copy on another file system), then moving the branch from
    /// `old` with a compare-and-swap (`git update-ref`): what `git push` does, without packing
    /// the objects again, indexing or unpacking them on the other side and starting four
    /// processes there, which is most of a push's time. `None` when this way does not apply (a
    /// remote with hooks or object checks, a non-bare one, objects this clone cannot hand
    /// over): then `git push` does it.
    pub fn push_by_objects(
        &self,
        remote_dir: &Path,
        commit: &Oid,
        branch: &str,
        old: Option<&Oid>,
        before: &std::collections::HashSet<String>,
    ) -> Result<Option<PushOutcome>> {
        if !plain_bare(remote_dir) {
            return Ok(None);
        }
        // The objects of the new commit that the commit it builds on lacks.
        let mut args = vec!["rev-list".to_string(), "--objects".into(), commit.0.clone()];
        if let Some(o) = old {
            args.extend(["--not".into(), o.0.clone()]);
        }
        let listed: Vec<Oid> = match self.run(&args) {
            Ok(out) => out
                .lines()
                .filter_map(|l| l.split(' ').next().and_then(Oid::parse))
                .collect(),
            Err(e) => {
                tracing::debug!("cannot list the new commit's objects ({e:#}): git push");
                return Ok(None);
            }
        };
        let (src, dst) = (self.dir.join("objects"), remote_dir.join("objects"));
        for p in self.packs().difference(before) {
            // The index last: git finds a pack by its index.
            for ext in ["pack", "rev", "idx"] {
                let name = format!("pack/{p}.{ext}");
                link_object_file(&src.join(&name), &dst.join(&name))?;
            }
        }
        for o in &listed {
            let name = format!("{}/{}", &o.0[..2], &o.0[2..]);
            link_object_file(&src.join(&name), &dst.join(&name))?;
        }
        // Every object of the new commit must be there now (one this clone has in an older
        // pack, say from an attempt that was refused, is not handed over): else `git push`.
        let remote = Git::new(remote_dir);
        if !remote.missing_objects(&listed)?.is_empty() {
            tracing::debug!("the remote still lacks objects of the new commit: git push");
            return Ok(None);
        }
        let zero = "0".repeat(commit.0.len());
        let out = remote
            .cmd()
            .args([
                "update-ref",
                "-m",
                "ccsync push",
                &format!("refs/heads/{branch}"),
                &commit.0,
                old.map_or(zero.as_str(), |o| o.0.as_str()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cannot run git update-ref in {}", remote_dir.display()))?;
        if out.status.success() {
            gc_when_due(&remote);
            return Ok(Some(PushOutcome::Pushed));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("but expected")
            || err.contains("cannot lock ref")
            || err.contains("already exists")
        {
            return Ok(Some(PushOutcome::Rejected));
        }
        bail!(
            "cannot move the branch {branch} of {}: {}",
            remote_dir.display(),
            first_error_line(&err).unwrap_or_else(|| out.status.to_string())
        )
    }

    /// Start a `cat-file --batch` reader.
    pub fn reader(&self) -> Result<BlobReader> {
        let mut child = self
            .cmd()
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow!("cannot run git cat-file: {e}"))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("git cat-file has no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("git cat-file has no stdout"))?;
        Ok(BlobReader {
            git: self.clone(),
            child,
            stdin: BufWriter::new(stdin),
            stdout: BufReader::with_capacity(256 * 1024, stdout),
        })
    }

    /// Start a `fast-import` transaction.
    pub fn transaction(&self) -> Result<Txn> {
        self.transaction_with(1)
    }

    /// Start a `fast-import` transaction writing objects at zlib `level` (0 for data that
    /// does not compress, such as ciphertext).
    pub fn transaction_with(&self, level: u8) -> Result<Txn> {
        let mut child = self.fast_import(level, None)?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("git fast-import has no stdin"))?;
        Ok(Txn {
            git: self.clone(),
            level,
            child,
            feed: Some(Feed::new(stdin)),
            main_bytes: 0,
            aux: Vec::new(),
            aux_marks: std::collections::HashMap::new(),
            next_mark: 1,
            ops: Vec::new(),
            touched: std::collections::HashSet::new(),
        })
    }

    /// A `git fast-import` process writing objects at zlib `level` (exporting its marks to
    /// `marks` when given).
    fn fast_import(&self, level: u8, marks: Option<&Path>) -> Result<Child> {
        let core = format!("core.compression={level}");
        let pack = format!("pack.compression={level}");
        let mut cmd = self.cmd();
        cmd.args([
            "-c",
            core.as_str(),
            "-c",
            pack.as_str(),
            "fast-import",
            "--quiet",
            "--force",
            "--done",
            "--depth=0",
        ]);
        if let Some(m) = marks {
            cmd.arg(format!("--export-marks={}", m.display()));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow!("cannot run git fast-import: {e}"))
    }

    /// Every file of a commit's tree (or of the subtree at `prefix`).
    pub fn ls_tree(&self, commit: &Oid, prefix: Option<&str>) -> Result<Vec<TreeEntry>> {
        let mut args = vec![
            "ls-tree".to_string(),
            "-r".into(),
            "-z".into(),
            "--long".into(),
            "--full-tree".into(),
            commit.0.clone(),
        ];
        if let Some(p) = prefix {
            args.push("--".into());
            args.push(p.to_string());
        }
        let out = self
            .cmd()
            .args(&args)
            .output()
            .map_err(|e| anyhow!("cannot run git ls-tree: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if let Some(detail) = local_damage(&stderr) {
                return Err(self.damaged(format!("git ls-tree {}: {detail}", commit.short())));
            }
            bail!("git ls-tree {} failed: {}", commit.short(), stderr.trim());
        }
        parse_ls_tree(&out.stdout)
    }
}

/// One entry of `ls-tree -r --long`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub mode: String,
    pub kind: String,
    pub oid: Oid,
    pub size: Option<u64>,
    /// Raw path bytes (may be anything in a hostile repository).
    pub path: Vec<u8>,
}

impl TreeEntry {
    /// The path when it is UTF-8.
    pub fn path_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.path).ok()
    }
    pub fn is_regular_file(&self) -> bool {
        self.kind == "blob" && (self.mode == "100644" || self.mode == "100755")
    }
}

pub(crate) fn parse_ls_tree(raw: &[u8]) -> Result<Vec<TreeEntry>> {
    let mut out = Vec::new();
    for rec in raw.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let tab = memchr::memchr(b'\t', rec).ok_or_else(|| anyhow!("unexpected ls-tree output"))?;
        let head = String::from_utf8_lossy(&rec[..tab]);
        let mut f = head.split_whitespace();
        let (Some(mode), Some(kind), Some(oid), Some(size)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            bail!("unexpected ls-tree output: {head}");
        };
        out.push(TreeEntry {
            mode: mode.to_string(),
            kind: kind.to_string(),
            oid: Oid::parse(oid)
                .ok_or_else(|| anyhow!("bad object id in ls-tree output: {oid}"))?,
            size: size.parse().ok(),
            path: rec[tab + 1..].to_vec(),
        });
    }
    Ok(out)
}

fn os_args<I, S>(args: I) -> Vec<std::ffi::OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect()
}

fn describe(args: &[std::ffi::OsString]) -> String {
    let words: Vec<String> = args
        .iter()
        .take(3)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("git {}", words.join(" "))
}

/// The line of git's stderr that says best what went wrong (progress is never it).
pub fn first_error_line(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = pieces(stderr)
        .filter(|l| !l.starts_with("hint:") && !is_progress(l))
        .collect();
    let generic = |l: &&&str| l.contains("Could not read from remote repository");
    lines
        .iter()
        .find(|l| l.starts_with("fatal:") || l.starts_with("error:") || l.starts_with("ERROR"))
        // "Could not read from remote repository" says nothing the transport's own complaint
        // (ssh's "Connection refused", say) does not say better.
        .filter(|l| !generic(l))
        .or_else(|| lines.iter().find(|l| !generic(l)))
        .or(lines.first())
        .map(|l| {
            l.trim_start_matches("fatal: ")
                .trim_start_matches("error: ")
                .to_string()
        })
}

/// What to do when git says the disk holding the repository `dir` is full (empty otherwise).
fn disk_advice(dir: &Path, stderr: &str) -> String {
    let kind = if stderr.contains("No space left on device") {
        std::io::ErrorKind::StorageFull
    } else if stderr.contains("Disk quota exceeded") {
        std::io::ErrorKind::QuotaExceeded
    } else {
        return String::new();
    };
    crate::os::errors::advice(kind, dir)
        .map(|a| {
            format!(
                " ({} is the sync repository's local clone). {a}",
                dir.display()
            )
        })
        .unwrap_or_default()
}

/// The output of a finished git command that works on no repository of ours (or on `dir`, whose
/// file system gets named when it is full), or an error.
fn check(dir: Option<&Path>, args: &[std::ffi::OsString], out: Output) -> Result<String> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = first_error_line(&stderr).unwrap_or_else(|| format!("exit status {}", out.status));
    let advice = dir.map(|d| disk_advice(d, &stderr)).unwrap_or_default();
    bail!("{} failed: {why}{advice}", describe(args))
}

/// The commit `refs/heads/<branch>` of `remote` names, asking the remote itself (`git
/// ls-remote`, no fetch, no repository needed). `Ok(None)`: no such branch.
pub fn ls_remote(remote: &str, branch: &str, timeout: Duration) -> Result<Option<Oid>> {
    let mut c = Command::new(git_exe());
    c.env("GIT_ASKPASS_REQUIRE", "never");
    if !crate::os::stdin_is_tty() {
        c.env("GIT_TERMINAL_PROMPT", "0");
    }
    let refname = format!("refs/heads/{branch}");
    known_silent(remote, "git ls-remote")?;
    let timeout = net_bound(timeout);
    let child = spawn_network(
        c.args(["ls-remote", "--quiet", remote, &refname])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let out =
        wait_with_timeout(child, timeout).map_err(|e| network_error(remote, "git ls-remote", e))?;
    let args: Vec<std::ffi::OsString> = vec!["ls-remote".into(), remote.into()];
    let text = check(None, &args, out)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .find(|(_, name)| *name == refname)
        .and_then(|(oid, _)| Oid::parse(oid)))
}

/// How long a network step (fetch, push, ls-remote, a `gh` call) may go without any sign of
/// life, in seconds: `network_timeout_secs` of the configuration, set when it is loaded.
static NETWORK_TIMEOUT_SECS: AtomicU64 = AtomicU64::new(DEFAULT_NETWORK_TIMEOUT_SECS);

/// `network_timeout_secs` when the configuration does not say.
pub const DEFAULT_NETWORK_TIMEOUT_SECS: u64 = 60;

/// The most one network step may take in all, in multiples of `network_timeout_secs` (one hour
/// by default): far beyond any real transfer (a first push of a 1.5 GB corpus sends about
/// 260 MB: 2 minutes at 2 MB/s, an hour at 72 kB/s), it only ends a remote that keeps a step
/// alive forever by trickling a byte now and then.
pub const TRANSFER_CAP_FACTOR: u32 = 60;

/// Set the bound on every network step (at least one second).
pub fn set_network_timeout(secs: u64) {
    NETWORK_TIMEOUT_SECS.store(secs.max(1), Ordering::Relaxed);
}

/// How long a network step may go without any sign of life (`network_timeout_secs`).
pub fn network_timeout() -> Duration {
    Duration::from_secs(NETWORK_TIMEOUT_SECS.load(Ordering::Relaxed).max(1))
}

/// The most one network step may take in all (see [`TRANSFER_CAP_FACTOR`]).
pub fn transfer_cap() -> Duration {
    network_timeout() * TRANSFER_CAP_FACTOR
}

/// When a network step is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetBound {
    /// When nothing at all came from it (git, ssh, the remote; on stdout or stderr) for this
    /// long: a connect that never completes, a remote that never answers, a transfer that
    /// stalls. Git reports its progress at least once a second while data moves, so a long
    /// transfer that keeps moving is never cut by this.
    pub idle: Duration,
    /// When it has run this long in all, however it is doing: the time left before this
    /// process's deadline, or else [`transfer_cap`].
    pub total: Duration,
    /// Whether `total` is this process's deadline (see [`set_deadline`], [`within`]).
    pub total_is_deadline: bool,
}

/// The bound of a network step: without a sign of life for what the caller allows (never more
/// than `network_timeout_secs`), and in all until this process's deadline (see
/// [`set_deadline`]) or, without one, [`transfer_cap`].
pub fn net_bound(timeout: Duration) -> NetBound {
    let floor = Duration::from_millis(100);
    let idle = timeout.min(network_timeout()).max(floor);
    let cap = transfer_cap();
    match deadline_left() {
        Some(left) if left < cap => NetBound {
            idle,
            total: left.max(floor),
            total_is_deadline: true,
        },
        _ => NetBound {
            idle,
            total: cap,
            total_is_deadline: false,
        },
    }
}

/// The moment by which this process must be done with the network and the clone, and the
/// budget (in seconds) it was given; set by the hooks, which must end within a stated time
/// whatever the remote or another ccsync process does.
static DEADLINE: std::sync::Mutex<Option<(Instant, u64)>> = std::sync::Mutex::new(None);

/// From now on, no network step runs past `at` and none starts after it (it fails with
/// [`OutOfTime`]); waits for the clone lock end by then too. `budget` is how the command's bound
/// is named in messages. `None` lifts the deadline. Unlike `network_timeout_secs`, this bounds
/// the whole time, however busy the network is.
pub fn set_deadline(at: Option<Instant>, budget: Duration) {
    if let Ok(mut g) = DEADLINE.lock() {
        *g = at.map(|a| (a, secs_of(budget)));
    }
}

/// Run `f` with a deadline `budget` from now (or the one already set, when it is earlier), then
/// put back the deadline there was: for quick steps a person waits for (the pull before
/// `resume` starts Claude Code, `config show`), which must end in time however much the remote
/// has to send.
pub fn within<T>(budget: Duration, f: impl FnOnce() -> T) -> T {
    let before = deadline();
    let at = Instant::now() + budget;
    let scoped = match before {
        Some((b, secs)) if b <= at => (b, secs),
        _ => (at, secs_of(budget)),
    };
    if let Ok(mut g) = DEADLINE.lock() {
        *g = Some(scoped);
    }
    let r = f();
    if let Ok(mut g) = DEADLINE.lock() {
        *g = before;
    }
    r
}

fn deadline() -> Option<(Instant, u64)> {
    DEADLINE.lock().ok().and_then(|g| *g)
}

/// The time left before this process's deadline, if it has one.
pub fn deadline_left() -> Option<Duration> {
    deadline().map(|(at, _)| at.saturating_duration_since(Instant::now()))
}

/// A step not started because the command's time was up.
#[derive(Debug, thiserror::Error)]
#[error("{what} was not started: the {secs} s allowed were over")]
pub struct OutOfTime {
    pub what: String,
    pub secs: u64,
}

/// The error for a step that would start after this process's deadline.
pub fn check_deadline(what: &str) -> Result<()> {
    match deadline() {
        Some((at, secs)) if Instant::now() >= at => Err(anyhow::Error::new(OutOfTime {
            what: what.to_string(),
            secs,
        })),
        _ => Ok(()),
    }
}

/// Which bound stopped a network step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Nothing at all came from it (the connect never completed, or the remote never answered).
    Silent,
    /// It had answered, then nothing came for [`NetBound::idle`].
    Stalled,
    /// It was still busy after [`transfer_cap`].
    OverCap,
    /// It was still busy at this process's deadline.
    OverDeadline,
}

/// A command that was stopped by its bound (it and its children were killed).
#[derive(Debug, thiserror::Error)]
#[error("{}", match self.cut {
    Cut::Silent => format!("no answer within {} s", secs_of(self.after)),
    Cut::Stalled => format!("no progress for {} s", secs_of(self.after)),
    Cut::OverCap | Cut::OverDeadline => format!("still busy after {} s", secs_of(self.after)),
})]
pub struct TimedOut {
    /// The bound that was reached.
    pub after: Duration,
    pub cut: Cut,
}

/// A network step on the sync remote that was stopped by its bound, said in one sentence with
/// the fix.
#[derive(Debug, thiserror::Error)]
#[error("{}", remote_silent_sentence(self))]
pub struct RemoteSilent {
    pub remote: String,
    pub what: String,
    pub secs: u64,
    pub cut: Cut,
}

fn remote_silent_sentence(r: &RemoteSilent) -> String {
    const RAISE: &str = "raise network_timeout_secs (`ccsync config set network_timeout_secs 120`)";
    let RemoteSilent {
        remote,
        what,
        secs,
        cut,
    } = r;
    match cut {
        Cut::Silent => format!(
            "the sync remote {remote} did not answer within {secs} s ({what}): check the network and `ccsync doctor`, or {RAISE}"
        ),
        Cut::Stalled => format!(
            "the sync remote {remote} stopped answering: {what} made no progress for {secs} s: check the network and `ccsync doctor`, or {RAISE}"
        ),
        Cut::OverCap => format!(
            "{what} with the sync remote {remote} was still going after {secs} s, the most one network step may take ({TRANSFER_CAP_FACTOR} × network_timeout_secs): check the network, or on a very slow link {RAISE}"
        ),
        Cut::OverDeadline => format!(
            "{what} with the sync remote {remote} was still going when the {secs} s allowed for it were over: `ccsync sync` finishes it"
        ),
    }
}

/// A git command stopped because this process was asked to stop (a signal).
#[derive(Debug, thiserror::Error)]
#[error("stopped on request")]
pub struct Interrupted;

fn secs_of(d: Duration) -> u64 {
    d.as_secs_f64().round().max(1.0) as u64
}

/// The one sentence that says a network step on `remote` failed, naming the bound and the fix
/// when it was stopped by one.
pub fn network_error(remote: &str, what: &str, e: anyhow::Error) -> anyhow::Error {
    if let Some(t) = e.chain().find_map(|c| c.downcast_ref::<TimedOut>()) {
        let silent = RemoteSilent {
            remote: remote.to_string(),
            what: what.to_string(),
            secs: secs_of(t.after),
            cut: t.cut,
        };
        // A remote that was still sending when this process's time was up is reachable: later
        // steps (after Claude Code exits, say) try it again.
        if t.cut != Cut::OverDeadline
            && let Ok(mut g) = SILENT_REMOTE.lock()
        {
            *g = Some((remote.to_string(), silent.secs, silent.cut));
        }
        return anyhow::Error::new(silent);
    }
    if e.chain().any(|c| c.downcast_ref::<Interrupted>().is_some()) {
        return e.context(format!("{what} on {remote} stopped on request"));
    }
    e
}

/// The remote that last timed out in this process: later steps on it fail at once, so that a
/// command waits for a silent remote once, not once per step. The daemon forgets it each cycle.
static SILENT_REMOTE: std::sync::Mutex<Option<(String, u64, Cut)>> = std::sync::Mutex::new(None);

/// Forget which remote timed out (a new attempt tries the network again).
pub fn forget_silent_remote() {
    if let Ok(mut g) = SILENT_REMOTE.lock() {
        *g = None;
    }
}

/// The error for a step on `remote` when it already timed out in this process, or when this
/// process's deadline has passed.
pub fn known_silent(remote: &str, what: &str) -> Result<()> {
    check_deadline(what)?;
    let known = SILENT_REMOTE.lock().ok().and_then(|g| g.clone());
    match known {
        Some((r, secs, cut)) if r == remote => Err(anyhow::Error::new(RemoteSilent {
            remote: remote.to_string(),
            what: what.to_string(),
            secs,
            cut,
        })),
        _ => Ok(()),
    }
}

/// Whether an error (anywhere in its chain) is a network step that timed out or was stopped.
pub fn is_cut_short(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<TimedOut>().is_some()
            || c.downcast_ref::<RemoteSilent>().is_some()
            || c.downcast_ref::<Interrupted>().is_some()
            || c.downcast_ref::<OutOfTime>().is_some()
    })
}

/// Spawn a git command that may talk to the network: on Unix in its own process group, so that
/// a timeout or a stop ends git and everything it started (ssh, credential helpers) at once.
pub fn spawn_network(cmd: &mut Command) -> Result<Child> {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    let child = cmd.spawn().map_err(|e| anyhow!("cannot run git: {e}"))?;
    crate::os::track_group(child.id(), true);
    Ok(child)
}

/// Something that shows what a long network step is doing: the latest line of git's progress
/// (`Some`), or nothing any more (`None`, when the step ends).
pub type TransferView = std::sync::Arc<dyn Fn(Option<&str>) + Send + Sync>;

static TRANSFER_VIEW: std::sync::Mutex<Option<TransferView>> = std::sync::Mutex::new(None);

/// Show the progress of network steps that last more than a moment (a terminal's status line),
/// or stop showing it (`None`).
pub fn show_transfers(view: Option<TransferView>) {
    if let Ok(mut g) = TRANSFER_VIEW.lock() {
        *g = view;
    }
}

fn transfer_view() -> Option<TransferView> {
    TRANSFER_VIEW.lock().ok().and_then(|g| g.clone())
}

/// How long, once git has exited, its output pipes may take to close.
const PIPES_GRACE: Duration = Duration::from_secs(2);

/// A network step shows its progress after running this long.
const VIEW_AFTER: Duration = Duration::from_secs(1);

/// What a child sent on one pipe, and when it last sent anything.
#[derive(Default)]
struct Heard {
    bytes: Vec<u8>,
    last: Option<Instant>,
}

/// Read a pipe to its end in a thread, noting when bytes arrive.
fn listen(
    pipe: Option<impl Read + Send + 'static>,
    heard: &std::sync::Arc<std::sync::Mutex<Heard>>,
) -> std::thread::JoinHandle<()> {
    let heard = std::sync::Arc::clone(heard);
    std::thread::spawn(move || {
        let Some(mut pipe) = pipe else { return };
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Ok(mut h) = heard.lock() {
                        h.bytes.extend_from_slice(&buf[..n]);
                        h.last = Some(Instant::now());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    })
}

/// Wait for a network child (spawned with [`spawn_network`], its stdout and stderr piped),
/// killing it and its process group when it shows no sign of life for `bound.idle` (no byte on
/// stdout or stderr: git's progress counts, so ask git for it with `--progress`), when it has
/// run `bound.total`, or when this process is asked to stop. Git's progress lines are left out
/// of the stderr returned: what remains is what git had to say.
pub fn wait_with_timeout(mut child: Child, bound: NetBound) -> Result<Output> {
    let start = Instant::now();
    let out = std::sync::Arc::new(std::sync::Mutex::new(Heard::default()));
    let err = std::sync::Arc::new(std::sync::Mutex::new(Heard::default()));
    // Drained in threads so a chatty child cannot block on a full pipe.
    let t_out = listen(child.stdout.take(), &out);
    let t_err = listen(child.stderr.take(), &err);
    let last_heard = || {
        [&out, &err]
            .iter()
            .filter_map(|h| h.lock().ok().and_then(|h| h.last))
            .max()
    };
    let view = transfer_view();
    let mut shown: Option<String> = None;
    let mut viewed_at = start;
    let pid = child.id();
    let stops = crate::os::stop_count();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => {
                end_group(&mut child);
                end_view(view.as_ref(), &shown);
                return Err(e.into());
            }
        }
        let stop = crate::os::stop_count() != stops;
        let heard = last_heard();
        let quiet = heard.unwrap_or(start).elapsed();
        let cut = if quiet > bound.idle {
            Some(TimedOut {
                after: bound.idle,
                cut: if heard.is_some() {
                    Cut::Stalled
                } else {
                    Cut::Silent
                },
            })
        } else if start.elapsed() > bound.total {
            Some(TimedOut {
                after: bound.total,
                cut: match (heard.is_some(), bound.total_is_deadline) {
                    (false, _) => Cut::Silent,
                    (true, true) => Cut::OverDeadline,
                    (true, false) => Cut::OverCap,
                },
            })
        } else {
            None
        };
        if stop || cut.is_some() {
            end_group(&mut child);
            end_view(view.as_ref(), &shown);
            // The pipes close once every process of the group is gone; never wait long.
            let _ = (t_out, t_err);
            return Err(match cut {
                Some(t) if !stop => anyhow::Error::new(t),
                _ => anyhow::Error::new(Interrupted),
            });
        }
        if let Some(v) = &view
            && start.elapsed() >= VIEW_AFTER
            && viewed_at.elapsed() >= Duration::from_millis(200)
        {
            viewed_at = Instant::now();
            let line = err.lock().ok().and_then(|h| latest_progress(&h.bytes));
            if line.is_some() && line != shown {
                v(line.as_deref());
                shown = line;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    end_view(view.as_ref(), &shown);
    // Git is done and reaped (its pid may be reused: its group is not signalled any more).
    crate::os::track_group(pid, false);
    if crate::os::stop_count() != stops {
        // The signal handler ended the group: what git said is beside the point.
        return Err(anyhow::Error::new(Interrupted));
    }
    // Git has written all it will; the pipes close at once unless something it started lives
    // on holding them (an ssh ControlPersist master): then what was read is all there is.
    let exited = Instant::now();
    while !(t_out.is_finished() && t_err.is_finished()) && exited.elapsed() < PIPES_GRACE {
        std::thread::sleep(Duration::from_millis(5));
    }
    let take = |h: &std::sync::Arc<std::sync::Mutex<Heard>>| {
        h.lock()
            .map(|mut h| std::mem::take(&mut h.bytes))
            .unwrap_or_default()
    };
    Ok(Output {
        status,
        stdout: take(&out),
        stderr: strip_progress(&take(&err)),
    })
}

fn end_view(view: Option<&TransferView>, shown: &Option<String>) {
    if let Some(v) = view
        && shown.is_some()
    {
        v(None);
    }
}

/// The pieces of git's stderr: lines, and within a line the updates a `\r` separates (a
/// progress meter rewrites its line), each without the padding or the terminal's
/// clear-to-end-of-line git appends to the remote's lines.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .flat_map(|l| l.split('\r'))
        .map(|p| p.trim_end_matches("\x1b[K").trim())
        .filter(|p| !p.is_empty())
}

/// Whether a piece of git's stderr is progress (its own or the remote's): `Counting objects:
/// 45% (9/20)`, `Writing objects: 100% (3/3), 2.00 MiB | 273.00 KiB/s, done.`, `Enumerating
/// objects: 306, done.`, `remote: Resolving deltas: …`, `Total 3 (delta 0), reused 0 …`, `From
/// <url>` — in any language git speaks (the title is words, the figures are digits).
pub fn is_progress(piece: &str) -> bool {
    let p = piece.trim_end_matches("\x1b[K").trim();
    let p = p.strip_prefix("remote:").map_or(p, str::trim_start);
    if p.is_empty() {
        return true;
    }
    if p.starts_with("Delta compression using up to ")
        || (p.starts_with("Total ") && p.contains("(delta "))
        || p.strip_prefix("From ")
            .is_some_and(|url| !url.trim().contains(' '))
    {
        return true;
    }
    let Some((title, figures)) = p.split_once(':') else {
        return false;
    };
    let words = title.split(' ').count();
    let is_message = ["fatal", "error", "warning", "hint", "remote", "ssh"]
        .iter()
        .any(|m| title.eq_ignore_ascii_case(m));
    (1..=5).contains(&words)
        && !is_message
        && title
            .chars()
            .all(|c| c.is_alphabetic() || c == ' ' || c == '-')
        && figures
            .trim_start()
            .starts_with(|c: char| c.is_ascii_digit())
}

/// Git's stderr without its progress: the lines that say something.
pub fn strip_progress(stderr: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(stderr);
    let mut out = String::with_capacity(text.len().min(4096));
    for p in pieces(&text).filter(|p| !is_progress(p)) {
        out.push_str(p);
        out.push('\n');
    }
    out.into_bytes()
}

/// The latest progress piece in `stderr`, if any.
fn latest_progress(stderr: &[u8]) -> Option<String> {
    // The last few hundred bytes hold the latest update.
    let tail = &stderr[stderr.len().saturating_sub(512)..];
    let text = String::from_utf8_lossy(tail);
    pieces(&text)
        .filter(|p| is_progress(p) && p.contains(|c: char| c.is_ascii_digit()))
        .last()
        .map(|p| {
            p.strip_prefix("remote:")
                .map_or(p, str::trim_start)
                .to_string()
        })
}

/// Kill a child and the process group it leads (if it leads one), and reap it.
fn end_group(child: &mut Child) {
    // Not reaped yet, so the pid (and the group it leads) is still this child's.
    crate::os::kill_group(child.id());
    let _ = child.kill();
    crate::os::track_group(child.id(), false);
    let _ = child.wait();
}

/// A long-lived `git cat-file --batch`.
pub struct BlobReader {
    git: Git,
    child: Child,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl BlobReader {
    /// Read a whole blob.
    pub fn read(&mut self, oid: &Oid) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.read_into(oid, &mut v)?;
        Ok(v)
    }

    /// Stream a blob into `out`; returns its size.
    pub fn read_into(&mut self, oid: &Oid, out: &mut impl Write) -> Result<u64> {
        // Every object read is named by a tree of this repository: one it cannot give is damage.
        let gone = |r: &Self, what: &str| r.git.damaged(format!("object {} {what}", oid.short()));
        let stopped = || format!("cannot read object {} (git cat-file stopped)", oid.short());
        if writeln!(self.stdin, "{}", oid.0)
            .and_then(|()| self.stdin.flush())
            .is_err()
        {
            return Err(gone(self, "cannot be read (git cat-file stopped)"));
        }
        let mut header = String::new();
        self.stdout.read_line(&mut header).with_context(stopped)?;
        let mut parts = header.split_whitespace();
        let (_, kind, size) = (parts.next(), parts.next(), parts.next());
        if kind == Some("missing") || kind.is_none() {
            return Err(gone(self, "is missing or unreadable"));
        }
        let size: u64 = size
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad cat-file header: {header}"))?;
        let copied =
            std::io::copy(&mut (&mut self.stdout).take(size), out).with_context(stopped)?;
        if copied != size {
            bail!("object {} was cut short", oid.short());
        }
        let mut nl = [0u8; 1];
        self.stdout.read_exact(&mut nl).with_context(stopped)?;
        Ok(size)
    }
}

impl BlobReader {
    /// Read the blob git names `rev` (`COMMIT:PATH`): `None` when there is none (no such path,
    /// or not a file).
    pub fn read_named(&mut self, rev: &str) -> Result<Option<Vec<u8>>> {
        if rev.contains(['\n', '\r']) {
            return Ok(None);
        }
        let stopped = || format!("cannot read {rev} (git cat-file stopped)");
        writeln!(self.stdin, "{rev}")
            .and_then(|()| self.stdin.flush())
            .with_context(stopped)?;
        let mut header = String::new();
        self.stdout.read_line(&mut header).with_context(stopped)?;
        // `<name> missing` (or `ambiguous`; the name may hold spaces), else
        // `<oid> <type> <size>`.
        let line = header.trim_end();
        if line.ends_with(" missing") || line.ends_with(" ambiguous") {
            return Ok(None);
        }
        let parts: Vec<&str> = line.split(' ').collect();
        let [_, kind, size] = parts[..] else {
            bail!("bad cat-file header: {line}");
        };
        let size: u64 = size
            .parse()
            .map_err(|_| anyhow!("bad cat-file header: {header}"))?;
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 20));
        let copied =
            std::io::copy(&mut (&mut self.stdout).take(size), &mut data).with_context(stopped)?;
        if copied != size {
            bail!("{rev} was cut short");
        }
        let mut nl = [0u8; 1];
        self.stdout.read_exact(&mut nl).with_context(stopped)?;
        Ok((kind == "blob").then_some(data))
    }
}

impl Drop for BlobReader {
    fn drop(&mut self) {
        let _ = self.stdin.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mark naming a blob written in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mark(u64);

/// Put an object file of this clone (`from`, if it exists) into another repository (`to`,
/// unless there already): a hard link, or a copy renamed into place.
fn link_object_file(from: &Path, to: &Path) -> Result<()> {
    if !from.exists() || to.exists() {
        return Ok(());
    }
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).at("create the folder", dir)?;
    }
    if std::fs::hard_link(from, to).is_err() {
        let name = to
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = to.with_file_name(format!(".ccsync-{name}"));
        std::fs::copy(from, &tmp).at("copy an object file to", &tmp)?;
        std::fs::rename(&tmp, to).at("rename", &tmp)?;
    }
    Ok(())
}

/// The upkeep `git push` starts on the remote: when loose objects pile up (git's own estimate:
/// one of its 256 folders holding more than a 256th of `gc.auto`, 6,700), `git gc --auto`, which
/// goes on in the background.
fn gc_when_due(remote: &Git) {
    let sample = std::fs::read_dir(remote.dir.join("objects/17")).map_or(0, |d| d.count());
    if sample > 6700 / 256 {
        let _ = remote
            .cmd()
            .args(["gc", "--auto", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether `dir` is a bare repository that `git push` would only add objects to and move a
/// ref in: no hooks (other than git's samples), no object checks on receipt, no shared
/// permissions to apply.
fn plain_bare(dir: &Path) -> bool {
    let Ok(config) = std::fs::read_to_string(dir.join("config")) else {
        return false;
    };
    let config = config.to_ascii_lowercase().replace([' ', '\t'], "");
    if !config.contains("bare=true")
        || config.contains("fsckobjects")
        || config.contains("sharedrepository")
        || config.contains("denycurrentbranch")
        || !dir.join("objects/pack").is_dir()
    {
        return false;
    }
    match std::fs::read_dir(dir.join("hooks")) {
        Ok(d) => d
            .flatten()
            .all(|e| e.file_name().to_string_lossy().ends_with(".sample")),
        Err(_) => true,
    }
}

/// A `fast-import` transaction: write blobs, record tree changes, then commit.
///
/// Blobs are hashed and compressed by git, which takes most of a large transaction's time: past
/// [`PARALLEL_AFTER`] bytes, blobs are shared out among more `fast-import` processes (one per
/// further core, up to [`MAX_WRITERS`]), each writing its own pack. They finish before the
/// commit, which the first process writes, naming their blobs by object id.
pub struct Txn {
    git: Git,
    level: u8,
    child: Child,
    /// The first process's input (`None` once it is closed).
    feed: Option<Feed>,
    /// Blob bytes handed to the first process.
    main_bytes: u64,
    /// The further blob writers.
    aux: Vec<BlobWriter>,
    /// Marks of blobs a further writer holds: mark → its index in `aux`.
    aux_marks: std::collections::HashMap<u64, usize>,
    next_mark: u64,
    ops: Vec<Op>,
    /// Paths set or removed so far.
    touched: std::collections::HashSet<String>,
}

/// Blob bytes a transaction writes with one process before it starts more.
const PARALLEL_AFTER: u64 = 16 << 20;
/// Most `fast-import` processes one transaction runs.
const MAX_WRITERS: usize = 4;

/// A further `fast-import` process of a transaction: blobs only.
struct BlobWriter {
    child: Child,
    feed: Option<Feed>,
    bytes: u64,
    /// Where it exports its marks when it ends.
    marks: tempfile::TempPath,
}

/// A tree change of a transaction.
enum Op {
    /// A blob of this transaction (by mark) or an existing one.
    Put(String, Target),
    Delete(String),
}

enum Target {
    Mark(u64),
    Oid(String),
}

const TXN_REF: &str = "refs/ccsync/txn";

/// Bytes queued for one `fast-import` process before the blob writer waits for it.
const FEED_BUDGET: u64 = 24 << 20;

/// A `fast-import` process's input, written by a thread of its own from a queue of at most
/// [`FEED_BUDGET`] bytes (one larger blob alone): handing a blob to a busy process does not
/// hold up the others.
struct Feed {
    queue: std::sync::Arc<FeedQueue>,
    thread: Option<std::thread::JoinHandle<std::io::Result<BufWriter<ChildStdin>>>>,
}

#[derive(Default)]
struct FeedQueue {
    state: std::sync::Mutex<FeedState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct FeedState {
    items: std::collections::VecDeque<Vec<u8>>,
    /// Bytes queued or being written.
    bytes: u64,
    closed: bool,
    failed: bool,
}

impl Feed {
    fn new(stdin: ChildStdin) -> Feed {
        let queue = std::sync::Arc::new(FeedQueue::default());
        let q = queue.clone();
        let thread = std::thread::spawn(move || {
            let mut w = BufWriter::with_capacity(1 << 20, stdin);
            loop {
                let item = {
                    let Ok(mut st) = q.state.lock() else {
                        return Err(std::io::Error::other("a fast-import feed broke"));
                    };
                    loop {
                        if let Some(i) = st.items.pop_front() {
                            break Some(i);
                        }
                        if st.closed {
                            break None;
                        }
                        st = match q.changed.wait(st) {
                            Ok(g) => g,
                            Err(_) => {
                                return Err(std::io::Error::other("a fast-import feed broke"));
                            }
                        };
                    }
                };
                let Some(item) = item else {
                    w.flush()?;
                    return Ok(w);
                };
                let r = w.write_all(&item);
                if let Ok(mut st) = q.state.lock() {
                    st.bytes = st.bytes.saturating_sub(item.len() as u64);
                    st.failed |= r.is_err();
                }
                q.changed.notify_all();
                r?;
            }
        });
        Feed {
            queue,
            thread: Some(thread),
        }
    }

    /// Queue `item`, waiting while the queue is over its budget.
    fn send(&self, item: Vec<u8>) -> std::io::Result<()> {
        let broke = || std::io::Error::other("git fast-import stopped reading its input");
        let mut st = self.queue.state.lock().map_err(|_| broke())?;
        let n = item.len() as u64;
        while !st.failed && st.bytes > 0 && st.bytes + n > FEED_BUDGET {
            st = self.queue.changed.wait(st).map_err(|_| broke())?;
        }
        if st.failed {
            return Err(broke());
        }
        st.bytes += n;
        st.items.push_back(item);
        drop(st);
        self.queue.changed.notify_all();
        Ok(())
    }

    /// Bytes queued or being written.
    fn queued(&self) -> u64 {
        self.queue.state.lock().map_or(u64::MAX, |st| st.bytes)
    }

    /// Write what is queued and hand the input back.
    fn close(mut self) -> std::io::Result<BufWriter<ChildStdin>> {
        if let Ok(mut st) = self.queue.state.lock() {
            st.closed = true;
        }
        self.queue.changed.notify_all();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            _ => Err(std::io::Error::other("a fast-import feed broke")),
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if let Ok(mut st) = self.queue.state.lock() {
            st.closed = true;
        }
        self.queue.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A blob as `fast-import` reads it.
fn blob_command(mark: u64, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 48);
    v.extend_from_slice(format!("blob\nmark :{mark}\ndata {}\n", data.len()).as_bytes());
    v.extend_from_slice(data);
    v.push(b'\n');
    v
}

impl Txn {
    /// Write a blob; returns its mark.
    pub fn blob(&mut self, data: &[u8]) -> Result<Mark> {
        let mark = self.next_mark;
        self.next_mark += 1;
        let n = data.len() as u64;
        let item = blob_command(mark, data);
        match self.writer_for()? {
            None => {
                self.main_bytes += n;
                let sent = match &self.feed {
                    Some(f) => f.send(item),
                    None => Err(std::io::Error::other("fast-import already finished")),
                };
                if let Err(e) = sent {
                    return Err(self.died(e));
                }
            }
            Some(i) => {
                let a = &mut self.aux[i];
                a.bytes += n;
                let sent = match &a.feed {
                    Some(f) => f.send(item),
                    None => Err(std::io::Error::other("fast-import already finished")),
                };
                if let Err(e) = sent {
                    let why = finish_writer(&self.git, a).err();
                    return Err(why.unwrap_or_else(|| {
                        anyhow!(
                            "cannot write to git fast-import in {}: {e}",
                            self.git.dir.display()
                        )
                    }));
                }
                self.aux_marks.insert(mark, i);
            }
        }
        Ok(Mark(mark))
    }

    /// Which process takes the next blob: the first (`None`) until [`PARALLEL_AFTER`] bytes,
    /// then whichever has the fewest bytes waiting (a further one started while there are
    /// idle cores for it).
    fn writer_for(&mut self) -> Result<Option<usize>> {
        if self.main_bytes < PARALLEL_AFTER {
            return Ok(None);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let want = cores.min(MAX_WRITERS).saturating_sub(1);
        if self.aux.len() < want {
            let marks = tempfile::Builder::new()
                .prefix("ccsync-marks-")
                .tempfile_in(&self.git.dir)
                .with_context(|| format!("cannot create a file in {}", self.git.dir.display()))?
                .into_temp_path();
            let mut child = self.git.fast_import(self.level, Some(&marks))?;
            let stdin = child
                .stdin
                .take()
                .ok_or_else(|| anyhow!("git fast-import has no stdin"))?;
            self.aux.push(BlobWriter {
                child,
                feed: Some(Feed::new(stdin)),
                bytes: 0,
                marks,
            });
        }
        // The one with the least waiting, then the one given the least.
        let main = (
            self.feed.as_ref().map_or(u64::MAX, Feed::queued),
            self.main_bytes,
        );
        let least = self
            .aux
            .iter()
            .enumerate()
            .map(|(i, a)| (i, (a.feed.as_ref().map_or(u64::MAX, Feed::queued), a.bytes)))
            .min_by_key(|(_, k)| *k)
            .filter(|(_, k)| *k < main)
            .map(|(i, _)| i);
        Ok(least)
    }

    /// End the further writers and read the object ids of their blobs.
    fn finish_writers(&mut self) -> Result<std::collections::HashMap<u64, String>> {
        let mut ids = std::collections::HashMap::new();
        for a in &mut self.aux {
            finish_writer(&self.git, a)?;
            let text = std::fs::read_to_string(&a.marks).with_context(|| {
                format!(
                    "cannot read the marks git fast-import wrote in {}",
                    self.git.dir.display()
                )
            })?;
            for line in text.lines() {
                if let Some((m, id)) = line.split_once(' ')
                    && let Some(m) = m.strip_prefix(':').and_then(|m| m.parse::<u64>().ok())
                    && Oid::parse(id).is_some()
                {
                    ids.insert(m, id.to_string());
                }
            }
        }
        if let Some(m) = self.aux_marks.keys().find(|m| !ids.contains_key(m)) {
            bail!(
                "git fast-import in {} did not report blob :{m}",
                self.git.dir.display()
            );
        }
        Ok(ids)
    }

    /// Writing to fast-import failed (a broken pipe: it stopped, on a full disk say): its own
    /// error, with the repository it was writing to, says why.
    fn died(&mut self, e: std::io::Error) -> anyhow::Error {
        match self.finish() {
            Err(why) => why,
            Ok(()) => anyhow!(
                "cannot write to git fast-import in {}: {e}",
                self.git.dir.display()
            ),
        }
    }

    /// Set `path` to a blob written in this transaction.
    pub fn put(&mut self, path: &str, mark: Mark) {
        self.touched.insert(path.to_string());
        self.ops
            .push(Op::Put(path.to_string(), Target::Mark(mark.0)));
    }

    /// Set `path` to an existing blob.
    pub fn put_oid(&mut self, path: &str, oid: &Oid) {
        self.touched.insert(path.to_string());
        self.ops
            .push(Op::Put(path.to_string(), Target::Oid(oid.0.clone())));
    }

    /// Remove `path` (a file or a whole directory).
    pub fn delete(&mut self, path: &str) {
        self.touched.insert(path.to_string());
        self.ops.push(Op::Delete(path.to_string()));
    }

    /// Whether `path` itself was set or removed in this transaction.
    pub fn touches(&self, path: &str) -> bool {
        self.touched.contains(path)
    }

    /// Whether any tree change was recorded.
    pub fn has_changes(&self) -> bool {
        !self.ops.is_empty()
    }

    /// Commit the recorded changes on top of `parent` (or as a first commit).
    pub fn commit(mut self, parent: Option<&Oid>, author: &str, message: &str) -> Result<Oid> {
        // This machine's clock (moved in tests, so that history has distinct dates).
        let now = crate::clock::now().timestamp();
        // Commit messages leave the machine too: never with a secret in them (a session id or
        // machine name is never one, but a message is built from whatever it is given).
        let sc = crate::secrets::Scanner::new();
        let found = sc.scan_text(message.as_bytes());
        let message = String::from_utf8_lossy(&sc.redact(message.as_bytes(), &found)).into_owned();
        let ops = std::mem::take(&mut self.ops);
        let t0 = Instant::now();
        let ids = self.finish_writers()?;
        if !self.aux.is_empty() {
            tracing::debug!(
                "blobs written by {} fast-import processes ({} MB, {}), the others done {:.2} s later",
                self.aux.len() + 1,
                self.main_bytes >> 20,
                self.aux
                    .iter()
                    .map(|a| format!("{} MB", a.bytes >> 20))
                    .collect::<Vec<_>>()
                    .join(", "),
                t0.elapsed().as_secs_f64()
            );
        }
        let written = (|| -> std::io::Result<()> {
            let mut w = self
                .feed
                .take()
                .ok_or_else(|| std::io::Error::other("fast-import already finished"))?
                .close()?;
            write!(
                w,
                "commit {TXN_REF}\ncommitter {author} {now} +0000\ndata {}\n{message}\n",
                message.len()
            )?;
            // Without `from`, fast-import makes a commit with no parent.
            if let Some(p) = parent {
                writeln!(w, "from {}", p.0)?;
            }
            for op in &ops {
                match op {
                    Op::Put(path, Target::Mark(m)) => match ids.get(m) {
                        Some(id) => writeln!(w, "M 100644 {id} {}", quote_path(path))?,
                        None => writeln!(w, "M 100644 :{m} {}", quote_path(path))?,
                    },
                    Op::Put(path, Target::Oid(id)) => {
                        writeln!(w, "M 100644 {id} {}", quote_path(path))?
                    }
                    Op::Delete(path) => writeln!(w, "D {}", quote_path(path))?,
                }
            }
            w.write_all(b"\ndone\n")?;
            w.flush()
        })();
        if let Err(e) = written {
            return Err(self.died(e));
        }
        self.finish()?;
        self.git
            .resolve(TXN_REF)?
            .ok_or_else(|| anyhow!("git fast-import produced no commit"))
    }

    fn finish(&mut self) -> Result<()> {
        drop(self.feed.take());
        wait_fast_import(&self.git, &mut self.child)
    }
}

/// End a further blob writer (`done`) and check how it ended.
fn finish_writer(git: &Git, a: &mut BlobWriter) -> Result<()> {
    let Some(feed) = a.feed.take() else {
        return Ok(());
    };
    if let Ok(mut w) = feed.close() {
        let _ = w.write_all(b"done\n").and_then(|()| w.flush());
    }
    wait_fast_import(git, &mut a.child)
}

/// Wait for a `fast-import` process whose input is closed, and say why it failed if it did.
fn wait_fast_import(git: &Git, child: &mut Child) -> Result<()> {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let st = child
        .wait()
        .with_context(|| format!("git fast-import in {}", git.dir.display()))?;
    if !st.success() {
        if let Some(detail) = local_damage(&err) {
            return Err(git.damaged(format!("git fast-import: {detail}")));
        }
        bail!(
            "git fast-import in {} failed: {}{}",
            git.dir.display(),
            first_error_line(&err).unwrap_or_else(|| st.to_string()),
            disk_advice(&git.dir, &err)
        );
    }
    Ok(())
}

impl Drop for Txn {
    fn drop(&mut self) {
        for a in &mut self.aux {
            let _ = finish_writer(&self.git, a);
        }
        if let Some(feed) = self.feed.take() {
            // Abandoned: end the stream without a commit.
            if let Ok(mut w) = feed.close() {
                let _ = w.write_all(b"done\n");
                let _ = w.flush();
            }
            let _ = self.child.wait();
        }
    }
}

/// Quote a path for fast-import when it needs it.
fn quote_path(p: &str) -> String {
    if !p.starts_with('"') && !p.contains('\n') && !p.contains(' ') {
        return p.to_string();
    }
    let mut s = String::with_capacity(p.len() + 2);
    s.push('"');
    for c in p.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_available() -> bool {
        git_version().is_ok()
    }

    #[test]
    fn a_full_disk_under_git_says_which_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            "error: unable to write file: No space left on device\nfatal: cannot store pack file";
        let a = disk_advice(dir.path(), err);
        assert!(a.contains(&dir.path().display().to_string()), "{a}");
        assert!(a.contains("is full: free some space"), "{a}");
        assert!(disk_advice(dir.path(), "fatal: not a git repository").is_empty());
    }

    #[test]
    fn a_large_transaction_shares_its_blobs_among_writers_and_commits_them_all() {
        if !git_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let g = Git::init_bare(&dir.path().join("r.git")).unwrap();
        let base = {
            let mut t = g.transaction().unwrap();
            let m = t.blob(b"kept\n").unwrap();
            t.put("kept.txt", m);
            t.commit(None, "t <t@t>", "base").unwrap()
        };
        let mut t = g.transaction().unwrap();
        let blobs: Vec<Vec<u8>> = (0..40u8)
            .map(|i| {
                let mut b = vec![b'a' + i % 26; (1 << 20) + usize::from(i)];
                b.push(b'\n');
                b
            })
            .collect();
        for (i, b) in blobs.iter().enumerate() {
            let m = t.blob(b).unwrap();
            t.put(&format!("d/{i}.txt"), m);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(t.aux.len(), cores.min(MAX_WRITERS) - 1);
        assert!(t.aux.iter().all(|a| a.bytes > 0) || t.aux.is_empty());
        t.delete("kept.txt");
        let c = t.commit(Some(&base), "t <t@t>", "big").unwrap();
        let tree = g.ls_tree(&c, None).unwrap();
        assert_eq!(tree.len(), blobs.len());
        let mut r = g.reader().unwrap();
        for (i, b) in blobs.iter().enumerate() {
            let e = tree
                .iter()
                .find(|e| e.path_str() == Some(format!("d/{i}.txt").as_str()))
                .unwrap();
            assert!(r.read(&e.oid).unwrap() == *b, "blob {i} differs");
        }
        // The writers' mark files are gone.
        let left: Vec<_> = std::fs::read_dir(&g.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("ccsync-marks-"))
            .collect();
        assert!(left.is_empty());
    }

    #[test]
    fn transaction_read_back_and_compare_and_swap() {
        if !git_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let remote = Git::init_bare(&dir.path().join("remote.git")).unwrap();
        let local = Git::init_bare(&dir.path().join("local.git")).unwrap();
        let remote_path = remote.dir.to_string_lossy().into_owned();

        let mut t = local.transaction().unwrap();
        let m = t.blob(b"hello\n").unwrap();
        t.put("a/b with space/\"x.txt", m);
        t.put("c.txt", m);
        let c1 = t.commit(None, "ccsync <ccsync@test>", "first").unwrap();
        let tree = local.ls_tree(&c1, None).unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0].path, b"a/b with space/\"x.txt");
        assert_eq!(tree[0].size, Some(6));
        let mut r = local.reader().unwrap();
        assert_eq!(r.read(&tree[1].oid).unwrap(), b"hello\n");
        assert!(r.read(&Oid("0".repeat(40))).is_err());

        let timeout = Duration::from_secs(30);
        assert_eq!(
            local.push(&remote_path, &c1, "main", timeout).unwrap(),
            PushOutcome::Pushed
        );
        // A second commit on c1 is accepted; a sibling built on c1 afterwards is rejected.
        let mut t = local.transaction().unwrap();
        t.delete("c.txt");
        let c2 = t
            .commit(Some(&c1), "ccsync <ccsync@test>", "second")
            .unwrap();
        let mut t = local.transaction().unwrap();
        let m = t.blob(b"other").unwrap();
        t.put("d.txt", m);
        let c2b = t
            .commit(Some(&c1), "ccsync <ccsync@test>", "sibling")
            .unwrap();
        assert_eq!(
            local.push(&remote_path, &c2, "main", timeout).unwrap(),
            PushOutcome::Pushed
        );
        assert_eq!(
            local.push(&remote_path, &c2b, "main", timeout).unwrap(),
            PushOutcome::Rejected
        );
        assert!(local.is_ancestor(&c1, &c2));
        assert!(!local.is_ancestor(&c2b, &c2));
        let e = local
            .push("/nonexistent/remote.git", &c2, "main", timeout)
            .unwrap_err()
            .to_string();
        assert!(e.contains("git push"), "{e}");
    }

    #[test]
    fn the_transports_complaint_beats_could_not_read_from_remote_repository() {
        let refused = "ssh: connect to host h port 22: Connection refused\r\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
        assert_eq!(
            first_error_line(refused).as_deref(),
            Some("ssh: connect to host h port 22: Connection refused")
        );
        assert_eq!(
            first_error_line("fatal: '/x' does not appear to be a git repository\nfatal: Could not read from remote repository.").as_deref(),
            Some("'/x' does not appear to be a git repository")
        );
        assert_eq!(
            first_error_line("fatal: Could not read from remote repository.").as_deref(),
            Some("Could not read from remote repository.")
        );
        assert_eq!(
            first_error_line("hint: x\nerror: failed to push some refs").as_deref(),
            Some("failed to push some refs")
        );
    }

    /// What both gits here (2.39 and 2.47) write on a pipe with `--progress`, in pieces.
    const PUSH_PROGRESS: &str = "Enumerating objects: 3, done.\nCounting objects:  33% (1/3)\rCounting objects: 100% (3/3)\rCounting objects: 100% (3/3), done.\nDelta compression using up to 2 threads\nWriting objects:  33% (1/3)\rWriting objects:  66% (2/3), 360.00 KiB | 330.00 KiB/s\rWriting objects: 100% (3/3), 2.00 MiB | 273.00 KiB/s, done.\nTotal 3 (delta 0), reused 0 (delta 0), pack-reused 0 (from 0)\n";
    const FETCH_PROGRESS: &str = "remote: Enumerating objects: 3, done.        \nremote: Counting objects:  33% (1/3)        \rremote: Counting objects: 100% (3/3), done.        \nremote: Compressing objects: 100% (2/2), done.\x1b[K\nReceiving objects:  66% (2/3), 300.00 KiB | 227.00 KiB/s\rremote: Total 3 (delta 0), reused 0 (delta 0), pack-reused 0        \nReceiving objects: 100% (3/3), 1.96 MiB | 274.00 KiB/s, done.\nResolving deltas: 100% (1/1), done.\nFrom ssh://h/tmp/r.git\n";

    #[test]
    fn progress_is_left_out_of_what_git_says() {
        for progress in [PUSH_PROGRESS, FETCH_PROGRESS] {
            assert_eq!(strip_progress(progress.as_bytes()), b"", "{progress}");
            assert_eq!(first_error_line(progress), None);
        }
        // The transport's complaint after progress, with no `fatal:` to find it by.
        let dropped = format!(
            "{PUSH_PROGRESS}Writing objects:  66% (2/3)\rConnection to h closed by remote host.\r\n"
        );
        assert_eq!(
            first_error_line(&dropped).as_deref(),
            Some("Connection to h closed by remote host.")
        );
        assert_eq!(
            String::from_utf8_lossy(&strip_progress(dropped.as_bytes())),
            "Connection to h closed by remote host.\n"
        );
        let fetch_failed = format!(
            "{FETCH_PROGRESS}error: cannot lock ref 'refs/remotes/origin/main': is at 0123 but expected 4567\n"
        );
        assert_eq!(
            first_error_line(&fetch_failed).as_deref(),
            Some("cannot lock ref 'refs/remotes/origin/main': is at 0123 but expected 4567")
        );
        // In another language, progress is still progress.
        assert!(is_progress("Zähle Objekte: 100% (3/3), Fertig."));
        assert!(is_progress("remote: Objekte aufzählen: 3, Fertig."));
        // What git, ssh or the remote have to say never is.
        for said in [
            "fatal: unable to access 'https://x.invalid/r.git/': Could not resolve host: x.invalid",
            "ssh: connect to host h port 22: Connection refused",
            "ERROR: Repository not found.",
            "error: 1 ref could not be updated",
            "remote: error: GH006: Protected branch update failed for refs/heads/main.",
            "remote: Invalid username or password.",
            "send-pack: unexpected disconnect while reading sideband packet",
            "kex_exchange_identification: read: Connection reset by peer",
            "Permission denied (publickey).",
            "To ssh://h/r.git",
            " ! [rejected]        main -> main (fetch first)",
        ] {
            assert!(!is_progress(said), "{said}");
        }
    }

    fn sh(script: &str) -> Child {
        spawn_network(
            Command::new("sh")
                .args(["-c", script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap()
    }

    fn bound(idle_ms: u64, total_ms: u64, total_is_deadline: bool) -> NetBound {
        NetBound {
            idle: Duration::from_millis(idle_ms),
            total: Duration::from_millis(total_ms),
            total_is_deadline,
        }
    }

    fn cut_of(r: Result<Output>) -> Cut {
        r.unwrap_err()
            .downcast_ref::<TimedOut>()
            .map(|t| t.cut)
            .expect("a TimedOut")
    }

    #[test]
    fn a_step_that_keeps_reporting_progress_outlasts_the_idle_bound() {
        let start = Instant::now();
        let out = wait_with_timeout(
            sh("i=0; while [ $i -lt 10 ]; do printf 'Writing objects: %d%%\\r' $((i * 10)) >&2; sleep 0.2; i=$((i + 1)); done; echo done"),
            bound(1000, 20_000, false),
        )
        .unwrap();
        let took = start.elapsed();
        assert!(out.status.success());
        assert!(took > Duration::from_millis(1500), "{took:?}");
        assert_eq!(out.stdout, b"done\n");
        assert_eq!(out.stderr, b"", "progress is left out");
    }

    #[test]
    fn a_child_left_holding_the_pipes_does_not_keep_the_step_waiting() {
        // Like an ssh ControlPersist master: started by git, living on with its stderr.
        let start = Instant::now();
        let child = sh("echo said >&2; sleep 30 & echo done");
        let group = child.id();
        let out = wait_with_timeout(child, bound(5000, 20_000, false)).unwrap();
        crate::os::kill_group(group);
        assert!(out.status.success());
        assert_eq!(out.stdout, b"done\n");
        assert_eq!(out.stderr, b"said\n");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_step_is_stopped_when_it_is_silent_or_stalls() {
        let start = Instant::now();
        assert_eq!(
            cut_of(wait_with_timeout(
                sh("exec sleep 30"),
                bound(500, 20_000, false)
            )),
            Cut::Silent
        );
        assert_eq!(
            cut_of(wait_with_timeout(
                sh("echo 'Counting objects: 1' >&2; exec sleep 30"),
                bound(500, 20_000, false)
            )),
            Cut::Stalled
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_step_that_trickles_forever_is_stopped_in_all() {
        let trickle = "while :; do printf . >&2; sleep 0.1; done";
        let start = Instant::now();
        assert_eq!(
            cut_of(wait_with_timeout(sh(trickle), bound(1000, 800, false))),
            Cut::OverCap
        );
        assert_eq!(
            cut_of(wait_with_timeout(sh(trickle), bound(1000, 800, true))),
            Cut::OverDeadline
        );
        // Silent until the deadline: silent.
        assert_eq!(
            cut_of(wait_with_timeout(
                sh("exec sleep 30"),
                bound(1000, 300, true)
            )),
            Cut::Silent
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn each_way_a_step_is_stopped_is_one_sentence_with_its_fix() {
        for cut in [Cut::Silent, Cut::Stalled, Cut::OverCap, Cut::OverDeadline] {
            let s = RemoteSilent {
                remote: "ssh://h/r.git".into(),
                what: "git push".into(),
                secs: 60,
                cut,
            }
            .to_string();
            assert!(s.contains("ssh://h/r.git") && s.contains("git push"), "{s}");
            assert!(!s.contains('\n'), "{s}");
            assert!(
                s.contains("network_timeout_secs") || s.contains("ccsync sync"),
                "{s}"
            );
        }
    }

    #[test]
    fn local_damage_is_told_from_the_remotes_complaints() {
        for local in [
            "error: inflate: data stream error (incorrect header check)\nfatal: loose object 3c40 (stored in ./objects/3c/40) is corrupt",
            "fatal: missing object 0123 for refs/remotes/origin/main",
            "fatal: bad config line 1 in file ./config",
            "fatal: bad object refs/remotes/origin/main",
            "error: packfile ./objects/pack/pack-1.pack cannot be accessed",
        ] {
            assert!(local_damage(local).is_some(), "{local}");
        }
        for remote in [
            "fatal: '/x/sync.git' does not appear to be a git repository\nfatal: Could not read from remote repository.",
            "remote: fatal: loose object 3c40 is corrupt\nfatal: early EOF",
            "fatal: unable to access 'https://example.com/x.git/': Could not resolve host",
            "! [rejected] main -> main (fetch first)",
        ] {
            assert_eq!(local_damage(remote), None, "{remote}");
        }
    }

    #[test]
    fn refs_naming_missing_objects_and_missing_objects_are_found() {
        if !git_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let g = Git::init_bare(&dir.path().join("r.git")).unwrap();
        let mut t = g.transaction().unwrap();
        let m = t.blob(b"x").unwrap();
        t.put("x", m);
        let c = t.commit(None, "t <t@t>", "one").unwrap();
        g.set_ref("refs/remotes/origin/main", Some(&c)).unwrap();
        assert_eq!(g.check_refs(), Ok(()));
        let blob = g.ls_tree(&c, None).unwrap().remove(0).oid;
        let gone = Oid("0123456789abcdef0123456789abcdef01234567".into());
        let missing = g.missing_objects(&[blob.clone(), gone.clone()]).unwrap();
        assert!(missing.contains(&gone) && !missing.contains(&blob));
        // A ref to an object the clone lacks.
        std::fs::write(
            g.dir.join("refs/remotes/origin/main"),
            format!("{}\n", gone.0),
        )
        .unwrap();
        let why = g.check_refs().unwrap_err();
        assert!(why.contains("refs/remotes/origin/main"), "{why}");
        // Reading an object it lacks is the clone's damage, and is noted in it.
        assert_eq!(g.damage_note(), None);
        let e = g.reader().unwrap().read(&gone).unwrap_err();
        assert!(is_clone_damage(&e), "{e:#}");
        assert!(e.to_string().contains(&g.dir.display().to_string()), "{e}");
        assert!(g.damage_note().is_some());
    }

    #[test]
    fn ls_tree_parsing() {
        let raw = b"100644 blob 0123456789012345678901234567890123456789      12\tp/a\x00120000 blob 0123456789012345678901234567890123456789       3\tlink\0";
        let e = parse_ls_tree(raw).unwrap();
        assert_eq!(e.len(), 2);
        assert!(e[0].is_regular_file() && !e[1].is_regular_file());
        assert_eq!(e[1].path_str(), Some("link"));
    }
}
