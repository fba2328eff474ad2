//! A Docker data root with the overlay2 graph driver (`/var/lib/docker`):
//!
//! ```text
//! image/overlay2/repositories.json                 {"Repositories":{repo:{ref: image ID}}}
//! image/overlay2/imagedb/content/sha256/<id>        config bytes (sha256 = the image ID)
//! image/overlay2/layerdb/sha256/<chainID>/          diff, cache-id, size, tar-split.json.gz
//! overlay2/<cache-id>/diff/                         the unpacked layer
//! ```

use super::source::{SourceImage, SourceLayer, SourceRoot, SourceStore, checked_id};
use crate::digest::{Digest, chain_ids};
use crate::image::{ImageConfig, Reference};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Repositories {
    #[serde(rename = "Repositories", default)]
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

const IMAGE_DIR: &str = "image/overlay2";

pub fn read(root: &SourceRoot) -> Result<SourceStore, String> {
    let imagedb = Path::new(IMAGE_DIR).join("imagedb/content/sha256");
    if !root.exists(&imagedb) {
        return Err(format!(
            "{} is not a Docker data root with the overlay2 storage driver (no {})",
            root.path.display(),
            imagedb.display()
        ));
    }
    let mut store = SourceStore::default();
    let mut names: HashMap<String, Vec<Reference>> = HashMap::new();
    let repos_path = Path::new(IMAGE_DIR).join("repositories.json");
    if root.exists(&repos_path) {
        let raw = root.read(&repos_path).map_err(|e| e.to_string())?;
        let repos: Repositories = serde_json::from_slice(&raw)
            .map_err(|e| format!("{}: {e}", root.path.join(&repos_path).display()))?;
        for refs in repos.repositories.values() {
            for (name, id) in refs {
                match Reference::parse(name) {
                    Ok(r) => names.entry(id.clone()).or_default().push(r),
                    Err(e) => store
                        .problems
                        .push(format!("name {name:?} in repositories.json: {e}")),
                }
            }
        }
    }
    let ids = root.list(&imagedb).map_err(|e| e.to_string())?;
    for hex in ids {
        match read_image(root, &imagedb, &hex) {
            Ok(mut img) => {
                img.names = names.remove(&img.id.to_string()).unwrap_or_default();
                store.images.push(img);
            }
            Err(e) => store.problems.push(format!("image {hex:.12}: {e}")),
        }
    }
    for (id, _) in names {
        store.problems.push(format!(
            "repositories.json names image {id}, which is not in the store"
        ));
    }
    Ok(store)
}

fn read_image(root: &SourceRoot, imagedb: &Path, hex: &str) -> Result<SourceImage, String> {
    let hex = checked_id("image ID", hex)?;
    let config = root.read(&imagedb.join(&hex)).map_err(|e| e.to_string())?;
    let id = Digest::of(&config);
    if id.hex() != hex {
        return Err(format!("its config hashes to {id}"));
    }
    let cfg = ImageConfig::parse(&config).map_err(|e| e.to_string())?;
    let diff_ids = &cfg.rootfs.diff_ids;
    let mut layers = Vec::new();
    for (chain, diff_id) in chain_ids(diff_ids).into_iter().zip(diff_ids) {
        let dir = Path::new(IMAGE_DIR)
            .join("layerdb/sha256")
            .join(chain.hex());
        let what = format!("layer {}", chain.short());
        let read = |f: &str| {
            root.read_string(&dir.join(f))
                .map_err(|e| format!("{what}: {e}"))
        };
        let recorded = read("diff")?;
        if recorded.trim() != diff_id.to_string() {
            return Err(format!(
                "{what}: layerdb says diffID {}, the config {diff_id}",
                recorded.trim()
            ));
        }
        let cache_id =
            checked_id("cache-id", &read("cache-id")?).map_err(|e| format!("{what}: {e}"))?;
        let size = read("size")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        layers.push(SourceLayer {
            diff_id: diff_id.clone(),
            source_id: chain.hex(),
            split: dir.join("tar-split.json.gz"),
            dir: PathBuf::from("overlay2").join(cache_id).join("diff"),
            size,
        });
    }
    let parent = root
        .read_string(
            &Path::new(IMAGE_DIR)
                .join("imagedb/metadata/sha256")
                .join(&hex)
                .join("parent"),
        )
        .ok()
        .and_then(|p| p.trim().parse().ok());
    Ok(SourceImage {
        id,
        config,
        layers,
        names: Vec::new(),
        parent,
    })
}
