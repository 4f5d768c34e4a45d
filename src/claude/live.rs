//! Live sessions: Claude Code keeps `sessions/<pid>.json` (`{pid, sessionId, cwd, …}`) while a
//! process runs. A session is live when its file names a pid that still exists.

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
        let Some(session_id) = f.session_id else {
            continue;
        };
        if crate::os::pid_alive(pid) {
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

    #[test]
    fn only_sessions_of_living_processes_count() {
        let dir = tempfile::tempdir().unwrap();
        let claude = ClaudeDir::new(dir.path());
        std::fs::create_dir_all(claude.sessions_dir()).unwrap();
        let me = std::process::id();
        std::fs::write(
            claude.sessions_dir().join(format!("{me}.json")),
            format!(r#"{{"pid":{me},"sessionId":"alive-1","cwd":"/x","startedAt":1}}"#),
        )
        .unwrap();
        // A pid far above pid_max does not exist.
        std::fs::write(
            claude.sessions_dir().join("2147483600.json"),
            r#"{"pid":2147483600,"sessionId":"dead"}"#,
        )
        .unwrap();
        std::fs::write(claude.sessions_dir().join("junk.json"), b"{not json").unwrap();
        let live = live_sessions(&claude);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].session_id, "alive-1");
        assert_eq!(live[0].cwd.as_deref(), Some("/x"));
        assert!(live_ids(&claude).contains("alive-1"));
    }
}
