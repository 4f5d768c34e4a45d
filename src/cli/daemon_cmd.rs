//! `ccsync daemon`: background sync, and its service files.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use clap::{Args, Subcommand};

use super::output::print_json;
use super::sync_cmd::config_or_first_run;
use super::{Env, TextFormat};
use crate::daemon::{self, Options};
use crate::util::rfc3339;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(subcommand)]
    action: Option<DaemonAction>,
    /// Full sync at least this often, in seconds (default: daemon_interval_secs, 300).
    #[arg(long, value_name = "S")]
    interval: Option<u64>,
    /// Push only; never pull.
    #[arg(long)]
    push_only: bool,
    /// One full cycle, then exit.
    #[arg(long)]
    once: bool,
    /// Stop the running daemon (releasing the locks it keeps).
    #[arg(long, conflicts_with_all = ["status", "detach", "once"])]
    stop: bool,
    /// Show the running daemon: pid, uptime, last push and pull, last error.
    #[arg(long, conflicts_with_all = ["detach", "once"])]
    status: bool,
    /// Run in the background, logging to the tool home's logs/daemon.log.
    #[arg(long)]
    detach: bool,
    /// Output format of --status.
    #[arg(long, value_enum, default_value_t = TextFormat::Text)]
    format: TextFormat,
}

#[derive(Debug, Subcommand)]
enum DaemonAction {
    /// Write a systemd user unit (Linux) or a launchd agent (macOS) that runs the daemon.
    Install,
    /// Remove that service file.
    Uninstall,
}

/// The daemon's state for `status`.
pub fn state_json(env: &Env) -> Option<serde_json::Value> {
    let p = daemon::running(&env.home)?;
    let s = daemon::load_status(&env.home);
    Some(serde_json::json!({
        "pid": p.pid,
        "started_at": rfc3339(p.started_at),
        "uptime_secs": (Utc::now() - p.started_at).num_seconds(),
        "last_push": s.last_push,
        "last_pull": s.last_pull,
        "last_error": s.last_error,
    }))
}

pub fn run(env: &Env, args: DaemonArgs) -> Result<ExitCode> {
    match args.action {
        Some(DaemonAction::Install) => {
            let (path, text, how) = daemon::service_file(&env.home)?;
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("cannot create {}", d.display()))?;
            }
            crate::os::write_atomic(&path, text.as_bytes(), false)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("Wrote {}.", path.display());
            println!("Enable it with: {how}");
            return Ok(ExitCode::SUCCESS);
        }
        Some(DaemonAction::Uninstall) => {
            let (path, _, _) = daemon::service_file(&env.home)?;
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    println!("Removed {}.", path.display());
                    if cfg!(target_os = "macos") {
                        println!("If it was loaded: launchctl unload {}", path.display());
                    } else {
                        println!(
                            "If it was enabled: systemctl --user disable --now ccsync.service && systemctl --user daemon-reload"
                        );
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    println!("No service file at {}.", path.display())
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot remove {}", path.display()));
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    if args.stop {
        match daemon::stop(&env.home, Duration::from_secs(60))? {
            Some(pid) => println!("Stopped the daemon (pid {pid})."),
            None => println!("No daemon is running."),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.status {
        let state = state_json(env);
        if args.format == TextFormat::Json {
            print_json(&serde_json::json!({ "running": state.is_some(), "daemon": state }))?;
        } else {
            match daemon::running(&env.home) {
                None => println!("No daemon is running."),
                Some(p) => {
                    let up = (Utc::now() - p.started_at).num_seconds();
                    println!(
                        "daemon      running, pid {}, up {}h{:02}m",
                        p.pid,
                        up / 3600,
                        (up % 3600) / 60
                    );
                }
            }
            let s = daemon::load_status(&env.home);
            let op = |o: &Option<daemon::Op>| {
                o.as_ref()
                    .map(|o| format!("{} {}", rfc3339(o.at), o.summary))
                    .unwrap_or_else(|| "—".into())
            };
            println!("last push   {}", op(&s.last_push));
            println!("last pull   {}", op(&s.last_pull));
            println!("last error  {}", op(&s.last_error));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let config = config_or_first_run(env)?;
    if let Some(p) = daemon::running(&env.home) {
        bail!(
            "a ccsync daemon is already running on this machine (pid {}, since {}): `ccsync daemon --stop` stops it",
            p.pid,
            p.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    let interval = Duration::from_secs(args.interval.unwrap_or(config.daemon_interval_secs).max(1));
    if args.detach {
        let exe = std::env::current_exe().context("cannot find the ccsync executable")?;
        let log = daemon::log_path(&env.home);
        crate::os::create_private_dir(&env.home.logs_dir())?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("daemon")
            .arg("--interval")
            .arg(interval.as_secs().to_string());
        if args.push_only {
            cmd.arg("--push-only");
        }
        cmd.env("CCSYNC_DAEMON_LOG", &log);
        let pid =
            crate::os::spawn_detached(&mut cmd, Some(&log)).context("cannot start the daemon")?;
        let start = Instant::now();
        while daemon::running(&env.home).is_none_or(|p| p.pid != pid) {
            if start.elapsed() > Duration::from_secs(5) || !crate::os::pid_alive(pid) {
                bail!("the daemon did not start: see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("Daemon started (pid {pid}); log: {}", log.display());
        return Ok(ExitCode::SUCCESS);
    }
    let opts = Options {
        interval,
        debounce: Duration::from_secs(config.daemon_debounce_secs.max(1)),
        push_only: args.push_only,
        once: args.once,
        log_file: std::env::var_os("CCSYNC_DAEMON_LOG").map(std::path::PathBuf::from),
    };
    daemon::run(&env.claude, &env.home, &opts)?;
    Ok(ExitCode::SUCCESS)
}
