//! Conformance against the real Claude Code client (pinned: 2.1.197, installed by
//! `scripts/install-claude-code.sh`, found through `CCSYNC_REAL_CLAUDE`; without it every case
//! prints a SKIPPED line and passes, unless `CI` is set, where that is a failure).
//!
//! The client runs in tmux (`common/real_claude.rs`) against a loopback stand-in for the Messages
//! API (`common/messages_api.rs`); nothing leaves 127.0.0.1. Each case takes 1–5 s.
//!
//! Findings (2.1.197, from runs of the client and its bundled code; the cases below re-check the
//! main point of each of (a)–(e), so a new pin that changes one fails here):
//!
//! (a) Symbolic links. Started in `/x/link/app` with `link -> real` (and the shell's logical
//!     `PWD=/x/link/app`), the client uses the realpath everywhere: the transcript goes to
//!     `projects/ENC(/x/real/app)/`, every `cwd` field is `/x/real/app`, and so are the
//!     history's `project`, `sessions/<pid>.json`'s `cwd` and the welcome box. Code: the start-up
//!     state is `originalCwd: realpathSync(process.cwd())`; `PWD` is only used to add the
//!     logical path as an extra allowed working directory for permissions. `/cd` resolves its
//!     argument with `realpath` too.
//!
//! (b) `/cd DIR` flushes the transcript, renames `projects/ENC(old)/<id>.jsonl` (and its `<id>/`
//!     folder) to `projects/ENC(DIR)/`, so the old folder no longer has it, then appends
//!     `{"type":"relocated","sessionId":"<id>","relocatedCwd":"<DIR realpath>"}` (no uuid, no
//!     timestamp, no cwd). Later lines carry `cwd: DIR`; earlier lines keep the old cwd. The
//!     metadata re-append (every 32 KiB written and at exit) writes it again as
//!     `{"type":"relocated","relocatedCwd":"<DIR>","sessionId":"<id>"}` (other key order). The
//!     picker takes the project path from the last `relocated` line of the tail. For a directory
//!     the session has not worked in, the client first asks "Moving to a new directory … 1. No,
//!     stay put / 2. Yes, move here".
//!
//! (c) The `--resume` picker lists the UUID-named `.jsonl` files of the cwd's folder (newest
//!     mtime first, enriched 50 at a time) and reads only the first 64 KiB and the last 64 KiB
//!     of each file (`Bw = 65536`), as text, without parsing whole lines. Title: customTitle
//!     (last `"customTitle":"…"` in the tail, else in the head) || aiTitle (same) || summary
//!     (last line of the tail containing `"type":"summary"` — compact JSON only) || lastPrompt
//!     (tail) || first real user prompt (head) || …; an `agent-name` line is NOT used by the
//!     picker (despite `agentName` coming first in the client's display function, the lite
//!     reader never fills it). A `custom-title` line in the middle of a long file (more than
//!     64 KiB from both ends) is NOT seen: the picker falls back to the prompt. The client
//!     itself keeps its titles visible by re-appending custom-title/ai-title/tag/agent-name/
//!     last-prompt/relocated/mode lines at the end every 32 KiB and at exit. Hidden: head
//!     containing `"isSidechain":true`, `entrypoint` sdk-cli/sdk-ts/sdk-py, teamName, daemon
//!     session kinds, `/loop` sessions.
//!
//! (d) `claude --fork-session --resume ID` (interactive) leaves the original file untouched and
//!     writes `<new-id>.jsonl` in the same folder only when the first new message is sent. The
//!     conversation chain up to the resumed leaf is copied byte for byte except `sessionId`,
//!     which is the new id in every line that has one (file-history-snapshot lines have none);
//!     `uuid`s and `parentUuid`s are kept; no `forkedFrom` field anywhere; metadata lines
//!     (custom-title, agent-name, mode, permission-mode, ai-title) are re-written with the new id,
//!     so the fork carries the same title. So a fork shares its uuids with its origin: a union
//!     keyed on uuid must be per session. The Agent SDK's `forkSession()` is different: fresh
//!     uuids, `forkedFrom: {sessionId, messageUuid}` on every line, a custom-title
//!     "<title> (fork)".
//!
//! (e) SessionStart hook output is shown to the user only through JSON on stdout with
//!     `systemMessage`: rendered as "SessionStart:startup says: <text>" (or
//!     "SessionStart:resume says: …"), stored as a `hook_system_message` attachment and not sent
//!     to the model. Plain stdout and `hookSpecificOutput.additionalContext` go to the model as
//!     context and are not shown; stderr with exit 0 is neither. Exit 1 shows
//!     "SessionStart:startup hook error / Failed with non-blocking status code: <stderr>"; exit 2
//!     showed nothing. Caveat on resume: the client drops all new SessionStart attachments,
//!     `systemMessage` included, when the transcript already holds SessionStart context and none
//!     of this run's context strings (plain stdout, additionalContext, from any hook) is new; a
//!     hook that wants to be seen on every resume must emit a changing `additionalContext` (or
//!     no hook may ever emit context). The hook's stdin has `session_id`, `transcript_path`,
//!     `cwd`, `hook_event_name`, `source` (and `model` on startup).
//!
//! Line order and flushing: transcript lines are appended through a queue drained every 100 ms
//! (metadata lines such as ai-title, custom-title, mode are appended directly), so file order is
//! not parent-before-child: a fork's first answer has been seen written before the copied history
//! and before its own prompt, an ai-title or last-prompt line can be the first line, and after a
//! `/cd` an assistant line preceded its prompt. Under load, an `/exit` typed right after a turn
//! has lost that turn's queued lines (the file kept only mode/permission-mode/last-prompt), so
//! the driver waits for a reply's line on disk before going on.
//!
//! Also seen: the client asks a small model for an AI title after the first prompt of a
//! session (`tools: []`, a JSON schema `{title}`); `CLAUDE_CODE_DISABLE_TERMINAL_TITLE` turns that
//! off in the interactive client. `/rename NAME` appends both `custom-title` and `agent-name`.
//! The folder-trust check walks up the parents of the cwd, so trusting a machine's base
//! directory in `$CLAUDE_CONFIG_DIR/.claude.json` covers every project below it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::messages_api::{Kind, MessagesApi, Reply};
use common::real_claude::{self, Client, WAIT};
use common::*;
use serde_json::{Value, json};

/// A machine with its PROJECTS directory (canonical: the client records realpaths).
struct Site {
    m: Machine,
    projects: PathBuf,
}

impl Site {
    fn new(w: &World, name: &str, projects_dir: &str, remote: &Path) -> Site {
        let m = w.machine(name);
        let projects = m.home.parent().unwrap().join(projects_dir);
        std::fs::create_dir_all(projects.join("app")).unwrap();
        let projects = std::fs::canonicalize(projects).unwrap();
        m.init(
            remote,
            &[
                "--add-placeholder",
                &format!("PROJECTS={}", projects.display()),
            ],
        );
        Site { m, projects }
    }

    fn app(&self) -> PathBuf {
        self.projects.join("app")
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A session written by the real client on A — a `Write` tool call under its cwd, renamed with
/// `/rename` — pushed, pulled on B under another PROJECTS path, is listed by B's `claude --resume`
/// picker with its title and resumes on B with B's paths.
///
/// The Write is allowed by answering the client's permission prompt ("Do you want to create
/// hello.txt?" → 1. Yes), in the default permission mode.
#[test]
fn a_real_session_written_on_a_resumes_on_b_with_b_paths() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let t0 = Instant::now();
    let w = World::new();
    let remote = w.path().join("sync.git");
    let api = MessagesApi::start();

    // A: a conversation with a tool call, renamed, then pushed.
    let a = Site::new(&w, "a", "projects", &remote);
    let a_file = a.app().join("hello.txt");
    api.push(Reply::write(&a_file, "hello from A\n"));
    api.push(Reply::text("Wrote hello.txt for you."));
    api.set_title("Create hello file");
    let client_a = Client::new(&exe, &a.m, &api);
    let tui = client_a.start(&a.app(), &[]);
    tui.wait_ready();
    let prompt = format!("please create {}", a_file.display());
    tui.submit(&prompt);
    tui.wait_for("Do you want to create hello.txt?", WAIT);
    tui.send_keys(&["Enter"]); // "❯ 1. Yes"
    tui.wait_reply("Wrote hello.txt for you.");
    tui.wait_recorded("Wrote hello.txt for you.", 1);
    tui.rename("My title");
    tui.exit();
    drop(tui);
    assert_eq!(std::fs::read_to_string(&a_file).unwrap(), "hello from A\n");
    let ids = real_claude::session_ids(&a.m.claude, &a.app());
    assert_eq!(ids.len(), 1, "one session on A: {ids:?}");
    let id = ids[0].clone();
    // The second turn carried the tool result back.
    let turns = api.turns();
    assert_eq!(turns.len(), 2, "two turns: the prompt and the tool result");
    assert!(turns[0].last_user_text().contains(&prompt));
    let results = turns[1].tool_results();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(api.pending(), 0);
    // The client asked the side model for a title and recorded it.
    let a_transcript = a.m.transcript_path(&a.app().to_string_lossy(), &id);
    let a_lines = lines(&a_transcript);
    assert!(api.requests().iter().any(|r| r.kind == Kind::Side));
    assert!(
        a_lines
            .iter()
            .any(|l| l["type"] == "ai-title" && l["aiTitle"] == "Create hello file")
    );
    assert!(
        a_lines
            .iter()
            .any(|l| l["type"] == "custom-title" && l["customTitle"] == "My title")
    );
    a.m.ok(&["push"]);

    // B: another PROJECTS path; init + pull.
    let b = Site::new(&w, "b", "code", &remote);
    b.m.ok(&["pull"]);
    let b_transcript = b.m.transcript_path(&b.app().to_string_lossy(), &id);
    assert!(
        b_transcript.is_file(),
        "pulled to {}",
        b_transcript.display()
    );
    let text = std::fs::read_to_string(&b_transcript).unwrap();
    let a_root = a.projects.to_string_lossy().into_owned();
    assert!(!text.contains(&a_root), "A's paths left in B's copy");
    let b_file = b.app().join("hello.txt");
    let write_input = lines(&b_transcript)
        .into_iter()
        .filter(|l| l["type"] == "assistant")
        .flat_map(|l| {
            l["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|c| c["type"] == "tool_use" && c["name"] == "Write")
        .expect("the Write call");
    assert_eq!(
        write_input["input"]["file_path"],
        json!(b_file.to_string_lossy())
    );

    // B's picker lists it with its title.
    let client_b = Client::new(&exe, &b.m, &api);
    let picker = client_b.start(&b.app(), &["--resume"]);
    picker.wait_for("Resume session", WAIT);
    picker.wait_for("My title", WAIT);
    picker.send_keys(&["Escape"]);
    picker.wait_exit(WAIT);
    drop(picker);

    // B resumes it by id and sees the earlier turns with B's paths.
    let tui = client_b.start(&b.app(), &["--resume", &id]);
    let screen = tui.wait_for("Wrote hello.txt for you.", WAIT);
    assert!(
        screen.contains(&format!("please create {}", b_file.display())),
        "the prompt shows B's path:\n{screen}"
    );
    assert!(screen.contains("Write(hello.txt)"), "{screen}");
    assert!(
        !screen.contains(&a_root),
        "A's path on B's screen:\n{screen}"
    );
    assert_eq!(tui.ctrl_d_twice(), 0);
    drop(tui);
    eprintln!("conformance case took {:?}", t0.elapsed());
}

/// A transcript's lines as raw text.
fn raw_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A machine for the client-fact cases: its canonical base directory (trusted by the client).
fn plain_machine(w: &World, name: &str) -> (Machine, PathBuf) {
    let m = w.machine(name);
    let base = std::fs::canonicalize(m.home.parent().unwrap()).unwrap();
    (m, base)
}

/// Finding (a): started in a directory reached through a symbolic link (with the shell's logical
/// `PWD`), the client resolves it: the project folder is ENC(realpath) and every `cwd` (and the
/// history's `project`) is the realpath.
#[test]
fn a_symlinked_cwd_is_recorded_as_its_realpath() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let w = World::new();
    let (m, base) = plain_machine(&w, "a");
    let real = base.join("real").join("app");
    std::fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
    let logical = base.join("link").join("app");
    let api = MessagesApi::start();
    api.push(Reply::text("Answer through the link."));
    let tui = Client::new(&exe, &m, &api).start(&logical, &[]);
    tui.wait_ready();
    tui.ask("hello through a link", "Answer through the link.");
    tui.exit();
    let ids = real_claude::session_ids(&m.claude, &real);
    assert_eq!(ids.len(), 1, "the session is under ENC(realpath)");
    assert!(
        real_claude::session_ids(&m.claude, &logical).is_empty(),
        "nothing under ENC(logical path)"
    );
    let path = m.transcript_path(&real.to_string_lossy(), &ids[0]);
    let cwds: Vec<Value> = lines(&path)
        .into_iter()
        .filter_map(|l| l.get("cwd").cloned())
        .collect();
    assert!(
        !cwds.is_empty(),
        "no cwd in:\n{}",
        std::fs::read_to_string(&path).unwrap()
    );
    assert!(
        cwds.iter().all(|c| *c == json!(real.to_string_lossy())),
        "{cwds:?}"
    );
    let history = std::fs::read_to_string(m.claude.join("history.jsonl")).unwrap();
    let first: Value = serde_json::from_str(history.lines().next().unwrap()).unwrap();
    assert_eq!(first["project"], json!(real.to_string_lossy()));
}

/// Finding (b): `/cd DIR` moves the transcript file into ENC(DIR) (the old folder no longer has
/// it) and appends `{"type":"relocated","sessionId":ID,"relocatedCwd":DIR}`; later lines carry
/// `cwd: DIR`; at exit the metadata re-append writes it again with another key order:
/// `{"type":"relocated","relocatedCwd":DIR,"sessionId":ID}`.
#[test]
fn cd_moves_the_transcript_and_appends_relocated_lines() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let w = World::new();
    let (m, base) = plain_machine(&w, "a");
    let app = base.join("projects").join("app");
    let other = base.join("projects").join("other");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let api = MessagesApi::start();
    api.push(Reply::text("Answer in app."));
    api.push(Reply::text("Answer in other."));
    let tui = Client::new(&exe, &m, &api).start(&app, &[]);
    tui.wait_ready();
    tui.ask("first in app", "Answer in app.");
    tui.submit(&format!("/cd {}", other.display()));
    let s = tui.wait_until("the move or its question", WAIT, |s| {
        s.contains("Moved to") || s.contains("Yes, move here")
    });
    if !s.contains("Moved to") {
        // "This session hasn't worked here before": 1. No, stay put (focused) / 2. Yes, move here
        tui.send_keys(&["Down"]);
        tui.send_keys(&["Enter"]);
        tui.wait_for("Moved to", WAIT);
    }
    tui.ask("second in other", "Answer in other.");
    tui.exit();
    assert!(real_claude::session_ids(&m.claude, &app).is_empty());
    let ids = real_claude::session_ids(&m.claude, &other);
    assert_eq!(ids.len(), 1);
    let id = &ids[0];
    let path = m.transcript_path(&other.to_string_lossy(), id);
    let raw = raw_lines(&path);
    let other_s = other.to_string_lossy();
    let stamped =
        format!(r#"{{"type":"relocated","sessionId":"{id}","relocatedCwd":"{other_s}"}}"#);
    let reappended =
        format!(r#"{{"type":"relocated","relocatedCwd":"{other_s}","sessionId":"{id}"}}"#);
    let relocated: Vec<&String> = raw
        .iter()
        .filter(|l| l.contains(r#""type":"relocated""#))
        .collect();
    assert_eq!(
        relocated.first().map(|l| l.as_str()),
        Some(stamped.as_str()),
        "{relocated:?}"
    );
    assert_eq!(
        relocated.last().map(|l| l.as_str()),
        Some(reappended.as_str()),
        "{relocated:?}"
    );
    let at = raw.iter().position(|l| *l == stamped).unwrap();
    let parsed: Vec<Value> = raw
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cwd_after: Vec<&Value> = parsed[at..].iter().filter_map(|l| l.get("cwd")).collect();
    assert!(!cwd_after.is_empty());
    assert!(
        cwd_after.iter().all(|c| **c == json!(other_s)),
        "{cwd_after:?}"
    );
    assert!(
        parsed[..at]
            .iter()
            .filter_map(|l| l.get("cwd"))
            .all(|c| *c == json!(app.to_string_lossy())),
        "lines before the move keep the old cwd"
    );
}

/// Synthetic transcript lines for the picker case (compact JSON, as the client writes).
fn synthetic_session(
    cwd: &str,
    sid: &str,
    first: &str,
    first_extra: Value,
    rest: &[Value],
) -> String {
    let mut user = json!({"parentUuid": null, "isSidechain": false, "type": "user",
        "message": {"role": "user", "content": first}, "uuid": format!("{sid}-u"),
        "timestamp": ts_at(0), "userType": "external", "entrypoint": "cli", "cwd": cwd,
        "sessionId": sid, "version": "2.1.197", "gitBranch": "main"});
    for (k, v) in first_extra.as_object().unwrap() {
        user[k] = v.clone();
    }
    let mut out = serde_json::to_string(&user).unwrap() + "\n";
    for l in rest {
        let mut l = l.clone();
        l["sessionId"] = json!(sid);
        out += &(serde_json::to_string(&l).unwrap() + "\n");
    }
    out
}

/// Finding (c): the `--resume` picker reads only the first and the last 64 KiB of each transcript;
/// the title is customTitle || aiTitle || summary || lastPrompt || first prompt; an `agent-name`
/// line is not used; a `custom-title` line in the middle of a long file is not seen; sidechain
/// sessions and `sdk-cli` sessions are hidden.
#[test]
fn the_picker_reads_head_and_tail_for_titles() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let w = World::new();
    let (m, base) = plain_machine(&w, "a");
    let dir = base.join("projects").join("app");
    std::fs::create_dir_all(&dir).unwrap();
    let cwd = dir.to_string_lossy().into_owned();
    let filler = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| {
                json!({"parentUuid": null, "isSidechain": false, "type": "assistant",
                "message": {"role": "assistant", "content": [{"type": "text",
                    "text": format!("filler {i} {}", "y".repeat(2000))}]},
                "uuid": format!("filler-{i}"), "timestamp": ts_at(1), "cwd": cwd})
            })
            .collect()
    };
    let title = |t: &str| json!({"type": "custom-title", "customTitle": t});
    let none = json!({});
    let sessions: Vec<(&str, Value, Vec<Value>)> = vec![
        (
            "HEAD",
            none.clone(),
            [vec![title("Title HEAD")], filler(120)].concat(),
        ),
        (
            "MID",
            none.clone(),
            [filler(60), vec![title("Title MID")], filler(60)].concat(),
        ),
        (
            "END",
            none.clone(),
            [filler(120), vec![title("Title END")]].concat(),
        ),
        (
            "AGENT",
            none.clone(),
            vec![json!({"type": "agent-name", "agentName": "Agent AGENT"})],
        ),
        (
            "AI",
            none.clone(),
            vec![
                json!({"type": "summary", "summary": "Summary AI", "leafUuid": "x"}),
                json!({"type": "ai-title", "aiTitle": "Ai AI"}),
            ],
        ),
        (
            "SUMMARY",
            none.clone(),
            vec![
                json!({"type": "summary", "summary": "Summary SUMMARY", "leafUuid": "x"}),
                json!({"type": "last-prompt", "lastPrompt": "lastprompt SUMMARY"}),
            ],
        ),
        (
            "LASTP",
            none.clone(),
            vec![json!({"type": "last-prompt", "lastPrompt": "lastprompt LASTP"})],
        ),
        ("SIDE", json!({"isSidechain": true}), vec![]),
        ("SDK", json!({"entrypoint": "sdk-cli"}), vec![]),
    ];
    for (i, (name, extra, rest)) in sessions.iter().enumerate() {
        let sid = format!("5e550000-0000-4000-8000-{i:012}");
        let text = synthetic_session(
            &cwd,
            &sid,
            &format!("first prompt {name}"),
            extra.clone(),
            rest,
        );
        if *name == "MID" {
            let at = text.find("Title MID").unwrap();
            assert!(
                at > 65536 && text.len() - at > 65536,
                "the title is outside both windows"
            );
        }
        m.write_transcript(&cwd, &sid, text.as_bytes());
    }
    let api = MessagesApi::start();
    let tui = Client::new(&exe, &m, &api).start(&dir, &["--resume"]);
    let shown = [
        "Title HEAD",
        "Title END",
        "first prompt MID",
        "first prompt AGENT",
        "Ai AI",
        "Summary SUMMARY",
        "lastprompt LASTP",
    ];
    let screen = tui.wait_until("the listed sessions", WAIT, |s| {
        shown.iter().all(|t| s.contains(t))
    });
    for hidden in [
        "Title MID",
        "Agent AGENT",
        "first prompt SIDE",
        "first prompt SDK",
    ] {
        assert!(!screen.contains(hidden), "{hidden} shown:\n{screen}");
    }
    tui.send_keys(&["Escape"]);
    tui.wait_exit(WAIT);
}

/// Finding (d): `claude --fork-session --resume ID` writes a new file (at the first new message)
/// with the earlier lines copied byte for byte except `sessionId`, which is the new id in every
/// line; `uuid`s and `parentUuid`s are kept; no `forkedFrom`; the original file is untouched.
#[test]
fn fork_session_copies_the_lines_under_a_new_session_id() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let w = World::new();
    let (m, base) = plain_machine(&w, "a");
    let app = base.join("projects").join("app");
    std::fs::create_dir_all(&app).unwrap();
    let api = MessagesApi::start();
    api.push(Reply::text("Original answer."));
    api.push(Reply::text("Fork answer."));
    let client = Client::new(&exe, &m, &api);
    let tui = client.start(&app, &[]);
    tui.wait_ready();
    tui.ask("original prompt", "Original answer.");
    tui.exit();
    drop(tui);
    let ids = real_claude::session_ids(&m.claude, &app);
    assert_eq!(ids.len(), 1);
    let id = ids[0].clone();
    let original_path = m.transcript_path(&app.to_string_lossy(), &id);
    let original = std::fs::read(&original_path).unwrap();
    let text = String::from_utf8_lossy(&original);
    assert!(
        text.contains("original prompt") && text.contains("Original answer."),
        "the first run's transcript lacks its turn:\n{text}"
    );

    let tui = client.start(&app, &["--fork-session", "--resume", &id]);
    tui.wait_for("Original answer.", WAIT);
    tui.ask("fork prompt", "Fork answer.");
    tui.exit();
    drop(tui);
    assert_eq!(
        std::fs::read(&original_path).unwrap(),
        original,
        "original untouched"
    );
    let ids = real_claude::session_ids(&m.claude, &app);
    assert_eq!(ids.len(), 2);
    let new = ids.into_iter().find(|i| *i != id).unwrap();
    let fork_path = m.transcript_path(&app.to_string_lossy(), &new);
    let fork = raw_lines(&fork_path);
    assert!(fork.iter().all(|l| !l.contains("forkedFrom")));
    assert!(
        fork.iter().all(|l| !l.contains(&id)),
        "the old id is gone from every line"
    );
    for l in &fork {
        let v: Value = serde_json::from_str(l).unwrap();
        // (file-history-snapshot lines have no sessionId)
        if let Some(sid) = v.get("sessionId") {
            assert_eq!(*sid, json!(new), "{l}");
        }
    }
    let fork_set: std::collections::HashSet<&str> = fork.iter().map(|l| l.as_str()).collect();
    let original_lines = raw_lines(&original_path);
    let by_uuid: std::collections::HashMap<String, (&String, Value)> = original_lines
        .iter()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Some((v.get("uuid")?.as_str()?.to_string(), (l, v)))
        })
        .collect();
    // The fork's prompt continues the resumed leaf; the chain up to it is copied. (Not
    // necessarily the fork's first new line in file order: its answer has been seen written
    // before the copied history and the prompt.)
    let first_new = fork
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["type"] == "user" && v["message"]["content"] == "fork prompt")
        .expect("the fork's prompt");
    let fork_by_uuid: std::collections::HashMap<String, Value> = fork
        .iter()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            Some((v.get("uuid")?.as_str()?.to_string(), v))
        })
        .collect();
    let mut chain = 0;
    let mut cur = first_new["parentUuid"].as_str().map(str::to_string);
    while let Some(u) = cur {
        // Lines the client makes on resume can reach the fork's chain without being in the
        // original file (seen on a loaded machine, often): the earlier run's `/exit` (its
        // caveat, the command, its output) and a `<synthetic>` assistant line after it. Its
        // own lines, not copied ones.
        let client_made = |v: &Value| {
            (v["type"] == "user"
                && v["message"]["content"].as_str().is_some_and(|c| {
                    c.starts_with("<local-command-") || c.starts_with("<command-name>")
                }))
                || (v["type"] == "assistant" && v["message"]["model"] == "<synthetic>")
        };
        if !by_uuid.contains_key(&u)
            && let Some(v) = fork_by_uuid.get(&u)
            && client_made(v)
        {
            cur = v["parentUuid"].as_str().map(str::to_string);
            continue;
        }
        let (raw, v) = by_uuid.get(&u).unwrap_or_else(|| {
            panic!(
                "{u} not in the original:\n{}\nFORK:\n{}",
                original_lines.join("\n"),
                fork.join("\n")
            )
        });
        let copied = raw.replace(&id, &new);
        assert!(
            fork_set.contains(copied.as_str()),
            "not copied verbatim: {raw}\nFORK:\n{}",
            fork.join("\n")
        );
        chain += 1;
        cur = v["parentUuid"].as_str().map(str::to_string);
    }
    assert!(
        chain >= 2,
        "the prompt and the answer are on the copied chain"
    );
}

/// Finding (e): a SessionStart hook is shown to the user through JSON `systemMessage`
/// ("SessionStart:startup says: …", "SessionStart:resume says: …"); plain stdout and
/// `additionalContext` go to the model, not to the screen. The hook gets `session_id`,
/// `transcript_path`, `cwd`, `hook_event_name`, `source` on stdin.
///
/// On resume the client drops the new SessionStart hook attachments, `systemMessage` included,
/// when none of their context strings (plain stdout, `additionalContext`) is new to the
/// transcript and the transcript already holds SessionStart context: a hook whose context is the
/// same every time is silent on resume. With a changing `additionalContext` it is shown.
#[test]
fn a_session_start_hook_is_shown_through_system_message() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let w = World::new();
    let (m, base) = plain_machine(&w, "a");
    let app = base.join("projects").join("app");
    std::fs::create_dir_all(&app).unwrap();
    let input = m.bin.join("hook-input.json");
    // With HOOK_NONCE set, the additionalContext changes from run to run.
    let json_hook = m.script(
        "json-hook",
        &format!(
            "cat > '{}'\nctx=ADDCTX-MARKER\n[ -n \"$HOOK_NONCE\" ] && ctx=\"ADDCTX-MARKER $(date +%s%N)\"\n\
             printf '{{\"systemMessage\": \"SYSMSG-MARKER from the hook\", \
             \"hookSpecificOutput\": {{\"hookEventName\": \"SessionStart\", \
             \"additionalContext\": \"%s\"}}}}\\n' \"$ctx\"\n",
            input.display()
        ),
    );
    let plain_hook = m.script("plain-hook", "echo PLAIN-STDOUT-MARKER\n");
    let hook =
        |cmd: &Path| json!({"type": "command", "command": cmd.to_string_lossy(), "timeout": 10});
    std::fs::write(
        m.claude.join("settings.json"),
        serde_json::to_vec_pretty(&json!({"hooks": {"SessionStart": [
            {"matcher": "", "hooks": [hook(&plain_hook), hook(&json_hook)]}
        ]}}))
        .unwrap(),
    )
    .unwrap();
    let hook_input =
        || -> Value { serde_json::from_slice(&std::fs::read(&input).unwrap()).unwrap() };
    let api = MessagesApi::start();
    api.push(Reply::text("Hook answer."));
    let client = Client::new(&exe, &m, &api);
    let tui = client.start(&app, &[]);
    tui.wait_for(
        "SessionStart:startup says: SYSMSG-MARKER from the hook",
        WAIT,
    );
    tui.wait_ready();
    let screen = tui.ask("check the hooks", "Hook answer.");
    assert!(!screen.contains("PLAIN-STDOUT-MARKER"), "{screen}");
    assert!(!screen.contains("ADDCTX-MARKER"), "{screen}");
    let turn = String::from_utf8(api.turns()[0].body.clone()).unwrap();
    assert!(turn.contains("PLAIN-STDOUT-MARKER") && turn.contains("ADDCTX-MARKER"));
    assert!(!turn.contains("SYSMSG-MARKER"));
    assert_eq!(hook_input()["source"], "startup");
    tui.exit();
    drop(tui);
    let id = real_claude::session_ids(&m.claude, &app).remove(0);
    let text = std::fs::read_to_string(m.transcript_path(&app.to_string_lossy(), &id)).unwrap();
    assert!(
        text.contains("check the hooks") && text.contains("Hook answer."),
        "the first run's transcript lacks its turn:\n{text}"
    );

    // Resume, same hook output: the hooks run (before the transcript is shown), but nothing is
    // displayed.
    let tui = client.start(&app, &["--resume", &id]);
    let screen = tui.wait_for("Hook answer.", WAIT);
    let got = hook_input();
    assert_eq!(got["source"], "resume");
    assert_eq!(got["session_id"], json!(id));
    assert_eq!(got["hook_event_name"], "SessionStart");
    assert_eq!(got["cwd"], json!(app.to_string_lossy()));
    assert_eq!(
        got["transcript_path"],
        json!(
            m.transcript_path(&app.to_string_lossy(), &id)
                .to_string_lossy()
        )
    );
    assert!(!screen.contains("SessionStart:resume says"), "{screen}");
    assert_eq!(tui.ctrl_d_twice(), 0);
    drop(tui);

    // Resume with a changing additionalContext: shown.
    let client = client.with_env("HOOK_NONCE", "1");
    let tui = client.start(&app, &["--resume", &id]);
    tui.wait_for(
        "SessionStart:resume says: SYSMSG-MARKER from the hook",
        WAIT,
    );
    assert_eq!(tui.ctrl_d_twice(), 0);
}

/// The stand-in itself (runs without the real client): a streamed turn from the queue, a
/// non-streamed one, a title request, count_tokens, the probe and an unknown endpoint.
#[test]
fn messages_api_stand_in_answers_what_the_client_sends() {
    let api = MessagesApi::start();
    api.push(Reply::write(Path::new("/tmp/x/hello.txt"), "hi\n"));
    api.push(Reply::text("done"));
    let addr = api.base_url().trim_start_matches("http://").to_string();
    let post = |path: &str, body: &Value| -> String {
        let body = body.to_string();
        let mut s = TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let turn = |stream: bool, content: Value| {
        json!({"model": "claude-opus-4-8", "stream": stream, "tools": [{"name": "Write"}],
               "messages": [{"role": "user", "content": content}]})
    };
    let sse = post("/v1/messages?beta=true", &turn(true, json!("make it")));
    assert!(sse.starts_with("HTTP/1.1 200"), "{sse}");
    assert!(sse.contains("text/event-stream"));
    assert!(sse.contains("event: message_start"));
    assert!(sse.contains(r#""type":"input_json_delta""#));
    assert!(
        sse.contains(r#"\"file_path\":\"/tmp/x/hello.txt\""#),
        "{sse}"
    );
    assert!(sse.contains(r#""stop_reason":"tool_use""#));
    assert!(sse.contains("event: message_stop"));
    let result = json!([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]);
    let plain = post("/v1/messages", &turn(false, result));
    let body: Value = serde_json::from_str(plain.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["content"][0]["text"], "done");
    assert_eq!(body["stop_reason"], "end_turn");
    // Title generation: no tools, a JSON schema; never consumes the queue.
    api.set_title("Fix the thing");
    let title = post(
        "/v1/messages?beta=true",
        &json!({"model": "claude-haiku-4-5", "stream": false, "tools": [],
                "messages": [{"role": "user", "content": "<session>x</session>"}],
                "output_config": {"format": {"type": "json_schema", "schema": {
                    "type": "object", "properties": {"title": {"type": "string"}},
                    "required": ["title"]}}}}),
    );
    let body: Value = serde_json::from_str(title.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let inner: Value = serde_json::from_str(body["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(inner, json!({"title": "Fix the thing"}));
    let count = post("/v1/messages/count_tokens", &json!({"messages": []}));
    assert!(count.contains("input_tokens"), "{count}");
    let unknown = post("/v1/nothing", &json!({}));
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut head = String::new();
    s.read_to_string(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let kinds: Vec<Kind> = api.requests().iter().map(|r| r.kind).collect();
    use Kind::*;
    assert_eq!(kinds, [Turn, Turn, Side, CountTokens, Other, Other]);
    let turns = api.turns();
    assert_eq!(turns[0].last_user_text(), "make it");
    assert_eq!(turns[1].tool_results().len(), 1);
    assert!(turns.iter().all(|t| t.reply.is_some()));
    assert_eq!(api.pending(), 0);
    assert!(api.wait_for_turns(2, Duration::from_millis(10)));
}
