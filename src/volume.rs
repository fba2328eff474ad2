//! Volumes: directories under `ROOT/volumes/<name>/_data` that containers bind-mount, so their
//! data bypasses the storage driver and outlives the containers (Docker's `local` driver).
//!
//! Crash safety follows the store's pattern. Create: the name is leased, the directory made,
//! then the record committed; a process killed before the record leaves a directory that no
//! record and no live lease names, which the collector removes. Remove: the record goes first
//! (in one transaction that re-checks that no container uses it and no lease holds it), the
//! directory after; a kill in between leaves an unnamed directory, again the collector's. So
//! the data of a volume that is still named is never deleted.
//!
//! Which containers use a volume is read from their records (`config.Mounts`), in the same
//! transaction as the delete: a container record and the volume it names cannot come apart.

use crate::atomic_file::random_hex;
use crate::lease::{Held, Lease, held_sql};
use crate::meta::{Meta, MetaError};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error(
        "create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    )]
    BadName(String),
    #[error("remove {name}: volume is in use - [{}]", containers.join(", "))]
    InUse {
        name: String,
        containers: Vec<String>,
    },
    #[error("volume driver {0:?} is not supported (only \"local\")")]
    BadDriver(String),
    #[error("invalid option {0:?} for the local volume driver (type, device, o)")]
    BadOption(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error(transparent)]
    Meta(#[from] MetaError),
}

impl From<rusqlite::Error> for VolumeError {
    fn from(e: rusqlite::Error) -> Self {
        VolumeError::Meta(MetaError::Sql(e))
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> VolumeError {
    let what = what.into();
    move |source| VolumeError::Io { what, source }
}

/// A volume record.
#[derive(Debug, Clone)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    /// RFC 3339, UTC with `Z`, seconds (as Docker prints CreatedAt).
    pub created: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// Made for one container (`-v /path`, an image's VOLUME): `rm -v`, `--rm` and a plain
    /// `volume prune` remove it.
    pub anonymous: bool,
}

/// One mount of a container, as recorded in its RunConfig and shown by `inspect` (`Mounts`).
/// The first eight fields are Docker's; the rest say how to mount it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    /// `volume`, `bind` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub source: String,
    pub destination: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default)]
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    #[serde(default)]
    pub propagation: String,
    /// `volume-nocopy`: never copy the image's files into an empty volume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_copy: bool,
    /// The volume was made for this container alone (removed with it by `rm -v`, `--rm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    /// tmpfs options (`size=64m,mode=1777`), for `--tmpfs` and `--mount type=tmpfs`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tmpfs_options: String,
    /// From `--tmpfs` (Docker lists those in `HostConfig.Tmpfs`, not in `Mounts`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tmpfs_flag: bool,
}

impl MountPoint {
    /// Docker's eight fields, in Docker's order, for `inspect`.
    pub fn docker_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("Type".into(), self.kind.clone().into());
        if self.kind == "volume" {
            m.insert("Name".into(), self.name.clone().into());
        }
        m.insert("Source".into(), self.source.clone().into());
        m.insert("Destination".into(), self.destination.clone().into());
        if self.kind == "volume" {
            m.insert("Driver".into(), self.driver.clone().into());
        }
        m.insert("Mode".into(), self.mode.clone().into());
        m.insert("RW".into(), self.rw.into());
        m.insert("Propagation".into(), self.propagation.clone().into());
        serde_json::Value::Object(m)
    }
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most 255 bytes.
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    (2..=255).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

const COLS: &str = "name, driver, created, labels, options, anonymous";

fn row(r: &rusqlite::Row) -> rusqlite::Result<Volume> {
    let labels: String = r.get(3)?;
    let options: String = r.get(4)?;
    Ok(Volume {
        name: r.get(0)?,
        driver: r.get(1)?,
        created: r.get(2)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        options: serde_json::from_str(&options).unwrap_or_default(),
        anonymous: r.get(5)?,
    })
}

/// SQL: the names of containers whose record mounts volume `?1`.
const USERS_SQL: &str = "SELECT name FROM containers WHERE EXISTS (
    SELECT 1 FROM json_each(containers.config, '$.Mounts') m
    WHERE json_extract(m.value, '$.Type') = 'volume' AND json_extract(m.value, '$.Name') = ?1)
    ORDER BY name";

pub struct NewVolume<'a> {
    /// None: a generated name (64 hex characters), as Docker.
    pub name: Option<&'a str>,
    pub driver: &'a str,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub anonymous: bool,
}

/// The volumes of one store root.
pub struct VolumeStore<'a> {
    meta: &'a Meta,
    dir: PathBuf,
    session: &'a str,
}

impl<'a> VolumeStore<'a> {
    pub fn new(meta: &'a Meta, root: &Path, session: &'a str) -> Self {
        VolumeStore {
            meta,
            dir: root.join("volumes"),
            session,
        }
    }

    /// `ROOT/volumes`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ROOT/volumes/<name>/_data`: what containers mount (Docker's Mountpoint).
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        self.find(name)?
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))
    }

    pub fn find(&self, name: &str) -> Result<Option<Volume>, VolumeError> {
        Ok(self
            .meta
            .conn()
            .query_row(
                &format!("SELECT {COLS} FROM volumes WHERE name=?1"),
                params![name],
                row,
            )
            .optional()?)
    }

    pub fn list(&self) -> Result<Vec<Volume>, VolumeError> {
        let mut st = self
            .meta
            .conn()
            .prepare(&format!("SELECT {COLS} FROM volumes ORDER BY name"))?;
        Ok(st.query_map([], row)?.collect::<Result<_, _>>()?)
    }

    /// Names of the containers (any state) whose records mount `name`.
    pub fn users(&self, name: &str) -> Result<Vec<String>, VolumeError> {
        let mut st = self.meta.conn().prepare(USERS_SQL)?;
        Ok(st
            .query_map(params![name], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    /// Create a volume, or return the existing one of that name unchanged (as Docker). The
    /// caller's `lease` holds the name until the container record that mounts it is committed
    /// (a `volume prune` racing a `run -v` cannot take it in between).
    pub fn create(&self, new: NewVolume, lease: &Lease) -> Result<Volume, VolumeError> {
        if !new.driver.is_empty() && new.driver != "local" {
            return Err(VolumeError::BadDriver(new.driver.to_string()));
        }
        check_options(&new.options)?;
        let name = match new.name {
            Some(n) if !valid_name(n) => return Err(VolumeError::BadName(n.to_string())),
            Some(n) => n.to_string(),
            None => random_hex(32),
        };
        // Lease the name and check for an existing record in one transaction.
        let existing = self.meta.write_unsynced(|tx| -> Result<_, VolumeError> {
            lease.hold_in(tx, Held::Volume, &name)?;
            Ok(tx
                .query_row(
                    &format!("SELECT {COLS} FROM volumes WHERE name=?1"),
                    params![name],
                    row,
                )
                .optional()?)
        })?;
        if let Some(v) = existing {
            return Ok(v);
        }
        let data = self.mountpoint(&name);
        fs::create_dir_all(&data).map_err(io_err(format!("creating {}", data.display())))?;
        crate::failpoint::pause("volume-created-dir");
        let v = Volume {
            name: name.clone(),
            driver: "local".into(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels: new.labels,
            options: new.options,
            anonymous: new.anonymous,
        };
        // Files first, record last (synced): a concurrent create of the same name wins or
        // loses here, and the loser returns the winner's record.
        self.meta.write(|tx| -> Result<(), VolumeError> {
            tx.execute(
                &format!("INSERT OR IGNORE INTO volumes ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    v.name,
                    v.driver,
                    v.created,
                    serde_json::to_string(&v.labels).expect("serializable"),
                    serde_json::to_string(&v.options).expect("serializable"),
                    v.anonymous
                ],
            )?;
            Ok(())
        })?;
        self.get(&name)
    }

    /// Remove a volume no container uses and no operation holds: the record first (checked
    /// and deleted in one transaction), then its directory.
    pub fn remove(&self, name: &str) -> Result<(), VolumeError> {
        let gone = self.meta.write(|tx| -> Result<bool, VolumeError> {
            let mut st = tx.prepare(USERS_SQL)?;
            let users: Vec<String> = st
                .query_map(params![name], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if !users.is_empty() {
                return Err(VolumeError::InUse {
                    name: name.to_string(),
                    containers: users,
                });
            }
            if tx.query_row(
                &format!("SELECT {}", held_sql(Held::Volume, "?1")),
                params![name],
                |r| r.get::<_, bool>(0),
            )? {
                return Err(VolumeError::InUse {
                    name: name.to_string(),
                    containers: vec!["(a container being created)".into()],
                });
            }
            Ok(tx.execute("DELETE FROM volumes WHERE name=?1", params![name])? > 0)
        })?;
        if !gone {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        crate::failpoint::pause("volume-removed-record");
        self.remove_dir(name)
    }

    /// Delete `ROOT/volumes/<name>` (no record names it any more). A filesystem mounted on
    /// `_data` (a volume with `type`/`device` options) is unmounted first; if that fails the
    /// directory stays, so a bound host directory is never emptied.
    pub fn remove_dir(&self, name: &str) -> Result<(), VolumeError> {
        let dir = self.dir.join(name);
        let data = dir.join("_data");
        if is_mountpoint(&data) {
            rustix::mount::unmount(&data, rustix::mount::UnmountFlags::DETACH)
                .map_err(|e| io_err(format!("unmounting {}", data.display()))(e.into()))?;
        }
        if is_mountpoint(&data) {
            return Err(VolumeError::Io {
                what: format!("removing {}", dir.display()),
                source: io::Error::other("still mounted"),
            });
        }
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_err(format!("removing {}", dir.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// The volume's own filesystem (local driver options): mounted on `_data` once, before a
    /// container first mounts the volume, and left there until the volume is removed.
    pub fn ensure_mounted(&self, v: &Volume) -> Result<(), VolumeError> {
        let Some(kind) = v.options.get("type") else {
            return Ok(());
        };
        let data = self.mountpoint(&v.name);
        if is_mountpoint(&data) {
            return Ok(());
        }
        let device = v.options.get("device").cloned().unwrap_or_default();
        let o = v.options.get("o").cloned().unwrap_or_default();
        let opts: Vec<&str> = o.split(',').filter(|s| !s.is_empty()).collect();
        let fail = |e: rustix::io::Errno| {
            io_err(format!("mounting volume {} on {}", v.name, data.display()))(e.into())
        };
        if opts.contains(&"bind") {
            rustix::mount::mount_bind(device.as_str(), &data).map_err(fail)?;
        } else {
            let data_opts = std::ffi::CString::new(opts.join(","))
                .map_err(|_| VolumeError::BadOption(o.clone()))?;
            rustix::mount::mount(
                device.as_str(),
                &data,
                kind.as_str(),
                rustix::mount::MountFlags::empty(),
                Some(data_opts.as_c_str()),
            )
            .map_err(fail)?;
        }
        Ok(())
    }

    /// Volumes no container uses: anonymous ones only, unless `all` (as current Docker).
    /// Returns (name, bytes freed) of each removed.
    pub fn prune(&self, all: bool) -> Result<Vec<(String, u64)>, VolumeError> {
        let mut out = Vec::new();
        for v in self.list()? {
            if (!all && !v.anonymous) || !self.users(&v.name)?.is_empty() {
                continue;
            }
            let bytes = dir_size(&self.mountpoint(&v.name));
            match self.remove(&v.name) {
                Ok(()) => out.push((v.name, bytes)),
                // Taken into use (or removed) meanwhile: not ours to prune.
                Err(VolumeError::InUse { .. } | VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Directories under `ROOT/volumes` that no record names and no live lease holds (left by
    /// a create or remove that was killed). Listed before the names are read, so a volume
    /// created after the listing is not a candidate (see `lease`).
    pub fn leftovers(&self) -> Result<Vec<String>, VolumeError> {
        let dirs: Vec<String> = match fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("listing {}", self.dir.display()))(e)),
        };
        let mut st = self.meta.conn().prepare(
            "SELECT name FROM volumes UNION SELECT key FROM leases WHERE kind = 'volume'",
        )?;
        let named: std::collections::HashSet<String> =
            st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(dirs.into_iter().filter(|d| !named.contains(d)).collect())
    }

    /// The session this store leases with (empty on a read-only store).
    pub fn session(&self) -> &str {
        self.session
    }
}

fn check_options(o: &BTreeMap<String, String>) -> Result<(), VolumeError> {
    for k in o.keys() {
        if !["type", "device", "o"].contains(&k.as_str()) {
            return Err(VolumeError::BadOption(k.clone()));
        }
    }
    if o.contains_key("type") != o.contains_key("device") {
        return Err(VolumeError::BadOption(
            "type and device go together".to_string(),
        ));
    }
    Ok(())
}

/// Is `p` the root of a mount? `statx`'s MOUNT_ROOT attribute, not a device comparison: a
/// bind mount from the same filesystem has the same device as its parent.
pub fn is_mountpoint(p: &Path) -> bool {
    use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
    match statx(CWD, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS) {
        Ok(st) => {
            let attr = st.stx_attributes;
            let known = st.stx_attributes_mask;
            if known.contains(StatxAttributes::MOUNT_ROOT) {
                return attr.contains(StatxAttributes::MOUNT_ROOT);
            }
            // Old kernels: fall back to comparing devices with the parent.
            match (
                fs::symlink_metadata(p),
                p.parent().map(fs::symlink_metadata),
            ) {
                (Ok(a), Some(Ok(b))) => a.dev() != b.dev() || a.ino() == b.ino(),
                _ => false,
            }
        }
        Err(_) => false,
    }
}

/// Is the directory empty (or missing)?
pub fn is_empty_dir(p: &Path) -> bool {
    fs::read_dir(p).map_or(true, |mut rd| rd.next().is_none())
}

/// Bytes under `p` (st_size of non-directories, as Docker's volume size), hardlinks once, not
/// following symlinks or crossing filesystems. Subdirectories are walked by a few threads,
/// so a volume of many small files is measured at the speed of `getdents`+`statx`.
pub fn dir_size(p: &Path) -> u64 {
    dir_sizes(&[p.to_path_buf()])[0]
}

/// `dir_size` of each path, all walked by one pool of threads.
pub fn dir_sizes(paths: &[PathBuf]) -> Vec<u64> {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};
    let totals: Vec<AtomicU64> = paths.iter().map(|_| AtomicU64::new(0)).collect();
    let seen = Mutex::new(std::collections::HashSet::<(u64, u64)>::new());
    // The queue: (which path, directory, its device). `pending` counts queued + in progress.
    let queue = Mutex::new(Vec::<(usize, PathBuf, u64)>::new());
    let pending = AtomicUsize::new(0);
    let wake = Condvar::new();
    for (i, p) in paths.iter().enumerate() {
        if let Ok(md) = fs::symlink_metadata(p)
            && md.is_dir()
        {
            pending.fetch_add(1, Ordering::SeqCst);
            queue.lock().expect("lock").push((i, p.clone(), md.dev()));
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let job = {
                        let mut q = queue.lock().expect("lock");
                        loop {
                            if let Some(j) = q.pop() {
                                break Some(j);
                            }
                            if pending.load(Ordering::SeqCst) == 0 {
                                break None;
                            }
                            q = wake.wait(q).expect("lock");
                        }
                    };
                    let Some((i, dir, dev)) = job else {
                        wake.notify_all();
                        return;
                    };
                    let mut bytes = 0u64;
                    let mut subdirs = Vec::new();
                    if let Ok(rd) = fs::read_dir(&dir) {
                        for e in rd.flatten() {
                            let Ok(md) = e.metadata() else { continue };
                            if md.is_dir() {
                                if md.dev() == dev {
                                    subdirs.push((i, e.path(), dev));
                                }
                                continue;
                            }
                            if md.nlink() > 1
                                && !seen.lock().expect("lock").insert((md.dev(), md.ino()))
                            {
                                continue;
                            }
                            bytes += md.len();
                        }
                    }
                    totals[i].fetch_add(bytes, Ordering::Relaxed);
                    if !subdirs.is_empty() {
                        pending.fetch_add(subdirs.len(), Ordering::SeqCst);
                        queue.lock().expect("lock").extend(subdirs);
                        wake.notify_all();
                    }
                    if pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                        wake.notify_all();
                    }
                }
            });
        }
    });
    totals.into_iter().map(AtomicU64::into_inner).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("myvolume"));
        assert!(valid_name("a.b-c_d"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-ab"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(256)));
    }

    #[test]
    fn sizes_walk_every_directory() {
        let t = tempfile::tempdir().unwrap();
        for d in 0..5 {
            let p = t.path().join(format!("d{d}/e"));
            fs::create_dir_all(&p).unwrap();
            for f in 0..20 {
                fs::write(p.join(format!("f{f}")), vec![1u8; 5000]).unwrap();
            }
        }
        let n = dir_size(t.path());
        assert!(n >= 100 * 5000, "{n}");
        assert_eq!(dir_sizes(&[t.path().into(), t.path().join("none")])[1], 0);
    }
}
