//! A remote that never answers: an ssh transport that accepts and stays silent. Every command
//! ends within its bound, says so in one sentence, and leaves no git or ssh behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SILENT: &str = "ssh://silent.invalid/repo.git";
/// How long a test lets a command run before calling it hung.
const HUNG: Duration = Duration::from_secs(30);

/// A machine set up on a local remote, then pointed at a silent ssh remote, with a fake `ssh`
/// that records its pid and then sleeps without a word.
fn silent_machine(w: &World, timeout_secs: Option<u64>) -> (Machine, PathBuf) {
    let m = w.machine("a");
    m.init(&w.path().join("sync.git"), &["--sync-dir", "~"]);
    let pids = w.path().join("ssh-pids");
    m.script(
        "silent-ssh",
        &format!("echo $$ >> '{}'\nexec sleep 600\n", pids.display()),
    );
    let cfg_path = m.tool.join("config.json");
    let mut cfg = m.config();
    cfg["remote"] = SILENT.into();
    if let Some(t) = timeout_secs {
        cfg["network_timeout_secs"] = t.into();
    }
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    (m, pids)
}

fn silent_cmd(m: &Machine) -> Command {
    let mut c = m.cmd();
    c.env("GIT_SSH_COMMAND", m.bin.join("silent-ssh"));
    c
}

/// Run to the end, or kill it after `limit` and fail.
fn run_bounded(mut c: Command, limit: Duration, what: &str) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            let took = start.elapsed();
            return (child.wait_with_output().unwrap(), took);
        }
        if start.elapsed() > limit {
            kill_group(&child);
            let _ = child.wait();
            panic!(
                "`ccsync {what}` was still running after {} s",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_group(child: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
}

/// Whether a process runs (a zombie does not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

fn ssh_pids(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Every fake ssh started is gone within a couple of seconds.
fn assert_no_ssh_left(file: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = ssh_pids(file).into_iter().filter(|p| running(*p)).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for p in &left {
                let _ = Command::new("kill")
                    .args(["-KILL", &p.to_string()])
                    .status();
            }
            panic!("ssh processes left behind: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

use std::os::unix::process::CommandExt as _;

#[test]
fn every_network_command_ends_within_its_bound_on_a_silent_remote() {
    let w = World::new();
    let (m, pids) = silent_machine(&w, Some(2));
    let cwd = format!("{}/work", m.home.display());
    m.write_transcript(
        &cwd,
        "a1100000-0000-4000-8000-000000000001",
        conversation("a1100000-0000-4000-8000-000000000001", &cwd, "/", 2, 1).as_bytes(),
    );
    for args in [
        &["push"][..],
        &["pull"],
        &["sync"],
        &["update"],
        &["daemon", "--once"],
    ] {
        let mut c = silent_cmd(&m);
        c.args(args);
        let what = args.join(" ");
        let (out, took) = run_bounded(c, HUNG, &what);
        let err = stderr(&out);
        eprintln!("{what}: {}", err.trim());
        eprintln!("`ccsync {what}` ended in {} ms", took.as_millis());
        if args[0] != "daemon" {
            assert!(!out.status.success(), "{what}: {err}");
        }
        let said = if args[0] == "daemon" {
            std::fs::read_to_string(m.tool.join("state/daemon.json")).unwrap_or_default() + &err
        } else {
            err.clone()
        };
        assert!(
            said.contains(SILENT) && said.contains("2 s") && said.contains("network_timeout_secs"),
            "{what}: {said}"
        );
        assert!(took < Duration::from_secs(20), "{what} took {took:?}");
        assert_no_ssh_left(&pids);
    }
}

#[test]
fn the_daemon_stops_at_once_on_sigterm_while_git_hangs() {
    let w = World::new();
    // A long bound: only the signal can end the hung fetch in time.
    let (m, pids) = silent_machine(&w, Some(600));
    let mut c = silent_cmd(&m);
    let start = Instant::now();
    let mut child = c
        .args(["daemon", "--interval", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // Wait until git is hanging in the fake ssh.
    while ssh_pids(&pids).is_empty() {
        if start.elapsed() > HUNG {
            kill_group(&child);
            let _ = child.wait();
            panic!("the daemon never reached the remote");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let asked = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if asked.elapsed() > HUNG {
            kill_group(&child);
            let _ = child.wait();
            panic!("the daemon ignored SIGTERM for {} s", HUNG.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = asked.elapsed();
    eprintln!("the daemon stopped {} ms after SIGTERM", took.as_millis());
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(!m.tool.join("daemon.pid").exists());
    assert_no_ssh_left(&pids);
}
