//! Secret detection and redaction for what `push` sends.
//!
//! **For:** finding credentials that people pasted or tools printed into transcripts (`.env`
//! dumps, provider API keys, tokens, private keys, passwords in assignments) in one raw JSONL line
//! or in a text file, and replacing each with a deterministic `[REDACTED:<kind>:<8 hex>]` token in
//! the copy that is pushed. The same secret gives the same token on every machine and every push
//! (SHA-256 over a fixed domain string and the secret), so redacted copies merge cleanly.
//!
//! **Not for:** proving that a file holds no secret (it is a heuristic rule set tuned for almost no
//! false positives on ordinary transcripts, maintained in `rules.rs`); parsing, validating or re-serialising
//! JSON (it works on raw bytes, and a replacement is plain ASCII without quotes or backslashes, so
//! a valid JSON line stays valid and nothing else in it moves); policy (redact / block / warn / off
//! is the caller's business); reporting the secret itself — a [`Finding`] is a kind and a byte
//! range, nothing more.
//!
//! **Never touched** in a JSON line, because Claude Code needs them to resume elsewhere: the string
//! values of `signature`, `id` and uuids (`uuid`, any key ending in `Uuid`, …), of hash keys
//! (`…hash`, `…sha`, `…digest`), and the `data` of base64 media objects
//! (`{"type":"base64","media_type":…,"data":…}`). Values of keys ending in `Id`, `ID`, `_id` are
//! left alone too, except for tokens of a published shape in them (`"aws_access_key_id":"AKIA…"`).
//! Generic detection only fires on an assignment with a secret-looking key name (`password=…`,
//! `"client_secret":"…"`), never on a bare base64 blob or hex hash.
//!
//! **Found again:** a value found once (by its shape or by its name) is found wherever else it
//! occurs: in the same line or text always, and across lines and files with a [`Known`] that
//! the caller keeps per file or session (push keeps one per file across pushes, see
//! `sync::FileSecrets`). A line too large to hold is read twice ([`Scanner::first_pass`], then
//! [`Scanner::redact_stream`]), so its own values are found before their first naming too.
//!
//! **How it stays cheap:** one SIMD multi-literal search (Teddy, via `aho-corasick`'s packed
//! searcher) over the line for trigger literals (`AKIA`, `ghp_`, `sk-`, `-----BEGIN`, `eyJ`,
//! `oken`, `ECRET`, …), given in an order that shares the searcher's buckets well
//! (`rules::PREFILTER_ORDER`). A line without a hit costs that search and nothing else (and,
//! when values are known, one more multi-literal search for them); each hit runs a small anchored
//! check right there. The JSON structure is only walked (to find the protected values above) when
//! a line has a candidate finding.

#[cfg(test)]
mod corpus;
mod rules;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind, packed};
use memchr::{memchr2, memmem};
use regex::bytes::Regex;
use sha2::{Digest, Sha256};

use rules::{
    BEARER_TRIGGERS, Check, ID_KEY_SUFFIXES, KEY_TRIGGERS, NEGATIVE_KEY_WORDS, PEM_FOOTER,
    PEM_HEADER, PEM_MAX_BODY, PEM_TRIGGER, PLACEHOLDER_WORDS, PREFILTER_ORDER,
    PROTECTED_KEY_SUFFIXES, PROTECTED_KEYS, STRONG_KEY_WORDS, TOKEN_RULES, URL_TRIGGERS,
    WEAK_KEY_NEGATIVE, WEAK_KEY_SUFFIX,
};

/// Every kind a [`Finding`] can have (the stable short names used in reports and tokens).
pub const KINDS: &[&str] = &[
    "aws-access-key",
    "aws-secret-key",
    "github-token",
    "anthropic-key",
    "openai-key",
    "slack-token",
    "slack-webhook",
    "stripe-key",
    "google-api-key",
    "gitlab-token",
    "npm-token",
    "private-key",
    "jwt",
    "bearer-token",
    "password-in-url",
    "generic-secret",
    "stripe-webhook-secret",
    "google-oauth",
    "gitlab-runner-token",
    "huggingface-token",
    "discord-webhook",
    "telegram-bot-token",
    "age-secret-key",
    "sendgrid-key",
    "shopify-token",
    "pypi-token",
    "digitalocean-token",
    "databricks-token",
    "postman-key",
    "vault-token",
    "dockerhub-token",
    "azure-storage-key",
    "curl-user-password",
    "basic-auth",
    "authorization-token",
];

/// Domain separation for the redaction hash; changing it changes every token ever pushed.
const TOKEN_DOMAIN: &[u8] = b"ccsync/secret-redaction/v1\0";

/// One secret found in scanned input: what kind it is and where (a byte range of the input).
///
/// For assignments the range covers only the value, for PEM blocks the whole block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Finding {
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
}

impl Finding {
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The compiled rule set. Cheap to create and copy: every `Scanner` shares one compiled
/// instance, built on first use.
#[derive(Clone, Copy)]
pub struct Scanner {
    /// Compiled on first use: a push with nothing to send never builds the rules (about 6 ms).
    c: &'static LazyLock<Compiled>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("triggers", &self.c.triggers.len())
            .field(
                "simd_prefilter",
                &matches!(self.c.finder, Finder::Packed(_)),
            )
            .finish()
    }
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| Compiled::build(true));

impl Scanner {
    pub fn new() -> Scanner {
        Scanner { c: &COMPILED }
    }

    /// Scan one raw JSONL line (without its newline). Works on any bytes: a line that is not
    /// valid JSON or not UTF-8 is scanned as text, with whatever string values could be
    /// delimited still protected. A value found once is found wherever else it occurs in the
    /// line.
    pub fn scan_json_line(&self, line: &[u8]) -> Vec<Finding> {
        self.c.scan(line, true, &mut Known::default())
    }

    /// Scan Markdown or plain text (no JSON value is protected). A value found once is found
    /// wherever else it occurs in the text.
    pub fn scan_text(&self, text: &[u8]) -> Vec<Finding> {
        self.c.scan(text, false, &mut Known::default())
    }

    /// [`Scanner::scan_json_line`] that also finds every value of `known` (what earlier lines
    /// of the same file or session gave), and adds the values found here to it.
    pub fn scan_json_line_known(&self, line: &[u8], known: &mut Known) -> Vec<Finding> {
        self.c.scan(line, true, known)
    }

    /// [`Scanner::scan_text`] with the values of `known`, adding the values found here to it.
    pub fn scan_text_known(&self, text: &[u8], known: &mut Known) -> Vec<Finding> {
        self.c.scan(text, false, known)
    }

    /// Scan a whole JSONL file line by line, each line with the values the lines before it
    /// gave; ranges are offsets into `data`.
    pub fn scan_jsonl(&self, data: &[u8]) -> Vec<Finding> {
        let mut known = Known::default();
        let mut out = Vec::new();
        let mut start = 0;
        while start < data.len() {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |p| start + p);
            for f in self.c.scan(&data[start..end], true, &mut known) {
                out.push(Finding {
                    kind: f.kind,
                    start: f.start + start,
                    end: f.end + start,
                });
            }
            start = end + 1;
        }
        out
    }

    /// Replace each finding with its deterministic token (see [`redaction_token`]).
    ///
    /// Findings may come in any order; out-of-range or empty ones are ignored and overlapping
    /// ones are merged. Returns `Cow::Borrowed` when there is nothing to replace.
    pub fn redact<'a>(&self, input: &'a [u8], findings: &[Finding]) -> Cow<'a, [u8]> {
        let spans: Vec<Finding> = findings
            .iter()
            .filter(|f| f.start < f.end && f.end <= input.len())
            .copied()
            .collect();
        if spans.is_empty() {
            return Cow::Borrowed(input);
        }
        let spans = merge(spans);
        let mut out = Vec::with_capacity(input.len());
        let mut pos = 0;
        for f in spans {
            out.extend_from_slice(&input[pos..f.start]);
            out.extend_from_slice(redaction_token(f.kind, &input[f.start..f.end]).as_bytes());
            pos = f.end;
        }
        out.extend_from_slice(&input[pos..]);
        Cow::Owned(out)
    }

    /// Scan and redact a text file (Markdown, plain text) whole: its findings and its redacted
    /// form (borrowed when nothing was found).
    pub fn redact_text<'a>(
        &self,
        text: &'a [u8],
        known: &mut Known,
    ) -> (Vec<Finding>, Cow<'a, [u8]>) {
        let fs = self.scan_text_known(text, known);
        let red = self.redact(text, &fs);
        (fs, red)
    }
}

impl Scanner {
    /// `stored` (a version of a file another machine redacted) with the redaction tokens of
    /// the secrets `local` holds put back: a file edited elsewhere keeps this machine's own
    /// secrets when it comes back. `json` scans `local` as one JSON value, else as text.
    pub fn restore_own<'a>(&self, local: &[u8], stored: &'a [u8], json: bool) -> Cow<'a, [u8]> {
        if memmem::find(stored, b"[REDACTED:").is_none() {
            return Cow::Borrowed(stored);
        }
        let fs = if json {
            self.scan_json_line(local)
        } else {
            self.scan_text(local)
        };
        let mut map: std::collections::HashMap<String, &[u8]> = std::collections::HashMap::new();
        for f in &fs {
            let secret = &local[f.start..f.end];
            map.entry(redaction_token(f.kind, secret)).or_insert(secret);
        }
        if map.is_empty() {
            return Cow::Borrowed(stored);
        }
        let mut out = Vec::with_capacity(stored.len());
        let mut pos = 0;
        for s in memmem::find_iter(stored, b"[REDACTED:") {
            if s < pos {
                continue;
            }
            let Some(len) = memchr::memchr(b']', &stored[s..s + (stored.len() - s).min(64)]) else {
                continue;
            };
            let tok = &stored[s..=s + len];
            if let Some(secret) = std::str::from_utf8(tok).ok().and_then(|t| map.get(t)) {
                out.extend_from_slice(&stored[pos..s]);
                out.extend_from_slice(secret);
                pos = s + len + 1;
            }
        }
        out.extend_from_slice(&stored[pos..]);
        Cow::Owned(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Values already found: every later occurrence is redacted too
// ---------------------------------------------------------------------------------------------

/// Shortest value whose other occurrences are looked for (shorter ones could be anything).
pub const MIN_KNOWN_LEN: usize = 8;

/// The secret values found so far in one file or session (a password recognised by its
/// variable name, a token by its shape): wherever one occurs again, with or without its name,
/// it is redacted with the same token. Kept in memory only; the values are never written.
#[derive(Clone, Default)]
pub struct Known {
    values: Vec<(Vec<u8>, &'static str)>,
    index: std::collections::HashSet<Vec<u8>>,
    matcher: Option<AhoCorasick>,
}

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values themselves.
        f.debug_struct("Known")
            .field("values", &self.values.len())
            .finish()
    }
}

impl Known {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Remember the value of a finding (also in its unescaped form when it holds JSON escapes).
    /// Returns whether it was new. Private keys (whole blocks) and short values are not kept.
    pub fn add(&mut self, kind: &'static str, value: &[u8]) -> bool {
        if kind == "private-key" || value.len() < MIN_KNOWN_LEN || value.len() > MAX_KNOWN_LEN {
            return false;
        }
        let mut added = false;
        let canon = canonical(value);
        for v in [value, canon.as_ref()] {
            if v.len() >= MIN_KNOWN_LEN && self.index.insert(v.to_vec()) {
                self.values.push((v.to_vec(), kind));
                added = true;
            }
        }
        if added {
            self.matcher = None;
        }
        added
    }

    /// Everything `other` knows, known here too.
    pub fn extend(&mut self, other: &Known) {
        for (v, k) in &other.values {
            self.add(k, v);
        }
    }

    /// Every occurrence of a known value in `input` (not merged, may overlap).
    fn occurrences(&mut self, input: &[u8]) -> Vec<Finding> {
        if self.values.is_empty() {
            return Vec::new();
        }
        if self.matcher.is_none() {
            self.matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(self.values.iter().map(|(v, _)| v))
                .ok();
        }
        let Some(ac) = &self.matcher else {
            return Vec::new();
        };
        ac.find_iter(input)
            .map(|m| Finding {
                kind: self.values[m.pattern().as_usize()].1,
                start: m.start(),
                end: m.end(),
            })
            .collect()
    }
}

/// Longest value kept in [`Known`] (no assignment value is longer).
const MAX_KNOWN_LEN: usize = 2048;

impl Scanner {
    /// The first pass over one JSON line too large to hold, fed in pieces: its protected ranges
    /// and the values it holds (see [`Scanner::redact_stream`]).
    pub fn first_pass(&self) -> FirstPass {
        FirstPass {
            walker: ProtectedWalker::default(),
            stream: self.stream(Vec::new(), Known::default(), false, true),
        }
    }

    /// Scan (and redact) one JSON line too large to hold, fed in pieces, after its
    /// [`FirstPass`] was added to `known` (see [`FirstPass::finish`]). Findings are those scanning
    /// the whole line with the same `known` gives, except for a secret longer than
    /// [`RedactStream::LOOKAHEAD`] or one whose rule looks further back than
    /// [`RedactStream::KEEP`] bytes.
    pub fn redact_stream(&self, pass: Passed, known: &Known, redact: bool) -> RedactStream {
        self.stream(pass.protected, known.clone(), redact, false)
    }

    fn stream(
        &self,
        mut protected: Vec<Protected>,
        known: Known,
        redact: bool,
        collect: bool,
    ) -> RedactStream {
        protected.sort_unstable();
        RedactStream {
            scanner: *self,
            protected,
            known,
            redact,
            collect: collect.then(Vec::new),
            buf: Vec::new(),
            buf_at: 0,
            from: 0,
            found: Vec::new(),
            step: RedactStream::STEP,
            lookahead: RedactStream::LOOKAHEAD,
            keep: RedactStream::KEEP,
        }
    }
}

/// See [`Scanner::first_pass`].
#[derive(Debug)]
pub struct FirstPass {
    walker: ProtectedWalker,
    stream: RedactStream,
}

/// What the first pass over a huge line found: see [`FirstPass::finish`].
#[derive(Debug)]
pub struct Passed {
    protected: Vec<Protected>,
}

impl FirstPass {
    pub fn feed(&mut self, data: &[u8]) {
        self.walker.feed(data);
        self.stream.feed(data, &mut Vec::new());
    }

    /// The line ended: its protected ranges, and the values it holds (added to `known`).
    pub fn finish(mut self, known: &mut Known) -> Passed {
        self.stream.finish(&mut Vec::new());
        let protected = self.walker.finish();
        let mut cands = self.stream.collect.take().unwrap_or_default();
        cands.sort_by_key(|c| c.0.start);
        for (f, value) in cands {
            if !blocked(&protected, f.start as u64, f.end as u64, f.kind) {
                known.add(f.kind, &value);
            }
        }
        Passed { protected }
    }
}

#[cfg(test)]
impl FirstPass {
    pub(crate) fn with_sizes(mut self, step: usize, lookahead: usize, keep: usize) -> Self {
        self.stream = self.stream.with_sizes(step, lookahead, keep);
        self
    }
}

/// See [`Scanner::redact_stream`].
#[derive(Debug)]
pub struct RedactStream {
    scanner: Scanner,
    protected: Vec<Protected>,
    known: Known,
    redact: bool,
    /// First pass: every candidate (offsets in the line) and its bytes, nothing written.
    collect: Option<Vec<(Finding, Vec<u8>)>>,
    /// Bytes from some point before the output position: context, then unscanned input.
    buf: Vec<u8>,
    /// Offset in the line of `buf[0]`.
    buf_at: u64,
    /// Where the unscanned input starts in `buf`.
    from: usize,
    /// The kind of every secret found, in order.
    pub found: Vec<&'static str>,
    step: usize,
    lookahead: usize,
    keep: usize,
}

impl RedactStream {
    /// Bytes kept after the output position before a piece is scanned: the longest secret.
    pub const LOOKAHEAD: usize = 1 << 20;
    /// Bytes kept before the output position (what a rule looks back at).
    pub const KEEP: usize = 64 << 10;
    const STEP: usize = 4 << 20;

    /// Smaller windows, so that tests cross many of them.
    #[cfg(test)]
    pub(crate) fn with_sizes(mut self, step: usize, lookahead: usize, keep: usize) -> Self {
        (self.step, self.lookahead, self.keep) = (step.max(1), lookahead, keep);
        self
    }

    /// Take the next piece; appends to `out` what can be scanned already.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.buf.extend_from_slice(data);
        while self.buf.len() >= self.from + self.step + self.lookahead {
            let until = self.from + self.step;
            self.run(until, out);
        }
    }

    /// The line ended: appends the rest.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let end = self.buf.len();
        self.run(end, out);
    }

    fn run(&mut self, until: usize, out: &mut Vec<u8>) {
        let mut cands = self.scanner.c.candidates(&self.buf);
        if self.collect.is_none() {
            let mut reps = self.known.occurrences(&self.buf);
            escape_safe(&self.buf, &mut reps);
            cands.extend(reps);
        }
        let at = self.buf_at;
        let from = self.from;
        let protected = &self.protected;
        cands.retain(|f| {
            f.start >= from && !blocked(protected, at + f.start as u64, at + f.end as u64, f.kind)
        });
        if let Some(c) = self.collect.as_mut() {
            // Candidates starting in this window, unmerged: the whole line's, piece by piece.
            let mut stop = until;
            for f in &cands {
                if f.start < stop && f.end > stop {
                    stop = f.end;
                }
            }
            for f in cands.iter().filter(|f| f.start < stop) {
                let line_f = Finding {
                    kind: f.kind,
                    start: (at + f.start as u64) as usize,
                    end: (at + f.end as u64) as usize,
                };
                c.push((line_f, self.buf[f.start..f.end].to_vec()));
            }
            self.advance(stop);
            return;
        }
        let found = merge(cands);
        // Stop where no finding is cut in two.
        let mut stop = until;
        for f in &found {
            if f.start < stop && f.end > stop {
                stop = f.end;
            }
        }
        let mut pos = self.from;
        for f in found.iter().filter(|f| f.start < stop) {
            self.found.push(f.kind);
            if self.redact {
                out.extend_from_slice(&self.buf[pos..f.start]);
                let token = redaction_token(f.kind, &self.buf[f.start..f.end]);
                out.extend_from_slice(token.as_bytes());
                pos = f.end;
            }
        }
        out.extend_from_slice(&self.buf[pos..stop]);
        self.advance(stop);
    }

    fn advance(&mut self, stop: usize) {
        let drop = stop.saturating_sub(self.keep);
        self.buf.drain(..drop);
        self.buf_at += drop as u64;
        self.from = stop - drop;
    }
}

/// The replacement for one secret: `[REDACTED:<kind>:<8 hex>]`, the hex being the start of
/// SHA-256 over a fixed domain string and the secret. JSON string escapes (`\n`, `\/`, …) and
/// carriage returns in the secret are normalised first, so a PEM block gives the same token in a
/// JSONL line as in a Markdown file. Only `[A-Za-z0-9:\-\[\]]` appear in the result.
pub fn redaction_token(kind: &str, secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(TOKEN_DOMAIN);
    let canon = canonical(secret);
    if kind == "private-key" {
        h.update(strip_line_numbers(&canon));
    } else {
        h.update(canon);
    }
    let digest = h.finalize();
    let mut kind_clean: String = kind
        .bytes()
        .filter(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        .map(char::from)
        .collect();
    if kind_clean.is_empty() {
        kind_clean.push_str("secret");
    }
    let mut out = String::with_capacity(kind_clean.len() + 21);
    out.push_str("[REDACTED:");
    out.push_str(&kind_clean);
    out.push(':');
    for b in &digest[..4] {
        out.push_str(&format!("{b:02x}"));
    }
    out.push(']');
    out
}

/// A block shown with line numbers (`     2→…`, `     2\t…`) without them, so that it gives the
/// same token as the block itself.
fn strip_line_numbers(block: &[u8]) -> Cow<'_, [u8]> {
    let mut out = Vec::with_capacity(block.len());
    for (i, line) in block.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let blanks = line.iter().take_while(|b| is_blank(**b)).count();
        let digits = line[blanks..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let rest = &line[blanks + digits..];
        let text = if digits == 0 {
            line
        } else if let Some(r) = rest.strip_prefix(ARROW) {
            r
        } else if let Some(r) = rest.strip_prefix(b"\\u2192") {
            r
        } else if let Some(r) = rest.strip_prefix(b"\t") {
            r
        } else {
            line
        };
        out.extend_from_slice(text);
    }
    Cow::Owned(out)
}

/// The secret as hashed: simple JSON escapes decoded, `\r` dropped.
fn canonical(secret: &[u8]) -> Cow<'_, [u8]> {
    if !secret.iter().any(|&b| b == b'\\' || b == b'\r') {
        return Cow::Borrowed(secret);
    }
    let mut out = Vec::with_capacity(secret.len());
    let mut i = 0;
    while i < secret.len() {
        let b = secret[i];
        if b == b'\\' && i + 1 < secret.len() {
            let decoded = match secret[i + 1] {
                b'n' => Some(b'\n'),
                b't' => Some(b'\t'),
                b'r' => None,
                b'/' => Some(b'/'),
                b'\\' => Some(b'\\'),
                b'"' => Some(b'"'),
                _ => {
                    out.push(b);
                    i += 1;
                    continue;
                }
            };
            out.extend(decoded);
            i += 2;
        } else {
            if b != b'\r' {
                out.push(b);
            }
            i += 1;
        }
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------------------------
// Compiled rule set and the scan loop
// ---------------------------------------------------------------------------------------------

enum Trigger {
    /// Indexes into `TOKEN_RULES`, tried in order.
    Tokens(Vec<usize>),
    /// The JWT rule (index into `TOKEN_RULES`): its window is large, so a run without the
    /// first `.` is skipped as a whole.
    Jwt(usize),
    Pem,
    Url,
    Bearer,
    Key,
}

enum Finder {
    /// SIMD (Teddy) multi-literal search: the fast path.
    Packed(packed::Searcher),
    /// Fallback where Teddy is unavailable (no SSSE3/AVX2 or NEON) or too many literals.
    Ac(AhoCorasick),
}

impl Finder {
    fn for_each(&self, hay: &[u8], mut f: impl FnMut(usize, usize, usize)) {
        match self {
            Finder::Packed(s) => {
                for m in s.find_iter(hay) {
                    f(m.pattern().as_usize(), m.start(), m.end());
                }
            }
            Finder::Ac(ac) => {
                for m in ac.find_iter(hay) {
                    f(m.pattern().as_usize(), m.start(), m.end());
                }
            }
        }
    }
}

struct Compiled {
    finder: Finder,
    /// Per prefilter pattern id: what a hit means.
    triggers: Vec<Trigger>,
    /// Per `TOKEN_RULES` entry, anchored.
    token_res: Vec<Regex>,
    pem_header: Regex,
    pem_footer: Regex,
}

fn anchored(pattern: &str) -> Regex {
    Regex::new(&format!("(?-u)^(?:{pattern})")).expect("built-in secret rule pattern compiles")
}

impl Compiled {
    /// `simd: false` forces the plain automaton without any SIMD prefilter (the slowest path a
    /// machine could get); tests use it to check both paths agree.
    fn build(simd: bool) -> Compiled {
        let mut lits: Vec<&'static str> = Vec::new();
        let mut triggers: Vec<Trigger> = Vec::new();
        for (i, rule) in TOKEN_RULES.iter().enumerate() {
            if rule.kind == "jwt" {
                for &t in rule.triggers {
                    lits.push(t);
                    triggers.push(Trigger::Jwt(i));
                }
                continue;
            }
            for &t in rule.triggers {
                match lits.iter().position(|&l| l == t) {
                    Some(p) => {
                        if let Trigger::Tokens(v) = &mut triggers[p] {
                            v.push(i);
                        }
                    }
                    None => {
                        lits.push(t);
                        triggers.push(Trigger::Tokens(vec![i]));
                    }
                }
            }
        }
        lits.push(PEM_TRIGGER);
        triggers.push(Trigger::Pem);
        for &t in URL_TRIGGERS {
            lits.push(t);
            triggers.push(Trigger::Url);
        }
        for &t in BEARER_TRIGGERS {
            lits.push(t);
            triggers.push(Trigger::Bearer);
        }
        for &t in KEY_TRIGGERS {
            lits.push(t);
            triggers.push(Trigger::Key);
        }
        // The searcher's buckets follow the literals' order (see `PREFILTER_ORDER`).
        let rank = |l: &str| {
            PREFILTER_ORDER
                .iter()
                .position(|&o| o == l)
                .unwrap_or(usize::MAX)
        };
        let mut order: Vec<usize> = (0..lits.len()).collect();
        order.sort_by_key(|&i| rank(lits[i]));
        let lits: Vec<&'static str> = order.iter().map(|&i| lits[i]).collect();
        let mut slots: Vec<Option<Trigger>> = triggers.into_iter().map(Some).collect();
        let triggers: Vec<Trigger> = order.iter().filter_map(|&i| slots[i].take()).collect();
        let packed = if simd {
            packed::Config::new()
                .match_kind(packed::MatchKind::LeftmostFirst)
                .builder()
                .extend(&lits)
                .build()
        } else {
            None
        };
        let finder = packed.map(Finder::Packed).unwrap_or_else(|| {
            Finder::Ac(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostFirst)
                    // Its own prefilters, unless testing the plain automaton.
                    .prefilter(simd)
                    .build(&lits)
                    .expect("secret trigger literals build an automaton"),
            )
        });
        Compiled {
            finder,
            triggers,
            token_res: TOKEN_RULES.iter().map(|r| anchored(r.pattern)).collect(),
            pem_header: anchored(PEM_HEADER),
            pem_footer: anchored(PEM_FOOTER),
        }
    }

    /// The findings of `input`: every rule's, those in protected JSON values left out, then
    /// every occurrence of a value found here or known before (`known` gains this input's
    /// values), merged.
    fn scan(&self, input: &[u8], json: bool, known: &mut Known) -> Vec<Finding> {
        let mut cands = self.candidates(input);
        if cands.is_empty() && known.is_empty() {
            return cands;
        }
        let spans = || {
            if json {
                protected_spans(input)
            } else {
                Vec::new()
            }
        };
        let mut protected: Option<Vec<Protected>> = None;
        if !cands.is_empty() {
            let p = protected.insert(spans());
            cands.retain(|f| !blocked(p, f.start as u64, f.end as u64, f.kind));
            for f in &cands {
                known.add(f.kind, &input[f.start..f.end]);
            }
        }
        let mut reps = known.occurrences(input);
        if !reps.is_empty() {
            escape_safe(input, &mut reps);
            let p = protected.get_or_insert_with(spans);
            reps.retain(|f| !blocked(p, f.start as u64, f.end as u64, f.kind));
            cands.extend(reps);
        }
        merge(cands)
    }

    /// Every rule's findings in `input`, JSON protection not applied, not merged.
    fn candidates(&self, input: &[u8]) -> Vec<Finding> {
        let mut cands: Vec<Finding> = Vec::new();
        // Hits inside a PEM block already found are part of it.
        let mut skip_until = 0usize;
        // A key name is classified once even when several triggers hit inside it.
        let mut key_done_until = 0usize;
        // `eyJ` hits in a base64url run that does not end in `.` cannot start a JWT.
        let mut jwt_dead_until = 0usize;
        // Hits inside a token-shaped match already rejected (`xoxa-xoxa-…`) are not retried.
        let mut token_dead_until = 0usize;
        self.finder.for_each(input, |pid, s, e| {
            if s < skip_until {
                return;
            }
            let found = match &self.triggers[pid] {
                Trigger::Tokens(rules) => {
                    if s < token_dead_until {
                        None
                    } else {
                        let (f, rejected_end) = self.token(input, s, rules);
                        token_dead_until = token_dead_until.max(rejected_end);
                        f
                    }
                }
                Trigger::Jwt(rule) => {
                    if s < jwt_dead_until {
                        None
                    } else {
                        let limit = input.len().min(s + TOKEN_RULES[*rule].max_len);
                        let mut r = s;
                        while r < limit && is_b64url_byte(input[r]) {
                            r += 1;
                        }
                        if input.get(r) == Some(&b'.') {
                            let (f, rejected_end) =
                                self.token(input, s, std::slice::from_ref(rule));
                            jwt_dead_until = jwt_dead_until.max(rejected_end);
                            f
                        } else {
                            jwt_dead_until = r;
                            None
                        }
                    }
                }
                Trigger::Pem => {
                    let f = self.pem(input, s);
                    if let Some(f) = f {
                        skip_until = f.end;
                    }
                    f
                }
                Trigger::Url => url_password(input, s, e),
                Trigger::Bearer => bearer(input, s, e),
                Trigger::Key => {
                    if s < key_done_until {
                        None
                    } else {
                        let (f, key_end) = key_assignment(input, s, e);
                        key_done_until = key_end;
                        f
                    }
                }
            };
            cands.extend(found);
        });
        if cands.is_empty() {
            return cands;
        }
        escape_safe(input, &mut cands);
        cands
    }

    /// Try `rules` at the trigger hit `s`. Also returns the end of the longest token-shaped
    /// match that was rejected (placeholder, low entropy), so hits inside it are not tried again.
    fn token(&self, input: &[u8], s: usize, rules: &[usize]) -> (Option<Finding>, usize) {
        let mut rejected_end = 0;
        for &ri in rules {
            let rule = &TOKEN_RULES[ri];
            // The token starts at the trigger, or up to `back` bytes before it (and covers it).
            for start in s.saturating_sub(rule.back)..=s {
                if !left_boundary(input, start) {
                    continue;
                }
                let window = &input[start..input.len().min(start + rule.max_len + 1)];
                let (end, vs, ve) = if rule.group == 0 {
                    let Some(m) = self.token_res[ri].find(window) else {
                        continue;
                    };
                    (start + m.end(), start, start + m.end())
                } else {
                    let Some(c) = self.token_res[ri].captures(window) else {
                        continue;
                    };
                    let (Some(m), Some(g)) = (c.get(0), c.get(rule.group)) else {
                        continue;
                    };
                    (start + m.end(), start + g.start(), start + g.end())
                };
                if end <= s {
                    continue;
                }
                if input.get(end).is_some_and(|b| b.is_ascii_alphanumeric()) {
                    // Longer than the format allows: part of some other blob.
                    rejected_end = rejected_end.max(end);
                    continue;
                }
                if !accepts(rule, &input[vs..ve]) {
                    rejected_end = rejected_end.max(end);
                    continue;
                }
                let f = Finding {
                    kind: rule.kind,
                    start: vs,
                    end: ve,
                };
                return (Some(f), rejected_end);
            }
        }
        (None, rejected_end)
    }

    fn pem(&self, input: &[u8], s: usize) -> Option<Finding> {
        let hdr = self.pem_header.find(&input[s..input.len().min(s + 80)])?;
        let body_start = s + hdr.end();
        let limit = input.len().min(body_start + PEM_MAX_BODY);
        // One pass to the first `-----END` or the first byte a body cannot hold (a quote):
        // never further, so many headers in a row stay linear.
        let mut run_end = body_start;
        let mut footer = None;
        while run_end < limit {
            let b = input[run_end];
            if b == b'-' && input[run_end..].starts_with(b"-----END") {
                footer = self
                    .pem_footer
                    .find(&input[run_end..input.len().min(run_end + 80)])
                    .map(|m| (run_end - body_start, run_end + m.end()));
                break;
            }
            if input[run_end..].starts_with(ARROW) {
                // The line-number prefix of the Read tool (`     2→`).
                run_end += ARROW.len();
                continue;
            }
            if !is_pem_body_byte(b) {
                break;
            }
            run_end += 1;
        }
        let (body_len, end) = match footer {
            Some((p, end)) => (p, end),
            None => {
                // Truncated output: redact what there is of the body.
                let mut end = run_end;
                while end > body_start && !is_base64_byte(input[end - 1]) {
                    end -= 1;
                }
                (end - body_start, end)
            }
        };
        let b64 = input[body_start..body_start + body_len]
            .iter()
            .filter(|&&b| is_base64_byte(b))
            .count();
        if b64 < 64 {
            return None;
        }
        Some(Finding {
            kind: "private-key",
            start: s,
            end: safe_end(input, end),
        })
    }
}

/// `→`, which the Read tool puts between a line's number and its text.
const ARROW: &[u8] = "\u{2192}".as_bytes();

/// Whether a match of `rule` is a secret (`v` is its secret part, judged unescaped).
fn accepts(rule: &rules::TokenRule, v: &[u8]) -> bool {
    let v_cow = canonical(v);
    let v: &[u8] = &v_cow;
    match rule.check {
        Check::Shape => {
            entropy(v) >= rule.min_entropy
                && (!rule.needs_digit || (has_digit(v) && v.iter().any(u8::is_ascii_alphabetic)))
                && !token_placeholder(v)
        }
        Check::Password => {
            random_looking(v, 6) || (v.len() >= 12 && !is_placeholder(v) && entropy(v) >= 3.0)
        }
        Check::BasicAuth => {
            let Some(plain) = base64_decode(v) else {
                return false;
            };
            let Some(colon) = plain.iter().position(|&b| b == b':') else {
                return false;
            };
            let (user, pass) = (&plain[..colon], &plain[colon + 1..]);
            !user.is_empty()
                && plain.iter().all(|b| (0x20..0x7f).contains(b))
                && (random_looking(pass, 6)
                    || (pass.len() >= 12 && !is_placeholder(pass) && entropy(pass) >= 3.0))
        }
        Check::Opaque => has_digit(v) && random_looking(v, 16),
    }
}

/// Standard base64 (padding optional); `None` if `v` is not.
fn base64_decode(v: &[u8]) -> Option<Vec<u8>> {
    let v = v.strip_suffix(b"==").or(v.strip_suffix(b"=")).unwrap_or(v);
    let mut out = Vec::with_capacity(v.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in v {
        let d = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(d);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Never start or end a span inside an escape sequence: the replacement must not leave a lone
/// backslash behind (it would escape the `[` or swallow what follows).
fn escape_safe(input: &[u8], spans: &mut Vec<Finding>) {
    for f in spans.iter_mut() {
        while f.start > 0 && is_escaped(input, f.start) {
            f.start -= 1;
        }
        f.end = safe_end(input, f.end);
    }
    spans.retain(|f| f.start < f.end);
}

/// Whether a finding of `kind` over `[s, e)` falls in a protected range that keeps it.
/// `protected` is sorted and its ranges disjoint (each the content of another string).
fn blocked(protected: &[Protected], s: u64, e: u64, kind: &str) -> bool {
    let i = protected.partition_point(|p| p.start < e);
    protected[..i]
        .iter()
        .rev()
        .take_while(|p| p.end > s)
        .any(|p| !p.id || !is_shape_kind(kind))
}

/// Kinds of a published token shape (found even in id values).
fn is_shape_kind(kind: &str) -> bool {
    kind == "private-key" || TOKEN_RULES.iter().any(|r| r.kind == kind && r.is_shape())
}

/// Sort, and merge overlapping findings into one (kind of the more specific rule).
fn merge(mut cands: Vec<Finding>) -> Vec<Finding> {
    cands.sort_by_key(|f| (f.start, Reverse(f.end)));
    let mut out: Vec<Finding> = Vec::with_capacity(cands.len());
    for f in cands {
        if let Some(last) = out.last_mut()
            && f.start < last.end
        {
            if priority(f.kind) > priority(last.kind) {
                last.kind = f.kind;
            }
            last.end = last.end.max(f.end);
            continue;
        }
        out.push(f);
    }
    out
}

fn priority(kind: &str) -> u8 {
    match kind {
        "private-key" => 4,
        "generic-secret" | "bearer-token" | "password-in-url" => 1,
        "aws-secret-key" | "curl-user-password" | "basic-auth" | "authorization-token" => 2,
        _ => 3,
    }
}

// ---------------------------------------------------------------------------------------------
// Byte helpers
// ---------------------------------------------------------------------------------------------

/// Whether the byte at `i` is escaped, i.e. preceded by an odd run of backslashes (so it is the
/// letter of `\n`, `\t`, `\"`, …).
fn is_escaped(input: &[u8], i: usize) -> bool {
    let mut n = 0;
    let mut j = i;
    while j > 0 && input[j - 1] == b'\\' {
        n += 1;
        j -= 1;
    }
    n % 2 == 1
}

/// A token may start at `s`: the byte before is not part of a word (an escape letter such as
/// the `n` of `\n` does not count as part of a word).
fn left_boundary(input: &[u8], s: usize) -> bool {
    if s == 0 {
        return true;
    }
    let b = input[s - 1];
    !(b.is_ascii_alphanumeric() || b == b'_')
        || is_escaped(input, s - 1)
        || after_unicode_escape(input, s)
        || after_terminal_escape(input, s)
}

/// Whether a terminal control sequence (`ESC [ 0 ; 32 m`, the ESC raw or as JSON's `\u001b`)
/// ends right before `s`: coloured output puts them right before tokens.
fn after_terminal_escape(input: &[u8], s: usize) -> bool {
    if s < 3 || !(b'@'..=b'~').contains(&input[s - 1]) {
        return false;
    }
    let mut j = s - 1;
    while j > 0 && s - j < 16 && matches!(input[j - 1], b'0'..=b'9' | b';' | b'?') {
        j -= 1;
    }
    if j < 2 || input[j - 1] != b'[' {
        return false;
    }
    let esc = j - 1;
    input[esc - 1] == 0x1b
        || (esc >= 6
            && (input[esc - 6..esc].eq_ignore_ascii_case(b"\\u001b"))
            && !is_escaped(input, esc - 6))
}

/// Whether a `\uXXXX` escape ends right before `s` (its last hex digit is not part of a word:
/// `\u001b[0m` and `\u0027` come before tokens in terminal output and quoted text).
fn after_unicode_escape(input: &[u8], s: usize) -> bool {
    s >= 6
        && input[s - 6] == b'\\'
        && input[s - 5] == b'u'
        && input[s - 4..s].iter().all(u8::is_ascii_hexdigit)
        && !is_escaped(input, s - 6)
}

/// Where a value that started at `vs` ends (at most `limit`): bytes `ok` accepts, and escaped
/// slashes (`\/`, or `\\\/` escaped twice), which JSON writers may put for `/`.
fn value_end(input: &[u8], vs: usize, limit: usize, ok: impl Fn(u8) -> bool) -> usize {
    let mut ve = vs;
    while ve < limit {
        let b = input[ve];
        if b == b'\\' {
            let mut k = ve;
            while k < input.len() && input[k] == b'\\' {
                k += 1;
            }
            if k < limit && input[k] == b'/' && (k - ve) % 2 == 1 {
                ve = k + 1;
                continue;
            }
            break;
        }
        if !ok(b) {
            break;
        }
        ve += 1;
    }
    ve
}

/// Pull `end` back so a span never ends between a backslash and the character it escapes.
fn safe_end(input: &[u8], end: usize) -> usize {
    if end > 0 && end <= input.len() && is_escaped(input, end) {
        end - 1
    } else {
        end
    }
}

fn is_b64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// What may appear between PEM header and footer: base64, whitespace, `\n` escapes, and the
/// `Proc-Type: 4,ENCRYPTED` / `DEK-Info:` / PGP `Version:` header lines. No quotes, so a block
/// can never span two JSON strings.
fn is_pem_body_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'+' | b'/'
                | b'='
                | b'\\'
                | b' '
                | b'\t'
                | b'\r'
                | b'\n'
                | b'-'
                | b':'
                | b','
                | b'.'
                | b'_'
                | b'('
                | b')'
        )
}

/// Longest key name considered (`AWS_SECRET_ACCESS_KEY` is 21).
const MAX_KEY: usize = 64;
/// Longest value of an assignment, bearer token or URL password considered.
const MAX_VALUE: usize = 1024;

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_blanks(input: &[u8], mut i: usize) -> usize {
    while i < input.len() && is_blank(input[i]) {
        i += 1;
    }
    i
}

fn has_digit(v: &[u8]) -> bool {
    v.iter().any(u8::is_ascii_digit)
}

/// Shannon entropy in bits per byte.
fn entropy(v: &[u8]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in v {
        counts[b as usize] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Entropy a generic value of this length must reach: a random password of 8 characters has
/// about 2.8-3.0 bits, random base62 of 20+ over 4; English-ish identifiers stay below.
fn required_entropy(len: usize) -> f64 {
    ((len as f64).log2() * 0.8).min(3.2)
}

/// Whether `v`, lower-cased, contains any of the (lower-case) `words`.
fn contains_any_ci(v: &[u8], words: &[&str]) -> bool {
    let lower = v.to_ascii_lowercase();
    words
        .iter()
        .any(|w| memmem::find(&lower, w.as_bytes()).is_some())
}

fn token_placeholder(tok: &[u8]) -> bool {
    const WORDS: &[&str] = &[
        "xxxxx",
        "example",
        "00000",
        "placeholder",
        "redacted",
        "your",
        "*****",
        ".....",
    ];
    contains_any_ci(tok, WORDS)
}

fn is_placeholder(v: &[u8]) -> bool {
    matches!(
        v.first(),
        Some(b'$' | b'%' | b'&' | b'*' | b'/' | b'~' | b'.' | b'@')
    ) || contains_any_ci(v, PLACEHOLDER_WORDS)
}

/// An identifier, dotted path or word (`config.apiKey`, `get_token`, `Settings::SECRET`,
/// `ed25519.Ed25519PrivateKey`, `#comment`) rather than a random string.
///
/// The value is cut into letter runs at separators, digits and camel-case humps. Names are made
/// of real-ish words: runs average three letters or more and long runs contain a vowel. Random
/// strings break into short runs (`x7Kq9PzLm2` → x, Kq, Pz, Lm) or vowel-less ones (`kqjxmpzr`),
/// and long ones hold digits in several places and several vowel-less runs (`p2frsb0DNAmgr3F1`).
fn looks_like_code(v: &[u8]) -> bool {
    let start = v
        .iter()
        .position(|b| {
            !matches!(
                b,
                b'#' | b'@' | b'!' | b'$' | b'%' | b'&' | b'*' | b'~' | b'^'
            )
        })
        .unwrap_or(v.len());
    let v = &v[start..];
    if v.is_empty()
        || !v
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    {
        return false;
    }
    let (mut letters, mut runs, mut bare) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < v.len() {
        if !v[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        // One letter run: up to the next non-letter or camel-case hump.
        let s = i;
        i += 1;
        while i < v.len()
            && v[i].is_ascii_alphabetic()
            && !(v[i - 1].is_ascii_lowercase() && v[i].is_ascii_uppercase())
        {
            i += 1;
        }
        let run = &v[s..i];
        let vowel = run.iter().any(|b| {
            matches!(
                b.to_ascii_lowercase(),
                b'a' | b'e' | b'i' | b'o' | b'u' | b'y'
            )
        });
        if run.len() >= 5 && !vowel {
            return false;
        }
        bare += usize::from(run.len() >= 3 && !vowel);
        runs += 1;
        letters += run.len();
    }
    let digit_groups = v
        .windows(2)
        .filter(|w| !w[0].is_ascii_digit() && w[1].is_ascii_digit())
        .count()
        + usize::from(v[0].is_ascii_digit());
    runs > 0 && letters >= 3 * runs && digit_groups < 3 && bare < 2
}

/// The character classes (lower, upper, digit, other) present in `v`.
fn class_count(v: &[u8]) -> usize {
    let (mut l, mut u, mut d, mut o) = (false, false, false, false);
    for &b in v {
        match b {
            b'a'..=b'z' => l = true,
            b'A'..=b'Z' => u = true,
            b'0'..=b'9' => d = true,
            _ => o = true,
        }
    }
    usize::from(l) + usize::from(u) + usize::from(d) + usize::from(o)
}

/// The value checks shared by generic assignments, bearer tokens and URL passwords.
fn random_looking(v: &[u8], min_len: usize) -> bool {
    v.len() >= min_len
        && v.len() <= MAX_VALUE
        && v.iter().any(u8::is_ascii_alphabetic)
        && class_count(v) >= 2
        && !looks_like_code(v)
        && entropy(v) >= required_entropy(v.len())
        && !is_placeholder(v)
}

// ---------------------------------------------------------------------------------------------
// Assignment-style rules
// ---------------------------------------------------------------------------------------------

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    /// `aws_secret_access_key`, `SecretAccessKey`, …
    AwsSecret,
    /// Contains a strong word (`secret`, `password`, `token`, `api_key`, …).
    Strong,
    /// Only ends in `key`; `upper` when written in UPPER_CASE (an env variable).
    Weak { upper: bool },
}

fn classify_key(key: &[u8]) -> Option<KeyClass> {
    let mut buf = [0u8; 64];
    let mut n = 0;
    for &b in key {
        if b.is_ascii_alphanumeric() && n < buf.len() {
            buf[n] = b.to_ascii_lowercase();
            n += 1;
        }
    }
    let norm = &buf[..n];
    let has = |w: &str| memmem::find(norm, w.as_bytes()).is_some();
    if NEGATIVE_KEY_WORDS.iter().any(|w| has(w)) {
        return None;
    }
    if has("secretaccesskey") || has("awssecretkey") || (has("aws") && has("secret")) {
        return Some(KeyClass::AwsSecret);
    }
    if STRONG_KEY_WORDS.iter().any(|w| has(w)) {
        return Some(KeyClass::Strong);
    }
    if norm.ends_with(WEAK_KEY_SUFFIX.as_bytes()) && !WEAK_KEY_NEGATIVE.iter().any(|w| has(w)) {
        let upper = !key.iter().any(u8::is_ascii_lowercase);
        return Some(KeyClass::Weak { upper });
    }
    None
}

/// After a key name ending at `i`: the closing quote of a quoted key (`"`, `\"`, `'`), blanks,
/// an operator (`=`, `:`, `:=`, `=>`, `?=`; or blanks alone after a `--flag`), blanks, an optional
/// opening quote, and a value. Returns the value's range.
fn parse_assignment(input: &[u8], mut i: usize, cli_flag: bool) -> Option<(usize, usize)> {
    let len = input.len();
    // Closing quote of a quoted key, possibly escaped.
    let mut j = i;
    while j < len && input[j] == b'\\' {
        j += 1;
    }
    if j < len && matches!(input[j], b'"' | b'\'' | b'`') {
        i = j + 1;
    }
    let before_blanks = i;
    i = skip_blanks(input, i);
    let rest = &input[i..];
    let op_len = if rest.starts_with(b"==") || rest.starts_with(b"::") {
        return None;
    } else if rest.starts_with(b":=") || rest.starts_with(b"=>") || rest.starts_with(b"?=") {
        2
    } else if matches!(rest.first(), Some(b'=' | b':')) {
        1
    } else if cli_flag && i > before_blanks {
        0
    } else {
        return None;
    };
    i = skip_blanks(input, i + op_len);
    // Opening quote, possibly escaped; a backslash not followed by a quote is an escape such as
    // `\n`: no value on this line.
    let mut j = i;
    while j < len && input[j] == b'\\' {
        j += 1;
    }
    let quote = match input.get(j) {
        Some(&q @ (b'"' | b'\'' | b'`')) => Some(q),
        _ if j > i => return None,
        _ => None,
    };
    let vs = if quote.is_some() { j + 1 } else { i };
    let limit = len.min(vs + MAX_VALUE + 1);
    let ve = value_end(input, vs, limit, |b| is_value_byte(b, quote.is_some()));
    match (quote, input.get(ve)) {
        // A quoted value must end at its quote: one token, no spaces.
        (Some(q), Some(&b)) if b == q || b == b'\\' => {}
        (Some(_), _) => return None,
        // `get_token()` / `tokens[i]`: code, not a value.
        (None, Some(b'(' | b'[')) => return None,
        (None, _) => {}
    }
    (ve > vs).then_some((vs, ve))
}

fn is_value_byte(b: u8, quoted: bool) -> bool {
    match b {
        b'"' | b'\'' | b'`' | b'\\' => false,
        b',' | b';' | b'(' | b')' | b'{' | b'}' | b'[' | b']' | b'<' | b'>' | b'&' | b'|' => quoted,
        0x21..=0x7e => true,
        _ => false,
    }
}

/// A trigger hit inside a key name: find the whole name, the assigned value, and judge both.
/// Also returns where the key name ends, so other hits inside it are skipped.
fn key_assignment(input: &[u8], hs: usize, he: usize) -> (Option<Finding>, usize) {
    let len = input.len();
    // Bounded both ways so a long run of key bytes full of triggers stays linear.
    let mut ks = hs;
    while ks > 0 && hs - ks <= MAX_KEY && is_key_byte(input[ks - 1]) && !is_escaped(input, ks - 1) {
        ks -= 1;
    }
    let mut ke = he;
    while ke < len && ke - he <= MAX_KEY && is_key_byte(input[ke]) {
        ke += 1;
    }
    let key_end = ke;
    let mut dashes = 0;
    while ks < ke && matches!(input[ks], b'-' | b'.') {
        dashes += usize::from(input[ks] == b'-');
        ks += 1;
    }
    while ke > ks && matches!(input[ke - 1], b'-' | b'.') {
        ke -= 1;
    }
    if ke <= ks || ke - ks > MAX_KEY || input[..ks].ends_with(b"REDACTED:") {
        return (None, key_end);
    }
    // Cheapest test first: most hits are prose ("the token stream") with no assignment.
    let Some((vs, ve)) = parse_assignment(input, ke, dashes >= 2) else {
        return (None, key_end);
    };
    let raw = &input[vs..ve];
    if raw.len() > MAX_VALUE {
        // A blob, not a secret value; triggers inside it are not keys either.
        return (None, ve);
    }
    // Judged as it reads, escaped slashes decoded.
    let value_cow = canonical(raw);
    let value: &[u8] = &value_cow;
    if value.len() < 8 {
        return (None, key_end);
    }
    let Some(class) = classify_key(&input[ks..ke]) else {
        return (None, key_end);
    };
    if class == KeyClass::AwsSecret
        && value.len() == 40
        && value.iter().all(|&b| is_base64_byte(b) && b != b'=')
        && entropy(value) >= 4.0
        && !token_placeholder(value)
    {
        let f = Finding {
            kind: "aws-secret-key",
            start: vs,
            end: ve,
        };
        return (Some(f), key_end);
    }
    if !random_looking(value, 8) {
        return (None, key_end);
    }
    if let KeyClass::Weak { upper: false } = class
        && value.iter().all(u8::is_ascii_hexdigit)
    {
        // `cache_key = "<sha256>"`: a hash under a lower-case `…_key` name.
        return (None, key_end);
    }
    let f = Finding {
        kind: "generic-secret",
        start: vs,
        end: ve,
    };
    (Some(f), key_end)
}

/// `Bearer <token>` (e.g. in an `Authorization:` header of a curl command); the trigger is
/// `earer` or `EARER` at `hs..he`.
fn bearer(input: &[u8], hs: usize, he: usize) -> Option<Finding> {
    if hs == 0
        || !matches!(input[hs - 1], b'b' | b'B')
        || !left_boundary(input, hs - 1)
        || input.get(he) != Some(&b' ')
    {
        return None;
    }
    let vs = skip_blanks(input, he);
    let limit = input.len().min(vs + MAX_VALUE + 1);
    let ve = value_end(input, vs, limit, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'+' | b'/' | b'=' | b'-')
    });
    let v_cow = canonical(&input[vs..ve]);
    let v: &[u8] = &v_cow;
    (has_digit(v) && random_looking(v, 16)).then_some(Finding {
        kind: "bearer-token",
        start: vs,
        end: ve,
    })
}

/// `scheme://user:password@host` (or `scheme:\/\/…`, JSON-escaped, trigger at `s..e`): the
/// password part.
fn url_password(input: &[u8], s: usize, e: usize) -> Option<Finding> {
    // A scheme of at least two letters right before `://`.
    let mut b = s;
    while b > 0 && s - b < 32 && (input[b - 1].is_ascii_alphanumeric() || input[b - 1] == b'+') {
        b -= 1;
    }
    // Digits before the scheme (`\u001b[32mhttps://…`) are not part of it.
    while b < s && !input[b].is_ascii_alphabetic() {
        b += 1;
    }
    if s - b < 2 {
        return None;
    }
    let auth_start = e;
    let limit = input.len().min(auth_start + 256);
    let mut j = auth_start;
    while j < limit
        && !matches!(
            input[j],
            b'/' | b'@' | b'"' | b'\'' | b'\\' | b'<' | b'>' | b'?' | b'#' | b'`'
        )
        && input[j] > b' '
        && input[j] < 0x7f
    {
        j += 1;
    }
    if input.get(j) != Some(&b'@') {
        return None;
    }
    let colon = memchr::memchr(b':', &input[auth_start..j])?;
    let ps = auth_start + colon + 1;
    let pass = &input[ps..j];
    random_looking(pass, 6).then_some(Finding {
        kind: "password-in-url",
        start: ps,
        end: j,
    })
}

// ---------------------------------------------------------------------------------------------
// JSON structure: which string values are off limits
// ---------------------------------------------------------------------------------------------

/// How the value of a key is protected: `Some(false)` never touched, `Some(true)` an id (only
/// tokens of a published shape in it are redacted), `None` not at all. `whole` is false when
/// only the end of a long key is known.
fn key_protection(k: &[u8], whole: bool) -> Option<bool> {
    let ends = |list: &[&str]| list.iter().any(|p| k.ends_with(p.as_bytes()));
    if (whole && PROTECTED_KEYS.iter().any(|p| k == p.as_bytes())) || ends(PROTECTED_KEY_SUFFIXES) {
        Some(false)
    } else if ends(ID_KEY_SUFFIXES) {
        Some(true)
    } else {
        None
    }
}

/// A range of a JSON line (the content of a string value) that redaction leaves alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Protected {
    pub start: u64,
    pub end: u64,
    /// The value of an id key: a token of a published shape in it is still redacted.
    pub id: bool,
}

/// Content ranges of the string values that must not be touched (see the module docs). Walks
/// the raw line without validating it; stops quietly where the structure breaks.
fn protected_spans(line: &[u8]) -> Vec<Protected> {
    let mut w = ProtectedWalker::default();
    w.feed(line);
    w.finish()
}

/// The longest key or value compared whole; longer ones keep only their end (for suffixes).
const SHORT_STRING: usize = 256;

/// The protected ranges of one JSON line fed in pieces (offsets from the line's start). Holds
/// no more of the line than one short string.
#[derive(Debug, Default)]
pub struct ProtectedWalker {
    /// Bytes fed so far.
    pos: u64,
    state: WalkState,
    frames: Vec<WalkFrame>,
    /// The key of the value expected next (its end only when it was long).
    key: Option<(Vec<u8>, bool)>,
    expect_value: bool,
    /// The string being read: where its content starts, and its content (or its end).
    string_start: u64,
    content: Vec<u8>,
    long: bool,
    escape: bool,
    /// A string just ended that may be a key (if a `:` follows).
    maybe_key: Option<(Vec<u8>, bool)>,
    out: Vec<Protected>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum WalkState {
    /// Before the first non-blank byte.
    #[default]
    Start,
    Structure,
    InString,
    /// Not a JSON object or array, or a string that never ended.
    Stopped,
}

#[derive(Debug, Default)]
struct WalkFrame {
    /// The object has `"type":"base64"` or a `media_type` key.
    base64: bool,
    /// Content range of its `data` string value.
    data: Option<(u64, u64)>,
}

impl ProtectedWalker {
    pub fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                WalkState::Stopped => return,
                WalkState::Start => {
                    let b = data[i];
                    if b.is_ascii_whitespace() {
                        i += 1;
                    } else if matches!(b, b'{' | b'[') {
                        self.state = WalkState::Structure;
                    } else {
                        self.state = WalkState::Stopped;
                    }
                }
                WalkState::InString => {
                    if self.escape {
                        self.escape = false;
                        self.keep_content(&data[i..i + 1]);
                        i += 1;
                        continue;
                    }
                    match memchr2(b'"', b'\\', &data[i..]) {
                        None => {
                            self.keep_content(&data[i..]);
                            i = data.len();
                        }
                        Some(k) if data[i + k] == b'\\' => {
                            self.keep_content(&data[i..=i + k]);
                            self.escape = true;
                            i += k + 1;
                        }
                        Some(k) => {
                            self.keep_content(&data[i..i + k]);
                            let end = self.pos + (i + k) as u64;
                            self.string_ended(end);
                            self.state = WalkState::Structure;
                            i += k + 1;
                        }
                    }
                }
                WalkState::Structure => {
                    let b = data[i];
                    if let Some(k) = self.maybe_key.take() {
                        if b.is_ascii_whitespace() {
                            self.maybe_key = Some(k);
                            i += 1;
                            continue;
                        }
                        if b == b':' {
                            self.key = Some(k);
                            self.expect_value = true;
                            i += 1;
                            continue;
                        }
                    }
                    match b {
                        b'"' => {
                            self.state = WalkState::InString;
                            self.string_start = self.pos + i as u64 + 1;
                            self.content.clear();
                            self.long = false;
                        }
                        b'{' | b'[' => {
                            self.frames.push(WalkFrame::default());
                            self.expect_value = false;
                        }
                        b'}' | b']' => {
                            if let Some(f) = self.frames.pop()
                                && f.base64
                                && let Some((start, end)) = f.data
                            {
                                self.out.push(Protected {
                                    start,
                                    end,
                                    id: false,
                                });
                            }
                            self.expect_value = false;
                        }
                        b',' => self.expect_value = false,
                        _ => {}
                    }
                    i += 1;
                }
            }
        }
        self.pos += data.len() as u64;
    }

    fn keep_content(&mut self, bytes: &[u8]) {
        self.content.extend_from_slice(bytes);
        if self.content.len() > 2 * SHORT_STRING {
            let cut = self.content.len() - SHORT_STRING;
            self.content.drain(..cut);
            self.long = true;
        }
    }

    /// The string whose content started at `string_start` ended at `end` (its closing quote).
    fn string_ended(&mut self, end: u64) {
        let s = self.string_start;
        let content = std::mem::take(&mut self.content);
        let long = self.long;
        if !self.expect_value {
            // A key if a `:` follows; otherwise a value nobody asked for.
            self.maybe_key = Some((content, long));
            return;
        }
        if let Some((k, key_long)) = &self.key {
            if let Some(id) = key_protection(k, !*key_long) {
                self.out.push(Protected { start: s, end, id });
            }
            if let Some(f) = self.frames.last_mut().filter(|_| !*key_long) {
                match k.as_slice() {
                    b"type" if !long && content == b"base64" => f.base64 = true,
                    b"media_type" => f.base64 = true,
                    b"data" => f.data = Some((s, end)),
                    _ => {}
                }
            }
        }
        self.expect_value = false;
        self.content = content;
        self.content.clear();
    }

    /// The line ended; the protected ranges, sorted.
    pub fn finish(mut self) -> Vec<Protected> {
        // An unterminated line: objects still open keep their media protected.
        for f in std::mem::take(&mut self.frames) {
            if f.base64
                && let Some((start, end)) = f.data
            {
                self.out.push(Protected {
                    start,
                    end,
                    id: false,
                });
            }
        }
        self.out.sort_unstable();
        self.out.dedup();
        self.out
    }
}
