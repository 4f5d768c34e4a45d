//! The PRODUCT.md §8 benchmark: builds the reference corpora and times the real binary against a
//! local bare remote, printing one row per case (median of the runs, peak memory).
//!
//! ```text
//! cargo bench --bench sync                 # 300 sessions / 150 MB
//! cargo bench --bench sync -- --big        # also 3,000 sessions / 1.5 GB, a 300 MB session
//!                                          # and a 2 GB transcript
//! cargo bench --bench sync -- --huge       # only the 300 MB session and 2 GB transcript cases
//! cargo bench --bench sync -- --runs 5 --data /tmp/bench
//! cargo bench --bench sync -- --peers /work/peers   # also clync, claude-code-sync and the
//!                                                    # Python original, side by side
//! ```
//!
//! Corpora come from `gen-claude-home` (`$CCSYNC_GEN`, else `../shared/tools/gen-claude-home`)
//! when it exists, else from a small built-in generator of the same shape. They are cached in the
//! data folder (default `target/bench-data`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "sync/peers.rs"]
mod peers;

struct Opts {
    runs: usize,
    big: bool,
    only_huge: bool,
    /// Also run the 150 MB rows on an encrypted repository.
    encrypt: bool,
    data: PathBuf,
    /// Also run the small cases with the peers installed in this folder (`peers.rs`).
    peers: Option<PathBuf>,
}

fn main() {
    let mut opts = Opts {
        runs: 3,
        big: false,
        only_huge: false,
        encrypt: false,
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"),
        peers: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--big" => opts.big = true,
            "--huge" => opts.only_huge = true,
            "--encrypt" => opts.encrypt = true,
            "--runs" => opts.runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(3),
            "--data" => opts.data = PathBuf::from(args.next().unwrap_or_default()),
            "--peers" => opts.peers = args.next().map(PathBuf::from),
            "--bench" => {}
            other => eprintln!("ignoring argument {other}"),
        }
    }
    std::fs::create_dir_all(&opts.data).expect("cannot create the benchmark data folder");
    let trash = opts.data.join("trash");
    let _ = std::fs::remove_dir_all(&trash);
    let _ = TRASH.set(trash.clone());
    println!(
        "ccsync benchmark ({} runs per case, median; binary {})",
        opts.runs,
        bin().display()
    );
    println!(
        "{:<58} {:>10} {:>10}",
        "case", "time", "peak RSS (ccsync's own)"
    );
    if opts.only_huge {
        huge_cases(&opts);
        let _ = std::fs::remove_dir_all(&trash);
        return;
    }
    let small = corpus(&opts, 300, 150.0);
    let ours = small_cases(&opts, &small, false);
    if opts.encrypt {
        small_cases(&opts, &small, true);
    }
    if let Some(dir) = &opts.peers {
        peers::compare(&opts, &small, dir, &ours);
    }
    if opts.big {
        let big = corpus(&opts, 3000, 1500.0);
        big_cases(&opts, &big);
        huge_cases(&opts);
    }
    let _ = std::fs::remove_dir_all(&trash);
}

/// Where what runs leave behind waits until the benchmark ends (see [`set_aside`]).
static TRASH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Move `path` out of the way instead of deleting it. On a file system without a journal (the
/// ext4 of the VM BENCHMARKS.md names), the inode allocator skips, one at a time, every inode
/// freed in the last 60 to 360 seconds: deleting one run's files made the next run's file
/// creations several times slower, for ccsync and the peers alike and most for whoever writes
/// the most files. No run now follows a deletion; `main` deletes it all at the end.
fn set_aside(path: &Path) {
    if std::fs::symlink_metadata(path).is_err() {
        return;
    }
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if let Some(trash) = TRASH.get() {
        let _ = std::fs::create_dir_all(trash);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if std::fs::rename(path, trash.join(n.to_string())).is_ok() {
            return;
        }
    }
    let _ = std::fs::remove_dir_all(path);
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ccsync"))
}

/// One simulated machine.
struct Machine {
    home: PathBuf,
    claude: PathBuf,
    tool: PathBuf,
}

impl Machine {
    fn new(root: &Path) -> Machine {
        set_aside(root);
        let home = root.join("home");
        let claude = root.join("claude");
        let tool = root.join("tool");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&claude).unwrap();
        // Keep every session: the corpora span more than Claude Code's default 30 days.
        std::fs::write(
            claude.join("settings.json"),
            r#"{"cleanupPeriodDays": 36500}"#,
        )
        .unwrap();
        Machine { home, claude, tool }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("HOME", &self.home)
            .env("CLAUDE_CONFIG_DIR", &self.claude)
            .env("CCSYNC_HOME", &self.tool)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdout(std::process::Stdio::null());
        c
    }

    /// Run and return (seconds, peak RSS in KB).
    fn timed(&self, args: &[&str]) -> (f64, u64) {
        run_measured(self.cmd(args), &[0])
    }

    /// [`Machine::timed`] for `search`, which exits 1 when nothing matched.
    fn searched(&self, args: &[&str]) -> (f64, u64) {
        run_measured(self.cmd(args), &[0, 1])
    }

    fn ok(&self, args: &[&str]) {
        let st = self.cmd(args).status().unwrap();
        assert!(st.success(), "ccsync {args:?} failed");
    }
}

/// Seconds and peak resident memory of one ccsync process: its own, as it reports it in its
/// debug log (git's processes are not counted), else what the kernel reports for it and the
/// children it waited for.
fn run_measured(cmd: Command, ok: &[i32]) -> (f64, u64) {
    measure(cmd, ok, None).unwrap_or_else(|e| panic!("ccsync failed: {e}"))
}

/// [`run_measured`] for any program: `input` is written to its standard input, and an exit
/// status outside `ok` is an error carrying the end of what it wrote to its standard error.
fn measure(mut cmd: Command, ok: &[i32], input: Option<&str>) -> Result<(f64, u64), String> {
    use std::io::Read;
    cmd.env("CCSYNC_LOG", "ccsync=debug")
        .stderr(std::process::Stdio::piped());
    if input.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if let (Some(text), Some(mut i)) = (input, child.stdin.take()) {
        // A program that stops reading early closes the pipe: that is its own business.
        let _ = i.write_all(text.as_bytes());
    }
    let mut log = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    let own_kb = log
        .lines()
        .find_map(|l| l.split("peak memory of this process: ").nth(1))
        .and_then(|r| r.trim().trim_end_matches(" MB").parse::<u64>().ok())
        .map(|mb| mb * 1024);
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and usage are valid for writes.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    std::mem::forget(child);
    if !(rc == pid && libc::WIFEXITED(status) && ok.contains(&libc::WEXITSTATUS(status))) {
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "exit status {}: {}",
            if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            },
            tail.join(" / ")
        ));
    }
    Ok((secs, own_kb.unwrap_or(usage.ru_maxrss as u64)))
}

fn median(mut v: Vec<(f64, u64)>) -> (f64, u64) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let t = v[v.len() / 2].0;
    let m = v.iter().map(|x| x.1).max().unwrap_or(0);
    (t, m)
}

fn row(name: &str, r: (f64, u64)) {
    let t = if r.0 < 1.0 {
        format!("{:.0} ms", r.0 * 1000.0)
    } else {
        format!("{:.2} s", r.0)
    };
    println!("{:<58} {:>10} {:>7} MB", name, t, r.1 / 1024);
    let _ = std::io::stdout().flush();
}

struct Corpus {
    dir: PathBuf,
    root: String,
}

fn generator() -> Option<PathBuf> {
    let p = std::env::var_os("CCSYNC_GEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/gen-claude-home")
        });
    p.is_file().then_some(p)
}

/// A Claude Code dir with `sessions` sessions of about `mb` MB in total (cached).
fn corpus(opts: &Opts, sessions: usize, mb: f64) -> Corpus {
    let root = "/home/alice/projects".to_string();
    let dir = opts.data.join(format!("corpus-{sessions}-{mb}"));
    if dir.join(".done").exists() {
        return Corpus { dir, root };
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "building corpus {} ({sessions} sessions, {mb} MB)…",
        dir.display()
    );
    match generator() {
        Some(g) => {
            let st = Command::new("python3")
                .arg(g)
                .arg(&dir)
                .args([
                    "--root",
                    &root,
                    "--sessions",
                    &sessions.to_string(),
                    "--mb",
                    &mb.to_string(),
                ])
                .stdout(std::process::Stdio::null())
                .status()
                .expect("cannot run gen-claude-home");
            assert!(st.success());
        }
        None => builtin_corpus(&dir, &root, sessions, mb),
    }
    std::fs::write(dir.join(".done"), "").unwrap();
    Corpus { dir, root }
}

/// A small stand-in for gen-claude-home: same layout, simpler lines.
fn builtin_corpus(dir: &Path, root: &str, sessions: usize, mb: f64) {
    let projects = ["my_app", "api.v2", "worker", "cache-sync", "tool"];
    let mut seed: u64 = 1;
    let mut rnd = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / (1u64 << 31) as f64
    };
    let per = mb * 1_000_000.0 / sessions as f64;
    let t0 = chrono::Utc::now() - chrono::Duration::days(60);
    for i in 0..sessions {
        let cwd = format!("{root}/{}", projects[i % projects.len()]);
        let folder = dir
            .join("projects")
            .join(cwd.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
        std::fs::create_dir_all(&folder).unwrap();
        let sid = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
        let target = (per * (0.2 + 1.6 * rnd())) as usize;
        let mut out = String::new();
        let mut n = 0;
        while out.len() < target {
            let ts = (t0 + chrono::Duration::minutes((i * 200 + n) as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let body = "x".repeat((rnd() * 4000.0) as usize);
            out += &serde_json::json!({"parentUuid": null, "cwd": cwd, "sessionId": sid, "type": "user", "uuid": format!("{sid}-{n}"),
                "timestamp": ts, "message": {"role": "user", "content": format!("edit {cwd}/src/lib.rs {body}")}})
            .to_string();
            out.push('\n');
            n += 1;
        }
        std::fs::write(folder.join(format!("{sid}.jsonl")), out).unwrap();
    }
}

/// Link a corpus into a machine's Claude Code dir (hard links: push only reads).
fn install(corpus: &Corpus, m: &Machine) {
    let st = Command::new("cp")
        .arg("-al")
        .arg(corpus.dir.join("projects"))
        .arg(&m.claude)
        .status()
        .unwrap();
    assert!(st.success());
    for f in ["CLAUDE.md", "history.jsonl"] {
        if corpus.dir.join(f).exists() {
            std::fs::copy(corpus.dir.join(f), m.claude.join(f)).unwrap();
        }
    }
}

/// A transcript of the corpus of about `size` bytes, copied so it can be appended to.
fn writable_transcript(m: &Machine, size: u64) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    for d in std::fs::read_dir(m.claude.join("projects"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "jsonl") {
                let l = f.metadata().unwrap().len();
                let score = l.abs_diff(size);
                if best.as_ref().is_none_or(|b| score < b.0) {
                    best = Some((score, p));
                }
            }
        }
    }
    let p = best.expect("empty corpus").1;
    // Break the hard link to the cached corpus without reading the file into memory.
    let tmp = p.with_extension("copy");
    std::fs::copy(&p, &tmp).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
    p
}

fn append_lines(p: &Path, bytes: usize, tag: &str) {
    // Only the end of the file is read: the benchmark's own memory must stay small, because a
    // child started from it inherits its peak in the figures the kernel reports.
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(p).unwrap();
    let len = f.metadata().unwrap().len();
    f.seek(SeekFrom::Start(len.saturating_sub(256 * 1024)))
        .unwrap();
    let mut tail = String::new();
    f.read_to_string(&mut tail).unwrap();
    let last = tail.lines().last().unwrap_or("{}");
    let mut v: serde_json::Value = serde_json::from_str(last).unwrap_or(serde_json::json!({}));
    let mut out = String::new();
    let mut i = 0;
    // Each new turn hangs from the one before, as Claude Code writes them (a sibling of the last
    // line would be a second branch of the conversation).
    let mut parent = v.get("uuid").cloned().unwrap_or(serde_json::Value::Null);
    while out.len() < bytes.max(1) {
        v["parentUuid"] = parent;
        v["uuid"] = serde_json::json!(format!("bench-{tag}-{i}"));
        parent = v["uuid"].clone();
        v["message"] =
            serde_json::json!({"role": "user", "content": "y".repeat(bytes.clamp(1, 2000))});
        out += &v.to_string();
        out.push('\n');
        i += 1;
        if bytes == 0 {
            break;
        }
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
    f.write_all(out.as_bytes()).unwrap();
}

fn du(p: &Path) -> u64 {
    let out = Command::new("du").args(["-sk"]).arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
        * 1024
}

fn fresh_remote(path: &Path) -> String {
    set_aside(path);
    let st = Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
    path.to_string_lossy().into_owned()
}

fn init(m: &Machine, remote: &str, id: &str, projects: &str) {
    m.ok(&[
        "init",
        "--yes",
        "--machine-id",
        id,
        "--remote",
        remote,
        "--add-placeholder",
        &format!("PROJECTS={projects}"),
        "--sync-dir",
        "/",
    ]);
}

/// ccsync's medians on the small corpus, for the table beside the peers.
struct Figures {
    first: (f64, u64),
    append: (f64, u64),
    nothing: (f64, u64),
    pull_init: (f64, u64),
    remote_size: u64,
    /// Transcripts on the new machine after its first pull.
    pulled: usize,
}

fn small_cases(opts: &Opts, c: &Corpus, encrypt: bool) -> Figures {
    let base = opts.data.join(if encrypt {
        "run-small-enc"
    } else {
        "run-small"
    });
    let _ = std::fs::create_dir_all(&base);
    let pass = base.join("passphrase.txt");
    std::fs::write(&pass, "benchmark passphrase\n").unwrap();
    let pass = pass.to_string_lossy().into_owned();
    let mut joined = vec![];
    if encrypt {
        println!("-- encrypted repository (init --encrypt) --");
    }
    let (mut first, mut append, mut nothing, mut pull_init, mut pull, mut list) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut search_none, mut search_common) = (vec![], vec![]);
    let mut first_unscanned = vec![];
    let mut remote_size = 0;
    let mut pulled = 0;
    for r in 0..opts.runs {
        let remote = fresh_remote(&base.join("remote.git"));
        let a = Machine::new(&base.join("a"));
        install(c, &a);
        if encrypt {
            a.ok(&[
                "init",
                "--yes",
                "--machine-id",
                "a",
                "--remote",
                &remote,
                "--add-placeholder",
                &format!("PROJECTS={}", c.root),
                "--sync-dir",
                "/",
                "--encrypt",
                "--passphrase-file",
                &pass,
            ]);
        } else {
            init(&a, &remote, "a", &c.root);
        }
        first.push(a.timed(&["push"]));
        remote_size = du(&base.join("remote.git"));
        let t = writable_transcript(&a, 7_000_000);
        append_lines(&t, 0, &format!("one-{r}"));
        append.push(a.timed(&["push"]));
        nothing.push(a.timed(&["push"]));
        list.push(a.timed(&["list", "--format", "json"]));
        search_none.push(a.searched(&["search", "zzz-nowhere-zzz"]));
        search_common.push(a.searched(&["search", "flaky parser", "-n", "20"]));
        let b = Machine::new(&base.join("b"));
        let start = Instant::now();
        let mut args = vec![
            "init",
            "--yes",
            "--machine-id",
            "b",
            "--remote",
            &remote,
            "--add-placeholder",
            "PROJECTS=/home/bob/code",
            "--sync-dir",
            "/",
        ];
        if encrypt {
            args.extend(["--passphrase-file", pass.as_str()]);
        }
        let (ti, mi) = b.timed(&args);
        joined.push((ti, mi));
        let (tp, mp) = b.timed(&["pull"]);
        pull_init.push((start.elapsed().as_secs_f64(), mi.max(mp)));
        pull.push((tp, mp));
        pulled = transcripts(&b.claude);
        if !encrypt {
            first_unscanned.push(first_push_unscanned(&base, c));
        }
    }
    let n = 300;
    let ours = Figures {
        first: median(first.clone()),
        append: median(append.clone()),
        nothing: median(nothing.clone()),
        pull_init: median(pull_init.clone()),
        remote_size,
        pulled,
    };
    row(&format!("first push, {n} sessions / 150 MB"), median(first));
    if !encrypt {
        row(
            "  the same with secret_scan = off (no redaction)",
            median(first_unscanned),
        );
    }
    row(
        "push after appending one line (7 MB transcript)",
        median(append),
    );
    row("push, nothing changed", median(nothing));
    row(
        "first pull on a new machine (init + pull)",
        median(pull_init),
    );
    row("  of which pull", median(pull));
    row(
        "  of which init (with the passphrase: scrypt)",
        median(joined),
    );
    row(&format!("list, {n} sessions, warm"), median(list));
    row(
        "search, no match (every session read), warm",
        median(search_none),
    );
    row(
        "search, common words, 20 newest hits, warm",
        median(search_common),
    );
    println!(
        "{:<58} {:>10}",
        "  remote size after the first push",
        format!("{} MB", remote_size / 1_000_000)
    );
    ours
}

/// The first push of [`small_cases`] on its own remote, with `secret_scan = off`: what secret
/// redaction (the default) costs.
fn first_push_unscanned(base: &Path, c: &Corpus) -> (f64, u64) {
    let remote = fresh_remote(&base.join("remote-unscanned.git"));
    let a = Machine::new(&base.join("a-unscanned"));
    install(c, &a);
    init(&a, &remote, "a", &c.root);
    a.ok(&["config", "set", "secret_scan", "off"]);
    let r = a.timed(&["push"]);
    set_aside(&base.join("a-unscanned"));
    set_aside(&base.join("remote-unscanned.git"));
    r
}

/// How many transcripts (not subagents') a Claude Code dir holds.
fn transcripts(claude: &Path) -> usize {
    let Ok(projects) = std::fs::read_dir(claude.join("projects")) else {
        return 0;
    };
    projects
        .flatten()
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| f.path().extension().is_some_and(|e| e == "jsonl"))
        .count()
}

fn big_cases(opts: &Opts, c: &Corpus) {
    let base = opts.data.join("run-big");
    let remote = fresh_remote(&base.join("remote.git"));
    let a = Machine::new(&base.join("a"));
    install(c, &a);
    init(&a, &remote, "a", &c.root);
    row("first push, 3,000 sessions / 1.5 GB", a.timed(&["push"]));
    let nothing: Vec<_> = (0..opts.runs).map(|_| a.timed(&["push"])).collect();
    row("push, nothing changed, 3,000 sessions", median(nothing));
    let _ = a.timed(&["list", "--format", "json"]);
    let list: Vec<_> = (0..opts.runs)
        .map(|_| a.timed(&["list", "--format", "json"]))
        .collect();
    row("list, 3,000 sessions, warm", median(list));
    let _ = a.searched(&["search", "zzz-nowhere-zzz"]);
    let none: Vec<_> = (0..opts.runs)
        .map(|_| a.searched(&["search", "zzz-nowhere-zzz"]))
        .collect();
    row(
        "search, no match, 1.5 GB (every session read), warm",
        median(none),
    );
    let common: Vec<_> = (0..opts.runs)
        .map(|_| a.searched(&["search", "flaky parser", "-n", "20"]))
        .collect();
    row(
        "search, common words, 20 newest hits, 1.5 GB, warm",
        median(common),
    );
    let rare: Vec<_> = (0..opts.runs)
        .map(|_| a.searched(&["search", "socket_42 = rebase", "-n", "20"]))
        .collect();
    row("search, a rare phrase, 1.5 GB, warm", median(rare));
}

/// Write a transcript of about `size` bytes (lines of 1 to 64 KB) in `cwd`.
fn synthetic(m: &Machine, cwd: &str, sid: &str, size: u64) -> PathBuf {
    let folder = m
        .claude
        .join("projects")
        .join(cwd.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    std::fs::create_dir_all(&folder).unwrap();
    let p = folder.join(format!("{sid}.jsonl"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    let mut written = 0u64;
    let mut i = 0u64;
    let ts = (chrono::Utc::now() - chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    while written < size {
        let body = "z".repeat(1024 * (1 + (i as usize * 7) % 64));
        let line = serde_json::json!({"parentUuid": null, "cwd": cwd, "sessionId": sid, "type": "user", "uuid": format!("{sid}-{i}"),
            "timestamp": ts, "message": {"role": "user", "content": format!("{cwd}/src/main.rs {body}")}})
        .to_string();
        f.write_all(line.as_bytes()).unwrap();
        f.write_all(b"\n").unwrap();
        written += line.len() as u64 + 1;
        i += 1;
    }
    f.flush().unwrap();
    p
}

/// Write a transcript that is one user line of about `size` bytes, paths throughout.
fn single_line(m: &Machine, cwd: &str, sid: &str, size: u64) -> PathBuf {
    let folder = m
        .claude
        .join("projects")
        .join(cwd.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    std::fs::create_dir_all(&folder).unwrap();
    let p = folder.join(format!("{sid}.jsonl"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    let ts = (chrono::Utc::now() - chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    write!(
        f,
        r#"{{"parentUuid":null,"isSidechain":false,"userType":"external","cwd":"{cwd}","sessionId":"{sid}","version":"2.1.197","type":"user","message":{{"role":"user","content":[{{"tool_use_id":"toolu_1","type":"tool_result","content":""#
    )
    .unwrap();
    let unit = format!("line of a file read by the tool {cwd}/src/lib.rs:42 some text\\n");
    for _ in 0..size / unit.len() as u64 {
        f.write_all(unit.as_bytes()).unwrap();
    }
    writeln!(f, r#""}}]}},"uuid":"{sid}-0","timestamp":"{ts}"}}"#).unwrap();
    f.flush().unwrap();
    p
}

fn huge_cases(opts: &Opts) {
    let base = opts.data.join("run-huge");
    let remote = fresh_remote(&base.join("remote.git"));
    let a = Machine::new(&base.join("a"));
    init(&a, &remote, "a", "/home/alice/projects");
    let p300 = synthetic(
        &a,
        "/home/alice/projects/big",
        "00000300-0000-4000-8000-000000000300",
        300_000_000,
    );
    a.ok(&["push"]);
    let mut times = vec![];
    let mut growth = 0;
    for r in 0..opts.runs {
        let before = du(&base.join("remote.git"));
        append_lines(&p300, 100_000, &format!("100k-{r}"));
        times.push(a.timed(&["push"]));
        growth = du(&base.join("remote.git")).saturating_sub(before);
    }
    row(
        "push after appending 100 KB to a 300 MB session",
        median(times),
    );
    println!(
        "{:<58} {:>10}",
        "  repository growth for that push",
        format!("{} KB", growth / 1024)
    );

    let _ = std::fs::remove_file(&p300);

    // One line of 300 MB (a tool result holding a whole file): streamed, never held.
    let p1 = single_line(
        &a,
        "/home/alice/projects/oneline",
        "00000301-0000-4000-8000-000000000301",
        300_000_000,
    );
    let push1 = a.timed(&["push"]);
    let c = Machine::new(&base.join("c"));
    init(&c, &remote, "c", "/home/carol/code");
    let pull1 = c.timed(&["pull"]);
    row("300 MB single-line transcript: first push", push1);
    row("300 MB single-line transcript: first pull", pull1);
    let _ = std::fs::remove_file(&p1);
    set_aside(&base.join("c"));
    let p2g = synthetic(
        &a,
        "/home/alice/projects/huge",
        "00002000-0000-4000-8000-000000002000",
        2_000_000_000,
    );
    let mut peak = vec![];
    peak.push(("first push", a.timed(&["push"])));
    append_lines(&p2g, 100_000, "2g");
    peak.push(("push after append", a.timed(&["push"])));
    peak.push(("list", a.timed(&["list", "--format", "json"])));
    let b = Machine::new(&base.join("b"));
    init(&b, &remote, "b", "/home/bob/code");
    peak.push(("first pull", b.timed(&["pull"])));
    for (name, r) in &peak {
        row(&format!("2 GB transcript present: {name}"), *r);
    }
    set_aside(&base);
}
