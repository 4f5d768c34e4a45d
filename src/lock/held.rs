//! This machine's record of the sessions a running ccsync has handed to Claude Code
//! (`state/held/`), so that a ccsync killed while Claude Code ran can be cleaned up after: the
//! next `resume` or `update` finds the record of a dead ccsync, pushes the session and releases
//! its lock. The record names the processes; nothing here ever kills one.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Home;

/// One running (or abandoned) `resume`/`start`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Held {
    /// The session, when known (`start` learns it only after Claude Code created it).
    pub session_id: Option<String>,
    pub ccsync_pid: u32,
    /// Start time of the ccsync process (so a reused pid is not taken for it).
    #[serde(default)]
    pub ccsync_started: Option<u64>,
    #[serde(default)]
    pub claude_pid: Option<u32>,
    pub started_at: DateTime<Utc>,
    pub cwd: String,
    /// Whether a lock was taken for it.
    pub locked: bool,
    /// The session-end worker finishing a run the hooks recorded, while it works: its pid and
    /// start time. While it lives, nobody else pushes and releases for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<(u32, Option<u64>)>,
}

impl Held {
    /// Whether the ccsync process that wrote this record is gone (and no session-end worker is
    /// finishing it).
    pub fn abandoned(&self) -> bool {
        !crate::os::process_matches(self.ccsync_pid, self.ccsync_started)
            && !self
                .worker
                .is_some_and(|(pid, started)| crate::os::process_matches(pid, started))
    }

    /// Whether the Claude Code process it started still runs.
    pub fn claude_alive(&self) -> bool {
        self.claude_pid.is_some_and(crate::os::pid_alive)
    }
}

fn dir(home: &Home) -> PathBuf {
    home.state_dir().join("held")
}

/// Write a record; returns its path (removed with [`remove`] when done).
pub fn record(home: &Home, h: &Held) -> Result<PathBuf> {
    let d = dir(home);
    crate::os::create_private_dir(&d).with_context(|| format!("cannot create {}", d.display()))?;
    let p = d.join(format!(
        "{}-{}.json",
        h.ccsync_pid,
        h.session_id.as_deref().unwrap_or("new")
    ));
    crate::os::write_atomic(&p, &serde_json::to_vec_pretty(h)?, true)
        .with_context(|| format!("cannot write {}", p.display()))?;
    Ok(p)
}

/// Replace a record (same path) with new content.
pub fn update(path: &Path, h: &Held) -> Result<()> {
    crate::os::write_atomic(path, &serde_json::to_vec_pretty(h)?, true)
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// Every record, with its path.
pub fn all(home: &Home) -> Vec<(PathBuf, Held)> {
    let Ok(rd) = std::fs::read_dir(dir(home)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Held>(&b).ok())
        {
            Some(h) => out.push((p, h)),
            None => remove(&p),
        }
    }
    out.sort_by_key(|(_, h)| h.started_at);
    out
}

/// Records left by ccsync processes that are gone.
pub fn abandoned(home: &Home) -> Vec<(PathBuf, Held)> {
    all(home)
        .into_iter()
        .filter(|(_, h)| h.abandoned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_dead_processes_are_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let me = Held {
            session_id: Some("s1".into()),
            ccsync_pid: std::process::id(),
            ccsync_started: crate::os::process_start_time(std::process::id()),
            claude_pid: None,
            started_at: Utc::now(),
            cwd: "/x".into(),
            locked: true,
            worker: None,
        };
        let p = record(&home, &me).unwrap();
        let dead = Held {
            ccsync_pid: 2_147_483_000,
            session_id: Some("s2".into()),
            ..me.clone()
        };
        record(&home, &dead).unwrap();
        // Our own pid with another start time is a reused pid: abandoned too.
        let reused = Held {
            session_id: Some("s3".into()),
            ccsync_started: Some(1),
            ..me.clone()
        };
        record(&home, &reused).unwrap();
        // A hook's record (no ccsync process) that a live session-end worker is finishing.
        let working = Held {
            ccsync_pid: 0,
            ccsync_started: None,
            session_id: Some("s4".into()),
            worker: Some((
                std::process::id(),
                crate::os::process_start_time(std::process::id()),
            )),
            ..me.clone()
        };
        record(&home, &working).unwrap();
        // Its worker is gone.
        let unfinished = Held {
            session_id: Some("s5".into()),
            worker: Some((2_147_483_000, None)),
            ..working.clone()
        };
        record(&home, &unfinished).unwrap();
        assert_eq!(all(&home).len(), 5);
        let gone: Vec<Option<String>> = abandoned(&home)
            .into_iter()
            .map(|(_, h)| h.session_id)
            .collect();
        assert!(gone.contains(&Some("s2".into())));
        if crate::os::process_start_time(std::process::id()).is_some() {
            assert!(gone.contains(&Some("s3".into())));
        }
        assert!(!gone.contains(&Some("s1".into())));
        assert!(!gone.contains(&Some("s4".into())), "its worker runs");
        assert!(gone.contains(&Some("s5".into())));
        remove(&p);
        assert_eq!(all(&home).len(), 4);
    }
}
