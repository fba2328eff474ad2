//! Advisory file locks (flock) between strata processes sharing a root.
//!
//! flock rather than fcntl locks: they belong to the open file description, so two threads of
//! one process holding separate opens exclude each other too, and the kernel drops them when a
//! process dies, so a SIGKILLed strata never leaves a lock behind.

use rustix::fs::{FlockOperation, flock};
use std::fs::File;
use std::io;
use std::path::Path;

pub struct LockFile {
    _file: File,
}

/// Open (creating) a lock file without truncating it.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

impl LockFile {
    /// Wait for an exclusive lock.
    pub fn exclusive(path: &Path) -> io::Result<LockFile> {
        let f = open_lock_file(path)?;
        flock(&f, FlockOperation::LockExclusive)?;
        Ok(LockFile { _file: f })
    }
    /// Wait for a shared lock.
    pub fn shared(path: &Path) -> io::Result<LockFile> {
        let f = open_lock_file(path)?;
        flock(&f, FlockOperation::LockShared)?;
        Ok(LockFile { _file: f })
    }
    /// An exclusive lock if nobody else holds the file, else None.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<LockFile>> {
        let f = open_lock_file(path)?;
        match flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(LockFile { _file: f })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
    /// Turn a held exclusive lock into a shared one.
    pub fn downgrade(&self) -> io::Result<()> {
        flock(&self._file, FlockOperation::LockShared)?;
        Ok(())
    }
}
