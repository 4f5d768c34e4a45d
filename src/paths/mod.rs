//! Placeholder path mapping: this machine's paths ⇄ the portable form stored in the sync repo.
//!
//! Pure: no I/O, works on raw bytes (JSONL lines, Markdown), never re-serialises anything.
//!
//! # The portable form
//!
//! * `{{NAME}}` stands for the path of placeholder `NAME`; the rest of the path after it uses `/`.
//!   On the way in it becomes the receiving machine's path, and the rest of the path takes that
//!   machine's separator (`{{PROJECTS}}/app/src` → `C:\projects\app\src`).
//! * `{{NAME|SPELLING}}` is written when a Windows path was spelled differently from the
//!   configured one (other letter case, `/` separators, mixed separators in the rest). A machine
//!   whose own path is that spelling (the same machine) writes `SPELLING` and the rest back
//!   exactly; any other machine writes its own path and converts the separators of the rest. This
//!   is what makes a push-then-pull on one machine byte-identical.
//! * A literal `{{` in the text is stored as `{{{{`, so nothing a user typed can be taken for a
//!   placeholder.
//!
//! # What counts as a path
//!
//! A configured path matches where it starts at a boundary (not inside a longer word or path) and
//! ends at one (`/home/a/projects2` is not under `/home/a/projects`). Longest paths are tried
//! first. In JSON context a Windows separator is the escaped `\\`; in text context it is `\`.
//! Windows paths match ASCII-case-insensitively and with either separator. The rest of a path
//! runs until whitespace, a quote or another character that cannot be in a path here
//! (see [`is_terminator`]); spaces end it, so a name with a space keeps its separators after
//! the space.

pub mod coverage;

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Path conventions of a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathStyle {
    Posix,
    Windows,
}

impl PathStyle {
    pub fn native() -> Self {
        if crate::os::native_is_windows() {
            PathStyle::Windows
        } else {
            PathStyle::Posix
        }
    }

    pub fn separator(self) -> char {
        match self {
            PathStyle::Posix => '/',
            PathStyle::Windows => '\\',
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PathStyle::Posix => "posix",
            PathStyle::Windows => "windows",
        }
    }
}

impl fmt::Display for PathStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PathStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "posix" | "unix" | "linux" | "macos" => Ok(PathStyle::Posix),
            "windows" | "win" => Ok(PathStyle::Windows),
            _ => Err(format!(
                "unknown path style {s:?} (expected posix or windows)"
            )),
        }
    }
}

/// How the bytes being mapped are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Inside JSON strings (JSONL lines): a backslash is written `\\`.
    Json,
    /// Plain text (Markdown, a bare path).
    Text,
}

/// Errors in placeholder definitions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error(
        "placeholder name {0:?} is not valid: use capital letters, digits and _, starting with a letter"
    )]
    BadName(String),
    #[error("path {path:?} for placeholder {name} is not usable: {why}")]
    BadPath {
        name: String,
        path: String,
        why: String,
    },
}

/// Whether a placeholder name is valid: `[A-Z][A-Z0-9_]*`, at most 64 characters.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_uppercase()
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// Check a path for use as a placeholder value on a machine of `style`, and return its
/// canonical spelling (Windows: `\` separators; no trailing separator).
pub fn normalize_path(style: PathStyle, name: &str, path: &str) -> Result<String, MapError> {
    let bad = |why: &str| MapError::BadPath {
        name: name.to_string(),
        path: path.to_string(),
        why: why.to_string(),
    };
    if path
        .chars()
        .any(|c| c.is_control() || matches!(c, '{' | '}' | '|' | '"'))
    {
        return Err(bad("it contains a control character or one of { } | \""));
    }
    let (canon, body) = match style {
        PathStyle::Posix => {
            if !path.starts_with('/') {
                return Err(bad("it is not an absolute path"));
            }
            if path.contains('\\') {
                return Err(bad("it contains a backslash"));
            }
            let trimmed = path.trim_end_matches('/');
            (
                trimmed.to_string(),
                trimmed.get(1..).unwrap_or("").to_string(),
            )
        }
        PathStyle::Windows => {
            let p = path.replace('/', "\\");
            let b = p.as_bytes();
            let is_drive =
                b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\';
            let is_unc = p.starts_with("\\\\") && p.len() > 2;
            if !is_drive && !is_unc {
                return Err(bad(
                    "it is not an absolute Windows path (like C:\\Users\\me)",
                ));
            }
            if p[2..]
                .chars()
                .any(|c| matches!(c, '<' | '>' | '?' | '*' | ':'))
            {
                return Err(bad(
                    "it contains a character Windows does not allow in paths",
                ));
            }
            let trimmed = p.trim_end_matches('\\').to_string();
            let body = if is_unc {
                trimmed[2..].to_string()
            } else {
                trimmed[3.min(trimmed.len())..].to_string()
            };
            (trimmed, body)
        }
    };
    let sep = style.separator();
    let parts: Vec<&str> = body.split(sep).filter(|_| !body.is_empty()).collect();
    if parts.is_empty() || parts.iter().all(|p| p.is_empty()) {
        return Err(bad("it is the root of the file system"));
    }
    if parts
        .iter()
        .any(|p| *p == ".." || *p == "." || p.is_empty())
    {
        return Err(bad("it contains an empty, '.' or '..' component"));
    }
    Ok(canon)
}

/// Check a session's working directory (this machine's form, as a transcript or a mapped
/// `meta.json` gives it) before it decides where the session goes: an absolute path for `style`
/// without NUL or `.`/`..` components. Unlike [`normalize_path`] (the rules for placeholder
/// values) it accepts every character a directory name can hold — quotes, backslashes on POSIX,
/// tabs, newlines, braces, spaces, any script — because Claude Code runs in such directories and
/// only ever uses the path through its folder-name encoding. The file system root is accepted.
pub fn check_cwd(style: PathStyle, path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("it is empty".into());
    }
    if path.contains('\0') {
        return Err("it contains a NUL character".into());
    }
    let (body, seps): (&str, &[char]) = match style {
        PathStyle::Posix => match path.strip_prefix('/') {
            Some(rest) => (rest, &['/']),
            None => return Err("it is not an absolute path".into()),
        },
        PathStyle::Windows => {
            let b = path.as_bytes();
            let drive = b.len() >= 3
                && b[0].is_ascii_alphabetic()
                && b[1] == b':'
                && matches!(b[2], b'\\' | b'/');
            let unc = b.len() > 2 && matches!(b[0], b'\\' | b'/') && b[0] == b[1];
            if drive {
                (&path[3..], &['\\', '/'])
            } else if unc {
                (&path[2..], &['\\', '/'])
            } else {
                return Err("it is not an absolute Windows path (like C:\\Users\\me)".into());
            }
        }
    };
    // Doubled separators are harmless (the system reads `a//b` as `a/b`; a POSIX name holding
    // a backslash becomes one on Windows); `.` and `..` never occur in the real path Claude Code
    // records.
    if body.split(seps).any(|part| part == "." || part == "..") {
        return Err("it has a '.' or '..' component (not a real directory)".into());
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Sep,
    Byte(u8),
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    /// Another spelling of the placeholder's path on this machine (the symbolic link the user
    /// configured, when Claude Code records its realpath): mapped on the way out with its
    /// spelling kept, never written on the way in.
    alias: bool,
    path: String,
    units: Vec<Unit>,
    json: Vec<u8>,
    text: Vec<u8>,
}

impl Entry {
    fn canonical(&self, ctx: Context) -> &[u8] {
        match ctx {
            Context::Json => &self.json,
            Context::Text => &self.text,
        }
    }
}

/// What a mapping pass met that it could not map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unmapped {
    /// Placeholders in the input that this machine has no path for.
    pub unknown: BTreeSet<String>,
}

/// The mapper of one machine: its path style and its path for each placeholder.
#[derive(Debug, Clone)]
pub struct Mapper {
    style: PathStyle,
    /// Longest first.
    entries: Vec<Entry>,
    /// Bytes that can start a match (plus `{`).
    starts: [bool; 256],
    start_list: Vec<u8>,
}

const ESCAPED_OPEN: &[u8] = b"{{{{";

/// Finds `{{`, how every placeholder (and escaped brace) starts.
static OPEN: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"{{"));

impl Mapper {
    /// Build a mapper from `(NAME, PATH)` pairs valid for `style`.
    pub fn new<I, N, P>(style: PathStyle, placeholders: I) -> Result<Mapper, MapError>
    where
        I: IntoIterator<Item = (N, P)>,
        N: AsRef<str>,
        P: AsRef<str>,
    {
        Self::with_aliases(style, placeholders, std::iter::empty::<(String, String)>())
    }

    /// Like [`Mapper::new`], plus other spellings of some placeholders' paths on this machine
    /// (`(NAME, PATH)`; NAME must be among the placeholders). A path under an alias becomes
    /// `{{NAME|spelling}}`, which this machine maps back to the same bytes and others to their
    /// path for NAME.
    pub fn with_aliases<I, N, P, A, AN, AP>(
        style: PathStyle,
        placeholders: I,
        aliases: A,
    ) -> Result<Mapper, MapError>
    where
        I: IntoIterator<Item = (N, P)>,
        N: AsRef<str>,
        P: AsRef<str>,
        A: IntoIterator<Item = (AN, AP)>,
        AN: AsRef<str>,
        AP: AsRef<str>,
    {
        let mut entries = Vec::new();
        let primary = placeholders
            .into_iter()
            .map(|(n, p)| (n.as_ref().to_string(), p.as_ref().to_string(), false));
        let extra = aliases
            .into_iter()
            .map(|(n, p)| (n.as_ref().to_string(), p.as_ref().to_string(), true));
        for (name, path, alias) in primary.chain(extra) {
            let name = name.as_str();
            if !valid_name(name) {
                return Err(MapError::BadName(name.to_string()));
            }
            let path = normalize_path(style, name, path.as_ref())?;
            let units: Vec<Unit> = path
                .bytes()
                .map(|b| match (style, b) {
                    (PathStyle::Posix, b'/') | (PathStyle::Windows, b'\\') => Unit::Sep,
                    _ => Unit::Byte(b),
                })
                .collect();
            let render = |sep: &[u8]| -> Vec<u8> {
                let mut v = Vec::new();
                for u in &units {
                    match u {
                        Unit::Sep => v.extend_from_slice(sep),
                        Unit::Byte(b) => v.push(*b),
                    }
                }
                v
            };
            let (json, text) = match style {
                PathStyle::Posix => (render(b"/"), render(b"/")),
                PathStyle::Windows => (render(b"\\\\"), render(b"\\")),
            };
            entries.push(Entry {
                name: name.to_string(),
                alias,
                path,
                units,
                json,
                text,
            });
        }
        entries.sort_by(|a, b| {
            b.units
                .len()
                .cmp(&a.units.len())
                .then_with(|| a.name.cmp(&b.name))
        });
        // An alias of an unknown placeholder, or equal to its path, means nothing.
        let primaries: Vec<(String, String)> = entries
            .iter()
            .filter(|e| !e.alias)
            .map(|e| (e.name.clone(), e.path.clone()))
            .collect();
        entries.retain(|e| !e.alias || primaries.iter().any(|(n, p)| *n == e.name && *p != e.path));
        let mut starts = [false; 256];
        starts[b'{' as usize] = true;
        for e in &entries {
            match e.units.first() {
                Some(Unit::Byte(b)) if style == PathStyle::Windows => {
                    starts[b.to_ascii_lowercase() as usize] = true;
                    starts[b.to_ascii_uppercase() as usize] = true;
                }
                Some(Unit::Byte(b)) => starts[*b as usize] = true,
                Some(Unit::Sep) => {
                    starts[b'/' as usize] = true;
                    starts[b'\\' as usize] = true;
                }
                None => {}
            }
        }
        let start_list = (0..=255u8).filter(|b| starts[*b as usize]).collect();
        Ok(Mapper {
            style,
            entries,
            starts,
            start_list,
        })
    }

    pub fn style(&self) -> PathStyle {
        self.style
    }

    /// This machine's path for a placeholder.
    pub fn path_of(&self, name: &str) -> Option<&str> {
        self.primary(name).map(|e| e.path.as_str())
    }

    fn primary(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| !e.alias && e.name == name)
    }

    /// `(name, path)` pairs, longest path first (aliases not included).
    pub fn placeholders(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .filter(|e| !e.alias)
            .map(|e| (e.name.as_str(), e.path.as_str()))
    }

    fn next_start(&self, hay: &[u8], from: usize) -> Option<usize> {
        let rest = &hay[from..];
        let found = match self.start_list.as_slice() {
            [a] => memchr::memchr(*a, rest),
            [a, b] => memchr::memchr2(*a, *b, rest),
            [a, b, c] => memchr::memchr3(*a, *b, *c, rest),
            _ => rest.iter().position(|b| self.starts[*b as usize]),
        };
        found.map(|i| i + from)
    }

    /// Local bytes → portable bytes, appended to `out`.
    pub fn to_portable(&self, input: &[u8], ctx: Context, out: &mut Vec<u8>) {
        self.to_portable_part(input, 0, input.len(), ctx, out);
    }

    /// Map `input[from..]` up to at least `until` (further when a path runs across `until`);
    /// returns where the output stops. `input[..from]` is context only (what precedes the
    /// text), and paths are matched against all of `input`, so a caller that keeps enough
    /// bytes on each side gets exactly what mapping the whole text would give (see
    /// [`MapStream`]).
    pub fn to_portable_part(
        &self,
        input: &[u8],
        from: usize,
        until: usize,
        ctx: Context,
        out: &mut Vec<u8>,
    ) -> usize {
        out.reserve(until.saturating_sub(from));
        let mut copied = from;
        let mut i = from;
        while let Some(at) = self.next_start(input, i) {
            if at >= until {
                break;
            }
            if input[at] == b'{' && input.get(at + 1) == Some(&b'{') {
                out.extend_from_slice(&input[copied..at]);
                out.extend_from_slice(ESCAPED_OPEN);
                i = at + 2;
                copied = i;
                continue;
            }
            if let Some(end) = self.encode_at(input, at, ctx, &input[copied..at], out) {
                i = end;
                copied = end;
            } else {
                i = at + 1;
            }
        }
        let stop = copied.max(until);
        out.extend_from_slice(&input[copied..stop]);
        stop
    }

    /// Try to encode a path starting at `at`. On success, writes `pending` then the encoded
    /// path to `out` and returns where the input continues.
    fn encode_at(
        &self,
        hay: &[u8],
        at: usize,
        ctx: Context,
        pending: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        if !left_boundary(hay, at, ctx) {
            return None;
        }
        for e in &self.entries {
            let Some((end, canonical)) = self.match_entry(e, hay, at, ctx) else {
                continue;
            };
            if !right_boundary(hay, end) {
                continue;
            }
            out.extend_from_slice(pending);
            if self.style == PathStyle::Posix {
                push_token(out, &e.name, e.alias.then(|| &hay[at..end]));
                return Some(end);
            }
            // Windows: look at the separators of the rest of the path.
            let rest = scan_rest(hay, end, ctx, true);
            let native = native_sep(PathStyle::Windows, ctx);
            let all_native = rest.seps.iter().all(|&(_, len)| len == native.len());
            if canonical && all_native && !e.alias {
                push_token(out, &e.name, None);
                let mut last = end;
                for &(pos, len) in &rest.seps {
                    out.extend_from_slice(&hay[last..pos]);
                    out.push(b'/');
                    last = pos + len;
                }
                out.extend_from_slice(&hay[last..rest.end]);
            } else {
                push_token(out, &e.name, Some(&hay[at..end]));
                out.extend_from_slice(&hay[end..rest.end]);
            }
            return Some(rest.end);
        }
        None
    }

    /// Match entry `e` at `at`: the end of the match and whether it is spelled canonically.
    fn match_entry(&self, e: &Entry, hay: &[u8], at: usize, ctx: Context) -> Option<(usize, bool)> {
        if self.style == PathStyle::Posix {
            let c = e.canonical(ctx);
            return hay[at..].starts_with(c).then_some((at + c.len(), true));
        }
        let native = native_sep(PathStyle::Windows, ctx);
        let mut j = at;
        let mut canonical = true;
        for u in &e.units {
            match *u {
                Unit::Sep => {
                    if hay[j..].starts_with(native) {
                        j += native.len();
                    } else if hay.get(j) == Some(&b'/') {
                        j += 1;
                        canonical = false;
                    } else {
                        return None;
                    }
                }
                Unit::Byte(b) => {
                    let h = *hay.get(j)?;
                    if h == b {
                    } else if h.eq_ignore_ascii_case(&b) {
                        canonical = false;
                    } else {
                        return None;
                    }
                    j += 1;
                }
            }
        }
        Some((j, canonical))
    }

    /// Portable bytes → local bytes, appended to `out`. Placeholders this machine has no path
    /// for are left as they are and reported.
    pub fn to_local(&self, input: &[u8], ctx: Context, out: &mut Vec<u8>) -> Unmapped {
        let mut unmapped = Unmapped::default();
        self.to_local_part(input, 0, input.len(), ctx, out, &mut unmapped);
        unmapped
    }

    /// [`Mapper::to_local`] of `input[from..]` up to at least `until`, as
    /// [`Mapper::to_portable_part`] does it; returns where the output stops.
    pub fn to_local_part(
        &self,
        input: &[u8],
        from: usize,
        until: usize,
        ctx: Context,
        out: &mut Vec<u8>,
        unmapped: &mut Unmapped,
    ) -> usize {
        out.reserve(until.saturating_sub(from));
        let mut copied = from;
        let mut i = from;
        // Every placeholder and escape starts with `{{`, rare in JSON otherwise (a lone `{`
        // opens every object).
        while let Some(rel) = OPEN.find(&input[i..]) {
            let at = i + rel;
            if at >= until {
                break;
            }
            if input[at..].starts_with(ESCAPED_OPEN) {
                out.extend_from_slice(&input[copied..at]);
                out.extend_from_slice(b"{{");
                i = at + 4;
                copied = i;
                continue;
            }
            let Some(tok) = parse_token(input, at) else {
                i = at + 1;
                continue;
            };
            let name = std::str::from_utf8(&input[tok.name.0..tok.name.1]).unwrap_or_default();
            let Some(e) = self.primary(name) else {
                unmapped.unknown.insert(name.to_string());
                i = tok.end;
                continue;
            };
            out.extend_from_slice(&input[copied..at]);
            let spelling = tok.spelling.map(|(s, t)| &input[s..t]);
            let same = spelling.is_some_and(|sp| {
                self.entries
                    .iter()
                    .filter(|x| x.name == name)
                    .any(|x| self.is_spelling_of(x, sp, ctx))
            });
            if let (true, Some(sp)) = (same, spelling) {
                out.extend_from_slice(sp);
                i = tok.end;
            } else {
                out.extend_from_slice(e.canonical(ctx));
                // The rest of the path takes this machine's separator.
                let any_sep = spelling.is_some();
                let native = native_sep(self.style, ctx);
                if !any_sep && native == b"/" {
                    // Its `/` stay as they are; the rest holds no `{` to look at.
                    i = tok.end;
                    copied = i;
                    continue;
                }
                let rest = scan_rest(input, tok.end, ctx, any_sep);
                let mut last = tok.end;
                for &(pos, len) in &rest.seps {
                    out.extend_from_slice(&input[last..pos]);
                    out.extend_from_slice(native);
                    last = pos + len;
                }
                out.extend_from_slice(&input[last..rest.end]);
                i = rest.end;
            }
            copied = i;
        }
        let stop = copied.max(until);
        out.extend_from_slice(&input[copied..stop]);
        stop
    }

    fn is_spelling_of(&self, e: &Entry, sp: &[u8], ctx: Context) -> bool {
        match self.style {
            PathStyle::Posix => sp == e.canonical(ctx),
            PathStyle::Windows => self
                .match_entry(e, sp, 0, ctx)
                .is_some_and(|(end, _)| end == sp.len()),
        }
    }

    /// Map a whole local path (text context), e.g. a session's cwd.
    pub fn portable_path(&self, path: &str) -> String {
        let mut out = Vec::new();
        self.to_portable(path.as_bytes(), Context::Text, &mut out);
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Map a whole portable path to this machine; `Err` names the placeholders it lacks.
    pub fn local_path(&self, portable: &str) -> Result<String, BTreeSet<String>> {
        let mut out = Vec::new();
        let un = self.to_local(portable.as_bytes(), Context::Text, &mut out);
        if !un.unknown.is_empty() {
            return Err(un.unknown);
        }
        Ok(String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

/// Which way a [`MapStream`] maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToPortable,
    ToLocal,
}

/// Mapping of one text too large to hold (a transcript line of hundreds of megabytes), fed in
/// pieces. It holds at most a few megabytes, and its output is byte for byte what mapping the
/// whole text at once gives, as long as no single path (with its rest) is longer than
/// [`MapStream::LOOKAHEAD`] and no run of backslashes before a path is longer than
/// [`MapStream::KEEP`].
#[derive(Debug)]
pub struct MapStream<'m> {
    mapper: &'m Mapper,
    dir: Direction,
    ctx: Context,
    /// Bytes from some point before the output position: context, then unmapped input.
    buf: Vec<u8>,
    /// Where the unmapped input starts in `buf`.
    from: usize,
    /// Placeholders met that this machine has no path for (mapping to local).
    pub unmapped: Unmapped,
    step: usize,
    lookahead: usize,
    keep: usize,
}

impl<'m> MapStream<'m> {
    /// Bytes kept after the output position before a piece is mapped: the longest path.
    pub const LOOKAHEAD: usize = 1 << 20;
    /// Bytes kept before the output position (what a boundary check looks back at).
    pub const KEEP: usize = 64 << 10;
    /// How much is mapped at a time.
    const STEP: usize = 4 << 20;

    pub fn new(mapper: &'m Mapper, dir: Direction, ctx: Context) -> Self {
        MapStream {
            mapper,
            dir,
            ctx,
            buf: Vec::new(),
            from: 0,
            unmapped: Unmapped::default(),
            step: Self::STEP,
            lookahead: Self::LOOKAHEAD,
            keep: Self::KEEP,
        }
    }

    /// Smaller windows, so that tests cross many of them.
    #[cfg(test)]
    pub(crate) fn with_sizes(mut self, step: usize, lookahead: usize, keep: usize) -> Self {
        (self.step, self.lookahead, self.keep) = (step.max(1), lookahead, keep);
        self
    }

    /// Take the next piece; appends to `out` what can be mapped already.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.buf.extend_from_slice(data);
        while self.buf.len() >= self.from + self.step + self.lookahead {
            let until = self.from + self.step;
            self.run(until, out);
        }
    }

    /// The text ended: appends the rest.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let end = self.buf.len();
        self.run(end, out);
        self.buf.clear();
        self.from = 0;
    }

    fn run(&mut self, until: usize, out: &mut Vec<u8>) {
        let stop = match self.dir {
            Direction::ToPortable => self
                .mapper
                .to_portable_part(&self.buf, self.from, until, self.ctx, out),
            Direction::ToLocal => self.mapper.to_local_part(
                &self.buf,
                self.from,
                until,
                self.ctx,
                out,
                &mut self.unmapped,
            ),
        };
        let drop = stop.saturating_sub(self.keep);
        self.buf.drain(..drop);
        self.from = stop - drop;
    }
}

fn native_sep(style: PathStyle, ctx: Context) -> &'static [u8] {
    match (style, ctx) {
        (PathStyle::Posix, _) => b"/",
        (PathStyle::Windows, Context::Json) => b"\\\\",
        (PathStyle::Windows, Context::Text) => b"\\",
    }
}

fn push_token(out: &mut Vec<u8>, name: &str, spelling: Option<&[u8]>) {
    out.extend_from_slice(b"{{");
    out.extend_from_slice(name.as_bytes());
    if let Some(sp) = spelling {
        out.push(b'|');
        out.extend_from_slice(sp);
    }
    out.extend_from_slice(b"}}");
}

struct Token {
    name: (usize, usize),
    spelling: Option<(usize, usize)>,
    end: usize,
}

/// `{{NAME}}` or `{{NAME|SPELLING}}` at `at`.
fn parse_token(hay: &[u8], at: usize) -> Option<Token> {
    if !hay[at..].starts_with(b"{{") {
        return None;
    }
    let n0 = at + 2;
    if !hay.get(n0)?.is_ascii_uppercase() {
        return None;
    }
    let mut j = n0 + 1;
    while j < hay.len()
        && (hay[j].is_ascii_uppercase() || hay[j].is_ascii_digit() || hay[j] == b'_')
    {
        j += 1;
    }
    let name = (n0, j);
    if hay[j..].starts_with(b"}}") {
        return Some(Token {
            name,
            spelling: None,
            end: j + 2,
        });
    }
    if hay.get(j) != Some(&b'|') {
        return None;
    }
    let s0 = j + 1;
    let close = memchr::memchr(b'}', &hay[s0..])? + s0;
    if close == s0 || !hay[close..].starts_with(b"}}") {
        return None;
    }
    Some(Token {
        name,
        spelling: Some((s0, close)),
        end: close + 2,
    })
}

/// Bytes that end a path: whitespace and control characters, quotes, and characters that
/// delimit paths in commands and prose.
pub fn is_terminator(b: u8) -> bool {
    BYTE_CLASS[b as usize] & TERMINATOR != 0
}

fn is_path_byte(b: u8) -> bool {
    BYTE_CLASS[b as usize] & PATH_BYTE != 0
}

/// A byte that ends a path ([`is_terminator`]).
const TERMINATOR: u8 = 1;
/// A byte a path may hold ([`is_path_byte`]).
const PATH_BYTE: u8 = 2;
/// A byte that ends a path's rest: a terminator or a separator of either style.
const REST_END: u8 = 4;

/// What each byte is to a path, looked up rather than searched for: the mappers ask for every
/// byte of a path's rest.
static BYTE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        if c < 0x20 || c == 0x7f || contains(b" \"'`:;,|<>()[]{}*?=&!^", c) {
            class |= TERMINATOR | REST_END;
        }
        if c.is_ascii_alphanumeric() || contains(b"_-.~/\\$%+@", c) || c >= 0x80 {
            class |= PATH_BYTE;
        }
        if c == b'/' || c == b'\\' {
            class |= REST_END;
        }
        t[b] = class;
        b += 1;
    }
    t
};

const fn contains(set: &[u8], c: u8) -> bool {
    let mut i = 0;
    while i < set.len() {
        if set[i] == c {
            return true;
        }
        i += 1;
    }
    false
}

fn left_boundary(hay: &[u8], at: usize, ctx: Context) -> bool {
    if at == 0 {
        return true;
    }
    let p = hay[at - 1];
    if !is_path_byte(p) {
        return true;
    }
    if p == b'/' && at >= 3 && &hay[at - 3..at] == b"://" {
        return true; // file:///home/…
    }
    if ctx == Context::Json {
        // A JSON escape right before the path ("a\n/home/x", "\u001f/home/x") stands for a
        // byte that is not part of a path, as the decoded text has it.
        return escaped_non_path_byte_ends_at(hay, at);
    }
    false
}

/// Whether `hay[..at]` ends with a JSON escape (`\b \f \n \r \t`, or `\u00XX` for a control
/// character or another byte that cannot be in a path) that is itself not escaped.
fn escaped_non_path_byte_ends_at(hay: &[u8], at: usize) -> bool {
    let escape_at = |i: usize| {
        // The backslash at `i` starts an escape when the run of backslashes ending there is odd.
        let run = hay[..=i].iter().rev().take_while(|&&b| b == b'\\').count();
        run % 2 == 1
    };
    let p = hay[at - 1];
    if matches!(p, b'b' | b'f' | b'n' | b'r' | b't') && at >= 2 && hay[at - 2] == b'\\' {
        return escape_at(at - 2);
    }
    if at >= 6 && hay[at - 6] == b'\\' && hay[at - 5] == b'u' {
        let hex = &hay[at - 4..at];
        if let Some(unit) = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u16::from_str_radix(h, 16).ok())
            && escape_at(at - 6)
        {
            return unit < 0x80 && !is_path_byte(unit as u8);
        }
    }
    false
}

fn right_boundary(hay: &[u8], j: usize) -> bool {
    let Some(&b) = hay.get(j) else { return true };
    if b == b'/' || b == b'\\' || is_terminator(b) {
        return true;
    }
    if b == b'.' {
        return hay
            .get(j + 1)
            .is_none_or(|&n| is_terminator(n) || n == b'\\');
    }
    false
}

struct Rest {
    /// Separators: (position, length).
    seps: Vec<(usize, usize)>,
    end: usize,
}

/// The rest of a path from `from`: separators and components up to a terminator. With
/// `any_sep`, both `/` and backslash separators count; without, only `/` (the portable form).
fn scan_rest(hay: &[u8], from: usize, ctx: Context, any_sep: bool) -> Rest {
    let mut seps = Vec::new();
    let mut k = from;
    loop {
        let sep_len = match hay.get(k) {
            Some(b'/') => 1,
            Some(b'\\') if any_sep => match ctx {
                Context::Json if hay.get(k + 1) == Some(&b'\\') => 2,
                Context::Json => 0,
                Context::Text => 1,
            },
            _ => 0,
        };
        if sep_len == 0 {
            break;
        }
        seps.push((k, sep_len));
        k += sep_len;
        k += hay[k..]
            .iter()
            .position(|&b| BYTE_CLASS[b as usize] & REST_END != 0)
            .unwrap_or(hay.len() - k);
    }
    Rest { seps, end: k }
}

#[cfg(test)]
mod tests;
