//! `forget`: deleting sessions from the repository (the archive) on purpose. A tombstone list,
//! `forgotten.json`, keeps every machine from pushing them back; local copies stay.

use anyhow::Result;

use super::Engine;

/// Remove sessions from the repository (the archive); local files stay. With `dry_run`, only
/// say which folders would go. Returns `(session id, repository folder)` of each.
pub fn forget(engine: &Engine, ids: &[String], dry_run: bool) -> Result<Vec<(String, String)>> {
    let store = crate::store::Store::of(engine.home, engine.config)?;
    let head = store.fetch(std::time::Duration::from_secs(120))?;
    let snap = super::snapshot::Snapshot::load(&store, head.as_ref())?;
    let mut found = Vec::new();
    for id in ids {
        let hits: Vec<&super::snapshot::RepoSession> = snap
            .sessions
            .values()
            .filter(|s| s.id == *id || s.id.starts_with(id.as_str()))
            .collect();
        match hits.as_slice() {
            [one] => found.push((one.id.clone(), one.dir.clone())),
            [] => anyhow::bail!("no session {id} in the repository"),
            many => anyhow::bail!(
                "{id:?} matches {} sessions in the repository: give more of the id",
                many.len()
            ),
        }
    }
    if dry_run || found.is_empty() {
        return Ok(found);
    }
    let message = format!(
        "{}: forget {} session(s)",
        engine.config.machine_id,
        found.len()
    );
    store.commit_and_push(&message, false, std::time::Duration::from_secs(120), |head, txn| {
        let snap = super::snapshot::Snapshot::load(&store, head)?;
        let mut tomb: super::snapshot::Forgotten = match &snap.forgotten {
            Some(f) => serde_json::from_slice(&store.reader()?.read(&f.oid)?).unwrap_or_default(),
            None => super::snapshot::Forgotten::default(),
        };
        for (id, _) in &found {
            if let Some(s) = snap.sessions.get(id) {
                txn.delete(&s.dir)?;
            }
            tomb.sessions.insert(
                id.clone(),
                serde_json::json!({"at": crate::util::rfc3339(chrono::Utc::now()), "by": engine.config.machine_id}),
            );
        }
        let m = txn.blob(&crate::store::format::to_json_bytes(&tomb)?)?;
        txn.put(crate::store::format::FORGOTTEN_FILE, m)?;
        Ok(())
    })?;
    let mut index = super::state::Index::load(engine.home, &engine.config.remote);
    for (id, dir) in &found {
        index.forgotten.insert(id.clone());
        index.sessions.remove(id);
        index
            .logs
            .retain(|_, r| !r.repo_dir.starts_with(dir.as_str()));
        index
            .files
            .retain(|_, r| !r.repo_path.starts_with(dir.as_str()));
    }
    index.pulled = None;
    index.save(engine.home)?;
    Ok(found)
}
