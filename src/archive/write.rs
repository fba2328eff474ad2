//! Writing a deterministic tar of a directory tree (import from a directory, export, commit).
//!
//! Entries are written depth first, each directory's children sorted by name (bytes),
//! parents before children, with paths relative to the directory and no leading `./`
//! (`etc/`, `etc/passwd`). Metadata: uid/gid, mode (incl. setuid/setgid/sticky), mtime
//! (seconds), xattrs as PAX `SCHILY.xattr.*` records (but not `trusted.overlay.*` nor
//! `security.selinux`). Files sharing an inode become hardlink entries to the first path.
//! Long names and link targets use GNU `L`/`K` entries. Symlinks are never followed.

use super::extract::{OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, join, list_dir};
use super::*;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

/// Writes a tar of the tree under `dir` to `out`. With `Some(WhiteoutFormat::Overlay)` the
/// directory is an overlay upper directory: 0/0 character devices are written as `.wh.NAME`
/// whiteout files and opaque directories get a `.wh..wh..opq` entry. `None` (or
/// `Some(Apply)`, which has no on-disk whiteouts) writes the tree as it is.
pub fn tar_directory(
    dir: &Path,
    out: impl Write,
    whiteouts: Option<WhiteoutFormat>,
) -> Result<(), ArchiveError> {
    let (mut w, fd) = Writer::open(dir, out, whiteouts == Some(WhiteoutFormat::Overlay))?;
    w.walk(fd.as_fd(), b"")?;
    w.finish()
}

/// Writes a layer tar of the listed changes of the tree under `dir` (as Docker's
/// `ExportChanges`, for drivers without an upper directory): each `(path, false)` (added or
/// changed, relative, no leading `/`) as its own entry, a directory without its contents
/// (those are listed themselves); each `(path, true)` (deleted) as a `.wh.NAME` whiteout.
/// Parents must come before their children. Paths are resolved inside `dir`
/// (`RESOLVE_IN_ROOT`), so a symlink swapped in meanwhile cannot lead outside it.
pub fn tar_changes(
    dir: &Path,
    changes: &[(Vec<u8>, bool)],
    out: impl Write,
) -> Result<(), ArchiveError> {
    let (mut w, root) = Writer::open(dir, out, false)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut cached: Option<(Vec<u8>, OwnedFd)> = None;
    for (path, deleted) in changes {
        let (parent, name) = match path.iter().rposition(|&c| c == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], &path[..]),
        };
        if name.is_empty() {
            continue;
        }
        if *deleted {
            let mut h = Header::new_gnu();
            h.set_entry_type(EntryType::Regular);
            h.set_mode(0o600);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(now);
            h.set_size(0);
            let wh = join(parent, &[WHITEOUT_PREFIX, name].concat());
            w.entry(h, &wh, None, &[], io::empty())?;
            continue;
        }
        if parent.is_empty() {
            w.entry_of(root.as_fd(), b"", name, false)?;
            continue;
        }
        if cached.as_ref().is_none_or(|(p, _)| p != parent) {
            let fd = rfs::openat2(
                root.as_fd(),
                parent,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                rfs::ResolveFlags::IN_ROOT | rfs::ResolveFlags::NO_MAGICLINKS,
            )
            .map_err(|e| w.ioe("open", parent, e))?;
            cached = Some((parent.to_vec(), fd));
        }
        let (p, fd) = cached.as_ref().expect("just set");
        w.entry_of(fd.as_fd(), p, name, false)?;
    }
    w.finish()
}

fn w_err(e: io::Error) -> ArchiveError {
    ArchiveError::io("write tar", "<output>", e)
}

struct Writer<W: Write> {
    b: tar::Builder<W>,
    root: PathBuf,
    overlay: bool,
    /// (dev, ino) of multiply-linked non-directories already written -> their path.
    seen: HashMap<(u64, u64), Vec<u8>>,
}

fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> Vec<u8> {
    [
        format!("/proc/self/fd/{}/", dir.as_raw_fd()).as_bytes(),
        name,
    ]
    .concat()
}

/// The xattrs of `name` in `dir` (not following symlinks), sorted by name.
fn read_xattrs(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Vec<(String, Vec<u8>)>, Errno> {
    let p = proc_path(dir, name);
    let mut list = Vec::new();
    loop {
        let n = match rfs::llistxattr_query(&p[..]) {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(Vec::new());
        }
        list.resize(n, 0);
        match rfs::llistxattr(&p[..], &mut list[..]) {
            Ok(k) => {
                list.truncate(k);
                break;
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    let mut out = Vec::new();
    for k in list.split(|&c| c == 0).filter(|k| !k.is_empty()) {
        if k.starts_with(b"trusted.overlay.") || k == b"security.selinux" {
            continue;
        }
        let Ok(ks) = std::str::from_utf8(k) else {
            continue;
        };
        if let Some(v) = get_xattr(&p, k)? {
            out.push((ks.to_string(), v));
        }
    }
    out.sort();
    Ok(out)
}

fn get_xattr(p: &[u8], k: &[u8]) -> Result<Option<Vec<u8>>, Errno> {
    loop {
        let n = match rfs::lgetxattr_query(p, k) {
            Ok(n) => n,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut v = vec![0u8; n];
        match rfs::lgetxattr(p, k, &mut v[..]) {
            Ok(k) => {
                v.truncate(k);
                return Ok(Some(v));
            }
            Err(Errno::RANGE) => continue,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Yields exactly `left` bytes of `inner`, or fails if it ends early (the file shrank while
/// being read: the header already announced its size).
struct Exact<R> {
    inner: R,
    left: u64,
}
impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.left) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being archived",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

impl<W: Write> Writer<io::BufWriter<W>> {
    /// A tar writer over `out` for the tree under `dir`, and `dir` opened for `*at` walks.
    fn open(
        dir: &Path,
        out: W,
        overlay: bool,
    ) -> Result<(Self, rustix::fd::OwnedFd), ArchiveError> {
        let fd = rfs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::io("open", dir, e.into()))?;
        let w = Writer {
            b: tar::Builder::new(io::BufWriter::with_capacity(256 << 10, out)),
            root: dir.to_path_buf(),
            overlay,
            seen: HashMap::new(),
        };
        Ok((w, fd))
    }

    /// Write the end-of-archive blocks and flush.
    fn finish(self) -> Result<(), ArchiveError> {
        let mut bw = self.b.into_inner().map_err(w_err)?;
        bw.flush().map_err(w_err)
    }
}

impl<W: Write> Writer<W> {
    fn ioe(&self, op: &'static str, p: &[u8], e: Errno) -> ArchiveError {
        ArchiveError::io(op, self.root.join(OsStr::from_bytes(p)), e.into())
    }

    /// A GNU long name (`L`) or long link (`K`) entry.
    fn long(&mut self, kind: EntryType, data: &[u8]) -> Result<(), ArchiveError> {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64 + 1);
        h.set_entry_type(kind);
        h.set_cksum();
        self.b.append(&h, data.chain(&[0u8][..])).map_err(w_err)
    }

    /// Writes header `h` for `path` (and link target `link`), with `xattrs`, then `data`.
    fn entry(
        &mut self,
        mut h: Header,
        path: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(String, Vec<u8>)],
        data: impl Read,
    ) -> Result<(), ArchiveError> {
        if !xattrs.is_empty() {
            let recs: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), &v[..]))
                .collect();
            self.b
                .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
                .map_err(w_err)?;
        }
        if path.len() > 100 {
            self.long(EntryType::GNULongName, path)?;
        }
        let n = path.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&path[..n]);
        if let Some(l) = link {
            if l.len() > 100 {
                self.long(EntryType::GNULongLink, l)?;
            }
            let n = l.len().min(100);
            h.as_old_mut().linkname[..n].copy_from_slice(&l[..n]);
        }
        h.set_cksum();
        self.b.append(&h, data).map_err(w_err)
    }

    fn walk(&mut self, dir: BorrowedFd<'_>, prefix: &[u8]) -> Result<(), ArchiveError> {
        let mut children = list_dir(dir).map_err(|e| self.ioe("read directory", prefix, e))?;
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, _) in children {
            self.entry_of(dir, prefix, &name, true)?;
        }
        Ok(())
    }

    /// Writes the entry for `name` in `dir` (whose path in the tar is `prefix`) and, when
    /// `recurse`, everything below it.
    fn entry_of(
        &mut self,
        dir: BorrowedFd<'_>,
        prefix: &[u8],
        name: &[u8],
        recurse: bool,
    ) -> Result<(), ArchiveError> {
        let path = join(prefix, name);
        let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(self.ioe("stat", &path, e)),
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        let mut h = Header::new_gnu();
        // The file-type bits too (040755, 0100644), as Docker's archive package writes them:
        // layers strata makes then list like docker's, entry for entry.
        h.set_mode(st.st_mode & 0o177777);
        h.set_uid(u64::from(st.st_uid));
        h.set_gid(u64::from(st.st_gid));
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(0);
        if self.overlay && ft == FileType::CharacterDevice && st.st_rdev == 0 {
            h.set_entry_type(EntryType::Regular);
            h.set_mode(0o600);
            let wh = join(prefix, &[WHITEOUT_PREFIX, name].concat());
            self.entry(h, &wh, None, &[], io::empty())?;
            return Ok(());
        }
        if ft == FileType::Socket {
            return Ok(());
        }
        let xattrs = read_xattrs(dir, name).map_err(|e| self.ioe("read xattrs of", &path, e))?;
        if ft != FileType::Directory && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.seen.get(&key).cloned() {
                h.set_entry_type(EntryType::Link);
                self.entry(h, &path, Some(&first), &[], io::empty())?;
                return Ok(());
            }
            self.seen.insert(key, path.clone());
        }
        match ft {
            FileType::Directory => {
                h.set_entry_type(EntryType::Directory);
                let dpath = [&path[..], b"/"].concat();
                self.entry(h.clone(), &dpath, None, &xattrs, io::empty())?;
                let sub: OwnedFd = rfs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.ioe("open", &path, e))?;
                if self.overlay {
                    let opaque = get_xattr(&proc_path(dir, name), OVERLAY_OPAQUE_XATTR.as_bytes())
                        .map_err(|e| self.ioe("read xattrs of", &path, e))?;
                    if opaque.as_deref() == Some(b"y") {
                        h.set_entry_type(EntryType::Regular);
                        h.set_mode(st.st_mode & 0o777);
                        let wh = join(&path, WHITEOUT_OPAQUE);
                        self.entry(h, &wh, None, &[], io::empty())?;
                    }
                }
                if recurse {
                    self.walk(sub.as_fd(), &path)?;
                }
            }
            FileType::RegularFile => {
                let fd = rfs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.ioe("open", &path, e))?;
                let size = st.st_size as u64;
                h.set_entry_type(EntryType::Regular);
                h.set_size(size);
                self.entry(
                    h,
                    &path,
                    None,
                    &xattrs,
                    Exact {
                        inner: File::from(fd),
                        left: size,
                    },
                )?;
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| self.ioe("readlink", &path, e))?;
                h.set_entry_type(EntryType::Symlink);
                self.entry(h, &path, Some(target.as_bytes()), &xattrs, io::empty())?;
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                h.set_entry_type(if ft == FileType::CharacterDevice {
                    EntryType::Char
                } else {
                    EntryType::Block
                });
                h.set_device_major(rfs::major(st.st_rdev)).map_err(w_err)?;
                h.set_device_minor(rfs::minor(st.st_rdev)).map_err(w_err)?;
                self.entry(h, &path, None, &xattrs, io::empty())?;
            }
            FileType::Fifo => {
                h.set_entry_type(EntryType::Fifo);
                self.entry(h, &path, None, &xattrs, io::empty())?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    /// A comparable listing of a tree: path, kind, mode, owner, mtime, size/content, target,
    /// rdev, user./trusted. xattrs, and which earlier path shares the inode.
    fn listing(root: &Path) -> Vec<String> {
        fn walk(root: &Path, rel: &Path, out: &mut Vec<String>, inodes: &mut HashMap<u64, String>) {
            let mut names: Vec<_> = fs::read_dir(root.join(rel))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                let r = rel.join(&n);
                let p = root.join(&r);
                let m = fs::symlink_metadata(&p).unwrap();
                let rs = r.to_string_lossy().into_owned();
                let mut xs: Vec<String> = Vec::new();
                for k in ["user.a", "user.b", "trusted.overlay.opaque"] {
                    if let Ok(v) = getx(&p, k) {
                        xs.push(format!("{k}={v:?}"));
                    }
                }
                let link = if !m.is_dir() && m.nlink() > 1 {
                    inodes.entry(m.ino()).or_insert_with(|| rs.clone()).clone()
                } else {
                    String::new()
                };
                let content = if m.is_file() {
                    format!(
                        "{:?}",
                        crate::digest::Digest::of(&fs::read(&p).unwrap()).short()
                    )
                } else {
                    String::new()
                };
                let target = fs::read_link(&p)
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mtime = if m.file_type().is_symlink() {
                    0
                } else {
                    m.mtime()
                };
                out.push(format!(
                    "{rs} {:o} {}:{} {} {} {content} {target} {} {link} {xs:?}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    mtime,
                    m.len() * u64::from(m.is_file()),
                    m.rdev()
                ));
                if m.is_dir() {
                    walk(root, &r, out, inodes);
                }
            }
        }
        let mut out = Vec::new();
        walk(root, Path::new(""), &mut out, &mut HashMap::new());
        out
    }

    fn set_times(p: &Path, secs: i64) {
        let ts = rfs::Timestamps {
            last_access: rfs::Timespec {
                tv_sec: secs,
                tv_nsec: 0,
            },
            last_modification: rfs::Timespec {
                tv_sec: secs,
                tv_nsec: 0,
            },
        };
        rfs::utimensat(rfs::CWD, p, &ts, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    fn build_tree(r: &Path) {
        let long = "n".repeat(150);
        fs::create_dir_all(r.join("etc/sub")).unwrap();
        fs::create_dir_all(r.join(&long).join(&long)).unwrap();
        fs::write(r.join(&long).join(&long).join("deep"), b"deep").unwrap();
        fs::write(r.join("etc/passwd"), b"root:x:0:0\n").unwrap();
        fs::write(r.join("etc/empty"), b"").unwrap();
        fs::write(r.join("big"), vec![9u8; 300_000]).unwrap();
        fs::set_permissions(r.join("big"), fs::Permissions::from_mode(0o4755)).unwrap();
        rfs::chown(
            r.join("big"),
            Some(rfs::Uid::from_raw(3_000_000)),
            Some(rfs::Gid::from_raw(42)),
        )
        .unwrap();
        fs::hard_link(r.join("etc/passwd"), r.join("zlink")).unwrap();
        symlink("etc/passwd", r.join("sym")).unwrap();
        symlink("t".repeat(180), r.join("symlong")).unwrap();
        rfs::mknodat(
            rfs::CWD,
            r.join("null"),
            rfs::FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rfs::makedev(1, 3),
        )
        .unwrap();
        rfs::mknodat(
            rfs::CWD,
            r.join("fifo"),
            rfs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        rfs::setxattr(
            r.join("etc"),
            "user.a",
            b"dir-attr",
            rfs::XattrFlags::empty(),
        )
        .unwrap();
        rfs::setxattr(
            r.join("etc/passwd"),
            "user.b",
            b"file\0attr",
            rfs::XattrFlags::empty(),
        )
        .unwrap();
        for p in [
            "etc/passwd",
            "etc/empty",
            "big",
            "null",
            "fifo",
            "sym",
            "etc/sub",
            "etc",
            &long,
        ] {
            set_times(&r.join(p), 1_500_000_000);
        }
    }

    fn tar_of(dir: &Path, w: Option<WhiteoutFormat>) -> Vec<u8> {
        let mut out = Vec::new();
        tar_directory(dir, &mut out, w).unwrap();
        out
    }

    #[test]
    fn tar_directory_roundtrips_through_apply() {
        let src = Sandbox::new();
        build_tree(&src.root);
        let t = tar_of(&src.root, None);
        assert_eq!(t, tar_of(&src.root, None), "not deterministic");

        let mut a = tar::Archive::new(&t[..]);
        let names: Vec<(String, tar::EntryType)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                )
            })
            .collect();
        let first: Vec<&str> = names.iter().take(4).map(|(n, _)| n.as_str()).collect();
        assert_eq!(first, ["big", "etc/", "etc/empty", "etc/passwd"]);
        assert!(names.contains(&("zlink".into(), tar::EntryType::Link)));
        assert!(names.contains(&("null".into(), tar::EntryType::Char)));
        assert!(names.contains(&("fifo".into(), tar::EntryType::Fifo)));

        let dst = Sandbox::new();
        dst.apply(&t, WhiteoutFormat::Overlay).unwrap();
        assert_eq!(listing(&src.root), listing(&dst.root));
    }

    #[test]
    fn tar_directory_overlay_whiteouts() {
        let s = Sandbox::new();
        let r = &s.root;
        fs::create_dir(r.join("op")).unwrap();
        fs::write(r.join("op/kept"), b"k").unwrap();
        rfs::setxattr(
            r.join("op"),
            OVERLAY_OPAQUE_XATTR,
            b"y",
            rfs::XattrFlags::empty(),
        )
        .unwrap();
        rfs::mknodat(
            rfs::CWD,
            r.join("gone"),
            rfs::FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .unwrap();
        // overlayfs may share one whiteout inode between several whiteouts.
        fs::hard_link(r.join("gone"), r.join("gone2")).unwrap();
        set_times(&r.join("op"), 1_500_000_000);

        let t = tar_of(r, Some(WhiteoutFormat::Overlay));
        let mut a = tar::Archive::new(&t[..]);
        let names: Vec<(String, tar::EntryType, u64)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                    e.size(),
                )
            })
            .collect();
        let want = [
            (".wh.gone", tar::EntryType::Regular),
            (".wh.gone2", tar::EntryType::Regular),
            ("op/", tar::EntryType::Directory),
            ("op/.wh..wh..opq", tar::EntryType::Regular),
            ("op/kept", tar::EntryType::Regular),
        ];
        let got: Vec<(&str, tar::EntryType)> =
            names.iter().map(|(n, k, _)| (n.as_str(), *k)).collect();
        assert_eq!(got, want);
        // No trusted.overlay xattr is exported.
        assert!(!t.windows(15).any(|w| w == b"trusted.overlay"));

        // Applying it as an overlay layer gives the same upper directory back.
        let d = Sandbox::new();
        d.apply(&t, WhiteoutFormat::Overlay).unwrap();
        assert_eq!(
            getx(&d.root.join("op"), OVERLAY_OPAQUE_XATTR).unwrap(),
            b"y"
        );
        let m = fs::symlink_metadata(d.root.join("gone")).unwrap();
        assert_eq!((m.mode() & 0o170000, m.rdev()), (0o020000, 0));

        // Without whiteout conversion the device is written as a device.
        let t = tar_of(r, None);
        let mut a = tar::Archive::new(&t[..]);
        let kinds: Vec<tar::EntryType> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().entry_type())
            .collect();
        assert_eq!(kinds[0], tar::EntryType::Char);
    }
}
