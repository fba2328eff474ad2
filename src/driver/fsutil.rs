//! Filesystem helpers shared by the drivers: robust recursive removal, usage walks,
//! atomic small-file writes, backing-filesystem naming and d_type probing.

use super::{DriverError, Usage};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::HashSet;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Docker's names for backing filesystems (moby `daemon/graphdriver/driver_linux.go`).
pub fn fs_name(f_type: u64) -> &'static str {
    match f_type {
        0x6175_6673 => "aufs",
        0x9123_683E => "btrfs",
        0x28cd_3d45 => "cramfs",
        0xf15f => "ecryptfs",
        0xEF53 => "extfs",
        0xF2F5_2010 => "f2fs",
        0x4750_4653 => "gpfs",
        0x72b6 => "jffs2",
        0x3153_464a => "jfs",
        0x6969 => "nfs",
        0x8584_58f6 => "ramfs",
        0x5265_4973 => "reiserfs",
        0x517B => "smb",
        0x7371_7368 => "squashfs",
        0x0102_1994 => "tmpfs",
        0xa501_fcf5 => "vxfs",
        0x5846_5342 => "xfs",
        0x2fc1_2fc1 => "zfs",
        0x794C_7630 => "overlayfs",
        0x6573_5546 => "fuse",
        0x6e73_6673 => "nsfs",
        0x00C3_6400 => "ceph",
        0xFF53_4D42 => "cifs",
        0xE0F5_E1E2 => "erofs",
        _ => "<unknown>",
    }
}

/// The statfs magic of the filesystem holding `path`.
pub fn fs_magic(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statfs(path)?;
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as u64)
}

pub const OVERLAY_MAGIC: u64 = 0x794C_7630;

/// Docker's name of the filesystem holding `path` ("extfs", "btrfs", ...; "<unknown>").
pub fn backing_fs(path: &Path) -> String {
    fs_magic(path)
        .map(fs_name)
        .unwrap_or("<unknown>")
        .to_string()
}

/// Whether `readdir` in `dir` reports file types (d_type), checked on its existing entries.
/// An empty directory gets a probe file created and removed.
pub fn supports_dtype(dir: &Path) -> std::io::Result<bool> {
    fn check(dir: &Path) -> std::io::Result<Option<bool>> {
        let fd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut d = Dir::new(fd)?;
        let mut seen = false;
        while let Some(ent) = d.read() {
            let ent = ent?;
            let name = ent.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            seen = true;
            if ent.file_type() == FileType::Unknown {
                return Ok(Some(false));
            }
        }
        Ok(seen.then_some(true))
    }
    if let Some(r) = check(dir)? {
        return Ok(r);
    }
    let probe = dir.join(format!(".dtype-probe-{}", random_name(12)));
    std::fs::File::create(&probe)?;
    let res = check(dir);
    let _ = std::fs::remove_file(&probe);
    Ok(res?.unwrap_or(false))
}

/// `n` random characters from [A-Z0-9] (overlay2's short link names use 26).
pub fn random_name(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the OS random number generator failed");
    // The slight modulo bias is irrelevant for collision-avoiding names.
    buf.iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

/// Write `data` to `path` atomically: a temporary file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), DriverError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", random_name(8)));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(DriverError::io("write", path, e));
    }
    Ok(())
}

/// Create a directory; an existing directory is fine.
pub fn mkdir(path: &Path, mode: u32) -> Result<(), DriverError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(DriverError::io("mkdir", path, e)),
    }
}

/// Remove `path` and everything below it without following symlinks. A missing path is not an
/// error. Refuses to descend into another filesystem (a mount point inside the tree) rather than
/// deleting through it.
pub fn remove_all(path: &Path) -> Result<(), DriverError> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DriverError::io("stat", path, e)),
    };
    if !md.is_dir() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(DriverError::io("remove", path, e))
            }
            _ => Ok(()),
        };
    }
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| DriverError::io("open", path, e.into()))?;
    remove_contents(fd, path, md.dev())?;
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(DriverError::io("remove", path, e))
        }
        _ => Ok(()),
    }
}

fn remove_contents(dirfd: OwnedFd, path: &Path, dev: u64) -> Result<(), DriverError> {
    let ioerr = |op: &'static str, p: &Path, e: Errno| DriverError::io(op, p, e.into());
    let mut names: Vec<(CString, FileType)> = Vec::new();
    {
        let mut d = Dir::read_from(&dirfd).map_err(|e| ioerr("readdir", path, e))?;
        while let Some(ent) = d.read() {
            let ent = ent.map_err(|e| ioerr("readdir", path, e))?;
            let name = ent.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            names.push((name.to_owned(), ent.file_type()));
        }
    }
    for (name, ft) in names {
        let child = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let is_dir = match ft {
            FileType::Directory => true,
            FileType::Unknown => {
                match rustix::fs::statat(&dirfd, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => FileType::from_raw_mode(st.st_mode) == FileType::Directory,
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(ioerr("stat", &child, e)),
                }
            }
            _ => false,
        };
        if is_dir {
            let cfd = match rustix::fs::openat(
                &dirfd,
                name.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(ioerr("open", &child, e)),
            };
            let st = rustix::fs::fstat(cfd.as_fd()).map_err(|e| ioerr("stat", &child, e))?;
            #[allow(clippy::unnecessary_cast)]
            if st.st_dev as u64 != dev {
                return Err(DriverError::io(
                    "remove",
                    &child,
                    std::io::Error::new(
                        std::io::ErrorKind::ResourceBusy,
                        "is a mount point (another filesystem); not descending",
                    ),
                ));
            }
            remove_contents(cfd, &child, dev)?;
            match rustix::fs::unlinkat(&dirfd, name.as_c_str(), AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(ioerr("rmdir", &child, e)),
            }
        } else {
            match rustix::fs::unlinkat(&dirfd, name.as_c_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(ioerr("unlink", &child, e)),
            }
        }
    }
    Ok(())
}

/// The directory a layer `id` lives in, for drivers whose layers are plain directories (vfs,
/// btrfs subvolumes): NotFound when it is not there.
pub fn existing_layer_dir(
    dir: std::path::PathBuf,
    id: &str,
) -> Result<std::path::PathBuf, DriverError> {
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(DriverError::NotFound(id.to_string()))
    }
}

/// Bytes (st_size of non-directories) and inodes under `path` (itself included), hardlinks
/// counted once by (dev, ino), not following symlinks and not crossing into other filesystems.
pub fn dir_usage(path: &Path) -> Result<Usage, DriverError> {
    let md = std::fs::symlink_metadata(path).map_err(|e| DriverError::io("stat", path, e))?;
    let mut u = Usage {
        bytes: 0,
        inodes: 1,
    };
    if !md.is_dir() {
        u.bytes = md.size();
        return Ok(u);
    }
    let mut seen = HashSet::new();
    usage_walk(path, md.dev(), &mut seen, &mut u)?;
    Ok(u)
}

fn usage_walk(
    dir: &Path,
    dev: u64,
    seen: &mut HashSet<(u64, u64)>,
    u: &mut Usage,
) -> Result<(), DriverError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DriverError::io("readdir", dir, e)),
    };
    for ent in rd {
        let ent = ent.map_err(|e| DriverError::io("readdir", dir, e))?;
        let md = match ent.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(DriverError::io("stat", ent.path(), e)),
        };
        if md.is_dir() {
            u.inodes += 1;
            if md.dev() == dev {
                usage_walk(&ent.path(), dev, seen, u)?;
            }
            continue;
        }
        if md.nlink() > 1 && !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        u.inodes += 1;
        u.bytes += md.size();
    }
    Ok(())
}

/// A temporary directory for driver tests on a disk filesystem (not tmpfs, whose behaviour as an
/// overlay upper or for xattrs differs from what production roots use). `STRATA_DRIVER_TEST_DIR`
/// overrides the location (e.g. a btrfs mount, to exercise FICLONE).
#[cfg(test)]
pub fn test_tempdir() -> tempfile::TempDir {
    if let Some(dir) = std::env::var_os("STRATA_DRIVER_TEST_DIR") {
        // e.g. a btrfs loop mount, to exercise reflinks
        return tempfile::Builder::new()
            .prefix("strata-driver-test-")
            .tempdir_in(dir)
            .expect("creating a test tempdir in STRATA_DRIVER_TEST_DIR");
    }
    let tmp = std::env::temp_dir();
    let base = if fs_magic(&tmp)
        .map(|m| m == 0x0102_1994 || m == OVERLAY_MAGIC)
        .unwrap_or(true)
    {
        std::path::PathBuf::from("/var/tmp")
    } else {
        tmp
    };
    tempfile::Builder::new()
        .prefix("strata-driver-test-")
        .tempdir_in(base)
        .expect("creating a test tempdir")
}

/// Cache-ids come from strata itself, but are checked before they become paths: a name that is
/// empty, hidden, `reserved` (a driver's own subdirectory) or not a single component is refused.
pub(super) fn check_id(id: &str, reserved: &str) -> Result<(), DriverError> {
    if id.is_empty()
        || id == reserved
        || id.starts_with('.')
        || id.contains('/')
        || id.contains('\0')
    {
        return Err(DriverError::NotFound(id.to_string()));
    }
    Ok(())
}
