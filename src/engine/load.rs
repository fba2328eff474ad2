//! `strata load`: docker-save archives (classic manifest.json layout and the newer one with an
//! OCI index) and OCI image layout archives, layers uncompressed, gzip or zstd.
//!
//! The outer tar is indexed once (headers only, seeking over data), so each layer is read
//! straight from the archive file at its offset, several at once on overlay, without first
//! unpacking the archive anywhere. Input that cannot seek (stdin, a compressed archive) is
//! spooled to `ROOT/tmp` first.

use super::{Engine, EngineError, io_err};
use crate::archive;
use crate::atomic_file::random_hex;
use crate::content::read_bounded;
use crate::digest::{Digest, HashingReader};
use crate::image::archive_format::{
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Descriptor, DockerArchiveEntry, Index,
    Manifest, check_layer_media_types, digest_in_blob_path,
};
use crate::image::{ImageConfig, Reference};
use crate::layer::LayerSource;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAX_JSON: u64 = 32 << 20;

/// Where each file of the archive is: byte offset and length in the archive file.
struct ArchiveIndex {
    path: PathBuf,
    files: HashMap<String, (u64, u64)>,
    links: HashMap<String, String>,
    /// Whether the archive ends with its end-of-archive block. Go's archive/tar (so Docker)
    /// accepts an archive cut at an entry boundary; so does this index, but something missing
    /// from such an archive is then reported as the truncation it most likely is.
    terminated: bool,
}

/// Why the outer archive cannot be read, worded as Docker words it where it has a wording.
/// The tar crate's own messages are not passed on: on garbage input they quote the garbage.
fn unexpected_eof() -> EngineError {
    EngineError::Invalid("unexpected EOF".into())
}

fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

impl ArchiveIndex {
    fn build(path: &Path) -> Result<ArchiveIndex, EngineError> {
        let mut f = File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
        let len = f
            .metadata()
            .map_err(io_err(format!("reading {}", path.display())))?
            .len();
        if len < 512 {
            return Err(unexpected_eof());
        }
        let mut first = [0u8; 512];
        f.read_exact(&mut first)
            .and_then(|()| f.seek(SeekFrom::Start(0)))
            .map_err(io_err(format!("reading {}", path.display())))?;
        if !archive::is_tar_header(&first) {
            return Err(EngineError::Invalid(
                "invalid archive: not a tar archive (invalid tar header)".into(),
            ));
        }
        let mut ar = tar::Archive::new(BufReader::new(f));
        // Where the next header is expected: after the last entry read.
        let mut next = 0u64;
        let bad = |next: u64| {
            if len.saturating_sub(next) < 512 {
                unexpected_eof()
            } else {
                EngineError::Invalid(format!(
                    "invalid archive: invalid tar header at offset {next}"
                ))
            }
        };
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        for ent in ar.entries_with_seek().map_err(|_| bad(next))? {
            let ent = ent.map_err(|_| bad(next))?;
            let end = ent.raw_file_position() + ent.size();
            if end > len {
                return Err(unexpected_eof());
            }
            next = end.next_multiple_of(512);
            let name = clean(&String::from_utf8_lossy(&ent.path_bytes()));
            match ent.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    files.insert(name, (ent.raw_file_position(), ent.size()));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = ent
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).to_string())
                        .unwrap_or_default();
                    let resolved = if ent.header().entry_type() == tar::EntryType::Link
                        || target.starts_with('/')
                    {
                        clean(&target)
                    } else {
                        let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        clean(&format!("{dir}/{target}"))
                    };
                    links.insert(name, resolved);
                }
                _ => {}
            }
        }
        Ok(ArchiveIndex {
            path: path.to_path_buf(),
            files,
            links,
            terminated: len >= next + 512,
        })
    }

    /// The error for a file the archive should hold but does not.
    fn missing(&self, what: String) -> EngineError {
        if self.terminated {
            EngineError::Invalid(format!("invalid archive: {what}"))
        } else {
            unexpected_eof()
        }
    }

    fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let mut n = clean(name);
        for _ in 0..16 {
            if let Some(f) = self.files.get(&n) {
                return Some(*f);
            }
            n = self.links.get(&n)?.clone();
        }
        None
    }

    fn open(&self, name: &str) -> Result<io::Take<File>, EngineError> {
        let (off, len) = self
            .locate(name)
            .ok_or_else(|| self.missing(format!("{name} is missing")))?;
        let mut f =
            File::open(&self.path).map_err(io_err(format!("opening {}", self.path.display())))?;
        f.seek(SeekFrom::Start(off))
            .map_err(io_err("seeking in archive"))?;
        Ok(f.take(len))
    }

    fn read_json(&self, name: &str) -> Result<Vec<u8>, EngineError> {
        read_bounded(self.open(name)?, MAX_JSON)
            .map_err(io_err(format!("reading {name} from archive")))
    }

    fn has(&self, name: &str) -> bool {
        self.locate(name).is_some()
    }
}

/// One image found in an archive, ready to ingest.
struct Found {
    config: Vec<u8>,
    layer_paths: Vec<(String, Option<Digest>)>,
    names: Vec<Reference>,
    manifest: Option<Digest>,
}

pub struct Loaded {
    pub id: Digest,
    pub names: Vec<Reference>,
}

/// A reader that fails at EOF if what it read does not hash to `expected`.
struct VerifyingReader<R> {
    inner: Option<HashingReader<R>>,
    expected: Digest,
    what: String,
}
impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(0);
        };
        let n = inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let (actual, _) = self.inner.take().expect("present").finish();
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: digest mismatch: expected {}, got {actual}",
                        self.what, self.expected
                    ),
                ));
            }
        }
        Ok(n)
    }
}

impl Engine {
    /// Load every image of the archive at `input` (or stdin when None).
    pub fn load(&self, input: Option<&Path>) -> Result<Vec<Loaded>, EngineError> {
        let (path, _spool) = self.seekable_input(input)?;
        let index = ArchiveIndex::build(&path)?;
        let found = if index.has("manifest.json") {
            self.docker_images(&index)?
        } else if index.has("index.json") {
            self.oci_images(&index)?
        } else {
            return Err(index.missing(
                "neither manifest.json (docker save) nor index.json (OCI layout) found".into(),
            ));
        };
        let mut out = Vec::new();
        for f in found {
            out.push(self.ingest_found(&index, f)?);
        }
        Ok(out)
    }

    /// A seekable, uncompressed archive file: the input itself, or a spooled copy that is
    /// removed when the returned guard drops.
    fn seekable_input(
        &self,
        input: Option<&Path>,
    ) -> Result<(PathBuf, Option<TempPath>), EngineError> {
        if let Some(p) = input {
            let open = || File::open(p).map_err(io_err(format!("opening {}", p.display())));
            let f = open()?;
            let is_file = f.metadata().map(|m| m.is_file()).unwrap_or(false);
            let (compression, _) = archive::decompress(f).map_err(invalid_stream)?;
            if compression == archive::Compression::None && is_file {
                return Ok((p.to_path_buf(), None));
            }
            return self.spool(open()?);
        }
        self.spool(io::stdin().lock())
    }

    fn spool(&self, r: impl Read) -> Result<(PathBuf, Option<TempPath>), EngineError> {
        let (_, mut r) = archive::decompress(r).map_err(invalid_stream)?;
        let p = self.tmp_dir()?.join(format!("load-{}", random_hex(8)));
        let guard = TempPath(p.clone());
        let mut f = File::create(&p).map_err(io_err(format!("creating {}", p.display())))?;
        // Read and write errors are told apart: only the first are the input's fault.
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(invalid_stream(archive::ArchiveError::Read(e))),
            };
            f.write_all(&buf[..n])
                .map_err(io_err(format!("writing {}", p.display())))?;
        }
        Ok((p, Some(guard)))
    }

    fn docker_images(&self, index: &ArchiveIndex) -> Result<Vec<Found>, EngineError> {
        let raw = index.read_json("manifest.json")?;
        let entries: Vec<DockerArchiveEntry> = serde_json::from_slice(&raw)
            .map_err(|e| EngineError::Invalid(format!("invalid archive: manifest.json: {e}")))?;
        // Loading nothing is not a success: the user meant to load an image.
        if entries.is_empty() {
            return Err(EngineError::Invalid(
                "invalid archive: manifest.json lists no image".into(),
            ));
        }
        let mut out = Vec::new();
        for e in entries {
            let config = index.read_json(&e.config)?;
            if let Some(d) = digest_in_blob_path(&e.config) {
                let actual = Digest::of(&config);
                if actual != d {
                    return Err(EngineError::Invalid(format!(
                        "invalid archive: config {} hashes to {actual}",
                        e.config
                    )));
                }
            }
            let names = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    Reference::parse_tagged(t)
                        .map_err(|e| EngineError::Invalid(format!("invalid archive: {e}")))
                })
                .collect::<Result<_, _>>()?;
            let layer_paths = e
                .layers
                .iter()
                .map(|l| {
                    (
                        l.clone(),
                        digest_in_blob_path(l).filter(|_| l.contains("blobs/")),
                    )
                })
                .collect();
            out.push(Found {
                config,
                layer_paths,
                names,
                manifest: None,
            });
        }
        Ok(out)
    }

    fn oci_images(&self, index: &ArchiveIndex) -> Result<Vec<Found>, EngineError> {
        let raw = index.read_json("index.json")?;
        let idx: Index = serde_json::from_slice(&raw)
            .map_err(|e| EngineError::Invalid(format!("invalid archive: index.json: {e}")))?;
        if idx.manifests.is_empty() {
            return Err(EngineError::Invalid(
                "invalid archive: index.json lists no manifest".into(),
            ));
        }
        let mut out = Vec::new();
        let mut stack: Vec<(Descriptor, Option<String>)> =
            idx.manifests.into_iter().map(|d| (d, None)).collect();
        stack.reverse();
        while let Some((desc, inherited_name)) = stack.pop() {
            let blob = blob_path(&desc.digest);
            let bytes = index.read_json(&blob)?;
            check_size(&desc, bytes.len() as u64)?;
            if Digest::of(&bytes) != desc.digest {
                return Err(EngineError::Invalid(format!(
                    "invalid archive: {blob} does not match its digest"
                )));
            }
            let name = desc
                .annotation(ANNOTATION_CONTAINERD_NAME)
                .map(str::to_string)
                .or_else(|| {
                    desc.annotation(ANNOTATION_REF_NAME)
                        .filter(|n| n.contains('/') || n.contains(':'))
                        .map(str::to_string)
                })
                .or(inherited_name);
            if desc.is_index() {
                let sub: Index = serde_json::from_slice(&bytes)
                    .map_err(|e| EngineError::Invalid(format!("invalid archive: {blob}: {e}")))?;
                // A multi-platform index: take the host's platform (or the only manifest).
                let pick = sub
                    .manifests
                    .iter()
                    .find(|m| {
                        m.platform
                            .as_ref()
                            .is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
                    })
                    .or_else(|| sub.manifests.first())
                    .cloned()
                    .ok_or_else(|| {
                        EngineError::Invalid(format!(
                            "invalid archive: index {} lists no manifest",
                            desc.digest
                        ))
                    })?;
                stack.push((pick, name));
                continue;
            }
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                EngineError::Invalid(format!("invalid archive: manifest {blob}: {e}"))
            })?;
            check_layer_media_types(&m.layers)
                .map_err(|e| EngineError::Invalid(format!("invalid archive: {e}")))?;
            let config = index.read_json(&blob_path(&m.config.digest))?;
            check_size(&m.config, config.len() as u64)?;
            if Digest::of(&config) != m.config.digest {
                return Err(EngineError::Invalid(format!(
                    "invalid archive: config {} does not match its digest",
                    m.config.digest
                )));
            }
            let names = match name {
                Some(n) => vec![
                    Reference::parse_tagged(&n)
                        .map_err(|e| EngineError::Invalid(format!("invalid archive: {e}")))?,
                ],
                None => vec![],
            };
            for l in &m.layers {
                let (_, len) = index
                    .locate(&blob_path(&l.digest))
                    .ok_or_else(|| index.missing(format!("layer {} is missing", l.digest)))?;
                check_size(l, len)?;
            }
            let layer_paths = m
                .layers
                .iter()
                .map(|l| (blob_path(&l.digest), Some(l.digest.clone())))
                .collect();
            out.push(Found {
                config,
                layer_paths,
                names,
                manifest: Some(desc.digest.clone()),
            });
        }
        Ok(out)
    }

    fn ingest_found(&self, index: &ArchiveIndex, f: Found) -> Result<Loaded, EngineError> {
        let cfg = ImageConfig::parse(&f.config)
            .map_err(|e| EngineError::Invalid(format!("invalid archive: {e}")))?;
        let id = Digest::of(&f.config);
        if cfg.rootfs.diff_ids.len() != f.layer_paths.len() {
            return Err(EngineError::Invalid(format!(
                "invalid archive: image {} lists {} layers but its config has {} diffIDs",
                id.short(),
                f.layer_paths.len(),
                cfg.rootfs.diff_ids.len()
            )));
        }
        let mut sources = Vec::new();
        for ((path, blob_digest), diff_id) in
            f.layer_paths.into_iter().zip(cfg.rootfs.diff_ids.iter())
        {
            let (off, len) = index
                .locate(&path)
                .ok_or_else(|| index.missing(format!("layer {path} is missing")))?;
            let file = index.path.clone();
            let what = format!("layer {path}");
            sources.push(LayerSource {
                diff_id: diff_id.clone(),
                open: Box::new(move || {
                    let mut f = File::open(&file)
                        .map_err(|e| format!("opening {}: {e}", file.display()))?;
                    f.seek(SeekFrom::Start(off)).map_err(|e| e.to_string())?;
                    let raw = BufReader::with_capacity(1 << 20, f.take(len));
                    let raw: Box<dyn Read> = match blob_digest {
                        Some(d) => Box::new(VerifyingReader {
                            inner: Some(HashingReader::new(raw)),
                            expected: d,
                            what: what.clone(),
                        }),
                        None => Box::new(raw),
                    };
                    let (_, r) = archive::decompress(raw).map_err(|e| format!("{what}: {e}"))?;
                    Ok(r)
                }),
            });
        }
        let lease = self.lease();
        let layers = self.layers().ingest_chain(&lease, sources).map_err(|e| match e {
            crate::layer::LayerError::DiffIdMismatch { expected, actual } => EngineError::Invalid(format!(
                "invalid archive: diffID mismatch in a layer of image {}: the layer hashes to {actual}, its config says {expected}",
                id.short()
            )),
            e => e.into(),
        })?;
        let id = self.images().add(
            &lease,
            &f.config,
            &cfg,
            &layers,
            &f.names,
            f.manifest.as_ref(),
        )?;
        Ok(Loaded { id, names: f.names })
    }
}

/// A descriptor's size must be the blob's: a mismatch is a damaged or forged archive (and
/// OCI requires rejecting it), whatever the digest then says.
fn check_size(desc: &Descriptor, actual: u64) -> Result<(), EngineError> {
    if u64::try_from(desc.size).ok() != Some(actual) {
        return Err(EngineError::Invalid(format!(
            "invalid archive: blob {} is {actual} bytes, its descriptor says {}",
            desc.digest, desc.size
        )));
    }
    Ok(())
}

/// An error reading the (possibly compressed) input stream, without the spool file's path:
/// the CLI names the user's file. A stream that ends early is Docker's "unexpected EOF".
fn invalid_stream(e: archive::ArchiveError) -> EngineError {
    match e {
        archive::ArchiveError::Read(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            unexpected_eof()
        }
        archive::ArchiveError::Read(e) => EngineError::Invalid(format!("invalid archive: {e}")),
        e => EngineError::Invalid(format!("invalid archive: {e}")),
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

pub use crate::image::platform::host_arch;

/// Removes a spooled file when dropped.
struct TempPath(PathBuf);
impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
