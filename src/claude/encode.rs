//! Claude Code's project folder names: `projects/<ENC(cwd)>`.
//!
//! Every UTF-16 code unit outside `[A-Za-z0-9]` becomes `-` (so a character outside the BMP
//! becomes two dashes). A result longer than 200 units keeps its first 200 and gains `-` and a
//! hash. Builds of Claude Code differ in that hash (Node and Bun hash differently), so an existing
//! folder is found by its 200-character prefix, and the hash is only computed to name a new one.
//!
//! The encoding is lossy: never decode a folder name back into a path.

use std::path::{Path, PathBuf};

/// Folder names longer than this are truncated and suffixed with a hash.
pub const MAX_ENCODED_LEN: usize = 200;

/// The part of the folder name that depends only on the characters (no hash).
fn sanitize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for unit in path.encode_utf16() {
        let keep = unit < 0x80 && (unit as u8).is_ascii_alphanumeric();
        out.push(if keep { unit as u8 as char } else { '-' });
    }
    out
}

/// The hash Claude Code's Node build appends: 32-bit `h = h*31 + unit` over UTF-16 units,
/// absolute value in base 36.
fn js_hash_base36(path: &str) -> String {
    let mut h: i32 = 0;
    for unit in path.encode_utf16() {
        h = h.wrapping_shl(5).wrapping_sub(h).wrapping_add(unit as i32);
    }
    let mut n = (h as i64).unsigned_abs();
    if n == 0 {
        return "0".to_string();
    }
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while n > 0 {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The folder name Claude Code uses for a working directory.
pub fn encode_project_dir(cwd: &str) -> String {
    let s = sanitize(cwd);
    if s.len() <= MAX_ENCODED_LEN {
        return s;
    }
    format!("{}-{}", &s[..MAX_ENCODED_LEN], js_hash_base36(cwd))
}

/// Whether an existing folder name is the one Claude Code would use for `cwd`: equal for short
/// paths, the same 200-character prefix followed by `-<hash>` for long ones.
pub fn folder_matches(folder: &str, cwd: &str) -> bool {
    let s = sanitize(cwd);
    if s.len() <= MAX_ENCODED_LEN {
        return folder == s;
    }
    folder.len() > MAX_ENCODED_LEN + 1
        && folder.as_bytes()[MAX_ENCODED_LEN] == b'-'
        && folder[..MAX_ENCODED_LEN] == s[..MAX_ENCODED_LEN]
}

/// The folder under `projects_root` that holds sessions of `cwd`: an existing folder that
/// matches, else the name Claude Code would create.
pub fn project_dir_for(projects_root: &Path, cwd: &str) -> PathBuf {
    let name = encode_project_dir(cwd);
    if name.len() > MAX_ENCODED_LEN
        && let Ok(rd) = std::fs::read_dir(projects_root)
    {
        let prefix = &name[..=MAX_ENCODED_LEN];
        for entry in rd.flatten() {
            if let Some(n) = entry.file_name().to_str()
                && n.starts_with(prefix)
                && folder_matches(n, cwd)
            {
                return entry.path();
            }
        }
    }
    projects_root.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_table() {
        let cases: &[(&str, &str)] = &[
            ("/home/a/my_app", "-home-a-my-app"),
            ("/home/a/my-app", "-home-a-my-app"),
            ("/home/alice/projects/api.v2", "-home-alice-projects-api-v2"),
            ("/home/alice/my project", "-home-alice-my-project"),
            ("/home/alice/.claude", "-home-alice--claude"),
            ("C:\\Users\\a\\p", "C--Users-a-p"),
            ("c:\\projects\\app", "c--projects-app"),
            ("D:/work/x", "D--work-x"),
            // CJK: one UTF-16 unit each, one dash each.
            ("/home/a/文档", "-home-a---"),
            // Emoji outside the BMP: two UTF-16 units, two dashes.
            ("/home/a/😀", "-home-a---"),
            ("/home/a/x😀y", "-home-a-x--y"),
            ("/home/a/é", "-home-a--"),
            ("", ""),
        ];
        for (path, want) in cases {
            assert_eq!(encode_project_dir(path), *want, "ENC({path:?})");
        }
    }

    #[test]
    fn long_paths_are_truncated_with_a_hash() {
        let path = format!("/home/alice/{}", "segment/".repeat(30)); // 12 + 240 = 252 chars
        assert_eq!(path.len(), 252);
        let enc = encode_project_dir(&path);
        assert!(enc.len() > MAX_ENCODED_LEN + 1);
        assert_eq!(&enc[..MAX_ENCODED_LEN], &sanitize(&path)[..MAX_ENCODED_LEN]);
        assert_eq!(enc.as_bytes()[MAX_ENCODED_LEN], b'-');
        assert!(
            enc[MAX_ENCODED_LEN + 1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        );
        // A folder made by another build (other hash) is still recognised by its prefix.
        let other = format!("{}-zzzz9", &enc[..MAX_ENCODED_LEN]);
        assert!(folder_matches(&other, &path));
        assert!(folder_matches(&enc, &path));
        assert!(!folder_matches(&enc[..MAX_ENCODED_LEN], &path));
        // Exactly 200 characters: no hash.
        let p200 = format!("/{}", "a".repeat(199));
        assert_eq!(encode_project_dir(&p200).len(), 200);
    }

    #[test]
    fn js_hash_matches_node() {
        // Values computed with the JavaScript expression
        // Math.abs([...s].reduce((h,c)=>((h<<5)-h+c.charCodeAt(0))|0,0)).toString(36)
        assert_eq!(js_hash_base36(""), "0");
        assert_eq!(js_hash_base36("a"), "2p"); // 97
        assert_eq!(js_hash_base36("ab"), "2e9"); // 97*31+98 = 3105
        assert_eq!(js_hash_base36("/home/alice/x"), "b8nobc");
    }

    #[test]
    fn lookup_prefers_existing_long_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = format!("/home/alice/{}", "deep/".repeat(50));
        let enc = encode_project_dir(&path);
        let existing = format!("{}-bunhash", &enc[..MAX_ENCODED_LEN]);
        std::fs::create_dir(dir.path().join(&existing)).unwrap();
        assert_eq!(
            project_dir_for(dir.path(), &path),
            dir.path().join(existing)
        );
        assert_eq!(
            project_dir_for(dir.path(), "/home/alice/short"),
            dir.path().join("-home-alice-short")
        );
    }
}
