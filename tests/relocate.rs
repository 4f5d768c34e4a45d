//! `relocate OLD NEW`: a renamed project's sessions, memory and history follow it on every
//! machine.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

const SID: &str = "9b1d7e00-2222-4000-8000-000000000001";

fn machine(w: &World, name: &str, remote: &Path) -> (Machine, PathBuf) {
    let m = w.machine(name);
    let projects = m.home.join("projects");
    std::fs::create_dir_all(&projects).unwrap();
    m.init(
        remote,
        &[
            "--add-placeholder",
            &format!("PROJECTS={}", projects.display()),
            "--sync-dir",
            "~",
        ],
    );
    (m, projects)
}

fn memory_dir(m: &Machine, dir: &Path) -> PathBuf {
    m.claude
        .join("projects")
        .join(enc(&dir.display().to_string()))
        .join("memory")
}

#[test]
fn a_renamed_project_follows_on_every_machine() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, pa) = machine(&w, "a", &remote);
    let (b, pb) = machine(&w, "b", &remote);
    let old_a = pa.join("app");
    std::fs::create_dir_all(&old_a).unwrap();
    let cwd = old_a.display().to_string();
    a.write_transcript(&cwd, SID, conversation(SID, &cwd, "/", 2, 0).as_bytes());
    std::fs::create_dir_all(memory_dir(&a, &old_a)).unwrap();
    std::fs::write(memory_dir(&a, &old_a).join("MEMORY.md"), "- notes\n").unwrap();
    let hist = json!({"display": "fix it", "pastedContents": {}, "timestamp": 1_700_000_000_000u64, "project": cwd, "sessionId": SID});
    std::fs::write(a.claude.join("history.jsonl"), format!("{hist}\n")).unwrap();
    a.ok(&["push"]);
    std::fs::create_dir_all(pb.join("app")).unwrap();
    b.ok(&["pull"]);
    assert!(
        b.transcript_path(&pb.join("app").display().to_string(), SID)
            .exists()
    );

    // The project is renamed app → app2 on both machines; A tells ccsync.
    for p in [&pa, &pb] {
        std::fs::rename(p.join("app"), p.join("app2")).unwrap();
    }
    let new_a = pa.join("app2");
    let dry = a.ok(&["relocate", "~/projects/app", "~/projects/app2", "--dry-run"]);
    assert!(
        dry.contains("Would move 1 session(s), 1 memory file(s) and 1 history entry"),
        "{dry}"
    );
    assert!(
        a.transcript_path(&cwd, SID).exists(),
        "a dry run moves nothing"
    );
    let out = a.ok(&["relocate", "~/projects/app", "~/projects/app2"]);
    assert!(out.contains("Moved 1 session(s)"), "{out}");
    let moved = a.transcript_path(&new_a.display().to_string(), SID);
    assert!(moved.exists() && !a.transcript_path(&cwd, SID).exists());
    let last = std::fs::read_to_string(&moved)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    assert_eq!(
        last,
        format!(
            "{{\"type\":\"relocated\",\"relocatedCwd\":\"{}\",\"sessionId\":\"{SID}\"}}",
            new_a.display()
        ),
        "the line Claude Code's /cd writes"
    );
    assert_eq!(
        std::fs::read_to_string(memory_dir(&a, &new_a).join("MEMORY.md")).unwrap(),
        "- notes\n"
    );
    assert!(!memory_dir(&a, &old_a).join("MEMORY.md").exists());
    let h = std::fs::read_to_string(a.claude.join("history.jsonl")).unwrap();
    assert!(
        h.contains(&format!("\"project\":\"{}\"", new_a.display())),
        "{h}"
    );

    // B follows at its next pull, with its own paths.
    let out = b.ok(&["pull"]);
    let new_b = pb.join("app2");
    assert!(out.contains("Moved 1 session"), "{out}");
    let on_b = b.transcript_path(&new_b.display().to_string(), SID);
    assert!(on_b.exists(), "{out}");
    assert!(
        !b.transcript_path(&pb.join("app").display().to_string(), SID)
            .exists()
    );
    assert!(
        std::fs::read_to_string(&on_b)
            .unwrap()
            .contains(&format!("\"relocatedCwd\":\"{}\"", new_b.display()))
    );
    assert_eq!(
        std::fs::read_to_string(memory_dir(&b, &new_b).join("MEMORY.md")).unwrap(),
        "- notes\n"
    );
    // Nothing moves back.
    assert!(a.ok(&["sync"]).matches("up to date").count() >= 1);
    assert!(
        a.transcript_path(&new_a.display().to_string(), SID)
            .exists()
    );
}
