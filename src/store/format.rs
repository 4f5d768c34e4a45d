//! The layout of the sync repository (documented in `docs/FORMAT.md`) and the small shared
//! files at its root: the format marker, the placeholder table, machine records.
//!
//! The repository is not trusted: every path read from it goes through [`check_rel_path`] and
//! every placeholder value through [`crate::paths::normalize_path`] before it is used.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::paths::PathStyle;

/// The format marker at the root of the repository.
pub const FORMAT_FILE: &str = "ccsync.json";
/// The version of a plain repository whose segments are stored as they are (every repository
/// ccsync 0.1 made; this build keeps such a repository at version 1).
pub const FORMAT_VERSION: u32 = 1;
/// The version of an encrypted repository (a ccsync that reads only version 1 refuses it).
pub const ENCRYPTED_VERSION: u32 = 2;
/// The version of a plain repository whose log segments are stored zstd-compressed (what this
/// build makes of a new plain repository; a ccsync that reads only up to 2 refuses it).
pub const PACKED_VERSION: u32 = 3;
/// The highest version this build reads.
pub const MAX_VERSION: u32 = PACKED_VERSION;
/// The marker's `segments` value of a version-3 repository.
pub const SEGMENTS_ZSTD: &str = "zstd";
pub const SHARED_PLACEHOLDERS: &str = "shared_placeholders.json";
pub const MACHINES_DIR: &str = "machines";
pub const LOCKS_DIR: &str = "locks";
pub const SESSIONS_DIR: &str = "sessions";
pub const PROJECTS_DIR: &str = "projects";
pub const GLOBAL_DIR: &str = "global";
pub const HISTORY_DIR: &str = "history";
/// Sessions deleted from the archive on purpose (`ccsync forget`).
pub const FORGOTTEN_FILE: &str = "forgotten.json";

/// `ccsync.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FormatMarker {
    pub format: String,
    pub version: u32,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// How the repository is encrypted (absent: it is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<super::keys::Encryption>,
    /// How log segments are stored (version 3: `"zstd"`; absent: as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<String>,
}

impl FormatMarker {
    /// The marker of a version-1 plain repository (segments stored as they are).
    pub fn new(machine: &str) -> Self {
        FormatMarker {
            format: "ccsync".to_string(),
            version: FORMAT_VERSION,
            created_by: machine.to_string(),
            created_at: Some(Utc::now()),
            encryption: None,
            segments: None,
        }
    }

    /// The marker of a version-3 plain repository (log segments zstd-compressed).
    pub fn packed(machine: &str) -> Self {
        FormatMarker {
            version: PACKED_VERSION,
            segments: Some(SEGMENTS_ZSTD.to_string()),
            ..FormatMarker::new(machine)
        }
    }

    /// Whether the repository's log segments are stored zstd-compressed (version 3).
    pub fn packs_segments(&self) -> bool {
        self.encryption.is_none() && self.segments.as_deref() == Some(SEGMENTS_ZSTD)
    }

    /// The marker of an encrypted repository (it names no machine).
    pub fn encrypted(enc: super::keys::Encryption) -> Self {
        FormatMarker {
            format: "ccsync".to_string(),
            version: ENCRYPTED_VERSION,
            created_by: String::new(),
            created_at: Some(Utc::now()),
            encryption: Some(enc),
            segments: None,
        }
    }

    /// Refuse a repository this build cannot read.
    pub fn check(&self) -> Result<()> {
        if self.format != "ccsync" {
            return Err(anyhow!(
                "{FORMAT_FILE} names format {:?}, not ccsync",
                self.format
            ));
        }
        if self.version > MAX_VERSION {
            return Err(anyhow!(
                "the sync repository uses format version {} and this ccsync reads up to {MAX_VERSION}: upgrade ccsync",
                self.version
            ));
        }
        if self.version == ENCRYPTED_VERSION && self.encryption.is_none() {
            return Err(anyhow!(
                "{FORMAT_FILE} says the sync repository is encrypted but not how: it is damaged"
            ));
        }
        if self.version == PACKED_VERSION {
            match self.segments.as_deref() {
                Some(SEGMENTS_ZSTD) => {}
                Some(other) => {
                    return Err(anyhow!(
                        "{FORMAT_FILE} says the log segments are stored as {other:?}, which this ccsync does not read: upgrade ccsync"
                    ));
                }
                None => {
                    return Err(anyhow!(
                        "{FORMAT_FILE} says format version {PACKED_VERSION} but not how segments are stored: it is damaged"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `shared_placeholders.json`: `{"placeholders": {NAME: {MACHINE: PATH}}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SharedPlaceholders {
    #[serde(default)]
    pub placeholders: BTreeMap<String, BTreeMap<String, String>>,
}

impl SharedPlaceholders {
    /// Set one machine's path for a placeholder; returns whether anything changed.
    pub fn set(&mut self, name: &str, machine: &str, path: &str) -> bool {
        let slot = self.placeholders.entry(name.to_string()).or_default();
        slot.insert(machine.to_string(), path.to_string())
            .as_deref()
            != Some(path)
    }

    /// The placeholders one machine has a path for.
    pub fn for_machine(&self, machine: &str) -> BTreeMap<String, String> {
        self.placeholders
            .iter()
            .filter_map(|(n, m)| m.get(machine).map(|p| (n.clone(), p.clone())))
            .collect()
    }

    /// Placeholder names some machine defines but `machine` does not.
    pub fn missing_for(&self, machine: &str) -> Vec<String> {
        self.placeholders
            .iter()
            .filter(|(_, m)| !m.contains_key(machine))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// `machines/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MachineRecord {
    pub machine_id: String,
    #[serde(default)]
    pub hostname: String,
    pub path_style: PathStyle,
    #[serde(default)]
    pub registered_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ccsync_version: String,
    /// The installation that registered this id (see `Config::install_id`).
    #[serde(default)]
    pub install_id: String,
}

pub fn machine_path(id: &str) -> String {
    format!("{MACHINES_DIR}/{id}.json")
}

/// Serialise a shared file: pretty, keys in a stable order, trailing newline.
pub fn to_json_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut b = serde_json::to_vec_pretty(v)?;
    b.push(b'\n');
    Ok(b)
}

/// Whether a machine id is acceptable: letters, digits, `.`, `_`, `-`; 1 to 64 characters;
/// not starting with `.` or `-`.
pub fn valid_machine_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Turn a host name into a valid machine id.
pub fn machine_id_from_hostname(host: &str) -> String {
    let s: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_start_matches(['.', '-'])
        .chars()
        .take(64)
        .collect();
    if s.is_empty() {
        "machine".to_string()
    } else {
        s
    }
}

/// Check a path read from the repository before it names anything on disk: relative,
/// `/`-separated, no empty, `.` or `..` components, no NUL, backslash, colon or control
/// characters, no Windows device names, no component ending in a dot or space.
pub fn check_rel_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.starts_with('/') || path.starts_with('\\') {
        return Err("absolute path".into());
    }
    for comp in path.split('/') {
        if comp.is_empty() || comp == "." || comp == ".." {
            return Err(format!("path component {comp:?} is not allowed"));
        }
        if comp.len() > 255 {
            return Err("path component longer than 255 bytes".into());
        }
        if comp
            .chars()
            .any(|c| c.is_control() || matches!(c, '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|'))
        {
            return Err(format!(
                "path component {comp:?} has a character that is not allowed"
            ));
        }
        if comp.ends_with('.') || comp.ends_with(' ') {
            return Err(format!("path component {comp:?} ends with a dot or space"));
        }
        let stem = comp.split('.').next().unwrap_or("").to_ascii_uppercase();
        let device = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
            || ((stem.starts_with("COM") || stem.starts_with("LPT"))
                && stem.len() == 4
                && stem.as_bytes()[3].is_ascii_digit());
        if device {
            return Err(format!("path component {comp:?} is a Windows device name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_path_checks() {
        for ok in [
            "a",
            "a/b.jsonl",
            "sessions/PROJECTS-my_app-1234/abc/transcript/000001.jsonl",
            "日本/x",
        ] {
            assert!(check_rel_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/./b",
            "a\\b",
            "C:/x",
            "a/\u{0}",
            "a/CON",
            "a/nul.txt",
            "a/com1",
            "x/lpt9.log",
            "a/b.",
            "a/b ",
            "a\nb",
        ] {
            assert!(check_rel_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_rel_path("a/console").is_ok());
    }

    #[test]
    fn markers_say_what_a_reader_can_read() {
        let enc: FormatMarker = serde_json::from_str(
            r#"{"format":"ccsync","version":2,"encryption":{"scheme":"s","repository":"r","generation":1,"recipient":"age1x"}}"#,
        )
        .unwrap();
        assert!(enc.check().is_ok());
        // What a reader of version 1 (ccsync 0.1) does with it: `version > 1` is refused.
        assert!(enc.version > FORMAT_VERSION);
        let damaged: FormatMarker =
            serde_json::from_str(r#"{"format":"ccsync","version":2}"#).unwrap();
        assert!(damaged.check().unwrap_err().to_string().contains("damaged"));
        let newer: FormatMarker =
            serde_json::from_str(r#"{"format":"ccsync","version":4}"#).unwrap();
        assert!(
            newer
                .check()
                .unwrap_err()
                .to_string()
                .contains("upgrade ccsync")
        );
        let plain = serde_json::to_value(FormatMarker::new("a")).unwrap();
        assert!(
            plain.get("encryption").is_none() && plain.get("segments").is_none(),
            "plain markers stay as 0.1 wrote them"
        );
    }

    #[test]
    fn version_3_markers_say_segments_are_zstd() {
        let m = FormatMarker::packed("a");
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["version"], 3);
        assert_eq!(v["segments"], "zstd");
        assert!(v.get("encryption").is_none());
        assert!(m.check().is_ok() && m.packs_segments());
        assert!(!FormatMarker::new("a").packs_segments());
        // What a reader of versions up to 2 does with it: `version > 2` is refused.
        assert!(m.version > ENCRYPTED_VERSION);
        let read: FormatMarker = serde_json::from_str(
            r#"{"format":"ccsync","version":3,"created_by":"a","segments":"zstd"}"#,
        )
        .unwrap();
        assert!(read.check().is_ok() && read.packs_segments());
        let damaged: FormatMarker =
            serde_json::from_str(r#"{"format":"ccsync","version":3}"#).unwrap();
        assert!(damaged.check().unwrap_err().to_string().contains("damaged"));
        let other: FormatMarker =
            serde_json::from_str(r#"{"format":"ccsync","version":3,"segments":"brotli"}"#).unwrap();
        assert!(
            other
                .check()
                .unwrap_err()
                .to_string()
                .contains("upgrade ccsync")
        );
    }

    #[test]
    fn machine_ids() {
        assert!(valid_machine_id("linux-a") && valid_machine_id("mac_b.local"));
        for bad in ["", "a b", "a/b", "-x", ".x", &"x".repeat(65)] {
            assert!(!valid_machine_id(bad), "{bad}");
        }
        assert_eq!(machine_id_from_hostname("My Laptop"), "My-Laptop");
        assert_eq!(machine_id_from_hostname("--"), "machine");
    }

    #[test]
    fn shared_placeholders_edit() {
        let mut s = SharedPlaceholders::default();
        assert!(s.set("HOME", "a", "/home/a"));
        assert!(!s.set("HOME", "a", "/home/a"));
        assert!(s.set("PROJECTS", "b", "/p"));
        assert_eq!(s.missing_for("a"), ["PROJECTS"]);
        assert_eq!(
            s.for_machine("a").get("HOME").map(String::as_str),
            Some("/home/a")
        );
        let json = String::from_utf8(to_json_bytes(&s).unwrap()).unwrap();
        assert!(json.contains("\"placeholders\""));
    }
}
