//! The command line: argument parsing, then one file per command. Commands read like the user
//! story they implement; the work happens in the library modules.

mod archive_cmd;
mod config_cmd;
mod daemon_cmd;
mod doctor;
mod forget;
mod hooks_cmd;
mod init;
mod key;
mod list;
mod lock_cmd;
pub(crate) mod output;
mod picker;
mod relocate;
mod restore;
mod resume;
mod status;
mod sync_cmd;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::claude::ClaudeDir;
use crate::config::{Config, Home};

/// Keep Claude Code conversations in step across your machines through a git repository you own.
#[derive(Debug, Parser)]
#[command(
    name = "ccsync",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// More detail on stderr (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pick a session (from any machine), lock it, run Claude Code on it, push and release after.
    Resume(resume::ResumeArgs),
    /// Start a new Claude Code session; it is pushed when Claude Code exits.
    Start(resume::StartArgs),
    /// Pull, then push.
    Sync(sync_cmd::SyncArgs),
    /// Send local changes to the sync repository.
    Push(sync_cmd::PushArgs),
    /// Bring changes from the sync repository.
    Pull(sync_cmd::PullArgs),
    /// List sessions: id, project, last activity, size, title.
    List(list::ListArgs),
    /// This machine's set-up, last push and pull, pending changes.
    Status(FormatArg),
    /// Push everything pending and release every lock this machine holds (after a crash).
    Update,
    /// Inspect and manage session locks.
    Lock(lock_cmd::LockArgs),
    /// Delete sessions from the repository (the archive) on purpose; local copies stay.
    Forget(forget::ForgetArgs),
    /// A project directory moved or was renamed: its sessions, memory and history follow, on every machine.
    Relocate(relocate::RelocateArgs),
    /// Search every session of every machine (the archive and this machine), newest first.
    Search(archive_cmd::SearchArgs),
    /// Print a session as people read it (the branch Claude Code shows; --full unfolds tools).
    Show(archive_cmd::ShowArgs),
    /// Write a session as Markdown, one self-contained HTML page, or portable JSONL.
    Export(archive_cmd::ExportArgs),
    /// Serve the archive to Claude Code as an MCP server (stdio): search, list, show.
    Mcp(archive_cmd::McpArgs),
    /// Add (or remove) the ccsync MCP server in Claude Code's user config.
    SetupMcp(archive_cmd::SetupMcpArgs),
    /// Bring back from the repository's history what was forgotten, deleted or overwritten
    /// (`restore list` shows it).
    Restore(restore::RestoreArgs),
    /// Register this machine and connect it to a sync repository.
    Init(init::InitArgs),
    /// The keys of an encrypted sync repository: status, unlock, request, approve, remove.
    Key(key::KeyArgs),
    /// Encrypt a plain sync repository (it says what stays in the git history).
    Encrypt(key::EncryptArgs),
    /// Show or edit the configuration.
    Config(config_cmd::ConfigArgs),
    /// Check git, the remote, gh, claude and placeholder coverage.
    Doctor,
    /// Background sync: push soon after changes, pull and push every interval.
    Daemon(daemon_cmd::DaemonArgs),
    /// Install (or remove) Claude Code hooks so plain `claude` runs sync and lock.
    SetupHooks(hooks_cmd::SetupHooksArgs),
    /// Run by Claude Code's hooks (reads the hook input on stdin; always exits 0).
    #[command(hide = true)]
    Hook(hooks_cmd::HookArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Output format of commands that report data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// `--format` for commands whose human output is not a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum TextFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct FormatArg {
    /// Output format.
    #[arg(long, value_enum, default_value_t = TextFormat::Text)]
    pub format: TextFormat,
}

/// What every command may need: where Claude Code and the tool keep their files.
pub struct Env {
    pub claude: ClaudeDir,
    pub home: Home,
    pub quiet: bool,
}

impl Env {
    fn from_process(quiet: bool) -> Result<Self> {
        Ok(Env {
            claude: ClaudeDir::from_env()?,
            home: Home::from_env()?,
            quiet,
        })
    }

    /// This environment with another tool home (`--home`, which the commands Claude Code runs
    /// are given when the home is not the default one); `None` without one.
    pub fn with_home(&self, home: Option<&std::path::Path>) -> Option<Env> {
        home.map(|h| Env {
            claude: self.claude.clone(),
            home: Home::new(h),
            quiet: self.quiet,
        })
    }

    /// The configuration if this machine was set up.
    pub fn config(&self) -> Result<Option<Config>> {
        self.home.load_config()
    }
}

fn init_logging(verbose: u8, quiet: bool, daemon: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) if daemon => "info",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CCSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("ccsync={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(crate::os::stderr_is_tty());
    // The daemon's log says when; a command's messages do not need it.
    let _ = if daemon {
        builder.try_init()
    } else {
        builder.without_time().try_init()
    };
}

/// Run the program: parse arguments, run the command, map the outcome to an exit code
/// (0 success, 1 failure explained on stderr, 2 bad usage).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(crate::os::args()) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let daemon = matches!(cli.command, Command::Daemon(_));
    let quiet = cli.quiet || matches!(cli.command, Command::Hook(_));
    init_logging(cli.verbose, quiet, daemon);
    let result = run(cli);
    if let Some(kb) = crate::os::peak_rss_kb() {
        tracing::debug!("peak memory of this process: {} MB", kb / 1024);
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", output::error_line(&e));
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Completions { shell } = cli.command {
        let mut cmd = Cli::command();
        clap_complete::generate(shell, &mut cmd, "ccsync", &mut std::io::stdout());
        return Ok(ExitCode::SUCCESS);
    }
    let env = Env::from_process(cli.quiet)?;
    match cli.command {
        Command::Push(args) => sync_cmd::push(&env, args),
        Command::Pull(args) => sync_cmd::pull(&env, args),
        Command::Sync(args) => sync_cmd::sync(&env, args),
        Command::Resume(args) => resume::resume(&env, args),
        Command::Start(args) => resume::start(&env, args),
        Command::Update => resume::update(&env),
        Command::Lock(args) => lock_cmd::run(&env, args),
        Command::Daemon(args) => daemon_cmd::run(&env, args),
        Command::SetupHooks(args) => hooks_cmd::setup(&env, args),
        Command::Hook(args) => hooks_cmd::hook(&env, args),
        Command::Forget(args) => forget::run(&env, args),
        Command::Relocate(args) => relocate::run(&env, args),
        Command::Restore(args) => restore::run(&env, args),
        Command::Search(args) => archive_cmd::run_search(&env, args),
        Command::Show(args) => archive_cmd::run_show(&env, args),
        Command::Export(args) => archive_cmd::run_export(&env, args),
        Command::Mcp(args) => archive_cmd::run_mcp(&env, args),
        Command::SetupMcp(args) => archive_cmd::run_setup_mcp(&env, args),
        Command::Init(args) => init::run(&env, args),
        Command::Key(args) => key::run(&env, args),
        Command::Encrypt(args) => key::encrypt(&env, args),
        Command::List(args) => list::run(&env, args),
        Command::Status(args) => status::run(&env, args),
        Command::Config(args) => config_cmd::run(&env, args),
        Command::Doctor => doctor::run(&env),
        Command::Completions { .. } => Ok(ExitCode::SUCCESS),
    }
}

/// After this machine moved to another remote: send it what this machine has.
pub(crate) fn after_remote_change(env: &Env) -> Result<()> {
    let config = env.home.require_config()?;
    let engine = crate::sync::Engine::new(&env.claude, &env.home, &config)?;
    let r = crate::sync::push(&engine, &crate::sync::PushOptions::default())?;
    println!(
        "Pushed {} sessions to the new remote.",
        r.sessions_new + r.sessions_updated
    );
    Ok(())
}

/// The daemon's state for `status`, when one runs.
pub(crate) fn daemon_state(env: &Env) -> Option<serde_json::Value> {
    daemon_cmd::state_json(env)
}
