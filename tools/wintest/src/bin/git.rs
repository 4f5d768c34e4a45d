//! `git.exe` for tests under Wine: relays this git command to the host's git through the server
//! named by `WINTEST_RELAY` (see the `wintest` library). Exits with git's exit code, or 128
//! when the relay fails (as git does for a fatal error).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use wintest::proto::{self, Request};

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fatal: git relay (wintest): {e}");
            128
        }
    };
    std::process::exit(code);
}

fn run() -> Result<i32, String> {
    let var = std::env::var(proto::RELAY_VAR).map_err(|_| {
        format!(
            "{} is not set: this git.exe only relays to a host git server",
            proto::RELAY_VAR
        )
    })?;
    let (addr, token) = proto::parse_relay_var(&var)?;
    let cwd = std::env::current_dir()
        .map_err(|e| format!("cannot read the working directory: {e}"))?
        .to_string_lossy()
        .into_owned();
    let req = Request {
        token,
        cwd,
        args: std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| proto::forwarded(k))
            .collect(),
    };
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("cannot reach the relay at {addr}: {e}"))?;
    conn.set_nodelay(true)
        .map_err(|e| format!("cannot set up the connection: {e}"))?;
    conn.write_all(&req.encode())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut to_server = conn
        .try_clone()
        .map_err(|e| format!("cannot share the connection: {e}"))?;
    // Standard input goes to git as it comes (git cat-file --batch answers each request).
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = proto::write_frame(&mut to_server, proto::STDIN_END, &[]);
                    return;
                }
                Ok(n) => {
                    if proto::write_frame(&mut to_server, proto::STDIN, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let mut buf = Vec::new();
    loop {
        let kind = proto::read_frame(&mut conn, &mut buf)
            .map_err(|e| format!("the relay connection broke: {e}"))?;
        match kind {
            Some(proto::STDOUT) => {
                // A reader that went away is git's SIGPIPE: stop quietly.
                if stdout
                    .write_all(&buf)
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return Ok(141);
                }
            }
            Some(proto::STDERR) => {
                let _ = stderr.write_all(&buf);
            }
            Some(proto::EXIT) => {
                let code: [u8; 4] = buf
                    .as_slice()
                    .try_into()
                    .map_err(|_| "a malformed exit code from the relay".to_string())?;
                return Ok(i32::from_le_bytes(code));
            }
            Some(proto::FAILED) => return Err(String::from_utf8_lossy(&buf).into_owned()),
            Some(k) => return Err(format!("an unknown frame ({k}) from the relay")),
            None => return Err("the relay closed the connection before git ended".into()),
        }
    }
}
