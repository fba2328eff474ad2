//! Output the way the docker CLI prints it: tabwriter tables (min width 10, padding 3),
//! decimal sizes with three significant digits (`1.98MB`), "21 minutes ago".

use std::io::{self, Write};

/// Docker's `units.HumanSizeWithPrecision(size, 3)` (`ps`, `images`).
pub fn human_size(bytes: u64) -> String {
    human_size_prec(bytes, 3)
}

/// Docker's `units.HumanSizeWithPrecision(size, precision)`; `units.HumanSize` (`system df`,
/// prune totals) is precision 4: `335.2MB`.
pub fn human_size_prec(bytes: u64, precision: i32) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g(size, precision.max(1)), UNITS[i])
}

/// Docker's `units.BytesSize` (`stats`' memory): binary units, `%.4g` (`1.5MiB`, `23.45GiB`).
pub fn bytes_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", go_g(size, 4), UNITS[i])
}

/// Go's `%.{p}g` for the non-negative values sizes produce.
fn go_g(v: f64, p: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.log10().floor() as i32;
    let rounded = {
        let scale = 10f64.powi(p - 1 - exp);
        (v * scale).round() / scale
    };
    let exp = if rounded >= 10f64.powi(exp + 1) {
        exp + 1
    } else {
        exp
    };
    if exp >= p {
        return format!(
            "{}e+{:02}",
            trim_zeros(&format!(
                "{:.*}",
                (p - 1) as usize,
                rounded / 10f64.powi(exp)
            )),
            exp
        );
    }
    let decimals = (p - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{rounded:.decimals$}"))
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    let hours_f = d.num_milliseconds() as f64 / 3_600_000.0;
    if secs < 1 {
        return "Less than a second".into();
    } else if secs == 1 {
        return "1 second".into();
    } else if secs < 60 {
        return format!("{secs} seconds");
    }
    let minutes = d.num_minutes();
    if minutes == 1 {
        return "About a minute".into();
    } else if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = hours_f.round() as i64;
    if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", d.num_hours() / 24 / 365)
    }
}

/// "21 minutes ago" for an RFC 3339 time; "N/A" when absent or unparsable.
pub fn ago(rfc3339: &str) -> String {
    match crate_time(rfc3339) {
        Some(t) => format!("{} ago", human_duration(chrono::Utc::now() - t)),
        None => "N/A".into(),
    }
}

fn crate_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    strata::image::config::parse_time(s)
}

/// Go's `time.Time.String()` of a UTC time, as Docker's `CreatedAt` columns print it:
/// `2026-11-23 15:22:34 +0000 UTC`.
pub fn go_time(rfc3339: &str) -> String {
    crate_time(rfc3339).map_or_else(String::new, |t| {
        t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()
    })
}

/// RFC 3339 in UTC with `Z` and the fraction's trailing zeros cut (Go's RFC3339Nano), as the
/// daemon writes times in `inspect`; Go's zero time when absent.
pub fn docker_time(rfc3339: &str) -> String {
    match crate_time(rfc3339) {
        Some(t) => {
            let s = t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
            let s = s.trim_end_matches('0').trim_end_matches('.');
            format!("{s}Z")
        }
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// Docker's `stringutils.Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= max {
        return s.to_string();
    }
    let mut out: String = chars[..max.saturating_sub(1)].iter().collect();
    out.push('…');
    out
}

/// A table as `text/tabwriter` with minwidth 10, padding 3 lays it out; the last column is not padded.
pub fn table(out: &mut impl Write, rows: &[Vec<String>]) -> io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                let w = (widths[i] + 3).max(10);
                line.extend(std::iter::repeat_n(' ', w - c.chars().count()));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1_980_000), "1.98MB");
        assert_eq!(human_size(333_182_190), "333MB");
        assert_eq!(human_size(6_920_000), "6.92MB");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(157_300_000), "157MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
    }

    #[test]
    fn sizes_with_precision_4_like_docker_df() {
        assert_eq!(human_size_prec(335_200_000, 4), "335.2MB");
        assert_eq!(human_size_prec(3_145_728, 4), "3.146MB");
        assert_eq!(human_size_prec(1_984_000, 4), "1.984MB");
        assert_eq!(human_size_prec(164, 4), "164B");
        assert_eq!(human_size_prec(0, 4), "0B");
        assert_eq!(human_size_prec(166_970_000, 4), "167MB");
        assert_eq!(human_size_prec(3_147_724, 3), "3.15MB");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(
            human_duration(chrono::Duration::seconds(21 * 60 + 5)),
            "21 minutes"
        );
        assert_eq!(human_duration(chrono::Duration::seconds(2)), "2 seconds");
        assert_eq!(human_duration(chrono::Duration::hours(50)), "2 days");
    }

    #[test]
    fn ellipsis_counts_runes() {
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
    }

    #[test]
    fn table_pads_like_tabwriter() {
        let mut v = Vec::new();
        table(
            &mut v,
            &[
                vec!["REPOSITORY".into(), "TAG".into(), "SIZE".into()],
                vec!["busybox".into(), "latest".into(), "1.98MB".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "REPOSITORY   TAG       SIZE\nbusybox      latest    1.98MB\n"
        );
    }
}
