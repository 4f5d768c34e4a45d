//! A remote that loses commits, and a local clone that breaks: simulated machines sharing a
//! local bare remote, which the tests delete, empty, rewind or cut down, and clones the tests
//! damage. After each, the machines' next commands make the repository whole again — every
//! line of every machine is read back from the remote — and no command says "up to date" while
//! the remote lacks something the machine running it has.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// A machine with its projects under `<home>/projects`, all of them synced.
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

fn cwd(m: &Machine) -> String {
    format!("{}/projects/app", m.home.display())
}

/// A new session of `turns` turns on `m`, with its entry in the prompt history.
fn new_session(m: &Machine, sid: &str, turns: usize) {
    m.write_transcript(
        &cwd(m),
        sid,
        conversation(sid, &cwd(m), "/", turns, 0).as_bytes(),
    );
    let entry = serde_json::json!({"display": format!("start {sid}"), "pastedContents": {},
        "timestamp": 1_700_000_000_000u64, "project": cwd(m), "sessionId": sid});
    let path = m.claude.join("history.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(&format!("{entry}\n"));
    std::fs::write(&path, text).unwrap();
}

/// The session ids the remote's prompt history names.
fn remote_history(remote: &Path) -> BTreeSet<String> {
    repo_paths(remote)
        .iter()
        .filter(|p| p.starts_with("history/"))
        .flat_map(|p| {
            repo_file(remote, p)
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["sessionId"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Append a turn with uuid `uuid` to a session `m` has.
fn append(m: &Machine, sid: &str, uuid: &str) {
    let path = local_transcripts(m)
        .into_iter()
        .find(|p| p.file_stem().is_some_and(|s| s == sid))
        .unwrap_or_else(|| panic!("{} has no session {sid}", m.name));
    let line = user_line(sid, &cwd(m), uuid, None, &ts_at(500), "more");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&line);
    text.push('\n');
    std::fs::write(&path, text).unwrap();
}

/// Write the project memory of the test project on `m`.
fn write_memory(m: &Machine, text: &str) {
    let dir = m.claude.join("projects").join(enc(&cwd(m))).join("memory");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("MEMORY.md"), text).unwrap();
}

fn memory_of(m: &Machine) -> String {
    let p = m
        .claude
        .join("projects")
        .join(enc(&cwd(m)))
        .join("memory/MEMORY.md");
    std::fs::read_to_string(p).unwrap()
}

/// The stored project memory, and that no conflict copy exists anywhere.
fn remote_memory(remote: &Path, machines: &[&Machine]) -> String {
    let paths = repo_paths(remote);
    assert!(!paths.iter().any(|p| p.contains(".conflict-")), "{paths:?}");
    for m in machines {
        let dir = m.claude.join("projects").join(enc(&cwd(m))).join("memory");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "conflict copies on {}: {names:?}", m.name);
    }
    let p = paths
        .iter()
        .find(|p| p.ends_with("/memory/MEMORY.md"))
        .expect("no memory stored");
    repo_file(remote, p).unwrap()
}

fn local_transcripts(m: &Machine) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(folders) = std::fs::read_dir(m.claude.join("projects")) else {
        return out;
    };
    for f in folders.flatten() {
        for e in std::fs::read_dir(f.path()).unwrap().flatten() {
            let p = e.path();
            if p.is_file() && p.extension().is_some_and(|x| x == "jsonl") {
                out.push(p);
            }
        }
    }
    out
}

fn uuids(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["uuid"].as_str().map(str::to_string))
        .collect()
}

/// Every line (by uuid) of every session a machine has, by session id.
fn local_lines(m: &Machine) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in local_transcripts(m) {
        let sid = p.file_stem().unwrap().to_string_lossy().into_owned();
        out.entry(sid)
            .or_default()
            .extend(uuids(&std::fs::read_to_string(&p).unwrap()));
    }
    out
}

/// Every line (by uuid, with repeats) of every session the remote holds, by session id.
fn remote_lines(remote: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in repo_paths(remote) {
        let parts: Vec<&str> = p.split('/').collect();
        if let ["projects", _, "sessions", sid, "transcript", _] = parts.as_slice() {
            let text = repo_file(remote, &p).unwrap();
            out.entry(sid.to_string()).or_default().extend(uuids(&text));
        }
    }
    out
}

/// What of `m`'s lines the remote lacks (session id and uuid).
fn missing_on_remote(remote: &Path, m: &Machine) -> Vec<(String, String)> {
    let stored = remote_lines(remote);
    let mut out = Vec::new();
    for (sid, lines) in local_lines(m) {
        for u in lines {
            if !stored.get(&sid).is_some_and(|s| s.contains(&u)) {
                out.push((sid.clone(), u));
            }
        }
    }
    out
}

/// The remote holds every line of every machine exactly once, and its skeleton.
fn assert_whole(remote: &Path, machines: &[&Machine]) {
    for m in machines {
        let missing = missing_on_remote(remote, m);
        assert!(
            missing.is_empty(),
            "the remote lacks lines of {}: {missing:?}",
            m.name
        );
        assert!(
            repo_file(remote, &format!("machines/{}.json", m.name)).is_some(),
            "machines/{}.json is missing",
            m.name
        );
    }
    let history = remote_history(remote);
    for (sid, lines) in remote_lines(remote) {
        let set: BTreeSet<&String> = lines.iter().collect();
        assert_eq!(set.len(), lines.len(), "a line of {sid} is stored twice");
        assert!(
            history.contains(&sid),
            "the history lacks {sid}: {history:?}"
        );
    }
    let marker = repo_file(remote, "ccsync.json").expect("ccsync.json is missing");
    assert!(marker.contains("\"ccsync\""), "{marker}");
    let sp = repo_file(remote, "shared_placeholders.json").expect("no shared_placeholders.json");
    for m in machines {
        assert!(sp.contains(&format!("\"{}\"", m.name)), "{sp}");
    }
}

/// Run a command on a machine, insisting on success and on honesty: when it says "up to date",
/// the remote holds every line this machine has. Returns (stdout, stderr).
fn run(m: &Machine, remote: &Path, args: &[&str]) -> (String, String) {
    let out = m.run(args);
    let (so, se) = (stdout(&out), stderr(&out));
    eprintln!("### {} {args:?}\n{so}{se}", m.name);
    assert!(
        out.status.success(),
        "ccsync {args:?} on {} failed:\nstdout: {so}\nstderr: {se}",
        m.name
    );
    if so.contains("up to date") {
        let missing = missing_on_remote(remote, m);
        assert!(
            missing.is_empty(),
            "ccsync {args:?} on {} said up to date, but the remote lacks {missing:?}:\n{so}",
            m.name
        );
    }
    (so, se)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out: Output = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@x")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@x")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Two machines, each with a session of its own and a copy of the other's.
fn two_machines(w: &World, remote: &Path) -> (Machine, Machine) {
    let a = machine(w, "a", remote);
    let b = machine(w, "b", remote);
    new_session(&a, SA, 3);
    run(&a, remote, &["push"]);
    new_session(&b, SB, 2);
    run(&b, remote, &["sync"]);
    run(&a, remote, &["sync"]);
    assert_whole(remote, &[&a, &b]);
    (a, b)
}

const SA: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const SB: &str = "bbbbbbbb-0000-4000-8000-000000000002";
const SC: &str = "cccccccc-0000-4000-8000-000000000003";

fn says_repaired(stderr: &str) {
    assert!(
        stderr.contains("warning: the sync remote") && stderr.contains("everything this machine"),
        "no warning about the remote: {stderr}"
    );
}

#[test]
fn a_deleted_branch_is_noticed_and_filled_again_by_every_machine() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, b) = two_machines(&w, &remote);
    write_memory(&a, "# Memory\n- one\n");
    run(&a, &remote, &["push"]);
    run(&b, &remote, &["pull"]);
    // Each machine has lines only it has.
    append(&a, SA, "a-only-1");
    append(&b, SB, "b-only-1");
    git(&remote, &["update-ref", "-d", "refs/heads/main"]);

    // A push after the loss: it says so and sends everything (A's copy of B's session too).
    let (so, se) = run(&a, &remote, &["push"]);
    says_repaired(&se);
    assert!(se.contains("no longer has the branch main"), "{se}");
    assert!(!so.contains("up to date"), "{so}");
    assert!(
        repo_file(&remote, "ccsync.json").is_some(),
        "marker written again"
    );
    assert!(missing_on_remote(&remote, &a).is_empty());

    // B's push (nothing changed since its last sync but its own new line) sends what it has;
    // the repository stays a ccsync repository, never only `history/`.
    let (so, se) = run(&b, &remote, &["push"]);
    says_repaired(&se);
    assert!(!so.contains("up to date"), "{so}");
    assert_whole(&remote, &[&a, &b]);

    // Both in step again, then quiet; a new machine joins and gets everything.
    run(&a, &remote, &["sync"]);
    run(&b, &remote, &["sync"]);
    let (so, se) = run(&a, &remote, &["sync"]);
    assert!(so.contains("Push: everything is up to date"), "{so}");
    assert!(!se.contains("warning"), "{se}");
    let c = machine(&w, "c", &remote);
    run(&c, &remote, &["pull"]);
    assert_eq!(local_lines(&c), local_lines(&a));
    assert_whole(&remote, &[&a, &b, &c]);
    assert_eq!(remote_memory(&remote, &[&a, &b, &c]), "# Memory\n- one\n");
}

#[test]
fn a_remote_replaced_by_an_empty_repository_is_filled_again() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, b) = two_machines(&w, &remote);
    append(&b, SB, "b-only-1");
    std::fs::remove_dir_all(&remote).unwrap();
    git(&remote, &["init", "--bare", "--quiet"]);

    // A pull says what happened and what to do; it never says "up to date".
    let (so, se) = run(&a, &remote, &["pull"]);
    assert!(se.contains("no longer has the branch main"), "{se}");
    assert!(se.contains("run `ccsync push`"), "{se}");
    assert!(!so.contains("up to date"), "{so}");
    // The next push sends everything (the pull dropped the records).
    let (so, _) = run(&a, &remote, &["push"]);
    assert!(so.contains("Pushed 2 new sessions"), "{so}");
    assert!(missing_on_remote(&remote, &a).is_empty());

    // B finds a new history that does not contain what it saw: it pulls A's, sends its own.
    let (so, se) = run(&b, &remote, &["sync"]);
    says_repaired(&se);
    assert!(se.contains("was rewound or replaced"), "{se}");
    assert!(!so.contains("up to date"), "{so}");
    assert_whole(&remote, &[&a, &b]);
    run(&a, &remote, &["sync"]);
    assert_eq!(local_lines(&a), local_lines(&b));
}

#[test]
fn lines_lost_to_a_force_push_come_back_from_the_machines_that_have_them() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, b) = two_machines(&w, &remote);
    write_memory(&a, "# Memory\n- one\n");
    run(&a, &remote, &["push"]);
    run(&b, &remote, &["pull"]);
    let old = git(&remote, &["rev-parse", "main"]);
    // After `old`: B adds to A's session and starts another; A adds to its own and to the
    // memory (which B pulls); both push.
    append(&b, SA, "b-in-a-1");
    new_session(&b, SC, 2);
    run(&b, &remote, &["push"]);
    append(&a, SA, "a-in-a-1");
    write_memory(&a, "# Memory\n- one\n- two\n");
    run(&a, &remote, &["push"]);
    run(&b, &remote, &["pull"]);
    assert!(missing_on_remote(&remote, &a).is_empty());
    // Someone force-pushes the branch back to `old`.
    git(&remote, &["update-ref", "refs/heads/main", &old]);
    assert!(!missing_on_remote(&remote, &b).is_empty());

    // A's push has nothing new locally, yet notices and sends A's lines again.
    let (so, se) = run(&a, &remote, &["push"]);
    says_repaired(&se);
    assert!(se.contains("was rewound or replaced"), "{se}");
    assert!(!so.contains("up to date"), "{so}");
    assert!(missing_on_remote(&remote, &a).is_empty());
    // B has lines nobody else has (its own in A's session, session C): its push brings them.
    let (so, se) = run(&b, &remote, &["push"]);
    says_repaired(&se);
    assert!(!so.contains("up to date"), "{so}");
    assert_whole(&remote, &[&a, &b]);
    let rl = remote_lines(&remote);
    assert!(rl[SA].contains(&"b-in-a-1".to_string()) && rl[SA].contains(&"a-in-a-1".to_string()));
    assert!(rl.contains_key(SC));

    // Everyone converges; the memory is the newest version, not reverted, no conflict copy.
    run(&a, &remote, &["sync"]);
    run(&b, &remote, &["sync"]);
    assert_eq!(local_lines(&a), local_lines(&b));
    let newest = "# Memory\n- one\n- two\n";
    assert_eq!(remote_memory(&remote, &[&a, &b]), newest);
    assert_eq!(
        (memory_of(&a), memory_of(&b)),
        (newest.into(), newest.into())
    );
    let (so, _) = run(&a, &remote, &["push"]);
    assert!(so.contains("up to date"), "{so}");
}

/// Make `main` of the remote a commit holding only the `history/` folder of the current head:
/// on top of it (`child`) or as a new root.
fn cut_to_history(remote: &Path, child: bool) {
    let history = git(remote, &["rev-parse", "main:history"]);
    let tree = {
        let mut c = Command::new("git")
            .arg("--git-dir")
            .arg(remote)
            .args(["mktree"])
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("040000 tree {history}\thistory\n").as_bytes())
            .unwrap();
        let out = c.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let parent = git(remote, &["rev-parse", "main"]);
    let commit = if child {
        git(
            remote,
            &["commit-tree", &tree, "-p", &parent, "-m", "partial"],
        )
    } else {
        git(remote, &["commit-tree", &tree, "-m", "partial"])
    };
    git(remote, &["update-ref", "refs/heads/main", &commit]);
    assert_eq!(
        repo_paths(remote)
            .iter()
            .filter(|p| !p.starts_with("history/"))
            .count(),
        0
    );
}

#[test]
fn a_repository_left_with_only_history_is_repaired_not_refused() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, b) = two_machines(&w, &remote);
    // A commit on top of what both saw that keeps only `history/`: nothing was rewound, but
    // the marker, the machine records and every session are gone.
    cut_to_history(&remote, true);

    let (so, se) = run(&b, &remote, &["sync"]);
    assert!(!se.contains("not a ccsync repository"), "{se}");
    says_repaired(&se);
    assert!(se.contains("lost its format marker ccsync.json"), "{se}");
    assert!(!so.contains("up to date"), "{so}");
    // What was left holds compressed segments: the marker written back says version 3.
    let marker: serde_json::Value =
        serde_json::from_str(&repo_file(&remote, "ccsync.json").unwrap()).unwrap();
    assert_eq!(
        (marker["version"].as_u64(), marker["segments"].as_str()),
        (Some(3), Some("zstd")),
        "{marker}"
    );
    assert!(missing_on_remote(&remote, &b).is_empty());
    let (_, se) = run(&a, &remote, &["sync"]);
    assert!(!se.contains("not a ccsync repository"), "{se}");
    assert_whole(&remote, &[&a, &b]);

    // The same left as a new root (a replaced repository holding only `history/`).
    cut_to_history(&remote, false);
    let (_, se) = run(&a, &remote, &["sync"]);
    says_repaired(&se);
    let (_, se) = run(&b, &remote, &["sync"]);
    says_repaired(&se);
    assert_whole(&remote, &[&a, &b]);
}

#[test]
fn init_on_a_repository_left_with_only_history_repairs_it() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, b) = two_machines(&w, &remote);
    cut_to_history(&remote, false);

    // A new machine joins it: accepted as a damaged ccsync repository, marker written again.
    let c = w.machine("c");
    let projects = format!("{}/projects", c.home.display());
    let out = c.run(&[
        "init",
        "--yes",
        "--machine-id",
        "c",
        "--remote",
        remote.to_str().unwrap(),
        "--add-placeholder",
        &format!("PROJECTS={projects}"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        repo_file(&remote, "ccsync.json").is_some(),
        "marker written by init"
    );
    assert!(repo_file(&remote, "machines/c.json").is_some());
    // Machines set up before are not turned away either, and bring their sessions back.
    run(&a, &remote, &["sync"]);
    run(&b, &remote, &["sync"]);
    assert_whole(&remote, &[&a, &b]);
    run(&c, &remote, &["pull"]);
    assert_eq!(local_lines(&c).len(), 2);
    // Running init again on a machine set up before is fine as well.
    a.init(
        &remote,
        &[
            "--add-placeholder",
            &format!("PROJECTS={}/projects", a.home.display()),
        ],
    );
}

/// The local clone of a machine.
fn clone_of(m: &Machine) -> PathBuf {
    m.tool.join("repo.git")
}

fn set_aside_clones(m: &Machine) -> usize {
    std::fs::read_dir(&m.tool)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("repo.git.broken-")
        })
        .count()
}

/// Replace an object of a clone with garbage. Its packs are unpacked first, into loose objects
/// that are files of the clone alone (a local clone shares files with its remote by hard links).
fn corrupt_object(clone: &Path, oid: &str) {
    let packs = clone.join("objects/pack");
    let outside = clone.parent().unwrap().join("unpacked");
    std::fs::create_dir_all(&outside).unwrap();
    for e in std::fs::read_dir(&packs).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "pack") {
            let moved = outside.join(p.file_name().unwrap());
            std::fs::rename(&p, &moved).unwrap();
            let _ = std::fs::remove_file(p.with_extension("idx"));
            let _ = std::fs::remove_file(p.with_extension("keep"));
            let _ = std::fs::remove_file(p.with_extension("rev"));
            let status = Command::new("git")
                .arg("--git-dir")
                .arg(clone)
                .args(["unpack-objects", "-q"])
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .stdin(std::fs::File::open(&moved).unwrap())
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    let path = clone.join("objects").join(&oid[..2]).join(&oid[2..]);
    assert!(
        path.is_file(),
        "{oid} is not a loose object of {}",
        clone.display()
    );
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"this is not a zlib stream").unwrap();
}

fn says_clone_repaired(m: &Machine, stderr: &str) {
    let clone = clone_of(m);
    assert!(
        stderr.contains(&format!("the local clone {} is damaged", clone.display())),
        "the message names the local clone: {stderr}"
    );
    assert!(!stderr.contains("cannot reach the sync remote"), "{stderr}");
}

#[test]
fn a_tracking_ref_naming_a_missing_object_is_repaired() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, b) = two_machines(&w, &remote);
    std::fs::write(
        clone_of(&b).join("refs/remotes/origin/main"),
        "0123456789abcdef0123456789abcdef01234567\n",
    )
    .unwrap();
    append(&a, SA, "a-after-damage");
    run(&a, &remote, &["push"]);

    let (so, se) = run(&b, &remote, &["sync"]);
    says_clone_repaired(&b, &se);
    assert!(!so.contains("Pull: everything is up to date"), "{so}");
    assert_eq!(set_aside_clones(&b), 1, "the damaged clone is kept");
    assert!(local_lines(&b)[SA].contains("a-after-damage"));
    // Every later command works.
    let (_, se) = run(&b, &remote, &["sync"]);
    assert!(!se.contains("warning"), "{se}");
    run(&b, &remote, &["list", "--remote"]);
    assert_whole(&remote, &[&a, &b]);
}

#[test]
fn corrupt_objects_and_a_missing_pack_in_the_clone_are_repaired() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, b) = two_machines(&w, &remote);
    let clone = clone_of(&b);
    // A transcript segment of A's session, read by a full pull (its stored name).
    let seg = repo_stored_paths(&remote)
        .into_iter()
        .find(|p| p.contains(SA) && p.contains("/transcript/"))
        .unwrap();
    let blob = git(
        &clone,
        &["rev-parse", &format!("refs/remotes/origin/main:{seg}")],
    );
    corrupt_object(&clone, &blob);
    let (_, se) = run(&b, &remote, &["pull", "--force"]);
    says_clone_repaired(&b, &se);
    assert_eq!(set_aside_clones(&b), 1);
    assert_eq!(local_lines(&b), local_lines(&a));

    // The root tree of the head, read by every pull that finds something new.
    append(&a, SA, "a-after-damage");
    run(&a, &remote, &["push"]);
    let clone_head = git(&clone, &["rev-parse", "refs/remotes/origin/main"]);
    let tree = git(&clone, &["rev-parse", &format!("{clone_head}^{{tree}}")]);
    corrupt_object(&clone, &tree);
    append(&b, SB, "b-after-damage");
    let (so, se) = run(&b, &remote, &["sync"]);
    says_clone_repaired(&b, &se);
    assert!(!so.contains("Pull: everything is up to date"), "{so}");
    assert_eq!(set_aside_clones(&b), 2);
    assert!(local_lines(&b)[SA].contains("a-after-damage"));

    // A pack the clone's fetches kept, gone (its index left behind).
    append(&a, SA, "a-after-pack");
    run(&a, &remote, &["push"]);
    run(&b, &remote, &["pull"]);
    let packs: Vec<PathBuf> = std::fs::read_dir(clone.join("objects/pack"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    assert!(!packs.is_empty(), "the fetch kept a pack");
    for p in packs {
        std::fs::remove_file(p).unwrap();
    }
    append(&a, SA, "a-after-pack-2");
    run(&a, &remote, &["push"]);
    append(&b, SB, "b-after-pack");
    let (_, se) = run(&b, &remote, &["sync"]);
    says_clone_repaired(&b, &se);
    assert_eq!(set_aside_clones(&b), 3);
    assert!(local_lines(&b)[SA].contains("a-after-pack-2"));
    run(&a, &remote, &["sync"]);
    assert_whole(&remote, &[&a, &b]);
    assert_eq!(local_lines(&a), local_lines(&b));
}

#[test]
fn stale_lock_files_and_a_broken_config_in_the_clone_do_not_stop_anything() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, b) = two_machines(&w, &remote);
    let clone = clone_of(&b);
    for lock in [
        "refs/remotes/origin/main.lock",
        "packed-refs.lock",
        "config.lock",
        "FETCH_HEAD.lock",
        "shallow.lock",
    ] {
        std::fs::write(clone.join(lock), "").unwrap();
    }
    append(&a, SA, "a-1");
    run(&a, &remote, &["push"]);
    append(&b, SB, "b-1");
    let (_, se) = run(&b, &remote, &["sync"]);
    assert!(!se.contains("damaged"), "stale locks are not damage: {se}");
    assert_eq!(set_aside_clones(&b), 0);

    std::fs::write(clone.join("config"), "[core\nbroken").unwrap();
    append(&a, SA, "a-2");
    run(&a, &remote, &["push"]);
    append(&b, SB, "b-2");
    let (_, se) = run(&b, &remote, &["sync"]);
    says_clone_repaired(&b, &se);
    assert_eq!(set_aside_clones(&b), 1);
    run(&a, &remote, &["sync"]);
    assert_whole(&remote, &[&a, &b]);
    assert_eq!(local_lines(&a), local_lines(&b));
}

/// A commit on top of `main` of a bare repository without the paths under `prefix`.
fn commit_without(remote: &Path, prefix: &str) {
    let index = remote.join("tmp-index");
    let with_index = |args: &[&str]| {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(remote)
            .args(args)
            .env("GIT_INDEX_FILE", &index)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@x")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@x")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    with_index(&["read-tree", "main"]);
    with_index(&["rm", "--cached", "-r", "-q", prefix]);
    let tree = with_index(&["write-tree"]);
    let parent = git(remote, &["rev-parse", "main"]);
    let commit = git(
        remote,
        &["commit-tree", &tree, "-p", &parent, "-m", "cleanup"],
    );
    git(remote, &["update-ref", "refs/heads/main", &commit]);
    std::fs::remove_file(index).unwrap();
}

#[test]
fn a_session_deleted_without_forget_comes_back_and_a_forgotten_one_does_not() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, b) = two_machines(&w, &remote);
    // Someone deletes B's session from the repository by hand (a plain commit on top).
    let dir = repo_paths(&remote)
        .into_iter()
        .find(|p| p.contains(SB))
        .map(|p| p[..p.find(SB).unwrap() + SB.len()].to_string())
        .unwrap();
    commit_without(&remote, &dir);
    assert!(!remote_lines(&remote).contains_key(SB));

    // A has a copy and notices in a plain push; B's sync sends it too (nothing twice).
    let (so, se) = run(&a, &remote, &["push"]);
    assert!(se.contains("lost 1 session"), "{se}");
    assert!(!so.contains("up to date"), "{so}");
    let (_, se) = run(&b, &remote, &["sync"]);
    assert!(se.contains("lost 1 session") || se.is_empty(), "{se}");
    assert_whole(&remote, &[&a, &b]);

    // `ccsync forget` deletes on purpose: nobody sends it back, nobody warns.
    run(&a, &remote, &["forget", SB]);
    assert!(!remote_lines(&remote).contains_key(SB));
    for m in [&b, &a] {
        // (The remote lacks B's session on purpose now: not the `run` honesty check.)
        let out = m.run(&["sync"]);
        let (so, se) = (stdout(&out), stderr(&out));
        assert!(out.status.success(), "{se}");
        assert!(!se.contains("warning"), "{se}");
        assert!(!so.contains("Pushed"), "{so}");
    }
    assert!(!remote_lines(&remote).contains_key(SB));
}
