//! Live sessions: Claude Code keeps `sessions/<pid>.json` (`{pid, sessionId, cwd, startedAt,
//! procStart, …}`) while a process runs and deletes it on exit. A session is live when its file
//! names a pid that still exists and, where the start time of that pid can be read, the process
//! started when `procStart` says: otherwise the pid was reused by another program after a crash
//! left the file behind. This is the client's own test (`Tv`: no recorded or no readable start
//! time counts as a match).

use std::collections::HashSet;

use serde::Deserialize;

use super::ClaudeDir;

/// A Claude Code process that is running on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub pid: u32,
    pub session_id: String,
    pub cwd: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionFile {
    pid: Option<u32>,
    session_id: Option<String>,
    cwd: Option<String>,
    /// A string as the client writes it; a number is read as its decimal text.
    #[serde(default)]
    proc_start: Option<serde_json::Value>,
}

impl SessionFile {
    fn proc_start(&self) -> Option<String> {
        match self.proc_start.as_ref()? {
            serde_json::Value::String(s) => Some(s.trim().to_string()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
        .filter(|s| !s.is_empty())
    }
}

/// Whether `pid` is a running process that started at `proc_start` (when both are known).
fn is_live(pid: u32, proc_start: Option<&str>) -> bool {
    if !crate::os::pid_alive(pid) {
        return false;
    }
    match (proc_start, crate::os::process_start(pid)) {
        (Some(want), Some(now)) => want == now,
        _ => true,
    }
}

/// Every session a live Claude Code process on this machine has open. Unreadable or malformed
/// files are skipped.
pub fn live_sessions(claude: &ClaudeDir) -> Vec<LiveSession> {
    let Ok(rd) = std::fs::read_dir(claude.sessions_dir()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(f) = serde_json::from_slice::<SessionFile>(&bytes) else {
            continue;
        };
        let Some(pid) = f.pid.or_else(|| stem.parse().ok()) else {
            continue;
        };
        let proc_start = f.proc_start();
        let Some(session_id) = f.session_id else {
            continue;
        };
        if is_live(pid, proc_start.as_deref()) {
            out.push(LiveSession {
                pid,
                session_id,
                cwd: f.cwd,
            });
        }
    }
    out.sort_by_key(|l| l.pid);
    out
}

/// The ids of live sessions.
pub fn live_ids(claude: &ClaudeDir) -> HashSet<String> {
    live_sessions(claude)
        .into_iter()
        .map(|l| l.session_id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_file(claude: &ClaudeDir, pid: u32, body: &str) {
        std::fs::create_dir_all(claude.sessions_dir()).unwrap();
        std::fs::write(claude.sessions_dir().join(format!("{pid}.json")), body).unwrap();
    }

    #[test]
    fn only_sessions_of_living_processes_count() {
        let dir = tempfile::tempdir().unwrap();
        let claude = ClaudeDir::new(dir.path());
        let me = std::process::id();
        session_file(
            &claude,
            me,
            &format!(r#"{{"pid":{me},"sessionId":"alive-1","cwd":"/x","startedAt":1}}"#),
        );
        // A pid far above pid_max does not exist.
        session_file(
            &claude,
            2147483600,
            r#"{"pid":2147483600,"sessionId":"dead"}"#,
        );
        std::fs::write(claude.sessions_dir().join("junk.json"), b"{not json").unwrap();
        let live = live_sessions(&claude);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].session_id, "alive-1");
        assert_eq!(live[0].cwd.as_deref(), Some("/x"));
        assert!(live_ids(&claude).contains("alive-1"));
    }

    #[test]
    fn the_right_proc_start_is_live() {
        let dir = tempfile::tempdir().unwrap();
        let claude = ClaudeDir::new(dir.path());
        let me = std::process::id();
        let start = crate::os::process_start(me).unwrap_or_else(|| "whatever".into());
        session_file(
            &claude,
            me,
            &format!(
                r#"{{"pid":{me},"sessionId":"mine","cwd":"/x","startedAt":1,"procStart":"{start}","kind":"interactive","entrypoint":"cli"}}"#
            ),
        );
        assert_eq!(live_ids(&claude), HashSet::from(["mine".to_string()]));
    }

    #[test]
    fn a_reused_pid_is_not_live() {
        let dir = tempfile::tempdir().unwrap();
        let claude = ClaudeDir::new(dir.path());
        let me = std::process::id();
        // The pid exists, but the process that wrote the file started at another time.
        session_file(
            &claude,
            me,
            &format!(r#"{{"pid":{me},"sessionId":"stale","procStart":"1"}}"#),
        );
        let live = live_ids(&claude);
        if crate::os::process_start(me).is_some() {
            assert!(live.is_empty(), "{live:?}");
        } else {
            // Where the start time cannot be read, liveness alone decides (as the client does).
            assert!(live.contains("stale"));
        }
        // A numeric procStart is compared as text.
        if let Some(start) = crate::os::process_start(me) {
            session_file(
                &claude,
                me,
                &format!(r#"{{"pid":{me},"sessionId":"num","procStart":{start}}}"#),
            );
            assert!(live_ids(&claude).contains("num"));
        }
    }
}
