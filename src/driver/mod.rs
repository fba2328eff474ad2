//! Storage drivers: how read-only layers and writable layers are stacked on disk.
//!
//! A driver owns `ROOT/<driver-name>/` and nothing else. It knows layers only by an opaque
//! cache-id (never a digest, as Docker since 1.10) and a parent cache-id; it knows nothing
//! of images, tars or the metadata store.

pub mod btrfs;
mod btrfs_ioctl;
pub mod changes;
mod fsutil;
pub mod overlay;
pub mod vfs;

use crate::archive::WhiteoutFormat;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    ReadOnly,
    ReadWrite,
    /// A container's writable layer: read-write, and nothing is ever built on it, so it needs
    /// no short link for children (overlay: one fsync and one symlink fewer per `create`).
    Container,
}

/// Bytes and inodes a layer's own directory uses (not its parents').
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Sum of st_size of regular files and symlinks, hardlinks counted once (as Docker's SizeRw).
    pub bytes: u64,
    pub inodes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("layer {0} does not exist in the driver")]
    NotFound(String),
    #[error("layer {0} already exists in the driver")]
    Exists(String),
    #[error("mounting layer {id}: {reason}")]
    Mount { id: String, reason: String },
    /// `--storage-opt` the driver cannot honour, in Docker's words for that driver.
    #[error("{0}")]
    StorageOpt(&'static str),
    #[error("storage driver {driver} is not supported here: {reason}")]
    Unsupported {
        driver: &'static str,
        reason: String,
    },
}

impl DriverError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DriverError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The driver interface, shaped after Docker's graphdriver and containerd's snapshotter.
///
/// Reference counting of mounts across processes is the caller's business (the container
/// store records it); `mount` is idempotent and `unmount` of an unmounted layer is a no-op.
pub trait Driver: Send + Sync {
    fn name(&self) -> &'static str;
    /// Create layer `id` on top of `parent`. For vfs the new layer starts as a copy of the parent.
    fn create(&self, id: &str, parent: Option<&str>, kind: LayerKind) -> Result<(), DriverError>;
    /// Remove the layer and all its directories (unmounting first if needed). Missing is not an error.
    fn remove(&self, id: &str) -> Result<(), DriverError>;
    fn exists(&self, id: &str) -> bool;
    /// The directory a layer tar is applied into (overlay: `<id>/diff`; vfs: `<id>/dir`).
    fn diff_dir(&self, id: &str) -> PathBuf;
    /// How whiteouts must be written into `diff_dir` when applying a layer tar.
    fn whiteout_format(&self) -> WhiteoutFormat;
    /// Make the layer's full root filesystem visible and return its path (overlay: a real kernel
    /// overlay mount at `<id>/merged`; vfs: the layer directory itself).
    fn mount(&self, id: &str) -> Result<PathBuf, DriverError>;
    fn unmount(&self, id: &str) -> Result<(), DriverError>;
    /// A mount for filling a layer once (a container's init layer), whose writes need not
    /// reach the disk before the unmount: overlay mounts it `volatile`, so the unmount does not
    /// sync the whole filesystem. Losing those writes in a power cut only costs mount points
    /// the runtime creates again.
    fn mount_scratch(&self, id: &str) -> Result<PathBuf, DriverError> {
        self.mount(id)
    }
    fn is_mounted(&self, id: &str) -> bool;
    /// The layer's own usage (overlay: its upper/diff dir; vfs: its whole copy).
    fn usage(&self, id: &str) -> Result<Usage, DriverError>;
    /// `strata info` lines, e.g. ("Backing Filesystem", "extfs"), ("Supports d_type", "true").
    fn status(&self) -> Vec<(String, String)>;
    /// `inspect` GraphDriver.Data (LowerDir, MergedDir, UpperDir, WorkDir for overlay).
    fn metadata(&self, id: &str) -> Vec<(String, String)>;
    /// All cache-ids present on disk, for finding leftovers of interrupted operations.
    fn list(&self) -> Result<Vec<String>, DriverError>;
    /// What layer `id` changed relative to its parent layer `parent` (`docker diff`). The
    /// default compares the two full trees (drivers whose layers are full copies, as vfs).
    fn changes(&self, id: &str, parent: Option<&str>) -> Result<Vec<changes::Change>, DriverError> {
        let p = parent.map(|p| self.diff_dir(p));
        changes::tree_changes(&self.diff_dir(id), p.as_deref())
    }
    /// Whether `limit_size` works here (`--storage-opt size`): Ok, or the error Docker gives.
    fn size_limit_supported(&self) -> Result<(), DriverError>;
    /// Limit what container layer `id` may write to `bytes` (writes past it fail inside the
    /// container; the store and other layers are not affected).
    fn limit_size(&self, id: &str, bytes: u64) -> Result<(), DriverError> {
        let _ = (id, bytes);
        self.size_limit_supported()
    }
}

/// `strata info`'s line on `--storage-opt size`: which drivers and filesystems limit a
/// container's writable layer.
pub const SIZE_LIMIT_SUPPORT: &str = "size on btrfs (qgroup limit); not on overlay or vfs (they need xfs project quotas, which this kernel lacks)";

/// Which driver a root uses when the user does not say: btrfs on btrfs (as Docker chooses),
/// else overlay where the backing filesystem supports it (a probe mount succeeds), else vfs.
pub fn default_driver_name(root: &Path) -> &'static str {
    if btrfs::supported(root).is_ok() {
        "btrfs"
    } else if overlay::supported(root).is_ok() {
        "overlay"
    } else {
        "vfs"
    }
}

/// Whether driver `name` can work on `root`, checked before a store records its choice (so a
/// refused `--storage-driver btrfs` off btrfs leaves nothing behind).
pub fn usable(root: &Path, name: &str) -> Result<(), DriverError> {
    match name {
        "btrfs" => btrfs::supported(root),
        "overlay" | "overlay2" | "vfs" => Ok(()),
        _ => Err(DriverError::Unsupported {
            driver: "unknown",
            reason: format!("no driver named {name:?} (choose overlay, btrfs or vfs)"),
        }),
    }
}

/// Open the named driver on `ROOT/<name>`.
pub fn open(root: &Path, name: &str) -> Result<Box<dyn Driver>, DriverError> {
    match name {
        "overlay" | "overlay2" => Ok(Box::new(overlay::Overlay::open(&root.join("overlay"))?)),
        "vfs" => Ok(Box::new(vfs::Vfs::open(&root.join("vfs"))?)),
        "btrfs" => Ok(Box::new(btrfs::Btrfs::open(&root.join("btrfs"))?)),
        _ => Err(DriverError::Unsupported {
            driver: "unknown",
            reason: format!("no driver named {name:?} (choose overlay, btrfs or vfs)"),
        }),
    }
}
