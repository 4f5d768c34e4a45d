//! `envrun.exe PROGRAM [ARGS…]` for tests under Wine: runs PROGRAM with each variable
//! `WINTEST_SET_<NAME>` of its environment set as `<NAME>`, with the same standard streams, and
//! exits with its exit code.
//!
//! Wine sets `USERPROFILE`, `APPDATA`, `LOCALAPPDATA`, `TEMP`, `TMP` and `PATH` itself for a
//! program started from the host, whatever the host passes; a program started by another
//! Windows program gets the environment it is given. So a test machine's own profile folder
//! reaches ccsync.exe through this.

const PREFIX: &str = "WINTEST_SET_";

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: envrun PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let mut cmd = std::process::Command::new(&program);
    cmd.args(args);
    for (k, v) in std::env::vars_os() {
        let Some(name) = k.to_str().and_then(|k| k.strip_prefix(PREFIX)) else {
            continue;
        };
        if !name.is_empty() {
            cmd.env(name, v);
        }
        cmd.env_remove(&k);
    }
    match cmd.status() {
        Ok(s) => std::process::exit(s.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("envrun: cannot run {}: {e}", program.to_string_lossy());
            std::process::exit(127);
        }
    }
}
