//! `ccsync restore`: what the repository's history holds that is gone now, listed, shown and
//! brought back.
//!
//! ```text
//! ccsync restore [list] [--session ID] [--project P] [--memory] [--since DATE] [--format table|json]
//! ccsync restore show ITEM [--at DATE|COMMIT]
//! ccsync restore ITEM [--at DATE|COMMIT] [--dry-run] [-o FILE]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Local, Utc};
use clap::{Args, Subcommand};

use super::output::print_json;
use super::{Env, Format};
use crate::sync::Engine;
use crate::sync::restore::{self, At, Item, Kind, ListOptions, RestoreOptions, Restored};
use crate::util::{human_size, pad, short_id, tilde, width};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RestoreArgs {
    #[command(subcommand)]
    command: Option<RestoreCommand>,
    #[command(flatten)]
    bring: BringArgs,
}

/// `ccsync restore ITEM …`: bring something back.
#[derive(Debug, Args)]
struct BringArgs {
    /// What to bring back: a session id (or a unique prefix), or a memory file, CLAUDE.md or
    /// plan — its path here, its path in the repository, or a unique end of it such as
    /// `memory/notes.md`. Without it: `restore list`.
    item: Option<String>,
    /// The version as it was at DATE (YYYY-MM-DD is the end of that day, YYYY-MM-DD HH:MM the
    /// end of that minute, local time; or RFC 3339) or at a COMMIT of the sync branch (as
    /// `restore list` shows). A session's earlier state comes back as a new session.
    #[arg(long, value_name = "DATE|COMMIT", requires = "item")]
    at: Option<String>,
    /// Say what would be written, write nothing (no commit either).
    #[arg(long, requires = "item")]
    dry_run: bool,
    /// Write the content to FILE (which must not exist) instead of the Claude Code dir.
    #[arg(short, long, value_name = "FILE", requires = "item")]
    output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum RestoreCommand {
    /// What the repository's history holds that is gone now: forgotten and deleted sessions,
    /// deleted memory files, CLAUDE.md and plans, earlier versions of those overwritten.
    List(ListArgs),
    /// Print a stored file, or a session's transcript, as it was (with this machine's paths).
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Every stored state of this session (an id or a unique prefix), to pick a date from.
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// Only what belongs to this project directory (an absolute path or ~/…: it and below;
    /// otherwise any project whose path contains it).
    #[arg(long, value_name = "P")]
    project: Option<String>,
    /// Only memory files, CLAUDE.md and plans.
    #[arg(long, conflicts_with = "session")]
    memory: bool,
    /// Only what went (with --session: was stored) at or after DATE (YYYY-MM-DD, local time,
    /// or RFC 3339).
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// A session id (or a unique prefix) or a file, as for `ccsync restore ITEM`.
    item: String,
    /// As it was at DATE or COMMIT (default: the latest version stored).
    #[arg(long, value_name = "DATE|COMMIT")]
    at: Option<String>,
}

pub fn run(env: &Env, args: RestoreArgs) -> Result<ExitCode> {
    let config = env.home.require_config()?;
    let engine = Engine::new(&env.claude, &env.home, &config)?;
    let home = config.placeholders.get("HOME").cloned();
    match (args.command, args.bring.item) {
        (Some(RestoreCommand::List(l)), _) => list(&engine, l, home.as_deref()),
        (Some(RestoreCommand::Show(s)), _) => {
            let at = s.at.as_deref().map(At::parse).transpose()?;
            let mut out = std::io::stdout().lock();
            restore::show(&engine, &s.item, at.as_ref(), &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        (None, None) => list(
            &engine,
            ListArgs {
                session: None,
                project: None,
                memory: false,
                since: None,
                format: Format::Table,
            },
            home.as_deref(),
        ),
        (None, Some(item)) => {
            let opts = RestoreOptions {
                at: args.bring.at.as_deref().map(At::parse).transpose()?,
                dry_run: args.bring.dry_run,
                output: args.bring.output,
            };
            let r = restore::restore(&engine, &item, &opts)?;
            report(&r, home.as_deref());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A time for people: local, to the minute.
fn when(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string()
}

fn by(m: &Option<String>) -> String {
    m.clone().unwrap_or_else(|| "?".into())
}

fn short_commit(c: &str) -> &str {
    &c[..c.len().min(10)]
}

fn list(engine: &Engine, args: ListArgs, home: Option<&str>) -> Result<ExitCode> {
    let opts = ListOptions {
        session: args.session.clone(),
        project: args.project,
        memory: args.memory,
        since: args
            .since
            .as_deref()
            .map(|s| restore::parse_date(s, false))
            .transpose()?,
    };
    let items = restore::list(engine, &opts)?;
    if args.format == Format::Json {
        print_json(&items)?;
        return Ok(ExitCode::SUCCESS);
    }
    let place = |i: &Item| -> String {
        i.local_path
            .as_deref()
            .map_or_else(|| i.repo_path.clone(), |p| tilde(p, home))
    };
    if args.session.is_some() {
        let Some(first) = items.first() else {
            println!("The repository's history holds no stored state of that session.");
            return Ok(ExitCode::SUCCESS);
        };
        println!(
            "Session {} ({}): {}",
            first.item,
            first
                .project
                .as_deref()
                .map_or("?".into(), |p| tilde(p, home)),
            first.title.as_deref().unwrap_or("untitled")
        );
        if let Some(g) = items
            .iter()
            .find_map(|i| i.gone_at.map(|t| (t, &i.gone_by)))
        {
            println!(
                "Gone from the repository since {} (by {}): `ccsync restore {}` brings it back.",
                when(g.0),
                by(g.1),
                short_id(&first.item)
            );
        }
        println!(
            "Each state below comes back as a new session with `ccsync restore {} --at COMMIT`:",
            short_id(&first.item)
        );
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|i| {
                vec![
                    when(i.stored_at),
                    by(&i.stored_by),
                    short_commit(&i.commit).to_string(),
                    i.lines.unwrap_or(0).to_string(),
                    human_size(i.size),
                ]
            })
            .collect();
        table(&["STORED", "BY", "COMMIT", "LINES", "SIZE"], &rows);
        return Ok(ExitCode::SUCCESS);
    }
    if items.is_empty() {
        println!("Nothing in the repository's history is missing now.");
        return Ok(ExitCode::SUCCESS);
    }
    let sessions: Vec<&Item> = items
        .iter()
        .filter(|i| matches!(i.kind, Kind::ForgottenSession | Kind::DeletedSession))
        .collect();
    if !sessions.is_empty() {
        println!("Sessions gone from the repository (`ccsync restore ID` brings one back):");
        let rows: Vec<Vec<String>> = sessions
            .iter()
            .map(|i| {
                vec![
                    short_id(&i.item),
                    if i.kind == Kind::ForgottenSession {
                        "forgotten".into()
                    } else {
                        "deleted".into()
                    },
                    i.gone_at.map(when).unwrap_or_default(),
                    by(&i.gone_by),
                    i.lines.unwrap_or(0).to_string(),
                    human_size(i.size),
                    i.project.as_deref().map_or("?".into(), |p| tilde(p, home)),
                    i.title.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(
            &[
                "ID", "WHAT", "WHEN", "BY", "LINES", "SIZE", "PROJECT", "TITLE",
            ],
            &rows,
        );
    }
    let deleted: Vec<&Item> = items
        .iter()
        .filter(|i| i.kind == Kind::DeletedFile)
        .collect();
    if !deleted.is_empty() {
        println!("Files deleted from the repository (`ccsync restore PATH` brings one back):");
        let rows: Vec<Vec<String>> = deleted
            .iter()
            .map(|i| {
                vec![
                    i.gone_at.map(when).unwrap_or_default(),
                    by(&i.gone_by),
                    human_size(i.size),
                    format!("{} {}", when(i.stored_at), by(&i.stored_by)),
                    place(i),
                ]
            })
            .collect();
        table(&["DELETED", "BY", "SIZE", "LAST STORED", "PATH"], &rows);
    }
    let earlier: Vec<&Item> = items
        .iter()
        .filter(|i| i.kind == Kind::EarlierVersion)
        .collect();
    if !earlier.is_empty() {
        println!(
            "Earlier versions (`ccsync restore PATH --at COMMIT` brings one back; the file there is kept as a conflict copy):"
        );
        let rows: Vec<Vec<String>> = earlier
            .iter()
            .map(|i| {
                vec![
                    when(i.stored_at),
                    by(&i.stored_by),
                    short_commit(&i.commit).to_string(),
                    human_size(i.size),
                    i.gone_at.map(when).unwrap_or_default(),
                    place(i),
                ]
            })
            .collect();
        table(
            &["STORED", "BY", "COMMIT", "SIZE", "REPLACED", "PATH"],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A table with a header, two spaces between columns, the last column unpadded.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(width(c));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&pad(c, widths[i]));
                s.push_str("  ");
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn report(r: &Restored, home: Option<&str>) {
    let path = |p: &PathBuf| tilde(&p.display().to_string(), home);
    let target = r.written.as_ref().map(path).unwrap_or_default();
    // "stored 2031-01-01 10:00 by a (commit 1a2b3c4d5e; 4 lines, 1.2K)"
    let size = format!("{}, {}", lines(r.lines), human_size(r.bytes));
    let stored = match (r.stored_at, &r.commit) {
        (Some(t), Some(c)) => format!(
            "stored {} by {} (commit {}; {size})",
            when(t),
            by(&r.stored_by),
            short_commit(c)
        ),
        _ => format!("stored now ({size})"),
    };
    if r.is_session && r.new_session.is_none() && r.put_back {
        if r.dry_run {
            println!(
                "Would bring back session {}, as last {stored}: would put it back in the repository{}{}.",
                r.item,
                if r.tombstone_lifted {
                    ", lift its tombstone"
                } else {
                    ""
                },
                if target.is_empty() {
                    String::new()
                } else {
                    format!(", and place it at {target}")
                }
            );
        } else {
            println!(
                "Brought back session {}, as last {stored}: put back in the repository{}{}.",
                r.item,
                if r.tombstone_lifted {
                    " with its tombstone lifted (every machine syncs it again)"
                } else {
                    ""
                },
                if target.is_empty() {
                    String::new()
                } else {
                    format!(", and placed at {target}")
                }
            );
        }
    } else if r.is_session && r.new_session.is_none() && r.tombstone_lifted {
        println!(
            "Session {} was back in the repository already; its tombstone was lifted and it is placed at {target}.",
            r.item
        );
    } else if let Some(new) = &r.new_session {
        let verb = if r.dry_run {
            "Would restore"
        } else {
            "Restored"
        };
        println!(
            "{verb} session {} as {stored} as the new session {new}: {target}.",
            r.item
        );
        if !r.dry_run {
            println!(
                "Session {} itself is untouched. The next push (or sync) sends the new one to your other machines.",
                r.item
            );
        }
    } else if r.unchanged {
        println!("{target} already holds the version {stored}: nothing written.");
    } else {
        if let Some(kept) = &r.kept_current_as {
            let verb = if r.dry_run { "Would keep" } else { "Kept" };
            println!("{verb} the file at {target} as {}.", path(kept));
        }
        let verb = if r.dry_run {
            "Would restore"
        } else {
            "Restored"
        };
        let what = if r.is_session {
            format!("session {} to ", r.item)
        } else {
            String::new()
        };
        println!("{verb} {what}{target}: the version {stored}.");
        if !r.dry_run && !r.to_output {
            println!("The next push (or sync) sends it to your other machines.");
        }
    }
    for n in &r.notes {
        println!("Note: {n}");
    }
}

fn lines(n: u64) -> String {
    if n == 1 {
        "1 line".into()
    } else {
        format!("{n} lines")
    }
}
