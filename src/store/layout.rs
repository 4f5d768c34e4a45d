//! Where things live in the sync repository (see `docs/FORMAT.md`):
//!
//! ```text
//! projects/<slug>/project.json                      {"cwd": portable cwd}
//! projects/<slug>/memory/<rel>                      project memory (portable text)
//! projects/<slug>/sessions/<id>/meta.json           per-session metadata
//! projects/<slug>/sessions/<id>/transcript/NNNNNN.jsonl   the transcript, as segments
//! projects/<slug>/sessions/<id>/<rel>.jsonl/NNNNNN.jsonl  other logs (subagents, legacy agents)
//! projects/<slug>/sessions/<id>/<rel>               other files (subagent meta, tool-results)
//! projects/<slug>/sessions/<id>/file-history/<rel>  the session's `file-history/<id>/` files
//! global/CLAUDE.md, global/plans/<rel>              global instructions and plans
//! history/NNNNNN.jsonl                              prompt history entries of synced sessions
//! ```
//!
//! `<slug>` is derived from Claude Code's own folder name of the portable cwd, so two cwds that
//! Claude Code keeps in one folder (`my_app`, `my-app`) share one project folder here too.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::format::{GLOBAL_DIR, HISTORY_DIR, PROJECTS_DIR, check_rel_path};
use crate::claude::encode::encode_project_dir;

/// The folder of a transcript's segments inside a session folder.
pub const TRANSCRIPT_LOG: &str = "transcript";
/// Legacy `agent-*.jsonl` files that sat beside the sessions.
pub const LEGACY_DIR: &str = "legacy";
/// The session's `file-history/<id>/` snapshots (what `/rewind` restores).
pub const FILE_HISTORY_DIR: &str = "file-history";
pub const META_FILE: &str = "meta.json";
pub const PROJECT_FILE: &str = "project.json";

/// Largest segment written; a single line longer than this is split across segments.
pub const SEGMENT_MAX: usize = 16 << 20;

/// The project folder name for a portable cwd: a readable part and a short hash, both from
/// Claude Code's folder name of that cwd.
pub fn project_slug(portable_cwd: &str) -> String {
    let enc = encode_project_dir(portable_cwd);
    let mut readable = String::new();
    for c in enc.chars() {
        if c == '-' {
            if !readable.is_empty() && !readable.ends_with('-') {
                readable.push('-');
            }
        } else {
            readable.push(c);
        }
    }
    let readable: String = readable.trim_end_matches('-').chars().take(80).collect();
    let hash = Sha256::digest(enc.as_bytes());
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    if readable.is_empty() {
        hex
    } else {
        format!("{readable}-{hex}")
    }
}

pub fn project_dir(slug: &str) -> String {
    format!("{PROJECTS_DIR}/{slug}")
}

pub fn session_dir(slug: &str, id: &str) -> String {
    format!("{PROJECTS_DIR}/{slug}/sessions/{id}")
}

pub fn memory_dir(slug: &str) -> String {
    format!("{PROJECTS_DIR}/{slug}/memory")
}

pub fn claude_md_path() -> String {
    format!("{GLOBAL_DIR}/CLAUDE.md")
}

pub fn plans_dir() -> String {
    format!("{GLOBAL_DIR}/plans")
}

pub fn history_log() -> &'static str {
    HISTORY_DIR
}

/// Segment file name for sequence number `n`.
pub fn segment_name(n: u64) -> String {
    format!("{n:06}.jsonl")
}

/// The sequence number of a segment file name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".jsonl")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether a repository path names a segment of a log: a segment name (`NNNNNN.jsonl`) in a
/// log folder — `history/`, a session's `transcript/`, or a `*.jsonl` folder under a session's
/// `files/` or `legacy/`. In a version-3 repository these are the files stored compressed.
pub fn is_segment_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let Some((name, folders)) = parts.split_last() else {
        return false;
    };
    if parse_segment_name(name).is_none() {
        return false;
    }
    match folders {
        [HISTORY_DIR] => true,
        [PROJECTS_DIR, _, "sessions", _, TRANSCRIPT_LOG] => true,
        [
            PROJECTS_DIR,
            _,
            "sessions",
            _,
            "files" | LEGACY_DIR,
            ..,
            log,
        ] => log.ends_with(".jsonl"),
        _ => false,
    }
}

/// The suffix of the stored name of a compressed segment.
const PACKED_SUFFIX: &str = ".jsonl.zst";

/// The stored name of a compressed segment: `000001.jsonl` of `size` plaintext bytes is
/// `000001.<size>.jsonl.zst` (`None` for a name that is not a segment name).
pub fn packed_segment_name(name: &str, size: u64) -> Option<String> {
    parse_segment_name(name)?;
    let digits = name.strip_suffix(".jsonl")?;
    Some(format!("{digits}.{size}{PACKED_SUFFIX}"))
}

/// A stored compressed segment's name back: the segment name and its plaintext size. Only the
/// exact shape [`packed_segment_name`] writes opens (a size in decimal without leading zeros).
pub fn unpack_segment_name(stored: &str) -> Option<(String, u64)> {
    let stem = stored.strip_suffix(PACKED_SUFFIX)?;
    let (digits, size) = stem.split_once('.')?;
    if size.is_empty()
        || size.len() > 20
        || !size.bytes().all(|b| b.is_ascii_digit())
        || (size.len() > 1 && size.starts_with('0'))
    {
        return None;
    }
    let size: u64 = size.parse().ok()?;
    let name = format!("{digits}.jsonl");
    parse_segment_name(&name)?;
    Some((name, size))
}

/// The rule of [`valid_session_id`], for messages.
pub const SESSION_ID_RULE: &str = "letters, digits, - and _, at most 128 characters";

/// Whether a session id is acceptable as a file name everywhere. The one rule for both sides:
/// push does not send a session whose id fails it (and says so), pull refuses a stored one.
pub fn valid_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Check the path of a file of a session folder relative to the stored session folder
/// (`files/subagents/agent-1.jsonl`, `file-history/abc@v1`, `legacy/agent-x.jsonl`) before
/// push stores it, with the rules pull applies when it reads it back: [`check_rel_path`], and
/// for a plain file under `files/` or `legacy/`, no folder named like a log (`x.jsonl/`), which
/// would read back as a log's segments.
pub fn check_session_rel(rel: &str, is_log: bool) -> Result<(), String> {
    check_rel_path(rel)?;
    let parts: Vec<&str> = rel.split('/').collect();
    let in_logs_area = matches!(parts.first(), Some(&"files") | Some(&LEGACY_DIR));
    if !is_log
        && in_logs_area
        && parts[..parts.len() - 1]
            .iter()
            .skip(1)
            .any(|p| p.ends_with(".jsonl"))
    {
        return Err("a plain file inside a folder named like a log (*.jsonl)".into());
    }
    Ok(())
}

/// `meta.json` of a session.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SessionMeta {
    pub session_id: String,
    /// Portable working directory.
    pub cwd: String,
    #[serde(default)]
    pub title: Option<String>,
    /// Whether the title is a custom title (`/rename`), which wins over others.
    #[serde(default)]
    pub custom_title: bool,
    #[serde(default)]
    pub first_activity: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_activity: Option<DateTime<Utc>>,
    /// The machine that last added lines.
    #[serde(default)]
    pub last_machine: String,
    /// Bytes and lines of the stored (portable) transcript.
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub lines: u64,
    /// Subagent ids (`agent-<id>`).
    #[serde(default)]
    pub subagents: Vec<String>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// Why Claude Code's own resume picker does not list the session (`sidechain`, `-p`,
    /// `team`, `daemon`, `loop`); absent when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picker_hidden: Option<String>,
    /// The transcript is a subagent's (`isSidechain`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_sidechain: bool,
    /// How the session was started (`cli`; `sdk-cli`, `sdk-ts`, `sdk-py` for `claude -p`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// Portable form of the directory `/cd` last moved the session to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relocated_cwd: Option<String>,
}

/// `project.json` of a project folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProjectRecord {
    /// A portable cwd of the project.
    pub cwd: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_claude_folder_identity() {
        let a = project_slug("{{PROJECTS}}/my_app");
        assert_eq!(
            a,
            project_slug("{{PROJECTS}}/my-app"),
            "one Claude folder, one project"
        );
        assert!(a.starts_with("PROJECTS-my-app-"), "{a}");
        assert_ne!(a, project_slug("{{PROJECTS}}/other"));
        assert!(
            crate::store::format::check_rel_path(&project_dir(&project_slug("C:\\x\\日本")))
                .is_ok()
        );
        let long = project_slug(&format!("{{{{HOME}}}}/{}", "deep/".repeat(60)));
        assert!(long.len() <= 80 + 9);
    }

    #[test]
    fn session_meta_of_older_repositories_still_reads() {
        let old = r#"{"session_id":"s","cwd":"{{HOME}}/p","title":"t","custom_title":false}"#;
        let m: SessionMeta = serde_json::from_str(old).unwrap();
        assert_eq!(m.picker_hidden, None);
        assert!(!m.is_sidechain);
        assert_eq!((m.entrypoint, m.relocated_cwd), (None, None));
        let back = serde_json::to_value(SessionMeta::default()).unwrap();
        for absent in [
            "picker_hidden",
            "is_sidechain",
            "entrypoint",
            "relocated_cwd",
        ] {
            assert!(
                back.get(absent).is_none(),
                "{absent} is only written when set"
            );
        }
    }

    #[test]
    fn segment_names_and_ids() {
        assert_eq!(segment_name(1), "000001.jsonl");
        assert_eq!(parse_segment_name("000001.jsonl"), Some(1));
        assert_eq!(parse_segment_name("1234567.jsonl"), Some(1234567));
        for bad in ["1.jsonl", "00000a.jsonl", "000001.json", "../000001.jsonl"] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
        assert!(valid_session_id("b30a37a1-f12d-44db-8d99-50e415d59f66"));
        for bad in ["", "../x", "a.b", "a/b", "a b", "日本", &"x".repeat(129)] {
            assert!(!valid_session_id(bad), "{bad}");
        }
    }

    #[test]
    fn segment_paths_are_the_segments_of_log_folders() {
        for yes in [
            "history/000001.jsonl",
            "projects/p/sessions/s/transcript/000002.jsonl",
            "projects/p/sessions/s/files/subagents/agent-1.jsonl/000001.jsonl",
            "projects/p/sessions/s/legacy/agent-x.jsonl/1234567.jsonl",
        ] {
            assert!(is_segment_path(yes), "{yes}");
        }
        for no in [
            "history/x.jsonl",
            "history/a/000001.jsonl",
            "000001.jsonl",
            "projects/p/sessions/s/meta.json",
            "projects/p/sessions/s/000001.jsonl",
            "projects/p/memory/000001.jsonl",
            "projects/p/sessions/s/files/tool-results/000001.jsonl",
            "projects/p/sessions/s/file-history/x.jsonl/000001.jsonl",
            "global/plans/000001.jsonl",
        ] {
            assert!(!is_segment_path(no), "{no}");
        }
    }

    #[test]
    fn malformed_packed_names_do_not_open() {
        for bad in [
            "000001.jsonl",
            "000001.jsonl.zst",
            "000001..jsonl.zst",
            "000001.012.jsonl.zst",
            "000001.-1.jsonl.zst",
            "000001.1x.jsonl.zst",
            "000001.99999999999999999999.jsonl.zst",
            "000001.123456789012345678901.jsonl.zst",
            "1.5.jsonl.zst",
            "00000a.5.jsonl.zst",
            "000001.5.jsonl.zst/x",
            "../000001.5.jsonl.zst",
            "000001.5.json.zst",
            "000001.5.jsonl.zstd",
        ] {
            assert_eq!(unpack_segment_name(bad), None, "{bad}");
        }
        assert_eq!(
            unpack_segment_name("000001.0.jsonl.zst"),
            Some(("000001.jsonl".into(), 0))
        );
        assert_eq!(packed_segment_name("notes.md", 3), None);
    }

    proptest::proptest! {
        #[test]
        fn packed_names_round_trip(n in 0u64..100_000_000, size in proptest::num::u64::ANY) {
            let name = segment_name(n);
            let stored = packed_segment_name(&name, size).unwrap();
            proptest::prop_assert!(check_rel_path(&stored).is_ok());
            proptest::prop_assert_eq!(unpack_segment_name(&stored), Some((name, size)));
        }

        #[test]
        fn any_name_unpacks_to_nothing_or_a_segment(name in "[0-9a-z.]{0,40}") {
            if let Some((seg, size)) = unpack_segment_name(&name) {
                proptest::prop_assert!(parse_segment_name(&seg).is_some());
                proptest::prop_assert_eq!(packed_segment_name(&seg, size), Some(name));
            }
        }
    }

    #[test]
    fn session_file_paths_are_checked_as_pull_reads_them() {
        for ok in [
            ("files/subagents/agent-1.jsonl", true),
            ("files/tool-results/t1.txt", false),
            ("file-history/abc@v1", false),
            ("file-history/x.jsonl/y", false),
            ("files/a.jsonl/b.jsonl", true),
            ("legacy/agent-x.jsonl", true),
        ] {
            assert_eq!(check_session_rel(ok.0, ok.1), Ok(()), "{ok:?}");
        }
        for bad in [
            ("files/tool-results/a:b.txt", false),
            ("files/tool-results/a\\b.txt", false),
            ("files/tool-results/CON", false),
            ("files/tool-results/x.", false),
            ("files/tool-results/tab\tx", false),
            ("files/d.jsonl/notes.txt", false),
        ] {
            assert!(check_session_rel(bad.0, bad.1).is_err(), "{bad:?}");
        }
    }
}
