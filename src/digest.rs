//! The sha256 content address every identity in strata is built from.
//!
//! Kept as one small type so that a digest is never confused with a cache-id or a name,
//! and so that parsing untrusted digests (from archives, manifests, the command line)
//! happens in exactly one place.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256:<64 lowercase hex>")]
pub struct DigestParseError(pub String);

/// A `sha256:<hex>` digest. Only sha256 is accepted: it is what Docker and OCI use for IDs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }
    pub fn from_bytes(b: [u8; 32]) -> Digest {
        Digest(b)
    }
    /// The 64 hex characters without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The 12-character short form Docker prints in tables.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
    /// Parse a bare 64-char hex string (as used in file names of archives).
    pub fn from_hex(s: &str) -> Result<Digest, DigestParseError> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err(DigestParseError(s.to_string()));
        }
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).map_err(|_| DigestParseError(s.to_string()))?;
        Ok(Digest(b))
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Digest, DigestParseError> {
        match s.strip_prefix("sha256:") {
            Some(h) => Digest::from_hex(h).map_err(|_| DigestParseError(s.to_string())),
            None => Err(DigestParseError(s.to_string())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}
impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// chainID of a layer stack, as Docker and OCI define it:
/// `chain(L1) = diffID(L1)`, `chain(L1..Ln) = sha256(chain(L1..Ln-1) + " " + diffID(Ln))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => Digest::of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A writer/reader adapter that hashes every byte passing through it.
pub struct Hasher(Sha256);

impl Default for Hasher {
    fn default() -> Self {
        Hasher(Sha256::new())
    }
}
impl Hasher {
    pub fn update(&mut self, b: &[u8]) {
        self.0.update(b)
    }
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}
impl Write for Hasher {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads from `inner` and hashes everything read, so a stream can be verified while it is consumed.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}
impl<R: io::Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::default(),
            count: 0,
        }
    }
    pub fn bytes_read(&self) -> u64 {
        self.count
    }
    pub fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.count)
    }
}
impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_roundtrip_and_rejects() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert!("sha256:E3B0".parse::<Digest>().is_err());
        assert!("md5:abc".parse::<Digest>().is_err());
        assert!(Digest::from_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn chain_id_matches_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::of(format!("{a} {b}").as_bytes()));
    }
}
