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
    /// Delete from the repository every file deleted here, even many at once or a whole
    /// folder's (which otherwise look like a loss and are kept).
    #[arg(long)]
    allow_deletions: bool,
    #[arg(long, value_enum, default_value_t = TextFormat::Text)]
    format: TextFormat,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Say what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Merge every session again and bring back every file deleted here: sessions, memory,
    /// plans, CLAUDE.md, subagent and tool-result files (never drops local lines).
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
    /// As `push --allow-deletions`.
    #[arg(long)]
    allow_deletions: bool,
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
            allow_deletions: args.allow_deletions,
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
        print_deleted_here(&report.deleted_here);
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
            allow_deletions: args.allow_deletions,
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
        // What the push deleted everywhere, or already reported as held back, is not news.
        let told: std::collections::BTreeSet<&String> = pushed
            .deleted
            .iter()
            .chain(pushed.withheld.iter().flat_map(|w| w.files.iter()))
            .collect();
        let left: Vec<String> = pulled
            .deleted_here
            .iter()
            .filter(|k| !told.contains(k))
            .cloned()
            .collect();
        print_deleted_here(&left);
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
    if r.blocked.is_empty() || r.dry_run {
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
    print_branches(&r.branches);
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
        // Said as it is: what the push did (or would do) with them.
        let what = match (r.secret_scan.as_str(), r.dry_run) {
            ("warn", false) => {
                "found and pushed as they are, NOT redacted (secret_scan = warn; `ccsync config set secret_scan redact` redacts them from the next push on)"
            }
            ("warn", true) => "a push would send as they are, NOT redacted (secret_scan = warn)",
            ("block", false) => "found; what holds them was not pushed (secret_scan = block)",
            ("block", true) => {
                "found; a push would hold back what holds them (secret_scan = block)"
            }
            (_, true) => "a push would redact (local files stay untouched)",
            _ => "redacted in what was pushed (local files untouched)",
        };
        println!("Secrets {what}:");
        for s in r.secrets.iter().take(20) {
            if s.line == 0 {
                println!("  {} in {}", s.kind, s.file);
            } else {
                println!("  {} in {} line {}", s.kind, s.file, s.line);
            }
        }
        if r.secrets.len() > 20 {
            println!("  … and {} more", r.secrets.len() - 20);
        }
    }
    if !r.blocked.is_empty() {
        eprintln!(
            "error: {} because they contain secrets (secret_scan = block): {}. Remove them, or `ccsync config set secret_scan redact`.",
            if r.dry_run {
                "a push would not send these"
            } else {
                "not pushed"
            },
            r.blocked.join(", ")
        );
    }
    print_skipped(&r.skipped);
    if !r.held_back.is_empty() {
        println!(
            "Waiting: the last line of {} is unfinished (no newline yet); it is sent once the file has been quiet for 10 s and no Claude Code has it open.",
            short_ids(&r.held_back)
        );
    }
    print_not_sent(&r.not_sent);
    for c in &r.conflicts {
        println!("Conflict: both machines changed it; the other version is kept in {c}");
    }
    if !r.deleted.is_empty() {
        println!(
            "{} from the sync repository (deleted here): {}",
            if r.dry_run { "Would delete" } else { "Deleted" },
            list_some(&r.deleted)
        );
    }
    print_withheld(&r.withheld);
}

/// A few items, then a count of the rest.
fn list_some(items: &[String]) -> String {
    let mut s = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 5 {
        s += &format!(" and {} more", items.len() - 5);
    }
    s
}

/// One sentence on the deletions a push held back: how many, why, and what to do.
fn print_withheld(withheld: &[sync::push::Withheld]) {
    let n: usize = withheld.iter().map(|w| w.files.len()).sum();
    if n == 0 {
        return;
    }
    let why = withheld
        .iter()
        .take(3)
        .map(|w| {
            let folder = if w.folder.is_empty() {
                "the Claude Code folder"
            } else {
                w.folder.as_str()
            };
            format!("{folder}: {}", w.reason)
        })
        .collect::<Vec<_>>()
        .join("; ");
    let more = if withheld.len() > 3 { "; …" } else { "" };
    eprintln!(
        "warning: kept {n} file(s) in the sync repository that are missing here, because this looks like a loss rather than a deletion ({why}{more}): `ccsync pull --force` brings them back, `ccsync push --allow-deletions` deletes them everywhere."
    );
}

/// Files the repository has that were deleted here (a pull does not bring them back).
fn print_deleted_here(keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    println!(
        "{} file(s) deleted here are still in the sync repository and were not brought back ({}): `ccsync pull --force` brings them back.",
        keys.len(),
        list_some(keys)
    );
}

/// `a1b2c3d4, e5f6a7b8` (at most 5, then a count).
fn short_ids(ids: &[String]) -> String {
    let mut s = ids
        .iter()
        .take(5)
        .map(|s| short_id(s))
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > 5 {
        s.push_str(&format!(" and {} more", ids.len() - 5));
    }
    s
}

/// Local files push left out, grouped by reason.
fn print_not_sent(not_sent: &[sync::push::NotSent]) {
    let mut by_reason: std::collections::BTreeMap<&str, Vec<&str>> =
        std::collections::BTreeMap::new();
    for n in not_sent {
        by_reason
            .entry(n.reason.as_str())
            .or_default()
            .push(n.path.as_str());
    }
    for (reason, paths) in by_reason {
        eprintln!("warning: not sent: {reason}:");
        for p in paths.iter().take(10) {
            eprintln!("  {p}");
        }
        if paths.len() > 10 {
            eprintln!("  … and {} more", paths.len() - 10);
        }
    }
}

fn print_pull(r: &PullReport) {
    if let Some(m) = &r.migrated {
        for line in m.lines() {
            println!("{line}");
        }
        for name in &m.undefined_here {
            println!(
                "  {} of its {} sessions need {name}'s path on this machine: ccsync config add-placeholder {name}=PATH  (then ccsync pull)",
                m.sessions_needing(name),
                m.sessions
            );
        }
    }
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
    print_branches(&r.branches);
    if !r.links.is_empty() {
        eprintln!(
            "warning: not written through symbolic links inside the Claude Code dir (ccsync reads and writes only inside it; put the folder or file itself there to sync it):"
        );
        for l in r.links.iter().take(10) {
            eprintln!("  {l}");
        }
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

/// Sessions written for a branch Claude Code would hide.
fn print_branches(forks: &[String]) {
    if !forks.is_empty() {
        println!(
            "The conversation had branched (two machines continued it apart): the other branch is now its own session ({}), so Claude Code shows every turn.",
            forks
                .iter()
                .map(|s| short_id(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
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
