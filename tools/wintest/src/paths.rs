//! Paths as a Windows program under Wine spells them (`Z:\tmp\x`, `C:\users\me`, `\\?\Z:\…`)
//! and as the host spells them (`/tmp/x`, `<prefix>/drive_c/users/me`), through the drive
//! letters of a Wine prefix (`<prefix>/dosdevices/<letter>:` are links to host folders).

use std::path::{Path, PathBuf};

/// The drive letters of a Wine prefix and the host folders they stand for.
#[derive(Debug, Clone)]
pub struct Drives {
    /// (lower-case letter, host folder), the longest folder first.
    map: Vec<(char, String)>,
}

impl Drives {
    /// The drives of a prefix; `Z:` is the host's root where the prefix does not say.
    pub fn of_prefix(prefix: Option<&Path>) -> Drives {
        let mut map = Vec::new();
        if let Some(dir) = prefix.map(|p| p.join("dosdevices"))
            && let Ok(entries) = std::fs::read_dir(&dir)
        {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_ascii_lowercase();
                let mut chars = name.chars();
                let (Some(letter), Some(':'), None) = (chars.next(), chars.next(), chars.next())
                else {
                    continue;
                };
                if !letter.is_ascii_lowercase() {
                    continue;
                }
                if let Ok(target) = std::fs::canonicalize(e.path())
                    && target.is_dir()
                {
                    map.push((letter, target.to_string_lossy().into_owned()));
                }
            }
        }
        if !map.iter().any(|(l, _)| *l == 'z') {
            map.push(('z', "/".to_string()));
        }
        Drives::new(map)
    }

    /// Drives from explicit (letter, host folder) pairs.
    pub fn new(pairs: Vec<(char, String)>) -> Drives {
        let mut map: Vec<(char, String)> = pairs
            .into_iter()
            .map(|(l, p)| {
                let p = if p.len() > 1 {
                    p.trim_end_matches('/').to_string()
                } else {
                    p
                };
                (l.to_ascii_lowercase(), p)
            })
            .collect();
        map.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        Drives { map }
    }

    /// The host path of a Windows absolute path (`Z:\a\b`, `z:/a/b`, `\\?\Z:\a`), or of `NUL`;
    /// `None` for anything else.
    pub fn to_host(&self, win: &str) -> Option<String> {
        if win.eq_ignore_ascii_case("nul") {
            return Some("/dev/null".to_string());
        }
        let s = win.strip_prefix(r"\\?\").unwrap_or(win);
        let b = s.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_alphabetic() || b[1] != b':' {
            return None;
        }
        if b.len() > 2 && b[2] != b'\\' && b[2] != b'/' {
            return None;
        }
        let letter = (b[0] as char).to_ascii_lowercase();
        let root = &self.map.iter().find(|(l, _)| *l == letter)?.1;
        let mut out = root.clone();
        for part in s[2..].split(['\\', '/']).filter(|p| !p.is_empty()) {
            if !out.ends_with('/') {
                out.push('/');
            }
            out.push_str(part);
        }
        Some(out)
    }

    /// The Windows spelling of a host absolute path, through the drive whose folder holds it
    /// (the deepest one); `None` for a relative path.
    pub fn to_windows(&self, host: &str) -> Option<String> {
        if !host.starts_with('/') {
            return None;
        }
        for (letter, root) in &self.map {
            let rest = if root == "/" {
                Some(&host[1..])
            } else {
                host.strip_prefix(root.as_str())
                    .filter(|r| r.is_empty() || r.starts_with('/'))
                    .map(|r| r.trim_start_matches('/'))
            };
            if let Some(rest) = rest {
                let mut out = format!("{}:\\", letter.to_ascii_uppercase());
                out.push_str(
                    &rest
                        .split('/')
                        .filter(|p| !p.is_empty())
                        .collect::<Vec<_>>()
                        .join("\\"),
                );
                return Some(out);
            }
        }
        None
    }

    /// An argument as the host's git needs it: a Windows path, a `NAME=path` option or a
    /// `file:///X:/…` URL with its path translated; anything else unchanged. Also returns the
    /// (host, Windows) pair when something was translated.
    pub fn arg_to_host(&self, arg: &str) -> (String, Option<(String, String)>) {
        if let Some(h) = self.to_host(arg) {
            return (h.clone(), Some((h, arg.to_string())));
        }
        if let Some(rest) = arg.strip_prefix("file:///")
            && let Some(h) = self.to_host(rest)
        {
            return (format!("file://{h}"), Some((h, rest.to_string())));
        }
        if let Some((k, v)) = arg.split_once('=')
            && let Some(h) = self.to_host(v)
        {
            return (format!("{k}={h}"), Some((h, v.to_string())));
        }
        (arg.to_string(), None)
    }

    /// Text git printed whose values are paths (`config`, `remote`, `rev-parse`): each record
    /// (a line, or a `-z` field) that is a host absolute path, or `key=path`, or a `-z`
    /// `key\npath`, gets the Windows spelling.
    pub fn values_to_windows(&self, text: &[u8]) -> Vec<u8> {
        let Ok(text) = std::str::from_utf8(text) else {
            return text.to_vec();
        };
        let mut out = String::with_capacity(text.len());
        for piece in text.split_inclusive(['\n', '\0']) {
            let (body, sep) = match piece.char_indices().last() {
                Some((i, c)) if c == '\n' || c == '\0' => (&piece[..i], &piece[i..]),
                _ => (piece, ""),
            };
            let translated = self.to_windows(body).or_else(|| {
                let (k, v) = body.split_once('=')?;
                Some(format!("{k}={}", self.to_windows(v)?))
            });
            out.push_str(translated.as_deref().unwrap_or(body));
            out.push_str(sep);
        }
        out.into_bytes()
    }
}

/// Replace every occurrence of each host path with its Windows spelling (longest first), in
/// messages git printed.
pub fn replace_learned(text: &[u8], learned: &[(String, String)]) -> Vec<u8> {
    let mut pairs: Vec<&(String, String)> = learned.iter().filter(|(h, _)| h.len() > 1).collect();
    pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    'outer: while i < text.len() {
        for (host, win) in &pairs {
            if text[i..].starts_with(host.as_bytes()) {
                out.extend_from_slice(win.as_bytes());
                i += host.len();
                continue 'outer;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// The host folder of a Wine prefix: `$WINEPREFIX`, else `~/.wine`.
pub fn wine_prefix() -> Option<PathBuf> {
    std::env::var_os("WINEPREFIX")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".wine")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drives() -> Drives {
        Drives::new(vec![('z', "/".into()), ('c', "/p/drive_c/".into())])
    }

    #[test]
    fn windows_paths_become_host_paths() {
        let d = drives();
        assert_eq!(
            d.to_host(r"Z:\tmp\a b\c.git").as_deref(),
            Some("/tmp/a b/c.git")
        );
        assert_eq!(d.to_host("z:/tmp//x/").as_deref(), Some("/tmp/x"));
        assert_eq!(d.to_host(r"\\?\Z:\tmp\x").as_deref(), Some("/tmp/x"));
        assert_eq!(
            d.to_host(r"C:\users\me").as_deref(),
            Some("/p/drive_c/users/me")
        );
        assert_eq!(d.to_host("C:").as_deref(), Some("/p/drive_c"));
        assert_eq!(d.to_host("NUL").as_deref(), Some("/dev/null"));
        assert_eq!(d.to_host(r"Q:\x"), None, "no such drive");
        assert_eq!(d.to_host("main:path"), None);
        assert_eq!(d.to_host("C:x"), None, "drive-relative");
        assert_eq!(d.to_host("refs/heads/main"), None);
    }

    #[test]
    fn host_paths_get_the_deepest_drive() {
        let d = drives();
        assert_eq!(d.to_windows("/tmp/x").as_deref(), Some(r"Z:\tmp\x"));
        assert_eq!(
            d.to_windows("/p/drive_c/users").as_deref(),
            Some(r"C:\users")
        );
        assert_eq!(
            d.to_windows("/p/drive_cc").as_deref(),
            Some(r"Z:\p\drive_cc")
        );
        assert_eq!(d.to_windows("/").as_deref(), Some(r"Z:\"));
        assert_eq!(d.to_windows("rel/x"), None);
    }

    #[test]
    fn arguments_options_and_urls_are_translated() {
        let d = drives();
        assert_eq!(d.arg_to_host(r"--git-dir=Z:\r.git").0, "--git-dir=/r.git");
        assert_eq!(d.arg_to_host("file:///Z:/r.git").0, "file:///r.git");
        assert_eq!(d.arg_to_host("core.longpaths").0, "core.longpaths");
        let (a, learned) = d.arg_to_host(r"Z:\tmp\remote.git");
        assert_eq!(a, "/tmp/remote.git");
        assert_eq!(
            learned,
            Some(("/tmp/remote.git".into(), r"Z:\tmp\remote.git".into()))
        );
        assert_eq!(d.arg_to_host("HEAD:x=y").0, "HEAD:x=y");
    }

    #[test]
    fn printed_values_and_messages_are_translated_back() {
        let d = drives();
        assert_eq!(
            d.values_to_windows(b"remote.origin.url\n/tmp/r.git\0core.bare\ntrue\0"),
            b"remote.origin.url\nZ:\\tmp\\r.git\0core.bare\ntrue\0"
        );
        assert_eq!(
            d.values_to_windows(b"remote.origin.url=/tmp/r.git\nx=1\n"),
            b"remote.origin.url=Z:\\tmp\\r.git\nx=1\n"
        );
        assert_eq!(d.values_to_windows(&[0xff, b'/']), [0xff, b'/']);
        let learned = vec![
            ("/tmp".to_string(), r"Z:\tmp".to_string()),
            ("/tmp/r.git".to_string(), r"Z:\tmp\r.git".to_string()),
        ];
        assert_eq!(
            replace_learned(b"fatal: '/tmp/r.git' is not", &learned),
            br"fatal: 'Z:\tmp\r.git' is not"
        );
    }
}
