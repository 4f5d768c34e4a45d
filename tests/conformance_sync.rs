//! Conformance of ccsync's sync with the real Claude Code client (pinned 2.1.197; see the header
//! of `tests/conformance.rs` for the set-up and the skip rule: without `CCSYNC_REAL_CLAUDE` each
//! case prints SKIPPED and passes, unless `CI` is set).
//!
//! Each case puts the real client on simulated machines (own HOME, CLAUDE_CONFIG_DIR and
//! CCSYNC_HOME) that share a local bare remote, syncs them with ccsync's binary, and then asks
//! the client itself whether it finds what ccsync placed: its `--resume` picker, `--resume ID`,
//! its memory loading, its clean-up. What the client loaded of a conversation is checked on the
//! screen and in the request it sends to the stand-in API with the next prompt (the whole visible
//! conversation goes with every turn).
//!
//! Client facts these cases rely on or found (2.1.197, from runs and its bundled code):
//!
//! (f) Clean-up timing. Housekeeping is started at launch (and again at the first prompt) and
//!     looks 5 s later, but the interactive client postpones it by 10 minutes whenever the
//!     user's last interaction is less than a minute old — and start-up counts as one
//!     (`lastInteractionTime` starts at `Date.now()`). So an interactive session does not clean
//!     up in its first ~10 minutes (seen: nothing deleted in 20 s). In print mode (`-p`) there
//!     is no such wait: it cleans up 5 s after start if still running (its timer is unref'd, so
//!     a run that ends sooner does not clean up). The value comes from the merged settings,
//!     the project's `.claude/settings.json` included; `.last-cleanup` is written after it.
//! (g) `claude --resume ID` in a directory whose folder name is long (hashed) also finds a
//!     session in another folder with the same first 200 characters; the picker lists only
//!     the cwd's own folder.
//! (h) `/cd DIR` to a directory under a trusted ancestor moves at once; the "Yes, move here"
//!     question is for untrusted directories.
//! (i) Hooks in exec form (`"command"` a program, `"args"` its arguments), as `setup-hooks`
//!     writes them, are run: SessionStart with `startup` and `resume`, SessionEnd on `/exit`
//!     and Ctrl-D.
//! (j) The `last-prompt` line the client writes after a turn names, as `leafUuid`, the turn's
//!     trailing `system` line (the "✻ … for Ns" turn duration), not the assistant message.
//! (k) Memory: started in `mono/svc/api` of a git repository `mono`, the client puts
//!     `projects/ENC(mono)/memory/MEMORY.md` into its request.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::messages_api::{MessagesApi, Reply, Request};
use common::real_claude::{self, Client, Tui, WAIT};
use common::*;

/// A machine with its canonical base directory (`<world>/<name>`, trusted by the client) and
/// its PROJECTS directory.
struct Site {
    m: Machine,
    base: PathBuf,
    projects: PathBuf,
}

impl Site {
    /// A machine whose PROJECTS is `<base>/projects`, initialised on `remote`.
    fn new(w: &World, name: &str, remote: &Path) -> Site {
        let m = w.machine(name);
        let base = std::fs::canonicalize(m.home.parent().unwrap()).unwrap();
        let projects = base.join("projects");
        Site::with_projects(m, base, projects, remote)
    }

    /// A machine whose PROJECTS is `projects` as spelled (it may go through a symbolic link).
    fn with_projects(m: Machine, base: PathBuf, projects: PathBuf, remote: &Path) -> Site {
        std::fs::create_dir_all(&projects).unwrap();
        m.init(
            remote,
            &[
                "--add-placeholder",
                &format!("PROJECTS={}", projects.display()),
            ],
        );
        Site { m, base, projects }
    }

    /// `PROJECTS/rel`, created.
    fn dir(&self, rel: &str) -> PathBuf {
        let p = self.projects.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn client(&self, exe: &Path, api: &MessagesApi) -> Client {
        Client::new(exe, &self.m, api)
    }
}

/// Poll `f` (bounded) until it gives a value.
fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Send `prompt`, answered with `reply`; returns the request the client sent for it.
fn ask(tui: &Tui, api: &MessagesApi, prompt: &str, reply: &str) -> Request {
    api.push(Reply::text(reply));
    tui.ask(prompt, reply);
    api.turn_answered(reply)
        .unwrap_or_else(|| panic!("no turn was answered with {reply:?}"))
}

/// A new session in `dir` with these (prompt, reply) turns, ended with `/exit`; its id.
fn new_session(client: &Client, api: &MessagesApi, dir: &Path, turns: &[(&str, &str)]) -> String {
    let before = real_claude::session_ids(&client.claude_dir, dir);
    let tui = client.start(dir, &[]);
    tui.wait_ready();
    for (p, r) in turns {
        ask(&tui, api, p, r);
    }
    tui.exit();
    drop(tui);
    let mut new: Vec<String> = real_claude::session_ids(&client.claude_dir, dir)
        .into_iter()
        .filter(|i| !before.contains(i))
        .collect();
    assert_eq!(new.len(), 1, "one new session in {}", dir.display());
    new.remove(0)
}

/// `claude --resume ID` in `dir`: waits until `shown` is on the screen, checks that none of
/// `hidden` is, sends `prompt` and returns the request the client sent (the conversation it
/// loaded), after checking that it carries `shown` and none of `hidden`.
fn resume_shows(
    client: &Client,
    api: &MessagesApi,
    dir: &Path,
    id: &str,
    shown: &str,
    hidden: &[&str],
    prompt: &str,
) -> Request {
    let tui = client.start(dir, &["--resume", id]);
    let screen = tui.wait_for(shown, WAIT);
    for h in hidden {
        assert!(
            !screen.contains(h),
            "{h:?} shown by --resume {id} in {}:\n{screen}",
            dir.display()
        );
    }
    tui.wait_ready();
    let reply = format!("Answer to {prompt}.");
    let req = ask(&tui, api, prompt, &reply);
    assert!(
        req.mentions(shown),
        "the client did not send {shown:?}: {:?}",
        req.conversation_texts()
    );
    for h in hidden {
        assert!(
            !req.mentions(h),
            "the client sent {h:?}: {:?}",
            req.conversation_texts()
        );
    }
    assert!(req.last_user_text().contains(prompt));
    assert_eq!(tui.ctrl_d_twice(), 0);
    req
}

/// The `--resume` picker in `dir`: waits until every text of `listed` is shown, then checks that
/// none of `absent` is. Returns the screen.
fn picker_lists(client: &Client, dir: &Path, listed: &[&str], absent: &[&str]) -> String {
    let tui = client.start(dir, &["--resume"]);
    tui.wait_for("Resume session", WAIT);
    let screen = tui.wait_until(&format!("the picker listing {listed:?}"), WAIT, |s| {
        listed.iter().all(|t| s.contains(t))
    });
    for a in absent {
        assert!(
            !screen.contains(a),
            "{a:?} listed by the picker in {}:\n{screen}",
            dir.display()
        );
    }
    tui.send_keys(&["Escape"]);
    tui.wait_exit(WAIT);
    screen
}

/// Case 1: two machines continue one session apart; after A, B, A sync every turn of both is
/// visible on both, the same way: `claude --resume ID` shows the newest turn (B's), the picker
/// lists an "(other branch, …)" session, and that session shows the other turn (A's).
#[test]
fn a_session_continued_apart_on_two_machines_keeps_every_turn_visible_on_both() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let t0 = Instant::now();
    let w = World::new();
    let remote = w.path().join("sync.git");
    let api = MessagesApi::start();
    let a = Site::new(&w, "a", &remote);
    let b = Site::new(&w, "b", &remote);
    let (ca, cb) = (a.client(&exe, &api), b.client(&exe, &api));
    let (a_app, b_app) = (a.dir("app"), b.dir("app"));

    api.set_title("Shared conversation");
    let id = new_session(
        &ca,
        &api,
        &a_app,
        &[
            ("first common prompt", "First common answer."),
            ("second common prompt", "Second common answer."),
        ],
    );
    a.m.ok(&["push"]);
    b.m.ok(&["pull"]);
    assert!(b.m.transcript_path(&b_app.to_string_lossy(), &id).is_file());

    // Both continue the conversation from the same point, A first.
    for (c, dir, prompt, reply) in [
        (&ca, &a_app, "turn from machine A", "Reply on machine A."),
        (&cb, &b_app, "turn from machine B", "Reply on machine B."),
    ] {
        let tui = c.start(dir, &["--resume", &id]);
        tui.wait_for("Second common answer.", WAIT);
        tui.wait_ready();
        let req = ask(&tui, &api, prompt, reply);
        assert!(req.mentions("first common prompt") && req.mentions("Second common answer."));
        tui.exit();
    }
    // (j) The client's `last-prompt` after A's turn names the turn's trailing `system` line.
    let a_lines: Vec<serde_json::Value> =
        std::fs::read_to_string(a.m.transcript_path(&a_app.to_string_lossy(), &id))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let leaf = a_lines
        .iter()
        .rfind(|l| l["type"] == "last-prompt" && l["lastPrompt"] == "turn from machine A")
        .and_then(|l| l["leafUuid"].as_str())
        .expect("a last-prompt line for A's turn");
    let named = a_lines.iter().find(|l| l["uuid"] == leaf).unwrap();
    assert_eq!(named["type"], "system", "{named}");
    assert_eq!(
        a_lines
            .iter()
            .find(|l| l["uuid"] == named["parentUuid"])
            .unwrap()["type"],
        "assistant"
    );

    a.m.ok(&["sync"]);
    b.m.ok(&["sync"]);
    a.m.ok(&["sync"]);

    // Converged: both machines hold the same lines (in their own paths and order) in the
    // session and in its other branch, and another round of syncs changes nothing.
    let folder = |s: &Site, dir: &Path| {
        s.m.claude
            .join("projects")
            .join(real_claude::folder_name(&dir.to_string_lossy()))
    };
    let snapshot = |s: &Site, dir: &Path, from: &Path| {
        let mut files: Vec<(String, Vec<String>)> = std::fs::read_dir(folder(s, dir))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap();
                let text = text.replace(&from.to_string_lossy().into_owned(), "PROJECTS");
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                lines.sort();
                (e.file_name().to_string_lossy().into_owned(), lines)
            })
            .collect();
        files.sort();
        files
    };
    let on_a = snapshot(&a, &a_app, &a.projects);
    let on_b = snapshot(&b, &b_app, &b.projects);
    assert_eq!(on_a.len(), 2, "{on_a:?}");
    assert_eq!(on_a, on_b, "the machines hold the same lines");
    b.m.ok(&["sync"]);
    a.m.ok(&["sync"]);
    assert_eq!(snapshot(&a, &a_app, &a.projects), on_a, "A changed again");
    assert_eq!(snapshot(&b, &b_app, &b.projects), on_b, "B changed again");

    let mut forks = Vec::new();
    for (s, c, dir) in [(&a, &ca, &a_app), (&b, &cb, &b_app)] {
        let ids = real_claude::session_ids(&s.m.claude, dir);
        assert_eq!(
            ids.len(),
            2,
            "the session and its other branch on {}",
            s.m.name
        );
        let fork = ids.into_iter().find(|i| *i != id).unwrap();
        // The session shows the newest turn (B's) and carries the common ones.
        let req = resume_shows(
            c,
            &api,
            dir,
            &id,
            "turn from machine B",
            &["turn from machine A"],
            &format!("check the main branch on {}", s.m.name),
        );
        assert!(req.mentions("first common prompt") && req.mentions("Reply on machine B."));
        // The picker lists the other branch as a session of its own, titled after that
        // branch's last prompt (the client's `last-prompt` line names the answer's trailing
        // line; ccsync climbs from it to the turn).
        picker_lists(
            c,
            dir,
            &[
                "Shared conversation\n",
                "turn from machine A (other branch, ",
            ],
            &[],
        );
        let req = resume_shows(
            c,
            &api,
            dir,
            &fork,
            "turn from machine A",
            &["turn from machine B"],
            &format!("check the other branch on {}", s.m.name),
        );
        assert!(req.mentions("second common prompt") && req.mentions("Reply on machine A."));
        forks.push(fork);
    }
    assert_eq!(forks[0], forks[1], "the same fork id on both machines");
    eprintln!("case took {:?}", t0.elapsed());
}

/// ccsync's hook log on a machine.
fn hooks_log(m: &Machine) -> String {
    std::fs::read_to_string(m.tool.join("logs").join("hooks.log")).unwrap_or_default()
}

/// The transcript of session `id` as the remote holds it (its segments, concatenated).
fn remote_transcript(remote: &Path, id: &str) -> String {
    let part = format!("/sessions/{id}/transcript/");
    let mut paths: Vec<String> = repo_paths(remote)
        .into_iter()
        .filter(|p| p.contains(&part))
        .collect();
    paths.sort();
    paths.iter().filter_map(|p| repo_file(remote, p)).collect()
}

fn remote_has_lock(remote: &Path, id: &str) -> bool {
    repo_paths(remote).contains(&format!("locks/{id}.json"))
}

/// Wait (bounded) until the session-end hook of `id` has run `n` times on `m` (its detached
/// worker pushes after the client has ended) and the remote holds `text` and no lock of `id`.
fn wait_session_end(m: &Machine, remote: &Path, id: &str, n: usize, text: &str) {
    let done = format!("session-end {id}: pushed");
    poll(
        &format!("session-end #{n} of {id} on {} to push {text:?}", m.name),
        WAIT,
        || {
            (hooks_log(m).matches(&done).count() >= n
                && remote_transcript(remote, id).contains(text)
                && !remote_has_lock(remote, id))
            .then_some(())
        },
    );
}

/// Case 2: the hooks `ccsync setup-hooks` installs are accepted and run by the real client.
/// SessionStart (startup) takes the session's lock in the repository; SessionEnd pushes the
/// session and releases the lock. And when another machine's turns arrive through the
/// SessionStart hook of a `--resume` (after the client has loaded the transcript), the client
/// shows ccsync's message; resuming again shows those turns.
#[test]
fn hooks_from_setup_hooks_lock_push_and_tell_about_late_turns() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let t0 = Instant::now();
    let w = World::new();
    let remote = w.path().join("sync.git");
    let api = MessagesApi::start();
    let a = Site::new(&w, "a", &remote);
    let b = Site::new(&w, "b", &remote);
    for s in [&a, &b] {
        let out = s.m.ok(&["setup-hooks"]);
        assert!(
            out.contains("Added SessionStart and SessionEnd hooks"),
            "{out}"
        );
    }
    let (ca, cb) = (a.client(&exe, &api), b.client(&exe, &api));
    let (a_app, b_app) = (a.dir("app"), b.dir("app"));

    // A new session on A: the start hook runs (logged) and takes the lock.
    let tui = ca.start(&a_app, &[]);
    tui.wait_ready();
    let id = poll("the session-start hook on A", WAIT, || {
        let log = hooks_log(&a.m);
        let line = log.lines().find(|l| l.contains("session-start "))?;
        let rest = line.split("session-start ").nth(1)?;
        assert!(rest.contains("locked=true"), "{log}");
        Some(rest.split(':').next()?.to_string())
    });
    poll("A's lock in the remote", WAIT, || {
        remote_has_lock(&remote, &id).then_some(())
    });
    let lock: serde_json::Value =
        serde_json::from_str(&repo_file(&remote, &format!("locks/{id}.json")).unwrap()).unwrap();
    assert_eq!(lock["machine_id"], "a", "A holds it: {lock}");
    assert_eq!(lock["session_id"], id.as_str(), "{lock}");
    ask(
        &tui,
        &api,
        "prompt with hooks on A",
        "Answer with hooks on A.",
    );
    tui.exit();
    drop(tui);
    assert_eq!(
        real_claude::session_ids(&a.m.claude, &a_app),
        std::slice::from_ref(&id),
        "the hook saw the session's id"
    );
    // /exit: the end hook pushes the session and releases the lock.
    wait_session_end(&a.m, &remote, &id, 1, "Answer with hooks on A.");
    assert!(remote_transcript(&remote, &id).contains("prompt with hooks on A"));

    // B gets the session; A goes on with it (its hooks push again).
    b.m.ok(&["pull"]);
    let b_path = b.m.transcript_path(&b_app.to_string_lossy(), &id);
    assert!(b_path.is_file());
    let tui = ca.start(&a_app, &["--resume", &id]);
    tui.wait_for("Answer with hooks on A.", WAIT);
    tui.wait_ready();
    ask(&tui, &api, "newer turn from A", "Newer answer on A.");
    tui.exit();
    drop(tui);
    wait_session_end(&a.m, &remote, &id, 2, "Newer answer on A.");
    assert!(
        !std::fs::read_to_string(&b_path)
            .unwrap()
            .contains("newer turn from A")
    );

    // B resumes its stale copy: the client loads it, then the start hook brings A's turn and
    // ccsync says so on the screen.
    let tui = cb.start(&b_app, &["--resume", &id]);
    let screen = tui.wait_for("SessionStart:resume says: ccsync brought ", WAIT);
    assert!(screen.contains("newer line(s)"), "{screen}");
    assert!(
        !screen.contains("newer turn from A"),
        "the client had loaded the transcript before the hook:\n{screen}"
    );
    assert!(
        std::fs::read_to_string(&b_path)
            .unwrap()
            .contains("newer turn from A"),
        "the hook brought A's turn"
    );
    assert_eq!(tui.ctrl_d_twice(), 0);
    drop(tui);
    poll("B's session-end hook", WAIT, || {
        hooks_log(&b.m)
            .contains(&format!("session-end {id}: pushed"))
            .then_some(())
    });
    // As the message says: resuming again shows A's turn.
    resume_shows(
        &cb,
        &api,
        &b_app,
        &id,
        "newer turn from A",
        &["ccsync brought"],
        "check on B",
    );
    eprintln!("case took {:?}", t0.elapsed());
}

/// Case 3: B's PROJECTS placeholder is a symbolic link (`<B>/code -> data/code`). After B pulls
/// A's session, B's client started in the logical path `<B>/code/app` (its realpath is
/// `<B>/data/code/app`) lists it in the picker and resumes it.
#[cfg(unix)]
#[test]
fn a_session_pulled_under_a_symlinked_placeholder_is_found_by_the_client() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let t0 = Instant::now();
    let w = World::new();
    let remote = w.path().join("sync.git");
    let api = MessagesApi::start();
    let a = Site::new(&w, "a", &remote);
    let bm = w.machine("b");
    let b_base = std::fs::canonicalize(bm.home.parent().unwrap()).unwrap();
    std::fs::create_dir_all(b_base.join("data/code/app")).unwrap();
    std::os::unix::fs::symlink(b_base.join("data/code"), b_base.join("code")).unwrap();
    let b = Site::with_projects(bm, b_base.clone(), b_base.join("code"), &remote);

    api.set_title("Linked project talk");
    let id = new_session(
        &a.client(&exe, &api),
        &api,
        &a.dir("app"),
        &[("prompt before the link", "Answer before the link.")],
    );
    a.m.ok(&["push"]);
    b.m.ok(&["pull"]);
    let logical = b.base.join("code/app");
    let real = b.base.join("data/code/app");
    assert_eq!(
        real_claude::session_ids(&b.m.claude, &real),
        std::slice::from_ref(&id)
    );

    let cb = b.client(&exe, &api);
    picker_lists(&cb, &logical, &["Linked project talk"], &[]);
    let req = resume_shows(
        &cb,
        &api,
        &logical,
        &id,
        "Answer before the link.",
        &[],
        "check through the link",
    );
    assert!(req.mentions("prompt before the link"));
    eprintln!("case took {:?}", t0.elapsed());
}

/// Case 4: a session moved with the client's `/cd` on A lands, on B, where the client looks
/// for it: `claude --resume ID` finds it in `<B>/projects/other` and not in
/// `<B>/projects/app`.
#[test]
fn a_session_moved_with_cd_is_found_in_its_new_directory_on_the_other_machine() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let t0 = Instant::now();
    let w = World::new();
    let remote = w.path().join("sync.git");
    let api = MessagesApi::start();
    let a = Site::new(&w, "a", &remote);
    let b = Site::new(&w, "b", &remote);
    let (a_app, a_other) = (a.dir("app"), a.dir("other"));
    let (b_app, b_other) = (b.dir("app"), b.dir("other"));

    let tui = a.client(&exe, &api).start(&a_app, &[]);
    tui.wait_ready();
    ask(&tui, &api, "prompt in app", "Answer in app.");
    tui.submit(&format!("/cd {}", a_other.display()));
    let s = tui.wait_until("the move or its question", WAIT, |s| {
        s.contains("Moved to") || s.contains("Yes, move here")
    });
    if !s.contains("Moved to") {
        // "This session hasn't worked here before": 1. No, stay put (focused) / 2. Yes, move
        // here. (Seen asked, and seen not asked, for a sibling of the session's directory.)
        tui.send_keys(&["Down"]);
        tui.send_keys(&["Enter"]);
        tui.wait_for("Moved to", WAIT);
    }
    ask(&tui, &api, "prompt in other", "Answer in other.");
    tui.exit();
    drop(tui);
    assert!(real_claude::session_ids(&a.m.claude, &a_app).is_empty());
    let ids = real_claude::session_ids(&a.m.claude, &a_other);
    assert_eq!(ids.len(), 1, "the client moved the session");
    let id = ids[0].clone();
    a.m.ok(&["push"]);
    b.m.ok(&["pull"]);
    assert_eq!(
        real_claude::session_ids(&b.m.claude, &b_other),
        std::slice::from_ref(&id)
    );
    assert!(real_claude::session_ids(&b.m.claude, &b_app).is_empty());

    let cb = b.client(&exe, &api);
    let req = resume_shows(
        &cb,
        &api,
        &b_other,
        &id,
        "Answer in other.",
        &[],
        "check in other",
    );
    assert!(req.mentions("prompt in app") && req.mentions("Answer in app."));
    // Not in the directory it was started in.
    let tui = cb.start(&b_app, &["--resume", &id]);
    tui.wait_for(
        &format!("No conversation found with session ID: {id}"),
        WAIT,
    );
    drop(tui);
    eprintln!("case took {:?}", t0.elapsed());
}

/// Case 5: two working directories longer than 200 characters that share their first 200 (so
/// their folder names differ only by the client's hash suffix): each keeps its own session on B,
/// B's picker in each lists only that directory's session, and `--resume ID` works in each.
#[test]
fn long_paths_sharing_their_first_200_characters_keep_their_own_sessions() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let t0 = Instant::now();
    let w = World::new();
    let remote = w.path().join("sync.git");
    let api = MessagesApi::start();
    let a = Site::new(&w, "a", &remote);
    let b = Site::new(&w, "b", &remote);
    let deep = "segment-of-a-long-path/".repeat(10);
    let ca = a.client(&exe, &api);
    let mut ids = Vec::new();
    for tail in ["one", "two"] {
        let dir = a.dir(&format!("{deep}{tail}"));
        api.set_title(&format!("Long path {tail}"));
        let id = new_session(
            &ca,
            &api,
            &dir,
            &[(&format!("prompt in {tail}"), &format!("Answer in {tail}."))],
        );
        ids.push(id);
    }
    a.m.ok(&["push"]);
    b.m.ok(&["pull"]);
    let dirs: Vec<PathBuf> = ["one", "two"]
        .iter()
        .map(|t| b.dir(&format!("{deep}{t}")))
        .collect();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| real_claude::folder_name(&d.to_string_lossy()))
        .collect();
    assert!(names.iter().all(|n| n.len() > 201) && names[0][..200] == names[1][..200]);
    assert_ne!(names[0], names[1]);
    assert_eq!(
        names[0],
        ccsync::claude::naming::project_folder_name(&dirs[0].to_string_lossy()),
        "the test's rule is ccsync's"
    );
    let cb = b.client(&exe, &api);
    for (i, (dir, tail)) in dirs.iter().zip(["one", "two"]).enumerate() {
        let other = if i == 0 { "two" } else { "one" };
        assert_eq!(
            real_claude::session_ids(&b.m.claude, dir),
            [ids[i].clone()],
            "B's folder of {tail}"
        );
        picker_lists(
            &cb,
            dir,
            &[&format!("Long path {tail}")],
            &[&format!("Long path {other}")],
        );
        resume_shows(
            &cb,
            &api,
            dir,
            &ids[i],
            &format!("Answer in {tail}."),
            &[&format!("Answer in {other}.")],
            &format!("check in {tail}"),
        );
    }
    // (So `--resume ID` alone would not catch a session in the wrong one of two such folders:
    // the client 2.1.197 also looks in folders with the same first 200 characters. The picker
    // does not.)
    let tui = cb.start(&dirs[0], &["--resume", &ids[1]]);
    tui.wait_for("Answer in two.", WAIT);
    assert_eq!(tui.ctrl_d_twice(), 0);
    eprintln!("case took {:?}", t0.elapsed());
}

/// `git init` (a real repository, as the client may look into it).
fn git_init(dir: &Path) {
    let out = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Case 6: a monorepo's memory is kept for its git root. `MEMORY.md` in A's memory folder of
/// `mono` (where A's client, started in `mono/svc/api`, reads it), pushed and pulled, is loaded
/// by B's client started in `<B>/projects/mono/svc/api`: the request it sends carries it.
#[test]
fn monorepo_memory_pulled_on_b_is_loaded_by_the_client_in_a_subdirectory() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let t0 = Instant::now();
    let w = World::new();
    let remote = w.path().join("sync.git");
    let api = MessagesApi::start();
    let a = Site::new(&w, "a", &remote);
    let b = Site::new(&w, "b", &remote);
    for s in [&a, &b] {
        git_init(&s.dir("mono"));
        s.dir("mono/svc/api");
    }
    let memory = |s: &Site| {
        s.m.claude
            .join("projects")
            .join(real_claude::folder_name(
                &s.projects.join("mono").to_string_lossy(),
            ))
            .join("memory")
            .join("MEMORY.md")
    };
    let a_mem = memory(&a);
    std::fs::create_dir_all(a_mem.parent().unwrap()).unwrap();
    std::fs::write(&a_mem, "- the build uses bazel-xyz\n").unwrap();
    let body_has = |r: &Request, t: &str| String::from_utf8_lossy(&r.body).contains(t);

    // A's client in the sub-directory reads the git root's memory (the rule ccsync follows).
    let ca = a.client(&exe, &api);
    let tui = ca.start(&a.projects.join("mono/svc/api"), &[]);
    tui.wait_ready();
    let req = ask(&tui, &api, "what builds this on A?", "Bazel on A.");
    assert!(
        body_has(&req, "bazel-xyz"),
        "A's client did not load its memory"
    );
    tui.exit();
    drop(tui);
    a.m.ok(&["push"]);
    b.m.ok(&["pull"]);
    let b_mem = memory(&b);
    assert_eq!(
        std::fs::read_to_string(&b_mem).unwrap(),
        "- the build uses bazel-xyz\n"
    );

    let cb = b.client(&exe, &api);
    let tui = cb.start(&b.projects.join("mono/svc/api"), &[]);
    tui.wait_ready();
    let req = ask(&tui, &api, "what builds this on B?", "Bazel on B.");
    assert!(
        body_has(&req, "bazel-xyz"),
        "B's client did not load the pulled memory"
    );
    assert_eq!(tui.ctrl_d_twice(), 0);
    eprintln!("case took {:?}", t0.elapsed());
}

/// A short conversation (a prompt and a text answer, as the client writes them) last active
/// `days` days ago.
fn aged_session(sid: &str, cwd: &str, days: i64, text: &str) -> String {
    let at = |min: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days) + chrono::Duration::minutes(min))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let u = format!("{sid}-u");
    let user = user_line(sid, cwd, &u, None, &at(-1), &format!("prompt of {text}"));
    let assistant = serde_json::json!({
        "parentUuid": u, "isSidechain": false, "userType": "external", "cwd": cwd,
        "sessionId": sid, "version": "2.1.197", "gitBranch": "main", "type": "assistant",
        "message": {"id": format!("msg_{days}"), "type": "message", "role": "assistant",
            "model": "claude-opus-4-8", "content": [{"type": "text", "text": format!("answer of {text}")}],
            "stop_reason": "end_turn", "stop_sequence": null},
        "requestId": "req_x", "uuid": format!("{sid}-a"), "timestamp": at(0)
    });
    format!("{user}\n{assistant}\n")
}

fn age_of(path: &Path) -> Duration {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .elapsed()
        .unwrap_or_default()
}

const DAY: u64 = 86_400;

/// Case 7: `cleanupPeriodDays` from the project's `.claude/settings.json`. B keeps 20 days in
/// `strict`: of A's two sessions there (last active 25 and 10 days ago) the 25-day one is not
/// pulled (ccsync says so), the 10-day one is, with its last activity as mtime; B's real
/// client started in `strict` runs its clean-up and keeps it, while it deletes a 25-day-old
/// control file placed beside it (so the clean-up did run, with 20 days).
#[test]
fn sessions_pulled_under_a_project_clean_up_period_survive_the_clients_clean_up() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let t0 = Instant::now();
    let w = World::new();
    let remote = w.path().join("sync.git");
    let api = MessagesApi::start();
    let a = Site::new(&w, "a", &remote);
    let b = Site::new(&w, "b", &remote);
    let (s25, s10, control) = (
        "c1ea0000-0000-4000-8000-000000000025",
        "c1ea0000-0000-4000-8000-000000000010",
        "c1ea0000-0000-4000-8000-0000000000cc",
    );
    let a_strict = a.dir("strict").to_string_lossy().into_owned();
    for (sid, days) in [(s25, 25), (s10, 10)] {
        a.m.write_transcript(
            &a_strict,
            sid,
            aged_session(sid, &a_strict, days, &format!("{days} days")).as_bytes(),
        );
    }
    a.m.ok(&["push"]);

    let b_strict = b.dir("strict");
    std::fs::create_dir_all(b_strict.join(".claude")).unwrap();
    std::fs::write(
        b_strict.join(".claude/settings.json"),
        r#"{"cleanupPeriodDays": 20}"#,
    )
    .unwrap();
    let out = b.m.ok(&["pull"]);
    assert!(out.contains("cleanupPeriodDays"), "{out}");
    assert_eq!(
        real_claude::session_ids(&b.m.claude, &b_strict),
        [s10.to_string()],
        "{out}"
    );
    let b_str = b_strict.to_string_lossy().into_owned();
    let kept = b.m.transcript_path(&b_str, s10);
    let age = age_of(&kept).as_secs();
    assert!(
        (9 * DAY..11 * DAY).contains(&age),
        "the pulled session's mtime is its last activity (10 days), not {age} s"
    );
    let control_path = b.m.write_transcript(
        &b_str,
        control,
        aged_session(control, &b_str, 25, "the control").as_bytes(),
    );
    std::fs::File::options()
        .write(true)
        .open(&control_path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(25 * DAY))
        .unwrap();

    // The clean-up runs 5 s after start-up, but in the interactive client only once the user
    // has been idle for a minute (start-up counts as activity; else it waits 10 minutes more).
    // In print mode it is not deferred: the turn is held open until the clean-up has written
    // its `.last-cleanup` (bounded), then answered.
    let sentinel = b.m.claude.join(".last-cleanup");
    assert!(!sentinel.exists());
    api.push(
        Reply::text("Answer after the clean-up.").hold_until(&sentinel, Duration::from_secs(20)),
    );
    let out = b.client(&exe, &api).run(
        &b_strict,
        &["-p", "hello in strict"],
        Duration::from_secs(40),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Answer after the clean-up."),
        "{}",
        stdout(&out)
    );
    assert!(sentinel.is_file(), "the client's clean-up did not run");
    assert!(
        !control_path.exists(),
        "the client's clean-up kept a 25-day-old session: it did not use 20 days"
    );
    assert!(
        kept.is_file(),
        "the client deleted the pulled 10-day session"
    );
    eprintln!("case took {:?}", t0.elapsed());
}

/// The ids of the sessions in a machine's folder of `dir`, other than `id`.
fn others(s: &Site, dir: &Path, id: &str) -> Vec<String> {
    real_claude::session_ids(&s.m.claude, dir)
        .into_iter()
        .filter(|i| i != id)
        .collect()
}

/// Machines A and B where B, resuming its stale copy with the hooks installed, saw ccsync's
/// "newer line(s)" message and went on anyway: the client itself branched the conversation (its
/// new turn hangs from the end it had loaded, beside A's turn that the hook brought), and the
/// session-end hook pushed it.
struct Branched {
    api: MessagesApi,
    a: Site,
    b: Site,
    ca: Client,
    cb: Client,
    a_app: PathBuf,
    b_app: PathBuf,
    id: String,
    _w: World,
}

fn branch_after_the_hooks_message(exe: &Path) -> Branched {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let api = MessagesApi::start();
    let a = Site::new(&w, "a", &remote);
    let b = Site::new(&w, "b", &remote);
    b.m.ok(&["setup-hooks"]);
    let (ca, cb) = (a.client(exe, &api), b.client(exe, &api));
    let (a_app, b_app) = (a.dir("app"), b.dir("app"));
    api.set_title("Continued talk");
    let id = new_session(&ca, &api, &a_app, &[("common prompt", "Common answer.")]);
    a.m.ok(&["push"]);
    b.m.ok(&["pull"]);
    let tui = ca.start(&a_app, &["--resume", &id]);
    tui.wait_for("Common answer.", WAIT);
    tui.wait_ready();
    ask(&tui, &api, "turn from machine A", "Reply on machine A.");
    tui.exit();
    drop(tui);
    a.m.ok(&["push"]);

    let tui = cb.start(&b_app, &["--resume", &id]);
    tui.wait_for("SessionStart:resume says: ccsync brought ", WAIT);
    tui.wait_ready();
    let req = ask(&tui, &api, "turn from machine B", "Reply on machine B.");
    assert!(
        !req.mentions("turn from machine A"),
        "the client had loaded the transcript without A's turn"
    );
    assert_eq!(tui.ctrl_d_twice(), 0);
    drop(tui);
    poll("B's session-end hook", WAIT, || {
        hooks_log(&b.m)
            .contains(&format!("session-end {id}: pushed"))
            .then_some(())
    });
    let b_file =
        std::fs::read_to_string(b.m.transcript_path(&b_app.to_string_lossy(), &id)).unwrap();
    assert!(b_file.contains("turn from machine A") && b_file.contains("turn from machine B"));
    Branched {
        api,
        a,
        b,
        ca,
        cb,
        a_app,
        b_app,
        id,
        _w: w,
    }
}

/// Case 2, continued (README: "continuing here would branch the conversation (ccsync then keeps
/// both branches visible, the other as its own session)"): once A and B have synced, both show
/// B's (newest) turn in the session and A's turn in its other branch, the same session on both.
#[test]
fn continuing_after_the_hooks_message_keeps_both_turns_visible_once_both_synced() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let t0 = Instant::now();
    let x = branch_after_the_hooks_message(&exe);
    x.a.m.ok(&["sync"]);
    x.b.m.ok(&["sync"]);
    let mut forks = Vec::new();
    for (s, c, dir) in [(&x.a, &x.ca, &x.a_app), (&x.b, &x.cb, &x.b_app)] {
        let f = others(s, dir, &x.id);
        assert_eq!(f.len(), 1, "one other branch on {}: {f:?}", s.m.name);
        resume_shows(
            c,
            &x.api,
            dir,
            &x.id,
            "turn from machine B",
            &["turn from machine A"],
            &format!("main on {}", s.m.name),
        );
        resume_shows(
            c,
            &x.api,
            dir,
            &f[0],
            "turn from machine A",
            &["turn from machine B"],
            &format!("branch on {}", s.m.name),
        );
        forks.push(f[0].clone());
    }
    assert_eq!(forks[0], forks[1]);
    eprintln!("case took {:?}", t0.elapsed());
}

/// The same, on B alone: after B's own `ccsync sync` (A has not synced since), B's transcript
/// holds A's turn and B's turn made beside it. The hook's pull merged A's turn as a straight
/// continuation and the client made the branch afterwards, so it is B's push that must notice
/// the branch and surface A's turn.
#[test]
fn continuing_after_the_hooks_message_keeps_a_hidden_turn_visible_on_that_machine() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let x = branch_after_the_hooks_message(&exe);
    x.b.m.ok(&["sync"]);
    let f = others(&x.b, &x.b_app, &x.id);
    if f.is_empty() {
        // The evidence: the client on B shows B's turn only, and no other session has A's.
        resume_shows(
            &x.cb,
            &x.api,
            &x.b_app,
            &x.id,
            "turn from machine B",
            &["turn from machine A"],
            "main on B",
        );
    }
    assert_eq!(
        f.len(),
        1,
        "A's turn, in B's transcript, is hidden on B: no other-branch session after B's sync"
    );
    resume_shows(
        &x.cb,
        &x.api,
        &x.b_app,
        &f[0],
        "turn from machine A",
        &["turn from machine B"],
        "branch on B",
    );
}

/// `setup-mcp` on B makes B's real client start `ccsync mcp`: a turn calling
/// `mcp__ccsync__search` gets back, as the tool's result the client sends with its next
/// request, a turn written on machine A that B never pulled — and `show_session` reads it.
#[test]
fn the_client_on_b_recalls_a_turn_written_on_a_through_the_mcp_server() {
    let Some(exe) = real_claude::find() else {
        return;
    };
    let t0 = Instant::now();
    let w = World::new();
    let remote = w.path().join("sync.git");
    let api = MessagesApi::start();
    let a = Site::new(&w, "a", &remote);
    let b = Site::new(&w, "b", &remote);
    let a_app = a.dir("app");
    let sid = "c0ffee00-0000-4000-8000-00000000abcd";
    let cwd = a_app.to_string_lossy().into_owned();
    let lines = [
        user_line(sid, &cwd, "m1", None, &ts_at(1), "Where was the tokenizer bug?"),
        serde_json::to_string(&serde_json::json!({
            "parentUuid": "m1", "isSidechain": false, "userType": "external", "cwd": cwd,
            "sessionId": sid, "version": "2.1.197", "type": "assistant", "uuid": "m2", "timestamp": ts_at(2),
            "message": {"role": "assistant", "content": [{"type": "text", "text": "It was an off-by-one in tokenize_line(), fixed on machine A."}]}
        }))
        .unwrap(),
    ];
    a.m.write_transcript(
        &cwd,
        sid,
        format!("{}\n{}\n", lines[0], lines[1]).as_bytes(),
    );
    a.m.ok(&["push"]);
    // B fetches the repository but keeps none of A's sessions locally.
    b.m.ok(&["list", "--remote"]);
    let said = b.m.ok(&["setup-mcp"]);
    assert!(said.contains("Added the ccsync MCP server"), "{said}");
    assert!(b.m.ok(&["setup-mcp"]).contains("nothing to change"));

    let b_app = b.dir("app");
    let cb = b.client(&exe, &api);
    api.push(Reply::tool(
        "mcp__ccsync__search",
        serde_json::json!({"query": "tokenizer"}),
    ));
    api.push(Reply::tool(
        "mcp__ccsync__show_session",
        serde_json::json!({"id": &sid[..8]}),
    ));
    api.push(Reply::text("Found it on machine A."));
    let out = cb.run(
        &b_app,
        &[
            "-p",
            "where did we fix the tokenizer bug?",
            "--allowedTools",
            "mcp__ccsync__search,mcp__ccsync__show_session",
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Found it on machine A."),
        "{}",
        stdout(&out)
    );
    let turns = api.turns();
    // The client offered the server's tools to the model.
    let first = turns.first().and_then(|r| r.json()).expect("a turn");
    let tools: Vec<String> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    assert!(
        tools.iter().any(|n| n == "mcp__ccsync__search"),
        "the client did not load the server: {tools:?}"
    );
    let results: Vec<String> = turns
        .iter()
        .flat_map(|r| r.tool_results())
        .map(|v| v.to_string())
        .collect();
    assert!(
        results
            .iter()
            .any(|r| r.contains("tokenizer") && r.contains(sid) && r.contains("machine a")),
        "the search result did not reach the model: {results:#?}"
    );
    assert!(
        results
            .iter()
            .any(|r| r.contains("off-by-one in tokenize_line()")),
        "show_session did not reach the model: {results:#?}"
    );
    // B's own config was edited as text, the client's keys kept.
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cb.global_config_path()).unwrap()).unwrap();
    assert_eq!(cfg["hasCompletedOnboarding"], true);
    assert_eq!(cfg["mcpServers"]["ccsync"]["args"][0], "mcp");
    b.m.ok(&["setup-mcp", "--remove"]);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cb.global_config_path()).unwrap()).unwrap();
    assert!(cfg["mcpServers"].get("ccsync").is_none());
    eprintln!("case took {:?}", t0.elapsed());
}
