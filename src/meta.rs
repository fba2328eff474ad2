//! The metadata database: layers, images, references and containers, in SQLite (WAL mode).
//!
//! SQLite rather than an embedded KV store that one process holds exclusively (redb, sled):
//! strata is daemonless, and several `strata` processes on one root must all work at once.
//! WAL lets readers run during a write; writers wait on `busy_timeout` instead of failing.
//! Every change that users can observe is one transaction (`BEGIN IMMEDIATE`).

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::time::Duration;

pub use rusqlite::Transaction;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("syncing {0}: {1}")]
    Sync(String, std::io::Error),
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- read-only layers, shared by chainID; parent is the chainID of the layer below.
CREATE TABLE IF NOT EXISTS layers (
  chain_id  TEXT PRIMARY KEY,
  diff_id   TEXT NOT NULL,
  parent    TEXT,
  cache_id  TEXT NOT NULL UNIQUE,
  size      INTEGER NOT NULL,
  tar_size  INTEGER NOT NULL,
  created   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS layers_parent ON layers(parent);
-- images by ID (= config digest); the config bytes live in the content store.
CREATE TABLE IF NOT EXISTS images (
  id         TEXT PRIMARY KEY,
  top_layer  TEXT,
  size       INTEGER NOT NULL,
  created    TEXT NOT NULL,
  added      TEXT NOT NULL,
  manifest   TEXT,
  last_tag   TEXT
);
-- every chainID an image needs, so layer reference counting is one query.
CREATE TABLE IF NOT EXISTS image_layers (
  image_id  TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  chain_id  TEXT NOT NULL,
  PRIMARY KEY (image_id, chain_id)
);
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
-- name is a full normalized reference: docker.io/library/busybox:latest or repo@sha256:…
CREATE TABLE IF NOT EXISTS refs (
  name      TEXT PRIMARY KEY,
  image_id  TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  kind      TEXT NOT NULL  -- 'tag' or 'digest'
);
CREATE INDEX IF NOT EXISTS refs_image ON refs(image_id);
-- registry side (engine::pull/push): the compressed blob each layer (by diffID) was pulled
-- as or pushed as (kept in the content store), the repositories a blob is known to be in
-- (cross-repository mounts), and the original manifests/indexes of an image.
CREATE TABLE IF NOT EXISTS layer_blobs (
  diff_id     TEXT NOT NULL,
  blob        TEXT NOT NULL,
  media_type  TEXT NOT NULL,
  size        INTEGER NOT NULL,
  PRIMARY KEY (diff_id, blob)
);
CREATE TABLE IF NOT EXISTS blob_sources (
  blob        TEXT NOT NULL,
  registry    TEXT NOT NULL,
  repository  TEXT NOT NULL,
  PRIMARY KEY (blob, registry, repository)
);
CREATE TABLE IF NOT EXISTS image_manifests (
  image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  manifest    TEXT NOT NULL,
  media_type  TEXT NOT NULL,
  PRIMARY KEY (image_id, manifest)
);
-- leases (src/lease.rs): what operations in flight hold; void when their session's process died.
CREATE TABLE IF NOT EXISTS leases (
  kind     TEXT NOT NULL,  -- layer, cache, blob, container, volume
  key      TEXT NOT NULL,
  lease    TEXT NOT NULL,
  session  TEXT NOT NULL,
  PRIMARY KEY (kind, key, lease)
);
CREATE INDEX IF NOT EXISTS leases_lease ON leases(lease);
CREATE INDEX IF NOT EXISTS leases_session ON leases(session);
-- build (src/engine/build): the step cache (key -> the step's image), the stat cache of
-- context files (path + stat fields -> sha256), and each built image's parent image (so
-- `images` hides intermediate images, as Docker's).
CREATE TABLE IF NOT EXISTS build_cache (
  key        TEXT PRIMARY KEY,
  image_id   TEXT NOT NULL,
  created    TEXT NOT NULL,
  last_used  TEXT NOT NULL,
  uses       INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS build_cache_image ON build_cache(image_id);
CREATE TABLE IF NOT EXISTS build_files (
  path    TEXT PRIMARY KEY,
  dev     INTEGER NOT NULL,
  ino     INTEGER NOT NULL,
  size    INTEGER NOT NULL,
  mtime   INTEGER NOT NULL,
  ctime   INTEGER NOT NULL,
  digest  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS image_parents (
  image_id  TEXT PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
  parent    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS image_parents_parent ON image_parents(parent);
CREATE TABLE IF NOT EXISTS containers (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  image_id    TEXT NOT NULL,
  image_ref   TEXT NOT NULL,
  cache_id    TEXT NOT NULL UNIQUE,
  parent      TEXT,
  created     TEXT NOT NULL,
  config      TEXT NOT NULL,
  state       TEXT NOT NULL,
  mounts      INTEGER NOT NULL DEFAULT 0
);
-- volumes (src/volume.rs): data under ROOT/volumes/<name>/_data; labels/options are JSON objects.
CREATE TABLE IF NOT EXISTS volumes (
  name       TEXT PRIMARY KEY,
  driver     TEXT NOT NULL,
  created    TEXT NOT NULL,
  labels     TEXT NOT NULL,
  options    TEXT NOT NULL,
  anonymous  INTEGER NOT NULL
);
-- the event log (src/events.rs), written in the transaction of each change it reports.
CREATE TABLE IF NOT EXISTS events (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  time_nano   INTEGER NOT NULL,
  kind        TEXT NOT NULL,
  action      TEXT NOT NULL,
  actor       TEXT NOT NULL,
  attributes  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events(time_nano);
"#;

/// A version number derived from the schema text: editing SCHEMA re-applies it once.
fn schema_version() -> i64 {
    let d = crate::digest::Digest::of(SCHEMA.as_bytes()).hex();
    i64::from_str_radix(&d[..7], 16).expect("hex")
}

/// An open connection to `ROOT/meta.db`. One per process; cheap to open.
pub struct Meta {
    conn: Connection,
}

impl Meta {
    /// Open (creating) the store's database. Two processes opening a fresh store at once
    /// could get SQLITE_BUSY from the open's first statements (the WAL switch, the schema),
    /// which SQLite returns there without calling the busy handler (seen: 1 in 4 of two
    /// concurrent first pulls): that open is tried again, briefly. Every step is idempotent.
    pub fn open(path: &Path) -> Result<Meta, MetaError> {
        let mut tries = 0;
        loop {
            match Meta::open_once(path) {
                Err(MetaError::Sql(rusqlite::Error::SqliteFailure(e, _)))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 100 =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20 + 10 * tries.min(8)));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Meta, MetaError> {
        // SQLite is built without its per-connection directory sync (.cargo/config.toml): the
        // directory entries of a new database and its WAL are synced here, once.
        let wal = path.with_extension("db-wal");
        let fresh = !wal.exists();
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(120))?;
        // journal_mode needs a write lock the first time; busy_timeout covers concurrent openers.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed transaction survives power loss, not only a process crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Every command is a new process with a cold page cache: reading the database through
        // a mapping instead of a pread per page saves a few hundred syscalls per command.
        conn.pragma_update(None, "mmap_size", 256i64 << 20)?;
        // Pages still in the WAL are read with a pread each (the mapping covers only the main
        // file): checkpoint often, so a command finds most pages in the mapped file. A
        // checkpoint of ~100 pages costs the committing process about one fsync.
        conn.pragma_update(None, "wal_autocheckpoint", 100)?;
        // The last process to close would otherwise checkpoint the WAL and delete it (two
        // fsyncs, and a directory fsync when the next process recreates it): every command
        // paid that. Checkpoints still happen as the WAL grows (wal_autocheckpoint).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        let meta = Meta { conn };
        // Apply the schema only when it changed: a write transaction on every start would
        // serialize concurrent commands for nothing.
        let version = schema_version();
        let current: i64 = meta
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if current != version {
            meta.write(|tx| {
                tx.execute_batch(SCHEMA)?;
                tx.pragma_update(None, "user_version", version)?;
                Ok::<_, MetaError>(())
            })?;
        }
        if fresh
            && wal.exists()
            && let Some(dir) = path.parent()
        {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| MetaError::Sync(dir.display().to_string(), e))?;
        }
        Ok(meta)
    }

    /// Open a store on a read-only filesystem: no pragma or schema writes. SQLite reads a WAL
    /// database there as long as its `-wal` and `-shm` files exist (strata never deletes them).
    pub fn open_read_only(path: &Path) -> Result<Meta, MetaError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(120))?;
        Ok(Meta { conn })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Run `f` in one immediate (write-locked) transaction; commit if it returns Ok.
    pub fn write<T, E: From<MetaError>>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(MetaError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(MetaError::from)?;
        Ok(out)
    }

    /// `write` without waiting for the disk: for rows whose loss in a power cut is harmless
    /// (leases: their process is dead then too). The next synced commit flushes them anyway.
    pub fn write_unsynced<T, E: From<MetaError>>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T, E>,
    ) -> Result<T, E> {
        self.conn
            .pragma_update(None, "synchronous", "OFF")
            .map_err(MetaError::from)?;
        let r = self.write(f);
        let _ = self.conn.pragma_update(None, "synchronous", "FULL");
        r
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>, MetaError> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM settings WHERE key=?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?)
    }
}
