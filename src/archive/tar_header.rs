//! The tar block parser for layer streams: header blocks (ustar, GNU long names/links, PAX
//! extended and global headers, base-256 numbers) into [`Entry`] values.
//!
//! Kept apart from the applier ([`super::extract`]) so that what a header *means* is decided in
//! one place, with no file system access: every byte still flows through the applier, which
//! hashes it (the diffID) and records it for tar-split.

use super::ArchiveError;
use crate::digest::HashingReader;
use rustix::fs::Timespec;
use std::io::{BufReader, Read};

pub(super) const BLOCK: usize = 512;
/// Upper bound for the data of PAX headers and GNU long names/links, which are buffered.
pub(super) const MAX_META: u64 = 16 << 20;

/// The layer stream, hashed as it is read (the diffID is the hash of every byte).
pub(super) struct Input<R: Read> {
    pub(super) r: HashingReader<BufReader<R>>,
}

impl<R: Read> Input<R> {
    /// Reads until `buf` is full or EOF; returns the number of bytes read.
    pub(super) fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ArchiveError> {
        let mut n = 0;
        while n < buf.len() {
            match self.r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ArchiveError::Read(e)),
            }
        }
        Ok(n)
    }
    pub(super) fn exact(&mut self, buf: &mut [u8]) -> Result<(), ArchiveError> {
        if self.fill(buf)? < buf.len() {
            return Err(ArchiveError::Truncated);
        }
        Ok(())
    }
}

pub(super) fn malformed(s: impl Into<String>) -> ArchiveError {
    ArchiveError::Malformed(s.into())
}

pub(super) fn unsafe_entry(path: &[u8], reason: &'static str) -> ArchiveError {
    ArchiveError::Unsafe {
        path: String::from_utf8_lossy(path).into_owned(),
        reason,
    }
}

pub(super) fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// A NUL-terminated header string field. Bytes other than NUL after the terminator would
/// hide part of a name, so they are refused.
pub(super) fn cstr_field<'a>(f: &'a [u8], what: &[u8]) -> Result<&'a [u8], ArchiveError> {
    match f.iter().position(|&b| b == 0) {
        None => Ok(f),
        Some(i) => {
            if f[i..].iter().any(|&b| b != 0) {
                return Err(unsafe_entry(what, "NUL byte inside a name field"));
            }
            Ok(&f[..i])
        }
    }
}

/// A numeric header field: octal (space/NUL terminated) or GNU base-256.
pub(super) fn parse_num(f: &[u8]) -> Result<i64, ArchiveError> {
    if f[0] & 0x80 != 0 {
        let neg = f[0] & 0x40 != 0;
        let mut v: i128 = if neg { -1 } else { 0 };
        for (i, &b) in f.iter().enumerate() {
            let b = if i == 0 && !neg { b & 0x7f } else { b };
            if v.unsigned_abs() > (1u128 << 100) {
                return Err(malformed("base-256 number too large"));
            }
            v = (v << 8) | i128::from(b);
        }
        return i64::try_from(v).map_err(|_| malformed("base-256 number too large"));
    }
    let mut v: i64 = 0;
    let mut i = 0;
    while i < f.len() && f[i] == b' ' {
        i += 1;
    }
    while i < f.len() {
        let c = f[i];
        match c {
            b'0'..=b'7' => {
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(i64::from(c - b'0')))
                    .ok_or_else(|| malformed("octal number too large"))?;
            }
            b' ' | 0 => break,
            _ => {
                return Err(malformed(format!(
                    "invalid octal number {:?}",
                    String::from_utf8_lossy(f)
                )));
            }
        }
        i += 1;
    }
    Ok(v)
}

pub(super) fn parse_unsigned(f: &[u8], what: &str) -> Result<u64, ArchiveError> {
    u64::try_from(parse_num(f)?).map_err(|_| malformed(format!("negative {what}")))
}

pub(super) fn verify_checksum(h: &[u8; BLOCK]) -> Result<(), ArchiveError> {
    let stored = parse_num(&h[148..156])?;
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    if stored != unsigned && stored != signed {
        return Err(malformed(format!(
            "bad header checksum (stored {stored}, computed {unsigned})"
        )));
    }
    Ok(())
}

#[derive(Default)]
pub(super) struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<Timespec>,
    atime: Option<Timespec>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: bool,
}

pub(super) fn parse_decimal(v: &[u8], what: &str) -> Result<u64, ArchiveError> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(malformed(format!(
            "bad PAX {what} {:?}",
            String::from_utf8_lossy(v)
        )));
    }
    std::str::from_utf8(v)
        .unwrap()
        .parse()
        .map_err(|_| malformed(format!("PAX {what} out of range")))
}

pub(super) fn parse_pax_time(v: &[u8]) -> Result<Timespec, ArchiveError> {
    let bad = || malformed(format!("bad PAX time {:?}", String::from_utf8_lossy(v)));
    let (neg, v) = match v.strip_prefix(b"-") {
        Some(r) => (true, r),
        None => (false, v),
    };
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if int.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let secs = i64::try_from(parse_decimal(int, "time")?).map_err(|_| bad())?;
    let mut nsec: i64 = 0;
    for i in 0..9 {
        nsec = nsec * 10 + frac.get(i).map_or(0, |c| i64::from(c - b'0'));
    }
    Ok(if !neg {
        Timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        }
    } else if nsec == 0 {
        Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        }
    } else {
        Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nsec,
        }
    })
}

pub(super) fn parse_pax(mut data: &[u8], p: &mut Pax) -> Result<(), ArchiveError> {
    // Trailing NULs (padding some writers leave in the data) end the records.
    while !data.is_empty() && data[0] != 0 {
        let sp = data
            .iter()
            .position(|&c| c == b' ')
            .ok_or_else(|| malformed("bad PAX record"))?;
        let len = parse_decimal(&data[..sp], "record length")? as usize;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(malformed("bad PAX record length"));
        }
        let rec = &data[sp + 1..len - 1];
        data = &data[len..];
        let eq = rec
            .iter()
            .position(|&c| c == b'=')
            .ok_or_else(|| malformed("bad PAX record"))?;
        let (k, v) = (&rec[..eq], &rec[eq + 1..]);
        match k {
            b"path" => p.path = Some(v.to_vec()),
            b"linkpath" => p.linkpath = Some(v.to_vec()),
            b"size" => p.size = Some(parse_decimal(v, "size")?),
            b"uid" => p.uid = Some(parse_decimal(v, "uid")?),
            b"gid" => p.gid = Some(parse_decimal(v, "gid")?),
            b"mtime" => p.mtime = Some(parse_pax_time(v)?),
            b"atime" => p.atime = Some(parse_pax_time(v)?),
            _ => {
                if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                    p.xattrs.retain(|(n, _)| n != name);
                    p.xattrs.push((name.to_vec(), v.to_vec()));
                } else if k.starts_with(b"GNU.sparse.") {
                    p.sparse = true;
                }
            }
        }
    }
    Ok(())
}

/// GNU long name/link data: NUL-terminated; a NUL before the end would hide part of a name.
pub(super) fn gnu_string(mut d: Vec<u8>) -> Result<Vec<u8>, ArchiveError> {
    while d.last() == Some(&0) {
        d.pop();
    }
    if d.contains(&0) {
        return Err(unsafe_entry(&d, "NUL byte in a GNU long name"));
    }
    Ok(d)
}

pub(super) struct Entry {
    pub(super) kind: u8,
    pub(super) path: Vec<u8>,
    pub(super) link: Vec<u8>,
    /// Bytes of data following the header in the stream.
    pub(super) size: u64,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: Timespec,
    pub(super) atime: Timespec,
    pub(super) major: u32,
    pub(super) minor: u32,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Types that have no data in the stream whatever their size field says (as Go's archive/tar,
/// which Docker uses, reads them).
pub(super) fn header_only(kind: u8) -> bool {
    matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

pub(super) fn build_entry(
    h: &[u8; BLOCK],
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Pax>,
) -> Result<Entry, ArchiveError> {
    let pax = pax.unwrap_or_default();
    if pax.sparse || h[156] == b'S' {
        return Err(malformed("GNU sparse files are not supported"));
    }
    let path = match (pax.path, long_name) {
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => {
            let name = cstr_field(&h[0..100], &h[0..100])?;
            let ustar = &h[257..263] == b"ustar\0";
            let prefix = if ustar {
                cstr_field(&h[345..500], name)?
            } else {
                &b""[..]
            };
            if prefix.is_empty() {
                name.to_vec()
            } else {
                [prefix, b"/", name].concat()
            }
        }
    };
    if path.contains(&0) {
        return Err(unsafe_entry(&path, "NUL byte in name"));
    }
    let link = match (pax.linkpath, long_link) {
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => cstr_field(&h[157..257], &path)?.to_vec(),
    };
    if link.contains(&0) {
        return Err(unsafe_entry(&path, "NUL byte in link target"));
    }
    let mut kind = h[156];
    if kind == 0 || kind == b'7' {
        kind = if path.ends_with(b"/") { b'5' } else { b'0' };
    }
    let size = match pax.size {
        Some(s) => s,
        None => parse_unsigned(&h[124..136], "size")?,
    };
    if size > i64::MAX as u64 {
        return Err(malformed("entry size out of range"));
    }
    let size = if header_only(kind) { 0 } else { size };
    let id = |v: u64| u32::try_from(v).map_err(|_| malformed("uid/gid out of range"));
    let uid = id(match pax.uid {
        Some(u) => u,
        None => parse_unsigned(&h[108..116], "uid")?,
    })?;
    let gid = id(match pax.gid {
        Some(g) => g,
        None => parse_unsigned(&h[116..124], "gid")?,
    })?;
    let mtime = match pax.mtime {
        Some(t) => t,
        None => Timespec {
            tv_sec: parse_num(&h[136..148])?,
            tv_nsec: 0,
        },
    };
    let atime = pax.atime.unwrap_or(mtime);
    let mode = (parse_num(&h[100..108])? & 0o7777) as u32;
    let (major, minor) = if matches!(kind, b'3' | b'4') {
        let dev = |f: &[u8]| {
            u32::try_from(parse_num(f)?).map_err(|_| malformed("device number out of range"))
        };
        (dev(&h[329..337])?, dev(&h[337..345])?)
    } else {
        (0, 0)
    };
    Ok(Entry {
        kind,
        path,
        link,
        size,
        mode,
        uid,
        gid,
        mtime,
        atime,
        major,
        minor,
        xattrs: pax.xattrs,
    })
}
