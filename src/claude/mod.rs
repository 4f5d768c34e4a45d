//! Claude Code's on-disk model: where its config dir is, how project folders are named, which
//! files make up a session, what a transcript says about itself, and which sessions are live.
//!
//! Where the client puts a working directory's sessions and memory is decided in one place,
//! [`naming`] (realpath, git root, `autoMemoryDirectory`); [`encode`] is only the string
//! encoding under it. The settings the client merges are read by [`settings::MergedSettings`].
//!
//! Read-only: nothing here writes into the Claude Code dir ([`settings`] edits text, the caller
//! writes it).

pub mod discover;
pub mod encode;
pub mod jsonscan;
pub mod live;
pub mod naming;
pub mod settings;
pub mod transcript;
pub mod tree;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// [`ClaudeDir::cleanup_period_days`]'s stand-in for "never" (about 273 years).
pub const CLEANUP_NEVER_DAYS: u32 = 100_000;

/// The Claude Code config dir (`$CLAUDE_CONFIG_DIR`, else `~/.claude`).
#[derive(Debug, Clone)]
pub struct ClaudeDir {
    pub root: PathBuf,
}

impl ClaudeDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ClaudeDir { root: root.into() }
    }

    /// The config dir the user's Claude Code uses.
    pub fn from_env() -> Result<Self> {
        if let Some(dir) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
            return Ok(ClaudeDir::new(PathBuf::from(dir)));
        }
        match crate::os::home_dir() {
            Some(home) => Ok(ClaudeDir::new(home.join(".claude"))),
            None => bail!(
                "cannot find the Claude Code directory: {h} is not set (set {h} or CLAUDE_CONFIG_DIR)",
                h = crate::os::home_var()
            ),
        }
    }

    pub fn projects(&self) -> PathBuf {
        self.root.join("projects")
    }
    pub fn sessions_dir(&self) -> PathBuf {
        self.root.join("sessions")
    }
    pub fn history(&self) -> PathBuf {
        self.root.join("history.jsonl")
    }
    pub fn claude_md(&self) -> PathBuf {
        self.root.join("CLAUDE.md")
    }
    /// `file-history/`: per-session snapshots of files before Claude Code edited them.
    pub fn file_history(&self) -> PathBuf {
        self.root.join("file-history")
    }
    pub fn plans(&self) -> PathBuf {
        self.root.join("plans")
    }
    pub fn settings(&self) -> PathBuf {
        self.root.join("settings.json")
    }
    /// Claude Code's global config (`.claude.json`, which holds user-scope MCP servers): in
    /// the config dir when `CLAUDE_CONFIG_DIR` names it, else beside `~/.claude`.
    pub fn global_config(&self) -> PathBuf {
        let named = std::env::var_os("CLAUDE_CONFIG_DIR").is_some_and(|d| !d.is_empty());
        match self.root.parent() {
            Some(parent) if !named => parent.join(".claude.json"),
            _ => self.root.join(".claude.json"),
        }
    }

    /// The settings Claude Code would use when started in `cwd` (`None`: user and managed
    /// settings only), merged as the client merges them.
    pub fn settings_for(&self, cwd: Option<&Path>) -> settings::MergedSettings {
        settings::MergedSettings::load(self, cwd)
    }

    /// Days after which Claude Code's clean-up deletes transcripts when started in `cwd`;
    /// `None` when it deletes nothing (see [`settings::MergedSettings::cleanup_period_days`]).
    pub fn cleanup_period(&self, cwd: Option<&Path>) -> Option<u32> {
        self.settings_for(cwd).cleanup_period_days()
    }

    /// Clean-up period for a date cut-off, from the user and managed settings: the client's
    /// value capped at [`CLEANUP_NEVER_DAYS`], which also stands for "the client deletes
    /// nothing" (a cut-off that far back keeps every file and stays a valid date). New code
    /// that must tell "never" apart uses [`ClaudeDir::cleanup_period`].
    pub fn cleanup_period_days(&self) -> u32 {
        self.cleanup_period(None)
            .map_or(CLEANUP_NEVER_DAYS, |d| d.min(CLEANUP_NEVER_DAYS))
    }

    /// Whether a path lies inside this directory (lexically).
    pub fn contains(&self, p: &Path) -> bool {
        p.starts_with(&self.root)
    }
}
