//! Layer tar streams: applying an untrusted layer tar onto a directory (safely), recording
//! the tar-split data that lets strata re-create the exact original tar from the unpacked
//! files, and writing tars of directories (import from a directory, export, commit).
//!
//! This module knows nothing of images, drivers or the metadata store: it works on a
//! directory and a byte stream.

pub mod compression;
pub mod extract;
pub mod foreign_split;
mod tar_header;
pub mod tarsplit;
pub mod write;

#[cfg(test)]
mod testutil;

use crate::digest::Digest;
use std::path::PathBuf;

pub use compression::{Compression, decompress};
pub use extract::{ContentDonor, apply_layer, apply_layer_with};
pub use tarsplit::reassemble;
pub use write::{tar_changes, tar_directory};

/// Whether `block` can start a tar archive: a header block whose checksum is right, or the
/// zero block that ends an (empty) archive. Tells "not a tar at all" from a damaged tar.
pub fn is_tar_header(block: &[u8; 512]) -> bool {
    block.iter().all(|&b| b == 0) || tar_header::verify_checksum(block).is_ok()
}

/// How whiteouts (`.wh.NAME`, `.wh..wh..opq`) in a layer tar are represented on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutFormat {
    /// overlayfs: a whiteout becomes a 0/0 character device, an opaque directory gets the
    /// `trusted.overlay.opaque=y` xattr. The layer directory holds only this layer's changes.
    Overlay,
    /// The layer directory is a full copy of its parent (vfs): a whiteout deletes the path,
    /// an opaque marker empties the directory of what the parent had.
    Apply,
}

/// What applying a layer produced.
#[derive(Clone, Debug)]
pub struct AppliedLayer {
    /// sha256 of the whole uncompressed stream, read to EOF (Docker's diffID).
    pub diff_id: Digest,
    /// Bytes of regular file content plus symlink targets: what Docker's overlay2 reports as
    /// the layer's size (the st_size sum of its unpacked files).
    pub size: u64,
    /// Bytes of uncompressed tar consumed.
    pub tar_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading layer stream: {0}")]
    Read(#[source] std::io::Error),
    #[error("malformed tar: {0}")]
    Malformed(String),
    #[error("unsafe tar entry {path:?}: {reason}")]
    Unsafe { path: String, reason: &'static str },
    #[error("truncated tar stream")]
    Truncated,
    #[error("tar-split data does not match the layer: {0}")]
    SplitMismatch(String),
    #[error("unsupported compression: {0}")]
    Compression(String),
}

impl ArchiveError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ArchiveError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
