//! Docker's time arguments (`logs --since/--until`, `events --since/--until`): an RFC 3339
//! time (or date), Unix seconds with an optional fraction, or a duration before now (`10m`,
//! `1h30m`, `90s`).

use anyhow::{Result, anyhow};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// The time `arg` names, as nanoseconds since the Unix epoch.
pub fn parse_nanos(arg: &str, now: DateTime<Utc>) -> Result<i64> {
    let bad = || {
        anyhow!(
            "invalid time {arg:?}: use RFC 3339 (2026-01-02T15:04:05Z), Unix seconds, or a duration such as 10m"
        )
    };
    let a = arg.trim();
    if a.is_empty() {
        return Err(bad());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(a) {
        return t.timestamp_nanos_opt().ok_or_else(bad);
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(a, f) {
            return t.and_utc().timestamp_nanos_opt().ok_or_else(bad);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(a, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_utc().timestamp_nanos_opt())
            .ok_or_else(bad);
    }
    if a.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (secs, frac) = a.split_once('.').unwrap_or((a, ""));
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        let mut frac = frac.to_string();
        if frac.len() > 9 {
            return Err(bad());
        }
        while frac.len() < 9 {
            frac.push('0');
        }
        let nanos: i64 = frac.parse().map_err(|_| bad())?;
        return secs
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(nanos))
            .ok_or_else(bad);
    }
    let d = duration_nanos(a).ok_or_else(bad)?;
    now.timestamp_nanos_opt()
        .and_then(|n| n.checked_sub(d))
        .ok_or_else(bad)
}

/// Go's time.ParseDuration for the units Docker users write: h, m, s, ms, us, ns.
fn duration_nanos(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    Some(total as i64)
}

/// An RFC 3339 time (as `logs` entries carry) in nanoseconds; None if it is not one.
pub fn rfc3339_nanos(t: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s| parse_nanos(s, now).unwrap();
        assert_eq!(
            at("2026-11-28T10:00:00Z"),
            now.timestamp_nanos_opt().unwrap()
        );
        assert_eq!(at("1700000000"), 1_700_000_000_000_000_000);
        assert_eq!(at("1700000000.5"), 1_700_000_000_500_000_000);
        assert_eq!(at("10m"), at("2026-11-28T09:50:00Z"));
        assert_eq!(at("1h30m"), at("2026-11-28T08:30:00Z"));
        assert_eq!(at("2026-11-28"), at("2026-11-28T00:00:00Z"));
        assert!(parse_nanos("yesterday", now).is_err());
        assert!(parse_nanos("10x", now).is_err());
    }
}
