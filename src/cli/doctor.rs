//! `ccsync doctor`: check everything that sync depends on and say how to fix what is wrong.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::Env;
use crate::catalog;
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
    if let Some(h) = &head
        && let Ok(t) = store.git.run(["log", "-1", "--format=%ct", &h.0])
        && let Ok(secs) = t.trim().parse::<i64>()
    {
        let ahead = secs - chrono::Utc::now().timestamp();
        if ahead > 300 {
            r.warn(&format!(
                "this machine's clock is {} min behind the newest commit in the repository: fix the clock (locks judge expiry by it)",
                ahead / 60
            ));
        }
    }
    // Sessions Claude Code would not find: not in the folder it looks in, or in two.
    let engine = crate::sync::Engine::new(&env.claude, &env.home, &config)?;
    let snap = crate::sync::snapshot::Snapshot::load(&store, head.as_ref())?;
    let disc = crate::claude::discover::discover(&env.claude)
        .with_context(|| format!("cannot list {}", env.claude.projects().display()))?;
    let index = crate::sync::state::Index::load(&env.home, &config.remote);
    let moves = crate::sync::pull::plan_moves(
        &engine,
        &snap,
        &disc,
        &index,
        true,
        &mut store.git.reader()?,
    )?;
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

fn finish(r: &Report) -> ExitCode {
    if r.failures > 0 {
        println!("{} problem(s), {} warning(s).", r.failures, r.warnings);
        ExitCode::from(1)
    } else {
        println!("All good ({} warning(s)).", r.warnings);
        ExitCode::SUCCESS
    }
}
