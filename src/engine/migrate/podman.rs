//! A containers/storage graph root with the overlay driver (Podman, Buildah, CRI-O;
//! `/var/lib/containers/storage`):
//!
//! ```text
//! overlay-images/images.json          [{id, names, digest, digests, layer (top layer ID)}]
//! overlay-images/<id>/=<base64(key)>  "big data" by key; the config's key is "sha256:<id>"
//! overlay-layers/layers.json          [{id, parent, diff-digest, diff-size}]
//! overlay-layers/<id>.tar-split.gz    tar-split data
//! overlay/<id>/diff/                  the unpacked layer
//! ```

use super::source::{SourceImage, SourceLayer, SourceRoot, SourceStore, checked_id};
use crate::digest::Digest;
use crate::image::{ImageConfig, Reference};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct ImageEntry {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    digests: Vec<String>,
    #[serde(default)]
    layer: Option<String>,
}

#[derive(Deserialize)]
struct LayerEntry {
    id: String,
    #[serde(default)]
    parent: Option<String>,
    #[serde(rename = "diff-digest", default)]
    diff_digest: Option<String>,
    #[serde(rename = "diff-size", default)]
    diff_size: Option<u64>,
}

/// The file name containers/storage gives a big-data item: the key itself when it is made of
/// `[0-9a-z.]` only, else `=` and its base64.
fn big_data_name(key: &str) -> String {
    if key
        .bytes()
        .all(|c| c == b'.' || c.is_ascii_digit() || c.is_ascii_lowercase())
    {
        key.to_string()
    } else {
        format!("={}", base64::engine::general_purpose::STANDARD.encode(key))
    }
}

pub fn read(root: &SourceRoot) -> Result<SourceStore, String> {
    let images_json = Path::new("overlay-images/images.json");
    if !root.exists(images_json) {
        return Err(format!(
            "{} is not a containers/storage graph root with the overlay driver (no {})",
            root.path.display(),
            images_json.display()
        ));
    }
    let parse = |p: &Path| -> Result<Vec<u8>, String> { root.read(p).map_err(|e| e.to_string()) };
    let images: Vec<ImageEntry> = serde_json::from_slice(&parse(images_json)?)
        .map_err(|e| format!("{}: {e}", root.path.join(images_json).display()))?;
    let layers_json = Path::new("overlay-layers/layers.json");
    let layers: Vec<LayerEntry> = if root.exists(layers_json) {
        serde_json::from_slice(&parse(layers_json)?)
            .map_err(|e| format!("{}: {e}", root.path.join(layers_json).display()))?
    } else {
        Vec::new()
    };
    let layers: HashMap<String, LayerEntry> =
        layers.into_iter().map(|l| (l.id.clone(), l)).collect();
    let mut store = SourceStore::default();
    for img in &images {
        match read_image(root, img, &layers) {
            Ok(i) => store.images.push(i),
            Err(e) => store.problems.push(format!("image {:.12}: {e}", img.id)),
        }
    }
    Ok(store)
}

fn read_image(
    root: &SourceRoot,
    img: &ImageEntry,
    layers: &HashMap<String, LayerEntry>,
) -> Result<SourceImage, String> {
    let hex = checked_id("image ID", &img.id)?;
    let config_path = Path::new("overlay-images")
        .join(&hex)
        .join(big_data_name(&format!("sha256:{hex}")));
    let config = root.read(&config_path).map_err(|e| e.to_string())?;
    let id = Digest::of(&config);
    if id.hex() != hex {
        return Err(format!("its config hashes to {id}"));
    }
    let cfg = ImageConfig::parse(&config).map_err(|e| e.to_string())?;
    // The layer chain, top first, by parent links (bounded: a crafted cycle ends here).
    let mut chain = Vec::new();
    let mut next = img.layer.clone();
    while let Some(l) = next {
        if chain.len() > cfg.rootfs.diff_ids.len() {
            return Err("its layer chain is longer than its config's diffIDs".into());
        }
        let l = checked_id("layer ID", &l)?;
        let entry = layers
            .get(&l)
            .ok_or_else(|| format!("layer {l:.12} is not in layers.json"))?;
        next = entry.parent.clone().filter(|p| !p.is_empty());
        chain.push((l, entry));
    }
    chain.reverse();
    if chain.len() != cfg.rootfs.diff_ids.len() {
        return Err(format!(
            "it has {} layers but its config lists {} diffIDs",
            chain.len(),
            cfg.rootfs.diff_ids.len()
        ));
    }
    let mut out = Vec::new();
    for ((l, entry), diff_id) in chain.into_iter().zip(&cfg.rootfs.diff_ids) {
        if let Some(d) = &entry.diff_digest
            && d != &diff_id.to_string()
        {
            return Err(format!(
                "layer {l:.12}: layers.json says diffID {d}, the config {diff_id}"
            ));
        }
        out.push(SourceLayer {
            diff_id: diff_id.clone(),
            split: PathBuf::from("overlay-layers").join(format!("{l}.tar-split.gz")),
            dir: PathBuf::from("overlay").join(&l).join("diff"),
            size: entry.diff_size.unwrap_or(0),
            source_id: l,
        });
    }
    // Podman's RepoDigests: every repository the image is named in, at every manifest digest.
    let mut digests: Vec<Digest> = img
        .digests
        .iter()
        .chain(img.digest.as_ref())
        .filter_map(|d| d.parse().ok())
        .collect();
    digests.dedup();
    let mut names: Vec<Reference> = Vec::new();
    for n in &img.names {
        let Ok(r) = Reference::parse(n) else { continue };
        for d in &digests {
            let mut by_digest = r.clone();
            by_digest.tag = None;
            by_digest.digest = Some(d.clone());
            if !names.iter().any(|x| x.key() == by_digest.key()) {
                names.push(by_digest);
            }
        }
        if r.tag.is_some() || r.digest.is_some() {
            names.push(r);
        }
    }
    Ok(SourceImage {
        id,
        config,
        layers: out,
        names,
        parent: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_data_names_as_containers_storage_writes_them() {
        assert_eq!(big_data_name("manifest"), "manifest");
        assert_eq!(
            big_data_name(
                "sha256:2fe08e565efed45b0dc51b49246d97550b557e97b2dd33f3f38e3a09b82e55ef"
            ),
            "=c2hhMjU2OjJmZTA4ZTU2NWVmZWQ0NWIwZGM1MWI0OTI0NmQ5NzU1MGI1NTdlOTdiMmRkMzNmM2YzOGUzYTA5YjgyZTU1ZWY="
        );
    }
}
