//! The archive as people read it: `search` finds turns from every machine, `show` prints the
//! branch Claude Code shows, `export` writes Markdown, one self-contained HTML page (checked in
//! a real headless Chromium when one is installed; required when `CI` is set) and portable JSONL.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

const SA: &str = "a1c40000-0000-4000-8000-000000000001";
const SB: &str = "b1c40000-0000-4000-8000-000000000002";
/// A made-up GitHub token (the rule wants `ghp_` and 36 letters or digits).
const TOKEN: &str = "ghp_Zq8Lw2Xv9Kp4Rt7Ys1Nb6Mc3Hd5Fg0Ja2Se8";
/// A 1×1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

fn line(v: Value) -> String {
    serde_json::to_string(&v).unwrap()
}

/// A session on machine A: a question, a tool call and its result with an image, an answer;
/// then a second answer on another branch (the one Claude Code does not show), and a subagent.
fn session_a(cwd: &str) -> String {
    let base = |t: &str, uuid: &str, parent: Option<&str>, minute: u32| {
        json!({"parentUuid": parent, "isSidechain": false, "userType": "external", "cwd": cwd,
            "sessionId": SA, "version": "2.1.197", "type": t, "uuid": uuid, "timestamp": ts_at(minute)})
    };
    let mut u = base("user", "u1", None, 1);
    u["message"] = json!({"role": "user", "content": format!("Where is the tokenizer bug? my key is {TOKEN}")});
    let mut a1 = base("assistant", "a1", Some("u1"), 2);
    a1["message"] = json!({"role": "assistant", "content": [
        {"type": "text", "text": "Let me read the lexer."},
        {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": format!("{cwd}/src/lexer.rs")}}]});
    let mut r1 = base("user", "r1", Some("a1"), 3);
    r1["message"] = json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "     1→fn lex() { /* off by one */ }"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]});
    // Two answers to r1: the older one is an abandoned branch.
    let mut old = base("assistant", "old", Some("r1"), 4);
    old["message"] = json!({"role": "assistant", "content": [{"type": "text", "text": "ABANDONED guess about the tokenizer"}]});
    let mut a2 = base("assistant", "a2", Some("r1"), 5);
    a2["message"] = json!({"role": "assistant", "content": [{"type": "text", "text": "The tokenizer bug is an off-by-one in lex()."}]});
    [u, a1, r1, old, a2]
        .into_iter()
        .map(|v| line(v) + "\n")
        .collect()
}

fn subagent(cwd: &str) -> String {
    let mut v = json!({"parentUuid": null, "isSidechain": true, "userType": "external", "cwd": cwd,
        "sessionId": SA, "agentId": "x1", "version": "2.1.197", "type": "assistant", "uuid": "s1", "timestamp": ts_at(2)});
    v["message"] = json!({"role": "assistant", "content": [{"type": "text", "text": "Subagent looked at the grammar."}]});
    line(v) + "\n"
}

fn session_b(cwd: &str) -> String {
    let mut v = json!({"parentUuid": null, "isSidechain": false, "userType": "external", "cwd": cwd,
        "sessionId": SB, "version": "2.1.197", "type": "user", "uuid": "b1", "timestamp": ts_at(10)});
    v["message"] = json!({"role": "user", "content": "The TOKENIZER bug on machine b"});
    line(v) + "\n"
}

struct Two {
    _w: World,
    _a: ProjectMachine,
    b: ProjectMachine,
}

fn two_machines() -> Two {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = ProjectMachine::new(&w, "a", &remote);
    let b = ProjectMachine::new(&w, "b", &remote);
    let pa =
        a.m.write_transcript(&a.cwd(), SA, session_a(&a.cwd()).as_bytes());
    let agents = pa.with_extension("").join("subagents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(agents.join("agent-x1.jsonl"), subagent(&a.cwd())).unwrap();
    b.m.write_transcript(&b.cwd(), SB, session_b(&b.cwd()).as_bytes());
    a.m.ok(&["push"]);
    b.m.ok(&["push"]);
    Two { _w: w, _a: a, b }
}

#[test]
fn one_search_finds_turns_from_both_machines_newest_first() {
    let t = two_machines();
    // B has A's session only in the repository (not pulled): the archive still has it.
    let hits: Value = t.b.m.json(&["search", "tokenizer bug"]);
    let hits = hits.as_array().unwrap();
    let ids: Vec<&str> = hits
        .iter()
        .map(|h| h["session_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&SA) && ids.contains(&SB), "{hits:#?}");
    let times: Vec<&str> = hits.iter().map(|h| h["time"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    let a_hit = hits.iter().find(|h| h["session_id"] == SA).unwrap();
    assert_eq!(a_hit["machine"], "a");
    // A's paths, in B's form.
    assert_eq!(a_hit["project"].as_str().unwrap(), t.b.cwd());
    // Smart case: an upper-case letter makes it exact.
    let exact: Value = t.b.m.json(&["search", "TOKENIZER"]);
    let exact = exact.as_array().unwrap();
    assert_eq!(exact.len(), 1);
    assert_eq!(exact[0]["session_id"], SB);
    // Filters.
    let from_a: Value = t.b.m.json(&[
        "search",
        "tokenizer",
        "--machine",
        "a",
        "--role",
        "assistant",
    ]);
    assert!(
        from_a
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["session_id"] == SA && h["role"] == "assistant")
    );
    assert!(!from_a.as_array().unwrap().is_empty());
    let touched: Value = t.b.m.json(&["search", "tokenizer", "--files", "lexer.rs"]);
    assert!(
        touched
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["session_id"] == SA)
    );
    let regex: Value =
        t.b.m
            .json(&["search", "off-by-one in [a-z]+\\(\\)", "--regex"]);
    assert_eq!(regex.as_array().unwrap().len(), 1);
    // Nothing found: exit 1, as grep.
    let none = t.b.m.run(&["search", "no such words anywhere"]);
    assert_eq!(none.status.code(), Some(1));
}

#[test]
fn show_prints_the_branch_claude_code_shows() {
    let t = two_machines();
    let out = t.b.m.ok(&["show", &SA[..8], "--no-pager"]);
    assert!(out.contains("Where is the tokenizer bug?"));
    assert!(out.contains("▸ Read"));
    assert!(out.contains("off-by-one in lex()"));
    assert!(
        !out.contains("ABANDONED"),
        "the branch Claude Code hides is not shown"
    );
    assert!(!out.contains("Subagent looked"));
    let full = t.b.m.ok(&["show", SA, "--full", "--no-pager"]);
    assert!(full.contains("Subagent looked at the grammar."));
    assert!(full.contains("fn lex()"));
    let all = t.b.m.ok(&["show", SA, "--all-branches", "--no-pager"]);
    assert!(all.contains("ABANDONED"));
}

#[test]
fn export_writes_markdown_jsonl_and_a_page_with_secrets_redacted() {
    let t = two_machines();
    let md = t.b.m.ok(&["export", SA, "--format", "md"]);
    assert!(md.contains("off-by-one in lex()"));
    assert!(md.contains(&format!("data:image/png;base64,{PNG}")));
    assert!(md.contains("## Subagent agent-x1"));
    assert!(!md.contains(TOKEN), "{md}");
    assert!(md.contains("[REDACTED:github-token:"), "{md}");
    let jsonl = t.b.m.ok(&["export", SA, "--format", "jsonl"]);
    assert_eq!(jsonl.lines().count(), 5);
    assert!(
        jsonl.contains("{{PROJECTS}}/app/src/lexer.rs"),
        "portable paths"
    );
    assert!(!jsonl.contains(TOKEN));
    for l in jsonl.lines() {
        serde_json::from_str::<Value>(l).unwrap();
    }
    let page = t.b.m.home.join("session.html");
    t.b.m.ok(&[
        "export",
        SA,
        "--format",
        "html",
        "-o",
        page.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains(TOKEN));
    assert!(html.contains(&t.b.cwd()), "paths in this machine's form");
    // Nothing the page loads comes from outside it.
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            assert!(
                html[i + attr.len()..].starts_with("data:"),
                "{}",
                &html[i..i + 60]
            );
        }
    }
    assert!(!html.contains("<script"));
    check_in_chromium(&page);
}

/// Render the page in headless Chromium: it loads, makes no request but its own file, and its
/// screenshot is not blank.
fn check_in_chromium(page: &Path) {
    let Some(chromium) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs chromium (apt-get install chromium)"
        );
        eprintln!("SKIPPED: no chromium");
        return;
    };
    let dir = page.parent().unwrap();
    let netlog = dir.join("netlog.json");
    let shot = dir.join("shot.png");
    let base = |c: &mut std::process::Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ));
    };
    let mut c = std::process::Command::new(chromium);
    base(&mut c);
    let out = c
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("off-by-one in lex()"),
        "the page renders the conversation"
    );
    // Requests the page made carry its (file://) isolation key; Chromium's own do not.
    let log: Value = serde_json::from_slice(&std::fs::read(&netlog).unwrap()).unwrap();
    let urls: Vec<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let p = e.get("params")?;
            let nik = p.get("network_isolation_key")?.as_str()?;
            let url = p.get("url")?.as_str()?;
            (nik.contains("file://") && !url.starts_with("file:") && !url.starts_with("data:"))
                .then(|| url.to_string())
        })
        .collect();
    assert!(urls.is_empty(), "the page made requests: {urls:?}");
    let mut c = std::process::Command::new(chromium);
    base(&mut c);
    let st = c
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=900,1200")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(st.status.success());
    let png = std::fs::read(&shot).unwrap();
    // A blank page compresses to a few hundred bytes; text and colour bars do not.
    assert!(png.len() > 20_000, "screenshot of {} bytes", png.len());
}

/// On an encrypted repository the archive reads the same: B finds, shows and exports A's
/// session, which it never pulled, through the seal.
#[test]
fn search_show_and_export_work_the_same_on_an_encrypted_repository() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let pass = w.path().join("pass.txt");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let pass = pass.to_string_lossy().into_owned();
    let a = w.machine("a");
    let b = w.machine("b");
    let projects = |m: &Machine| format!("{}/projects", m.home.display());
    a.init(
        &remote,
        &[
            "--encrypt",
            "--passphrase-file",
            &pass,
            "--add-placeholder",
            &format!("PROJECTS={}", projects(&a)),
            "--sync-dir",
            "~",
        ],
    );
    b.init(
        &remote,
        &[
            "--passphrase-file",
            &pass,
            "--add-placeholder",
            &format!("PROJECTS={}", projects(&b)),
            "--sync-dir",
            "~",
        ],
    );
    let a_cwd = format!("{}/app", projects(&a));
    a.write_transcript(&a_cwd, SA, session_a(&a_cwd).as_bytes());
    a.ok(&["push"]);
    let hits: Value = b.json(&["search", "tokenizer bug", "--fetch"]);
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 2, "{hits:#?}");
    assert!(
        hits.iter()
            .all(|h| h["session_id"] == SA && h["machine"] == "a")
    );
    assert_eq!(
        hits[0]["project"].as_str().unwrap(),
        format!("{}/app", projects(&b))
    );
    let shown = b.ok(&["show", SA, "--no-pager"]);
    assert!(shown.contains("off-by-one in lex()"));
    let md = b.ok(&["export", SA, "--format", "md"]);
    assert!(md.contains("off-by-one in lex()") && !md.contains(TOKEN));
}
