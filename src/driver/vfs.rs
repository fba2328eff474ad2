//! The vfs driver, like Docker's: every layer is a full copy of its parent's root filesystem at
//! `ROOT/vfs/dir/<id>`. Works on any filesystem; costs a full copy per layer (reflinked with
//! FICLONE where the filesystem supports it, e.g. btrfs and xfs).

use super::fsutil;
use super::*;
use rustix::fs::Timespec;
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timestamps};
use rustix::io::Errno;
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

pub struct Vfs {
    home: PathBuf,
}

impl Vfs {
    /// Open (creating if needed) the vfs driver directory `ROOT/vfs`.
    pub fn open(dir: &Path) -> Result<Vfs, DriverError> {
        let d = dir.join("dir");
        std::fs::create_dir_all(&d).map_err(|e| DriverError::io("mkdir", &d, e))?;
        Ok(Vfs { home: d })
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.home.join(id)
    }

    fn check_id(id: &str) -> Result<(), DriverError> {
        fsutil::check_id(id, "")
    }
}

impl Driver for Vfs {
    fn name(&self) -> &'static str {
        "vfs"
    }

    fn create(&self, id: &str, parent: Option<&str>, _kind: LayerKind) -> Result<(), DriverError> {
        Self::check_id(id)?;
        let dir = self.dir(id);
        let src = match parent {
            Some(p) => {
                Self::check_id(p)?;
                let src = self.dir(p);
                let md = std::fs::symlink_metadata(&src)
                    .map_err(|_| DriverError::NotFound(p.to_string()))?;
                if !md.is_dir() {
                    return Err(DriverError::NotFound(p.to_string()));
                }
                Some((src, md))
            }
            None => None,
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(DriverError::Exists(id.to_string()));
            }
            Err(e) => return Err(DriverError::io("mkdir", &dir, e)),
        }
        match src {
            Some((src, md)) => copy_tree(&src, &dir, &md).inspect_err(|_| {
                // Don't leave a partial copy behind (a crash still can; remove() handles it).
                let _ = fsutil::remove_all(&dir);
            }),
            None => {
                std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .map_err(|e| DriverError::io("chmod", &dir, e))
            }
        }
    }

    fn remove(&self, id: &str) -> Result<(), DriverError> {
        if Self::check_id(id).is_err() {
            return Ok(());
        }
        fsutil::remove_all(&self.dir(id))
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

    fn usage(&self, id: &str) -> Result<Usage, DriverError> {
        Self::check_id(id)?;
        fsutil::dir_usage(&fsutil::existing_layer_dir(self.dir(id), id)?)
    }

    /// Docker's vfs driver reports no status lines.
    fn status(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Docker's vfs GraphDriver.Data is null.
    fn metadata(&self, _id: &str) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Docker's vfs limits size with xfs project quotas only (its error when they are absent).
    fn size_limit_supported(&self) -> Result<(), DriverError> {
        Err(DriverError::StorageOpt(
            "Filesystem does not support, or has not enabled quotas",
        ))
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
}

/// Copy the tree at `src` (a directory with metadata `md`) into the existing directory `dst`,
/// preserving modes, ownership, timestamps (ns), xattrs, symlinks, hardlinks within the tree,
/// device nodes and fifos. Sockets are skipped. Symlinks are never followed.
pub(crate) fn copy_tree(src: &Path, dst: &Path, md: &Metadata) -> Result<(), DriverError> {
    let mut c = Copier {
        links: HashMap::new(),
        reflink: None,
        xattr_buf: Vec::new(),
    };
    c.copy_dir(src, dst, md)
}

struct Copier {
    /// (dev, ino) of multiply-linked sources → the first copy's path.
    links: HashMap<(u64, u64), PathBuf>,
    /// Whether FICLONE works here: None until tried once.
    reflink: Option<bool>,
    xattr_buf: Vec<u8>,
}

impl Copier {
    fn copy_dir(&mut self, src: &Path, dst: &Path, md: &Metadata) -> Result<(), DriverError> {
        let rd = std::fs::read_dir(src).map_err(|e| DriverError::io("readdir", src, e))?;
        for ent in rd {
            let ent = ent.map_err(|e| DriverError::io("readdir", src, e))?;
            let s = ent.path();
            let d = dst.join(ent.file_name());
            let md = ent.metadata().map_err(|e| DriverError::io("stat", &s, e))?;
            let ft = md.file_type();
            if ft.is_dir() {
                std::fs::create_dir(&d).map_err(|e| DriverError::io("mkdir", &d, e))?;
                self.copy_dir(&s, &d, &md)?;
                continue;
            }
            if ft.is_socket() {
                continue;
            }
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = self.links.get(&key) {
                    std::fs::hard_link(first, &d).map_err(|e| DriverError::io("link", &d, e))?;
                    continue;
                }
                self.links.insert(key, d.clone());
            }
            if ft.is_file() {
                self.copy_file(&s, &d, &md)?;
                continue;
            }
            if ft.is_symlink() {
                let target =
                    std::fs::read_link(&s).map_err(|e| DriverError::io("readlink", &s, e))?;
                std::os::unix::fs::symlink(&target, &d)
                    .map_err(|e| DriverError::io("symlink", &d, e))?;
            } else {
                // Character/block device or fifo.
                rustix::fs::mknodat(
                    CWD,
                    &d,
                    FileType::from_raw_mode(md.mode()),
                    Mode::from_raw_mode(md.mode() & 0o7777),
                    md.rdev(),
                )
                .map_err(|e| DriverError::io("mknod", &d, e.into()))?;
            }
            self.apply_meta(&s, &d, &md, ft.is_symlink())?;
        }
        self.apply_meta(src, dst, md, false)
    }

    fn copy_file(&mut self, s: &Path, d: &Path, md: &Metadata) -> Result<(), DriverError> {
        let mut sf = File::open(s).map_err(|e| DriverError::io("open", s, e))?;
        let mut df = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(d)
            .map_err(|e| DriverError::io("create", d, e))?;
        let mut done = false;
        if md.size() > 0 && self.reflink != Some(false) {
            match rustix::fs::ioctl_ficlone(&df, &sf) {
                Ok(()) => {
                    self.reflink = Some(true);
                    done = true;
                }
                Err(_) if self.reflink.is_none() => self.reflink = Some(false),
                Err(_) => {} // e.g. crossing filesystems for one file; copy it instead
            }
        }
        if !done && md.size() > 0 {
            if md.blocks().saturating_mul(512) < md.size() {
                copy_sparse(&sf, &df, md.size()).map_err(|e| DriverError::io("copy", d, e))?;
            } else {
                // std's File→File copy uses copy_file_range (then sendfile, then read/write).
                std::io::copy(&mut sf, &mut df).map_err(|e| DriverError::io("copy", d, e))?;
            }
        }
        rustix::fs::fchown(&df, Some(uid(md.uid())), Some(gid(md.gid())))
            .map_err(|e| DriverError::io("chown", d, e.into()))?;
        rustix::fs::fchmod(&df, Mode::from_raw_mode(md.mode() & 0o7777))
            .map_err(|e| DriverError::io("chmod", d, e.into()))?;
        self.copy_xattrs(s, d)?;
        rustix::fs::futimens(&df, &timestamps(md))
            .map_err(|e| DriverError::io("utimens", d, e.into()))?;
        Ok(())
    }

    fn apply_meta(
        &mut self,
        s: &Path,
        d: &Path,
        md: &Metadata,
        symlink: bool,
    ) -> Result<(), DriverError> {
        rustix::fs::chownat(
            CWD,
            d,
            Some(uid(md.uid())),
            Some(gid(md.gid())),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| DriverError::io("chown", d, e.into()))?;
        if !symlink {
            // After chown, which clears setuid/setgid bits.
            rustix::fs::chmod(d, Mode::from_raw_mode(md.mode() & 0o7777))
                .map_err(|e| DriverError::io("chmod", d, e.into()))?;
        }
        self.copy_xattrs(s, d)?;
        rustix::fs::utimensat(CWD, d, &timestamps(md), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| DriverError::io("utimens", d, e.into()))?;
        Ok(())
    }

    fn copy_xattrs(&mut self, s: &Path, d: &Path) -> Result<(), DriverError> {
        let names = match list_xattrs(s) {
            Ok(n) => n,
            Err(Errno::OPNOTSUPP) => return Ok(()),
            Err(e) => return Err(DriverError::io("listxattr", s, e.into())),
        };
        for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let name = std::ffi::OsStr::from_bytes(name);
            let value = loop {
                let need = match rustix::fs::lgetxattr_query(s, name) {
                    Ok(n) => n,
                    Err(Errno::NODATA) => break None,
                    Err(e) => return Err(DriverError::io("getxattr", s, e.into())),
                };
                self.xattr_buf.resize(need, 0);
                match rustix::fs::lgetxattr(s, name, &mut self.xattr_buf[..]) {
                    Ok(n) => break Some(n),
                    Err(Errno::RANGE) => continue,
                    Err(Errno::NODATA) => break None,
                    Err(e) => return Err(DriverError::io("getxattr", s, e.into())),
                }
            };
            let Some(n) = value else { continue };
            match rustix::fs::lsetxattr(
                d,
                name,
                &self.xattr_buf[..n],
                rustix::fs::XattrFlags::empty(),
            ) {
                Ok(()) => {}
                // The destination filesystem cannot hold this namespace (e.g. security.* policy).
                Err(Errno::OPNOTSUPP) => {}
                Err(e) => {
                    return Err(DriverError::io(
                        "setxattr",
                        d,
                        std::io::Error::new(
                            std::io::Error::from(e).kind(),
                            format!("{}: {e}", name.to_string_lossy()),
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

use std::os::unix::ffi::OsStrExt;

fn list_xattrs(p: &Path) -> Result<Vec<u8>, Errno> {
    loop {
        let need = rustix::fs::llistxattr_query(p)?;
        if need == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; need];
        match rustix::fs::llistxattr(p, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Copies a file with holes (fewer blocks than bytes) keeping its holes: only the data
/// segments (`SEEK_DATA`/`SEEK_HOLE`) are copied, at their offsets, and the length set last.
/// A plain copy (copy_file_range without reflinks, as on ext4) would write the zeros out, so a
/// layer stored sparse (see `archive::extract`) would take its full size again in every vfs
/// child layer.
fn copy_sparse(src: &File, dst: &File, size: u64) -> std::io::Result<()> {
    use rustix::fs::{SeekFrom, copy_file_range, seek};
    let mut pos = 0u64;
    while pos < size {
        let data = match seek(src, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if data >= size {
            break;
        }
        let hole = seek(src, SeekFrom::Hole(data))?.min(size);
        let (mut off_in, mut off_out) = (data, data);
        while off_in < hole {
            let want = usize::try_from(hole - off_in)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            if copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank while being copied",
                ));
            }
        }
        pos = hole;
    }
    dst.set_len(size)
}

fn uid(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}

fn gid(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}

fn timestamps(md: &Metadata) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec() as _,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::XattrFlags;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    }

    fn set_times(p: &Path, sec: i64, nsec: i64) {
        let t = Timestamps {
            last_access: Timespec {
                tv_sec: sec - 5,
                tv_nsec: nsec as _,
            },
            last_modification: Timespec {
                tv_sec: sec,
                tv_nsec: nsec as _,
            },
        };
        rustix::fs::utimensat(CWD, p, &t, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    #[test]
    fn vfs_copy_keeps_holes() {
        use std::os::unix::fs::FileExt;
        let tmp = fsutil::test_tempdir();
        let d = Vfs::open(&tmp.path().join("vfs")).unwrap();
        d.create("base", None, LayerKind::ReadOnly).unwrap();
        let f = File::create(d.diff_dir("base").join("sparse")).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"middle", 64 << 20).unwrap();
        f.set_len(1 << 30).unwrap();
        drop(f);
        d.create("child", Some("base"), LayerKind::ReadOnly)
            .unwrap();
        let c = d.diff_dir("child").join("sparse");
        let md = std::fs::metadata(&c).unwrap();
        assert_eq!(md.len(), 1 << 30);
        assert!(
            md.blocks() * 512 <= 1 << 20,
            "{} bytes used",
            md.blocks() * 512
        );
        let f = File::open(&c).unwrap();
        let mut buf = [0u8; 6];
        f.read_exact_at(&mut buf, 64 << 20).unwrap();
        assert_eq!(&buf, b"middle");
        f.read_exact_at(&mut buf[..4], 0).unwrap();
        assert_eq!(&buf[..4], b"head");
        f.read_exact_at(&mut buf, (1 << 30) - 6).unwrap();
        assert_eq!(buf, [0; 6]);
    }

    #[test]
    fn vfs_create_copies_everything() {
        let tmp = fsutil::test_tempdir();
        let d = Vfs::open(&tmp.path().join("vfs")).unwrap();
        d.create("base", None, LayerKind::ReadOnly).unwrap();
        let b = d.diff_dir("base");
        assert_eq!(b, tmp.path().join("vfs/dir/base"));
        std::fs::create_dir_all(b.join("etc/sub")).unwrap();
        std::fs::write(b.join("etc/file"), "content").unwrap();
        std::fs::write(b.join("big"), vec![42u8; 3 << 20]).unwrap();
        std::fs::set_permissions(
            b.join("etc/file"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4751),
        )
        .unwrap();
        std::os::unix::fs::chown(b.join("etc/file"), Some(1234), Some(5678)).unwrap();
        // chown cleared setuid; set it again
        std::fs::set_permissions(
            b.join("etc/file"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4751),
        )
        .unwrap();
        std::os::unix::fs::symlink("../etc/file", b.join("etc/sub/link")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/target", b.join("dangling")).unwrap();
        std::os::unix::fs::lchown(b.join("dangling"), Some(7), Some(8)).unwrap();
        std::fs::write(b.join("h1"), "hard").unwrap();
        std::fs::hard_link(b.join("h1"), b.join("etc/h2")).unwrap();
        rustix::fs::mknodat(
            CWD,
            b.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        rustix::fs::mknodat(
            CWD,
            b.join("null"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(b.join("sock")).unwrap();
        rustix::fs::setxattr(b.join("etc"), "user.dirattr", b"dv", XattrFlags::empty()).unwrap();
        rustix::fs::setxattr(
            b.join("etc/file"),
            "user.fileattr",
            b"fv",
            XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::setxattr(
            b.join("etc/sub"),
            "trusted.overlay.opaque",
            b"y",
            XattrFlags::empty(),
        )
        .unwrap();
        std::fs::set_permissions(
            b.join("etc/sub"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1733),
        )
        .unwrap();
        set_times(&b.join("etc/file"), 1_600_000_000, 123_456_789);
        set_times(&b.join("dangling"), 1_500_000_000, 5);
        set_times(&b.join("etc/sub"), 1_400_000_000, 987_654_321);
        set_times(&b.join("etc"), 1_300_000_000, 1);
        std::fs::set_permissions(&b, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();

        d.create("child", Some("base"), LayerKind::ReadWrite)
            .unwrap();
        let c = d.diff_dir("child");
        let md = |p: &Path| std::fs::symlink_metadata(p).unwrap();
        assert_eq!(md(&c).mode() & 0o7777, 0o750);
        // Check atime before reading the file (a read may update it under relatime).
        let f = md(&c.join("etc/file"));
        assert_eq!(read(&c.join("etc/file")), "content");
        assert_eq!(std::fs::read(c.join("big")).unwrap(), vec![42u8; 3 << 20]);
        assert_eq!((f.mode() & 0o7777, f.uid(), f.gid()), (0o4751, 1234, 5678));
        assert_eq!((f.mtime(), f.mtime_nsec()), (1_600_000_000, 123_456_789));
        assert_eq!(
            (f.atime(), f.atime_nsec()),
            (1_600_000_000 - 5, 123_456_789)
        );
        assert_eq!(
            std::fs::read_link(c.join("etc/sub/link")).unwrap(),
            Path::new("../etc/file")
        );
        let l = md(&c.join("dangling"));
        assert!(l.file_type().is_symlink());
        assert_eq!(
            (l.uid(), l.gid(), l.mtime(), l.mtime_nsec()),
            (7, 8, 1_500_000_000, 5)
        );
        let (h1, h2) = (md(&c.join("h1")), md(&c.join("etc/h2")));
        assert_eq!(h1.ino(), h2.ino());
        assert_eq!(h1.nlink(), 2);
        assert_ne!(h1.ino(), md(&b.join("h1")).ino());
        assert!(md(&c.join("fifo")).file_type().is_fifo());
        assert_eq!(md(&c.join("fifo")).mode() & 0o7777, 0o640);
        let n = md(&c.join("null"));
        assert!(n.file_type().is_char_device());
        assert_eq!(n.rdev(), rustix::fs::makedev(1, 3));
        assert!(
            std::fs::symlink_metadata(c.join("sock")).is_err(),
            "sockets are skipped"
        );
        let mut buf = [0u8; 16];
        let k = rustix::fs::getxattr(c.join("etc"), "user.dirattr", &mut buf[..]).unwrap();
        assert_eq!(&buf[..k], b"dv");
        let k = rustix::fs::getxattr(c.join("etc/file"), "user.fileattr", &mut buf[..]).unwrap();
        assert_eq!(&buf[..k], b"fv");
        let k = rustix::fs::getxattr(c.join("etc/sub"), "trusted.overlay.opaque", &mut buf[..])
            .unwrap();
        assert_eq!(&buf[..k], b"y");
        let s = md(&c.join("etc/sub"));
        assert_eq!(s.mode() & 0o7777, 0o1733);
        assert_eq!((s.mtime(), s.mtime_nsec()), (1_400_000_000, 987_654_321));
        let e = md(&c.join("etc"));
        assert_eq!((e.mtime(), e.mtime_nsec()), (1_300_000_000, 1));

        assert!(matches!(
            d.create("child", Some("base"), LayerKind::ReadWrite),
            Err(DriverError::Exists(_))
        ));
        assert!(matches!(
            d.create("other", Some("nope"), LayerKind::ReadWrite),
            Err(DriverError::NotFound(_))
        ));
        assert!(!d.exists("other"));
    }

    /// Reflinks are tried once and used where supported (btrfs, xfs), else plain copies.
    #[test]
    fn vfs_copy_reflink_or_fallback() {
        let tmp = fsutil::test_tempdir();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        for i in 0..3 {
            std::fs::write(src.join(format!("f{i}")), vec![i as u8; 100_000]).unwrap();
        }
        std::fs::write(src.join("empty"), "").unwrap();
        let dst = tmp.path().join("dst");
        std::fs::create_dir(&dst).unwrap();
        let mut c = Copier {
            links: HashMap::new(),
            reflink: None,
            xattr_buf: Vec::new(),
        };
        c.copy_dir(&src, &dst, &std::fs::symlink_metadata(&src).unwrap())
            .unwrap();
        for i in 0..3 {
            assert_eq!(
                std::fs::read(dst.join(format!("f{i}"))).unwrap(),
                vec![i as u8; 100_000]
            );
        }
        assert_eq!(std::fs::read(dst.join("empty")).unwrap(), b"");
        let magic = fsutil::fs_magic(tmp.path()).unwrap();
        match fsutil::fs_name(magic) {
            "btrfs" | "xfs" => assert_eq!(c.reflink, Some(true)),
            "extfs" | "tmpfs" => assert_eq!(c.reflink, Some(false)),
            _ => {}
        }
    }

    #[test]
    fn vfs_chain_mount_and_isolation() {
        let tmp = fsutil::test_tempdir();
        let d = Vfs::open(&tmp.path().join("vfs")).unwrap();
        d.create("l1", None, LayerKind::ReadOnly).unwrap();
        std::fs::write(d.diff_dir("l1").join("a"), "a").unwrap();
        std::fs::write(d.diff_dir("l1").join("gone"), "gone").unwrap();
        d.create("l2", Some("l1"), LayerKind::ReadOnly).unwrap();
        std::fs::write(d.diff_dir("l2").join("b"), "b").unwrap();
        std::fs::remove_file(d.diff_dir("l2").join("gone")).unwrap(); // Apply-format whiteout
        d.create("l3", Some("l2"), LayerKind::ReadOnly).unwrap();
        std::fs::write(d.diff_dir("l3").join("c"), "c").unwrap();
        d.create("rw", Some("l3"), LayerKind::ReadWrite).unwrap();
        let m = d.mount("rw").unwrap();
        assert_eq!(m, d.diff_dir("rw"));
        assert!(!d.is_mounted("rw"));
        assert_eq!(
            (read(&m.join("a")), read(&m.join("b")), read(&m.join("c"))),
            ("a".into(), "b".into(), "c".into())
        );
        assert!(!m.join("gone").exists());
        std::fs::write(m.join("a"), "A").unwrap();
        std::fs::remove_file(m.join("b")).unwrap();
        assert_eq!(read(&d.diff_dir("l1").join("a")), "a");
        assert_eq!(read(&d.diff_dir("l3").join("b")), "b");
        d.unmount("rw").unwrap();
        assert!(d.status().is_empty());
        assert!(d.metadata("rw").is_empty());
        assert_eq!(d.whiteout_format(), WhiteoutFormat::Apply);
        assert_eq!(d.list().unwrap(), vec!["l1", "l2", "l3", "rw"]);
        assert!(matches!(d.mount("nope"), Err(DriverError::NotFound(_))));
    }

    #[test]
    fn vfs_usage_and_remove() {
        let tmp = fsutil::test_tempdir();
        let d = Vfs::open(&tmp.path().join("vfs")).unwrap();
        d.create("a", None, LayerKind::ReadOnly).unwrap();
        let a = d.diff_dir("a");
        std::fs::write(a.join("f"), vec![1u8; 500]).unwrap();
        std::fs::hard_link(a.join("f"), a.join("g")).unwrap();
        std::fs::create_dir_all(a.join("x/y/z")).unwrap();
        std::fs::write(a.join("x/y/z/h"), "12345").unwrap();
        std::os::unix::fs::symlink("/", a.join("x/root")).unwrap();
        // root, f, x, y, z, h, root-symlink
        assert_eq!(
            d.usage("a").unwrap(),
            Usage {
                bytes: 500 + 5 + 1,
                inodes: 7
            }
        );
        d.create("b", Some("a"), LayerKind::ReadWrite).unwrap();
        assert_eq!(d.usage("b").unwrap(), d.usage("a").unwrap());
        // remove must not follow the symlink to /
        std::fs::set_permissions(
            a.join("x/y"),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
        d.remove("a").unwrap();
        assert!(!d.exists("a"));
        assert!(Path::new("/etc").exists());
        d.remove("a").unwrap();
        assert_eq!(d.list().unwrap(), vec!["b"]);
        d.remove("b").unwrap();
        assert!(d.list().unwrap().is_empty());
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// `STRATA_VFS_BENCH_SRC=/usr/share cargo test --release --lib vfs_copy_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn vfs_copy_speed() {
        let Ok(src) = std::env::var("STRATA_VFS_BENCH_SRC") else {
            return;
        };
        let dir = std::env::var("STRATA_VFS_BENCH_DIR")
            .map(PathBuf::from)
            .ok();
        let tmp = match &dir {
            Some(d) => tempfile::Builder::new().tempdir_in(d).unwrap(),
            None => fsutil::test_tempdir(),
        };
        let dst = tmp.path().join("copy");
        std::fs::create_dir(&dst).unwrap();
        let md = std::fs::symlink_metadata(&src).unwrap();
        let t = std::time::Instant::now();
        copy_tree(Path::new(&src), &dst, &md).unwrap();
        let copied = t.elapsed();
        let u = fsutil::dir_usage(&dst).unwrap();
        let t = std::time::Instant::now();
        fsutil::remove_all(&dst).unwrap();
        eprintln!(
            "copied {} bytes / {} inodes in {copied:?}; removed in {:?}",
            u.bytes,
            u.inodes,
            t.elapsed()
        );
    }
}
