//! Expiry judged on the observer's own clock.
//!
//! A lock's times are written with its holder's clock, which may be minutes or hours off this
//! machine's. So this machine never compares them with its own clock. Instead it keeps a record,
//! `state/lock-sightings.json` in the tool home, of when it first saw each lock in its current
//! version (the same holder and the same acquisition and refresh stamps, which the heartbeat
//! changes every third of the time-to-live): session → (fingerprint, first seen, last seen), all
//! in this machine's time. A lock of another machine counts as expired only once this machine
//! has seen the same version for longer than the lock's time-to-live plus its margin: a live
//! holder would have refreshed it twice in that time. A lock never seen before is live, whatever
//! its timestamps say.
//!
//! The one exception is a lock of this very machine: its times were written with this clock, so
//! they can be judged by it as before — and it is expired only when no ccsync or Claude Code
//! running here holds it (`state/held/`).
//!
//! Judging a stale view of the repository is safe: whatever removes or replaces a lock does so
//! with a compare-and-swap push, which only succeeds if the repository still has the very lock
//! that was judged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{Lock, held};
use crate::config::Home;
use crate::store::Store;

/// The record's file in the tool home.
pub fn path(home: &Home) -> PathBuf {
    home.state_dir().join("lock-sightings.json")
}

/// Sightings not renewed for this long are forgotten.
const FORGET_AFTER_DAYS: i64 = 30;

/// When this machine saw one version of a session's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// What identifies the version: see [`Lock::fingerprint`].
    pub fingerprint: String,
    /// This machine's time when it first saw this version.
    pub first_seen: DateTime<Utc>,
    /// This machine's time when it last saw it.
    pub last_seen: DateTime<Utc>,
}

/// `state/lock-sightings.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sightings {
    #[serde(default)]
    pub version: u32,
    /// Session id → sighting.
    #[serde(default)]
    pub locks: BTreeMap<String, Sighting>,
}

impl Sightings {
    /// The record (empty when there is none or it cannot be read: that only makes locks look
    /// younger, never older).
    pub fn load(home: &Home) -> Sightings {
        let p = path(home);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!("starting a new {}: it cannot be read ({e})", p.display());
                Sightings::default()
            }),
            Err(_) => Sightings::default(),
        }
    }

    /// Write the record atomically.
    pub fn save(&self, home: &Home) -> Result<()> {
        let p = path(home);
        if let Some(d) = p.parent() {
            crate::os::create_private_dir(d)
                .with_context(|| format!("cannot create {}", d.display()))?;
        }
        let mut text = serde_json::to_vec_pretty(&Sightings {
            version: 1,
            locks: self.locks.clone(),
        })?;
        text.push(b'\n');
        crate::os::write_atomic(&p, &text, true)
            .with_context(|| format!("cannot write {}", p.display()))
    }

    /// Note that `lock` is in the repository at `now`; a new version starts a new sighting.
    pub fn observe(&mut self, lock: &Lock, now: DateTime<Utc>) -> Sighting {
        let fp = lock.fingerprint();
        let s = self
            .locks
            .entry(lock.session_id.clone())
            .and_modify(|s| {
                if s.fingerprint == fp {
                    s.last_seen = s.last_seen.max(now);
                } else {
                    *s = Sighting {
                        fingerprint: fp.clone(),
                        first_seen: now,
                        last_seen: now,
                    };
                }
            })
            .or_insert_with(|| Sighting {
                fingerprint: fp.clone(),
                first_seen: now,
                last_seen: now,
            });
        s.clone()
    }

    /// The sighting of exactly this version of `lock`, if any.
    pub fn of(&self, lock: &Lock) -> Option<&Sighting> {
        self.locks
            .get(&lock.session_id)
            .filter(|s| s.fingerprint == lock.fingerprint())
    }

    /// Forget the sessions that have no lock any more, and sightings not renewed for a month.
    pub fn keep_only(&mut self, sessions: &BTreeSet<&str>, now: DateTime<Utc>) {
        self.locks.retain(|sid, s| {
            sessions.contains(sid.as_str()) && now - s.last_seen < Duration::days(FORGET_AFTER_DAYS)
        });
    }
}

/// What this machine concludes about one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The lock no longer counts: it may be replaced or removed.
    pub expired: bool,
    /// The lock is this machine's.
    pub mine: bool,
    /// This machine's time when it first saw this version of the lock (`None`: never).
    pub first_seen: Option<DateTime<Utc>>,
    /// How long this machine has seen this version unchanged (zero when never seen before).
    pub seen_for: Duration,
    /// How long another machine's lock must stay unchanged to count as expired.
    pub expires_after: Duration,
}

impl Verdict {
    /// "unchanged for 3 min as seen from this machine (abandoned after 15 min unchanged)"
    pub fn describe(&self) -> String {
        let when = if self.first_seen.is_none() {
            "never seen from this machine before".to_string()
        } else if self.seen_for < Duration::seconds(1) {
            "first seen from this machine just now".to_string()
        } else {
            format!(
                "seen unchanged from this machine for {}",
                crate::clock::human(self.seen_for)
            )
        };
        if self.mine {
            when
        } else {
            format!(
                "{when}; it counts as abandoned once it stays unchanged for {}",
                crate::clock::human(self.expires_after)
            )
        }
    }
}

/// This machine looking at locks: its record of sightings, its id and its clock.
#[derive(Debug)]
pub struct Observer {
    home: Home,
    machine_id: String,
    /// A fixed time for tests; otherwise [`crate::clock::now`] at each look.
    fixed_now: Option<DateTime<Utc>>,
    record: Sightings,
    changed: bool,
}

impl Observer {
    /// `machine_id` looking with the record in `home`.
    pub fn new(home: &Home, machine_id: &str) -> Observer {
        Observer {
            home: home.clone(),
            machine_id: machine_id.to_string(),
            fixed_now: None,
            record: Sightings::load(home),
            changed: false,
        }
    }

    /// The same, with the clock stopped at `now` (tests).
    pub fn at(home: &Home, machine_id: &str, now: DateTime<Utc>) -> Observer {
        Observer {
            fixed_now: Some(now),
            ..Observer::new(home, machine_id)
        }
    }

    /// The observer of the tool home that `store`'s clone lives in (`<home>/repo.git`).
    pub fn for_store(store: &Store, machine_id: &str) -> Observer {
        Observer::new(&home_of(&store.git.dir), machine_id)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.fixed_now.unwrap_or_else(crate::clock::now)
    }

    /// The verdict on `lock` without recording the sighting.
    pub fn judge(&self, lock: &Lock) -> Verdict {
        let now = self.now();
        let mine = lock.machine_id == self.machine_id;
        let first_seen = self.record.of(lock).map(|s| s.first_seen);
        let seen_for = first_seen
            .map(|f| (now - f).max(Duration::zero()))
            .unwrap_or_else(Duration::zero);
        let expires_after = lock.ttl() + lock.margin();
        let watched_long_enough = first_seen.is_some() && seen_for > expires_after;
        let expired = if mine {
            // Written with this very clock; and no process here may still be using it.
            (lock.stamps_expired_at(now) || watched_long_enough)
                && !held_here(&self.home, &lock.session_id)
        } else {
            watched_long_enough
        };
        Verdict {
            expired,
            mine,
            first_seen,
            seen_for,
            expires_after,
        }
    }

    /// Record that `lock` is in the repository now, and judge it.
    pub fn see(&mut self, lock: &Lock) -> Verdict {
        let before = self.record.locks.get(&lock.session_id).cloned();
        let now = self.now();
        let after = self.record.observe(lock, now);
        if before.as_ref() != Some(&after) {
            self.changed = true;
        }
        self.judge(lock)
    }

    /// Record that `locks` are every lock in the repository now (forgetting others), and judge
    /// each.
    pub fn see_all(&mut self, locks: &[Lock]) -> Vec<Verdict> {
        let verdicts = locks.iter().map(|l| self.see(l)).collect();
        let sessions: BTreeSet<&str> = locks.iter().map(|l| l.session_id.as_str()).collect();
        let n = self.record.locks.len();
        let now = self.now();
        self.record.keep_only(&sessions, now);
        if self.record.locks.len() != n {
            self.changed = true;
        }
        verdicts
    }

    /// Write the record if it changed.
    pub fn save(&mut self) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        self.record.save(&self.home)?;
        self.changed = false;
        Ok(())
    }

    /// [`Observer::save`], logging a failure (the sightings only ever make locks look younger
    /// when lost, so failing to keep them is not worth failing a command for).
    pub fn save_or_warn(&mut self) {
        if let Err(e) = self.save() {
            tracing::warn!("could not keep the record of lock sightings: {e:#}");
        }
    }

    pub fn record(&self) -> &Sightings {
        &self.record
    }
}

/// The tool home of a clone at `<home>/repo.git` (see `Home::repo_dir`).
fn home_of(repo_dir: &Path) -> Home {
    Home::new(repo_dir.parent().unwrap_or(repo_dir))
}

/// Whether a ccsync or Claude Code process running on this machine holds the lock of `sid`.
fn held_here(home: &Home, sid: &str) -> bool {
    held::all(home).iter().any(|(_, h)| {
        h.locked && h.session_id.as_deref() == Some(sid) && (!h.abandoned() || h.claude_alive())
    })
}

/// The verdict on `lock` from the record in `home`, read-only, for listings that have no
/// [`Observer`] at hand: a lock this machine has not watched long enough is live.
pub fn judged_from(home: &Home, lock: &Lock) -> Verdict {
    Observer {
        home: home.clone(),
        machine_id: String::new(),
        fixed_now: None,
        record: Sightings::load(home),
        changed: false,
    }
    .judge(lock)
}
