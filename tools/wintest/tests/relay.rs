//! The relay on the host alone: the client program (built for the host here) and the server in
//! this process, with the host's git. What it must do under Wine too: every byte both ways, git
//! answering each request of `cat-file --batch` while its input stays open, git's exit code, and
//! git killed when the client goes away.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wintest::paths::Drives;
use wintest::server::{Config, Server};

fn relay() -> &'static str {
    static VAR: OnceLock<String> = OnceLock::new();
    VAR.get_or_init(|| {
        let server = Server::start(Config {
            drives: Drives::new(vec![('z', "/".into())]),
            ..Config::from_env()
        })
        .expect("listen on 127.0.0.1");
        server.relay_var()
    })
}

fn client(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_git"));
    c.current_dir(dir)
        .env_clear()
        .env(wintest::proto::RELAY_VAR, relay())
        .env("GIT_CONFIG_GLOBAL", "NUL")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    c
}

fn run(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = client(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    out
}

#[test]
fn bytes_go_both_ways_unchanged_with_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("Z:{}", dir.path().join("r.git").display()).replace('/', "\\");
    let out = run(dir.path(), &["init", "--bare", "--quiet", &repo], b"");
    assert!(out.status.success(), "{out:?}");
    assert!(
        dir.path().join("r.git/HEAD").is_file(),
        "the drive path was translated"
    );

    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend((0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8));
    let out = run(
        dir.path(),
        &["--git-dir", &repo, "hash-object", "-w", "--stdin"],
        &data,
    );
    assert!(out.status.success(), "{out:?}");
    let oid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = run(
        dir.path(),
        &["--git-dir", &repo, "cat-file", "blob", &oid],
        b"",
    );
    assert!(out.stdout == data, "the blob came back unchanged");

    let out = run(
        dir.path(),
        &["--git-dir", &repo, "rev-parse", "--verify", "-q", "nope"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let out = run(
        dir.path(),
        &["--git-dir", &repo, "cat-file", "-t", "nope"],
        b"",
    );
    assert_eq!(out.status.code(), Some(128));
    let out = run(
        dir.path(),
        &["--git-dir", &repo, "config", "--get", "core.bare"],
        b"",
    );
    assert_eq!(out.stdout, b"true\n");
}

#[test]
fn cat_file_batch_answers_each_request_while_input_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("r.git");
    let repo = repo.to_str().unwrap();
    assert!(
        run(dir.path(), &["init", "--bare", "--quiet", repo], b"")
            .status
            .success()
    );
    let mut oids = Vec::new();
    for text in ["one\n", "two\n"] {
        let out = run(
            dir.path(),
            &["--git-dir", repo, "hash-object", "-w", "--stdin"],
            text.as_bytes(),
        );
        oids.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    let mut child = client(dir.path())
        .args(["--git-dir", repo, "cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    for (oid, text) in oids.iter().zip(["one\n", "two\n"]) {
        writeln!(input, "{oid}").unwrap();
        input.flush().unwrap();
        let mut head = String::new();
        output.read_line(&mut head).unwrap();
        assert_eq!(head, format!("{oid} blob {}\n", text.len()));
        let mut body = vec![0u8; text.len() + 1];
        output.read_exact(&mut body).unwrap();
        assert_eq!(body, format!("{text}\n").as_bytes());
    }
    drop(input);
    assert!(child.wait().unwrap().success());
}

#[test]
fn git_ends_when_its_client_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("r.git");
    let repo = repo.to_str().unwrap();
    assert!(
        run(dir.path(), &["init", "--bare", "--quiet", repo], b"")
            .status
            .success()
    );
    // `git hash-object --stdin` waits for its input; the client is killed meanwhile.
    let marker = dir.path().join("marker");
    let mut child = client(dir.path())
        .args(["--git-dir", repo, "hash-object", "--stdin", "--path"])
        .arg(&marker)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // The host's git for this command: a process whose arguments name the marker, other than
    // the client.
    let client_pid = child.id().to_string();
    let marker_arg = marker.to_str().unwrap().to_string();
    let pid_of_git = || {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let named = cmdline
                .split(|b| *b == 0)
                .any(|a| a == marker_arg.as_bytes());
            (named && pid != client_pid).then_some(pid)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut git = None;
    while git.is_none() {
        git = pid_of_git();
        assert!(Instant::now() < deadline, "git started on the host");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_of_git().is_some() {
        assert!(Instant::now() < deadline, "git was killed with its client");
        std::thread::sleep(Duration::from_millis(10));
    }
}
