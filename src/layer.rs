//! The layer store: read-only layers keyed and shared by chainID.
//!
//! A layer is a driver directory (named by a random cache-id), its tar-split file (so the
//! original tar can be re-created byte for byte: its sha256 is the diffID), and one row in
//! the metadata database. The row is written last, after the files are synced, so a crash
//! leaves either a complete layer or files that no row names (removed on the next start).

use crate::archive::{self, ArchiveError, WhiteoutFormat};
use crate::atomic_file::{AtomicFile, random_hex};
use crate::digest::{Digest, Hasher, chain_ids};
use crate::driver::{Driver, DriverError, LayerKind};
use crate::lease::{Held, Lease};
use crate::lock::LockFile;
use crate::meta::{Meta, MetaError};
use crate::worker_pool;
use rusqlite::{OptionalExtension, params};
use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error(
        "layer diffID mismatch: the image config says {expected}, the layer data hashes to {actual}"
    )]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("layer {0} not found")]
    NotFound(Digest),
    #[error("{0}")]
    Source(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LayerError {
    let what = what.into();
    move |source| LayerError::Io { what, source }
}

impl From<rusqlite::Error> for LayerError {
    fn from(e: rusqlite::Error) -> Self {
        LayerError::Meta(MetaError::Sql(e))
    }
}

#[derive(Clone, Debug)]
pub struct Layer {
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    pub cache_id: String,
    /// Sum of regular file sizes in the layer tar (Docker's layer size).
    pub size: u64,
    /// Length of the uncompressed layer tar.
    pub tar_size: u64,
}

/// Where a layer's tar comes from when a chain is ingested. `open` is called at most once,
/// only for layers not already in the store, possibly on another thread (the stream it
/// returns is read on that same thread).
pub struct LayerSource {
    pub diff_id: Digest,
    pub open: Box<dyn FnOnce() -> Result<Opened, String> + Send>,
}

/// A layer's tar stream, and (migration) where the content of its files can be placed from
/// instead of being written (see `archive::ContentDonor`).
pub struct Opened {
    pub stream: Box<dyn Read>,
    pub donor: Option<Box<dyn archive::ContentDonor>>,
}

impl From<Box<dyn Read>> for Opened {
    fn from(stream: Box<dyn Read>) -> Opened {
        Opened {
            stream,
            donor: None,
        }
    }
}

pub struct LayerStore<'a> {
    pub meta: &'a Meta,
    pub driver: &'a dyn Driver,
    root: PathBuf,
    /// This process's temp dir (tar-splits are written there, then renamed into `layers/`).
    tmp: PathBuf,
}

fn row_to_layer(r: &rusqlite::Row) -> rusqlite::Result<Layer> {
    let parse = |s: String| {
        s.parse::<Digest>()
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    };
    let parent: Option<String> = r.get(2)?;
    Ok(Layer {
        chain_id: parse(r.get(0)?)?,
        diff_id: parse(r.get(1)?)?,
        parent: parent.map(parse).transpose()?,
        cache_id: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        tar_size: r.get::<_, i64>(5)? as u64,
    })
}

const LAYER_COLS: &str = "chain_id, diff_id, parent, cache_id, size, tar_size";

/// A layer whose files are written but whose row is not: committed after one syncfs.
struct Extracted {
    layer: Layer,
    _lock: LockFile,
}

impl<'a> LayerStore<'a> {
    /// `root` is the store root: tar-split files go to `ROOT/layers`, locks to `ROOT/locks`;
    /// `tmp` is the process's own temp dir on the same filesystem.
    pub fn new(root: &Path, tmp: &Path, meta: &'a Meta, driver: &'a dyn Driver) -> LayerStore<'a> {
        LayerStore {
            meta,
            driver,
            root: root.to_path_buf(),
            tmp: tmp.to_path_buf(),
        }
    }

    pub fn tar_split_path(&self, cache_id: &str) -> PathBuf {
        tar_split_path(&self.root, cache_id)
    }

    pub fn files(&self) -> LayerFiles<'_> {
        LayerFiles {
            driver: self.driver,
            root: &self.root,
            tmp: &self.tmp,
        }
    }

    pub fn get(&self, chain_id: &Digest) -> Result<Option<Layer>, LayerError> {
        Ok(self
            .meta
            .conn()
            .query_row(
                &format!("SELECT {LAYER_COLS} FROM layers WHERE chain_id=?1"),
                params![chain_id.to_string()],
                row_to_layer,
            )
            .optional()?)
    }

    pub fn list(&self) -> Result<Vec<Layer>, LayerError> {
        let mut st = self
            .meta
            .conn()
            .prepare(&format!("SELECT {LAYER_COLS} FROM layers"))?;
        let rows = st.query_map([], row_to_layer)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The layers of a chain, bottom first. Every one must exist.
    pub fn chain(&self, diff_ids: &[Digest]) -> Result<Vec<Layer>, LayerError> {
        chain_ids(diff_ids)
            .into_iter()
            .map(|c| self.get(&c)?.ok_or(LayerError::NotFound(c)))
            .collect()
    }

    /// The layer, if it exists, held by `lease` from this moment: the existence check and the
    /// lease row commit together, so a collector either deleted it before (None) or will
    /// leave it alone until the lease ends.
    pub fn acquire(&self, lease: &Lease, chain_id: &Digest) -> Result<Option<Layer>, LayerError> {
        if lease.is_inert() {
            return self.get(chain_id); // read-only store: nothing can delete it either
        }
        self.meta
            .write_unsynced(|tx| -> Result<Option<Layer>, LayerError> {
                let l = tx
                    .query_row(
                        &format!("SELECT {LAYER_COLS} FROM layers WHERE chain_id=?1"),
                        params![chain_id.to_string()],
                        row_to_layer,
                    )
                    .optional()?;
                if l.is_some() {
                    lease.hold_in(tx, Held::Layer, &chain_id.to_string())?;
                }
                Ok(l)
            })
    }

    /// The layers of a chain, bottom first, all held by `lease`. Every one must exist.
    pub fn acquire_chain(
        &self,
        lease: &Lease,
        diff_ids: &[Digest],
    ) -> Result<Vec<Layer>, LayerError> {
        chain_ids(diff_ids)
            .into_iter()
            .map(|c| self.acquire(lease, &c)?.ok_or(LayerError::NotFound(c)))
            .collect()
    }

    fn lock_chain(&self, chain_id: &Digest) -> Result<LockFile, LayerError> {
        let p = self
            .root
            .join("locks")
            .join(format!("layer-{}", chain_id.hex()));
        LockFile::exclusive(&p).map_err(io_err(format!("locking layer {chain_id}")))
    }

    /// Make sure every layer of `sources` (bottom first) is in the store, fetching only missing
    /// ones. On overlay the missing layers are unpacked in parallel (each is independent on
    /// disk); on vfs in order (each starts as a copy of its parent).
    /// Every layer returned (present or new) is held by `lease`, so it survives until the
    /// caller's image record names it.
    pub fn ingest_chain(
        &self,
        lease: &Lease,
        sources: Vec<LayerSource>,
    ) -> Result<Vec<Layer>, LayerError> {
        self.ingest_chain_limited(lease, sources, None)
    }

    /// `ingest_chain` with at most `max_parallel` layers opened and unpacked at once (pull's
    /// `--max-concurrent-downloads`); None: one per CPU.
    pub fn ingest_chain_limited(
        &self,
        lease: &Lease,
        sources: Vec<LayerSource>,
        max_parallel: Option<usize>,
    ) -> Result<Vec<Layer>, LayerError> {
        let diff_ids: Vec<Digest> = sources.iter().map(|s| s.diff_id.clone()).collect();
        let chains = chain_ids(&diff_ids);
        let mut out: Vec<Option<Layer>> = Vec::with_capacity(chains.len());
        // Phase 1 (in order): find present layers; lock and create driver dirs for missing ones.
        // Every dir this call creates is in `made`: on any failure all of them go, and no row
        // is written, so a failed ingest leaves nothing (a killed one leaves unnamed files that
        // the next start removes).
        let mut made: Vec<String> = Vec::new();
        let mut done: Vec<(usize, Extracted)> = Vec::new();
        let mut work: Vec<(usize, String, LockFile, LayerSource)> = Vec::new();
        let mut parent_cache: Option<String> = None;
        let parent_of = |i: usize| {
            if i == 0 {
                None
            } else {
                Some(chains[i - 1].clone())
            }
        };
        let phase1 = (|| -> Result<(), LayerError> {
            for (i, (src, chain)) in sources.into_iter().zip(&chains).enumerate() {
                if let Some(l) = self.acquire(lease, chain)? {
                    parent_cache = Some(l.cache_id.clone());
                    out.push(Some(l));
                    continue;
                }
                let lock = self.lock_chain(chain)?;
                // Another process may have finished it while we waited for the lock.
                if let Some(l) = self.acquire(lease, chain)? {
                    parent_cache = Some(l.cache_id.clone());
                    out.push(Some(l));
                    continue;
                }
                let cache_id = random_hex(32);
                lease.hold(Held::CacheDir, &cache_id)?;
                self.driver
                    .create(&cache_id, parent_cache.as_deref(), LayerKind::ReadOnly)?;
                made.push(cache_id.clone());
                out.push(None);
                if self.driver.whiteout_format() == WhiteoutFormat::Apply {
                    // vfs: a layer starts as a copy of its parent's files, so unpack in order.
                    let ex =
                        self.files()
                            .extract(&cache_id, parent_of(i), chain.clone(), src, lock)?;
                    done.push((i, ex));
                } else {
                    work.push((i, cache_id.clone(), lock, src));
                }
                parent_cache = Some(cache_id);
            }
            Ok(())
        })();
        if let Err(e) = phase1 {
            return Err(self.discard_all(&made, e));
        }
        // Phase 2 (overlay): unpack in parallel (each layer is its own directory), bounded.
        if !work.is_empty() {
            let threads = max_parallel.unwrap_or_else(worker_pool::cpus);
            let unpacker = self.files();
            let results = worker_pool::run_bounded(
                work,
                threads,
                worker_pool::OnError::StopTakingWork,
                |(i, cache_id, lock, src)| {
                    let ex =
                        unpacker.extract(&cache_id, parent_of(i), chains[i].clone(), src, lock)?;
                    Ok::<_, LayerError>((i, ex))
                },
            );
            for (_, r) in results {
                match r {
                    Ok(done_one) => done.push(done_one),
                    Err(e) => return Err(self.discard_all(&made, e)),
                }
            }
        }
        // Nothing new (every layer present): no flush, no transaction.
        if !done.is_empty()
            && let Err(e) = self.commit(lease, done.iter().map(|(_, ex)| &ex.layer))
        {
            return Err(self.discard_all(&made, e));
        }
        for (i, ex) in done {
            out[i] = Some(ex.layer);
        }
        Ok(out
            .into_iter()
            .map(|l| l.expect("every layer present or ingested"))
            .collect())
    }

    /// Remove the files of every layer this ingest created, and pass the error on.
    fn discard_all(&self, made: &[String], e: LayerError) -> LayerError {
        for c in made {
            let _ = self.discard(c);
        }
        e
    }

    fn cleanup_on_err<T>(&self, cache_id: &str, r: Result<T, LayerError>) -> Result<T, LayerError> {
        if r.is_err() {
            let _ = self.discard(cache_id);
        }
        r
    }

    /// Remove the files of a layer that has no row (failed or superseded ingest).
    fn discard(&self, cache_id: &str) -> Result<(), LayerError> {
        self.driver.remove(cache_id)?;
        let _ = fs::remove_file(self.tar_split_path(cache_id));
        Ok(())
    }

    /// Flush unpacked files to disk, then record the layers in one transaction, held by
    /// `lease` until an image names them.
    fn commit<'l>(
        &self,
        lease: &Lease,
        layers: impl IntoIterator<Item = &'l Layer>,
    ) -> Result<(), LayerError> {
        sync_filesystem(&self.root)?;
        let now = chrono::Utc::now().to_rfc3339();
        self.meta.write(|tx| -> Result<(), LayerError> {
            for l in layers {
                lease.hold_in(tx, Held::Layer, &l.chain_id.to_string())?;
                tx.execute(
                    "INSERT INTO layers (chain_id, diff_id, parent, cache_id, size, tar_size, created)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        l.chain_id.to_string(),
                        l.diff_id.to_string(),
                        l.parent.as_ref().map(|p| p.to_string()),
                        l.cache_id,
                        l.size as i64,
                        l.tar_size as i64,
                        now
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Add one layer whose diffID is not known in advance (import, commit): unpack to learn it,
    /// then keep ours or, if that chain already exists, drop ours and return the existing one.
    /// The layer returned is held by `lease`; `parent` must be held by the caller.
    pub fn ingest_unknown(
        &self,
        lease: &Lease,
        parent: Option<&Layer>,
        stream: impl Read,
    ) -> Result<Layer, LayerError> {
        let cache_id = random_hex(32);
        lease.hold(Held::CacheDir, &cache_id)?;
        self.driver.create(
            &cache_id,
            parent.map(|p| p.cache_id.as_str()),
            LayerKind::ReadOnly,
        )?;
        let applied = self.files().apply_stream(&cache_id, stream);
        let applied = self.cleanup_on_err(&cache_id, applied)?;
        let chain_id = match parent {
            None => applied.diff_id.clone(),
            Some(p) => Digest::of(format!("{} {}", p.chain_id, applied.diff_id).as_bytes()),
        };
        let lock = self.lock_chain(&chain_id)?;
        if let Some(existing) = self.acquire(lease, &chain_id)? {
            self.discard(&cache_id)?;
            return Ok(existing);
        }
        let ex = Extracted {
            layer: Layer {
                chain_id,
                diff_id: applied.diff_id,
                parent: parent.map(|p| p.chain_id.clone()),
                cache_id,
                size: applied.size,
                tar_size: applied.tar_bytes,
            },
            _lock: lock,
        };
        let r = self.commit(lease, [&ex.layer]);
        self.cleanup_on_err(&ex.layer.cache_id, r)?;
        Ok(ex.layer)
    }

    /// Delete a layer if nothing references or holds it: the row first, in a transaction that
    /// re-checks every reference (so a lease taken a moment ago wins), then its files (a crash
    /// in between leaves only unnamed files, which the collector removes). False when it is
    /// still needed.
    pub fn remove_if_unneeded(&self, layer: &Layer) -> Result<bool, LayerError> {
        let gone = self.meta.write(|tx| -> Result<bool, LayerError> {
            let n = tx.execute(
                &format!("DELETE FROM layers WHERE chain_id=?1 AND {UNNEEDED}"),
                params![layer.chain_id.to_string()],
            )?;
            Ok(n > 0)
        })?;
        if gone {
            self.discard(&layer.cache_id)?;
        }
        Ok(gone)
    }

    /// Layers no image, container, child layer or lease needs (candidates for collection).
    pub fn unneeded(&self) -> Result<Vec<Layer>, LayerError> {
        let mut st = self.meta.conn().prepare(&format!(
            "SELECT {LAYER_COLS} FROM layers WHERE {}",
            UNNEEDED.replace("?1", "layers.chain_id")
        ))?;
        let rows = st.query_map([], row_to_layer)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A layer (chainID `?1`) nothing needs: no image lists it, no layer or container is built
/// on it, no lease holds it.
const UNNEEDED: &str = "NOT EXISTS (SELECT 1 FROM image_layers il WHERE il.chain_id = ?1)
     AND NOT EXISTS (SELECT 1 FROM layers c WHERE c.parent = ?1)
     AND NOT EXISTS (SELECT 1 FROM containers k WHERE k.parent = ?1)
     AND NOT EXISTS (SELECT 1 FROM leases WHERE kind = 'layer' AND key = ?1)";

/// The file side of layers (unpacking, tar-split, reassembly): no database, so it can run on
/// several threads at once.
pub struct LayerFiles<'a> {
    driver: &'a dyn Driver,
    root: &'a Path,
    tmp: &'a Path,
}

impl LayerFiles<'_> {
    fn tar_split_path(&self, cache_id: &str) -> PathBuf {
        tar_split_path(self.root, cache_id)
    }

    /// Unpack one layer into its (already created) driver dir and write its tar-split.
    fn extract(
        &self,
        cache_id: &str,
        parent: Option<Digest>,
        chain_id: Digest,
        src: LayerSource,
        lock: LockFile,
    ) -> Result<Extracted, LayerError> {
        let opened = (src.open)().map_err(LayerError::Source)?;
        let applied = self.apply_stream_with(cache_id, opened.stream, opened.donor)?;
        if applied.diff_id != src.diff_id {
            return Err(LayerError::DiffIdMismatch {
                expected: src.diff_id,
                actual: applied.diff_id,
            });
        }
        Ok(Extracted {
            layer: Layer {
                chain_id,
                diff_id: applied.diff_id,
                parent,
                cache_id: cache_id.to_string(),
                size: applied.size,
                tar_size: applied.tar_bytes,
            },
            _lock: lock,
        })
    }

    fn apply_stream(
        &self,
        cache_id: &str,
        stream: impl Read,
    ) -> Result<archive::AppliedLayer, LayerError> {
        self.apply_stream_with(cache_id, stream, None)
    }

    fn apply_stream_with(
        &self,
        cache_id: &str,
        stream: impl Read,
        donor: Option<Box<dyn archive::ContentDonor>>,
    ) -> Result<archive::AppliedLayer, LayerError> {
        let dest = self.tar_split_path(cache_id);
        let mut split =
            AtomicFile::create(self.tmp, &dest).map_err(io_err("creating tar-split"))?;
        let applied = {
            let mut w = BufWriter::with_capacity(256 << 10, &mut split);
            let a = archive::apply_layer_with(
                &self.driver.diff_dir(cache_id),
                stream,
                self.driver.whiteout_format(),
                &mut w,
                donor,
            )?;
            w.flush().map_err(io_err("writing tar-split"))?;
            a
        };
        split
            .commit()
            .map_err(io_err(format!("writing {}", dest.display())))?;
        Ok(applied)
    }

    /// Write the layer's original tar to `out`, checking on the way that it hashes to the diffID.
    pub fn write_tar(&self, layer: &Layer, out: &mut dyn Write) -> Result<u64, LayerError> {
        let mut tee = HashTee {
            inner: out,
            hasher: Hasher::default(),
        };
        let n = self.reassemble(layer, &mut tee)?;
        let actual = tee.hasher.finish();
        if actual != layer.diff_id {
            return Err(LayerError::DiffIdMismatch {
                expected: layer.diff_id.clone(),
                actual,
            });
        }
        Ok(n)
    }

    fn reassemble(&self, layer: &Layer, out: &mut dyn Write) -> Result<u64, LayerError> {
        let p = self.tar_split_path(&layer.cache_id);
        let f = fs::File::open(&p).map_err(io_err(format!(
            "opening tar-split of layer {}",
            layer.chain_id
        )))?;
        Ok(archive::reassemble(
            &self.driver.diff_dir(&layer.cache_id),
            BufReader::with_capacity(256 << 10, f),
            out,
        )?)
    }

    /// Re-hash the layer's unpacked content against its diffID (fsck).
    pub fn verify(&self, layer: &Layer) -> Result<u64, LayerError> {
        self.write_tar(layer, &mut io::sink())
    }
}

fn tar_split_path(root: &Path, cache_id: &str) -> PathBuf {
    root.join("layers").join(format!("{cache_id}.tar-split"))
}

struct HashTee<'w> {
    inner: &'w mut dyn Write,
    hasher: Hasher,
}
impl Write for HashTee<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hasher.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One syncfs for everything written to the root's filesystem: far cheaper than an fsync per
/// unpacked file, and enough, since no row names the files until it returns.
pub fn sync_filesystem(root: &Path) -> Result<(), LayerError> {
    let f = fs::File::open(root).map_err(io_err(format!("opening {}", root.display())))?;
    rustix::fs::syncfs(&f).map_err(|e| LayerError::Io {
        what: "syncfs".into(),
        source: e.into(),
    })
}
