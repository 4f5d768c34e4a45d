//! The sync engine end to end: simulated machines (one with Windows paths) sharing a local bare
//! remote.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

/// How one machine spells the paths of the test projects.
struct Spec {
    home: String,
    projects: String,
    sep: &'static str,
}

impl Spec {
    fn posix(m: &Machine, projects: &str) -> Spec {
        Spec {
            home: m.home.to_str().unwrap().to_string(),
            projects: projects.to_string(),
            sep: "/",
        }
    }
    fn windows() -> Spec {
        Spec {
            home: "C:\\Users\\carol".into(),
            projects: "C:\\projects".into(),
            sep: "\\",
        }
    }
    fn p(&self, parts: &[&str]) -> String {
        let mut s = self.projects.clone();
        for p in parts {
            s.push_str(self.sep);
            s.push_str(p);
        }
        s
    }
    fn h(&self, parts: &[&str]) -> String {
        let mut s = self.home.clone();
        for p in parts {
            s.push_str(self.sep);
            s.push_str(p);
        }
        s
    }
    fn cwd(&self) -> String {
        self.p(&["my_app"])
    }
}

const SID: &str = "5e1f0c2a-0000-4000-8000-000000000001";

/// A transcript with paths in values, keys, commands, tool output and prose, literal braces,
/// an unmapped path and a line without uuid.
fn transcript(s: &Spec) -> String {
    let cwd = s.cwd();
    let lines = [
        json!({"parentUuid": null, "cwd": cwd, "sessionId": SID, "type": "user", "uuid": "u1", "timestamp": ts_at(0),
               "message": {"role": "user", "content": format!("fix {} please", s.p(&["my_app", "src", "lib.rs"]))}}),
        json!({"parentUuid": "u1", "cwd": cwd, "sessionId": SID, "type": "assistant", "uuid": "a1", "timestamp": ts_at(1),
               "message": {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash",
                  "input": {"command": format!("cd {} && cargo test", cwd), "file_path": s.p(&["my_app", "src", "main.rs"])}}]}}),
        json!({"type": "file-history-snapshot", "messageId": "u1",
               "snapshot": {"trackedFileBackups": {s.p(&["my_app", "src", "lib.rs"]): {"version": 1}}}}),
        json!({"parentUuid": "a1", "cwd": cwd, "sessionId": SID, "type": "user", "uuid": "u2", "timestamp": ts_at(2),
               "message": {"role": "user", "content": "literal {{PROJECTS}} and {{ x }} and {{HOME}}"}}),
        json!({"parentUuid": "u2", "cwd": cwd, "sessionId": SID, "type": "user", "uuid": "u3", "timestamp": ts_at(3),
               "toolUseResult": {"stdout": format!("{}\n{}\n/opt/other/x", s.p(&["my_app", "a.rs"]), s.h(&[".config", "x.toml"]))},
               "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}}),
        json!({"type": "summary", "summary": "Parser work", "leafUuid": "u3"}),
    ];
    lines
        .iter()
        .map(|l| serde_json::to_string(l).unwrap() + "\n")
        .collect()
}

fn subagent(s: &Spec) -> String {
    let l = json!({"parentUuid": null, "isSidechain": true, "cwd": s.cwd(), "sessionId": SID, "agentId": "a1", "type": "user",
                   "uuid": "sa1", "timestamp": ts_at(1), "message": {"role": "user", "content": format!("look at {}", s.p(&["my_app", "docs"]))}});
    serde_json::to_string(&l).unwrap() + "\n"
}

fn subagent_meta(s: &Spec) -> String {
    serde_json::to_string(
        &json!({"agentType": "general-purpose", "description": format!("in {}", s.cwd())}),
    )
    .unwrap()
}

fn memory(s: &Spec) -> String {
    format!(
        "# Memory\n\n- build with cargo in {}\n- notes in {}\n",
        s.cwd(),
        s.h(&["notes"])
    )
}

fn folder(m: &Machine, s: &Spec) -> PathBuf {
    m.claude.join("projects").join(enc(&s.cwd()))
}

/// Put the whole test session (with subagent, tool result, memory, global files) on a machine.
fn seed(m: &Machine, s: &Spec) {
    let f = folder(m, s);
    std::fs::create_dir_all(f.join(SID).join("subagents")).unwrap();
    std::fs::create_dir_all(f.join(SID).join("tool-results")).unwrap();
    std::fs::create_dir_all(f.join("memory")).unwrap();
    std::fs::write(f.join(format!("{SID}.jsonl")), transcript(s)).unwrap();
    std::fs::write(f.join(SID).join("subagents/agent-a1.jsonl"), subagent(s)).unwrap();
    std::fs::write(
        f.join(SID).join("subagents/agent-a1.meta.json"),
        subagent_meta(s),
    )
    .unwrap();
    std::fs::write(
        f.join(SID).join("tool-results/t1.txt"),
        format!("output of {}\n", s.cwd()),
    )
    .unwrap();
    std::fs::write(f.join("memory/MEMORY.md"), memory(s)).unwrap();
    // What /rewind needs: snapshots of files before Claude Code edited them.
    let fh = m.claude.join("file-history").join(SID);
    std::fs::create_dir_all(&fh).unwrap();
    std::fs::write(
        fh.join("9f3c1e2a7b@v1"),
        format!("fn main() {{}} // in {}\n", s.cwd()),
    )
    .unwrap();
    std::fs::write(fh.join("0a1b2c3d4e@v2"), b"\x00\x01binary\xff\n").unwrap();
    std::fs::write(
        m.claude.join("CLAUDE.md"),
        format!("Global notes in {}\n", s.h(&["notes"])),
    )
    .unwrap();
    let hist = json!({"display": "fix the parser", "pastedContents": {}, "timestamp": 1_700_000_000_000u64, "project": s.cwd(), "sessionId": SID});
    std::fs::write(
        m.claude.join("history.jsonl"),
        serde_json::to_string(&hist).unwrap() + "\n",
    )
    .unwrap();
}

/// Every file under the Claude Code dir (relative path → bytes), ignoring what ccsync does not
/// sync.
fn files(m: &Machine) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&m.claude, &m.claude, &mut out);
    out.retain(|k, _| !k.starts_with("sessions/") && k != "settings.json");
    out
}

fn posix_machine(w: &World, name: &str, remote: &Path) -> (Machine, Spec) {
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
    let s = Spec::posix(&m, &projects);
    (m, s)
}

fn windows_machine(w: &World, name: &str, remote: &Path) -> (Machine, Spec) {
    let m = w.machine(name);
    m.init(
        remote,
        &[
            "--path-style",
            "windows",
            "--add-placeholder",
            "HOME=C:\\Users\\carol",
            "--add-placeholder",
            "PROJECTS=C:\\projects",
            "--sync-dir",
            "C:\\",
        ],
    );
    (m, Spec::windows())
}

#[test]
fn a_pushes_b_pulls_every_path_rewritten_and_back_unchanged() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, sa) = posix_machine(&w, "a", &remote);
    let (b, sb) = posix_machine(&w, "b", &remote);
    let (c, sc) = windows_machine(&w, "c", &remote);
    seed(&a, &sa);
    let before = files(&a);
    let out = a.ok(&["push"]);
    assert!(out.contains("Pushed 1 new session"), "{out}");

    for (m, s) in [(&b, &sb), (&c, &sc)] {
        let out = m.ok(&["pull"]);
        assert!(out.contains("Pulled 1 new session"), "{}: {out}", m.name);
        let f = folder(m, s);
        assert_eq!(
            std::fs::read_to_string(f.join(format!("{SID}.jsonl"))).unwrap(),
            transcript(s),
            "transcript on {}",
            m.name
        );
        assert_eq!(
            std::fs::read_to_string(f.join(SID).join("subagents/agent-a1.jsonl")).unwrap(),
            subagent(s)
        );
        assert_eq!(
            std::fs::read_to_string(f.join(SID).join("subagents/agent-a1.meta.json")).unwrap(),
            subagent_meta(s)
        );
        assert_eq!(
            std::fs::read_to_string(f.join(SID).join("tool-results/t1.txt")).unwrap(),
            format!("output of {}\n", s.cwd())
        );
        assert_eq!(
            std::fs::read_to_string(f.join("memory/MEMORY.md")).unwrap(),
            memory(s)
        );
        // The session's file history travels with it (what /rewind restores).
        let fh = m.claude.join("file-history").join(SID);
        assert_eq!(
            std::fs::read_to_string(fh.join("9f3c1e2a7b@v1")).unwrap(),
            format!("fn main() {{}} // in {}\n", s.cwd())
        );
        assert_eq!(
            std::fs::read(fh.join("0a1b2c3d4e@v2")).unwrap(),
            b"\x00\x01binary\xff\n"
        );
        assert_eq!(
            std::fs::read_to_string(m.claude.join("CLAUDE.md")).unwrap(),
            format!("Global notes in {}\n", s.h(&["notes"]))
        );
        let hist = std::fs::read_to_string(m.claude.join("history.jsonl")).unwrap();
        let v: serde_json::Value = serde_json::from_str(hist.trim()).unwrap();
        assert_eq!(v["project"], s.cwd());
        // The session's last activity becomes the file's time.
        let mtime = std::fs::metadata(f.join(format!("{SID}.jsonl")))
            .unwrap()
            .modified()
            .unwrap();
        let want = chrono::DateTime::parse_from_rfc3339(&ts_at(3)).unwrap();
        let got: chrono::DateTime<chrono::Utc> = mtime.into();
        assert_eq!(got.timestamp(), want.timestamp());
        // Nothing new to send back.
        let out = m.ok(&["push"]);
        assert!(out.contains("up to date"), "{}: {out}", m.name);
    }
    // Windows separators in JSON are escaped backslashes.
    let on_c = std::fs::read_to_string(folder(&c, &sc).join(format!("{SID}.jsonl"))).unwrap();
    assert!(on_c.contains(r#""cwd":"C:\\projects\\my_app""#), "{on_c}");
    assert!(on_c.contains("/opt/other/x"), "unmapped paths stay");
    assert!(
        on_c.contains("literal {{PROJECTS}} and {{ x }} and {{HOME}}"),
        "literal braces survive"
    );

    a.ok(&["pull"]);
    assert_eq!(
        files(&a),
        before,
        "A's files are byte-identical after the round trip"
    );
    let list = b.json(&["list"]);
    assert_eq!(list[0]["project_path"], sb.cwd());
    assert_eq!(list[0]["title"], "Parser work");
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

/// Append a turn as Claude Code would: a child of the file's last message.
fn append_turn(m: &Machine, s: &Spec, uuid: &str, minute: u32) {
    let p = folder(m, s).join(format!("{SID}.jsonl"));
    let parent = std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "user" || v["type"] == "assistant")
        .filter_map(|v| v["uuid"].as_str().map(str::to_string))
        .next_back()
        .unwrap();
    let line = json!({"parentUuid": parent, "cwd": s.cwd(), "sessionId": SID, "type": "user", "uuid": uuid, "timestamp": ts_at(minute),
                      "message": {"role": "user", "content": format!("turn {uuid} in {}", s.p(&["my_app", "x.rs"]))}});
    let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
    use std::io::Write;
    writeln!(f, "{}", serde_json::to_string(&line).unwrap()).unwrap();
}

fn lines_of(m: &Machine, s: &Spec) -> Vec<String> {
    std::fs::read_to_string(folder(m, s).join(format!("{SID}.jsonl")))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A's lines spelled for B.
fn translate(lines: &[String], from: &Spec, to: &Spec) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            l.replace(&from.projects, &to.projects)
                .replace(&from.home, &to.home)
        })
        .collect()
}

/// The branch Claude Code shows for a transcript file: its turns' uuids, root first.
fn visible_turns(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let tree = ccsync::claude::tree::Tree::from_lines(bytes.split(|b| *b == b'\n'));
    let Some(leaf) = tree.client_leaf() else {
        return Vec::new();
    };
    let mut v = tree.ancestry(&leaf);
    v.reverse();
    v
}

/// Every session file of the test project on a machine, by id.
fn sessions_in(m: &Machine, s: &Spec) -> BTreeMap<String, PathBuf> {
    std::fs::read_dir(folder(m, s))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".jsonl")
                .map(|id| (id.to_string(), e.path()))
        })
        .collect()
}

#[test]
fn concurrent_appends_converge_to_the_union_in_either_order() {
    for a_first in [true, false] {
        let w = World::new();
        let remote = w.path().join("sync.git");
        let (a, sa) = posix_machine(&w, "a", &remote);
        let (b, sb) = posix_machine(&w, "b", &remote);
        seed(&a, &sa);
        a.ok(&["push"]);
        b.ok(&["pull"]);
        // Both continue the conversation apart: two branches from u3.
        append_turn(&a, &sa, "a-1", 10);
        append_turn(&a, &sa, "a-2", 11);
        append_turn(&b, &sb, "b-1", 12);
        append_turn(&b, &sb, "b-2", 13);
        append_turn(&b, &sb, "b-3", 14);
        if a_first {
            a.ok(&["push"]);
            b.ok(&["push"]);
        } else {
            b.ok(&["push"]);
            a.ok(&["push"]);
        }
        a.ok(&["sync"]);
        b.ok(&["sync"]);
        a.ok(&["sync"]);
        let la = lines_of(&a, &sa);
        let lb = lines_of(&b, &sb);
        let mut sorted_a = translate(&la, &sa, &sb);
        let mut sorted_b = lb.clone();
        sorted_a.sort();
        sorted_b.sort();
        assert_eq!(sorted_a, sorted_b, "the same lines (a_first={a_first})");
        for id in ["a-1", "a-2", "b-1", "b-2", "b-3"] {
            assert_eq!(
                la.iter()
                    .filter(|l| l.contains(&format!("\"uuid\":\"{id}\"")))
                    .count(),
                1,
                "{id}"
            );
        }
        // No hidden turns: on both machines the client shows B's newer branch in the session,
        // and A's branch is a session of its own; together they show every turn.
        for (m, s) in [(&a, &sa), (&b, &sb)] {
            let ids = sessions_in(m, s);
            assert_eq!(ids.len(), 2, "the session and one fork on {}", m.name);
            let main = visible_turns(&ids[SID]);
            assert_eq!(main.last().map(String::as_str), Some("b-3"), "{}", m.name);
            let (fork_id, fork) = ids.iter().find(|(id, _)| *id != SID).unwrap();
            let forked = visible_turns(fork);
            assert_eq!(forked.last().map(String::as_str), Some("a-2"), "{}", m.name);
            assert!(forked.starts_with(&["u1".into(), "a1".into()]));
            assert!(
                std::fs::read_to_string(fork)
                    .unwrap()
                    .contains(&format!("\"sessionId\":\"{fork_id}\""))
            );
        }
        let fa = std::fs::read(
            sessions_in(&a, &sa)
                .into_values()
                .find(|p| !p.ends_with(format!("{SID}.jsonl")))
                .unwrap(),
        )
        .unwrap();
        let fb = std::fs::read(
            sessions_in(&b, &sb)
                .into_values()
                .find(|p| !p.ends_with(format!("{SID}.jsonl")))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            translate(&[String::from_utf8(fa).unwrap()], &sa, &sb),
            [String::from_utf8(fb).unwrap()],
            "the fork is the same on both machines"
        );
        // Nothing ping-pongs.
        assert!(a.ok(&["sync"]).matches("up to date").count() == 2);
        assert!(b.ok(&["sync"]).matches("up to date").count() == 2);
    }
}

#[test]
fn truncated_copies_deleted_sessions_and_live_transcripts() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, sa) = posix_machine(&w, "a", &remote);
    let (b, sb) = posix_machine(&w, "b", &remote);
    seed(&a, &sa);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    let full_b = lines_of(&b, &sb);

    // A truncated local copy never overwrites the longer one, and is made whole again.
    let pb = folder(&b, &sb).join(format!("{SID}.jsonl"));
    let text = std::fs::read_to_string(&pb).unwrap();
    let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&pb, cut).unwrap();
    b.ok(&["push"]);
    a.ok(&["pull"]);
    assert_eq!(lines_of(&a, &sa).len(), 6, "A keeps every line");
    b.ok(&["pull", "--force"]);
    assert_eq!(lines_of(&b, &sb), full_b, "B has every line again");

    // A live transcript is not replaced: the pull defers it.
    let sessions = b.claude.join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    let me = std::process::id();
    std::fs::write(
        sessions.join(format!("{me}.json")),
        json!({"pid": me, "sessionId": SID, "cwd": sb.cwd()}).to_string(),
    )
    .unwrap();
    append_turn(&a, &sa, "a-live", 20);
    a.ok(&["push"]);
    let before = std::fs::read(&pb).unwrap();
    let out = b.ok(&["pull"]);
    assert!(out.contains("Deferred"), "{out}");
    assert_eq!(
        std::fs::read(&pb).unwrap(),
        before,
        "live transcript untouched"
    );
    std::fs::remove_file(sessions.join(format!("{me}.json"))).unwrap();
    b.ok(&["pull"]);
    assert!(lines_of(&b, &sb).iter().any(|l| l.contains("a-live")));

    // A session deleted here stays in the repository and is not brought back.
    std::fs::remove_file(&pb).unwrap();
    b.ok(&["push"]);
    let out = b.ok(&["pull"]);
    assert!(!pb.exists(), "not resurrected: {out}");
    assert!(
        repo_paths(&remote).iter().any(|p| p.contains(SID)),
        "still in the repository"
    );
    // An old session (older than cleanupPeriodDays) is not pulled onto a new machine.
    let old_id = "0ld00000-0000-4000-8000-000000000002";
    let old_line = user_line(
        old_id,
        &sa.cwd(),
        "o1",
        None,
        "2020-01-01T00:00:00.000Z",
        "ancient",
    );
    a.write_transcript(&sa.cwd(), old_id, format!("{old_line}\n").as_bytes());
    a.ok(&["push"]);
    let (c, sc) = posix_machine(&w, "c", &remote);
    let out = c.ok(&["pull"]);
    assert!(out.contains("cleanupPeriodDays"), "{out}");
    assert!(!c.transcript_path(&sc.cwd(), old_id).exists());
}

#[test]
fn odd_bytes_are_carried_byte_for_byte() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, sa) = posix_machine(&w, "a", &remote);
    let (b, sb) = posix_machine(&w, "b", &remote);
    let sid = "0dd00000-0000-4000-8000-000000000003";
    let cwd_a = sa.cwd();
    let mut bytes: Vec<u8> = Vec::new();
    bytes.extend_from_slice(user_line(sid, &cwd_a, "u1", None, &ts_at(0), "hello").as_bytes());
    bytes.extend_from_slice(b"\n{\"broken\": tru\n");
    bytes.extend_from_slice(b"\xff\xfe binary \x00 junk\n");
    bytes.extend_from_slice(
        br#"{"type":"user","uuid":"u2","message":{"content":"lone \ud800 surrogate"}}"#,
    );
    bytes.push(b'\n');
    bytes.extend_from_slice(
        user_line(
            sid,
            &cwd_a,
            "u3",
            Some("u1"),
            &ts_at(1),
            "no newline at the end",
        )
        .as_bytes(),
    );
    let p = a.write_transcript(&cwd_a, sid, &bytes);
    // Quiet for a while: the unterminated last line is complete.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(old)
        .unwrap();
    a.ok(&["push"]);
    b.ok(&["pull"]);
    let got = std::fs::read(b.transcript_path(&sb.cwd(), sid)).unwrap();
    let want = replace_bytes(&bytes, sa.projects.as_bytes(), sb.projects.as_bytes());
    assert_eq!(got, want, "only the path bytes differ");
    assert!(!got.ends_with(b"\n"), "still no trailing newline");
    b.ok(&["push"]);
    a.ok(&["pull"]);
    assert_eq!(std::fs::read(&p).unwrap(), bytes, "A unchanged");
}

#[test]
fn memory_edits_merge_and_conflicts_stay_visible() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, sa) = posix_machine(&w, "a", &remote);
    let (b, sb) = posix_machine(&w, "b", &remote);
    seed(&a, &sa);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    let ma = folder(&a, &sa).join("memory/MEMORY.md");
    let mb = folder(&b, &sb).join("memory/MEMORY.md");
    // Different lines: merged.
    std::fs::write(
        &ma,
        memory(&sa).replace("# Memory", "# Memory (edited on A)"),
    )
    .unwrap();
    std::fs::write(&mb, memory(&sb) + "- added on B\n").unwrap();
    a.ok(&["push"]);
    b.ok(&["sync"]);
    a.ok(&["pull"]);
    let want_b = memory(&sb).replace("# Memory", "# Memory (edited on A)") + "- added on B\n";
    assert_eq!(std::fs::read_to_string(&mb).unwrap(), want_b);
    assert_eq!(
        std::fs::read_to_string(&ma).unwrap(),
        want_b
            .replace(&sb.projects, &sa.projects)
            .replace(&sb.home, &sa.home)
    );
    // The same line: B keeps its version, A's stays visible beside it, on both machines.
    std::fs::write(&ma, "# Memory\n\nA's version\n").unwrap();
    std::fs::write(&mb, "# Memory\n\nB's version\n").unwrap();
    a.ok(&["push"]);
    let out = b.ok(&["sync"]);
    assert!(out.contains("Conflict"), "{out}");
    a.ok(&["pull"]);
    for (m, s) in [(&a, &sa), (&b, &sb)] {
        let dir = folder(m, s).join("memory");
        assert_eq!(
            std::fs::read_to_string(dir.join("MEMORY.md")).unwrap(),
            "# Memory\n\nB's version\n",
            "on {}",
            m.name
        );
        let copies: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("MEMORY.conflict-"))
            .collect();
        assert_eq!(copies.len(), 1, "{copies:?} on {}", m.name);
        // Named after the machine that found the conflict (B), with its time and content hash.
        assert!(
            copies[0].starts_with("MEMORY.conflict-b-") && copies[0].ends_with(".md"),
            "{copies:?}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(&copies[0])).unwrap(),
            "# Memory\n\nA's version\n"
        );
    }
    // A deletion travels when the other side did not change the file.
    std::fs::remove_file(&ma).unwrap();
    a.ok(&["push"]);
    b.ok(&["pull"]);
    assert!(!mb.exists(), "deleted on B too");
}

#[test]
fn two_machines_pushing_in_a_tight_loop_lose_nothing() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, sa) = posix_machine(&w, "a", &remote);
    let (b, sb) = posix_machine(&w, "b", &remote);
    seed(&a, &sa);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    let rounds = 6;
    std::thread::scope(|scope| {
        for (m, s, tag) in [(&a, &sa, "A"), (&b, &sb, "B")] {
            scope.spawn(move || {
                for i in 0..rounds {
                    append_turn(m, s, &format!("{tag}-{i}"), 100 + i);
                    let out = m.run(&["push"]);
                    assert!(out.status.success(), "{}", stderr(&out));
                }
            });
        }
    });
    let (c, sc) = posix_machine(&w, "c", &remote);
    c.ok(&["pull"]);
    let lines = lines_of(&c, &sc);
    for tag in ["A", "B"] {
        for i in 0..rounds {
            let id = format!("\"uuid\":\"{tag}-{i}\"");
            assert_eq!(
                lines.iter().filter(|l| l.contains(&id)).count(),
                1,
                "{tag}-{i} exactly once"
            );
        }
    }
    assert_eq!(lines.len(), 6 + 2 * rounds as usize);
}

#[test]
fn killed_pulls_leave_no_torn_file() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, sa) = posix_machine(&w, "a", &remote);
    let (b, _sb) = posix_machine(&w, "b", &remote);
    // Enough data that a pull takes a moment.
    let filler = "x".repeat(2000);
    for i in 0..40 {
        let sid = format!("k1110000-0000-4000-8000-{i:012}");
        let mut t = String::new();
        for j in 0..60 {
            t += &user_line(
                &sid,
                &sa.cwd(),
                &format!("u{j}"),
                None,
                &ts_at(j),
                &format!("{j} {filler} {}", sa.p(&["my_app"])),
            );
            t.push('\n');
        }
        a.write_transcript(&sa.cwd(), &sid, t.as_bytes());
    }
    a.ok(&["push"]);
    let want: BTreeMap<String, Vec<u8>> = {
        let (ref_m, _) = posix_machine(&w, "ref", &remote);
        ref_m.ok(&["pull"]);
        files(&ref_m)
            .into_iter()
            .filter(|(k, _)| k.ends_with(".jsonl") && k.starts_with("projects/"))
            .map(|(k, v)| {
                (
                    k.replace(&enc(&format!("{}/projects", ref_m.home.display())), "P"),
                    v,
                )
            })
            .collect()
    };
    let b_proj = enc(&format!("{}/projects", b.home.display()));
    let b_projects = format!("{}/projects", b.home.display());
    let ref_projects = format!("{}/projects", w.path().join("ref/home").display());
    for round in 0..8u64 {
        let mut child = b.cmd().arg("pull").spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20 + (round * 37) % 200));
        let _ = child.kill();
        let _ = child.wait();
        for (k, v) in files(&b) {
            if !(k.ends_with(".jsonl") && k.starts_with("projects/")) {
                continue;
            }
            let key = k.replace(&b_proj, "P");
            let expect = want
                .get(&key)
                .unwrap_or_else(|| panic!("unexpected file {k}"));
            let expect = String::from_utf8_lossy(expect).replace(&ref_projects, &b_projects);
            assert_eq!(
                String::from_utf8_lossy(&v),
                expect,
                "torn file {k} after kill {round}"
            );
        }
    }
    b.ok(&["pull"]);
    let n = files(&b)
        .keys()
        .filter(|k| k.ends_with(".jsonl") && k.starts_with("projects/"))
        .count();
    assert_eq!(n, want.len());
    assert!(b.ok(&["pull"]).contains("up to date"));
}

#[test]
fn selective_sync_and_dry_runs() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = w.machine("a");
    let projects = format!("{}/projects", a.home.display());
    a.init(
        &remote,
        &["--add-placeholder", &format!("PROJECTS={projects}")],
    );
    let inside = format!("{projects}/app");
    let outside = format!("{}/scratch", a.home.display());
    a.write_transcript(
        &inside,
        "in-1",
        conversation("in-1", &inside, "/", 1, 0).as_bytes(),
    );
    a.write_transcript(
        &outside,
        "out-1",
        conversation("out-1", &outside, "/", 1, 0).as_bytes(),
    );
    let dry = a.json(&["push", "--dry-run"]);
    assert_eq!(dry["sessions_new"], 1);
    assert!(
        repo_paths(&remote).iter().all(|p| !p.contains("in-1")),
        "dry run sends nothing"
    );
    a.ok(&["push"]);
    let paths = repo_paths(&remote);
    assert!(paths.iter().any(|p| p.contains("in-1")));
    assert!(
        !paths.iter().any(|p| p.contains("out-1")),
        "outside the sync directories"
    );
    a.ok(&["push", "--all"]);
    assert!(repo_paths(&remote).iter().any(|p| p.contains("out-1")));
    let v = a.json(&["push"]);
    assert_eq!(v["up_to_date"], true);
}

#[test]
fn first_run_sets_up_the_local_default() {
    let w = World::new();
    let m = w.machine("fresh");
    let cwd = format!("{}/p", m.home.display());
    m.write_transcript(&cwd, "s1", conversation("s1", &cwd, "/", 2, 0).as_bytes());
    let out = m.run(&["sync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not set up yet"), "{}", stderr(&out));
    let cfg = m.config();
    let remote = PathBuf::from(cfg["remote"].as_str().unwrap());
    assert!(
        repo_paths(&remote)
            .iter()
            .any(|p| p.contains("/sessions/s1/transcript/"))
    );
    assert!(m.ok(&["push"]).contains("up to date"));
}

fn craft_commit(remote: &Path, entries: &[(&str, &str, &[u8])]) {
    fast_import_commit(remote, entries, true);
}

fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_hostile_remote_cannot_write_outside_and_the_clean_entries_sync() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, sa) = posix_machine(&w, "a", &remote);
    seed(&a, &sa);
    a.ok(&["push"]);
    let meta = |sid: &str, cwd: &str| {
        json!({"session_id": sid, "cwd": cwd, "last_activity": ts_at(5)})
            .to_string()
            .into_bytes()
    };
    let good = user_line(
        "good-1",
        "{{PROJECTS}}/ok",
        "g1",
        None,
        &ts_at(5),
        "a clean session",
    ) + "\n";
    let shared = json!({"placeholders": {"PROJECTS": {"a": sa.projects, "b": "../../etc"}, "HOME": {"a": sa.home}}}).to_string();
    craft_commit(
        &remote,
        &[
            ("100644", "shared_placeholders.json", shared.as_bytes()),
            (
                "100644",
                "projects/x/sessions/good-1/meta.json",
                &meta("good-1", "{{PROJECTS}}/ok"),
            ),
            (
                "100644",
                "projects/x/sessions/good-1/transcript/000001.jsonl",
                good.as_bytes(),
            ),
            (
                "100644",
                "projects/x/sessions/good-1/files/../../../../../escape.txt",
                b"escaped",
            ),
            (
                "100644",
                "projects/x/sessions/evil-1/meta.json",
                &meta("evil-1", "relative/dir"),
            ),
            (
                "100644",
                "projects/x/sessions/evil-1/transcript/000001.jsonl",
                b"{}\n",
            ),
            (
                "100644",
                "projects/x/sessions/evil-2/meta.json",
                &meta("evil-2", "{{PROJECTS}}/ok2"),
            ),
            (
                "100644",
                "projects/x/sessions/evil-2/transcript/not-a-segment",
                b"{}\n",
            ),
            (
                "100644",
                "projects/x/sessions/ev.il/meta.json",
                &meta("ev.il", "{{PROJECTS}}/ok3"),
            ),
            (
                "100644",
                "projects/../../../../outside/sessions/e/meta.json",
                b"{}",
            ),
            ("120000", "projects/x/memory/link.md", b"/etc/passwd"),
            (
                "100644",
                "projects/x/project.json",
                br#"{"cwd":"{{PROJECTS}}/ok"}"#,
            ),
            ("100644", "projects/x/memory/ok.md", b"fine\n"),
            ("100644", "global/plans/a\\..\\..\\x.md", b"backslashes"),
            ("100644", "global/plans/CON", b"device"),
            ("100644", "global/plans/good.md", b"a plan\n"),
        ],
    );
    let before: Vec<PathBuf> = all_files(w.path());
    let b = w.machine("b");
    let out = b.init(&remote, &["--sync-dir", "/"]);
    assert!(
        out.contains("PROJECTS"),
        "the evil value is not adopted, PROJECTS is reported missing: {out}"
    );
    assert!(
        !b.config()["placeholders"]
            .as_object()
            .unwrap()
            .contains_key("PROJECTS")
    );
    b.ok(&[
        "config",
        "add-placeholder",
        &format!("PROJECTS={}/code", b.home.display()),
    ]);
    let o = b.run(&["pull"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("refused"), "{err}");
    // Everything new is inside B's Claude Code dir or tool home.
    for p in all_files(w.path()) {
        if before.contains(&p) || p.starts_with(&remote) {
            continue;
        }
        assert!(
            p.starts_with(&b.claude) || p.starts_with(&b.tool),
            "written outside: {}",
            p.display()
        );
        assert!(!p.to_string_lossy().contains("escape"), "{}", p.display());
    }
    let good_path = b.transcript_path(&format!("{}/code/ok", b.home.display()), "good-1");
    assert_eq!(
        std::fs::read_to_string(&good_path).unwrap(),
        good.replace("{{PROJECTS}}", &format!("{}/code", b.home.display()))
    );
    assert_eq!(
        std::fs::read_to_string(b.claude.join("plans/good.md")).unwrap(),
        "a plan\n"
    );
    assert!(!b.claude.join("plans/CON").exists());
    let mem = b
        .claude
        .join("projects")
        .join(enc(&format!("{}/code/ok", b.home.display())))
        .join("memory");
    assert_eq!(
        std::fs::read_to_string(mem.join("ok.md")).unwrap(),
        "fine\n"
    );
    assert!(
        !mem.join("link.md").exists(),
        "no symlink followed or created"
    );
    // The honest session still arrived.
    assert!(
        b.transcript_path(&format!("{}/code/my_app", b.home.display()), SID)
            .exists()
    );
}

#[test]
fn secrets_are_redacted_in_what_is_pushed_and_block_mode_refuses() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, sa) = posix_machine(&w, "a", &remote);
    let (b, sb) = posix_machine(&w, "b", &remote);
    // Built at run time so no secret-looking literal sits in the source.
    let key = format!("sk-proj-{}", "Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5oQ7s");
    let sid = "5ec00000-0000-4000-8000-000000000009";
    let mut text = user_line(
        sid,
        &sa.cwd(),
        "u1",
        None,
        &ts_at(0),
        &format!("my .env has OPENAI_API_KEY={key} in it"),
    );
    text.push('\n');
    let p = a.write_transcript(&sa.cwd(), sid, text.as_bytes());
    let out = a.ok(&["push"]);
    assert!(out.contains("openai-key"), "reported by kind: {out}");
    assert!(!out.contains(&key), "never the secret itself");
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        text,
        "the local transcript is untouched"
    );
    b.ok(&["pull"]);
    let on_b = std::fs::read_to_string(b.transcript_path(&sb.cwd(), sid)).unwrap();
    assert!(
        !on_b.contains(&key) && on_b.contains("[REDACTED:openai-key:"),
        "{on_b}"
    );
    assert!(serde_json::from_str::<serde_json::Value>(on_b.trim()).is_ok());
    a.ok(&["pull"]);
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        text,
        "pull keeps the local line"
    );

    // Block mode: the session is not pushed and the command fails.
    a.ok(&["config", "set", "secret_scan", "block"]);
    let sid2 = "5ec00000-0000-4000-8000-000000000010";
    let mut t2 = user_line(
        sid2,
        &sa.cwd(),
        "v1",
        None,
        &ts_at(1),
        &format!("again {key}"),
    );
    t2.push('\n');
    a.write_transcript(&sa.cwd(), sid2, t2.as_bytes());
    let o = a.run(&["push"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("secret_scan"), "{}", stderr(&o));
    assert!(!repo_paths(&remote).iter().any(|p| p.contains(sid2)));
}

#[test]
fn forget_deletes_from_the_archive_only_on_purpose() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, sa) = posix_machine(&w, "a", &remote);
    seed(&a, &sa);
    a.ok(&["push"]);
    let out = a.ok(&["forget", &SID[..8], "--dry-run"]);
    assert!(out.contains("Would delete"), "{out}");
    assert!(repo_paths(&remote).iter().any(|p| p.contains(SID)));
    assert_eq!(a.run(&["forget", "zzzz"]).status.code(), Some(1));
    let (b, sb) = posix_machine(&w, "b", &remote);
    b.ok(&["pull"]);
    a.ok(&["forget", &SID[..8]]);
    assert!(
        !repo_paths(&remote).iter().any(|p| p.contains(SID)),
        "gone from the repository"
    );
    assert!(
        folder(&a, &sa).join(format!("{SID}.jsonl")).exists(),
        "the local copy stays"
    );
    // Neither machine brings it back with a push, even after new turns.
    append_turn(&a, &sa, "after-forget", 30);
    append_turn(&b, &sb, "b-after-forget", 31);
    a.ok(&["push"]);
    b.ok(&["push"]);
    assert!(
        !repo_paths(&remote).iter().any(|p| p.contains(SID)),
        "not pushed again"
    );
    assert!(repo_paths(&remote).contains(&"forgotten.json".to_string()));
}

#[test]
fn skipped_sessions_are_reported_by_reason_whatever_their_names() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, _) = posix_machine(&w, "a", &remote);
    // Transcripts without any cwd, named with multi-byte characters.
    for name in ["€€€€-1", "€€€€-2", "€€€€-3", "€€€€-4"] {
        let p = a.claude.join("projects/-x").join(format!("{name}.jsonl"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            "{\"type\":\"user\",\"message\":{\"content\":\"no cwd\"}}\n",
        )
        .unwrap();
    }
    let out = a.ok(&["push"]);
    assert!(
        out.contains("Skipped 4 sessions: no line tells its working directory"),
        "{out}"
    );
}

/// Claude Code on B had loaded the session before A's turn arrived (the start hook brings turns
/// too late to show) and B's turn branches off the older end: B's own push surfaces A's turn.
#[test]
fn a_branch_made_after_a_late_merge_is_surfaced_by_the_push() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let (a, sa) = posix_machine(&w, "a", &remote);
    let (b, sb) = posix_machine(&w, "b", &remote);
    seed(&a, &sa);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    append_turn(&a, &sa, "a-1", 10);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    // B's client still showed the old end (u3): its next turn hangs from there.
    let p = folder(&b, &sb).join(format!("{SID}.jsonl"));
    let line = json!({"parentUuid": "u3", "cwd": sb.cwd(), "sessionId": SID, "type": "user", "uuid": "b-1", "timestamp": ts_at(12),
                      "message": {"role": "user", "content": "turn b-1"}});
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    use std::io::Write;
    writeln!(f, "{line}").unwrap();
    let out = b.ok(&["push"]);
    assert!(out.contains("its own session"), "{out}");
    let ids = sessions_in(&b, &sb);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(
        visible_turns(&ids[SID]).last().map(String::as_str),
        Some("b-1")
    );
    let fork = ids.iter().find(|(id, _)| *id != SID).unwrap().1;
    assert_eq!(visible_turns(fork).last().map(String::as_str), Some("a-1"));
    // The fork reached the repository in the same push run: A gets it at its next pull.
    a.ok(&["pull"]);
    assert_eq!(sessions_in(&a, &sa).len(), 2);
    assert_eq!(
        visible_turns(&sessions_in(&a, &sa)[SID])
            .last()
            .map(String::as_str),
        Some("b-1")
    );
}

/// The marker of `remote` at `main`.
fn marker_of(remote: &Path) -> serde_json::Value {
    serde_json::from_str(&repo_file(remote, "ccsync.json").expect("no ccsync.json")).unwrap()
}

/// The stored paths of session `sid`'s transcript segments, in order.
fn stored_segments(remote: &Path, sid: &str) -> Vec<String> {
    let part = format!("/sessions/{sid}/transcript/");
    let mut v: Vec<String> = repo_stored_paths(remote)
        .into_iter()
        .filter(|p| p.contains(&part))
        .collect();
    v.sort();
    v
}

const ZSID: &str = "5e1f0c2a-0000-4000-8000-0000000000a3";

/// Two more turns of [`conversation`]`(sid, cwd, "/", turns, 0)`, continuing its last turn.
fn two_more_turns(sid: &str, cwd: &str, turns: usize) -> String {
    let mut out = String::new();
    let mut parent = format!("{sid}-a{}", turns - 1);
    for t in 0..2 {
        let ts = ts_at(100 + t);
        let (u, a) = (format!("{sid}-more-u{t}"), format!("{sid}-more-a{t}"));
        out += &user_line(sid, cwd, &u, Some(&parent), &ts, &format!("and then {t}"));
        out.push('\n');
        out += &assistant_line(sid, cwd, &a, &u, &ts, &format!("{cwd}/README.md"));
        out.push('\n');
        parent = a;
    }
    out
}

#[test]
fn a_new_repository_is_version_3_and_stores_its_segments_zstd_compressed() {
    let w = World::new();
    let remote = w.path().join("remote.git");
    let a = ProjectMachine::new(&w, "a", &remote);
    let cwd = a.cwd();
    let text = conversation(ZSID, &cwd, "/", 30, 0);
    a.m.write_transcript(&cwd, ZSID, text.as_bytes());
    a.m.ok(&["push"]);
    let marker = marker_of(&remote);
    assert_eq!(marker["version"], 3, "{marker}");
    assert_eq!(marker["segments"], "zstd", "{marker}");
    // The transcript is stored compressed under `NNNNNN.<size>.jsonl.zst`; standard zstd opens
    // it to exactly the portable bytes, and the name carries their size.
    let portable = text.replace(&a.projects, "{{PROJECTS}}");
    let segs = stored_segments(&remote, ZSID);
    assert!(!segs.is_empty());
    let mut got = Vec::new();
    for s in &segs {
        let name = s.rsplit('/').next().unwrap();
        let size: usize = name.split('.').nth(1).unwrap().parse().unwrap();
        assert!(name.ends_with(".jsonl.zst"), "{s}");
        let blob = repo_blob(&remote, s).unwrap();
        assert!(blob.len() < size, "{s}: not smaller than its plaintext");
        let plain = zstd::stream::decode_all(blob.as_slice()).unwrap();
        assert_eq!(plain.len(), size, "{s}");
        got.extend(plain);
    }
    assert_eq!(String::from_utf8(got).unwrap(), portable);
    // Everything else is stored as it is.
    let meta = repo_stored_paths(&remote)
        .into_iter()
        .find(|p| p.ends_with(&format!("{ZSID}/meta.json")))
        .unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&repo_blob(&remote, &meta).unwrap()).unwrap();
    assert_eq!(meta["size"], portable.len());
    // Another machine reads it back byte for byte, and an append (a new segment, the tail
    // compacted into a new stored name) goes both ways.
    let b = ProjectMachine::new(&w, "b", &remote);
    b.m.ok(&["pull"]);
    let b_path = b.m.transcript_path(&b.cwd(), ZSID);
    let b_text = std::fs::read_to_string(&b_path).unwrap();
    assert_eq!(b_text, portable.replace("{{PROJECTS}}", &b.projects));
    let more = two_more_turns(ZSID, &b.cwd(), 30);
    std::fs::write(&b_path, format!("{b_text}{more}")).unwrap();
    b.m.ok(&["push"]);
    a.m.ok(&["pull"]);
    let a_text = std::fs::read_to_string(a.m.transcript_path(&cwd, ZSID)).unwrap();
    assert_eq!(
        a_text,
        format!("{b_text}{more}").replace(&b.projects, &a.projects)
    );
    let segs = stored_segments(&remote, ZSID);
    assert!(segs.iter().all(|s| s.ends_with(".jsonl.zst")), "{segs:?}");
    let names: Vec<&str> = segs
        .iter()
        .map(|s| s.rsplit('/').next().unwrap().split('.').next().unwrap())
        .collect();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(names, unique, "one stored name per segment: {segs:?}");
    assert_eq!(marker_of(&remote)["version"], 3);
}

#[test]
fn a_version_1_repository_stays_version_1_with_its_segments_as_they_are() {
    let w = World::new();
    let remote = w.path().join("remote.git");
    let out = std::process::Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&remote)
        .output()
        .unwrap();
    assert!(out.status.success());
    // What ccsync 0.1 made of a new repository.
    fast_import_commit(
        &remote,
        &[(
            "100644",
            "ccsync.json",
            br#"{"format":"ccsync","version":1,"created_by":"old","created_at":"2026-11-25T10:00:00Z"}
"#,
        )],
        false,
    );
    let a = ProjectMachine::new(&w, "a", &remote);
    let cwd = a.cwd();
    let text = conversation(ZSID, &cwd, "/", 10, 0);
    a.m.write_transcript(&cwd, ZSID, text.as_bytes());
    a.m.ok(&["push"]);
    let check = |want: &str| {
        let marker = marker_of(&remote);
        assert_eq!(marker["version"], 1, "{marker}");
        assert!(marker.get("segments").is_none(), "{marker}");
        let segs = stored_segments(&remote, ZSID);
        assert!(!segs.is_empty());
        assert!(segs.iter().all(|s| s.ends_with(".jsonl")), "{segs:?}");
        let stored: Vec<u8> = segs
            .iter()
            .flat_map(|s| repo_blob(&remote, s).unwrap())
            .collect();
        assert_eq!(String::from_utf8(stored).unwrap(), want);
    };
    let portable = text.replace(&a.projects, "{{PROJECTS}}");
    check(&portable);
    let b = ProjectMachine::new(&w, "b", &remote);
    b.m.ok(&["pull"]);
    let b_path = b.m.transcript_path(&b.cwd(), ZSID);
    let b_text = std::fs::read_to_string(&b_path).unwrap();
    assert_eq!(b_text, portable.replace("{{PROJECTS}}", &b.projects));
    let more = two_more_turns(ZSID, &b.cwd(), 10);
    std::fs::write(&b_path, format!("{b_text}{more}")).unwrap();
    b.m.ok(&["push"]);
    a.m.ok(&["pull"]);
    let all = format!("{b_text}{more}");
    assert_eq!(
        std::fs::read_to_string(a.m.transcript_path(&cwd, ZSID)).unwrap(),
        all.replace(&b.projects, &a.projects)
    );
    check(&all.replace(&b.projects, "{{PROJECTS}}"));
}
