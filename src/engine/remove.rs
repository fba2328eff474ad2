//! `strata rmi` and `strata image prune`, with Docker's rules: removing a name only untags
//! while other names remain; removing the last name or the ID deletes the image, unless a
//! container uses it: then `-f` is needed, and even with it the image is only untagged (it
//! stays, as `<none>`, until no container uses it; `image prune` then takes it). Layers go
//! when nothing needs them any more; layers shared with other images stay.

use super::{Engine, EngineError};
use crate::image::{ImageRecord, Reference};

/// What `rmi` did, in Docker's words: `Untagged: …` and `Deleted: sha256:…` lines.
#[derive(Default)]
pub struct Removal {
    pub lines: Vec<String>,
}

impl Engine {
    pub fn remove_image(&self, arg: &str, force: bool) -> Result<Removal, EngineError> {
        let images = self.images();
        let rec = images.resolve(arg)?;
        let mut out = Removal::default();
        let by_name = Reference::parse_tagged(arg)
            .ok()
            .filter(|r| rec.tags.contains(r) || rec.digests.contains(r));
        let users = self.containers().using_image(&rec.id)?;
        if let Some(r) = by_name {
            // The names this removes: the one given and, when it was the repository's last
            // tag, that repository's digest references too (as Docker does).
            let mut going = vec![r.clone()];
            if r.digest.is_none()
                && !rec
                    .tags
                    .iter()
                    .any(|t| *t != r && t.repository() == r.repository())
            {
                going.extend(
                    rec.digests
                        .iter()
                        .filter(|d| d.repository() == r.repository())
                        .cloned(),
                );
            }
            let remaining = rec.tags.len() + rec.digests.len() - going.len();
            if remaining == 0
                && let Some(c) = users.first()
                && !force
            {
                return Err(EngineError::Conflict(format!(
                    "unable to remove repository reference \"{arg}\" (must force) - container {} is using its referenced image {}",
                    &c.id[..12],
                    rec.id.short()
                )));
            }
            for n in &going {
                images.untag(n)?;
                out.lines.push(format!("Untagged: {}", n.familiar()));
            }
            if remaining > 0 {
                return Ok(out);
            }
            let rec = images.get(&rec.id)?.unwrap_or(rec);
            if users.is_empty() {
                self.delete_image(&rec, &mut out)?;
            }
            return Ok(out);
        } else {
            let repos: std::collections::HashSet<String> =
                rec.tags.iter().map(|t| t.repository()).collect();
            if repos.len() > 1 && !force {
                return Err(EngineError::Conflict(format!(
                    "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    rec.id.short()
                )));
            }
            if let Some(c) = users.first()
                && !force
            {
                return Err(EngineError::Conflict(format!(
                    "unable to delete {} (must be forced) - image is being used by stopped container {}",
                    rec.id.short(),
                    &c.id[..12]
                )));
            }
            if !users.is_empty() {
                // Forced, but containers need it: untag only (Docker).
                for t in rec.tags.iter().chain(&rec.digests) {
                    images.untag(t)?;
                    out.lines.push(format!("Untagged: {}", t.familiar()));
                }
                return Ok(out);
            }
        }
        self.delete_image(&rec, &mut out)?;
        Ok(out)
    }

    /// Untag everything and delete the record and unneeded layers. Containers keep their
    /// layers: the layer store only drops what nothing references.
    fn delete_image(&self, rec: &ImageRecord, out: &mut Removal) -> Result<(), EngineError> {
        let images = self.images();
        // What the image's records name, read before they go: freed below if nothing else needs it.
        let diff_ids = images
            .config(&rec.id)
            .map(|(_, c)| c.rootfs.diff_ids)
            .unwrap_or_default();
        let blobs = self.blobs_of_image(&rec.id, &diff_ids)?;
        for t in rec.tags.iter().chain(&rec.digests) {
            images.untag(t)?;
            out.lines.push(format!("Untagged: {}", t.familiar()));
        }
        if !images.delete_if_unused(&rec.id)? {
            return Ok(()); // a container was created on it meanwhile: it stays, untagged
        }
        out.lines.push(format!("Deleted: {}", rec.id));
        for chain in self.collect_layers()? {
            out.lines.push(format!("Deleted: {chain}"));
        }
        // Blobs last (the config among them): until the records are gone they must stay readable.
        self.remove_blobs_if_unreferenced(&blobs)
    }

    /// Remove dangling images (no names), or with `all` every image no container uses.
    /// Returns the deleted IDs and the bytes of layers freed.
    pub fn prune_images(&self, all: bool) -> Result<(Vec<String>, u64), EngineError> {
        self.prune_images_matching(all, &|_| true)
    }

    /// `prune_images` limited to the images `wanted` accepts (`image prune --filter`).
    pub fn prune_images_matching(
        &self,
        all: bool,
        wanted: &dyn Fn(&crate::image::ImageRecord) -> bool,
    ) -> Result<(Vec<String>, u64), EngineError> {
        let before: u64 = self.layers().list()?.iter().map(|l| l.size).sum();
        let mut lines = Vec::new();
        let used: std::collections::HashSet<_> = self
            .containers()
            .list()?
            .into_iter()
            .map(|c| c.image_id)
            .collect();
        // An image whose config a live lease holds is being built (a build's step images):
        // left alone. Dangling means untagged and nobody's parent (a build's intermediate
        // images stay while the image built on them does, as Docker's); removing a dangling
        // image can make its untagged parent dangling, so repeat until nothing changes.
        let held: std::collections::HashSet<String> = {
            let conn = self.meta.conn();
            let mut st = conn.prepare("SELECT key FROM leases WHERE kind = 'blob'")?;
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?
        };
        loop {
            let parents = self.images().parents()?;
            let mut progress = false;
            for rec in self.images().list()? {
                let id = rec.id.to_string();
                let dangling =
                    rec.tags.is_empty() && rec.digests.is_empty() && !parents.contains(&id);
                if (dangling || all)
                    && !used.contains(&rec.id)
                    && !held.contains(&id)
                    && wanted(&rec)
                {
                    let mut r = Removal::default();
                    self.delete_image(&rec, &mut r)?;
                    progress = true;
                    lines.extend(r.lines.into_iter().map(|l| {
                        l.replacen("Untagged: ", "untagged: ", 1).replacen(
                            "Deleted: ",
                            "deleted: ",
                            1,
                        )
                    }));
                }
            }
            if !progress || all {
                break;
            }
        }
        // Then whatever no record names (layers of images deleted before, partial downloads
        // no pull is resuming, leftovers of killed processes).
        let swept: u64 = self
            .sweep(super::gc::Sweep::repair(true))?
            .iter()
            .map(|l| l.bytes)
            .sum();
        let after: u64 = self.layers().list()?.iter().map(|l| l.size).sum();
        Ok((lines, before.saturating_sub(after).max(swept)))
    }
}
