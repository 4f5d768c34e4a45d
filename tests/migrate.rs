//! Migration of repositories written by the real Python claude-session-sync (fixtures in
//! tests/fixtures/python-*, each with the script that made it).

mod common;

use std::path::{Path, PathBuf};

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
    // The tool stored /tmp/pyccs/home-a/projects2 as {{PROJECTS}}2: it is not under PROJECTS.
    assert!(
        extra.contains(&format!(
            "compare with {}/projects2/other/x.rs",
            x.home.display()
        )),
        "{extra}"
    );
    // A {{PROJECTS}} typed in prose cannot be told from the path the tool replaced: it is the
    // placeholder, as on every Python machine (docs/FORMAT.md).
    assert!(
        extra.contains(&format!("keep the literal text {code} as is")),
        "{extra}"
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

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join("repo")
}

/// Every legacy transcript of a fixture: (session id, its lines).
fn legacy_sessions(repo: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(repo.join("sessions")).unwrap().flatten() {
        if !d.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(sid) = name.strip_suffix(".jsonl") {
                out.push((sid.to_string(), std::fs::read_to_string(f.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The first `cwd` of a legacy transcript, as the Python tool stored it.
fn legacy_cwd(text: &str) -> String {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["cwd"].as_str().map(str::to_string))
        .unwrap()
}

/// The machine's transcript of a legacy session, checked line for line against the legacy one.
fn arrived(m: &Machine, sid: &str, legacy: &str, local_cwd: &str) -> String {
    let p = m.transcript_path(local_cwd, sid);
    let local =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{sid} not at {}: {e}", p.display()));
    assert_eq!(local.lines().count(), legacy.lines().count(), "{sid}");
    for (l, g) in legacy.lines().zip(local.lines()) {
        let a: serde_json::Value = serde_json::from_str(l).unwrap();
        let b: serde_json::Value = serde_json::from_str(g).unwrap();
        assert_eq!(a["uuid"], b["uuid"], "same lines in the same order ({sid})");
        if let Some(c) = b["cwd"].as_str() {
            assert_eq!(c, local_cwd, "{sid}");
        }
    }
    local
}

fn keep_old_sessions(m: &Machine) {
    std::fs::write(
        m.claude.join("settings.json"),
        r#"{"cleanupPeriodDays": 100000}"#,
    )
    .unwrap();
}

#[test]
fn python_0_1_automatic_placeholders_every_session_arrives() {
    let w = World::new();
    let fx = fixture("python-0.1.3");
    let remote = w.path().join("legacy.git");
    repo_from_dir(&fx, &remote);
    let sessions = legacy_sessions(&fx);
    assert_eq!(sessions.len(), 20);

    // A Linux machine: HOME is its own; APPDATA, which only alice-win's config.json had, is
    // given a path here.
    let x = w.machine("x");
    keep_old_sessions(&x);
    let home = x.home.display().to_string();
    let appdata = format!("{home}/appdata");
    let out = x.init(
        &remote,
        &[
            "--add-placeholder",
            &format!("APPDATA={appdata}"),
            "--sync-dir",
            "~",
        ],
    );
    assert!(
        out.contains("Converted the Python claude-session-sync repository: 20 sessions, 10 memory files, 2 placeholders."),
        "{out}"
    );
    assert!(
        out.contains("APPDATA was only in the config.json of alice-win: now shared"),
        "{out}"
    );
    assert!(
        out.contains("{{USERNAME}} stood for text, not a path"),
        "{out}"
    );
    let shared: serde_json::Value =
        serde_json::from_str(&repo_file(&remote, "shared_placeholders.json").unwrap()).unwrap();
    assert_eq!(
        shared["placeholders"]["APPDATA"]["alice-win"],
        "C:\\Users\\alice\\AppData\\Roaming"
    );
    assert_eq!(shared["placeholders"]["APPDATA"]["x"], appdata.as_str());
    assert!(shared["placeholders"].get("USERNAME").is_none(), "{shared}");
    let rec: serde_json::Value =
        serde_json::from_str(&repo_file(&remote, "machines/alice-win.json").unwrap()).unwrap();
    assert_eq!(rec["path_style"], "windows");

    let pulled = x.ok(&["pull"]);
    assert!(!pulled.contains("Skipped"), "{pulled}");
    let mut n = 0;
    for (sid, legacy) in &sessions {
        let cwd = legacy_cwd(legacy)
            .replace("{{HOME}}", &home)
            .replace("{{APPDATA}}", &appdata)
            .replace('\\', "/");
        let local = arrived(&x, sid, legacy, &cwd);
        for raw in [
            "{{HOME}}",
            "{{APPDATA}}",
            "{{USERNAME}}",
            "C:\\\\Users",
            "/tmp/pyccs01/home/alice/",
        ] {
            assert!(!local.contains(raw), "{raw} left in {sid}");
        }
        n += 1;
    }
    assert_eq!(n, 20, "20 of 20 sessions");
    // The hand-written line: USERNAME was text, {{HOME}}-old was not under HOME, and what the
    // user typed in braces is as the Python tool stored it.
    let (sid, legacy) = sessions
        .iter()
        .find(|(_, t)| t.contains("0f0f0f0f-0101"))
        .unwrap();
    let local =
        std::fs::read_to_string(x.transcript_path(&format!("{home}/src/my_app"), sid)).unwrap();
    let line = local.lines().find(|l| l.contains("0f0f0f0f-0101")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        v["message"]["content"],
        "mail alice@example.com about /srv/alice/data and /tmp/pyccs01/home/alice-old/notes.txt (not under HOME); malice is a word; keep {{ jinja }}, {{name}} and {{VERSION}} as typed"
    );
    assert!(legacy.contains("{{HOME}}-old"));
    // Memory of the APPDATA project (a folder the Python tool named after HOME) is with it.
    let mem = x
        .claude
        .join("projects")
        .join(enc(&format!("{appdata}/tool/my_app")))
        .join("memory/notes.md");
    let text = std::fs::read_to_string(&mem).unwrap();
    assert!(
        text.starts_with(&format!("Project root: {appdata}/tool/my_app\n")),
        "{text}"
    );

    // A Windows machine gets the Windows sessions back as alice-win had them.
    let wm = w.machine("w");
    keep_old_sessions(&wm);
    wm.init(
        &remote,
        &[
            "--path-style",
            "windows",
            "--add-placeholder",
            "HOME=C:\\Users\\alice",
            "--add-placeholder",
            "APPDATA=C:\\Users\\alice\\AppData\\Roaming",
            "--sync-dir",
            "C:\\",
        ],
    );
    let pulled = wm.ok(&["pull"]);
    assert!(!pulled.contains("Skipped"), "{pulled}");
    for (sid, legacy) in &sessions {
        let cwd = legacy_cwd(legacy)
            .replace("{{HOME}}", "C:\\Users\\alice")
            .replace("{{APPDATA}}", "C:\\Users\\alice\\AppData\\Roaming")
            .replace('/', "\\");
        let local = arrived(&wm, sid, legacy, &cwd);
        assert!(!local.contains("/tmp/pyccs01/home/alice/"), "{sid}");
    }
    let (sid, legacy) = sessions
        .iter()
        .find(|(_, t)| legacy_cwd(t).starts_with("{{APPDATA}}"))
        .unwrap();
    let local = arrived(
        &wm,
        sid,
        legacy,
        "C:\\Users\\alice\\AppData\\Roaming\\tool\\my_app",
    );
    assert!(
        local.contains(r#""trackedFileBackups":{"C:\\Users\\alice\\AppData\\Roaming\\tool\\my_app\\src\\lib.rs""#)
            || local.contains(r#""trackedFileBackups": {"C:\\Users\\alice\\AppData\\Roaming\\tool\\my_app\\src\\lib.rs""#),
        "raw Windows keys the Python tool left are mapped and come back"
    );
}

#[test]
fn python_config_json_placeholder_20_of_20_sessions() {
    let w = World::new();
    let fx = fixture("python-0.3.0-config");
    let remote = w.path().join("legacy.git");
    repo_from_dir(&fx, &remote);
    let sessions = legacy_sessions(&fx);
    let work: Vec<&(String, String)> = sessions
        .iter()
        .filter(|(_, t)| legacy_cwd(t).starts_with("{{WORK}}"))
        .collect();
    assert_eq!((sessions.len(), work.len()), (24, 20));

    // This machine does not know WORK yet: converted anyway, and told exactly what to do.
    let x = w.machine("x");
    keep_old_sessions(&x);
    let home = x.home.display().to_string();
    let out = x.init(
        &remote,
        &[
            "--add-placeholder",
            &format!("PROJECTS={home}/code"),
            "--sync-dir",
            "~",
        ],
    );
    assert!(
        out.contains("Converted the Python claude-session-sync repository: 24 sessions"),
        "{out}"
    );
    assert!(
        out.contains("WORK was only in the config.json of dev-a: now shared"),
        "{out}"
    );
    assert!(
        out.contains("20 of its 24 sessions need WORK's path on this machine: ccsync config add-placeholder WORK=PATH"),
        "{out}"
    );
    let pulled = x.ok(&["pull"]);
    assert!(
        pulled.contains("Skipped 20 sessions: no path on this machine for WORK (ccsync config add-placeholder WORK=PATH)"),
        "{pulled}"
    );
    for (sid, legacy) in &sessions {
        let cwd = legacy_cwd(legacy);
        if let Some(rest) = cwd.strip_prefix("{{PROJECTS}}") {
            arrived(&x, sid, legacy, &format!("{home}/code{rest}"));
        }
    }

    // Given its path, every WORK session arrives.
    x.ok(&["config", "add-placeholder", &format!("WORK={home}/work")]);
    let pulled = x.ok(&["pull"]);
    assert!(!pulled.contains("Skipped"), "{pulled}");
    let mut n = 0;
    for (sid, legacy) in &work {
        let cwd = legacy_cwd(legacy).replace("{{WORK}}", &format!("{home}/work"));
        let local = arrived(&x, sid, legacy, &cwd);
        assert!(
            !local.contains("{{WORK}}") && !local.contains("/tmp/pyccs03c"),
            "{sid}"
        );
        if legacy.contains("0f0f0f0f-0303") {
            assert!(
                local.contains(&format!("render image: {{{{ .Values.image }}}} and leave {{{{TODO}}}} in {home}/work/my_app/chart.yaml")),
                "braces the user typed are kept"
            );
        }
        n += 1;
    }
    assert_eq!(n, 20, "20 of 20 sessions");
    for project in ["my_app", "api.v2", "stream-flaky2"] {
        let mem = x
            .claude
            .join("projects")
            .join(enc(&format!("{home}/work/{project}")))
            .join("memory/MEMORY.md");
        let text = std::fs::read_to_string(&mem).unwrap_or_else(|e| panic!("{project}: {e}"));
        assert!(!text.contains("/tmp/pyccs03c"), "{text}");
    }
    let shared: serde_json::Value =
        serde_json::from_str(&repo_file(&remote, "shared_placeholders.json").unwrap()).unwrap();
    assert_eq!(
        shared["placeholders"]["WORK"]["dev-a"],
        "/tmp/pyccs03c/srv/work"
    );
    assert_eq!(
        shared["placeholders"]["WORK"]["x"],
        format!("{home}/work").as_str()
    );
}

/// Shapes the fixtures do not have: the pre-0.1 layout (one copy per machine, each mapped with
/// its own machine's values), a key that is not a valid name, a session with no working
/// directory anywhere, and braces in memory (a raw copy: always text).
#[test]
fn python_layout_edges_lose_nothing() {
    let w = World::new();
    let remote = w.path().join("legacy.git");
    let st = std::process::Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&remote)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap();
    assert!(st.success());
    let sid = "11111111-2222-4333-8444-555555555555";
    let lost = "99999999-2222-4333-8444-555555555555";
    let line = |uuid: &str, cwd: &str, text: &str| {
        format!(
            r#"{{"parentUuid": null, "cwd": "{cwd}", "sessionId": "{sid}", "type": "user", "uuid": "{uuid}", "timestamp": "2026-09-01T10:00:0{}.000Z", "message": {{"role": "user", "content": "{text}"}}}}"#,
            &uuid[..1]
        )
    };
    // The same session from two machines, each copy in its own mapping.
    let one = format!(
        "{}\n{}\n",
        line("1a", "{{HOME}}/app", "hi from {{USERNAME}}"),
        line("2a", "{{HOME}}/app", "see {{my-code}}/lib.rs")
    );
    let two = format!(
        "{}\n{}\n",
        line("1a", "{{HOME}}\\\\app", "hi from {{USERNAME}}"),
        line("3a", "{{HOME}}\\\\app", "{{USERNAME}} on windows")
    );
    let summary = r#"{"type": "summary", "summary": "old", "leafUuid": "x"}"#.to_string() + "\n";
    let shared = r#"{"placeholders": {"HOME": {"m1": "/home/one", "m2": "C:\\Users\\two"}, "my-code": {"m1": "/opt/code"}}}"#;
    let m1 =
        r#"{"machine_id": "m1", "placeholders": {"{{HOME}}": "/home/one", "{{USERNAME}}": "one"}}"#;
    let m2 = r#"{"machine_id": "m2", "placeholders": {"{{HOME}}": "C:\\Users\\two", "{{USERNAME}}": "two"}}"#;
    let memory = "Keep {{HOME}} literal; root /home/one/app\n";
    let p_one = format!("sessions/m1/--HOME---app/{sid}.jsonl");
    let p_two = format!("sessions/m2/--HOME---app/{sid}.jsonl");
    let p_lost = format!("sessions/-home-{{{{USERNAME}}}}-old/{lost}.jsonl");
    let entries: Vec<(&str, &str, &[u8])> = vec![
        ("100644", "shared_placeholders.json", shared.as_bytes()),
        ("100644", "machines/m1.json", m1.as_bytes()),
        ("100644", "machines/m2.json", m2.as_bytes()),
        ("100644", &p_one, one.as_bytes()),
        ("100644", &p_two, two.as_bytes()),
        ("100644", &p_lost, summary.as_bytes()),
        (
            "100644",
            "shared_config/memory/--HOME---app/MEMORY.md",
            memory.as_bytes(),
        ),
    ];
    fast_import_commit(&remote, &entries, false);

    let x = w.machine("x");
    keep_old_sessions(&x);
    let home = x.home.display().to_string();
    let out = x.init(
        &remote,
        &["--add-placeholder", "MY_CODE=/srv/code", "--sync-dir", "~"],
    );
    assert!(
        out.contains("Converted the Python claude-session-sync repository: 1 sessions, 1 memory files, 2 placeholders."),
        "{out}"
    );
    assert!(
        out.contains("placeholder {{my-code}} is now MY_CODE"),
        "{out}"
    );
    assert!(out.contains("1 file(s) left as they were"), "{out}");
    let paths = repo_paths(&remote);
    assert!(paths.contains(&p_lost), "never deleted: {paths:?}");
    assert!(!paths.contains(&p_one) && !paths.contains(&p_two));

    x.ok(&["pull"]);
    let local = std::fs::read_to_string(x.transcript_path(&format!("{home}/app"), sid)).unwrap();
    let texts: Vec<String> = local
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["cwd"], format!("{home}/app").as_str());
            v["message"]["content"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        texts,
        ["hi from one", "see /srv/code/lib.rs", "two on windows"],
        "union of both copies, each user name from its own machine"
    );
    let mem = std::fs::read_to_string(
        x.claude
            .join("projects")
            .join(enc(&format!("{home}/app")))
            .join("memory/MEMORY.md"),
    )
    .unwrap();
    assert_eq!(mem, format!("Keep {{{{HOME}}}} literal; root {home}/app\n"));
}
