//! Secrets on every channel that leaves the machine: a secret put in a transcript, a subagent,
//! a tool result, project memory, CLAUDE.md, a plan, the session's title and a history entry
//! is never in the remote's bytes (every object: blobs, trees, commits and their messages),
//! nor in the local caches or `list`; the local files stay byte-identical; `warn`, `block` and
//! `--dry-run` say what they do.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

const SID: &str = "5ec20000-0000-4000-8000-000000000001";
const SID2: &str = "5ec20000-0000-4000-8000-000000000002";

/// Deterministic pseudo-random text from `charset` (fake secrets, built at run time).
fn rnd(seed: u64, n: usize, charset: &[u8]) -> String {
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

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// One fake secret per channel, each of another kind.
struct Secrets {
    /// Named once (`DB_PASSWORD=`), then bare in a later line and in a tool result.
    password: String,
    title_key: String,
    aws_id: String,
    pem_body_line: String,
    pem: String,
    npm: String,
    hf: String,
    slack: String,
    telegram: String,
    age: String,
    discord: String,
    curl_pass: String,
}

fn secrets() -> Secrets {
    let body: Vec<String> = (0..10).map(|i| rnd(100 + i, 64, B64)).collect();
    Secrets {
        password: rnd(1, 24, ALNUM),
        title_key: ["sk-", "proj-", &rnd(2, 64, ALNUM)].concat(),
        aws_id: ["AK", "IA", &rnd(3, 16, UPPER)].concat(),
        pem_body_line: body[4].clone(),
        pem: format!(
            "-----{} RSA PRIVATE KEY-----\n{}\n-----{} RSA PRIVATE KEY-----",
            "BEGIN",
            body.join("\n"),
            "END"
        ),
        npm: ["np", "m_", &rnd(4, 36, ALNUM)].concat(),
        hf: [
            "h",
            "f_",
            &rnd(5, 34, b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"),
        ]
        .concat(),
        slack: [
            "xo",
            "xb-",
            &rnd(6, 12, b"0123456789"),
            "-",
            &rnd(7, 24, ALNUM),
        ]
        .concat(),
        telegram: [
            &rnd(8, 10, b"0123456789")[..],
            ":A",
            "A",
            &rnd(9, 33, ALNUM),
        ]
        .concat(),
        age: [
            "AGE-SEC",
            "RET-KEY-1",
            &rnd(10, 58, b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"),
        ]
        .concat(),
        discord: [
            "https://disc",
            "ord.com/api/webhooks/",
            &rnd(11, 18, b"0123456789"),
            "/",
            &rnd(12, 68, ALNUM),
        ]
        .concat(),
        curl_pass: rnd(13, 18, ALNUM),
    }
}

impl Secrets {
    /// The bytes that must never leave the machine.
    fn all(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("password", &self.password),
            ("title key", &self.title_key),
            ("aws id", &self.aws_id),
            ("pem body", &self.pem_body_line),
            ("npm", &self.npm),
            ("hf", &self.hf),
            ("slack", &self.slack),
            ("telegram", &self.telegram),
            ("age", &self.age),
            ("discord", &self.discord["https://".len()..]),
            ("curl password", &self.curl_pass),
        ]
    }
}

/// Every object of a bare repository, raw (blobs, trees, commits with their messages), and
/// the content of its compressed segments.
fn remote_bytes(remote: &Path) -> String {
    String::from_utf8_lossy(&common::repo_all_objects(remote)).into_owned()
}

fn assert_clean(what: &str, text: &str, s: &Secrets) {
    for (name, secret) in s.all() {
        assert!(!text.contains(secret), "{what} holds the {name}");
    }
}

/// Files under a folder, concatenated.
fn tree_text(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push_str(&String::from_utf8_lossy(&b));
            }
        }
    }
    out
}

/// Session `SID` on `m` with a secret in every channel; returns the local files written.
fn seed(p: &ProjectMachine, s: &Secrets) -> Vec<std::path::PathBuf> {
    let cwd = p.cwd();
    let numbered: String = format!("# deploy key\n{}\n", s.pem)
        .lines()
        .enumerate()
        .map(|(i, l)| format!("{:>6}\u{2192}{l}\n", i + 1))
        .collect();
    let lines = [
        user_line(
            SID,
            &cwd,
            "u1",
            None,
            &ts_at(0),
            &format!("use {} for the summary job", s.title_key),
        ),
        serde_json::to_string(&json!({
            "parentUuid": "u1", "isSidechain": false, "type": "user", "cwd": cwd, "sessionId": SID,
            "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                "content": format!("$ cat .env\nDB_PASSWORD={}\n\u{1b}[32mNPM_TOKEN ok\u{1b}[0m {}\n", s.password, s.npm)}]},
            "toolUseResult": {"stdout": "", "config": {"aws_access_key_id": s.aws_id}},
            "uuid": "u2", "timestamp": ts_at(1)
        }))
        .unwrap(),
        serde_json::to_string(&json!({
            "parentUuid": "u2", "isSidechain": false, "type": "user", "cwd": cwd, "sessionId": SID,
            "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_02",
                "content": numbered}]},
            "toolUseResult": {"file": {"filePath": format!("{cwd}/deploy.pem"), "content": s.pem}},
            "uuid": "u3", "timestamp": ts_at(2)
        }))
        .unwrap(),
        user_line(
            SID,
            &cwd,
            "u4",
            Some("u3"),
            &ts_at(3),
            &format!("connect with {} please", s.password),
        ),
    ];
    let text = lines.join("\n") + "\n";
    let transcript = p.m.write_transcript(&cwd, SID, text.as_bytes());
    let folder = transcript.parent().unwrap().to_path_buf();
    let session_dir = folder.join(SID);
    let put = |path: &Path, content: &str| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        path.to_path_buf()
    };
    let sub = put(
        &session_dir.join("subagents/agent-a1.jsonl"),
        &(serde_json::to_string(
            &json!({"parentUuid": null, "isSidechain": true, "agentId": "a1",
            "type": "user", "cwd": cwd, "sessionId": SID, "uuid": "s1", "timestamp": ts_at(1),
            "message": {"role": "user", "content": format!("HF_TOKEN={}", s.hf)}}),
        )
        .unwrap()
            + "\n"
            // The session's password, bare: known from the transcript.
            + &serde_json::to_string(&json!({"parentUuid": "s1", "isSidechain": true,
                "agentId": "a1", "type": "assistant", "cwd": cwd, "sessionId": SID, "uuid": "s2",
                "timestamp": ts_at(2), "message": {"role": "assistant", "content": [{"type": "text",
                    "text": format!("Connecting with {} now.", s.password)}]}}))
            .unwrap()
            + "\n"),
    );
    let tool = put(
        &session_dir.join("tool-results/toolu_03.txt"),
        &format!(
            "slack says {}\nthe db password is {}\n",
            s.slack, s.password
        ),
    );
    let memory = put(
        &folder.join("memory/MEMORY.md"),
        &format!("# Memory\n- the bot token is {}\n", s.telegram),
    );
    let claude_md = put(
        &p.m.claude.join("CLAUDE.md"),
        &format!("# Global\nage key: {}\n", s.age),
    );
    let plan = put(
        &p.m.claude.join("plans/deploy.md"),
        &format!("# Plan\n1. post to {}\n", s.discord),
    );
    let history = put(
        &p.m.claude.join("history.jsonl"),
        &(json!({"display": format!("curl -u ci:{} https://ci.internal", s.curl_pass),
            "pastedContents": {}, "timestamp": 1_767_225_600_000u64, "project": cwd, "sessionId": SID})
        .to_string()
            + "\n"),
    );
    vec![transcript, sub, tool, memory, claude_md, plan, history]
}

#[test]
fn no_channel_carries_a_secret_to_the_remote() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = ProjectMachine::new(&w, "a", &remote);
    let b = ProjectMachine::new(&w, "b", &remote);
    let s = secrets();
    let files = seed(&a, &s);
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();

    // A dry run says what a push would redact, and sends nothing.
    let dry = a.m.ok(&["push", "--dry-run"]);
    assert!(dry.contains("a push would redact"), "{dry}");
    for kind in [
        "generic-secret",
        "private-key",
        "aws-access-key",
        "huggingface-token",
    ] {
        assert!(dry.contains(kind), "{kind} in {dry}");
    }
    assert_clean("the dry run's output", &dry, &s);

    let out = a.m.ok(&["push"]);
    assert!(out.contains("redacted in what was pushed"), "{out}");
    for kind in [
        "anthropic-key",
        "openai-key",
        "generic-secret",
        "npm-token",
        "private-key",
        "aws-access-key",
        "huggingface-token",
        "slack-token",
        "telegram-bot-token",
        "age-secret-key",
        "discord-webhook",
        "curl-user-password",
    ] {
        if kind != "anthropic-key" {
            assert!(out.contains(kind), "{kind} reported: {out}");
        }
    }
    assert_clean("push's output", &out, &s);
    let bytes = remote_bytes(&remote);
    assert!(
        bytes.contains("[REDACTED:"),
        "the redacted copies are there"
    );
    assert_clean("the remote", &bytes, &s);
    // The local files are untouched.
    for (f, b) in files.iter().zip(&before) {
        assert_eq!(&std::fs::read(f).unwrap(), b, "{} changed", f.display());
    }

    // The title: in the remote's metadata, the local cache and `list`, with a token instead.
    let listed = a.m.ok(&["list"]);
    assert!(listed.contains("[REDACTED:openai-key:"), "{listed}");
    assert_clean("list", &listed, &s);
    let listed = a.m.json(&["list"]);
    assert_clean("list --format json", &listed.to_string(), &s);
    a.m.ok(&["list", "--remote"]);
    assert_clean("the tool home", &tree_text(&a.m.tool), &s);

    // The other machine gets what was stored: valid lines, no secret, and its caches too.
    b.m.ok(&["pull"]);
    let on_b = std::fs::read_to_string(b.m.transcript_path(&b.cwd(), SID)).unwrap();
    for l in on_b.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON");
    }
    assert!(on_b.contains("u4") && on_b.contains("[REDACTED:generic-secret:"));
    assert_clean("b's Claude Code dir", &tree_text(&b.m.claude), &s);
    b.m.ok(&["list"]);
    assert_clean("b's tool home", &tree_text(&b.m.tool), &s);

    // Memory edited on b comes back to a with a's own secret in place, and a's transcript is
    // still byte-identical after the pull.
    let mem_b =
        b.m.claude
            .join("projects")
            .join(enc(&b.cwd()))
            .join("memory/MEMORY.md");
    let mut text = std::fs::read_to_string(&mem_b).unwrap();
    assert!(text.contains("[REDACTED:telegram-bot-token:"), "{text}");
    text.push_str("- added on b\n");
    std::fs::write(&mem_b, &text).unwrap();
    b.m.ok(&["push"]);
    a.m.ok(&["pull"]);
    let mem_a = std::fs::read_to_string(&files[3]).unwrap();
    assert!(
        mem_a.contains(&s.telegram) && mem_a.contains("added on b"),
        "{mem_a}"
    );
    assert_eq!(std::fs::read(&files[0]).unwrap(), before[0]);
    a.m.ok(&["push"]);
    assert_clean("the remote after both pushed", &remote_bytes(&remote), &s);
}

#[test]
fn warn_says_it_pushed_plaintext_and_block_keeps_the_session_and_its_history_entry() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = ProjectMachine::new(&w, "a", &remote);
    let s = secrets();
    let cwd = a.cwd();
    a.m.ok(&["config", "set", "secret_scan", "warn"]);
    let line = user_line(
        SID,
        &cwd,
        "u1",
        None,
        &ts_at(0),
        &format!("NPM_TOKEN={}", s.npm),
    ) + "\n";
    a.m.write_transcript(&cwd, SID, line.as_bytes());
    let dry = a.m.ok(&["push", "--dry-run"]);
    assert!(
        dry.contains("NOT redacted") && dry.contains("npm-token"),
        "{dry}"
    );
    let out = a.m.ok(&["push"]);
    assert!(
        out.contains("NOT redacted") && !out.contains("redacted in what was pushed"),
        "{out}"
    );
    assert!(
        remote_bytes(&remote).contains(&s.npm),
        "warn pushes it as it is"
    );

    // Block: the session, its tool result and its history entry stay here.
    a.m.ok(&["config", "set", "secret_scan", "block"]);
    let line = user_line(SID2, &cwd, "v1", None, &ts_at(5), "harmless prompt") + "\n";
    let t = a.m.write_transcript(&cwd, SID2, line.as_bytes());
    let tool = t.parent().unwrap().join(SID2).join("tool-results/t.txt");
    std::fs::create_dir_all(tool.parent().unwrap()).unwrap();
    std::fs::write(&tool, format!("token {}\n", s.hf)).unwrap();
    std::fs::write(
        a.m.claude.join("history.jsonl"),
        json!({"display": "harmless prompt of the blocked session", "pastedContents": {},
            "timestamp": 1_767_225_600_000u64, "project": cwd, "sessionId": SID2})
        .to_string()
            + "\n",
    )
    .unwrap();
    let dry = a.m.run(&["push", "--dry-run"]);
    assert!(stdout(&dry).contains("would hold back"), "{}", stdout(&dry));
    let o = a.m.run(&["push"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains(SID2), "{}", stderr(&o));
    let bytes = remote_bytes(&remote);
    assert!(!bytes.contains(SID2), "the blocked session went out");
    assert!(
        !bytes.contains("blocked session"),
        "its history entry went out"
    );
    assert!(!bytes.contains(&s.hf));
}
