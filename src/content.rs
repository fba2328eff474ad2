//! The content store: immutable blobs (image configs, manifests) addressed by sha256,
//! laid out as the `blobs/` of an OCI image layout. A blob is only ever visible complete:
//! written to `tmp/`, verified against its digest, fsynced and renamed into place.

use crate::atomic_file::AtomicFile;
use crate::digest::{Digest, HashingReader};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("content store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

pub struct ContentStore {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl ContentStore {
    /// `dir` is `ROOT/content`; `tmp` must be on the same filesystem.
    pub fn open(dir: &Path, tmp: &Path) -> Result<ContentStore, ContentError> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|e| ContentError::Io {
            path: blobs.clone(),
            source: e,
        })?;
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            crate::atomic_file::write_atomic(tmp, &layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(|e| ContentError::Io {
                    path: layout.clone(),
                    source: e,
                })?;
        }
        Ok(ContentStore {
            blobs,
            tmp: tmp.to_path_buf(),
        })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).exists()
    }

    /// Store `bytes`, which must hash to `expected` when given. Returns the digest.
    pub fn put(&self, bytes: &[u8], expected: Option<&Digest>) -> Result<Digest, ContentError> {
        let actual = Digest::of(bytes);
        if let Some(e) = expected
            && *e != actual
        {
            return Err(ContentError::DigestMismatch {
                expected: e.clone(),
                actual,
            });
        }
        let dest = self.path(&actual);
        if dest.exists() {
            return Ok(actual);
        }
        let io = |e| ContentError::Io {
            path: dest.clone(),
            source: e,
        };
        let mut f = AtomicFile::create(&self.tmp, &dest).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.commit().map_err(io)?;
        Ok(actual)
    }

    pub fn get(&self, d: &Digest) -> Result<Vec<u8>, ContentError> {
        let p = self.path(d);
        match fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ContentError::NotFound(d.clone())),
            Err(e) => Err(ContentError::Io { path: p, source: e }),
        }
    }

    pub fn delete(&self, d: &Digest) -> Result<(), ContentError> {
        let p = self.path(d);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(ContentError::Io { path: p, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Every blob digest present (file names that are not digests are ignored; fsck reports them).
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let io = |e| ContentError::Io {
            path: self.blobs.clone(),
            source: e,
        };
        let mut out = Vec::new();
        for ent in fs::read_dir(&self.blobs).map_err(io)? {
            let ent = ent.map_err(io)?;
            if let Some(d) = ent
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Re-hash a blob and compare to its address (for fsck). Returns the bytes hashed.
    pub fn verify(&self, d: &Digest) -> Result<u64, ContentError> {
        let p = self.path(d);
        let f = fs::File::open(&p).map_err(|e| ContentError::Io {
            path: p.clone(),
            source: e,
        })?;
        let mut r = HashingReader::new(io::BufReader::with_capacity(1 << 20, f));
        io::copy(&mut r, &mut io::sink()).map_err(|e| ContentError::Io {
            path: p.clone(),
            source: e,
        })?;
        let (actual, n) = r.finish();
        if actual != *d {
            return Err(ContentError::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        Ok(n)
    }
}

/// Read all of `r` (small JSON documents only), bounded to `limit` bytes.
pub fn read_bounded(r: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("document larger than {limit} bytes"),
        ));
    }
    Ok(buf)
}
