//! The one wall clock that ccsync reads for lock stamps, lock sightings, `doctor`'s clock
//! check and the time of the commits it makes, so that tests can move it.
//!
//! **Test-only:** `CCSYNC_TEST_NOW` shifts this clock for the whole process. It is either an
//! RFC 3339 instant (`2030-01-01T10:00:00Z`: the clock reads that at the first call and runs on
//! from there) or a signed offset from the real clock made of numbers with units `s`, `m`, `h`,
//! `d` (`+25m`, `-10m`, `+1h30m`, `+90s`). It is read once per process; an unreadable value is
//! reported and ignored. It exists so that tests can simulate time passing and machines whose
//! clocks disagree without sleeping; users have no reason to set it.
//!
//! File times (mtimes of transcripts and the like) keep the real clock. Commits take this
//! clock, so a test can give each push its own date and `restore --at DATE` tell them apart.

use std::sync::OnceLock;

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, Duration, Utc};

/// The variable that moves the clock (test-only).
pub const TEST_NOW_VAR: &str = "CCSYNC_TEST_NOW";

/// This machine's time (UTC), moved by `CCSYNC_TEST_NOW` in tests.
pub fn now() -> DateTime<Utc> {
    // The offset first: on the first call it reads the real clock itself, and a reading taken
    // before it would put this one a moment before the instant asked for.
    let off = offset();
    Utc::now() + off
}

/// How far [`now`] is from the real clock (zero unless `CCSYNC_TEST_NOW` is set).
pub fn offset() -> Duration {
    static OFFSET: OnceLock<Duration> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let Some(spec) = std::env::var_os(TEST_NOW_VAR).filter(|s| !s.is_empty()) else {
            return Duration::zero();
        };
        let spec = spec.to_string_lossy();
        match parse(&spec, Utc::now()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("ignoring {TEST_NOW_VAR}={spec:?}: {e}");
                Duration::zero()
            }
        }
    })
}

/// The offset from `real_now` that `spec` (an RFC 3339 instant or a signed offset) asks for.
pub fn parse(spec: &str, real_now: DateTime<Utc>) -> Result<Duration> {
    let spec = spec.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(spec) {
        return Ok(t.with_timezone(&Utc) - real_now);
    }
    let (sign, rest) = match spec.as_bytes().first() {
        Some(b'+') => (1, &spec[1..]),
        Some(b'-') => (-1, &spec[1..]),
        _ => bail!("expected an RFC 3339 time or an offset such as +25m or -10m"),
    };
    if rest.is_empty() {
        bail!("the offset has no amount (such as +25m)");
    }
    let mut total = Duration::zero();
    let mut number = String::new();
    for c in rest.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number
            .parse()
            .map_err(|_| anyhow!("a unit ({c}) needs a number before it"))?;
        number.clear();
        let part = match c {
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            _ => bail!("unknown unit {c:?} (use s, m, h or d)"),
        }
        .ok_or_else(|| anyhow!("the offset is too large"))?;
        total = total
            .checked_add(&part)
            .ok_or_else(|| anyhow!("the offset is too large"))?;
    }
    if !number.is_empty() {
        bail!("the number {number} has no unit (s, m, h or d)");
    }
    Ok(total * sign)
}

/// "3 min 20 s", "45 s", "2 h 5 min": a duration for people (negative ones count as zero).
pub fn human(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 if s % 60 == 0 => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ if (s % 3600) / 60 == 0 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// What the repository's history says about this machine's clock compared with the others'.
///
/// The history of the sync branch is linear (every push is a compare-and-swap on top of the
/// remote head), so it orders commits as they really happened. A commit that comes after another
/// cannot really be older; when its stamp is older anyway, the clock that stamped the earlier one
/// is ahead of the one that stamped the later one by at least the difference. Each such pair is
/// a lower bound on a skew that holds whatever the true times were — no clock is trusted. Two
/// kinds of pair are used, so that the evidence is about this machine's clock as it is now:
///
/// * another machine's commit, then this machine looking now (`now`, after a fetch): a stamp in
///   this machine's future means that machine is ahead of this one (or this one behind);
/// * this machine's newest commit, then other machines' commits after it: a later commit stamped
///   before it means this machine is ahead of that one.
///
/// The bounds are loose by the time that passed between the two events, so real skews show as
/// at most what they are, never more.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skew {
    /// Machine → seconds by which it is at least ahead of this machine.
    pub ahead_of_me: std::collections::BTreeMap<String, i64>,
    /// Machine → seconds by which it is at least behind this machine.
    pub behind_me: std::collections::BTreeMap<String, i64>,
}

/// [`Skew`] from `commits` (machine, commit time in seconds), oldest first, as seen by `me` at
/// `now` (seconds).
pub fn skew_from_history(me: &str, commits: &[(String, i64)], now: i64) -> Skew {
    let mut skew = Skew::default();
    let mut mine: Option<i64> = None;
    for (m, t) in commits {
        if m == me {
            mine = Some(*t);
            // Only this machine's newest commit speaks for its clock now.
            skew.behind_me.clear();
            continue;
        }
        if let Some(my_t) = mine
            && my_t > *t
        {
            let e = skew.behind_me.entry(m.clone()).or_insert(0);
            *e = (*e).max(my_t - t);
        }
        if *t > now {
            let e = skew.ahead_of_me.entry(m.clone()).or_insert(0);
            *e = (*e).max(t - now);
        }
    }
    skew
}

/// Whether this machine's clock is the odd one out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockVerdict {
    /// Nothing says this clock is off by more than the threshold.
    Fine,
    /// Two or more other machines agree that this clock is behind (at least `secs`).
    Behind { secs: i64, machines: Vec<String> },
    /// Two or more other machines agree that this clock is ahead (at least `secs`).
    Ahead { secs: i64, machines: Vec<String> },
    /// One machine's clock and this one disagree; with no other machine to side with either,
    /// which one is wrong cannot be told (`ahead`: that machine is ahead of this one).
    Unsure {
        machine: String,
        secs: i64,
        ahead: bool,
    },
}

/// Judge [`Skew`] with a majority rule: this machine is told its clock is off only when at least
/// two other machines agree on the direction (and more of them than say the opposite).
pub fn judge_skew(skew: &Skew, threshold_secs: i64) -> ClockVerdict {
    let over = |m: &std::collections::BTreeMap<String, i64>,
                other: &std::collections::BTreeMap<String, i64>| {
        m.iter()
            .filter(|(k, v)| {
                **v > threshold_secs && other.get(*k).is_none_or(|o| *o <= threshold_secs)
            })
            .map(|(k, v)| (k.clone(), *v))
            .collect::<Vec<_>>()
    };
    let ahead_of_me = over(&skew.ahead_of_me, &skew.behind_me);
    let behind_me = over(&skew.behind_me, &skew.ahead_of_me);
    let least = |v: &[(String, i64)]| v.iter().map(|(_, s)| *s).min().unwrap_or(0);
    let names = |v: &[(String, i64)]| v.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>();
    if ahead_of_me.len() >= 2 && ahead_of_me.len() > behind_me.len() {
        ClockVerdict::Behind {
            secs: least(&ahead_of_me),
            machines: names(&ahead_of_me),
        }
    } else if behind_me.len() >= 2 && behind_me.len() > ahead_of_me.len() {
        ClockVerdict::Ahead {
            secs: least(&behind_me),
            machines: names(&behind_me),
        }
    } else if let Some((m, s)) = ahead_of_me.iter().max_by_key(|(_, s)| *s) {
        ClockVerdict::Unsure {
            machine: m.clone(),
            secs: *s,
            ahead: true,
        }
    } else if let Some((m, s)) = behind_me.iter().max_by_key(|(_, s)| *s) {
        ClockVerdict::Unsure {
            machine: m.clone(),
            secs: *s,
            ahead: false,
        }
    } else {
        ClockVerdict::Fine
    }
}

/// A date or time: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` (or with a `T`), in local time, or an
/// RFC 3339 time. A day or a minute names a period: `end` takes its last instant (for "as it
/// was then"), else its first (for "since").
pub fn parse_date(s: &str, end: bool) -> anyhow::Result<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let (naive, span) = if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        (d.and_hms_opt(0, 0, 0), chrono::Duration::days(1))
    } else {
        let t = s.replacen('T', " ", 1);
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S") {
            (Some(t), chrono::Duration::seconds(1))
        } else if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M") {
            (Some(t), chrono::Duration::minutes(1))
        } else {
            anyhow::bail!(
                "{s:?} is not a date: give YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] (local time) or an RFC 3339 time such as 2030-01-31T14:00:00Z"
            )
        }
    };
    let naive = naive.ok_or_else(|| anyhow::anyhow!("{s:?} is not a date"))?;
    let naive = if end {
        naive + span - chrono::Duration::nanoseconds(1)
    } else {
        naive
    };
    // A time a clock change skips or repeats: the later (end) or earlier (start) reading.
    let local = chrono::TimeZone::from_local_datetime(&chrono::Local, &naive);
    let t = if end {
        local.latest()
    } else {
        local.earliest()
    };
    Ok(t.map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| naive.and_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_instants() {
        let real = DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap();
        assert_eq!(parse("+25m", real).unwrap(), Duration::minutes(25));
        assert_eq!(parse("-10m", real).unwrap(), Duration::minutes(-10));
        assert_eq!(parse("+1h30m", real).unwrap(), Duration::minutes(90));
        assert_eq!(parse("+90s", real).unwrap(), Duration::seconds(90));
        assert_eq!(parse(" +2d ", real).unwrap(), Duration::days(2));
        assert_eq!(
            parse("2030-01-01T10:05:00Z", real).unwrap(),
            Duration::minutes(5)
        );
        assert_eq!(
            parse("2030-01-01T11:00:00+02:00", real).unwrap(),
            Duration::hours(-1)
        );
        for bad in [
            "",
            "25m",
            "+",
            "+m",
            "+25",
            "+25x",
            "yesterday",
            "+99999999999999d",
        ] {
            assert!(parse(bad, real).is_err(), "{bad:?}");
        }
    }

    fn c(m: &str, t: i64) -> (String, i64) {
        (m.to_string(), t)
    }

    #[test]
    fn a_clock_behind_is_told_when_two_others_agree() {
        // b and c are right (their commits at 1000 and 1100); this machine ("a") reads 500 after
        // fetching them: it is at least 500 s behind both.
        let h = [c("b", 1000), c("c", 1100), c("a", 400)];
        let s = skew_from_history("a", &h, 500 + 600);
        assert_eq!(judge_skew(&s, 120), ClockVerdict::Fine, "not behind yet");
        let s = skew_from_history("a", &h, 500);
        assert_eq!(s.ahead_of_me.get("b"), Some(&500));
        assert_eq!(
            judge_skew(&s, 120),
            ClockVerdict::Behind {
                secs: 500,
                machines: vec!["b".into(), "c".into()]
            }
        );
        // Seen from b, only a disagrees, and a is behind: nothing says b is wrong.
        let s = skew_from_history("b", &h, 1200);
        assert!(s.ahead_of_me.is_empty());
        assert!(matches!(
            judge_skew(&s, 120),
            ClockVerdict::Fine | ClockVerdict::Unsure { .. }
        ));
    }

    #[test]
    fn a_clock_ahead_is_told_when_two_others_commit_after_it_with_older_stamps() {
        let h = [c("a", 2000), c("b", 1300), c("c", 1310), c("b", 1400)];
        let s = skew_from_history("a", &h, 2100);
        assert_eq!(s.behind_me.get("b"), Some(&700));
        assert_eq!(
            judge_skew(&s, 120),
            ClockVerdict::Ahead {
                secs: 690,
                machines: vec!["b".into(), "c".into()]
            }
        );
        // From b's side: a's commit is in b's future, c agrees with b: only one machine (a)
        // says b is behind, so b is not told it is wrong.
        let s = skew_from_history("b", &h, 1420);
        assert_eq!(
            judge_skew(&s, 120),
            ClockVerdict::Unsure {
                machine: "a".into(),
                secs: 580,
                ahead: true
            }
        );
        // A newer commit of this machine (its clock fixed) replaces the old evidence.
        let h2 = [h.as_slice(), &[c("a", 1450), c("b", 1460)]].concat();
        assert_eq!(
            judge_skew(&skew_from_history("a", &h2, 1470), 120),
            ClockVerdict::Fine
        );
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human(Duration::seconds(-5)), "0 s");
        assert_eq!(human(Duration::seconds(45)), "45 s");
        assert_eq!(human(Duration::seconds(120)), "2 min");
        assert_eq!(human(Duration::seconds(200)), "3 min 20 s");
        assert_eq!(human(Duration::seconds(7200)), "2 h");
        assert_eq!(human(Duration::seconds(7500)), "2 h 5 min");
    }
}
