//! Per-session facts read from a transcript by streaming only what is needed.
//!
//! One forward pass finds line boundaries with `memchr`; only the first lines (cwd, first
//! timestamp, first prompt) and title lines (`custom-title`, `summary`) are parsed, each through
//! the streaming [`TopScanner`], so a 20 MB line is read but never held. The last activity comes
//! from the last lines. Malformed lines are counted and skipped, never fatal.
//!
//! A result can be resumed: given the previous result for a file that has only grown, the scan
//! reads just the appended bytes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::jsonscan::{TopScanner, Want, decode_string_prefix};

/// Bump when the meaning of cached fields changes, so old caches are rescanned.
pub const META_VERSION: u32 = 2;

const CHUNK: usize = 256 * 1024;
const HEAD: usize = 512;
const TAIL_LINES: usize = 16;
/// Stop looking for the first prompt after this many parsed lines.
const HEAD_PHASE_MAX_LINES: u32 = 400;
const TITLE_MAX_CHARS: usize = 200;

/// What a transcript says about its session.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TranscriptMeta {
    pub version: u32,
    /// Bytes up to the end of the last complete line at scan time.
    pub scanned_len: u64,
    /// Size of the file at scan time (includes a trailing partial line).
    pub size: u64,
    /// Non-empty lines.
    pub lines: u64,
    /// Non-empty lines that are not JSON objects.
    pub malformed: u64,
    pub cwd: Option<String>,
    pub session_id: Option<String>,
    pub first_activity: Option<DateTime<Utc>>,
    pub last_activity: Option<DateTime<Utc>>,
    pub custom_title: Option<String>,
    pub first_prompt: Option<String>,
    /// Title from the last `summary` line whose `leafUuid` is a line of this file.
    pub summary_title: Option<String>,
    /// `summary` lines whose leaf has not been found in this file yet: (summary, leafUuid).
    pub pending_summaries: Vec<(String, String)>,
    head_done: bool,
    head_lines: u32,
    /// FNV-1a hash of the (up to) 64 bytes before `scanned_len`, to detect a rewritten file.
    fingerprint: u64,
}

impl TranscriptMeta {
    /// The title a person sees: custom title, else a summary of this session, else the first
    /// real prompt.
    pub fn title(&self) -> Option<&str> {
        self.custom_title
            .as_deref()
            .or(self.summary_title.as_deref())
            .or(self.first_prompt.as_deref())
    }
}

static WANTS: &[Want] = &[
    Want {
        key: "type",
        cap: 64,
    },
    Want {
        key: "cwd",
        cap: 8192,
    },
    Want {
        key: "sessionId",
        cap: 256,
    },
    Want {
        key: "timestamp",
        cap: 64,
    },
    Want {
        key: "message",
        cap: 256 * 1024,
    },
    Want {
        key: "isMeta",
        cap: 8,
    },
    Want {
        key: "isCompactSummary",
        cap: 8,
    },
    Want {
        key: "customTitle",
        cap: 8192,
    },
    Want {
        key: "summary",
        cap: 8192,
    },
    Want {
        key: "leafUuid",
        cap: 256,
    },
];

static TS_WANTS: &[Want] = &[Want {
    key: "timestamp",
    cap: 64,
}];

/// Parse an RFC 3339 timestamp as Claude Code writes them.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn read_fingerprint(file: &mut File, end: u64) -> io::Result<u64> {
    let start = end.saturating_sub(64);
    let mut buf = vec![0u8; (end - start) as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut buf)?;
    Ok(fnv1a(&buf))
}

/// One line being read: its start, a copy of its head, and a scanner when it is parsed.
struct LineState {
    start: u64,
    len: u64,
    head: Vec<u8>,
    first_byte: Option<u8>,
    last_byte: Option<u8>,
    scanner: Option<TopScanner>,
}

impl LineState {
    fn new(start: u64, parse: bool) -> Self {
        LineState {
            start,
            len: 0,
            head: Vec::new(),
            first_byte: None,
            last_byte: None,
            scanner: parse.then(|| TopScanner::new(WANTS)),
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len() as u64;
        if self.head.len() < HEAD {
            let take = (HEAD - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
        }
        if self.first_byte.is_none() {
            self.first_byte = data.iter().copied().find(|b| !b.is_ascii_whitespace());
        }
        if let Some(&b) = data.iter().rev().find(|b| !b.is_ascii_whitespace()) {
            self.last_byte = Some(b);
        }
        if let Some(s) = &mut self.scanner {
            s.feed(data);
        }
    }
}

fn is_title_line(head: &[u8]) -> bool {
    memchr::memmem::find(head, br#""type":"custom-title""#).is_some()
        || memchr::memmem::find(head, br#""type":"summary""#).is_some()
}

/// Scan a transcript. With `prev` (an earlier result for the same path), only the bytes after
/// `prev.scanned_len` are read, provided the file still starts the same way.
pub fn scan(path: &Path, prev: Option<&TranscriptMeta>) -> io::Result<TranscriptMeta> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut meta = match prev {
        Some(p) if p.version == META_VERSION && p.scanned_len <= size && p.scanned_len > 0 => {
            if read_fingerprint(&mut file, p.scanned_len)? == p.fingerprint {
                p.clone()
            } else {
                TranscriptMeta::default()
            }
        }
        _ => TranscriptMeta::default(),
    };
    meta.version = META_VERSION;
    let from = meta.scanned_len;
    file.seek(SeekFrom::Start(from))?;

    let mut tail: VecDeque<(u64, u64)> = VecDeque::with_capacity(TAIL_LINES);
    let mut buf = vec![0u8; CHUNK];
    let mut offset = from;
    let mut line = LineState::new(offset, !meta.head_done);
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let data = &buf[..n];
        let mut pos = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            line.feed(&data[pos..nl]);
            let end = offset + nl as u64 + 1;
            finish_line(&mut meta, &mut line, &mut tail, &mut file)?;
            meta.scanned_len = end;
            line = LineState::new(end, !meta.head_done);
            pos = nl + 1;
        }
        line.feed(&data[pos..]);
        offset += n as u64;
    }
    // Everything up to `scanned_len` is settled; remember how that prefix ends.
    if meta.scanned_len > 0 {
        meta.fingerprint = read_fingerprint(&mut file, meta.scanned_len)?;
    }
    let mut result = if line.len > 0 {
        // A last line without a newline counts, but is re-read next time.
        let mut r = meta.clone();
        let mut t = tail.clone();
        finish_line(&mut r, &mut line, &mut t, &mut file)?;
        tail = t;
        r.scanned_len = meta.scanned_len;
        r.fingerprint = meta.fingerprint;
        r
    } else {
        meta
    };
    result.size = size;

    // Last activity: the newest of the last lines that carries a timestamp.
    for &(start, len) in tail.iter().rev() {
        if let Some(ts) = line_timestamp(&mut file, start, len)? {
            result.last_activity = Some(ts);
            break;
        }
    }
    if result.last_activity.is_none() {
        result.last_activity = result.first_activity;
    }
    resolve_summaries(&mut file, &mut result)?;
    Ok(result)
}

fn finish_line(
    meta: &mut TranscriptMeta,
    line: &mut LineState,
    tail: &mut VecDeque<(u64, u64)>,
    file: &mut File,
) -> io::Result<()> {
    if line.first_byte.is_none() {
        return Ok(()); // blank line
    }
    meta.lines += 1;
    let looks_like_object = line.first_byte == Some(b'{') && line.last_byte == Some(b'}');
    let mut scanner = line.scanner.take();
    if scanner.is_none() && looks_like_object && is_title_line(&line.head) {
        let mut s = TopScanner::new(WANTS);
        if line.len == line.head.len() as u64 {
            s.feed(&line.head);
        } else {
            // A long title line: read it again, then carry on where the pass was.
            let resume = file.stream_position()?;
            stream_line(file, line.start, line.len, &mut s)?;
            file.seek(SeekFrom::Start(resume))?;
        }
        scanner = Some(s);
    }
    let parsed_ok = scanner.as_ref().is_none_or(|s| s.done() && s.valid());
    if !looks_like_object || !parsed_ok {
        meta.malformed += 1;
        if !meta.head_done {
            meta.head_lines += 1;
        }
        return Ok(());
    }
    if tail.len() == TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back((line.start, line.len));
    if let Some(s) = scanner {
        apply_parsed(meta, &s);
    }
    Ok(())
}

/// Feed the bytes `[start, start+len)` of a file to a scanner, stopping early once it is done.
fn stream_line(file: &mut File, start: u64, len: u64, scanner: &mut TopScanner) -> io::Result<()> {
    file.seek(SeekFrom::Start(start))?;
    let mut left = len;
    let mut buf = vec![0u8; CHUNK.min(len as usize).max(1)];
    while left > 0 && !scanner.done() {
        let want = (left as usize).min(buf.len());
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        scanner.feed(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

fn apply_parsed(meta: &mut TranscriptMeta, s: &TopScanner) {
    let kind = s.get_str("type");
    if !meta.head_done {
        meta.head_lines += 1;
        if meta.cwd.is_none() {
            meta.cwd = s.get_str("cwd").filter(|c| !c.is_empty());
        }
        if meta.session_id.is_none() {
            meta.session_id = s.get_str("sessionId");
        }
        if meta.first_activity.is_none() {
            meta.first_activity = s.get_str("timestamp").as_deref().and_then(parse_timestamp);
        }
        let is_flag = |k: &str| s.get(k).is_some_and(|c| c.raw == b"true");
        if meta.first_prompt.is_none()
            && kind.as_deref() == Some("user")
            && !is_flag("isMeta")
            && !is_flag("isCompactSummary")
            && let Some(m) = s.get("message")
        {
            meta.first_prompt = prompt_from_message(&m.raw, m.truncated);
        }
        let complete =
            meta.cwd.is_some() && meta.first_activity.is_some() && meta.first_prompt.is_some();
        if complete || meta.head_lines >= HEAD_PHASE_MAX_LINES {
            meta.head_done = true;
        }
    }
    match kind.as_deref() {
        Some("custom-title") => {
            if let Some(t) = s
                .get_str("customTitle")
                .map(|t| one_line(&t))
                .filter(|t| !t.is_empty())
            {
                meta.custom_title = Some(t);
            }
        }
        Some("summary") => {
            if let (Some(sum), Some(leaf)) = (s.get_str("summary"), s.get_str("leafUuid")) {
                let sum = one_line(&sum);
                if !sum.is_empty() {
                    meta.pending_summaries.push((sum, leaf));
                }
            }
        }
        _ => {}
    }
}

/// The first line of a user prompt, or `None` when the message is not a typed prompt
/// (tool results, command wrappers, interruptions).
fn prompt_from_message(raw: &[u8], truncated: bool) -> Option<String> {
    let text = if !truncated {
        let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
        let content = v.get("content")?;
        match content {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => {
                if items
                    .iter()
                    .any(|i| i.get("type").and_then(|t| t.as_str()) == Some("tool_result"))
                {
                    return None;
                }
                items
                    .iter()
                    .find(|i| i.get("type").and_then(|t| t.as_str()) == Some("text"))
                    .and_then(|i| i.get("text"))
                    .and_then(|t| t.as_str())?
                    .to_string()
            }
            _ => return None,
        }
    } else {
        // Cut off: take the beginning of the first text we can see.
        let at = memchr::memmem::find(raw, br#""content":"#)?;
        let rest = &raw[at + 10..];
        let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
        if rest.first() == Some(&b'"') {
            decode_string_prefix(rest)
        } else {
            if memchr::memmem::find(rest, br#""tool_result""#).is_some() {
                return None;
            }
            let t = memchr::memmem::find(rest, br#""text":"#)?;
            decode_string_prefix(rest[t + 7..].trim_ascii_start())
        }
    };
    let trimmed = text.trim_start();
    const NOISE: &[&str] = &[
        "<command-",
        "<local-command",
        "<system-reminder>",
        "<bash-",
        "Caveat: ",
        "[Request interrupted",
    ];
    if NOISE.iter().any(|n| trimmed.starts_with(n)) {
        return None;
    }
    let t = one_line(trimmed);
    (!t.is_empty()).then_some(t)
}

/// First non-empty line, trimmed, at most [`TITLE_MAX_CHARS`] characters.
fn one_line(s: &str) -> String {
    let line = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut out: String = line
        .chars()
        .filter(|c| !c.is_control())
        .take(TITLE_MAX_CHARS)
        .collect();
    if line.chars().count() > TITLE_MAX_CHARS {
        out.push('…');
    }
    out
}

fn line_timestamp(file: &mut File, start: u64, len: u64) -> io::Result<Option<DateTime<Utc>>> {
    let mut scanner = TopScanner::new(TS_WANTS);
    stream_line(file, start, len, &mut scanner)?;
    Ok(scanner
        .get_str("timestamp")
        .as_deref()
        .and_then(parse_timestamp))
}

/// Settle pending summaries: a summary names this session only when its leaf is a line here.
fn resolve_summaries(file: &mut File, meta: &mut TranscriptMeta) -> io::Result<()> {
    if meta.pending_summaries.is_empty() {
        return Ok(());
    }
    let needles: Vec<Vec<u8>> = meta
        .pending_summaries
        .iter()
        .map(|(_, leaf)| format!(r#""uuid":"{leaf}""#).into_bytes())
        .collect();
    let mut found = vec![false; needles.len()];
    let overlap = needles.iter().map(Vec::len).max().unwrap_or(0);
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; CHUNK + overlap];
    let mut kept = 0usize;
    loop {
        let n = file.read(&mut buf[kept..])?;
        if n == 0 {
            break;
        }
        let hay = &buf[..kept + n];
        for (i, nd) in needles.iter().enumerate() {
            if !found[i] && memchr::memmem::find(hay, nd).is_some() {
                found[i] = true;
            }
        }
        if found.iter().all(|f| *f) {
            break;
        }
        let keep = overlap.min(hay.len());
        let total = hay.len();
        buf.copy_within(total - keep..total, 0);
        kept = keep;
    }
    let mut still = Vec::new();
    for ((sum, leaf), f) in meta.pending_summaries.drain(..).zip(found) {
        if f {
            meta.summary_title = Some(sum);
        } else {
            still.push((sum, leaf));
        }
    }
    meta.pending_summaries = still;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn user(uuid: &str, ts: &str, content: &str) -> String {
        format!(
            r#"{{"parentUuid":null,"cwd":"/home/a/my_app","sessionId":"s1","type":"user","message":{{"role":"user","content":{}}},"uuid":"{uuid}","timestamp":"{ts}"}}"#,
            serde_json::to_string(content).unwrap()
        )
    }

    fn write(dir: &Path, name: &str, text: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_cwd_title_times_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let text = [
            r#"{"type":"system","subtype":"x","cwd":"/home/a/my_app","timestamp":"2026-01-01T00:00:00.000Z","uuid":"u0"}"#.to_string(),
            user("u1", "2026-01-01T00:00:01.000Z", "  \n  Fix the parser\nplease"),
            "not json at all".to_string(),
            r#"{"type":"assistant","uuid":"u2","timestamp":"2026-01-01T00:05:00.000Z","message":{}}"#.to_string(),
            r#"{"type":"summary","summary":"Other session","leafUuid":"elsewhere"}"#.to_string(),
        ]
        .join("\n")
            + "\n";
        let p = write(dir.path(), "s.jsonl", text.as_bytes());
        let m = scan(&p, None).unwrap();
        assert_eq!(m.cwd.as_deref(), Some("/home/a/my_app"));
        assert_eq!(m.first_prompt.as_deref(), Some("Fix the parser"));
        assert_eq!(
            m.title(),
            Some("Fix the parser"),
            "a summary of another session is not our title"
        );
        assert_eq!(m.lines, 5);
        assert_eq!(m.malformed, 1);
        assert_eq!(m.first_activity, parse_timestamp("2026-01-01T00:00:00Z"));
        assert_eq!(m.last_activity, parse_timestamp("2026-01-01T00:05:00Z"));
        assert_eq!(m.size, text.len() as u64);
    }

    #[test]
    fn title_precedence_custom_then_summary_then_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = [
            user("u1", "2026-01-01T00:00:01.000Z", "first prompt"),
            r#"{"type":"summary","summary":"Parser work","leafUuid":"u1"}"#.to_string(),
        ]
        .join("\n");
        text.push('\n');
        let p = write(dir.path(), "s.jsonl", text.as_bytes());
        assert_eq!(scan(&p, None).unwrap().title(), Some("Parser work"));
        text.push_str(r#"{"type":"custom-title","customTitle":"My title","sessionId":"s1"}"#);
        text.push('\n');
        std::fs::write(&p, &text).unwrap();
        assert_eq!(scan(&p, None).unwrap().title(), Some("My title"));
    }

    #[test]
    fn tool_results_and_commands_are_not_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let tr = r#"{"type":"user","cwd":"/x","timestamp":"2026-01-01T00:00:00Z","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"out"}]}}"#;
        let text = [
            tr.to_string(),
            user("u1", "2026-01-01T00:00:01.000Z", "<command-name>/clear</command-name>"),
            r#"{"type":"user","isMeta":true,"cwd":"/x","message":{"role":"user","content":"meta"}}"#.to_string(),
            r#"{"type":"user","cwd":"/x","message":{"role":"user","content":[{"type":"text","text":"real one"}]}}"#.to_string(),
        ]
        .join("\n");
        let p = write(dir.path(), "s.jsonl", text.as_bytes());
        let m = scan(&p, None).unwrap();
        assert_eq!(m.first_prompt.as_deref(), Some("real one"));
        assert_eq!(m.lines, 4, "last line without newline still counts");
    }

    #[test]
    fn huge_first_prompt_and_huge_lines() {
        let dir = tempfile::tempdir().unwrap();
        let big = "x".repeat(20 * 1024 * 1024);
        let mut f = std::fs::File::create(dir.path().join("s.jsonl")).unwrap();
        writeln!(
            f,
            "{}",
            user(
                "u1",
                "2026-01-01T00:00:01.000Z",
                &format!("Title line\n{big}")
            )
        )
        .unwrap();
        writeln!(
            f,
            r#"{{"type":"assistant","message":{{"content":"{big}"}},"uuid":"u2","timestamp":"2026-01-02T00:00:00.000Z"}}"#
        )
        .unwrap();
        drop(f);
        let m = scan(&dir.path().join("s.jsonl"), None).unwrap();
        assert_eq!(m.first_prompt.as_deref(), Some("Title line"));
        assert_eq!(m.lines, 2);
        assert_eq!(m.malformed, 0);
        assert_eq!(m.last_activity, parse_timestamp("2026-01-02T00:00:00Z"));
    }

    #[test]
    fn empty_and_binary_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "e.jsonl", b"");
        let m = scan(&p, None).unwrap();
        assert_eq!((m.lines, m.malformed, m.size), (0, 0, 0));
        assert!(m.title().is_none() && m.cwd.is_none());
        let p = write(dir.path(), "b.jsonl", b"\x00\xff\xfe{\n\x80\x81}\n\n\n");
        let m = scan(&p, None).unwrap();
        assert_eq!((m.lines, m.malformed), (2, 2));
    }

    #[test]
    fn resumed_scan_reads_only_appended_lines_and_matches_full_scan() {
        let dir = tempfile::tempdir().unwrap();
        let first = user("u1", "2026-01-01T00:00:01.000Z", "hello") + "\n";
        let p = write(dir.path(), "s.jsonl", first.as_bytes());
        let m1 = scan(&p, None).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        let added = user("u2", "2026-01-03T00:00:00.000Z", "more")
            + "\n"
            + r#"{"type":"custom-title","customTitle":"T"}"#;
        f.write_all(added.as_bytes()).unwrap();
        drop(f);
        let inc = scan(&p, Some(&m1)).unwrap();
        let full = scan(&p, None).unwrap();
        assert_eq!(inc, full);
        assert_eq!(inc.title(), Some("T"));
        assert_eq!(inc.lines, 3);
        // A rewritten file (same length or longer, other bytes) is rescanned from the start.
        std::fs::write(
            &p,
            first.replace("hello", "HELLO") + &user("u3", "2026-01-04T00:00:00.000Z", "x"),
        )
        .unwrap();
        let re = scan(&p, Some(&full)).unwrap();
        assert_eq!(re.first_prompt.as_deref(), Some("HELLO"));
        assert_eq!(re.lines, 2);
    }
}
