//! Converting a repository written by the Python `claude-session-sync` 0.x into the ccsync
//! format, losing no session, memory file or placeholder.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::store::{Oid, Store};

/// What a migration converted.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MigrationReport {
    pub sessions: usize,
    pub memory_files: usize,
    pub placeholders: usize,
}

/// Whether the top-level names of a repository look like the Python tool's layout.
pub fn looks_legacy(top: &[&str]) -> bool {
    top.contains(&"session_meta")
        || top.contains(&"shared_config")
        || (top.contains(&"sessions") && !top.contains(&"ccsync.json"))
}

/// Convert the legacy repository at `head` in place (one compare-and-swap commit).
pub fn migrate(
    _store: &Store,
    _head: Option<&Oid>,
    _machine: &str,
    _timeout: Duration,
) -> Result<MigrationReport> {
    bail!(
        "this remote was written by the Python claude-session-sync; converting it is not supported by this build yet"
    )
}
