//! Claude Code's project folder names: `projects/<ENC(path)>` — the pure string encoding.
//!
//! New code should not call this module for placement: [`super::naming`] applies the encoding to
//! the path *as the client sees it* (the realpath of the working directory) and is the one home
//! of the naming rules. This module only knows strings.
//!
//! The rule, as the client 2.1.197 computes it (bundled JS, verbatim):
//!
//! ```js
//! function jCe(e){let t=0;for(let n=0;n<e.length;n++)t=(t<<5)-t+e.charCodeAt(n)|0;return t}
//! function fNu(e){return Math.abs(jCe(e)).toString(36)}
//! function $E(e){let t=e.replace(/[^a-zA-Z0-9]/g,"-");if(t.length<=rtt)return t;
//!   return`${t.slice(0,rtt)}-${fNu(e)}`}                                    // rtt=200
//! ```
//!
//! Every UTF-16 code unit outside `[A-Za-z0-9]` becomes `-` (a character outside the BMP is two
//! units, so two dashes). When that is longer than 200 units, the folder is its first 200 units,
//! `-`, and the base-36 absolute value of a 32-bit Java-style hash of the **whole original path**
//! (not of the dashed form). `Math.abs` works on a double, so `Math.abs(-2147483648)` is
//! `2147483648` (`"zik0zk"`): the absolute value is taken in 64 bits here too.
//!
//! The client's `--resume` lookup also accepts any folder with the same 200-unit prefix followed
//! by `-` (older builds hashed differently); [`folder_matches`] mirrors that lookup.
//!
//! The encoding is lossy: never decode a folder name back into a path.

use std::path::{Path, PathBuf};

/// Folder names longer than this (in UTF-16 units, equal to bytes since the output is ASCII) are
/// truncated and suffixed with a hash.
pub const MAX_ENCODED_LEN: usize = 200;

/// The part of the folder name that depends only on the characters (no hash). The output is
/// ASCII, one byte per UTF-16 unit of the input.
fn sanitize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for unit in path.encode_utf16() {
        let keep = unit < 0x80 && (unit as u8).is_ascii_alphanumeric();
        out.push(if keep { unit as u8 as char } else { '-' });
    }
    out
}

/// The client's 32-bit string hash (`jCe`): `h = (h << 5) - h + unit`, wrapping to `i32`, over
/// the UTF-16 units of `s`.
pub fn java_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h
            .wrapping_shl(5)
            .wrapping_sub(h)
            .wrapping_add(i32::from(unit));
    }
    h
}

/// `Math.abs(jCe(s)).toString(36)`: the suffix of a long folder name.
pub fn hash_suffix(s: &str) -> String {
    // `unsigned_abs` of the widened value: `i32::MIN` gives 2147483648, as JS does.
    let mut n = i64::from(java_hash(s)).unsigned_abs();
    if n == 0 {
        return "0".to_string();
    }
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while n > 0 {
        out.push(char::from(DIGITS[(n % 36) as usize]));
        n /= 36;
    }
    out.iter().rev().collect()
}

/// The folder name Claude Code uses for a path string (pure: no file-system access; the path is
/// encoded exactly as given). For the folder of a working directory on this machine use
/// [`super::naming::project_folder_name`], which resolves symbolic links first.
pub fn encode_project_dir(cwd: &str) -> String {
    let s = sanitize(cwd);
    if s.len() <= MAX_ENCODED_LEN {
        return s;
    }
    // `s` is ASCII, so byte 200 is a char boundary.
    format!("{}-{}", &s[..MAX_ENCODED_LEN], hash_suffix(cwd))
}

/// Whether an existing folder name is one the client's `--resume` lookup accepts for `cwd`:
/// equal for short paths, the same 200-unit prefix followed by `-` and more for long ones.
/// (The path string is encoded as given; see [`super::naming`] for resolving it.)
pub fn folder_matches(folder: &str, cwd: &str) -> bool {
    let s = sanitize(cwd);
    if s.len() <= MAX_ENCODED_LEN {
        return folder == s;
    }
    folder.len() > MAX_ENCODED_LEN + 1
        && folder.as_bytes()[MAX_ENCODED_LEN] == b'-'
        && folder.as_bytes()[..MAX_ENCODED_LEN] == s.as_bytes()[..MAX_ENCODED_LEN]
}

/// The folder under `projects_root` that holds sessions of `cwd`: an existing folder that
/// matches, else the name Claude Code would create.
///
/// Kept for existing callers. It encodes `cwd` as given (no realpath); new code places files
/// with [`super::naming::project_folder`] (the exact folder the client writes to) and looks up
/// with [`folder_matches`].
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

    /// A path whose hash is `i32::MIN`: found by solving for its last 7 units
    /// (`(h << 5) - h + unit` is `h * 31 + unit` mod 2^32).
    fn int32_min_path() -> String {
        format!("/home/alice/{}%:31::#", "deep/".repeat(50))
    }

    #[test]
    fn short_paths_table() {
        // Expected values produced by running the client's own functions (`$E`, `jCe`, copied
        // verbatim from the 2.1.197 bundle) under Node.
        let cases: &[(&str, &str)] = &[
            ("/home/a/my_app", "-home-a-my-app"),
            ("/home/a/my-app", "-home-a-my-app"),
            ("/home/alice/projects/api.v2", "-home-alice-projects-api-v2"),
            ("/home/alice/my project", "-home-alice-my-project"),
            ("/home/alice/.claude", "-home-alice--claude"),
            // Windows drives, either separator, either case.
            ("C:\\Users\\a\\p", "C--Users-a-p"),
            ("c:\\projects\\app", "c--projects-app"),
            ("D:/work/x", "D--work-x"),
            // UNC paths.
            ("\\\\server\\share\\x", "--server-share-x"),
            ("//server/share/x", "--server-share-x"),
            // CJK: one UTF-16 unit each, one dash each.
            ("/home/a/文档", "-home-a---"),
            // Emoji outside the BMP: two UTF-16 units, two dashes.
            ("/home/a/😀", "-home-a---"),
            ("/home/a/x😀y", "-home-a-x--y"),
            // Precomposed é is one unit; a decomposed e + U+0301 is two.
            ("/home/a/é", "-home-a--"),
            ("/home/a/e\u{301}", "-home-a-e-"),
            ("", ""),
        ];
        for (path, want) in cases {
            assert_eq!(encode_project_dir(path), *want, "ENC({path:?})");
        }
    }

    #[test]
    fn long_paths_table() {
        // (path, UTF-16 length, expected folder name); hashes from the client's code under Node.
        let a199 = format!("/{}", "a".repeat(198));
        let a200 = format!("/{}", "a".repeat(199));
        let a201 = format!("/{}", "a".repeat(200));
        let x400 = format!("/home/alice/{}", "x".repeat(388));
        let cjk = format!("/home/文档/{}", "项目".repeat(100));
        // The surrogate pair straddles the cut: unit 200 is its high half.
        let emoji_cut = format!("/{}😀b", "a".repeat(198));
        let win = format!("C:\\Users\\alice\\{}", "dir\\".repeat(50));
        let unc = format!("\\\\server\\share\\{}", "x".repeat(200));
        let cases: Vec<(String, usize, String)> = vec![
            (a199.clone(), 199, a199.replace('/', "-")),
            (a200.clone(), 200, a200.replace('/', "-")),
            (a201, 201, format!("-{}-b6ymvl", "a".repeat(199))),
            (
                x400,
                400,
                format!("-home-alice-{}-7yc1io", "x".repeat(200 - 12)),
            ),
            (cjk, 209, format!("-home----{}-v8qena", "-".repeat(200 - 9))),
            (emoji_cut, 202, format!("-{}--92ehtc", "a".repeat(198))),
            (
                win,
                215,
                format!("C--Users-alice-{}-9hrfmr", &"dir-".repeat(50)[..200 - 15]),
            ),
            (
                unc,
                215,
                format!("--server-share-{}-1nstxy", "x".repeat(200 - 15)),
            ),
        ];
        for (path, units, want) in cases {
            assert_eq!(path.encode_utf16().count(), units, "{path}");
            assert_eq!(encode_project_dir(&path), want, "ENC({path:?})");
        }
    }

    #[test]
    fn hash_of_int32_min_is_taken_in_64_bits() {
        let p = int32_min_path();
        assert_eq!(java_hash(&p), i32::MIN);
        // Math.abs(-2147483648).toString(36) in JS.
        assert_eq!(hash_suffix(&p), "zik0zk");
        let enc = encode_project_dir(&p);
        assert_eq!(enc.len(), 207);
        assert!(enc.ends_with("-zik0zk"), "{enc}");
        assert!(enc.starts_with("-home-alice-deep-deep-"));
    }

    #[test]
    fn long_paths_sharing_a_prefix_get_different_folders() {
        let one = format!("/{}/one", "a".repeat(250));
        let two = format!("/{}/two", "a".repeat(250));
        let (e1, e2) = (encode_project_dir(&one), encode_project_dir(&two));
        assert_eq!(e1, format!("-{}-lv0zve", "a".repeat(199)));
        assert_eq!(e2, format!("-{}-lv0vxw", "a".repeat(199)));
        assert_ne!(e1, e2);
        // The client's lookup accepts both for either path (same 200-unit prefix).
        assert!(folder_matches(&e2, &one) && folder_matches(&e1, &two));
    }

    #[test]
    fn js_hash_matches_node() {
        // Values computed with the client's `jCe` under Node.
        assert_eq!(java_hash(""), 0);
        assert_eq!(hash_suffix(""), "0");
        assert_eq!(hash_suffix("a"), "2p"); // 97
        assert_eq!(hash_suffix("ab"), "2e9"); // 97*31+98 = 3105
        assert_eq!(java_hash("/home/alice/x"), -679_669_464);
        assert_eq!(hash_suffix("/home/alice/x"), "b8nobc");
        assert_eq!(java_hash("/home/a/文档"), 1_427_886_091);
        assert_eq!(java_hash("/home/a/😀"), 1_428_826_546);
        assert_eq!(java_hash("\\\\server\\share\\x"), 820_979_618);
    }

    #[test]
    fn folder_matching() {
        let path = format!("/home/alice/{}", "segment/".repeat(30));
        let enc = encode_project_dir(&path);
        // A folder made by another build (other hash) is still recognised by its prefix.
        let other = format!("{}-zzzz9", &enc[..MAX_ENCODED_LEN]);
        assert!(folder_matches(&other, &path));
        assert!(folder_matches(&enc, &path));
        assert!(!folder_matches(&enc[..MAX_ENCODED_LEN], &path));
        assert!(!folder_matches(
            &format!("{}x", &enc[..MAX_ENCODED_LEN]),
            &path
        ));
        // A non-ASCII folder name whose byte 200 falls inside a character must not panic.
        let odd = format!("{}é{}", "-".repeat(199), "x".repeat(10));
        assert!(!folder_matches(&odd, &path));
        assert!(folder_matches("-home-a-p", "/home/a/p"));
        assert!(!folder_matches("-home-a-p-abc", "/home/a/p"));
    }

    proptest::proptest! {
        #[test]
        fn output_shape(path in "\\PC{0,260}") {
            let enc = encode_project_dir(&path);
            let units = path.encode_utf16().count();
            proptest::prop_assert!(enc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            if units <= MAX_ENCODED_LEN {
                proptest::prop_assert_eq!(enc.len(), units);
            } else {
                proptest::prop_assert_eq!(&enc[..MAX_ENCODED_LEN], &sanitize(&path)[..MAX_ENCODED_LEN]);
                proptest::prop_assert_eq!(&enc[MAX_ENCODED_LEN + 1..], hash_suffix(&path));
                proptest::prop_assert!(folder_matches(&enc, &path));
            }
        }
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
