//! The collector: find, and on request remove, everything no committed record and no live
//! lease names. One walk serves three callers: a start that found a dead process's session
//! (`Sweep::after_crash`), `system fsck` (report only) and `system fsck --repair` /
//! `system prune` / `image prune` (remove, partial downloads included).
//!
//! Safe while other strata processes work: records are deleted only in transactions that
//! re-check every reference and lease (`LayerStore::remove_if_unneeded`), blobs only inside a
//! write transaction (writers lease a blob in one before storing it), and directories are
//! listed *before* the names that protect them are read, so anything created after the listing
//! is not a candidate, and anything created before it was leased before it was created.

use super::{Engine, EngineError, io_err, referenced_blobs};
use crate::lease::{self, DeadSession, Held, held_sql};
use crate::lock::LockFile;
use crate::runtime::state::{ContainerDir, Status, TryLock};
use rusqlite::params;
use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A partial download nobody has touched for this long will not be resumed.
const PARTIAL_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What one sweep does.
pub struct Sweep {
    /// Remove what is found (else only report it).
    pub repair: bool,
    /// Remove every partial download nobody is writing, not only stale ones.
    pub all_partials: bool,
    /// Sessions already found dead (and locked) by the caller.
    dead: Vec<DeadSession>,
}

impl Sweep {
    pub fn report() -> Sweep {
        Sweep {
            repair: false,
            all_partials: true,
            dead: Vec::new(),
        }
    }
    pub fn repair(all_partials: bool) -> Sweep {
        Sweep {
            repair: true,
            all_partials,
            dead: Vec::new(),
        }
    }
    pub fn after_crash(dead: Vec<DeadSession>) -> Sweep {
        Sweep {
            repair: true,
            all_partials: false,
            dead,
        }
    }
}

/// One thing no record names (found, or removed when repairing).
#[derive(Debug)]
pub struct Leftover {
    pub what: String,
    pub bytes: u64,
    /// A partial download a later pull of the same blob resumes: reported, not a fault.
    pub resumable: bool,
}

fn du(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return std::os::unix::fs::MetadataExt::blocks(&m) * 512;
    }
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            n += du(&e.path());
        }
    }
    n
}

fn remove_path(p: &Path) -> io::Result<()> {
    let r = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) => Err(e),
    };
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn strings(conn: &rusqlite::Connection, sql: &str) -> Result<HashSet<String>, EngineError> {
    let mut st = conn.prepare(sql)?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Engine {
    /// Walk the store for leftovers; remove them when `s.repair`. Returns what was found.
    pub fn sweep(&self, s: Sweep) -> Result<Vec<Leftover>, EngineError> {
        let mut found = Vec::new();
        if self.read_only() {
            return Ok(found); // no locks can be taken there, and nothing can be removed
        }
        let mut note = |what: String, bytes: u64, resumable: bool| {
            found.push(Leftover {
                what,
                bytes,
                resumable,
            })
        };
        let locks = self.root.join("locks");

        // 1. Sessions of dead processes: their leases protect nothing; their temp dirs go.
        // (Sessions the caller already locked are not found again: flocks of one file through
        // two opens exclude each other.)
        let mut dead = s.dead;
        dead.extend(
            lease::dead_sessions(&locks, Some(self.session_token()))
                .map_err(io_err("listing sessions"))?,
        );
        for d in dead {
            let tmp = self.root.join("tmp").join(&d.token);
            note(
                format!(
                    "session of a process that died ({}): its leases and temp files",
                    d.token
                ),
                du(&tmp),
                false,
            );
            if s.repair {
                lease::void_session(&self.meta, &d.token)?;
                remove_path(&tmp).map_err(io_err(format!("removing {}", tmp.display())))?;
                d.remove();
            }
        }
        // Temp dirs of no live session (and files of older versions directly in tmp/).
        let live_sessions: HashSet<String> =
            names_in(&locks.join("sessions")).into_iter().collect();
        for name in names_in(&self.root.join("tmp")) {
            if !live_sessions.contains(&name) {
                let p = self.root.join("tmp").join(&name);
                note(format!("temp file {}", p.display()), du(&p), false);
                if s.repair {
                    remove_path(&p).map_err(io_err(format!("removing {}", p.display())))?;
                }
            }
        }

        // 2. Container removals that were interrupted (the remover's lease is gone).
        let containers = self.containers();
        for c in containers.list()? {
            if c.state != "removing" || self.is_held(Held::Container, &c.id)? {
                continue;
            }
            note(
                format!(
                    "container {} ({}): removal interrupted",
                    c.name,
                    &c.id[..12]
                ),
                0,
                false,
            );
            if s.repair {
                if self.driver.is_mounted(&c.cache_id) {
                    containers.unmount(&c, true)?;
                }
                containers.remove(&c)?;
            }
        }

        // 3. Mounts nothing uses: a container neither running, nor mounted by `strata mount`,
        //    nor held by a process (cp, export, commit), whose start was interrupted.
        for c in containers.list()? {
            if c.mounts > 0
                || !self.driver.is_mounted(&c.cache_id)
                || self.is_held(Held::Container, &c.id)?
            {
                continue;
            }
            let dir = ContainerDir::new(&self.root, &c.id);
            let TryLock::Acquired(_monitor) =
                dir.try_lock().map_err(io_err("locking a container"))?
            else {
                continue;
            };
            if matches!(dir.read_state().status, Status::Starting | Status::Running) {
                continue; // its owner died: `reconcile` finishes it (and unmounts)
            }
            note(
                format!("container {}: root filesystem left mounted", c.name),
                0,
                false,
            );
            if s.repair {
                self.driver.unmount(&c.cache_id)?;
            }
        }

        // 4. Layers nothing needs.
        let layers = self.layers();
        for l in layers.unneeded()? {
            note(
                format!("layer {}: no image, container or layer uses it", l.chain_id),
                l.size,
                false,
            );
        }
        if s.repair {
            self.collect_layers()?;
        }

        // 5. Driver dirs and tar-splits no layer, container or lease names. List first, then
        //    read the names (see the module doc).
        let dirs = self.driver.list()?;
        let splits = names_in(&self.root.join("layers"));
        let known = strings(
            self.meta.conn(),
            "SELECT cache_id FROM layers UNION SELECT cache_id FROM containers
             UNION SELECT cache_id || '-init' FROM containers
             UNION SELECT key FROM leases WHERE kind = 'cache'",
        )?;
        for id in dirs {
            if !known.contains(&id) {
                let bytes = self.driver.usage(&id).map(|u| u.bytes).unwrap_or(0);
                note(
                    format!("driver directory {id}: no record names it"),
                    bytes,
                    false,
                );
                if s.repair {
                    if self.driver.is_mounted(&id) {
                        let _ = self.driver.unmount(&id);
                    }
                    self.driver.remove(&id)?;
                }
            }
        }
        for name in splits {
            let id = name.strip_suffix(".tar-split").unwrap_or(&name);
            if !known.contains(id) {
                let p = self.root.join("layers").join(&name);
                note(
                    format!("tar-split {name}: no layer names it"),
                    du(&p),
                    false,
                );
                if s.repair {
                    remove_path(&p).map_err(io_err(format!("removing {}", p.display())))?;
                }
            }
        }

        // 6. Container directories (state, logs, bundle) of no container.
        let cdirs = names_in(&self.root.join("containers"));
        let ids = strings(
            self.meta.conn(),
            "SELECT id FROM containers UNION SELECT key FROM leases WHERE kind = 'container'",
        )?;
        for id in cdirs {
            if !ids.contains(&id) {
                let p = self.root.join("containers").join(&id);
                note(
                    format!("container directory {id}: no container has that ID"),
                    du(&p),
                    false,
                );
                if s.repair {
                    // Never into a staged bind source (a host directory).
                    crate::runtime::mounts::remove_staging(&p.join("mounts"))
                        .map_err(io_err(format!("removing {}", p.display())))?;
                    remove_path(&p).map_err(io_err(format!("removing {}", p.display())))?;
                }
            }
        }

        // 7. Blobs no record or lease names (checked and removed inside one write transaction).
        let blobs = self.content.list()?;
        let check =
            |tx: &rusqlite::Connection| -> Result<Vec<(crate::digest::Digest, u64)>, EngineError> {
                let referenced = referenced_blobs(tx)?;
                Ok(blobs
                    .iter()
                    .filter(|d| !referenced.contains(&d.to_string()))
                    .map(|d| (d.clone(), du(&self.content.path(d))))
                    .collect())
            };
        let orphans = if s.repair {
            self.meta.write(|tx| -> Result<_, EngineError> {
                let o = check(tx)?;
                for (d, _) in &o {
                    self.content.delete(d)?;
                }
                Ok(o)
            })?
        } else {
            check(self.meta.conn())?
        };
        for (d, bytes) in orphans {
            note(format!("blob {d}: no image or layer uses it"), bytes, false);
        }

        // 8. Partial downloads nobody is writing (their blob lock is free): stale ones always,
        //    all of them when asked (prune, fsck --repair).
        let ingest = self.root.join("ingest");
        for name in names_in(&ingest) {
            let Some(hex) = name.strip_suffix(".partial") else {
                continue;
            };
            let p = ingest.join(&name);
            // Taken: no pull is writing it (held for the check and the removal).
            let Ok(Some(_writer)) = LockFile::try_exclusive(&locks.join(format!("blob-{hex}")))
            else {
                continue;
            };
            let age = fs::metadata(&p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            if !s.all_partials && age < PARTIAL_MAX_AGE {
                continue;
            }
            note(
                format!("partial download {name}: no pull is resuming it"),
                du(&p),
                age < PARTIAL_MAX_AGE,
            );
            if s.repair {
                remove_path(&p).map_err(io_err(format!("removing {}", p.display())))?;
            }
        }
        // 9. Volume directories no record names and no live lease holds (a create or remove
        //    that was killed), and copy-ups that were killed (`_copyup.*` beside `_data`) in
        //    volumes nobody holds. A volume that is still named is never touched.
        let volumes = self.volumes();
        for name in volumes.leftovers()? {
            let p = volumes.dir().join(&name);
            note(
                format!("volume directory {name}: no volume has that name"),
                du(&p),
                false,
            );
            if s.repair {
                volumes.remove_dir(&name)?;
            }
        }
        for v in volumes.list()? {
            if self.is_held(Held::Volume, &v.name)? {
                continue;
            }
            let dir = volumes.dir().join(&v.name);
            for entry in names_in(&dir) {
                if !entry.starts_with("_copyup.") {
                    continue;
                }
                let p = dir.join(&entry);
                note(
                    format!("volume {}: interrupted copy-up {entry}", v.name),
                    du(&p),
                    false,
                );
                if s.repair {
                    remove_path(&p).map_err(io_err(format!("removing {}", p.display())))?;
                }
            }
        }
        Ok(found)
    }

    /// Does any lease hold this?
    fn is_held(&self, what: Held, key: &str) -> Result<bool, EngineError> {
        Ok(self.meta.conn().query_row(
            &format!("SELECT {}", held_sql(what, "?1")),
            params![key],
            |r| r.get(0),
        )?)
    }
}
