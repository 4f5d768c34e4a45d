//! `ccsync list`: the sessions on this machine, newest first.

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use clap::Args;
use serde::Serialize;

use super::output::{print_json, table_width};
use super::{Env, Format};
use crate::catalog::{self, Entry};
use crate::util::{
    human_size, pad, relative_age, rfc3339, short_id, tilde, truncate, truncate_left, width,
};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Include sessions outside the configured sync directories.
    #[arg(long)]
    all: bool,
    /// The sessions the sync repository holds (from their metadata), with lock holders.
    #[arg(long)]
    remote: bool,
    /// With --remote: only sessions last edited on this machine id.
    #[arg(long, value_name = "MACHINE", requires = "remote")]
    from: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// One session as `list --format json` prints it.
#[derive(Debug, Serialize)]
pub struct ListedSession {
    pub session_id: String,
    pub project_path: Option<String>,
    pub title: Option<String>,
    pub first_activity: Option<String>,
    pub last_activity: Option<String>,
    pub size_bytes: u64,
    pub lines: u64,
    pub malformed_lines: u64,
    pub subagents: usize,
    pub machine: String,
    pub locked_by: Option<String>,
}

pub fn run(env: &Env, args: ListArgs) -> Result<ExitCode> {
    let config = env.config()?;
    if args.remote {
        let Some(c) = &config else {
            anyhow::bail!(
                "this machine is not connected to a sync repository yet: run `ccsync init` (or `ccsync sync`)"
            );
        };
        return super::resume::list_remote(
            env,
            c,
            args.all,
            args.from.as_deref(),
            args.format == Format::Json,
        );
    }
    let cache = env.home.state_dir().join("catalog.json");
    let catalog = catalog::load(&env.claude, Some(&cache))?;
    for (path, why) in &catalog.unreadable {
        tracing::warn!("skipped unreadable transcript {}: {why}", path.display());
    }
    let machine = config
        .as_ref()
        .map(|c| c.machine_id.clone())
        .unwrap_or_else(crate::os::hostname);
    let mut entries: Vec<&Entry> = catalog
        .entries
        .iter()
        .filter(|e| match (&config, args.all) {
            (Some(c), false) => e.meta.cwd.as_deref().is_some_and(|cwd| c.in_sync_dirs(cwd)),
            _ => true,
        })
        .collect();
    entries.sort_by(|a, b| {
        b.meta
            .last_activity
            .cmp(&a.meta.last_activity)
            .then_with(|| a.session.id.cmp(&b.session.id))
    });
    let hidden = catalog.entries.len() - entries.len();

    let locks = crate::sync::remote::cached_locks(&env.home.state_dir().join("remote-meta.json"));
    if args.format == Format::Json {
        let rows: Vec<ListedSession> = entries
            .iter()
            .map(|e| ListedSession {
                session_id: e.session.id.clone(),
                project_path: e.meta.cwd.clone(),
                title: e.meta.title().map(str::to_string),
                first_activity: e.meta.first_activity.map(rfc3339),
                last_activity: e.meta.last_activity.map(rfc3339),
                size_bytes: e.session.size,
                lines: e.meta.lines,
                malformed_lines: e.meta.malformed,
                subagents: e.session.subagent_count(),
                machine: machine.clone(),
                locked_by: locks.get(&e.session.id).cloned(),
            })
            .collect();
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }

    if entries.is_empty() {
        if !env.quiet {
            eprintln!("No sessions found in {}.", env.claude.projects().display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let home = config
        .as_ref()
        .and_then(|c| c.placeholders.get("HOME").cloned())
        .or_else(|| crate::os::home_dir().map(|h| h.to_string_lossy().into_owned()));
    let now = Utc::now();
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                short_id(&e.session.id),
                e.meta
                    .cwd
                    .as_deref()
                    .map(|c| tilde(c, home.as_deref()))
                    .unwrap_or_else(|| "?".into()),
                relative_age(e.meta.last_activity, now),
                human_size(e.session.size),
                e.meta.title().unwrap_or("(no prompt)").to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            &["ID", "PROJECT", "LAST", "SIZE", "TITLE"],
            &rows,
            table_width()
        )
    );
    if hidden > 0 && !env.quiet {
        eprintln!("({hidden} sessions outside the sync directories are hidden; --all shows them)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Lay out five columns (id, project, age, a short fourth, title) in `total` terminal columns
/// (unlimited when `None`): the project column gets at most two fifths of what is left, the title
/// the rest. A fourth column called SIZE is right-aligned.
pub fn render_table(headers: &[&str; 5], rows: &[[String; 5]], total: Option<usize>) -> String {
    let right = headers[3] == "SIZE";
    let natural = |c: usize| {
        rows.iter()
            .map(|r| width(&r[c]))
            .chain([width(headers[c])])
            .max()
            .unwrap_or(0)
    };
    let (w_id, w_last, w_size) = (natural(0), natural(2), natural(3));
    let mut w_proj = natural(1);
    let mut w_title = natural(4);
    if let Some(total) = total {
        let fixed = w_id + w_last + w_size + 2 * 4;
        let left = total.saturating_sub(fixed);
        w_proj = w_proj.min((left * 2 / 5).max(10));
        w_title = left.saturating_sub(w_proj).max(5);
    }
    let mut out = String::new();
    let line = |cells: [&str; 5]| -> String {
        let fourth = if right {
            format!("{:>w_size$}", cells[3])
        } else {
            pad(cells[3], w_size)
        };
        let s = format!(
            "{}  {}  {}  {}  {}",
            pad(cells[0], w_id),
            pad(&truncate_left(cells[1], w_proj), w_proj),
            pad(cells[2], w_last),
            fourth,
            truncate(cells[4], w_title),
        );
        format!("{}\n", s.trim_end())
    };
    out.push_str(&line(*headers));
    for r in rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_fits_80_columns_with_wide_characters() {
        let rows = vec![
            [
                "0123abcd".into(),
                "~/projects/a-very-long-project-name/services/worker".into(),
                "5m ago".into(),
                "1.2M".into(),
                "プロジェクトの概要を知っていますか？ and a long English tail that goes on".into(),
            ],
            [
                "ffff0000".into(),
                "~/p".into(),
                "2026-09-01".into(),
                "12K".into(),
                "short".into(),
            ],
        ];
        let t = render_table(&["ID", "PROJECT", "LAST", "SIZE", "TITLE"], &rows, Some(80));
        for l in t.lines() {
            assert!(width(l) <= 80, "{l:?} is {} wide", width(l));
        }
        assert!(t.contains("short"));
        assert!(t.lines().nth(1).unwrap().contains('…'));
        let unlimited = render_table(&["ID", "PROJECT", "LAST", "SIZE", "TITLE"], &rows, None);
        assert!(unlimited.contains("goes on"));
    }
}
