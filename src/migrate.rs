//! Converting a repository written by the Python `claude-session-sync` 0.x into the ccsync
//! format, losing no session, memory file or placeholder.
//!
//! # What the Python tool wrote (0.1.0 – 0.3.0, read from its source)
//!
//! * `sessions/<ENC(placeholder path)>/<id>.jsonl` (before 0.1: `sessions/<machine>/<dir>/…`):
//!   each line parsed and re-serialised (`json.dumps(ensure_ascii=False)`), every *string value*
//!   (not object keys) passed through `PathMapper.to_placeholder`: a plain substring replacement
//!   of each of the pushing machine's values by `{{KEY}}`, longest value first, with no path
//!   boundary (`/home/a/projects2` became `{{PROJECTS}}2`) and on Windows also the `/`-spelling.
//!   Every push rewrote every session file it had with its own mapping; `session_meta/<id>.json`
//!   names the `last_editor`, the machine that last changed the content.
//! * The pushing machine's mapping is its `config.json` `placeholders` (`{"{{KEY}}": value}`)
//!   plus its entries in `shared_placeholders.json`; `machines/<id>.json` records the former on
//!   every push (`"placeholders"`). Keys were never validated (`{{my-projects}}` is possible).
//!   Before 0.1 the tool detected `{{HOME}}`, `{{USERNAME}}` (the login name, `$USER`) and on
//!   Windows `{{APPDATA}}` by itself and kept them in `config.json`; every 0.1.x still
//!   substitutes what a `config.json` holds, and its pull still expands `{{HOME}}` and
//!   `{{USERNAME}}` from the environment. `USERNAME` is not a path: `alice` was replaced
//!   anywhere (`m{{USERNAME}}` for "malice", `{{USERNAME}}@example.com`).
//! * `shared_config/` (CLAUDE.md, `memory/<dir>/…`, `plans/…`): raw copies, never mapped, so a
//!   `{{` there is always text. `memory/_paths.json` decodes folder names and is lossy.
//!
//! # The conversion
//!
//! One compare-and-swap commit on top of the legacy head. A `{{KEY}}` in a transcript is a
//! placeholder when KEY is one the Python tool could have substituted: a name of its
//! `shared_placeholders.json`, of a machine record (its `config.json`), one of the automatic
//! `HOME`, `USERNAME`, `APPDATA`, or a name that opens a session's folder name (ENC of its
//! placeholder path, `--NAME---…`) or a `_paths.json` entry (no real directory is called
//! `{{…}}`). Every other `{{` is text the
//! user or a tool wrote and is escaped, so it comes back byte for byte. Of the placeholders:
//! names whose values are not paths (`USERNAME`) are restored as the text they stood for on the
//! last editor; a token glued to more path characters (`{{PROJECTS}}2`) is restored to the raw
//! path and mapped again with path boundaries; every other token stays a placeholder (renamed
//! when its key is not a valid name), the rest of its path taking `/`. Raw paths the Python tool
//! left (object keys, memory) become placeholders using every machine's paths. Placeholders
//! that only a machine's `config.json` defined join `shared_placeholders.json` with the paths
//! the records give, and those needed by a session's directory that no machine recorded are
//! added without paths, so `init` asks for them and `pull` names them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::claude::jsonscan::{TopScanner, Want};
use crate::paths::{self, Context, Mapper, PathStyle, is_terminator};
use crate::store::format::{
    self, FORMAT_FILE, FormatMarker, MachineRecord, SHARED_PLACEHOLDERS, SharedPlaceholders,
};
use crate::store::layout::{self, ProjectRecord, SessionMeta, TRANSCRIPT_LOG};
use crate::store::{BlobReader, Oid, Store, TreeEntry};
use crate::sync::log::{self, SegmentWriter, StoredLog};
use crate::sync::snapshot::Snapshot;

/// What a migration converted.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MigrationReport {
    pub sessions: usize,
    pub memory_files: usize,
    /// Placeholder names in the converted `shared_placeholders.json`.
    pub placeholders: usize,
    /// Placeholders the Python tool took from a machine's `config.json` only (not in its
    /// `shared_placeholders.json`), now shared, with the machines whose path is known.
    pub from_configs: BTreeMap<String, Vec<String>>,
    /// Placeholders that stood for text, not a path (`USERNAME`), restored as that text.
    pub restored_as_text: Vec<String>,
    /// Keys that are not valid placeholder names, and the names they became.
    pub renamed: BTreeMap<String, String>,
    /// For each placeholder a session's working directory uses: how many sessions need it.
    pub needed_by_sessions: BTreeMap<String, usize>,
    /// Of those, the ones this machine has no path for (its sessions are skipped by `pull`
    /// until it has one: `ccsync config add-placeholder NAME=PATH`).
    pub undefined_here: Vec<String>,
    /// Legacy files left where they were (a session with no working directory anywhere, memory
    /// of no known project).
    pub kept: Vec<String>,
}

impl MigrationReport {
    /// Human lines describing the conversion (the first one is the summary).
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "Converted the Python claude-session-sync repository: {} sessions, {} memory files, {} placeholders.",
            self.sessions, self.memory_files, self.placeholders
        )];
        for (name, machines) in &self.from_configs {
            if machines.is_empty() {
                out.push(format!(
                    "  {name} opens the working directory of {} session(s) and no machine recorded its path: now shared without one",
                    self.sessions_needing(name)
                ));
            } else {
                out.push(format!(
                    "  {name} was only in the config.json of {}: now shared",
                    machines.join(", ")
                ));
            }
        }
        for (old, new) in &self.renamed {
            out.push(format!("  placeholder {{{{{old}}}}} is now {new}"));
        }
        for name in &self.restored_as_text {
            out.push(format!(
                "  {{{{{name}}}}} stood for text, not a path: restored as the text it replaced"
            ));
        }
        if !self.kept.is_empty() {
            out.push(format!(
                "  {} file(s) left as they were (nothing tells their project): {}",
                self.kept.len(),
                self.kept
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out
    }

    /// How many sessions need `name`'s path.
    pub fn sessions_needing(&self, name: &str) -> usize {
        self.needed_by_sessions.get(name).copied().unwrap_or(0)
    }
}

/// This machine, as the conversion sees it: its id, path style and placeholder paths.
#[derive(Debug, Clone, Copy)]
pub struct ThisMachine<'a> {
    pub id: &'a str,
    pub style: PathStyle,
    pub placeholders: &'a BTreeMap<String, String>,
}

/// Whether the top-level names of a repository look like the Python tool's layout.
pub fn looks_legacy(top: &[&str]) -> bool {
    top.contains(&"session_meta")
        || top.contains(&"shared_config")
        || (top.contains(&"sessions") && !top.contains(&"ccsync.json"))
}

#[derive(Deserialize, Default)]
struct LegacySessionMeta {
    #[serde(default)]
    last_editor: Option<String>,
}

#[derive(Deserialize, Default)]
struct LegacyMachineFile {
    #[serde(default)]
    machine_id: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    placeholders: BTreeMap<String, serde_json::Value>,
}

/// Placeholder names the Python tool substituted before 0.1 without being asked.
const AUTOMATIC: &[&str] = &["HOME", "USERNAME", "APPDATA"];

const ALT: &str = "_CCSYNCALT";

fn guess_style(path: &str) -> PathStyle {
    let b = path.as_bytes();
    if (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':') || path.starts_with("\\\\") {
        PathStyle::Windows
    } else {
        PathStyle::Posix
    }
}

fn is_path_value(v: &str) -> bool {
    paths::normalize_path(guess_style(v), "X", v).is_ok()
}

/// Python's `path_to_project_dir`: every character outside `[A-Za-z0-9]` becomes `-`.
fn py_enc(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The key of a `{{KEY}}` at `at` and where the token ends; `None` when there is none there.
fn legacy_key(data: &[u8], at: usize) -> Option<(&str, usize)> {
    if !data[at..].starts_with(b"{{") {
        return None;
    }
    let k0 = at + 2;
    let mut j = k0;
    while j < data.len() && j - k0 <= 64 {
        if data[j..].starts_with(b"}}") {
            if j == k0 {
                return None;
            }
            return std::str::from_utf8(&data[k0..j]).ok().map(|k| (k, j + 2));
        }
        let b = data[j];
        if b < 0x20 || matches!(b, b'{' | b'}' | b'"' | b'\\') {
            return None;
        }
        j += 1;
    }
    None
}

/// Valid-looking placeholder names at the start of `{{NAME}}` tokens in `s`.
fn token_names(s: &str) -> BTreeSet<String> {
    let b = s.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(rel) = memchr::memmem::find(&b[i..], b"{{") {
        let at = i + rel;
        match legacy_key(b, at) {
            Some((k, end)) if paths::valid_name(k) => {
                out.insert(k.to_string());
                i = end;
            }
            _ => i = at + 1,
        }
    }
    out
}

fn json_escape(s: &str) -> Vec<u8> {
    let q = serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"));
    q.as_bytes()[1..q.len() - 1].to_vec()
}

/// A placeholder key of the Python tool.
#[derive(Debug, Clone)]
struct LegacyName {
    /// Its ccsync name (the key itself when valid).
    new: String,
    /// It stood for text, not a path (restored as that text).
    text: bool,
    /// It was in the Python `shared_placeholders.json`.
    in_table: bool,
}

#[derive(Debug, Clone)]
struct LegacyMachine {
    style: PathStyle,
    /// key → raw value, as the Python tool substituted it on this machine.
    values: BTreeMap<String, String>,
    /// Keys whose value came from the machine's `config.json` (its record) only.
    from_config: BTreeSet<String>,
}

enum Piece {
    Text(Vec<u8>),
    Tok(Vec<u8>),
}

/// What the Python tool's placeholders meant, and mappers for every machine's raw paths.
struct Legacy {
    names: BTreeMap<String, LegacyName>,
    machines: BTreeMap<String, LegacyMachine>,
    /// One mapper per path style holding every machine's paths (names made unique with ALT).
    mappers: Vec<Mapper>,
    /// Each legacy machine's own mapper (ccsync names), to find Python's folder names.
    machine_mappers: BTreeMap<String, Mapper>,
}

impl Legacy {
    fn new(
        shared: &BTreeMap<String, BTreeMap<String, String>>,
        records: &BTreeMap<String, BTreeMap<String, String>>,
        evidence: &BTreeSet<String>,
        me: Option<ThisMachine>,
    ) -> Self {
        let mut machines: BTreeMap<String, LegacyMachine> = BTreeMap::new();
        let blank = || LegacyMachine {
            style: PathStyle::Posix,
            values: BTreeMap::new(),
            from_config: BTreeSet::new(),
        };
        let mut keys: BTreeMap<String, bool> = BTreeMap::new();
        for (key, per) in shared {
            if key.is_empty() || key.contains(['{', '}']) {
                continue;
            }
            keys.insert(key.clone(), true);
            for (m, v) in per {
                machines
                    .entry(m.clone())
                    .or_insert_with(blank)
                    .values
                    .insert(key.clone(), v.clone());
            }
        }
        // The machine's config.json wins over the shared table, as in the Python tool.
        for (m, per) in records {
            let lm = machines.entry(m.clone()).or_insert_with(blank);
            for (k, v) in per {
                let Some(key) = k.strip_prefix("{{").and_then(|k| k.strip_suffix("}}")) else {
                    continue;
                };
                if key.is_empty() || key.contains(['{', '}']) {
                    continue;
                }
                keys.entry(key.to_string()).or_insert(false);
                let in_shared = shared.get(key).is_some_and(|p| p.contains_key(m));
                if !in_shared {
                    lm.from_config.insert(key.to_string());
                }
                lm.values.insert(key.to_string(), v.clone());
            }
        }
        for k in AUTOMATIC
            .iter()
            .map(|s| s.to_string())
            .chain(evidence.iter().cloned())
        {
            keys.entry(k).or_insert(false);
        }
        for lm in machines.values_mut() {
            if lm
                .values
                .values()
                .any(|v| is_path_value(v) && guess_style(v) == PathStyle::Windows)
            {
                lm.style = PathStyle::Windows;
            }
        }
        // Names: valid keys keep their name; others get one, never taking a valid key's.
        let mut taken: BTreeSet<String> = keys
            .keys()
            .filter(|k| paths::valid_name(k))
            .cloned()
            .collect();
        let mut names = BTreeMap::new();
        for (key, in_table) in &keys {
            let values: Vec<&String> = machines
                .values()
                .filter_map(|m| m.values.get(key))
                .collect();
            let any_path = values.iter().any(|v| is_path_value(v));
            let text = !any_path && (key == "USERNAME" || !values.is_empty());
            let new = if paths::valid_name(key) {
                key.clone()
            } else {
                let mut base: String = key
                    .chars()
                    .map(|c| {
                        let c = c.to_ascii_uppercase();
                        if c.is_ascii_uppercase() || c.is_ascii_digit() {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                if !base.starts_with(|c: char| c.is_ascii_uppercase()) {
                    base = format!("P_{base}");
                }
                base.truncate(60);
                let mut n = base.clone();
                let mut i = 2;
                while taken.contains(&n) {
                    n = format!("{base}_{i}");
                    i += 1;
                }
                taken.insert(n.clone());
                n
            };
            names.insert(
                key.clone(),
                LegacyName {
                    new,
                    text,
                    in_table: *in_table,
                },
            );
        }
        // Mappers of raw paths.
        let mut by_style: BTreeMap<&'static str, Vec<(String, String)>> = BTreeMap::new();
        let mut machine_mappers = BTreeMap::new();
        let mut i = 0;
        let mut add =
            |style: PathStyle, name: &str, path: &str, list: &mut Vec<(String, String)>| {
                if paths::normalize_path(style, name, path).is_ok() {
                    i += 1;
                    by_style
                        .entry(style.as_str())
                        .or_default()
                        .push((format!("{name}{ALT}{i}"), path.to_string()));
                    list.push((name.to_string(), path.to_string()));
                }
            };
        for (m, lm) in &machines {
            let mut own = Vec::new();
            for (key, v) in &lm.values {
                let Some(n) = names.get(key).filter(|n| !n.text) else {
                    continue;
                };
                add(lm.style, &n.new, v, &mut own);
            }
            if let Ok(mm) = Mapper::new(lm.style, own) {
                machine_mappers.insert(m.clone(), mm);
            }
        }
        if let Some(me) = me {
            let mut own = Vec::new();
            for (n, p) in me.placeholders {
                add(me.style, n, p, &mut own);
            }
        }
        let mut mappers = Vec::new();
        for (style, list) in by_style {
            let st = if style == "windows" {
                PathStyle::Windows
            } else {
                PathStyle::Posix
            };
            match Mapper::new(st, list) {
                Ok(m) => mappers.push(m),
                Err(e) => tracing::warn!("legacy {style} paths not mapped: {e}"),
            }
        }
        Legacy {
            names,
            machines,
            mappers,
            machine_mappers,
        }
    }

    /// The raw value `key` had on `editor` (else on the one machine, or the first, that has one).
    fn value(&self, key: &str, editor: Option<&str>) -> Option<&str> {
        if let Some(v) = editor
            .and_then(|e| self.machines.get(e))
            .and_then(|m| m.values.get(key))
        {
            return Some(v);
        }
        self.machines
            .values()
            .find_map(|m| m.values.get(key))
            .map(String::as_str)
    }

    /// The text a text placeholder stood for on `editor`.
    fn text_value(&self, key: &str, editor: Option<&str>) -> Option<String> {
        let home_base = |m: &LegacyMachine| {
            m.values
                .get("HOME")
                .and_then(|h| h.rsplit(['/', '\\']).find(|s| !s.is_empty()))
                .map(str::to_string)
        };
        let ed = editor.and_then(|e| self.machines.get(e));
        if let Some(v) = ed.and_then(|m| m.values.get(key)) {
            return Some(v.clone());
        }
        // `$USER` is the last component of the home folder on any usual set-up.
        if key == "USERNAME"
            && let Some(v) = ed.and_then(home_base)
        {
            return Some(v);
        }
        if let Some(v) = self.machines.values().find_map(|m| m.values.get(key)) {
            return Some(v.clone());
        }
        if key == "USERNAME" {
            return self.machines.values().find_map(home_base);
        }
        None
    }

    /// Legacy bytes → our portable form. With `tokens`, `{{KEY}}` the Python tool wrote are
    /// read as its placeholders (transcripts, `_paths.json`); without, every `{{` is text (the
    /// raw copies of `shared_config/`).
    fn convert(&self, data: &[u8], ctx: Context, tokens: bool, editor: Option<&str>) -> Vec<u8> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut text: Vec<u8> = Vec::new();
        let mut i = 0;
        let mut copied = 0;
        while tokens && let Some(rel) = memchr::memmem::find(&data[i..], b"{{") {
            let at = i + rel;
            let Some((key, end)) = legacy_key(data, at) else {
                i = at + 1;
                continue;
            };
            let Some(info) = self.names.get(key) else {
                i = at + 1;
                continue;
            };
            text.extend_from_slice(&data[copied..at]);
            if info.text {
                match self.text_value(key, editor) {
                    Some(v) if ctx == Context::Json => text.extend_from_slice(&json_escape(&v)),
                    Some(v) => text.extend_from_slice(v.as_bytes()),
                    None => text.extend_from_slice(&data[at..end]),
                }
                i = end;
                copied = end;
                continue;
            }
            let glued = data
                .get(end)
                .is_some_and(|&b| !is_terminator(b) && b != b'/' && b != b'\\');
            if glued && let Some(v) = self.value(key, editor) {
                // `{{PROJECTS}}2`: the Python tool replaced part of a longer name.
                match ctx {
                    Context::Json => text.extend_from_slice(&json_escape(v)),
                    Context::Text => text.extend_from_slice(v.as_bytes()),
                }
                i = end;
                copied = end;
                continue;
            }
            pieces.push(Piece::Text(std::mem::take(&mut text)));
            let (tok, k) = self.token_with_rest(&info.new, key, data, end, ctx);
            pieces.push(Piece::Tok(tok));
            i = k;
            copied = k;
        }
        text.extend_from_slice(&data[copied..]);
        pieces.push(Piece::Text(text));
        for m in &self.mappers {
            let mut next = Vec::with_capacity(pieces.len());
            for p in pieces {
                match p {
                    Piece::Text(t) if !t.is_empty() => {
                        let mut conv = Vec::with_capacity(t.len() + 16);
                        m.to_portable(&t, ctx, &mut conv);
                        split_portable(&conv, ctx, &mut next);
                    }
                    other => next.push(other),
                }
            }
            pieces = next;
        }
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut pending: Vec<u8> = Vec::new();
        for p in pieces {
            match p {
                Piece::Text(t) => pending.extend_from_slice(&t),
                Piece::Tok(t) => {
                    escape_into(&pending, &mut out);
                    pending.clear();
                    out.extend_from_slice(&t);
                }
            }
        }
        escape_into(&pending, &mut out);
        out
    }

    /// `{{NEW}}` and the rest of the path after a legacy token at `end`, with `/` separators.
    fn token_with_rest(
        &self,
        new: &str,
        key: &str,
        data: &[u8],
        end: usize,
        ctx: Context,
    ) -> (Vec<u8>, usize) {
        let mut tok = format!("{{{{{new}}}}}").into_bytes();
        let bsep: &[u8] = if ctx == Context::Json { b"\\\\" } else { b"\\" };
        // A Windows path when a backslash follows, or when only Windows machines define it.
        let windows = data[end..].starts_with(bsep)
            || (self
                .machines
                .values()
                .filter(|m| m.values.contains_key(key))
                .all(|m| m.style == PathStyle::Windows)
                && self.machines.values().any(|m| m.values.contains_key(key)));
        let mut k = end;
        loop {
            let sep = if data[k..].starts_with(b"/") {
                1
            } else if windows && data[k..].starts_with(bsep) {
                bsep.len()
            } else {
                0
            };
            if sep == 0 {
                break;
            }
            tok.push(b'/');
            k += sep;
            while k < data.len() && !is_terminator(data[k]) && data[k] != b'/' && data[k] != b'\\' {
                tok.push(data[k]);
                k += 1;
            }
        }
        (tok, k)
    }

    /// Folder names the Python tool may have given a project whose portable cwd is `cwd`.
    fn folder_names(&self, cwd: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (m, mapper) in &self.machine_mappers {
            let Ok(local) = mapper.local_path(cwd) else {
                continue;
            };
            out.push(py_enc(&local));
            let Some(lm) = self.machines.get(m) else {
                continue;
            };
            for (key, v) in &lm.values {
                if let Some(rest) = local.strip_prefix(v.as_str())
                    && (rest.is_empty() || rest.starts_with(['/', '\\']))
                {
                    out.push(format!("--{}--{}", py_enc(key), py_enc(rest)));
                }
            }
        }
        out
    }

    /// Placeholders to share: the Python table's, those of machines' config.json (their
    /// records), under their ccsync names; text placeholders are dropped.
    fn shared_table(&self, needed: &BTreeSet<String>) -> SharedPlaceholders {
        let mut sp = SharedPlaceholders::default();
        for (m, lm) in &self.machines {
            for (key, v) in &lm.values {
                if let Some(n) = self.names.get(key).filter(|n| !n.text) {
                    sp.set(&n.new, m, v);
                }
            }
        }
        for n in needed {
            sp.placeholders.entry(n.clone()).or_default();
        }
        sp
    }
}

/// Escape `{{` in text for the portable form.
fn escape_into(text: &[u8], out: &mut Vec<u8>) {
    let mut k = 0;
    while let Some(rel) = memchr::memmem::find(&text[k..], b"{{") {
        out.extend_from_slice(&text[k..k + rel]);
        out.extend_from_slice(b"{{{{");
        k += rel + 2;
    }
    out.extend_from_slice(&text[k..]);
}

/// Split a mapper's portable output into text (escapes undone) and placeholders with the rest
/// of their path (names made unique with ALT restored).
fn split_portable(conv: &[u8], ctx: Context, out: &mut Vec<Piece>) {
    let mut text = Vec::new();
    let mut i = 0;
    while i < conv.len() {
        if conv[i] != b'{' {
            let next = memchr::memchr(b'{', &conv[i..]).map_or(conv.len(), |r| i + r);
            text.extend_from_slice(&conv[i..next]);
            i = next;
            continue;
        }
        if conv[i..].starts_with(b"{{{{") {
            text.extend_from_slice(b"{{");
            i += 4;
            continue;
        }
        let close = conv[i..]
            .starts_with(b"{{")
            .then(|| memchr::memmem::find(&conv[i + 2..], b"}}"))
            .flatten()
            .map(|r| i + 2 + r);
        // Only the mapper's own tokens (a name, then ALT) are placeholders here.
        let Some(close) = close.filter(|&c| {
            conv[i + 2].is_ascii_uppercase()
                && conv[i + 2..c]
                    .windows(ALT.len())
                    .any(|w| w == ALT.as_bytes())
        }) else {
            text.push(conv[i]);
            i += 1;
            continue;
        };
        out.push(Piece::Text(std::mem::take(&mut text)));
        let inner = &conv[i + 2..close];
        let (name, spelling) = match memchr::memchr(b'|', inner) {
            Some(p) => (&inner[..p], Some(&inner[p..])),
            None => (inner, None),
        };
        let name = match memchr::memmem::find(name, ALT.as_bytes()) {
            Some(p) => &name[..p],
            None => name,
        };
        let mut tok = b"{{".to_vec();
        tok.extend_from_slice(name);
        if let Some(sp) = spelling {
            tok.extend_from_slice(sp);
        }
        tok.extend_from_slice(b"}}");
        let mut k = close + 2;
        while k < conv.len() && !is_terminator(conv[k]) {
            if conv[k] == b'\\' && ctx == Context::Json {
                if conv.get(k + 1) == Some(&b'\\') {
                    tok.extend_from_slice(b"\\\\");
                    k += 2;
                    continue;
                }
                break;
            }
            tok.push(conv[k]);
            k += 1;
        }
        out.push(Piece::Tok(tok));
        i = k;
    }
    out.push(Piece::Text(text));
}

static CWD_WANT: &[Want] = &[Want {
    key: "cwd",
    cap: 8192,
}];

fn first_cwd(data: &[u8]) -> Option<String> {
    for line in data.split(|b| *b == b'\n').take(200) {
        let mut s = TopScanner::new(CWD_WANT);
        s.feed(line);
        if let Some(c) = s.get_str("cwd").filter(|c| !c.is_empty()) {
            // JSON decoding gives the text form.
            return Some(c);
        }
    }
    None
}

fn blob_json<T: for<'de> Deserialize<'de> + Default>(
    reader: &mut BlobReader,
    e: Option<&TreeEntry>,
) -> T {
    e.and_then(|e| reader.read(&e.oid).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// One legacy transcript file of a session.
struct Copy<'a> {
    path: &'a str,
    entry: &'a TreeEntry,
    /// Its folder under `sessions/` (the one `_paths.json` names).
    dir: String,
    /// The machine of the pre-0.1 layout `sessions/<machine>/<dir>/<id>.jsonl`.
    machine: Option<String>,
}

/// Convert the legacy repository at `head` (one compare-and-swap commit). `me` is this machine
/// (its raw paths in legacy files are mapped too, and the report says which placeholders it
/// lacks).
pub fn migrate(
    store: &Store,
    _head: Option<&Oid>,
    me: ThisMachine,
    timeout: Duration,
) -> Result<MigrationReport> {
    let mut report = MigrationReport::default();
    store
        .commit_and_push(
            "convert from claude-session-sync 0.x",
            false,
            timeout,
            |head, txn| {
                report = MigrationReport::default();
                let Some(head) = head else { return Ok(()) };
                convert_tree(store, head, me, txn, &mut report)
            },
        )
        .context("cannot convert the Python claude-session-sync repository")?;
    Ok(report)
}

fn convert_tree(
    store: &Store,
    head: &Oid,
    me: ThisMachine,
    txn: &mut crate::store::Txn,
    report: &mut MigrationReport,
) -> Result<()> {
    let entries = store.tree(head)?;
    let by_path: BTreeMap<String, &TreeEntry> = entries
        .iter()
        .filter(|e| e.is_regular_file())
        .filter_map(|e| e.path_str().map(|p| (p.to_string(), e)))
        .collect();
    let mut reader = store.reader()?;
    let shared_raw: BTreeMap<String, BTreeMap<String, serde_json::Value>> =
        blob_json::<serde_json::Value>(&mut reader, by_path.get(SHARED_PLACEHOLDERS).copied())
            .get("placeholders")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default();
    let shared: BTreeMap<String, BTreeMap<String, String>> = shared_raw
        .into_iter()
        .map(|(k, per)| {
            let per = per
                .into_iter()
                .filter_map(|(m, v)| v.as_str().map(|s| (m, s.to_string())))
                .collect();
            (k, per)
        })
        .collect();
    let mut records: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut legacy_machines: BTreeMap<String, LegacyMachineFile> = BTreeMap::new();
    for (p, e) in &by_path {
        let Some(id) = p
            .strip_prefix("machines/")
            .and_then(|r| r.strip_suffix(".json"))
        else {
            continue;
        };
        let bytes = reader.read(&e.oid)?;
        if serde_json::from_slice::<MachineRecord>(&bytes).is_ok() {
            continue;
        }
        let old: LegacyMachineFile = serde_json::from_slice(&bytes).unwrap_or_default();
        let per = old
            .placeholders
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect();
        records.insert(id.to_string(), per);
        legacy_machines.insert(id.to_string(), old);
    }
    let paths_json: BTreeMap<String, String> =
        blob_json(&mut reader, by_path.get("sessions/_paths.json").copied());
    let mem_paths_json: BTreeMap<String, String> = blob_json(
        &mut reader,
        by_path.get("shared_config/memory/_paths.json").copied(),
    );

    // Sessions (several copies of one session, from older layouts, are merged).
    let known_machines: BTreeSet<String> = shared
        .values()
        .flat_map(|p| p.keys().cloned())
        .chain(records.keys().cloned())
        .collect();
    let mut by_sid: BTreeMap<String, Vec<Copy>> = BTreeMap::new();
    for (p, e) in &by_path {
        let Some(rest) = p.strip_prefix("sessions/") else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let Some(stem) = parts.last().and_then(|f| f.strip_suffix(".jsonl")) else {
            continue;
        };
        if parts.len() < 2 || !layout::valid_session_id(stem) {
            continue;
        }
        let machine =
            (parts.len() == 3 && known_machines.contains(parts[0])).then(|| parts[0].to_string());
        by_sid.entry(stem.to_string()).or_default().push(Copy {
            path: p,
            entry: e,
            dir: parts[parts.len() - 2].to_string(),
            machine,
        });
    }

    // Names that open a working directory are placeholders even when no machine recorded them.
    let mut evidence: BTreeSet<String> = BTreeSet::new();
    for v in paths_json.values().chain(mem_paths_json.values()) {
        evidence.extend(token_names(v));
    }
    // A session's folder is ENC of its placeholder path: `{{NAME}}/…` gives `--NAME---…`.
    for copies in by_sid.values() {
        for c in copies {
            if let Some(n) = c
                .dir
                .strip_prefix("--")
                .and_then(|r| r.split_once("--"))
                .map(|(n, _)| n)
                .filter(|n| paths::valid_name(n))
            {
                evidence.insert(n.to_string());
            }
        }
    }
    let legacy = Legacy::new(&shared, &records, &evidence, Some(me));
    let style_of = |m: &str| {
        legacy
            .machines
            .get(m)
            .map_or(PathStyle::Posix, |lm| lm.style)
    };

    let snap = Snapshot::load(store, Some(head))?;
    let mut touched_projects: BTreeSet<String> = BTreeSet::new();
    let mut dir_cwd: BTreeMap<String, String> = BTreeMap::new();
    let mut kept: BTreeSet<String> = BTreeSet::new();
    let mut needed: BTreeMap<String, usize> = BTreeMap::new();
    let mut cwds: Vec<String> = Vec::new();

    for (sid, copies) in &by_sid {
        let meta_path = format!("session_meta/{sid}.json");
        let last_editor =
            blob_json::<LegacySessionMeta>(&mut reader, by_path.get(&meta_path).copied())
                .last_editor;
        let mut portable_copies = Vec::new();
        for c in copies {
            let editor = c.machine.clone().or_else(|| last_editor.clone());
            let raw = reader.read(&c.entry.oid)?;
            let mut conv = Vec::with_capacity(raw.len() + 256);
            for line in raw.split_inclusive(|b| *b == b'\n') {
                conv.extend_from_slice(&legacy.convert(
                    line,
                    Context::Json,
                    true,
                    editor.as_deref(),
                ));
            }
            portable_copies.push((conv, c, editor));
        }
        let cwd = portable_copies
            .iter()
            .find_map(|(c, _, _)| first_cwd(c))
            .or_else(|| {
                portable_copies.iter().find_map(|(_, c, ed)| {
                    paths_json.get(&c.dir).map(|v| {
                        String::from_utf8_lossy(&legacy.convert(
                            v.as_bytes(),
                            Context::Text,
                            true,
                            ed.as_deref(),
                        ))
                        .into_owned()
                    })
                })
            })
            .filter(|c| !c.is_empty());
        let Some(cwd) = cwd else {
            tracing::warn!("legacy session {sid} has no working directory; left in sessions/");
            for (_, c, _) in &portable_copies {
                kept.insert(c.path.to_string());
            }
            kept.insert(meta_path);
            kept.insert("sessions/_paths.json".into());
            continue;
        };
        let editor = portable_copies
            .iter()
            .find_map(|(_, _, e)| e.clone())
            .or_else(|| legacy.machines.keys().next().cloned())
            .unwrap_or_else(|| me.id.to_string());
        let existing = snap.sessions.get(sid);
        let slug = existing
            .map(|s| s.slug.clone())
            .unwrap_or_else(|| layout::project_slug(&cwd));
        let dir = existing
            .map(|s| s.dir.clone())
            .unwrap_or_else(|| layout::session_dir(&slug, sid));
        let stored = existing
            .and_then(|s| s.transcript().cloned())
            .unwrap_or_else(|| StoredLog {
                dir: format!("{dir}/{TRANSCRIPT_LOG}"),
                segs: vec![],
            });
        // The union keeps, for each line identity, the largest count any copy has.
        let mut have: HashMap<log::Ident, u32> = HashMap::new();
        log::for_each_repo_line(&mut reader, &stored.segs, |l| {
            *have.entry(log::identity(l)).or_default() += 1;
            Ok(())
        })?;
        let mut writer = SegmentWriter::new(stored.clone());
        let mut tmp = tempfile::NamedTempFile::new()?;
        {
            let mut all = std::io::BufWriter::new(tmp.as_file_mut());
            for (conv, _, _) in &portable_copies {
                let mut mine: HashMap<log::Ident, u32> = HashMap::new();
                for line in conv.split_inclusive(|b| *b == b'\n') {
                    let id = log::identity(line);
                    let n = mine.entry(id).or_default();
                    *n += 1;
                    let h = have.entry(id).or_default();
                    if *n <= *h {
                        continue;
                    }
                    *h += 1;
                    let mut l = line.to_vec();
                    if !l.ends_with(b"\n") {
                        l.push(b'\n');
                    }
                    writer.push(&l, txn)?;
                    all.write_all(&l)?;
                }
            }
            all.flush()?;
        }
        let size = stored.size() + writer.appended;
        let lines = writer.lines;
        if !writer.is_empty() {
            writer.finish(txn, &mut reader)?;
        }
        let meta = legacy_meta(sid, &cwd, &editor, tmp.path(), size, lines)?;
        let here = meta.relocated_cwd.clone().unwrap_or_else(|| cwd.clone());
        for n in token_names(&here) {
            *needed.entry(n).or_default() += 1;
        }
        let m = txn.blob(&format::to_json_bytes(&meta)?)?;
        txn.put(&format!("{dir}/{}", layout::META_FILE), m)?;
        if snap.projects.get(&slug).is_none_or(|p| p.record.is_none())
            && touched_projects.insert(slug.clone())
        {
            let m = txn.blob(&format::to_json_bytes(&ProjectRecord { cwd: cwd.clone() })?)?;
            txn.put(
                &format!("{}/{}", layout::project_dir(&slug), layout::PROJECT_FILE),
                m,
            )?;
        }
        for (_, c, _) in &portable_copies {
            dir_cwd.entry(c.dir.clone()).or_insert_with(|| cwd.clone());
        }
        cwds.push(cwd);
        report.sessions += 1;
    }

    // Memory folders: the folder of a session's project, else the names of `_paths.json`.
    let mut folder_cwd: BTreeMap<String, String> = BTreeMap::new();
    for cwd in &cwds {
        for f in legacy.folder_names(cwd) {
            folder_cwd.entry(f).or_insert_with(|| cwd.clone());
        }
    }
    let any_editor = legacy.machines.keys().next().cloned();
    let legacy_cwd = |v: &String| {
        String::from_utf8_lossy(&legacy.convert(
            v.as_bytes(),
            Context::Text,
            true,
            any_editor.as_deref(),
        ))
        .into_owned()
    };
    for (p, e) in &by_path {
        let target = if let Some(rest) = p.strip_prefix("shared_config/memory/") {
            let Some((dir, rel)) = rest.split_once('/') else {
                continue;
            };
            let cwd = dir_cwd
                .get(dir)
                .or(folder_cwd.get(dir))
                .cloned()
                .or_else(|| paths_json.get(dir).map(legacy_cwd))
                .or_else(|| mem_paths_json.get(dir).map(legacy_cwd))
                .filter(|c| !c.is_empty());
            let Some(cwd) = cwd else {
                kept.insert(p.clone());
                kept.insert("shared_config/memory/_paths.json".into());
                continue;
            };
            let slug = layout::project_slug(&cwd);
            if snap.projects.get(&slug).is_none_or(|p| p.record.is_none())
                && touched_projects.insert(slug.clone())
            {
                let m = txn.blob(&format::to_json_bytes(&ProjectRecord { cwd })?)?;
                txn.put(
                    &format!("{}/{}", layout::project_dir(&slug), layout::PROJECT_FILE),
                    m,
                )?;
            }
            report.memory_files += 1;
            format!("{}/{rel}", layout::memory_dir(&slug))
        } else if *p == "shared_config/CLAUDE.md" {
            layout::claude_md_path()
        } else if let Some(rel) = p.strip_prefix("shared_config/plans/") {
            format!("{}/{rel}", layout::plans_dir())
        } else {
            continue;
        };
        if format::check_rel_path(&target).is_err() {
            kept.insert(p.clone());
            continue;
        }
        let raw = reader.read(&e.oid)?;
        // Raw copies: every `{{` in them is text.
        let conv = legacy.convert(&raw, crate::sync::files::context_for(&target), false, None);
        let target = if by_path.contains_key(&target)
            && by_path.get(&target).map(|x| &x.oid) != Some(&e.oid)
        {
            // ccsync already stores this file: keep both.
            crate::sync::files::conflict_path(&target, me.id, chrono::Utc::now(), &conv, |p| {
                by_path.contains_key(p)
            })?
        } else {
            target
        };
        let m = txn.blob(&conv)?;
        txn.put(&target, m)?;
    }

    // Placeholders: the table's, machines' config.json ones, names sessions need.
    let needed_names: BTreeSet<String> = needed.keys().cloned().collect();
    let table = legacy.shared_table(&needed_names);
    report.placeholders = table.placeholders.len();
    let new_bytes = format::to_json_bytes(&table)?;
    let old_bytes = match by_path.get(SHARED_PLACEHOLDERS) {
        Some(e) => Some(reader.read(&e.oid)?),
        None => None,
    };
    if old_bytes.as_deref() != Some(new_bytes.as_slice()) {
        let m = txn.blob(&new_bytes)?;
        txn.put(SHARED_PLACEHOLDERS, m)?;
    }
    for (key, n) in &legacy.names {
        if n.new != *key {
            report.renamed.insert(key.clone(), n.new.clone());
        }
        if n.text && legacy.machines.values().any(|m| m.values.contains_key(key)) {
            report.restored_as_text.push(n.new.clone());
        }
        if !n.text && !n.in_table {
            let from: Vec<String> = legacy
                .machines
                .iter()
                .filter(|(_, m)| m.from_config.contains(key))
                .map(|(id, _)| id.clone())
                .collect();
            if !from.is_empty() || needed.contains_key(&n.new) {
                report.from_configs.insert(n.new.clone(), from);
            }
        }
    }
    report.undefined_here = needed
        .keys()
        .filter(|n| !me.placeholders.contains_key(*n) && *n != "HOME")
        .cloned()
        .collect();
    report.needed_by_sessions = needed;

    // Machine records in our shape.
    for (id, old) in legacy_machines {
        if !format::valid_machine_id(&id) {
            continue;
        }
        let when = old
            .updated_at
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        let rec = MachineRecord {
            machine_id: old.machine_id.unwrap_or_else(|| id.clone()),
            hostname: String::new(),
            path_style: style_of(&id),
            registered_at: when,
            last_seen: when,
            ccsync_version: "claude-session-sync 0.x".into(),
            install_id: String::new(),
        };
        let m = txn.blob(&format::to_json_bytes(&rec)?)?;
        txn.put(&format!("machines/{id}.json"), m)?;
    }
    for p in by_path.keys().filter(|p| {
        ["sessions/", "session_meta/", "shared_config/"]
            .iter()
            .any(|d| p.starts_with(d))
    }) {
        if !kept.contains(p) {
            txn.delete(p)?;
        }
    }
    report.kept = kept
        .into_iter()
        .filter(|p| by_path.contains_key(p) && !p.ends_with("_paths.json"))
        .collect();
    for p in by_path
        .keys()
        .filter(|p| p.starts_with("locks/") && p.ends_with(".lock.json"))
    {
        txn.delete(p)?;
    }
    if !by_path.contains_key(FORMAT_FILE) {
        let m = txn.blob(&format::to_json_bytes(&FormatMarker::new(me.id))?)?;
        txn.put(FORMAT_FILE, m)?;
    }
    Ok(())
}

fn legacy_meta(
    sid: &str,
    cwd: &str,
    editor: &str,
    portable: &std::path::Path,
    size: u64,
    lines: u64,
) -> Result<SessionMeta> {
    // Read the converted transcript like a local one for its title and times.
    let t = crate::claude::transcript::scan(portable, None)?;
    Ok(SessionMeta {
        session_id: sid.to_string(),
        cwd: cwd.to_string(),
        title: t.title().map(str::to_string),
        custom_title: t.custom_title.is_some(),
        first_activity: t.first_activity,
        last_activity: t.last_activity,
        last_machine: editor.to_string(),
        size,
        lines: lines.max(t.lines),
        subagents: Vec::new(),
        updated_at: Some(chrono::Utc::now()),
        picker_hidden: t.picker_hidden_reason().map(str::to_string),
        is_sidechain: t.is_sidechain,
        entrypoint: t.entrypoint.clone(),
        // Read from the portable transcript, so already portable.
        relocated_cwd: t.relocated_cwd.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &str, &str)]) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut t: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (n, m, p) in entries {
            t.entry(n.to_string())
                .or_default()
                .insert(m.to_string(), p.to_string());
        }
        t
    }

    fn conv(l: &Legacy, raw: &[u8], editor: &str) -> String {
        String::from_utf8(l.convert(raw, Context::Json, true, Some(editor))).unwrap()
    }

    #[test]
    fn python_tokens_literals_and_raw_paths() {
        let shared = table(&[
            ("HOME", "a", "/home/a"),
            ("PROJECTS", "a", "/home/a/p"),
            ("PROJECTS", "b", "/srv/b"),
            ("HOME", "w", "C:\\Users\\w"),
        ]);
        let l = Legacy::new(&shared, &BTreeMap::new(), &BTreeSet::new(), None);
        // Python tokens stay, raw paths of any machine become tokens, other braces are text.
        let raw = br#"{"cwd":"{{PROJECTS}}/app","k":{"/home/a/p/app/x.rs":1},"t":"{{ x }} /srv/b/y {{UNKNOWN}} {{name}}"}"#;
        assert_eq!(
            conv(&l, raw, "a"),
            r#"{"cwd":"{{PROJECTS}}/app","k":{"{{PROJECTS}}/app/x.rs":1},"t":"{{{{ x }} {{PROJECTS}}/y {{{{UNKNOWN}} {{{{name}}"}"#
        );
        // A Windows path after a token takes '/'; raw Windows paths map too.
        let raw = br#"{"cwd":"{{HOME}}\\src\\app","x":"C:\\Users\\w\\y"}"#;
        assert_eq!(
            conv(&l, raw, "w"),
            r#"{"cwd":"{{HOME}}/src/app","x":"{{HOME}}/y"}"#
        );
        // A brace right before a raw path stays a brace.
        assert_eq!(
            conv(&l, br#"{"t":"{/home/a/p/x} {{/home/a"}"#, "a"),
            r#"{"t":"{{{PROJECTS}}/x} {{{{{{HOME}}"}"#
        );
        // A token glued to more of a name is the raw path again, mapped with boundaries.
        let raw = br#"{"t":"{{PROJECTS}}2/x and {{PROJECTS}}"}"#;
        assert_eq!(
            conv(&l, raw, "a"),
            r#"{"t":"{{HOME}}/p2/x and {{PROJECTS}}"}"#
        );
        assert!(looks_legacy(&["README.md", "sessions", "session_meta"]));
        assert!(!looks_legacy(&["ccsync.json", "projects"]));
    }

    #[test]
    fn config_only_automatic_and_odd_names() {
        let shared = table(&[("HOME", "a", "/home/alice")]);
        let mut records = BTreeMap::new();
        records.insert(
            "a".to_string(),
            [
                ("{{HOME}}", "/home/alice"),
                ("{{USERNAME}}", "alice"),
                ("{{WORK}}", "/srv/work"),
                ("{{my-code}}", "/opt/code"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let evidence: BTreeSet<String> = ["LOST".to_string()].into();
        let l = Legacy::new(&shared, &records, &evidence, None);
        let raw = br#"{"cwd":"{{WORK}}/app","t":"m{{USERNAME}} {{USERNAME}}@x.org {{my-code}}/k {{LOST}}/z {{APPDATA}}\\q"}"#;
        assert_eq!(
            conv(&l, raw, "a"),
            r#"{"cwd":"{{WORK}}/app","t":"malice alice@x.org {{MY_CODE}}/k {{LOST}}/z {{APPDATA}}/q"}"#
        );
        // An editor without a recorded USERNAME: the last part of its home folder.
        let shared = table(&[("HOME", "b", "C:\\Users\\bob")]);
        let l = Legacy::new(&shared, &BTreeMap::new(), &BTreeSet::new(), None);
        assert_eq!(conv(&l, br#"{"t":"{{USERNAME}}"}"#, "b"), r#"{"t":"bob"}"#);
        // Raw copies (memory): every brace is text.
        let l = Legacy::new(&shared, &BTreeMap::new(), &BTreeSet::new(), None);
        assert_eq!(
            String::from_utf8(l.convert(b"{{HOME}} C:\\Users\\bob\\x", Context::Text, false, None))
                .unwrap(),
            "{{{{HOME}} {{HOME}}/x"
        );
        let t = l.shared_table(&["LOST".to_string()].into());
        assert!(t.placeholders["LOST"].is_empty());
        assert!(!t.placeholders.contains_key("USERNAME"));
    }
}
