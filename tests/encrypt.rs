//! End-to-end encryption: machines sharing an encrypted remote, what the remote holds, keys
//! given by passphrase and by approval, a wrong key, a removed machine, a converted repository.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const SID: &str = "5e1f0c2a-0000-4000-8000-00000000e001";
const SID2: &str = "5e1f0c2a-0000-4000-8000-00000000e002";
const SECRET_TEXT: &str = "TOPSECRET-TRANSCRIPT-TEXT";
const TITLE: &str = "Refactor the zebra billing pipeline";

fn git(repo: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    out.stdout
}

/// Every byte the remote holds that the host could read: all objects, all tree paths of every
/// commit, all commit messages.
fn remote_bytes(repo: &Path) -> Vec<u8> {
    let mut all = git(repo, &["cat-file", "--batch-all-objects", "--batch"]);
    for c in String::from_utf8(git(repo, &["rev-list", "--all"]))
        .unwrap()
        .lines()
    {
        all.extend(git(repo, &["ls-tree", "-r", "--name-only", c]));
        all.extend(git(repo, &["log", "-1", "--format=%B%n%an%n%ae", c]));
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn head(repo: &Path, branch: &str) -> String {
    String::from_utf8(git(repo, &["rev-parse", branch])).unwrap()
}

/// A session in `~/work/zebra_billing` with a recognisable prompt and title.
fn session(m: &Machine, sid: &str) -> (String, std::path::PathBuf) {
    let cwd = format!("{}/work/zebra_billing", m.home.display());
    std::fs::create_dir_all(&cwd).unwrap();
    let mut t = conversation(sid, &cwd, "/", 2, 0);
    t += &user_line(
        sid,
        &cwd,
        &format!("{sid}-x"),
        Some(&format!("{sid}-a1")),
        &ts_at(5),
        SECRET_TEXT,
    );
    t.push('\n');
    t += &format!(
        "{{\"type\":\"custom-title\",\"customTitle\":\"{TITLE}\",\"sessionId\":\"{sid}\"}}\n"
    );
    let p = m.write_transcript(&cwd, sid, t.as_bytes());
    (cwd, p)
}

fn pass_file(w: &World, text: &str) -> String {
    let p = w.path().join(format!("pass-{}.txt", text.len()));
    std::fs::write(&p, format!("{text}\n")).unwrap();
    p.to_string_lossy().into_owned()
}

fn pulled(m: &Machine, sid: &str) -> Option<String> {
    let cwd = format!("{}/work/zebra_billing", m.home.display());
    std::fs::read_to_string(m.transcript_path(&cwd, sid)).ok()
}

#[test]
fn three_machines_share_an_encrypted_remote_that_holds_only_ciphertext() {
    let w = World::new();
    let remote = w.path().join("remote.git");
    let pass = pass_file(&w, "correct horse battery staple");
    let a = w.machine("alpha");
    a.init(&remote, &["--encrypt", "--passphrase-file", &pass]);
    let (_, a_path) = session(&a, SID);
    std::fs::write(a.claude.join("CLAUDE.md"), "TOPSECRET-GLOBAL-NOTES\n").unwrap();
    a.ok(&["push"]);
    let marker = repo_file(&remote, "ccsync.json").unwrap();
    assert!(
        marker.contains("\"version\": 2") && marker.contains("encryption"),
        "{marker}"
    );

    // Bravo joins with the passphrase.
    let b = w.machine("bravo");
    b.init(&remote, &["--passphrase-file", &pass]);
    let out = b.ok(&["pull"]);
    let got = pulled(&b, SID).unwrap_or_else(|| panic!("bravo has the session: {out}"));
    assert!(got.contains(SECRET_TEXT));
    assert_eq!(
        std::fs::read_to_string(b.claude.join("CLAUDE.md")).unwrap(),
        "TOPSECRET-GLOBAL-NOTES\n"
    );

    // Charlie has no passphrase: it asks, and cannot sync until a member approves.
    let c = w.machine("charlie");
    let out = c.init(&remote, &[]);
    assert!(out.contains("ccsync key approve charlie"), "{out}");
    let before = head(&remote, "main");
    let refused = c.run(&["pull"]);
    assert_eq!(refused.status.code(), Some(1));
    let msg = stderr(&refused);
    assert!(msg.contains("encrypted") && msg.contains("no key"), "{msg}");
    assert_eq!(msg.trim().lines().count(), 1, "one sentence: {msg}");
    assert_eq!(head(&remote, "main"), before, "nothing written");
    assert!(pulled(&c, SID).is_none());
    let requests = a.ok(&["key", "requests"]);
    assert!(requests.contains("charlie"), "{requests}");
    let approved = a.ok(&["key", "approve", "charlie"]);
    assert!(approved.contains("charlie"), "{approved}");
    c.ok(&["pull"]);
    assert!(pulled(&c, SID).unwrap().contains(SECRET_TEXT));

    // Charlie adds a turn; alpha and bravo get it.
    let c_cwd = format!("{}/work/zebra_billing", c.home.display());
    let c_path = c.transcript_path(&c_cwd, SID);
    let mut t = std::fs::read_to_string(&c_path).unwrap();
    t += &user_line(
        SID,
        &c_cwd,
        "from-charlie",
        Some(&format!("{SID}-x")),
        &ts_at(9),
        "charlie was here",
    );
    t.push('\n');
    std::fs::write(&c_path, t).unwrap();
    c.ok(&["push"]);
    a.ok(&["pull"]);
    b.ok(&["pull"]);
    assert!(
        std::fs::read_to_string(&a_path)
            .unwrap()
            .contains("charlie was here")
    );
    assert!(pulled(&b, SID).unwrap().contains("charlie was here"));
    let listed = b.ok(&["list", "--remote"]);
    assert!(listed.contains("Refactor the zebra"), "{listed}");

    // The remote holds no transcript text, title, path or working directory.
    let bytes = remote_bytes(&remote);
    for needle in [
        SECRET_TEXT,
        "charlie was here",
        TITLE,
        "zebra",
        "TOPSECRET-GLOBAL",
        "work/",
        "{{HOME}}",
        a.home.to_str().unwrap(),
        "sessionId",
        "transcript",
        "meta.json",
        "projects",
        "\"cwd\"",
    ] {
        assert!(!contains(&bytes, needle), "the remote holds {needle:?}");
    }
}

#[test]
fn a_wrong_or_missing_key_is_refused_before_anything_is_written() {
    let w = World::new();
    let remote = w.path().join("remote.git");
    let pass = pass_file(&w, "the right one");
    let a = w.machine("alpha");
    a.init(&remote, &["--encrypt", "--passphrase-file", &pass]);
    session(&a, SID);
    a.ok(&["push"]);
    let before = head(&remote, "main");

    // A wrong passphrase: refused in one sentence, no configuration, nothing in the remote.
    let d = w.machine("delta");
    let wrong = pass_file(&w, "not the right passphrase");
    let out = d.run(&[
        "init",
        "--yes",
        "--machine-id",
        "delta",
        "--remote",
        remote.to_str().unwrap(),
        "--passphrase-file",
        &wrong,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let msg = stderr(&out);
    assert!(msg.contains("passphrase does not open"), "{msg}");
    assert_eq!(head(&remote, "main"), before);
    assert!(!d.tool.join("config.json").exists());

    // Without a key (it asked to join): push and pull refuse in one sentence; the remote and
    // the local sessions stay as they were.
    d.init(&remote, &[]);
    let (_, d_path) = session(&d, SID2);
    let local_before = std::fs::read(&d_path).unwrap();
    let before = head(&remote, "main");
    for cmd in [&["push"][..], &["pull"], &["sync"], &["list", "--remote"]] {
        let out = d.run(cmd);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {}", stdout(&out));
        let msg = stderr(&out);
        assert!(msg.contains("no key"), "{cmd:?}: {msg}");
        assert_eq!(head(&remote, "main"), before, "{cmd:?} wrote to the remote");
    }
    assert_eq!(std::fs::read(&d_path).unwrap(), local_before);
    assert!(pulled(&d, SID).is_none());
    // The wrong passphrase on `key unlock`: the same.
    let out = d.run(&["key", "unlock", "--passphrase-file", &wrong]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("passphrase does not open"),
        "{}",
        stderr(&out)
    );
    assert_eq!(head(&remote, "main"), before);
    // The right one works.
    d.ok(&["key", "unlock", "--passphrase-file", &pass]);
    d.ok(&["pull"]);
    assert!(pulled(&d, SID).is_some());
}

/// The blobs of `commit` that `earlier` does not have.
fn new_blobs(repo: &Path, earlier: &str, commit: &str) -> Vec<Vec<u8>> {
    let list = |c: &str| -> std::collections::BTreeSet<String> {
        String::from_utf8(git(repo, &["ls-tree", "-r", c]))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
            .collect()
    };
    let old = list(earlier);
    list(commit)
        .difference(&old)
        .map(|o| git(repo, &["cat-file", "blob", o]))
        .collect()
}

#[test]
fn removing_a_machine_rotates_the_key_for_what_is_stored_next() {
    let w = World::new();
    let remote = w.path().join("remote.git");
    let pass = pass_file(&w, "rotate me please");
    let a = w.machine("alpha");
    a.init(&remote, &["--encrypt", "--passphrase-file", &pass]);
    session(&a, SID);
    a.ok(&["push"]);
    let b = w.machine("bravo");
    b.init(&remote, &["--passphrase-file", &pass]);
    b.ok(&["pull"]);
    let c = w.machine("charlie");
    c.init(&remote, &["--passphrase-file", &pass]);
    c.ok(&["pull"]);
    let bravo_ring: ccsync::store::keys::Keyring =
        serde_json::from_slice(&std::fs::read(b.tool.join("keys/keyring.json")).unwrap()).unwrap();
    let listed = a.ok(&["key", "list"]);
    assert!(
        listed.contains("bravo") && listed.contains("charlie"),
        "{listed}"
    );

    let pre = head(&remote, "main");
    let states = |m: &Machine| m.ok(&["restore", "list", "--session", SID, "--format", "json"]);
    let states_before = states(&a);
    let out = a.ok(&["key", "remove", "bravo"]);
    assert!(out.contains("generation 2"), "{out}");
    let before = head(&remote, "main");
    let b_file = format!("{}/work/zebra_billing", a.home.display());
    let p2 = a.transcript_path(&b_file, SID2);
    std::fs::write(&p2, conversation(SID2, &b_file, "/", 2, 30)).unwrap();
    a.ok(&["push"]);
    let after = head(&remote, "main");

    // Bravo is told, in one sentence, and writes nothing.
    let out = b.run(&["pull"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("was removed"), "{}", stderr(&out));
    assert_eq!(head(&remote, "main"), after);
    // Bravo's key opens none of what was stored after the rotation.
    let marker: serde_json::Value =
        serde_json::from_str(&repo_file(&remote, "ccsync.json").unwrap()).unwrap();
    assert_eq!(marker["encryption"]["generation"], 2);
    let old_enc = ccsync::store::keys::Encryption {
        generation: 1,
        names: 1,
        recipient: {
            let mut r = bravo_ring.clone();
            r.generations.retain(|g| g.generation == 1);
            r.encryption().unwrap().recipient
        },
        ..serde_json::from_value(marker["encryption"].clone()).unwrap()
    };
    let old_seal = bravo_ring.seal(&old_enc).unwrap();
    let fresh = new_blobs(&remote, before.trim(), after.trim());
    assert!(!fresh.is_empty());
    for blob in &fresh {
        assert!(old_seal.open(blob).is_err(), "bravo's key opens a new file");
    }
    // Nor any name stored from the rotation on, while it opened every name before it.
    let names = |c: &str| -> Vec<String> {
        String::from_utf8(git(&remote, &["ls-tree", "-r", "--name-only", c.trim()]))
            .unwrap()
            .lines()
            .filter(|p| *p != "ccsync.json" && !p.starts_with("keys/"))
            .flat_map(|p| p.split('/').map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    let (old_names, new_names) = (names(&pre), names(&after));
    assert!(old_names.len() > 3 && new_names.len() > old_names.len());
    for n in &old_names {
        assert!(old_seal.decode_name(n).is_ok(), "{n} did not open before");
    }
    for n in &new_names {
        assert!(
            old_seal.decode_name(n).is_err(),
            "bravo's key opens the name {n}"
        );
    }
    // The rotation renamed files without changing them: their history shows no new version.
    assert!(states_before.contains("commit"), "{states_before}");
    assert_eq!(states(&a), states_before);

    // Charlie (still a member) reads the old and the new.
    c.ok(&["pull"]);
    assert!(pulled(&c, SID).is_some() && pulled(&c, SID2).is_some());
    // A machine joining with the passphrase after the rotation reads everything.
    let d = w.machine("delta");
    d.init(&remote, &["--passphrase-file", &pass]);
    d.ok(&["pull"]);
    assert!(pulled(&d, SID).is_some() && pulled(&d, SID2).is_some());
}

#[test]
fn a_plain_repository_is_converted_and_says_what_its_history_keeps() {
    let w = World::new();
    let remote = w.path().join("remote.git");
    let pass = pass_file(&w, "convert this");
    let a = w.machine("alpha");
    a.init(&remote, &[]);
    session(&a, SID);
    a.ok(&["push"]);
    let b = w.machine("bravo");
    b.init(&remote, &[]);
    b.ok(&["pull"]);

    // Without a choice it explains what stays in the history and changes nothing.
    let out = a.run(&["encrypt", "--passphrase-file", &pass]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(
        msg.contains("git history") && msg.contains("--branch"),
        "{msg}"
    );

    // A new branch: its history holds nothing in the clear.
    let out = a.ok(&["encrypt", "--branch", "sealed", "--passphrase-file", &pass]);
    assert!(out.contains("still holds everything in the clear"), "{out}");
    assert_eq!(a.config()["branch"], "sealed");
    let objects = String::from_utf8(git(&remote, &["rev-list", "--objects", "sealed"])).unwrap();
    let mut bytes = Vec::new();
    for line in objects.lines() {
        let mut it = line.split_whitespace();
        let oid = it.next().unwrap();
        bytes.extend(git(&remote, &["cat-file", "-p", oid]));
        bytes.extend(line.as_bytes());
    }
    for needle in [SECRET_TEXT, TITLE, "zebra", "projects", "meta.json"] {
        assert!(!contains(&bytes, needle), "the new branch holds {needle:?}");
    }
    // Alpha goes on syncing there.
    let cwd = format!("{}/work/zebra_billing", a.home.display());
    std::fs::write(
        a.transcript_path(&cwd, SID2),
        conversation(SID2, &cwd, "/", 1, 40),
    )
    .unwrap();
    a.ok(&["push"]);
    // Bravo follows: it is told it needs the key, then joins with the passphrase.
    b.ok(&["config", "set", "branch", "sealed"]);
    let out = b.run(&["pull"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no key"), "{}", stderr(&out));
    b.ok(&["key", "unlock", "--passphrase-file", &pass]);
    b.ok(&["pull"]);
    assert!(pulled(&b, SID2).is_some());

    // In place: the branch is encrypted, the plaintext stays in its history (and it says so).
    let c = w.machine("charlie");
    let remote2 = w.path().join("remote2.git");
    c.init(&remote2, &[]);
    session(&c, SID);
    c.ok(&["push"]);
    let out = c.ok(&["encrypt", "--in-place", "--passphrase-file", &pass]);
    assert!(
        out.contains("history still holds them in the clear"),
        "{out}"
    );
    let tree = String::from_utf8(git(&remote2, &["ls-tree", "-r", "--name-only", "main"])).unwrap();
    assert!(
        !tree.contains("projects") && tree.contains("ccsync.json"),
        "{tree}"
    );
    c.ok(&["push"]);
    c.ok(&["pull"]);
    assert!(pulled(&c, SID).is_some());
    // Into another repository: nothing in the clear there; this machine moves to it.
    let d = w.machine("delta");
    let remote3 = w.path().join("remote3.git");
    let fresh = w.path().join("fresh.git");
    d.init(&remote3, &[]);
    session(&d, SID);
    d.ok(&["push"]);
    let out = d.ok(&[
        "encrypt",
        "--remote",
        fresh.to_str().unwrap(),
        "--passphrase-file",
        &pass,
    ]);
    assert!(out.contains("still holds everything in the clear"), "{out}");
    assert_eq!(d.config()["remote"], fresh.to_str().unwrap());
    let bytes = remote_bytes(&fresh);
    for needle in [SECRET_TEXT, TITLE, "zebra", "projects"] {
        assert!(
            !contains(&bytes, needle),
            "the new repository holds {needle:?}"
        );
    }
    d.ok(&["push"]);
    let e = w.machine("echo");
    e.init(&fresh, &["--passphrase-file", &pass]);
    e.ok(&["pull"]);
    assert!(pulled(&e, SID).is_some());
}

#[test]
fn restore_and_locks_work_on_an_encrypted_repository() {
    let w = World::new();
    let remote = w.path().join("remote.git");
    let pass = pass_file(&w, "history too");
    let a = w.machine("alpha");
    a.init(&remote, &["--encrypt", "--passphrase-file", &pass]);
    session(&a, SID);
    std::fs::write(a.claude.join("CLAUDE.md"), "one\n").unwrap();
    a.ok(&["push"]);
    std::fs::write(a.claude.join("CLAUDE.md"), "one\ntwo, a longer version\n").unwrap();
    a.ok(&["push"]);
    a.ok(&["forget", SID]);
    let listed = a.ok(&["restore", "list"]);
    assert!(listed.contains(&SID[..8]), "{listed}");
    assert!(listed.contains("CLAUDE.md"), "{listed}");
    let shown = a.ok(&["restore", "show", SID]);
    assert!(shown.contains(SECRET_TEXT), "{shown}");
    a.ok(&["restore", SID]);
    let b = w.machine("bravo");
    b.init(&remote, &["--passphrase-file", &pass]);
    b.ok(&["pull"]);
    assert!(pulled(&b, SID).unwrap().contains(SECRET_TEXT));
    let locks = b.ok(&["lock", "show"]);
    let _ = locks;
    let doctor = stdout(&b.run(&["doctor"]));
    assert!(
        doctor.contains("encrypted (key generation 1) and this machine holds its key"),
        "{doctor}"
    );
    let status = b.ok(&["key", "status"]);
    assert!(status.contains("holds the key"), "{status}");
}

#[test]
fn a_recovery_key_and_the_environment_open_the_repository_and_no_passphrase_is_an_argument() {
    let w = World::new();
    let remote = w.path().join("remote.git");
    let a = w.machine("alpha");
    // No passphrase and no terminal: refused, nothing created.
    let out = a.run(&[
        "init",
        "--yes",
        "--machine-id",
        "alpha",
        "--remote",
        remote.to_str().unwrap(),
        "--encrypt",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--passphrase-file FILE or CCSYNC_PASSPHRASE"),
        "{}",
        stderr(&out)
    );
    assert!(!a.tool.join("config.json").exists());
    // A passphrase is never a command-line argument.
    let out = a.run(&["init", "--encrypt", "--passphrase", "x"]);
    assert_eq!(out.status.code(), Some(2));

    let out = a.init(&remote, &["--encrypt", "--recovery-key"]);
    let key = out
        .lines()
        .find_map(|l| l.split("shown only now): ").nth(1))
        .unwrap_or_else(|| panic!("no recovery key printed: {out}"))
        .trim()
        .to_string();
    session(&a, SID);
    a.ok(&["push"]);
    let b = w.machine("bravo");
    let out = b
        .cmd()
        .env("CCSYNC_PASSPHRASE", &key)
        .args([
            "init",
            "--yes",
            "--machine-id",
            "bravo",
            "--remote",
            remote.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    b.ok(&["pull"]);
    assert!(pulled(&b, SID).unwrap().contains(SECRET_TEXT));
    // The machine keys are private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["keys/machine.key", "keys/keyring.json"] {
            let mode = std::fs::metadata(b.tool.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{f} is {mode:o}");
        }
    }
}
