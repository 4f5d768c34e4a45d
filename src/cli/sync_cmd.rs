//! `ccsync push`, `pull` and `sync`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::output::{TtyProgress, print_json};
use super::{Env, TextFormat};
use crate::config::Config;
use crate::config::setup::{self, InitOptions, NoPrompt};
use crate::sync::{self, Engine, PullOptions, PullReport, PushOptions, PushReport};
use crate::util::{human_size, short_id};

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Say what would be sent, send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also sessions outside the sync directories.
    #[arg(long)]
    all: bool,
    #[arg(long, value_enum, default_value_t = TextFormat::Text)]
    format: TextFormat,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Say what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Merge every session again and bring back sessions deleted here (never drops local lines).
    #[arg(long)]
    force: bool,
    /// Also sessions outside the sync directories.
    #[arg(long)]
    all: bool,
    #[arg(long, value_enum, default_value_t = TextFormat::Text)]
    format: TextFormat,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Also sessions outside the sync directories.
    #[arg(long)]
    all: bool,
    #[arg(long, value_enum, default_value_t = TextFormat::Text)]
    format: TextFormat,
}

/// The configuration, setting this machine up on the local default first if it never was.
pub fn config_or_first_run(env: &Env) -> Result<Config> {
    if let Some(c) = env.config()? {
        return Ok(c);
    }
    let report = setup::init(&env.home, InitOptions::default(), &mut NoPrompt)?;
    let c = report.config;
    eprintln!(
        "This machine was not set up yet: registered it as {} with a local sync repository at {}.",
        c.machine_id, c.remote
    );
    eprintln!(
        "To sync with other machines: ccsync config set-remote <git URL>  (or: ccsync init --github REPO)"
    );
    Ok(c)
}

pub fn push(env: &Env, args: PushArgs) -> Result<ExitCode> {
    let config = config_or_first_run(env)?;
    let progress = TtyProgress::new(env.quiet);
    let mut engine = Engine::new(&env.claude, &env.home, &config)?;
    engine.progress = Some(&progress);
    let report = sync::push(
        &engine,
        &PushOptions {
            dry_run: args.dry_run,
            all: args.all,
            ..PushOptions::default()
        },
    )?;
    if let Some(lost) = &report.remote_lost {
        warn_lost(
            lost,
            if args.dry_run {
                Repair::DryRun
            } else {
                Repair::Pushed
            },
        );
    }
    if args.format == TextFormat::Json {
        print_json(&report)?;
    } else {
        print_push(&report);
    }
    Ok(push_code(&report))
}

pub fn pull(env: &Env, args: PullArgs) -> Result<ExitCode> {
    let config = config_or_first_run(env)?;
    let progress = TtyProgress::new(env.quiet);
    let mut engine = Engine::new(&env.claude, &env.home, &config)?;
    engine.progress = Some(&progress);
    let opts = PullOptions {
        dry_run: args.dry_run,
        force: args.force,
        all: args.all,
        ..PullOptions::default()
    };
    let report = sync::pull(&engine, &opts)?;
    if let Some(lost) = &report.remote_lost {
        warn_lost(lost, Repair::PushNeeded);
    }
    if args.format == TextFormat::Json {
        print_json(&report)?;
    } else {
        print_pull(&report);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sync(env: &Env, args: SyncArgs) -> Result<ExitCode> {
    let config = config_or_first_run(env)?;
    let progress = TtyProgress::new(env.quiet);
    let mut engine = Engine::new(&env.claude, &env.home, &config)?;
    engine.progress = Some(&progress);
    let pulled = sync::pull(
        &engine,
        &PullOptions {
            all: args.all,
            ..PullOptions::default()
        },
    )?;
    let pushed = sync::push(
        &engine,
        &PushOptions {
            all: args.all,
            ..PushOptions::default()
        },
    )?;
    if let Some(lost) = pulled.remote_lost.as_ref().or(pushed.remote_lost.as_ref()) {
        warn_lost(lost, Repair::Pushed);
    }
    if args.format == TextFormat::Json {
        print_json(&json!({ "pull": pulled, "push": pushed }))?;
    } else {
        print_pull(&pulled);
        print_push(&pushed);
    }
    Ok(push_code(&pushed))
}

/// What became of a remote that lost data.
#[derive(Clone, Copy)]
enum Repair {
    /// This command sent everything this machine has again.
    Pushed,
    /// A dry run: the push would.
    DryRun,
    /// A pull: the next push will.
    PushNeeded,
}

/// One sentence: what happened to the remote, and that (or how) it is repaired.
fn warn_lost(lost: &str, repair: Repair) {
    let what = match repair {
        Repair::Pushed => "sent everything this machine has again to make it whole",
        Repair::DryRun => "a push (without --dry-run) sends everything this machine has again",
        Repair::PushNeeded => {
            "pulled what it still has; run `ccsync push` (or `ccsync sync`) to send back everything this machine has"
        }
    };
    eprintln!("warning: {lost}: {what}.");
}

fn push_code(r: &PushReport) -> ExitCode {
    if r.blocked.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn sessions(new: usize, updated: usize) -> String {
    let s = |n: usize| if n == 1 { "" } else { "s" };
    match (new, updated) {
        (0, 0) => "no sessions".into(),
        (n, 0) => format!("{n} new session{}", s(n)),
        (0, u) => format!("{u} updated session{}", s(u)),
        (n, u) => format!("{n} new and {u} updated session{}", s(u)),
    }
}

/// ", 3 file(s), 2 history entries" (empty when both are 0).
fn extras(files: usize, history: u64) -> String {
    let mut extra = Vec::new();
    if files > 0 {
        extra.push(format!("{files} file(s)"));
    }
    if history > 0 {
        extra.push(format!("{history} history entries"));
    }
    if extra.is_empty() {
        String::new()
    } else {
        format!(", {}", extra.join(", "))
    }
}

fn print_push(r: &PushReport) {
    let nothing_missing = r.sessions_new + r.sessions_updated + r.files == 0
        && r.history_lines == 0
        && r.blocked.is_empty()
        && r.skipped.is_empty();
    if r.up_to_date {
        println!("Push: everything is up to date ({:.2} s).", r.seconds);
    } else if r.remote_lost.is_some() && nothing_missing && !r.dry_run {
        // Checked line by line against what the remote has now: nothing of this machine's was
        // missing (another machine had sent it back already).
        println!(
            "Push: the sync remote has every line this machine has ({:.2} s).",
            r.seconds
        );
    } else if r.dry_run {
        println!(
            "Push (dry run): would send {}, {} other file(s), about {}.",
            sessions(r.sessions_new, r.sessions_updated),
            r.files,
            human_size(r.bytes)
        );
    } else {
        let extra = extras(r.files, r.history_lines);
        println!(
            "Pushed {} (+{} lines, {}){extra} in {:.2} s.",
            sessions(r.sessions_new, r.sessions_updated),
            r.lines,
            human_size(r.bytes),
            r.seconds
        );
    }
    if !r.branches.is_empty() {
        println!(
            "The conversation had branched here: the other branch is now its own session ({}), so Claude Code shows every turn.",
            r.branches
                .iter()
                .map(|s| short_id(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !r.memory_unplaced.is_empty() {
        eprintln!(
            "warning: memory not synced, nothing tells which directory it belongs to: {} (run Claude Code once in that project, then sync)",
            r.memory_unplaced
                .iter()
                .map(|f| format!("projects/{f}/memory"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !r.secrets.is_empty() {
        let what = if r.blocked.is_empty() {
            "redacted in what was pushed (local files untouched)"
        } else {
            "found"
        };
        println!("Secrets {what}:");
        for s in r.secrets.iter().take(20) {
            println!("  {} in {} line {}", s.kind, s.file, s.line);
        }
        if r.secrets.len() > 20 {
            println!("  … and {} more", r.secrets.len() - 20);
        }
    }
    if !r.blocked.is_empty() {
        eprintln!(
            "error: not pushed because they contain secrets (secret_scan = block): {}. Remove them, or `ccsync config set secret_scan redact`.",
            r.blocked.join(", ")
        );
    }
    print_skipped(&r.skipped);
    for c in &r.conflicts {
        println!("Conflict: both machines changed it; the other version is kept in {c}");
    }
}

fn print_pull(r: &PullReport) {
    if r.up_to_date && r.deferred.is_empty() {
        println!("Pull: everything is up to date ({:.2} s).", r.seconds);
    } else if r.dry_run {
        println!(
            "Pull (dry run): would bring {}, {} file(s).",
            sessions(r.sessions_new, r.sessions_updated),
            r.files
        );
    } else {
        let extra = extras(r.files, r.history_lines);
        println!(
            "Pulled {} (+{} lines){extra} in {:.2} s.",
            sessions(r.sessions_new, r.sessions_updated),
            r.lines,
            r.seconds
        );
    }
    if !r.deferred.is_empty() {
        println!(
            "Deferred (open in a running Claude Code here; pulled once it exits): {}",
            r.deferred
                .iter()
                .map(|s| short_id(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    print_skipped(&r.skipped);
    for c in &r.conflicts {
        println!("Conflict: both machines changed it; the other version is kept in {c}");
    }
    if !r.moved.is_empty() {
        println!(
            "{} {} session(s) into the folder Claude Code looks in: {}",
            if r.dry_run { "Would move" } else { "Moved" },
            r.moved.len(),
            r.moved
                .iter()
                .take(5)
                .map(|s| short_id(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !r.branches.is_empty() {
        println!(
            "Two machines continued the same conversation: the other branch is now its own session ({}), so Claude Code shows every turn.",
            r.branches
                .iter()
                .map(|s| short_id(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !r.refused.is_empty() {
        eprintln!(
            "warning: refused {} entr{} of the sync repository:",
            r.refused.len(),
            if r.refused.len() == 1 { "y" } else { "ies" }
        );
        for f in r.refused.iter().take(10) {
            eprintln!("  {}: {}", f.path, f.reason);
        }
    }
}

/// Skipped sessions grouped by reason: ids for a few, a count for many.
fn print_skipped(skipped: &[sync::push::Skipped]) {
    let mut by_reason: std::collections::BTreeMap<&str, Vec<String>> =
        std::collections::BTreeMap::new();
    for s in skipped {
        by_reason
            .entry(s.reason.as_str())
            .or_default()
            .push(short_id(&s.session));
    }
    for (reason, ids) in by_reason {
        if ids.len() <= 3 {
            println!("Skipped {}: {reason}", ids.join(", "));
        } else {
            println!("Skipped {} sessions: {reason}", ids.len());
        }
    }
}
