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
