//! `ccsync setup-hooks [--remove]` and the hook commands Claude Code runs.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};

use super::Env;
use crate::hooks;
use crate::sync::Engine;

#[derive(Debug, Args)]
pub struct SetupHooksArgs {
    /// Remove the hooks again.
    #[arg(long)]
    remove: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[allow(clippy::enum_variant_names)] // the names are the command-line words
pub enum HookEvent {
    SessionStart,
    SessionEnd,
    /// Internal: the detached half of session-end.
    SessionEndWorker,
}

#[derive(Debug, Args)]
pub struct HookArgs {
    #[arg(value_enum)]
    event: HookEvent,
    /// Internal: the stashed hook input of session-end-worker.
    file: Option<std::path::PathBuf>,
    /// The tool home (the hooks name it when it is not the default one).
    #[arg(long, hide = true)]
    home: Option<std::path::PathBuf>,
}

pub fn setup(env: &Env, args: SetupHooksArgs) -> Result<ExitCode> {
    if args.remove {
        if hooks::uninstall(&env.claude, &env.home)? {
            println!(
                "Removed ccsync's hooks from {}.",
                env.claude.settings().display()
            );
        } else {
            println!(
                "ccsync's hooks were not in {}.",
                env.claude.settings().display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = hooks::install(&env.claude, &env.home)?;
    if r.changed {
        println!(
            "Added SessionStart and SessionEnd hooks to {}.",
            r.settings.display()
        );
        if let Some(b) = r.backup {
            println!("The previous file is kept as {}.", b.display());
        }
        println!(
            "Plain `claude` runs now pull, lock, push and release on their own. `ccsync setup-hooks --remove` undoes it."
        );
    } else {
        println!("ccsync's hooks are already in {}.", r.settings.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A hook never fails Claude Code: whatever happens, exit 0; problems go to the hook log.
pub fn hook(env: &Env, args: HookArgs) -> Result<ExitCode> {
    let own;
    let env = match &args.home {
        Some(h) => {
            own = Env {
                claude: env.claude.clone(),
                home: crate::config::Home::new(h),
                quiet: env.quiet,
            };
            &own
        }
        None => env,
    };
    if let Err(e) = hook_inner(env, &args) {
        hooks::log(&env.home, &format!("{:?}: {e:#}", args.event));
    }
    Ok(ExitCode::SUCCESS)
}

fn hook_inner(env: &Env, args: &HookArgs) -> Result<()> {
    let data = match (&args.event, &args.file) {
        (HookEvent::SessionEndWorker, Some(f)) => {
            let d = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            let _ = std::fs::remove_file(f);
            d
        }
        _ => {
            let mut d = Vec::new();
            std::io::stdin()
                .lock()
                .take(1 << 20)
                .read_to_end(&mut d)
                .context("cannot read the hook input")?;
            d
        }
    };
    let input = hooks::parse_input(&data)?;
    let Some(config) = env.config()? else {
        return Ok(()); // Not set up: nothing to do.
    };
    match args.event {
        HookEvent::SessionStart => {
            let engine = Engine::new(&env.claude, &env.home, &config)?;
            let started = hooks::session_start(&engine, &input)?;
            // Claude Code shows a hook's `systemMessage` to the user (plain output it would
            // not). On a resume it drops a hook's output unless some context is new, so the
            // same news also goes to Claude as context, stamped with the time.
            if let Some(msg) = started.message() {
                let context = format!(
                    "{msg} (ccsync, {})",
                    crate::util::rfc3339(chrono::Utc::now())
                );
                println!(
                    "{}",
                    serde_json::json!({
                        "systemMessage": msg,
                        "hookSpecificOutput": {
                            "hookEventName": "SessionStart",
                            "additionalContext": context,
                        },
                    })
                );
            }
        }
        HookEvent::SessionEnd => {
            let file = hooks::stash_input(&env.home, &data)?;
            let exe = std::env::current_exe().context("cannot find the ccsync executable")?;
            let mut cmd = std::process::Command::new(exe);
            cmd.arg("hook")
                .arg("session-end-worker")
                .arg(&file)
                .arg("--home")
                .arg(&env.home.root);
            crate::os::spawn_detached(&mut cmd, None)
                .context("cannot start the session-end worker")?;
        }
        HookEvent::SessionEndWorker => {
            let engine = Engine::new(&env.claude, &env.home, &config)?;
            hooks::session_end(&engine, &input)?;
        }
    }
    Ok(())
}
