//! The host side of the git relay: listens on 127.0.0.1 (a port the system picks), and for each
//! connection runs the host's git with the request's arguments, working directory and variables
//! translated from Wine's drive paths, streaming standard input in and standard output and
//! error out as frames (see [`crate::proto`]). A connection that closes before git ends (the
//! Windows program was killed) kills git and what it started.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::paths::{Drives, replace_learned};
use crate::proto::{self, Request};

/// What the server runs, and how it translates paths.
#[derive(Debug, Clone)]
pub struct Config {
    /// The host's git.
    pub git: PathBuf,
    pub drives: Drives,
}

impl Config {
    /// `/usr/bin/git` (else `git` on PATH) and the drives of `$WINEPREFIX`.
    pub fn from_env() -> Config {
        let git = ["/usr/bin/git", "/usr/local/bin/git"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("git"));
        Config {
            git,
            drives: Drives::of_prefix(crate::paths::wine_prefix().as_deref()),
        }
    }
}

/// A running server (it serves until the process ends).
#[derive(Debug, Clone)]
pub struct Server {
    addr: SocketAddr,
    token: String,
}

impl Server {
    /// Listen on 127.0.0.1, on a port the system picks, and serve in background threads.
    pub fn start(config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let token = new_token()?;
        let config = Arc::new(config);
        let want = token.clone();
        std::thread::Builder::new()
            .name("git-relay".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let (config, want) = (config.clone(), want.clone());
                    let _ = std::thread::Builder::new()
                        .name("git-relay-conn".into())
                        .spawn(move || {
                            if let Err(e) = serve(conn, &config, &want) {
                                eprintln!("git-relay: {e}");
                            }
                        });
                }
            })?;
        Ok(Server { addr, token })
    }

    /// The value of [`proto::RELAY_VAR`] that points a client here.
    pub fn relay_var(&self) -> String {
        format!("{}/{}", self.addr, self.token)
    }
}

/// 128 bits from the system's random source, in hex.
fn new_token() -> io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Frames to the client, from several threads.
type Sender = Arc<Mutex<TcpStream>>;

fn send(to: &Sender, kind: u8, data: &[u8]) -> io::Result<()> {
    let mut s = to
        .lock()
        .map_err(|_| io::Error::other("a sender panicked"))?;
    proto::write_frame(&mut *s, kind, data)
}

/// Whether git prints paths on standard output for this command (translated back).
fn prints_paths(args: &[String]) -> bool {
    let sub = args
        .iter()
        .scan(false, |skip_next, a| {
            let skip = *skip_next;
            *skip_next = matches!(a.as_str(), "-C" | "-c" | "--git-dir" | "--work-tree");
            Some((skip, a))
        })
        .find(|(skip, a)| !skip && !a.starts_with('-'))
        .map(|(_, a)| a.as_str());
    matches!(sub, Some("config" | "remote" | "rev-parse"))
}

fn serve(conn: TcpStream, config: &Config, want: &str) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut input = conn.try_clone()?;
    let out: Sender = Arc::new(Mutex::new(conn));
    let req = Request::decode(&mut input)?;
    if req.token != want {
        return send(&out, proto::FAILED, b"the relay's token does not match");
    }
    let d = &config.drives;
    let mut learned = Vec::new();
    // A host path is taken as it is (the relay's own tests run the client on the host).
    let host_cwd = req.cwd.starts_with('/').then(|| req.cwd.clone());
    let Some(cwd) = d.to_host(&req.cwd).or(host_cwd) else {
        let msg = format!("cannot translate the working directory {:?}", req.cwd);
        return send(&out, proto::FAILED, msg.as_bytes());
    };
    learned.push((cwd.clone(), req.cwd.clone()));
    let mut args = Vec::with_capacity(req.args.len());
    for a in &req.args {
        let (host, pair) = d.arg_to_host(a);
        learned.extend(pair);
        args.push(host);
    }
    let mut cmd = Command::new(&config.git);
    cmd.args(&args)
        .current_dir(&cwd)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut home = None;
    for (k, v) in &req.env {
        let upper = k.to_ascii_uppercase();
        let host = d.to_host(v);
        if let Some(h) = &host {
            learned.push((h.clone(), v.clone()));
        }
        match upper.as_str() {
            // Git for Windows reads its global config from HOME, else USERPROFILE.
            "HOME" => home = host.or(home),
            "USERPROFILE" => {
                if home.is_none() {
                    home = host;
                }
            }
            _ if upper.starts_with("GIT_") => {
                cmd.env(k, host.as_deref().unwrap_or(v));
            }
            _ => {
                cmd.env(k, v);
            }
        }
    }
    match home.or_else(|| std::env::var("HOME").ok()) {
        Some(h) => cmd.env("HOME", h),
        None => cmd.env("HOME", "/nonexistent"),
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("cannot run {}: {e}", config.git.display());
            return send(&out, proto::FAILED, msg.as_bytes());
        }
    };
    let pgid = child.id() as libc::pid_t;
    let ended = Arc::new(AtomicBool::new(false));
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return send(&out, proto::FAILED, b"git's pipes are missing");
    };

    // Standard input, until the client says it ended; then, until the connection closes, so
    // that a client killed early kills git.
    let ended_in = ended.clone();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut pipe = Some(&mut stdin);
        loop {
            match proto::read_frame(&mut input, &mut buf) {
                Ok(Some(proto::STDIN)) => {
                    if let Some(p) = pipe.as_mut()
                        && p.write_all(&buf).is_err()
                    {
                        pipe = None;
                    }
                }
                Ok(Some(_)) => pipe = None,
                Ok(None) | Err(_) => break,
            }
            if pipe.is_none() {
                // Closing git's standard input: replace the pipe by one already closed.
                break;
            }
        }
        drop(stdin);
        // Wait for the connection to close.
        let mut sink = [0u8; 512];
        while matches!(input.read(&mut sink), Ok(n) if n > 0) {}
        if !ended_in.load(Ordering::SeqCst) {
            // SAFETY: signalling a process group git leads; harmless if it is gone.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    });

    let translate = prints_paths(&req.args);
    let drives = d.clone();
    let out_stdout = out.clone();
    let t_out = std::thread::spawn(move || -> io::Result<()> {
        if translate {
            let mut all = Vec::new();
            stdout.read_to_end(&mut all)?;
            return send(&out_stdout, proto::STDOUT, &drives.values_to_windows(&all));
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stdout.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            send(&out_stdout, proto::STDOUT, &buf[..n])?;
        }
    });
    let out_stderr = out.clone();
    let t_err = std::thread::spawn(move || -> io::Result<()> {
        // Whole lines, so that a path is never cut between two translations.
        let mut pending = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stderr.read(&mut buf)?;
            if n == 0 {
                if !pending.is_empty() {
                    send(
                        &out_stderr,
                        proto::STDERR,
                        &replace_learned(&pending, &learned),
                    )?;
                }
                return Ok(());
            }
            pending.extend_from_slice(&buf[..n]);
            let cut = match pending.iter().rposition(|&b| b == b'\n' || b == b'\r') {
                Some(i) => i + 1,
                None if pending.len() > 64 * 1024 => pending.len(),
                None => continue,
            };
            let rest = pending.split_off(cut);
            send(
                &out_stderr,
                proto::STDERR,
                &replace_learned(&pending, &learned),
            )?;
            pending = rest;
        }
    });
    let r_out = t_out.join();
    let r_err = t_err.join();
    let status = child.wait()?;
    ended.store(true, Ordering::SeqCst);
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    for r in [r_out, r_err] {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::other("a relay thread panicked")),
        }
    }
    send(&out, proto::EXIT, &code.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_that_print_paths_are_told_apart() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(prints_paths(&a(&["--git-dir", "x", "config", "--list"])));
        assert!(prints_paths(&a(&["-C", "x", "rev-parse", "--git-dir"])));
        assert!(!prints_paths(&a(&[
            "--git-dir",
            "config",
            "cat-file",
            "--batch"
        ])));
        assert!(!prints_paths(&a(&["hash-object", "--stdin"])));
    }
}
