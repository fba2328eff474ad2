//! The JSON documents of image archives: `docker save`'s manifest.json and the OCI image
//! layout's index.json / manifests. Parsing only; reading and writing archives is the engine's.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// One entry of a `docker save` manifest.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DockerArchiveEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl Descriptor {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
    pub fn is_index(&self) -> bool {
        self.media_type == MT_OCI_INDEX || self.media_type == MT_DOCKER_LIST
    }
}

/// Media types a layer descriptor may have: a tar, plain or gzip/zstd compressed, in Docker's
/// and OCI's names (non-distributable and foreign layers included: they are tars too).
/// Anything else in a manifest's `layers` (a config, a text file, an artifact) is not a file
/// system layer, and unpacking it as one would fail later with a confusing tar error, or not
/// at all.
pub const LAYER_MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// Why a manifest's layer descriptors cannot be unpacked, if they cannot: the first one whose
/// media type is not a layer tar.
pub fn check_layer_media_types(layers: &[Descriptor]) -> Result<(), String> {
    match layers
        .iter()
        .find(|l| !LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()))
    {
        Some(l) => Err(format!(
            "layer {} has media type {:?}, which is not a layer tar",
            l.digest, l.media_type
        )),
        None => Ok(()),
    }
}

/// The digest a `docker save` path names, if it names one: `blobs/sha256/<hex>`,
/// `<hex>.json`, `<hex>/layer.tar` (classic layout: the hex there is a v1 ID, not a digest).
pub fn digest_in_blob_path(path: &str) -> Option<Digest> {
    let p = path.trim_start_matches("./");
    if let Some(h) = p.strip_prefix("blobs/sha256/") {
        return Digest::from_hex(h).ok();
    }
    if let Some(h) = p.strip_suffix(".json") {
        return Digest::from_hex(h).ok();
    }
    None
}
