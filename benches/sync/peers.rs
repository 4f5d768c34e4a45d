//! `--peers DIR`: the small cases for the peers that `DIR` holds, beside ccsync's, in one table.
//!
//! ```text
//! cargo install clync claude-code-sync --root DIR
//! python3 -m venv DIR/py && DIR/py/bin/pip install claude-session-sync
//! cargo bench --bench sync -- --peers DIR
//! ```
//!
//! Each peer runs on simulated machines of its own (HOME, Claude Code's dir at `HOME/.claude`,
//! its config under HOME), against a local bare remote, with a cleared environment, git allowed
//! only its local transport, and, where `unshare -n` works, in a network namespace with no
//! interface up: a peer can reach nothing but the remote's folder. Its setup answers its prompts
//! on standard input; what is timed is what ccsync's rows time.

use super::{
    Corpus, Figures, Machine, Opts, append_lines, du, install, measure, median, transcripts,
    writable_transcript,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Clync,
    ClaudeCodeSync,
    /// claude-session-sync on PyPI, whose `ccsync` command ccsync is named after.
    Original,
}

struct Peer {
    kind: Kind,
    name: &'static str,
    bin: PathBuf,
    version: String,
}

/// A peer's medians, or why a case could not be run.
type Cell = Result<(f64, u64), String>;

struct Outcome {
    first: Cell,
    append: Cell,
    nothing: Cell,
    pull_init: Cell,
    remote_size: Option<u64>,
    pulled: Option<usize>,
}

pub(super) fn compare(opts: &Opts, c: &Corpus, dir: &Path, ours: &Figures) {
    let mut notes = vec![];
    let netns = Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !netns {
        notes.push(
            "`unshare -n` is not available here: the peers ran with a cleared environment and \
             git limited to local paths, but not in a network namespace"
                .to_string(),
        );
    }
    let candidates = [
        (Kind::Clync, "clync", dir.join("bin/clync")),
        (
            Kind::ClaudeCodeSync,
            "claude-code-sync",
            dir.join("bin/claude-code-sync"),
        ),
        (
            Kind::Original,
            "claude-session-sync",
            dir.join("py/bin/claude-session-sync"),
        ),
    ];
    // Even `--version` runs on a simulated machine: claude-code-sync writes a log under HOME.
    let scratch = PeerMachine::new(&opts.data.join("run-peers/scratch"), netns);
    let mut peers = vec![];
    for (kind, name, bin) in candidates {
        if !bin.is_file() {
            notes.push(format!("{name}: skipped, {} not found", bin.display()));
            continue;
        }
        let version = version(&scratch, kind, &bin);
        peers.push(Peer {
            kind,
            name,
            bin,
            version,
        });
    }
    println!("-- peers ({}), the same corpus and runs --", dir.display());
    let mut outcomes = vec![];
    for p in &peers {
        eprintln!("running {} {}…", p.name, p.version);
        outcomes.push(run_peer(opts, c, p, netns, &mut notes));
    }
    table(ours, &peers, &outcomes);
    println!(
        "  times: median of {} runs. Memory: ccsync's own process; a peer's is the kernel's peak \
         for it and the processes it waited for (git among them).",
        opts.runs
    );
    if netns {
        println!(
            "  Each peer ran in a network namespace of its own (`unshare -n`, about 3 ms a \
             command)."
        );
    }
    for p in &peers {
        println!("  {}: {}", p.name, how(p.kind));
    }
    for n in notes {
        println!("  note: {n}");
    }
}

/// What the rows time for a peer, in a line.
fn how(kind: Kind) -> &'static str {
    match kind {
        Kind::Clync => {
            "`init --repo` (its default: sessions zstd-compressed and age-encrypted, key in a \
             file) and `git remote add`; `push`; the new machine `join REMOTE --repo` (the key and \
             \"pull now\" answered on stdin)"
        }
        Kind::ClaudeCodeSync => {
            "`init --local REPO --remote REMOTE`; `push`; the new machine `init --clone` then \
             `pull` (no project map set: sessions land under the first machine's paths; it skips \
             transcripts over 10 MB by default, none here)"
        }
        Kind::Original => {
            "`init --url REMOTE --add-placeholder PROJECTS=…` (it asks to confirm a plain path and \
             whether the repository exists: y, 2 on stdin); `push` (it parses and rewrites every \
             transcript each time); the new machine `init` (y, 1, its HOME and PROJECTS paths on \
             stdin) then `pull`. Its package also installs a command named `ccsync`"
        }
    }
}

fn version(m: &PeerMachine, kind: Kind, bin: &Path) -> String {
    let out = if kind == Kind::Original {
        // It has no --version: ask the venv's Python for the installed distribution.
        let python = bin.with_file_name("python3");
        m.cmd(
            &python,
            &[
                "-c",
                "import importlib.metadata as m; print(m.version('claude-session-sync'))",
            ],
        )
        .stdout(Stdio::piped())
        .output()
    } else {
        m.cmd(bin, &["--version"]).stdout(Stdio::piped()).output()
    };
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .last()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

/// A simulated machine for a peer: every peer reads Claude Code's dir at `HOME/.claude`.
struct PeerMachine {
    m: Machine,
    netns: bool,
}

impl PeerMachine {
    fn new(root: &Path, netns: bool) -> PeerMachine {
        let m = Machine::new(root);
        let claude = m.home.join(".claude");
        std::fs::rename(&m.claude, &claude).unwrap();
        PeerMachine {
            m: Machine { claude, ..m },
            netns,
        }
    }

    fn home(&self) -> &Path {
        &self.m.home
    }

    /// `program` run here, with nothing of the benchmark's environment but PATH.
    fn cmd(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = if self.netns {
            let mut c = Command::new("unshare");
            c.arg("-n").arg(program);
            c
        } else {
            Command::new(program)
        };
        let h = &self.m.home;
        let config = h.join(".config");
        c.args(args)
            .current_dir(h)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", h)
            .env("USER", "bench")
            .env("LANG", "C.UTF-8")
            .env("PYTHONUTF8", "1")
            .env("TERM", "dumb")
            .env("NO_COLOR", "1")
            .env("CLAUDE_CONFIG_DIR", &self.m.claude)
            .env("XDG_CONFIG_HOME", &config)
            .env("CLAUDE_CODE_SYNC_CONFIG_DIR", &config)
            .env("CLAUDE_CODE_SYNC_CLAUDE_DIR", &self.m.claude)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "init.defaultBranch")
            .env("GIT_CONFIG_VALUE_0", "main")
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@localhost")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@localhost")
            .env("GIT_ALLOW_PROTOCOL", "file")
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        c
    }

    fn timed(&self, p: &Peer, args: &[&str], input: Option<&str>) -> Cell {
        measure(self.cmd(&p.bin, args), &[0], input)
            .map_err(|e| format!("`{} {}` failed ({e})", p.name, args.join(" ")))
    }

    fn ok(&self, p: &Peer, args: &[&str], input: Option<&str>) -> Result<(), String> {
        self.timed(p, args, input).map(|_| ())
    }

    fn git(&self, args: &[&str]) -> Result<(), String> {
        measure(self.cmd(Path::new("git"), args), &[0], None)
            .map(|_| ())
            .map_err(|e| format!("git {} failed ({e})", args.join(" ")))
    }
}

fn fresh_remote(path: &Path) -> String {
    super::set_aside(path);
    let st = Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(path)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .unwrap();
    assert!(st.success());
    path.to_string_lossy().into_owned()
}

/// The first machine: set up against `remote`, not timed.
fn setup(p: &Peer, a: &PeerMachine, remote: &str, c: &Corpus) -> Result<(), String> {
    match p.kind {
        Kind::Clync => {
            // Its default: an age key in a key file, sessions compressed and encrypted.
            let repo = a.home().join(".clync/data");
            let repo = repo.to_string_lossy();
            a.ok(p, &["init", "--repo", &repo], None)?;
            a.git(&["-C", &repo, "remote", "add", "origin", remote])
        }
        Kind::ClaudeCodeSync => {
            let repo = a.home().join("claude-code-sync-repo");
            a.ok(
                p,
                &[
                    "init",
                    "--local",
                    &repo.to_string_lossy(),
                    "--remote",
                    remote,
                ],
                None,
            )
        }
        Kind::Original => {
            // A plain path is no URL it knows: it asks to go on (y), then whether the
            // repository exists (2: no, start it and push).
            let projects = format!("PROJECTS={}", c.root);
            a.ok(
                p,
                &[
                    "init",
                    "--machine-id",
                    "a",
                    "--url",
                    remote,
                    "--add-placeholder",
                    &projects,
                ],
                Some("y\n2\n"),
            )
        }
    }
}

fn push(p: &Peer, a: &PeerMachine) -> Cell {
    a.timed(p, &["push"], None)
}

/// A second, new machine: set up against `remote` and pull everything, timed as one.
fn join(p: &Peer, a: &PeerMachine, b: &PeerMachine, remote: &str) -> Cell {
    let steps: Vec<(Vec<String>, Option<String>)> = match p.kind {
        Kind::Clync => {
            // `join` clones, asks for the key of the first machine and whether to pull now.
            let key = std::fs::read_to_string(a.home().join(".config/clync/key.txt"))
                .map_err(|e| format!("clync's key file: {e}"))?;
            let repo = b.home().join(".clync/data");
            vec![(
                vec![
                    "join".into(),
                    remote.into(),
                    "--repo".into(),
                    repo.to_string_lossy().into_owned(),
                ],
                Some(format!("{}\ny\n", key.trim())),
            )]
        }
        Kind::ClaudeCodeSync => {
            let repo = b.home().join("claude-code-sync-repo");
            vec![
                (
                    vec![
                        "init".into(),
                        "--clone".into(),
                        "--remote".into(),
                        remote.into(),
                        "--local".into(),
                        repo.to_string_lossy().into_owned(),
                    ],
                    None,
                ),
                (vec!["pull".into()], None),
            ]
        }
        Kind::Original => {
            // y: go on with a plain path; 1: clone it; then this machine's path for each
            // placeholder the first one shared, in its order (HOME, PROJECTS).
            vec![
                (
                    vec![
                        "init".into(),
                        "--machine-id".into(),
                        "b".into(),
                        "--url".into(),
                        remote.into(),
                        "--add-placeholder".into(),
                        "PROJECTS=/home/bob/code".into(),
                    ],
                    Some(format!("y\n1\n{}\n/home/bob/code\n", b.home().display())),
                ),
                (vec!["pull".into()], None),
            ]
        }
    };
    let start = Instant::now();
    let mut peak = 0;
    for (args, input) in &steps {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        peak = peak.max(b.timed(p, &args, input.as_deref())?.1);
    }
    Ok((start.elapsed().as_secs_f64(), peak))
}

fn run_peer(opts: &Opts, c: &Corpus, p: &Peer, netns: bool, notes: &mut Vec<String>) -> Outcome {
    let base = opts.data.join("run-peers").join(p.name);
    let _ = std::fs::create_dir_all(&base);
    let (mut first, mut append, mut nothing, mut pull_init) = (vec![], vec![], vec![], vec![]);
    let mut errors: [Option<String>; 4] = Default::default();
    let mut remote_size = None;
    let mut pulled = None;
    for r in 0..opts.runs {
        let remote = fresh_remote(&base.join("remote.git"));
        let a = PeerMachine::new(&base.join("a"), netns);
        install(c, &a.m);
        if let Err(e) = setup(p, &a, &remote, c) {
            notes.push(format!("{}: setup failed, no case ran: {e}", p.name));
            break;
        }
        let mut keep = |i: usize, v: &mut Vec<(f64, u64)>, cell: Cell| match cell {
            Ok(x) => v.push(x),
            Err(e) => {
                errors[i].get_or_insert(e);
            }
        };
        let f = push(p, &a);
        let pushed = f.is_ok();
        keep(0, &mut first, f);
        if pushed {
            remote_size = Some(du(&base.join("remote.git")));
            let t = writable_transcript(&a.m, 7_000_000);
            append_lines(&t, 0, &format!("one-{r}"));
            keep(1, &mut append, push(p, &a));
            keep(2, &mut nothing, push(p, &a));
        }
        let b = PeerMachine::new(&base.join("b"), netns);
        keep(3, &mut pull_init, join(p, &a, &b, &remote));
        pulled = Some(transcripts(&b.m.claude));
    }
    for (case, e) in ["first push", "append push", "no-op push", "first pull"]
        .iter()
        .zip(errors)
    {
        if let Some(e) = e {
            notes.push(format!("{}: {case}: {e}", p.name));
        }
    }
    let cell = |v: Vec<(f64, u64)>, i: &str| -> Cell {
        if v.is_empty() {
            Err(i.to_string())
        } else {
            Ok(median(v))
        }
    };
    Outcome {
        first: cell(first, "failed"),
        append: cell(append, "failed"),
        nothing: cell(nothing, "failed"),
        pull_init: cell(pull_init, "failed"),
        remote_size,
        pulled,
    }
}

fn fmt(r: (f64, u64)) -> String {
    let t = if r.0 < 1.0 {
        format!("{:.0} ms", r.0 * 1000.0)
    } else {
        format!("{:.2} s", r.0)
    };
    format!("{t}, {} MB", r.1 / 1024)
}

fn table(ours: &Figures, peers: &[Peer], outcomes: &[Outcome]) {
    const W: usize = 20;
    let label = |s: &str| print!("{s:<48}");
    label("case");
    print!(" {:>W$}", format!("ccsync {}", env!("CARGO_PKG_VERSION")));
    for p in peers {
        print!(" {:>W$}", p.name);
    }
    println!();
    label("  version");
    print!(" {:>W$}", "this build");
    for p in peers {
        print!(" {:>W$}", p.version);
    }
    println!();
    type Pick = fn(&Outcome) -> &Cell;
    let cases: [(&str, (f64, u64), Pick); 4] = [
        ("first push, 300 sessions / 150 MB", ours.first, |o| {
            &o.first
        }),
        (
            "push after appending one line (7 MB transcript)",
            ours.append,
            |o| &o.append,
        ),
        ("push, nothing changed", ours.nothing, |o| &o.nothing),
        (
            "first pull on a new machine (init + pull)",
            ours.pull_init,
            |o| &o.pull_init,
        ),
    ];
    for (name, mine, theirs) in cases {
        label(name);
        print!(" {:>W$}", fmt(mine));
        for o in outcomes {
            let cell = theirs(o).as_ref().map_or("—".to_string(), |r| fmt(*r));
            print!(" {cell:>W$}");
        }
        println!();
    }
    label("remote size after the first push");
    print!(" {:>W$}", format!("{} MB", ours.remote_size / 1_000_000));
    for o in outcomes {
        let s = o
            .remote_size
            .map_or("—".to_string(), |s| format!("{} MB", s / 1_000_000));
        print!(" {s:>W$}");
    }
    println!();
    label("transcripts on the new machine after its pull");
    print!(" {:>W$}", ours.pulled);
    for o in outcomes {
        let s = o.pulled.map_or("—".to_string(), |n| n.to_string());
        print!(" {s:>W$}");
    }
    println!();
}
