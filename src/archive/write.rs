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
    let fd = rfs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::io("open", dir, e.into()))?;
    let mut w = Writer {
        b: tar::Builder::new(io::BufWriter::with_capacity(256 << 10, out)),
        root: dir.to_path_buf(),
        overlay: whiteouts == Some(WhiteoutFormat::Overlay),
        seen: HashMap::new(),
    };
    w.walk(fd.as_fd(), b"")?;
    let mut bw = w.b.into_inner().map_err(|e| w_err(e))?;
    bw.flush().map_err(w_err)
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
            let path = join(prefix, &name);
            let st = match rfs::statat(dir, &name[..], AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(self.ioe("stat", &path, e)),
            };
            let ft = FileType::from_raw_mode(st.st_mode);
            let mut h = Header::new_gnu();
            h.set_mode(st.st_mode & 0o7777);
            h.set_uid(u64::from(st.st_uid));
            h.set_gid(u64::from(st.st_gid));
            h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
            h.set_size(0);
            if self.overlay && ft == FileType::CharacterDevice && st.st_rdev == 0 {
                h.set_entry_type(EntryType::Regular);
                h.set_mode(0o600);
                let wh = join(prefix, &[WHITEOUT_PREFIX, &name[..]].concat());
                self.entry(h, &wh, None, &[], io::empty())?;
                continue;
            }
            if ft == FileType::Socket {
                continue;
            }
            let xattrs =
                read_xattrs(dir, &name).map_err(|e| self.ioe("read xattrs of", &path, e))?;
            if ft != FileType::Directory && st.st_nlink > 1 {
                let key = (st.st_dev, st.st_ino);
                if let Some(first) = self.seen.get(&key).cloned() {
                    h.set_entry_type(EntryType::Link);
                    self.entry(h, &path, Some(&first), &[], io::empty())?;
                    continue;
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
                        &name[..],
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| self.ioe("open", &path, e))?;
                    if self.overlay {
                        let opaque =
                            get_xattr(&proc_path(dir, &name), OVERLAY_OPAQUE_XATTR.as_bytes())
                                .map_err(|e| self.ioe("read xattrs of", &path, e))?;
                        if opaque.as_deref() == Some(b"y") {
                            h.set_entry_type(EntryType::Regular);
                            h.set_mode(st.st_mode & 0o777);
                            let wh = join(&path, WHITEOUT_OPAQUE);
                            self.entry(h, &wh, None, &[], io::empty())?;
                        }
                    }
                    self.walk(sub.as_fd(), &path)?;
                }
                FileType::RegularFile => {
                    let fd = rfs::openat(
                        dir,
                        &name[..],
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
                    let target = rfs::readlinkat(dir, &name[..], Vec::new())
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
        }
        Ok(())
    }
}
