//! The operations users name (load, save, import, rmi, fsck…), over one store root.
//!
//! Each `strata` process opens an `Engine` on the root. Opening holds a shared lock on
//! `locks/store` for the life of the process; the first process to find nobody else holding
//! it takes it exclusively for a moment and removes what interrupted processes left behind
//! (temp files, driver dirs no record names, layers and blobs nothing references).

pub mod commit;
pub mod copy;
pub mod df;
pub mod fsck;
pub mod import;
pub mod load;
pub mod pull;
pub mod push;
pub mod remove;
pub mod run;
pub mod save;

use crate::container::{ContainerError, ContainerStore};
use crate::content::{ContentError, ContentStore};
use crate::driver::{self, Driver, DriverError};
use crate::image::{ImageError, ImageStore};
use crate::layer::{LayerError, LayerStore};
use crate::lock::LockFile;
use crate::meta::{Meta, MetaError};
use rusqlite::params;
use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

impl From<rusqlite::Error> for EngineError {
    fn from(e: rusqlite::Error) -> Self {
        EngineError::Meta(MetaError::Sql(e))
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> EngineError {
    let what = what.into();
    move |source| EngineError::Io { what, source }
}

pub struct Engine {
    pub root: PathBuf,
    pub meta: Meta,
    pub content: ContentStore,
    pub driver: Box<dyn Driver>,
    /// `tmp/.alive-…`: exists while this process has the store open. One left behind means a
    /// process died mid-operation, and only then is the full leftover scan worth its cost.
    alive_marker: Option<PathBuf>,
    _store_lock: LockFile,
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(m) = &self.alive_marker {
            let _ = fs::remove_file(m);
        }
    }
}

fn create_alive_marker(root: &Path) -> Result<PathBuf, EngineError> {
    let p = root.join("tmp").join(format!(
        ".alive-{}-{}",
        std::process::id(),
        crate::atomic_file::random_hex(4)
    ));
    fs::File::create(&p).map_err(io_err(format!("creating {}", p.display())))?;
    Ok(p)
}

impl Engine {
    /// Open (creating if needed) the store at `root`. `driver` is the user's choice; the first
    /// open records it, and a later open with another driver is refused.
    pub fn open(root: &Path, driver: Option<&str>) -> Result<Engine, EngineError> {
        for d in ["", "tmp", "locks", "layers", "content"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(format!("creating {}", p.display())))?;
        }
        let lock_path = root.join("locks/store");
        // Hold the store lock before writing anything: a process cleaning up leftovers (it holds
        // the lock exclusively) must never see our in-flight temp files.
        let (store_lock, alone) =
            match LockFile::try_exclusive(&lock_path).map_err(io_err("locking the store"))? {
                Some(l) => (l, true),
                None => (
                    LockFile::shared(&lock_path).map_err(io_err("locking the store"))?,
                    false,
                ),
            };
        // Alone, anything in tmp/ was left by a process that died (every live one holds the lock).
        let interrupted = alone
            && fs::read_dir(root.join("tmp"))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
        let alive_marker = if alone {
            None
        } else {
            Some(create_alive_marker(root)?)
        };
        let meta = Meta::open(&root.join("meta.db"))?;
        let wanted = driver.map(|d| if d == "overlay2" { "overlay" } else { d });
        let recorded = meta.setting("driver")?;
        let name = match (&recorded, wanted) {
            (Some(r), Some(w)) if r != w => {
                return Err(EngineError::Invalid(format!(
                    "store {} uses storage driver {r:?}; it cannot be opened with {w:?} (use another --root)",
                    root.display()
                )));
            }
            (Some(r), _) => r.clone(),
            (None, w) => {
                let chosen = w
                    .map(str::to_string)
                    .unwrap_or_else(|| driver::default_driver_name(root).to_string());
                // A concurrent first open may have chosen already: insert-if-absent, then read back.
                meta.write(|tx| -> Result<(), EngineError> {
                    tx.execute(
                        "INSERT OR IGNORE INTO settings (key, value) VALUES ('driver', ?1)",
                        params![chosen],
                    )?;
                    Ok(())
                })?;
                let r = meta.setting("driver")?.unwrap_or(chosen);
                if let Some(w) = w
                    && r != w
                {
                    return Err(EngineError::Invalid(format!(
                        "store {} uses storage driver {r:?}",
                        root.display()
                    )));
                }
                r
            }
        };
        let driver = driver::open(root, &name)?;
        let content = ContentStore::open(&root.join("content"), &root.join("tmp"))?;
        let mut engine = Engine {
            root: root.to_path_buf(),
            meta,
            content,
            driver,
            alive_marker,
            _store_lock: store_lock,
        };
        if alone {
            if interrupted {
                engine.remove_leftovers()?;
            }
            engine.alive_marker = Some(create_alive_marker(root)?);
            engine
                ._store_lock
                .downgrade()
                .map_err(io_err("locking the store"))?;
        }
        Ok(engine)
    }

    pub fn layers(&self) -> LayerStore<'_> {
        LayerStore::new(&self.root, &self.meta, self.driver.as_ref())
    }
    pub fn images(&self) -> ImageStore<'_> {
        ImageStore::new(&self.meta, &self.content)
    }
    pub fn containers(&self) -> ContainerStore<'_> {
        ContainerStore::new(&self.meta, self.driver.as_ref()).with_root(&self.root)
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Remove what interrupted processes left. Only called while no other process has the
    /// store open, so everything not named by a committed record is garbage.
    fn remove_leftovers(&self) -> Result<(), EngineError> {
        if let Ok(rd) = fs::read_dir(self.tmp_dir()) {
            for e in rd.flatten() {
                let p = e.path();
                let _ = if p.is_dir() && !p.is_symlink() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
            }
        }
        self.collect_layers()?;
        let mut known: HashSet<String> = HashSet::new();
        for l in self.layers().list()? {
            known.insert(l.cache_id);
        }
        for c in self.containers().list()? {
            known.insert(crate::init_layer::id_for(&c.cache_id));
            known.insert(c.cache_id);
        }
        for id in self.driver.list()? {
            if !known.contains(&id) {
                self.driver.remove(&id)?;
            }
        }
        if let Ok(rd) = fs::read_dir(self.root.join("layers")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let id = name.strip_suffix(".tar-split").unwrap_or(&name);
                if !known.contains(id) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let referenced = self.referenced_blobs()?;
        for d in self.content.list()? {
            if !referenced.contains(&d.to_string()) {
                self.content.delete(&d)?;
            }
        }
        Ok(())
    }

    /// Every blob a record still needs: image configs, manifests, and the compressed blobs
    /// pulled for layers that exist.
    fn referenced_blobs(&self) -> Result<HashSet<String>, EngineError> {
        let mut st = self.meta.conn().prepare(
            "SELECT id FROM images UNION SELECT manifest FROM images WHERE manifest IS NOT NULL
             UNION SELECT manifest FROM image_manifests
             UNION SELECT blob FROM layer_blobs WHERE diff_id IN (SELECT diff_id FROM layers)",
        )?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Delete those of `candidates` no record needs any more (after an image or layers went).
    /// Only the blobs of what this process removed are candidates: a blob another process has
    /// just stored, and not yet recorded, is never among them.
    pub fn remove_blobs_if_unreferenced(&self, candidates: &[String]) -> Result<(), EngineError> {
        let referenced = self.referenced_blobs()?;
        for c in candidates {
            if !referenced.contains(c)
                && let Ok(d) = c.parse()
            {
                self.content.delete(&d)?;
            }
        }
        Ok(())
    }

    /// The blobs an image's records name: its config, its manifests, and the compressed blobs
    /// of its layers (candidates for removal once the image is deleted).
    pub fn blobs_of_image(
        &self,
        id: &crate::digest::Digest,
        diff_ids: &[crate::digest::Digest],
    ) -> Result<Vec<String>, EngineError> {
        let mut out = vec![id.to_string()];
        let conn = self.meta.conn();
        let mut st = conn.prepare(
            "SELECT manifest FROM images WHERE id = ?1 AND manifest IS NOT NULL
             UNION SELECT manifest FROM image_manifests WHERE image_id = ?1",
        )?;
        for r in st.query_map(params![id.to_string()], |r| r.get::<_, String>(0))? {
            out.push(r?);
        }
        let mut st = conn.prepare("SELECT blob FROM layer_blobs WHERE diff_id = ?1")?;
        for d in diff_ids {
            for r in st.query_map(params![d.to_string()], |r| r.get::<_, String>(0))? {
                out.push(r?);
            }
        }
        Ok(out)
    }

    /// Delete every layer that no image, container or other layer needs, leaves first.
    /// Returns the chainIDs removed (Docker prints them after `rmi`).
    pub fn collect_layers(&self) -> Result<Vec<String>, EngineError> {
        let layers = self.layers();
        let _gc = layers.gc_exclusive()?;
        let mut removed = Vec::new();
        loop {
            let mut st = self.meta.conn().prepare(
                "SELECT chain_id FROM layers l
                 WHERE NOT EXISTS (SELECT 1 FROM image_layers il WHERE il.chain_id = l.chain_id)
                   AND NOT EXISTS (SELECT 1 FROM layers c WHERE c.parent = l.chain_id)
                   AND NOT EXISTS (SELECT 1 FROM containers k WHERE k.parent = l.chain_id)",
            )?;
            let ids: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            if ids.is_empty() {
                return Ok(removed);
            }
            for id in ids {
                let d = id
                    .parse()
                    .map_err(|_| EngineError::Invalid(format!("bad chainID {id:?} in metadata")))?;
                if let Some(l) = layers.get(&d)? {
                    layers.remove(&l)?;
                    removed.push(id);
                }
            }
        }
    }
}
