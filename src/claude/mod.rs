//! Claude Code's on-disk model: where its config dir is, how project folders are named, which
//! files make up a session, what a transcript says about itself, and which sessions are live.
//!
//! Read-only: nothing here writes into the Claude Code dir ([`settings`] edits text, the caller
//! writes it).

pub mod discover;
pub mod encode;
pub mod jsonscan;
pub mod live;
pub mod settings;
pub mod transcript;
pub mod tree;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

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
                "cannot find the Claude Code directory: HOME is not set (set HOME or CLAUDE_CONFIG_DIR)"
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

    /// `cleanupPeriodDays` from the user settings (Claude Code's default: 30).
    pub fn cleanup_period_days(&self) -> u32 {
        std::fs::read(self.settings())
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("cleanupPeriodDays").and_then(|d| d.as_u64()))
            .map(|d| d.min(100_000) as u32)
            .unwrap_or(30)
    }

    /// Whether a path lies inside this directory (lexically).
    pub fn contains(&self, p: &Path) -> bool {
        p.starts_with(&self.root)
    }
}
