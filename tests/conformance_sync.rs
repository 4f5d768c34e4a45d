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
    a.m.ok(&["sync"]);
    b.m.ok(&["sync"]);
    a.m.ok(&["sync"]);

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
        // The picker lists the other branch as a session of its own (titled after the
        // session: the client's `last-prompt` lines name no leaf, so the branch has no prompt
        // of its own to be titled by).
        picker_lists(
            c,
            dir,
            &[
                "Shared conversation\n",
                "Shared conversation (other branch, ",
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
