//! `ccsync setup-hooks [--remove]` and the hook commands Claude Code runs.

use std::io::{Read, Write as _};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

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
    /// Internal: the Claude Code process the session-end worker waits for.
    #[arg(long, hide = true)]
    claude_pid: Option<u32>,
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
    let started = Instant::now();
    let own = env.with_home(args.home.as_deref());
    let env = own.as_ref().unwrap_or(env);
    if let Err(e) = hook_inner(env, &args, started) {
        hooks::log(&env.home, &format!("{:?}: {e:#}", args.event));
    }
    Ok(ExitCode::SUCCESS)
}

fn hook_inner(env: &Env, args: &HookArgs, started: Instant) -> Result<()> {
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
            // The hook's whole run is bounded by hook_timeout_secs: the network steps and the
            // wait for the clone lock end a little before it, and a watchdog ends the process
            // at it whatever is still going on (local work on a huge transcript, say).
            let budget = Duration::from_secs(config.hook_timeout_secs.max(1));
            let work_until = started + budget * 4 / 5;
            crate::store::git::set_deadline(Some(work_until), budget);
            crate::store::set_activity(&format!(
                "the session-start hook of session {}",
                crate::util::short_id(&input.session_id)
            ));
            let said = Arc::new(Mutex::new(false));
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let watchdog = {
                let said = Arc::clone(&said);
                let home = env.home.clone();
                let sid = input.session_id.clone();
                let give_up_at = started + budget * 19 / 20;
                std::thread::spawn(move || {
                    let wait = give_up_at.saturating_duration_since(Instant::now());
                    if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(wait) {
                        give_up(&home, &sid, budget, &said);
                    }
                })
            };
            let engine = Engine::new(&env.claude, &env.home, &config)?;
            let outcome = hooks::session_start(&engine, &input, work_until);
            // Past this point the watchdog stays quiet (it may be printing and ending the
            // process right now: then this waits for that).
            let mut guard = said.lock().unwrap_or_else(|p| p.into_inner());
            *guard = true;
            drop(done_tx);
            let started = outcome?;
            if let Some(msg) = started.message() {
                print_start_message(&msg);
            }
            drop(guard);
            let _ = watchdog.join();
        }
        HookEvent::SessionEnd => {
            let file = hooks::stash_input(&env.home, &data)?;
            let exe = std::env::current_exe().context("cannot find the ccsync executable")?;
            let mut cmd = std::process::Command::new(exe);
            // Claude Code is this hook's parent (the worker's is this hook, soon gone).
            let claude = hooks::claude_pid(&env.claude, &input.session_id);
            cmd.arg("hook")
                .arg("session-end-worker")
                .arg(&file)
                .arg("--home")
                .arg(&env.home.root)
                .arg("--claude-pid")
                .arg(claude.to_string());
            crate::os::spawn_detached(&mut cmd, None)
                .context("cannot start the session-end worker")?;
        }
        HookEvent::SessionEndWorker => {
            let engine = Engine::new(&env.claude, &env.home, &config)?;
            hooks::session_end(&engine, &input, args.claude_pid)?;
        }
    }
    Ok(())
}

/// Claude Code shows a hook's `systemMessage` to the user (plain output it would not). On a
/// resume it drops a hook's output unless some context is new, so the same news also goes to
/// Claude as context, stamped with the time.
fn print_start_message(msg: &str) {
    let context = format!(
        "{msg} (ccsync, {})",
        crate::util::rfc3339(chrono::Utc::now())
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::json!({
            "systemMessage": msg,
            "hookSpecificOutput": {
                "hookEventName": "SessionStart",
                "additionalContext": context,
            },
        })
    );
    let _ = out.flush();
}

/// The session-start hook is out of time: say so, end the git commands it started and leave
/// at once (every local write is atomic and the clone lock goes with the process, so this is
/// as safe as a crash, which ccsync survives). Unless the hook already had its say.
fn give_up(home: &crate::config::Home, sid: &str, budget: Duration, said: &Mutex<bool>) {
    let mut guard = said.lock().unwrap_or_else(|p| p.into_inner());
    if *guard {
        return;
    }
    *guard = true;
    crate::os::end_tracked_groups();
    hooks::log(
        home,
        &format!(
            "session-start {sid}: stopped after {} s (hook_timeout_secs)",
            budget.as_secs()
        ),
    );
    print_start_message(&format!(
        "ccsync did not finish syncing this session within the {} s the hook may take (hook_timeout_secs), so newer turns from other machines may be missing and the session may not be locked (both machines' turns are kept either way, and it is pushed when Claude Code exits; details in {}).",
        budget.as_secs(),
        home.logs_dir().join("hooks.log").display()
    ));
    std::process::exit(0);
}
