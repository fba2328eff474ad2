//! `--filter key=value` as Docker takes it: the same key given twice matches either value,
//! different keys must all match, and a key the command does not know is refused.

use anyhow::{Result, bail};

pub struct Filters {
    pairs: Vec<(String, String)>,
}

impl Filters {
    /// The filters given, checked against the keys this command knows.
    pub fn parse(args: &[String], known: &[&str]) -> Result<Filters> {
        let mut pairs = Vec::new();
        for a in args {
            let Some((k, v)) = a.split_once('=') else {
                bail!("bad format of filter (expected name=value)");
            };
            let k = k.trim().to_lowercase();
            if !known.contains(&k.as_str()) {
                bail!("invalid filter '{k}'");
            }
            pairs.push((k, v.to_string()));
        }
        Ok(Filters { pairs })
    }

    pub fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, key: &str) -> bool {
        self.values(key).next().is_some()
    }

    /// True when `key` is not filtered on, or one of its values satisfies `pred`.
    pub fn any(&self, key: &str, mut pred: impl FnMut(&str) -> bool) -> bool {
        !self.has(key) || self.values(key).any(&mut pred)
    }

    /// Docker's `label=k`, `label=k=v` (all must hold) and `label!=…` (none may hold).
    pub fn labels_match<'a>(&self, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        let holds = |f: &str| match f.split_once('=') {
            Some((k, v)) => labels(k) == Some(v),
            None => labels(f).is_some(),
        };
        self.values("label").all(holds) && !self.values("label!").any(holds)
    }

    /// `true`/`false` for a boolean filter such as `dangling`; an error names a bad value.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        let mut out = None;
        for v in self.values(key) {
            out = Some(match v.to_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("invalid filter '{key}={v}'"),
            });
        }
        Ok(out)
    }
}

/// Go's `path.Match`: `*` any run of characters but `/`, `?` one such character, `[…]`
/// a class; used for `reference=` patterns as Docker's `reference.FamiliarMatch`.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != '/')
                .any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && s[0] != '/' && go(&p[1..], &s[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|&c| c == ']') else {
                    return false;
                };
                let Some(&c) = s.first() else { return false };
                let class = &p[1..end];
                let (neg, class) = match class.first() {
                    Some('^') | Some('!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != neg && go(&p[end + 1..], &s[1..])
            }
            Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && go(&p[2..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

/// Docker's `until=`/`before`-style time: a Unix timestamp, an RFC 3339 time or date, or a
/// duration before now (`10m`, `24h`, `1h30m`).
pub fn parse_until(v: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(secs) = v.parse::<f64>() {
        return chrono::DateTime::from_timestamp(secs as i64, 0)
            .ok_or_else(|| anyhow::anyhow!("invalid filter 'until={v}'"));
    }
    if let Some(t) = strata::image::config::parse_time(v) {
        return Ok(t);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut any = false;
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next().expect("s"));
        }
        let n: f64 = num
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid filter 'until={v}'"))?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => bail!("invalid filter 'until={v}'"),
        };
        any = true;
    }
    if !any || !num.is_empty() {
        bail!("invalid filter 'until={v}'");
    }
    Ok(chrono::Utc::now() - chrono::Duration::milliseconds((total * 1000.0) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_as_go_path_match() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("busy*:lat*", "busybox:latest"));
        assert!(!glob_match("*", "acme/app"));
        assert!(glob_match("*/*", "acme/app"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(glob_match("[a-c]usybox", "busybox"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Filters::parse(&["nope=1".into()], &["name"]).err().unwrap();
        assert_eq!(e.to_string(), "invalid filter 'nope'");
        assert!(Filters::parse(&["name".into()], &["name"]).is_err());
    }

    #[test]
    fn until_takes_durations_and_times() {
        let t = parse_until("1h30m").unwrap();
        let d = chrono::Utc::now() - t;
        assert!((d.num_minutes() - 90).abs() <= 1);
        assert!(parse_until("2026-01-02T03:04:05Z").is_ok());
        assert!(parse_until("1700000000").is_ok());
        assert!(parse_until("soon").is_err());
    }
}
