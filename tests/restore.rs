//! `ccsync restore`: what the repository's history holds, listed, shown and brought back, end
//! to end on simulated machines sharing a local bare remote. Commits get distinct dates from
//! `CCSYNC_TEST_NOW` (ccsync's clock, which its commits take): no test waits for time to pass.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::Value;

const SID: &str = "7e570000-0000-4000-8000-00000000000a";

/// A machine on `remote` with PROJECTS at `~/projects`, syncing everything under HOME.
fn machine(w: &World, name: &str, remote: &Path) -> Machine {
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
    m
}

fn cwd_of(m: &Machine) -> String {
    format!("{}/projects/app", m.home.display())
}

fn project(m: &Machine) -> PathBuf {
    m.claude.join("projects").join(enc(&cwd_of(m)))
}

fn memory(m: &Machine) -> PathBuf {
    project(m).join("memory")
}

/// ccsync on `m` with its clock at `now` (RFC 3339): its commits carry that date.
fn at(m: &Machine, now: &str, args: &[&str]) -> Output {
    m.cmd()
        .env("CCSYNC_TEST_NOW", now)
        .args(args)
        .output()
        .unwrap()
}

fn ok_at(m: &Machine, now: &str, args: &[&str]) -> String {
    let o = at(m, now, args);
    assert!(
        o.status.success(),
        "ccsync {args:?} on {} failed:\n{}{}",
        m.name,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn fails(m: &Machine, args: &[&str]) -> String {
    let o = m.run(args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "ccsync {args:?} should fail:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

/// Every file under a directory (relative path → bytes).
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn head_of(remote: &Path) -> String {
    let o = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(remote)
        .args(["rev-parse", "main"])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// The uuids of the transcript lines of a file, in order.
fn uuids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("uuid").and_then(|u| u.as_str()).map(str::to_string))
        .collect()
}

/// The stored transcript of a session (its segments concatenated), if the repository has it.
fn stored_transcript(remote: &Path, id: &str) -> Option<String> {
    let mut segs: Vec<String> = repo_paths(remote)
        .into_iter()
        .filter(|p| p.contains(&format!("/sessions/{id}/transcript/")))
        .collect();
    if segs.is_empty() {
        return None;
    }
    segs.sort();
    Some(segs.iter().filter_map(|p| repo_file(remote, p)).collect())
}

fn items(m: &Machine, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["restore", "list"];
    a.extend_from_slice(args);
    match m.json(&a) {
        Value::Array(v) => v,
        other => panic!("not a list: {other}"),
    }
}

fn forgotten_ids(remote: &Path) -> Vec<String> {
    repo_file(remote, "forgotten.json")
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("sessions").and_then(|s| s.as_object()).cloned())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn append_turn(m: &Machine, id: &str, uuid: &str) {
    let cwd = cwd_of(m);
    let p = m.transcript_path(&cwd, id);
    let line = user_line(id, &cwd, uuid, None, &ts_at(50), &format!("turn {uuid}"));
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    use std::io::Write;
    writeln!(f, "{line}").unwrap();
}

#[test]
fn a_forgotten_session_comes_back_on_another_machine_and_syncs_again() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    let cwd = cwd_of(&a);
    a.write_transcript(&cwd, SID, conversation(SID, &cwd, "/", 2, 0).as_bytes());
    ok_at(&a, "2031-01-01T10:00:00Z", &["push"]);
    b.ok(&["pull"]);
    let on_b = b.transcript_path(&cwd_of(&b), SID);
    let pulled = std::fs::read(&on_b).unwrap();
    ok_at(&a, "2031-01-02T10:00:00Z", &["forget", SID]);
    assert!(stored_transcript(&remote, SID).is_none());
    assert_eq!(forgotten_ids(&remote), [SID]);

    // B lost its copy too; the history still has the session.
    std::fs::remove_file(&on_b).unwrap();
    let listed = items(&b, &[]);
    let it = listed
        .iter()
        .find(|i| i["item"] == SID)
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(it["kind"], "forgotten_session");
    assert_eq!(it["gone_by"], "a");
    assert_eq!(it["stored_by"], "a");
    assert_eq!(it["lines"], 4);
    assert!(
        it["gone_at"]
            .as_str()
            .unwrap()
            .starts_with("2031-01-02T10:00:00")
    );
    assert_eq!(it["local_path"], on_b.display().to_string());
    let table = b.ok(&["restore"]);
    assert!(
        table.contains(&SID[..8]) && table.contains("forgotten"),
        "{table}"
    );

    // A dry run says what it would do and changes nothing.
    let before = head_of(&remote);
    let out = b.ok(&["restore", &SID[..8], "--dry-run"]);
    assert!(out.contains("Would bring back session"), "{out}");
    assert!(!on_b.exists());
    assert_eq!(head_of(&remote), before, "no commit");

    let out = b.ok(&["restore", &SID[..8]]);
    assert!(out.contains("tombstone lifted"), "{out}");
    assert_eq!(std::fs::read(&on_b).unwrap(), pulled, "B's copy as it was");
    assert!(
        stored_transcript(&remote, SID).is_some(),
        "back in the archive"
    );
    assert!(forgotten_ids(&remote).is_empty());
    assert!(!items(&b, &[]).iter().any(|i| i["item"] == SID));

    // Both machines push it again: B's new turn, then A's (A kept its copy and had
    // remembered the session as forgotten).
    append_turn(&b, SID, "b-after-restore");
    b.ok(&["push"]);
    assert!(uuids(&stored_transcript(&remote, SID).unwrap()).contains(&"b-after-restore".into()));
    a.ok(&["pull"]);
    append_turn(&a, SID, "a-after-restore");
    a.ok(&["push"]);
    let stored = uuids(&stored_transcript(&remote, SID).unwrap());
    assert!(stored.contains(&"a-after-restore".into()), "{stored:?}");
    let on_a = std::fs::read_to_string(a.transcript_path(&cwd, SID)).unwrap();
    assert!(on_a.contains("b-after-restore"), "A has B's turn");

    // Restoring what is there now is refused, with the way to an earlier state.
    let err = fails(&b, &["restore", SID]);
    assert!(
        err.contains("is in the repository now") && err.contains("--at"),
        "{err}"
    );
}

#[test]
fn a_machine_that_cannot_place_a_forgotten_session_still_puts_it_back_for_the_others() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let c = w.machine("c");
    c.init(&remote, &["--sync-dir", "~"]);
    let cwd = cwd_of(&a);
    let path = a.write_transcript(&cwd, SID, conversation(SID, &cwd, "/", 1, 0).as_bytes());
    a.ok(&["push"]);
    a.ok(&["forget", SID]);
    std::fs::remove_file(&path).unwrap();

    // C has no path for PROJECTS: it says so, and puts the session back all the same.
    let out = c.ok(&["restore", SID]);
    assert!(out.contains("put back in the repository"), "{out}");
    assert!(out.contains("not placed on this machine"), "{out}");
    assert!(out.contains("add-placeholder PROJECTS="), "{out}");
    assert_eq!(out.matches("Note:").count(), 1, "{out}");
    assert!(stored_transcript(&remote, SID).is_some());
    assert!(forgotten_ids(&remote).is_empty());
    // A, which can, gets it back at its next pull.
    a.ok(&["pull"]);
    assert!(path.exists());
}

/// A session in the project (it tells every machine where the memory goes) and memory files.
fn seed_memory(m: &Machine, files: &[(&str, &str)]) {
    let cwd = cwd_of(m);
    m.write_transcript(&cwd, SID, conversation(SID, &cwd, "/", 1, 0).as_bytes());
    std::fs::create_dir_all(memory(m)).unwrap();
    for (name, text) in files {
        std::fs::write(memory(m).join(name), text).unwrap();
    }
}

#[test]
fn a_deleted_memory_file_is_listed_and_brought_back() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    let build = format!("# Build\n- run tests in {}/src\n", cwd_of(&a));
    seed_memory(
        &a,
        &[
            ("MEMORY.md", "# Memory\n"),
            ("build.md", &build),
            ("people.md", "# People\n"),
        ],
    );
    ok_at(&a, "2031-01-01T10:00:00Z", &["push"]);
    b.ok(&["pull"]);
    std::fs::remove_file(memory(&b).join("build.md")).unwrap();
    let out = ok_at(&b, "2031-01-02T10:00:00Z", &["push"]);
    assert!(out.contains("Deleted from the sync repository"), "{out}");
    a.ok(&["pull"]);
    assert!(
        !memory(&a).join("build.md").exists(),
        "the deletion propagated"
    );

    let listed = items(&a, &["--memory"]);
    let it = listed
        .iter()
        .find(|i| i["kind"] == "deleted_file")
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert!(it["item"].as_str().unwrap().ends_with("/memory/build.md"));
    assert_eq!(it["gone_by"], "b");
    assert_eq!(it["stored_by"], "a");
    let stored_build = build.replace(&format!("{}/projects", a.home.display()), "{{PROJECTS}}");
    assert_eq!(it["size"], stored_build.len(), "the stored size");
    assert_eq!(
        it["local_path"],
        memory(&a).join("build.md").display().to_string()
    );
    assert!(listed.iter().all(|i| i["kind"] != "forgotten_session"));
    let table = a.ok(&["restore", "list"]);
    assert!(table.contains("memory/build.md"), "{table}");

    let out = a.ok(&["restore", "memory/build.md", "--dry-run"]);
    assert!(out.contains("Would restore"), "{out}");
    assert!(!memory(&a).join("build.md").exists());

    let out = a.ok(&["restore", "memory/build.md"]);
    assert!(out.contains("Restored"), "{out}");
    assert_eq!(
        std::fs::read_to_string(memory(&a).join("build.md")).unwrap(),
        build
    );
    // It syncs like any new file: B has it again after A's push.
    a.ok(&["push"]);
    b.ok(&["pull"]);
    assert_eq!(
        std::fs::read_to_string(memory(&b).join("build.md")).unwrap(),
        format!("# Build\n- run tests in {}/src\n", cwd_of(&b)),
        "in B's paths"
    );
    assert!(
        !items(&a, &["--memory"])
            .iter()
            .any(|i| i["kind"] == "deleted_file")
    );
    // A name nothing has is an error that says where to look.
    let err = fails(&a, &["restore", "memory/nothing.md"]);
    assert!(err.contains("ccsync restore list"), "{err}");
}

#[test]
fn earlier_versions_of_a_memory_file_are_listed_shown_and_restored_at_a_date() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let b = machine(&w, "b", &remote);
    let version = |m: &Machine, n: u32| format!("# Memory v{n}\n- code in {}/lib\n", cwd_of(m));
    seed_memory(&a, &[("MEMORY.md", &version(&a, 1))]);
    ok_at(&a, "2031-03-01T10:00:00Z", &["push"]);
    std::fs::write(memory(&a).join("MEMORY.md"), version(&a, 2)).unwrap();
    ok_at(&a, "2031-03-02T10:00:00Z", &["push"]);
    std::fs::write(memory(&a).join("MEMORY.md"), version(&a, 3)).unwrap();
    ok_at(&a, "2031-03-03T10:00:00Z", &["push"]);
    b.ok(&["pull"]);
    let mem_b = memory(&b).join("MEMORY.md");
    assert_eq!(std::fs::read_to_string(&mem_b).unwrap(), version(&b, 3));

    let listed = items(&b, &["--memory"]);
    let earlier: Vec<&Value> = listed
        .iter()
        .filter(|i| i["kind"] == "earlier_version")
        .collect();
    assert_eq!(earlier.len(), 2, "{listed:?}");
    let stored: Vec<&str> = earlier
        .iter()
        .map(|i| i["stored_at"].as_str().unwrap())
        .collect();
    assert!(stored[0].starts_with("2031-03-02T10:00:00"), "{stored:?}");
    assert!(stored[1].starts_with("2031-03-01T10:00:00"), "{stored:?}");
    assert!(
        earlier[1]["gone_at"]
            .as_str()
            .unwrap()
            .starts_with("2031-03-02")
    );
    assert!(earlier.iter().all(|i| i["stored_by"] == "a"));
    assert_eq!(
        earlier[1]["size"],
        version(&a, 1).len() - cwd_of(&a).len() + "{{PROJECTS}}/app".len()
    );
    // --since leaves out what was replaced before it.
    let since = items(&b, &["--memory", "--since", "2031-03-03"]);
    assert_eq!(
        since
            .iter()
            .filter(|i| i["kind"] == "earlier_version")
            .count(),
        1,
        "{since:?}"
    );

    // Shown as it was that day, in B's paths.
    let shown = b.ok(&["restore", "show", "MEMORY.md", "--at", "2031-03-01"]);
    assert_eq!(shown, version(&b, 1));
    let shown = b.ok(&["restore", "show", "MEMORY.md", "--at", "2031-03-02 23:00"]);
    assert_eq!(shown, version(&b, 2));
    let commit = earlier[1]["commit"].as_str().unwrap();
    let shown = b.ok(&["restore", "show", "MEMORY.md", "--at", &commit[..10]]);
    assert_eq!(shown, version(&b, 1));
    let err = fails(&b, &["restore", "show", "MEMORY.md", "--at", "2020-01-01"]);
    assert!(err.contains("history starts"), "{err}");

    // The current file is there: bringing back needs --at.
    let err = fails(&b, &["restore", "MEMORY.md"]);
    assert!(err.contains("--at"), "{err}");

    // A dry run touches nothing.
    let before = files_under(&b.claude);
    let out = b.ok(&["restore", "MEMORY.md", "--at", "2031-03-02", "--dry-run"]);
    assert!(
        out.contains("Would keep") && out.contains("Would restore"),
        "{out}"
    );
    assert_eq!(files_under(&b.claude), before);

    let out = b.ok(&["restore", "MEMORY.md", "--at", "2031-03-02"]);
    assert!(out.contains("Kept") && out.contains("Restored"), "{out}");
    assert_eq!(std::fs::read_to_string(&mem_b).unwrap(), version(&b, 2));
    let copies: Vec<(String, Vec<u8>)> = files_under(&memory(&b))
        .into_iter()
        .filter(|(k, _)| k.starts_with("MEMORY.conflict-b-"))
        .collect();
    assert_eq!(copies.len(), 1, "the replaced file is kept: {copies:?}");
    assert_eq!(copies[0].1, version(&b, 3).into_bytes());
    // Again: the file holds that version already.
    let out = b.ok(&["restore", "MEMORY.md", "--at", "2031-03-02"]);
    assert!(out.contains("nothing written"), "{out}");

    // Into a file of one's own; never over an existing one.
    let out_file = w.path().join("v1.md");
    b.ok(&[
        "restore",
        "MEMORY.md",
        "--at",
        "2031-03-01",
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), version(&b, 1));
    let err = fails(
        &b,
        &[
            "restore",
            "MEMORY.md",
            "--at",
            "2031-03-02",
            "-o",
            out_file.to_str().unwrap(),
        ],
    );
    assert!(err.contains("exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), version(&b, 1));
}

#[test]
fn a_transcript_at_a_date_comes_back_as_a_new_session_with_only_its_earlier_lines() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    let cwd = cwd_of(&a);
    let first = conversation(SID, &cwd, "/", 2, 0);
    let path = a.write_transcript(&cwd, SID, first.as_bytes());
    ok_at(&a, "2031-05-01T10:00:00Z", &["push"]);
    append_turn(&a, SID, "later-1");
    append_turn(&a, SID, "later-2");
    ok_at(&a, "2031-05-02T10:00:00Z", &["push"]);
    let current = std::fs::read(&path).unwrap();

    let timeline = items(&a, &["--session", &SID[..8]]);
    let lines: Vec<u64> = timeline
        .iter()
        .map(|i| i["lines"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [6, 4], "{timeline:?}");
    assert!(timeline.iter().all(|i| i["kind"] == "session_version"));
    let text = a.ok(&["restore", "list", "--session", SID]);
    assert!(
        text.contains("LINES") && text.contains("2031-05-01"),
        "{text}"
    );

    let shown = a.ok(&["restore", "show", SID, "--at", "2031-05-01"]);
    assert_eq!(shown, first, "the lines it had then, byte for byte");
    let shown = a.ok(&["restore", "show", SID]);
    assert_eq!(shown.as_bytes(), current.as_slice());

    let before = files_under(&a.claude);
    let remote_before = head_of(&remote);
    let out = a.ok(&["restore", SID, "--at", "2031-05-01", "--dry-run"]);
    assert!(
        out.contains("Would restore") && out.contains("new session"),
        "{out}"
    );
    assert_eq!(files_under(&a.claude), before, "a dry run writes nothing");
    assert_eq!(head_of(&remote), remote_before);

    let out = a.ok(&["restore", SID, "--at", "2031-05-01"]);
    assert!(out.contains("as the new session"), "{out}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        current,
        "the session is untouched"
    );
    let new: Vec<(String, Vec<u8>)> = files_under(&project(&a))
        .into_iter()
        .filter(|(k, _)| k.ends_with(".jsonl") && !k.contains(SID))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "{:?}",
        new.iter().map(|n| &n.0).collect::<Vec<_>>()
    );
    let new_id = new[0].0.trim_end_matches(".jsonl").to_string();
    assert!(out.contains(&new_id), "{out}");
    let text = String::from_utf8(new[0].1.clone()).unwrap();
    assert_eq!(uuids(&text), uuids(&first), "only the earlier lines");
    let ids: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["sessionId"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        ids.iter().all(|i| *i == new_id),
        "every line names the new session: {ids:?}"
    );
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "custom-title");
    assert!(
        last["customTitle"]
            .as_str()
            .unwrap()
            .contains("restored as of 2031-05-01")
    );
    assert_eq!(last["sessionId"], new_id.as_str());

    // The new session is an ordinary one: the next push sends it (stamped with the real
    // clock, years before the dates above: a later commit with an older stamp does not change
    // what was there at those dates).
    a.ok(&["push"]);
    assert_eq!(
        uuids(&stored_transcript(&remote, &new_id).unwrap()),
        uuids(&first)
    );
    // Or into a file, as the lines were.
    let out_file = w.path().join("then.jsonl");
    a.ok(&[
        "restore",
        SID,
        "--at",
        "2031-05-01",
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), first);
    // Before the session existed there is nothing to bring back.
    let err = fails(&a, &["restore", SID, "--at", "2031-04-01"]);
    assert!(err.contains("was not in the repository"), "{err}");
}

#[test]
fn dry_runs_write_nothing_anywhere() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    seed_memory(&a, &[("MEMORY.md", "# one\n"), ("notes.md", "# notes\n")]);
    ok_at(&a, "2031-06-01T10:00:00Z", &["push"]);
    std::fs::write(memory(&a).join("MEMORY.md"), "# two\n").unwrap();
    std::fs::remove_file(memory(&a).join("notes.md")).unwrap();
    ok_at(&a, "2031-06-02T10:00:00Z", &["push"]);
    ok_at(&a, "2031-06-03T10:00:00Z", &["forget", SID]);
    std::fs::remove_file(a.transcript_path(&cwd_of(&a), SID)).unwrap();

    let claude = files_under(&a.claude);
    let remote_files = files_under(&remote);
    let head = head_of(&remote);
    for args in [
        vec!["restore", SID, "--dry-run"],
        vec!["restore", SID, "--at", "2031-06-01", "--dry-run"],
        vec!["restore", "notes.md", "--dry-run"],
        vec!["restore", "MEMORY.md", "--at", "2031-06-01", "--dry-run"],
        vec![
            "restore",
            "MEMORY.md",
            "--at",
            "2031-06-01",
            "--dry-run",
            "-o",
            "/nonexistent-dir/x.md",
        ],
    ] {
        let out = a.ok(&args);
        assert!(out.starts_with("Would"), "{args:?}: {out}");
        assert_eq!(
            files_under(&a.claude),
            claude,
            "{args:?} wrote to the Claude Code dir"
        );
        assert_eq!(head_of(&remote), head, "{args:?} committed");
        assert_eq!(
            files_under(&remote),
            remote_files,
            "{args:?} changed the remote"
        );
    }
    assert!(!Path::new("/nonexistent-dir").exists());
    // Without --dry-run the same commands do write.
    a.ok(&["restore", "notes.md"]);
    assert_eq!(
        std::fs::read_to_string(memory(&a).join("notes.md")).unwrap(),
        "# notes\n"
    );
}

#[test]
fn restore_arguments_are_checked() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = machine(&w, "a", &remote);
    assert_eq!(a.run(&["restore", "--dry-run"]).status.code(), Some(2));
    assert_eq!(
        a.run(&["restore", "--at", "2031-01-01"]).status.code(),
        Some(2)
    );
    let err = fails(&a, &["restore", "show", "x", "--at", "yesterday"]);
    assert!(err.contains("is not a date"), "{err}");
    let out = a.ok(&["restore"]);
    assert!(out.contains("Nothing"), "{out}");
    assert_eq!(items(&a, &[]), Vec::<Value>::new());
}
