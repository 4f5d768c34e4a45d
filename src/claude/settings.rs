//! Claude Code's `settings.json` files, two ways:
//!
//! - **Reading them as the client does** ([`MergedSettings`]): the managed policy, user, project
//!   and local files, validated and merged with the client's precedence, and the values ccsync
//!   depends on (`cleanupPeriodDays`, `autoMemoryDirectory`) interpreted as the client does.
//! - **Editing them as text**: ccsync's hook entries are inserted and removed without
//!   re-serialising the file, so every byte outside the edit stays as the user wrote it, and
//!   removing what was inserted gives the original bytes back. Pure: text in, text out. The
//!   hooks format is
//!   `{"hooks": {"SessionStart": [{"matcher": …, "hooks": [{"type": "command", "command": …}]}]}}`.

use std::collections::BTreeSet;
use std::path::{Component, MAIN_SEPARATOR, Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Value};

use super::ClaudeDir;

// ---------------------------------------------------------------------------------------------
// Settings as the client merges them.
// ---------------------------------------------------------------------------------------------

/// One settings source, in the client's precedence order: a later source wins (`yv =
/// ["userSettings","projectSettings","localSettings","flagSettings","policySettings"]`; ccsync
/// never sees `--settings` flags, so there is no flag source here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SettingsSource {
    /// `<claude>/settings.json`.
    User,
    /// `<cwd>/.claude/settings.json` (checked in).
    Project,
    /// `<cwd>/.claude/settings.local.json` (git-ignored).
    Local,
    /// Managed policy: `managed-settings.json` and `managed-settings.d/*.json`.
    Policy,
}

/// What one source contributed.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub source: SettingsSource,
    /// The file read (for the policy source: its `managed-settings.json`).
    pub path: PathBuf,
    /// The settings the client accepts from this source; `None` when the file is missing or the
    /// client rejects it as a whole.
    pub settings: Option<Map<String, Value>>,
    /// Top-level keys of the file's raw JSON, even when the file was rejected (the client looks
    /// at these to decide whether to clean up at all).
    pub raw_keys: BTreeSet<String>,
    /// Validation and read errors the client would report (warnings included: the client counts
    /// them too).
    pub errors: Vec<String>,
}

/// Largest settings file read (the client reads settings with a 2 MiB limit, `h2u=2097152`).
const MAX_SETTINGS_BYTES: u64 = 2 * 1024 * 1024;

/// The client's default `cleanupPeriodDays` (`DEm=30`).
pub const DEFAULT_CLEANUP_PERIOD_DAYS: u32 = 30;

/// Claude Code's settings for one working directory, merged as the client merges them.
///
/// Sources (later wins): user `settings.json`, project `.claude/settings.json`, project
/// `.claude/settings.local.json`, managed policy. Objects merge key by key, arrays are
/// concatenated without duplicates, anything else is replaced (lodash `mergeWith` with the
/// client's array rule).
///
/// Validation, as the client 2.1.197 does it (`SPr`, `hPr`):
/// - user / project / local files are parsed with `JSON.parse` (a leading BOM dropped; an empty
///   or blank file is `{}`) and checked against the whole settings schema with `safeParse`: **one
///   invalid field rejects the whole file** (it contributes nothing). ccsync checks JSON syntax,
///   that the top level is an object, and the fields it reads (`cleanupPeriodDays`:
///   `number().int().positive()`, i.e. a safe integer ≥ 1; `autoMemoryDirectory`: string); a file
///   the client rejects for another field is accepted here.
/// - managed files are checked field by field (`hPr` wraps every field in `.catch`): an invalid
///   field is dropped with a warning ("This field was ignored."), the rest is kept.
///
/// Not read: remote managed settings (`remote-settings.json`, Claude.ai team/enterprise), MDM
/// (macOS plist, Windows `HKLM`/`HKCU` policy keys), WSL's opt-in Windows policy chain,
/// `--settings`/`--setting-sources` flags and the `CLAUDE_CODE_USE_COWORK_PLUGINS` variant.
#[derive(Debug, Clone)]
pub struct MergedSettings {
    /// User, project, local, policy (project and local only when a cwd was given).
    pub sources: Vec<SourceFile>,
    merged: Map<String, Value>,
    home: Option<PathBuf>,
    project_trusted: bool,
}

/// The directory of the managed (policy) settings on this OS, as the client has it (`rI`):
/// `/Library/Application Support/ClaudeCode` on macOS, `C:\Program Files\ClaudeCode` on
/// Windows, `/etc/claude-code` elsewhere.
pub fn managed_settings_dir() -> PathBuf {
    if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/ClaudeCode")
    } else if crate::os::native_is_windows() {
        PathBuf::from("C:\\Program Files\\ClaudeCode")
    } else {
        PathBuf::from("/etc/claude-code")
    }
}

impl MergedSettings {
    /// The settings the client would use when started in `cwd` (`None`: user and managed
    /// settings only), with this OS's managed settings dir and the user's home dir.
    pub fn load(claude: &ClaudeDir, cwd: Option<&Path>) -> Self {
        let home = crate::os::home_dir();
        Self::load_from(claude, cwd, &managed_settings_dir(), home.as_deref())
    }

    /// [`MergedSettings::load`] with the managed settings dir and the home dir (for `~/` in
    /// `autoMemoryDirectory`) given explicitly.
    pub fn load_from(
        claude: &ClaudeDir,
        cwd: Option<&Path>,
        managed_dir: &Path,
        home: Option<&Path>,
    ) -> Self {
        let mut sources = vec![load_strict(SettingsSource::User, claude.settings())];
        if let Some(cwd) = cwd {
            let dot = cwd.join(".claude");
            sources.push(load_strict(
                SettingsSource::Project,
                dot.join("settings.json"),
            ));
            sources.push(load_strict(
                SettingsSource::Local,
                dot.join("settings.local.json"),
            ));
        }
        sources.push(load_policy(managed_dir));
        let mut merged = Map::new();
        for s in &sources {
            if let Some(settings) = &s.settings {
                merge_into(&mut merged, settings);
            }
        }
        MergedSettings {
            sources,
            merged,
            home: home.map(Path::to_path_buf),
            project_trusted: true,
        }
    }

    /// Whether the client would take `autoMemoryDirectory` from project and local settings.
    /// The client does so only once the folder is trusted (or in `-p` mode); since it refuses to
    /// run interactively in a folder whose trust dialog was declined, the default is `true`.
    pub fn set_project_trusted(&mut self, trusted: bool) {
        self.project_trusted = trusted;
    }

    /// A top-level value of the merged settings.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.merged.get(key)
    }

    /// Every error and warning the sources produced (`file: message`).
    pub fn errors(&self) -> Vec<String> {
        self.sources
            .iter()
            .flat_map(|s| {
                s.errors
                    .iter()
                    .map(|e| format!("{}: {e}", s.path.display()))
            })
            .collect()
    }

    fn source(&self, which: SettingsSource) -> Option<&Map<String, Value>> {
        self.sources
            .iter()
            .find(|s| s.source == which)
            .and_then(|s| s.settings.as_ref())
    }

    /// Days after which the client's start-up clean-up deletes transcripts (by mtime); `None`
    /// when the client deletes nothing.
    ///
    /// The client (`PEm`, `wK`):
    /// 1. a valid `cleanupPeriodDays` in managed policy: clean-up runs with it (policy is merged
    ///    last, so its value is the merged one);
    /// 2. otherwise, when any settings source has a validation error (any source, warnings
    ///    included) **and** the raw JSON of a user/project/local file has the key
    ///    `cleanupPeriodDays` at all, clean-up is skipped entirely ("Skipping cleanup: settings
    ///    have validation errors but cleanupPeriodDays was explicitly set");
    /// 3. otherwise the merged value, default 30; `0` would mean "nothing" (`if(n===0)return
    ///    null`), but the schema rejects 0 before that.
    ///
    /// So `0`, negative, fractional, string or `null` values do not mean "default": they reject
    /// their file and, the key being present, stop the clean-up. Values beyond `u32::MAX` (up to
    /// 2^53 − 1 are valid) are returned as `u32::MAX`.
    ///
    /// The client also counts errors ccsync cannot see (other invalid fields, MCP config
    /// errors), so with the key set in a file another problem could still stop its clean-up.
    pub fn cleanup_period_days(&self) -> Option<u32> {
        if let Some(v) = self
            .source(SettingsSource::Policy)
            .and_then(|p| p.get("cleanupPeriodDays"))
        {
            return days(v);
        }
        let has_errors = self.sources.iter().any(|s| !s.errors.is_empty());
        let key_set = self.sources.iter().any(|s| {
            s.source != SettingsSource::Policy && s.raw_keys.contains("cleanupPeriodDays")
        });
        if has_errors && key_set {
            return None;
        }
        match self.merged.get("cleanupPeriodDays") {
            Some(v) => days(v),
            None => Some(DEFAULT_CLEANUP_PERIOD_DAYS),
        }
    }

    /// The directory named by `autoMemoryDirectory`, as the client interprets it (`DFd`,
    /// `hUi`), or `None` when the client uses its default (`projects/ENC(git root)/memory`).
    ///
    /// - The first source that sets it wins, in the order policy, local, project, user (local
    ///   and project only for a trusted folder); an unusable value there is **not** replaced by
    ///   a lower source's: the client then falls back to the default directory.
    /// - `~/` or `~\` at the start means the home dir; what follows must not climb out of it
    ///   (`~/`, `~/..`, `~/../x` are refused). A bare `~` is not expanded.
    /// - The path is normalised (`.`/`..` resolved lexically, trailing separators dropped) and
    ///   must then be absolute, at least 3 characters, not a bare drive (`C:`), not a UNC path
    ///   (`\\…`, `//…`) and free of NUL. Relative paths are refused, not resolved.
    /// - Not done here: the client NFC-normalises the result; the environment overrides
    ///   `CLAUDE_COWORK_MEMORY_PATH_OVERRIDE` (checked first) and
    ///   `CLAUDE_CODE_REMOTE_MEMORY_DIR` belong to remote/Cowork sessions.
    pub fn auto_memory_directory(&self) -> Option<PathBuf> {
        let get = |s| {
            self.source(s)
                .and_then(|m| m.get("autoMemoryDirectory"))
                .and_then(Value::as_str)
        };
        let mut chain = vec![SettingsSource::Policy];
        if self.project_trusted {
            chain.extend([SettingsSource::Local, SettingsSource::Project]);
        }
        chain.push(SettingsSource::User);
        let raw = chain.into_iter().find_map(get)?;
        memory_path(raw, self.home.as_deref())
    }
}

/// A validated `cleanupPeriodDays` value as days (`None` for 0, which the client treats as
/// "delete nothing").
fn days(v: &Value) -> Option<u32> {
    let n = positive_safe_integer(v)?;
    u32::try_from(n).ok().or(Some(u32::MAX))
}

/// `z.number().int().positive()` (zod 4: `int` is a safe integer): the value as an integer.
fn positive_safe_integer(v: &Value) -> Option<u64> {
    const MAX_SAFE: u64 = (1 << 53) - 1;
    let n = v.as_number()?;
    let int = if let Some(u) = n.as_u64() {
        u
    } else {
        let f = n.as_f64()?;
        // JSON `30.0` or `3e1` is the number 30 in JS.
        if !(f.is_finite() && f.fract() == 0.0 && f >= 1.0 && f <= MAX_SAFE as f64) {
            return None;
        }
        f as u64
    };
    (1..=MAX_SAFE).contains(&int).then_some(int)
}

/// The checks ccsync mirrors for the fields it reads: `Err` describes the problem.
fn check_field(key: &str, v: &Value) -> Result<(), String> {
    match key {
        "cleanupPeriodDays" if positive_safe_integer(v).is_none() => Err(format!(
            "cleanupPeriodDays: {v} is not a positive whole number"
        )),
        "autoMemoryDirectory" if !v.is_string() => {
            Err(format!("autoMemoryDirectory: {v} is not a string"))
        }
        _ => Ok(()),
    }
}

/// What reading and parsing a settings file gave.
enum Parsed {
    Missing,
    Failed(String),
    /// The JSON value (blank files are `{}`).
    Json(Value),
}

fn read_settings(path: &Path) -> Parsed {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Parsed::Missing,
        Err(e) => return Parsed::Failed(format!("cannot read: {e}")),
    };
    let mut bytes = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_SETTINGS_BYTES + 1),
        &mut bytes,
    ) {
        return Parsed::Failed(format!("cannot read: {e}"));
    }
    if bytes.len() as u64 > MAX_SETTINGS_BYTES {
        return Parsed::Failed(format!("larger than {MAX_SETTINGS_BYTES} bytes"));
    }
    let text = String::from_utf8_lossy(&bytes);
    // JS `trim()`: White_Space plus the BOM, minus U+0085.
    if text
        .chars()
        .all(|c| c == '\u{feff}' || (c.is_whitespace() && c != '\u{85}'))
    {
        return Parsed::Json(Value::Object(Map::new()));
    }
    let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
    match serde_json::from_str::<Value>(body) {
        Ok(v) => Parsed::Json(v),
        Err(e) => Parsed::Failed(format!("invalid JSON: {e}")),
    }
}

fn empty_source(source: SettingsSource, path: PathBuf) -> SourceFile {
    SourceFile {
        source,
        path,
        settings: None,
        raw_keys: BTreeSet::new(),
        errors: Vec::new(),
    }
}

/// A user, project or local file: rejected as a whole when a field is invalid.
fn load_strict(source: SettingsSource, path: PathBuf) -> SourceFile {
    let mut out = empty_source(source, path);
    match read_settings(&out.path) {
        Parsed::Missing => {}
        Parsed::Failed(e) => out.errors.push(e),
        Parsed::Json(Value::Object(map)) => {
            out.raw_keys = map.keys().cloned().collect();
            let errors: Vec<String> = map
                .iter()
                .filter_map(|(k, v)| check_field(k, v).err())
                .collect();
            if errors.is_empty() {
                out.settings = Some(map);
            } else {
                out.errors = errors;
            }
        }
        Parsed::Json(_) => out.errors.push("not a JSON object".to_string()),
    }
    out
}

/// One managed file: invalid fields are dropped, the rest kept.
fn load_lenient(path: &Path, errors: &mut Vec<String>) -> Option<Map<String, Value>> {
    match read_settings(path) {
        Parsed::Missing => None,
        Parsed::Failed(e) => {
            errors.push(format!("{}: {e}", path.display()));
            None
        }
        Parsed::Json(Value::Object(mut map)) => {
            map.retain(|k, v| match check_field(k, v) {
                Ok(()) => true,
                Err(e) => {
                    errors.push(format!("{}: {e}. This field was ignored.", path.display()));
                    false
                }
            });
            Some(map)
        }
        Parsed::Json(_) => {
            errors.push(format!("{}: not a JSON object", path.display()));
            None
        }
    }
}

/// The managed policy file tier (`mDt`): `managed-settings.json`, then the `*.json` files of
/// `managed-settings.d/` (regular files or symbolic links, not starting with `.`) in name order,
/// merged; `None` when nothing but `wslInheritsWindowsSettings` is set.
fn load_policy(dir: &Path) -> SourceFile {
    let mut out = empty_source(SettingsSource::Policy, dir.join("managed-settings.json"));
    let mut merged = Map::new();
    let mut any = false;
    let mut files = vec![out.path.clone()];
    let drop_ins = dir.join("managed-settings.d");
    match std::fs::read_dir(&drop_ins) {
        Ok(rd) => {
            let mut names: Vec<String> = rd
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                .collect();
            names.sort();
            files.extend(names.into_iter().map(|n| drop_ins.join(n)));
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) => {}
        Err(e) => out
            .errors
            .push(format!("{}: cannot list: {e}", drop_ins.display())),
    }
    for f in files {
        if let Some(map) = load_lenient(&f, &mut out.errors)
            && !map.is_empty()
        {
            out.raw_keys.extend(map.keys().cloned());
            merge_into(&mut merged, &map);
            any = true;
        }
    }
    if any && merged.keys().any(|k| k != "wslInheritsWindowsSettings") {
        out.settings = Some(merged);
    }
    out
}

/// lodash `mergeWith` with the client's customiser: objects merge recursively, arrays are
/// concatenated without duplicates, other values replace.
fn merge_into(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge_into(a, b),
            (Some(Value::Array(a)), Value::Array(b)) => {
                for item in b {
                    // `new Set` keeps one of equal primitives; objects are never equal there.
                    if item.is_object() || item.is_array() || !a.contains(item) {
                        a.push(item.clone());
                    }
                }
            }
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `hUi(value, true)`: an `autoMemoryDirectory` value as the client accepts it.
fn memory_path(raw: &str, home: Option<&Path>) -> Option<PathBuf> {
    if raw.is_empty() {
        return None;
    }
    let expanded = if let Some(rest) = raw.strip_prefix("~/").or_else(|| raw.strip_prefix("~\\")) {
        let norm = normalize_lexically(if rest.is_empty() { "." } else { rest });
        let climbs = norm
            .components()
            .next()
            .is_none_or(|c| matches!(c, Component::CurDir | Component::ParentDir));
        if climbs {
            return None;
        }
        // Node's `path.join` concatenates (`~//etc` is `<home>/etc`, not `/etc`).
        let home = home?.to_string_lossy().into_owned();
        PathBuf::from(format!("{home}{MAIN_SEPARATOR}{rest}"))
    } else {
        PathBuf::from(raw)
    };
    let r = normalize_lexically(&expanded.to_string_lossy());
    let s = r.to_string_lossy();
    let s = s.trim_end_matches(['/', '\\']);
    let bare_drive = s.len() == 2 && s.as_bytes()[0].is_ascii_alphabetic() && s.ends_with(':');
    if !Path::new(s).is_absolute()
        || s.encode_utf16().count() < 3
        || bare_drive
        || s.starts_with("\\\\")
        || s.starts_with("//")
        || s.contains('\0')
    {
        return None;
    }
    Some(PathBuf::from(s))
}

/// Node's `path.normalize` for this OS, lexically: `.` dropped, `..` applied (never above the
/// root), repeated separators collapsed; an empty result is `.`.
fn normalize_lexically(p: &str) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            _ => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

// ---------------------------------------------------------------------------------------------
// Editing settings.json as text.
// ---------------------------------------------------------------------------------------------

/// A JSON value with the byte span it occupies.
#[derive(Debug, Clone)]
enum Node {
    Object {
        start: usize,
        end: usize,
        members: Vec<Member>,
    },
    Array {
        start: usize,
        end: usize,
        items: Vec<Node>,
    },
    Scalar {
        start: usize,
        end: usize,
    },
}

#[derive(Debug, Clone)]
struct Member {
    key: String,
    key_start: usize,
    value: Node,
}

impl Node {
    fn start(&self) -> usize {
        match self {
            Node::Object { start, .. } | Node::Array { start, .. } | Node::Scalar { start, .. } => {
                *start
            }
        }
    }
    fn end(&self) -> usize {
        match self {
            Node::Object { end, .. } | Node::Array { end, .. } | Node::Scalar { end, .. } => *end,
        }
    }
    fn member(&self, key: &str) -> Option<(usize, &Member)> {
        match self {
            Node::Object { members, .. } => members.iter().enumerate().find(|(_, m)| m.key == key),
            _ => None,
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

const MAX_DEPTH: usize = 200;

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn err(&self, what: &str) -> anyhow::Error {
        let line = self.b[..self.i.min(self.b.len())]
            .iter()
            .filter(|c| **c == b'\n')
            .count()
            + 1;
        anyhow!("{what} at line {line}")
    }

    fn string(&mut self) -> Result<(usize, usize)> {
        let start = self.i;
        self.i += 1;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return Ok((start, self.i));
                }
                _ => self.i += 1,
            }
        }
        Err(self.err("unterminated string"))
    }

    fn value(&mut self, depth: usize) -> Result<Node> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.ws();
        let start = self.i;
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Node::Object {
                        start,
                        end: self.i,
                        members,
                    });
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return Err(self.err("expected a key"));
                    }
                    let (ks, ke) = self.string()?;
                    let key: String =
                        serde_json::from_slice(&self.b[ks..ke]).map_err(|_| self.err("bad key"))?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return Err(self.err("expected ':'"));
                    }
                    self.i += 1;
                    let value = self.value(depth + 1)?;
                    members.push(Member {
                        key,
                        key_start: ks,
                        value,
                    });
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Node::Object {
                                start,
                                end: self.i,
                                members,
                            });
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Node::Array {
                        start,
                        end: self.i,
                        items,
                    });
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Node::Array {
                                start,
                                end: self.i,
                                items,
                            });
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => {
                let (s, e) = self.string()?;
                Ok(Node::Scalar { start: s, end: e })
            }
            Some(_) => {
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'
                    )
                {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(self.err("expected a value"));
                }
                Ok(Node::Scalar { start, end: self.i })
            }
            None => Err(self.err("unexpected end")),
        }
    }
}

/// Parse a document and check it is a JSON object (also with serde, which validates scalars).
fn parse(text: &str) -> Result<Node> {
    serde_json::from_str::<serde_json::Value>(text).map_err(|e| anyhow!("not valid JSON: {e}"))?;
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    let root = p.value(0)?;
    match root {
        Node::Object { .. } => Ok(root),
        _ => bail!("the top level is not a JSON object"),
    }
}

fn splice(text: &str, at: usize, remove_to: usize, insert: &str) -> String {
    let mut s = String::with_capacity(text.len() + insert.len());
    s.push_str(&text[..at]);
    s.push_str(insert);
    s.push_str(&text[remove_to..]);
    s
}

fn insert_member(text: &str, obj: &Node, key: &str, value: &str) -> String {
    let Node::Object { start, members, .. } = obj else {
        return text.to_string();
    };
    let k = serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""));
    match members.last() {
        None => splice(text, start + 1, start + 1, &format!("{k}: {value}")),
        Some(m) => splice(
            text,
            m.value.end(),
            m.value.end(),
            &format!(", {k}: {value}"),
        ),
    }
}

fn insert_item(text: &str, arr: &Node, item: &str) -> String {
    let Node::Array { start, items, .. } = arr else {
        return text.to_string();
    };
    match items.last() {
        None => splice(text, start + 1, start + 1, item),
        Some(last) => splice(text, last.end(), last.end(), &format!(", {item}")),
    }
}

fn remove_member(text: &str, obj: &Node, idx: usize) -> String {
    let Node::Object { members, .. } = obj else {
        return text.to_string();
    };
    let m = &members[idx];
    if idx > 0 {
        splice(text, members[idx - 1].value.end(), m.value.end(), "")
    } else if members.len() > 1 {
        splice(text, m.key_start, members[1].key_start, "")
    } else {
        splice(text, m.key_start, m.value.end(), "")
    }
}

fn remove_item(text: &str, arr: &Node, idx: usize) -> String {
    let Node::Array { items, .. } = arr else {
        return text.to_string();
    };
    if idx > 0 {
        splice(text, items[idx - 1].end(), items[idx].end(), "")
    } else if items.len() > 1 {
        splice(text, items[0].start(), items[1].start(), "")
    } else {
        splice(text, items[0].start(), items[0].end(), "")
    }
}

/// A hook ccsync installs, in the client's exec form (`command` is the program, `args` its
/// arguments): Claude Code then starts it directly, with no shell, so the same entry works
/// under sh, Git Bash and PowerShell alike.
#[derive(Debug, Clone)]
pub struct HookSpec {
    pub event: &'static str,
    pub program: String,
    pub args: Vec<String>,
    pub timeout_secs: u64,
}

impl HookSpec {
    fn group(&self) -> String {
        serde_json::json!({"hooks": [{"type": "command", "command": self.program, "args": self.args, "timeout": self.timeout_secs}]}).to_string()
    }
}

/// Whether a hook entry is one of ccsync's (for `event`): the exec form this version writes, or
/// the shell command line older versions wrote.
pub fn is_ours(hook: &serde_json::Value, event: &str) -> bool {
    let word = match event {
        "SessionStart" => "session-start",
        "SessionEnd" => "session-end",
        _ => return false,
    };
    let Some(command) = hook.get("command").and_then(|c| c.as_str()) else {
        return false;
    };
    let ccsync = command.contains("ccsync") || command.contains("claude-session-sync");
    match hook.get("args").and_then(|a| a.as_array()) {
        Some(args) => {
            ccsync
                && args.first().and_then(|a| a.as_str()) == Some("hook")
                && args.get(1).and_then(|a| a.as_str()) == Some(word)
        }
        None => ccsync && command.trim_end().ends_with(&format!("hook {word}")),
    }
}

/// Indexes of ccsync's groups in an event's array.
fn our_groups(text: &str, arr: &Node, event: &str) -> Vec<usize> {
    let Node::Array { items, .. } = arr else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter(|(_, g)| {
            serde_json::from_str::<serde_json::Value>(&text[g.start()..g.end()])
                .ok()
                .and_then(|v| v.get("hooks").and_then(|h| h.as_array()).cloned())
                .is_some_and(|hs| !hs.is_empty() && hs.iter().all(|h| is_ours(h, event)))
        })
        .map(|(i, _)| i)
        .collect()
}

/// What [`install`] created (so that [`remove`] can take exactly that away).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Created {
    pub hooks_object: bool,
    pub events: Vec<String>,
}

/// Insert ccsync's hook groups (replacing older ccsync groups). Returns the new text and what
/// was created; the text is unchanged when the hooks are already there.
pub fn install(text: &str, specs: &[HookSpec]) -> Result<(String, Created)> {
    let mut t = if text.trim().is_empty() {
        "{}".to_string()
    } else {
        text.to_string()
    };
    let mut created = Created::default();
    for spec in specs {
        let root = parse(&t)?;
        let Some((_, hooks)) = root.member("hooks") else {
            let value = format!(
                "{{{}: [{}]}}",
                serde_json::to_string(spec.event)?,
                spec.group()
            );
            t = insert_member(&t, &root, "hooks", &value);
            created.hooks_object = true;
            created.events.push(spec.event.to_string());
            continue;
        };
        if !matches!(hooks.value, Node::Object { .. }) {
            bail!("\"hooks\" is not an object");
        }
        match hooks.value.member(spec.event) {
            None => {
                t = insert_member(&t, &hooks.value, spec.event, &format!("[{}]", spec.group()));
                created.events.push(spec.event.to_string());
            }
            Some((_, ev)) => {
                if !matches!(ev.value, Node::Array { .. }) {
                    bail!("\"hooks\".\"{}\" is not a list", spec.event);
                }
                let ours = our_groups(&t, &ev.value, spec.event);
                let same = ours.len() == 1 && {
                    let Node::Array { items, .. } = &ev.value else {
                        unreachable!()
                    };
                    let g = &items[ours[0]];
                    serde_json::from_str::<serde_json::Value>(&t[g.start()..g.end()]).ok()
                        == serde_json::from_str::<serde_json::Value>(&spec.group()).ok()
                };
                if same {
                    continue;
                }
                // Drop older ccsync groups (other paths, options), last first, then add ours.
                for idx in ours.into_iter().rev() {
                    let root = parse(&t)?;
                    let arr = event_array(&root, spec.event)
                        .ok_or_else(|| anyhow!("settings.json changed while editing"))?;
                    t = remove_item(&t, &arr, idx);
                }
                let root = parse(&t)?;
                let arr = event_array(&root, spec.event)
                    .ok_or_else(|| anyhow!("settings.json changed while editing"))?;
                t = insert_item(&t, &arr, &spec.group());
            }
        }
    }
    Ok((t, created))
}

fn event_array(root: &Node, event: &str) -> Option<Node> {
    let (_, hooks) = root.member("hooks")?;
    let (_, ev) = hooks.value.member(event)?;
    Some(ev.value.clone())
}

/// Remove ccsync's hook groups, and the containers `created` says install made when they are
/// empty again.
pub fn remove(text: &str, created: &Created) -> Result<String> {
    let mut t = text.to_string();
    for event in ["SessionStart", "SessionEnd"] {
        loop {
            let root = parse(&t)?;
            let Some(arr) = event_array(&root, event) else {
                break;
            };
            let Some(&idx) = our_groups(&t, &arr, event).last() else {
                break;
            };
            t = remove_item(&t, &arr, idx);
        }
        if created.events.iter().any(|e| e == event) {
            let root = parse(&t)?;
            if let Some((_, hooks)) = root.member("hooks")
                && let Some((i, ev)) = hooks.value.member(event)
                && matches!(&ev.value, Node::Array { items, .. } if items.is_empty())
            {
                t = remove_member(&t, &hooks.value, i);
            }
        }
    }
    if created.hooks_object {
        let root = parse(&t)?;
        if let Some((i, hooks)) = root.member("hooks")
            && matches!(&hooks.value, Node::Object { members, .. } if members.is_empty())
        {
            t = remove_member(&t, &root, i);
        }
    }
    Ok(t)
}

/// Whether ccsync's hooks are installed in this text.
pub fn installed(text: &str) -> bool {
    let Ok(root) = parse(text) else { return false };
    ["SessionStart", "SessionEnd"]
        .iter()
        .all(|e| event_array(&root, e).is_some_and(|arr| !our_groups(text, &arr, e).is_empty()))
}

/// Set MCP server `name` in the `mcpServers` object of Claude Code's global config (`.claude.json`)
/// to `server` (a JSON object), editing the text: every other byte stays. Unchanged text when it
/// is already that.
pub fn mcp_install(text: &str, name: &str, server: &serde_json::Value) -> Result<String> {
    let t = if text.trim().is_empty() {
        "{}".to_string()
    } else {
        text.to_string()
    };
    let root = parse(&t)?;
    let value = serde_json::to_string_pretty(server)?;
    let Some((_, servers)) = root.member("mcpServers") else {
        let obj = format!("{{{}: {value}}}", serde_json::to_string(name)?);
        return Ok(insert_member(&t, &root, "mcpServers", &obj));
    };
    if !matches!(servers.value, Node::Object { .. }) {
        bail!("\"mcpServers\" is not an object");
    }
    match servers.value.member(name) {
        None => Ok(insert_member(&t, &servers.value, name, &value)),
        Some((_, m)) => {
            let now =
                serde_json::from_str::<serde_json::Value>(&t[m.value.start()..m.value.end()]).ok();
            if now.as_ref() == Some(server) {
                return Ok(t);
            }
            Ok(splice(&t, m.value.start(), m.value.end(), &value))
        }
    }
}

/// Remove MCP server `name` from `mcpServers` (the object stays, even empty).
pub fn mcp_remove(text: &str, name: &str) -> Result<String> {
    if text.trim().is_empty() {
        return Ok(text.to_string());
    }
    let root = parse(text)?;
    let Some((_, servers)) = root.member("mcpServers") else {
        return Ok(text.to_string());
    };
    match servers.value.member(name) {
        Some((i, _)) => Ok(remove_member(text, &servers.value, i)),
        None => Ok(text.to_string()),
    }
}

/// Check that a settings file can be edited (a JSON object).
pub fn check(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Ok(());
    }
    parse(text).map(|_| ())
}

#[cfg(test)]
mod mcp_tests {
    use super::*;

    #[test]
    fn mcp_servers_are_added_replaced_and_removed_as_text() {
        let server = serde_json::json!({"type": "stdio", "command": "/bin/ccsync", "args": ["mcp"], "env": {}});
        let before = "{\n  \"userID\": \"x\",\n  \"mcpServers\": {\n    \"other\": {\"command\": \"o\"}\n  },\n  \"z\": [1, 2]\n}\n";
        let once = mcp_install(before, "ccsync", &server).unwrap();
        let v: serde_json::Value = serde_json::from_str(&once).unwrap();
        assert_eq!(v["mcpServers"]["ccsync"], server);
        assert_eq!(v["mcpServers"]["other"]["command"], "o");
        assert!(once.starts_with(
            "{\n  \"userID\": \"x\",\n  \"mcpServers\": {\n    \"other\": {\"command\": \"o\"}"
        ));
        assert_eq!(
            mcp_install(&once, "ccsync", &server).unwrap(),
            once,
            "idempotent"
        );
        let moved = serde_json::json!({"type": "stdio", "command": "/new/ccsync", "args": ["mcp"], "env": {}});
        let again = mcp_install(&once, "ccsync", &moved).unwrap();
        let v: serde_json::Value = serde_json::from_str(&again).unwrap();
        assert_eq!(v["mcpServers"]["ccsync"]["command"], "/new/ccsync");
        assert_eq!(mcp_remove(&once, "ccsync").unwrap(), before);
        let fresh = mcp_install("", "ccsync", &server).unwrap();
        let v: serde_json::Value = serde_json::from_str(&fresh).unwrap();
        assert_eq!(v["mcpServers"]["ccsync"], server);
        assert!(mcp_install("[1]", "ccsync", &server).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<HookSpec> {
        vec![
            HookSpec {
                event: "SessionStart",
                program: "/bin/ccsync".into(),
                args: vec!["hook".into(), "session-start".into()],
                timeout_secs: 10,
            },
            HookSpec {
                event: "SessionEnd",
                program: "/bin/ccsync".into(),
                args: vec!["hook".into(), "session-end".into()],
                timeout_secs: 10,
            },
        ]
    }

    #[test]
    fn round_trips_are_byte_identical() {
        let cases = [
            "{}",
            "{ }\n",
            "{\n    \"model\": \"opus\",\n    \"cleanupPeriodDays\": 90\n}\n",
            r#"{"hooks": {}}"#,
            "{\n  \"hooks\": {\n    \"PreToolUse\": [ { \"matcher\": \"Bash\", \"hooks\": [ { \"type\": \"command\", \"command\": \"echo hi\" } ] } ]\n  },\n  \"env\": {\"A\": \"1\"}\n}",
            r#"{"hooks":{"SessionStart":[],"SessionEnd":[{"hooks":[{"type":"command","command":"other-tool end"}]}]},"x":[1,2.5e3,true,null,"é\"\\"]}"#,
        ];
        for original in cases {
            let (installed_text, created) = install(original, &specs()).unwrap();
            assert!(installed(&installed_text), "{installed_text}");
            let v: serde_json::Value = serde_json::from_str(&installed_text).unwrap();
            assert_eq!(
                v["hooks"]["SessionStart"]
                    .as_array()
                    .unwrap()
                    .last()
                    .unwrap()["hooks"][0],
                serde_json::json!({"type": "command", "command": "/bin/ccsync", "args": ["hook", "session-start"], "timeout": 10})
            );
            // Idempotent.
            let (again, _) = install(&installed_text, &specs()).unwrap();
            assert_eq!(again, installed_text);
            assert_eq!(
                remove(&installed_text, &created).unwrap(),
                original,
                "round trip of {original}"
            );
        }
    }

    #[test]
    fn other_hooks_are_kept_and_old_ccsync_groups_replaced() {
        let text = r#"{"hooks":{"SessionStart":[{"hooks":[{"type":"command","command":"'/old/ccsync' hook session-start"}]},{"hooks":[{"type":"command","command":"mine.sh"}]},{"hooks":[{"type":"command","command":"/old/ccsync","args":["hook","session-start","--home","/x"]}]}]}}"#;
        let (t, _) = install(text, &specs()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        let groups = v["hooks"]["SessionStart"].as_array().unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0]["hooks"][0]["command"], "mine.sh");
        assert!(t.contains("mine.sh") && !t.contains("/old/ccsync"));
        let back = remove(&t, &Created::default()).unwrap();
        assert!(back.contains("mine.sh") && !back.contains("ccsync"));
    }

    /// On Windows without Git Bash, Claude Code runs hooks through PowerShell; in the exec form
    /// the program and its arguments reach it as JSON strings, so a Windows path with spaces,
    /// backslashes, an apostrophe, `$` or `&` needs no shell quoting and gets none.
    #[test]
    fn windows_paths_are_stored_exactly_in_the_exec_form() {
        let program = r"C:\Program Files\ccsync\ccsync.exe";
        let home = r"C:\Users\Ann O'Neil & $Co\.claude-session-sync";
        let specs = ["SessionStart", "SessionEnd"].map(|event| HookSpec {
            event,
            program: program.to_string(),
            args: vec![
                "hook".into(),
                if event == "SessionStart" {
                    "session-start"
                } else {
                    "session-end"
                }
                .into(),
                "--home".into(),
                home.into(),
            ],
            timeout_secs: 30,
        });
        let (t, created) = install("", &specs).unwrap();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        for (event, word) in [
            ("SessionStart", "session-start"),
            ("SessionEnd", "session-end"),
        ] {
            let hook = &v["hooks"][event][0]["hooks"][0];
            assert_eq!(hook["type"], "command");
            assert_eq!(hook["command"], program, "{t}");
            assert_eq!(
                hook["args"],
                serde_json::json!(["hook", word, "--home", home]),
                "{t}"
            );
            assert!(is_ours(hook, event));
        }
        let back = remove(&t, &created).unwrap();
        assert!(
            !back.contains("ccsync") && !back.contains("hooks"),
            "{back}"
        );
    }

    #[test]
    fn ours_in_both_forms_and_nothing_else() {
        use serde_json::json;
        let exec =
            json!({"command": "C:/Users/a/.cargo/bin/ccsync.exe", "args": ["hook", "session-end"]});
        assert!(is_ours(&exec, "SessionEnd"));
        assert!(!is_ours(&exec, "SessionStart"));
        assert!(is_ours(
            &json!({"command": "CCSYNC_HOME='/t' '/b/ccsync' hook session-start"}),
            "SessionStart"
        ));
        assert!(!is_ours(
            &json!({"command": "node", "args": ["hook", "session-start"]}),
            "SessionStart"
        ));
        assert!(!is_ours(
            &json!({"command": "ccsync-audit.sh"}),
            "SessionStart"
        ));
        assert!(!is_ours(&json!({"args": ["hook"]}), "SessionStart"));
    }

    #[test]
    fn malformed_settings_are_refused() {
        for bad in [
            "{",
            "[1,2]",
            "{\"hooks\": 3}",
            "{\"a\": tru}",
            "{\"hooks\": {\"SessionStart\": {}}}",
        ] {
            assert!(install(bad, &specs()).is_err(), "{bad}");
        }
        assert!(check("not json").is_err());
        assert!(check("").is_ok());
    }
}

#[cfg(test)]
mod merged_tests {
    use super::*;

    /// A fake world: a Claude dir, a project dir, a managed dir and a home, all in a temp dir.
    struct World {
        _tmp: tempfile::TempDir,
        claude: ClaudeDir,
        cwd: PathBuf,
        managed: PathBuf,
        home: PathBuf,
    }

    impl World {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().to_path_buf();
            for d in [".claude", "proj/.claude", "managed", "home"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            World {
                claude: ClaudeDir::new(root.join(".claude")),
                cwd: root.join("proj"),
                managed: root.join("managed"),
                home: root.join("home"),
                _tmp: tmp,
            }
        }
        fn user(&self, text: &str) -> &Self {
            std::fs::write(self.claude.settings(), text).unwrap();
            self
        }
        fn project(&self, text: &str) -> &Self {
            std::fs::write(self.cwd.join(".claude/settings.json"), text).unwrap();
            self
        }
        fn local(&self, text: &str) -> &Self {
            std::fs::write(self.cwd.join(".claude/settings.local.json"), text).unwrap();
            self
        }
        fn policy(&self, text: &str) -> &Self {
            std::fs::write(self.managed.join("managed-settings.json"), text).unwrap();
            self
        }
        fn drop_in(&self, name: &str, text: &str) -> &Self {
            let d = self.managed.join("managed-settings.d");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(name), text).unwrap();
            self
        }
        fn load(&self) -> MergedSettings {
            MergedSettings::load_from(
                &self.claude,
                Some(&self.cwd),
                &self.managed,
                Some(&self.home),
            )
        }
        fn load_no_cwd(&self) -> MergedSettings {
            MergedSettings::load_from(&self.claude, None, &self.managed, Some(&self.home))
        }
    }

    #[test]
    fn nothing_set_means_thirty_days() {
        let w = World::new();
        let s = w.load();
        assert_eq!(s.cleanup_period_days(), Some(30));
        assert!(s.errors().is_empty());
        assert_eq!(s.auto_memory_directory(), None);
        // Empty and blank files are `{}`.
        w.user("").project("  \n").local("\u{feff}\n").policy("");
        assert_eq!(w.load().cleanup_period_days(), Some(30));
        assert!(w.load().errors().is_empty());
    }

    #[test]
    fn each_source_is_read() {
        let w = World::new();
        w.user(r#"{"cleanupPeriodDays": 7}"#);
        assert_eq!(w.load().cleanup_period_days(), Some(7));
        assert_eq!(w.load_no_cwd().cleanup_period_days(), Some(7));
        let w = World::new();
        w.project(r#"{"cleanupPeriodDays": 8}"#);
        assert_eq!(w.load().cleanup_period_days(), Some(8));
        // Without a cwd there are no project settings.
        assert_eq!(w.load_no_cwd().cleanup_period_days(), Some(30));
        let w = World::new();
        w.local(r#"{"cleanupPeriodDays": 9}"#);
        assert_eq!(w.load().cleanup_period_days(), Some(9));
        let w = World::new();
        w.policy(r#"{"cleanupPeriodDays": 10}"#);
        assert_eq!(w.load().cleanup_period_days(), Some(10));
        assert_eq!(w.load_no_cwd().cleanup_period_days(), Some(10));
        let w = World::new();
        w.drop_in("50-retention.json", r#"{"cleanupPeriodDays": 11}"#);
        assert_eq!(w.load().cleanup_period_days(), Some(11));
    }

    #[test]
    fn precedence_user_project_local_policy() {
        let w = World::new();
        w.user(r#"{"cleanupPeriodDays": 1, "model": "u"}"#);
        assert_eq!(w.load().cleanup_period_days(), Some(1));
        w.project(r#"{"cleanupPeriodDays": 2}"#);
        assert_eq!(w.load().cleanup_period_days(), Some(2));
        w.local(r#"{"cleanupPeriodDays": 3}"#);
        assert_eq!(w.load().cleanup_period_days(), Some(3));
        w.policy(r#"{"cleanupPeriodDays": 4}"#);
        let s = w.load();
        assert_eq!(s.cleanup_period_days(), Some(4));
        // Keys set by one source only survive the merge.
        assert_eq!(s.get("model"), Some(&Value::from("u")));
        // Drop-ins are merged after managed-settings.json, in name order.
        w.drop_in("20-b.json", r#"{"cleanupPeriodDays": 6}"#)
            .drop_in("10-a.json", r#"{"cleanupPeriodDays": 5}"#)
            .drop_in(".hidden.json", r#"{"cleanupPeriodDays": 99}"#)
            .drop_in("notes.txt", r#"{"cleanupPeriodDays": 98}"#);
        assert_eq!(w.load().cleanup_period_days(), Some(6));
    }

    #[test]
    fn objects_merge_and_arrays_concatenate() {
        let w = World::new();
        w.user(r#"{"env": {"A": "1", "B": "1"}, "permissions": {"allow": ["x", "y"]}}"#)
            .local(r#"{"env": {"B": "2"}, "permissions": {"allow": ["y", "z"]}}"#);
        let s = w.load();
        assert_eq!(s.get("env"), Some(&serde_json::json!({"A": "1", "B": "2"})));
        assert_eq!(
            s.get("permissions"),
            Some(&serde_json::json!({"allow": ["x", "y", "z"]}))
        );
    }

    #[test]
    fn invalid_cleanup_values_stop_the_clean_up() {
        // The schema is `number().int().positive()`: 0, negatives, fractions, strings and null
        // reject the whole file, and with the key present the client skips clean-up.
        for bad in [
            "0",
            "-1",
            "1.5",
            "\"30\"",
            "null",
            "true",
            "9007199254740992",
        ] {
            let w = World::new();
            w.user(&format!(r#"{{"cleanupPeriodDays": {bad}}}"#));
            let s = w.load();
            assert_eq!(s.cleanup_period_days(), None, "user value {bad}");
            assert!(!s.errors().is_empty());
            // The same in project or local settings.
            let w = World::new();
            w.user(r#"{"cleanupPeriodDays": 5}"#)
                .local(&format!(r#"{{"cleanupPeriodDays": {bad}}}"#));
            assert_eq!(w.load().cleanup_period_days(), None, "local value {bad}");
        }
        // JSON numbers the client reads as whole numbers are fine.
        for (good, want) in [("30.0", 30), ("3e1", 30), ("1", 1), ("100000", 100_000)] {
            let w = World::new();
            w.user(&format!(r#"{{"cleanupPeriodDays": {good}}}"#));
            assert_eq!(w.load().cleanup_period_days(), Some(want), "{good}");
        }
        // Valid but beyond u32.
        let w = World::new();
        w.user(r#"{"cleanupPeriodDays": 9007199254740991}"#);
        assert_eq!(w.load().cleanup_period_days(), Some(u32::MAX));
    }

    /// `{"autoMemoryDirectory": "<home>/<name>"}` and the path it names.
    fn mem(w: &World, name: &str) -> (String, PathBuf) {
        let p = w.home.join(name);
        let json = serde_json::json!({ "autoMemoryDirectory": p.to_string_lossy() });
        (json.to_string(), p)
    }

    #[test]
    fn a_rejected_file_contributes_nothing() {
        let w = World::new();
        let (user, user_dir) = mem(&w, "user");
        let local_dir = w.home.join("local");
        // The invalid cleanupPeriodDays rejects the whole local file, autoMemoryDirectory too.
        let local = serde_json::json!({
            "cleanupPeriodDays": 0,
            "autoMemoryDirectory": local_dir.to_string_lossy(),
        });
        w.user(&user).local(&local.to_string());
        let s = w.load();
        assert_eq!(s.auto_memory_directory(), Some(user_dir));
        assert_eq!(s.cleanup_period_days(), None);
    }

    #[test]
    fn errors_elsewhere_matter_only_when_the_key_is_set() {
        // Broken JSON in one file, no cleanupPeriodDays anywhere: clean-up runs, default 30.
        let w = World::new();
        w.user("{not json").project(r#"{"model": "x"}"#);
        let s = w.load();
        assert!(!s.errors().is_empty());
        assert_eq!(s.cleanup_period_days(), Some(30));
        // Broken file plus a valid key in another file: the client skips clean-up.
        w.project(r#"{"cleanupPeriodDays": 60}"#);
        assert_eq!(w.load().cleanup_period_days(), None);
        // A top level that is not an object is an error too.
        let w = World::new();
        w.user("[1, 2]").local(r#"{"cleanupPeriodDays": 60}"#);
        assert_eq!(w.load().cleanup_period_days(), None);
        // Policy wins over that rule.
        w.policy(r#"{"cleanupPeriodDays": 45}"#);
        assert_eq!(w.load().cleanup_period_days(), Some(45));
    }

    #[test]
    fn managed_files_drop_only_the_invalid_field() {
        let w = World::new();
        let dir = w.home.join("policy");
        let policy = serde_json::json!({
            "cleanupPeriodDays": 0,
            "autoMemoryDirectory": dir.to_string_lossy(),
        });
        w.policy(&policy.to_string());
        let s = w.load();
        assert_eq!(s.auto_memory_directory(), Some(dir));
        // The dropped field leaves a warning; with no key in the other files, default.
        assert_eq!(s.errors().len(), 1, "{:?}", s.errors());
        assert_eq!(s.cleanup_period_days(), Some(30));
        // With the key set in user settings, that warning makes the client skip clean-up.
        w.user(r#"{"cleanupPeriodDays": 12}"#);
        assert_eq!(w.load().cleanup_period_days(), None);
        // A broken managed file contributes nothing and is an error.
        let w = World::new();
        w.policy("{").user(r#"{"cleanupPeriodDays": 12}"#);
        assert_eq!(w.load().cleanup_period_days(), None);
        // Only wslInheritsWindowsSettings: no policy.
        let w = World::new();
        w.policy(r#"{"wslInheritsWindowsSettings": true}"#);
        let s = w.load();
        let policy = s
            .sources
            .iter()
            .find(|s| s.source == SettingsSource::Policy);
        assert!(policy.is_some_and(|p| p.settings.is_none()));
    }

    #[test]
    fn unreadable_files_are_errors() {
        let w = World::new();
        // A directory where the file should be.
        std::fs::create_dir(w.cwd.join(".claude/settings.json")).unwrap();
        w.user(r#"{"cleanupPeriodDays": 3}"#);
        let s = w.load();
        assert!(!s.errors().is_empty());
        assert_eq!(s.cleanup_period_days(), None);
    }

    #[test]
    fn auto_memory_directory_chain() {
        let w = World::new();
        let (user, user_dir) = mem(&w, "user");
        let (project, project_dir) = mem(&w, "project");
        let (local, local_dir) = mem(&w, "local");
        let (policy, policy_dir) = mem(&w, "policy");
        w.user(&user);
        assert_eq!(w.load().auto_memory_directory(), Some(user_dir.clone()));
        w.project(&project);
        assert_eq!(w.load().auto_memory_directory(), Some(project_dir));
        w.local(&local);
        let mut s = w.load();
        assert_eq!(s.auto_memory_directory(), Some(local_dir));
        // An untrusted folder's project and local settings are not asked.
        s.set_project_trusted(false);
        assert_eq!(s.auto_memory_directory(), Some(user_dir));
        w.policy(&policy);
        assert_eq!(w.load().auto_memory_directory(), Some(policy_dir));
        // An unusable value at the top of the chain does not fall through to a lower source.
        w.policy(r#"{"autoMemoryDirectory": "relative/dir"}"#);
        assert_eq!(w.load().auto_memory_directory(), None);
        w.policy(r#"{"autoMemoryDirectory": ""}"#);
        assert_eq!(w.load().auto_memory_directory(), None);
        // A value of the wrong type rejects its (user) file.
        let w = World::new();
        w.user(r#"{"autoMemoryDirectory": 3}"#);
        let s = w.load();
        assert_eq!(s.auto_memory_directory(), None);
        assert!(!s.errors().is_empty());
    }

    #[test]
    fn tilde_uses_the_given_home() {
        let w = World::new();
        w.user(r#"{"autoMemoryDirectory": "~/notes/mem"}"#);
        assert_eq!(
            w.load().auto_memory_directory(),
            Some(w.home.join("notes").join("mem"))
        );
    }

    #[test]
    fn auto_memory_directory_values() {
        if crate::os::native_is_windows() {
            return; // POSIX path table
        }
        let home = Path::new("/home/al");
        let cases: &[(&str, Option<&str>)] = &[
            ("/mem", Some("/mem")),
            ("/mem/", Some("/mem")),
            ("/mem//x/./y/../z", Some("/mem/x/z")),
            ("~/notes", Some("/home/al/notes")),
            ("~/notes/../other/", Some("/home/al/other")),
            ("~//abs", Some("/home/al/abs")),
            ("~/", None),
            ("~/.", None),
            ("~/..", None),
            ("~/../x", None),
            ("~/a/../..", None),
            ("~", None),
            ("~user/x", None),
            ("relative", None),
            ("./x", None),
            ("/a", None), // shorter than 3
            ("/", None),
            ("/ab", Some("/ab")),
            ("/x/\u{0}y", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(
                memory_path(raw, Some(home)),
                want.map(PathBuf::from),
                "{raw:?}"
            );
        }
        assert_eq!(memory_path("~/x", None), None);
    }
}
