//! Nothing lost, whatever happens: working directories with odd characters, odd session ids
//! and file names, a lone unterminated line, symbolic links inside the Claude Code dir.
//!
//! No test waits for time to pass: "quiet" files get an mtime in the past, and a live Claude
//! Code is a `sessions/<pid>.json` naming this (living) test process.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn posix(w: &World, name: &str, remote: &Path) -> (Machine, String) {
    let m = w.machine(name);
    let projects = format!("{}/projects", m.home.display());
    m.init(
        remote,
        &[
            "--add-placeholder",
            &format!("PROJECTS={projects}"),
            "--sync-dir",
            "~",
        ],
    );
    (m, projects)
}

/// Set a file's modification time `secs` seconds into the past (no waiting).
fn age(path: &Path, secs: i64) {
    let now = chrono::Utc::now().timestamp();
    ccsync::os::set_mtime(path, now - secs).unwrap();
}

fn replace_bytes(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Mark a session as open in a live Claude Code (this test process), or no longer.
fn set_live(m: &Machine, sid: &str, live: bool) {
    let dir = m.claude.join("sessions");
    let me = std::process::id();
    let p = dir.join(format!("{me}.json"));
    if live {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            &p,
            format!(r#"{{"pid":{me},"sessionId":"{sid}","cwd":"/x","startedAt":1}}"#),
        )
        .unwrap();
    } else {
        std::fs::remove_file(&p).unwrap();
    }
}

/// Every file on `main` of the remote with its content.
fn repo_texts(remote: &Path) -> Vec<(String, String)> {
    repo_paths(remote)
        .into_iter()
        .map(|p| {
            let t = repo_file(remote, &p).unwrap_or_default();
            (p, t)
        })
        .collect()
}

/// POSIX names (quotes, backslashes, newlines are not allowed in Windows names).
#[cfg(unix)]
#[test]
fn sessions_in_odd_working_directories_go_there_and_back_byte_for_byte() {
    const ODD_NAMES: &[&str] = &[
        "quo\"te",
        "back\\slash",
        "tab\there",
        "new\nline",
        "br{{ace}}",
        "lit{{PROJECTS}}eral",
        "日本 é😀",
        "sp ace",
        "ctl\u{1f}/x",
    ];
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, pa) = posix(&w, "a", &remote);
    let (b, pb) = posix(&w, "b", &remote);
    let mut sessions = Vec::new();
    for (i, odd) in ODD_NAMES.iter().enumerate() {
        let sid = format!("0dd0c0d0-0000-4000-8000-0000000000{i:02}");
        let cwd = format!("{pa}/{odd}");
        let mut t = user_line(&sid, &cwd, "u1", None, &ts_at(i as u32), "look at {{this}}");
        t.push('\n');
        t += &assistant_line(
            &sid,
            &cwd,
            "a1",
            "u1",
            &ts_at(i as u32),
            &format!("{cwd}/src/main.rs"),
        );
        t.push('\n');
        let p = a.write_transcript(&cwd, &sid, t.as_bytes());
        sessions.push((sid, odd.to_string(), p, t));
    }
    let out = a.ok(&["push"]);
    assert!(
        out.contains(&format!("Pushed {} new sessions", ODD_NAMES.len())),
        "{out}"
    );
    let o = b.run(&["pull"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("refused"), "{}", stderr(&o));
    for (sid, odd, _, t) in &sessions {
        let got = std::fs::read(b.transcript_path(&format!("{pb}/{odd}"), sid))
            .unwrap_or_else(|e| panic!("{odd:?} not pulled: {e}"));
        assert_eq!(
            got,
            replace_bytes(t.as_bytes(), pa.as_bytes(), pb.as_bytes()),
            "{odd:?}: only the path bytes differ"
        );
        // B continues the conversation; A gets B's line with A's paths.
        let cwd_b = format!("{pb}/{odd}");
        let line = user_line(sid, &cwd_b, "b1", Some("a1"), &ts_at(30), "from B") + "\n";
        let pbt = b.transcript_path(&cwd_b, sid);
        let mut all = got.clone();
        all.extend_from_slice(line.as_bytes());
        std::fs::write(&pbt, &all).unwrap();
    }
    b.ok(&["push"]);
    a.ok(&["pull"]);
    for (_, odd, p, t) in &sessions {
        let got = std::fs::read(p).unwrap();
        assert!(
            got.starts_with(t.as_bytes()),
            "{odd:?}: A's own lines unchanged"
        );
        let added = String::from_utf8(got[t.len()..].to_vec()).unwrap();
        assert!(
            added.contains("\"from B\"") && !added.contains(&pb) && added.contains(&pa),
            "{odd:?}: B's line in A's paths: {added}"
        );
    }
    assert!(a.ok(&["push"]).contains("up to date"));
}

#[test]
fn session_ids_pull_would_refuse_are_refused_at_push_with_the_reason() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, pa) = posix(&w, "a", &remote);
    let cwd = format!("{pa}/app");
    let long = "x".repeat(129);
    let bad = ["we.ird", "sp ace", "日本", long.as_str()];
    for id in bad {
        let t = user_line(id, &cwd, "u1", None, &ts_at(0), "hi") + "\n";
        a.write_transcript(&cwd, id, t.as_bytes());
    }
    let good = "600d0000-0000-4000-8000-000000000001";
    let t = user_line(good, &cwd, "u1", None, &ts_at(0), "hi") + "\n";
    a.write_transcript(&cwd, good, t.as_bytes());
    let out = a.ok(&["push"]);
    assert!(out.contains("Pushed 1 new session"), "{out}");
    assert!(
        out.contains("Skipped") && out.contains("is not a session id"),
        "{out}"
    );
    let report = a.json(&["push"]);
    let skipped: Vec<&str> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session"].as_str().unwrap())
        .collect();
    for id in bad {
        assert!(skipped.contains(&id), "{id} reported: {report}");
    }
    let paths = repo_paths(&remote);
    assert!(paths.iter().any(|p| p.contains(good)));
    for id in bad {
        assert!(!paths.iter().any(|p| p.contains(id)), "{id} not stored");
    }
}

#[test]
fn file_names_the_repository_cannot_hold_are_reported_and_the_rest_syncs() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, pa) = posix(&w, "a", &remote);
    let (b, pb) = posix(&w, "b", &remote);
    let sid = "f11e0000-0000-4000-8000-000000000001";
    let cwd = format!("{pa}/app");
    let t = user_line(sid, &cwd, "u1", None, &ts_at(0), "hi") + "\n";
    let p = a.write_transcript(&cwd, sid, t.as_bytes());
    let folder = p.parent().unwrap().join(sid);
    std::fs::create_dir_all(folder.join("tool-results")).unwrap();
    std::fs::create_dir_all(folder.join("odd.jsonl")).unwrap();
    std::fs::write(folder.join("tool-results/ok.txt"), "fine\n").unwrap();
    std::fs::write(folder.join("tool-results/a:b.txt"), "colon\n").unwrap();
    std::fs::write(folder.join("tool-results/CON"), "device\n").unwrap();
    std::fs::write(folder.join("odd.jsonl/notes.txt"), "log-like folder\n").unwrap();
    let o = a.run(&["push"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for name in ["a:b.txt", "CON", "notes.txt"] {
        assert!(
            err.contains(name) && err.contains("not sent"),
            "{name}: {err}"
        );
    }
    let o = b.run(&["pull"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("refused"),
        "nothing unpullable was stored: {}",
        stderr(&o)
    );
    let pbt = b.transcript_path(&format!("{pb}/app"), sid);
    assert_eq!(std::fs::read_to_string(&pbt).unwrap(), t.replace(&pa, &pb));
    let tb = pbt.parent().unwrap().join(sid).join("tool-results/ok.txt");
    assert_eq!(std::fs::read_to_string(tb).unwrap(), "fine\n");
}

#[test]
fn an_unterminated_line_is_sent_once_the_file_is_quiet_even_if_its_stat_never_changes() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, pa) = posix(&w, "a", &remote);
    let (b, pb) = posix(&w, "b", &remote);
    let cwd = format!("{pa}/app");
    let cwd_b = format!("{pb}/app");

    // A lone line without a newline, quiet by its mtime but open in a live Claude Code.
    let lone = "10e00000-0000-4000-8000-000000000001";
    let line = user_line(lone, &cwd, "u1", None, &ts_at(0), "the only line");
    let p = a.write_transcript(&cwd, lone, line.as_bytes());
    age(&p, 3600);
    set_live(&a, lone, true);
    let out = a.ok(&["push"]);
    assert!(out.contains("Waiting") && out.contains("10e00000"), "{out}");
    assert!(
        !repo_paths(&remote).iter().any(|x| x.contains(lone)),
        "nothing listed that could not be pulled"
    );
    // Claude Code exits; the file is not touched again.
    set_live(&a, lone, false);
    let before = std::fs::metadata(&p).unwrap().modified().unwrap();
    let out = a.ok(&["push"]);
    assert!(out.contains("Pushed 1 new session"), "{out}");
    assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), before);
    b.ok(&["pull"]);
    let got = std::fs::read(b.transcript_path(&cwd_b, lone)).unwrap();
    assert_eq!(got, line.replace(&pa, &pb).into_bytes());
    assert!(!got.ends_with(b"\n"));

    // A lone line just written (not quiet yet): held back; once its mtime is old, sent.
    let fresh = "10e00000-0000-4000-8000-000000000002";
    let line2 = user_line(fresh, &cwd, "u1", None, &ts_at(1), "just written");
    let p2 = a.write_transcript(&cwd, fresh, line2.as_bytes());
    let out = a.ok(&["push"]);
    assert!(out.contains("Waiting") && out.contains("10e00000"), "{out}");
    assert!(!repo_paths(&remote).iter().any(|x| x.contains(fresh)));
    age(&p2, 60);
    assert!(a.ok(&["push"]).contains("Pushed 1 new session"));

    // Complete lines and an unfinished last one: the complete ones go at once, the last one
    // when Claude Code has exited, without the file changing.
    let tail = "10e00000-0000-4000-8000-000000000003";
    let first = user_line(tail, &cwd, "u1", None, &ts_at(2), "complete") + "\n";
    let last = user_line(tail, &cwd, "u2", Some("u1"), &ts_at(3), "unfinished");
    let p3 = a.write_transcript(&cwd, tail, format!("{first}{last}").as_bytes());
    age(&p3, 3600);
    set_live(&a, tail, true);
    let out = a.ok(&["push"]);
    assert!(out.contains("Pushed 1 new session (+1 lines"), "{out}");
    set_live(&a, tail, false);
    let out = a.ok(&["push"]);
    assert!(out.contains("(+1 lines"), "the last line follows: {out}");
    b.ok(&["pull"]);
    assert_eq!(
        std::fs::read_to_string(b.transcript_path(&cwd_b, tail)).unwrap(),
        format!("{first}{last}").replace(&pa, &pb)
    );
    assert!(a.ok(&["push"]).contains("up to date"));
}

#[cfg(unix)]
#[test]
fn symbolic_links_inside_the_claude_dir_are_never_followed() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, pa) = posix(&w, "a", &remote);
    let (b, pb) = posix(&w, "b", &remote);
    let outside = w.path().join("elsewhere");
    let put = |rel: &str, text: &str| -> PathBuf {
        let p = outside.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    };
    let sid = "11e00000-0000-4000-8000-000000000001";
    let cwd = format!("{pa}/app");
    let t = user_line(sid, &cwd, "u1", None, &ts_at(0), "hi") + "\n";
    let p = a.write_transcript(&cwd, sid, t.as_bytes());
    let folder = p.parent().unwrap().to_path_buf();
    // Memory synced once as a real folder…
    std::fs::create_dir_all(folder.join("memory")).unwrap();
    std::fs::write(folder.join("memory/MEMORY.md"), "inside\n").unwrap();
    a.ok(&["push"]);
    // … then replaced by a link, like every other kind of entry.
    std::fs::remove_dir_all(folder.join("memory")).unwrap();
    put("mem/MEMORY.md", "outside secret memory\n");
    put("mem/extra.md", "outside secret extra\n");
    std::os::unix::fs::symlink(outside.join("mem"), folder.join("memory")).unwrap();
    put(
        "sess/subagents/agent-z.jsonl",
        "{\"x\":\"outside secret agent\"}\n",
    );
    std::os::unix::fs::symlink(outside.join("sess"), folder.join(sid)).unwrap();
    put("fh/abc@v1", "outside secret history\n");
    std::fs::create_dir_all(a.claude.join("file-history")).unwrap();
    std::os::unix::fs::symlink(outside.join("fh"), a.claude.join("file-history").join(sid))
        .unwrap();
    put("plans/p.md", "outside secret plan\n");
    std::os::unix::fs::symlink(outside.join("plans"), a.claude.join("plans")).unwrap();
    let md = put("CLAUDE.md", "outside secret claude.md\n");
    std::os::unix::fs::symlink(&md, a.claude.join("CLAUDE.md")).unwrap();
    let other = "11e00000-0000-4000-8000-000000000002";
    let ot = user_line(other, &cwd, "u1", None, &ts_at(1), "outside secret session") + "\n";
    let of = put("other.jsonl", &ot);
    std::os::unix::fs::symlink(&of, folder.join(format!("{other}.jsonl"))).unwrap();
    put("proj/33e00000-0000-4000-8000-000000000003.jsonl", &ot);
    std::os::unix::fs::symlink(
        outside.join("proj"),
        a.claude.join("projects").join("-linked"),
    )
    .unwrap();
    let hist = serde_json::json!({"display": "outside secret prompt", "pastedContents": {},
        "timestamp": 1_700_000_000_000u64, "project": cwd, "sessionId": sid});
    let hf = put("history.jsonl", &format!("{hist}\n"));
    std::os::unix::fs::symlink(&hf, a.claude.join("history.jsonl")).unwrap();
    let before = std::fs::read_dir(&outside).unwrap().count();

    let o = a.run(&["push"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("symbolic link"), "{err}");
    for link in [
        folder.join("memory"),
        folder.join(sid),
        a.claude.join("file-history").join(sid),
        a.claude.join("plans"),
        a.claude.join("CLAUDE.md"),
        folder.join(format!("{other}.jsonl")),
        a.claude.join("projects/-linked"),
        a.claude.join("history.jsonl"),
    ] {
        assert!(
            err.contains(&link.display().to_string()),
            "{} named: {err}",
            link.display()
        );
    }
    for (path, text) in repo_texts(&remote) {
        assert!(!text.contains("outside secret"), "{path} leaked: {text}");
    }
    let mem: Vec<(String, String)> = repo_texts(&remote)
        .into_iter()
        .filter(|(p, _)| p.contains("/memory/"))
        .collect();
    assert_eq!(mem.len(), 1, "{mem:?}");
    assert_eq!(mem[0].1, "inside\n", "neither replaced nor deleted");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), before);

    // B: links where pull would write; nothing is written through them.
    let bfolder = b.claude.join("projects").join(enc(&format!("{pb}/app")));
    let theirs = w.path().join("b-elsewhere");
    std::fs::create_dir_all(theirs.join("mem")).unwrap();
    std::fs::create_dir_all(theirs.join("plans")).unwrap();
    std::fs::create_dir_all(&bfolder).unwrap();
    std::os::unix::fs::symlink(theirs.join("mem"), bfolder.join("memory")).unwrap();
    let o = b.run(&["pull"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&bfolder.join("memory").display().to_string()),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_dir(theirs.join("mem")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_to_string(b.transcript_path(&format!("{pb}/app"), sid)).unwrap(),
        t.replace(&pa, &pb),
        "the session itself syncs"
    );
}

#[test]
fn a_file_in_the_way_is_named_with_what_to_do() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, pa) = posix(&w, "a", &remote);
    let (b, pb) = posix(&w, "b", &remote);
    let sid = "e0e00000-0000-4000-8000-000000000001";
    let cwd = format!("{pa}/app");
    let t = user_line(sid, &cwd, "u1", None, &ts_at(0), "hi") + "\n";
    let p = a.write_transcript(&cwd, sid, t.as_bytes());
    let sub = p.parent().unwrap().join(sid).join("subagents");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("agent-a1.jsonl"), "{\"x\":1}\n").unwrap();
    a.ok(&["push"]);
    // On B a plain file sits where the session's subagents folder goes.
    let bt = b.transcript_path(&format!("{pb}/app"), sid);
    let blocker = bt.parent().unwrap().join(sid).join("subagents");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, "in the way").unwrap();
    let o = b.run(&["pull"]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!(
            "{} is a file where a folder is needed: move it aside, then run the command again",
            blocker.display()
        )),
        "{err}"
    );
}

/// What a system crash right after a pull leaves in `state/unsynced.json`: the same record,
/// from another boot.
#[cfg(target_os = "linux")]
fn as_after_a_crash(m: &Machine) -> serde_json::Value {
    let p = m.tool.join("state/unsynced.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p).expect("a pull of new sessions records them"))
            .unwrap();
    v["boot"] = "another-boot".into();
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    v
}

/// A pull writes sessions this machine did not have without a flush per file; after a system
/// crash a torn copy is moved aside (never deleted) and the next pull writes it again, and a
/// push sends nothing from it.
#[cfg(target_os = "linux")]
#[test]
fn sessions_torn_by_a_crash_after_a_pull_are_set_aside_and_pulled_again() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, pa) = posix(&w, "a", &remote);
    let (b, pb) = posix(&w, "b", &remote);
    let cwd = format!("{pa}/app");
    let cwd_b = format!("{pb}/app");
    let torn = "7e000000-0000-4000-8000-000000000001";
    let whole = "7e000000-0000-4000-8000-000000000002";
    for (i, sid) in [torn, whole].into_iter().enumerate() {
        let i = i as u32;
        let file = format!("{cwd}/src/main.rs");
        let text = user_line(sid, &cwd, "u1", None, &ts_at(i), "first")
            + "\n"
            + &assistant_line(sid, &cwd, "a1", "u1", &ts_at(i + 1), &file)
            + "\n";
        a.write_transcript(&cwd, sid, text.as_bytes());
    }
    a.ok(&["push"]);
    b.ok(&["pull"]);
    let pending = as_after_a_crash(&b);
    let ids: Vec<&str> = pending["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(ids.contains(&torn) && ids.contains(&whole), "{pending}");
    let tp = b.transcript_path(&cwd_b, torn);
    let want = std::fs::read(&tp).unwrap();
    // The crash cut the file in the middle of its second line.
    std::fs::write(&tp, &want[..want.len() - 20]).unwrap();
    let whole_before = std::fs::read(b.transcript_path(&cwd_b, whole)).unwrap();

    // A push first: nothing of the torn copy is sent (it is moved aside before anything is
    // read), and the pull after brings the session back whole.
    let out = b.ok(&["push"]);
    assert!(!out.contains("+1 lines"), "{out}");
    assert!(!b.tool.join("state/unsynced.json").exists());
    let aside: Vec<_> = walk(&b.tool.join("recovered"));
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), &want[..want.len() - 20]);
    assert!(!tp.exists());
    b.ok(&["pull"]);
    assert_eq!(std::fs::read(&tp).unwrap(), want);
    assert_eq!(
        std::fs::read(b.transcript_path(&cwd_b, whole)).unwrap(),
        whole_before,
        "a whole session stays as it is"
    );
    // And the repository holds each line once.
    let out = b.ok(&["push"]);
    assert!(out.contains("up to date"), "{out}");
    a.ok(&["pull"]);
    assert_eq!(
        std::fs::read_to_string(a.transcript_path(&cwd, torn)).unwrap(),
        String::from_utf8(want).unwrap().replace(&pb, &pa)
    );
}

#[cfg(target_os = "linux")]
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
