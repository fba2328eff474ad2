//! Applying an untrusted, uncompressed layer tar onto a directory.
//!
//! The tar is parsed block by block (headers by [`super::tar_header`]) so that every byte of
//! the stream can be hashed (the diffID) and recorded for tar-split, and so that nothing is
//! interpreted the way a generic unpacker would (devices, whiteouts, directory xattrs are all
//! kept).
//!
//! Containment: the root directory is opened once; the parent directory of every entry is
//! opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so symlinks met on the way
//! are resolved as if `root` were `/`, and the last component is always handled with `*at`
//! calls that do not follow symlinks (an existing entry is removed and created anew with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, `mknodat`, `symlinkat`, ...). Paths with a `..` component or a
//! NUL byte are refused; absolute paths are taken relative to the root, as Docker does.
//!
//! Every file written is recorded for tar-split under its *canonical* path (the path of its
//! parent directory with symlinks resolved, inside the root), so reassembly finds it again
//! without having to follow the symlinks the tar used. When the tar itself later removes or
//! replaces a file it wrote, the file's content is captured into the tar-split data first.

use super::tar_header::{
    BLOCK, Entry, Input, MAX_META, Pax, build_entry, gnu_string, malformed, padding, parse_pax,
    parse_unsigned, unsafe_entry, verify_checksum,
};
use super::tarsplit::SplitWriter;
use super::*;
use crate::digest::HashingReader;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid,
    XattrFlags,
};
use rustix::io::Errno;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

const CHUNK: usize = 1 << 20;

pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub(crate) const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
pub(crate) const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
pub(crate) const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

/// Applies the uncompressed layer tar `stream` onto the existing directory `root`, writing
/// tar-split data to `split`. The stream is read to EOF and hashed (the diffID).
pub fn apply_layer(
    root: &Path,
    stream: impl Read,
    format: WhiteoutFormat,
    split: &mut dyn Write,
) -> Result<AppliedLayer, ArchiveError> {
    apply_layer_with(root, stream, format, split, None)
}

/// Where regular files' content can be placed from instead of written (migration from
/// another engine's store: the very files the stream's bytes were read from). The stream is
/// still read to EOF and hashed; only the writing of content is replaced, by a reflink
/// (FICLONE) or, when the donor allows it and the file's owner, mode and mtime already are
/// the header's, a hard link to the donor's inode (never modified: no chown, chmod or utimes
/// on it).
pub trait ContentDonor {
    /// The open file whose `size` bytes are the content starting at byte `offset` of the
    /// stream, if the donor has it.
    fn take(&mut self, offset: u64, size: u64) -> Option<File>;
    /// Whether a hard link to the donor's file may be made.
    fn link(&self) -> bool;
    /// Reflinking failed here (filesystem without FICLONE, or another device): offer no more
    /// files unless linking.
    fn clone_refused(&mut self);
}

/// `apply_layer`, with the content of regular files placed from `donor` where it has them.
pub fn apply_layer_with(
    root: &Path,
    stream: impl Read,
    format: WhiteoutFormat,
    split: &mut dyn Write,
    donor: Option<Box<dyn ContentDonor>>,
) -> Result<AppliedLayer, ArchiveError> {
    let rootfd = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::io("open", root, e.into()))?;
    let sw = SplitWriter::new(rootfd.as_fd())?;
    let mut x = Extractor {
        input: Input {
            r: HashingReader::new(BufReader::with_capacity(256 << 10, stream)),
        },
        root: Rc::new(rootfd),
        root_path: root.to_path_buf(),
        root_abs: None,
        format,
        cache: None,
        created: HashSet::new(),
        tracked: HashMap::new(),
        dir_times: HashMap::new(),
        split: sw,
        buf: vec![0u8; CHUNK],
        size: 0,
        donor,
    };
    x.run()?;
    x.finish_dir_times()?;
    let Extractor {
        input,
        split: sw,
        size,
        ..
    } = x;
    let (diff_id, tar_bytes) = input.r.finish();
    sw.finish(split)?;
    Ok(AppliedLayer {
        diff_id,
        size,
        tar_bytes,
    })
}

/// Normalises an entry path: leading `/` and empty or `.` components are dropped; `..`
/// components are refused.
fn clean_path(raw: &[u8]) -> Result<Vec<u8>, ArchiveError> {
    if raw.contains(&0) {
        return Err(unsafe_entry(raw, "NUL byte in name"));
    }
    let mut out = Vec::with_capacity(raw.len());
    for comp in raw.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err(unsafe_entry(raw, "path contains a '..' component")),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(comp);
            }
        }
    }
    Ok(out)
}

fn split_last(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().rposition(|&c| c == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&b""[..], p),
    }
}

pub(crate) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

fn show(p: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(p))
}

/// `openat2` retried on EAGAIN/EINTR (which RESOLVE_IN_ROOT may return on a concurrent rename).
fn oa2(dir: BorrowedFd<'_>, path: &[u8], fl: OFlags, res: ResolveFlags) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match rfs::openat2(dir, path, fl | OFlags::CLOEXEC, Mode::empty(), res) {
            Err(Errno::AGAIN | Errno::INTR) if tries < 16 => tries += 1,
            r => return r,
        }
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY);
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Lists a directory (without `.` and `..`).
pub(crate) fn list_dir(fd: BorrowedFd<'_>) -> Result<Vec<(Vec<u8>, FileType)>, Errno> {
    let mut d = rfs::Dir::read_from(fd)?;
    let mut v = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        v.push((n.to_vec(), ent.file_type()));
    }
    Ok(v)
}

fn file_type_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<FileType>, Errno> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn times(e: &Entry) -> Timestamps {
    Timestamps {
        last_access: e.atime,
        last_modification: e.mtime,
    }
}

// ---------------------------------------------------------------------------------------
// Applying entries
// ---------------------------------------------------------------------------------------

type Parent = (Rc<OwnedFd>, Rc<[u8]>);

struct Extractor<R: Read> {
    input: Input<R>,
    root: Rc<OwnedFd>,
    root_path: PathBuf,
    /// The root's absolute path as the kernel reports it (for canonical paths), lazily.
    root_abs: Option<Vec<u8>>,
    format: WhiteoutFormat,
    /// The last parent directory opened: (path as written in the tar, fd, canonical path).
    cache: Option<(Vec<u8>, Parent)>,
    /// Canonical paths this tar created or touched, with their ancestors (Apply format only):
    /// what an opaque directory keeps.
    created: HashSet<Vec<u8>>,
    /// Regular files written by this tar and recorded for tar-split as `File` records:
    /// canonical path -> (record id, size).
    tracked: HashMap<Vec<u8>, (u64, u64)>,
    /// Directory times, applied at the end (children change them): canonical path -> times.
    dir_times: HashMap<Vec<u8>, (Timespec, Timespec)>,
    split: SplitWriter,
    buf: Vec<u8>,
    size: u64,
    donor: Option<Box<dyn ContentDonor>>,
}

impl<R: Read> Extractor<R> {
    fn ioe(&self, op: &'static str, canon: &[u8], e: Errno) -> ArchiveError {
        ArchiveError::io(op, self.root_path.join(show(canon)), e.into())
    }

    fn run(&mut self) -> Result<(), ArchiveError> {
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Pax> = None;
        let mut hdr = [0u8; BLOCK];
        loop {
            let n = self.input.fill(&mut hdr)?;
            if n == 0 {
                if long_name.is_some() || long_link.is_some() || pax.is_some() {
                    return Err(ArchiveError::Truncated);
                }
                return Ok(());
            }
            if n < BLOCK {
                return Err(ArchiveError::Truncated);
            }
            self.split.raw(&hdr)?;
            if hdr.iter().all(|&b| b == 0) {
                // End of archive: the rest (more zero blocks, trailing bytes) is only hashed
                // and recorded.
                loop {
                    let k = self.input.fill(&mut self.buf)?;
                    if k == 0 {
                        return Ok(());
                    }
                    self.split.raw(&self.buf[..k])?;
                }
            }
            verify_checksum(&hdr)?;
            let kind = hdr[156];
            if matches!(kind, b'x' | b'g' | b'L' | b'K') {
                let size = parse_unsigned(&hdr[124..136], "size")?;
                if size > MAX_META {
                    return Err(malformed("extended header too large"));
                }
                let mut data = vec![0u8; size as usize];
                self.input.exact(&mut data)?;
                self.split.raw(&data)?;
                self.skip_raw(padding(size) as u64)?;
                match kind {
                    b'x' => parse_pax(&data, pax.get_or_insert_with(Pax::default))?,
                    // Global headers are validated but, as in Docker, not applied.
                    b'g' => parse_pax(&data, &mut Pax::default())?,
                    b'L' => long_name = Some(gnu_string(data)?),
                    _ => long_link = Some(gnu_string(data)?),
                }
                continue;
            }
            let e = build_entry(&hdr, long_name.take(), long_link.take(), pax.take())?;
            self.apply(e)?;
        }
    }

    /// Reads `n` bytes of the stream, recording them raw.
    fn skip_raw(&mut self, mut n: u64) -> Result<(), ArchiveError> {
        while n > 0 {
            let k = (CHUNK as u64).min(n) as usize;
            self.input.exact(&mut self.buf[..k])?;
            self.split.raw(&self.buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn apply(&mut self, e: Entry) -> Result<(), ArchiveError> {
        if !matches!(e.kind, b'0' | b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
            return Err(malformed(format!(
                "unsupported entry type {:?} for {}",
                e.kind as char,
                String::from_utf8_lossy(&e.path)
            )));
        }
        let path = clean_path(&e.path)?;
        let (dir, name) = split_last(&path);
        // Docker (overlay2) reports a layer's size as the bytes of its unpacked files:
        // regular file content plus symlink targets (st_size of a symlink).
        match e.kind {
            b'0' => self.size += e.size,
            b'2' => self.size += e.link.len() as u64,
            _ => {}
        }
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            if name == WHITEOUT_OPAQUE {
                self.opaque(dir)?;
            } else if name.starts_with(WHITEOUT_META_PREFIX) {
                // Other AUFS meta files (.wh..wh.plnk, .wh..wh.aufs): nothing to apply.
            } else {
                if target.is_empty() || target == b"." || target == b".." {
                    return Err(unsafe_entry(&e.path, "whiteout of an invalid name"));
                }
                self.whiteout(dir, target, &e)?;
            }
            return self.skip_raw(e.size + padding(e.size) as u64);
        }
        if path.is_empty() {
            if e.kind != b'5' {
                return Err(unsafe_entry(
                    &e.path,
                    "entry would replace the root directory",
                ));
            }
            let root = self.root.clone();
            self.set_dir_meta(root.as_fd(), &e, b"")?;
            self.mark_created(b"");
            return Ok(());
        }
        // A hardlink's target is resolved first: the entry's parent then stays cached.
        let link_target = if e.kind == b'1' {
            let t = clean_path(&e.link)?;
            if t.is_empty() {
                return Err(unsafe_entry(&e.link, "hardlink to the root directory"));
            }
            let (tdir, tname) = split_last(&t);
            let tname = tname.to_vec();
            match self.parent(tdir, false)? {
                Some(p) => Some((p, tname)),
                None => return Err(self.ioe("link to", &t, Errno::NOENT)),
            }
        } else {
            None
        };
        let (pfd, pcanon) = self.parent(dir, true)?.expect("parent created");
        let canon = join(&pcanon, name);
        let pfd = pfd.as_fd();
        match e.kind {
            b'0' => self.write_file(pfd, name, &canon, &e)?,
            b'5' => {
                match rfs::mkdirat(pfd, name, Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let ft =
                            file_type_at(pfd, name).map_err(|er| self.ioe("stat", &canon, er))?;
                        if ft != Some(FileType::Directory) {
                            self.remove_entry(pfd, name, &canon)?;
                            rfs::mkdirat(pfd, name, Mode::from_raw_mode(0o700))
                                .map_err(|er| self.ioe("mkdir", &canon, er))?;
                        }
                    }
                    Err(er) => return Err(self.ioe("mkdir", &canon, er)),
                }
                let d = rfs::openat(
                    pfd,
                    name,
                    DIR_FLAGS | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|er| self.ioe("open", &canon, er))?;
                self.set_dir_meta(d.as_fd(), &e, &canon)?;
            }
            b'2' => {
                self.create(pfd, name, &canon, || rfs::symlinkat(&e.link[..], pfd, name))?;
                self.set_meta_at(pfd, name, &canon, &e, false)?;
            }
            b'1' => {
                let ((tfd, _), tname) = link_target.expect("link target");
                self.create(pfd, name, &canon, || {
                    rfs::linkat(&*tfd, &tname[..], pfd, name, AtFlags::empty())
                })?;
            }
            _ => {
                let (ft, dev) = match e.kind {
                    b'3' => (FileType::CharacterDevice, rfs::makedev(e.major, e.minor)),
                    b'4' => (FileType::BlockDevice, rfs::makedev(e.major, e.minor)),
                    _ => (FileType::Fifo, 0),
                };
                self.create(pfd, name, &canon, || {
                    rfs::mknodat(pfd, name, ft, Mode::empty(), dev)
                })?;
                self.set_meta_at(pfd, name, &canon, &e, true)?;
            }
        }
        self.mark_created(&canon);
        if e.kind != b'0' {
            self.skip_raw(e.size + padding(e.size) as u64)?;
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        canon: &[u8],
        e: &Entry,
    ) -> Result<(), ArchiveError> {
        let offset = self.input.r.bytes_read();
        let donated = match self.donor.as_mut() {
            Some(d) if e.size > 0 => d.take(offset, e.size),
            _ => None,
        };
        if let Some(src) = donated {
            return self.write_donated(pfd, name, canon, e, src);
        }
        let fl =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = self.create(pfd, name, canon, || {
            rfs::openat(pfd, name, fl, Mode::from_raw_mode(0o600))
        })?;
        let f = File::from(fd);
        let write_err = |er| ArchiveError::io("write", self.root_path.join(show(canon)), er);
        let mut left = e.size;
        let mut pos = 0u64;
        let mut skipped = false;
        while left > 0 {
            let k = (CHUNK as u64).min(left) as usize;
            self.input.exact(&mut self.buf[..k])?;
            skipped |= write_sparse(&f, &self.buf[..k], pos).map_err(write_err)?;
            pos += k as u64;
            left -= k as u64;
        }
        if skipped {
            // Trailing zeros were skipped too: the length makes them a hole at the end.
            f.set_len(e.size).map_err(write_err)?;
        }
        let id = self.split.file(canon, e.size)?;
        self.tracked.insert(canon.to_vec(), (id, e.size));
        self.skip_raw(padding(e.size) as u64)?;
        self.finish_file(&f, canon, e)
    }

    fn finish_file(&mut self, f: &File, canon: &[u8], e: &Entry) -> Result<(), ArchiveError> {
        rfs::fchown(f, Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))
            .map_err(|er| self.ioe("chown", canon, er))?;
        rfs::fchmod(f, Mode::from_raw_mode(e.mode)).map_err(|er| self.ioe("chmod", canon, er))?;
        self.set_xattrs(XattrTarget::Fd(f.as_fd()), &e.xattrs, canon)?;
        rfs::futimens(f, &times(e)).map_err(|er| self.ioe("set times of", canon, er))?;
        Ok(())
    }

    /// A regular file whose content the donor has: the stream's bytes are read (hashed) and
    /// dropped, then the donor's file is linked (same owner, mode, mtime, no xattrs in the
    /// header) or reflinked, or else copied in the kernel.
    fn write_donated(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        canon: &[u8],
        e: &Entry,
        mut src: File,
    ) -> Result<(), ArchiveError> {
        let mut left = e.size;
        while left > 0 {
            let k = (CHUNK as u64).min(left) as usize;
            self.input.exact(&mut self.buf[..k])?;
            left -= k as u64;
        }
        let id = self.split.file(canon, e.size)?;
        self.skip_raw(padding(e.size) as u64)?;
        // Tracked only once placed: replacing what is already at this path (a btrfs
        // snapshot holds the parent layer's file there) must not capture that file as this
        // entry's content.
        let link = self.donor.as_ref().is_some_and(|d| d.link())
            && e.xattrs.is_empty()
            && rfs::fstat(&src).is_ok_and(|st| {
                st.st_uid == e.uid
                    && st.st_gid == e.gid
                    && st.st_mode & 0o7777 == e.mode & 0o7777
                    && st.st_mtime == e.mtime.tv_sec
                    && st.st_mtime_nsec as i64 == e.mtime.tv_nsec
            });
        if link {
            let mut r = rfs::linkat(&src, c"", pfd, name, AtFlags::EMPTY_PATH);
            if r == Err(Errno::EXIST) {
                self.remove_entry(pfd, name, canon)?;
                r = rfs::linkat(&src, c"", pfd, name, AtFlags::EMPTY_PATH);
            }
            if r.is_ok() {
                self.tracked.insert(canon.to_vec(), (id, e.size));
                return Ok(());
            }
        }
        let fl =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = self.create(pfd, name, canon, || {
            rfs::openat(pfd, name, fl, Mode::from_raw_mode(0o600))
        })?;
        let f = File::from(fd);
        if rfs::ioctl_ficlone(&f, &src).is_err() {
            if let Some(d) = self.donor.as_mut() {
                d.clone_refused();
            }
            let copy_err = |er| ArchiveError::io("copy to", self.root_path.join(show(canon)), er);
            std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(0)).map_err(copy_err)?;
            let n = std::io::copy(&mut (&src).take(e.size), &mut &f).map_err(copy_err)?;
            if n != e.size {
                return Err(ArchiveError::SplitMismatch(format!(
                    "{} changed while it was adopted",
                    String::from_utf8_lossy(canon)
                )));
            }
        }
        self.tracked.insert(canon.to_vec(), (id, e.size));
        self.finish_file(&f, canon, e)
    }

    fn set_dir_meta(
        &mut self,
        d: BorrowedFd<'_>,
        e: &Entry,
        canon: &[u8],
    ) -> Result<(), ArchiveError> {
        rfs::fchown(d, Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))
            .map_err(|er| self.ioe("chown", canon, er))?;
        rfs::fchmod(d, Mode::from_raw_mode(e.mode)).map_err(|er| self.ioe("chmod", canon, er))?;
        self.set_xattrs(XattrTarget::Fd(d), &e.xattrs, canon)?;
        self.dir_times.insert(canon.to_vec(), (e.atime, e.mtime));
        Ok(())
    }

    /// Ownership, mode (not for symlinks), xattrs and times of a non-directory, non-regular
    /// entry just created as `name` in `pfd`.
    fn set_meta_at(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        canon: &[u8],
        e: &Entry,
        chmod: bool,
    ) -> Result<(), ArchiveError> {
        rfs::chownat(
            pfd,
            name,
            Some(Uid::from_raw(e.uid)),
            Some(Gid::from_raw(e.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|er| self.ioe("chown", canon, er))?;
        if chmod {
            rfs::chmodat(pfd, name, Mode::from_raw_mode(e.mode), AtFlags::empty())
                .map_err(|er| self.ioe("chmod", canon, er))?;
        }
        self.set_xattrs(XattrTarget::At(pfd, name), &e.xattrs, canon)?;
        rfs::utimensat(pfd, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|er| self.ioe("set times of", canon, er))?;
        Ok(())
    }

    fn set_xattrs(
        &self,
        t: XattrTarget<'_>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        canon: &[u8],
    ) -> Result<(), ArchiveError> {
        for (k, v) in xattrs {
            if k.starts_with(OVERLAY_XATTR_PREFIX) {
                continue;
            }
            let r = match t {
                XattrTarget::Fd(fd) => rfs::fsetxattr(fd, &k[..], v, XattrFlags::empty()),
                XattrTarget::At(pfd, name) => {
                    let p = [
                        format!("/proc/self/fd/{}/", pfd.as_raw_fd()).as_bytes(),
                        name,
                    ]
                    .concat();
                    rfs::lsetxattr(&p[..], &k[..], v, XattrFlags::empty())
                }
            };
            match r {
                Ok(()) => {}
                Err(Errno::NOTSUP) => {}
                // user.* xattrs are not allowed on symlinks and special files.
                Err(Errno::PERM) if matches!(t, XattrTarget::At(..)) => {}
                Err(_) if k.as_slice() == b"security.selinux" => {}
                Err(er) => return Err(self.ioe("set xattr on", canon, er)),
            }
        }
        Ok(())
    }

    /// Runs `mk` (which creates `name` in `pfd` exclusively); if the name exists, removes the
    /// existing entry (capturing content this tar wrote there) and runs it again.
    fn create<T>(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        canon: &[u8],
        mut mk: impl FnMut() -> Result<T, Errno>,
    ) -> Result<T, ArchiveError> {
        match mk() {
            Ok(v) => return Ok(v),
            Err(Errno::EXIST) => {}
            Err(er) => return Err(self.ioe("create", canon, er)),
        }
        self.remove_entry(pfd, name, canon)?;
        mk().map_err(|er| self.ioe("create", canon, er))
    }

    /// Removes `name` in `pfd` (recursively for a directory), never following symlinks;
    /// a missing entry is not an error.
    fn remove_entry(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        canon: &[u8],
    ) -> Result<(), ArchiveError> {
        match file_type_at(pfd, name).map_err(|er| self.ioe("stat", canon, er))? {
            None => Ok(()),
            Some(FileType::Directory) => {
                self.cache = None;
                self.remove_tree(pfd, name, canon)
            }
            Some(ft) => {
                if ft == FileType::Symlink {
                    self.cache = None;
                }
                if ft == FileType::RegularFile {
                    self.capture_if_tracked(pfd, name, canon)?;
                }
                match rfs::unlinkat(pfd, name, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => Ok(()),
                    Err(er) => Err(self.ioe("remove", canon, er)),
                }
            }
        }
    }

    fn remove_tree(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        canon: &[u8],
    ) -> Result<(), ArchiveError> {
        let d = rfs::openat(
            pfd,
            name,
            DIR_FLAGS | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|er| self.ioe("open", canon, er))?;
        let children = list_dir(d.as_fd()).map_err(|er| self.ioe("read directory", canon, er))?;
        for (n, _) in children {
            let cc = join(canon, &n);
            self.remove_entry(d.as_fd(), &n, &cc)?;
        }
        match rfs::unlinkat(pfd, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(er) => Err(self.ioe("remove", canon, er)),
        }
    }

    fn capture_if_tracked(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        canon: &[u8],
    ) -> Result<(), ArchiveError> {
        if let Some((id, size)) = self.tracked.remove(canon) {
            let fd = rfs::openat(
                pfd,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|er| self.ioe("open", canon, er))?;
            self.split
                .capture(id, size, &mut File::from(fd), &mut self.buf)
                .map_err(|er| match er {
                    ArchiveError::SplitMismatch(m) => {
                        ArchiveError::SplitMismatch(format!("{}: {m}", show(canon).display()))
                    }
                    other => other,
                })?;
        }
        Ok(())
    }

    fn mark_created(&mut self, canon: &[u8]) {
        if self.format != WhiteoutFormat::Apply {
            return;
        }
        let mut p = canon;
        while self.created.insert(p.to_vec()) && !p.is_empty() {
            p = split_last(p).0;
        }
    }

    fn whiteout(&mut self, dir: &[u8], target: &[u8], e: &Entry) -> Result<(), ArchiveError> {
        let overlay = self.format == WhiteoutFormat::Overlay;
        let Some((pfd, pcanon)) = self.parent(dir, overlay)? else {
            return Ok(());
        };
        let canon = join(&pcanon, target);
        let pfd = pfd.as_fd();
        if overlay {
            self.create(pfd, target, &canon, || {
                rfs::mknodat(pfd, target, FileType::CharacterDevice, Mode::empty(), 0)
            })?;
            rfs::chownat(
                pfd,
                target,
                Some(Uid::from_raw(e.uid)),
                Some(Gid::from_raw(e.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|er| self.ioe("chown", &canon, er))?;
        } else {
            self.remove_entry(pfd, target, &canon)?;
        }
        Ok(())
    }

    fn opaque(&mut self, dir: &[u8]) -> Result<(), ArchiveError> {
        let overlay = self.format == WhiteoutFormat::Overlay;
        let Some((pfd, pcanon)) = self.parent(dir, overlay)? else {
            return Ok(());
        };
        if overlay {
            rfs::fsetxattr(&*pfd, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|er| self.ioe("set opaque xattr on", &pcanon, er))?;
        } else {
            self.mark_created(&pcanon);
            self.prune(pfd.as_fd(), &pcanon)?;
        }
        Ok(())
    }

    /// Removes everything under `d` that this tar did not create (opaque directory, Apply).
    fn prune(&mut self, d: BorrowedFd<'_>, canon: &[u8]) -> Result<(), ArchiveError> {
        let children = list_dir(d).map_err(|er| self.ioe("read directory", canon, er))?;
        for (n, ft) in children {
            let cc = join(canon, &n);
            if !self.created.contains(&cc) {
                self.remove_entry(d, &n, &cc)?;
                continue;
            }
            let ft = if ft == FileType::Unknown {
                file_type_at(d, &n).map_err(|er| self.ioe("stat", &cc, er))?
            } else {
                Some(ft)
            };
            if ft == Some(FileType::Directory) {
                let sub = rfs::openat(
                    d,
                    &n[..],
                    DIR_FLAGS | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|er| self.ioe("open", &cc, er))?;
                self.prune(sub.as_fd(), &cc)?;
            }
        }
        Ok(())
    }

    /// Opens the directory `dir` (a cleaned path, as written in the tar) inside the root,
    /// following symlinks inside the root only, and returns it with its canonical path.
    /// Missing directories are created (mode 0755) if `create`, else `None` is returned.
    fn parent(&mut self, dir: &[u8], create: bool) -> Result<Option<Parent>, ArchiveError> {
        if dir.is_empty() {
            return Ok(Some((self.root.clone(), Rc::from(&b""[..]))));
        }
        if let Some((t, p)) = &self.cache
            && t.as_slice() == dir
        {
            return Ok(Some(p.clone()));
        }
        let root = self.root.clone();
        let (fd, canon) = match oa2(
            root.as_fd(),
            dir,
            DIR_FLAGS,
            IN_ROOT | ResolveFlags::NO_SYMLINKS,
        ) {
            Ok(fd) => (fd, dir.to_vec()),
            Err(Errno::LOOP) => match oa2(root.as_fd(), dir, DIR_FLAGS, IN_ROOT) {
                Ok(fd) => {
                    let c = self.canonical(fd.as_fd(), dir)?;
                    (fd, c)
                }
                Err(Errno::NOENT) if create => self.make_dirs(dir)?,
                Err(Errno::NOENT) => return Ok(None),
                Err(er) => return Err(self.ioe("open", dir, er)),
            },
            Err(Errno::NOENT) if create => self.make_dirs(dir)?,
            Err(Errno::NOENT) => return Ok(None),
            Err(er) => return Err(self.ioe("open", dir, er)),
        };
        let p: Parent = (Rc::new(fd), Rc::from(canon));
        self.cache = Some((dir.to_vec(), p.clone()));
        Ok(Some(p))
    }

    /// Creates the missing directories of `dir` (inside the root) one by one.
    fn make_dirs(&mut self, dir: &[u8]) -> Result<(OwnedFd, Vec<u8>), ArchiveError> {
        let root = self.root.clone();
        let mut cur = rustix::io::dup(&*root).map_err(|er| self.ioe("dup", b"", er))?;
        let mut end = 0;
        for comp in dir.split(|&c| c == b'/') {
            end += comp.len();
            let prefix = &dir[..end];
            end += 1;
            match oa2(root.as_fd(), prefix, DIR_FLAGS, IN_ROOT) {
                Ok(fd) => cur = fd,
                Err(Errno::NOENT) => {
                    match rfs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) => {}
                        // Exists but did not resolve: a dangling symlink.
                        Err(Errno::EXIST) => {
                            return Err(self.ioe("create directory", prefix, Errno::NOENT));
                        }
                        Err(er) => return Err(self.ioe("create directory", prefix, er)),
                    }
                    rfs::chmodat(&cur, comp, Mode::from_raw_mode(0o755), AtFlags::empty())
                        .map_err(|er| self.ioe("chmod", prefix, er))?;
                    cur = rfs::openat(
                        &cur,
                        comp,
                        DIR_FLAGS | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|er| self.ioe("open", prefix, er))?;
                    if self.format == WhiteoutFormat::Apply {
                        let c = self.canonical(cur.as_fd(), prefix)?;
                        self.mark_created(&c);
                    }
                }
                Err(er) => return Err(self.ioe("open", prefix, er)),
            }
        }
        let canon = self.canonical(cur.as_fd(), dir)?;
        Ok((cur, canon))
    }

    /// The path of directory `fd` relative to the root, symlinks resolved (from /proc).
    fn canonical(&mut self, fd: BorrowedFd<'_>, what: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        let link = |fd: BorrowedFd<'_>| -> Result<Vec<u8>, Errno> {
            Ok(
                rfs::readlink(format!("/proc/self/fd/{}", fd.as_raw_fd()), Vec::new())?
                    .into_bytes(),
            )
        };
        if self.root_abs.is_none() {
            let r = link(self.root.as_fd()).map_err(|er| self.ioe("resolve", b"", er))?;
            self.root_abs = Some(r);
        }
        let abs = link(fd).map_err(|er| self.ioe("resolve", what, er))?;
        let root = self.root_abs.as_deref().unwrap();
        if abs == root {
            return Ok(Vec::new());
        }
        let rest = if root == b"/" {
            abs.strip_prefix(b"/")
        } else {
            abs.strip_prefix(root).and_then(|r| r.strip_prefix(b"/"))
        };
        match rest {
            Some(r) => Ok(r.to_vec()),
            None => Err(unsafe_entry(what, "directory resolved outside the root")),
        }
    }

    fn finish_dir_times(&mut self) -> Result<(), ArchiveError> {
        let mut dirs: Vec<_> = self.dir_times.drain().collect();
        dirs.sort_by_key(|(p, _)| {
            std::cmp::Reverse(p.iter().filter(|&&c| c == b'/').count() + usize::from(!p.is_empty()))
        });
        for (p, (atime, mtime)) in dirs {
            let ts = Timestamps {
                last_access: atime,
                last_modification: mtime,
            };
            let r = if p.is_empty() {
                rfs::futimens(&*self.root, &ts)
            } else {
                match oa2(
                    self.root.as_fd(),
                    &p,
                    DIR_FLAGS | OFlags::NOFOLLOW,
                    IN_ROOT | ResolveFlags::NO_SYMLINKS,
                ) {
                    Ok(fd) => rfs::futimens(&fd, &ts),
                    // Removed or replaced later in the tar.
                    Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => continue,
                    Err(er) => Err(er),
                }
            };
            r.map_err(|er| self.ioe("set times of", &p, er))?;
        }
        Ok(())
    }
}

/// Granularity of hole detection: the page and file system block size here, so a skipped
/// block is a whole block of the file that need not be allocated.
const HOLE_BLOCK: usize = 4096;

/// Writes `data` at `offset` of the freshly created (empty) file `f`, except for its aligned
/// all-zero blocks, which are skipped and stay holes: a layer file of gigabytes of zeros (a
/// disk image, a preallocated database, or a decompression bomb) then takes disk space for its
/// real data only, yet reads back the same. The caller sets the final length. Returns whether
/// anything was skipped.
fn write_sparse(f: &File, data: &[u8], offset: u64) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut skipped = false;
    // The pending run of non-zero blocks: data[run..at].
    let mut run = 0;
    let mut at = 0;
    // Blocks are aligned to the file offset, so that a skipped block is a whole file block.
    let first = HOLE_BLOCK - (offset % HOLE_BLOCK as u64) as usize;
    let mut next = first.min(data.len());
    while at < data.len() {
        let block = &data[at..next];
        if block.len() == HOLE_BLOCK && is_zero(block) || next == data.len() && is_zero(block) {
            if run < at {
                f.write_all_at(&data[run..at], offset + run as u64)?;
            }
            skipped = true;
            run = next;
        }
        at = next;
        next = (next + HOLE_BLOCK).min(data.len());
    }
    if run < data.len() {
        f.write_all_at(&data[run..], offset + run as u64)?;
    }
    Ok(skipped)
}

/// Whether `b` is all zeros; without early exit per byte so that it vectorizes.
fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    let body = chunks
        .by_ref()
        .all(|c| c.iter().fold(0u8, |a, &x| a | x) == 0);
    body && chunks.remainder().iter().all(|&x| x == 0)
}

#[derive(Clone, Copy)]
enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    /// (parent dir, name) of a symlink or special file
    At(BorrowedFd<'a>, &'a [u8]),
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    fn is_unsafe<T: std::fmt::Debug>(r: Result<T, ArchiveError>) {
        match r {
            Err(ArchiveError::Unsafe { .. }) => {}
            other => panic!("expected Unsafe, got {other:?}"),
        }
    }

    #[test]
    fn dotdot_escape_rejected() {
        for name in ["../outside/x", "a/../../outside/x", "a/.."] {
            let s = Sandbox::new();
            let mut t = Vec::new();
            file(&mut t, name, b"pwned");
            end(&mut t);
            is_unsafe(s.apply(&t, WhiteoutFormat::Overlay));
            s.assert_outside_untouched();
            assert!(!exists(&s.root.join("x")));
        }
    }

    #[test]
    fn absolute_path_is_contained() {
        let s = Sandbox::new();
        let mut t = Vec::new();
        let abs = format!("{}/x", s.outside_str());
        file(&mut t, &abs, b"data");
        file(&mut t, "/top", b"top");
        end(&mut t);
        s.apply(&t, WhiteoutFormat::Overlay).unwrap();
        s.assert_outside_untouched();
        assert_eq!(
            fs::read(s.root.join(abs.trim_start_matches('/'))).unwrap(),
            b"data"
        );
        assert_eq!(fs::read(s.root.join("top")).unwrap(), b"top");
    }

    #[test]
    fn symlink_then_write_absolute() {
        // The symlink points at the real "outside" directory: writing through it must land
        // inside the root (here: fail, since root has no such directory).
        let s = Sandbox::new();
        let mut t = Vec::new();
        symlink(&mut t, "a", &s.outside_str());
        file(&mut t, "a/secret", b"pwned");
        file(&mut t, "a/new", b"pwned");
        end(&mut t);
        assert!(s.apply(&t, WhiteoutFormat::Overlay).is_err());
        s.assert_outside_untouched();

        // With the target present inside the root, the write lands there.
        let s = Sandbox::new();
        let host_passwd = fs::read("/etc/passwd").ok();
        let mut t = Vec::new();
        dir(&mut t, "etc/");
        symlink(&mut t, "a", "/etc");
        file(&mut t, "a/passwd", b"root::0:0::/:/bin/sh\n");
        end(&mut t);
        s.apply(&t, WhiteoutFormat::Apply).unwrap();
        assert_eq!(
            fs::read(s.root.join("etc/passwd")).unwrap(),
            b"root::0:0::/:/bin/sh\n"
        );
        assert_eq!(fs::read("/etc/passwd").ok(), host_passwd);
        assert!(
            fs::symlink_metadata(s.root.join("a"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        s.assert_outside_untouched();
    }

    #[test]
    fn symlink_then_write_relative() {
        let s = Sandbox::new();
        let mut t = Vec::new();
        dir(&mut t, "outside/");
        dir(&mut t, "d/");
        symlink(&mut t, "d/up", "../../../../../outside");
        file(&mut t, "d/up/secret", b"pwned");
        file(&mut t, "d/up/x", b"pwned");
        end(&mut t);
        s.apply(&t, WhiteoutFormat::Overlay).unwrap();
        s.assert_outside_untouched();
        assert_eq!(fs::read(s.root.join("outside/secret")).unwrap(), b"pwned");
        assert_eq!(fs::read(s.root.join("outside/x")).unwrap(), b"pwned");
    }

    #[test]
    fn symlink_final_component_is_replaced_not_followed() {
        let s = Sandbox::new();
        let mut t = Vec::new();
        symlink(&mut t, "f", &format!("{}/secret", s.outside_str()));
        file(&mut t, "f", b"pwned");
        end(&mut t);
        s.apply(&t, WhiteoutFormat::Overlay).unwrap();
        s.assert_outside_untouched();
        assert_eq!(fs::read(s.root.join("f")).unwrap(), b"pwned");
    }

    #[test]
    fn hardlink_dotdot_rejected() {
        let s = Sandbox::new();
        let mut t = Vec::new();
        hardlink(&mut t, "x", "../outside/secret");
        end(&mut t);
        is_unsafe(s.apply(&t, WhiteoutFormat::Overlay));
        s.assert_outside_untouched();
        assert!(!exists(&s.root.join("x")));
    }

    #[test]
    fn hardlink_absolute_is_contained() {
        let s = Sandbox::new();
        let mut t = Vec::new();
        hardlink(&mut t, "x", &format!("{}/secret", s.outside_str()));
        end(&mut t);
        assert!(matches!(
            s.apply(&t, WhiteoutFormat::Overlay),
            Err(ArchiveError::Io { .. })
        ));
        s.assert_outside_untouched();
        assert!(!exists(&s.root.join("x")));

        // An absolute target that exists inside the root is linked.
        let s = Sandbox::new();
        let mut t = Vec::new();
        file(&mut t, "f", b"hello");
        hardlink(&mut t, "x", "/f");
        end(&mut t);
        s.apply(&t, WhiteoutFormat::Overlay).unwrap();
        assert_eq!(
            fs::metadata(s.root.join("x")).unwrap().ino(),
            fs::metadata(s.root.join("f")).unwrap().ino()
        );
    }

    #[test]
    fn hardlink_through_symlinked_dir_is_contained() {
        for target in [String::new(), "../../../..".to_string()] {
            let s = Sandbox::new();
            let target = if target.is_empty() {
                s.outside_str()
            } else {
                format!("{target}{}", s.outside_str())
            };
            let mut t = Vec::new();
            symlink(&mut t, "l", &target);
            hardlink(&mut t, "x", "l/secret");
            end(&mut t);
            assert!(s.apply(&t, WhiteoutFormat::Apply).is_err());
            s.assert_outside_untouched();
            assert!(!exists(&s.root.join("x")));
        }
    }

    #[test]
    fn whiteout_escape_rejected() {
        for name in [
            "../.wh.secret",
            "a/../../.wh.secret",
            "../outside/.wh.secret",
            ".wh...",
        ] {
            for f in [WhiteoutFormat::Overlay, WhiteoutFormat::Apply] {
                let s = Sandbox::new();
                let mut t = Vec::new();
                file(&mut t, name, b"");
                end(&mut t);
                is_unsafe(s.apply(&t, f));
                s.assert_outside_untouched();
            }
        }
    }

    #[test]
    fn nul_in_name_rejected() {
        let s = Sandbox::new();
        // In the ustar name field, hidden after a NUL.
        let mut t = Vec::new();
        push(&mut t, hdr(b"a\0/../../outside/x", b'0', 1, b""), b"x");
        end(&mut t);
        is_unsafe(s.apply(&t, WhiteoutFormat::Overlay));
        // In a GNU long name.
        let mut t = Vec::new();
        let long = b"a\0b\0";
        push(
            &mut t,
            hdr(b"././@LongLink", b'L', long.len() as u64, b""),
            long,
        );
        push(&mut t, hdr(b"a", b'0', 1, b""), b"x");
        end(&mut t);
        is_unsafe(s.apply(&t, WhiteoutFormat::Overlay));
        // In a PAX path.
        let mut t = Vec::new();
        push_pax(&mut t, &[("path", b"a\0b")]);
        push(&mut t, hdr(b"a", b'0', 1, b""), b"x");
        end(&mut t);
        is_unsafe(s.apply(&t, WhiteoutFormat::Overlay));
        s.assert_outside_untouched();
        assert!(fs::read_dir(&s.root).unwrap().next().is_none());
    }

    #[test]
    fn device_node_created_inside_root_only() {
        let s = Sandbox::new();
        let name = format!("strata-test-dev-{}", std::process::id());
        let mut t = Vec::new();
        dir(&mut t, "dev/");
        symlink(&mut t, "d", "/dev");
        let mut h = hdr(format!("d/{name}").as_bytes(), b'3', 0, b"");
        h[329..337].copy_from_slice(b"0000001\0");
        h[337..345].copy_from_slice(b"0000003\0");
        checksum(&mut h);
        push(&mut t, h, b"");
        let mut h = hdr(b"blk", b'4', 0, b"");
        h[329..337].copy_from_slice(b"0000007\0");
        h[337..345].copy_from_slice(b"0000002\0");
        checksum(&mut h);
        push(&mut t, h, b"");
        push(&mut t, hdr(b"fifo", b'6', 0, b""), b"");
        end(&mut t);
        s.apply(&t, WhiteoutFormat::Overlay).unwrap();
        assert!(!exists(&Path::new("/dev").join(&name)));
        let m = fs::symlink_metadata(s.root.join("dev").join(&name)).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!((rfs::major(m.rdev()), rfs::minor(m.rdev())), (1, 3));
        assert_eq!(m.permissions().mode() & 0o7777, 0o644);
        let m = fs::symlink_metadata(s.root.join("blk")).unwrap();
        assert!(m.file_type().is_block_device());
        assert_eq!((rfs::major(m.rdev()), rfs::minor(m.rdev())), (7, 2));
        assert!(
            fs::symlink_metadata(s.root.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        s.assert_outside_untouched();
    }

    #[test]
    fn truncated_stream() {
        let mut t = Vec::new();
        dir(&mut t, "d/");
        file(&mut t, "d/f", &[7u8; 2000]);
        end(&mut t);
        for cut in [300, 512 + 100, 1024 + 1000, 1024 + 2000, 1024 + 2048 - 1] {
            let s = Sandbox::new();
            let r = s.apply(&t[..cut], WhiteoutFormat::Overlay);
            assert!(
                matches!(r, Err(ArchiveError::Truncated)),
                "cut {cut}: {r:?}"
            );
        }
        // A PAX header with nothing after it.
        let mut t = Vec::new();
        push_pax(&mut t, &[("path", b"x")]);
        let s = Sandbox::new();
        assert!(matches!(
            s.apply(&t, WhiteoutFormat::Overlay),
            Err(ArchiveError::Truncated)
        ));
    }

    #[test]
    fn bad_checksum() {
        let s = Sandbox::new();
        let mut t = Vec::new();
        let mut h = hdr(b"f", b'0', 1, b"");
        h[0] = b'g';
        push(&mut t, h, b"x");
        end(&mut t);
        assert!(matches!(
            s.apply(&t, WhiteoutFormat::Overlay),
            Err(ArchiveError::Malformed(_))
        ));
        assert!(!exists(&s.root.join("g")));
    }

    #[test]
    fn sparse_unsupported() {
        let s = Sandbox::new();
        let mut t = Vec::new();
        push(&mut t, hdr(b"f", b'S', 0, b""), b"");
        end(&mut t);
        assert!(matches!(
            s.apply(&t, WhiteoutFormat::Overlay),
            Err(ArchiveError::Malformed(_))
        ));
    }

    #[test]
    fn whiteouts_overlay() {
        let s = Sandbox::new();
        let mut t = Vec::new();
        dir(&mut t, "a/");
        file(&mut t, "a/.wh..wh..opq", b"");
        file(&mut t, "a/keep", b"k");
        file(&mut t, ".wh.gone", b"");
        file(&mut t, "b/.wh.deep", b"");
        file(&mut t, ".wh..wh.plnk", b"");
        end(&mut t);
        s.apply(&t, WhiteoutFormat::Overlay).unwrap();
        for p in ["gone", "b/deep"] {
            let m = fs::symlink_metadata(s.root.join(p)).unwrap();
            assert!(m.file_type().is_char_device(), "{p}");
            assert_eq!(m.rdev(), 0);
        }
        let v = getx(&s.root.join("a"), OVERLAY_OPAQUE_XATTR).unwrap();
        assert_eq!(v, b"y");
        assert!(!exists(&s.root.join(".wh..wh.plnk")));
        assert!(!exists(&s.root.join("a/.wh..wh..opq")));
        assert!(!exists(&s.root.join(".wh.gone")));
    }

    #[test]
    fn whiteouts_apply() {
        let s = Sandbox::new();
        let r = &s.root;
        fs::create_dir_all(r.join("b/sub")).unwrap();
        fs::write(r.join("b/sub/f"), b"").unwrap();
        fs::write(r.join("c"), b"").unwrap();
        fs::create_dir_all(r.join("d/sub")).unwrap();
        fs::write(r.join("d/old"), b"").unwrap();
        fs::write(r.join("d/sub/old"), b"").unwrap();
        fs::create_dir_all(r.join("e/kept")).unwrap();
        fs::write(r.join("e/old"), b"").unwrap();
        fs::write(r.join("e/kept/old"), b"").unwrap();
        fs::write(r.join("e/kept/k2"), b"").unwrap();
        std::os::unix::fs::symlink(&s.outside, r.join("lnk")).unwrap();
        let mut t = Vec::new();
        file(&mut t, ".wh.b", b"");
        file(&mut t, ".wh.c", b"");
        file(&mut t, ".wh.missing", b"");
        file(&mut t, "nodir/.wh.x", b"");
        file(&mut t, "lnk/.wh.secret", b"");
        // Opaque marker right after the directory, before its children.
        dir(&mut t, "d/");
        file(&mut t, "d/.wh..wh..opq", b"");
        file(&mut t, "d/new", b"n");
        // Opaque marker after the children.
        dir(&mut t, "e/");
        file(&mut t, "e/new", b"n");
        file(&mut t, "e/kept/k2", b"n");
        file(&mut t, "e/.wh..wh..opq", b"");
        end(&mut t);
        s.apply(&t, WhiteoutFormat::Apply).unwrap();
        s.assert_outside_untouched();
        for gone in ["b", "c", "d/old", "d/sub", "e/old", "e/kept/old", "nodir"] {
            assert!(!exists(&r.join(gone)), "{gone}");
        }
        for kept in ["d/new", "e/new", "e/kept/k2", "lnk"] {
            assert!(exists(&r.join(kept)), "{kept}");
        }
        assert!(getx(&r.join("d"), OVERLAY_OPAQUE_XATTR).is_err());
    }

    #[test]
    fn dir_xattrs_survive_and_overlay_xattrs_dropped() {
        let s = Sandbox::new();
        let mut t = Vec::new();
        push_pax(
            &mut t,
            &[
                ("SCHILY.xattr.user.dir", b"dv"),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ],
        );
        dir(&mut t, "d/");
        file(&mut t, "d/child", b"c");
        push_pax(
            &mut t,
            &[
                ("SCHILY.xattr.user.file", b"\0bin\xff"),
                ("SCHILY.xattr.trusted.overlay.redirect", b"/x"),
            ],
        );
        file(&mut t, "d/f", b"f");
        end(&mut t);
        s.apply(&t, WhiteoutFormat::Overlay).unwrap();
        assert_eq!(getx(&s.root.join("d"), "user.dir").unwrap(), b"dv");
        assert!(getx(&s.root.join("d"), OVERLAY_OPAQUE_XATTR).is_err());
        assert_eq!(
            getx(&s.root.join("d/f"), "user.file").unwrap(),
            b"\0bin\xff"
        );
        assert!(getx(&s.root.join("d/f"), "trusted.overlay.redirect").is_err());
    }

    #[test]
    fn ownership_mode_mtime_applied() {
        let s = Sandbox::new();
        let mut t = Vec::new();
        let mut h = hdr(b"d/", b'5', 0, b"");
        h[100..108].copy_from_slice(b"0001750\0");
        h[108..116].copy_from_slice(b"0000042\0");
        h[136..148].copy_from_slice(b"01000000000\0");
        checksum(&mut h);
        push(&mut t, h, b"");
        push_pax(
            &mut t,
            &[("mtime", b"1234567890.123456789"), ("uid", b"3000000000")],
        );
        let mut h = hdr(b"d/suid", b'0', 3, b"");
        h[100..108].copy_from_slice(b"0004755\0");
        h[116..124].copy_from_slice(b"0001234\0");
        checksum(&mut h);
        push(&mut t, h, b"abc");
        // base-256 uid
        let mut h = hdr(b"d/l", b'2', 0, b"suid");
        h[108..116].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0x01, 0x00]);
        checksum(&mut h);
        push(&mut t, h, b"");
        end(&mut t);
        s.apply(&t, WhiteoutFormat::Overlay).unwrap();
        let m = fs::symlink_metadata(s.root.join("d/suid")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
        assert_eq!((m.uid(), m.gid()), (3_000_000_000, 0o1234));
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_234_567_890, 123_456_789));
        let m = fs::symlink_metadata(s.root.join("d")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o1750);
        assert_eq!(m.uid(), 0o42);
        assert_eq!(
            m.mtime(),
            0o1000000000,
            "dir mtime restored after its children"
        );
        let m = fs::symlink_metadata(s.root.join("d/l")).unwrap();
        assert_eq!(m.uid(), 256);
        assert_eq!(m.mtime(), 1_600_000_000);
    }

    #[test]
    fn diff_id_is_sha256_of_whole_stream() {
        let s = Sandbox::new();
        let mut t = Vec::new();
        file(&mut t, "a", b"hello");
        file(&mut t, "b", &[1u8; 3000]);
        symlink(&mut t, "c", "a");
        end(&mut t);
        t.extend_from_slice(&[0u8; 2048]);
        t.extend_from_slice(b"trailing garbage");
        let (a, _) = s.apply(&t, WhiteoutFormat::Overlay).unwrap();
        assert_eq!(a.diff_id, crate::digest::Digest::of(&t));
        assert_eq!(a.tar_bytes, t.len() as u64);
        assert_eq!(a.size, 3006, "3005 file bytes + the 1-byte symlink target");
    }

    #[test]
    fn existing_entries_replaced() {
        let s = Sandbox::new();
        fs::create_dir(s.root.join("wasdir")).unwrap();
        fs::write(s.root.join("wasdir/x"), b"").unwrap();
        fs::write(s.root.join("wasfile"), b"").unwrap();
        fs::create_dir(s.root.join("keepdir")).unwrap();
        fs::write(s.root.join("keepdir/x"), b"").unwrap();
        let mut t = Vec::new();
        file(&mut t, "wasdir", b"now a file");
        dir(&mut t, "wasfile/");
        dir(&mut t, "keepdir/");
        end(&mut t);
        s.apply(&t, WhiteoutFormat::Apply).unwrap();
        assert_eq!(fs::read(s.root.join("wasdir")).unwrap(), b"now a file");
        assert!(fs::metadata(s.root.join("wasfile")).unwrap().is_dir());
        assert!(exists(&s.root.join("keepdir/x")));
        assert_eq!(
            fs::metadata(s.root.join("keepdir"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
    }
}
