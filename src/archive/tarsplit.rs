//! tar-split: the data needed to re-create a layer's original tar stream byte for byte from
//! its unpacked directory.
//!
//! Format (the whole thing is one zstd stream):
//!
//! ```text
//! MAGIC ("STRATASPLIT", 11 bytes) VERSION (1 byte, = 1)
//! record*  END
//! record = 0x01 Raw    varint(len) bytes[len]          -- emitted verbatim
//!        | 0x02 File   varint(plen) path[plen] varint(size)
//!                                                      -- content of the regular file at
//!                                                         `path` (relative to the layer root)
//!        | 0x03 Inline varint(size) bytes[size]        -- file content captured because the
//!                                                         same tar later removed the file
//! END    = 0x00
//! ```
//!
//! While a layer is applied the records are written (zstd-compressed) to an unnamed temporary
//! file; content that the tar itself destroys later (a path written twice, a whiteout of a
//! file written earlier, ...) is copied to a second temporary file. At the end the records are
//! copied to the caller's writer, `File` records whose content was captured being turned into
//! `Inline` records. Memory stays bounded whatever the size of the layer.

use super::ArchiveError;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

const MAGIC: &[u8] = b"STRATASPLIT";
const VERSION: u8 = 1;
const TAG_END: u8 = 0;
const TAG_RAW: u8 = 1;
const TAG_FILE: u8 = 2;
const TAG_INLINE: u8 = 3;
const RAW_FLUSH: usize = 256 << 10;
const ZSTD_LEVEL: i32 = 3;

fn put_varint(w: &mut impl Write, mut v: u64) -> io::Result<()> {
    let mut b = [0u8; 10];
    let mut i = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            b[i] = byte;
            i += 1;
            break;
        }
        b[i] = byte | 0x80;
        i += 1;
    }
    w.write_all(&b[..i])
}

fn bad(msg: &str) -> ArchiveError {
    ArchiveError::SplitMismatch(msg.to_string())
}

fn read_byte(r: &mut impl Read) -> Result<Option<u8>, ArchiveError> {
    let mut b = [0u8; 1];
    loop {
        return match r.read(&mut b) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(b[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(ArchiveError::Read(e)),
        };
    }
}

fn get_varint(r: &mut impl Read) -> Result<u64, ArchiveError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = read_byte(r)?.ok_or_else(|| bad("truncated tar-split data"))?;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(bad("bad varint in tar-split data"))
}

/// Copies exactly `n` bytes from `r` to `w`; a short source is `short`'s error.
/// Files at least this large are written from a mapping rather than copied through a buffer:
/// for fsck and save, hashing is the real work and the kernel-to-user copy was 12% of it.
const MAP_THRESHOLD: u64 = 256 << 10;

/// Write `size` bytes of the file behind `fd` to `w` from a read-only mapping.
fn write_mapped(fd: &OwnedFd, size: u64, w: &mut impl Write) -> Result<(), ArchiveError> {
    use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};
    let len = usize::try_from(size).map_err(|_| bad("file too large to map"))?;
    // SAFETY: a private read-only mapping of `len` bytes of a regular file whose size was just
    // checked to be `len`; it is unmapped below and never outlives this function. Layer files
    // are immutable once committed (a truncation racing this read could fault, as for any
    // mmap reader; strata never truncates them).
    let ptr = unsafe {
        mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ,
            MapFlags::PRIVATE | MapFlags::POPULATE,
            fd,
            0,
        )
    }
    .map_err(|e| ArchiveError::Read(e.into()))?;
    // SAFETY: `ptr` maps `len` readable bytes (see above).
    let data = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
    let r = w
        .write_all(data)
        .map_err(|e| ArchiveError::io("write", "<output>", e));
    // SAFETY: unmapping exactly the mapping created above, after its last use.
    unsafe {
        let _ = munmap(ptr, len);
    }
    r
}

/// Writes the `size` bytes of a sparse file to `w`: holes (found with `SEEK_DATA`/`SEEK_HOLE`)
/// as zeros from memory, without reading them from the file, so that re-creating a layer
/// holding gigabytes of zeros costs the hashing of them, not the page cache.
fn write_holey(
    fd: &OwnedFd,
    size: u64,
    w: &mut impl Write,
    buf: &mut [u8],
    short: &str,
) -> Result<(), ArchiveError> {
    use rustix::fs::{SeekFrom as S, seek};
    let zeros = vec![0u8; buf.len()];
    let write_zeros = |w: &mut dyn Write, mut n: u64| -> Result<(), ArchiveError> {
        while n > 0 {
            let k = (zeros.len() as u64).min(n) as usize;
            w.write_all(&zeros[..k])
                .map_err(|e| ArchiveError::io("write", "<output>", e))?;
            n -= k as u64;
        }
        Ok(())
    };
    let mut pos = 0u64;
    while pos < size {
        let data = match seek(fd, S::Data(pos)) {
            Ok(d) => d.min(size),
            // No data after `pos`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => size,
            Err(e) => return Err(ArchiveError::Read(e.into())),
        };
        write_zeros(w, data - pos)?;
        if data >= size {
            break;
        }
        let hole = match seek(fd, S::Hole(data)) {
            Ok(h) => h.min(size),
            Err(e) => return Err(ArchiveError::Read(e.into())),
        };
        seek(fd, S::Start(data)).map_err(|e| ArchiveError::Read(e.into()))?;
        let mut f = File::from(rustix::io::dup(fd).map_err(|e| ArchiveError::Read(e.into()))?);
        copy_exact(&mut f, w, hole - data, buf, short)?;
        pos = hole;
    }
    Ok(())
}

fn copy_exact(
    r: &mut impl Read,
    w: &mut impl Write,
    n: u64,
    buf: &mut [u8],
    short: &str,
) -> Result<(), ArchiveError> {
    let mut left = n;
    while left > 0 {
        let want = (buf.len() as u64).min(left) as usize;
        let k = match r.read(&mut buf[..want]) {
            Ok(0) => return Err(bad(short)),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ArchiveError::Read(e)),
        };
        w.write_all(&buf[..k])
            .map_err(|e| ArchiveError::io("write", "<output>", e))?;
        left -= k as u64;
    }
    Ok(())
}

/// An unnamed temporary file, created in `dir` (so on the layer's filesystem) if possible,
/// else in the system temporary directory.
fn tmpfile(dir: BorrowedFd<'_>) -> Result<File, ArchiveError> {
    let fl = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, ".", fl, Mode::from_raw_mode(0o600)) {
        Ok(fd) => fd,
        Err(_) => {
            let t = std::env::temp_dir();
            rustix::fs::open(&t, fl, Mode::from_raw_mode(0o600))
                .map_err(|e| ArchiveError::io("create temporary file in", t, e.into()))?
        }
    };
    Ok(File::from(fd))
}

fn tmp_err(e: io::Error) -> ArchiveError {
    ArchiveError::io("write tar-split temporary file", "<tmpfile>", e)
}

/// Records tar-split data while a layer is applied (see the module documentation).
pub(crate) struct SplitWriter {
    records: zstd::stream::write::Encoder<'static, BufWriter<File>>,
    raw: Vec<u8>,
    next_id: u64,
    captures: Option<File>,
    captures_len: u64,
    captured: HashMap<u64, (u64, u64)>,
    tmpdir: rustix::fd::OwnedFd,
}

impl SplitWriter {
    pub(crate) fn new(tmpdir: BorrowedFd<'_>) -> Result<Self, ArchiveError> {
        let f = tmpfile(tmpdir)?;
        let mut records =
            zstd::stream::write::Encoder::new(BufWriter::with_capacity(256 << 10, f), ZSTD_LEVEL)
                .map_err(tmp_err)?;
        records.write_all(MAGIC).map_err(tmp_err)?;
        records.write_all(&[VERSION]).map_err(tmp_err)?;
        let tmpdir = rustix::io::dup(tmpdir).map_err(|e| tmp_err(e.into()))?;
        Ok(SplitWriter {
            records,
            raw: Vec::with_capacity(RAW_FLUSH + 1024),
            next_id: 0,
            captures: None,
            captures_len: 0,
            captured: HashMap::new(),
            tmpdir,
        })
    }

    /// Bytes of the stream that are emitted verbatim on reassembly.
    pub(crate) fn raw(&mut self, b: &[u8]) -> Result<(), ArchiveError> {
        if self.raw.len() + b.len() > RAW_FLUSH {
            self.flush_raw()?;
            if b.len() > RAW_FLUSH {
                self.records.write_all(&[TAG_RAW]).map_err(tmp_err)?;
                put_varint(&mut self.records, b.len() as u64).map_err(tmp_err)?;
                return self.records.write_all(b).map_err(tmp_err);
            }
        }
        self.raw.extend_from_slice(b);
        Ok(())
    }

    fn flush_raw(&mut self) -> Result<(), ArchiveError> {
        if self.raw.is_empty() {
            return Ok(());
        }
        self.records.write_all(&[TAG_RAW]).map_err(tmp_err)?;
        put_varint(&mut self.records, self.raw.len() as u64).map_err(tmp_err)?;
        self.records.write_all(&self.raw).map_err(tmp_err)?;
        self.raw.clear();
        Ok(())
    }

    /// A regular file's content, to be read back from `path` (relative to the layer root).
    /// Returns the record's id, for [`SplitWriter::capture`].
    pub(crate) fn file(&mut self, path: &[u8], size: u64) -> Result<u64, ArchiveError> {
        self.flush_raw()?;
        self.records.write_all(&[TAG_FILE]).map_err(tmp_err)?;
        put_varint(&mut self.records, path.len() as u64).map_err(tmp_err)?;
        self.records.write_all(path).map_err(tmp_err)?;
        put_varint(&mut self.records, size).map_err(tmp_err)?;
        let id = self.next_id;
        self.next_id += 1;
        Ok(id)
    }

    /// Keeps the content of file record `id` (read from `content`, exactly `size` bytes)
    /// because the file is about to be removed or replaced by the tar itself.
    pub(crate) fn capture(
        &mut self,
        id: u64,
        size: u64,
        content: &mut impl Read,
        buf: &mut [u8],
    ) -> Result<(), ArchiveError> {
        if self.captures.is_none() {
            self.captures = Some(tmpfile(self.tmpdir.as_fd())?);
        }
        let f = self.captures.as_mut().expect("captures file");
        let mut w = BufWriter::new(f);
        copy_exact(
            content,
            &mut w,
            size,
            buf,
            "file changed size before it could be captured",
        )?;
        let mut extra = [0u8; 1];
        if content.read(&mut extra).map_err(ArchiveError::Read)? != 0 {
            return Err(bad("file changed size before it could be captured"));
        }
        w.flush().map_err(tmp_err)?;
        self.captured.insert(id, (self.captures_len, size));
        self.captures_len += size;
        Ok(())
    }

    /// Ends the records and copies the tar-split data to `out`.
    pub(crate) fn finish(mut self, out: &mut dyn Write) -> Result<(), ArchiveError> {
        self.flush_raw()?;
        self.records.write_all(&[TAG_END]).map_err(tmp_err)?;
        let bw = self.records.finish().map_err(tmp_err)?;
        let mut f = bw.into_inner().map_err(|e| tmp_err(e.into_error()))?;
        f.seek(SeekFrom::Start(0)).map_err(tmp_err)?;
        let out_err = |e| ArchiveError::io("write tar-split data", "<split>", e);
        if self.captured.is_empty() {
            io::copy(&mut f, out).map_err(out_err)?;
            return out.flush().map_err(out_err);
        }
        // Rewrite, turning captured File records into Inline records.
        let mut caps = self.captures.take().expect("captures file");
        let mut r = zstd::stream::read::Decoder::new(f).map_err(ArchiveError::Read)?;
        let mut w = zstd::stream::write::Encoder::new(
            BufWriter::with_capacity(256 << 10, &mut *out),
            ZSTD_LEVEL,
        )
        .map_err(out_err)?;
        let mut buf = vec![0u8; 1 << 20];
        copy_exact(
            &mut r,
            &mut w,
            (MAGIC.len() + 1) as u64,
            &mut buf,
            "bad temporary records",
        )?;
        let mut id = 0u64;
        loop {
            let tag = read_byte(&mut r)?.ok_or_else(|| bad("bad temporary records"))?;
            match tag {
                TAG_END => {
                    w.write_all(&[TAG_END]).map_err(out_err)?;
                    break;
                }
                TAG_RAW => {
                    let n = get_varint(&mut r)?;
                    w.write_all(&[TAG_RAW]).map_err(out_err)?;
                    put_varint(&mut w, n).map_err(out_err)?;
                    copy_exact(&mut r, &mut w, n, &mut buf, "bad temporary records")?;
                }
                TAG_FILE => {
                    let plen = get_varint(&mut r)?;
                    let mut path = vec![0u8; plen as usize];
                    r.read_exact(&mut path).map_err(ArchiveError::Read)?;
                    let size = get_varint(&mut r)?;
                    if let Some(&(off, len)) = self.captured.get(&id) {
                        w.write_all(&[TAG_INLINE]).map_err(out_err)?;
                        put_varint(&mut w, len).map_err(out_err)?;
                        caps.seek(SeekFrom::Start(off)).map_err(tmp_err)?;
                        copy_exact(&mut caps, &mut w, len, &mut buf, "bad captures file")?;
                    } else {
                        w.write_all(&[TAG_FILE]).map_err(out_err)?;
                        put_varint(&mut w, plen).map_err(out_err)?;
                        w.write_all(&path).map_err(out_err)?;
                        put_varint(&mut w, size).map_err(out_err)?;
                    }
                    id += 1;
                }
                _ => return Err(bad("bad temporary records")),
            }
        }
        let mut bw = w.finish().map_err(out_err)?;
        bw.flush().map_err(out_err)?;
        drop(bw);
        out.flush().map_err(out_err)
    }
}

/// Re-creates the original tar stream of a layer from its unpacked directory `root` and the
/// tar-split data recorded when it was applied. Returns the number of bytes written.
pub fn reassemble(root: &Path, split: impl Read, out: impl Write) -> Result<u64, ArchiveError> {
    let rootfd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::io("open", root, e.into()))?;
    let mut r = zstd::stream::read::Decoder::new(split).map_err(ArchiveError::Read)?;
    let mut out = CountingWriter {
        inner: BufWriter::with_capacity(256 << 10, out),
        count: 0,
    };
    let mut head = [0u8; MAGIC.len() + 1];
    r.read_exact(&mut head)
        .map_err(|_| bad("not tar-split data"))?;
    if &head[..MAGIC.len()] != MAGIC {
        return Err(bad("not tar-split data"));
    }
    if head[MAGIC.len()] != VERSION {
        return Err(bad("unsupported tar-split version"));
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let tag = read_byte(&mut r)?.ok_or_else(|| bad("truncated tar-split data"))?;
        match tag {
            TAG_END => break,
            TAG_RAW | TAG_INLINE => {
                let n = get_varint(&mut r)?;
                copy_exact(&mut r, &mut out, n, &mut buf, "truncated tar-split data")?;
            }
            TAG_FILE => {
                let plen = get_varint(&mut r)?;
                if plen > 1 << 20 {
                    return Err(bad("path too long in tar-split data"));
                }
                let mut path = vec![0u8; plen as usize];
                r.read_exact(&mut path)
                    .map_err(|_| bad("truncated tar-split data"))?;
                let size = get_varint(&mut r)?;
                let show = || String::from_utf8_lossy(&path).into_owned();
                let fd = rustix::fs::openat2(
                    &rootfd,
                    &path[..],
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                )
                .map_err(|e| ArchiveError::SplitMismatch(format!("{}: {e}", show())))?;
                let st = rustix::fs::fstat(&fd)
                    .map_err(|e| ArchiveError::SplitMismatch(format!("{}: {e}", show())))?;
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    != rustix::fs::FileType::RegularFile
                {
                    return Err(ArchiveError::SplitMismatch(format!(
                        "{} is not a regular file",
                        show()
                    )));
                }
                if st.st_size as u64 != size {
                    return Err(ArchiveError::SplitMismatch(format!(
                        "{} has size {}, expected {size}",
                        show(),
                        st.st_size
                    )));
                }
                if (st.st_blocks as u64).saturating_mul(512) < size {
                    // Fewer blocks than bytes: the file has holes (see `extract::write_sparse`).
                    let msg = format!("{} is shorter than expected", show());
                    write_holey(&fd, size, &mut out, &mut buf, &msg)?;
                } else if size >= MAP_THRESHOLD {
                    write_mapped(&fd, size, &mut out)?;
                } else {
                    let mut f = File::from(fd);
                    let msg = format!("{} is shorter than expected", show());
                    copy_exact(&mut f, &mut out, size, &mut buf, &msg)?;
                }
            }
            _ => return Err(bad("unknown record in tar-split data")),
        }
    }
    out.flush()
        .map_err(|e| ArchiveError::io("write", "<output>", e))?;
    Ok(out.count)
}

struct CountingWriter<W: Write> {
    inner: W,
    count: u64,
}
impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;
    use crate::digest::Digest;
    use std::fs;

    fn gnu(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_700_000_000);
        h
    }

    /// A tar with many shapes, built with the tar crate plus hand-made parts.
    fn shapes() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let long_dir = format!("{}/", "d".repeat(120));
        let long_file = format!("{long_dir}{}", "f".repeat(150));
        b.append_data(
            &mut gnu(tar::EntryType::Directory, 0, 0o755),
            "etc/",
            std::io::empty(),
        )
        .unwrap();
        for (i, size) in [0usize, 1, 511, 512, 513, 100_000].into_iter().enumerate() {
            let data: Vec<u8> = (0..size).map(|j| (i * 7 + j) as u8).collect();
            b.append_data(
                &mut gnu(tar::EntryType::Regular, size as u64, 0o644),
                format!("etc/f{i}"),
                &data[..],
            )
            .unwrap();
        }
        b.append_data(
            &mut gnu(tar::EntryType::Directory, 0, 0o700),
            &long_dir,
            std::io::empty(),
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 5, 0o600),
            &long_file,
            &b"long!"[..],
        )
        .unwrap();
        b.append_pax_extensions([
            ("SCHILY.xattr.user.a", &b"1"[..]),
            ("SCHILY.xattr.user.b", &b"two"[..]),
        ])
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Directory, 0, 0o755),
            "x/",
            std::io::empty(),
        )
        .unwrap();
        b.append_pax_extensions([
            ("SCHILY.xattr.user.c", &b"3"[..]),
            ("mtime", &b"1700000000.5"[..]),
        ])
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 3, 0o644),
            "x/attr",
            &b"xyz"[..],
        )
        .unwrap();
        b.append_link(&mut gnu(tar::EntryType::Link, 0, 0o644), "x/hard", "etc/f3")
            .unwrap();
        b.append_link(
            &mut gnu(tar::EntryType::Link, 0, 0o600),
            "x/hardlong",
            &long_file,
        )
        .unwrap();
        b.append_link(
            &mut gnu(tar::EntryType::Symlink, 0, 0o777),
            "x/sym",
            "../etc/f1",
        )
        .unwrap();
        b.append_link(
            &mut gnu(tar::EntryType::Symlink, 0, 0o777),
            "x/symlong",
            "t".repeat(200),
        )
        .unwrap();
        b.append_link(
            &mut gnu(tar::EntryType::Symlink, 0, 0o777),
            "x/dirlink",
            "/etc",
        )
        .unwrap();
        // Duplicates: the first content is replaced by the second.
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 5, 0o644),
            "dup",
            &b"first"[..],
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 6, 0o644),
            "dup",
            &b"second"[..],
        )
        .unwrap();
        // Written through a symlinked directory, then overwritten by its real path.
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 3, 0o644),
            "x/dirlink/via",
            &b"via"[..],
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 4, 0o644),
            "etc/via",
            &b"real"[..],
        )
        .unwrap();
        // A file removed by a whiteout later in the same tar.
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 4, 0o644),
            "wh",
            &b"gone"[..],
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 0, 0o644),
            ".wh.wh",
            std::io::empty(),
        )
        .unwrap();
        // A directory with files, replaced by a file; a file replaced by a directory.
        b.append_data(
            &mut gnu(tar::EntryType::Directory, 0, 0o755),
            "tree/",
            std::io::empty(),
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 4, 0o644),
            "tree/leaf",
            &b"leaf"[..],
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 4, 0o644),
            "tree",
            &b"file"[..],
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 4, 0o644),
            "todir",
            &b"file"[..],
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Directory, 0, 0o755),
            "todir/",
            std::io::empty(),
        )
        .unwrap();
        // Opaque directory (files before and after the marker) and a whiteout in a subdir.
        b.append_data(
            &mut gnu(tar::EntryType::Directory, 0, 0o755),
            "op/",
            std::io::empty(),
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 1, 0o644),
            "op/before",
            &b"b"[..],
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 0, 0o644),
            "op/.wh..wh..opq",
            std::io::empty(),
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 1, 0o644),
            "op/after",
            &b"a"[..],
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 0, 0o644),
            "op/.wh.before",
            std::io::empty(),
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Fifo, 0, 0o644),
            "fifo",
            std::io::empty(),
        )
        .unwrap();
        b.append_data(
            &mut gnu(tar::EntryType::Regular, 2, 0o644),
            "./dot/slash",
            &b"ds"[..],
        )
        .unwrap();
        let mut t = b.into_inner().unwrap();
        t.truncate(t.len() - 1024); // into_inner wrote the end-of-archive blocks
        // Hand-made: a PAX path longer than 100 bytes, a ustar prefix, a global header.
        push_pax(
            &mut t,
            &[("path", format!("pax/{}", "p".repeat(200)).as_bytes())],
        );
        push(&mut t, hdr(b"ignored", b'0', 3, b""), b"pax");
        let mut h = hdr(b"name", b'0', 2, b"");
        h[345..351].copy_from_slice(b"prefix");
        checksum(&mut h);
        push(&mut t, h, b"pr");
        let g = pax_record("comment", b"global");
        push(&mut t, hdr(b"global", b'g', g.len() as u64, b""), &g);
        // End of archive plus extra zero blocks and trailing bytes.
        end(&mut t);
        t.extend_from_slice(&[0u8; 512 * 3]);
        t.extend_from_slice(b"trailing bytes that are not a block");
        t
    }

    fn roundtrip(s: &Sandbox, t: &[u8], f: WhiteoutFormat) {
        let (a, split) = s.apply(t, f).unwrap();
        assert_eq!(a.diff_id, Digest::of(t));
        let mut out = Vec::new();
        let n = reassemble(&s.root, &split[..], &mut out).unwrap();
        assert_eq!(n, t.len() as u64);
        assert_eq!(Digest::of(&out), a.diff_id);
        assert!(out == t, "reassembled bytes differ");
    }

    #[test]
    fn reassemble_shapes_both_formats() {
        let t = shapes();
        for f in [WhiteoutFormat::Overlay, WhiteoutFormat::Apply] {
            let s = Sandbox::new();
            roundtrip(&s, &t, f);
            assert_eq!(fs::read(s.root.join("dup")).unwrap(), b"second");
            assert_eq!(fs::read(s.root.join("etc/via")).unwrap(), b"real");
            assert_eq!(fs::read(s.root.join("tree")).unwrap(), b"file");
            assert!(fs::metadata(s.root.join("todir")).unwrap().is_dir());
            assert_eq!(
                fs::read(s.root.join(format!("pax/{}", "p".repeat(200)))).unwrap(),
                b"pax"
            );
            assert_eq!(fs::read(s.root.join("prefix/name")).unwrap(), b"pr");
            assert_eq!(fs::read(s.root.join("dot/slash")).unwrap(), b"ds");
            assert_eq!(getx(&s.root.join("x"), "user.b").unwrap(), b"two");
        }
    }

    #[test]
    fn reassemble_onto_populated_root() {
        let t = shapes();
        let s = Sandbox::new();
        fs::create_dir_all(s.root.join("op/old")).unwrap();
        fs::write(s.root.join("op/old/f"), b"old").unwrap();
        fs::write(s.root.join("dup"), b"parent").unwrap();
        fs::create_dir_all(s.root.join("wh/sub")).unwrap();
        roundtrip(&s, &t, WhiteoutFormat::Apply);
        assert!(!exists(&s.root.join("op/old")));
        assert!(!exists(&s.root.join("op/before")));
        assert!(exists(&s.root.join("op/after")));
    }

    #[test]
    fn reassemble_minimal_and_empty() {
        for t in [Vec::new(), vec![0u8; 1024], vec![0u8; 10240]] {
            let s = Sandbox::new();
            roundtrip(&s, &t, WhiteoutFormat::Overlay);
        }
        let mut t = Vec::new();
        file(&mut t, "a", b"x");
        // No end-of-archive blocks at all.
        let s = Sandbox::new();
        roundtrip(&s, &t, WhiteoutFormat::Overlay);
    }

    #[test]
    fn zero_runs_are_holes_and_reassemble_exactly() {
        use std::os::unix::fs::MetadataExt;
        let mb = 1 << 20;
        let mut mixed = vec![0u8; 3 * mb + 5];
        mixed[4095] = 1; // the end of the first block: that block is data
        mixed[mb + 100..mb + 200].fill(7); // unaligned, inside a chunk
        mixed[2 * mb - 1] = 9; // the last byte of the second 1 MiB chunk
        *mixed.last_mut().unwrap() = 3; // data in the short last block
        let mut t = Vec::new();
        file(&mut t, "zeros", &vec![0u8; 3 * mb + 5]);
        file(&mut t, "mixed", &mixed);
        file(
            &mut t,
            "tail",
            &[&[5u8; 10][..], &vec![0u8; 2 * mb]].concat(),
        );
        // Written twice: the first (sparse) content is captured into the tar-split data.
        file(&mut t, "dup", &vec![0u8; mb]);
        file(&mut t, "dup", b"second");
        file(&mut t, "empty", b"");
        end(&mut t);
        for f in [WhiteoutFormat::Overlay, WhiteoutFormat::Apply] {
            let s = Sandbox::new();
            roundtrip(&s, &t, f);
            assert_eq!(fs::read(s.root.join("mixed")).unwrap(), mixed);
            let used = |p: &str| fs::metadata(s.root.join(p)).unwrap().blocks() * 512;
            assert_eq!(used("zeros"), 0, "an all-zero file takes no blocks");
            assert!(used("mixed") <= 8 * 4096, "{}", used("mixed"));
            assert!(used("tail") <= 4096, "{}", used("tail"));
            assert_eq!(
                fs::metadata(s.root.join("tail")).unwrap().len(),
                2 * mb as u64 + 10
            );
        }
    }

    #[test]
    fn reassemble_detects_changed_file() {
        let mut t = Vec::new();
        file(&mut t, "a", b"hello");
        end(&mut t);
        let s = Sandbox::new();
        let (_, split) = s.apply(&t, WhiteoutFormat::Overlay).unwrap();
        fs::write(s.root.join("a"), b"hello!").unwrap();
        assert!(matches!(
            reassemble(&s.root, &split[..], &mut Vec::new()),
            Err(ArchiveError::SplitMismatch(_))
        ));
        fs::remove_file(s.root.join("a")).unwrap();
        std::os::unix::fs::symlink(s.outside.join("secret"), s.root.join("a")).unwrap();
        assert!(matches!(
            reassemble(&s.root, &split[..], &mut Vec::new()),
            Err(ArchiveError::SplitMismatch(_))
        ));
        assert!(reassemble(&s.root, &split[..split.len() / 2], &mut Vec::new()).is_err());
    }
}
