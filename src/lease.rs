//! Sessions and leases: what work in flight holds, so garbage collection leaves it alone.
//!
//! containerd's answer to "a delete ran while a pull was between its layers and its image
//! record" is the lease: content and snapshots in flight belong to a lease, and the collector
//! never removes what a lease or a record holds. strata is daemonless, so a lease must also
//! expire when the process that took it dies, without anyone telling the store. That is the
//! session: every process that opens the store holds an exclusive flock on its own file
//! `locks/sessions/<token>` for its whole life. The kernel drops the flock when the process
//! dies, however it dies, so "its lock can be taken" means "its owner is gone", and its leases
//! (rows tagged with its token) are void.
//!
//! A lease row is written *before* the thing it protects is created or reused, and in the same
//! transaction as the check that a reused thing still exists. The collector deletes a record
//! only in a transaction that checks no lease names it, and lists files *before* reading which
//! ones are named. Together that makes every interleaving safe: SQLite's single writer orders
//! the lease and the delete, and a file created after the listing is not in it.

use crate::atomic_file::random_hex;
use crate::lock::LockFile;
use crate::meta::{Meta, MetaError};
use rusqlite::params;
use std::cell::Cell;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What a lease row protects; `key` is the thing's own name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// A read-only layer by chainID (a parent being built on, or a layer not yet in an image).
    Layer,
    /// A driver directory and tar-split by cache-id, before any record names it.
    CacheDir,
    /// A content-store blob by digest, before any record names it.
    Blob,
    /// A container by ID: its removal is under way, or its root filesystem is mounted by the
    /// holder (cp, export, commit).
    Container,
    /// A volume by name: being created, or about to be named by a container record.
    Volume,
}

impl Held {
    pub fn as_str(self) -> &'static str {
        match self {
            Held::Layer => "layer",
            Held::CacheDir => "cache",
            Held::Blob => "blob",
            Held::Container => "container",
            Held::Volume => "volume",
        }
    }
}

/// This process's claim to be alive (see the module doc). Dropping it ends the session: its
/// lease rows are deleted by their `Lease`s; the lock file goes here.
pub struct Session {
    token: String,
    path: PathBuf,
    _lock: LockFile,
}

fn sessions_dir(locks: &Path) -> PathBuf {
    locks.join("sessions")
}

impl Session {
    /// Start a session: lock a file under a temporary name, then rename it into
    /// `locks/sessions/`, so a collector never finds a session file that is not yet locked.
    pub fn begin(locks: &Path) -> io::Result<Session> {
        let dir = sessions_dir(locks);
        let token = random_hex(8);
        let tmp = dir.join(format!(".new-{token}"));
        let lock = match LockFile::exclusive(&tmp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir)?;
                LockFile::exclusive(&tmp)?
            }
            r => r?,
        };
        let path = dir.join(&token);
        fs::rename(&tmp, &path)?;
        Ok(Session {
            token,
            path,
            _lock: lock,
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A session whose process is gone: we hold its lock, so nobody can revive it.
pub struct DeadSession {
    pub token: String,
    path: PathBuf,
    _lock: LockFile,
}

impl DeadSession {
    /// Forget the session once what it held is dealt with.
    pub fn remove(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Sessions other than `ours` whose owner died. Cheap (one directory listing and a
/// non-blocking flock per live process), so every start can afford it.
pub fn dead_sessions(locks: &Path, ours: Option<&str>) -> io::Result<Vec<DeadSession>> {
    let dir = sessions_dir(locks);
    let rd = match fs::read_dir(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r?,
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if Some(name.as_str()) == ours || name.starts_with(".new-") {
            // A `.new-` file is being locked and renamed by its live owner (it may not hold the
            // flock yet: between its open and its flock, the file looks abandoned), or was left
            // by one that died before the rename and holds nothing. Only an old one goes.
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 60);
            if old && let Ok(Some(_l)) = LockFile::try_exclusive(&e.path()) {
                let _ = fs::remove_file(e.path());
            }
            continue;
        }
        if let Some(lock) = LockFile::try_exclusive(&e.path())? {
            out.push(DeadSession {
                token: name,
                path: e.path(),
                _lock: lock,
            });
        }
    }
    Ok(out)
}

/// Delete the lease rows of a dead session (they protect nothing any more).
pub fn void_session(meta: &Meta, token: &str) -> Result<(), MetaError> {
    meta.write_unsynced(|tx| {
        tx.execute("DELETE FROM leases WHERE session=?1", params![token])?;
        Ok(())
    })
}

/// One operation's hold on what it is creating or reusing. Released (rows deleted) on drop,
/// once the records that name those things are committed; if the process dies first, the
/// session's death voids it.
pub struct Lease<'m> {
    meta: &'m Meta,
    id: String,
    session: String,
    used: Cell<bool>,
    /// False for a `share`d handle: its rows are released by the original.
    owner: bool,
}

impl<'m> Lease<'m> {
    pub fn new(meta: &'m Meta, session: &str) -> Lease<'m> {
        Lease {
            meta,
            id: format!("{session}.{}", random_hex(4)),
            session: session.to_string(),
            used: Cell::new(false),
            owner: true,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A handle on the same lease through another connection (a worker thread has its own):
    /// rows it adds belong to the lease and go when the original is dropped.
    pub fn share(meta: &'m Meta, session: &str, id: &str) -> Lease<'m> {
        Lease {
            meta,
            id: id.to_string(),
            session: session.to_string(),
            used: Cell::new(false),
            owner: false,
        }
    }

    /// Add a row inside the caller's transaction (so it commits with the check or insert the
    /// caller makes there).
    pub fn hold_in(
        &self,
        tx: &rusqlite::Transaction,
        what: Held,
        key: &str,
    ) -> rusqlite::Result<()> {
        if self.is_inert() {
            return Ok(());
        }
        self.used.set(true);
        tx.execute(
            "INSERT OR IGNORE INTO leases (kind, key, lease, session) VALUES (?1, ?2, ?3, ?4)",
            params![what.as_str(), key, self.id, self.session],
        )?;
        Ok(())
    }

    /// A lease of no session (a read-only store): holds nothing, writes nothing.
    pub fn is_inert(&self) -> bool {
        self.session.is_empty()
    }

    /// Add a row in a transaction of its own.
    pub fn hold(&self, what: Held, key: &str) -> Result<(), MetaError> {
        if self.is_inert() {
            return Ok(());
        }
        self.meta
            .write_unsynced(|tx| Ok(self.hold_in(tx, what, key)?))
    }

    /// Drop one row early (a thing this operation gave up on).
    pub fn let_go(&self, what: Held, key: &str) -> Result<(), MetaError> {
        self.meta.write_unsynced(|tx| {
            tx.execute(
                "DELETE FROM leases WHERE kind=?1 AND key=?2 AND lease=?3",
                params![what.as_str(), key, self.id],
            )?;
            Ok(())
        })
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.used.get() && self.owner {
            let _ = self.meta.write_unsynced(|tx| {
                tx.execute("DELETE FROM leases WHERE lease=?1", params![self.id])?;
                Ok::<_, MetaError>(())
            });
        }
    }
}

/// SQL: is `key_sql` (a column or parameter) of kind `what` held by any lease?
pub fn held_sql(what: Held, key_sql: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM leases WHERE kind='{}' AND key={key_sql})",
        what.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(meta: &Meta) -> i64 {
        meta.conn()
            .query_row("SELECT count(*) FROM leases", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_live_session_is_not_dead_and_an_abandoned_one_is() {
        let d = tempfile::tempdir().unwrap();
        let locks = d.path().join("locks");
        let s = Session::begin(&locks).unwrap();
        // Another process's view: ours is alive (its flock is held).
        assert!(dead_sessions(&locks, None).unwrap().is_empty());
        // A session file nobody holds: its process died.
        fs::write(locks.join("sessions").join("0123456789abcdef"), b"").unwrap();
        let dead = dead_sessions(&locks, Some(s.token())).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].token, "0123456789abcdef");
        dead.into_iter().for_each(DeadSession::remove);
        let path = locks.join("sessions").join(s.token());
        assert!(path.exists());
        drop(s);
        assert!(!path.exists(), "a session's file goes with it");
    }

    #[test]
    fn lease_rows_live_until_the_lease_is_dropped_or_its_session_voided() {
        let d = tempfile::tempdir().unwrap();
        let meta = Meta::open(&d.path().join("meta.db")).unwrap();
        let l = Lease::new(&meta, "sess1");
        l.hold(Held::Blob, "sha256:aa").unwrap();
        l.hold(Held::Layer, "sha256:bb").unwrap();
        l.hold(Held::Layer, "sha256:bb").unwrap(); // idempotent
        assert_eq!(rows(&meta), 2);
        // A worker's shared handle adds to the same lease and releases nothing itself.
        {
            let shared = Lease::share(&meta, "sess1", l.id());
            shared.hold(Held::Blob, "sha256:cc").unwrap();
        }
        assert_eq!(rows(&meta), 3);
        l.let_go(Held::Blob, "sha256:aa").unwrap();
        assert_eq!(rows(&meta), 2);
        drop(l);
        assert_eq!(rows(&meta), 0);
        // A killed process never drops its lease: voiding its session does.
        let l = Lease::new(&meta, "sess2");
        l.hold(Held::CacheDir, "abc").unwrap();
        std::mem::forget(l);
        assert_eq!(rows(&meta), 1);
        void_session(&meta, "sess2").unwrap();
        assert_eq!(rows(&meta), 0);
    }

    #[test]
    fn a_lease_without_a_session_holds_nothing() {
        let d = tempfile::tempdir().unwrap();
        let meta = Meta::open(&d.path().join("meta.db")).unwrap();
        let l = Lease::new(&meta, "");
        assert!(l.is_inert());
        l.hold(Held::Blob, "sha256:aa").unwrap();
        assert_eq!(rows(&meta), 0);
    }
}
