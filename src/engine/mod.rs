//! The operations users name (load, save, import, rmi, fsck…), over one store root.
//!
//! Each `strata` process opens an `Engine` on the root. Opening starts a session (see
//! `lease`): work in flight is held by leases that die with the process. A process that finds
//! the session of a dead one runs the collector (`gc`), which removes what no record or live
//! lease names, while others keep working.

pub mod build;
pub mod commit;
pub mod copy;
pub mod create;
pub mod df;
pub mod fsck;
pub mod gc;
pub mod import;
pub mod load;
pub mod migrate;
pub mod pause;
pub mod pull;
pub mod push;
pub mod remove;
pub mod run;
pub mod save;
pub mod volumes;

use crate::container::{ContainerError, ContainerStore};
use crate::content::{ContentError, ContentStore};
use crate::driver::{self, Driver, DriverError};
use crate::image::{ImageError, ImageStore};
use crate::layer::{LayerError, LayerStore};
use crate::lease::{self, Lease, Session};
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

impl From<crate::image::platform::InvalidPlatform> for EngineError {
    fn from(e: crate::image::platform::InvalidPlatform) -> Self {
        EngineError::Invalid(e.0)
    }
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
    /// This process's temp dir, `tmp/<session token>/`: made on first use, removed on exit,
    /// and by the collector when the process died.
    tmp: PathBuf,
    /// Declared last: dropped after everything that may still write under its name. None on
    /// a read-only store (no writes, so nothing to lease).
    session: Option<Session>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        match fs::remove_dir(&self.tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                let _ = fs::remove_dir_all(&self.tmp);
            }
            _ => {}
        }
    }
}

fn is_read_only(root: &Path) -> bool {
    rustix::fs::statvfs(root)
        .is_ok_and(|v| v.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Keep this much disk in `ROOT/reserve` while space is ample; give it back when the disk is
/// nearly full, so removing things (which first writes a little metadata) still works.
const RESERVE_BYTES: u64 = 4 << 20;

fn manage_reserve(root: &Path) {
    let Ok(vfs) = rustix::fs::statvfs(root) else {
        return;
    };
    let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    let p = root.join("reserve");
    if free < 2 * RESERVE_BYTES {
        let _ = fs::remove_file(&p);
    } else if free > 4 * RESERVE_BYTES && fs::symlink_metadata(&p).is_err() {
        let made = (|| -> io::Result<()> {
            let f = fs::File::create(&p)?;
            rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, RESERVE_BYTES)?;
            Ok(())
        })();
        if made.is_err() {
            let _ = fs::remove_file(&p);
        }
    }
}

/// Every blob a record or a live lease still needs: image configs, manifests, the compressed
/// blobs pulled for layers that exist, and blobs being stored right now.
fn referenced_blobs(conn: &rusqlite::Connection) -> Result<HashSet<String>, EngineError> {
    let mut st = conn.prepare(
        "SELECT id FROM images UNION SELECT manifest FROM images WHERE manifest IS NOT NULL
         UNION SELECT manifest FROM image_manifests
         UNION SELECT blob FROM layer_blobs WHERE diff_id IN (SELECT diff_id FROM layers)
         UNION SELECT key FROM leases WHERE kind = 'blob'",
    )?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Engine {
    /// Open (creating if needed) the store at `root`. `driver` is the user's choice; the first
    /// open records it, and a later open with another driver is refused.
    pub fn open(root: &Path, driver: Option<&str>) -> Result<Engine, EngineError> {
        if is_read_only(root) {
            return Engine::open_read_only(root);
        }
        for d in ["", "tmp", "locks", "layers", "content"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(format!("creating {}", p.display())))?;
        }
        // The session first: from here on, whatever this process creates is covered by it.
        let locks = root.join("locks");
        let session = Session::begin(&locks)
            .map_err(io_err(format!("starting a session in {}", locks.display())))?;
        manage_reserve(root);
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
                driver::usable(root, &chosen)?;
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
        let tmp = root.join("tmp").join(session.token());
        let content = ContentStore::open(&root.join("content"), &tmp)?;
        let engine = Engine {
            root: root.to_path_buf(),
            meta,
            content,
            driver,
            tmp,
            session: Some(session),
        };
        // A process that died mid-operation left its session file behind: collect what it
        // held. Safe while other processes work (their leases protect what they hold).
        let dead = lease::dead_sessions(&locks, Some(engine.session_token()))
            .map_err(io_err("listing sessions"))?;
        if !dead.is_empty() {
            engine.sweep(gc::Sweep::after_crash(dead))?;
        }
        Ok(engine)
    }

    pub fn layers(&self) -> LayerStore<'_> {
        LayerStore::new(&self.root, &self.tmp, &self.meta, self.driver.as_ref())
    }
    pub fn images(&self) -> ImageStore<'_> {
        ImageStore::new(&self.meta, &self.content)
    }
    pub fn containers(&self) -> ContainerStore<'_> {
        ContainerStore::new(&self.meta, self.driver.as_ref())
            .with_root(&self.root)
            .with_session(self.session_token())
    }
    /// A new lease for one operation (see `lease`): hold what it creates or reuses until the
    /// records naming them are committed.
    pub fn lease(&self) -> Lease<'_> {
        Lease::new(&self.meta, self.session_token())
    }
    pub fn session_token(&self) -> &str {
        self.session.as_ref().map(Session::token).unwrap_or("")
    }
    pub fn read_only(&self) -> bool {
        self.session.is_none()
    }

    /// A store on a read-only filesystem (a backup, a read-only mount of a live root): reads
    /// work — images, inspect, history, save, fsck — and every write fails on the database.
    fn open_read_only(root: &Path) -> Result<Engine, EngineError> {
        let meta = Meta::open_read_only(&root.join("meta.db"))?;
        let name = meta.setting("driver")?.ok_or_else(|| {
            EngineError::Invalid(format!(
                "{} is read-only and holds no strata store",
                root.display()
            ))
        })?;
        let driver = driver::open(root, &name)?;
        let tmp = root.join("tmp").join("read-only");
        let content = ContentStore::open(&root.join("content"), &tmp)?;
        Ok(Engine {
            root: root.to_path_buf(),
            meta,
            content,
            driver,
            tmp,
            session: None,
        })
    }
    /// This process's temp dir (created if needed).
    pub fn tmp_dir(&self) -> Result<PathBuf, EngineError> {
        fs::create_dir_all(&self.tmp)
            .map_err(io_err(format!("creating {}", self.tmp.display())))?;
        Ok(self.tmp.clone())
    }

    /// Delete those of `candidates` no record needs any more (after an image or layers went).
    /// Only the blobs of what this process removed are candidates: a blob another process has
    /// just stored, and not yet recorded, is never among them.
    pub fn remove_blobs_if_unreferenced(&self, candidates: &[String]) -> Result<(), EngineError> {
        // Inside a write transaction: a writer leases a blob (a write) before it stores or
        // reuses it, so the check and the delete cannot interleave with that.
        self.meta.write(|tx| -> Result<(), EngineError> {
            let referenced = referenced_blobs(tx)?;
            for c in candidates {
                if !referenced.contains(c)
                    && let Ok(d) = c.parse()
                {
                    self.content.delete(&d)?;
                }
            }
            Ok(())
        })
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

    /// Delete every layer that no image, container, other layer or lease needs, leaves first.
    /// Returns the chainIDs removed (Docker prints them after `rmi`).
    pub fn collect_layers(&self) -> Result<Vec<String>, EngineError> {
        let layers = self.layers();
        let mut removed = Vec::new();
        loop {
            let mut progress = false;
            for l in layers.unneeded()? {
                if layers.remove_if_unneeded(&l)? {
                    removed.push(l.chain_id.to_string());
                    progress = true;
                }
            }
            if !progress {
                return Ok(removed);
            }
        }
    }
}
