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
    /// Claude Code's own `/resume` picker does not list the session (ccsync still does).
    pub hidden_in_claude: bool,
    /// Why: `sidechain`, `-p` (`claude -p` or an SDK), `team`, `daemon` or `loop`.
    pub hidden_reason: Option<String>,
    /// How Claude Code was started (`cli`, `sdk-cli`, …).
    pub entrypoint: Option<String>,
    pub is_sidechain: bool,
    /// The directory `/cd` last moved the session to (Claude Code keeps it in that project).
    pub relocated_cwd: Option<String>,
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
                hidden_in_claude: e.meta.hidden_from_picker(),
                hidden_reason: e.meta.picker_hidden_reason().map(str::to_string),
                entrypoint: e.meta.entrypoint.clone(),
                is_sidechain: e.meta.is_sidechain,
                relocated_cwd: e.meta.relocated_cwd.clone(),
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
    let marked = entries.iter().any(|e| e.meta.hidden_from_picker());
    let rows: Vec<[String; 6]> = entries
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
                e.meta.picker_hidden_reason().unwrap_or("").to_string(),
                e.meta.title().unwrap_or("(no prompt)").to_string(),
            ]
        })
        .collect();
    let table = if marked {
        render_table(
            &["ID", "PROJECT", "LAST", "SIZE", "HIDDEN", "TITLE"],
            &rows,
            table_width(),
        )
    } else {
        // No column for a mark nobody has.
        let rows: Vec<[String; 5]> = rows
            .into_iter()
            .map(|[id, project, last, size, _, title]| [id, project, last, size, title])
            .collect();
        render_table(
            &["ID", "PROJECT", "LAST", "SIZE", "TITLE"],
            &rows,
            table_width(),
        )
    };
    print!("{table}");
    if marked && !env.quiet {
        eprintln!(
            "(HIDDEN: Claude Code's /resume does not list these; -p = started by `claude -p` or an SDK. `ccsync resume` still can.)"
        );
    }
    if hidden > 0 && !env.quiet {
        eprintln!("({hidden} sessions outside the sync directories are hidden; --all shows them)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Lay out `N` columns in `total` terminal columns (unlimited when `None`): the first (an id)
/// and the middle ones keep their natural width, the second (a project) gets at most two fifths
/// of what is left and is cut on the left, the last (a title) gets the rest. A column called
/// SIZE is right-aligned.
pub fn render_table<const N: usize>(
    headers: &[&str; N],
    rows: &[[String; N]],
    total: Option<usize>,
) -> String {
    let natural = |c: usize| {
        rows.iter()
            .map(|r| width(&r[c]))
            .chain([width(headers[c])])
            .max()
            .unwrap_or(0)
    };
    let mut w: Vec<usize> = (0..N).map(natural).collect();
    let last = N.saturating_sub(1);
    if N >= 3
        && let Some(total) = total
    {
        let fixed = (0..N)
            .filter(|&c| c != 1 && c != last)
            .map(|c| w[c])
            .sum::<usize>()
            + 2 * (N - 1);
        let left = total.saturating_sub(fixed);
        w[1] = w[1].min((left * 2 / 5).max(10));
        w[last] = left.saturating_sub(w[1]).max(5);
    }
    let line = |cells: [&str; N]| -> String {
        let parts: Vec<String> = (0..N)
            .map(|c| {
                if c == last {
                    truncate(cells[c], w[c])
                } else if c == 1 {
                    pad(&truncate_left(cells[c], w[c]), w[c])
                } else if headers[c] == "SIZE" {
                    format!("{:>width$}", cells[c], width = w[c])
                } else {
                    pad(cells[c], w[c])
                }
            })
            .collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = line(*headers);
    for r in rows {
        out.push_str(&line(std::array::from_fn(|c| r[c].as_str())));
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

    #[test]
    fn six_columns_with_a_mark() {
        let rows = vec![
            [
                "0123abcd".into(),
                "~/p".into(),
                "5m ago".into(),
                "12K".into(),
                "-p".into(),
                "summarize the logs".into(),
            ],
            [
                "ffff0000".into(),
                "~/q".into(),
                "1d ago".into(),
                "1.2M".into(),
                String::new(),
                "a normal one".into(),
            ],
        ];
        let t = render_table(
            &["ID", "PROJECT", "LAST", "SIZE", "HIDDEN", "TITLE"],
            &rows,
            Some(60),
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0], "ID        PROJECT  LAST    SIZE  HIDDEN  TITLE",
            "{t}"
        );
        assert_eq!(
            lines[1],
            "0123abcd  ~/p      5m ago   12K  -p      summarize the logs"
        );
        assert_eq!(
            lines[2],
            "ffff0000  ~/q      1d ago  1.2M          a normal one"
        );
    }
}
