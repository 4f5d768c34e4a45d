//! The sessions the repository holds, from their `meta.json` only (never the transcripts), with
//! their lock holders. The list is cached in the tool home together with the head it describes:
//! for the same head no git command runs at all, and for a new head only the metadata entries
//! that changed are read.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::snapshot::Snapshot;
use crate::lock::Lock;
use crate::store::layout::SessionMeta;
use crate::store::{Oid, Store};

/// A session as the repository describes it.
#[derive(Debug, Clone)]
pub struct RemoteSession {
    pub meta: SessionMeta,
    pub lock: Option<Lock>,
}

#[derive(Serialize, Deserialize, Default)]
struct Cache {
    /// The head the cache describes completely (metadata and locks).
    #[serde(default)]
    head: Option<Oid>,
    metas: HashMap<String, (Oid, SessionMeta)>,
    #[serde(default)]
    locks: Vec<Lock>,
}

fn load_cache(path: Option<&Path>) -> Cache {
    let mut c: Cache = path
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    // Written by an older version: its titles may hold secrets.
    for (_, meta) in c.metas.values_mut() {
        if let Some(t) = meta.title.as_deref().and_then(crate::catalog::redact_title) {
            meta.title = Some(t);
        }
    }
    c
}

/// Every session of the repository at `head` that has a readable `meta.json`, newest first.
pub fn sessions_at(
    store: &Store,
    head: Option<&Oid>,
    cache_file: Option<&Path>,
) -> Result<Vec<RemoteSession>> {
    let old = load_cache(cache_file);
    if head.is_some() && old.head.as_ref() == head {
        let mut out: Vec<RemoteSession> = old
            .metas
            .into_values()
            .map(|(_, meta)| RemoteSession { meta, lock: None })
            .collect();
        attach_locks(&mut out, &old.locks);
        sort(&mut out);
        return Ok(out);
    }
    let snap = Snapshot::load(store, head)?;
    let mut cache = Cache {
        head: snap.head.clone(),
        ..Cache::default()
    };
    let mut reader = None;
    let mut out = Vec::with_capacity(snap.sessions.len());
    for (sid, rs) in &snap.sessions {
        let Some(m) = &rs.meta else { continue };
        let meta = match old.metas.get(sid) {
            Some((oid, meta)) if *oid == m.oid => meta.clone(),
            _ => {
                if reader.is_none() {
                    reader = Some(store.reader()?);
                }
                let Some(r) = reader.as_mut() else { continue };
                match serde_json::from_slice::<SessionMeta>(&r.read(&m.oid)?) {
                    Ok(mut meta) if meta.session_id == *sid => {
                        // A title pushed by an older version may hold a secret: never cached
                        // or shown here.
                        if let Some(t) =
                            meta.title.as_deref().and_then(crate::catalog::redact_title)
                        {
                            meta.title = Some(t);
                        }
                        meta
                    }
                    _ => continue,
                }
            }
        };
        cache
            .metas
            .insert(sid.clone(), (m.oid.clone(), meta.clone()));
        out.push(RemoteSession { meta, lock: None });
    }
    let locks = crate::lock::list(store, snap.head.as_ref())?;
    attach_locks(&mut out, &locks);
    cache.locks = locks;
    if let Some(p) = cache_file
        && let Ok(b) = serde_json::to_vec(&cache)
    {
        if let Some(d) = p.parent() {
            let _ = crate::os::create_private_dir(d);
        }
        let _ = crate::os::write_atomic(p, &b, true);
    }
    sort(&mut out);
    Ok(out)
}

fn attach_locks(out: &mut [RemoteSession], locks: &[Lock]) {
    let by_sid: HashMap<&str, &Lock> = locks
        .iter()
        .filter(|l| !l.expired())
        .map(|l| (l.session_id.as_str(), l))
        .collect();
    for s in out {
        s.lock = by_sid.get(s.meta.session_id.as_str()).map(|l| (*l).clone());
    }
}

fn sort(out: &mut [RemoteSession]) {
    out.sort_by(|a, b| {
        b.meta
            .last_activity
            .cmp(&a.meta.last_activity)
            .then_with(|| a.meta.session_id.cmp(&b.meta.session_id))
    });
}

/// Live locks as of the last listing (no git, no network): session id → holding machine.
pub fn cached_locks(cache_file: &Path) -> HashMap<String, String> {
    load_cache(Some(cache_file))
        .locks
        .into_iter()
        .filter(|l| !l.expired())
        .map(|l| (l.session_id, l.machine_id))
        .collect()
}
