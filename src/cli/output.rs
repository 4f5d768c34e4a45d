//! Shared output helpers: error lines, JSON printing, tables.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

/// An error and its causes on one line: `what: why: deeper why`.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// The width to lay tables out in: the terminal's, else `$COLUMNS`, else unlimited.
pub fn table_width() -> Option<usize> {
    crate::os::terminal_width()
        .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()))
        .filter(|w| *w >= 20)
}
