//! The shared half of the configuration, kept in the sync repository: the format marker, the
//! placeholder table of every machine, and the machine records. Every edit goes through the
//! store's compare-and-swap commit, so two machines editing at once both keep their entries.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use chrono::Utc;

use crate::store::format::{
    self, FORMAT_FILE, FormatMarker, MACHINES_DIR, MachineRecord, SHARED_PLACEHOLDERS,
    SharedPlaceholders,
};
use crate::store::{OWN_ROOT_NAMES, Oid, Store, Txn};

/// What a remote branch holds.
#[derive(Debug, PartialEq)]
pub enum RepoKind {
    /// No branch yet, or an empty tree.
    Empty,
    /// A ccsync repository. One that lost its marker but holds nothing but ccsync's own
    /// folders and files is one too, damaged: it carries the marker this build writes, and
    /// [`inspect`] tells it apart.
    Ccsync(FormatMarker),
    /// A repository written by the Python `claude-session-sync` 0.x.
    Legacy,
    /// Something else (the number of top-level entries).
    Foreign(usize),
}

/// Tell what the repository at `head` is.
pub fn classify(store: &Store, head: Option<&Oid>) -> Result<RepoKind> {
    Ok(inspect(store, head)?.0)
}

/// [`classify`], and whether the repository is a damaged ccsync repository: some of ccsync's
/// own folders and files at its root (`history/` alone, say) but no format marker. Such a
/// repository is repaired (the marker written again), never refused.
pub fn inspect(store: &Store, head: Option<&Oid>) -> Result<(RepoKind, bool)> {
    let Some(head) = head else {
        return Ok((RepoKind::Empty, false));
    };
    let top = store.top_names(head)?;
    let names: Vec<&str> = top.iter().map(String::as_str).collect();
    if names.is_empty() {
        return Ok((RepoKind::Empty, false));
    }
    if names.contains(&FORMAT_FILE) {
        let marker: FormatMarker = store.read_json(head, FORMAT_FILE)?.ok_or_else(|| {
            anyhow::anyhow!("{FORMAT_FILE} disappeared while reading the sync repository")
        })?;
        return Ok((RepoKind::Ccsync(marker), false));
    }
    if crate::migrate::looks_legacy(&names) {
        return Ok((RepoKind::Legacy, false));
    }
    if names.iter().all(|n| OWN_ROOT_NAMES.contains(n)) {
        let mut marker = FormatMarker::new("");
        marker.created_at = None;
        return Ok((RepoKind::Ccsync(marker), true));
    }
    Ok((RepoKind::Foreign(names.len()), false))
}

/// The shared configuration at one commit.
#[derive(Debug, Default, Clone)]
pub struct Shared {
    pub placeholders: SharedPlaceholders,
    pub machines: BTreeMap<String, MachineRecord>,
}

/// Read the shared configuration at `head` (empty without a head). Machine records that do not
/// parse are skipped with a warning.
pub fn read_shared(store: &Store, head: Option<&Oid>) -> Result<Shared> {
    let Some(head) = head else {
        return Ok(Shared::default());
    };
    let placeholders = store
        .read_json(head, SHARED_PLACEHOLDERS)?
        .unwrap_or_default();
    let mut machines = BTreeMap::new();
    for e in store.ls_tree(head, Some(MACHINES_DIR))? {
        let Some(path) = e.path_str() else { continue };
        let Some(id) = path
            .strip_prefix("machines/")
            .and_then(|p| p.strip_suffix(".json"))
        else {
            continue;
        };
        if !format::valid_machine_id(id) || !e.is_regular_file() {
            continue;
        }
        match store.read_json::<MachineRecord>(head, path) {
            Ok(Some(r)) => {
                machines.insert(id.to_string(), r);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("skipping machine record {path}: {e}"),
        }
    }
    Ok(Shared {
        placeholders,
        machines,
    })
}

/// Record a changed JSON file in a transaction when its content differs from `old`.
pub fn put_json_if_changed<T: serde::Serialize>(
    txn: &mut Txn,
    path: &str,
    value: &T,
    old: Option<&[u8]>,
) -> Result<()> {
    let bytes = format::to_json_bytes(value)?;
    if old != Some(bytes.as_slice()) {
        txn.put_bytes(path, &bytes)?;
    }
    Ok(())
}

/// Apply `edit` to the shared placeholders and refresh this machine's record, as one
/// compare-and-swap commit. The format marker is written when missing: on an empty repository
/// only `write_marker` (registering) does it, on a damaged one always.
/// Returns the new head, or `None` when nothing changed.
pub fn update_shared<F>(
    store: &Store,
    message: &str,
    me: &MachineRecord,
    write_marker: bool,
    timeout: Duration,
    mut edit: F,
) -> Result<Option<Oid>>
where
    F: FnMut(&mut SharedPlaceholders) -> Result<()>,
{
    store.commit_and_push(message, false, timeout, |head, txn| {
        if let Some(h) = head {
            match classify(store, Some(h))? {
                RepoKind::Ccsync(m) => m.check()?,
                RepoKind::Empty => {}
                RepoKind::Legacy => bail!("the sync repository still has the Python tool's layout: run `ccsync pull` to convert it first"),
                RepoKind::Foreign(_) => bail!("the remote {} is not a ccsync repository", store.remote),
            }
        }
        let marker_old = head.map(|h| store.read_file(h, FORMAT_FILE)).transpose()?.flatten();
        if marker_old.is_none() && (write_marker || head.is_some()) {
            put_json_if_changed(txn, FORMAT_FILE, &store.new_marker(&me.machine_id)?, None)?;
        }
        let old_sp = head.map(|h| store.read_file(h, SHARED_PLACEHOLDERS)).transpose()?.flatten();
        let mut sp: SharedPlaceholders = match &old_sp {
            Some(b) => serde_json::from_slice(b)
                .map_err(|e| anyhow::anyhow!("{SHARED_PLACEHOLDERS} in the sync repository is not valid: {e}"))?,
            None => SharedPlaceholders::default(),
        };
        edit(&mut sp)?;
        put_json_if_changed(txn, SHARED_PLACEHOLDERS, &sp, old_sp.as_deref())?;
        let rec_path = format::machine_path(&me.machine_id);
        let old_rec = head.map(|h| store.read_file(h, &rec_path)).transpose()?.flatten();
        let old_parsed: Option<MachineRecord> = old_rec.as_deref().and_then(|b| serde_json::from_slice(b).ok());
        let mut rec = me.clone();
        if let Some(o) = &old_parsed {
            rec.registered_at = o.registered_at.or(rec.registered_at);
        }
        let same_apart_from_time = old_parsed.as_ref().is_some_and(|o| {
            let mut a = o.clone();
            let mut b = rec.clone();
            a.last_seen = None;
            b.last_seen = None;
            a == b
        });
        if !same_apart_from_time || txn.has_changes() {
            put_json_if_changed(txn, &rec_path, &rec, old_rec.as_deref())?;
        }
        Ok(())
    })
}

/// This machine's record, as it should be registered now.
pub fn my_record(config: &crate::config::Config) -> MachineRecord {
    MachineRecord {
        machine_id: config.machine_id.clone(),
        hostname: crate::os::hostname(),
        path_style: config.path_style,
        registered_at: Some(Utc::now()),
        last_seen: Some(Utc::now()),
        ccsync_version: env!("CARGO_PKG_VERSION").to_string(),
        install_id: config.install_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Home;

    #[test]
    fn a_repository_with_only_ccsync_folders_and_no_marker_is_a_damaged_ccsync_one() {
        let dir = tempfile::tempdir().unwrap();
        let remote = crate::store::Git::init_bare(&dir.path().join("remote.git")).unwrap();
        let store = Store::open(
            &Home::new(dir.path().join("home")),
            &remote.dir.to_string_lossy(),
            "main",
            "a",
        )
        .unwrap();
        let commit = |paths: &[&str]| {
            let mut txn = store.transaction(None).unwrap();
            for p in paths {
                let m = txn.blob(b"{}").unwrap();
                txn.put(p, m).unwrap();
            }
            txn.commit(None, "t <t@t>", "t").unwrap()
        };
        let kind = |paths: &[&str]| inspect(&store, Some(&commit(paths))).unwrap();
        assert_eq!(inspect(&store, None).unwrap(), (RepoKind::Empty, false));
        let (k, damaged) = kind(&["history/000001.jsonl"]);
        assert!(matches!(k, RepoKind::Ccsync(_)) && damaged);
        let (k, damaged) = kind(&["machines/a.json", "projects/x/project.json", "locks/s.json"]);
        assert!(matches!(k, RepoKind::Ccsync(_)) && damaged);
        let marker = r#"{"format": "ccsync", "version": 1}"#;
        let mut txn = store.transaction(None).unwrap();
        let m = txn.blob(marker.as_bytes()).unwrap();
        txn.put(FORMAT_FILE, m).unwrap();
        let m = txn.blob(b"x").unwrap();
        txn.put("README.md", m).unwrap();
        let with_marker = txn.commit(None, "t <t@t>", "t").unwrap();
        let (k, damaged) = inspect(&store, Some(&with_marker)).unwrap();
        assert!(matches!(k, RepoKind::Ccsync(_)) && !damaged);
        assert_eq!(
            kind(&["README.md", "history/000001.jsonl"]).0,
            RepoKind::Foreign(2)
        );
        assert_eq!(kind(&["session_meta/x.json"]).0, RepoKind::Legacy);
    }
}
