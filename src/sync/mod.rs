//! The sync engine: push, pull and merge, using the Claude Code model, the path mapper and the
//! store.

pub mod state;

use crate::catalog::Entry;
use crate::config::Home;

/// How many of these sessions changed since the last push (judged by modification time).
pub fn pending_sessions(home: &Home, entries: &[&Entry]) -> usize {
    let last = state::State::load_status(home)
        .last_push
        .map(|e| e.at.timestamp_nanos_opt().unwrap_or(0) as i128);
    entries
        .iter()
        .filter(|e| last.is_none_or(|t| e.session.mtime_ns > t))
        .count()
}
