//! Image references, normalized as Docker does: `busybox` is `docker.io/library/busybox:latest`;
//! a first component with a `.` or `:` or equal to `localhost` is a registry host.

use crate::digest::Digest;
use std::fmt;

#[derive(Debug, thiserror::Error)]
#[error("invalid reference format {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, e.g. `docker.io`, `127.0.0.1:5000`.
    pub domain: String,
    /// Repository path within the registry, e.g. `library/busybox`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

pub const DEFAULT_DOMAIN: &str = "docker.io";

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or runs of '-'
    if c.is_empty() {
        return false;
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let err = |reason| ReferenceError {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((n, d)) => (
                n,
                Some(d.parse::<Digest>().map_err(|_| err("invalid digest"))?),
            ),
            None => (input, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => {
                (&rest[..i], Some(rest[i + 1..].to_string()))
            }
            _ => (rest, None),
        };
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(err("invalid tag"));
        }
        if name.is_empty() {
            return Err(err("empty repository name"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if name.len() > 255 {
            return Err(err("repository name must not be more than 255 characters"));
        }
        if !path.split('/').all(valid_component) {
            return Err(err(
                "repository name must be lowercase alphanumerics with separators",
            ));
        }
        if domain.is_empty()
            || domain.contains(|c: char| !(c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        {
            return Err(err("invalid registry host"));
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// Parse and apply Docker's default tag `latest` when neither tag nor digest is given.
    pub fn parse_tagged(input: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::parse(input)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".to_string());
        }
        Ok(r)
    }

    /// `docker.io/library/busybox` (no tag or digest).
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short form Docker prints: `busybox`, `acme/app`, `127.0.0.1:5000/fat`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix("library/")
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        }
    }

    /// The key used in the refs table: full repository plus `:tag` or `@digest`.
    pub fn key(&self) -> String {
        match (&self.tag, &self.digest) {
            (_, Some(d)) => format!("{}@{}", self.repository(), d),
            (Some(t), None) => format!("{}:{}", self.repository(), t),
            (None, None) => self.repository(),
        }
    }

    /// Familiar form with tag or digest, as in `RepoTags`: `busybox:latest`.
    pub fn familiar(&self) -> String {
        match (&self.tag, &self.digest) {
            (_, Some(d)) => format!("{}@{}", self.familiar_repository(), d),
            (Some(t), None) => format!("{}:{}", self.familiar_repository(), t),
            (None, None) => self.familiar_repository(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        let r = Reference::parse_tagged("busybox").unwrap();
        assert_eq!(r.key(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        let r = Reference::parse_tagged("127.0.0.1:5000/fat").unwrap();
        assert_eq!(r.key(), "127.0.0.1:5000/fat:latest");
        assert_eq!(r.familiar(), "127.0.0.1:5000/fat:latest");
        let r = Reference::parse("acme/app:1.0").unwrap();
        assert_eq!(r.key(), "docker.io/acme/app:1.0");
        assert_eq!(r.familiar(), "acme/app:1.0");
        let r = Reference::parse("localhost/x").unwrap();
        assert_eq!(r.repository(), "localhost/x");
        let d = Digest::of(b"x");
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.key(), format!("docker.io/library/busybox@{d}"));
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "UPPER",
            "a:b:c",
            "x@sha256:12",
            "a//b",
            "-a",
            "a:",
            "a:-x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
