//! Session locks: "machine M is working on session S until T", one file per locked session
//! under `locks/` in the sync repository.
//!
//! Acquiring, refreshing and releasing are compare-and-swap commits, so of two machines racing
//! for one session exactly one wins and the other is told who holds it. Times are UTC; a lock
//! counts as expired only after its expiry plus a margin (half its time-to-live, at most two
//! minutes), so a machine whose clock runs ahead does not steal a fresh lock.
//!
//! [`held`] remembers, on this machine, which locks a running ccsync holds and for which
//! processes, so that after a crash the next `resume` or `update` can push and release them.

pub mod held;

use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::format::{self, LOCKS_DIR};
use crate::store::{Oid, Store};

/// One session lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub session_id: String,
    pub machine_id: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub pid: u32,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub ttl_secs: u64,
}

impl Lock {
    /// How long after `expires_at` others still respect the lock.
    pub fn margin(&self) -> chrono::Duration {
        let ttl = if self.ttl_secs > 0 {
            self.ttl_secs
        } else {
            600
        };
        chrono::Duration::seconds((ttl / 2).clamp(1, 120) as i64)
    }

    /// Whether the lock no longer counts at `now`.
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        now > self.expires_at + self.margin()
    }

    pub fn expired(&self) -> bool {
        self.expired_at(Utc::now())
    }

    /// "laptop (host laptop, pid 123) since 10:02 UTC, until 10:12 UTC"
    pub fn describe(&self) -> String {
        let host = if self.hostname.is_empty() || self.hostname == self.machine_id {
            String::new()
        } else {
            format!(" on host {}", self.hostname)
        };
        format!(
            "machine {}{host} since {} (lock valid until {})",
            self.machine_id,
            self.acquired_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.expires_at.format("%H:%M:%S UTC")
        )
    }
}

pub fn lock_path(session_id: &str) -> String {
    format!("{LOCKS_DIR}/{session_id}.json")
}

/// Who is asking for locks.
#[derive(Debug, Clone)]
pub struct Holder {
    pub machine_id: String,
    pub hostname: String,
    pub pid: u32,
    pub ttl_secs: u64,
}

impl Holder {
    pub fn new(machine_id: &str, ttl_secs: u64) -> Self {
        Holder {
            machine_id: machine_id.to_string(),
            hostname: crate::os::hostname(),
            pid: std::process::id(),
            ttl_secs,
        }
    }

    fn lock_for(&self, session_id: &str, acquired_at: Option<DateTime<Utc>>) -> Lock {
        let now = Utc::now();
        Lock {
            session_id: session_id.to_string(),
            machine_id: self.machine_id.clone(),
            hostname: self.hostname.clone(),
            pid: self.pid,
            acquired_at: acquired_at.unwrap_or(now),
            expires_at: now + chrono::Duration::seconds(self.ttl_secs as i64),
            ttl_secs: self.ttl_secs,
        }
    }
}

/// The outcome of [`acquire`].
#[derive(Debug, Clone, PartialEq)]
pub enum Acquired {
    /// The lock is ours (new, renewed, or replacing an expired one).
    Yes(Lock),
    /// We took it from a live holder (with `take_over`).
    TookOver { previous: Lock, lock: Lock },
    /// Another machine holds it.
    HeldBy(Lock),
}

fn read_lock(store: &Store, head: Option<&Oid>, session_id: &str) -> Result<Option<Lock>> {
    let Some(h) = head else { return Ok(None) };
    match store.read_file(h, &lock_path(session_id))? {
        None => Ok(None),
        Some(b) => match serde_json::from_slice::<Lock>(&b) {
            Ok(l) => Ok(Some(l)),
            Err(e) => {
                tracing::warn!(
                    "ignoring the unreadable lock {}: {e}",
                    lock_path(session_id)
                );
                Ok(None)
            }
        },
    }
}

fn write_lock(txn: &mut crate::store::Txn, lock: &Lock) -> Result<()> {
    let m = txn.blob(&format::to_json_bytes(lock)?)?;
    txn.put(&lock_path(&lock.session_id), m);
    Ok(())
}

/// Take the lock of `session_id` for `me`. A lock held by this machine is renewed; an expired one
/// is replaced; a live one of another machine is taken only with `take_over`.
pub fn acquire(
    store: &Store,
    me: &Holder,
    session_id: &str,
    take_over: bool,
    timeout: Duration,
) -> Result<Acquired> {
    let mut outcome = None;
    store.commit_and_push(
        &format!("{}: lock {session_id}", me.machine_id),
        false,
        timeout,
        |head, txn| {
            let current = read_lock(store, head, session_id)?;
            let (lock, result) = match current {
                Some(l) if l.machine_id != me.machine_id && !l.expired() => {
                    if !take_over {
                        outcome = Some(Acquired::HeldBy(l));
                        return Ok(());
                    }
                    let lock = me.lock_for(session_id, None);
                    (lock.clone(), Acquired::TookOver { previous: l, lock })
                }
                Some(l) if l.machine_id == me.machine_id && !l.expired() => {
                    let lock = me.lock_for(session_id, Some(l.acquired_at));
                    (lock.clone(), Acquired::Yes(lock))
                }
                _ => {
                    let lock = me.lock_for(session_id, None);
                    (lock.clone(), Acquired::Yes(lock))
                }
            };
            write_lock(txn, &lock)?;
            outcome = Some(result);
            Ok(())
        },
    )?;
    outcome.ok_or_else(|| anyhow::anyhow!("the lock of {session_id} could not be decided"))
}

/// The outcome of [`refresh`].
#[derive(Debug, Clone, PartialEq)]
pub enum Refreshed {
    Yes(Lock),
    /// Another machine took the lock over (or it vanished).
    Lost(Option<Lock>),
}

/// Extend this machine's lock of `session_id` by its time-to-live.
pub fn refresh(
    store: &Store,
    me: &Holder,
    session_id: &str,
    timeout: Duration,
) -> Result<Refreshed> {
    let mut outcome = None;
    store.commit_and_push(
        &format!("{}: keep lock {session_id}", me.machine_id),
        true,
        timeout,
        |head, txn| {
            match read_lock(store, head, session_id)? {
                Some(l) if l.machine_id == me.machine_id => {
                    let lock = me.lock_for(session_id, Some(l.acquired_at));
                    write_lock(txn, &lock)?;
                    outcome = Some(Refreshed::Yes(lock));
                }
                other => outcome = Some(Refreshed::Lost(other)),
            }
            Ok(())
        },
    )?;
    outcome.ok_or_else(|| anyhow::anyhow!("the lock of {session_id} could not be refreshed"))
}

/// The outcome of [`release`].
#[derive(Debug, Clone, PartialEq)]
pub enum Released {
    Yes,
    /// There was no lock.
    NotLocked,
    /// Another machine holds it (and `force` was not given).
    HeldBy(Lock),
}

/// Remove the lock of `session_id` if this machine holds it, or whoever holds it with `force`.
pub fn release(
    store: &Store,
    machine_id: &str,
    session_id: &str,
    force: bool,
    timeout: Duration,
) -> Result<Released> {
    let mut outcome = Released::NotLocked;
    store.commit_and_push(
        &format!("{machine_id}: unlock {session_id}"),
        false,
        timeout,
        |head, txn| {
            outcome = match read_lock(store, head, session_id)? {
                None => {
                    if head.is_some_and(|h| {
                        store
                            .read_file(h, &lock_path(session_id))
                            .ok()
                            .flatten()
                            .is_some()
                    }) {
                        // An unreadable lock file: remove it.
                        txn.delete(&lock_path(session_id));
                        Released::Yes
                    } else {
                        Released::NotLocked
                    }
                }
                Some(l) if l.machine_id == machine_id || force || l.expired() => {
                    txn.delete(&lock_path(session_id));
                    Released::Yes
                }
                Some(l) => Released::HeldBy(l),
            };
            Ok(())
        },
    )?;
    Ok(outcome)
}

/// Every lock in the repository at `head`.
pub fn list(store: &Store, head: Option<&Oid>) -> Result<Vec<Lock>> {
    let Some(h) = head else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let entries = store.git.ls_tree(h, Some(LOCKS_DIR))?;
    if entries.is_empty() {
        return Ok(out);
    }
    let mut reader = store.git.reader()?;
    for e in entries {
        if !e.is_regular_file() {
            continue;
        }
        let Some(name) = e
            .path_str()
            .and_then(|p| p.strip_prefix("locks/"))
            .and_then(|p| p.strip_suffix(".json"))
        else {
            continue;
        };
        match serde_json::from_slice::<Lock>(&reader.read(&e.oid)?) {
            Ok(l) if l.session_id == name => out.push(l),
            _ => tracing::warn!("ignoring the unreadable lock locks/{name}.json"),
        }
    }
    out.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    Ok(out)
}

/// Remove every expired lock; returns the sessions that were unlocked.
pub fn cleanup(store: &Store, machine_id: &str, timeout: Duration) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    store.commit_and_push(
        &format!("{machine_id}: clean up expired locks"),
        true,
        timeout,
        |head, txn| {
            removed.clear();
            for l in list(store, head)? {
                if l.expired() {
                    txn.delete(&lock_path(&l.session_id));
                    removed.push(l.session_id);
                }
            }
            Ok(())
        },
    )?;
    Ok(removed)
}

/// Remove every lock this machine holds; returns the sessions that were unlocked.
pub fn release_all(store: &Store, machine_id: &str, timeout: Duration) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    store.commit_and_push(
        &format!("{machine_id}: release all locks"),
        true,
        timeout,
        |head, txn| {
            removed.clear();
            for l in list(store, head)? {
                if l.machine_id == machine_id {
                    txn.delete(&lock_path(&l.session_id));
                    removed.push(l.session_id);
                }
            }
            Ok(())
        },
    )?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(ttl: u64, expires_in: i64) -> Lock {
        let now = Utc::now();
        Lock {
            session_id: "s".into(),
            machine_id: "m".into(),
            hostname: "h".into(),
            pid: 1,
            acquired_at: now,
            expires_at: now + chrono::Duration::seconds(expires_in),
            ttl_secs: ttl,
        }
    }

    #[test]
    fn expiry_is_judged_with_a_margin() {
        assert!(
            !lock(600, -60).expired(),
            "a minute late is within the 2 minute margin"
        );
        assert!(lock(600, -180).expired());
        assert!(!lock(10, -4).expired(), "half the TTL for short locks");
        assert!(lock(10, -6).expired());
        assert!(!lock(10, 5).expired());
    }

    #[test]
    fn racing_machines_exactly_one_wins_and_release_rules() {
        let dir = tempfile::tempdir().unwrap();
        let remote = crate::store::Git::init_bare(&dir.path().join("r.git")).unwrap();
        let r = remote.dir.to_string_lossy().into_owned();
        let t = Duration::from_secs(30);
        let home_a = crate::config::Home::new(dir.path().join("a"));
        let home_b = crate::config::Home::new(dir.path().join("b"));
        let a = Store::open(&home_a, &r, "main", "a").unwrap();
        let b = Store::open(&home_b, &r, "main", "b").unwrap();
        let ha = Holder::new("a", 600);
        let hb = Holder::new("b", 600);
        // Both think the remote is empty; the compare-and-swap lets exactly one win.
        let ra = acquire(&a, &ha, "s1", false, t).unwrap();
        let rb = acquire(&b, &hb, "s1", false, t).unwrap();
        assert!(matches!(ra, Acquired::Yes(_)));
        match rb {
            Acquired::HeldBy(l) => assert_eq!(l.machine_id, "a"),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(acquire(&a, &ha, "s1", false, t).unwrap(), Acquired::Yes(_)),
            "renewing our own lock"
        );
        assert_eq!(
            release(&b, "b", "s1", false, t).unwrap(),
            Released::HeldBy(match ra {
                Acquired::Yes(ref l) => l.clone(),
                _ => unreachable!(),
            })
        );
        match acquire(&b, &hb, "s1", true, t).unwrap() {
            Acquired::TookOver { previous, .. } => assert_eq!(previous.machine_id, "a"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            refresh(&a, &ha, "s1", t).unwrap(),
            Refreshed::Lost(Some(_))
        ));
        assert_eq!(release(&a, "a", "s1", true, t).unwrap(), Released::Yes);
        assert_eq!(
            release(&a, "a", "s1", false, t).unwrap(),
            Released::NotLocked
        );
        // Cleanup removes expired locks only.
        let old = Holder {
            ttl_secs: 1,
            ..Holder::new("c", 1)
        };
        acquire(&a, &old, "s2", false, t).unwrap();
        acquire(&a, &ha, "s3", false, t).unwrap();
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(cleanup(&a, "a", t).unwrap(), vec!["s2".to_string()]);
        let head = a.fetch(t).unwrap();
        let left: Vec<String> = list(&a, head.as_ref())
            .unwrap()
            .into_iter()
            .map(|l| l.session_id)
            .collect();
        assert_eq!(left, ["s3"]);
        assert_eq!(release_all(&a, "a", t).unwrap(), vec!["s3".to_string()]);
    }
}
