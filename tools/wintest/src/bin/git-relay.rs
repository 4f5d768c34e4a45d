//! The host side of the test git relay (see the `wintest` library):
//!
//!   git-relay [--git PATH] [--var-file FILE]
//!
//! Listens on 127.0.0.1 (a port the system picks) and prints the value of `WINTEST_RELAY` for
//! the Windows `git.exe` (to FILE, written atomically, when given; else as the first line of
//! standard output). Drive letters are those of `$WINEPREFIX`. Serves until killed.

#[cfg(unix)]
fn main() {
    if let Err(e) = run() {
        eprintln!("git-relay: {e}");
        std::process::exit(1);
    }
}

#[cfg(unix)]
fn run() -> Result<(), String> {
    use std::io::Write as _;
    let mut config = wintest::server::Config::from_env();
    let mut var_file = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--git") => {
                config.git = args.next().ok_or("--git needs a path")?.into();
            }
            Some("--var-file") => {
                var_file = Some(std::path::PathBuf::from(
                    args.next().ok_or("--var-file needs a path")?,
                ));
            }
            _ => return Err(format!("unknown argument {a:?} (see the source's header)")),
        }
    }
    let server =
        wintest::server::Server::start(config).map_err(|e| format!("cannot listen: {e}"))?;
    let var = server.relay_var();
    match var_file {
        Some(f) => {
            let tmp = f.with_extension("tmp");
            std::fs::write(&tmp, format!("{var}\n"))
                .and_then(|()| std::fs::rename(&tmp, &f))
                .map_err(|e| format!("cannot write {}: {e}", f.display()))?;
        }
        None => {
            let mut out = std::io::stdout();
            writeln!(out, "{var}")
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot print the address: {e}"))?;
        }
    }
    loop {
        std::thread::park();
    }
}

#[cfg(not(unix))]
fn main() {
    eprintln!("git-relay runs on the host (Linux), not under Windows");
    std::process::exit(1);
}
