//! The maintained rule set: which literal triggers start a check, and what each check accepts.
//!
//! To add a provider token format, append a [`TokenRule`]: its `triggers` are literal prefixes
//! (case-sensitive) fed to the prefilter, and its `pattern` is matched anchored at the trigger.
//! The prefilter holds at most 64 literals (the SIMD searcher's limit); `Compiled::build` in
//! `mod.rs` falls back to a slower automaton beyond that, so keep the list lean.

/// A provider token recognised by its literal prefix and shape.
pub(super) struct TokenRule {
    /// Stable short name used in reports and in the redaction token.
    pub kind: &'static str,
    /// Literal prefixes (case-sensitive) at which `pattern` is tried.
    pub triggers: &'static [&'static str],
    /// Regex (bytes, no Unicode) matched anchored at the trigger position.
    pub pattern: &'static str,
    /// How many bytes after the trigger position the match may span.
    pub max_len: usize,
    /// Minimum Shannon entropy (bits per byte) over the whole match.
    pub min_entropy: f64,
    /// The match must contain both a digit and a letter.
    pub needs_digit: bool,
}

pub(super) const TOKEN_RULES: &[TokenRule] = &[
    TokenRule {
        kind: "aws-access-key",
        triggers: &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        pattern: r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}",
        max_len: 20,
        min_entropy: 3.0,
        needs_digit: false,
    },
    TokenRule {
        kind: "github-token",
        triggers: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        pattern: r"gh[pousr]_[A-Za-z0-9]{36,251}",
        max_len: 255,
        min_entropy: 3.5,
        needs_digit: false,
    },
    TokenRule {
        kind: "github-token",
        triggers: &["github_pat_"],
        pattern: r"github_pat_[A-Za-z0-9_]{50,244}",
        max_len: 255,
        min_entropy: 3.5,
        needs_digit: false,
    },
    // Before `openai-key`: both start with `sk-`; the first rule that matches wins.
    TokenRule {
        kind: "anthropic-key",
        triggers: &["sk-"],
        pattern: r"sk-ant-[A-Za-z0-9_\-]{32,400}",
        max_len: 407,
        min_entropy: 3.5,
        needs_digit: true,
    },
    TokenRule {
        kind: "openai-key",
        triggers: &["sk-"],
        pattern: r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,400}|sk-[A-Za-z0-9]{32,200}",
        max_len: 412,
        min_entropy: 3.5,
        needs_digit: true,
    },
    TokenRule {
        kind: "slack-token",
        triggers: &["xox"],
        pattern: r"xox[abeoprs]-[A-Za-z0-9\-]{10,250}",
        max_len: 255,
        min_entropy: 3.0,
        needs_digit: true,
    },
    TokenRule {
        kind: "slack-webhook",
        triggers: &["hooks.slack.com"],
        pattern: r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_\-/]{20,300}",
        max_len: 340,
        min_entropy: 3.0,
        needs_digit: false,
    },
    TokenRule {
        kind: "stripe-key",
        triggers: &["sk_live_", "rk_live_", "sk_test_", "rk_test_"],
        pattern: r"[sr]k_(?:live|test)_[A-Za-z0-9]{20,250}",
        max_len: 258,
        min_entropy: 3.0,
        needs_digit: false,
    },
    TokenRule {
        kind: "google-api-key",
        triggers: &["AIza"],
        pattern: r"AIza[0-9A-Za-z_\-]{35}",
        max_len: 39,
        min_entropy: 3.0,
        needs_digit: false,
    },
    TokenRule {
        kind: "gitlab-token",
        triggers: &["glpat-"],
        pattern: r"glpat-[0-9A-Za-z_\-]{20,100}",
        max_len: 106,
        min_entropy: 3.0,
        needs_digit: false,
    },
    TokenRule {
        kind: "npm-token",
        triggers: &["npm_"],
        pattern: r"npm_[A-Za-z0-9]{36}",
        max_len: 40,
        min_entropy: 3.0,
        needs_digit: false,
    },
    TokenRule {
        kind: "jwt",
        triggers: &["eyJ"],
        pattern: r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}",
        max_len: 16 * 1024,
        min_entropy: 3.0,
        needs_digit: false,
    },
];

/// `-----BEGIN … PRIVATE KEY-----` and its closing line (PEM, OpenSSH, PGP armour).
pub(super) const PEM_TRIGGER: &str = "-----BEGIN";
pub(super) const PEM_HEADER: &str = r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----";
pub(super) const PEM_FOOTER: &str = r"-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----";
/// How far a PEM body may run before we stop looking for its end.
pub(super) const PEM_MAX_BODY: usize = 64 * 1024;

/// `scheme://user:password@host`: only the password is redacted.
pub(super) const URL_TRIGGER: &str = "://";

/// `Authorization: Bearer <token>`.
pub(super) const BEARER_TRIGGERS: &[&str] = &["bearer", "Bearer", "BEARER"];

/// Literal pieces of secret-looking key names, in the spellings that occur in practice
/// (lower, UPPER, Title and camel case). A hit only starts a check: the whole key name around
/// it is then classified by [`STRONG_KEY_WORDS`] / [`WEAK_KEY_SUFFIX`].
pub(super) const KEY_TRIGGERS: &[&str] = &[
    "secret",
    "SECRET",
    "Secret",
    "passw",
    "PASSW",
    "Passw",
    "pwd",
    "PWD",
    "token",
    "TOKEN",
    "Token",
    "private",
    "PRIVATE",
    "Private",
    "credential",
    "CREDENTIAL",
    "Credential",
    "api_key",
    "API_KEY",
    "apikey",
    "APIKEY",
    "apiKey",
    "ApiKey",
    "api-key",
    "API-KEY",
    "Api-Key",
    "access_key",
    "ACCESS_KEY",
    "accessKey",
    "AccessKey",
    "_key",
    "_KEY",
];

/// A key name (lower-cased, with `_`, `-` and `.` removed) containing one of these is a secret
/// name whatever else it contains, unless it also contains a [`NEGATIVE_KEY_WORDS`] entry.
pub(super) const STRONG_KEY_WORDS: &[&str] = &[
    "secret",
    "passw",
    "pwd",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
];

/// Otherwise a key name ending in `key` (e.g. `ENCRYPTION_KEY`) is a weaker signal: accepted
/// unless it contains a [`WEAK_KEY_NEGATIVE`] entry, and hex values only under UPPER_CASE names.
pub(super) const WEAK_KEY_SUFFIX: &str = "key";

/// Normalised key names containing these describe a secret rather than hold one.
pub(super) const NEGATIVE_KEY_WORDS: &[&str] = &[
    "tokens",
    "tokenizer",
    "tokentype",
    "tokencount",
    "tokenlimit",
    "type",
    "length",
    "url",
    "endpoint",
    "path",
    "file",
    "name",
    "hash",
    "fingerprint",
    "checksum",
    "digest",
    "expir",
    "ttl",
    "publickey",
    "keyid",
    "policy",
    "field",
    "placeholder",
    "prompt",
    "hint",
    "header",
    "prefix",
    "usage",
    "budget",
];

/// Extra exclusions for the weak `…_KEY` names.
pub(super) const WEAK_KEY_NEGATIVE: &[&str] = &[
    "cache",
    "sort",
    "primary",
    "foreign",
    "partition",
    "idempot",
    "lookup",
    "index",
    "group",
    "order",
    "route",
    "table",
    "column",
    "object",
    "bucket",
    "license",
    "dedup",
    "unique",
    "shard",
    "hotkey",
    "keyboard",
    "translation",
    "cursor",
    "map",
    "react",
    "public",
];

/// Values containing these (case-insensitive; keep them lower-case) are placeholders, references,
/// URLs or prose.
pub(super) const PLACEHOLDER_WORDS: &[&str] = &[
    "://",
    "xxxx",
    "****",
    "...",
    "<",
    ">",
    "${",
    "$(",
    "{{",
    "}}",
    "%(",
    "your",
    "example",
    "changeme",
    "change_me",
    "change-me",
    "placeholder",
    "dummy",
    "redacted",
    "sample",
    "insert",
    "replace",
    "secret",
    "password",
    "passwd",
    "token",
    "apikey",
    "api_key",
    "undefined",
    "null",
    "none",
    "todo",
    "fixme",
    "foobar",
    "lorem",
    "abcdef",
    "12345",
    "qwerty",
    "0000",
    "process.env",
    "os.environ",
    "getenv",
];

/// Keys whose JSON string values are never touched: what Claude Code needs to resume
/// (exact names) …
pub(super) const PROTECTED_KEYS: &[&str] = &["signature", "id", "uuid"];
/// … and any key ending in one of these (ids, uuids, hashes).
pub(super) const PROTECTED_KEY_SUFFIXES: &[&str] = &[
    "Id",
    "ID",
    "_id",
    "Uuid",
    "UUID",
    "uuid",
    "Signature",
    "signature",
    "Hash",
    "hash",
    "sha",
    "Sha",
    "sha1",
    "sha256",
    "Digest",
    "digest",
    "checksum",
    "Checksum",
];
