//! `relocate OLD NEW`: a project directory was moved or renamed. Its sessions, memory and
//! prompt-history entries follow, on this machine and — through the next push, one
//! compare-and-swap commit — on every machine.
//!
//! A session is moved the way Claude Code's own `/cd` moves one: a `relocated` line
//! (`{"type":"relocated","relocatedCwd":NEW,"sessionId":ID}`) is appended and the files go to
//! the project folder of the new directory. Every machine then places the session under its own
//! spelling of NEW (the line is mapped through placeholders like any path), and the client
//! itself reads the line as the session's directory. Memory files move to the new directory's
//! memory folder; history entries of the old directory are added again for the new one (the
//! old ones stay: nothing is ever removed from a log).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::Engine;
use super::state::Index;
use crate::claude::naming;
use crate::config::path_is_under;
use crate::os::IoAt;

/// What a relocation did (or, in a dry run, would do).
#[derive(Debug, Default, Serialize)]
pub struct Relocated {
    pub dry_run: bool,
    /// Sessions moved: (id, new working directory).
    pub sessions: Vec<(String, String)>,
    /// Sessions left where they are because a Claude Code process has them open.
    pub live: Vec<String>,
    /// Memory files moved: (from, to).
    pub memory: Vec<(PathBuf, PathBuf)>,
    pub history_entries: usize,
}

/// `path` with its `old` prefix replaced by `new` (path boundaries respected), else `None`.
pub fn rebase(style: crate::paths::PathStyle, path: &str, old: &str, new: &str) -> Option<String> {
    if !path_is_under(style, path, old) {
        return None;
    }
    let old_trim = old.trim_end_matches(['/', '\\']);
    let rest = path.get(old_trim.len()..)?;
    let new_trim = new.trim_end_matches(['/', '\\']);
    let sep = style.separator();
    let rest: String = rest
        .chars()
        .map(|c| if c == '/' || c == '\\' { sep } else { c })
        .collect();
    Some(format!("{new_trim}{rest}"))
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The line Claude Code's `/cd` writes.
pub fn relocated_line(sid: &str, cwd: &str) -> Vec<u8> {
    format!(
        "{{\"type\":\"relocated\",\"relocatedCwd\":{},\"sessionId\":{}}}\n",
        json_str(cwd),
        json_str(sid)
    )
    .into_bytes()
}

/// Move this machine's sessions, memory and history entries of `old` (and below) to `new`.
/// Local only: the caller pushes afterwards.
pub fn relocate(engine: &Engine, old: &str, new: &str, dry_run: bool) -> Result<Relocated> {
    let style = engine.config.path_style;
    let norm = |p: &str, what: &str| {
        crate::paths::normalize_path(style, what, p)
            .map_err(|e| anyhow::anyhow!("{e}: give an absolute path"))
    };
    let old = norm(old, "OLD")?;
    let new = norm(new, "NEW")?;
    if path_is_under(style, &new, &old) || path_is_under(style, &old, &new) {
        bail!("{new} and {old} contain one another: relocate to a separate directory");
    }
    let mut out = Relocated {
        dry_run,
        ..Relocated::default()
    };
    let mut index = Index::load(engine.home, &engine.config.remote);
    let cat = crate::catalog::load(
        engine.claude,
        Some(&engine.home.state_dir().join("catalog.json")),
    )?;
    let live = crate::claude::live::live_ids(engine.claude);
    // Claude Code records realpaths: a session of OLD may be filed under OLD's realpath.
    let old_real = naming::client_path(&old);
    let mut roots: Vec<(String, String)> = Vec::new();
    for e in &cat.entries {
        let Some(cwd) = e.meta.effective_cwd() else {
            continue;
        };
        let Some(to) =
            rebase(style, cwd, &old, &new).or_else(|| rebase(style, cwd, &old_real, &new))
        else {
            continue;
        };
        if live.contains(&e.session.id) {
            out.live.push(e.session.id.clone());
            continue;
        }
        out.sessions.push((e.session.id.clone(), to.clone()));
        if let Some(r) = naming::git_root(Path::new(&naming::client_path(cwd))) {
            let r = r.to_string_lossy().into_owned();
            if let Some(t) =
                rebase(style, &r, &old, &new).or_else(|| rebase(style, &r, &old_real, &new))
            {
                roots.push((r, t));
            }
        }
        if dry_run {
            continue;
        }
        super::append_lines(&e.session.transcript, &[relocated_line(&e.session.id, &to)])?;
        let target = naming::session_file(engine.claude, &to, &e.session.id)?;
        super::place::move_session(engine.claude, &e.session, &target, &mut index)?;
    }
    // Memory: the folders of OLD itself, of git roots below it, and of directories an earlier
    // sync recorded.
    roots.push((old.clone(), new.clone()));
    for (folder, portable) in &index.projects {
        if let Ok(local) = engine.mapper.local_path(portable)
            && let Some(t) = rebase(style, &local, &old, &new)
            && naming::project_folder_name(&local) == *folder
        {
            roots.push((local, t));
        }
    }
    roots.sort();
    roots.dedup();
    for (from_dir, to_dir) in &roots {
        let from = naming::project_folder(engine.claude, from_dir).join("memory");
        let to = naming::project_folder(engine.claude, to_dir).join("memory");
        if from == to || !from.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        crate::claude::discover::walk_files(&from, "", &mut files)
            .with_context(|| format!("cannot list {}", from.display()))?;
        for f in files {
            let mut dest = to.clone();
            for c in f.rel.split('/') {
                dest.push(c);
            }
            if dest.exists() {
                // Both directories have this memory file: keep both.
                let mut other = dest.as_os_str().to_owned();
                other.push(".from-old-path");
                dest = PathBuf::from(other);
            }
            if !dry_run {
                if let Some(d) = dest.parent() {
                    std::fs::create_dir_all(d).at("create the folder", d)?;
                }
                std::fs::rename(&f.path, &dest).with_context(|| {
                    format!("cannot move {} to {}", f.path.display(), dest.display())
                })?;
            }
            out.memory.push((f.path, dest));
        }
    }
    out.history_entries = relocate_history(engine, &old, &new, dry_run)?;
    if !dry_run {
        index.save(engine.home)?;
    }
    Ok(out)
}

/// Add copies of the history entries of `old` (and below) for `new`; returns how many.
fn relocate_history(engine: &Engine, old: &str, new: &str, dry_run: bool) -> Result<usize> {
    let path = engine.claude.history();
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let style = engine.config.path_style;
    let mut add = Vec::new();
    let mut n = 0;
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let Some(to) = v
            .get("project")
            .and_then(|p| p.as_str())
            .and_then(|p| rebase(style, p, old, new))
        else {
            continue;
        };
        v["project"] = serde_json::Value::String(to);
        add.extend_from_slice(serde_json::to_string(&v)?.as_bytes());
        add.push(b'\n');
        n += 1;
    }
    if n > 0 && !dry_run {
        if !data.ends_with(b"\n") {
            add.insert(0, b'\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // One write: Claude Code may be appending to the same file.
        f.write_all(&add)
            .with_context(|| format!("cannot append to {}", path.display()))?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::PathStyle;

    #[test]
    fn rebase_respects_path_boundaries_and_separators() {
        let p = PathStyle::Posix;
        assert_eq!(
            rebase(p, "/home/a/app/src", "/home/a/app", "/home/a/app2").as_deref(),
            Some("/home/a/app2/src")
        );
        assert_eq!(
            rebase(p, "/home/a/app", "/home/a/app/", "/x").as_deref(),
            Some("/x")
        );
        assert_eq!(rebase(p, "/home/a/apple", "/home/a/app", "/x"), None);
        let w = PathStyle::Windows;
        assert_eq!(
            rebase(
                w,
                "c:/Projects/app/src",
                "C:\\projects\\app",
                "D:\\work\\app"
            )
            .as_deref(),
            Some("D:\\work\\app\\src")
        );
    }

    #[test]
    fn the_relocated_line_is_the_clients() {
        assert_eq!(
            relocated_line("s1", "/x/y \"q\""),
            b"{\"type\":\"relocated\",\"relocatedCwd\":\"/x/y \\\"q\\\"\",\"sessionId\":\"s1\"}\n"
        );
    }
}
