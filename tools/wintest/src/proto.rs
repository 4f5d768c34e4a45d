//! The relay's wire format, shared by the Windows `git.exe` (client) and the host server.
//!
//! One TCP connection on 127.0.0.1 per git command. The client sends a [`Request`], then
//! frames of its standard input; the server answers with frames of git's standard output and
//! error and, last, its exit code. A frame is a kind byte, a little-endian `u32` length and that
//! many bytes, so any byte goes through unchanged.

use std::io::{self, Read, Write};

/// The first bytes of a request (the format's version).
pub const MAGIC: &[u8; 4] = b"WTR1";

/// The environment variable that tells the client where the server listens and its token:
/// `127.0.0.1:PORT/TOKEN`.
pub const RELAY_VAR: &str = "WINTEST_RELAY";

/// Client to server: a piece of standard input.
pub const STDIN: u8 = 0;
/// Client to server: standard input ended.
pub const STDIN_END: u8 = 1;
/// Server to client: a piece of git's standard output.
pub const STDOUT: u8 = 1;
/// Server to client: a piece of git's standard error.
pub const STDERR: u8 = 2;
/// Server to client: git ended; the payload is its exit code (`i32`, little-endian).
pub const EXIT: u8 = 3;
/// Server to client: the relay itself failed (the payload says why); the client exits 128.
pub const FAILED: u8 = 4;

/// Frames are never longer than this (a reader refuses longer ones).
pub const MAX_FRAME: usize = 1 << 20;

/// What git.exe asks the host to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub token: String,
    /// The client's working directory, as it spells it (`Z:\…`).
    pub cwd: String,
    /// git's arguments (without the program name).
    pub args: Vec<String>,
    /// The variables the client forwards (see [`forwarded`]).
    pub env: Vec<(String, String)>,
}

/// Whether the client forwards a variable of this name to the server: git's own, the home
/// folders (git reads its global config from there) and the locale and time zone.
pub fn forwarded(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("GIT_")
        || matches!(
            upper.as_str(),
            "HOME" | "USERPROFILE" | "LANG" | "LC_ALL" | "LC_MESSAGES" | "TZ" | "EMAIL"
        )
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn get_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn get_str(r: &mut impl Read) -> io::Result<String> {
    let n = get_u32(r)? as usize;
    if n > MAX_FRAME {
        return Err(bad(format!("a string of {n} bytes in a request")));
    }
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)?;
    String::from_utf8(b).map_err(|_| bad("a string in a request is not UTF-8".into()))
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Request {
    /// The request as sent.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        put_str(&mut out, &self.token);
        put_str(&mut out, &self.cwd);
        out.extend_from_slice(&(self.args.len() as u32).to_le_bytes());
        for a in &self.args {
            put_str(&mut out, a);
        }
        out.extend_from_slice(&(self.env.len() as u32).to_le_bytes());
        for (k, v) in &self.env {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        out
    }

    /// Read a request; an error for anything that is not one.
    pub fn decode(r: &mut impl Read) -> io::Result<Request> {
        let mut magic = [0u8; 4];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad("not a relay request".into()));
        }
        let token = get_str(r)?;
        let cwd = get_str(r)?;
        let argc = get_u32(r)? as usize;
        if argc > 4096 {
            return Err(bad(format!("{argc} arguments")));
        }
        let args = (0..argc).map(|_| get_str(r)).collect::<io::Result<_>>()?;
        let envc = get_u32(r)? as usize;
        if envc > 4096 {
            return Err(bad(format!("{envc} variables")));
        }
        let env = (0..envc)
            .map(|_| Ok((get_str(r)?, get_str(r)?)))
            .collect::<io::Result<_>>()?;
        Ok(Request {
            token,
            cwd,
            args,
            env,
        })
    }
}

/// Write one frame (pieces longer than [`MAX_FRAME`] are split).
pub fn write_frame(w: &mut impl Write, kind: u8, data: &[u8]) -> io::Result<()> {
    let mut chunks = data.chunks(MAX_FRAME).peekable();
    if chunks.peek().is_none() {
        w.write_all(&[kind, 0, 0, 0, 0])?;
    }
    for c in chunks {
        let mut head = [kind, 0, 0, 0, 0];
        head[1..].copy_from_slice(&(c.len() as u32).to_le_bytes());
        w.write_all(&head)?;
        w.write_all(c)?;
    }
    w.flush()
}

/// Read one frame into `buf`; `None` at a clean end of the stream (before a frame).
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<u8>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(bad(format!("a frame of {len} bytes")));
    }
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(Some(head[0]))
}

/// Parse [`RELAY_VAR`]: the server's address (loopback only) and the token.
pub fn parse_relay_var(value: &str) -> Result<(std::net::SocketAddr, String), String> {
    let (addr, token) = value
        .split_once('/')
        .ok_or_else(|| format!("{RELAY_VAR}={value:?} is not ADDRESS/TOKEN"))?;
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| format!("{RELAY_VAR}: bad address {addr:?}: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{RELAY_VAR}: {addr} is not a loopback address"));
    }
    Ok((addr, token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips() {
        let r = Request {
            token: "t0k".into(),
            cwd: r"Z:\tmp\x y".into(),
            args: vec![
                "--git-dir".into(),
                r"Z:\a\b.git".into(),
                "".into(),
                "é".into(),
            ],
            env: vec![("GIT_DIR".into(), "NUL".into())],
        };
        let bytes = r.encode();
        assert_eq!(Request::decode(&mut bytes.as_slice()).unwrap(), r);
        assert!(Request::decode(&mut &b"XXXX"[..]).is_err());
        assert!(Request::decode(&mut &bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn frames_carry_any_bytes_and_split_long_ones() {
        let all: Vec<u8> = (0..=255u8).collect();
        let long = vec![7u8; MAX_FRAME + 3];
        let mut wire = Vec::new();
        write_frame(&mut wire, STDOUT, &all).unwrap();
        write_frame(&mut wire, STDERR, &[]).unwrap();
        write_frame(&mut wire, STDIN, &long).unwrap();
        let mut r = wire.as_slice();
        let mut buf = Vec::new();
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Some(STDOUT));
        assert_eq!(buf, all);
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Some(STDERR));
        assert!(buf.is_empty());
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Some(STDIN));
        assert_eq!(buf.len(), MAX_FRAME);
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Some(STDIN));
        assert_eq!(buf, [7, 7, 7]);
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), None);
        assert!(
            read_frame(&mut &[1u8, 9, 0][..], &mut buf).is_err(),
            "torn head"
        );
    }

    #[test]
    fn only_loopback_relays_are_accepted() {
        let (a, t) = parse_relay_var("127.0.0.1:4000/abc").unwrap();
        assert_eq!((a.port(), t.as_str()), (4000, "abc"));
        assert!(parse_relay_var("10.0.0.1:4000/abc").is_err());
        assert!(parse_relay_var("127.0.0.1:4000").is_err());
        assert!(forwarded("GIT_DIR") && forwarded("Home") && !forwarded("PATH"));
    }
}
