//! Shared output helpers: error lines, JSON printing, tables.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

/// An error and its causes on one line: `what: why: deeper why`.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if parts.iter().any(|p| p.contains(&s)) {
            continue;
        }
        // "cannot write X" then "cannot write X: No space left…": say it once.
        if parts
            .last()
            .is_some_and(|last| s.starts_with(last.as_str()))
        {
            parts.pop();
        }
        parts.push(s);
    }
    let mut line = parts.join(": ");
    // A full disk the failing call did not explain (a git process, say): still say what to do.
    if crate::os::errors::disk_full_in(e) && !line.contains("free some space") {
        line.push_str(
            ". A disk is full: free some space on the file system holding the path above (or the \
             sync repository's clone in the ccsync home), then run the command again",
        );
    }
    line.replace('\n', " ")
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

/// A progress bar on stderr for long pushes and pulls (only on a terminal, only when the work is
/// large enough to be worth watching); while it lives, a network step that lasts more than a
/// moment shows git's progress on a status line instead.
pub struct TtyProgress {
    bars: std::sync::Arc<std::sync::Mutex<Bars>>,
    enabled: bool,
}

#[derive(Default)]
struct Bars {
    /// The local work (reading, writing transcripts).
    work: Option<indicatif::ProgressBar>,
    /// The transfer git is doing.
    transfer: Option<indicatif::ProgressBar>,
}

impl TtyProgress {
    pub fn new(quiet: bool) -> Self {
        let p = TtyProgress {
            bars: std::sync::Arc::default(),
            enabled: !quiet && crate::os::stderr_is_tty(),
        };
        if p.enabled {
            let bars = std::sync::Arc::clone(&p.bars);
            crate::store::git::show_transfers(Some(std::sync::Arc::new(
                move |line: Option<&str>| show_transfer(&bars, line),
            )));
        }
        p
    }
}

/// One status line for git's progress: it replaces the work bar (the work is done when git
/// sends or receives), and goes when the transfer ends.
fn show_transfer(bars: &std::sync::Mutex<Bars>, line: Option<&str>) {
    let Ok(mut b) = bars.lock() else { return };
    match line {
        Some(line) => {
            if let Some(work) = b.work.take() {
                work.finish_and_clear();
            }
            let bar = b.transfer.get_or_insert_with(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
                    bar.set_style(style);
                }
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            bar.set_message(line.to_string());
        }
        None => {
            if let Some(bar) = b.transfer.take() {
                bar.finish_and_clear();
            }
        }
    }
}

impl Drop for TtyProgress {
    fn drop(&mut self) {
        if self.enabled {
            crate::store::git::show_transfers(None);
        }
    }
}

impl crate::sync::Progress for TtyProgress {
    fn begin(&self, what: &str, total: u64) {
        if !self.enabled || total < 16 << 20 {
            return;
        }
        let bar = indicatif::ProgressBar::new(total);
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        if let Ok(mut b) = self.bars.lock() {
            b.work = Some(bar);
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(b) = self.bars.lock()
            && let Some(bar) = b.work.as_ref()
        {
            bar.inc(n);
        }
    }
    fn end(&self) {
        if let Ok(mut b) = self.bars.lock()
            && let Some(bar) = b.work.take()
        {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_say_a_path_once_and_what_to_do_about_a_full_disk() {
        let p = std::path::Path::new("/x/y.jsonl");
        let io = crate::os::errors::path_error(
            std::io::Error::from(std::io::ErrorKind::StorageFull),
            "write",
            p,
        );
        let e = anyhow::Error::from(io).context("cannot write /x/y.jsonl");
        let line = error_line(&e);
        assert_eq!(line.matches("cannot write /x/y.jsonl").count(), 1, "{line}");
        assert!(line.contains("free some space"), "{line}");
        // A full disk reported without a path still gets the sentence.
        // ENOSPC; ERROR_DISK_FULL on Windows.
        let enospc = if cfg!(windows) { 112 } else { 28 };
        let bare =
            anyhow::Error::from(std::io::Error::from_raw_os_error(enospc)).context("git failed");
        assert!(
            error_line(&bare).contains("free some space"),
            "{}",
            error_line(&bare)
        );
    }
}
