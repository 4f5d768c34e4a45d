//! The one wall clock that ccsync reads for lock stamps, lock sightings and `doctor`'s clock
//! check, so that tests can move it.
//!
//! **Test-only:** `CCSYNC_TEST_NOW` shifts this clock for the whole process. It is either an
//! RFC 3339 instant (`2030-01-01T10:00:00Z`: the clock reads that at the first call and runs on
//! from there) or a signed offset from the real clock made of numbers with units `s`, `m`, `h`,
//! `d` (`+25m`, `-10m`, `+1h30m`, `+90s`). It is read once per process; an unreadable value is
//! reported and ignored. It exists so that tests can simulate time passing and machines whose
//! clocks disagree without sleeping; users have no reason to set it.
//!
//! File times (mtimes of transcripts and the like) and git's own commit times keep the real
//! clock.

use std::sync::OnceLock;

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, Duration, Utc};

/// The variable that moves the clock (test-only).
pub const TEST_NOW_VAR: &str = "CCSYNC_TEST_NOW";

/// This machine's time (UTC), moved by `CCSYNC_TEST_NOW` in tests.
pub fn now() -> DateTime<Utc> {
    Utc::now() + offset()
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
