//! Tests for secret detection and redaction. Every fake secret is assembled at runtime from a
//! seeded generator and literal pieces, so no secret-shaped literal sits in this file.

use super::*;
use proptest::prelude::*;
use serde_json::{Value, json};

pub(super) const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub(super) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub(super) const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub(super) const URLSAFE: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
pub(super) const HEX: &[u8] = b"0123456789abcdef";

/// Deterministic pseudo-random string (xorshift64*).
pub(super) fn rnd(seed: u64, n: usize, charset: &[u8]) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            char::from(charset[(r >> 33) as usize % charset.len()])
        })
        .collect()
}

pub(super) fn b64url(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..=n {
            out.push(char::from(URLSAFE[((v >> (18 - 6 * k)) & 63) as usize]));
        }
    }
    out
}

pub(super) fn uuid(seed: u64) -> String {
    let h = rnd(seed, 32, HEX);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..]
    )
}

struct Fakes {
    aws_id: String,
    aws_secret: String,
    ghp: String,
    gh_pat: String,
    anthropic: String,
    openai_proj: String,
    openai_legacy: String,
    slack_bot: String,
    slack_webhook: String,
    stripe_live: String,
    stripe_restricted: String,
    google: String,
    gitlab: String,
    npm: String,
    jwt: String,
    pem: String,
    url_password: String,
    generic: String,
    opaque: String,
}

fn fakes(seed: u64) -> Fakes {
    let s = |k: u64| seed * 1000 + k;
    let pem_body: Vec<String> = (0..12).map(|i| rnd(s(100 + i), 64, B64)).collect();
    Fakes {
        aws_id: ["AK", "IA", &rnd(s(1), 16, UPPER_DIGITS)].concat(),
        aws_secret: rnd(s(2), 40, B64),
        ghp: ["gh", "p_", &rnd(s(3), 36, ALNUM)].concat(),
        gh_pat: [
            "github",
            "_pat_",
            &rnd(s(4), 22, ALNUM),
            "_",
            &rnd(s(5), 59, ALNUM),
        ]
        .concat(),
        anthropic: ["sk-", "ant-", "api03-", &rnd(s(6), 93, URLSAFE), "AA"].concat(),
        openai_proj: ["sk-", "proj-", &rnd(s(7), 120, URLSAFE)].concat(),
        openai_legacy: ["sk-", &rnd(s(8), 48, ALNUM)].concat(),
        slack_bot: [
            "xo",
            "xb-",
            &rnd(s(9), 12, b"0123456789"),
            "-",
            &rnd(s(10), 13, b"0123456789"),
            "-",
            &rnd(s(11), 24, ALNUM),
        ]
        .concat(),
        slack_webhook: [
            "https://hooks.",
            "slack.com/services/T",
            &rnd(s(12), 8, UPPER_DIGITS),
            "/B",
            &rnd(s(13), 8, UPPER_DIGITS),
            "/",
            &rnd(s(14), 24, ALNUM),
        ]
        .concat(),
        stripe_live: ["sk", "_live_", &rnd(s(15), 24, ALNUM)].concat(),
        stripe_restricted: ["rk", "_live_", &rnd(s(16), 24, ALNUM)].concat(),
        google: ["AI", "za", &rnd(s(17), 35, URLSAFE)].concat(),
        gitlab: ["gl", "pat-", &rnd(s(18), 20, URLSAFE)].concat(),
        npm: ["np", "m_", &rnd(s(19), 36, ALNUM)].concat(),
        jwt: [
            b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
            ".".into(),
            b64url(format!(r#"{{"sub":"{}","iat":1767225600}}"#, rnd(s(20), 12, ALNUM)).as_bytes()),
            ".".into(),
            rnd(s(21), 43, URLSAFE),
        ]
        .join(""),
        pem: format!(
            "-----{} RSA {}-----\n{}\n-----{} RSA {}-----",
            "BEGIN",
            "PRIVATE KEY",
            pem_body.join("\n"),
            "END",
            "PRIVATE KEY"
        ),
        url_password: rnd(s(22), 20, ALNUM),
        generic: rnd(s(23), 24, ALNUM),
        opaque: rnd(s(24), 40, ALNUM),
    }
}

pub(super) const CWD: &str = "/home/alice/projects/my_app";

/// A Bash `tool_result` transcript line whose output is `stdout`.
pub(super) fn bash_result_line(stdout: &str) -> String {
    json!({
        "parentUuid": uuid(1),
        "isSidechain": false,
        "userType": "external",
        "cwd": CWD,
        "sessionId": uuid(2),
        "version": "2.1.81",
        "gitBranch": "main",
        "type": "user",
        "message": {"role": "user", "content": [
            {"tool_use_id": "toolu_01AbCdEfGhIjKlMnOpQrStUv", "type": "tool_result", "content": stdout, "is_error": false}
        ]},
        "uuid": uuid(3),
        "timestamp": "2026-09-01T10:00:00.000Z",
        "toolUseResult": {"stdout": stdout, "stderr": "", "interrupted": false, "isImage": false},
        "sourceToolAssistantUUID": uuid(4),
    })
    .to_string()
}

/// An assistant text line.
pub(super) fn assistant_text_line(text: &str) -> String {
    json!({
        "parentUuid": uuid(5),
        "type": "assistant",
        "requestId": "req_011CWxYz",
        "message": {"model": "claude-opus-4-6", "id": "msg_01XyZ", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn"},
        "uuid": uuid(6),
        "sessionId": uuid(2),
    })
    .to_string()
}

pub(super) fn kinds(fs: &[Finding]) -> Vec<&'static str> {
    fs.iter().map(|f| f.kind).collect()
}

/// Redact `line`, check it is still JSON, that no secret survived, that the structure is
/// unchanged apart from the redacted strings, and that a rescan finds nothing.
pub(super) fn redact_checked(line: &str, secrets: &[&str]) -> String {
    let sc = Scanner::new();
    let fs = sc.scan_json_line(line.as_bytes());
    assert!(!fs.is_empty(), "expected findings in {line}");
    let red = sc.redact(line.as_bytes(), &fs);
    assert!(matches!(red, Cow::Owned(_)));
    let red = String::from_utf8(red.into_owned()).expect("redaction keeps UTF-8");
    let parsed: Value = serde_json::from_str(&red).expect("redacted line is still JSON");
    let orig: Value = serde_json::from_str(line).expect("test line is JSON");
    assert_eq!(
        parsed.as_object().map(|o| o.keys().collect::<Vec<_>>()),
        orig.as_object().map(|o| o.keys().collect::<Vec<_>>())
    );
    for s in secrets {
        // PEM blocks appear escaped in the raw line; compare on the parsed text too.
        assert!(!red.contains(s), "secret survived in {red}");
        assert!(!parsed.to_string().contains(s));
    }
    assert!(red.contains("[REDACTED:"));
    assert!(
        sc.scan_json_line(red.as_bytes()).is_empty(),
        "rescan of redacted line found something: {red}"
    );
    red
}

// ---------------------------------------------------------------------------------------------
// Detection
// ---------------------------------------------------------------------------------------------

#[test]
fn env_dump_in_bash_tool_result() {
    let f = fakes(1);
    let stdout = format!(
        "$ cat .env\n# local settings\nNODE_ENV=development\nOPENAI_API_KEY={}\nAWS_ACCESS_KEY_ID={}\n\
         AWS_SECRET_ACCESS_KEY={}\nDATABASE_URL=postgres://app:{}@db.internal:5432/app\n\
         STRIPE_SECRET_KEY={}\nSLACK_BOT_TOKEN={}\nSESSION_SECRET={}\nPORT=3000\n",
        f.openai_proj,
        f.aws_id,
        f.aws_secret,
        f.url_password,
        f.stripe_live,
        f.slack_bot,
        f.generic
    );
    let line = bash_result_line(&stdout);
    let fs = Scanner::new().scan_json_line(line.as_bytes());
    // The output appears twice in the line (message content and toolUseResult.stdout).
    let mut got = kinds(&fs);
    got.sort_unstable();
    got.dedup();
    assert_eq!(
        got,
        [
            "aws-access-key",
            "aws-secret-key",
            "generic-secret",
            "openai-key",
            "password-in-url",
            "slack-token",
            "stripe-key"
        ]
    );
    assert_eq!(fs.len(), 14);
    // Assignments: only the value is covered.
    for f in &fs {
        let covered = &line[f.start..f.end];
        assert!(!covered.contains('='), "{covered}");
    }
    let red = redact_checked(
        &line,
        &[
            &f.openai_proj,
            &f.aws_id,
            &f.aws_secret,
            &f.url_password,
            &f.stripe_live,
            &f.slack_bot,
            &f.generic,
        ],
    );
    assert!(red.contains("OPENAI_API_KEY=[REDACTED:openai-key:"));
    assert!(red.contains("AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-key:"));
    assert!(red.contains("postgres://app:[REDACTED:password-in-url:"));
    assert!(red.contains("NODE_ENV=development"));
}

/// One case per kind: the secret in context, the kind expected and the exact bytes covered.
fn kind_cases(f: &Fakes) -> Vec<(&'static str, String, String)> {
    let opaque_bearer = f.opaque.clone();
    vec![
        (
            "aws-access-key",
            format!("export AWS_ACCESS_KEY_ID={}", f.aws_id),
            f.aws_id.clone(),
        ),
        (
            "aws-secret-key",
            format!(
                "[default]\naws_secret_access_key = {}\nregion = eu-west-1",
                f.aws_secret
            ),
            f.aws_secret.clone(),
        ),
        (
            "aws-secret-key",
            format!(
                "{{\"Credentials\": {{\"SecretAccessKey\": \"{}\"}}}}",
                f.aws_secret
            ),
            f.aws_secret.clone(),
        ),
        (
            "github-token",
            format!(
                "git remote set-url origin https://{}@github.com/alice/app.git",
                f.ghp
            ),
            f.ghp.clone(),
        ),
        (
            "github-token",
            format!("GH_TOKEN={} gh pr list", f.gh_pat),
            f.gh_pat.clone(),
        ),
        (
            "anthropic-key",
            format!("ANTHROPIC_API_KEY={}", f.anthropic),
            f.anthropic.clone(),
        ),
        (
            "openai-key",
            format!("client = OpenAI(api_key=\"{}\")", f.openai_proj),
            f.openai_proj.clone(),
        ),
        (
            "openai-key",
            format!("the old key {} still works", f.openai_legacy),
            f.openai_legacy.clone(),
        ),
        (
            "slack-token",
            format!("SLACK_BOT_TOKEN={}", f.slack_bot),
            f.slack_bot.clone(),
        ),
        (
            "slack-webhook",
            format!("curl -X POST -d '{{\"text\":\"hi\"}}' {}", f.slack_webhook),
            f.slack_webhook["https://".len()..].to_string(),
        ),
        (
            "stripe-key",
            format!("stripe.api_key = '{}'", f.stripe_live),
            f.stripe_live.clone(),
        ),
        (
            "stripe-key",
            format!("STRIPE_RESTRICTED={}", f.stripe_restricted),
            f.stripe_restricted.clone(),
        ),
        (
            "google-api-key",
            format!("const MAPS = '{}';", f.google),
            f.google.clone(),
        ),
        (
            "gitlab-token",
            format!("CI token: {}", f.gitlab),
            f.gitlab.clone(),
        ),
        (
            "npm-token",
            format!("//registry.npmjs.org/:_authToken={}", f.npm),
            f.npm.clone(),
        ),
        (
            "private-key",
            format!("$ cat ~/.ssh/deploy_key\n{}\n$ ls", f.pem),
            f.pem.clone(),
        ),
        (
            "jwt",
            format!(
                "curl -H 'Authorization: Bearer {}' https://api.internal/v1/me",
                f.jwt
            ),
            f.jwt.clone(),
        ),
        (
            "bearer-token",
            format!("curl -H \"Authorization: Bearer {opaque_bearer}\" https://api.internal/"),
            opaque_bearer,
        ),
        (
            "password-in-url",
            format!("redis://default:{}@cache.internal:6379/0", f.url_password),
            f.url_password.clone(),
        ),
        (
            "generic-secret",
            format!("password={}", f.generic),
            f.generic.clone(),
        ),
        (
            "generic-secret",
            format!("db:\n  API_KEY: \"{}\"\n", f.generic),
            f.generic.clone(),
        ),
        (
            "generic-secret",
            format!(
                "{{\"client_id\": \"web\", \"client_secret\":\"{}\"}}",
                f.generic
            ),
            f.generic.clone(),
        ),
        (
            "generic-secret",
            format!("[auth]\ntoken = \"{}\"\n", f.generic),
            f.generic.clone(),
        ),
        (
            "generic-secret",
            format!("mytool login --password {} --verbose", f.generic),
            f.generic.clone(),
        ),
        (
            "generic-secret",
            format!(
                "https://api.example.org/v1/items?access_token={}&page=2",
                f.generic
            ),
            f.generic.clone(),
        ),
        (
            "generic-secret",
            format!("ENCRYPTION_KEY={}", rnd(77, 64, HEX)),
            rnd(77, 64, HEX),
        ),
        (
            "generic-secret",
            format!("const dbPassword := \"{}\"", f.generic),
            f.generic.clone(),
        ),
    ]
}

#[test]
fn each_kind_in_text_and_in_json_lines() {
    let sc = Scanner::new();
    let f = fakes(2);
    for (kind, text, secret) in kind_cases(&f) {
        // Plain text: exact range.
        let fs = sc.scan_text(text.as_bytes());
        assert_eq!(kinds(&fs), [kind], "text case: {text}");
        assert_eq!(
            &text.as_bytes()[fs[0].start..fs[0].end],
            secret.as_bytes(),
            "{text}"
        );

        // Inside a Bash tool_result and inside assistant text (JSON-escaped).
        for line in [bash_result_line(&text), assistant_text_line(&text)] {
            let fs = sc.scan_json_line(line.as_bytes());
            assert!(!fs.is_empty(), "json case: {line}");
            assert!(
                fs.iter().all(|x| x.kind == kind),
                "{kind}: {fs:?} in {line}"
            );
            let escaped = serde_json::to_string(&secret).expect("string serialises");
            let escaped = &escaped[1..escaped.len() - 1];
            assert_eq!(&line[fs[0].start..fs[0].end], escaped);
            redact_checked(&line, &[&secret]);
        }
    }
}

/// The plain automaton (no SIMD anywhere) finds the same as the fast path.
fn portable_scanner() -> Scanner {
    static PORTABLE: LazyLock<Compiled> = LazyLock::new(|| Compiled::build(false));
    Scanner { c: &PORTABLE }
}

#[test]
fn portable_prefilter_agrees_with_simd() {
    let simd = Scanner::new();
    let portable = portable_scanner();
    assert!(
        matches!(simd.c.finder, Finder::Packed(_))
            || cfg!(not(any(target_arch = "x86_64", target_arch = "aarch64")))
    );
    assert!(matches!(portable.c.finder, Finder::Ac(_)));
    let f = fakes(15);
    let mut inputs: Vec<String> = kind_cases(&f).into_iter().map(|(_, t, _)| t).collect();
    inputs.push(format!("TOKEN={} and {} and {}", f.generic, f.ghp, f.pem));
    inputs.push("let token_1 = stream(); // token lock".into());
    for t in &inputs {
        assert_eq!(
            simd.scan_text(t.as_bytes()),
            portable.scan_text(t.as_bytes()),
            "{t}"
        );
        let line = bash_result_line(t);
        assert_eq!(
            simd.scan_json_line(line.as_bytes()),
            portable.scan_json_line(line.as_bytes())
        );
    }
}

#[test]
fn scanner_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Copy>() {}
    assert_send_sync::<Scanner>();
}

#[test]
fn every_reported_kind_is_listed() {
    let f = fakes(3);
    for (kind, _, _) in kind_cases(&f) {
        assert!(KINDS.contains(&kind), "{kind} missing from KINDS");
    }
    for rule in TOKEN_RULES {
        assert!(
            KINDS.contains(&rule.kind),
            "{} missing from KINDS",
            rule.kind
        );
    }
}

#[test]
fn secret_as_structural_json_value() {
    // An MCP tool_use whose input carries a credential as a real JSON key.
    let f = fakes(4);
    let line = json!({
        "type": "assistant",
        "uuid": uuid(7),
        "message": {"id": "msg_01", "role": "assistant", "content": [{
            "type": "tool_use", "id": "toolu_01", "name": "mcp__crm__connect",
            "input": {"client_id": "crm-web", "client_secret": f.generic, "api_key": f.anthropic}
        }]}
    })
    .to_string();
    let fs = Scanner::new().scan_json_line(line.as_bytes());
    let mut got = kinds(&fs);
    got.sort_unstable();
    assert_eq!(got, ["anthropic-key", "generic-secret"]);
    let red = redact_checked(&line, &[&f.generic, &f.anthropic]);
    assert!(red.contains(r#""client_secret":"[REDACTED:generic-secret:"#));
    assert!(red.contains(r#""client_id":"crm-web""#));
}

#[test]
fn escaped_and_double_escaped_json_inside_strings() {
    let f = fakes(5);
    let config = json!({"oauth": {"client_secret": f.generic, "token": f.ghp}}).to_string();
    // A Read result showing a JSON file: quotes appear as \" in the raw line.
    let once = bash_result_line(&config);
    assert!(once.contains(r#"\"client_secret\":\""#));
    redact_checked(&once, &[&f.generic, &f.ghp]);
    // That line printed by a tool and recorded again: quotes appear as \\\".
    let twice = bash_result_line(&once);
    assert!(twice.contains(r#"\\\"client_secret\\\":\\\""#));
    let fs = Scanner::new().scan_json_line(twice.as_bytes());
    let mut got = kinds(&fs);
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, ["generic-secret", "github-token"]);
    redact_checked(&twice, &[&f.generic, &f.ghp]);
}

#[test]
fn pem_block_is_redacted_whole() {
    let sc = Scanner::new();
    let f = fakes(6);
    let text = format!("Here is the key:\n\n{}\n\nKeep it safe.", f.pem);
    let fs = sc.scan_text(text.as_bytes());
    assert_eq!(fs.len(), 1);
    assert_eq!(&text[fs[0].start..fs[0].end], f.pem);
    let red = sc.redact(text.as_bytes(), &fs);
    let red = String::from_utf8_lossy(&red);
    assert!(red.starts_with("Here is the key:\n\n[REDACTED:private-key:"));
    assert!(red.ends_with("]\n\nKeep it safe."));
    assert!(!red.contains("PRIVATE KEY"));

    // Other armours, and an OpenSSH key in a JSON line.
    let openssh = f
        .pem
        .replace("RSA PRIVATE KEY", "OPENSSH PRIVATE KEY")
        .replace("BEGIN RSA", "BEGIN OPENSSH");
    let line = bash_result_line(&format!("$ cat id_ed25519\n{openssh}\n"));
    let fs = sc.scan_json_line(line.as_bytes());
    assert_eq!(kinds(&fs), ["private-key", "private-key"]);
    let red = redact_checked(&line, &[]);
    assert!(!red.contains("OPENSSH"));

    // Truncated output still redacts what was printed.
    let cut = &f.pem[..f.pem.len() / 2];
    let line = bash_result_line(&format!("{cut}\n... (truncated)"));
    let fs = sc.scan_json_line(line.as_bytes());
    assert_eq!(kinds(&fs), ["private-key", "private-key"]);
    redact_checked(&line, &[&cut[40..]]);
}

#[test]
fn public_material_is_not_a_private_key() {
    let sc = Scanner::new();
    let f = fakes(7);
    let cert = f.pem.replace("RSA PRIVATE KEY", "CERTIFICATE");
    let public = f.pem.replace("RSA PRIVATE KEY", "PUBLIC KEY");
    for t in [cert, public] {
        assert!(sc.scan_text(t.as_bytes()).is_empty(), "{t}");
    }
    // Code that merely mentions the header.
    let code = "if line.starts_with(\"-----BEGIN RSA PRIVATE KEY-----\") { return Kind::Rsa; }";
    assert!(sc.scan_text(code.as_bytes()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Redaction tokens
// ---------------------------------------------------------------------------------------------

#[test]
fn tokens_are_deterministic_and_distinct() {
    let sc = Scanner::new();
    let a = fakes(8);
    let b = fakes(9);
    let l1 = bash_result_line(&format!("OPENAI_API_KEY={}", a.openai_proj));
    let l2 = assistant_text_line(&format!("I see `{}` in your config.", a.openai_proj));
    let l3 = bash_result_line(&format!("OPENAI_API_KEY={}", b.openai_proj));
    let token_of = |line: &str| {
        let fs = sc.scan_json_line(line.as_bytes());
        let red = sc.redact(line.as_bytes(), &fs).into_owned();
        let red = String::from_utf8(red).expect("utf-8");
        let s = red.find("[REDACTED:").expect("token present");
        let e = s + red[s..].find(']').expect("token closes") + 1;
        red[s..e].to_string()
    };
    let t1 = token_of(&l1);
    assert_eq!(t1, token_of(&l1), "same line, same token");
    assert_eq!(t1, token_of(&l2), "same secret elsewhere, same token");
    assert_ne!(t1, token_of(&l3), "different secret, different token");
    // Shape: [REDACTED:<kind>:<8 lowercase hex>]
    let inner = &t1["[REDACTED:".len()..t1.len() - 1];
    let (kind, hex) = inner.rsplit_once(':').expect("kind:hex");
    assert_eq!(kind, "openai-key");
    assert_eq!(hex.len(), 8);
    assert!(
        hex.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    );
    assert!(t1.bytes().all(|c| c.is_ascii() && c != b'"' && c != b'\\'));
}

#[test]
fn token_is_stable_across_versions() {
    // Pinned: changing the domain string or the hash would change what every machine pushes.
    let got = redaction_token("generic-secret", b"correct horse battery staple");
    assert_eq!(got, "[REDACTED:generic-secret:fb6124d2]");
    // Kind names are sanitised into the token alphabet.
    assert!(redaction_token("we\"ird\\kind", b"x").starts_with("[REDACTED:weirdkind:"));
    assert!(redaction_token("\"\"", b"x").starts_with("[REDACTED:secret:"));
}

#[test]
fn pem_token_is_the_same_in_json_and_in_text() {
    let sc = Scanner::new();
    let f = fakes(10);
    let text = format!("{}\n", f.pem);
    let crlf = text.replace('\n', "\r\n");
    let line = bash_result_line(&text);
    let tok =
        |input: &[u8], fs: &[Finding]| redaction_token(fs[0].kind, &input[fs[0].start..fs[0].end]);
    let t_text = tok(text.as_bytes(), &sc.scan_text(text.as_bytes()));
    let t_crlf = tok(crlf.as_bytes(), &sc.scan_text(crlf.as_bytes()));
    let t_json = tok(line.as_bytes(), &sc.scan_json_line(line.as_bytes()));
    assert_eq!(t_text, t_json);
    assert_eq!(t_text, t_crlf);
}

#[test]
fn redact_borrows_when_clean_and_tolerates_odd_findings() {
    let sc = Scanner::new();
    let line = assistant_text_line("Nothing to see here: the token stream is fine.");
    let fs = sc.scan_json_line(line.as_bytes());
    assert!(fs.is_empty());
    assert!(matches!(sc.redact(line.as_bytes(), &fs), Cow::Borrowed(_)));
    let input = b"0123456789abcdef";
    let odd = [
        Finding {
            kind: "jwt",
            start: 8,
            end: 4,
        },
        Finding {
            kind: "jwt",
            start: 4,
            end: 99,
        },
        Finding {
            kind: "jwt",
            start: 3,
            end: 3,
        },
    ];
    assert!(matches!(sc.redact(input, &odd), Cow::Borrowed(_)));
    // Unsorted and overlapping: merged into one replacement.
    let ov = [
        Finding {
            kind: "generic-secret",
            start: 6,
            end: 10,
        },
        Finding {
            kind: "openai-key",
            start: 2,
            end: 8,
        },
    ];
    let red = sc.redact(input, &ov);
    let red = String::from_utf8_lossy(&red);
    assert!(red.starts_with("01[REDACTED:openai-key:"), "{red}");
    assert!(red.ends_with("]abcdef"), "{red}");
}

// ---------------------------------------------------------------------------------------------
// What must never be touched
// ---------------------------------------------------------------------------------------------

#[test]
fn resume_critical_values_are_untouched() {
    let sc = Scanner::new();
    let f = fakes(11);
    // Values that would be findings anywhere else, planted where they must be left alone.
    let planted_sig = format!(
        "{}/{}/{}+{}",
        rnd(30, 300, B64),
        f.aws_id,
        rnd(31, 200, B64),
        f.jwt
    );
    let planted_img = format!("{}/{}/{}", rnd(32, 4000, B64), f.aws_id, rnd(33, 400, B64));
    let line = json!({
        "parentUuid": uuid(20),
        "uuid": uuid(21),
        "sessionId": uuid(22),
        "requestId": format!("req_{}", rnd(34, 24, ALNUM)),
        "type": "assistant",
        "message": {"id": format!("msg_{}", f.ghp), "role": "assistant", "content": [
            {"type": "thinking", "thinking": "Let me check the token stream.", "signature": planted_sig},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": planted_img}},
            {"type": "tool_use", "id": format!("toolu_{}", f.openai_legacy), "name": "Read",
             "input": {"file_path": format!("{CWD}/src/lib.rs")}}
        ]},
        "leafUuid": f.jwt,
        "promptId": f.opaque,
    })
    .to_string();
    assert!(
        sc.scan_json_line(line.as_bytes()).is_empty(),
        "{:?}",
        sc.scan_json_line(line.as_bytes())
    );
    // The same bytes scanned as text do contain findings: the JSON protection is what stops them.
    assert!(!sc.scan_text(line.as_bytes()).is_empty());

    // Media object with `type` first (Claude Code's order) and with `data` first (serde's order).
    let img = rnd(35, 3000, B64);
    let media_first = format!(
        r#"{{"type":"user","message":{{"content":[{{"type":"image","source":{{"type":"base64","media_type":"image/jpeg","data":"{img}/{}/{img}"}}}}]}}}}"#,
        f.aws_id
    );
    let data_first = format!(
        r#"{{"type":"user","message":{{"content":[{{"type":"document","source":{{"data":"{img}/{}/{img}","media_type":"application/pdf","type":"base64"}}}}]}}}}"#,
        f.aws_id
    );
    for l in [media_first, data_first] {
        assert!(sc.scan_json_line(l.as_bytes()).is_empty(), "{l}");
    }
    // A `data` key that is not base64 media is scanned like anything else.
    let plain = format!(
        r#"{{"type":"user","data":"AWS_ACCESS_KEY_ID={}"}}"#,
        f.aws_id
    );
    assert_eq!(
        kinds(&sc.scan_json_line(plain.as_bytes())),
        ["aws-access-key"]
    );
}

#[test]
fn hashes_and_blobs_are_not_generic_secrets() {
    let sc = Scanner::new();
    let sha1 = rnd(40, 40, HEX);
    let sha256 = rnd(41, 64, HEX);
    let blob = rnd(42, 2000, B64);
    let texts = [
        format!("commit {sha1}\nAuthor: Alice <alice@example.org>"),
        format!("sha256: {sha256}  target/release/ccsync"),
        format!("{{\"sha\":\"{sha1}\",\"hash\":\"{sha256}\",\"integrity\":\"sha512-{blob}\"}}"),
        format!("checksum = \"{sha256}\""),
        format!("cache_key = \"{sha256}\""),
        format!("tokenHash: {sha256}"),
        format!("data: {blob}"),
        blob.clone(),
        format!("upload {blob} done"),
    ];
    for t in &texts {
        assert!(sc.scan_text(t.as_bytes()).is_empty(), "{t}");
        let line = bash_result_line(t);
        assert!(sc.scan_json_line(line.as_bytes()).is_empty(), "{line}");
    }
    let line = json!({"type": "file-history-snapshot", "messageId": uuid(50),
        "snapshot": {"trackedFileBackups": {"/x": {"backupFileName": "3f2a9c1b7d4e6a08@v1", "contentHash": sha256}}}})
    .to_string();
    assert!(sc.scan_json_line(line.as_bytes()).is_empty());
}

#[test]
fn placeholders_prose_and_code_are_not_flagged() {
    let sc = Scanner::new();
    let akia_doc = ["AKIA", "IOSFODNN7", "EXAMPLE"].concat();
    let ghp_x = ["ghp_", &"x".repeat(36)].concat();
    let cases: Vec<String> = vec![
        "password=xxx".into(),
        "API_KEY=<your-key>".into(),
        "api_key = \"<your-api-key-here>\"".into(),
        "token=${GITHUB_TOKEN}".into(),
        "password: changeme".into(),
        "SECRET_KEY=change-me-in-production".into(),
        "OPENAI_API_KEY=sk-...".into(),
        "OPENAI_API_KEY=your-openai-api-key".into(),
        "password=hunter2".into(),
        "SECRET=aaaaaaaaaaaaaaaa".into(),
        "token: stream".into(),
        "let token_12 = stream(); // token merge buffer".into(),
        "let token = cache(); // placeholder token".into(),
        r#"{"input_tokens":1234,"output_tokens":567,"cache_read_input_tokens":89012}"#.into(),
        "api_key=os.environ[\"OPENAI_API_KEY\"]".into(),
        "password = get_password()".into(),
        "token: this.props.authToken,".into(),
        "private val apiKey = BuildConfig.API_KEY".into(),
        "password: z.string().min(8),".into(),
        "pub struct Config { pub token: Option<String>, secret: String }".into(),
        "export GITHUB_TOKEN=$(gh auth token)".into(),
        "curl -H \"Authorization: Bearer $TOKEN\" https://api.github.com/user".into(),
        "postgres://postgres:postgres@localhost:5432/app".into(),
        "https://user:password@example.com/".into(),
        "PWD=/home/alice/projects/my_app".into(),
        "secret_name = \"prod/db/password\"".into(),
        "token_url: https://oauth2.googleapis.com/token".into(),
        "max_tokens: 4096".into(),
        "The token stream buffer keeps the session lock while the secret rotation runs.".into(),
        "Use `--password` to pass the password; see docs/auth.md".into(),
        "password1 password2 passwords".into(),
        akia_doc,
        ghp_x,
        "sk-learn is not a key, nor is risk-based or task-runner".into(),
        "eyJhbGciOiJIUzI1NiJ9 is only a header".into(),
        "-----BEGIN RSA PRIVATE KEY-----".into(),
        "[REDACTED:generic-secret:0a1b2c3d] and [REDACTED:aws-secret-key:ffee0011]".into(),
    ];
    for t in &cases {
        assert!(
            sc.scan_text(t.as_bytes()).is_empty(),
            "text: {t}: {:?}",
            sc.scan_text(t.as_bytes())
        );
        for line in [bash_result_line(t), assistant_text_line(t)] {
            assert!(
                sc.scan_json_line(line.as_bytes()).is_empty(),
                "json: {line}"
            );
        }
    }
}

#[test]
fn corpus_like_lines_are_clean() {
    // Mirrors what gen-claude-home writes: prose with "token", thinking signatures, usage.
    let sc = Scanner::new();
    let sig = rnd(60, 32, HEX).repeat(4);
    let line = json!({
        "parentUuid": uuid(61), "isSidechain": false, "type": "assistant", "uuid": uuid(62),
        "requestId": "req_0123456789abcdef01234567",
        "message": {"model": "claude-opus-4-6", "id": "msg_0123456789abcdef01234567", "role": "assistant",
            "content": [{"type": "thinking", "thinking": "token stream buffer schema token retry", "signature": sig}],
            "usage": {"input_tokens": 3000, "output_tokens": 800}}
    })
    .to_string();
    assert!(sc.scan_json_line(line.as_bytes()).is_empty());
    let body: String = (1..200)
        .map(|i| {
            format!("{i:6}\u{2192}    let token_{i} = stream(); // token merge secret lock path\n")
        })
        .collect();
    assert!(
        sc.scan_json_line(bash_result_line(&body).as_bytes())
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

#[test]
fn non_utf8_and_invalid_json_are_scanned_as_text() {
    let sc = Scanner::new();
    let f = fakes(12);
    let mut input = vec![0xff, 0xfe, b'{', b'"', 0xc3];
    input.extend_from_slice(b"password=");
    input.extend_from_slice(f.generic.as_bytes());
    input.extend_from_slice(&[b'\n', 0x80, 0x80, b' ']);
    input.extend_from_slice(f.aws_id.as_bytes());
    input.extend_from_slice(&[0xe2, 0x82]);
    let fs = sc.scan_json_line(&input);
    assert_eq!(kinds(&fs), ["generic-secret", "aws-access-key"]);
    assert_eq!(fs, sc.scan_text(&input));
    let red = sc.redact(&input, &fs);
    assert!(
        !red.windows(f.aws_id.len())
            .any(|w| w == f.aws_id.as_bytes())
    );
    assert!(red.starts_with(&[0xff, 0xfe]));
    assert!(red.ends_with(&[0xe2, 0x82]));

    // Invalid JSON with a lone backslash right before a token: the backslash goes with the
    // secret, so the replacement is not turned into an escape sequence.
    let odd = format!("{{\"x\":\"\\{}\"}}", f.aws_id);
    let fs = sc.scan_json_line(odd.as_bytes());
    assert_eq!(&odd[fs[0].start..fs[0].start + 1], "\\");
    let red = sc.redact(odd.as_bytes(), &fs);
    assert!(red.starts_with(b"{\"x\":\"[REDACTED:aws-access-key:"));

    // A truncated transcript line (crash mid-write): still scanned, ids still protected.
    let line = bash_result_line(&format!("TOKEN={}", f.generic));
    let cut = &line.as_bytes()[..line.find("\"uuid\"").unwrap_or(line.len())];
    assert_eq!(kinds(&sc.scan_json_line(cut)), ["generic-secret"; 2]);
}

#[test]
fn every_prefix_of_a_line_is_safe() {
    let sc = Scanner::new();
    let f = fakes(13);
    let line = bash_result_line(&format!(
        "{}\nAWS_SECRET_ACCESS_KEY={}\nkey: \"{}\" {}",
        f.pem, f.aws_secret, f.jwt, f.slack_webhook
    ));
    let b = line.as_bytes();
    for cut in 0..=b.len() {
        let p = &b[..cut];
        for fs in [sc.scan_json_line(p), sc.scan_text(p)] {
            for w in fs.windows(2) {
                assert!(w[0].end <= w[1].start, "sorted, disjoint");
            }
            assert!(fs.iter().all(|x| x.start < x.end && x.end <= cut));
            let _ = sc.redact(p, &fs);
        }
    }
}

#[test]
fn scan_jsonl_offsets_are_absolute() {
    let sc = Scanner::new();
    let f = fakes(14);
    let file = format!(
        "{}\n{}\n{}\n",
        assistant_text_line("hello"),
        bash_result_line(&format!("GITHUB_TOKEN={}", f.ghp)),
        assistant_text_line(&format!("key {}", f.npm))
    );
    let fs = sc.scan_jsonl(file.as_bytes());
    assert_eq!(kinds(&fs), ["github-token", "github-token", "npm-token"]);
    assert_eq!(&file[fs[0].start..fs[0].end], f.ghp);
    assert_eq!(&file[fs[2].start..fs[2].end], f.npm);
    let red = sc.redact(file.as_bytes(), &fs);
    for l in red.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        serde_json::from_slice::<Value>(l).expect("each redacted line is JSON");
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        parts in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40),
                Just(b"AKIA".to_vec()), Just(b"sk-".to_vec()), Just(b"-----BEGIN PRIVATE KEY-----".to_vec()),
                Just(b"-----END PRIVATE KEY-----".to_vec()), Just(b"eyJ".to_vec()), Just(b"token=".to_vec()),
                Just(b"\\\"password\\\":\\\"".to_vec()), Just(b"://u:".to_vec()), Just(b"Bearer ".to_vec()),
                Just(b"\"data\":\"".to_vec()), Just(b"\\n".to_vec()), Just(b"\\".to_vec()),
                "[A-Za-z0-9+/]{0,80}".prop_map(String::into_bytes),
            ],
            0..30,
        )
    ) {
        let input: Vec<u8> = parts.concat();
        let sc = Scanner::new();
        for fs in [sc.scan_json_line(&input), sc.scan_text(&input)] {
            for w in fs.windows(2) {
                prop_assert!(w[0].end <= w[1].start);
            }
            prop_assert!(fs.iter().all(|x| x.start < x.end && x.end <= input.len()));
            let red = sc.redact(&input, &fs);
            prop_assert_eq!(fs.is_empty(), matches!(red, Cow::Borrowed(_)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput (release build, on a generated corpus)
// ---------------------------------------------------------------------------------------------

/// `gen-claude-home /tmp/secrets-corpus --root /home/alice/projects --sessions 100 --mb 50`, then
/// `CCSYNC_SECRETS_CORPUS=/tmp/secrets-corpus cargo test --release --lib secrets::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore = "needs a generated corpus and a release build"]
fn throughput_on_corpus() {
    use std::path::{Path, PathBuf};
    use std::time::Instant;
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "jsonl" || x == "md") {
                out.push(p);
            }
        }
    }
    let root =
        std::env::var("CCSYNC_SECRETS_CORPUS").unwrap_or_else(|_| "/tmp/secrets-corpus".into());
    let mut files = Vec::new();
    walk(Path::new(&root), &mut files);
    assert!(!files.is_empty(), "no corpus at {root}");
    let data: Vec<(bool, Vec<u8>)> = files
        .iter()
        .filter_map(|p| Some((p.extension()? == "jsonl", std::fs::read(p).ok()?)))
        .collect();
    let total: usize = data.iter().map(|(_, d)| d.len()).sum();
    let sc = Scanner::new();
    let _ = sc.scan_text(b"warm up");
    let mut best = f64::MAX;
    let mut findings = Vec::new();
    for _ in 0..5 {
        findings.clear();
        let t = Instant::now();
        for (jsonl, d) in &data {
            if *jsonl {
                for line in d.split(|&b| b == b'\n') {
                    findings.extend(sc.scan_json_line(line));
                }
            } else {
                findings.extend(sc.scan_text(d));
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let mbs = total as f64 / 1e6 / best;
    let portable = portable_scanner();
    let t = Instant::now();
    for (_, d) in &data {
        for line in d.split(|&b| b == b'\n') {
            assert!(portable.scan_json_line(line).is_empty());
        }
    }
    println!(
        "plain automaton, no SIMD prefilter: {:.0} MB/s",
        total as f64 / 1e6 / t.elapsed().as_secs_f64()
    );
    println!(
        "secrets throughput: {} files, {:.1} MB in {:.1} ms (best of 5) = {mbs:.0} MB/s; findings: {} {:?}; prefilter: {:?}",
        data.len(),
        total as f64 / 1e6,
        best * 1e3,
        findings.len(),
        kinds(&findings),
        sc
    );
    assert!(findings.is_empty());
}

/// Inputs built to make a naive scanner quadratic: each must stay roughly linear.
#[test]
fn pathological_inputs_stay_fast() {
    use std::time::Instant;
    let sc = Scanner::new();
    const N: usize = 256 * 1024;
    let fill = |unit: &str| unit.repeat(N / unit.len().max(1));
    let random_values: String = (0..N / 1040)
        .map(|i| format!("password=\"{}\" ", rnd(900 + i as u64, 1024, ALNUM)))
        .collect();
    let cases = [
        fill("token="),
        fill("token"),
        fill("TOKEN_SECRET_"),
        format!("eyJ{}", fill("eyJabc")),
        fill("-----BEGIN PRIVATE KEY-----\","),
        fill("-----BEGIN PRIVATE KEY----------END PRIVATE KEY-----"),
        fill("-----BEGIN PRIVATE KEY-----    "),
        fill("xoxa-"),
        fill("sk-"),
        fill("://a:"),
        fill("\\\\\\\\\\\\\\nAKIA"),
        fill("Bearer "),
        format!("{{\"a\":\"{}", fill("\\\"")),
        fill("{\"type\":\"base64\",\"data\":\"x\",["),
        random_values,
    ];
    for c in &cases {
        let t = Instant::now();
        let a = sc.scan_json_line(c.as_bytes());
        let b = sc.scan_text(c.as_bytes());
        let _ = sc.redact(c.as_bytes(), &a);
        let el = t.elapsed();
        let head: String = c.chars().take(24).collect();
        println!("{head:?}: {} + {} findings in {el:?}", a.len(), b.len());
        assert!(el.as_secs_f64() < 5.0, "{head:?} took {el:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Lines too large to hold: streamed through small windows, the same result as whole
// ---------------------------------------------------------------------------------------------

/// Scan `line` as [`RedactStream`] does for a huge line (a first pass for the protected ranges
/// and the values, then windows of a few bytes), fed in pieces of the given sizes.
fn streamed(line: &[u8], cuts: &[usize], redact: bool) -> (Vec<u8>, Vec<&'static str>) {
    let sc = Scanner::new();
    let pieces = |f: &mut dyn FnMut(&[u8])| {
        let mut rest = line;
        for &c in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at(c.clamp(1, rest.len()));
            f(a);
            rest = b;
        }
    };
    let mut pass = sc.first_pass().with_sizes(7, 1200, 600);
    pieces(&mut |p| pass.feed(p));
    let mut known = Known::default();
    let passed = pass.finish(&mut known);
    let mut s = sc
        .redact_stream(passed, &known, redact)
        .with_sizes(7, 1200, 600);
    let mut out = Vec::new();
    pieces(&mut |p| s.feed(p, &mut out));
    s.finish(&mut out);
    (out, s.found)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Secrets of every kind among protected ids, base64 media and escapes: the streamed scan
    /// finds and redacts exactly what the whole-line scan does.
    #[test]
    fn streaming_redacts_like_whole(
        seed in 0u64..50,
        picks in proptest::collection::vec(0usize..12, 1..8),
        cuts in proptest::collection::vec(1usize..300, 1..5),
    ) {
        let f = fakes(seed);
        let pem = f.pem.clone();
        let parts: Vec<String> = picks.iter().map(|&k| match k {
            0 => format!("AWS_ACCESS_KEY_ID={} ", f.aws_id),
            1 => format!("export GITHUB_TOKEN={}\n", f.ghp),
            2 => format!("key {} and {}", f.anthropic, f.slack_bot),
            3 => pem.clone(),
            4 => format!("password = \"{}\"\n", f.aws_secret),
            5 => "plain text /home/alice/projects/x.rs:12 \\ ".to_string(),
            6 => format!("https://user:{}@example.com/repo ", f.aws_secret),
            7 => format!("Authorization: Bearer {}\n", f.openai_proj),
            8 => "é日😀 \"quoted\" {{braces}} ".to_string(),
            9 => format!("{} ", f.google),
            10 => "x".repeat(500),
            _ => format!("{} {}", f.stripe_live, f.npm),
        }).collect();
        let text = parts.concat();
        let image = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png",
            "data": format!("iVBOR{}AKIA{}", "A".repeat(300), f.aws_id)}});
        let line = json!({"parentUuid": uuid(1), "type": "user", "message": {"role": "user",
            "content": [{"type": "tool_result", "content": text}, image]},
            "uuid": uuid(3), "toolUseID": f.ghp, "sessionId": uuid(2)}).to_string();
        let sc = Scanner::new();
        let hits = sc.scan_json_line(line.as_bytes());
        let whole = sc.redact(line.as_bytes(), &hits).into_owned();
        let kinds: Vec<&str> = hits.iter().map(|h| h.kind).collect();
        let (out, found) = streamed(line.as_bytes(), &cuts, true);
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&whole));
        prop_assert_eq!(&found, &kinds);
        let (plain, found) = streamed(line.as_bytes(), &cuts, false);
        prop_assert_eq!(&plain, line.as_bytes());
        prop_assert_eq!(&found, &kinds);
    }

    /// The protected ranges of a line fed in pieces are those of the line fed whole.
    #[test]
    fn protected_ranges_do_not_depend_on_pieces(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("{".to_string()), Just("}".to_string()), Just("[".to_string()), Just("]".to_string()),
                Just("\"uuid\"".to_string()), Just("\"data\"".to_string()), Just("\"type\"".to_string()),
                Just("\"base64\"".to_string()), Just("\"media_type\"".to_string()), Just(":".to_string()),
                Just(",".to_string()), Just(" ".to_string()), Just("\\\"".to_string()), Just("\\\\".to_string()),
                "\"[a-z]{0,8}\"", "\"[a-zA-Z_]{0,600}Id\"",
            ],
            0..40,
        ),
        cut in 1usize..9,
    ) {
        let line = parts.concat();
        let mut whole = ProtectedWalker::default();
        whole.feed(line.as_bytes());
        let mut pieces = ProtectedWalker::default();
        for p in line.as_bytes().chunks(cut) {
            pieces.feed(p);
        }
        prop_assert_eq!(whole.finish(), pieces.finish());
    }
}

// ---------------------------------------------------------------------------------------------
// Ids, line numbers, escapes, and values found again
// ---------------------------------------------------------------------------------------------

#[test]
fn id_keys_hide_ids_but_not_tokens_of_a_published_shape() {
    let sc = Scanner::new();
    let f = fakes(20);
    let line = json!({"type": "user", "uuid": uuid(1), "sessionId": uuid(2),
        "toolUseResult": {"stdout": "", "config": {"aws_access_key_id": f.aws_id, "client_id": f.opaque,
            "githubTokenId": f.ghp, "requestId": "req_011CWxYzAbCdEfGh"}}})
    .to_string();
    let fs = sc.scan_json_line(line.as_bytes());
    assert_eq!(kinds(&fs), ["aws-access-key", "github-token"], "{line}");
    let red = redact_checked(&line, &[&f.aws_id, &f.ghp]);
    assert!(red.contains(&f.opaque), "an opaque id stays");
    assert!(red.contains(&uuid(2)) && red.contains("req_011CWxYzAbCdEfGh"));
    // Exact `id`, uuids, signatures and hashes stay whatever they hold.
    let line = json!({"id": f.aws_id, "leafUuid": f.ghp, "signature": f.jwt, "contentHash": f.npm})
        .to_string();
    assert!(sc.scan_json_line(line.as_bytes()).is_empty(), "{line}");
}

#[test]
fn a_key_shown_with_line_numbers_is_redacted_whole() {
    let sc = Scanner::new();
    let f = fakes(21);
    // The Read tool's form (`     2→…`) and `cat -n`'s (`     2\t…`).
    for sep in ["\u{2192}", "\t"] {
        let numbered: String = format!("# deploy key\n{}\n", f.pem)
            .lines()
            .enumerate()
            .map(|(i, l)| format!("{:>6}{sep}{l}\n", i + 1))
            .collect();
        let line = bash_result_line(&numbered);
        let fs = sc.scan_json_line(line.as_bytes());
        assert_eq!(kinds(&fs), ["private-key", "private-key"], "{line}");
        let red = redact_checked(&line, &[]);
        let body_line = f.pem.lines().nth(3).unwrap_or_default();
        assert!(!red.contains(body_line), "{red}");
        assert!(red.contains("# deploy key"));
        // The same token as the key without its numbers.
        let plain = sc.scan_text(f.pem.as_bytes());
        let want = redaction_token("private-key", f.pem.as_bytes());
        assert_eq!(plain.len(), 1);
        assert!(red.contains(&want), "{red} lacks {want}");
    }
}

#[test]
fn secrets_next_to_escapes_are_found() {
    let sc = Scanner::new();
    let f = fakes(22);
    let with_slash = format!("{}/{}", rnd(5, 20, ALNUM), rnd(6, 19, ALNUM));
    let cases: Vec<(String, String)> = vec![
        // After a \uXXXX escape (a quote as Go writes it, a colour code).
        (
            format!("{{\"t\":\"\\u0027{}\\u0027\"}}", f.ghp),
            f.ghp.clone(),
        ),
        (
            format!("{{\"t\":\"\\u001b[1;31m{}\\u001b[0m\"}}", f.npm),
            f.npm.clone(),
        ),
        (
            format!(
                "{{\"t\":\"\\u001b[32mDB_PASSWORD={}\\u001b[0m\"}}",
                f.generic
            ),
            f.generic.clone(),
        ),
        // Next to escaped backslashes.
        (
            format!("{{\"t\":\"C:\\\\keys\\\\{}\\\\\"}}", f.aws_id),
            f.aws_id.clone(),
        ),
        // Escaped slashes inside a value, and a URL written with them.
        (
            format!(
                "{{\"t\":\"aws_secret_access_key={}\"}}",
                format!("{with_slash}x").replace('/', "\\/")
            ),
            format!("{with_slash}x").replace('/', "\\/"),
        ),
        (
            format!(
                "{{\"t\":\"https:\\/\\/deploy:{}@git.internal\\/repo\"}}",
                f.url_password
            ),
            f.url_password.clone(),
        ),
        (
            format!("{{\"t\":\"{}\"}}", f.slack_webhook.replace('/', "\\/")),
            f.slack_webhook.replace('/', "\\/")["https:\\/\\/".len()..].to_string(),
        ),
    ];
    for (line, secret) in cases {
        serde_json::from_str::<Value>(&line).expect("test line is JSON");
        let fs = sc.scan_json_line(line.as_bytes());
        assert_eq!(fs.len(), 1, "{line}: {fs:?}");
        assert_eq!(&line[fs[0].start..fs[0].end], secret, "{line}");
        let red = sc.redact(line.as_bytes(), &fs);
        serde_json::from_slice::<Value>(&red).expect("still JSON");
    }
}

#[test]
fn a_value_found_once_is_redacted_wherever_it_occurs_again() {
    let sc = Scanner::new();
    let f = fakes(23);
    let pw = &f.generic;
    // Within a line: named once, then bare (before and after the naming).
    let text = format!("try {pw} first; DB_PASSWORD={pw}; then `psql -W {pw}`");
    let fs = sc.scan_text(text.as_bytes());
    assert_eq!(kinds(&fs), ["generic-secret"; 3]);
    let red = String::from_utf8_lossy(&sc.redact(text.as_bytes(), &fs)).into_owned();
    assert!(!red.contains(pw.as_str()), "{red}");
    let token = redaction_token("generic-secret", pw.as_bytes());
    assert_eq!(
        red.matches(&token).count(),
        3,
        "the same token each time: {red}"
    );

    // Across lines of a file: the later line does not name it.
    let file = format!(
        "{}\n{}\n{}\n",
        assistant_text_line("hello"),
        bash_result_line(&format!("$ cat .env\nSESSION_SECRET={pw}\n")),
        assistant_text_line(&format!("The session secret is {pw}, keep it."))
    );
    let fs = sc.scan_jsonl(file.as_bytes());
    let red = String::from_utf8_lossy(&sc.redact(file.as_bytes(), &fs)).into_owned();
    assert!(!red.contains(pw.as_str()), "{red}");
    assert!(red.lines().nth(2).is_some_and(|l| l.contains(&token)));

    // Known from elsewhere (the session's transcript) in a text file, and never in protected
    // values.
    let mut known = Known::default();
    let _ = sc.scan_json_line_known(
        bash_result_line(&format!("API_TOKEN={pw}")).as_bytes(),
        &mut known,
    );
    assert_eq!(known.len(), 1);
    let md = format!("# Notes\nthe staging token is {pw}\n");
    let (fs, red) = sc.redact_text(md.as_bytes(), &mut known.clone());
    assert_eq!(kinds(&fs), ["generic-secret"]);
    assert!(!String::from_utf8_lossy(&red).contains(pw.as_str()));
    let line =
        json!({"uuid": uuid(3), "signature": format!("{pw}{pw}"), "message": {"content": "ok"}})
            .to_string();
    assert!(
        sc.scan_json_line_known(line.as_bytes(), &mut known.clone())
            .is_empty()
    );
    // Short values are not remembered (they could be anything).
    assert!(!known.clone().add("generic-secret", b"abc123"));
    assert!(
        format!("{known:?}").find(pw.as_str()).is_none(),
        "Debug never shows a value"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// Any JSON value with secrets (and near-secrets) in its strings and keys: the redacted line
    /// is JSON again, and it is the input with each finding (and only it) replaced by its token.
    #[test]
    fn redaction_keeps_json_and_touches_only_findings(
        seed in 0u64..40,
        parts in proptest::collection::vec(0usize..14, 1..10),
        keys in proptest::collection::vec("[a-zA-Z_]{1,12}", 1..6),
        wrap in 0usize..4,
    ) {
        let f = fakes(seed);
        let pieces: Vec<String> = parts.iter().map(|&k| match k {
            0 => format!("AWS_ACCESS_KEY_ID={} ", f.aws_id),
            1 => format!("password: \"{}\"\n", f.generic),
            2 => format!("Bearer {} ", f.opaque),
            3 => f.pem.clone(),
            4 => format!("\u{1b}[31m{}\u{1b}[0m", f.npm),
            5 => format!("https://u:{}@h/x ", f.url_password),
            6 => format!("{}\\{}/", f.ghp, f.anthropic),
            7 => format!("{{\"token\":\"{}\"}}", f.generic),
            8 => "é日😀 \"quoted\" \\ tab\t".to_string(),
            9 => format!("{} again {} ", f.generic, f.slack_bot),
            10 => format!("Authorization: Basic {}", b64url(format!("me:{}", f.opaque).as_bytes())),
            11 => format!("{:>6}\u{2192}{}", 3, f.jwt),
            12 => format!("curl -u ci:{} x", f.url_password),
            _ => rnd(seed, 30, B64),
        }).collect();
        let text = pieces.concat();
        let mut obj = serde_json::Map::new();
        for (i, k) in keys.iter().enumerate() {
            let v = if i % 2 == 0 { Value::String(text.clone()) } else { json!({"id": f.aws_id, k.clone(): text.clone()}) };
            obj.insert(k.clone(), v);
        }
        let v = match wrap {
            0 => Value::Object(obj),
            1 => json!([Value::Object(obj), text.clone()]),
            2 => json!({"nested": Value::String(Value::Object(obj).to_string())}),
            _ => json!({"uuid": uuid(seed), "message": {"content": [{"type": "tool_result", "content": Value::Object(obj)}]}}),
        };
        let line = v.to_string();
        let sc = Scanner::new();
        let fs = sc.scan_json_line(line.as_bytes());
        for w in fs.windows(2) {
            prop_assert!(w[0].end <= w[1].start, "sorted, disjoint");
        }
        let red = sc.redact(line.as_bytes(), &fs);
        prop_assert!(serde_json::from_slice::<Value>(&red).is_ok(), "not JSON: {}", String::from_utf8_lossy(&red));
        // Rebuild: the bytes between findings, each finding's token.
        let mut want = Vec::new();
        let mut pos = 0;
        for x in &fs {
            want.extend_from_slice(&line.as_bytes()[pos..x.start]);
            want.extend_from_slice(redaction_token(x.kind, &line.as_bytes()[x.start..x.end]).as_bytes());
            pos = x.end;
        }
        want.extend_from_slice(&line.as_bytes()[pos..]);
        prop_assert_eq!(&red[..], &want[..]);
        // Nothing a finding covers is structure: no quote, and a span never splits an escape.
        for x in &fs {
            let covered = &line.as_bytes()[x.start..x.end];
            prop_assert!(!covered.contains(&b'"') || covered.windows(2).all(|w| w[1] != b'"' || w[0] == b'\\'));
        }
        // The ids and uuid stay.
        prop_assert!(String::from_utf8_lossy(&red).contains(&uuid(seed)) || wrap != 3);
    }
}

#[test]
fn every_trigger_has_its_place_in_the_prefilter_order() {
    let sc = Scanner::new();
    assert!(
        sc.c.triggers.len() <= 64,
        "the SIMD searcher takes 64 literals at most"
    );
    let mut lits: Vec<&str> = TOKEN_RULES
        .iter()
        .flat_map(|r| r.triggers.iter().copied())
        .collect();
    lits.extend([PEM_TRIGGER]);
    lits.extend(URL_TRIGGERS);
    lits.extend(BEARER_TRIGGERS);
    lits.extend(KEY_TRIGGERS);
    for l in &lits {
        assert!(
            rules::PREFILTER_ORDER.contains(l),
            "{l:?} is not in PREFILTER_ORDER"
        );
        assert!(
            l.len() >= 3,
            "{l:?}: literals of 3 bytes or more keep the searcher fast"
        );
    }
    for o in rules::PREFILTER_ORDER {
        assert!(lits.contains(o), "{o:?} in PREFILTER_ORDER is no trigger");
    }
    // No literal can match where another starts, so their order changes no result.
    for a in &lits {
        for b in &lits {
            assert!(a == b || !b.starts_with(a), "{a:?} is a prefix of {b:?}");
        }
    }
}

/// Search for a better `PREFILTER_ORDER` (after adding a rule): a hill climb over orders on a
/// simulation of the SIMD searcher (Teddy, 16 buckets, 3-byte masks: how often it stops) over
/// the generated corpus. Prints the order found.
/// `CCSYNC_SECRETS_CORPUS=/tmp/secrets-corpus cargo test --release --lib prefilter_order_search -- --ignored --nocapture`
#[test]
#[ignore = "needs a generated corpus and a release build"]
fn prefilter_order_search() {
    fn walk(d: &std::path::Path, out: &mut Vec<u8>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "jsonl" || x == "md") {
                out.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    /// Where the searcher stops, and how many literals it then checks (as Teddy buckets them).
    fn cost(lits: &[&str], data: &[u8]) -> f64 {
        let m = lits.iter().map(|l| l.len()).min().unwrap_or(1).min(3);
        let mut buckets: Vec<Vec<usize>> = vec![vec![]; 16];
        let mut by_prefix: std::collections::BTreeMap<Vec<u8>, usize> = Default::default();
        for (id, l) in lits.iter().enumerate() {
            let lo: Vec<u8> = l.as_bytes()[..m].iter().map(|b| b & 15).collect();
            let b = *by_prefix.entry(lo).or_insert(15 - id % 16);
            buckets[b].push(id);
        }
        let mut pass = vec![[0u16; 256]; m];
        for (k, p) in pass.iter_mut().enumerate() {
            let (mut lo, mut hi) = ([0u16; 16], [0u16; 16]);
            for (b, ids) in buckets.iter().enumerate() {
                for &id in ids {
                    let c = lits[id].as_bytes()[k];
                    lo[(c & 15) as usize] |= 1 << b;
                    hi[(c >> 4) as usize] |= 1 << b;
                }
            }
            for (c, slot) in p.iter_mut().enumerate() {
                *slot = lo[c & 15] & hi[c >> 4];
            }
        }
        let (mut stops, mut checks) = (0u64, 0u64);
        for i in 0..data.len().saturating_sub(m) {
            let mut x = pass[0][data[i] as usize];
            for (k, p) in pass.iter().enumerate().skip(1) {
                x &= p[data[i + k] as usize];
            }
            if x != 0 {
                stops += 1;
                while x != 0 {
                    checks += buckets[x.trailing_zeros() as usize].len() as u64;
                    x &= x - 1;
                }
            }
        }
        stops as f64 + 0.5 * checks as f64
    }
    let root =
        std::env::var("CCSYNC_SECRETS_CORPUS").unwrap_or_else(|_| "/tmp/secrets-corpus".into());
    let mut data = Vec::new();
    walk(std::path::Path::new(&root), &mut data);
    assert!(!data.is_empty(), "no corpus at {root}");
    let sample: Vec<u8> = data.chunks(1 << 16).step_by(8).flatten().copied().collect();
    let mut cur: Vec<&str> = rules::PREFILTER_ORDER.to_vec();
    let mut best = cost(&cur, &sample);
    println!("current order: {best:.0}");
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut pick = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for _ in 0..3000 {
        let (a, b) = (pick(cur.len()), pick(cur.len()));
        cur.swap(a, b);
        let c = cost(&cur, &sample);
        if c < best {
            best = c;
        } else {
            cur.swap(a, b);
        }
    }
    println!("found: {best:.0}\n{cur:?}");
}
