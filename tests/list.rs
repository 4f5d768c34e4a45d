//! `ccsync list` on local sessions, before any set-up.

mod common;

use common::*;
use serde_json::Value;

fn find<'a>(rows: &'a Value, id: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["session_id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed"))
}

#[test]
fn lists_sessions_with_true_cwd_subagents_and_titles() {
    let w = World::new();
    let m = w.machine("a");
    // my_app and my-app encode to the same folder: the cwd comes from the transcript.
    m.write_transcript(
        "/home/alice/projects/my_app",
        "s-underscore",
        conversation("s-underscore", "/home/alice/projects/my_app", "/", 2, 0).as_bytes(),
    );
    m.write_transcript(
        "/home/alice/projects/my-app",
        "s-dash",
        conversation("s-dash", "/home/alice/projects/my-app", "/", 1, 30).as_bytes(),
    );
    // Subagents travel with their session and are counted.
    let sub = m
        .claude
        .join("projects")
        .join(enc("/home/alice/projects/my_app"))
        .join("s-underscore/subagents");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("agent-1.jsonl"), "{}\n").unwrap();
    std::fs::write(sub.join("agent-1.meta.json"), "{}").unwrap();
    std::fs::write(sub.join("agent-2.jsonl"), "{}\n").unwrap();
    // No trailing newline, malformed lines and binary junk.
    let mut odd = conversation("s-odd", "/srv/x", "/", 1, 50);
    odd.push_str("{\"broken\": \n\u{0}\u{1}junk\n");
    odd.push_str(&user_line(
        "s-odd",
        "/srv/x",
        "u9",
        None,
        &ts_at(2000),
        "last",
    ));
    m.write_transcript("/srv/x", "s-odd", odd.as_bytes());
    // An empty transcript.
    m.write_transcript("/srv/empty", "s-empty", b"");
    // A custom title wins over the first prompt.
    let mut titled = conversation("s-title", "/srv/t", "/", 1, 5);
    titled.push_str(
        "{\"type\":\"custom-title\",\"customTitle\":\"Named by me\",\"sessionId\":\"s-title\"}\n",
    );
    m.write_transcript("/srv/t", "s-title", titled.as_bytes());

    let rows = m.json(&["list"]);
    assert_eq!(rows.as_array().unwrap().len(), 5);
    let u = find(&rows, "s-underscore");
    assert_eq!(u["project_path"], "/home/alice/projects/my_app");
    assert_eq!(u["subagents"], 2);
    assert_eq!(u["lines"], 4);
    assert_eq!(u["title"], "prompt 0 about /home/alice/projects/my_app/src");
    assert_eq!(u["first_activity"], ts_at(0));
    assert_eq!(u["last_activity"], ts_at(1));
    assert!(u["locked_by"].is_null());
    assert!(u["machine"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(
        find(&rows, "s-dash")["project_path"],
        "/home/alice/projects/my-app"
    );
    let odd = find(&rows, "s-odd");
    assert_eq!(odd["malformed_lines"], 2);
    assert_eq!(odd["lines"], 5);
    assert_eq!(odd["last_activity"], ts_at(2000));
    assert_eq!(find(&rows, "s-title")["title"], "Named by me");
    let empty = find(&rows, "s-empty");
    assert!(empty["title"].is_null() && empty["project_path"].is_null());
    // Newest first.
    let order: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(&order[..2], ["s-odd", "s-dash"]);
}

#[test]
fn sessions_claude_code_hides_are_listed_and_marked() {
    let w = World::new();
    let mut m = w.machine("a");
    let line = |sid: &str, extra: serde_json::Value| {
        let mut v: Value = serde_json::from_str(&user_line(
            sid,
            "/srv/p",
            "u1",
            None,
            &ts_at(10),
            &format!("prompt of {sid}"),
        ))
        .unwrap();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::to_string(&v).unwrap() + "\n"
    };
    m.write_transcript(
        "/srv/p",
        "s-print",
        line("s-print", serde_json::json!({"entrypoint": "sdk-cli"})).as_bytes(),
    );
    m.write_transcript(
        "/srv/p",
        "s-side",
        line("s-side", serde_json::json!({"isSidechain": true})).as_bytes(),
    );
    let mut moved = line("s-moved", serde_json::json!({"entrypoint": "cli"}));
    moved.push_str(
        "{\"type\":\"relocated\",\"sessionId\":\"s-moved\",\"relocatedCwd\":\"/srv/q\"}\n",
    );
    moved.push_str(
        "{\"type\":\"last-prompt\",\"lastPrompt\":\"the latest prompt\",\"sessionId\":\"s-moved\"}\n",
    );
    m.write_transcript("/srv/q", "s-moved", moved.as_bytes());

    let rows = m.json(&["list"]);
    assert_eq!(rows.as_array().unwrap().len(), 3, "ccsync lists them all");
    let p = find(&rows, "s-print");
    assert_eq!(p["hidden_in_claude"], true);
    assert_eq!(p["hidden_reason"], "-p");
    assert_eq!(p["entrypoint"], "sdk-cli");
    let s = find(&rows, "s-side");
    assert_eq!(s["hidden_in_claude"], true);
    assert_eq!(s["hidden_reason"], "sidechain");
    assert_eq!(s["is_sidechain"], true);
    let mv = find(&rows, "s-moved");
    assert_eq!(mv["hidden_in_claude"], false);
    assert!(mv["hidden_reason"].is_null());
    assert_eq!(mv["relocated_cwd"], "/srv/q");
    assert_eq!(mv["project_path"], "/srv/p");
    assert_eq!(
        mv["title"], "the latest prompt",
        "the last prompt beats the first"
    );

    m.columns = Some(120);
    let out = m.run(&["list"]);
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("HIDDEN"), "{table}");
    let line_of = |id: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap()
    };
    assert!(line_of("s-print").contains("  -p  "), "{table}");
    assert!(line_of("s-side").contains("  sidechain  "), "{table}");
    assert!(!line_of("s-moved").contains("  -p  "), "{table}");
    assert!(stderr(&out).contains("claude -p"));
}

#[test]
fn table_fits_the_terminal() {
    let w = World::new();
    let mut m = w.machine("a");
    let cwd = "/home/alice/projects/a-rather-long-project-name/services/worker";
    let mut text = user_line(
        "s1",
        cwd,
        "u1",
        None,
        "2026-11-20T10:00:00.000Z",
        "プロジェクトの概要を知っていますか？ then a long English explanation that runs on",
    );
    text.push('\n');
    m.write_transcript(cwd, "s1", text.as_bytes());
    m.columns = Some(80);
    let out = m.ok(&["list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("ID"));
    for l in &lines {
        assert!(
            unicode_width::UnicodeWidthStr::width(*l) <= 80,
            "too wide: {l}"
        );
    }
    assert!(lines[1].contains("…"), "long cells are cut visibly");
    assert!(
        lines[1].contains("worker"),
        "the project keeps its last component"
    );
}

#[test]
fn huge_line_and_no_projects_dir() {
    let w = World::new();
    let m = w.machine("a");
    assert_eq!(m.json(&["list"]), serde_json::json!([]));
    let big = "x".repeat(20 * 1024 * 1024);
    let mut text = user_line(
        "s1",
        "/p",
        "u1",
        None,
        "2026-11-20T10:00:00.000Z",
        "small prompt",
    );
    text.push('\n');
    text += &user_line(
        "s1",
        "/p",
        "u2",
        Some("u1"),
        "2026-11-20T11:00:00.000Z",
        &big,
    );
    text.push('\n');
    m.write_transcript("/p", "s1", text.as_bytes());
    let rows = m.json(&["list"]);
    assert_eq!(rows[0]["title"], "small prompt");
    assert_eq!(rows[0]["last_activity"], "2026-11-20T11:00:00.000Z");
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let w = World::new();
    let m = w.machine("a");
    assert_eq!(m.run(&["list", "--format", "yaml"]).status.code(), Some(2));
    assert_eq!(m.run(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(m.run(&["--help"]).status.code(), Some(0));
    let v = m.run(&["--version"]);
    assert_eq!(v.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&v.stdout).contains(env!("CARGO_PKG_VERSION")));
    let c = m.run(&["completions", "bash"]);
    assert!(c.status.success() && String::from_utf8_lossy(&c.stdout).contains("ccsync"));
}

#[test]
fn pushed_metadata_records_visibility_and_relocation() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let m = w.machine("a");
    let projects = format!("{}/projects", m.home.display());
    m.init(
        &remote,
        &[
            "--add-placeholder",
            &format!("PROJECTS={projects}"),
            "--sync-dir",
            "~",
        ],
    );
    let cwd = format!("{projects}/app");
    let mut print_line: Value = serde_json::from_str(&user_line(
        "s-print",
        &cwd,
        "u1",
        None,
        &ts_at(1),
        "summarize",
    ))
    .unwrap();
    print_line["entrypoint"] = "sdk-cli".into();
    m.write_transcript(
        &cwd,
        "s-print",
        (serde_json::to_string(&print_line).unwrap() + "\n").as_bytes(),
    );
    let mut moved = conversation("s-moved", &cwd, "/", 1, 2);
    moved.push_str(&format!(
        "{{\"type\":\"relocated\",\"sessionId\":\"s-moved\",\"relocatedCwd\":\"{projects}/other\"}}\n"
    ));
    m.write_transcript(&format!("{projects}/other"), "s-moved", moved.as_bytes());
    m.ok(&["push"]);

    let meta = |id: &str| -> Value {
        let path = repo_paths(&remote)
            .into_iter()
            .find(|p| p.ends_with(&format!("/{id}/meta.json")))
            .unwrap_or_else(|| panic!("no meta for {id}"));
        serde_json::from_str(&repo_file(&remote, &path).unwrap()).unwrap()
    };
    let p = meta("s-print");
    assert_eq!(p["picker_hidden"], "-p");
    assert_eq!(p["entrypoint"], "sdk-cli");
    assert!(p.get("is_sidechain").is_none(), "false is not written");
    assert!(p.get("relocated_cwd").is_none());
    let mv = meta("s-moved");
    assert!(mv.get("picker_hidden").is_none());
    assert_eq!(
        mv["relocated_cwd"], "{{PROJECTS}}/other",
        "stored in portable form"
    );
    assert_eq!(mv["cwd"], "{{PROJECTS}}/app");
}
