//! The maintained rule set: which literal triggers start a check, and what each check accepts.
//!
//! To add a provider token format, append a [`TokenRule`] to [`TOKEN_RULES`] and a case to
//! `rule_cases` in `tests.rs` built from the token's published format: its `triggers` are literal
//! pieces (case-sensitive) fed to the prefilter, and its `pattern` is matched anchored where the
//! token starts: at the trigger, or up to `back` bytes before it (the token must then cover the
//! trigger). The prefilter holds at most 64 literals (the SIMD searcher's limit, all 64 in use);
//! `Compiled::build` in `mod.rs` falls back to a slower automaton beyond that, so a new rule
//! shares a trigger with others where it can (a literal from the middle of its format, with
//! `back`), and every literal is at least 3 bytes (shorter ones slow the SIMD search down).

/// How a match is judged once its pattern matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// A provider token of fixed shape: `min_entropy`, `needs_digit`, and no placeholder.
    Shape,
    /// A password (the capture group): long enough, random-looking, no placeholder or variable.
    Password,
    /// Base64 of `user:password` (`Authorization: Basic`).
    BasicAuth,
    /// An opaque token after a scheme (`Authorization: Token`): as `Bearer` tokens are judged.
    Opaque,
}

/// A provider token or a credential in a fixed context, recognised by a literal and a shape.
pub(super) struct TokenRule {
    /// Stable short name used in reports and in the redaction token.
    pub kind: &'static str,
    /// Literal pieces (case-sensitive) at which `pattern` is tried.
    pub triggers: &'static [&'static str],
    /// How many bytes before the trigger the match may start (0: it starts at the trigger).
    pub back: usize,
    /// Regex (bytes, no Unicode) matched anchored where the token starts.
    pub pattern: &'static str,
    /// The capture group that is the secret (0: the whole match).
    pub group: usize,
    /// How many bytes from its start the match may span.
    pub max_len: usize,
    /// Minimum Shannon entropy (bits per byte) over the secret ([`Check::Shape`]).
    pub min_entropy: f64,
    /// The secret must contain both a digit and a letter ([`Check::Shape`]).
    pub needs_digit: bool,
    pub check: Check,
}

impl TokenRule {
    /// A token of a published shape: found even inside values of id keys (`"aws_access_key_id"`).
    pub fn is_shape(&self) -> bool {
        self.check == Check::Shape
    }
}

/// Defaults for a prefix token: shape-checked, whole match, no lookbehind.
const fn shape(
    kind: &'static str,
    triggers: &'static [&'static str],
    pattern: &'static str,
    max_len: usize,
) -> TokenRule {
    TokenRule {
        kind,
        triggers,
        back: 0,
        pattern,
        group: 0,
        max_len,
        min_entropy: 3.0,
        needs_digit: false,
        check: Check::Shape,
    }
}

/// `(?:/|\/)`: a slash, also as JSON writes it escaped.
macro_rules! sl {
    () => {
        r"(?:/|\\/)"
    };
}

pub(super) const TOKEN_RULES: &[TokenRule] = &[
    // AWS access key ids (IAM user, STS, and the rarer prefixes).
    TokenRule {
        min_entropy: 3.0,
        ..shape(
            "aws-access-key",
            &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
            r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}",
            20,
        )
    },
    // GitHub classic tokens (personal, OAuth, user-to-server, server-to-server, refresh).
    TokenRule {
        min_entropy: 3.5,
        ..shape(
            "github-token",
            &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
            r"gh[pousr]_[A-Za-z0-9]{36,251}",
            255,
        )
    },
    // GitHub fine-grained personal access tokens; the trigger is shared with Docker Hub's.
    TokenRule {
        back: 6,
        min_entropy: 3.5,
        ..shape(
            "github-token",
            &["_pat_"],
            r"github_pat_[A-Za-z0-9_]{50,244}",
            255,
        )
    },
    // Before `openai-key`: both start with `sk-`; the first rule that matches wins.
    TokenRule {
        min_entropy: 3.5,
        needs_digit: true,
        ..shape(
            "anthropic-key",
            &["sk-"],
            r"sk-ant-[A-Za-z0-9_\-]{32,400}",
            407,
        )
    },
    TokenRule {
        min_entropy: 3.5,
        needs_digit: true,
        ..shape(
            "openai-key",
            &["sk-"],
            r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,400}|sk-[A-Za-z0-9]{32,200}",
            412,
        )
    },
    // Slack bot, user, app-config tokens, and app-level tokens (`xapp-1-A…-…-…`).
    TokenRule {
        needs_digit: true,
        ..shape(
            "slack-token",
            &["xox", "xapp-"],
            r"xox[abeoprs]-[A-Za-z0-9\-]{10,250}|xapp-[0-9]-[A-Z0-9]{8,16}-[0-9]{8,16}-[a-z0-9]{32,80}",
            255,
        )
    },
    shape(
        "slack-webhook",
        &["hooks.slack.com"],
        concat!(
            r"hooks\.slack\.com",
            sl!(),
            r"(?:services|workflows|triggers)",
            sl!(),
            r"(?:[A-Za-z0-9_\-]|",
            sl!(),
            r"){20,300}"
        ),
        340,
    ),
    // Stripe secret and restricted keys, live and test.
    TokenRule {
        back: 1,
        ..shape(
            "stripe-key",
            &["k_live_", "k_test_"],
            r"[sr]k_(?:live|test)_[A-Za-z0-9]{20,250}",
            258,
        )
    },
    // Stripe webhook signing secrets.
    shape(
        "stripe-webhook-secret",
        &["whsec_"],
        r"whsec_(?:[A-Za-z0-9+]|\\?/){32,100}",
        106,
    ),
    shape("google-api-key", &["AIza"], r"AIza[0-9A-Za-z_\-]{35}", 39),
    // Google OAuth client secrets and access tokens.
    shape(
        "google-oauth",
        &["GOCSPX-", "ya29."],
        r"GOCSPX-[A-Za-z0-9_\-]{28}|ya29\.[0-9A-Za-z_\-]{30,1000}",
        1005,
    ),
    // GitLab personal and deploy tokens.
    shape(
        "gitlab-token",
        &["glpat-"],
        r"glpat-[0-9A-Za-z_\-]{20,100}",
        106,
    ),
    // GitLab runner authentication tokens.
    shape(
        "gitlab-runner-token",
        &["glrt-"],
        r"glrt-(?:t[0-9]_)?[0-9A-Za-z_\-]{20,100}",
        108,
    ),
    shape("npm-token", &["npm_"], r"npm_[A-Za-z0-9]{36}", 40),
    // Hugging Face user access tokens.
    TokenRule {
        min_entropy: 3.5,
        ..shape("huggingface-token", &["hf_"], r"hf_[A-Za-z]{34}", 37)
    },
    // Discord webhooks (`discord.com` and the older `discordapp.com`).
    shape(
        "discord-webhook",
        &["discord"],
        concat!(
            r"discord(?:app)?\.com",
            sl!(),
            "api",
            sl!(),
            "webhooks",
            sl!(),
            r"[0-9]{17,20}",
            sl!(),
            r"[A-Za-z0-9_\-]{60,68}"
        ),
        120,
    ),
    // Telegram bot tokens: the bot id, a colon, `AA` and 33 more.
    TokenRule {
        back: 10,
        ..shape(
            "telegram-bot-token",
            &[":AA"],
            r"[0-9]{8,10}:AA[A-Za-z0-9_\-]{33}",
            46,
        )
    },
    // age X25519 secret keys (Bech32).
    shape(
        "age-secret-key",
        &["AGE-SECRET-KEY-1"],
        r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
        74,
    ),
    shape(
        "sendgrid-key",
        &["SG."],
        r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
        69,
    ),
    // Shopify access, custom-app, private-app tokens and shared secrets.
    shape(
        "shopify-token",
        &["shp"],
        r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
        38,
    ),
    // PyPI upload tokens (a macaroon whose first bytes name pypi.org).
    shape(
        "pypi-token",
        &["pypi-AgE"],
        r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,1000}",
        1020,
    ),
    // DigitalOcean personal, OAuth and refresh tokens.
    TokenRule {
        back: 3,
        ..shape(
            "digitalocean-token",
            &["_v1_"],
            r"do[opr]_v1_[a-f0-9]{64}",
            71,
        )
    },
    shape(
        "databricks-token",
        &["dapi"],
        r"dapi[a-h0-9]{32}(?:-[0-9])?",
        38,
    ),
    shape(
        "postman-key",
        &["PMAK-"],
        r"PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}",
        64,
    ),
    // HashiCorp Vault service tokens.
    shape(
        "vault-token",
        &["hvs."],
        r"hvs\.[A-Za-z0-9_\-]{24,200}",
        204,
    ),
    // Docker Hub personal access tokens.
    TokenRule {
        back: 4,
        ..shape(
            "dockerhub-token",
            &["_pat_"],
            r"dckr_pat_[A-Za-z0-9_\-]{27}",
            36,
        )
    },
    // Azure storage account keys in connection strings: `AccountKey=<88 base64>`.
    TokenRule {
        back: 1,
        group: 1,
        ..shape(
            "azure-storage-key",
            &["ccountKey"],
            r#"AccountKey[\\"']{0,4}\s*[=:]\s*[\\"']{0,4}((?:[A-Za-z0-9+]|\\?/){86}==)"#,
            140,
        )
    },
    // `curl -u user:password`: the password.
    TokenRule {
        group: 1,
        check: Check::Password,
        ..shape(
            "curl-user-password",
            &["-u "],
            r#"-u[ \t]+[\\"']{0,3}[A-Za-z0-9_.@+\-]{1,64}:([!-~&&[^\\"'`$<>]]{6,128})"#,
            210,
        )
    },
    // `Authorization: Basic <base64 of user:password>`.
    TokenRule {
        back: 1,
        group: 1,
        check: Check::BasicAuth,
        ..shape(
            "basic-auth",
            &["uthorization", "UTHORIZATION"],
            r#"(?:[Aa]uthorization|AUTHORIZATION)[\\"']{0,4}[ \t]*[:=][ \t]*[\\"']{0,4}(?:Basic|basic|BASIC)[ \t]+((?:[A-Za-z0-9+]|\\?/){8,1024}={0,2})"#,
            1100,
        )
    },
    // `Authorization: Token <token>` (Django REST, GitHub's `token` scheme, …).
    TokenRule {
        back: 1,
        group: 1,
        check: Check::Opaque,
        ..shape(
            "authorization-token",
            &["uthorization", "UTHORIZATION"],
            r#"(?:[Aa]uthorization|AUTHORIZATION)[\\"']{0,4}[ \t]*[:=][ \t]*[\\"']{0,4}(?:Token|token|TOKEN)[ \t]+((?:[A-Za-z0-9._~+=\-]|\\?/){16,1024})"#,
            1100,
        )
    },
    shape(
        "jwt",
        &["eyJ"],
        r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}",
        16 * 1024,
    ),
];

/// The order in which the 64 literals are given to the SIMD searcher. It decides how they share
/// its 16 buckets, and so how often it stops at text that only looks like a trigger: on the
/// reference corpus this order is more than twice as fast as the order the rules list them in
/// (the same literals). Found by the ignored test `prefilter_order_search` (a hill climb on a
/// simulation of the searcher over a corpus); a literal not listed here goes last. Order changes
/// no result: no literal can match where another starts.
pub(super) const PREFILTER_ORDER: &[&str] = &[
    "k_live_",
    "SSW",
    "ABIA",
    "redential",
    "A3T",
    "ghp_",
    "pi-Key",
    "_pat_",
    "xapp-",
    "PWD",
    "rivateKey",
    "ecret",
    "_key",
    "ghs_",
    "PI-KEY",
    "ccessKey",
    "uthorization",
    "PMAK-",
    "AIza",
    "GOCSPX-",
    "ya29.",
    "gho_",
    "glrt-",
    "ghr_",
    "sk-",
    "_v1_",
    "hf_",
    "AGE-SECRET-KEY-1",
    "OKEN",
    "shp",
    "://",
    "ccountKey",
    "pi-key",
    "k_test_",
    "ghu_",
    "AKIA",
    "oken",
    "glpat-",
    "UTHORIZATION",
    "whsec_",
    "-----BEGIN",
    "-u ",
    ":\\/\\/",
    "earer",
    "EARER",
    "ACCA",
    "hooks.slack.com",
    "ssw",
    "eyJ",
    "hvs.",
    "discord",
    "pwd",
    "ASIA",
    "npm_",
    "pikey",
    "PIKEY",
    "piKey",
    "SG.",
    "xox",
    "dapi",
    "ECRET",
    ":AA",
    "pypi-AgE",
    "_KEY",
];

/// `-----BEGIN … PRIVATE KEY-----` and its closing line (PEM, OpenSSH, PGP armour).
pub(super) const PEM_TRIGGER: &str = "-----BEGIN";
pub(super) const PEM_HEADER: &str = r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----";
pub(super) const PEM_FOOTER: &str = r"-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----";
/// How far a PEM body may run before we stop looking for its end.
pub(super) const PEM_MAX_BODY: usize = 64 * 1024;

/// `scheme://user:password@host`: only the password is redacted (also as JSON escapes `/`).
pub(super) const URL_TRIGGERS: &[&str] = &["://", ":\\/\\/"];

/// `Authorization: Bearer <token>`, in any case (`bearer`, `Bearer`, `BEARER`).
pub(super) const BEARER_TRIGGERS: &[&str] = &["earer", "EARER"];

/// Literal pieces of secret-looking key names, in the spellings that occur in practice
/// (lower, UPPER, Title and camel case; a piece without its first letter serves two). A hit only
/// starts a check: the whole key name around it is then classified by [`STRONG_KEY_WORDS`] /
/// [`WEAK_KEY_SUFFIX`].
pub(super) const KEY_TRIGGERS: &[&str] = &[
    "ecret",
    "ECRET",
    "ssw",
    "SSW",
    "pwd",
    "PWD",
    "oken",
    "OKEN",
    "redential",
    "pikey",
    "PIKEY",
    "piKey",
    "ccessKey",
    "rivateKey",
    "pi-key",
    "PI-KEY",
    "pi-Key",
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
/// … and any key ending in one of these (uuids, signatures, hashes).
pub(super) const PROTECTED_KEY_SUFFIXES: &[&str] = &[
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
/// Keys ending in one of these hold ids: left alone unless the value holds a token of a
/// published shape (`"aws_access_key_id":"AKIA…"` is redacted, `"sessionId":"<uuid>"` is not).
pub(super) const ID_KEY_SUFFIXES: &[&str] = &["Id", "ID", "_id"];
