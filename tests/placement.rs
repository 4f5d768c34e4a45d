//! Where pulled sessions and memory land: the folder Claude Code itself uses (realpath of the
//! working directory, the exact long-path name, the git root for memory), one copy per session,
//! and the clean-up period from the merged settings.

mod common;

use std::path::{Path, PathBuf};

use ccsync::claude::naming::project_folder_name;
use common::*;

const SID: &str = "7a0c4e2b-1111-4000-8000-000000000001";

fn machine(w: &World, name: &str, remote: &Path, projects: &Path) -> Machine {
    let m = w.machine(name);
    m.init(
        remote,
        &[
            "--add-placeholder",
            &format!("PROJECTS={}", projects.display()),
            "--sync-dir",
            "~",
        ],
    );
    m
}

fn write_session(m: &Machine, cwd: &str, sid: &str, start_minute: u32) -> PathBuf {
    m.write_transcript(
        cwd,
        sid,
        conversation(sid, cwd, "/", 2, start_minute).as_bytes(),
    )
}

fn session_files(m: &Machine, sid: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(m.claude.join("projects"))
        .unwrap()
        .flatten()
    {
        let p = e.path().join(format!("{sid}.jsonl"));
        if p.exists() {
            out.push(p);
        }
    }
    out
}

#[cfg(unix)]
#[test]
fn a_symlinked_placeholder_root_lands_in_the_realpath_folder_and_old_placements_move() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a_proj = w.path().join("a/home/projects");
    std::fs::create_dir_all(a_proj.join("app")).unwrap();
    let a = machine(&w, "a", &remote, &a_proj);
    // On B the placeholder is a symbolic link (like macOS /tmp or Silverblue /home).
    let b_home = w.path().join("b/home");
    std::fs::create_dir_all(b_home.join("data/code/app")).unwrap();
    std::os::unix::fs::symlink(b_home.join("data/code"), b_home.join("code")).unwrap();
    let b = machine(&w, "b", &remote, &b_home.join("code"));

    write_session(&a, &format!("{}/app", a_proj.display()), SID, 0);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    let logical = format!("{}/code/app", b_home.display());
    let real = format!("{}/data/code/app", b_home.display());
    let want = b
        .claude
        .join("projects")
        .join(enc(&real))
        .join(format!("{SID}.jsonl"));
    assert_eq!(
        session_files(&b, SID),
        std::slice::from_ref(&want),
        "the realpath folder"
    );
    // Paths come in as Claude Code itself records them on B: realpaths.
    let text = std::fs::read_to_string(&want).unwrap();
    assert!(text.contains(&format!("\"cwd\":\"{real}\"")), "{text}");
    // And B's own sessions (realpaths, as the client writes them) reach A with A's paths.
    let s_b = "7a0c4e2b-1111-4000-8000-0000000000b1";
    write_session(&b, &real, s_b, 30);
    b.ok(&["push"]);
    a.ok(&["pull"]);
    let on_a = session_files(&a, s_b);
    assert_eq!(on_a.len(), 1, "B's session reached A");
    let a_text = std::fs::read_to_string(&on_a[0]).unwrap();
    assert!(
        a_text.contains(&format!("\"cwd\":\"{}/app\"", a_proj.display()))
            && !a_text.contains("data/code"),
        "{a_text}"
    );

    // A copy an earlier ccsync left in the folder of the logical path, with a line of its own,
    // is merged into the right one: one copy, nothing lost.
    let stale = b.write_transcript(
        &logical,
        SID,
        format!(
            "{}{}\n",
            text,
            user_line(
                SID,
                &logical,
                "b-only",
                Some(&format!("{SID}-a1")),
                &ts_at(9),
                "mine"
            )
        )
        .as_bytes(),
    );
    let out = b.ok(&["pull"]);
    assert!(out.contains("Moved 1 session"), "{out}");
    assert!(!stale.exists());
    assert_eq!(session_files(&b, SID), std::slice::from_ref(&want));
    assert!(
        std::fs::read_to_string(&want)
            .unwrap()
            .contains("\"b-only\"")
    );
    // And it stays there.
    let again = b.ok(&["sync"]);
    assert!(!again.contains("Moved"), "{again}");
    assert_eq!(session_files(&b, SID), [want]);
}

#[test]
fn long_paths_sharing_a_prefix_get_folders_of_their_own() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a_proj = w.path().join("a/home/projects");
    let b_proj = w.path().join("b/home/projects");
    let a = machine(&w, "a", &remote, &a_proj);
    let b = machine(&w, "b", &remote, &b_proj);
    let deep = "segment-of-a-long-path/".repeat(10);
    let s1 = "7a0c4e2b-1111-4000-8000-000000000011";
    let s2 = "7a0c4e2b-1111-4000-8000-000000000012";
    for (sid, tail) in [(s1, "one"), (s2, "two")] {
        let cwd = format!("{}/{deep}{tail}", a_proj.display());
        assert!(cwd.len() > 200);
        let p = a
            .claude
            .join("projects")
            .join(project_folder_name(&cwd))
            .join(format!("{sid}.jsonl"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, conversation(sid, &cwd, "/", 1, 0)).unwrap();
    }
    a.ok(&["push"]);
    b.ok(&["pull"]);
    let f1 = session_files(&b, s1);
    let f2 = session_files(&b, s2);
    assert_eq!(f1.len(), 1);
    assert_eq!(f2.len(), 1);
    assert_ne!(f1[0].parent(), f2[0].parent(), "one folder each");
    for (f, tail) in [(&f1[0], "one"), (&f2[0], "two")] {
        let cwd = format!("{}/{deep}{tail}", b_proj.display());
        let name = f.parent().unwrap().file_name().unwrap().to_string_lossy();
        assert_eq!(name, project_folder_name(&cwd));
        assert_eq!(
            name.chars().nth(200),
            Some('-'),
            "200 units, a dash, the hash"
        );
    }
}

#[test]
fn memory_lives_at_the_git_root_and_follows_it() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a_proj = w.path().join("a/home/projects");
    let b_proj = w.path().join("b/home/projects");
    let a = machine(&w, "a", &remote, &a_proj);
    let b = machine(&w, "b", &remote, &b_proj);
    // A monorepo: the session runs in a sub-directory, memory is kept for the repository root.
    for p in [&a_proj, &b_proj] {
        std::fs::create_dir_all(p.join("mono/.git")).unwrap();
        std::fs::create_dir_all(p.join("mono/svc/api")).unwrap();
    }
    let a_root = format!("{}/mono", a_proj.display());
    write_session(&a, &format!("{a_root}/svc/api"), SID, 0);
    let mem = a.claude.join("projects").join(enc(&a_root)).join("memory");
    std::fs::create_dir_all(mem.join("topics")).unwrap();
    std::fs::write(mem.join("MEMORY.md"), format!("- repo at {a_root}\n")).unwrap();
    std::fs::write(mem.join("topics/build.md"), "cargo build\n").unwrap();
    a.ok(&["push"]);
    let paths = repo_paths(&remote);
    assert!(
        paths.iter().any(|p| p.ends_with("/memory/MEMORY.md")),
        "memory reached the repository: {paths:?}"
    );
    b.ok(&["pull"]);
    let b_root = format!("{}/mono", b_proj.display());
    let b_mem = b.claude.join("projects").join(enc(&b_root)).join("memory");
    assert_eq!(
        std::fs::read_to_string(b_mem.join("MEMORY.md")).unwrap(),
        format!("- repo at {b_root}\n")
    );
    assert_eq!(
        std::fs::read_to_string(b_mem.join("topics/build.md")).unwrap(),
        "cargo build\n"
    );
    // An edit on B comes back to A's root folder.
    std::fs::write(b_mem.join("topics/build.md"), "cargo build --release\n").unwrap();
    b.ok(&["push"]);
    a.ok(&["pull"]);
    assert_eq!(
        std::fs::read_to_string(mem.join("topics/build.md")).unwrap(),
        "cargo build --release\n"
    );
}

#[test]
fn the_clean_up_period_comes_from_the_merged_settings() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a_proj = w.path().join("a/home/projects");
    let b_proj = w.path().join("b/home/projects");
    let a = machine(&w, "a", &remote, &a_proj);
    let b = machine(&w, "b", &remote, &b_proj);
    // Sessions last active 25 days ago, in two projects.
    let old = (chrono::Utc::now() - chrono::Duration::days(25))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let s_strict = "7a0c4e2b-1111-4000-8000-000000000021";
    let s_default = "7a0c4e2b-1111-4000-8000-000000000022";
    for (sid, project) in [(s_strict, "strict"), (s_default, "relaxed")] {
        let cwd = format!("{}/{project}", a_proj.display());
        a.write_transcript(
            &cwd,
            sid,
            format!(
                "{}\n",
                user_line(sid, &cwd, &format!("{sid}-u"), None, &old, "hi")
            )
            .as_bytes(),
        );
    }
    a.ok(&["push"]);
    // On B the project "strict" keeps 20 days (its .claude/settings.json): Claude Code would
    // delete the session at once, so it is not pulled; the other project keeps the default 30.
    std::fs::create_dir_all(b_proj.join("strict/.claude")).unwrap();
    std::fs::write(
        b_proj.join("strict/.claude/settings.json"),
        r#"{"cleanupPeriodDays": 20}"#,
    )
    .unwrap();
    let out = b.ok(&["pull"]);
    assert!(session_files(&b, s_strict).is_empty(), "{out}");
    assert_eq!(session_files(&b, s_default).len(), 1, "{out}");
    assert!(out.contains("cleanupPeriodDays"), "{out}");
    // A user value the client rejects (0) makes it clean nothing: then nothing is too old.
    std::fs::write(
        b.claude.join("settings.json"),
        r#"{"cleanupPeriodDays": 0}"#,
    )
    .unwrap();
    std::fs::remove_file(b_proj.join("strict/.claude/settings.json")).unwrap();
    b.ok(&["pull"]);
    assert_eq!(session_files(&b, s_strict).len(), 1);
}

#[test]
fn the_fake_claude_names_folders_as_the_real_one() {
    let w = World::new();
    let m = w.machine("f");
    m.fake_claude();
    let long = format!("/home/a/{}", "長い/".repeat(80));
    for p in [
        "/home/a/my_app",
        "/home/a/文档",
        "/home/a/😀x",
        long.as_str(),
    ] {
        let out = std::process::Command::new("python3")
            .arg(m.bin.join("enc.py"))
            .arg(p)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim_end(),
            ccsync::claude::encode::encode_project_dir(p),
            "{p}"
        );
    }
}
