//! Session locks: "machine M is working on session S until T", one file per locked session
//! under `locks/` in the sync repository.
//!
//! Acquiring, refreshing and releasing are compare-and-swap commits, so of two machines racing
//! for one session exactly one wins and the other is told who holds it. Times in a lock are UTC,
//! written with the holder's clock; the holder refreshes the lock every third of its
//! time-to-live while the session runs.
//!
//! Whether a lock has expired is judged on the observer's own clock, never by comparing the
//! holder's times with it: see [`sightings`]. Clock skew between machines, of minutes or of
//! hours, never makes a live lock look expired.
//!
//! [`held`] remembers, on this machine, which locks a running ccsync holds and for which
//! processes, so that after a crash the next `resume` or `update` can push and release them.

pub mod held;
pub mod sightings;

use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use sightings::{Observer, Verdict};

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
    fn ttl_secs_or_default(&self) -> u64 {
        if self.ttl_secs > 0 {
            self.ttl_secs
        } else {
            600
        }
    }

    /// The lock's time-to-live.
    pub fn ttl(&self) -> chrono::Duration {
        // A year at most: a lock file may say anything.
        chrono::Duration::seconds(self.ttl_secs_or_default().min(365 * 86_400) as i64)
    }

    /// How long past its time-to-live the lock is still respected: half the time-to-live, at
    /// most two minutes.
    pub fn margin(&self) -> chrono::Duration {
        chrono::Duration::seconds((self.ttl_secs_or_default() / 2).clamp(1, 120) as i64)
    }

    /// Whether the lock's own times say it is over at `now` — meaningful only when `now` is read
    /// from the clock that wrote them (this machine's own locks).
    pub fn stamps_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at
            .checked_add_signed(self.margin())
            .is_some_and(|end| now > end)
    }

    /// Whether this machine's record of sightings (in the tool home of this process, read-only)
    /// says the lock is expired: only a lock seen unchanged for longer than its time-to-live
    /// plus margin is. Commands that look at locks use an [`Observer`], which also records what
    /// it sees and knows this machine's own locks; this is for listings.
    pub fn expired(&self) -> bool {
        match crate::config::Home::from_env() {
            Ok(home) => sightings::judged_from(&home, self).expired,
            Err(_) => false,
        }
    }

    /// What identifies this version of the lock: its holder and its acquisition and refresh
    /// stamps (every refresh changes it).
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}",
            self.machine_id,
            self.hostname,
            self.pid,
            self.acquired_at
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            self.expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            self.ttl_secs
        )
    }

    /// "machine laptop on host lap since 2030-01-01 10:02:00 UTC by its clock"
    pub fn describe(&self) -> String {
        let host = if self.hostname.is_empty() || self.hostname == self.machine_id {
            String::new()
        } else {
            format!(" on host {}", self.hostname)
        };
        format!(
            "machine {}{host} since {} by its clock",
            self.machine_id,
            self.acquired_at.format("%Y-%m-%d %H:%M:%S UTC"),
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
        let now = crate::clock::now();
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
    txn.put(&lock_path(&lock.session_id), m)?;
    Ok(())
}

/// Take the lock of `session_id` for `me`. A lock held by this machine is renewed; an expired one
/// (as this machine judges it: see [`sightings`]) is replaced; a live one of another machine is
/// taken only with `take_over`.
pub fn acquire(
    store: &Store,
    me: &Holder,
    session_id: &str,
    take_over: bool,
    timeout: Duration,
) -> Result<Acquired> {
    let mut observer = Observer::for_store(store, &me.machine_id);
    let r = acquire_with(&mut observer, store, me, session_id, take_over, timeout);
    observer.save_or_warn();
    r
}

/// [`acquire`], judging with `observer` (which records what it sees; the caller saves it).
pub fn acquire_with(
    observer: &mut Observer,
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
            let current =
                read_lock(store, head, session_id)?.map(|l| (observer.see(&l).expired, l));
            let (lock, result) = match current {
                Some((false, l)) if l.machine_id != me.machine_id => {
                    if !take_over {
                        outcome = Some(Acquired::HeldBy(l));
                        return Ok(());
                    }
                    let lock = me.lock_for(session_id, None);
                    (lock.clone(), Acquired::TookOver { previous: l, lock })
                }
                Some((false, l)) => {
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

/// Remove the lock of `session_id` if this machine holds it or it has expired (as this machine
/// judges it), or whoever holds it with `force`.
pub fn release(
    store: &Store,
    machine_id: &str,
    session_id: &str,
    force: bool,
    timeout: Duration,
) -> Result<Released> {
    let mut observer = Observer::for_store(store, machine_id);
    let mut outcome = Released::NotLocked;
    let r = store.commit_and_push(
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
                        txn.delete(&lock_path(session_id))?;
                        Released::Yes
                    } else {
                        Released::NotLocked
                    }
                }
                Some(l) if l.machine_id == machine_id || force || observer.see(&l).expired => {
                    txn.delete(&lock_path(session_id))?;
                    Released::Yes
                }
                Some(l) => Released::HeldBy(l),
            };
            Ok(())
        },
    );
    observer.save_or_warn();
    r?;
    Ok(outcome)
}

/// Every lock in the repository at `head`.
pub fn list(store: &Store, head: Option<&Oid>) -> Result<Vec<Lock>> {
    let Some(h) = head else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let entries = store.ls_tree(h, Some(LOCKS_DIR))?;
    if entries.is_empty() {
        return Ok(out);
    }
    let mut reader = store.reader()?;
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

/// Remove every expired lock (as this machine judges it: see [`sightings`]); returns the
/// sessions that were unlocked.
pub fn cleanup(store: &Store, machine_id: &str, timeout: Duration) -> Result<Vec<String>> {
    let mut observer = Observer::for_store(store, machine_id);
    let r = cleanup_with(&mut observer, store, machine_id, timeout);
    observer.save_or_warn();
    r
}

/// [`cleanup`], judging with `observer` (which records what it sees; the caller saves it).
pub fn cleanup_with(
    observer: &mut Observer,
    store: &Store,
    machine_id: &str,
    timeout: Duration,
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    store.commit_and_push(
        &format!("{machine_id}: clean up expired locks"),
        true,
        timeout,
        |head, txn| {
            removed.clear();
            let locks = list(store, head)?;
            for (l, v) in locks.iter().zip(observer.see_all(&locks)) {
                if v.expired {
                    txn.delete(&lock_path(&l.session_id))?;
                    removed.push(l.session_id.clone());
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
                    txn.delete(&lock_path(&l.session_id))?;
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
        lock_of("m", Utc::now(), ttl, expires_in)
    }

    fn lock_of(machine: &str, now: DateTime<Utc>, ttl: u64, expires_in: i64) -> Lock {
        Lock {
            session_id: "s".into(),
            machine_id: machine.into(),
            hostname: "h".into(),
            pid: 1,
            acquired_at: now,
            expires_at: now + chrono::Duration::seconds(expires_in),
            ttl_secs: ttl,
        }
    }

    #[test]
    fn own_stamps_are_judged_with_a_margin() {
        let now = Utc::now();
        assert!(
            !lock(600, -60).stamps_expired_at(now),
            "a minute late is within the 2 minute margin"
        );
        assert!(lock(600, -180).stamps_expired_at(now));
        assert!(
            !lock(10, -4).stamps_expired_at(now),
            "half the TTL for short locks"
        );
        assert!(lock(10, -6).stamps_expired_at(now));
        assert!(!lock(10, 5).stamps_expired_at(now));
    }

    #[test]
    fn another_machines_lock_expires_only_after_being_seen_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let home = crate::config::Home::new(dir.path());
        let t0 = Utc::now();
        let min = chrono::Duration::minutes;
        // Written by a clock an hour behind: by its stamps it expired 50 minutes ago.
        let behind = lock_of("other", t0 - min(60), 600, 600);
        let mut o = Observer::at(&home, "me", t0);
        let v = o.judge(&behind);
        assert!(!v.expired && v.first_seen.is_none(), "never seen: live");
        let v = o.see(&behind);
        assert!(!v.expired && v.seen_for.is_zero());
        assert_eq!(v.expires_after, min(12), "TTL plus margin");
        o.save().unwrap();
        // Eleven minutes later (another process: the record is read back).
        let mut o = Observer::at(&home, "me", t0 + min(11));
        let v = o.see(&behind);
        assert!(!v.expired && v.seen_for == min(11), "{v:?}");
        assert!(v.describe().contains("11 min"), "{}", v.describe());
        let later = Observer::at(&home, "me", t0 + min(12) + chrono::Duration::seconds(1));
        assert!(later.judge(&behind).expired, "unchanged too long");
        // A refresh (new stamps) starts the watch again.
        let refreshed = lock_of("other", t0 - min(60), 600, 800);
        let mut o = Observer::at(&home, "me", t0 + min(13));
        assert!(!o.see(&refreshed).expired);
        o.save().unwrap();
        let o = Observer::at(&home, "me", t0 + min(24));
        assert!(!o.judge(&refreshed).expired);
        assert!(
            !o.judge(&behind).expired,
            "the old version is no longer tracked"
        );
        // A clock an hour ahead: by its stamps it is valid for an hour; watching decides.
        let ahead = Lock {
            session_id: "s2".into(),
            ..lock_of("other", t0 + min(60), 600, 600)
        };
        let mut o = Observer::at(&home, "me", t0);
        o.see(&ahead);
        o.save().unwrap();
        assert!(
            Observer::at(&home, "me", t0 + min(13))
                .judge(&ahead)
                .expired
        );
        // Locks gone from the repository are forgotten.
        let mut o = Observer::at(&home, "me", t0 + min(14));
        o.see_all(std::slice::from_ref(&ahead));
        o.save().unwrap();
        assert_eq!(
            sightings::Sightings::load(&home)
                .locks
                .keys()
                .collect::<Vec<_>>(),
            ["s2"]
        );
        // The clock going backwards counts as no time seen.
        let o = Observer::at(&home, "me", t0 - min(30));
        assert!(o.judge(&ahead).seen_for.is_zero());
    }

    #[test]
    fn this_machines_own_lock_is_judged_by_its_stamps_unless_a_process_here_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let home = crate::config::Home::new(dir.path());
        let now = Utc::now();
        let stale = lock_of("me", now - chrono::Duration::hours(1), 600, 600);
        let o = Observer::at(&home, "me", now);
        assert!(
            o.judge(&stale).expired,
            "this clock wrote it: its stamps count"
        );
        assert!(!o.judge(&lock_of("me", now, 600, 600)).expired);
        // A ccsync running here holds it: kept.
        let rec = held::Held {
            session_id: Some("s".into()),
            ccsync_pid: std::process::id(),
            ccsync_started: crate::os::process_start_time(std::process::id()),
            claude_pid: None,
            started_at: now,
            cwd: "/x".into(),
            locked: true,
            worker: None,
        };
        let p = held::record(&home, &rec).unwrap();
        assert!(!o.judge(&stale).expired);
        held::remove(&p);
        // Its process is gone: expired again.
        held::record(
            &home,
            &held::Held {
                ccsync_pid: 2_147_483_000,
                ..rec
            },
        )
        .unwrap();
        assert!(o.judge(&stale).expired);
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
        let now = crate::clock::now();
        let mut seen_now = Observer::at(&home_a, "a", now);
        assert!(
            cleanup_with(&mut seen_now, &a, "a", t).unwrap().is_empty(),
            "first seen now: not expired"
        );
        seen_now.save().unwrap();
        // Three seconds later (TTL 1 s plus 1 s margin), by this machine's clock.
        let mut later = Observer::at(&home_a, "a", now + chrono::Duration::seconds(3));
        assert_eq!(
            cleanup_with(&mut later, &a, "a", t).unwrap(),
            vec!["s2".to_string()]
        );
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
