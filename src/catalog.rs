//! Local sessions with their transcript metadata.
//!
//! Discovery plus [`transcript::scan`] for each session, with a cache in the tool home keyed by
//! size and modification time, so that listing thousands of sessions reads only what changed,
//! and a transcript that grew is read from where the last scan stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::claude::ClaudeDir;
use crate::claude::discover::{self, Discovery, LocalSession};
use crate::claude::transcript::{self, TranscriptMeta};

/// A local session and what its transcript says.
#[derive(Debug, Clone)]
pub struct Entry {
    pub session: LocalSession,
    pub meta: TranscriptMeta,
}

/// All local sessions, with metadata.
#[derive(Debug, Default)]
pub struct Catalog {
    pub entries: Vec<Entry>,
    pub discovery: Discovery,
    /// Transcripts that could not be read (path, reason).
    pub unreadable: Vec<(PathBuf, String)>,
}

#[derive(Serialize, Deserialize, Default)]
struct CacheFile {
    version: u32,
    entries: HashMap<String, Cached>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Cached {
    size: u64,
    mtime_ns: i128,
    meta: TranscriptMeta,
}

const CACHE_VERSION: u32 = transcript::META_VERSION;

fn load_cache(path: &Path) -> CacheFile {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<CacheFile>(&b).ok())
        .filter(|c| c.version == CACHE_VERSION)
        .unwrap_or_default()
}

/// Discover local sessions and read their metadata. With `cache`, reuse and refresh the cache
/// file there (a cache that cannot be read or written is ignored).
pub fn load(claude: &ClaudeDir, cache: Option<&Path>) -> Result<Catalog> {
    let discovery = discover::discover(claude).with_context(|| {
        format!(
            "cannot list Claude Code sessions in {}",
            claude.projects().display()
        )
    })?;
    let old = cache.map(load_cache).unwrap_or_default();
    let key = |s: &LocalSession| {
        s.transcript
            .strip_prefix(&claude.root)
            .unwrap_or(&s.transcript)
            .to_string_lossy()
            .into_owned()
    };

    let results: Vec<(String, Result<Cached, String>, bool)> = discovery
        .sessions
        .par_iter()
        .map(|s| {
            let k = key(s);
            let prev = old.entries.get(&k);
            if let Some(p) = prev
                && p.size == s.size
                && p.mtime_ns == s.mtime_ns
            {
                return (k, Ok(p.clone()), false);
            }
            let scanned = transcript::scan(&s.transcript, prev.map(|p| &p.meta))
                .map(|mut meta| {
                    meta.redact_titles(redact_title);
                    Cached {
                        size: s.size,
                        mtime_ns: s.mtime_ns,
                        meta,
                    }
                })
                .map_err(|e| e.to_string());
            (k, scanned, true)
        })
        .collect();

    let mut changed = results.len() != old.entries.len();
    let mut new_cache = CacheFile {
        version: CACHE_VERSION,
        entries: HashMap::with_capacity(results.len()),
    };
    let mut catalog = Catalog::default();
    for (s, (k, r, fresh)) in discovery.sessions.iter().zip(results) {
        changed |= fresh;
        match r {
            Ok(c) => {
                catalog.entries.push(Entry {
                    session: s.clone(),
                    meta: c.meta.clone(),
                });
                new_cache.entries.insert(k, c);
            }
            Err(e) => catalog.unreadable.push((s.transcript.clone(), e)),
        }
    }
    catalog.discovery = discovery;
    if let Some(path) = cache
        && changed
        && let Ok(bytes) = serde_json::to_vec(&new_cache)
    {
        if let Some(dir) = path.parent() {
            let _ = crate::os::create_private_dir(dir);
        }
        if let Err(e) = crate::os::write_atomic(path, &bytes, true) {
            tracing::debug!("cannot write the metadata cache {}: {e}", path.display());
        }
    }
    Ok(catalog)
}

/// A title or prompt with its secrets replaced (`None`: it has none). Titles are cached in
/// the tool home, printed by `list` and sent in session metadata: none of them shows a secret,
/// whatever `secret_scan` says.
pub fn redact_title(text: &str) -> Option<String> {
    let sc = crate::secrets::Scanner::new();
    let fs = sc.scan_text(text.as_bytes());
    if fs.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(&sc.redact(text.as_bytes(), &fs)).into_owned())
}

/// The first `max` bytes of a file, cut at the last complete line.
pub fn read_head(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(max as u64)
        .read_to_end(&mut buf)?;
    if buf.len() == max
        && let Some(nl) = memchr::memrchr(b'\n', &buf)
    {
        buf.truncate(nl + 1);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_reused_and_refreshed() {
        let dir = tempfile::tempdir().unwrap();
        let claude = ClaudeDir::new(dir.path().join("c"));
        let proj = claude.projects().join("-p");
        std::fs::create_dir_all(&proj).unwrap();
        let t = proj.join("s1.jsonl");
        std::fs::write(&t, "{\"type\":\"user\",\"cwd\":\"/p\",\"message\":{\"content\":\"one\"},\"timestamp\":\"2026-01-01T00:00:00Z\"}\n").unwrap();
        let cache = dir.path().join("cache.json");
        let c1 = load(&claude, Some(&cache)).unwrap();
        assert_eq!(c1.entries[0].meta.title(), Some("one"));
        assert!(cache.exists());
        // Poison the cached title: an unchanged file keeps using the cache.
        let text = std::fs::read_to_string(&cache)
            .unwrap()
            .replace("\"one\"", "\"cached\"");
        std::fs::write(&cache, text).unwrap();
        assert_eq!(
            load(&claude, Some(&cache)).unwrap().entries[0].meta.title(),
            Some("cached")
        );
        // A changed file is scanned again.
        std::fs::write(&t, "{\"type\":\"user\",\"cwd\":\"/p\",\"message\":{\"content\":\"two!\"},\"timestamp\":\"2026-01-01T00:00:00Z\"}\n").unwrap();
        assert_eq!(
            load(&claude, Some(&cache)).unwrap().entries[0].meta.title(),
            Some("two!")
        );
    }
}
