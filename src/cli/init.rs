//! `ccsync init`: register this machine with a sync repository.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::Env;
use crate::config::setup::{self, InitOptions, NoPrompt, Prompter};
use crate::paths::PathStyle;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The sync repository: any git URL, or a local path (a path that does not exist becomes a
    /// new bare repository).
    #[arg(long, value_name = "URL-or-PATH", conflicts_with = "github")]
    remote: Option<String>,
    /// Use (or create, private) a GitHub repository through the `gh` CLI.
    #[arg(long, value_name = "[OWNER/]REPO")]
    github: Option<String>,
    /// This machine's name in the repository (default: the host name).
    #[arg(long)]
    machine_id: Option<String>,
    /// This machine's path for a placeholder (repeatable), e.g. PROJECTS=~/projects.
    #[arg(long = "add-placeholder", value_name = "NAME=PATH")]
    add_placeholder: Vec<String>,
    /// Sync only sessions under this directory (repeatable; default: the placeholder paths).
    #[arg(long = "sync-dir", value_name = "PATH")]
    sync_dir: Vec<String>,
    /// Path conventions of this machine (default: this OS's).
    #[arg(long, value_name = "posix|windows")]
    path_style: Option<PathStyle>,
    /// Take over a machine id registered by another installation (this machine set up again).
    #[arg(long)]
    reclaim: bool,
    /// Ask nothing; placeholders without a path here are reported.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Encrypt the repository end to end (a new, empty one; `ccsync encrypt` converts one that
    /// holds data). Needs a passphrase or `--recovery-key`.
    #[arg(long)]
    encrypt: bool,
    /// The passphrase: with --encrypt the new one; for an encrypted repository, the way to
    /// join it without another machine's approval.
    #[command(flatten)]
    pass: super::key::NewPassphraseArgs,
}

/// Questions on the terminal; end of input cancels.
struct TtyPrompt;

impl Prompter for TtyPrompt {
    fn interactive(&self) -> bool {
        true
    }
    fn ask_path(
        &mut self,
        name: &str,
        others: &BTreeMap<String, String>,
    ) -> Result<Option<String>> {
        let mut err = std::io::stderr();
        if others.is_empty() {
            writeln!(
                err,
                "The sync repository uses placeholder {name}, and no machine recorded its path."
            )?;
        } else {
            writeln!(err, "Other machines use placeholder {name}:")?;
        }
        for (m, p) in others {
            writeln!(err, "  {m}: {p}")?;
        }
        write!(err, "Path of {name} on this machine (empty to skip): ")?;
        err.flush()?;
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            bail!("cancelled");
        }
        Ok(Some(line.trim().to_string()).filter(|l| !l.is_empty()))
    }
}

pub fn run(env: &Env, args: InitArgs) -> Result<ExitCode> {
    let opts = InitOptions {
        remote: args.remote,
        github: args.github,
        machine_id: args.machine_id,
        placeholders: args.add_placeholder,
        sync_dirs: args.sync_dir,
        path_style: args.path_style,
        reclaim: args.reclaim,
        encrypt: if args.encrypt {
            Some(super::key::new_passphrase(&args.pass)?)
        } else {
            None
        },
        passphrase: if args.encrypt {
            None
        } else {
            crate::store::keys::passphrase_from(args.pass.from.passphrase_file.as_deref())?
        },
    };
    let report = if !args.yes && crate::os::stdin_is_tty() {
        setup::init(&env.home, opts, &mut TtyPrompt)?
    } else {
        setup::init(&env.home, opts, &mut NoPrompt)?
    };
    let c = &report.config;
    if let Some(code) = &report.pending {
        println!(
            "The sync repository {} is encrypted and this machine has no key for it, so it asked to join.",
            setup::describe_remote(&c.remote)
        );
        println!(
            "On a machine that has the key run `ccsync key approve {}` and check that it shows the code {code}; then run `ccsync init` here again (it registers this machine and asks for the placeholders the others share), or just `ccsync pull`. (Or join at once with the passphrase: `ccsync key unlock`.)",
            c.machine_id
        );
        return Ok(ExitCode::SUCCESS);
    }
    if report.reinit {
        if report.changes.is_empty() {
            println!(
                "Machine {} is already set up; nothing changed.",
                c.machine_id
            );
        } else {
            println!("Machine {} is already set up; changed:", c.machine_id);
            for ch in &report.changes {
                println!("  - {ch}");
            }
        }
    } else {
        for ch in &report.changes {
            println!("{}{}", ch[..1].to_uppercase(), &ch[1..]);
        }
        println!(
            "Registered machine {} ({} paths) with the sync repository {}.",
            c.machine_id,
            c.path_style,
            setup::describe_remote(&c.remote)
        );
        let ph: Vec<String> = c
            .placeholders
            .iter()
            .map(|(n, p)| format!("{n}={p}"))
            .collect();
        println!("Placeholders: {}", ph.join(", "));
        println!(
            "Sync directories: {}",
            if c.sync_directories.is_empty() {
                "all".into()
            } else {
                c.sync_directories.join(", ")
            }
        );
        if report.first_machine {
            println!(
                "This is the first machine. Others join with: ccsync init --remote {}",
                c.remote
            );
        }
        if crate::store::is_local_remote(&c.remote) {
            println!(
                "To move to GitHub later: ccsync config set-remote <URL>  (or: ccsync init --github REPO)"
            );
        }
    }
    if let Some(m) = &report.migrated {
        for line in m.lines() {
            println!("{line}");
        }
        // Sessions of the converted repository this machine cannot place yet.
        for name in &report.missing {
            let n = m.sessions_needing(name);
            if n > 0 {
                println!(
                    "  {n} of its {} sessions need {name}'s path on this machine: ccsync config add-placeholder {name}=PATH  (then ccsync pull)",
                    m.sessions
                );
            }
        }
    }
    if !report.missing.is_empty() {
        println!(
            "Placeholders other machines use have no path here yet: {}",
            report.missing.join(", ")
        );
        println!(
            "  set them with: ccsync config add-placeholder NAME=PATH  (`ccsync doctor` keeps reminding you)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
