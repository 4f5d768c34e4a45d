//! Test-only helpers for running ccsync as a Windows program under Wine (never shipped):
//!
//! * `git.exe` (`src/bin/git.rs`), built for Windows: no Windows git can be installed here, and
//!   a Windows program cannot start the host's git, so this one relays its arguments, working
//!   directory, git's variables and standard input to a server on 127.0.0.1 and gives back
//!   git's standard output, standard error and exit code, byte for byte.
//! * the server ([`server`], also the `git-relay` program): runs the host's git with Wine's
//!   drive paths (`Z:\tmp\x`) translated to host paths (`/tmp/x`), and the paths git prints
//!   translated back where ccsync reads them.
//! * `claude.exe` (`src/bin/claude.rs`): a fake Claude Code that records how it was started.
//! * `envrun.exe` (`src/bin/envrun.rs`): runs a program with variables Wine would otherwise
//!   set itself (`USERPROFILE`, `APPDATA`, `PATH`…), so that each test machine has its own.
//!
//! ccsync knows nothing of these: the relay is found as `git` on PATH.

pub mod paths;
pub mod proto;
#[cfg(unix)]
pub mod server;
