//! `strata push`: send an image's blobs and manifest to a registry.
//!
//! Each layer is sent as the compressed blob it was pulled as (kept in the content store,
//! `layer_blobs`), so an image pulled and pushed elsewhere keeps its manifest digest: the
//! original manifest bytes are pushed when every layer can be sent as its original blob.
//! Layers with no compressed blob (loaded, imported) are re-assembled into their exact tar,
//! gzip-compressed once and recorded, so a second push sends the same blob. Per layer: `HEAD`
//! first (`Layer already exists`), else a cross-repository mount from a repository of the same
//! registry known to hold it (`Mounted from …`), else an upload (monolithic PUT, or chunked
//! PATCHes with `chunk_size`). Several layers go at once.

use super::{Engine, EngineError, io_err};
use crate::atomic_file::random_hex;
use crate::digest::{Digest, Hasher};
use crate::image::Reference;
use crate::image::archive_format::{
    Descriptor, MT_DOCKER_CONFIG, MT_DOCKER_MANIFEST, MT_OCI_CONFIG, MT_OCI_MANIFEST, Manifest,
};
use crate::layer::{Layer, LayerFiles};
use crate::registry::{Client, ClientOptions, Progress, RegistryError, Status};
use crate::worker_pool;
use rusqlite::params;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MT_OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// gzip level for layers compressed at push time (zlib-rs; 1 is ~4x faster than 6 for ~10%
/// larger blobs, and the CPU is the bottleneck on a fast link).
const PUSH_GZIP_LEVEL: u32 = 1;

pub struct PushOptions {
    pub client: ClientOptions,
    /// Layers sent at once (`--max-concurrent-uploads`).
    pub max_concurrent: usize,
    /// Upload in PATCH chunks of this many bytes instead of one PUT.
    pub chunk_size: Option<u64>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            client: ClientOptions::from_env(),
            max_concurrent: 5,
            chunk_size: None,
        }
    }
}

pub struct Pushed {
    pub reference: Reference,
    /// The tag pushed (`latest` by default).
    pub tag: String,
    pub digest: Digest,
    pub size: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comp {
    Gzip,
    Zstd,
    None,
}

fn compression_of(media_type: &str) -> Comp {
    if media_type.contains("zstd") {
        Comp::Zstd
    } else if media_type.ends_with("gzip") {
        Comp::Gzip
    } else {
        Comp::None
    }
}

/// What a worker did with one layer.
struct Sent {
    desc: Descriptor,
    /// Compressed here (record it in `layer_blobs`).
    fresh: bool,
}

struct HashWriter<W: Write> {
    inner: W,
    hasher: Hasher,
    count: u64,
}
impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hasher.update(&b[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts bytes read for the `Pushing` progress.
struct Counting {
    inner: Box<dyn Read + Send>,
    progress: Arc<dyn Progress>,
    id: String,
    current: u64,
    total: u64,
}
impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.current += n as u64;
        self.progress.layer(
            &self.id,
            Status::Pushing {
                current: self.current,
                total: self.total,
            },
        );
        Ok(n)
    }
}

/// The exact tar of `layer`, gzip-compressed into the content store. Returns its descriptor.
/// `held_by` (store root, session, lease id): the blob is leased before it appears in the
/// store, through this thread's own connection, until push records it.
fn compress_layer(
    files: &LayerFiles,
    layer: &Layer,
    tmp_dir: &Path,
    blobs_dir: &Path,
    held_by: (&Path, &str, &str),
) -> Result<Descriptor, EngineError> {
    let tmp = tmp_dir.join(format!("push-{}", random_hex(8)));
    let guard = TmpFile(tmp.clone());
    let f = File::create(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    let hw = HashWriter {
        inner: BufWriter::with_capacity(1 << 20, f),
        hasher: Hasher::default(),
        count: 0,
    };
    let mut gz = flate2::write::GzEncoder::new(hw, flate2::Compression::new(PUSH_GZIP_LEVEL));
    files.write_tar(layer, &mut gz)?;
    let mut hw = gz.finish().map_err(io_err("compressing a layer"))?;
    hw.flush().map_err(io_err("compressing a layer"))?;
    let digest = hw.hasher.finish();
    let size = hw.count;
    let f = hw
        .inner
        .into_inner()
        .map_err(|e| io_err("compressing a layer")(e.into_error()))?;
    f.sync_all().map_err(io_err("syncing a compressed layer"))?;
    let meta = crate::meta::Meta::open(&held_by.0.join("meta.db"))?;
    crate::lease::Lease::share(&meta, held_by.1, held_by.2)
        .hold(crate::lease::Held::Blob, &digest.to_string())?;
    let dest = blobs_dir.join(digest.hex());
    if !dest.exists() {
        fs::rename(&tmp, &dest).map_err(io_err(format!("keeping blob {digest}")))?;
    }
    drop(guard);
    Ok(Descriptor {
        media_type: MT_DOCKER_LAYER_GZIP.to_string(),
        digest,
        size: size as i64,
        annotations: None,
        platform: None,
    })
}

struct TmpFile(PathBuf);
impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Send one blob unless the repository has it; mount it when another repository does.
/// Returns false when the blob is neither remote nor local (the caller compresses it anew).
#[allow(clippy::too_many_arguments)]
fn send_blob(
    client: &Client,
    repo: &str,
    desc: &Descriptor,
    local: Option<&Path>,
    mount_from: &[String],
    chunk: Option<u64>,
    progress: &Arc<dyn Progress>,
    id: &str,
) -> Result<bool, RegistryError> {
    if client.blob_exists(repo, &desc.digest)? {
        progress.layer(id, Status::LayerAlreadyExists);
        return Ok(true);
    }
    // The most recent repository known to hold it; if the mount is refused, the registry
    // has opened an ordinary upload session instead.
    let mut location = None;
    if let Some(from) = mount_from.first() {
        client.add_scope(format!("repository:{from}:pull"))?;
        match client.mount_blob(repo, &desc.digest, from)? {
            None => {
                progress.layer(id, Status::MountedFrom(from.clone()));
                return Ok(true);
            }
            Some(loc) => location = Some(loc),
        }
    }
    let Some(path) = local else {
        return Ok(false);
    };
    let location = match location {
        Some(l) => l,
        None => client.start_upload(repo)?,
    };
    let size = desc.size as u64;
    let path = path.to_path_buf();
    let progress2 = progress.clone();
    let id2 = id.to_string();
    let open = move |off: u64, n: u64| -> io::Result<Box<dyn Read + Send>> {
        let mut f = File::open(&path)?;
        f.seek(SeekFrom::Start(off))?;
        Ok(Box::new(Counting {
            inner: Box::new(io::BufReader::with_capacity(1 << 20, f.take(n))),
            progress: progress2.clone(),
            id: id2.clone(),
            current: off,
            total: size,
        }))
    };
    client.upload(repo, location, &desc.digest, size, chunk, &open)?;
    progress.layer(id, Status::Pushed);
    Ok(true)
}

/// Docker's manifest JSON (3-space indent, fields in Docker's order).
fn manifest_json(media_type: &str, config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let d = |x: &Descriptor, ind: &str| {
        format!(
            "{{\n{ind}   \"mediaType\": \"{}\",\n{ind}   \"size\": {},\n{ind}   \"digest\": \"{}\"\n{ind}}}",
            x.media_type, x.size, x.digest
        )
    };
    let mut s = String::new();
    s.push_str("{\n   \"schemaVersion\": 2,\n");
    s.push_str(&format!("   \"mediaType\": \"{media_type}\",\n"));
    s.push_str(&format!("   \"config\": {},\n", d(config, "   ")));
    s.push_str("   \"layers\": [");
    for (i, l) in layers.iter().enumerate() {
        s.push_str(if i == 0 { "\n      " } else { ",\n      " });
        s.push_str(&d(l, "      "));
    }
    s.push_str(if layers.is_empty() {
        "]\n}"
    } else {
        "\n   ]\n}"
    });
    s.into_bytes()
}

impl Engine {
    /// The original manifest of an image (from a pull or an earlier push) that describes
    /// exactly these layers.
    fn original_manifest(
        &self,
        id: &Digest,
        n_layers: usize,
    ) -> Result<Option<(Vec<u8>, String, Manifest)>, EngineError> {
        let mut st = self.meta.conn().prepare(
            "SELECT manifest, media_type FROM image_manifests WHERE image_id=?1 ORDER BY rowid",
        )?;
        let rows: Vec<(String, String)> = st
            .query_map(params![id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (d, mt) in rows {
            let Ok(d) = d.parse::<Digest>() else { continue };
            let Ok(bytes) = self.content.get(&d) else {
                continue;
            };
            let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
                continue;
            };
            if m.config.digest == *id && m.layers.len() == n_layers {
                return Ok(Some((bytes, mt, m)));
            }
        }
        Ok(None)
    }

    /// A compressed blob of this layer kept in the content store, if any.
    fn known_blob(&self, diff_id: &Digest) -> Result<Option<Descriptor>, EngineError> {
        let mut st = self.meta.conn().prepare(
            "SELECT blob, media_type, size FROM layer_blobs WHERE diff_id=?1 ORDER BY rowid",
        )?;
        let rows: Vec<(String, String, i64)> = st
            .query_map(params![diff_id.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        for (b, mt, size) in rows {
            if let Ok(d) = b.parse::<Digest>()
                && self.content.contains(&d)
            {
                return Ok(Some(Descriptor {
                    media_type: mt,
                    digest: d,
                    size,
                    annotations: None,
                    platform: None,
                }));
            }
        }
        Ok(None)
    }

    fn mount_sources(
        &self,
        registry: &str,
        repo: &str,
        blob: &Digest,
    ) -> Result<Vec<String>, EngineError> {
        let mut st = self.meta.conn().prepare(
            "SELECT repository FROM blob_sources WHERE blob=?1 AND registry=?2 AND repository<>?3 ORDER BY rowid DESC LIMIT 1",
        )?;
        let v = st
            .query_map(params![blob.to_string(), registry, repo], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub fn push(
        &self,
        name: &str,
        opts: &PushOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<Pushed, EngineError> {
        let dest = Reference::parse_tagged(name)?;
        if dest.digest.is_some() {
            return Err(EngineError::Invalid(format!(
                "cannot push a digest reference ({name}): push a tag"
            )));
        }
        let images = self.images();
        let rec = images.resolve(name).map_err(|_| {
            EngineError::Invalid(format!(
                "An image does not exist locally with the tag: {}",
                dest.familiar_repository()
            ))
        })?;
        let (config_bytes, cfg) = images.config(&rec.id)?;
        let store = self.layers();
        let lease = self.lease();
        let layers = store.acquire_chain(&lease, &cfg.rootfs.diff_ids)?;
        let repo = dest.path.clone();
        let registry = dest.domain.clone();
        let client = Client::new(
            &registry,
            &opts.client,
            vec![format!("repository:{repo}:pull,push")],
        )?;
        progress.line(&format!(
            "The push refers to repository [{}]",
            dest.repository()
        ));

        // Plan: the original blob of each layer where we know one, else compress.
        let original = self.original_manifest(&rec.id, layers.len())?;
        let mut plan: Vec<Option<Descriptor>> = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            plan.push(match &original {
                Some((_, _, m)) => Some(m.layers[i].clone()),
                None => self.known_blob(&l.diff_id)?,
            });
        }
        let mut mounts: Vec<Vec<String>> = Vec::new();
        for p in &plan {
            mounts.push(match p {
                Some(d) => self.mount_sources(&registry, &repo, &d.digest)?,
                None => vec![],
            });
        }
        for l in layers.iter().rev() {
            progress.layer(&l.diff_id.short(), Status::Preparing);
        }

        let blobs_dir = self.root.join("content/blobs/sha256");
        let tmp_dir = self.tmp_dir()?;
        let files = store.files();
        let (root, session, lease_id) = (
            self.root.clone(),
            self.session_token().to_string(),
            lease.id().to_string(),
        );
        // Top layer first (as the progress lines were printed); results back in layer order.
        let order: Vec<usize> = (0..layers.len()).rev().collect();
        let mut results: Vec<(usize, Result<Sent, EngineError>)> = worker_pool::run_bounded(
            order.clone(),
            opts.max_concurrent,
            worker_pool::OnError::StopTakingWork,
            |i| -> Result<Sent, EngineError> {
                let id = layers[i].diff_id.short();
                if let Some(d) = &plan[i] {
                    let local = blobs_dir.join(d.digest.hex());
                    let local = local.exists().then_some(local);
                    if send_blob(
                        &client,
                        &repo,
                        d,
                        local.as_deref(),
                        &mounts[i],
                        opts.chunk_size,
                        &progress,
                        &id,
                    )? {
                        return Ok(Sent {
                            desc: d.clone(),
                            fresh: false,
                        });
                    }
                }
                let d = compress_layer(
                    &files,
                    &layers[i],
                    &tmp_dir,
                    &blobs_dir,
                    (&root, &session, &lease_id),
                )?;
                let local = blobs_dir.join(d.digest.hex());
                send_blob(
                    &client,
                    &repo,
                    &d,
                    Some(&local),
                    &[],
                    opts.chunk_size,
                    &progress,
                    &id,
                )?;
                Ok(Sent {
                    desc: d,
                    fresh: true,
                })
            },
        )
        .into_iter()
        .map(|(pos, r)| (order[pos], r))
        .collect();
        results.sort_by_key(|(i, _)| *i);
        let mut sent = Vec::new();
        for (_, r) in results {
            sent.push(r?);
        }
        if sent.len() != layers.len() {
            return Err(EngineError::Invalid(format!(
                "pushing {}: not every layer was sent",
                dest.familiar()
            )));
        }

        // Config, then the manifest: the original bytes when every layer is its original blob.
        client.put_blob_bytes(&repo, &rec.id, &config_bytes)?;
        let reuse = original.as_ref().filter(|(_, _, m)| {
            m.layers
                .iter()
                .zip(&sent)
                .all(|(a, b)| a.digest == b.desc.digest)
        });
        let (bytes, mt) = match reuse {
            Some((b, mt, _)) => (b.clone(), mt.clone()),
            None => {
                let all_gzip = sent
                    .iter()
                    .all(|s| compression_of(&s.desc.media_type) == Comp::Gzip);
                let (mt, cfg_mt) = if all_gzip {
                    (MT_DOCKER_MANIFEST, MT_DOCKER_CONFIG)
                } else {
                    (MT_OCI_MANIFEST, MT_OCI_CONFIG)
                };
                let descs: Vec<Descriptor> = sent
                    .iter()
                    .map(|s| {
                        let mut d = s.desc.clone();
                        d.media_type = match (all_gzip, compression_of(&d.media_type)) {
                            (true, _) => MT_DOCKER_LAYER_GZIP,
                            (false, Comp::Gzip) => MT_OCI_LAYER_GZIP,
                            (false, Comp::Zstd) => MT_OCI_LAYER_ZSTD,
                            (false, Comp::None) => MT_OCI_LAYER_TAR,
                        }
                        .to_string();
                        d
                    })
                    .collect();
                let config = Descriptor {
                    media_type: cfg_mt.to_string(),
                    digest: rec.id.clone(),
                    size: config_bytes.len() as i64,
                    annotations: None,
                    platform: None,
                };
                (manifest_json(mt, &config, &descs), mt.to_string())
            }
        };
        let tag = dest.tag.clone().unwrap_or_else(|| "latest".into());
        client.put_manifest(&repo, &tag, &mt, &bytes)?;
        lease.hold(crate::lease::Held::Blob, &Digest::of(&bytes).to_string())?;
        let digest = self.content.put(&bytes, None)?;

        // Remember: blobs made here, where every blob now is, the manifest, the repo digest.
        self.meta.write(|tx| -> Result<(), EngineError> {
            for (s, l) in sent.iter().zip(&layers) {
                if s.fresh {
                    tx.execute(
                        "INSERT OR IGNORE INTO layer_blobs (diff_id, blob, media_type, size) VALUES (?1, ?2, ?3, ?4)",
                        params![l.diff_id.to_string(), s.desc.digest.to_string(), s.desc.media_type, s.desc.size],
                    )?;
                }
            }
            for b in sent.iter().map(|s| &s.desc.digest).chain([&rec.id]) {
                tx.execute(
                    "INSERT OR IGNORE INTO blob_sources (blob, registry, repository) VALUES (?1, ?2, ?3)",
                    params![b.to_string(), registry, repo],
                )?;
            }
            tx.execute(
                "INSERT OR IGNORE INTO image_manifests (image_id, manifest, media_type) VALUES (?1, ?2, ?3)",
                params![rec.id.to_string(), digest.to_string(), mt],
            )?;
            Ok(())
        })?;
        let with_digest = Reference {
            tag: None,
            digest: Some(digest.clone()),
            ..dest.clone()
        };
        images.tag(&rec.id, &with_digest)?;
        Ok(Pushed {
            reference: dest,
            tag,
            digest,
            size: bytes.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_format_is_dockers() {
        let d = |s: &str, n| Descriptor {
            media_type: s.into(),
            digest: Digest::of(s.as_bytes()),
            size: n,
            annotations: None,
            platform: None,
        };
        let b = manifest_json(
            MT_DOCKER_MANIFEST,
            &d(MT_DOCKER_CONFIG, 10),
            &[d(MT_DOCKER_LAYER_GZIP, 20), d(MT_DOCKER_LAYER_GZIP, 30)],
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["layers"][1]["size"], 30);
        let m: Manifest = serde_json::from_slice(&b).unwrap();
        assert_eq!(m.layers.len(), 2);
        let s = String::from_utf8(b).unwrap();
        assert!(s.starts_with("{\n   \"schemaVersion\": 2,\n   \"mediaType\""));
        assert!(
            s.contains("\"layers\": [\n      {\n         \"mediaType\""),
            "{s}"
        );
    }
}
