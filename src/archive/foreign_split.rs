//! Re-creating a layer tar from another engine's tar-split data (vbatts/tar-split, the JSON
//! lines Docker keeps in `layerdb/…/tar-split.json.gz` and containers/storage in
//! `overlay-layers/<id>.tar-split.gz`) and that engine's unpacked layer directory.
//!
//! Each line is an entry: `{"type":2,"payload":"<base64>"}` is a segment of the tar emitted
//! verbatim (headers, padding, end blocks); `{"type":1,"name":"…","size":N}` is a file whose
//! `N` bytes of content are read from the layer directory. The stream is produced lazily (a
//! `Read`), so a layer of any size is re-created with bounded memory.
//!
//! The directory and the tar-split are hostile input: a file is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` on the layer root and `O_NOFOLLOW`, so no
//! path, `..` or symlink leads outside the root, and it must be a regular file of exactly the
//! size the entry states. Whether the data is the layer's is then the caller's check: the
//! stream must hash to the diffID.

use base64::Engine as _;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde::Deserialize;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::OwnedFd;

const TYPE_FILE: u8 = 1;
const TYPE_SEGMENT: u8 = 2;
/// A tar-split line is a header segment or a file name: anything longer is not tar-split.
const MAX_LINE: u64 = 16 << 20;

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    name_raw: Option<String>,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    payload: Option<String>,
}

/// Called for each file whose content is about to be streamed (after it was opened and
/// checked) with the stream offset where its content starts, its size and the open file:
/// lets a caller place the source file itself (`ContentDonor`). Files are opened as soon as
/// the header before them has been returned, so the hook has run by the time a reader of
/// the stream has seen that header.
pub type FileHook = Box<dyn FnMut(u64, u64, &File)>;

/// The re-created tar stream of one layer.
pub struct ForeignSplit<R> {
    lines: BufReader<R>,
    root: OwnedFd,
    /// Bytes of the current segment not yet returned.
    pending: Vec<u8>,
    pending_at: usize,
    /// The file being streamed and the bytes of it still to come.
    file: Option<(File, u64, Vec<u8>)>,
    line: Vec<u8>,
    done: bool,
    on_file: Option<FileHook>,
    /// Regular-file content bytes streamed so far.
    pub content_bytes: u64,
    /// Bytes of tar returned so far.
    pos: u64,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

impl<R: Read> ForeignSplit<R> {
    /// `split`: the uncompressed JSON lines; `root`: the layer directory (an fd opened by the
    /// caller, so the caller decides how its own path is resolved).
    pub fn new(split: R, root: OwnedFd) -> Self {
        ForeignSplit {
            lines: BufReader::with_capacity(64 << 10, split),
            root,
            pending: Vec::new(),
            pending_at: 0,
            file: None,
            line: Vec::new(),
            done: false,
            on_file: None,
            content_bytes: 0,
            pos: 0,
        }
    }

    pub fn on_file(mut self, hook: FileHook) -> Self {
        self.on_file = Some(hook);
        self
    }

    /// Reads the next entry; false at the end of the tar-split data.
    fn next_entry(&mut self) -> io::Result<bool> {
        self.line.clear();
        let n = (&mut self.lines)
            .take(MAX_LINE)
            .read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Ok(false);
        }
        if self.line.last() != Some(&b'\n') && n as u64 >= MAX_LINE {
            return Err(invalid("tar-split entry too long".into()));
        }
        if self.line.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(true);
        }
        let e: Entry = serde_json::from_slice(&self.line)
            .map_err(|e| invalid(format!("tar-split entry is not valid: {e}")))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        match e.kind {
            TYPE_SEGMENT => {
                self.pending = match e.payload {
                    Some(p) => b64
                        .decode(p)
                        .map_err(|e| invalid(format!("tar-split segment: {e}")))?,
                    None => Vec::new(),
                };
                self.pending_at = 0;
            }
            TYPE_FILE => {
                if e.size == 0 {
                    return Ok(true);
                }
                let name = match (e.name_raw, e.name) {
                    (Some(raw), _) => b64
                        .decode(raw)
                        .map_err(|e| invalid(format!("tar-split name: {e}")))?,
                    (None, Some(n)) => n.into_bytes(),
                    (None, None) => return Err(invalid("tar-split file entry has no name".into())),
                };
                let f = self.open_beneath(&name, e.size)?;
                if let Some(h) = self.on_file.as_mut() {
                    h(self.pos, e.size, &f);
                }
                self.file = Some((f, e.size, name));
            }
            k => return Err(invalid(format!("tar-split entry of unknown type {k}"))),
        }
        Ok(true)
    }

    fn open_beneath(&self, name: &[u8], size: u64) -> io::Result<File> {
        let mut rel: &[u8] = name;
        while let [b'/', rest @ ..] = rel {
            rel = rest;
        }
        if rel.is_empty() || rel.contains(&0) {
            return Err(invalid(format!(
                "tar-split file name {:?} is not a path",
                show(name)
            )));
        }
        let fd = rustix::fs::openat2(
            &self.root,
            rel,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOATIME,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .or_else(|e| {
            if e == rustix::io::Errno::PERM {
                // O_NOATIME is refused on files the caller does not own (non-root use).
                rustix::fs::openat2(
                    &self.root,
                    rel,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
                )
            } else {
                Err(e)
            }
        })
        .map_err(|e| {
            let why = match e {
                rustix::io::Errno::LOOP => "is a symlink".to_string(),
                rustix::io::Errno::XDEV => "leads outside the layer directory".to_string(),
                e => io::Error::from(e).to_string(),
            };
            invalid(format!("layer file {:?}: {why}", show(name)))
        })?;
        let f = File::from(fd);
        let md = f.metadata()?;
        if !md.is_file() {
            return Err(invalid(format!(
                "layer file {:?} is not a regular file",
                show(name)
            )));
        }
        if md.len() != size {
            return Err(invalid(format!(
                "layer file {:?} is {} bytes, the tar-split says {size}",
                show(name),
                md.len()
            )));
        }
        Ok(f)
    }
}

impl<R: Read> ForeignSplit<R> {
    /// Moves to the next entry that has bytes (a segment, or a file opened for reading).
    fn advance(&mut self) -> io::Result<()> {
        self.pending.clear();
        self.pending_at = 0;
        while self.file.is_none() && self.pending.is_empty() {
            if !self.next_entry()? {
                self.done = true;
                break;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for ForeignSplit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pending_at < self.pending.len() {
                let n = (self.pending.len() - self.pending_at).min(buf.len());
                buf[..n].copy_from_slice(&self.pending[self.pending_at..self.pending_at + n]);
                self.pending_at += n;
                self.pos += n as u64;
                if self.pending_at == self.pending.len() {
                    self.advance()?;
                }
                return Ok(n);
            }
            if let Some((f, left, name)) = self.file.as_mut() {
                if *left > 0 {
                    let want = (*left).min(buf.len() as u64) as usize;
                    let n = f.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(invalid(format!("layer file {:?} ended early", show(name))));
                    }
                    *left -= n as u64;
                    self.content_bytes += n as u64;
                    self.pos += n as u64;
                    return Ok(n);
                }
                self.file = None;
            }
            if self.done {
                return Ok(0);
            }
            self.advance()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn seg(b: &[u8]) -> String {
        format!(
            "{{\"type\":2,\"payload\":\"{}\",\"position\":0}}\n",
            base64::engine::general_purpose::STANDARD.encode(b)
        )
    }

    fn dirfd(p: &std::path::Path) -> OwnedFd {
        rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn segments_and_files_in_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/f"), b"hello").unwrap();
        let split = format!(
            "{}{{\"type\":1,\"name\":\"etc/f\",\"size\":5,\"payload\":null,\"position\":1}}\n{}",
            seg(b"HEAD"),
            seg(b"TAIL")
        );
        let mut out = Vec::new();
        ForeignSplit::new(split.as_bytes(), dirfd(d.path()))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"HEADhelloTAIL");
    }

    #[test]
    fn symlink_and_escape_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut secret = std::fs::File::create(d.path().join("secret")).unwrap();
        secret.write_all(b"s3cret").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("link")).unwrap();
        std::os::unix::fs::symlink("..", root.join("up")).unwrap();
        for name in ["link", "up/secret", "../secret"] {
            let split = format!("{{\"type\":1,\"name\":\"{name}\",\"size\":6,\"position\":0}}\n");
            let r = ForeignSplit::new(split.as_bytes(), dirfd(&root)).read_to_end(&mut Vec::new());
            assert!(r.is_err(), "{name} was followed");
        }
    }

    #[test]
    fn size_mismatch_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"abc").unwrap();
        let split = "{\"type\":1,\"name\":\"f\",\"size\":4,\"position\":0}\n";
        let r = ForeignSplit::new(split.as_bytes(), dirfd(d.path())).read_to_end(&mut Vec::new());
        assert!(r.unwrap_err().to_string().contains("tar-split says 4"));
    }
}
