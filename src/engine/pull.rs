//! `strata pull`: fetch an image from a registry, layer by layer, into the store.
//!
//! One manifest request decides everything: layers already in the store (by chainID) are
//! skipped, the config is fetched only if its image is unknown, and each missing layer is a
//! `LayerSource` whose stream is the HTTP body itself — teed into `ROOT/ingest/<hex>.partial`
//! and hashed against the blob digest as it flows into the decompressor and the unpacker
//! (which checks the diffID). Several layers stream at once (`max_concurrent`), so download,
//! hashing, decompression and unpacking overlap.
//!
//! Resuming: a partial file left by an interrupted pull is replayed (hashed again) and the
//! rest asked for with an HTTP Range request; a complete partial is not fetched at all. After
//! the layers are committed, pulled blobs move into the content store and are recorded
//! (`layer_blobs`, `blob_sources`, `image_manifests`), so `push` can send the exact original
//! blobs and manifest (its digest is kept), and mount blobs across repositories.

use super::{Engine, EngineError, io_err};
use crate::archive;
use crate::digest::{Digest, Hasher, chain_ids};
use crate::image::archive_format::{
    Descriptor, Index, MT_DOCKER_LIST, MT_OCI_INDEX, Manifest, check_layer_media_types,
};
use crate::image::platform::{WantedPlatform, normalize_arch, normalize_os};
use crate::image::{ImageConfig, Reference};
use crate::layer::{LayerError, LayerSource};
use crate::lock::LockFile;
use crate::registry::{Client, ClientOptions, Progress, Status};
use rusqlite::params;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

const MAX_CONFIG: u64 = 32 << 20;
/// Re-requests (with Range) of one blob after its connection breaks mid-stream.
const BLOB_RETRIES: u32 = 3;

pub struct PullOptions {
    pub client: ClientOptions,
    /// `os/arch[/variant]`; default the host's.
    pub platform: Option<String>,
    pub all_tags: bool,
    /// Layers fetched at once (`--max-concurrent-downloads`).
    pub max_concurrent: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            client: ClientOptions::from_env(),
            platform: None,
            all_tags: false,
            max_concurrent: 3,
        }
    }
}

/// One image pulled.
pub struct Pulled {
    /// The reference as pulled (tag or digest).
    pub reference: Reference,
    pub id: Digest,
    /// Digest of what the reference named (the index for multi-platform images).
    pub digest: Digest,
    /// False when the reference already named this image (`Image is up to date`).
    pub newer: bool,
    /// Compressed bytes received over the network for layers.
    pub bytes_downloaded: u64,
}

/// A blob streamed to the end and verified, waiting to move into the content store.
struct Downloaded {
    index: usize,
    desc: Descriptor,
    diff_id: Digest,
    /// None: it was already in the content store.
    partial: Option<PathBuf>,
}

struct PullCtx {
    client: Arc<Client>,
    repo: String,
    ingest_dir: PathBuf,
    locks_dir: PathBuf,
    content_blobs: PathBuf,
    progress: Arc<dyn Progress>,
    failure: Mutex<Option<String>>,
    done: Mutex<Vec<Downloaded>>,
    opened: Mutex<HashSet<usize>>,
    network_bytes: std::sync::atomic::AtomicU64,
}

impl PullCtx {
    fn fail(&self, msg: String) -> String {
        let mut f = self.failure.lock().unwrap();
        if f.is_none() {
            *f = Some(msg.clone());
        }
        msg
    }
}

fn blob_lock(locks_dir: &Path, d: &Digest) -> io::Result<LockFile> {
    LockFile::exclusive(&locks_dir.join(format!("blob-{}", d.hex())))
}

fn partial_path(ingest_dir: &Path, d: &Digest) -> PathBuf {
    ingest_dir.join(format!("{}.partial", d.hex()))
}

/// The compressed bytes of one layer blob: the stored or partial copy first, then the network
/// (with Range from where the copy ends), teed into the partial file and hashed.
struct BlobFetch {
    ctx: Arc<PullCtx>,
    index: usize,
    desc: Descriptor,
    diff_id: Digest,
    size: u64,
    short: String,
    _lock: LockFile,
    partial: PathBuf,
    from_content: bool,
    replay: Option<BufReader<File>>,
    replay_len: u64,
    out: Option<File>,
    http: Option<Box<dyn Read + Send>>,
    retries: u32,
    hasher: Option<Hasher>,
    count: u64,
    finished: bool,
    /// Set once a read failed: later reads fail the same way (no new requests).
    errored: Option<String>,
}

impl BlobFetch {
    fn start(
        ctx: Arc<PullCtx>,
        index: usize,
        desc: Descriptor,
        diff_id: Digest,
    ) -> Result<BlobFetch, String> {
        let short = desc.digest.short();
        let d = desc.digest.clone();
        let size = u64::try_from(desc.size).map_err(|_| format!("layer {d}: negative size"))?;
        let lock = blob_lock(&ctx.locks_dir, &d).map_err(|e| format!("locking blob {d}: {e}"))?;
        let partial = partial_path(&ctx.ingest_dir, &d);
        let stored = ctx.content_blobs.join(d.hex());
        let mut f = BlobFetch {
            ctx: ctx.clone(),
            index,
            desc,
            diff_id,
            size,
            short,
            _lock: lock,
            partial: partial.clone(),
            from_content: false,
            replay: None,
            replay_len: 0,
            out: None,
            http: None,
            retries: 0,
            hasher: Some(Hasher::default()),
            count: 0,
            finished: false,
            errored: None,
        };
        if let Ok(file) = File::open(&stored) {
            // Kept from an earlier pull or push: no network at all (still verified).
            f.from_content = true;
            f.replay_len = file.metadata().map(|m| m.len()).unwrap_or(0);
            f.replay = Some(BufReader::with_capacity(1 << 20, file));
            return Ok(f);
        }
        fs::create_dir_all(&ctx.ingest_dir)
            .map_err(|e| format!("creating {}: {e}", ctx.ingest_dir.display()))?;
        let out = File::options()
            .read(true)
            .append(true)
            .create(true)
            .open(&partial)
            .map_err(|e| format!("opening {}: {e}", partial.display()))?;
        let mut have = out.metadata().map(|m| m.len()).unwrap_or(0);
        if have > size {
            out.set_len(0)
                .map_err(|e| format!("truncating {}: {e}", partial.display()))?;
            have = 0;
        }
        if have > 0 {
            let mut r =
                File::open(&partial).map_err(|e| format!("opening {}: {e}", partial.display()))?;
            r.seek(SeekFrom::Start(0))
                .map_err(|e| format!("reading {}: {e}", partial.display()))?;
            f.replay = Some(BufReader::with_capacity(1 << 20, r));
            f.replay_len = have;
            if have < size {
                ctx.progress.layer(
                    &f.short,
                    Status::Resuming {
                        offset: have,
                        total: size,
                    },
                );
            }
        }
        f.out = Some(out);
        Ok(f)
    }

    fn open_http(&mut self) -> io::Result<()> {
        let resp = self
            .ctx
            .client
            .get_blob(&self.ctx.repo, &self.desc.digest, self.count)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let status = resp.status().as_u16();
        let mut body: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
        if status == 200 && self.count > 0 {
            // The registry ignored the Range: skip what we already have.
            io::copy(&mut (&mut body).take(self.count), &mut io::sink())?;
        }
        self.http = Some(body);
        Ok(())
    }

    fn mismatch(&mut self, actual: String) -> io::Error {
        if !self.from_content {
            let _ = fs::remove_file(&self.partial);
        }
        let msg = self.ctx.fail(format!(
            "layer {}: blob digest mismatch: the manifest says {}, the registry sent {actual}",
            self.desc.digest, self.desc.digest
        ));
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    fn finish(&mut self) -> io::Result<()> {
        let actual = self.hasher.take().expect("finished once").finish();
        if actual != self.desc.digest {
            return Err(self.mismatch(actual.to_string()));
        }
        self.finished = true;
        self.ctx
            .progress
            .layer(&self.short, Status::VerifyingChecksum);
        self.ctx
            .progress
            .layer(&self.short, Status::DownloadComplete);
        self.ctx.done.lock().unwrap().push(Downloaded {
            index: self.index,
            desc: self.desc.clone(),
            diff_id: self.diff_id.clone(),
            partial: (!self.from_content).then(|| self.partial.clone()),
        });
        Ok(())
    }

    fn account(&mut self, data: &[u8]) {
        self.hasher.as_mut().expect("open").update(data);
        self.count += data.len() as u64;
        self.ctx.progress.layer(
            &self.short,
            Status::Downloading {
                current: self.count,
                total: self.size,
            },
        );
    }
}

impl Read for BlobFetch {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.errored {
            return Err(io::Error::other(e.clone()));
        }
        let r = self.read_inner(buf);
        if let Err(e) = &r {
            self.errored = Some(e.to_string());
        }
        r
    }
}

impl BlobFetch {
    fn read_inner(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished || buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(r) = self.replay.as_mut() {
                let want = (self.replay_len - self.count).min(buf.len() as u64) as usize;
                let n = if want == 0 {
                    0
                } else {
                    r.read(&mut buf[..want])?
                };
                if n > 0 {
                    self.account(&buf[..n]);
                    return Ok(n);
                }
                self.replay = None;
                if self.count != self.replay_len {
                    return Err(io::Error::other(format!(
                        "layer {}: local copy shrank while reading it",
                        self.desc.digest
                    )));
                }
                continue;
            }
            if self.count >= self.size {
                // Everything received: one more read must say EOF (or the blob is too long).
                if let Some(h) = self.http.as_mut() {
                    let mut extra = [0u8; 1];
                    if h.read(&mut extra).unwrap_or(0) > 0 {
                        return Err(self.mismatch("more bytes than its size".into()));
                    }
                }
                self.http = None;
                self.finish()?;
                return Ok(0);
            }
            if self.http.is_none()
                && let Err(e) = self.open_http()
            {
                return Err(io::Error::other(
                    self.ctx.fail(format!("layer {}: {e}", self.desc.digest)),
                ));
            }
            let want = (self.size - self.count).min(buf.len() as u64) as usize;
            let r = self.http.as_mut().expect("open").read(&mut buf[..want]);
            match r {
                Ok(n) if n > 0 => {
                    if let Err(e) = self
                        .out
                        .as_mut()
                        .expect("partial open")
                        .write_all(&buf[..n])
                    {
                        return Err(io::Error::other(self.ctx.fail(format!(
                            "layer {}: writing {}: {e}",
                            self.desc.digest,
                            self.partial.display()
                        ))));
                    }
                    self.ctx
                        .network_bytes
                        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    self.account(&buf[..n]);
                    return Ok(n);
                }
                other => {
                    // Connection ended early or broke: ask again from where we are.
                    self.http = None;
                    self.retries += 1;
                    if self.retries > BLOB_RETRIES {
                        let why = match other {
                            Err(e) => e.to_string(),
                            Ok(_) => "connection closed early".into(),
                        };
                        return Err(io::Error::other(self.ctx.fail(format!(
                            "layer {}: download failed after {} of {} bytes: {why} (run pull again to resume)",
                            self.desc.digest, self.count, self.size
                        ))));
                    }
                }
            }
        }
    }
}

struct SharedReader(Rc<RefCell<BlobFetch>>);
impl Read for SharedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

/// The decompressed layer; at its end, the rest of the blob (if the decompressor stopped
/// early) is read and the blob digest checked.
struct Finisher {
    inner: Box<dyn Read>,
    fetch: Rc<RefCell<BlobFetch>>,
}
impl Read for Finisher {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                // Undecodable data: was the blob itself damaged? Reading it to the end says
                // (and a damaged one is deleted); either way the error names the layer.
                let mut f = self.fetch.borrow_mut();
                if !f.finished && f.errored.is_none() {
                    let _ = io::copy(&mut *f, &mut io::sink());
                }
                let msg = f.ctx.fail(format!("layer {}: {e}", f.desc.digest));
                return Err(io::Error::new(e.kind(), msg));
            }
        };
        if n == 0 && !buf.is_empty() {
            let mut f = self.fetch.borrow_mut();
            if !f.finished {
                io::copy(&mut *f, &mut io::sink())?;
            }
        }
        Ok(n)
    }
}

fn is_index(media_type: &str, bytes: &[u8]) -> bool {
    if media_type == MT_OCI_INDEX || media_type == MT_DOCKER_LIST {
        return true;
    }
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .is_some_and(|v| {
            v.get("manifests").is_some() && v.get("layers").is_none()
                || v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .is_some_and(|m| m == MT_OCI_INDEX || m == MT_DOCKER_LIST)
        })
}

fn media_type_of(header: &str, bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
        .unwrap_or_else(|| header.to_string())
}

/// The manifest of `want`'s platform in a manifest list / OCI index.
fn select_manifest(idx: &Index, want: &WantedPlatform) -> Result<Descriptor, EngineError> {
    idx.manifests
        .iter()
        .find(|m| {
            m.platform.as_ref().is_some_and(|p| {
                let (arch, variant) = normalize_arch(&p.architecture, p.variant.as_deref());
                want.matches(&normalize_os(&p.os), &arch, variant.as_deref())
            })
        })
        .cloned()
        .ok_or_else(|| {
            EngineError::Invalid(format!(
                "no matching manifest for {want} in the manifest list entries"
            ))
        })
}

/// An image manifest as received, refused when it is not one strata can unpack: schema 1,
/// or layers that are not layer tars (an artifact's manifest, a config listed as a layer).
fn parse_manifest(bytes: &[u8], media_type: &str) -> Result<Manifest, EngineError> {
    if media_type.contains("distribution.manifest.v1") {
        return Err(EngineError::Invalid(
            "Docker image manifest schema 1 is not supported".into(),
        ));
    }
    let m: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| EngineError::Invalid(format!("invalid manifest: {e}")))?;
    check_layer_media_types(&m.layers)
        .map_err(|e| EngineError::Invalid(format!("invalid manifest: {e}")))?;
    Ok(m)
}

/// A single-platform image pulled with an explicit `--platform` must be of that platform
/// (Docker's check and wording), rather than silently being whatever the tag points at.
fn check_platform(r: &str, cfg: &ImageConfig, want: &WantedPlatform) -> Result<(), EngineError> {
    let (arch, variant) = normalize_arch(&cfg.architecture, cfg.variant.as_deref());
    let os = normalize_os(&cfg.os);
    if !want.explicit || want.matches(&os, &arch, variant.as_deref()) {
        return Ok(());
    }
    let actual = WantedPlatform {
        os,
        arch,
        variant,
        explicit: false,
    };
    Err(EngineError::Invalid(format!(
        "image with reference {r} was found but does not match the specified platform: wanted {want}, actual: {actual}"
    )))
}

impl Engine {
    /// Pull `name` (tag, digest, or with `all_tags` every tag of the repository).
    pub fn pull(
        &self,
        name: &str,
        opts: &PullOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<Vec<Pulled>, EngineError> {
        // A bad --platform is the user's typo: refused before any network access.
        WantedPlatform::parse(opts.platform.as_deref())?;
        let parsed = Reference::parse(name)?;
        let scope = format!("repository:{}:pull", parsed.path);
        let client = Arc::new(Client::new(&parsed.domain, &opts.client, vec![scope])?);
        if opts.all_tags {
            if parsed.tag.is_some() || parsed.digest.is_some() {
                return Err(EngineError::Invalid(
                    "tag can't be used with --all-tags/-a".into(),
                ));
            }
            let mut tags = client.tags(&parsed.path)?;
            tags.sort();
            let mut out = Vec::new();
            for t in tags {
                let mut r = parsed.clone();
                r.tag = Some(t);
                out.push(self.pull_one(&client, &r, opts, progress.clone())?);
            }
            return Ok(out);
        }
        let r = Reference::parse_tagged(name)?;
        Ok(vec![self.pull_one(&client, &r, opts, progress)?])
    }

    fn pull_one(
        &self,
        client: &Arc<Client>,
        r: &Reference,
        opts: &PullOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<Pulled, EngineError> {
        let repo = r.path.clone();
        let refstr = match (&r.digest, &r.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        };
        progress.line(&format!("{refstr}: Pulling from {repo}"));
        let invalid = EngineError::Invalid;

        // 1. What the reference names: a manifest, or an index to pick our platform from.
        let (top_bytes, top_header_mt) = client.get_manifest(&repo, &refstr)?;
        let top_digest = Digest::of(&top_bytes);
        if let Some(d) = &r.digest
            && *d != top_digest
        {
            return Err(invalid(format!(
                "the registry's manifest hashes to {top_digest}, not {d}"
            )));
        }
        let top_mt = media_type_of(&top_header_mt, &top_bytes);
        let mut docs: Vec<(Digest, String, Vec<u8>)> = Vec::new();
        let (manifest_bytes, manifest_mt) = if is_index(&top_mt, &top_bytes) {
            let idx: Index = serde_json::from_slice(&top_bytes)
                .map_err(|e| invalid(format!("invalid manifest list: {e}")))?;
            let pick = select_manifest(&idx, &WantedPlatform::parse(opts.platform.as_deref())?)?;
            let (b, h) = client.get_manifest(&repo, &pick.digest.to_string())?;
            if Digest::of(&b) != pick.digest {
                return Err(invalid(format!(
                    "manifest {} does not match its digest",
                    pick.digest
                )));
            }
            docs.push((top_digest.clone(), top_mt.clone(), top_bytes.clone()));
            let mt = media_type_of(&h, &b);
            (b, mt)
        } else {
            (top_bytes, top_mt)
        };
        let manifest = parse_manifest(&manifest_bytes, &manifest_mt)?;
        let manifest_digest = Digest::of(&manifest_bytes);
        docs.push((manifest_digest.clone(), manifest_mt, manifest_bytes.clone()));

        // 2. The config (= image ID): only fetched if we do not have it.
        let id = manifest.config.digest.clone();
        let config_bytes = match self.content.get(&id) {
            Ok(b) if Digest::of(&b) == id => b,
            _ => client.get_blob_bytes(&repo, &id, MAX_CONFIG)?,
        };
        let cfg = ImageConfig::parse(&config_bytes)
            .map_err(|e| invalid(format!("invalid image config: {e}")))?;
        if docs.len() == 1 {
            check_platform(
                &r.familiar(),
                &cfg,
                &WantedPlatform::parse(opts.platform.as_deref())?,
            )?;
        }
        let diff_ids = cfg.rootfs.diff_ids.clone();
        if diff_ids.len() != manifest.layers.len() {
            return Err(invalid(format!(
                "the manifest lists {} layers but the image config has {} diffIDs",
                manifest.layers.len(),
                diff_ids.len()
            )));
        }

        // 3. Layers: report the present ones, stream the missing ones.
        let layers = self.layers();
        let lease = self.lease();
        let chains = chain_ids(&diff_ids);
        let mut present = Vec::new();
        for c in &chains {
            present.push(layers.get(c)?.is_some());
        }
        // Docker prints no layer lines for an image it has complete.
        let complete = present.iter().all(|p| *p) && self.images().get(&id)?.is_some();
        let mut missing = 0usize;
        let mut was_missing = HashSet::new();
        for (i, desc) in manifest.layers.iter().enumerate() {
            let short = desc.digest.short();
            if present[i] {
                if !complete {
                    progress.layer(&short, Status::AlreadyExists);
                }
            } else {
                progress.layer(&short, Status::PullingFsLayer);
                was_missing.insert(i);
                if missing >= opts.max_concurrent.max(1) {
                    progress.layer(&short, Status::Waiting);
                }
                missing += 1;
            }
        }
        let ctx = Arc::new(PullCtx {
            client: client.clone(),
            repo: repo.clone(),
            ingest_dir: self.root.join("ingest"),
            locks_dir: self.root.join("locks"),
            content_blobs: self.root.join("content/blobs/sha256"),
            progress: progress.clone(),
            failure: Mutex::new(None),
            done: Mutex::new(Vec::new()),
            opened: Mutex::new(HashSet::new()),
            network_bytes: Default::default(),
        });
        let sources: Vec<LayerSource> = manifest
            .layers
            .iter()
            .zip(&diff_ids)
            .enumerate()
            .map(|(i, (desc, diff_id))| {
                let ctx = ctx.clone();
                let desc = desc.clone();
                let diff = diff_id.clone();
                LayerSource {
                    diff_id: diff_id.clone(),
                    open: Box::new(move || {
                        ctx.opened.lock().unwrap().insert(i);
                        let d = desc.digest.clone();
                        let fetch = BlobFetch::start(ctx.clone(), i, desc, diff)
                            .map_err(|e| ctx.fail(e))?;
                        let fetch = Rc::new(RefCell::new(fetch));
                        let (_, dec) = archive::decompress(SharedReader(fetch.clone()))
                            .map_err(|e| ctx.fail(format!("layer {d}: {e}")))?;
                        Ok(Box::new(Finisher { inner: dec, fetch }) as Box<dyn Read>)
                    }),
                }
            })
            .collect();
        let ingested =
            layers.ingest_chain_limited(&lease, sources, Some(opts.max_concurrent.max(1)));
        let chain = match ingested {
            Ok(c) => c,
            Err(e) => {
                if let Some(msg) = ctx.failure.lock().unwrap().take() {
                    return Err(invalid(msg));
                }
                return Err(match e {
                    LayerError::DiffIdMismatch { expected, actual } => {
                        let which = diff_ids.iter().position(|d| *d == expected);
                        let blob = which.map(|i| manifest.layers[i].digest.clone());
                        if let Some(b) = &blob {
                            let _l = blob_lock(&ctx.locks_dir, b);
                            let _ = fs::remove_file(partial_path(&ctx.ingest_dir, b));
                        }
                        invalid(format!(
                            "layer {}: diffID mismatch: the image config says {expected}, the layer data hashes to {actual}",
                            blob.map(|b| b.to_string()).unwrap_or_default()
                        ))
                    }
                    e => e.into(),
                });
            }
        };
        let opened = ctx.opened.lock().unwrap().clone();
        for (i, desc) in manifest.layers.iter().enumerate() {
            if opened.contains(&i) {
                progress.layer(&desc.digest.short(), Status::PullComplete);
            } else if was_missing.contains(&i) {
                // Another process unpacked it while we waited for its lock.
                progress.layer(&desc.digest.short(), Status::AlreadyExists);
            }
        }

        // 4. Keep the blobs and the manifest for push; record where they came from.
        let done = std::mem::take(&mut *ctx.done.lock().unwrap());
        let mut kept = Vec::new();
        for d in &done {
            lease.hold(crate::lease::Held::Blob, &d.desc.digest.to_string())?;
            if let Some(p) = &d.partial {
                let _l = blob_lock(&ctx.locks_dir, &d.desc.digest)
                    .map_err(io_err(format!("locking blob {}", d.desc.digest)))?;
                let dest = self.content.path(&d.desc.digest);
                if dest.exists() {
                    let _ = fs::remove_file(p);
                } else if p.exists() {
                    // Its data was flushed by the layer commit's syncfs; only the name moves.
                    fs::rename(p, &dest)
                        .map_err(io_err(format!("keeping blob {}", d.desc.digest)))?;
                }
            }
            kept.push(d);
        }
        if !done.is_empty() {
            crate::atomic_file::sync_dir(&ctx.content_blobs)
                .map_err(io_err("syncing the content store"))?;
        }
        for (d, _, bytes) in &docs {
            lease.hold(crate::lease::Held::Blob, &d.to_string())?;
            self.content.put(bytes, Some(d))?;
        }
        let tagged = r.clone();
        let mut names = vec![tagged.clone()];
        if r.digest.is_none() {
            names.push(Reference {
                tag: None,
                digest: Some(top_digest.clone()),
                ..r.clone()
            });
        }
        let images = self.images();
        let up_to_date =
            images.get(&id)?.is_some() && images.lookup_ref(&tagged)?.as_ref() == Some(&id);
        let id = images.add(
            &lease,
            &config_bytes,
            &cfg,
            &chain,
            &names,
            Some(&manifest_digest),
        )?;
        let registry = client.registry.clone();
        self.meta.write(|tx| -> Result<(), EngineError> {
            for d in &kept {
                let _ = d.index;
                tx.execute(
                    "INSERT OR IGNORE INTO layer_blobs (diff_id, blob, media_type, size) VALUES (?1, ?2, ?3, ?4)",
                    params![d.diff_id.to_string(), d.desc.digest.to_string(), d.desc.media_type, d.desc.size],
                )?;
            }
            for b in manifest
                .layers
                .iter()
                .map(|l| &l.digest)
                .chain([&manifest.config.digest])
            {
                tx.execute(
                    "INSERT OR IGNORE INTO blob_sources (blob, registry, repository) VALUES (?1, ?2, ?3)",
                    params![b.to_string(), registry, repo],
                )?;
            }
            for (d, mt, _) in &docs {
                tx.execute(
                    "INSERT OR IGNORE INTO image_manifests (image_id, manifest, media_type) VALUES (?1, ?2, ?3)",
                    params![id.to_string(), d.to_string(), mt],
                )?;
            }
            Ok(())
        })?;
        Ok(Pulled {
            reference: r.clone(),
            id,
            digest: top_digest,
            newer: !up_to_date,
            bytes_downloaded: ctx.network_bytes.load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}

impl From<crate::image::reference::ReferenceError> for EngineError {
    fn from(e: crate::image::reference::ReferenceError) -> Self {
        EngineError::Invalid(e.to_string())
    }
}
