//! Per-session facts read from a transcript.
//!
//! Two parts, neither of which ever holds a whole (possibly huge) line:
//!
//! - **One streaming pass** over the lines finds their boundaries with `memchr` and parses only
//!   what is needed through the streaming [`TopScanner`]: the first lines (cwd, session id, first
//!   timestamp) and `relocated` lines (the last `/cd` of the session). The last activity comes
//!   from the last lines. Malformed lines are counted and skipped, never fatal. The pass can be
//!   resumed: given the previous result for a file that has only grown, it reads just the
//!   appended bytes.
//! - **The picker view.** Claude Code's resume picker (2.1.197) reads only the first and the last
//!   [`PICKER_WINDOW`] bytes of a transcript and takes its title and visibility from those two
//!   windows with plain string searches. A title line in the middle of a big file is invisible to
//!   it, so it is invisible here too: these facts are recomputed from the same two windows, with
//!   the client's own rules, on every scan.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::jsonscan::{TopScanner, Want};

/// Bump when the meaning of cached fields changes, so old caches are rescanned.
pub const META_VERSION: u32 = 4;

/// How many bytes Claude Code's picker reads from the start and from the end of a transcript
/// (`Bw=65536` in 2.1.197).
pub const PICKER_WINDOW: u64 = 64 * 1024;

/// Entry points of `claude -p` and the Agent SDKs; the picker does not list their sessions.
pub const SDK_ENTRYPOINTS: &[&str] = &["sdk-cli", "sdk-ts", "sdk-py"];

/// Whether an `entrypoint` is that of a `claude -p` (SDK) session.
pub fn is_sdk_entrypoint(entrypoint: Option<&str>) -> bool {
    entrypoint.is_some_and(|e| SDK_ENTRYPOINTS.contains(&e))
}

const CHUNK: usize = 256 * 1024;
const HEAD: usize = 512;
const TAIL_LINES: usize = 16;
/// Stop looking for the cwd and first timestamp after this many parsed lines.
const HEAD_PHASE_MAX_LINES: u32 = 400;

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
    /// The `cwd` of the first line that has one.
    pub cwd: Option<String>,
    pub session_id: Option<String>,
    pub first_activity: Option<DateTime<Utc>>,
    pub last_activity: Option<DateTime<Utc>>,
    /// `relocatedCwd` of the last `{"type":"relocated"}` line of the whole file: where `/cd`
    /// last moved the session (Claude Code keeps it in that directory's project folder).
    pub relocated_cwd: Option<String>,

    // What the picker sees in the first and last `PICKER_WINDOW` bytes.
    /// `agentName` of the last `agent-name` line of the tail window (else of the head window).
    pub agent_name: Option<String>,
    /// The last `"customTitle":"…"` of the tail window, else of the head window (`/rename`).
    pub custom_title: Option<String>,
    /// The last `"aiTitle":"…"` of the tail window, else of the head window.
    pub ai_title: Option<String>,
    /// `summary` of the last `summary` line of the tail window (whatever its `leafUuid`).
    pub summary: Option<String>,
    /// The last `"lastPrompt":"…"` of the tail window.
    pub last_prompt: Option<String>,
    /// The first typed prompt of the head window, as the picker extracts it.
    pub first_prompt: Option<String>,
    /// The head window has a line with `"isSidechain":true` (a subagent's transcript).
    pub is_sidechain: bool,
    /// The first `entrypoint` of the head window, else the last of the tail window
    /// (`cli`, `sdk-cli`, `sdk-ts`, `sdk-py`, …).
    pub entrypoint: Option<String>,
    /// `teamName` in the head window: a teammate of an agent team.
    pub team_name: Option<String>,
    /// `sessionKind` of the first head line with a `parentUuid` (`bg`, `daemon`, …).
    pub session_kind: Option<String>,
    /// The head window runs `/loop`.
    pub loop_session: bool,
    /// The picker's title (see [`TranscriptMeta::title`]).
    title: Option<String>,

    head_done: bool,
    head_lines: u32,
    /// FNV-1a hash of the (up to) 64 bytes before `scanned_len`, to detect a rewritten file.
    fingerprint: u64,
}

impl TranscriptMeta {
    /// The title Claude Code's resume picker shows:
    /// `customTitle || aiTitle || summary || lastPrompt || first prompt` (its `agentName` is never
    /// read from files on disk), each as
    /// the picker finds it in the first and last [`PICKER_WINDOW`] bytes. `None` where the
    /// picker would fall back to a placeholder (`(session)` or the id).
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// Put each text that may name the session (title, prompts, summary) through `redact`,
    /// which returns the text with its secrets replaced, or `None` when it has none: what is
    /// cached and listed never shows a secret.
    pub fn redact_titles(&mut self, redact: impl Fn(&str) -> Option<String>) {
        for t in [
            &mut self.title,
            &mut self.first_prompt,
            &mut self.last_prompt,
            &mut self.custom_title,
            &mut self.ai_title,
            &mut self.summary,
            &mut self.agent_name,
        ] {
            if let Some(r) = t.as_deref().and_then(&redact) {
                *t = Some(r);
            }
        }
    }

    /// The directory the session belongs to: where `/cd` last moved it, else its cwd.
    pub fn effective_cwd(&self) -> Option<&str> {
        self.relocated_cwd.as_deref().or(self.cwd.as_deref())
    }

    /// Whether the session was started by `claude -p` or an Agent SDK.
    pub fn is_sdk(&self) -> bool {
        is_sdk_entrypoint(self.entrypoint.as_deref())
    }

    /// Why Claude Code's resume picker does not list this session, checked in the client's
    /// order: `sidechain`, `team` (a teammate), `daemon` (a background worker), `-p`
    /// (`claude -p` / SDK) or `loop` (`/loop`). `None` when the picker lists it.
    pub fn picker_hidden_reason(&self) -> Option<&'static str> {
        if self.is_sidechain {
            Some("sidechain")
        } else if self.team_name.is_some() {
            Some("team")
        } else if matches!(
            self.session_kind.as_deref(),
            Some("daemon" | "daemon-worker")
        ) {
            Some("daemon")
        } else if self.is_sdk() {
            Some("-p")
        } else if self.loop_session {
            Some("loop")
        } else {
            None
        }
    }

    /// Whether Claude Code's resume picker leaves this session out.
    pub fn hidden_from_picker(&self) -> bool {
        self.picker_hidden_reason().is_some()
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
        key: "relocatedCwd",
        cap: 8192,
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

/// A line the pass must parse even after the head: a `/cd` relocation stamp. Claude Code writes
/// it as `{"type":"relocated","relocatedCwd":…,"sessionId":…}`.
fn is_relocated_line(head: &[u8]) -> bool {
    memchr::memmem::find(head, br#""type":"relocated""#).is_some()
}

/// Scan a transcript. With `prev` (an earlier result for the same path), only the bytes after
/// `prev.scanned_len` are streamed, provided the file still starts the same way; the picker
/// view is always read afresh from the file's first and last [`PICKER_WINDOW`] bytes.
pub fn scan(path: &Path, prev: Option<&TranscriptMeta>) -> io::Result<TranscriptMeta> {
    use crate::os::IoAt;
    scan_file(path, prev).at("read", path)
}

fn scan_file(path: &Path, prev: Option<&TranscriptMeta>) -> io::Result<TranscriptMeta> {
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
    let (head, tail) = picker_windows(&mut file, size)?;
    lite::apply(&mut result, &head, &tail);
    Ok(result)
}

/// The first and last [`PICKER_WINDOW`] bytes of a file of `size` bytes, decoded as the client
/// decodes them (invalid UTF-8 becomes U+FFFD). When the file is no longer than one window the
/// tail is the head.
fn picker_windows(file: &mut File, size: u64) -> io::Result<(String, String)> {
    let head = read_window(file, 0, size.min(PICKER_WINDOW))?;
    let tail_start = size.saturating_sub(PICKER_WINDOW);
    let tail = if tail_start > 0 {
        read_window(file, tail_start, PICKER_WINDOW)?
    } else {
        head.clone()
    };
    Ok((decode(head), decode(tail)))
}

/// UTF-8 text, with U+FFFD for invalid bytes (a window may cut a character in two).
fn decode(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn read_window(file: &mut File, start: u64, len: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(start))?;
    let mut out = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut out)?;
    Ok(out)
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
    if scanner.is_none() && looks_like_object && is_relocated_line(&line.head) {
        let mut s = TopScanner::new(WANTS);
        if line.len == line.head.len() as u64 {
            s.feed(&line.head);
        } else {
            // A long line: read it again, then carry on where the pass was.
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
        let complete = meta.cwd.is_some() && meta.first_activity.is_some();
        if complete || meta.head_lines >= HEAD_PHASE_MAX_LINES {
            meta.head_done = true;
        }
    }
    if kind.as_deref() == Some("relocated")
        && let Some(to) = s.get_str("relocatedCwd").filter(|c| !c.is_empty())
    {
        meta.relocated_cwd = Some(to);
    }
}

fn line_timestamp(file: &mut File, start: u64, len: u64) -> io::Result<Option<DateTime<Utc>>> {
    let mut scanner = TopScanner::new(TS_WANTS);
    stream_line(file, start, len, &mut scanner)?;
    Ok(scanner
        .get_str("timestamp")
        .as_deref()
        .and_then(parse_timestamp))
}

/// Claude Code's picker, transcribed: how 2.1.197 reads a session's title and visibility from
/// the head and tail windows (`cuc`, `_im`, `_2e` and their string helpers in its bundle). These
/// are plain substring searches over the raw window text, not JSON parses, and are kept so:
/// matching the client includes matching its quirks.
mod lite {
    use memchr::memmem;

    use super::TranscriptMeta;

    /// `text.indexOf(needle, from)`, with a prepared finder.
    fn find_from(text: &str, finder: &memmem::Finder, from: usize) -> Option<usize> {
        let hay = text.as_bytes().get(from..)?;
        finder.find(hay).map(|i| i + from)
    }

    fn has(text: &str, needle: &str) -> bool {
        memmem::find(text.as_bytes(), needle.as_bytes()).is_some()
    }

    /// The line (without its newline) around byte `at`.
    fn line_at(text: &str, at: usize) -> (usize, usize) {
        let b = text.as_bytes();
        let start = memchr::memrchr(b'\n', &b[..at]).map_or(0, |i| i + 1);
        let end = memchr::memchr(b'\n', &b[at..]).map_or(b.len(), |i| at + i);
        (start, end)
    }

    /// The lines containing any of `needles`, first to last, each once.
    fn lines_with<'a>(text: &'a str, needles: &[&str]) -> impl Iterator<Item = &'a str> + 'a {
        let finders: Vec<memmem::Finder<'static>> = needles
            .iter()
            .map(|n| memmem::Finder::new(n.as_bytes()).into_owned())
            .collect();
        let mut from = 0;
        std::iter::from_fn(move || {
            let at = finders
                .iter()
                .filter_map(|f| find_from(text, f, from))
                .min()?;
            let (start, end) = line_at(text, at);
            from = end + 1;
            Some(&text[start..end])
        })
    }

    /// The lines containing `needle`, last to first, each once.
    fn lines_with_rev<'a>(text: &'a str, needle: &str) -> impl Iterator<Item = &'a str> + 'a {
        // Matches are few: find them forwards (the fast direction), walk them backwards.
        let hits: Vec<usize> = memmem::find_iter(text.as_bytes(), needle.as_bytes()).collect();
        let mut until = usize::MAX;
        hits.into_iter().rev().filter_map(move |at| {
            if at >= until {
                return None; // on the line just returned
            }
            let (start, end) = line_at(text, at);
            until = start;
            Some(&text[start..end])
        })
    }

    /// Set the picker facts and the title of `meta` from the two windows.
    pub(super) fn apply(meta: &mut TranscriptMeta, head: &str, tail: &str) {
        let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
        if head.is_empty() {
            meta.agent_name = None;
            meta.custom_title = None;
            meta.ai_title = None;
            meta.summary = None;
            meta.last_prompt = None;
            meta.first_prompt = None;
            meta.is_sidechain = false;
            meta.entrypoint = None;
            meta.team_name = None;
            meta.session_kind = None;
            meta.loop_session = false;
            meta.title = None;
            return;
        }
        meta.is_sidechain =
            has(head, r#""isSidechain":true"#) || has(head, r#""isSidechain": true"#);
        meta.team_name = nonempty(first_str(head, "teamName"));
        let first_chained = lines_with(head, &[r#""parentUuid":"#])
            .next()
            .unwrap_or(head);
        meta.session_kind = nonempty(first_str(first_chained, "sessionKind"));
        meta.entrypoint =
            nonempty(first_str(head, "entrypoint").or_else(|| last_str(tail, "entrypoint")));
        meta.loop_session = has(head, "<command-name>/loop</command-name>");
        meta.first_prompt = nonempty(Some(first_prompt(head)))
            .or_else(|| nonempty(Some(field_prefix(head, "content", 200))))
            .or_else(|| nonempty(Some(field_prefix(head, "text", 200))));
        meta.last_prompt = nonempty(last_str(tail, "lastPrompt"));
        // `??`: a value in the tail, even an empty one, hides the head's.
        meta.custom_title =
            nonempty(last_str(tail, "customTitle").or_else(|| last_str(head, "customTitle")));
        meta.ai_title = nonempty(last_str(tail, "aiTitle").or_else(|| last_str(head, "aiTitle")));
        meta.summary = nonempty(last_line_str(tail, "summary", "summary"));
        meta.agent_name = nonempty(
            last_typed_line_str(tail, "agent-name", "agentName")
                .or_else(|| last_typed_line_str(head, "agent-name", "agentName")),
        );
        meta.title = title(meta);
    }

    /// `_2e`: the title the picker shows for a session.
    fn title(m: &TranscriptMeta) -> Option<String> {
        // The lite entry's `firstPrompt` is the last prompt when the tail has one.
        let prompt = m.last_prompt.as_deref().or(m.first_prompt.as_deref());
        let autonomous = prompt.is_some_and(|p| p.starts_with("<tick>"));
        let stripped = prompt
            .map(|p| strip_tags(p).trim().to_string())
            .filter(|p| !p.is_empty() && !autonomous);
        // `agentName` comes first in the client's display function, but the picker's reader of
        // files on disk never fills it (checked with the real 2.1.197 picker): not used.
        let chosen = [&m.custom_title, &m.ai_title, &m.summary]
            .into_iter()
            .find_map(|v| v.clone())
            .or(stripped)
            .or_else(|| autonomous.then(|| "Autonomous session".to_string()))?;
        let shown = strip_tags(&chosen);
        let shown = if shown.trim().is_empty() {
            chosen.trim()
        } else {
            shown.trim()
        };
        let clean: String = shown
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let clean = clean.trim();
        (!clean.is_empty()).then(|| clean.to_string())
    }

    /// Built-in slash commands (`GQ()` in the client; names and aliases, collected from the
    /// 2.1.197 bundle). A prompt that is only one of these is not a title.
    #[rustfmt::skip]
    const BUILTIN_COMMANDS: &[&str] = &[
        "add-dir", "advisor", "agents", "allowed-tools", "android", "app", "autocompact",
        "autofix-pr", "background", "bashes", "bg", "branch", "break-reminder", "breaks", "btw",
        "cd", "chrome", "clear", "color", "compact", "config", "context", "continue", "copy",
        "cost", "daemon", "design-login", "desktop", "diff", "doctor", "downtime", "effort",
        "exit", "export", "extra-usage", "feedback", "fork", "goal", "help", "hooks", "ide",
        "init", "insights", "install-github-app", "install-slack-app", "ios", "keybindings",
        "login", "logout", "loop", "loops", "marketplace", "mcp", "memory", "memory-pause",
        "mobile", "model", "name", "new", "passes", "pause-memory", "permissions", "plan",
        "plugin", "plugins", "powerup", "privacy-settings", "pro-trial-expired", "quit", "radio",
        "rate-limit-options", "rc", "recap", "release-notes", "reload-plugins", "reload-skills",
        "remote", "remote-control", "remote-env", "rename", "reset", "resume", "review", "rewind",
        "schedule", "scroll-speed", "security-review", "session", "settings", "setup-bedrock",
        "setup-vertex", "skills", "stats", "status", "statusline", "stickers", "stop", "tasks",
        "teleport", "terminal-setup", "theme", "todos", "toggle-memory", "tp", "tui", "ultraplan",
        "ultrareview", "update", "upgrade", "usage", "usage-credits", "version", "voice",
        "web-setup", "wellbeing", "workflows",
    ];

    /// `_im`: the first typed prompt among the complete lines of `head`.
    pub(super) fn first_prompt(head: &str) -> String {
        let mut command_fallback = String::new();
        let mut tick = false;
        for line in lines_with(head, &[r#""type":"user""#, r#""type": "user""#]) {
            if has(line, r#""tool_result""#)
                || has(line, r#""isMeta":true"#)
                || has(line, r#""isMeta": true"#)
            {
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v.get("type").and_then(|t| t.as_str()) != Some("user") {
                continue;
            }
            let Some(content) = v.get("message").and_then(|m| m.get("content")) else {
                continue;
            };
            let texts: Vec<&str> = match content {
                serde_json::Value::String(s) => vec![s.as_str()],
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter(|i| i.get("type").and_then(|t| t.as_str()) == Some("text"))
                    .filter_map(|i| i.get("text").and_then(|t| t.as_str()))
                    .collect(),
                _ => Vec::new(),
            };
            for text in texts {
                if text.is_empty() {
                    continue;
                }
                let d = text.replace('\n', " ");
                let d = d.trim();
                if let Some(name) = tag_content(d, "command-name") {
                    let bare = name.strip_prefix('/').unwrap_or(name);
                    let args = tag_content(d, "command-args").map_or("", str::trim);
                    if BUILTIN_COMMANDS.contains(&bare) || args.is_empty() {
                        if command_fallback.is_empty() {
                            command_fallback = name.to_string();
                        }
                        continue;
                    }
                    return format!("{name} {args}");
                }
                if let Some(cmd) = tag_content(d, "bash-input") {
                    return format!("! {cmd}");
                }
                if starts_with_tag(d) || is_interruption(d) {
                    if d.starts_with("<tick>") {
                        tick = true;
                    }
                    continue;
                }
                return cut_200(d);
            }
        }
        if !command_fallback.is_empty() {
            command_fallback
        } else if tick {
            "Proactive session".to_string()
        } else {
            String::new()
        }
    }

    /// At most 200 UTF-16 units, then `…` (`d.slice(0,200).trim()+"…"`).
    fn cut_200(d: &str) -> String {
        if d.encode_utf16().count() <= 200 {
            return d.to_string();
        }
        let mut units = 0;
        let mut end = 0;
        for (i, c) in d.char_indices() {
            if units + c.len_utf16() > 200 {
                break;
            }
            units += c.len_utf16();
            end = i + c.len_utf8();
        }
        format!("{}…", d[..end].trim())
    }

    /// `/^\s*<[a-z][\w-]*[\s>]/`: text that opens with a tag.
    fn starts_with_tag(d: &str) -> bool {
        let b = d.trim_start().as_bytes();
        if b.first() != Some(&b'<') || !b.get(1).is_some_and(u8::is_ascii_lowercase) {
            return false;
        }
        let rest = &b[2..];
        let name_len = rest
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'-')
            .count();
        rest.get(name_len)
            .is_some_and(|c| *c == b'>' || c.is_ascii_whitespace())
    }

    /// `/^\[Request interrupted by user[^\]]*\]/`.
    fn is_interruption(d: &str) -> bool {
        d.strip_prefix("[Request interrupted by user")
            .is_some_and(|r| r.contains(']'))
    }

    /// `$l`: the content of the first `<tag …>…</tag>` with non-empty content (tag names are
    /// matched case-insensitively, as the client's `gi` pattern does).
    fn tag_content<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
        let lower = text.to_ascii_lowercase();
        let open = format!("<{tag}");
        let close = format!("</{tag}>");
        let mut from = 0;
        while let Some(at) = lower[from..].find(&open).map(|i| i + from) {
            let after = at + open.len();
            let next = lower.as_bytes().get(after).copied();
            let gt = match next {
                Some(b'>') => Some(after),
                Some(c) if c.is_ascii_whitespace() => lower[after..].find('>').map(|i| i + after),
                _ => None,
            };
            let Some(gt) = gt else {
                from = after;
                continue;
            };
            // No closing tag after this one: none after any later one either.
            let end = lower[gt + 1..].find(&close).map(|i| i + gt + 1)?;
            let content = &text[gt + 1..end];
            if !content.is_empty() {
                return Some(content);
            }
            from = end + close.len();
        }
        None
    }

    /// `zet`: remove `<name …>…</name>` blocks (and one newline after each).
    pub(super) fn strip_tags(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        let mut copied = 0;
        while i < b.len() {
            if b[i] == b'<'
                && b.get(i + 1).is_some_and(u8::is_ascii_lowercase)
                && let Some(end) = tag_block_end(s, i)
            {
                out.push_str(&s[copied..i]);
                i = if b.get(end) == Some(&b'\n') {
                    end + 1
                } else {
                    end
                };
                copied = i;
                continue;
            }
            i += 1;
        }
        out.push_str(&s[copied..]);
        out
    }

    /// The end of a `<name …>…</name>` block opening at `at`, if it closes.
    fn tag_block_end(s: &str, at: usize) -> Option<usize> {
        let b = s.as_bytes();
        let name_start = at + 1;
        let name_len = b[name_start..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'-')
            .count();
        let name = &s[name_start..name_start + name_len];
        let after = name_start + name_len;
        let gt = match b.get(after) {
            Some(b'>') => after,
            Some(c) if c.is_ascii_whitespace() => s[after..].find('>')? + after,
            _ => return None,
        };
        let close = format!("</{name}>");
        let end = s[gt + 1..].find(&close)? + gt + 1;
        Some(end + close.len())
    }

    /// The end (index of the closing quote) of a JSON string body starting at `from`.
    fn string_end(text: &str, from: usize) -> Option<usize> {
        let b = text.as_bytes();
        let mut i = from;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return Some(i),
                _ => i += 1,
            }
        }
        None
    }

    /// `GTs`: a raw string body, decoded when it has escapes (kept raw when that fails).
    fn unescape(raw: &str) -> String {
        if !raw.contains('\\') {
            return raw.to_string();
        }
        serde_json::from_str::<String>(&format!("\"{raw}\"")).unwrap_or_else(|_| raw.to_string())
    }

    fn patterns(key: &str) -> [String; 2] {
        [format!("\"{key}\":\""), format!("\"{key}\": \"")]
    }

    /// `UG`: the first `"key":"…"` string anywhere in `text`.
    pub(super) fn first_str(text: &str, key: &str) -> Option<String> {
        for pat in patterns(key) {
            let Some(at) = memmem::find(text.as_bytes(), pat.as_bytes()) else {
                continue;
            };
            let from = at + pat.len();
            if let Some(end) = string_end(text, from) {
                return Some(unescape(&text[from..end]));
            }
        }
        None
    }

    /// `eS`: the last `"key":"…"` string anywhere in `text`.
    pub(super) fn last_str(text: &str, key: &str) -> Option<String> {
        let mut best: Option<(usize, String)> = None;
        for pat in patterns(key) {
            let finder = memmem::Finder::new(pat.as_bytes());
            let mut i = 0;
            while let Some(at) = find_from(text, &finder, i) {
                let from = at + pat.len();
                let Some(end) = string_end(text, from) else {
                    break;
                };
                if best.as_ref().is_none_or(|(b, _)| at > *b) {
                    best = Some((at, unescape(&text[from..end])));
                }
                i = end + 1;
            }
        }
        best.map(|(_, v)| v)
    }

    /// `bim`: in the last line containing `"type":"<kind>"` and `"<key>":` that has a
    /// `"<key>":"…"` string, its first such string.
    pub(super) fn last_line_str(text: &str, kind: &str, key: &str) -> Option<String> {
        let type_pat = format!("\"type\":\"{kind}\"");
        let key_pat = format!("\"{key}\":");
        lines_with_rev(text, &type_pat)
            .filter(|l| has(l, &key_pat))
            .find_map(|l| first_str(l, key))
    }

    /// `fLt`: the string `key` of the last line that parses as a JSON object of type `kind`.
    pub(super) fn last_typed_line_str(text: &str, kind: &str, key: &str) -> Option<String> {
        let type_pat = format!("\"type\":\"{kind}\"");
        let key_pat = format!("\"{key}\":");
        lines_with_rev(text, &type_pat)
            .filter(|l| has(l, &key_pat))
            .find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                if v.get("type")?.as_str()? != kind {
                    return None;
                }
                v.get(key)?.as_str().map(str::to_string)
            })
    }

    /// `Pcc`: the first `max` UTF-16 units of the first `"key":"…"` string in `text`, raw, with
    /// `\n` and `\t` escapes turned into spaces.
    pub(super) fn field_prefix(text: &str, key: &str, max: usize) -> String {
        for pat in patterns(key) {
            let Some(at) = memmem::find(text.as_bytes(), pat.as_bytes()) else {
                continue;
            };
            let from = at + pat.len();
            let mut units = 0;
            let mut chars = text[from..].char_indices();
            let mut end = text.len();
            while let Some((i, c)) = chars.next() {
                if units >= max || c == '"' {
                    end = from + i;
                    break;
                }
                if c == '\\' {
                    chars.next();
                }
                units += c.len_utf16();
            }
            return text[from..end]
                .replace("\\n", " ")
                .replace("\\t", " ")
                .trim()
                .to_string();
        }
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn user(uuid: &str, ts: &str, content: &str) -> String {
        format!(
            r#"{{"parentUuid":null,"isSidechain":false,"cwd":"/home/a/my_app","sessionId":"s1","type":"user","message":{{"role":"user","content":{}}},"uuid":"{uuid}","timestamp":"{ts}","entrypoint":"cli"}}"#,
            serde_json::to_string(content).unwrap()
        )
    }

    fn assistant(uuid: &str, ts: &str) -> String {
        format!(
            r#"{{"type":"assistant","uuid":"{uuid}","timestamp":"{ts}","message":{{"content":[{{"type":"text","text":"ok"}}]}}}}"#
        )
    }

    fn write(dir: &Path, name: &str, text: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn scan_text(lines: &[String]) -> TranscriptMeta {
        let dir = tempfile::tempdir().unwrap();
        let text = lines.join("\n") + "\n";
        scan(&write(dir.path(), "s.jsonl", text.as_bytes()), None).unwrap()
    }

    /// Assistant lines of about `bytes` bytes in all, pushing what precedes them out of the
    /// picker's tail window (or what follows them out of its head window).
    fn filler(bytes: usize) -> Vec<String> {
        let line = format!(
            r#"{{"type":"assistant","uuid":"f","timestamp":"2026-01-01T00:01:00.000Z","message":{{"content":"{}"}}}}"#,
            "z".repeat(1000)
        );
        vec![line; bytes / 1000 + 1]
    }

    #[test]
    fn reads_cwd_title_times_and_counts() {
        let m = scan_text(&[
            r#"{"type":"system","subtype":"x","cwd":"/home/a/my_app","timestamp":"2026-01-01T00:00:00.000Z","uuid":"u0"}"#.to_string(),
            user("u1", "2026-01-01T00:00:01.000Z", "  \n  Fix the parser\nplease"),
            "not json at all".to_string(),
            r#"{"type":"assistant","uuid":"u2","timestamp":"2026-01-01T00:05:00.000Z","message":{}}"#.to_string(),
        ]);
        assert_eq!(m.cwd.as_deref(), Some("/home/a/my_app"));
        assert_eq!(m.first_prompt.as_deref(), Some("Fix the parser please"));
        assert_eq!(m.title(), Some("Fix the parser please"));
        assert_eq!(m.lines, 4);
        assert_eq!(m.malformed, 1);
        assert_eq!(m.first_activity, parse_timestamp("2026-01-01T00:00:00Z"));
        assert_eq!(m.last_activity, parse_timestamp("2026-01-01T00:05:00Z"));
        assert_eq!(m.entrypoint.as_deref(), Some("cli"));
        assert!(!m.hidden_from_picker());
    }

    #[test]
    fn title_precedence_follows_the_picker() {
        let mut lines = vec![
            user("u1", "2026-01-01T00:00:01.000Z", "first prompt"),
            assistant("a1", "2026-01-01T00:00:02.000Z"),
        ];
        let steps = [
            (
                r#"{"type":"last-prompt","lastPrompt":"latest prompt","leafUuid":"a1","sessionId":"s1"}"#,
                "latest prompt",
            ),
            (
                // Any leaf: the picker does not check it.
                r#"{"type":"summary","summary":"Parser work","leafUuid":"elsewhere"}"#,
                "Parser work",
            ),
            (
                r#"{"type":"ai-title","aiTitle":"AI named","sessionId":"s1"}"#,
                "AI named",
            ),
            (
                r#"{"type":"custom-title","customTitle":"My title","sessionId":"s1"}"#,
                "My title",
            ),
            (
                // The picker does not read agent names from files.
                r#"{"type":"agent-name","agentName":"my-agent","sessionId":"s1"}"#,
                "My title",
            ),
        ];
        assert_eq!(scan_text(&lines).title(), Some("first prompt"));
        for (line, want) in steps {
            lines.push(line.to_string());
            assert_eq!(scan_text(&lines).title(), Some(want), "after {line}");
        }
        // Each kind is read on its own: a lower-ranked line written later does not win.
        lines.push(r#"{"type":"ai-title","aiTitle":"Later AI","sessionId":"s1"}"#.into());
        let m = scan_text(&lines);
        assert_eq!(m.title(), Some("My title"));
        assert_eq!(m.agent_name.as_deref(), Some("my-agent"));
        assert_eq!(m.ai_title.as_deref(), Some("Later AI"));
        assert_eq!(m.custom_title.as_deref(), Some("My title"));
        assert_eq!(m.last_prompt.as_deref(), Some("latest prompt"));
        assert_eq!(m.first_prompt.as_deref(), Some("first prompt"));
    }

    #[test]
    fn the_last_occurrence_of_each_kind_wins() {
        let m = scan_text(&[
            user("u1", "2026-01-01T00:00:01.000Z", "hello"),
            r#"{"type":"custom-title","customTitle":"One","sessionId":"s1"}"#.into(),
            r#"{"type":"summary","summary":"S1","leafUuid":"u1"}"#.into(),
            r#"{"type":"last-prompt","lastPrompt":"p1","sessionId":"s1"}"#.into(),
            r#"{"type":"custom-title","customTitle":"Two \"quoted\"","sessionId":"s1"}"#.into(),
            r#"{"type":"summary","summary":"S2","leafUuid":"u1"}"#.into(),
            r#"{"type":"last-prompt","lastPrompt":"p2","sessionId":"s1"}"#.into(),
        ]);
        assert_eq!(m.title(), Some("Two \"quoted\""));
        assert_eq!(m.summary.as_deref(), Some("S2"));
        assert_eq!(m.last_prompt.as_deref(), Some("p2"));
    }

    #[test]
    fn an_empty_custom_title_falls_through() {
        let m = scan_text(&[
            user("u1", "2026-01-01T00:00:01.000Z", "hello"),
            r#"{"type":"custom-title","customTitle":"","sessionId":"s1"}"#.into(),
        ]);
        assert_eq!(m.custom_title, None);
        assert_eq!(m.title(), Some("hello"));
    }

    #[test]
    fn only_the_head_and_tail_windows_count() {
        // A big file: title lines in the middle are invisible to the picker and to us.
        let mut lines = vec![
            user("u1", "2026-01-01T00:00:01.000Z", "first prompt"),
            r#"{"type":"custom-title","customTitle":"Head title","sessionId":"s1"}"#.into(),
            r#"{"type":"summary","summary":"Head summary","leafUuid":"u1"}"#.into(),
            r#"{"type":"last-prompt","lastPrompt":"head last prompt","sessionId":"s1"}"#.into(),
        ];
        lines.extend(filler(PICKER_WINDOW as usize));
        lines.push(r#"{"type":"ai-title","aiTitle":"Middle AI title","sessionId":"s1"}"#.into());
        lines.push(r#"{"type":"agent-name","agentName":"middle","sessionId":"s1"}"#.into());
        lines.extend(filler(PICKER_WINDOW as usize));
        let m = scan_text(&lines);
        assert!(m.size > 2 * PICKER_WINDOW);
        assert_eq!(m.ai_title, None, "a line between the windows is not seen");
        assert_eq!(m.agent_name, None);
        assert_eq!(m.summary, None, "summaries are read from the tail only");
        assert_eq!(
            m.last_prompt, None,
            "the last prompt is read from the tail only"
        );
        assert_eq!(
            m.custom_title.as_deref(),
            Some("Head title"),
            "custom titles fall back to the head"
        );
        assert_eq!(m.title(), Some("Head title"));
        assert_eq!(m.first_prompt.as_deref(), Some("first prompt"));

        // The same lines in the tail are seen, and the tail's custom title beats the head's.
        lines.push(r#"{"type":"custom-title","customTitle":"Tail title","sessionId":"s1"}"#.into());
        lines.push(r#"{"type":"last-prompt","lastPrompt":"tail prompt","sessionId":"s1"}"#.into());
        let m = scan_text(&lines);
        assert_eq!(m.custom_title.as_deref(), Some("Tail title"));
        assert_eq!(m.last_prompt.as_deref(), Some("tail prompt"));
        assert_eq!(m.title(), Some("Tail title"));
    }

    #[test]
    fn first_prompt_rules() {
        let tr = r#"{"type":"user","cwd":"/x","timestamp":"2026-01-01T00:00:00Z","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"out"}]}}"#;
        let m = scan_text(&[
            tr.to_string(),
            user("u1", "2026-01-01T00:00:01.000Z", "<command-name>/clear</command-name>"),
            r#"{"type":"user","isMeta":true,"cwd":"/x","message":{"role":"user","content":"meta"}}"#.into(),
            user("u2", "2026-01-01T00:00:02.000Z", "<system-reminder>x</system-reminder>"),
            user("u3", "2026-01-01T00:00:03.000Z", "[Request interrupted by user for tool use]"),
            r#"{"type":"user","cwd":"/x","message":{"role":"user","content":[{"type":"image"},{"type":"text","text":"real one"}]}}"#.into(),
        ]);
        assert_eq!(m.first_prompt.as_deref(), Some("real one"));

        let cmd = |text: &str| scan_text(&[user("u1", "2026-01-01T00:00:01.000Z", text)]);
        // A custom command with arguments is a prompt; a built-in one or one without is not.
        let custom = cmd(
            "<command-message>fix</command-message>\n<command-name>/fix-issue</command-name>\n<command-args>123 </command-args>",
        );
        assert_eq!(custom.first_prompt.as_deref(), Some("/fix-issue 123"));
        let builtin = cmd("<command-name>/model</command-name><command-args>opus</command-args>");
        assert_eq!(builtin.first_prompt.as_deref(), Some("/model"), "fallback");
        assert_eq!(
            cmd("<bash-input>ls -la</bash-input>")
                .first_prompt
                .as_deref(),
            Some("! ls -la")
        );
        let tick = cmd("<tick>wake up</tick>");
        assert_eq!(tick.first_prompt.as_deref(), Some("Proactive session"));
        let long = cmd(&format!("{}é", "a".repeat(205)));
        assert_eq!(
            long.first_prompt.as_deref(),
            Some(format!("{}…", "a".repeat(200)).as_str())
        );
    }

    #[test]
    fn title_strips_tags_and_marks_autonomous_sessions() {
        let m = scan_text(&[
            user("u1", "2026-01-01T00:00:01.000Z", "hello"),
            r#"{"type":"last-prompt","lastPrompt":"look <ide_opened_file>a.rs</ide_opened_file>here","sessionId":"s1"}"#.into(),
        ]);
        assert_eq!(m.title(), Some("look here"));
        let m = scan_text(&[
            user("u1", "2026-01-01T00:00:01.000Z", "hello"),
            r#"{"type":"last-prompt","lastPrompt":"<tick>12:00</tick>","sessionId":"s1"}"#.into(),
        ]);
        assert_eq!(m.title(), Some("Autonomous session"));
        // Only tags: the picker would show the id; we leave the placeholder to the caller.
        let m = scan_text(&[
            r#"{"type":"last-prompt","lastPrompt":"<x>y</x>","sessionId":"s1"}"#.into(),
        ]);
        assert_eq!(m.title(), None);
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
        // The first line does not fit the head window: the picker falls back to the first 200
        // UTF-16 units of the first "content" string (an escape counts as one).
        let want = format!("Title line {}", "x".repeat(189));
        assert_eq!(m.first_prompt.as_deref(), Some(want.as_str()));
        assert_eq!(m.lines, 2);
        assert_eq!(m.malformed, 0);
        assert_eq!(m.cwd.as_deref(), Some("/home/a/my_app"));
        assert_eq!(m.last_activity, parse_timestamp("2026-01-02T00:00:00Z"));
    }

    #[test]
    fn visibility_fields() {
        let first = |extra: &str| {
            format!(
                r#"{{"parentUuid":null,"cwd":"/x","sessionId":"s1","type":"user","message":{{"role":"user","content":"hi"}},"uuid":"u1","timestamp":"2026-01-01T00:00:00Z"{extra}}}"#
            )
        };
        let m = scan_text(&[first(r#","isSidechain":true,"agentId":"a1""#)]);
        assert!(m.is_sidechain);
        assert_eq!(m.picker_hidden_reason(), Some("sidechain"));
        for ep in SDK_ENTRYPOINTS {
            let m = scan_text(&[first(&format!(
                r#","isSidechain":false,"entrypoint":"{ep}""#
            ))]);
            assert!(!m.is_sidechain);
            assert!(m.is_sdk() && m.hidden_from_picker(), "{ep}");
            assert_eq!(m.picker_hidden_reason(), Some("-p"));
        }
        let m = scan_text(&[first(r#","entrypoint":"cli""#)]);
        assert!(!m.hidden_from_picker());
        // An entrypoint only in the tail counts too.
        let mut lines = vec![first("")];
        lines.extend(filler(PICKER_WINDOW as usize + 10));
        lines.push(
            r#"{"type":"user","entrypoint":"sdk-ts","uuid":"u9","message":{"content":"x"}}"#.into(),
        );
        let m = scan_text(&lines);
        assert_eq!(m.entrypoint.as_deref(), Some("sdk-ts"));
        assert!(m.hidden_from_picker());
        let m = scan_text(&[first(r#","teamName":"red","agentName":"worker""#)]);
        assert_eq!(m.picker_hidden_reason(), Some("team"));
        let m = scan_text(&[first(r#","sessionKind":"daemon-worker""#)]);
        assert_eq!(m.picker_hidden_reason(), Some("daemon"));
        let m = scan_text(&[first(r#","sessionKind":"bg""#)]);
        assert!(!m.hidden_from_picker());
        let m = scan_text(&[user(
            "u1",
            "2026-01-01T00:00:00Z",
            "<command-name>/loop</command-name><command-args>5m check</command-args>",
        )]);
        assert_eq!(m.picker_hidden_reason(), Some("loop"));
        // Beyond the head window, a sidechain flag is not seen.
        let mut lines = vec![first("")];
        lines.extend(filler(PICKER_WINDOW as usize + 10));
        lines.push(first(r#","isSidechain":true"#));
        assert!(!scan_text(&lines).is_sidechain);
    }

    #[test]
    fn relocation_is_the_last_relocated_line_of_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = vec![
            user("u1", "2026-01-01T00:00:01.000Z", "hello"),
            r#"{"type":"relocated","sessionId":"s1","relocatedCwd":"/home/a/one"}"#.into(),
            // Only `relocated` lines count.
            r#"{"type":"user","relocatedCwd":"/nope","uuid":"u2","message":{"content":"x"}}"#
                .into(),
            r#"{"type":"relocated","sessionId":"s1","relocatedCwd":"/home/a/two"}"#.into(),
        ];
        lines.extend(filler(2 * PICKER_WINDOW as usize));
        let text = lines.join("\n") + "\n";
        let p = write(dir.path(), "s.jsonl", text.as_bytes());
        let m = scan(&p, None).unwrap();
        assert_eq!(m.relocated_cwd.as_deref(), Some("/home/a/two"));
        assert_eq!(m.cwd.as_deref(), Some("/home/a/my_app"));
        assert_eq!(m.effective_cwd(), Some("/home/a/two"));
        // Appended later: the incremental scan sees it.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        writeln!(
            f,
            r#"{{"type":"relocated","sessionId":"s1","relocatedCwd":"/home/a/three"}}"#
        )
        .unwrap();
        drop(f);
        let inc = scan(&p, Some(&m)).unwrap();
        assert_eq!(inc.relocated_cwd.as_deref(), Some("/home/a/three"));
        assert_eq!(inc, scan(&p, None).unwrap());
        let plain = scan_text(&[user("u1", "2026-01-01T00:00:01.000Z", "hello")]);
        assert_eq!(plain.relocated_cwd, None);
        assert_eq!(plain.effective_cwd(), Some("/home/a/my_app"));
    }

    #[test]
    fn empty_and_binary_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "e.jsonl", b"");
        let m = scan(&p, None).unwrap();
        assert_eq!((m.lines, m.malformed, m.size), (0, 0, 0));
        assert!(m.title().is_none() && m.cwd.is_none() && !m.hidden_from_picker());
        let p = write(dir.path(), "b.jsonl", b"\x00\xff\xfe{\n\x80\x81}\n\n\n");
        let m = scan(&p, None).unwrap();
        assert_eq!((m.lines, m.malformed), (2, 2));
        assert!(m.title().is_none());
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
        assert_eq!(
            inc.title(),
            Some("T"),
            "a last line without newline is seen"
        );
        assert_eq!(inc.lines, 3);
        // A rewritten file (same length or longer, other bytes) is rescanned from the start.
        std::fs::write(
            &p,
            first.replace("hello", "HELLO") + &user("u3", "2026-01-04T00:00:00.000Z", "x"),
        )
        .unwrap();
        let re = scan(&p, Some(&full)).unwrap();
        assert_eq!(re.first_prompt.as_deref(), Some("HELLO"));
        assert_eq!(re.title(), Some("HELLO"));
        assert_eq!(re.lines, 2);
    }

    #[test]
    fn client_string_helpers() {
        use lite::*;
        let t = r#"{"a":"1","k":"first"} {"k": "sp\"aced"} {"k":"last\nline"} {"k":"unclosed"#;
        assert_eq!(first_str(t, "k").as_deref(), Some("first"));
        assert_eq!(last_str(t, "k").as_deref(), Some("last\nline"));
        assert_eq!(
            last_str(r#"{"k": "only \u00e9"}"#, "k").as_deref(),
            Some("only é")
        );
        assert_eq!(last_str(t, "missing"), None);
        // A bad escape is kept raw.
        assert_eq!(first_str(r#""k":"a\qb""#, "k").as_deref(), Some(r"a\qb"));
        let lines = "{\"type\":\"summary\",\"summary\":\"A\"}\n{\"type\":\"summary\",\"summary\":\"B\"}\n{\"type\":\"summary\",\"summary\":1}";
        assert_eq!(
            last_line_str(lines, "summary", "summary").as_deref(),
            Some("B")
        );
        // The first (possibly cut) line of a window counts too; a line is looked at once.
        let cut = "summary\",\"summary\":\"cut\"}\n{\"x\":1}\n";
        assert_eq!(
            last_line_str(&format!("{{\"type\":\"{cut}"), "summary", "summary").as_deref(),
            Some("cut")
        );
        assert_eq!(last_line_str(cut, "summary", "summary"), None);
        let twice = "{\"type\":\"summary\",\"type\":\"summary\",\"summary\":\"T\"}";
        assert_eq!(
            last_line_str(twice, "summary", "summary").as_deref(),
            Some("T")
        );
        let typed = "{\"type\":\"relocated\",\"relocatedCwd\":\"/a\"}\n{\"type\":\"relocated\",\"relocatedCwd\":\"/b\"\n";
        assert_eq!(
            last_typed_line_str(typed, "relocated", "relocatedCwd").as_deref(),
            Some("/a"),
            "a line that does not parse is skipped"
        );
        assert_eq!(
            field_prefix(r#"x "content":"a\nb\"c" "#, "content", 200),
            r#"a b\"c"#
        );
        assert_eq!(field_prefix(r#""text":"abcdef"#, "text", 3), "abc");
        assert_eq!(field_prefix("nothing", "text", 3), "");
        assert_eq!(strip_tags("a <b x=\"1\">c</b>\nd <e>f"), "a d <e>f");
        assert_eq!(strip_tags("<A>x</A> <a-b>y</a-b>z"), "<A>x</A> z");
    }
}
