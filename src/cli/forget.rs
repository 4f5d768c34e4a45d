//! `ccsync forget`: delete sessions from the repository (the archive) on purpose.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Env;
use crate::sync::{self, Engine};

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Session ids (or unique prefixes).
    #[arg(required = true)]
    ids: Vec<String>,
    /// Say what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(env: &Env, args: ForgetArgs) -> Result<ExitCode> {
    let config = env.home.require_config()?;
    let engine = Engine::new(&env.claude, &env.home, &config)?;
    let done = sync::forget(&engine, &args.ids, args.dry_run)?;
    let verb = if args.dry_run {
        "Would delete"
    } else {
        "Deleted"
    };
    for (id, dir) in &done {
        println!("{verb} session {id} from the repository ({dir}).");
    }
    if !args.dry_run {
        println!("Local copies are untouched; the git history keeps what was deleted.");
    }
    Ok(ExitCode::SUCCESS)
}
