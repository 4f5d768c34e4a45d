//! A labelled corpus: fake secrets of every kind, each built at run time from its token's
//! published format (never a real secret, and no secret-shaped literal in this file), put in
//! the places transcripts show them; and hard negatives that look like secrets but are not.
//! `recall_per_kind_and_no_false_positives` measures recall per kind, asserts it, and prints the
//! table (`cargo test --lib secrets::corpus -- --nocapture`).

use super::tests::{
    ALNUM, B64, HEX, UPPER_DIGITS, URLSAFE, assistant_text_line, b64url, bash_result_line, rnd,
    uuid,
};
use super::*;
use serde_json::{Value, json};

/// How a format builds one fake: the text to put in context (the token, or the token with the
/// context its rule needs) and the secret in it.
type Make = fn(u64) -> (String, String);

/// One published format of a kind.
pub(super) struct Format {
    pub kind: &'static str,
    pub name: &'static str,
    pub make: Make,
}

fn tok(s: String) -> (String, String) {
    (s.clone(), s)
}

const DIGITS: &[u8] = b"0123456789";
const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BECH32_UPPER: &[u8] = b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L";
const HEX_UPPER: &[u8] = b"0123456789ABCDEF";

fn b64_std(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= n {
                out.push(char::from(B64[((v >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every format, from the providers' documentation of their token shapes.
pub(super) fn formats() -> Vec<Format> {
    vec![
        Format {
            kind: "aws-access-key",
            name: "AKIA + 16 base32 (IAM user key id)",
            make: |s| tok(["AK", "IA", &rnd(s, 16, UPPER_DIGITS)].concat()),
        },
        Format {
            kind: "aws-access-key",
            name: "ASIA + 16 (STS temporary key id)",
            make: |s| tok(["AS", "IA", &rnd(s, 16, UPPER_DIGITS)].concat()),
        },
        Format {
            kind: "aws-secret-key",
            name: "40 base64 under aws_secret_access_key",
            make: |s| {
                let v = rnd(s, 40, B64);
                (format!("aws_secret_access_key = {v}"), v)
            },
        },
        Format {
            kind: "github-token",
            name: "ghp_ + 36 (classic personal)",
            make: |s| tok(["gh", "p_", &rnd(s, 36, ALNUM)].concat()),
        },
        Format {
            kind: "github-token",
            name: "gho_/ghs_ + 36 (OAuth, server-to-server)",
            make: |s| {
                tok([
                    "gh",
                    if s % 2 == 0 { "o_" } else { "s_" },
                    &rnd(s, 36, ALNUM),
                ]
                .concat())
            },
        },
        Format {
            kind: "github-token",
            name: "github_pat_ + 22 + _ + 59 (fine-grained)",
            make: |s| {
                tok([
                    "github",
                    "_pat_",
                    &rnd(s, 22, ALNUM),
                    "_",
                    &rnd(s + 1, 59, ALNUM),
                ]
                .concat())
            },
        },
        Format {
            kind: "anthropic-key",
            name: "sk-ant-api03- + 93 + AA",
            make: |s| tok(["sk-", "ant-", "api03-", &rnd(s, 93, URLSAFE), "AA"].concat()),
        },
        Format {
            kind: "openai-key",
            name: "sk-proj- + 156",
            make: |s| tok(["sk-", "proj-", &rnd(s, 156, URLSAFE)].concat()),
        },
        Format {
            kind: "openai-key",
            name: "sk- + 48 (legacy)",
            make: |s| tok(["sk-", &rnd(s, 48, ALNUM)].concat()),
        },
        Format {
            kind: "slack-token",
            name: "xoxb-<team>-<bot>-<24>",
            make: |s| {
                tok([
                    "xo",
                    "xb-",
                    &rnd(s, 12, DIGITS),
                    "-",
                    &rnd(s + 1, 13, DIGITS),
                    "-",
                    &rnd(s + 2, 24, ALNUM),
                ]
                .concat())
            },
        },
        Format {
            kind: "slack-token",
            name: "xapp-1-A…-<digits>-<64 hex> (app-level)",
            make: |s| {
                tok([
                    "xa",
                    "pp-1-A",
                    &rnd(s, 10, UPPER_DIGITS),
                    "-",
                    &rnd(s + 1, 13, DIGITS),
                    "-",
                    &rnd(s + 2, 64, HEX),
                ]
                .concat())
            },
        },
        Format {
            kind: "slack-webhook",
            name: "hooks.slack.com/services/T…/B…/<24>",
            make: |s| {
                let rest = [
                    "hooks.",
                    "slack.com/services/T",
                    &rnd(s, 8, UPPER_DIGITS),
                    "/B",
                    &rnd(s + 1, 8, UPPER_DIGITS),
                    "/",
                    &rnd(s + 2, 24, ALNUM),
                ]
                .concat();
                (format!("https://{rest}"), rest)
            },
        },
        Format {
            kind: "stripe-key",
            name: "sk_live_/rk_live_/sk_test_ + 24..99",
            make: |s| {
                let p = ["sk_live_", "rk_live_", "sk_test_"][(s % 3) as usize];
                tok([&p[..2], &p[2..], &rnd(s, 24 + (s % 70) as usize, ALNUM)].concat())
            },
        },
        Format {
            kind: "stripe-webhook-secret",
            name: "whsec_ + 32",
            make: |s| tok(["wh", "sec_", &rnd(s, 32, ALNUM)].concat()),
        },
        Format {
            kind: "google-api-key",
            name: "AIza + 35",
            make: |s| tok(["AI", "za", &rnd(s, 35, URLSAFE)].concat()),
        },
        Format {
            kind: "google-oauth",
            name: "GOCSPX- + 28 (OAuth client secret)",
            make: |s| tok(["GOC", "SPX-", &rnd(s, 28, URLSAFE)].concat()),
        },
        Format {
            kind: "google-oauth",
            name: "ya29. + access token",
            make: |s| tok(["ya", "29.", &rnd(s, 150, URLSAFE)].concat()),
        },
        Format {
            kind: "gitlab-token",
            name: "glpat- + 20",
            make: |s| tok(["gl", "pat-", &rnd(s, 20, URLSAFE)].concat()),
        },
        Format {
            kind: "gitlab-runner-token",
            name: "glrt- + 20 (runner authentication)",
            make: |s| tok(["gl", "rt-", &rnd(s, 20, ALNUM)].concat()),
        },
        Format {
            kind: "npm-token",
            name: "npm_ + 36",
            make: |s| tok(["np", "m_", &rnd(s, 36, ALNUM)].concat()),
        },
        Format {
            kind: "huggingface-token",
            name: "hf_ + 34 letters",
            make: |s| tok(["h", "f_", &rnd(s, 34, LETTERS)].concat()),
        },
        Format {
            kind: "discord-webhook",
            name: "discord.com/api/webhooks/<18 digits>/<68>",
            make: |s| {
                let rest = [
                    "disc",
                    "ord.com/api/webhooks/",
                    &rnd(s, 18, DIGITS),
                    "/",
                    &rnd(s + 1, 68, URLSAFE),
                ]
                .concat();
                (format!("https://{rest}"), rest)
            },
        },
        Format {
            kind: "telegram-bot-token",
            name: "<bot id>:AA + 33",
            make: |s| tok([&rnd(s, 10, DIGITS)[..], ":A", "A", &rnd(s + 1, 33, URLSAFE)].concat()),
        },
        Format {
            kind: "age-secret-key",
            name: "AGE-SECRET-KEY-1 + 58 Bech32",
            make: |s| tok(["AGE-SEC", "RET-KEY-1", &rnd(s, 58, BECH32_UPPER)].concat()),
        },
        Format {
            kind: "sendgrid-key",
            name: "SG.<22>.<43>",
            make: |s| {
                tok([
                    "S",
                    "G.",
                    &rnd(s, 22, URLSAFE),
                    ".",
                    &rnd(s + 1, 43, URLSAFE),
                ]
                .concat())
            },
        },
        Format {
            kind: "shopify-token",
            name: "shpat_/shpss_ + 32 hex",
            make: |s| {
                tok([
                    "sh",
                    if s % 2 == 0 { "pat_" } else { "pss_" },
                    &rnd(s, 32, HEX),
                ]
                .concat())
            },
        },
        Format {
            kind: "pypi-token",
            name: "pypi-AgEIcHlwaS5vcmc + macaroon",
            make: |s| tok(["py", "pi-AgEIcHlwaS5vcmc", &rnd(s, 160, URLSAFE)].concat()),
        },
        Format {
            kind: "digitalocean-token",
            name: "dop_v1_ + 64 hex",
            make: |s| tok(["do", "p_v1_", &rnd(s, 64, HEX)].concat()),
        },
        Format {
            kind: "databricks-token",
            name: "dapi + 32 [a-h0-9]",
            make: |s| tok(["da", "pi", &rnd(s, 32, b"abcdefgh0123456789")].concat()),
        },
        Format {
            kind: "postman-key",
            name: "PMAK-<24 hex>-<34 hex>",
            make: |s| tok(["PM", "AK-", &rnd(s, 24, HEX), "-", &rnd(s + 1, 34, HEX)].concat()),
        },
        Format {
            kind: "vault-token",
            name: "hvs. + 90",
            make: |s| tok(["hv", "s.", &rnd(s, 90, URLSAFE)].concat()),
        },
        Format {
            kind: "dockerhub-token",
            name: "dckr_pat_ + 27",
            make: |s| tok(["dckr", "_pat_", &rnd(s, 27, URLSAFE)].concat()),
        },
        Format {
            kind: "azure-storage-key",
            name: "AccountKey=<86 base64>== in a connection string",
            make: |s| {
                let k = [rnd(s, 86, B64), "==".into()].concat();
                (
                    format!(
                        "DefaultEndpointsProtocol=https;AccountName=appstore{};AccountKey={k};EndpointSuffix=core.windows.net",
                        s % 100
                    ),
                    k,
                )
            },
        },
        Format {
            kind: "curl-user-password",
            name: "curl -u user:password",
            make: |s| {
                let p = rnd(s, 16, ALNUM);
                (
                    format!("curl -u deploy:{p} https://ci.internal/api/json"),
                    p,
                )
            },
        },
        Format {
            kind: "basic-auth",
            name: "Authorization: Basic base64(user:password)",
            make: |s| {
                let v = b64_std(format!("admin:{}", rnd(s, 14, ALNUM)).as_bytes());
                (format!("Authorization: Basic {v}"), v)
            },
        },
        Format {
            kind: "authorization-token",
            name: "Authorization: Token <40 hex>",
            make: |s| {
                let v = rnd(s, 40, HEX);
                (format!("Authorization: Token {v}"), v)
            },
        },
        Format {
            kind: "jwt",
            name: "header.payload.signature (base64url)",
            make: |s| {
                tok([
                    b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
                    ".".into(),
                    b64url(
                        format!(r#"{{"sub":"{}","iat":1767225600}}"#, rnd(s, 12, ALNUM)).as_bytes(),
                    ),
                    ".".into(),
                    rnd(s + 1, 43, URLSAFE),
                ]
                .join(""))
            },
        },
        Format {
            kind: "private-key",
            name: "PEM / OpenSSH private key block",
            make: |s| {
                let label = [
                    "RSA PRIVATE KEY",
                    "OPENSSH PRIVATE KEY",
                    "PRIVATE KEY",
                    "EC PRIVATE KEY",
                ][(s % 4) as usize];
                let body: Vec<String> = (0..10).map(|i| rnd(s * 31 + i, 64, B64)).collect();
                tok(format!(
                    "-----{} {label}-----\n{}\n-----{} {label}-----",
                    "BEGIN",
                    body.join("\n"),
                    "END"
                ))
            },
        },
        Format {
            kind: "bearer-token",
            name: "Authorization: Bearer <opaque>",
            make: |s| {
                let v = rnd(s, 40, ALNUM);
                (format!("Authorization: Bearer {v}"), v)
            },
        },
        Format {
            kind: "password-in-url",
            name: "scheme://user:password@host",
            make: |s| {
                let p = rnd(s, 20, ALNUM);
                (format!("postgres://app:{p}@db.internal:5432/app"), p)
            },
        },
        Format {
            kind: "generic-secret",
            name: "password / secret / token assignments",
            make: |s| {
                let v = rnd(s, 24, ALNUM);
                let name = [
                    "DB_PASSWORD",
                    "client_secret",
                    "SESSION_SECRET",
                    "auth_token",
                ][(s % 4) as usize];
                (format!("{name}={v}"), v)
            },
        },
    ]
}

/// The places a secret shows up in transcripts, memory and plans: the snippet in each.
pub(super) fn contexts(snippet: &str) -> Vec<(&'static str, String)> {
    let numbered: String = format!("line one\n{snippet}\nline three")
        .lines()
        .enumerate()
        .map(|(i, l)| format!("{:>6}\u{2192}{l}\n", i + 1))
        .collect();
    let config = json!({"service": {"url": "https://api.internal", "credential": format!("see below: {snippet}")}})
        .to_string();
    vec![
        ("text", format!("Here it is:\n{snippet}\nkeep it safe.")),
        (
            "bash-result",
            bash_result_line(&format!("$ cat .env\n{snippet}\nPORT=8080\n")),
        ),
        (
            "assistant",
            assistant_text_line(&format!("I found `{snippet}` in the config.")),
        ),
        ("read-numbered", bash_result_line(&numbered)),
        ("json-in-json", bash_result_line(&config)),
        (
            "ansi",
            bash_result_line(&format!("\u{1b}[32m{snippet}\u{1b}[0m")),
        ),
        (
            "yaml",
            bash_result_line(&format!("services:\n  api:\n    env: \"{snippet}\"\n")),
        ),
        (
            "markdown-table",
            assistant_text_line(&format!("| name | value |\n|---|---|\n| x | {snippet} |\n")),
        ),
        (
            "crlf",
            bash_result_line(&format!("C:\\app> type .env\r\n{snippet}\r\nDEBUG=1\r\n")),
        ),
        (
            "python",
            assistant_text_line(&format!("cfg = {{'conn': '{snippet}', 'retries': 3}}")),
        ),
        (
            "twice-escaped",
            bash_result_line(&bash_result_line(&format!("echo '{snippet}'"))),
        ),
        // As some JSON writers put it: every `/` escaped.
        (
            "escaped-slashes",
            bash_result_line(&format!("output:\n{snippet}\n")).replace('/', "\\/"),
        ),
    ]
}

/// Whether redaction removed `secret` from `input` (as text, or as JSON when it is a line).
fn removed(input: &str, json_line: bool, secret: &str) -> bool {
    let sc = Scanner::new();
    let fs = if json_line {
        sc.scan_json_line(input.as_bytes())
    } else {
        sc.scan_text(input.as_bytes())
    };
    let red = sc.redact(input.as_bytes(), &fs);
    let red = String::from_utf8_lossy(&red).into_owned();
    if json_line {
        let Ok(v) = serde_json::from_str::<Value>(&red) else {
            return false;
        };
        // Compare on the decoded strings too (escapes).
        let decoded = v.to_string();
        let body_lines: Vec<&str> = secret.lines().filter(|l| l.len() > 20).collect();
        let escaped = secret.replace('/', "\\/");
        !red.contains(secret)
            && !red.contains(&escaped)
            && !decoded.contains(secret)
            && !body_lines.iter().any(|l| red.contains(l))
    } else {
        !red.contains(secret)
    }
}

/// Hard negatives: what looks like a secret but is not (documentation examples, placeholders,
/// variables, hashes, ids, code, prose, near-miss shapes).
pub(super) fn hard_negatives() -> Vec<String> {
    let sha1 = rnd(901, 40, HEX);
    let sha256 = rnd(902, 64, HEX);
    let blob = rnd(903, 600, B64);
    let id = uuid(904);
    let mut v: Vec<String> = vec![
        // Documentation examples and placeholders.
        ["AKIA", "IOSFODNN7", "EXAMPLE"].concat(),
        format!(
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCY{}",
            "EXAMPLEKEY"
        ),
        ["ghp_", &"x".repeat(36)].concat(),
        "OPENAI_API_KEY=sk-...".into(),
        "OPENAI_API_KEY=your-openai-api-key".into(),
        "API_KEY=<your-key>".into(),
        "api_key = \"<your-api-key-here>\"".into(),
        "token=${GITHUB_TOKEN}".into(),
        "export GITHUB_TOKEN=$(gh auth token)".into(),
        "password: changeme".into(),
        "SECRET_KEY=change-me-in-production".into(),
        "password=hunter2".into(),
        "SECRET=aaaaaaaaaaaaaaaa".into(),
        "DB_PASSWORD=password123".into(),
        "STRIPE_KEY=sk_test_placeholder_value_here".into(),
        ["sk_live_", &"0".repeat(24)].concat(),
        "AccountKey=<storage-account-key>".into(),
        "AccountKey=$AZURE_STORAGE_KEY;EndpointSuffix=core.windows.net".into(),
        "curl -u $USER:$TOKEN https://api.example.org".into(),
        "curl -u \"${USER}:${PASS}\" https://api.example.org".into(),
        "curl -u admin:admin http://localhost:8080".into(),
        "curl -u user: https://example.org (prompts for the password)".into(),
        "git push -u origin main".into(),
        "git branch -u origin/feature-x".into(),
        "set -u; set -e".into(),
        "Authorization: Basic $(echo -n user:pass | base64)".into(),
        "Authorization: Basic <base64 of user:password>".into(),
        "Authorization: Token <your-token>".into(),
        "Authorization: Token ${API_TOKEN}".into(),
        "curl -H \"Authorization: Bearer $TOKEN\" https://api.github.com/user".into(),
        "headers = {\"Authorization\": f\"Bearer {token}\"}".into(),
        "postgres://postgres:postgres@localhost:5432/app".into(),
        "https://user:password@example.com/".into(),
        "mongodb://localhost:27017/app".into(),
        "https://discord.com/channels/123456789012345678/987654321098765432".into(),
        "https://hooks.slack.com/services/".into(),
        "the meeting is at 12:AA or so".into(),
        "AGE-SECRET-KEY-1 is how age secret keys begin".into(),
        "age-secret-key-1qpzry9x8gf2tvdw0s3jn54khce6mua7l".into(),
        "glrt- is the GitLab runner token prefix".into(),
        "dop_v1_ tokens are DigitalOcean's".into(),
        "pypi-AgEIcHlwaS5vcmc is what PyPI tokens start with".into(),
        "whsec_ marks a Stripe webhook secret".into(),
        "ya29.short".into(),
        "GOCSPX-tooshort".into(),
        "dckr_pat_short".into(),
        "hf_short_name".into(),
        "hf_hub_download(repo_id='bert-base-uncased', filename='config.json')".into(),
        "npm_config_cache=/home/alice/.npm".into(),
        "SG.com is a website".into(),
        "shpool attach main".into(),
        "rapidapi and dapi-client are packages".into(),
        "PMAK- keys belong to Postman".into(),
        "hvs.tooshort".into(),
        "sk-learn is not a key, nor is risk-based or task-runner".into(),
        "xoxo, see you".into(),
        "AIzaSy is a Google key prefix".into(),
        "eyJhbGciOiJIUzI1NiJ9 is only a header".into(),
        "-----BEGIN RSA PRIVATE KEY-----".into(),
        "if line.starts_with(\"-----BEGIN RSA PRIVATE KEY-----\") { return Kind::Rsa; }".into(),
        // Hashes, ids, blobs.
        format!("commit {sha1}\nAuthor: Alice <alice@example.org>"),
        format!("sha256: {sha256}  target/release/ccsync"),
        format!("{{\"sha\":\"{sha1}\",\"hash\":\"{sha256}\",\"integrity\":\"sha512-{blob}\"}}"),
        format!("checksum = \"{sha256}\""),
        format!("cache_key = \"{sha256}\""),
        format!("tokenHash: {sha256}"),
        format!("data: {blob}"),
        blob.clone(),
        format!("upload {blob} done"),
        format!("session {id} resumed"),
        format!("\"client_id\": \"{id}\""),
        format!("\"aws_access_key_id\": \"{}\"", "<your-access-key-id>"),
        "\"tool_use_id\": \"toolu_01AbCdEfGhIjKlMnOpQrStUv\"".into(),
        "\"requestId\": \"req_011CWxYzAbCdEfGhIjKlMn\"".into(),
        format!("md5 {}", rnd(905, 32, HEX)),
        format!("Docker image sha256:{sha256}"),
        format!("npm ERR! integrity sha512-{}", rnd(906, 86, B64)),
        // Code.
        "let token_12 = stream(); // token merge buffer".into(),
        "let token = cache(); // placeholder token".into(),
        "api_key=os.environ[\"OPENAI_API_KEY\"]".into(),
        "password = get_password()".into(),
        "token: this.props.authToken,".into(),
        "private val apiKey = BuildConfig.API_KEY".into(),
        "password: z.string().min(8),".into(),
        "pub struct Config { pub token: Option<String>, secret: String }".into(),
        "const apiKey = process.env.OPENAI_API_KEY;".into(),
        "secret_name = \"prod/db/password\"".into(),
        "token_url: https://oauth2.googleapis.com/token".into(),
        "max_tokens: 4096".into(),
        "PASSWORD_MIN_LENGTH=12".into(),
        "TOKEN_TTL_SECONDS=3600".into(),
        "API_KEY_HEADER=X-Api-Key".into(),
        "PWD=/home/alice/projects/my_app".into(),
        "x-api-key: {{apiKey}}".into(),
        "privateKey: fs.readFileSync('key.pem')".into(),
        "accessKey: config.accessKeyId,".into(),
        r#"{"input_tokens":1234,"output_tokens":567,"cache_read_input_tokens":89012}"#.into(),
        // Prose.
        "The token stream buffer keeps the session lock while the secret rotation runs.".into(),
        "Use `--password` to pass the password; see docs/auth.md".into(),
        "password1 password2 passwords".into(),
        "Rotate the Slack token and the Stripe key before Friday.".into(),
        "The bearer of this letter is my friend.".into(),
        "Authorization: none required for public endpoints.".into(),
        "[REDACTED:generic-secret:0a1b2c3d] and [REDACTED:aws-secret-key:ffee0011]".into(),
        "C:\\Users\\alice\\.ssh\\id_rsa and ~/.aws/credentials".into(),
        "error[E0308]: mismatched types --> src/secrets/mod.rs:42:13".into(),
        format!(
            "    Finished `release` profile [optimized] target(s) in {}s",
            47
        ),
    ];
    // Near-miss shapes: the right prefix, the wrong length or alphabet.
    v.push(["gh", "p_", &rnd(907, 20, ALNUM)].concat());
    v.push(["AK", "IA", &rnd(908, 12, UPPER_DIGITS)].concat());
    v.push(["h", "f_", &rnd(909, 34, LOWER_ALNUM)].concat());
    v.push(["do", "p_v1_", &rnd(910, 64, b"ghijklmnop")].concat());
    v.push(["PM", "AK-", &rnd(911, 10, HEX)].concat());
    v.push(["AGE-SEC", "RET-KEY-1", &rnd(912, 20, BECH32_UPPER)].concat());
    v.push([&rnd(913, 5, DIGITS)[..], ":A", "A", &rnd(914, 33, URLSAFE)].concat());
    v.push(["sh", "pat_", &rnd(915, 32, b"ghijklmnopqrstuvwxyz")].concat());
    v.push(format!("version {}", rnd(916, 8, HEX_UPPER)));
    v
}

#[test]
fn every_rule_has_a_format_and_finds_it_exactly() {
    let sc = Scanner::new();
    let fs = formats();
    for rule in TOKEN_RULES {
        assert!(
            fs.iter().any(|f| f.kind == rule.kind),
            "no format for {}",
            rule.kind
        );
    }
    for k in KINDS {
        assert!(fs.iter().any(|f| f.kind == *k), "no format for {k}");
    }
    for f in &fs {
        for seed in 1..4 {
            let (snippet, secret) = (f.make)(seed);
            let text = format!("before {snippet} after");
            let got = sc.scan_text(text.as_bytes());
            assert_eq!(kinds(&got), [f.kind], "{}: {text}", f.name);
            assert_eq!(&text[got[0].start..got[0].end], secret, "{}", f.name);
            for line in [bash_result_line(&snippet), assistant_text_line(&snippet)] {
                let got = sc.scan_json_line(line.as_bytes());
                assert!(
                    !got.is_empty() && got.iter().all(|x| x.kind == f.kind),
                    "{}: {got:?} {line}",
                    f.name
                );
                redact_checked(&line, &[&secret]);
            }
        }
    }
}

use super::tests::{kinds, redact_checked};

#[test]
fn recall_per_kind_and_no_false_positives() {
    use std::collections::BTreeMap;
    let mut per_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut missed = Vec::new();
    for f in formats() {
        for seed in [11u64, 12] {
            let (snippet, secret) = (f.make)(seed);
            for (ctx, input) in contexts(&snippet) {
                let json_line = ctx != "text";
                let e = per_kind.entry(f.kind).or_default();
                e.1 += 1;
                if removed(&input, json_line, &secret) {
                    e.0 += 1;
                } else {
                    missed.push(format!("{} in {ctx}", f.name));
                }
            }
        }
    }
    let sc = Scanner::new();
    let negatives = hard_negatives();
    let mut false_positives = Vec::new();
    for n in &negatives {
        let mut hits = sc.scan_text(n.as_bytes());
        for line in [bash_result_line(n), assistant_text_line(n)] {
            hits.extend(sc.scan_json_line(line.as_bytes()));
        }
        if !hits.is_empty() {
            false_positives.push(format!("{n:?}: {:?}", kinds(&hits)));
        }
    }
    let tp: usize = per_kind.values().map(|v| v.0).sum();
    let total: usize = per_kind.values().map(|v| v.1).sum();
    println!("| kind | found | cases | recall |");
    println!("|---|---:|---:|---:|");
    for (k, (found, n)) in &per_kind {
        println!(
            "| {k} | {found} | {n} | {:.0}% |",
            100.0 * *found as f64 / *n as f64
        );
    }
    println!(
        "| **all {} kinds** | {tp} | {total} | {:.1}% |",
        per_kind.len(),
        100.0 * tp as f64 / total as f64
    );
    println!(
        "hard negatives: {} (each as text, in a Bash result and in assistant text), false positives: {}",
        negatives.len(),
        false_positives.len()
    );
    for m in &missed {
        println!("missed: {m}");
    }
    for f in &false_positives {
        println!("false positive: {f}");
    }
    assert!(per_kind.len() >= 30, "{} kinds", per_kind.len());
    assert!(tp >= 150, "{tp} true positives");
    assert!(negatives.len() >= 100, "{} hard negatives", negatives.len());
    assert!(missed.is_empty(), "missed: {missed:#?}");
    assert!(
        false_positives.is_empty(),
        "false positives: {false_positives:#?}"
    );
}
