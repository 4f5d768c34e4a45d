//! The sessions the repository holds, from their `meta.json` only (never the transcripts), with
//! their lock holders. Metadata is cached by object id in the tool home, so listing thousands of
//! sessions reads only the entries that changed.

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
    pub slug: String,
    pub lock: Option<Lock>,
}

#[derive(Serialize, Deserialize, Default)]
struct Cache {
    metas: HashMap<String, (Oid, SessionMeta)>,
}

/// Every session of the snapshot that has a readable `meta.json`.
pub fn sessions(
    store: &Store,
    snap: &Snapshot,
    cache_file: Option<&Path>,
) -> Result<Vec<RemoteSession>> {
    let old: Cache = cache_file
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut cache = Cache::default();
    let mut reader = None;
    let mut out = Vec::with_capacity(snap.sessions.len());
    for (sid, rs) in &snap.sessions {
        let Some(m) = &rs.meta else { continue };
        let meta = match old.metas.get(sid) {
            Some((oid, meta)) if *oid == m.oid => meta.clone(),
            _ => {
                if reader.is_none() {
                    reader = Some(store.git.reader()?);
                }
                let Some(r) = reader.as_mut() else { continue };
                match serde_json::from_slice::<SessionMeta>(&r.read(&m.oid)?) {
                    Ok(meta) if meta.session_id == *sid => meta,
                    _ => continue,
                }
            }
        };
        cache
            .metas
            .insert(sid.clone(), (m.oid.clone(), meta.clone()));
        out.push(RemoteSession {
            meta,
            slug: rs.slug.clone(),
            lock: None,
        });
    }
    let locks = crate::lock::list(store, snap.head.as_ref())?;
    let by_sid: HashMap<&str, &Lock> = locks
        .iter()
        .filter(|l| !l.expired())
        .map(|l| (l.session_id.as_str(), l))
        .collect();
    for s in &mut out {
        s.lock = by_sid.get(s.meta.session_id.as_str()).map(|l| (*l).clone());
    }
    if let Some(p) = cache_file
        && reader.is_some()
        && let Ok(b) = serde_json::to_vec(&cache)
    {
        if let Some(d) = p.parent() {
            let _ = crate::os::create_private_dir(d);
        }
        let _ = crate::os::write_atomic(p, &b, true);
    }
    out.sort_by(|a, b| {
        b.meta
            .last_activity
            .cmp(&a.meta.last_activity)
            .then_with(|| a.meta.session_id.cmp(&b.meta.session_id))
    });
    Ok(out)
}
