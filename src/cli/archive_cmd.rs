//! `ccsync search`, `ccsync show`, `ccsync export`: reading the archive (see [`crate::archive`]).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};

use super::Env;
use super::output::print_json;
use crate::archive::render::{self, Role, TextStyle, Turn};
use crate::archive::search::{self, Case, Filters, Query};
use crate::archive::{Archive, Repo, Session};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for (a literal text; a regular expression with --regex).
    query: String,
    /// Treat the query as a regular expression.
    #[arg(long, short = 'e')]
    regex: bool,
    /// Match letter case exactly (default: only when the query has an upper-case letter).
    #[arg(long, short = 's', conflicts_with = "ignore_case")]
    case_sensitive: bool,
    /// Ignore letter case.
    #[arg(long, short = 'i')]
    ignore_case: bool,
    /// Only sessions whose project directory contains this.
    #[arg(long)]
    project: Option<String>,
    /// Only sessions last written by this machine.
    #[arg(long)]
    machine: Option<String>,
    /// Only turns since this date (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only turns until this date (YYYY-MM-DD, the whole day, or RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Only turns of this role.
    #[arg(long, value_parser = ["user", "assistant", "tool", "system"])]
    role: Option<String>,
    /// Only sessions whose tool calls touched a path containing this.
    #[arg(long)]
    files: Option<String>,
    /// At most this many hits.
    #[arg(long, short = 'n', default_value_t = 50)]
    limit: usize,
    /// Also fetch the repository first (bounded; default: what was last fetched).
    #[arg(long)]
    fetch: bool,
    #[arg(long, value_enum, default_value_t = super::Format::Table)]
    format: super::Format,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Session id (or a unique prefix).
    id: String,
    /// Unfold tool calls, results and thinking.
    #[arg(long)]
    full: bool,
    /// Every line of the transcript, not only the branch Claude Code shows.
    #[arg(long)]
    all_branches: bool,
    /// Never start a pager.
    #[arg(long)]
    no_pager: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Md,
    Html,
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Session id (or a unique prefix).
    id: String,
    #[arg(long, value_enum, default_value_t = ExportFormat::Md)]
    format: ExportFormat,
    /// Write here (default: standard output).
    #[arg(long, short = 'o')]
    output: Option<std::path::PathBuf>,
}

/// This machine's configuration, or one for reading local sessions only.
fn config_or_local(env: &Env) -> Result<(Config, bool)> {
    match env.config()? {
        Some(c) => Ok((c, true)),
        None => {
            let remote = env.home.default_remote().to_string_lossy().into_owned();
            let c = Config::new(
                crate::os::hostname(),
                remote,
                crate::paths::PathStyle::native(),
            );
            Ok((c, false))
        }
    }
}

fn repo(connected: bool, fetch: bool, config: &Config) -> Repo {
    match (connected, fetch) {
        (false, _) => Repo::None,
        (true, false) => Repo::Known,
        (true, true) => Repo::Fetch(Duration::from_secs(config.pull_timeout_secs.max(1))),
    }
}

fn warn_all(env: &Env, archive: &Archive<'_>) {
    if !env.quiet {
        for w in &archive.warnings {
            eprintln!("warning: {w}");
        }
    }
}

pub fn run_search(env: &Env, args: SearchArgs) -> Result<ExitCode> {
    let (config, connected) = config_or_local(env)?;
    let archive = Archive::open(
        &env.claude,
        &env.home,
        &config,
        repo(connected, args.fetch, &config),
    )?;
    warn_all(env, &archive);
    let query = Query {
        pattern: args.query.clone(),
        regex: args.regex,
        case: if args.case_sensitive {
            Case::Sensitive
        } else if args.ignore_case {
            Case::Insensitive
        } else {
            Case::Smart
        },
    };
    let filters = Filters {
        project: args.project.clone(),
        machine: args.machine.clone(),
        since: args
            .since
            .as_deref()
            .map(|s| crate::clock::parse_date(s, false))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|s| crate::clock::parse_date(s, true))
            .transpose()?,
        role: args.role.as_deref().and_then(Role::parse),
        files: args.files.clone(),
    };
    let hits = search::search(&archive, &query, &filters, args.limit)?;
    if args.format == super::Format::Json {
        print_json(&hits)?;
        return Ok(ExitCode::SUCCESS);
    }
    if hits.is_empty() {
        if !env.quiet {
            eprintln!("No match in {} sessions.", archive.sessions.len());
        }
        return Ok(ExitCode::from(1));
    }
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let home = config.placeholders.get("HOME").cloned();
    let mut out = String::new();
    for h in &hits {
        let when = h
            .time
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default();
        let project = h
            .project
            .as_deref()
            .map(|p| crate::util::tilde(p, home.as_deref()))
            .unwrap_or_else(|| "?".into());
        let head = format!(
            "{}  {}  {}  {}  {}",
            h.session_id.chars().take(8).collect::<String>(),
            when,
            h.machine,
            h.role.as_str(),
            project
        );
        let mut snippet = String::new();
        let mut last = 0;
        for &(a, b) in &h.highlights {
            if a < last || b > h.snippet.len() {
                continue;
            }
            snippet.push_str(&h.snippet[last..a]);
            if color {
                snippet.push_str("\x1b[1;31m");
                snippet.push_str(&h.snippet[a..b]);
                snippet.push_str("\x1b[0m");
            } else {
                snippet.push_str(&h.snippet[a..b]);
            }
            last = b;
        }
        snippet.push_str(&h.snippet[last..]);
        if color {
            out.push_str(&format!("\x1b[2m{head}\x1b[0m\n  {snippet}\n"));
        } else {
            out.push_str(&format!("{head}\n  {snippet}\n"));
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn subagent_turns(archive: &Archive<'_>, s: &Session, redact: bool) -> Vec<(String, Vec<Turn>)> {
    s.subagents
        .iter()
        .filter_map(|l| match archive.turns(l, false, redact) {
            Ok(t) if !t.is_empty() => Some((l.name.clone(), t)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!("cannot read subagent {} of {}: {e:#}", l.name, s.id);
                None
            }
        })
        .collect()
}

/// Open the archive as last fetched, saying what could not be read.
fn open_known<'a>(env: &'a Env, config: &'a Config, connected: bool) -> Result<Archive<'a>> {
    let archive = Archive::open(
        &env.claude,
        &env.home,
        config,
        repo(connected, false, config),
    )?;
    warn_all(env, &archive);
    Ok(archive)
}

pub fn run_show(env: &Env, args: ShowArgs) -> Result<ExitCode> {
    let (config, connected) = config_or_local(env)?;
    let archive = open_known(env, &config, connected)?;
    let s = archive.find(&args.id)?;
    let turns = archive.turns(&s.transcript, !args.all_branches, false)?;
    let tty = std::io::stdout().is_terminal();
    let style = TextStyle {
        full: args.full,
        color: tty && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut out = format!(
        "{}\n{} · {} · {}\n\n",
        s.title.as_deref().unwrap_or("(untitled)"),
        s.id,
        s.cwd
            .as_deref()
            .or(s.portable_cwd.as_deref())
            .unwrap_or("?"),
        s.machine
    );
    render::text(&turns, style, &mut out);
    if args.full {
        for (name, t) in subagent_turns(&archive, s, false) {
            out.push_str(&format!("━━ subagent {name} ━━\n\n"));
            render::text(&t, style, &mut out);
        }
    } else if !s.subagents.is_empty() {
        out.push_str(&format!(
            "({} subagent transcripts: --full shows them)\n",
            s.subagents.len()
        ));
    }
    page(&out, tty && !args.no_pager)
}

/// Print, through a pager when it is longer than the terminal.
fn page(text: &str, may_page: bool) -> Result<ExitCode> {
    let rows = terminal_size::terminal_size().map(|(_, h)| h.0 as usize);
    let long = rows.is_some_and(|r| text.lines().count() + 1 > r);
    if may_page && long {
        let pager = std::env::var("PAGER").unwrap_or_else(|_| "less".into());
        let mut words = pager.split_whitespace();
        if let Some(prog) = words.next() {
            let mut cmd = std::process::Command::new(prog);
            cmd.args(words).stdin(std::process::Stdio::piped());
            if prog == "less" && std::env::var_os("LESS").is_none() {
                cmd.env("LESS", "FRX");
            }
            if let Ok(mut child) = cmd.spawn() {
                if let Some(mut stdin) = child.stdin.take() {
                    // A pager quit early closes the pipe: not an error.
                    let _ = stdin.write_all(text.as_bytes());
                }
                let _ = child.wait();
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    let mut so = std::io::stdout().lock();
    match so.write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.context("cannot write to standard output")?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_export(env: &Env, args: ExportArgs) -> Result<ExitCode> {
    let (config, connected) = config_or_local(env)?;
    let archive = open_known(env, &config, connected)?;
    let s = archive.find(&args.id)?;
    // The title is the first prompt when nobody named the session: scanned like the rest.
    let mut title = s
        .title
        .clone()
        .unwrap_or_else(|| format!("Session {}", s.id));
    if let Some(sc) = archive.scanner {
        let hits = sc.scan_text(title.as_bytes());
        title = String::from_utf8_lossy(&sc.redact(title.as_bytes(), &hits)).into_owned();
    }
    let mut out = String::new();
    let bytes: Vec<u8> = match args.format {
        ExportFormat::Jsonl => {
            // The portable form, exactly as push stores it (paths as placeholders, secrets
            // redacted).
            let file = archive.file(&s.transcript)?;
            let data =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut v = Vec::with_capacity(data.len());
            // Push's own outbound form: the push engine's mapping and redaction.
            let engine = crate::sync::Engine::new(&env.claude, &env.home, &config)?;
            engine.outbound(
                &data,
                &mut v,
                &s.id,
                1,
                &mut Vec::new(),
                &mut crate::sync::FileSecrets::default(),
                0,
            );
            v
        }
        ExportFormat::Md => {
            let turns = archive.turns(&s.transcript, true, true)?;
            render::markdown(&title, &turns, &subagent_turns(&archive, s, true), &mut out);
            out.into_bytes()
        }
        ExportFormat::Html => {
            let turns = archive.turns(&s.transcript, true, true)?;
            let meta = format!(
                "{} · {} · {}",
                s.id,
                s.cwd
                    .as_deref()
                    .or(s.portable_cwd.as_deref())
                    .unwrap_or("?"),
                s.machine
            );
            render::html(
                &title,
                &meta,
                &turns,
                &subagent_turns(&archive, s, true),
                &mut out,
            );
            out.into_bytes()
        }
    };
    match &args.output {
        Some(p) => {
            crate::os::write_atomic(p, &bytes, false)
                .with_context(|| format!("cannot write {}", p.display()))?;
            if !env.quiet {
                eprintln!("Wrote {} ({} bytes).", p.display(), bytes.len());
            }
        }
        None => {
            let mut so = std::io::stdout().lock();
            match so.write_all(&bytes) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                r => r.context("cannot write to standard output")?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct McpArgs {
    /// The tool home (`setup-mcp` names it when it is not the default one).
    #[arg(long, hide = true)]
    home: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct SetupMcpArgs {
    /// Take ccsync's server out of Claude Code's config again.
    #[arg(long)]
    remove: bool,
}

/// `ccsync mcp`: serve the archive to an MCP client on standard input and output.
pub fn run_mcp(env: &Env, args: McpArgs) -> Result<ExitCode> {
    let own = env.with_home(args.home.as_deref());
    let env = own.as_ref().unwrap_or(env);
    let (config, connected) = config_or_local(env)?;
    let server = crate::archive::mcp::Server {
        claude: &env.claude,
        home: &env.home,
        config: &config,
        connected,
    };
    let stdin = std::io::stdin();
    server.run(stdin.lock(), std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}

/// `ccsync setup-mcp [--remove]`: add (remove) the `ccsync` MCP server in Claude Code's global
/// config, at user scope, editing the file as text after a backup.
pub fn run_setup_mcp(env: &Env, args: SetupMcpArgs) -> Result<ExitCode> {
    let path = env.claude.global_config();
    let before = match std::fs::read(&path) {
        Ok(b) => Some(
            String::from_utf8(b)
                .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text: left alone", path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let text = before.clone().unwrap_or_default();
    let new = if args.remove {
        crate::claude::settings::mcp_remove(&text, "ccsync")
    } else {
        let exe = std::env::current_exe().context("cannot find the ccsync executable")?;
        let mut a = vec!["mcp".to_string()];
        if std::env::var_os("CCSYNC_HOME").is_some_and(|h| !h.is_empty()) {
            a.push("--home".into());
            a.push(env.home.root.to_string_lossy().into_owned());
        }
        let server = serde_json::json!({
            "type": "stdio",
            "command": exe.to_string_lossy(),
            "args": a,
            "env": {}
        });
        crate::claude::settings::mcp_install(&text, "ccsync", &server)
    }
    .map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid ({e}): fix it first; nothing was changed",
            path.display()
        )
    })?;
    if before.as_deref() == Some(new.as_str()) || (before.is_none() && args.remove) {
        if !env.quiet {
            println!(
                "{}: nothing to change ({}).",
                path.display(),
                if args.remove {
                    "no ccsync server"
                } else {
                    "ccsync's server is already there"
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(b) = &before {
        let bp = path.with_file_name(format!(
            ".claude.json.ccsync-backup-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        ));
        crate::os::write_atomic(&bp, b.as_bytes(), true)
            .with_context(|| format!("cannot write the backup {}", bp.display()))?;
    }
    crate::os::write_atomic(&path, new.as_bytes(), true)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if !env.quiet {
        if args.remove {
            println!("Removed the ccsync MCP server from {}.", path.display());
        } else {
            println!(
                "Added the ccsync MCP server to {} (user scope): Claude Code sessions started from now on can search, list and read every machine's conversations (tools mcp__ccsync__search, list_sessions, show_session).",
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
