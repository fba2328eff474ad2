//! Crash-safe file replacement: write to a temp file on the same filesystem, fsync it,
//! rename over the destination, fsync the directory. A crash leaves the old file or the new
//! one, never a torn one; leftovers in a dead process's temp dir are removed by the collector.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A temp file in `tmp_dir` that becomes `dest` on `commit`, or disappears when dropped.
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl AtomicFile {
    pub fn create(tmp_dir: &Path, dest: &Path) -> io::Result<AtomicFile> {
        let tmp = tmp_dir.join(format!("atomic-{}", random_hex(8)));
        let open = || File::options().write(true).create_new(true).open(&tmp);
        // A process's temp dir is made on its first write: read-only commands never pay for it.
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(tmp_dir)?;
                open()?
            }
            r => r?,
        };
        Ok(AtomicFile {
            file: Some(file),
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("committed once");
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp, &self.dest)?;
        sync_dir(self.dest.parent().unwrap_or(Path::new("/")))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("open").write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Write `bytes` to `dest` atomically.
pub fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(tmp_dir, dest)?;
    f.write_all(bytes)?;
    f.commit()
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `n` random bytes as hex: cache-ids, container IDs, temp names.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the kernel's random source is available");
    hex::encode(b)
}
