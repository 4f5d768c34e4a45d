//! Memory files across machines: nothing lost, whatever the order of edits and syncs.
//!
//! The randomized test drives three simulated machines (the real binary, one local bare
//! remote) with a fixed seed: each round a random machine edits, creates or deletes memory
//! lines and files, and random machines push, pull or sync. After every machine has synced
//! twice, every line any machine wrote and no machine deleted is on every machine (in its file
//! or in a conflict copy), and all machines hold identical memory folders.
//!
//! `CCSYNC_MEMORY_ROUNDS` and `CCSYNC_MEMORY_SEED` change the default run; the ignored test
//! `memory_random_rounds_long` runs many more rounds over several seeds.

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

const SEED: u64 = 0x5EED_0C0F_FEE5_2026;

#[test]
fn memory_random_rounds_lose_nothing() {
    let seed = env_num("CCSYNC_MEMORY_SEED", SEED);
    let rounds = env_num("CCSYNC_MEMORY_ROUNDS", 40) as usize;
    let (problems, log) = random_run(seed, rounds);
    assert!(
        problems.is_empty(),
        "seed {seed:#x}, {rounds} rounds:\n{}\n\nlog:\n{}",
        problems.join("\n"),
        log.join("\n")
    );
}

/// The long run: `cargo test --test memory -- --ignored` (several seeds, many rounds).
#[test]
#[ignore]
fn memory_random_rounds_long() {
    let rounds = env_num("CCSYNC_MEMORY_ROUNDS", 150) as usize;
    let runs = env_num("CCSYNC_MEMORY_RUNS", 8);
    let mut failed = Vec::new();
    for k in 0..runs {
        let seed = SEED.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (problems, _) = random_run(seed, rounds);
        if !problems.is_empty() {
            failed.push(format!("seed {seed:#x}:\n{}", problems.join("\n")));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
