//! Helpers for the archive tests: hand-made tar headers and a sandbox with an "outside"
//! directory that must stay untouched.

use super::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn octal(f: &mut [u8], v: u64) {
    let s = format!("{:0w$o}", v, w = f.len() - 1);
    f[..s.len()].copy_from_slice(s.as_bytes());
    f[s.len()] = 0;
}

pub fn checksum(h: &mut [u8; 512]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

/// A ustar header built by hand (no validation whatsoever).
pub fn hdr(name: &[u8], kind: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_600_000_000);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    checksum(&mut h);
    h
}

/// Appends an entry (header + data + padding).
pub fn push(t: &mut Vec<u8>, h: [u8; 512], data: &[u8]) {
    t.extend_from_slice(&h);
    t.extend_from_slice(data);
    t.resize(t.len().div_ceil(512) * 512, 0);
}

pub fn pax_record(k: &str, v: &[u8]) -> Vec<u8> {
    let rest = k.len() + v.len() + 3;
    let mut len = rest + 1;
    while len.to_string().len() + rest > len {
        len += 1;
    }
    let mut r = format!("{len} {k}=").into_bytes();
    r.extend_from_slice(v);
    r.push(b'\n');
    assert_eq!(r.len(), len);
    r
}

pub fn push_pax(t: &mut Vec<u8>, recs: &[(&str, &[u8])]) {
    let data: Vec<u8> = recs.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
    push(t, hdr(b"PaxHeader", b'x', data.len() as u64, b""), &data);
}

pub fn end(t: &mut Vec<u8>) {
    t.extend_from_slice(&[0u8; 1024]);
}

pub fn file(t: &mut Vec<u8>, name: &str, data: &[u8]) {
    push(t, hdr(name.as_bytes(), b'0', data.len() as u64, b""), data);
}
pub fn dir(t: &mut Vec<u8>, name: &str) {
    let mut h = hdr(name.as_bytes(), b'5', 0, b"");
    octal(&mut h[100..108], 0o755);
    checksum(&mut h);
    push(t, h, b"");
}
pub fn symlink(t: &mut Vec<u8>, name: &str, target: &str) {
    push(t, hdr(name.as_bytes(), b'2', 0, target.as_bytes()), b"");
}
pub fn hardlink(t: &mut Vec<u8>, name: &str, target: &str) {
    push(t, hdr(name.as_bytes(), b'1', 0, target.as_bytes()), b"");
}

/// A temporary directory holding `root` (where layers are applied) and `outside`, which
/// holds one file, `secret`, and must never change.
pub struct Sandbox {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        Sandbox {
            _tmp: tmp,
            root,
            outside,
        }
    }

    pub fn apply(
        &self,
        tar: &[u8],
        f: WhiteoutFormat,
    ) -> Result<(AppliedLayer, Vec<u8>), ArchiveError> {
        let mut split = Vec::new();
        let a = apply_layer(&self.root, tar, f, &mut split)?;
        Ok((a, split))
    }

    /// `outside` still holds exactly `secret`, unchanged and not hardlinked.
    pub fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("secret")],
            "outside was written to"
        );
        let p = self.outside.join("secret");
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        assert_eq!(
            fs::symlink_metadata(&p).unwrap().nlink(),
            1,
            "secret was hardlinked"
        );
    }

    pub fn outside_str(&self) -> String {
        self.outside.to_str().unwrap().to_string()
    }
}

pub fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

/// An xattr of `p` (not following symlinks).
pub fn getx(p: &Path, name: &str) -> Result<Vec<u8>, rustix::io::Errno> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::lgetxattr(p, name, &mut buf[..])?;
    buf.truncate(n);
    Ok(buf)
}
