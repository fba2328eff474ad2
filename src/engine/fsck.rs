//! `strata system fsck`: prove the store against its content addresses. Every blob is
//! re-hashed against its digest, every read-only layer's unpacked files are re-assembled into
//! the layer tar and hashed against its diffID, and every record is checked to name things
//! that exist. Hashing runs on all cores.

use super::{Engine, EngineError};
use crate::digest::Digest;
use crate::worker_pool;
use std::collections::HashSet;

pub struct FsckReport {
    pub problems: Vec<String>,
    /// Found, but not faults (fresh partial downloads).
    pub notes: Vec<String>,
    pub blobs: usize,
    pub layers: usize,
    pub images: usize,
    pub bytes_hashed: u64,
}

enum Task {
    Blob(Digest),
    Layer(crate::layer::Layer),
}

impl Engine {
    pub fn fsck(&self) -> Result<FsckReport, EngineError> {
        let mut problems = Vec::new();
        let layers = self.layers();
        let all_layers = layers.list()?;
        let blobs = self.content.list()?;
        let layer_ids: HashSet<Digest> = all_layers.iter().map(|l| l.chain_id.clone()).collect();

        // Records point at things that exist.
        let images = self.images().list()?;
        for img in &images {
            if !self.content.contains(&img.id) {
                problems.push(format!("image {}: config blob missing", img.id));
                continue;
            }
            match self.images().config(&img.id) {
                Ok((_, cfg)) => {
                    for c in crate::digest::chain_ids(&cfg.rootfs.diff_ids) {
                        if !layer_ids.contains(&c) {
                            problems.push(format!("image {}: layer {c} missing", img.id));
                        }
                    }
                }
                Err(e) => problems.push(format!("image {}: {e}", img.id)),
            }
        }
        for l in &all_layers {
            if let Some(p) = &l.parent
                && !layer_ids.contains(p)
            {
                problems.push(format!("layer {}: parent {p} missing", l.chain_id));
            }
            if !self.driver.exists(&l.cache_id) {
                problems.push(format!(
                    "layer {}: driver directory {} missing",
                    l.chain_id, l.cache_id
                ));
            }
        }
        for c in self.containers().list()? {
            if !self.driver.exists(&c.cache_id) {
                problems.push(format!("container {}: writable layer missing", c.name));
            }
            if let Some(p) = &c.parent
                && !layer_ids.contains(p)
            {
                problems.push(format!("container {}: image layer {p} missing", c.name));
            }
        }

        // Everything no record or live lease names is a problem too (`--repair` removes it).
        let mut notes = Vec::new();
        for l in self.sweep(super::gc::Sweep::report())? {
            let line = format!("leftover: {} ({} bytes)", l.what, l.bytes);
            if l.resumable {
                notes.push(line + "; a pull of it resumes there, `system prune` removes it");
            } else {
                problems.push(line);
            }
        }

        // Content: re-hash everything, largest work first, on every core.
        let mut tasks: Vec<Task> = blobs.iter().cloned().map(Task::Blob).collect();
        let mut sorted = all_layers.clone();
        sorted.sort_by_key(|l| std::cmp::Reverse(l.tar_size));
        tasks.extend(sorted.into_iter().map(Task::Layer));
        let files = layers.files();
        let content = &self.content;
        let mut hashed = 0u64;
        let results = worker_pool::run_bounded(
            tasks,
            worker_pool::cpus(),
            worker_pool::OnError::Continue,
            |t| match &t {
                Task::Blob(d) => content.verify(d).map_err(|e| format!("blob {d}: {e}")),
                Task::Layer(l) => files
                    .verify(l)
                    .map_err(|e| format!("layer {}: {e}", l.chain_id)),
            },
        );
        for (_, r) in results {
            match r {
                Ok(n) => hashed += n,
                Err(e) => problems.push(e),
            }
        }
        Ok(FsckReport {
            problems,
            notes,
            blobs: blobs.len(),
            layers: all_layers.len(),
            images: images.len(),
            bytes_hashed: hashed,
        })
    }
}
