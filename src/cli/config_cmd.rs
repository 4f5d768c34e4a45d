//! `ccsync config …`: show and edit the local and shared configuration.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use super::output::print_json;
use super::{Env, TextFormat};
use crate::config::setup;
use crate::config::shared;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// This machine's configuration and every machine's path for every placeholder.
    Show {
        #[arg(long, value_enum, default_value_t = TextFormat::Text)]
        format: TextFormat,
    },
    /// Set this machine's path for a placeholder (shared with the other machines).
    AddPlaceholder {
        #[arg(value_name = "NAME=PATH")]
        assignment: String,
    },
    /// Set a placeholder's path for any registered machine.
    SetPath {
        name: String,
        machine: String,
        path: String,
    },
    /// Move this machine to another sync repository (what it has is pushed there).
    SetRemote {
        #[arg(value_name = "URL-or-PATH")]
        url: String,
    },
    /// Change a local setting (sync_directories, secret_scan, lock_ttl_secs, daemon_interval_secs,
    /// daemon_debounce_secs, pull_timeout_secs, path_style, branch).
    Set { key: String, value: String },
}

pub fn run(env: &Env, args: ConfigArgs) -> Result<ExitCode> {
    match args.command {
        ConfigCommand::Show { format } => show(env, format),
        ConfigCommand::AddPlaceholder { assignment } => {
            let c = setup::add_placeholder(&env.home, &assignment)?;
            let (name, _) = setup::parse_assignment(&assignment)?;
            println!(
                "{name} = {} on {} (shared with the other machines).",
                c.placeholders[&name], c.machine_id
            );
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::SetPath {
            name,
            machine,
            path,
        } => {
            let p = setup::set_path(&env.home, &name, &machine, &path)?;
            println!("{name} = {p} on {machine}.");
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::SetRemote { url } => {
            let c = setup::set_remote(&env.home, &url)?;
            println!(
                "Machine {} now syncs with {}.",
                c.machine_id,
                setup::describe_remote(&c.remote)
            );
            super::after_remote_change(env)?;
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Set { key, value } => {
            let c = setup::set_key(&env.home, &key, &value)?;
            let v = serde_json::to_value(&c)?;
            println!(
                "{key} = {}",
                v.get(&key).map(|x| x.to_string()).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn show(env: &Env, format: TextFormat) -> Result<ExitCode> {
    let config = env.home.require_config()?;
    let store = Store::of(&env.home, &config)?;
    let quick = Duration::from_secs(config.pull_timeout_secs.max(1));
    let head = match crate::store::git::within(quick, || store.fetch(quick)) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!("{e}; showing what was last fetched");
            store.known_head()?
        }
    };
    let state = shared::read_shared(&store, head.as_ref())?;
    drop(store);
    if format == TextFormat::Json {
        print_json(&json!({
            "config": config,
            "config_file": env.home.config_file(),
            "shared_placeholders": state.placeholders.placeholders,
            "machines": state.machines,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let c = &config;
    println!("config file      {}", env.home.config_file().display());
    println!("machine          {} ({} paths)", c.machine_id, c.path_style);
    println!("remote           {}", setup::describe_remote(&c.remote));
    println!("branch           {}", c.branch);
    println!(
        "sync directories {}",
        if c.sync_directories.is_empty() {
            "all".into()
        } else {
            c.sync_directories.join(", ")
        }
    );
    println!("secret scan      {}", c.secret_scan);
    println!("lock ttl         {} s", c.lock_ttl_secs);
    println!(
        "daemon           every {} s, {} s after changes",
        c.daemon_interval_secs, c.daemon_debounce_secs
    );
    let mut machines: Vec<String> = state.machines.keys().cloned().collect();
    machines.retain(|m| m != &c.machine_id);
    machines.insert(0, c.machine_id.clone());
    println!("placeholders");
    let mut names: Vec<&String> = state.placeholders.placeholders.keys().collect();
    for n in c.placeholders.keys() {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names.sort();
    for name in names {
        println!("  {name}");
        for m in &machines {
            let p = if m == &c.machine_id {
                c.placeholders.get(name).cloned()
            } else {
                state
                    .placeholders
                    .placeholders
                    .get(name)
                    .and_then(|per| per.get(m).cloned())
            };
            let mark = if m == &c.machine_id {
                " (this machine)"
            } else {
                ""
            };
            println!("    {m}{mark}: {}", p.unwrap_or_else(|| "— not set".into()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
