//! Small formatting helpers shared by commands: sizes, ages, display widths.

use chrono::{DateTime, Utc};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// A random-enough hex string of `n` bytes (not for cryptography): time, pid, a counter and
/// stack addresses, hashed.
pub fn random_hex(n: usize) -> String {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(now.as_nanos().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let local = 0u8;
    h.update((&local as *const u8 as usize).to_le_bytes());
    h.update(crate::os::hostname().as_bytes());
    let d = h.finalize();
    d.iter()
        .take(n.min(32))
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first 8 characters of a session id, as tables show it.
pub fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

/// `1.2K`, `34M`, `2.0G` (powers of 1024).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else if v < 10.0 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

/// `just now`, `5m ago`, `3h ago`, `2d ago`, then the date.
pub fn relative_age(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(t) = t else { return "-".to_string() };
    let secs = (now - t).num_seconds();
    if secs < 0 {
        return t.format("%Y-%m-%d").to_string();
    }
    match secs {
        0..60 => "just now".to_string(),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        86400..2_592_000 => format!("{}d ago", secs / 86400),
        _ => t.format("%Y-%m-%d").to_string(),
    }
}

/// RFC 3339 in UTC with milliseconds (`2026-09-01T00:00:00.000Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Display width of a string in terminal columns.
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// Cut `s` to at most `max` columns, ending with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = UnicodeWidthChar::width(c).unwrap_or(0);
        if w + cw > max - 1 {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('…');
    out
}

/// Cut `s` to at most `max` columns keeping its end, starting with `…` when cut (for paths,
/// whose last components tell them apart).
pub fn truncate_left(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut kept: Vec<char> = Vec::new();
    let mut w = 0;
    for c in s.chars().rev() {
        let cw = UnicodeWidthChar::width(c).unwrap_or(0);
        if w + cw > max - 1 {
            break;
        }
        kept.push(c);
        w += cw;
    }
    let mut out = String::from("…");
    out.extend(kept.into_iter().rev());
    out
}

/// Pad with spaces to `w` columns (after truncating to it).
pub fn pad(s: &str, w: usize) -> String {
    let t = truncate(s, w);
    let fill = w.saturating_sub(width(&t));
    format!("{t}{}", " ".repeat(fill))
}

/// Replace a leading home directory with `~`.
pub fn tilde(path: &str, home: Option<&str>) -> String {
    if let Some(h) = home.filter(|h| !h.is_empty())
        && let Some(rest) = path.strip_prefix(h)
        && (rest.is_empty() || rest.starts_with('/') || rest.starts_with('\\'))
    {
        return format!("~{rest}");
    }
    path.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1536), "1.5K");
        assert_eq!(human_size(150 * 1024 * 1024), "150M");
    }

    #[test]
    fn widths_and_truncation() {
        assert_eq!(width("日本"), 4);
        assert_eq!(truncate("日本語テキスト", 7), "日本語…");
        assert_eq!(width(&truncate("日本語テキスト", 7)), 7);
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(pad("日本語", 4), "日… ");
        assert_eq!(
            truncate_left("/home/alice/projects/my_app", 10),
            "…ts/my_app"
        );
        assert_eq!(truncate_left("~/p", 10), "~/p");
    }

    #[test]
    fn ages_and_tilde() {
        let now = Utc::now();
        assert_eq!(
            relative_age(Some(now - chrono::Duration::minutes(5)), now),
            "5m ago"
        );
        assert_eq!(
            relative_age(Some(now - chrono::Duration::hours(3)), now),
            "3h ago"
        );
        assert_eq!(relative_age(None, now), "-");
        assert_eq!(tilde("/home/a/p", Some("/home/a")), "~/p");
        assert_eq!(tilde("/home/ab/p", Some("/home/a")), "/home/ab/p");
    }
}
