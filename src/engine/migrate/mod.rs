//! `strata system migrate`: adopt every image of a Docker (overlay2) or containers/storage
//! (Podman, overlay) store, with the same image IDs, tags and digests, without a network and
//! without writing to the source.
//!
//! Each layer's tar is re-created from the source's tar-split data and unpacked files
//! (`archive::foreign_split`) and fed to the same ingest as `load` and `pull`
//! (`LayerStore::ingest_chain`): the stream must hash to the diffID or the layer is refused,
//! and crash safety (files, syncfs, then rows; leases; the collector) is the ingest's. A
//! layer already in strata (by chainID) is not read at all, so a re-run after an interruption
//! continues where the last one stopped.

pub mod docker;
pub mod podman;
pub mod source;

use super::{Engine, EngineError};
use crate::archive::ContentDonor;
use crate::archive::foreign_split::ForeignSplit;
use crate::digest::{Digest, chain_ids};
use crate::image::{ImageConfig, Reference};
use crate::layer::{LayerError, LayerSource, Opened};
use source::{SourceImage, SourceLayer, SourceRoot, SourceStore};
use std::cell::RefCell;
use std::collections::HashSet;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Docker,
    Podman,
}

impl SourceKind {
    pub fn default_root(self) -> PathBuf {
        match self {
            SourceKind::Docker => PathBuf::from("/var/lib/docker"),
            SourceKind::Podman => PathBuf::from("/var/lib/containers/storage"),
        }
    }
}

/// What happened to one layer.
#[derive(Clone, Debug)]
pub enum LayerStatus {
    /// Re-created, verified against its diffID and stored: `bytes` of tar.
    Adopted {
        bytes: u64,
    },
    /// strata had it already (or an earlier image of this run adopted it).
    Present,
    Skipped(String),
}

/// Progress, reported as it happens (possibly from several threads at once).
#[derive(Clone, Debug)]
pub enum Event {
    /// `done` of `total` content bytes of a layer read so far (total as the source says).
    Reading {
        layer: String,
        done: u64,
        total: u64,
    },
    Layer {
        layer: String,
        status: LayerStatus,
    },
    /// An image recorded (`skipped` None) or left out, with the reason.
    Image {
        id: Digest,
        names: Vec<Reference>,
        skipped: Option<String>,
    },
}

pub type Progress = Arc<dyn Fn(Event) + Send + Sync>;

#[derive(Debug, Default)]
pub struct Summary {
    pub images_adopted: usize,
    pub images_skipped: usize,
    pub layers_adopted: usize,
    /// Layers strata had before this run.
    pub layers_present: usize,
    pub layers_skipped: usize,
    /// Bytes of layer tar adopted.
    pub bytes: u64,
    /// Source metadata that could not be read (images named but missing, bad names…).
    pub problems: Vec<String>,
}

/// `--dry-run`: what would be adopted.
#[derive(Debug, Default)]
pub struct Plan {
    pub images: Vec<PlannedImage>,
    pub layers_new: usize,
    pub layers_present: usize,
    /// Content bytes of the layers strata does not have (as the source reports them).
    pub bytes_needed: u64,
    pub problems: Vec<String>,
}

#[derive(Debug)]
pub struct PlannedImage {
    pub id: Digest,
    pub names: Vec<Reference>,
    pub layers: usize,
    pub new_layers: usize,
    pub new_bytes: u64,
}

fn read_source(kind: SourceKind, root: &SourceRoot) -> Result<SourceStore, EngineError> {
    let r = match kind {
        SourceKind::Docker => docker::read(root),
        SourceKind::Podman => podman::read(root),
    };
    r.map_err(EngineError::Invalid)
}

fn open_source(kind: SourceKind, path: &std::path::Path) -> Result<SourceStore, EngineError> {
    let root = SourceRoot::open(path)
        .map_err(|e| EngineError::Invalid(format!("source store {}: {e}", path.display())))?;
    read_source(kind, &root)
}

/// Reports read progress of one layer every few MB, and holds the pause point the crash
/// tests stop a migration at (in the middle of a layer).
struct ProgressReader<R> {
    inner: ForeignSplit<R>,
    layer: String,
    total: u64,
    reported: u64,
    progress: Progress,
    paused: bool,
}

const REPORT_EVERY: u64 = 8 << 20;

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let done = self.inner.content_bytes;
        if !self.paused && done > 0 {
            self.paused = true;
            crate::failpoint::pause("migrate-layer-read");
        }
        if (n == 0 && done != self.reported) || done >= self.reported + REPORT_EVERY {
            self.reported = done;
            (self.progress)(Event::Reading {
                layer: self.layer.clone(),
                done,
                total: self.total.max(done),
            });
        }
        Ok(n)
    }
}

/// The source's files, as the re-created stream reads them, offered to the extractor so it
/// places them (reflink, or hard link with `--link`) instead of writing their bytes.
struct SourceFiles {
    /// (stream offset of the content, size, the open file), in stream order.
    queue: Rc<RefCell<VecDeque<(u64, u64, File)>>>,
    link: bool,
    cloning: bool,
}

impl ContentDonor for SourceFiles {
    fn take(&mut self, offset: u64, size: u64) -> Option<File> {
        let mut q = self.queue.borrow_mut();
        while q.front().is_some_and(|f| f.0 < offset) {
            q.pop_front();
        }
        if !self.link && !self.cloning {
            return None;
        }
        match q.front() {
            Some(&(o, s, _)) if o == offset && s == size => q.pop_front().map(|f| f.2),
            _ => None,
        }
    }
    fn link(&self) -> bool {
        self.link
    }
    fn clone_refused(&mut self) {
        self.cloning = false;
    }
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

fn layer_sources(
    root: &std::path::Path,
    layers: &[SourceLayer],
    link: bool,
    progress: &Progress,
) -> Vec<LayerSource> {
    layers
        .iter()
        .map(|l| {
            let root = root.to_path_buf();
            let l = l.clone();
            let progress = progress.clone();
            LayerSource {
                diff_id: l.diff_id.clone(),
                open: Box::new(move || {
                    let what = format!("layer {}", short(&l.source_id));
                    let src = SourceRoot::open(&root).map_err(|e| format!("{what}: {e}"))?;
                    let split = src
                        .open_file(&l.split)
                        .map_err(|e| format!("{what}: tar-split: {e}"))?;
                    let dir = src.open_dir(&l.dir).map_err(|e| format!("{what}: {e}"))?;
                    let gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                        64 << 10,
                        split,
                    ));
                    let queue = Rc::new(RefCell::new(VecDeque::new()));
                    let q = queue.clone();
                    let split =
                        ForeignSplit::new(gz, dir).on_file(Box::new(move |off, size, f| {
                            if let Ok(dup) = f.try_clone() {
                                q.borrow_mut().push_back((off, size, dup));
                            }
                        }));
                    Ok(Opened {
                        stream: Box::new(ProgressReader {
                            inner: split,
                            layer: short(&l.source_id),
                            total: l.size,
                            reported: 0,
                            progress,
                            paused: false,
                        }),
                        donor: Some(Box::new(SourceFiles {
                            queue,
                            link,
                            cloning: true,
                        })),
                    })
                }),
            }
        })
        .collect()
}

impl Engine {
    /// What `migrate` would do, without writing anything.
    pub fn migrate_plan(
        &self,
        kind: SourceKind,
        root: &std::path::Path,
    ) -> Result<Plan, EngineError> {
        let src = open_source(kind, root)?;
        let mut plan = Plan {
            problems: src.problems,
            ..Plan::default()
        };
        let mut seen: HashSet<Digest> = HashSet::new();
        for img in src.images {
            let diff_ids: Vec<Digest> = img.layers.iter().map(|l| l.diff_id.clone()).collect();
            let mut p = PlannedImage {
                id: img.id.clone(),
                names: img.names.clone(),
                layers: img.layers.len(),
                new_layers: 0,
                new_bytes: 0,
            };
            for (chain, l) in chain_ids(&diff_ids).into_iter().zip(&img.layers) {
                if !seen.insert(chain.clone()) {
                    continue;
                }
                if self.layers().get(&chain)?.is_some() {
                    plan.layers_present += 1;
                } else {
                    plan.layers_new += 1;
                    p.new_layers += 1;
                    p.new_bytes += l.size;
                    plan.bytes_needed += l.size;
                }
            }
            plan.images.push(p);
        }
        Ok(plan)
    }

    /// Adopt every image of the source store. A layer that does not verify is reported and
    /// left out with the images that need it; the rest is adopted.
    pub fn migrate(
        &self,
        kind: SourceKind,
        root: &std::path::Path,
        link: bool,
        progress: Progress,
    ) -> Result<Summary, EngineError> {
        let src = open_source(kind, root)?;
        let mut sum = Summary {
            problems: src.problems,
            ..Summary::default()
        };
        // Layers strata had before this run, layers this run stored, layers refused.
        let mut counted: HashSet<Digest> = HashSet::new();
        let mut bad: Vec<(Digest, String)> = Vec::new();
        for (i, img) in src.images.into_iter().enumerate() {
            if i > 0 {
                crate::failpoint::pause("migrate-image");
            }
            let diff_ids: Vec<Digest> = img.layers.iter().map(|l| l.diff_id.clone()).collect();
            let chains = chain_ids(&diff_ids);
            if let Some((c, why)) = bad.iter().find(|(c, _)| chains.contains(c)) {
                sum.images_skipped += 1;
                progress(Event::Image {
                    id: img.id.clone(),
                    names: img.names.clone(),
                    skipped: Some(format!(
                        "needs layer {} which was refused: {why}",
                        c.short()
                    )),
                });
                continue;
            }
            let present: Vec<bool> = chains
                .iter()
                .map(|c| Ok(counted.contains(c) || self.layers().get(c)?.is_some()))
                .collect::<Result<_, EngineError>>()?;
            match self.adopt_image(root, &img, link, &progress) {
                Ok(layers) => {
                    for ((chain, l), was) in chains.iter().zip(&layers).zip(&present) {
                        if !counted.insert(chain.clone()) {
                            continue;
                        }
                        let status = if *was {
                            sum.layers_present += 1;
                            LayerStatus::Present
                        } else {
                            sum.layers_adopted += 1;
                            sum.bytes += l.tar_size;
                            LayerStatus::Adopted { bytes: l.tar_size }
                        };
                        progress(Event::Layer {
                            layer: chain.short(),
                            status,
                        });
                    }
                    sum.images_adopted += 1;
                    progress(Event::Image {
                        id: img.id.clone(),
                        names: img.names.clone(),
                        skipped: None,
                    });
                }
                Err(AdoptError::Layer(k, why)) => {
                    let chain = chains[k].clone();
                    sum.layers_skipped += 1;
                    // Layers below the refused one that verified are counted as adopted.
                    for c in &chains[..k] {
                        if !counted.contains(c) && self.layers().get(c)?.is_some() {
                            counted.insert(c.clone());
                            sum.layers_adopted += 1;
                        }
                    }
                    progress(Event::Layer {
                        layer: chain.short(),
                        status: LayerStatus::Skipped(why.clone()),
                    });
                    sum.images_skipped += 1;
                    progress(Event::Image {
                        id: img.id.clone(),
                        names: img.names.clone(),
                        skipped: Some(format!("layer {} refused: {why}", chain.short())),
                    });
                    bad.push((chain, why));
                }
                Err(AdoptError::Engine(e)) => return Err(e),
            }
        }
        Ok(sum)
    }

    /// Ingest one image's layers and record it. On a layer failure, which layer it was is
    /// found by ingesting the chain one layer at a time (the layers below it are then kept:
    /// they verified).
    fn adopt_image(
        &self,
        root: &std::path::Path,
        img: &SourceImage,
        link: bool,
        progress: &Progress,
    ) -> Result<Vec<crate::layer::Layer>, AdoptError> {
        let cfg = ImageConfig::parse(&img.config)
            .map_err(|e| AdoptError::Engine(EngineError::Invalid(e.to_string())))?;
        let lease = self.lease();
        let layers = match self
            .layers()
            .ingest_chain(&lease, layer_sources(root, &img.layers, link, progress))
        {
            Ok(l) => l,
            Err(first) => {
                let mut found = None;
                for k in 0..img.layers.len() {
                    let sources = layer_sources(root, &img.layers[..=k], link, progress);
                    if let Err(e) = self.layers().ingest_chain(&lease, sources) {
                        found = Some((k, e));
                        break;
                    }
                }
                return Err(match found {
                    Some((k, e)) => match layer_fault(e) {
                        Ok(why) => AdoptError::Layer(k, why),
                        Err(e) => AdoptError::Engine(e.into()),
                    },
                    // Failed once, then every layer verified: not the source's fault.
                    None => AdoptError::Engine(first.into()),
                });
            }
        };
        self.images()
            .add(&lease, &img.config, &cfg, &layers, &img.names, None, "load")
            .map_err(|e| AdoptError::Engine(e.into()))?;
        if let Some(p) = &img.parent {
            self.meta
                .write(|tx| {
                    tx.execute(
                        "INSERT OR REPLACE INTO image_parents (image_id, parent) VALUES (?1, ?2)",
                        rusqlite::params![img.id.to_string(), p.to_string()],
                    )
                    .map_err(EngineError::from)
                })
                .map_err(AdoptError::Engine)?;
        }
        Ok(layers)
    }
}

enum AdoptError {
    /// Layer `k` of the image is refused (the source's data is at fault).
    Layer(usize, String),
    /// strata's own store failed: the migration stops.
    Engine(EngineError),
}

/// Whether an ingest error is the source's fault (the layer is refused) or the store's.
fn layer_fault(e: LayerError) -> Result<String, LayerError> {
    match e {
        LayerError::DiffIdMismatch { expected, actual } => Ok(format!(
            "the re-created tar hashes to {actual}, not its diffID {expected}"
        )),
        LayerError::Source(s) => Ok(s),
        LayerError::Archive(a) => match a {
            crate::archive::ArchiveError::Io { .. } => Err(LayerError::Archive(a)),
            a => Ok(a.to_string()),
        },
        e => Err(e),
    }
}
