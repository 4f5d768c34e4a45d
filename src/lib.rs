//! ccsync: keep Claude Code conversations in step across machines through a git repository.
//!
//! The data flows one way: [`cli`] → [`launch`] → ([`sync`], [`lock`]) → ([`claude`], [`paths`], [`store`]).
//!
//! * [`claude`] — Claude Code's on-disk model (read-only).
//! * [`paths`] — placeholder path mapping (pure).
//! * [`secrets`] — secret detection and redaction for what push sends (pure).
//! * [`store`] — the sync repository: format, git plumbing, compare-and-swap push.
//! * [`sync`] — the engine: push, pull, merge.
//! * [`launch`] — running Claude Code on a session: lock, heartbeat, push and release after.
//! * [`lock`] — session locks in the repository, and this machine's record of held sessions.
//! * [`migrate`] — converting repositories of the Python tool.
//! * [`config`] — this machine's configuration and the tool home.
//! * [`catalog`] — local sessions with their metadata, cached.
//! * [`os`] — everything platform-specific.
//! * [`clock`] — the wall clock of lock stamps and sightings (movable in tests).
//! * [`cli`] — argument parsing and output, one file per command.

pub mod archive;
pub mod catalog;
pub mod claude;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod hooks;
pub mod launch;
pub mod lock;
pub mod migrate;
pub mod os;
pub mod paths;
pub mod secrets;
pub mod store;
pub mod sync;
pub mod util;
