//! Which absolute paths in transcripts no placeholder covers (for `doctor`). Pure: fed bytes,
//! it counts the uncovered path prefixes.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::bytes::Regex;

use super::{Mapper, PathStyle};

static POSIX_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:^|[\s"'=(\[,])(/(?:[A-Za-z0-9._@+~-]+/)+[A-Za-z0-9._@+~-]*)"#)
        .expect("constant regex")
});
static WINDOWS_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:^|[\s"'=(\[,])([A-Za-z]:(?:\\\\|/)(?:[A-Za-z0-9._@+~-]+(?:\\\\|/))+[A-Za-z0-9._@+~-]*)"#)
        .expect("constant regex")
});

const SYSTEM_POSIX: &[&str] = &[
    "usr",
    "bin",
    "sbin",
    "etc",
    "proc",
    "sys",
    "dev",
    "lib",
    "lib64",
    "tmp",
    "var",
    "private",
    "System",
    "Library",
    "Applications",
    "nix",
    "snap",
    "opt/homebrew",
    "run",
    "boot",
    "Volumes",
];

/// Counts of uncovered path prefixes.
#[derive(Debug, Default)]
pub struct Coverage {
    counts: HashMap<String, u64>,
}

impl Coverage {
    /// Look at raw JSONL bytes written on this machine.
    pub fn feed(&mut self, mapper: &Mapper, data: &[u8]) {
        let re = match mapper.style() {
            PathStyle::Posix => &*POSIX_PATH,
            PathStyle::Windows => &*WINDOWS_PATH,
        };
        for cap in re.captures_iter(data) {
            let Some(m) = cap.get(1) else { continue };
            let raw = String::from_utf8_lossy(m.as_bytes()).replace("\\\\", "\\");
            if mapper.portable_path(&raw).starts_with("{{") {
                continue;
            }
            if let Some(prefix) = prefix_of(mapper.style(), &raw) {
                *self.counts.entry(prefix).or_default() += 1;
            }
        }
    }

    /// The `n` most frequent uncovered prefixes with their counts.
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.counts.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

/// The first components that name a project root: three under /home and /Users, two elsewhere.
fn prefix_of(style: PathStyle, path: &str) -> Option<String> {
    match style {
        PathStyle::Posix => {
            let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
            let rest = comps.join("/");
            if SYSTEM_POSIX
                .iter()
                .any(|s| rest == *s || rest.starts_with(&format!("{s}/")))
            {
                return None;
            }
            let depth = if matches!(comps.first(), Some(&"home") | Some(&"Users")) {
                3
            } else {
                2
            };
            (comps.len() > depth).then(|| format!("/{}", comps[..depth].join("/")))
        }
        PathStyle::Windows => {
            let norm = path.replace('/', "\\");
            let comps: Vec<&str> = norm.split('\\').filter(|c| !c.is_empty()).collect();
            let second = comps
                .get(1)
                .map(|c| c.to_ascii_lowercase())
                .unwrap_or_default();
            if [
                "windows",
                "program files",
                "program files (x86)",
                "programdata",
            ]
            .contains(&second.as_str())
            {
                return None;
            }
            let depth = if second == "users" { 4 } else { 3 };
            (comps.len() > depth).then(|| comps[..depth].join("\\"))
        }
    }
}

/// A placeholder name suggested for a prefix: its last component in capitals.
pub fn suggest_name(prefix: &str) -> String {
    let last = prefix
        .rsplit(['/', '\\'])
        .find(|c| !c.is_empty())
        .unwrap_or("DIR");
    let mut s: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_uppercase()) {
        s.insert(0, 'P');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_uncovered_prefixes() {
        let m = Mapper::new(
            PathStyle::Posix,
            [("HOME", "/home/alice"), ("WORK", "/srv/work")],
        )
        .unwrap();
        let mut c = Coverage::default();
        let text = br#"{"cwd":"/opt/acme/app","x":"cd /opt/acme/app/src && ls /usr/bin/x /home/alice/p/q /srv/work/a/b","y":"/mnt/data/set/1"}"#;
        c.feed(&m, text);
        let top = c.top(5);
        assert_eq!(top[0], ("/opt/acme".to_string(), 2));
        assert!(top.iter().any(|(p, _)| p == "/mnt/data"));
        assert!(!top.iter().any(|(p, _)| p.starts_with("/usr")
            || p.starts_with("/home")
            || p.starts_with("/srv")));
        assert_eq!(suggest_name("/opt/acme"), "ACME");
        assert_eq!(suggest_name("/mnt/1data"), "P1DATA");
    }

    #[test]
    fn windows_paths_in_json() {
        let m = Mapper::new(PathStyle::Windows, [("HOME", "C:\\Users\\bob")]).unwrap();
        let mut c = Coverage::default();
        c.feed(&m, br#"{"a":"D:\\work\\proj\\src\\x.rs","b":"C:\\Users\\bob\\x\\y","c":"C:\\Windows\\System32\\a"}"#);
        assert_eq!(c.top(5), vec![("D:\\work\\proj".to_string(), 1)]);
    }
}
