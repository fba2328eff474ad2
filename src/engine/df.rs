//! Disk usage: containers' writable-layer sizes (`ps -s`, `inspect --size`) and the store
//! summary of `system df`, counting every shared read-only layer once: N containers of one
//! image cost the sum of their writable layers plus one image.
//!
//! A writable layer's size is what Docker reports as SizeRw. On overlay it is the upper
//! directory's own files (hardlinks once): a walk of only that directory, which for the usual
//! container holds a handful of entries. The walks of many containers run in parallel. There
//! is no cache: nothing cheaper is exact (a file rewritten in place deep in the upper
//! directory changes no directory timestamp above it), and measured with 100 containers the
//! walks are a small part of the command's time (see BENCHMARKS.md).

use super::{Engine, EngineError};
use crate::archive::WhiteoutFormat;
use crate::container::Container;
use crate::driver::{Driver, DriverError, changes};
use crate::image::ImageRecord;
use std::collections::HashMap;

/// One image's share of the store, as Docker's `system df -v` shows it.
#[derive(Clone, Debug)]
pub struct ImageUsage {
    pub record: ImageRecord,
    /// All its layers (Docker's image Size).
    pub size: u64,
    /// Its layers that other images use too.
    pub shared: u64,
    /// Containers using it.
    pub containers: usize,
}

#[derive(Clone, Debug)]
pub struct ContainerUsage {
    pub container: Container,
    /// SizeRw (0 when it could not be measured; `error` says why).
    pub rw: u64,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct DiskUsage {
    pub images: Vec<ImageUsage>,
    /// Every layer some image uses, each counted once.
    pub layers_size: u64,
    pub containers: Vec<ContainerUsage>,
    /// Bytes of partial downloads (`ingest/*.partial`): image data not yet in any image,
    /// removed by `image prune` / `system prune` (and by age).
    pub partial_downloads: u64,
}

/// SizeRw of writable layer `id` on `parent` (cache-ids).
pub fn rw_size(driver: &dyn Driver, id: &str, parent: Option<&str>) -> Result<u64, DriverError> {
    if driver.whiteout_format() == WhiteoutFormat::Overlay {
        return Ok(driver.usage(id)?.bytes);
    }
    let ch = driver.changes(id, parent)?;
    changes::changes_size(&driver.diff_dir(id), &ch)
}

impl Engine {
    /// SizeRw of each container, measured in parallel (one result per container, in order).
    pub fn container_sizes(&self, cs: &[Container]) -> Vec<Result<u64, EngineError>> {
        let mut parents: HashMap<String, Option<String>> = HashMap::new();
        let mut jobs = Vec::with_capacity(cs.len());
        for c in cs {
            // As `parent_cache_id`, with the image's top layer looked up once per image.
            let init = crate::init_layer::id_for(&c.cache_id);
            let parent = match &c.parent {
                _ if self.driver.exists(&init) => Ok(Some(init)),
                None => Ok(None),
                Some(p) => match parents.get(&p.to_string()) {
                    Some(v) => Ok(v.clone()),
                    None => match self.layers().get(p) {
                        Ok(l) => {
                            let v = l.map(|l| l.cache_id);
                            parents.insert(p.to_string(), v.clone());
                            Ok(v)
                        }
                        Err(e) => Err(EngineError::from(e)),
                    },
                },
            };
            jobs.push((c.cache_id.clone(), parent));
        }
        let driver: &dyn Driver = self.driver.as_ref();
        let n = jobs.len();
        let threads = std::thread::available_parallelism()
            .map(|t| t.get())
            .unwrap_or(2)
            .min(n.max(1));
        let mut out: Vec<Option<Result<u64, EngineError>>> = (0..n).map(|_| None).collect();
        if threads <= 1 || n < 4 {
            for (i, (id, parent)) in jobs.into_iter().enumerate() {
                out[i] = Some(parent.and_then(|p| Ok(rw_size(driver, &id, p.as_deref())?)));
            }
        } else {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let jobs = std::sync::Mutex::new(jobs.into_iter().map(Some).collect::<Vec<_>>());
            let results = std::sync::Mutex::new(Vec::with_capacity(n));
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if i >= n {
                                break;
                            }
                            let job = jobs.lock().unwrap()[i].take().expect("each job once");
                            let (id, parent) = job;
                            let r = parent.and_then(|p| Ok(rw_size(driver, &id, p.as_deref())?));
                            results.lock().unwrap().push((i, r));
                        }
                    });
                }
            });
            for (i, r) in results.into_inner().unwrap() {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.expect("every container measured"))
            .collect()
    }

    /// `system df`: images with their shared and unique sizes, the size of all image layers
    /// (each once), and every container's writable layer.
    pub fn disk_usage(&self) -> Result<DiskUsage, EngineError> {
        let records = self.images().list()?;
        let containers = self.containers().list()?;
        // chainID -> (size, number of images using it); image -> its chainIDs.
        let mut layer_refs: HashMap<String, (u64, usize)> = HashMap::new();
        let mut image_layers: HashMap<String, Vec<String>> = HashMap::new();
        {
            let mut st = self.meta.conn().prepare(
                "SELECT il.image_id, il.chain_id, l.size FROM image_layers il
                 JOIN layers l ON l.chain_id = il.chain_id",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (img, chain, size) = row?;
                let e = layer_refs.entry(chain.clone()).or_insert((size as u64, 0));
                e.1 += 1;
                image_layers.entry(img).or_default().push(chain);
            }
        }
        let layers_size = layer_refs.values().map(|(s, _)| s).sum();
        let mut users: HashMap<String, usize> = HashMap::new();
        for c in &containers {
            *users.entry(c.image_id.to_string()).or_default() += 1;
        }
        let images = records
            .into_iter()
            .map(|record| {
                let id = record.id.to_string();
                let shared = image_layers
                    .get(&id)
                    .map(|chains| {
                        chains
                            .iter()
                            .filter_map(|c| layer_refs.get(c))
                            .filter(|(_, n)| *n > 1)
                            .map(|(s, _)| s)
                            .sum()
                    })
                    .unwrap_or(0);
                ImageUsage {
                    size: record.size,
                    shared,
                    containers: users.get(&id).copied().unwrap_or(0),
                    record,
                }
            })
            .collect();
        let sizes = self.container_sizes(&containers);
        let containers = containers
            .into_iter()
            .zip(sizes)
            .map(|(container, r)| match r {
                Ok(rw) => ContainerUsage {
                    container,
                    rw,
                    error: None,
                },
                Err(e) => ContainerUsage {
                    container,
                    rw: 0,
                    error: Some(e.to_string()),
                },
            })
            .collect();
        let partial_downloads = std::fs::read_dir(self.root.join("ingest"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        Ok(DiskUsage {
            images,
            layers_size,
            containers,
            partial_downloads,
        })
    }
}
