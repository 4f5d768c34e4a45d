//! Full-text search across the archive: every session of every machine, newest hit first.
//!
//! No index: each session's file (local, or the cached copy of a stored one) is scanned raw
//! with one compiled pattern (SIMD literal search), and only the lines that match are parsed —
//! where the hit must fall in what people read (message text, tool input or output), not in
//! ids or metadata. Sessions are scanned in parallel.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::Serialize;

use super::render::{Block, Role, Turn};
use super::{Archive, Session};
use crate::sync::lines::{Chunk, HUGE_LINE, for_each_chunk};

/// How letter case is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Case {
    /// Insensitive unless the query has an upper-case letter (ripgrep's smart case).
    #[default]
    Smart,
    Sensitive,
    Insensitive,
}

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub pattern: String,
    pub regex: bool,
    pub case: Case,
}

/// Which hits count.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Part of the project directory (this machine's form).
    pub project: Option<String>,
    pub machine: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub role: Option<Role>,
    /// Only sessions whose tool calls touched a path containing this.
    pub files: Option<String>,
}

/// One matching turn.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub session_id: String,
    pub title: Option<String>,
    pub project: Option<String>,
    pub machine: String,
    pub time: Option<DateTime<Utc>>,
    pub role: Role,
    /// The text around the first match in the turn.
    pub snippet: String,
    /// Byte ranges of the matches in `snippet`.
    pub highlights: Vec<(usize, usize)>,
    /// Where the session's lines are read from.
    #[serde(skip)]
    pub file: PathBuf,
}

/// The matchers of a query: one over raw JSON lines (a prefilter), one over the text.
struct Matcher {
    raw: regex::bytes::Regex,
    text: regex::Regex,
}

impl Matcher {
    fn new(q: &Query) -> Result<Matcher> {
        if q.pattern.is_empty() {
            return Err(anyhow!("the search query is empty"));
        }
        let insensitive = match q.case {
            Case::Sensitive => false,
            Case::Insensitive => true,
            Case::Smart => !q.pattern.chars().any(char::is_uppercase),
        };
        let flag = if insensitive { "(?i)" } else { "" };
        let (raw, text) = if q.regex {
            (q.pattern.clone(), q.pattern.clone())
        } else {
            // In the raw line, text is JSON-escaped (quotes, backslashes, newlines).
            let escaped = serde_json::to_string(&q.pattern)
                .map_err(|e| anyhow!("cannot search for {:?}: {e}", q.pattern))?;
            let escaped = &escaped[1..escaped.len() - 1];
            (regex::escape(escaped), regex::escape(&q.pattern))
        };
        let bad = |e: regex::Error| anyhow!("not a valid regular expression: {e}");
        Ok(Matcher {
            raw: regex::bytes::RegexBuilder::new(&format!("{flag}{raw}"))
                .unicode(true)
                .build()
                .map_err(bad)?,
            text: regex::Regex::new(&format!("{flag}{text}")).map_err(bad)?,
        })
    }
}

/// Search the archive; hits newest first, at most `limit`.
pub fn search(
    archive: &Archive<'_>,
    query: &Query,
    filters: &Filters,
    limit: usize,
) -> Result<Vec<Hit>> {
    let m = Matcher::new(query)?;
    let project = filters.project.as_deref().map(str::to_lowercase);
    let candidates: Vec<&Session> = archive
        .sessions
        .iter()
        .filter(|s| {
            project.as_deref().is_none_or(|p| {
                s.cwd
                    .as_deref()
                    .or(s.portable_cwd.as_deref())
                    .is_some_and(|c| c.to_lowercase().contains(p))
            })
        })
        .filter(|s| filters.machine.as_deref().is_none_or(|m| s.machine == m))
        .filter(|s| {
            filters
                .since
                .is_none_or(|t| s.last_activity.is_none_or(|l| l >= t))
        })
        .filter(|s| {
            filters
                .until
                .is_none_or(|t| s.first_activity.is_none_or(|f| f <= t))
        })
        .collect();
    // Newest sessions first, a batch at a time in parallel; once `limit` hits are newer than
    // anything the remaining sessions hold, the rest cannot make the list.
    let mut hits: Vec<Hit> = Vec::new();
    let batch = rayon::current_num_threads().max(1) * 8;
    for (i, group) in candidates.chunks(batch).enumerate() {
        if hits.len() >= limit {
            let newest_left = group.iter().filter_map(|s| s.last_activity).max();
            let kth = hits.get(limit - 1).and_then(|h| h.time);
            if let (Some(left), Some(kth)) = (newest_left, kth)
                && kth > left
            {
                tracing::debug!("search stopped after {} sessions", i * batch);
                break;
            }
        }
        // Stored sessions are copied to the cache first (one git reader at a time).
        let mut files = Vec::with_capacity(group.len());
        for s in group {
            match archive.file(&s.transcript) {
                Ok(f) => files.push((*s, f)),
                Err(e) => tracing::warn!("cannot read session {}: {e:#}", s.id),
            }
        }
        let found: Vec<Vec<Hit>> = files
            .par_iter()
            .map(|(s, file)| scan_session(s, file, &m, filters))
            .collect::<Result<_>>()?;
        hits.extend(found.into_iter().flatten());
        hits.sort_by(|a, b| {
            b.time
                .cmp(&a.time)
                .then_with(|| a.session_id.cmp(&b.session_id))
        });
    }
    hits.truncate(limit);
    Ok(hits)
}

fn scan_session(s: &Session, file: &PathBuf, m: &Matcher, f: &Filters) -> Result<Vec<Hit>> {
    let mut hits = Vec::new();
    let mut touched = f.files.is_none();
    let mut fh = match std::fs::File::open(file) {
        Ok(fh) => fh,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(hits),
        Err(e) => return Err(crate::os::errors::path_error(e, "read", file).into()),
    };
    let size = fh
        .metadata()
        .map_err(|e| crate::os::errors::path_error(e, "read", file))?
        .len();
    let mut on_line = |line: &[u8]| {
        let Some(turn) = Turn::of_line(line) else {
            return;
        };
        if f.role.is_some_and(|r| r != turn.role)
            || f.since.is_some_and(|t| turn.time.is_some_and(|x| x < t))
            || f.until.is_some_and(|t| turn.time.is_some_and(|x| x > t))
        {
            return;
        }
        for text in turn.texts() {
            if let Some(found) = m.text.find(text) {
                let (snippet, highlights) = snippet(text, found.start(), found.end(), &m.text);
                hits.push(Hit {
                    session_id: s.id.clone(),
                    title: s.title.clone(),
                    project: s.cwd.clone().or_else(|| s.portable_cwd.clone()),
                    machine: s.machine.clone(),
                    time: turn.time,
                    role: turn.role,
                    snippet,
                    highlights,
                    file: file.clone(),
                });
                break;
            }
        }
    };
    let files_filter = f.files.as_deref();
    for_each_chunk(&mut fh, file, 0, size, 4 << 20, HUGE_LINE, |c| {
        if let Chunk::Lines(chunk, _) = c {
            let mut last_line_end = 0;
            for found in m.raw.find_iter(chunk) {
                if found.start() < last_line_end {
                    continue;
                }
                let start = memchr::memrchr(b'\n', &chunk[..found.start()]).map_or(0, |i| i + 1);
                let end = memchr::memchr(b'\n', &chunk[found.start()..])
                    .map_or(chunk.len(), |i| found.start() + i);
                on_line(&chunk[start..end]);
                last_line_end = end + 1;
            }
            if let Some(p) = files_filter
                && !touched
            {
                // Lines naming the path are read for the --files check.
                for at in memchr::memmem::find_iter(chunk, p.as_bytes()) {
                    let start = memchr::memrchr(b'\n', &chunk[..at]).map_or(0, |i| i + 1);
                    let end = memchr::memchr(b'\n', &chunk[at..]).map_or(chunk.len(), |i| at + i);
                    let line = &chunk[start..end];
                    if let Some(turn) = Turn::of_line(line)
                        && turn
                            .blocks
                            .iter()
                            .any(|b| matches!(b, Block::ToolUse { input, .. } if input.contains(p)))
                    {
                        touched = true;
                        break;
                    }
                }
            }
        }
        // Lines over 8 MiB are tool output, not read for search.
        Ok(())
    })?;
    if !touched {
        hits.clear();
    }
    Ok(hits)
}

/// About 160 characters of `text` around a match, and the matches in it.
fn snippet(
    text: &str,
    start: usize,
    end: usize,
    re: &regex::Regex,
) -> (String, Vec<(usize, usize)>) {
    let floor = |mut i: usize| {
        while i > 0 && !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let ceil = |mut i: usize| {
        while i < text.len() && !text.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    let from = floor(start.saturating_sub(60));
    let to = ceil((end + 100).min(text.len()));
    let raw = &text[from..to];
    // One line: newlines and tabs become spaces (same byte length, so ranges hold).
    let mut out: String = raw
        .chars()
        .map(|c| {
            if c == '\n' || c == '\t' || c == '\r' {
                ' '
            } else {
                c
            }
        })
        .collect();
    let highlights: Vec<(usize, usize)> =
        re.find_iter(&out).map(|m| (m.start(), m.end())).collect();
    if from > 0 {
        out.insert(0, '…');
    }
    if to < text.len() {
        out.push('…');
    }
    let shift = if from > 0 { '…'.len_utf8() } else { 0 };
    let highlights: Vec<(usize, usize)> = highlights
        .into_iter()
        .map(|(a, b): (usize, usize)| (a + shift, b + shift))
        .collect();
    (out, highlights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_case_and_json_escapes() {
        let q = |p: &str, regex: bool| {
            Matcher::new(&Query {
                pattern: p.into(),
                regex,
                case: Case::Smart,
            })
            .unwrap()
        };
        let line = br#"{"message":{"content":"Fix the \"Parser\" bug\nnow"}}"#;
        assert!(q("parser", false).raw.is_match(line));
        assert!(!q("parsER", false).raw.is_match(line));
        assert!(q("\"Parser\" bug\nnow", false).raw.is_match(line));
        assert!(q("pars(er|ing)", true).raw.is_match(line));
        assert!(
            Matcher::new(&Query {
                pattern: "(".into(),
                regex: true,
                case: Case::Smart
            })
            .is_err()
        );
    }

    #[test]
    fn snippets_are_one_line_with_the_match_highlighted() {
        let re = regex::Regex::new("(?i)needle").unwrap();
        let text = format!(
            "{}\nfound the Needle here\n{}",
            "é".repeat(100),
            "x".repeat(300)
        );
        let at = text.find("Needle").unwrap();
        let (s, h) = snippet(&text, at, at + 6, &re);
        assert!(!s.contains('\n'));
        assert!(s.starts_with('…') && s.ends_with('…'));
        assert_eq!(&s[h[0].0..h[0].1], "Needle");
    }
}
