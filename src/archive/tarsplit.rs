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
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
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
                let mut f = BufReader::with_capacity(0, File::from(fd));
                let msg = format!("{} is shorter than expected", show());
                copy_exact(f.get_mut(), &mut out, size, &mut buf, &msg)?;
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
