//! What this machine remembers between runs (in the tool home's `state/`): when it last pushed
//! and pulled, and (from the sync engine) what each local file looked like when it was last in
//! step with the repository.

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Home;

/// One completed push or pull.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub sessions: usize,
}

/// `state/status.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    #[serde(default)]
    pub remote: Option<String>,
    #[serde(default)]
    pub last_push: Option<Event>,
    #[serde(default)]
    pub last_pull: Option<Event>,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Access to the state files.
pub struct State;

impl State {
    fn status_path(home: &Home) -> std::path::PathBuf {
        home.state_dir().join("status.json")
    }

    pub fn load_status(home: &Home) -> Status {
        std::fs::read(Self::status_path(home))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save_status(home: &Home, status: &Status) -> Result<()> {
        crate::os::create_private_dir(&home.state_dir())?;
        let p = Self::status_path(home);
        crate::os::write_atomic(&p, &serde_json::to_vec_pretty(status)?, true)
            .with_context(|| format!("cannot write {}", p.display()))
    }

    /// Forget everything tied to the current remote (after `config set-remote`): the next push
    /// sends everything.
    pub fn forget_remote(home: &Home) -> Result<()> {
        for name in ["status.json", "index.json"] {
            let p = home.state_dir().join(name);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot remove {}", p.display())),
            }
        }
        Ok(())
    }
}
