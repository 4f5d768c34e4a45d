//! `ccsync relocate OLD NEW [--dry-run]`: a project directory moved or was renamed.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Env;
use crate::sync::{self, Engine};

#[derive(Debug, Args)]
pub struct RelocateArgs {
    /// Where the project was (`~` is expanded).
    old: String,
    /// Where it is now.
    new: String,
    /// Say what would move, move nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(env: &Env, args: RelocateArgs) -> Result<ExitCode> {
    let config = env.home.require_config()?;
    let engine = Engine::new(&env.claude, &env.home, &config)?;
    let home = config.placeholders.get("HOME").cloned();
    let expand = |p: &str, what: &str| {
        crate::config::setup::normalize_for(config.path_style, what, p, home.as_deref())
    };
    let (old, new) = (expand(&args.old, "OLD")?, expand(&args.new, "NEW")?);
    // Bring what other machines have of this project first, so that it moves too.
    if !args.dry_run
        && let Err(e) = sync::pull(&engine, &sync::PullOptions::default())
    {
        eprintln!(
            "warning: could not pull first ({}); moving what this machine has",
            crate::cli::output::error_line(&e)
        );
    }
    let r = sync::relocate::relocate(&engine, &old, &new, args.dry_run)?;
    let verb = if args.dry_run { "Would move" } else { "Moved" };
    println!(
        "{verb} {} session(s), {} memory file(s) and {} history entr{} from {old} to {new}.",
        r.sessions.len(),
        r.memory.len(),
        r.history_entries,
        if r.history_entries == 1 { "y" } else { "ies" }
    );
    if !r.live.is_empty() {
        println!(
            "Not moved (open in a running Claude Code; exit it and run this again): {}",
            r.live.join(", ")
        );
    }
    if args.dry_run || r.sessions.is_empty() && r.memory.is_empty() && r.history_entries == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let p = sync::push(&engine, &sync::PushOptions::default())?;
    if let Some(c) = p.commit {
        println!(
            "Pushed in one commit ({}): every machine places them under its own path for {new} at its next pull.",
            &c[..c.len().min(10)]
        );
    }
    Ok(ExitCode::SUCCESS)
}
