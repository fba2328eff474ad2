//! Reading another engine's store as data: every path is resolved beneath the store root
//! without following symlinks, every name taken from its metadata is checked to be a plain
//! hex ID before it becomes a path component, and every file is opened read-only.

use crate::digest::Digest;
use crate::image::Reference;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Metadata files (JSON indexes, configs) larger than this are refused as not metadata.
const MAX_META: u64 = 256 << 20;

/// One layer of a source image, bottom first in `SourceImage::layers`.
#[derive(Clone, Debug)]
pub struct SourceLayer {
    pub diff_id: Digest,
    /// The source's own name for the layer (Docker: chainID; containers/storage: layer ID).
    pub source_id: String,
    /// Relative to the source root: the tar-split data (gzip of JSON lines).
    pub split: PathBuf,
    /// Relative to the source root: the unpacked layer directory.
    pub dir: PathBuf,
    /// Bytes of file content, as the source reports them (for progress and `--dry-run`).
    pub size: u64,
}

#[derive(Clone, Debug)]
pub struct SourceImage {
    pub id: Digest,
    pub config: Vec<u8>,
    pub layers: Vec<SourceLayer>,
    pub names: Vec<Reference>,
    /// The image it was built from (Docker's build parent), so an untagged intermediate image
    /// stays hidden from `images` as in the source.
    pub parent: Option<Digest>,
}

/// What a source store holds: the images that could be read, and why others could not.
#[derive(Debug, Default)]
pub struct SourceStore {
    pub images: Vec<SourceImage>,
    pub problems: Vec<String>,
}

/// A source store's root directory, opened once.
pub struct SourceRoot {
    pub path: PathBuf,
    fd: OwnedFd,
}

fn flags_beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

impl SourceRoot {
    pub fn open(path: &Path) -> io::Result<SourceRoot> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(SourceRoot {
            path: path.to_path_buf(),
            fd,
        })
    }

    fn open_at(&self, rel: &Path, fl: OFlags) -> io::Result<OwnedFd> {
        rustix::fs::openat2(
            &self.fd,
            rel,
            fl | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            flags_beneath(),
        )
        .map_err(|e| {
            let e = io::Error::from(e);
            io::Error::new(e.kind(), format!("{}: {e}", self.path.join(rel).display()))
        })
    }

    /// A directory beneath the root (no symlink on the way), as an fd.
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.open_at(rel, OFlags::DIRECTORY)
    }

    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let f = File::from(self.open_at(rel, OFlags::empty())?);
        if !f.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a regular file", self.path.join(rel).display()),
            ));
        }
        Ok(f)
    }

    pub fn exists(&self, rel: &Path) -> bool {
        self.open_at(rel, OFlags::PATH).is_ok()
    }

    /// A whole metadata file (bounded).
    pub fn read(&self, rel: &Path) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_file(rel)?
            .take(MAX_META + 1)
            .read_to_end(&mut out)?;
        if out.len() as u64 > MAX_META {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: too large for metadata", self.path.join(rel).display()),
            ));
        }
        Ok(out)
    }

    pub fn read_string(&self, rel: &Path) -> io::Result<String> {
        String::from_utf8(self.read(rel)?).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not UTF-8", self.path.join(rel).display()),
            )
        })
    }

    /// Names in a directory beneath the root.
    pub fn list(&self, rel: &Path) -> io::Result<Vec<String>> {
        let fd = self.open_dir(rel)?;
        let mut out = Vec::new();
        let dir = rustix::fs::Dir::read_from(&fd).map_err(io::Error::from)?;
        for e in dir {
            let e = e.map_err(io::Error::from)?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(String::from_utf8_lossy(n).into_owned());
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A source's name for something that becomes a path component: exactly 64 lowercase hex
/// digits (Docker cache-ids and chainIDs, containers/storage layer and image IDs), so it can
/// hold no `/`, no `..` and nothing else a path could use.
pub fn checked_id(what: &str, s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        Ok(s.to_string())
    } else {
        Err(format!("{what} {s:?} is not a 64-digit hex ID"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_be_paths_are_refused() {
        let good = "a".repeat(64);
        assert!(checked_id("x", &good).is_ok());
        for bad in [
            "../../etc",
            "",
            &format!("{}/x", "a".repeat(62)),
            &"A".repeat(64),
            &"a".repeat(65),
        ] {
            assert!(checked_id("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_symlink_is_followed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("outside"), b"x").unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("link")).unwrap();
        std::os::unix::fs::symlink("/", root.join("abs")).unwrap();
        let r = SourceRoot::open(&root).unwrap();
        assert!(r.read(Path::new("link")).is_err());
        assert!(r.read(Path::new("abs/etc/passwd")).is_err());
        assert!(r.read(Path::new("../outside")).is_err());
    }
}
