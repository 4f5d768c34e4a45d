//! Migration of a repository written by the Python claude-session-sync 0.3.0
//! (fixture: tests/fixtures/python-0.3.0).

mod common;

use std::path::Path;

use common::*;

/// A bare repository whose `main` holds every file of `dir`.
fn repo_from_dir(dir: &Path, remote: &Path) {
    let st = std::process::Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(remote)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap();
    assert!(st.success());
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files.sort();
    let rels: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    let datas: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let entries: Vec<(&str, &str, &[u8])> = rels
        .iter()
        .zip(&datas)
        .map(|(r, d)| ("100644", r.as_str(), d.as_slice()))
        .collect();
    fast_import_commit(remote, &entries, false);
}

const SESSIONS: &[(&str, &str)] = &[
    ("4b38de53-5429-49e7-8172-8258640aefef", "my_app"),
    ("d69eee90-e724-4e81-b8a4-3b14ccd8904e", "my_app"),
    ("f451cd3d-fa03-4af9-bdc0-c6446795e3b2", "cache-sync1"),
];

#[test]
fn python_repository_is_converted_without_loss() {
    let w = World::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/python-0.3.0/repo");
    let remote = w.path().join("legacy.git");
    repo_from_dir(&fixture, &remote);
    let x = w.machine("x");
    // The fixture's sessions are from 2026-09: keep Claude Code from cleaning them up.
    std::fs::write(
        x.claude.join("settings.json"),
        r#"{"cleanupPeriodDays": 100000}"#,
    )
    .unwrap();
    let code = format!("{}/code", x.home.display());
    let out = x.init(
        &remote,
        &[
            "--add-placeholder",
            &format!("PROJECTS={code}"),
            "--sync-dir",
            "~",
        ],
    );
    assert!(out.contains("Converted the Python claude-session-sync repository: 3 sessions, 4 memory files, 2 placeholders"), "{out}");
    let paths = repo_paths(&remote);
    assert!(paths.contains(&"ccsync.json".to_string()));
    assert!(
        !paths.iter().any(|p| p.starts_with("sessions/")
            || p.starts_with("session_meta/")
            || p.starts_with("shared_config/")),
        "{paths:?}"
    );
    let shared: serde_json::Value =
        serde_json::from_str(&repo_file(&remote, "shared_placeholders.json").unwrap()).unwrap();
    assert_eq!(
        shared["placeholders"]["PROJECTS"]["linux-a"], "/tmp/pyccs/home-a/projects",
        "placeholders kept"
    );
    assert_eq!(
        shared["placeholders"]["PROJECTS"]["linux-b"],
        "/tmp/pyccs/home-b/code"
    );
    assert_eq!(shared["placeholders"]["PROJECTS"]["x"], code.as_str());
    let rec: serde_json::Value =
        serde_json::from_str(&repo_file(&remote, "machines/linux-a.json").unwrap()).unwrap();
    assert_eq!(rec["path_style"], "posix");

    x.ok(&["pull"]);
    for (sid, project) in SESSIONS {
        let legacy = std::fs::read_to_string(fixture.join(format!(
            "sessions/--PROJECTS---{}/{sid}.jsonl",
            project.replace('_', "-")
        )))
        .unwrap();
        let local =
            std::fs::read_to_string(x.transcript_path(&format!("{code}/{project}"), sid)).unwrap();
        assert_eq!(
            local.lines().count(),
            legacy.lines().count(),
            "every line of {sid}"
        );
        assert!(
            !local.contains("{{PROJECTS}}/") && !local.contains("{{HOME}}"),
            "placeholders mapped in {sid}"
        );
        assert!(
            !local.contains("/tmp/pyccs/home-a"),
            "raw paths the Python tool left are mapped too ({sid})"
        );
        assert!(
            local.contains(&format!("\"cwd\": \"{code}/{project}\"")),
            "{sid}"
        );
        for (l, g) in legacy.lines().zip(local.lines()) {
            let a: serde_json::Value = serde_json::from_str(l).unwrap();
            let b: serde_json::Value = serde_json::from_str(g).unwrap();
            assert_eq!(a["uuid"], b["uuid"], "same lines in the same order");
        }
    }
    let extra =
        std::fs::read_to_string(x.transcript_path(&format!("{code}/cache-sync1"), SESSIONS[2].0))
            .unwrap();
    assert!(
        extra.contains(&format!("read {}/.claude/CLAUDE.md", x.home.display())),
        "{{{{HOME}}}} mapped"
    );
    for project in ["my_app", "cache-sync1"] {
        let mem = x
            .claude
            .join("projects")
            .join(enc(&format!("{code}/{project}")))
            .join("memory");
        for f in ["MEMORY.md", "notes.md"] {
            let text = std::fs::read_to_string(mem.join(f))
                .unwrap_or_else(|e| panic!("{project}/{f}: {e}"));
            assert!(
                !text.contains("/tmp/pyccs/home-a"),
                "memory paths mapped: {text}"
            );
        }
    }
    let claude_md = std::fs::read_to_string(x.claude.join("CLAUDE.md")).unwrap();
    assert_eq!(
        claude_md,
        std::fs::read_to_string(fixture.join("shared_config/CLAUDE.md")).unwrap()
    );
    assert!(x.ok(&["push"]).contains("up to date"));

    // Another machine joins the converted repository: nothing to convert any more.
    let y = w.machine("y");
    std::fs::write(
        y.claude.join("settings.json"),
        r#"{"cleanupPeriodDays": 100000}"#,
    )
    .unwrap();
    let out = y.init(
        &remote,
        &[
            "--add-placeholder",
            &format!("PROJECTS={}/p", y.home.display()),
            "--sync-dir",
            "~",
        ],
    );
    assert!(!out.contains("Converted"), "{out}");
    y.ok(&["pull"]);
    assert!(
        y.transcript_path(&format!("{}/p/my_app", y.home.display()), SESSIONS[0].0)
            .exists()
    );
}
