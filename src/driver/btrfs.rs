//! The btrfs driver, like Docker's: every layer is a subvolume at `ROOT/btrfs/subvolumes/<id>`.
//! A base layer is a new empty subvolume; a child layer, an init layer and a container's
//! writable layer are snapshots of their parent — O(1), no data copied, the extents shared
//! until either side writes. Whiteouts are applied by deletion (as vfs: each layer is a full
//! tree), `diff` compares a layer with its parent's tree.
//!
//! `--storage-opt size=` is a btrfs qgroup limit on the exclusive bytes of the container's
//! subvolume (what it wrote, not what it shares with the image). Quotas are enabled on the
//! filesystem the first time a limit is asked for, as Docker does: they cost every snapshot
//! and deletion some accounting, so a store that never limits never pays it.
//!
//! Everything goes through ioctls (`btrfs_ioctl.rs`); removal deletes subvolumes with the
//! subvolume ioctl, nested ones (a container that made a subvolume) first, because a plain
//! recursive `rmdir` cannot remove a subvolume root.

use super::btrfs_ioctl as ioc;
use super::fsutil;
use super::*;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Btrfs {
    home: PathBuf,
    /// Quotas known to be enabled on the filesystem (by this process or found on).
    quota_on: AtomicBool,
}

/// Whether `root` is on btrfs (the driver's only requirement; Docker's check too).
pub fn supported(root: &Path) -> Result<(), DriverError> {
    let magic = fsutil::fs_magic(root).map_err(|e| DriverError::io("statfs", root, e))?;
    if magic != ioc::SUPER_MAGIC {
        return Err(DriverError::Unsupported {
            driver: "btrfs",
            reason: format!(
                "{} is on {}, not btrfs (prerequisites for driver not satisfied: wrong filesystem)",
                root.display(),
                fsutil::fs_name(magic)
            ),
        });
    }
    Ok(())
}

fn open_dir(p: &Path) -> Result<OwnedFd, DriverError> {
    rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| DriverError::io("open", p, e.into()))
}

impl Btrfs {
    /// Open (creating if needed) the driver directory `ROOT/btrfs`; refused off btrfs.
    pub fn open(dir: &Path) -> Result<Btrfs, DriverError> {
        if let Some(root) = dir.parent() {
            supported(root)?;
        }
        let home = dir.join("subvolumes");
        std::fs::create_dir_all(&home).map_err(|e| DriverError::io("mkdir", &home, e))?;
        supported(&home)?;
        Ok(Btrfs {
            home,
            quota_on: AtomicBool::new(false),
        })
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.home.join(id)
    }

    fn check_id(id: &str) -> Result<(), DriverError> {
        fsutil::check_id(id, "")
    }

    fn home_fd(&self) -> Result<OwnedFd, DriverError> {
        open_dir(&self.home)
    }

    fn ioerr<'p>(op: &'static str, p: &'p Path) -> impl FnOnce(Errno) -> DriverError + 'p {
        move |e| DriverError::io(op, p, e.into())
    }
}

/// Delete the subvolume or directory `name` in `dir` (whose path is `path`), the subvolumes
/// nested anywhere in it first. A directory that is not a subvolume root (a crash between a
/// `mkdir` and nothing else — strata never makes one, but a user might) is removed entry by
/// entry.
fn remove_tree(dir: &OwnedFd, name: &str, path: &Path) -> Result<(), DriverError> {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(Errno::NOTDIR) => {
            return rustix::fs::unlinkat(dir, name, AtFlags::empty())
                .map_err(Btrfs::ioerr("unlink", path));
        }
        Err(e) => return Err(DriverError::io("open", path, e.into())),
    };
    remove_nested(&fd, path)?;
    let st = rustix::fs::fstat(&fd).map_err(Btrfs::ioerr("stat", path))?;
    drop(fd);
    if st.st_ino == ioc::SUBVOL_ROOT_INO {
        match ioc::subvol_destroy(dir, name) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(DriverError::io("delete subvolume", path, e.into())),
        }
    } else {
        fsutil::remove_all(path)
    }
}

/// Delete every subvolume below directory `fd` (not `fd` itself), deepest first. Only
/// directories are walked, never symlinks; another filesystem mounted below is not entered.
fn remove_nested(fd: &OwnedFd, path: &Path) -> Result<(), DriverError> {
    let own = rustix::fs::fstat(fd).map_err(Btrfs::ioerr("stat", path))?;
    let mut dirs = Vec::new();
    {
        let mut d = Dir::read_from(fd).map_err(Btrfs::ioerr("readdir", path))?;
        while let Some(ent) = d.read() {
            let ent = ent.map_err(Btrfs::ioerr("readdir", path))?;
            let n = ent.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            if matches!(ent.file_type(), FileType::Directory | FileType::Unknown) {
                dirs.push(String::from_utf8_lossy(n).into_owned());
            }
        }
    }
    for n in dirs {
        let child = path.join(&n);
        let cfd = match rustix::fs::openat(
            fd,
            n.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(c) => c,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
            Err(e) => return Err(DriverError::io("open", &child, e.into())),
        };
        let st = rustix::fs::fstat(&cfd).map_err(Btrfs::ioerr("stat", &child))?;
        if st.st_dev != own.st_dev {
            if st.st_ino != ioc::SUBVOL_ROOT_INO
                || fsutil::fs_magic(&child).ok() != Some(ioc::SUPER_MAGIC)
            {
                // A mount point of something else: leave it to remove_all's refusal.
                continue;
            }
            remove_nested(&cfd, &child)?;
            drop(cfd);
            match ioc::subvol_destroy(fd, &n) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(DriverError::io("delete subvolume", &child, e.into())),
            }
        } else {
            remove_nested(&cfd, &child)?;
        }
    }
    Ok(())
}

impl Driver for Btrfs {
    fn name(&self) -> &'static str {
        "btrfs"
    }

    fn create(&self, id: &str, parent: Option<&str>, _kind: LayerKind) -> Result<(), DriverError> {
        Self::check_id(id)?;
        let home = self.home_fd()?;
        let dir = self.dir(id);
        let r = match parent {
            Some(p) => {
                Self::check_id(p)?;
                let src = match rustix::fs::openat(
                    &home,
                    p,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => {
                        return Err(DriverError::NotFound(p.to_string()));
                    }
                    Err(e) => return Err(DriverError::io("open", self.dir(p), e.into())),
                };
                ioc::snapshot(&src, &home, id).map_err(|e| (e, "snapshot"))
            }
            None => ioc::subvol_create(&home, id).map_err(|e| (e, "create subvolume")),
        };
        match r {
            Ok(()) => Ok(()),
            Err((Errno::EXIST, _)) => Err(DriverError::Exists(id.to_string())),
            Err((e, op)) => Err(DriverError::io(op, dir, e.into())),
        }
    }

    fn remove(&self, id: &str) -> Result<(), DriverError> {
        if Self::check_id(id).is_err() {
            return Ok(());
        }
        let home = self.home_fd()?;
        let dir = self.dir(id);
        let qgroup = if self.quota_on.load(Ordering::Relaxed) {
            open_dir(&dir).ok().and_then(|fd| ioc::subvol_id(&fd).ok())
        } else {
            None
        };
        remove_tree(&home, id, &dir)?;
        // Docker destroys the subvolume's qgroup too; the kernel refuses while the deleted
        // subvolume is not yet cleaned (EBUSY), and then drops it itself: not an error.
        if let Some(q) = qgroup {
            let _ = ioc::qgroup_create(&home, q, false);
        }
        Ok(())
    }

    fn exists(&self, id: &str) -> bool {
        Self::check_id(id).is_ok() && self.dir(id).is_dir()
    }

    fn diff_dir(&self, id: &str) -> PathBuf {
        self.dir(id)
    }

    fn whiteout_format(&self) -> WhiteoutFormat {
        WhiteoutFormat::Apply
    }

    fn mount(&self, id: &str) -> Result<PathBuf, DriverError> {
        Self::check_id(id)?;
        fsutil::existing_layer_dir(self.dir(id), id)
    }

    fn unmount(&self, _id: &str) -> Result<(), DriverError> {
        Ok(())
    }

    fn is_mounted(&self, _id: &str) -> bool {
        false
    }

    /// The layer's whole tree (as vfs): a snapshot holds all of its parent's files.
    fn usage(&self, id: &str) -> Result<Usage, DriverError> {
        Self::check_id(id)?;
        fsutil::dir_usage(&fsutil::existing_layer_dir(self.dir(id), id)?)
    }

    /// Docker's btrfs lines are "Build Version" and "Library Version" (of the libbtrfs it was
    /// built with). strata links no btrfs library: it speaks the kernel's ioctl interface, so
    /// the versions shown are the kernel's btrfs and that interface.
    fn status(&self) -> Vec<(String, String)> {
        let kernel = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        vec![
            ("Btrfs".into(), String::new()),
            ("Build Version".into(), format!("Btrfs (Linux {kernel})")),
            (
                "Library Version".into(),
                "none: kernel ioctls (btrfs.h uapi)".into(),
            ),
        ]
    }

    /// Docker's btrfs GraphDriver.Data is null.
    fn metadata(&self, _id: &str) -> Vec<(String, String)> {
        Vec::new()
    }

    fn list(&self) -> Result<Vec<String>, DriverError> {
        let rd =
            std::fs::read_dir(&self.home).map_err(|e| DriverError::io("readdir", &self.home, e))?;
        let mut ids = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| DriverError::io("readdir", &self.home, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && ent.file_type().is_ok_and(|t| t.is_dir()) {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn size_limit_supported(&self) -> Result<(), DriverError> {
        Ok(())
    }

    fn limit_size(&self, id: &str, bytes: u64) -> Result<(), DriverError> {
        Self::check_id(id)?;
        let dir = self.dir(id);
        let fd = open_dir(&dir)?;
        if !self.quota_on.load(Ordering::Relaxed) {
            ioc::quota_enable(&fd)
                .map_err(|e| DriverError::io("enable quotas on", &dir, e.into()))?;
            self.quota_on.store(true, Ordering::Relaxed);
        }
        let q = ioc::subvol_id(&fd).map_err(Self::ioerr("look up the subvolume of", &dir))?;
        // Quota enable and every later subvolume creation make its level-0 qgroup; newer
        // kernels refuse to create one by hand for a subvolume (EINVAL), older say EEXIST.
        match ioc::qgroup_create(&fd, q, true) {
            Ok(()) | Err(Errno::EXIST | Errno::INVAL) => {}
            Err(e) => return Err(DriverError::io("create qgroup for", &dir, e.into())),
        }
        ioc::qgroup_limit_exclusive(&fd, q, bytes)
            .map_err(|e| DriverError::io("limit qgroup of", &dir, e.into()))
    }
}

/// Bytes of data and of metadata in use on the btrfs filesystem holding `path` (what
/// `btrfs filesystem df` shows as `used`); snapshots sharing extents count them once.
pub fn space_used(path: &Path) -> Result<(u64, u64), DriverError> {
    let fd = open_dir(path)?;
    ioc::space_used(fd.as_fd()).map_err(|e| DriverError::io("space info of", path, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tempdir on btrfs, or None (the test prints why and passes vacuously only where the
    /// machine has no btrfs under STRATA_DRIVER_TEST_DIR; the integration tests make one).
    fn on_btrfs() -> Option<tempfile::TempDir> {
        let t = fsutil::test_tempdir();
        if supported(t.path()).is_err() {
            eprintln!("skipped: set STRATA_DRIVER_TEST_DIR to a btrfs mount to run this");
            return None;
        }
        Some(t)
    }

    #[test]
    fn btrfs_snapshots_nested_removal() {
        let Some(tmp) = on_btrfs() else { return };
        let d = Btrfs::open(&tmp.path().join("btrfs")).unwrap();
        d.create("base", None, LayerKind::ReadOnly).unwrap();
        std::fs::write(d.diff_dir("base").join("f"), "base").unwrap();
        d.create("child", Some("base"), LayerKind::Container)
            .unwrap();
        let c = d.diff_dir("child");
        assert_eq!(std::fs::read_to_string(c.join("f")).unwrap(), "base");
        std::fs::write(c.join("f"), "child").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.diff_dir("base").join("f")).unwrap(),
            "base"
        );
        assert!(matches!(
            d.create("child", Some("base"), LayerKind::ReadWrite),
            Err(DriverError::Exists(_))
        ));
        assert!(matches!(
            d.create("x", Some("nope"), LayerKind::ReadWrite),
            Err(DriverError::NotFound(_))
        ));
        // A subvolume the container made inside itself, two deep.
        std::fs::create_dir(c.join("var")).unwrap();
        ioc::subvol_create(open_dir(&c.join("var")).unwrap(), "inner").unwrap();
        ioc::subvol_create(open_dir(&c.join("var/inner")).unwrap(), "deeper").unwrap();
        std::fs::write(c.join("var/inner/deeper/file"), "x").unwrap();
        assert!(fsutil::remove_all(&c).is_err(), "rm -rf cannot do this");
        d.remove("child").unwrap();
        assert!(!d.exists("child"));
        assert_eq!(d.list().unwrap(), vec!["base"]);
        d.remove("child").unwrap();
        d.remove("base").unwrap();
        assert!(d.list().unwrap().is_empty());
    }
}
