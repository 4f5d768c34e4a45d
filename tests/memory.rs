//! Memory files across machines: nothing lost, whatever the order of edits and syncs.
//!
//! The randomized test drives three simulated machines (the real binary, one local bare
//! remote) with a fixed seed: each round a random machine edits, creates or deletes memory
//! lines and files, and random machines push, pull or sync. After every machine has synced
//! twice, every line any machine wrote and no machine deleted is on every machine (in its file
//! or in a conflict copy), and all machines hold identical memory folders.
//!
//! `CCSYNC_MEMORY_ROUNDS` and `CCSYNC_MEMORY_SEED` change the default run (two fixed seeds, 40
//! rounds each); the ignored test `memory_random_rounds_long` runs many more rounds over more
//! seeds (`cargo test --test memory -- --ignored`; `CCSYNC_MEMORY_RUNS` seeds from
//! `CCSYNC_MEMORY_SEED`, default 8 from 100, of `CCSYNC_MEMORY_ROUNDS`, default 150, rounds).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;

/// A small deterministic generator (xorshift64*), so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const NAMES: &[&str] = &[
    "MEMORY.md",
    "build.md",
    "style.md",
    "people.md",
    "topics/db.md",
];

const MEM_SID: &str = "3e300000-0000-4000-8000-00000000000a";

struct Node {
    m: Machine,
    memory: PathBuf,
    /// Files deleted here since this machine last pushed (kept under the mass-deletion bound).
    deleted_since_push: usize,
}

struct Sim {
    _w: World,
    nodes: Vec<Node>,
    next_token: u64,
    written: BTreeSet<String>,
    deleted: BTreeSet<String>,
    log: Vec<String>,
}

fn cwd_of(m: &Machine) -> String {
    format!("{}/projects/app", m.home.display())
}

/// The memory files of a folder (relative path → text).
fn memory_files(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The tokens (`[t17]`) of a text.
fn tokens(text: &str) -> Vec<String> {
    text.split('[')
        .skip(1)
        .filter_map(|s| s.split_once(']').map(|(t, _)| format!("[{t}]")))
        .collect()
}

impl Sim {
    fn new(n: usize) -> Sim {
        let w = World::new();
        let remote = w.path().join("sync.git");
        let names = ["a", "b", "c", "d", "e"];
        let mut nodes = Vec::new();
        for name in names.iter().take(n) {
            let m = w.machine(name);
            let projects = format!("{}/projects", m.home.display());
            m.init(
                &remote,
                &[
                    "--add-placeholder",
                    &format!("PROJECTS={projects}"),
                    "--sync-dir",
                    "~",
                ],
            );
            let memory = m
                .claude
                .join("projects")
                .join(enc(&cwd_of(&m)))
                .join("memory");
            nodes.push(Node {
                m,
                memory,
                deleted_since_push: 0,
            });
        }
        let mut sim = Sim {
            _w: w,
            nodes,
            next_token: 0,
            written: BTreeSet::new(),
            deleted: BTreeSet::new(),
            log: Vec::new(),
        };
        // One session on the first machine tells every machine where the memory goes.
        let first = &sim.nodes[0].m;
        let cwd = cwd_of(first);
        first.write_transcript(
            &cwd,
            MEM_SID,
            conversation(MEM_SID, &cwd, "/", 2, 0).as_bytes(),
        );
        let t0 = sim.token();
        let t1 = sim.token();
        std::fs::create_dir_all(&sim.nodes[0].memory).unwrap();
        std::fs::write(
            sim.nodes[0].memory.join("MEMORY.md"),
            format!("# Memory\n- {t0} from a\n- {t1} from a\n"),
        )
        .unwrap();
        sim.nodes[0].m.ok(&["push"]);
        for n in &sim.nodes[1..] {
            n.m.ok(&["pull"]);
            assert!(
                n.memory.join("MEMORY.md").exists(),
                "memory placed on {}",
                n.m.name
            );
        }
        sim
    }

    fn token(&mut self) -> String {
        self.next_token += 1;
        let t = format!("[t{}]", self.next_token);
        self.written.insert(t.clone());
        t
    }

    fn run(&mut self, i: usize, what: &str) {
        let n = &mut self.nodes[i];
        let out = n.m.run(&[what]);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        self.log
            .push(format!("{} {what}: {}", n.m.name, text.trim()));
        assert!(
            out.status.success(),
            "{what} failed on {}:\n{text}\nlog:\n{}",
            n.m.name,
            self.log.join("\n")
        );
        if what != "pull" {
            n.deleted_since_push = 0;
        }
    }

    /// One local change on machine `i`.
    fn change(&mut self, rng: &mut Rng, i: usize) {
        let dir = self.nodes[i].memory.clone();
        let name = self.nodes[i].m.name.clone();
        let present: Vec<String> = memory_files(&dir).into_keys().collect();
        let op = rng.below(100);
        if present.is_empty() || op < 12 {
            // Create a file (perhaps one another machine also created, or deleted here).
            let absent: Vec<&str> = NAMES
                .iter()
                .copied()
                .filter(|n| !present.iter().any(|p| p == n))
                .collect();
            if absent.is_empty() {
                return;
            }
            let file = *rng.pick(&absent);
            let mut text = format!("# {file}\n");
            for _ in 0..=rng.below(3) {
                text += &format!("- {} from {name}\n", self.token());
            }
            let p = dir.join(file);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &text).unwrap();
            self.log.push(format!("{name} creates {file}: {text:?}"));
            return;
        }
        let file = rng.pick(&present).clone();
        let p = dir.join(&file);
        let text = std::fs::read_to_string(&p).unwrap();
        if op < 18 && self.nodes[i].deleted_since_push < 3 {
            for t in tokens(&text) {
                self.deleted.insert(t);
            }
            std::fs::remove_file(&p).unwrap();
            self.nodes[i].deleted_since_push += 1;
            self.log.push(format!("{name} deletes {file}"));
            return;
        }
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let at = rng.below(lines.len() + 1);
        let what = if op < 60 || lines.is_empty() {
            let t = self.token();
            lines.insert(at, format!("- {t} from {name}"));
            format!("adds {t} at {at}")
        } else {
            let at = at.min(lines.len() - 1);
            for t in tokens(&lines[at]) {
                self.deleted.insert(t);
            }
            if op < 85 {
                let t = self.token();
                let old = std::mem::replace(&mut lines[at], format!("- {t} from {name}"));
                format!("replaces {old:?} by {t}")
            } else {
                format!("removes {:?}", lines.remove(at))
            }
        };
        let mut out = lines.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        std::fs::write(&p, out).unwrap();
        self.log.push(format!("{name} {what} in {file}"));
    }

    /// Every machine syncs twice; returns what is missing or different (empty: all good).
    fn converge_and_check(&mut self) -> Vec<String> {
        for _ in 0..2 {
            for i in 0..self.nodes.len() {
                self.run(i, "sync");
            }
        }
        let mut problems = Vec::new();
        let folders: Vec<BTreeMap<String, String>> =
            self.nodes.iter().map(|n| memory_files(&n.memory)).collect();
        for (n, f) in self.nodes.iter().zip(&folders).skip(1) {
            if *f != folders[0] {
                problems.push(format!(
                    "memory of {} differs from {}:\n{:#?}\nvs\n{:#?}",
                    n.m.name, self.nodes[0].m.name, f, folders[0]
                ));
            }
        }
        for (n, f) in self.nodes.iter().zip(&folders) {
            let have: BTreeSet<String> = f.values().flat_map(|t| tokens(t)).collect();
            let lost: Vec<&String> = self
                .written
                .iter()
                .filter(|t| !self.deleted.contains(*t) && !have.contains(*t))
                .collect();
            if !lost.is_empty() {
                problems.push(format!(
                    "{} lost {} edit(s): {lost:?}",
                    n.m.name,
                    lost.len()
                ));
            }
        }
        problems
    }
}

/// Run `rounds` random rounds on three machines; returns the problems found after convergence.
fn random_run(seed: u64, rounds: usize) -> (Vec<String>, Vec<String>) {
    let mut rng = Rng::new(seed);
    let mut sim = Sim::new(3);
    for _ in 0..rounds {
        for _ in 0..=rng.below(2) {
            let i = rng.below(sim.nodes.len());
            sim.change(&mut rng, i);
        }
        for _ in 0..=rng.below(2) {
            let i = rng.below(sim.nodes.len());
            let what = *rng.pick(&["push", "pull", "sync", "sync"]);
            sim.run(i, what);
        }
    }
    let problems = sim.converge_and_check();
    (problems, sim.log)
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => v.parse().ok(),
            }
        })
        .unwrap_or(default)
}

/// Seeds whose runs lost edits before conflict copies had unique names (each of 40 rounds).
const SEEDS: [u64; 2] = [3, 7];

#[test]
fn memory_random_rounds_lose_nothing() {
    let seeds: Vec<u64> = match std::env::var("CCSYNC_MEMORY_SEED") {
        Ok(_) => vec![env_num("CCSYNC_MEMORY_SEED", SEEDS[0])],
        Err(_) => SEEDS.to_vec(),
    };
    let rounds = env_num("CCSYNC_MEMORY_ROUNDS", 40) as usize;
    for seed in seeds {
        let (problems, log) = random_run(seed, rounds);
        assert!(
            problems.is_empty(),
            "seed {seed}, {rounds} rounds:\n{}\n\nlog:\n{}",
            problems.join("\n"),
            log.join("\n")
        );
    }
}

/// The long run: `cargo test --test memory -- --ignored` (several seeds, many rounds).
#[test]
#[ignore]
fn memory_random_rounds_long() {
    let rounds = env_num("CCSYNC_MEMORY_ROUNDS", 150) as usize;
    let runs = env_num("CCSYNC_MEMORY_RUNS", 8);
    let mut failed = Vec::new();
    let first = env_num("CCSYNC_MEMORY_SEED", 100);
    for seed in first..first + runs {
        let (problems, _) = random_run(seed, rounds);
        if !problems.is_empty() {
            failed.push(format!("seed {seed}:\n{}", problems.join("\n")));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// Deletions and conflict copies, end to end.

const SID: &str = "3e300000-0000-4000-8000-00000000000b";

/// A machine on `remote` with PROJECTS at `~/projects`, syncing everything under HOME.
fn machine(w: &World, name: &str, remote: &Path) -> Machine {
    let m = w.machine(name);
    let projects = format!("{}/projects", m.home.display());
    m.init(
        remote,
        &[
            "--add-placeholder",
            &format!("PROJECTS={projects}"),
            "--sync-dir",
            "~",
        ],
    );
    m
}

fn project(m: &Machine) -> PathBuf {
    m.claude.join("projects").join(enc(&cwd_of(m)))
}

/// A session with a subagent (and its meta file), a tool result, `memory` files, a plan and
/// CLAUDE.md.
fn seed(m: &Machine, memory: &[&str]) {
    let cwd = cwd_of(m);
    let f = project(m);
    m.write_transcript(&cwd, SID, conversation(SID, &cwd, "/", 2, 0).as_bytes());
    let sub = f.join(SID).join("subagents");
    std::fs::create_dir_all(&sub).unwrap();
    let line = user_line(SID, &cwd, "sa1", None, &ts_at(1), "look around");
    std::fs::write(sub.join("agent-a1.jsonl"), line + "\n").unwrap();
    std::fs::write(
        sub.join("agent-a1.meta.json"),
        r#"{"agentType":"general-purpose","description":"look around"}"#,
    )
    .unwrap();
    let tr = f.join(SID).join("tool-results");
    std::fs::create_dir_all(&tr).unwrap();
    std::fs::write(tr.join("t1.txt"), "tool output\n").unwrap();
    let mem = f.join("memory");
    std::fs::create_dir_all(&mem).unwrap();
    for name in memory {
        std::fs::write(mem.join(name), format!("# {name}\n- remember {name}\n")).unwrap();
    }
    std::fs::create_dir_all(m.claude.join("plans")).unwrap();
    std::fs::write(m.claude.join("plans/next.md"), "# Plan\n1. ship\n").unwrap();
    std::fs::write(m.claude.join("CLAUDE.md"), "Be brief.\n").unwrap();
}

/// Every file under the Claude Code dir that ccsync syncs (relative path → bytes).
fn synced_files(m: &Machine) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&m.claude, &m.claude, &mut out);
    out.retain(|k, _| {
        k.starts_with("projects/") || k.starts_with("plans/") || k.starts_with("CLAUDE")
    });
    out
}

fn repo_memory(remote: &Path) -> Vec<String> {
    repo_paths(remote)
        .into_iter()
        .filter(|p| p.contains("/memory/"))
        .collect()
}

#[test]
fn a_local_wipe_deletes_nothing_and_pull_force_brings_everything_back() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    seed(&a, &["MEMORY.md", "build.md", "people.md"]);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    let before = synced_files(&b);
    assert!(before.keys().any(|k| k.ends_with("memory/people.md")));
    assert!(before.keys().any(|k| k.ends_with("agent-a1.meta.json")));
    assert!(before.keys().any(|k| k.ends_with("tool-results/t1.txt")));
    let stored = repo_memory(&remote);
    assert_eq!(stored.len(), 3, "{stored:?}");

    // B's projects folder is emptied (reinstall, clean-up, purge): nothing leaves the repository.
    std::fs::remove_dir_all(b.claude.join("projects")).unwrap();
    let out = b.run(&["push"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("kept 3 file(s)"), "{err}");
    assert!(err.contains("the projects folder is gone"), "{err}");
    assert!(err.contains("ccsync pull --force"), "{err}");
    assert!(err.contains("ccsync push --allow-deletions"), "{err}");
    assert_eq!(
        repo_memory(&remote),
        stored,
        "the repository keeps the memory"
    );
    b.ok(&["sync"]);
    assert_eq!(repo_memory(&remote), stored);

    // A's next pull keeps A's memory.
    a.ok(&["pull"]);
    for name in ["MEMORY.md", "build.md", "people.md"] {
        assert!(
            project(&a).join("memory").join(name).exists(),
            "{name} on A"
        );
    }

    // Claude Code runs again on B: a new session in the project, no memory folder yet.
    let cwd = cwd_of(&b);
    let sid2 = "3e300000-0000-4000-8000-00000000000c";
    b.write_transcript(&cwd, sid2, conversation(sid2, &cwd, "/", 1, 10).as_bytes());
    let out = b.run(&["push"]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.contains("kept 3 file(s)"), "{err}");
    assert!(err.contains("its memory folder is gone"), "{err}");
    assert_eq!(repo_memory(&remote), stored);

    // A normal pull says what is missing here, and brings nothing back.
    let out = b.ok(&["pull"]);
    assert!(
        out.contains("deleted here are still in the sync repository"),
        "{out}"
    );
    assert!(out.contains("pull --force"), "{out}");
    assert!(!project(&b).join("memory").exists());

    // pull --force brings back every kind of file.
    b.ok(&["pull", "--force"]);
    let after = synced_files(&b);
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "{k} is back on B");
    }
    let out = b.ok(&["pull"]);
    assert!(!out.contains("deleted here"), "{out}");
    let out = b.ok(&["push"]);
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(repo_memory(&remote), stored);
}

#[test]
fn a_big_deletion_is_held_back_until_allowed() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    let names = ["MEMORY.md", "a.md", "b.md", "c.md", "d.md", "e.md"];
    seed(&a, &names);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    let mem_a = project(&a).join("memory");
    for n in &names[1..] {
        std::fs::remove_file(mem_a.join(n)).unwrap();
    }
    let out = a.run(&["push"]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.contains("kept 5 file(s)"), "{err}");
    assert!(err.contains("5 of its 6 files are gone at once"), "{err}");
    assert_eq!(repo_memory(&remote).len(), 6, "nothing deleted");
    let out = a.ok(&["pull"]);
    assert!(out.contains("5 file(s) deleted here"), "{out}");
    assert!(
        !mem_a.join("a.md").exists(),
        "a normal pull brings nothing back"
    );

    let out = a.ok(&["push", "--allow-deletions"]);
    assert!(out.contains("Deleted from the sync repository"), "{out}");
    let left = repo_memory(&remote);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with("memory/MEMORY.md"));
    b.ok(&["pull"]);
    let mem_b: Vec<String> = memory_files(&project(&b).join("memory"))
        .into_keys()
        .collect();
    assert_eq!(mem_b, ["MEMORY.md"]);
    let out = a.ok(&["pull"]);
    assert!(!out.contains("deleted here"), "{out}");
}

#[test]
fn a_single_deliberate_deletion_propagates() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    seed(&a, &["MEMORY.md", "build.md", "people.md"]);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    let mem_b = project(&b).join("memory");
    std::fs::remove_file(mem_b.join("build.md")).unwrap();
    std::fs::remove_file(b.claude.join("plans/next.md")).unwrap();
    // Until it is pushed, a pull says the files are still in the repository.
    let out = b.ok(&["pull"]);
    assert!(out.contains("2 file(s) deleted here"), "{out}");
    let out = b.ok(&["push"]);
    assert!(out.contains("Deleted from the sync repository"), "{out}");
    assert!(!stderr(&b.run(&["push"])).contains("kept"));
    let paths = repo_paths(&remote);
    assert!(
        !paths.iter().any(|p| p.ends_with("memory/build.md")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.ends_with("plans/next.md")),
        "{paths:?}"
    );
    assert!(paths.iter().any(|p| p.ends_with("memory/people.md")));
    a.ok(&["pull"]);
    assert!(!project(&a).join("memory/build.md").exists());
    assert!(!a.claude.join("plans/next.md").exists());
    assert!(project(&a).join("memory/people.md").exists());

    // Through `sync` too, reported once (as deleted, not as missing).
    std::fs::remove_file(project(&a).join("memory/people.md")).unwrap();
    let out = a.ok(&["sync"]);
    assert!(out.contains("Deleted from the sync repository"), "{out}");
    assert!(!out.contains("deleted here are still"), "{out}");
    b.ok(&["pull"]);
    assert!(!mem_b.join("people.md").exists());
    assert!(mem_b.join("MEMORY.md").exists());
}

/// The conflict copies in a memory folder (name → text).
fn copies(dir: &Path) -> BTreeMap<String, String> {
    memory_files(dir)
        .into_iter()
        .filter(|(k, _)| k.contains(".conflict-"))
        .collect()
}

/// `MEMORY.conflict-<machine>-<yyyymmddThhmmss>-<hex>.md` → (machine, time).
fn copy_parts(name: &str) -> (String, String) {
    let rest = name
        .strip_prefix("MEMORY.conflict-")
        .and_then(|r| r.strip_suffix(".md"))
        .unwrap_or_else(|| panic!("not a conflict copy of MEMORY.md: {name}"));
    let parts: Vec<&str> = rest.rsplitn(3, '-').collect();
    assert_eq!(parts.len(), 3, "{name}");
    assert_eq!(parts[0].len(), 6, "{name}");
    assert!(parts[0].bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    assert_eq!(parts[1].len(), 15, "{name}");
    (parts[2].to_string(), parts[1].to_string())
}

#[test]
fn conflict_copies_made_in_the_same_second_are_all_kept() {
    // Two machines make a conflict copy of the same file at once; the scenario runs again in
    // the rare case their copies fall in different seconds.
    for attempt in 0..5 {
        let w = World::new();
        let remote = w.path().join("sync.git");
        let ms: Vec<Machine> = ["a", "b", "c"]
            .iter()
            .map(|n| machine(&w, n, &remote))
            .collect();
        let (a, b, c) = (&ms[0], &ms[1], &ms[2]);
        seed(a, &["MEMORY.md"]);
        std::fs::write(project(a).join("memory/MEMORY.md"), "# Memory\nline\n").unwrap();
        a.ok(&["push"]);
        b.ok(&["pull"]);
        c.ok(&["pull"]);
        let mem = |m: &Machine| project(m).join("memory");
        for m in [a, b, c] {
            std::fs::write(
                mem(m).join("MEMORY.md"),
                format!("# Memory\nline from {}\n", m.name),
            )
            .unwrap();
        }
        c.ok(&["push"]);
        // A and B both meet C's version: each keeps its own and a copy of C's.
        let out_a = a.ok(&["pull"]);
        let out_b = b.ok(&["pull"]);
        assert!(out_a.contains("Conflict") && out_b.contains("Conflict"));
        let (ca, cb) = (copies(&mem(a)), copies(&mem(b)));
        assert_eq!((ca.len(), cb.len()), (1, 1), "{ca:?} {cb:?}");
        let (na, nb) = (
            ca.keys().next().unwrap().clone(),
            cb.keys().next().unwrap().clone(),
        );
        let ((ma, ta), (mb, tb)) = (copy_parts(&na), copy_parts(&nb));
        assert_eq!((ma.as_str(), mb.as_str()), ("a", "b"));
        assert_eq!(ca[&na], "# Memory\nline from c\n");
        assert_eq!(cb[&nb], "# Memory\nline from c\n");
        if ta != tb && attempt < 4 {
            continue;
        }
        assert_ne!(na, nb, "copies made at once have different names");
        a.ok(&["push"]);
        b.ok(&["push"]);
        for _ in 0..2 {
            for m in [a, b, c] {
                m.ok(&["sync"]);
            }
        }
        let folders: Vec<BTreeMap<String, String>> =
            [a, b, c].iter().map(|m| memory_files(&mem(m))).collect();
        assert_eq!(folders[0], folders[1]);
        assert_eq!(folders[0], folders[2]);
        let f = &folders[0];
        assert!(f.contains_key(&na) && f.contains_key(&nb), "{f:#?}");
        for who in ["a", "b", "c"] {
            let want = format!("line from {who}\n");
            assert!(
                f.values().any(|t| t.ends_with(&want)),
                "{who}'s version: {f:#?}"
            );
        }
        return;
    }
}

#[test]
fn memory_written_anew_after_a_wipe_keeps_the_old_version_beside_it() {
    // Claude Code writes the new MEMORY.md before B's first push after the wipe, or after it.
    for push_between in [false, true] {
        let w = World::new();
        let remote = w.path().join("sync.git");
        let a = machine(&w, "a", &remote);
        let b = machine(&w, "b", &remote);
        seed(&a, &["MEMORY.md", "build.md"]);
        a.ok(&["push"]);
        b.ok(&["pull"]);
        let old = std::fs::read_to_string(project(&a).join("memory/MEMORY.md")).unwrap();
        // B is reinstalled; Claude Code starts a new session and writes a fresh MEMORY.md.
        std::fs::remove_dir_all(b.claude.join("projects")).unwrap();
        let cwd = cwd_of(&b);
        let sid2 = "3e300000-0000-4000-8000-00000000000d";
        b.write_transcript(&cwd, sid2, conversation(sid2, &cwd, "/", 1, 10).as_bytes());
        if push_between {
            let err = stderr(&b.run(&["push"]));
            assert!(err.contains("kept 2 file(s)"), "{err}");
            assert!(err.contains("its memory folder is gone"), "{err}");
        }
        std::fs::create_dir_all(project(&b).join("memory")).unwrap();
        std::fs::write(project(&b).join("memory/MEMORY.md"), "# Memory\n- fresh\n").unwrap();
        let out = b.run(&["push"]);
        assert!(out.status.success());
        let err = stderr(&out);
        assert!(err.contains("kept 1 file(s)"), "{err}");
        if !push_between {
            assert!(
                err.contains("sessions of that project are gone too"),
                "{err}"
            );
        }
        for m in [&a, &b, &a, &b] {
            let err = stderr(&m.run(&["sync"]));
            if m.name == "b" {
                assert!(err.contains("kept 1 file(s)"), "{err}");
            }
        }
        // Both versions are on both machines, and build.md was not deleted from A.
        let mem_a = memory_files(&project(&a).join("memory"));
        assert!(mem_a.contains_key("build.md"), "{mem_a:#?}");
        assert!(mem_a.values().any(|t| *t == old), "{mem_a:#?}");
        assert!(
            mem_a.values().any(|t| t == "# Memory\n- fresh\n"),
            "{mem_a:#?}"
        );
        let mut mem_b = memory_files(&project(&b).join("memory"));
        assert!(!mem_b.contains_key("build.md"));
        b.ok(&["pull", "--force"]);
        mem_b = memory_files(&project(&b).join("memory"));
        assert_eq!(mem_a, mem_b);
        assert!(!stderr(&b.run(&["push"])).contains("kept"));
    }
}

#[test]
fn conflict_copies_of_claude_md_and_plans_sync_too() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    seed(&a, &["MEMORY.md"]);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    for m in [&a, &b] {
        std::fs::write(
            m.claude.join("CLAUDE.md"),
            format!("Be brief, says {}.\n", m.name),
        )
        .unwrap();
        std::fs::write(
            m.claude.join("plans/next.md"),
            format!("# Plan\n1. ship from {}\n", m.name),
        )
        .unwrap();
    }
    a.ok(&["push"]);
    let out = b.ok(&["sync"]);
    assert_eq!(out.matches("Conflict").count(), 2, "{out}");
    a.ok(&["sync"]);
    let names = |m: &Machine| -> BTreeMap<String, Vec<u8>> {
        synced_files(m)
            .into_iter()
            .filter(|(k, _)| !k.starts_with("projects/"))
            .collect()
    };
    let (fa, fb) = (names(&a), names(&b));
    assert_eq!(fa, fb);
    assert_eq!(fa.len(), 4, "{:?}", fa.keys());
    assert!(fa.keys().any(|k| k.starts_with("CLAUDE.conflict-b-")));
    assert!(fa.keys().any(|k| k.starts_with("plans/next.conflict-b-")));
    let texts: Vec<String> = fa
        .values()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    for want in ["says a", "says b", "ship from a", "ship from b"] {
        assert!(texts.iter().any(|t| t.contains(want)), "{want}: {texts:?}");
    }
}

#[test]
fn a_wiped_claude_dir_deletes_nothing() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    seed(&a, &["MEMORY.md", "build.md"]);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    let before = synced_files(&b);
    let stored = repo_paths(&remote);
    // Everything Claude Code keeps is gone on B (a reinstall).
    std::fs::remove_dir_all(&b.claude).unwrap();
    std::fs::create_dir_all(&b.claude).unwrap();
    let out = b.run(&["sync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("kept 4 file(s)"), "{err}");
    assert_eq!(
        repo_paths(&remote),
        stored,
        "nothing deleted from the repository"
    );
    a.ok(&["pull"]);
    assert!(a.claude.join("CLAUDE.md").exists());
    assert!(a.claude.join("plans/next.md").exists());
    assert_eq!(memory_files(&project(&a).join("memory")).len(), 2);
    b.ok(&["pull", "--force"]);
    assert_eq!(synced_files(&b), before, "everything is back on B");
}

#[test]
fn a_plan_claude_codes_clean_up_removed_stays_in_the_repository() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    seed(&a, &["MEMORY.md"]);
    let old = a.claude.join("plans/old.md");
    std::fs::write(&old, "# An old plan\n").unwrap();
    let touched = std::process::Command::new("touch")
        .args(["-d", "2020-01-01T00:00:00"])
        .arg(&old)
        .status()
        .unwrap();
    assert!(touched.success());
    a.ok(&["push"]);
    // Claude Code's clean-up deletes it (older than cleanupPeriodDays).
    std::fs::remove_file(&old).unwrap();
    let err = stderr(&a.run(&["push"]));
    assert!(err.contains("kept 1 file(s)"), "{err}");
    assert!(err.contains("clean-up deletes plans that old"), "{err}");
    assert!(
        repo_paths(&remote)
            .iter()
            .any(|p| p.ends_with("plans/old.md"))
    );
    let out = a.ok(&["pull"]);
    assert!(!out.contains("deleted here"), "{out}");
}
