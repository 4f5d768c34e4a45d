//! `ccsync doctor`: check everything that sync depends on and say how to fix what is wrong.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::Env;
use crate::catalog;
use crate::clock;
use crate::config::shared;
use crate::paths::coverage::{Coverage, suggest_name};
use crate::store::{self, Store};

struct Report {
    failures: usize,
    warnings: usize,
}

impl Report {
    fn ok(&self, what: &str) {
        println!("ok    {what}");
    }
    fn warn(&mut self, what: &str) {
        self.warnings += 1;
        println!("warn  {what}");
    }
    fn fail(&mut self, what: &str) {
        self.failures += 1;
        println!("FAIL  {what}");
    }
}

pub fn run(env: &Env) -> Result<ExitCode> {
    let mut r = Report {
        failures: 0,
        warnings: 0,
    };
    match store::git::git_version() {
        Ok((maj, min, text)) if (maj, min) >= (2, 20) => r.ok(&text),
        Ok((_, _, text)) => r.fail(&format!("{text} is too old: install git 2.20 or newer")),
        Err(e) => r.fail(&e.to_string()),
    }
    let claude = std::env::var("CCSYNC_CLAUDE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "claude".into());
    match crate::os::find_in_path(&claude) {
        Some(p) => r.ok(&format!("Claude Code: {}", p.display())),
        None => r.fail(&format!(
            "`{claude}` is not on PATH: install Claude Code, or set CCSYNC_CLAUDE to its path"
        )),
    }
    let config = match env.home.load_config() {
        Ok(Some(c)) => {
            r.ok(&format!("config {}", env.home.config_file().display()));
            c
        }
        Ok(None) => {
            r.fail("this machine is not set up: run `ccsync init`");
            return Ok(finish(&r));
        }
        Err(e) => {
            r.fail(&super::output::error_line(&e));
            return Ok(finish(&r));
        }
    };
    let mapper = match config.mapper() {
        Ok(m) => m,
        Err(e) => {
            r.fail(&format!("placeholders in the config: {e}"));
            return Ok(finish(&r));
        }
    };
    let uses_github = config.github_repo.is_some() || config.remote.contains("github.com");
    if uses_github {
        match store::github::logged_in_user() {
            Ok(u) => r.ok(&format!("gh logged in as {u}")),
            Err(e) => r.fail(&e.to_string()),
        }
    }
    let store = Store::of(&env.home, &config)?;
    let head = match store.fetch(Duration::from_secs(30)) {
        Ok(h) => {
            r.ok(&format!("remote {} is reachable", config.remote));
            h
        }
        Err(e) => {
            r.fail(&format!(
                "{e} (check the URL with `ccsync config show` and your git credentials)"
            ));
            store.known_head()?
        }
    };
    match crate::store::members::marker_encryption(&store, head.as_ref()) {
        Ok(Some(e)) => match store.resolve_seal(head.as_ref()) {
            Ok(()) => r.ok(&format!(
                "the repository is encrypted (key generation {}) and this machine holds its key",
                e.generation
            )),
            Err(err) => r.fail(&super::output::error_line(&err)),
        },
        Ok(None) => r.ok("the repository is not encrypted (`ccsync encrypt` encrypts it)"),
        Err(err) => r.fail(&super::output::error_line(&err)),
    }
    let state = shared::read_shared(&store, head.as_ref()).unwrap_or_default();
    let missing = state.placeholders.missing_for(&config.machine_id);
    let missing_here: Vec<&String> = missing
        .iter()
        .filter(|n| !config.placeholders.contains_key(*n))
        .collect();
    if missing_here.is_empty() {
        r.ok(&format!(
            "every placeholder has a path on {}",
            config.machine_id
        ));
    } else {
        for n in missing_here {
            r.fail(&format!("placeholder {n} has no path on this machine: ccsync config add-placeholder {n}=PATH"));
        }
    }
    for (m, _) in state
        .machines
        .iter()
        .filter(|(m, _)| **m != config.machine_id)
    {
        let lacks = state.placeholders.missing_for(m);
        if !lacks.is_empty() {
            r.warn(&format!(
                "machine {m} has no path for {}: ccsync config set-path NAME {m} PATH",
                lacks.join(", ")
            ));
        }
    }
    check_clock(&mut r, &store, &config, head.as_ref(), &state);
    // Sessions Claude Code would not find: not in the folder it looks in, or in two.
    let engine = crate::sync::Engine::new(&env.claude, &env.home, &config)?;
    let snap = crate::sync::snapshot::Snapshot::load(&store, head.as_ref())?;
    let disc = crate::claude::discover::discover(&env.claude)
        .with_context(|| format!("cannot list {}", env.claude.projects().display()))?;
    let index = crate::sync::state::Index::load(&env.home, &config.remote);
    let moves =
        crate::sync::pull::plan_moves(&engine, &snap, &disc, &index, true, &mut store.reader()?)?;
    if moves.is_empty() {
        r.ok("every synced session is in the folder Claude Code looks in");
    } else {
        r.warn(&format!(
            "{} session(s) are not where Claude Code looks for them; `ccsync pull` moves them:",
            moves.len()
        ));
        for m in moves.iter().take(5) {
            for from in &m.from {
                println!("        {}  →  {}", from.display(), m.to.display());
            }
        }
    }
    for (name, path) in &config.placeholders {
        let real = crate::claude::naming::client_path(path);
        if real != *path {
            r.ok(&format!(
                "{name}={path} is a symbolic link: Claude Code records {real}; both spellings are mapped"
            ));
        }
    }
    drop(store);

    // Absolute paths in recent sessions that no placeholder covers.
    let cat = catalog::load(
        &env.claude,
        Some(&env.home.state_dir().join("catalog.json")),
    )?;
    let mut recent: Vec<&catalog::Entry> = cat.entries.iter().collect();
    recent.sort_by_key(|e| std::cmp::Reverse(e.session.mtime_ns));
    let mut cov = Coverage::default();
    for e in recent.iter().take(20) {
        if let Ok(bytes) = catalog::read_head(&e.session.transcript, 8 << 20) {
            cov.feed(&mapper, &bytes);
        }
    }
    let top = cov.top(5);
    if top.is_empty() {
        r.ok("recent sessions use no paths outside the placeholders");
    } else {
        r.warn("recent sessions use paths no placeholder covers (they stay as they are on other machines):");
        for (prefix, n) in top {
            println!(
                "        {prefix} ({n}×): ccsync config add-placeholder {}={prefix}",
                suggest_name(&prefix)
            );
        }
    }
    Ok(finish(&r))
}

/// Clocks that disagree by more than this are reported.
const CLOCK_SLACK_SECS: i64 = 120;

/// Is this machine's clock off? Locks do not depend on it (their expiry is judged by how long
/// this machine has seen a lock unchanged), but ages, orderings and the times in the repository
/// do. The check must not take any one other machine's clock for the truth — the newest commit
/// may come from the machine whose clock is wrong — so it uses, in this order:
///
/// 1. the remote's own clock, when the remote is a path: ccsync writes a small file there and
///    reads back the modification time that the file system's host gave it (for a network
///    share, the file server's clock; for a local disk, this machine's own, which is then
///    trivially right);
/// 2. otherwise (a network remote tells git nothing of its time), what the order of the
///    repository's linear history proves about the machines' clocks ([`clock::skew_from_history`]),
///    and this machine is told its clock is off only when two or more other machines agree.
fn check_clock(
    r: &mut Report,
    store: &Store,
    config: &crate::config::Config,
    head: Option<&store::Oid>,
    state: &shared::Shared,
) {
    if store::is_local_remote(&config.remote) {
        match remote_host_time(&config.remote) {
            Ok(host) => {
                let off = clock::now() - host;
                let secs = off.num_seconds();
                if secs.abs() > CLOCK_SLACK_SECS {
                    r.warn(&format!(
                        "this machine's clock is {} {} the clock of the file system that holds the remote ({}): set the clock right (turn on network time)",
                        about(secs.abs()),
                        if secs > 0 { "ahead of" } else { "behind" },
                        config.remote
                    ));
                } else {
                    r.ok("this machine's clock agrees with the remote's file system");
                }
                return;
            }
            Err(e) => tracing::debug!("no clock reading from the remote's file system: {e:#}"),
        }
    }
    let Some(h) = head else { return };
    let Ok(log) = store.git.run([
        "log",
        "--first-parent",
        "-n",
        "300",
        "--format=%ae %ct",
        &h.0,
    ]) else {
        return;
    };
    // Commits by registered machines, oldest first (others — a person, a migration — are
    // skipped).
    let mut commits: Vec<(String, i64)> = log
        .lines()
        .filter_map(|l| {
            let (who, t) = l.split_once(' ')?;
            let m = who.strip_suffix("@ccsync")?;
            let t = t.trim().parse::<i64>().ok()?;
            (m == config.machine_id || state.machines.contains_key(m)).then(|| (m.to_string(), t))
        })
        .collect();
    commits.reverse();
    let skew = clock::skew_from_history(&config.machine_id, &commits, clock::now().timestamp());
    match clock::judge_skew(&skew, CLOCK_SLACK_SECS) {
        clock::ClockVerdict::Fine => {
            r.ok("no other machine's commits contradict this machine's clock")
        }
        clock::ClockVerdict::Behind { secs, machines } => r.warn(&format!(
            "this machine's clock is at least {} behind those of {} (their commits are stamped later than this machine's present): set the clock right (turn on network time)",
            about(secs),
            machines.join(" and ")
        )),
        clock::ClockVerdict::Ahead { secs, machines } => r.warn(&format!(
            "this machine's clock is at least {} ahead of those of {} (their commits made after this machine's are stamped earlier): set the clock right (turn on network time)",
            about(secs),
            machines.join(" and ")
        )),
        clock::ClockVerdict::Unsure {
            machine,
            secs,
            ahead,
        } => println!(
            "note  machine {machine}'s clock is at least {} {} this machine's; with no third machine to agree, ccsync cannot tell which is wrong (ccsync doctor on {machine}, or compare both with a time server)",
            about(secs),
            if ahead { "ahead of" } else { "behind" }
        ),
    }
}

/// "10 min" (to the nearest minute past two), "45 s".
fn about(secs: i64) -> String {
    if secs >= 120 {
        format!("{} min", (secs + 30) / 60)
    } else {
        format!("{secs} s")
    }
}

/// The time the file system holding a local remote gives a file written there now.
fn remote_host_time(remote: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    let dir = store::local_remote_path(remote);
    // A non-bare repository: write inside its .git, not into the user's working tree.
    let dir = if dir.join(".git").is_dir() {
        dir.join(".git")
    } else {
        dir
    };
    let probe = dir.join(format!("ccsync-clock-probe-{}.tmp", std::process::id()));
    std::fs::write(&probe, b"ccsync doctor: clock probe\n")
        .with_context(|| format!("cannot write {}", probe.display()))?;
    let modified = std::fs::metadata(&probe).and_then(|m| m.modified());
    let _ = std::fs::remove_file(&probe);
    let modified =
        modified.with_context(|| format!("cannot read the time of {}", probe.display()))?;
    Ok(chrono::DateTime::<chrono::Utc>::from(modified))
}

fn finish(r: &Report) -> ExitCode {
    if r.failures > 0 {
        println!("{} problem(s), {} warning(s).", r.failures, r.warnings);
        ExitCode::from(1)
    } else {
        println!("All good ({} warning(s)).", r.warnings);
        ExitCode::SUCCESS
    }
}
