//! `ccsync status`: this machine's set-up and how far it is from the repository.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::output::print_json;
use super::{Env, FormatArg, TextFormat};
use crate::catalog;
use crate::config::setup::describe_remote;
use crate::sync::state::State;
use crate::util::rfc3339;

pub fn run(env: &Env, args: FormatArg) -> Result<ExitCode> {
    let config = env.home.require_config()?;
    let status = State::load_status(&env.home);
    let cat = catalog::load(
        &env.claude,
        Some(&env.home.state_dir().join("catalog.json")),
    )?;
    let synced: Vec<&catalog::Entry> = cat
        .entries
        .iter()
        .filter(|e| {
            e.meta
                .cwd
                .as_deref()
                .is_some_and(|c| config.in_sync_dirs(c))
        })
        .collect();
    let pending = crate::sync::pending_sessions(&env.home, &synced);
    let daemon = crate::cli::daemon_state(env);
    if args.format == TextFormat::Json {
        print_json(&json!({
            "machine_id": config.machine_id,
            "remote": config.remote,
            "branch": config.branch,
            "path_style": config.path_style,
            "placeholders": config.placeholders,
            "sync_directories": config.sync_directories,
            "last_push": status.last_push.as_ref().map(|e| json!({"at": rfc3339(e.at), "commit": e.commit, "sessions": e.sessions})),
            "last_pull": status.last_pull.as_ref().map(|e| json!({"at": rfc3339(e.at), "commit": e.commit, "sessions": e.sessions})),
            "last_error": status.last_error,
            "local_sessions": cat.entries.len(),
            "synced_sessions": synced.len(),
            "pending_sessions": pending,
            "daemon": daemon,
            "hooks_installed": crate::hooks::is_installed(&env.claude),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "machine       {} ({} paths)",
        config.machine_id, config.path_style
    );
    println!("remote        {}", describe_remote(&config.remote));
    for (n, p) in &config.placeholders {
        println!("placeholder   {n} = {p}");
    }
    let ev = |e: &Option<crate::sync::state::Event>| match e {
        Some(e) => format!("{} ({} sessions)", rfc3339(e.at), e.sessions),
        None => "never".to_string(),
    };
    println!("last push     {}", ev(&status.last_push));
    println!("last pull     {}", ev(&status.last_pull));
    println!(
        "sessions      {} local, {} in the sync directories, {} changed since the last push",
        cat.entries.len(),
        synced.len(),
        pending
    );
    let daemon_line = match &daemon {
        Some(d) => format!(
            "running (pid {}, up {} s)",
            d["pid"],
            d["uptime_secs"].as_i64().unwrap_or(0)
        ),
        None => "not running".to_string(),
    };
    println!("daemon        {daemon_line}");
    let hooks = if crate::hooks::is_installed(&env.claude) {
        "installed"
    } else {
        "not installed (ccsync setup-hooks)"
    };
    println!("hooks         {hooks}");
    if let Some(e) = &status.last_error {
        println!("last error    {e}");
    }
    Ok(ExitCode::SUCCESS)
}
