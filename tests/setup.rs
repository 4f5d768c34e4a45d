//! Machine set-up: `init`, `config`, `status`, `doctor` with simulated machines sharing a local
//! bare remote, and a fake `gh`.

mod common;

use common::*;
use serde_json::Value;

fn shared(remote: &std::path::Path) -> Value {
    serde_json::from_str(
        &repo_file(remote, "shared_placeholders.json").expect("shared_placeholders.json"),
    )
    .unwrap()
}

#[test]
fn three_machines_share_one_remote_with_their_own_paths() {
    let w = World::new();
    let remote = w.path().join("sync.git"); // does not exist yet: becomes a bare repo
    let a = w.machine("linux-a");
    let b = w.machine("mac-b");
    let c = w.machine("win-c");
    let a_home = a.home.to_str().unwrap().to_string();
    let out = a.init(&remote, &["--add-placeholder", "PROJECTS=~/projects"]);
    assert!(out.contains("first machine"), "{out}");
    assert!(
        remote.join("HEAD").exists(),
        "a bare repository was created"
    );
    let paths = repo_paths(&remote);
    for p in [
        "ccsync.json",
        "shared_placeholders.json",
        "machines/linux-a.json",
    ] {
        assert!(paths.contains(&p.to_string()), "{p} in {paths:?}");
    }
    let cfg = a.config();
    assert_eq!(
        cfg["placeholders"]["PROJECTS"],
        format!("{a_home}/projects")
    );
    assert_eq!(
        cfg["sync_directories"],
        serde_json::json!([format!("{a_home}/projects")])
    );
    assert_eq!(cfg["path_style"], "posix");

    // Second machine: gives its path for the placeholder the first one defined.
    let out = b.init(&remote, &["--add-placeholder", "PROJECTS=/Users/b/code"]);
    assert!(!out.contains("no path here"), "{out}");
    // Third machine simulates Windows paths and forgets PROJECTS: reported, not fatal.
    let out = c.init(
        &remote,
        &[
            "--path-style",
            "windows",
            "--add-placeholder",
            "HOME=C:\\Users\\c",
        ],
    );
    assert!(
        out.contains("PROJECTS"),
        "missing placeholder reported: {out}"
    );
    let out = c.ok(&["config", "add-placeholder", "PROJECTS=C:/projects"]);
    assert!(out.contains("C:\\projects"), "{out}");

    let sp = shared(&remote);
    assert_eq!(
        sp["placeholders"]["PROJECTS"]["linux-a"],
        format!("{a_home}/projects")
    );
    assert_eq!(sp["placeholders"]["PROJECTS"]["mac-b"], "/Users/b/code");
    assert_eq!(sp["placeholders"]["PROJECTS"]["win-c"], "C:\\projects");
    assert_eq!(sp["placeholders"]["HOME"]["win-c"], "C:\\Users\\c");
    let rec: Value =
        serde_json::from_str(&repo_file(&remote, "machines/win-c.json").unwrap()).unwrap();
    assert_eq!(rec["path_style"], "windows");

    // Every machine shows all three machines' paths for every placeholder.
    for m in [&a, &b, &c] {
        let v = m.json(&["config", "show"]);
        for name in ["HOME", "PROJECTS"] {
            let per = v["shared_placeholders"][name].as_object().unwrap();
            assert_eq!(per.len(), 3, "{name} on {}: {per:?}", m.name);
        }
        let text = m.ok(&["config", "show"]);
        assert!(
            text.contains("C:\\projects") && text.contains("/Users/b/code"),
            "{text}"
        );
    }
    // set-path for another machine is checked against that machine's path style.
    let bad = a.run(&["config", "set-path", "PROJECTS", "win-c", "/not/windows"]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    a.ok(&["config", "set-path", "WORK", "win-c", "D:\\work"]);
    assert_eq!(shared(&remote)["placeholders"]["WORK"]["win-c"], "D:\\work");
    let unknown = a.run(&["config", "set-path", "WORK", "nobody", "/x"]);
    assert!(
        stderr(&unknown).contains("no machine"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn init_without_arguments_uses_a_local_default() {
    let w = World::new();
    let m = w.machine("solo");
    let out = m.ok(&["init"]);
    assert!(out.contains("Registered machine"), "{out}");
    let cfg = m.config();
    let remote = std::path::PathBuf::from(cfg["remote"].as_str().unwrap());
    assert!(
        remote.starts_with(&m.tool),
        "default remote lives in the tool home: {remote:?}"
    );
    assert!(repo_paths(&remote).contains(&"ccsync.json".to_string()));
    assert_eq!(cfg["placeholders"]["HOME"], m.home.to_str().unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(m.tool.join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(&m.tool).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    let st = m.json(&["status"]);
    assert_eq!(st["machine_id"], cfg["machine_id"]);
    assert!(st["last_push"].is_null());
}

#[test]
fn reinit_changes_only_what_the_flags_say() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = w.machine("a");
    let b = w.machine("b");
    a.init(&remote, &["--add-placeholder", "PROJECTS=/srv/a"]);
    b.init(
        &remote,
        &[
            "--add-placeholder",
            "PROJECTS=/srv/b",
            "--add-placeholder",
            "DATA=/data/b",
        ],
    );
    let before = a.config();
    let out = a.init(&remote, &[]);
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(a.config(), before);
    let out = a.init(&remote, &["--add-placeholder", "DATA=/data/a"]);
    assert!(out.contains("DATA") && !out.contains("PROJECTS"), "{out}");
    let sp = shared(&remote);
    assert_eq!(
        sp["placeholders"]["PROJECTS"]["b"], "/srv/b",
        "other machines' entries survive"
    );
    assert_eq!(sp["placeholders"]["DATA"]["a"], "/data/a");
    assert_eq!(sp["placeholders"]["DATA"]["b"], "/data/b");
    assert_eq!(a.config()["placeholders"]["PROJECTS"], "/srv/a");
    // The machine id belongs to machine a; b cannot take it, even on the same host.
    let clash = b.run(&["init", "--yes", "--machine-id", "a"]);
    assert_eq!(clash.status.code(), Some(1));
    assert!(stderr(&clash).contains("--reclaim"), "{}", stderr(&clash));
    assert_eq!(
        b.config()["machine_id"],
        "b",
        "a refused init changes nothing"
    );
    // A machine set up again from scratch reclaims its id explicitly.
    let a2 = w.machine("a2");
    let o = a2.run(&[
        "init",
        "--yes",
        "--machine-id",
        "a",
        "--remote",
        remote.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    a2.ok(&[
        "init",
        "--yes",
        "--machine-id",
        "a",
        "--reclaim",
        "--remote",
        remote.to_str().unwrap(),
    ]);
}

#[test]
fn concurrent_add_placeholder_keeps_both() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = w.machine("a");
    let b = w.machine("b");
    a.init(&remote, &[]);
    b.init(&remote, &[]);
    for i in 0..4 {
        let na = format!("A{i}=/srv/a{i}");
        let nb = format!("B{i}=/srv/b{i}");
        let mut ca = a.cmd();
        ca.args(["config", "add-placeholder", &na]);
        let mut cb = b.cmd();
        cb.args(["config", "add-placeholder", &nb]);
        let ha = ca.spawn().unwrap();
        let hb = cb.spawn().unwrap();
        assert!(ha.wait_with_output().unwrap().status.success());
        assert!(hb.wait_with_output().unwrap().status.success());
    }
    let sp = shared(&remote);
    for i in 0..4 {
        assert_eq!(
            sp["placeholders"][format!("A{i}")]["a"],
            format!("/srv/a{i}")
        );
        assert_eq!(
            sp["placeholders"][format!("B{i}")]["b"],
            format!("/srv/b{i}")
        );
    }
}

#[test]
fn corrupt_config_and_bad_flags() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let m = w.machine("m");
    m.init(&remote, &[]);
    let cfg_path = m.tool.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("\"lock_ttl_secs\": 600", "\"lock_ttl_secs\": \"ten\"");
    std::fs::write(&cfg_path, text).unwrap();
    let out = m.run(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("config.json") && err.contains("lock_ttl_secs"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    std::fs::write(&cfg_path, b"{ not json").unwrap();
    let err = stderr(&m.run(&["config", "show"]));
    assert!(err.contains("config.json"), "{err}");

    let n = w.machine("n");
    for bad in [
        &["init", "--path-style", "martian"][..],
        &["init", "--remote", "/x", "--github", "y"],
        &["config", "set-path", "ONLY_TWO", "args"],
        &["init", "--bogus"],
    ] {
        assert_eq!(n.run(bad).status.code(), Some(2), "{bad:?}");
    }
    for bad in [
        &["init", "--yes", "--machine-id", "has space"][..],
        &["init", "--yes", "--machine-id", "a/b"],
        &["init", "--yes", "--add-placeholder", "lower=/x"],
        &["init", "--yes", "--add-placeholder", "X=relative/path"],
        &["init", "--yes", "--add-placeholder", "NOEQUALS"],
    ] {
        let o = n.run(bad);
        assert_eq!(o.status.code(), Some(1), "{bad:?}");
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
    let foreign = w.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "x").unwrap();
    let o = n.run(&["init", "--yes", "--remote", foreign.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a git repository"),
        "{}",
        stderr(&o)
    );
    let o = n.run(&["config", "set", "lock_ttl_secs", "soon"]);
    assert_eq!(o.status.code(), Some(1), "not set up yet");
}

#[test]
fn config_set_keys() {
    let w = World::new();
    let m = w.machine("m");
    m.init(&w.path().join("sync.git"), &[]);
    m.ok(&["config", "set", "lock_ttl_secs", "30"]);
    m.ok(&["config", "set", "secret_scan", "warn"]);
    m.ok(&["config", "set", "sync_directories", "~/a, /srv/b"]);
    let cfg = m.config();
    assert_eq!(cfg["lock_ttl_secs"], 30);
    assert_eq!(cfg["secret_scan"], "warn");
    assert_eq!(
        cfg["sync_directories"],
        serde_json::json!([format!("{}/a", m.home.display()), "/srv/b"])
    );
    for (k, v) in [
        ("lock_ttl_secs", "x"),
        ("secret_scan", "shout"),
        ("nope", "1"),
        ("machine_id", "z"),
    ] {
        let o = m.run(&["config", "set", k, v]);
        assert_eq!(o.status.code(), Some(1), "{k}={v}");
    }
}

fn fake_gh(m: &Machine, state: &std::path::Path) -> std::path::PathBuf {
    let log = state.join("gh.log");
    let body = format!(
        r#"echo "$*" >> "{log}"
case "$1 $2" in
  "api user") if [ -f "{st}/logged_out" ]; then echo "gh: To get started with GitHub CLI, please run: gh auth login" >&2; exit 4; fi; echo alice ;;
  "repo view") if [ -f "{st}/exists" ]; then echo '{{"name":"sessions","visibility":"PRIVATE","url":"https://github.com/alice/sessions"}}'; else echo "GraphQL: Could not resolve to a Repository with the name 'alice/sessions'. (repository)" >&2; exit 1; fi ;;
  "repo create") git init -q --bare "{st}/alice-sessions.git" && touch "{st}/exists" && echo https://github.com/alice/sessions ;;
  *) echo "unexpected gh call: $*" >&2; exit 1 ;;
esac
"#,
        log = log.display(),
        st = state.display()
    );
    m.script("gh", &body);
    log
}

#[test]
fn github_mode_creates_then_connects() {
    let w = World::new();
    let state = w.path().join("gh-state");
    std::fs::create_dir_all(&state).unwrap();
    // Git reaches "GitHub" through a URL rewrite to a local bare repository.
    let gitconfig = w.path().join("gitconfig");
    std::fs::write(
        &gitconfig,
        format!("[url \"{}/alice-sessions.git\"]\n\tinsteadOf = https://github.com/alice/sessions.git\n", state.display()),
    )
    .unwrap();
    let mut a = w.machine("a");
    a.git_config = Some(gitconfig.clone());
    let log = fake_gh(&a, &state);
    let out = a.ok(&["init", "--yes", "--machine-id", "a", "--github", "sessions"]);
    assert!(
        out.contains("created the private GitHub repository alice/sessions")
            || out.contains("Created the private"),
        "{out}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.contains("api user"), "{calls}");
    assert!(
        calls.contains("repo create alice/sessions --private"),
        "{calls}"
    );
    assert_eq!(
        a.config()["remote"],
        "https://github.com/alice/sessions.git"
    );
    assert_eq!(a.config()["github_repo"], "alice/sessions");
    assert!(repo_paths(&state.join("alice-sessions.git")).contains(&"machines/a.json".to_string()));

    // A second machine connects to the existing repository: no create.
    let mut b = w.machine("b");
    b.git_config = Some(gitconfig);
    let log_b = fake_gh(&b, &state);
    std::fs::remove_file(&log_b).ok();
    let out = b.ok(&[
        "init",
        "--yes",
        "--machine-id",
        "b",
        "--github",
        "alice/sessions",
    ]);
    assert!(
        out.contains("using the GitHub repository alice/sessions")
            || out.contains("Using the GitHub"),
        "{out}"
    );
    let calls = std::fs::read_to_string(&log_b).unwrap();
    assert!(calls.contains("repo view alice/sessions"), "{calls}");
    assert!(!calls.contains("repo create"), "{calls}");
    assert!(repo_paths(&state.join("alice-sessions.git")).contains(&"machines/b.json".to_string()));

    // Not logged in: exit 1 with the fix.
    std::fs::write(state.join("logged_out"), "").unwrap();
    let c = w.machine("c");
    fake_gh(&c, &state);
    let o = c.run(&["init", "--yes", "--github", "sessions"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("gh auth login"), "{}", stderr(&o));
}

#[test]
fn gh_missing_is_a_clear_error() {
    let w = World::new();
    let m = w.machine("m");
    let mut cmd = m.cmd();
    cmd.env("CCSYNC_GH", w.path().join("no-such-gh"));
    let o = cmd
        .args(["init", "--yes", "--github", "sessions"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("gh") && err.contains("gh auth login"), "{err}");
    assert!(
        !m.tool.join("config.json").exists(),
        "nothing half-configured"
    );
}

#[test]
fn doctor_reports_problems_with_fixes() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = w.machine("a");
    let b = w.machine("b");
    a.init(&remote, &["--add-placeholder", "PROJECTS=/srv/a"]);
    b.init(&remote, &[]);
    // b lacks PROJECTS and has no claude: two problems.
    let o = b.run(&["doctor"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("config add-placeholder PROJECTS=PATH"),
        "{out}"
    );
    assert!(out.contains("CCSYNC_CLAUDE"), "{out}");
    // With a claude and the placeholder, only warnings remain.
    b.script("claude", "exit 0");
    b.ok(&["config", "add-placeholder", "PROJECTS=/srv/b"]);
    let cwd = "/opt/acme/app";
    b.write_transcript(cwd, "s1", conversation("s1", cwd, "/", 2, 0).as_bytes());
    let o = b.run(&["doctor"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("/opt/acme") && out.contains("add-placeholder ACME=/opt/acme"),
        "{out}"
    );
    // An unreachable remote is a problem.
    std::fs::rename(&remote, w.path().join("moved.git")).unwrap();
    let o = b.run(&["doctor"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("cannot reach"), "{}", stdout(&o));
}

#[test]
fn set_remote_moves_the_machine_and_pushes_what_it_has() {
    let w = World::new();
    let first = w.path().join("first.git");
    let second = w.path().join("second.git");
    let m = w.machine("m");
    m.init(
        &first,
        &["--add-placeholder", "PROJECTS=/srv/m", "--sync-dir", "/srv"],
    );
    let cwd = "/srv/m/app";
    m.write_transcript(cwd, "s1", conversation("s1", cwd, "/", 2, 0).as_bytes());
    m.ok(&["push"]);
    let out = m.ok(&["config", "set-remote", second.to_str().unwrap()]);
    assert!(
        out.contains("now syncs with") && out.contains("Pushed 1"),
        "{out}"
    );
    assert_eq!(m.config()["remote"], second.to_str().unwrap());
    let paths = repo_paths(&second);
    assert!(
        paths.iter().any(|p| p.contains("/sessions/s1/transcript/")),
        "{paths:?}"
    );
    assert!(paths.contains(&"machines/m.json".to_string()));
    let sp: serde_json::Value =
        serde_json::from_str(&repo_file(&second, "shared_placeholders.json").unwrap()).unwrap();
    assert_eq!(sp["placeholders"]["PROJECTS"]["m"], "/srv/m");
    assert!(m.ok(&["push"]).contains("up to date"));
}
