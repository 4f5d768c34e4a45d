//! This machine's configuration (`config.json` in the tool home) and the tool home itself.
//!
//! The tool home is `$CCSYNC_HOME`, else `~/.claude-session-sync`. It holds `config.json`, the
//! local clone of the sync repository, the state index, logs and pid files, all private to the
//! user. The shared half of the configuration (placeholders of every machine) lives in the sync
//! repository; see [`crate::store`].

pub mod setup;
pub mod shared;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::paths::{MapError, Mapper, PathStyle};

pub const CONFIG_VERSION: u32 = 1;

/// What push does with secrets it finds in what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SecretMode {
    /// Replace matches in the pushed copy (default).
    #[default]
    Redact,
    /// Refuse to push a session that contains one.
    Block,
    /// Push as is, and say what was found.
    Warn,
    /// Do not scan.
    Off,
}

impl std::fmt::Display for SecretMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecretMode::Redact => "redact",
            SecretMode::Block => "block",
            SecretMode::Warn => "warn",
            SecretMode::Off => "off",
        })
    }
}

impl std::str::FromStr for SecretMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "redact" => Ok(SecretMode::Redact),
            "block" => Ok(SecretMode::Block),
            "warn" => Ok(SecretMode::Warn),
            "off" => Ok(SecretMode::Off),
            _ => Err(format!(
                "unknown secret scan mode {s:?} (expected redact, block, warn or off)"
            )),
        }
    }
}

fn default_branch() -> String {
    "main".to_string()
}
fn default_ttl() -> u64 {
    600
}
fn default_interval() -> u64 {
    300
}
fn default_debounce() -> u64 {
    20
}
fn default_pull_timeout() -> u64 {
    10
}
fn default_network_timeout() -> u64 {
    crate::store::git::DEFAULT_NETWORK_TIMEOUT_SECS
}
fn default_hook_timeout() -> u64 {
    3
}
fn default_version() -> u32 {
    CONFIG_VERSION
}

/// `config.json`. Every field is documented in README.md ("Configuration").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_version")]
    pub version: u32,
    /// This machine's name in the sync repository.
    pub machine_id: String,
    /// The git remote: a URL or a local path.
    pub remote: String,
    /// The branch of the remote that holds the sync data.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Path conventions of this machine (tests simulate Windows machines with it).
    pub path_style: PathStyle,
    /// This machine's path for each placeholder (HOME included).
    #[serde(default)]
    pub placeholders: BTreeMap<String, String>,
    /// Sessions whose cwd is under one of these are synced; empty means all.
    #[serde(default)]
    pub sync_directories: Vec<String>,
    #[serde(default)]
    pub secret_scan: SecretMode,
    /// Session lock time-to-live in seconds.
    #[serde(default = "default_ttl")]
    pub lock_ttl_secs: u64,
    /// Daemon: full sync at least this often (seconds).
    #[serde(default = "default_interval")]
    pub daemon_interval_secs: u64,
    /// Daemon: push after transcripts have been quiet this long (seconds).
    #[serde(default = "default_debounce")]
    pub daemon_debounce_secs: u64,
    /// The quick pull before `resume` (and in `config show`) gives up after this many seconds in
    /// all, however busy the network is.
    #[serde(default = "default_pull_timeout")]
    pub pull_timeout_secs: u64,
    /// A network step (fetch, push, ls-remote, a `gh` call) is stopped after this many seconds
    /// without any sign of life (no connection, no progress); a transfer that keeps moving may
    /// take longer, up to `TRANSFER_CAP_FACTOR` times this in all.
    #[serde(default = "default_network_timeout")]
    pub network_timeout_secs: u64,
    /// The session-start hook gives up (quietly) after this many seconds.
    #[serde(default = "default_hook_timeout")]
    pub hook_timeout_secs: u64,
    /// A random id of this installation, so that a machine id is never taken over by accident.
    #[serde(default)]
    pub install_id: String,
    /// `owner/repo` when the remote was set up with `--github`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_repo: Option<String>,
    /// The realpaths of sync directories behind symbolic links (computed when first needed).
    #[serde(skip)]
    real_sync_dirs: std::sync::OnceLock<Vec<String>>,
}

impl Config {
    pub fn new(machine_id: String, remote: String, path_style: PathStyle) -> Self {
        Config {
            version: CONFIG_VERSION,
            machine_id,
            remote,
            branch: default_branch(),
            path_style,
            placeholders: BTreeMap::new(),
            sync_directories: Vec::new(),
            secret_scan: SecretMode::default(),
            lock_ttl_secs: default_ttl(),
            daemon_interval_secs: default_interval(),
            daemon_debounce_secs: default_debounce(),
            pull_timeout_secs: default_pull_timeout(),
            hook_timeout_secs: default_hook_timeout(),
            network_timeout_secs: default_network_timeout(),
            install_id: crate::util::random_hex(16),
            github_repo: None,
            real_sync_dirs: Default::default(),
        }
    }

    /// The mapper for this machine's placeholders. Claude Code records realpaths: when a
    /// placeholder's path is (or lies under) a symbolic link, its realpath is what the mapper
    /// writes on the way in, and the configured spelling is kept as an alias on the way out.
    pub fn mapper(&self) -> Result<Mapper, MapError> {
        if self.path_style != PathStyle::native() {
            return Mapper::new(self.path_style, self.placeholders.iter());
        }
        let mut primary: Vec<(String, String)> = Vec::new();
        let mut aliases: Vec<(String, String)> = Vec::new();
        for (name, path) in &self.placeholders {
            let real = crate::claude::naming::client_path(path);
            if real != *path && crate::paths::normalize_path(self.path_style, name, &real).is_ok() {
                primary.push((name.clone(), real));
                aliases.push((name.clone(), path.clone()));
            } else {
                primary.push((name.clone(), path.clone()));
            }
        }
        Mapper::with_aliases(self.path_style, primary, aliases)
    }

    /// Whether a local cwd is under the configured sync directories (all are, when none are
    /// configured).
    pub fn in_sync_dirs(&self, cwd: &str) -> bool {
        if self.sync_directories.is_empty() {
            return true;
        }
        // Claude Code records realpaths: a sync directory behind a symbolic link counts under
        // both spellings (resolved once per process).
        let real = self.real_sync_dirs.get_or_init(|| {
            if self.path_style != PathStyle::native() {
                return Vec::new();
            }
            self.sync_directories
                .iter()
                .map(|d| crate::claude::naming::client_path(d))
                .filter(|r| !self.sync_directories.contains(r))
                .collect()
        });
        self.sync_directories
            .iter()
            .chain(real.iter())
            .any(|d| path_is_under(self.path_style, cwd, d))
    }
}

/// Whether `path` is `dir` or below it, on a machine of `style` (Windows: case-insensitive,
/// either separator).
pub fn path_is_under(style: PathStyle, path: &str, dir: &str) -> bool {
    let norm = |s: &str| -> String {
        match style {
            PathStyle::Posix => s.trim_end_matches('/').to_string(),
            PathStyle::Windows => s
                .replace('/', "\\")
                .trim_end_matches('\\')
                .to_ascii_lowercase(),
        }
    };
    let (p, d) = (norm(path), norm(dir));
    if d.is_empty() {
        return true;
    }
    let sep = style.separator();
    p == d || (p.starts_with(&d) && p[d.len()..].starts_with(sep))
}

/// The tool home: `$CCSYNC_HOME`, else `~/.claude-session-sync`.
pub fn tool_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("CCSYNC_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    match crate::os::home_dir() {
        Some(home) => Ok(home.join(".claude-session-sync")),
        None => bail!(
            "cannot find the tool home: {h} is not set (set {h} or CCSYNC_HOME)",
            h = crate::os::home_var()
        ),
    }
}

/// Paths inside the tool home.
#[derive(Debug, Clone)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }
    pub fn from_env() -> Result<Self> {
        Ok(Home::new(tool_home()?))
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn repo_dir(&self) -> PathBuf {
        self.root.join("repo.git")
    }
    pub fn default_remote(&self) -> PathBuf {
        self.root.join("remote.git")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Create the tool home (private) if needed.
    pub fn ensure(&self) -> Result<()> {
        crate::os::create_private_dir(&self.root)
            .with_context(|| format!("cannot create the tool home {}", self.root.display()))
    }

    /// The configuration, or `None` before `init`.
    pub fn load_config(&self) -> Result<Option<Config>> {
        let path = self.config_file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let config = parse_config(&bytes, &path)?;
        crate::store::git::set_network_timeout(config.network_timeout_secs);
        Ok(Some(config))
    }

    /// The configuration, or an error telling the user to run `init`.
    pub fn require_config(&self) -> Result<Config> {
        match self.load_config()? {
            Some(c) => Ok(c),
            None => bail!(
                "this machine is not set up yet ({} does not exist): run `ccsync init`",
                self.config_file().display()
            ),
        }
    }

    /// Write the configuration atomically, readable only by the user.
    pub fn save_config(&self, config: &Config) -> Result<()> {
        self.ensure()?;
        let mut text = serde_json::to_vec_pretty(config)?;
        text.push(b'\n');
        let path = self.config_file();
        crate::os::write_atomic(&path, &text, true)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Parse `config.json`, naming the key at fault when it is wrong.
pub fn parse_config(bytes: &[u8], path: &Path) -> Result<Config> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let config: Config = match serde_path_to_error::deserialize(de) {
        Ok(c) => c,
        Err(e) => {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let at = if key.is_empty() || key == "." {
                String::new()
            } else {
                format!(", key `{key}`")
            };
            bail!(
                "config file {}{at} is broken: {inner} (fix it by hand, or run `ccsync init` again)",
                path.display()
            );
        }
    };
    if config.version > CONFIG_VERSION {
        bail!(
            "config file {} was written by a newer ccsync (version {}): upgrade ccsync",
            path.display(),
            config.version
        );
    }
    if let Err(e) = config.mapper() {
        bail!("config file {}, key `placeholders`: {e}", path.display());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("h"));
        assert!(home.load_config().unwrap().is_none());
        let mut c = Config::new("m1".into(), "/r".into(), PathStyle::Posix);
        c.placeholders.insert("HOME".into(), "/home/a".into());
        home.save_config(&c).unwrap();
        assert_eq!(home.load_config().unwrap().unwrap(), c);
        let minimal = br#"{"machine_id":"x","remote":"r","path_style":"windows"}"#;
        let m = parse_config(minimal, Path::new("c.json")).unwrap();
        assert_eq!(
            (m.lock_ttl_secs, m.branch.as_str(), m.secret_scan),
            (600, "main", SecretMode::Redact)
        );
    }

    #[test]
    fn broken_config_names_file_and_key() {
        let p = Path::new("/t/config.json");
        let e = parse_config(
            br#"{"machine_id":"x","remote":"r","path_style":"posix","lock_ttl_secs":"ten"}"#,
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/t/config.json") && e.contains("lock_ttl_secs"),
            "{e}"
        );
        let e = parse_config(
            br#"{"machine_id":"x","remote":"r","path_style":"posix","lock_tll":1}"#,
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("lock_tll"), "{e}");
        let e = parse_config(b"{\"machine_id\": ", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/t/config.json"), "{e}");
        let e = parse_config(br#"{"machine_id":"x","remote":"r","path_style":"posix","placeholders":{"HOME":"rel"}}"#, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("placeholders") && e.contains("absolute"), "{e}");
    }

    #[test]
    fn sync_dir_membership() {
        assert!(path_is_under(PathStyle::Posix, "/home/a/p/x", "/home/a/p"));
        assert!(path_is_under(PathStyle::Posix, "/home/a/p", "/home/a/p/"));
        assert!(!path_is_under(PathStyle::Posix, "/home/a/p2", "/home/a/p"));
        assert!(path_is_under(
            PathStyle::Windows,
            "c:/Projects/x",
            "C:\\projects"
        ));
        assert!(!path_is_under(
            PathStyle::Windows,
            "C:\\projectsX",
            "C:\\projects"
        ));
    }
}
