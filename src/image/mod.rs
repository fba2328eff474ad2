//! Images: records of image IDs (config digests), their layer chains and their names.
//! Archive formats (docker save / OCI layout) live in `image::archive_format`.

pub mod archive_format;
pub mod change;
pub mod config;
pub mod platform;
pub mod reference;

use crate::content::{ContentError, ContentStore};
use crate::digest::Digest;
use crate::layer::Layer;
use crate::meta::{Meta, MetaError};
pub use config::ImageConfig;
pub use reference::Reference;
use rusqlite::{OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    #[error("image ID prefix {0:?} is ambiguous")]
    Ambiguous(String),
}

impl From<rusqlite::Error> for ImageError {
    fn from(e: rusqlite::Error) -> Self {
        ImageError::Meta(MetaError::Sql(e))
    }
}

#[derive(Clone, Debug)]
pub struct ImageRecord {
    pub id: Digest,
    pub top_layer: Option<Digest>,
    /// Sum of the sizes of the image's layers.
    pub size: u64,
    /// From the config's `created`.
    pub created: String,
    pub last_tag: Option<String>,
    pub tags: Vec<Reference>,
    pub digests: Vec<Reference>,
}

pub struct ImageStore<'a> {
    pub meta: &'a Meta,
    pub content: &'a ContentStore,
}

impl<'a> ImageStore<'a> {
    pub fn new(meta: &'a Meta, content: &'a ContentStore) -> Self {
        ImageStore { meta, content }
    }

    /// Record an image whose layers are all in the layer store, and point `names` at it
    /// (tags move from any image that had them, as `docker load` and `docker tag` do).
    /// `lease` holds the config blob from before it is stored until the record names it.
    pub fn add(
        &self,
        lease: &crate::lease::Lease,
        config_bytes: &[u8],
        config: &ImageConfig,
        layers: &[Layer],
        names: &[Reference],
        manifest: Option<&Digest>,
    ) -> Result<Digest, ImageError> {
        crate::failpoint::pause("image-add");
        lease.hold(
            crate::lease::Held::Blob,
            &crate::digest::Digest::of(config_bytes).to_string(),
        )?;
        let id = self.content.put(config_bytes, None)?;
        let size: u64 = layers.iter().map(|l| l.size).sum();
        let now = chrono::Utc::now().to_rfc3339();
        self.meta.write(|tx| -> Result<(), ImageError> {
            tx.execute(
                "INSERT OR IGNORE INTO images (id, top_layer, size, created, added, manifest) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id.to_string(),
                    layers.last().map(|l| l.chain_id.to_string()),
                    size as i64,
                    config.created.clone().unwrap_or_default(),
                    now,
                    manifest.map(|m| m.to_string())
                ],
            )?;
            for l in layers {
                tx.execute(
                    "INSERT OR IGNORE INTO image_layers (image_id, chain_id) VALUES (?1, ?2)",
                    params![id.to_string(), l.chain_id.to_string()],
                )?;
            }
            for n in names {
                set_ref(tx, n, &id)?;
            }
            Ok(())
        })?;
        Ok(id)
    }

    /// IDs of images some built image names as its parent (table `image_parents`): untagged,
    /// they are intermediate images, which `images` lists only with `-a`, as Docker's.
    pub fn parents(&self) -> Result<std::collections::HashSet<String>, ImageError> {
        let mut st = self
            .meta
            .conn()
            .prepare("SELECT DISTINCT parent FROM image_parents")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The image a built image was made from (`image_parents`), if recorded.
    pub fn parent_of(&self, id: &Digest) -> Result<Option<Digest>, ImageError> {
        let p: Option<String> = self
            .meta
            .conn()
            .query_row(
                "SELECT parent FROM image_parents WHERE image_id=?1",
                params![id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(p.and_then(|p| p.parse().ok()))
    }

    pub fn get(&self, id: &Digest) -> Result<Option<ImageRecord>, ImageError> {
        let row = self
            .meta
            .conn()
            .query_row(
                "SELECT id, top_layer, size, created, last_tag FROM images WHERE id=?1",
                params![id.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(self.record(r)?)),
        }
    }

    fn record(
        &self,
        r: (String, Option<String>, i64, String, Option<String>),
    ) -> Result<ImageRecord, ImageError> {
        let id: Digest = r.0.parse().map_err(|_| ImageError::NotFound(r.0.clone()))?;
        let mut tags = Vec::new();
        let mut digests = Vec::new();
        let mut st = self
            .meta
            .conn()
            .prepare_cached("SELECT name, kind FROM refs WHERE image_id=?1 ORDER BY name")?;
        for row in st.query_map(params![id.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })? {
            let (name, kind) = row?;
            if let Ok(rf) = Reference::parse(&name) {
                if kind == "digest" {
                    digests.push(rf)
                } else {
                    tags.push(rf)
                }
            }
        }
        Ok(ImageRecord {
            id,
            top_layer: r.1.and_then(|s| s.parse().ok()),
            size: r.2 as u64,
            created: r.3,
            last_tag: r.4,
            tags,
            digests,
        })
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let mut st = self
            .meta
            .conn()
            .prepare("SELECT id, top_layer, size, created, last_tag FROM images")?;
        let rows: Vec<_> = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get::<_, i64>(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter().map(|r| self.record(r)).collect()
    }

    /// Find an image the way Docker does: a full or short ID, else a name (default tag `latest`).
    pub fn resolve(&self, s: &str) -> Result<ImageRecord, ImageError> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        let looks_like_id = !hex.is_empty()
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        if looks_like_id && (hex.len() == 64 || s.starts_with("sha256:")) {
            return self
                .by_id_prefix(hex)?
                .ok_or_else(|| ImageError::NotFound(s.to_string()));
        }
        if let Ok(r) = Reference::parse_tagged(s)
            && let Some(id) = self.lookup_ref(&r)?
        {
            return self
                .get(&id)?
                .ok_or_else(|| ImageError::NotFound(s.to_string()));
        }
        if looks_like_id && let Some(rec) = self.by_id_prefix(hex)? {
            return Ok(rec);
        }
        Err(ImageError::NotFound(s.to_string()))
    }

    fn by_id_prefix(&self, hex: &str) -> Result<Option<ImageRecord>, ImageError> {
        let mut st = self
            .meta
            .conn()
            .prepare("SELECT id FROM images WHERE id >= ?1 AND id < ?2 LIMIT 2")?;
        let lo = format!("sha256:{hex}");
        let hi = format!("sha256:{hex}g");
        let ids: Vec<String> = st
            .query_map(params![lo, hi], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        match ids.len() {
            0 => Ok(None),
            1 => self.get(
                &ids[0]
                    .parse()
                    .map_err(|_| ImageError::NotFound(hex.to_string()))?,
            ),
            _ => Err(ImageError::Ambiguous(hex.to_string())),
        }
    }

    pub fn lookup_ref(&self, r: &Reference) -> Result<Option<Digest>, ImageError> {
        let id: Option<String> = self
            .meta
            .conn()
            .query_row(
                "SELECT image_id FROM refs WHERE name=?1",
                params![r.key()],
                |row| row.get(0),
            )
            .optional()?;
        Ok(id.and_then(|s| s.parse().ok()))
    }

    pub fn config(&self, id: &Digest) -> Result<(Vec<u8>, ImageConfig), ImageError> {
        let bytes = self.content.get(id)?;
        let cfg = ImageConfig::parse(&bytes)?;
        Ok((bytes, cfg))
    }

    pub fn tag(&self, id: &Digest, r: &Reference) -> Result<(), ImageError> {
        self.meta.write(|tx| set_ref(tx, r, id))
    }

    /// Remove one name. Returns false if it did not exist.
    pub fn untag(&self, r: &Reference) -> Result<bool, ImageError> {
        self.meta
            .write(|tx| Ok(tx.execute("DELETE FROM refs WHERE name=?1", params![r.key()])? > 0))
    }

    /// Delete the image record with its names; its layers are collected separately.
    /// Delete the record unless a container uses the image: checked in the same transaction,
    /// so a container created a moment ago keeps its image (Docker keeps such an image,
    /// untagged, until no container uses it). True when deleted.
    pub fn delete_if_unused(&self, id: &Digest) -> Result<bool, ImageError> {
        self.meta.write(|tx| -> Result<bool, ImageError> {
            Ok(tx.execute(
                "DELETE FROM images WHERE id=?1
                 AND NOT EXISTS (SELECT 1 FROM containers WHERE image_id=?1)",
                params![id.to_string()],
            )? > 0)
        })
    }
}

fn set_ref(tx: &rusqlite::Transaction, r: &Reference, id: &Digest) -> Result<(), ImageError> {
    let kind = if r.digest.is_some() { "digest" } else { "tag" };
    tx.execute(
        "INSERT OR REPLACE INTO refs (name, image_id, kind) VALUES (?1, ?2, ?3)",
        params![r.key(), id.to_string(), kind],
    )?;
    if kind == "tag" {
        tx.execute(
            "UPDATE images SET last_tag=?2 WHERE id=?1",
            params![id.to_string(), chrono::Utc::now().to_rfc3339()],
        )?;
    }
    Ok(())
}
