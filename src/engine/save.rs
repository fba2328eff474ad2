//! `strata save`: write images as an archive that `docker load`, skopeo and umoci accept.
//!
//! Both formats are an OCI image layout (oci-layout, index.json, blobs/sha256/…) with
//! uncompressed layers; `--format docker` adds docker's manifest.json, as Docker 25+ writes.
//! Each layer tar is re-created byte for byte from the unpacked files and tar-split data, and
//! checked against its diffID while it is written, so the image keeps its ID everywhere.

use super::{Engine, EngineError, io_err};
use crate::digest::Digest;
use crate::image::archive_format::{
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Descriptor, DockerArchiveEntry, Index,
    MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_MANIFEST, Manifest,
};
use crate::image::{ImageConfig, Reference};
use crate::layer::Layer;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFormat {
    Docker,
    Oci,
}

/// A minimal tar writer for the outer archive: entries are written as they are produced, so a
/// layer streams from its files into the archive without a temp copy.
struct OuterTar<W: Write> {
    out: W,
    dirs: HashSet<String>,
}

impl<W: Write> OuterTar<W> {
    fn header(&mut self, path: &str, size: u64, kind: tar::EntryType) -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path)?;
        h.set_size(size);
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.out.write_all(h.as_bytes())
    }

    fn dir(&mut self, path: &str) -> io::Result<()> {
        if self.dirs.insert(path.to_string()) {
            self.header(path, 0, tar::EntryType::Directory)?;
        }
        Ok(())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (512 - size % 512) % 512;
        self.out.write_all(&[0u8; 512][..rem as usize])
    }

    fn file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.header(path, data.len() as u64, tar::EntryType::Regular)?;
        self.out.write_all(data)?;
        self.pad(data.len() as u64)
    }

    fn finish(mut self) -> io::Result<()> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()
    }
}

struct Selected {
    id: Digest,
    config: Vec<u8>,
    layers: Vec<Layer>,
    names: Vec<Reference>,
}

impl Engine {
    pub fn save(
        &self,
        args: &[String],
        format: SaveFormat,
        out: impl Write,
    ) -> Result<(), EngineError> {
        // Resolve everything first: a missing image must fail before a byte is written.
        let images = self.images();
        // Held while the archive is written: an `rmi` meanwhile cannot take the layers away.
        let lease = self.lease();
        let mut selected: Vec<Selected> = Vec::new();
        for a in args {
            let rec = images.resolve(a)?;
            let (config, cfg) = images.config(&rec.id)?;
            let layers = self.layers().acquire_chain(&lease, &cfg.rootfs.diff_ids)?;
            // A name given by the user is saved with it; an ID saves the image unnamed (as Docker).
            let name = Reference::parse_tagged(a)
                .ok()
                .filter(|r| rec.tags.contains(r));
            match selected.iter_mut().find(|s| s.id == rec.id) {
                Some(s) => s.names.extend(name),
                None => selected.push(Selected {
                    id: rec.id,
                    config,
                    layers,
                    names: name.into_iter().collect(),
                }),
            }
        }
        let io = io_err("writing the archive");
        let mut tar = OuterTar {
            out: io::BufWriter::with_capacity(1 << 20, out),
            dirs: HashSet::new(),
        };
        tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(io)?;
        let io = || io_err("writing the archive");
        tar.dir("blobs/").map_err(io())?;
        tar.dir("blobs/sha256/").map_err(io())?;
        let mut written: HashSet<Digest> = HashSet::new();
        let mut index = Index {
            schema_version: 2,
            media_type: Some(MT_OCI_INDEX.into()),
            manifests: vec![],
        };
        let mut docker_manifest: Vec<DockerArchiveEntry> = Vec::new();
        for s in &selected {
            let mut layer_descs = Vec::new();
            for l in &s.layers {
                let path = format!("blobs/sha256/{}", l.diff_id.hex());
                if written.insert(l.diff_id.clone()) {
                    tar.header(&path, l.tar_size, tar::EntryType::Regular)
                        .map_err(io())?;
                    let n = self.layers().files().write_tar(l, &mut tar.out)?;
                    if n != l.tar_size {
                        return Err(EngineError::Invalid(format!(
                            "layer {} re-created {n} bytes, expected {}",
                            l.chain_id, l.tar_size
                        )));
                    }
                    tar.pad(n).map_err(io())?;
                }
                layer_descs.push(Descriptor {
                    media_type: MT_OCI_LAYER.into(),
                    digest: l.diff_id.clone(),
                    size: l.tar_size as i64,
                    annotations: None,
                    platform: None,
                });
            }
            if written.insert(s.id.clone()) {
                tar.file(&format!("blobs/sha256/{}", s.id.hex()), &s.config)
                    .map_err(io())?;
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(MT_OCI_MANIFEST.into()),
                config: Descriptor {
                    media_type: MT_OCI_CONFIG.into(),
                    digest: s.id.clone(),
                    size: s.config.len() as i64,
                    annotations: None,
                    platform: None,
                },
                layers: layer_descs,
            };
            let mbytes = serde_json::to_vec(&manifest).expect("serializable");
            let mdigest = Digest::of(&mbytes);
            if written.insert(mdigest.clone()) {
                tar.file(&format!("blobs/sha256/{}", mdigest.hex()), &mbytes)
                    .map_err(io())?;
            }
            let cfg = ImageConfig::parse(&s.config).map_err(crate::image::ImageError::from)?;
            let platform = Some(crate::image::archive_format::Platform {
                architecture: cfg.architecture.clone(),
                os: cfg.os.clone(),
                variant: cfg.variant.clone(),
            });
            let descriptor = |annotations| Descriptor {
                media_type: MT_OCI_MANIFEST.into(),
                digest: mdigest.clone(),
                size: mbytes.len() as i64,
                annotations,
                platform: platform.clone(),
            };
            if s.names.is_empty() {
                index.manifests.push(descriptor(None));
            }
            for n in &s.names {
                let mut a = BTreeMap::new();
                a.insert(ANNOTATION_CONTAINERD_NAME.to_string(), n.key());
                a.insert(
                    ANNOTATION_REF_NAME.to_string(),
                    n.tag.clone().unwrap_or_else(|| "latest".into()),
                );
                index.manifests.push(descriptor(Some(a)));
            }
            docker_manifest.push(DockerArchiveEntry {
                config: format!("blobs/sha256/{}", s.id.hex()),
                repo_tags: if s.names.is_empty() {
                    None
                } else {
                    Some(s.names.iter().map(|n| n.familiar()).collect())
                },
                layers: s
                    .layers
                    .iter()
                    .map(|l| format!("blobs/sha256/{}", l.diff_id.hex()))
                    .collect(),
            });
        }
        tar.file(
            "index.json",
            &serde_json::to_vec(&index).expect("serializable"),
        )
        .map_err(io())?;
        if format == SaveFormat::Docker {
            tar.file(
                "manifest.json",
                &serde_json::to_vec(&docker_manifest).expect("serializable"),
            )
            .map_err(io())?;
        }
        tar.finish().map_err(io())
    }
}
