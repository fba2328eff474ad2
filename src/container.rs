//! Containers, storage side: a record (name, image, run config) and a thin writable layer
//! stacked on the image's top read-only layer, with the init layer (the runtime's mount
//! points, `crate::init_layer`) in between.

use crate::atomic_file::random_hex;
use crate::digest::Digest;
use crate::driver::{Driver, DriverError, LayerKind};
use crate::init_layer::{self, InitLayerError};
use crate::lease::{Held, Lease};
use crate::meta::{Meta, MetaError};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, id: String },
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    BadName(String),
    #[error("Renaming a container with the same name as its current name")]
    SameName,
    #[error("container ID prefix {0:?} is ambiguous")]
    Ambiguous(String),
    #[error("No such image: {0} (it was deleted while the container was being created)")]
    ImageGone(String),
    /// A `--storage-opt` the container cannot have (Docker's wording).
    #[error("{0}")]
    StorageOpt(String),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    InitLayer(#[from] InitLayerError),
}

impl From<rusqlite::Error> for ContainerError {
    fn from(e: rusqlite::Error) -> Self {
        ContainerError::Meta(MetaError::Sql(e))
    }
}

/// What the container runs; the image's config supplies what is not given.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub user: String,
    /// Run options (`strata create/run`); absent in records made before them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open_stdin: bool,
    /// `host` (default) or `none`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// `--log-opt` values for the json-file log (`max-size=…`, `max-file=…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_opts: Vec<String>,
    /// `--rm`: remove the container when it exits.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_remove: bool,
    /// An external OCI runtime binary (`--runtime`); empty: the embedded one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime: String,
    /// `-v` arguments with a source (Docker's `HostConfig.Binds`), as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binds: Vec<String>,
    /// `-v /path` (anonymous volumes; Docker's `Config.Volumes`), as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// `--mount` arguments, as given (shown as `HostConfig.Mounts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_args: Vec<String>,
    /// `--tmpfs PATH[:OPTS]`, as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    /// `--volumes-from C[:ro|rw]`, as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// Every mount, resolved at create (volumes named, anonymous ones made, the image's
    /// VOLUMEs added): what `start` mounts and what `inspect` shows. Which containers use a
    /// volume is read from here (`volume::VolumeStore::users`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<crate::volume::MountPoint>,
    /// `--storage-opt KEY=VALUE`, as given (Docker's `HostConfig.StorageOpt`); only `size`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_opt: Vec<String>,
    // Docker's Config and HostConfig fields, named as Docker names them (issue 10).
    /// `Config.Hostname` (`-h`); empty: the short ID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// `Config.Labels` (`-l`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `Config.StopSignal` (`--stop-signal`); empty: the image's, else SIGTERM.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    /// `Config.StopTimeout` in seconds (`--stop-timeout`); None: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    /// `HostConfig.ExtraHosts` (`--add-host host:ip`), as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// `HostConfig.ReadonlyRootfs` (`--read-only`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub readonly_rootfs: bool,
    /// `HostConfig.GroupAdd` (`--group-add`), names or numbers as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// `HostConfig.Privileged`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// `HostConfig.CapAdd` / `CapDrop`, as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// `HostConfig.Memory` in bytes (0: no limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub memory: i64,
    /// `HostConfig.NanoCpus` (`--cpus` × 1e9; 0: no limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nano_cpus: i64,
    /// `HostConfig.PidsLimit` (None: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// `HostConfig.Init` (`--init`: tini as PID 1).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// `HostConfig.RestartPolicy` as given (`no`, `always`, `unless-stopped`,
    /// `on-failure[:N]`; empty: no). Docker's JSON splits it into Name and
    /// MaximumRetryCount (`engine::run::RestartPolicy`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub restart: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The writable-layer size limit `--storage-opt` asks for (None: no limit). Docker's keys and
/// messages: `size` (units as `--memory`: `120M`, `1.5g`), anything else "Unknown option".
pub fn storage_size_limit(opts: &[String]) -> Result<Option<u64>, ContainerError> {
    let mut size = None;
    for o in opts {
        let Some((k, v)) = o.split_once('=') else {
            return Err(ContainerError::StorageOpt(format!(
                "invalid storage option {o:?}: expected KEY=VALUE"
            )));
        };
        match k.to_ascii_lowercase().as_str() {
            "size" => match crate::runtime::logs::parse_size(v) {
                Some(n) if n > 0 => size = Some(n),
                _ => {
                    return Err(ContainerError::StorageOpt(format!("invalid size: '{v}'")));
                }
            },
            _ => return Err(ContainerError::StorageOpt(format!("Unknown option {k}"))),
        }
    }
    Ok(size)
}

#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image_id: Digest,
    /// The image as the user named it (`busybox:latest`), for `ps`.
    pub image_ref: String,
    pub cache_id: String,
    /// chainID of the image's top layer (None for an image without layers).
    pub parent: Option<Digest>,
    pub created: String,
    pub config: RunConfig,
    pub state: String,
    pub mounts: i64,
}

pub struct NewContainer<'a> {
    pub name: Option<&'a str>,
    pub image_id: &'a Digest,
    pub image_ref: &'a str,
    pub parent: Option<(&'a Digest, &'a str)>,
    pub config: RunConfig,
}

pub struct ContainerStore<'a> {
    pub meta: &'a Meta,
    pub driver: &'a dyn Driver,
    /// The store root, when known: `remove` then also deletes `ROOT/containers/<id>/`
    /// (runtime state, logs, bundle).
    root: Option<PathBuf>,
    /// The process's session (see `lease`): creation and removal hold what they touch with it.
    session: Option<String>,
}

const COLS: &str =
    "id, name, image_id, image_ref, cache_id, parent, created, config, state, mounts";

fn row(r: &rusqlite::Row) -> rusqlite::Result<Container> {
    let bad = |e: String| rusqlite::Error::ToSqlConversionFailure(e.into());
    let image_id: String = r.get(2)?;
    let parent: Option<String> = r.get(5)?;
    let config: String = r.get(7)?;
    Ok(Container {
        id: r.get(0)?,
        name: r.get(1)?,
        image_id: image_id
            .parse()
            .map_err(|e: crate::digest::DigestParseError| bad(e.to_string()))?,
        image_ref: r.get(3)?,
        cache_id: r.get(4)?,
        parent: parent.and_then(|p| p.parse().ok()),
        created: r.get(6)?,
        config: serde_json::from_str(&config).map_err(|e| bad(e.to_string()))?,
        state: r.get(8)?,
        mounts: r.get(9)?,
    })
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

const ADJECTIVES: &[&str] = &[
    "admiring", "bold", "brave", "busy", "clever", "cool", "eager", "elated", "focused", "gallant",
    "happy", "jolly", "keen", "lucid", "modest", "nifty", "quirky", "relaxed", "sharp", "stoic",
    "tender", "vibrant", "wizardly", "zealous",
];
const SURNAMES: &[&str] = &[
    "albattani",
    "babbage",
    "curie",
    "darwin",
    "einstein",
    "fermi",
    "galileo",
    "hopper",
    "hypatia",
    "kepler",
    "lovelace",
    "mccarthy",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "thompson",
    "turing",
    "wozniak",
    "yalow",
];

fn random_name() -> String {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).expect("random source");
    format!(
        "{}_{}",
        ADJECTIVES[b[0] as usize % ADJECTIVES.len()],
        SURNAMES[b[1] as usize % SURNAMES.len()]
    )
}

impl<'a> ContainerStore<'a> {
    pub fn new(meta: &'a Meta, driver: &'a dyn Driver) -> Self {
        ContainerStore {
            meta,
            driver,
            root: None,
            session: None,
        }
    }

    pub fn with_root(mut self, root: &std::path::Path) -> Self {
        self.root = Some(root.to_path_buf());
        self
    }

    /// The store root, when known.
    pub fn root(&self) -> Option<&std::path::Path> {
        self.root.as_deref()
    }

    pub fn with_session(mut self, token: &str) -> Self {
        self.session = Some(token.to_string());
        self
    }

    fn lease(&self) -> Option<Lease<'a>> {
        self.session.as_deref().map(|t| Lease::new(self.meta, t))
    }

    /// Record the container's state word (`created`, `running`, `exited`), as `ps` filters on it.
    pub fn set_state(&self, id: &str, state: &str) -> Result<(), ContainerError> {
        self.set_state_reporting(id, state, None)
    }

    /// `set_state`, and the event that reports the change (Docker's `start`, `die` with its
    /// `exitCode`) in the same transaction, when the state word actually changes.
    pub fn set_state_reporting(
        &self,
        id: &str,
        state: &str,
        exit_code: Option<i32>,
    ) -> Result<(), ContainerError> {
        self.meta.write(|tx| -> Result<(), ContainerError> {
            let before: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT state, name, image_ref FROM containers WHERE id=?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            tx.execute(
                "UPDATE containers SET state=?2 WHERE id=?1",
                params![id, state],
            )?;
            if let Some((old, name, image)) = before
                && old != state
            {
                let code = exit_code.unwrap_or(0).to_string();
                let mut attrs = vec![("image", image.as_str()), ("name", name.as_str())];
                let action = match state {
                    "running" => Some("start"),
                    "exited" => {
                        attrs.push(("exitCode", &code));
                        Some("die")
                    }
                    _ => None,
                };
                if let Some(action) = action {
                    crate::events::record(tx, "container", action, id, &attrs)?;
                }
            }
            Ok(())
        })
    }

    /// Record an event about a container that changes no record (Docker's `kill`, `stop`).
    pub fn report(
        &self,
        c: &Container,
        action: &str,
        extra: &[(&str, &str)],
    ) -> Result<(), ContainerError> {
        self.meta
            .write_unsynced(|tx| -> Result<(), ContainerError> {
                let mut attrs = vec![("image", c.image_ref.as_str()), ("name", c.name.as_str())];
                attrs.extend_from_slice(extra);
                crate::events::record(tx, "container", action, &c.id, &attrs)?;
                Ok(())
            })
    }

    /// Give the container a new name, as Docker's `rename` (the old one is free at once).
    pub fn rename(&self, c: &Container, new_name: &str) -> Result<(), ContainerError> {
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        if !valid_name(new_name) {
            return Err(ContainerError::BadName(new_name.to_string()));
        }
        if new_name == c.name {
            return Err(ContainerError::SameName);
        }
        self.meta.write(|tx| -> Result<(), ContainerError> {
            if let Some(id) = tx
                .query_row(
                    "SELECT id FROM containers WHERE name=?1",
                    params![new_name],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
            {
                return Err(ContainerError::NameInUse {
                    name: new_name.to_string(),
                    id,
                });
            }
            if tx.execute(
                "UPDATE containers SET name=?2 WHERE id=?1",
                params![c.id, new_name],
            )? == 0
            {
                return Err(ContainerError::NotFound(c.name.clone()));
            }
            let old = format!("/{}", c.name);
            crate::events::record(
                tx,
                "container",
                "rename",
                &c.id,
                &[
                    ("image", &c.image_ref),
                    ("name", new_name),
                    ("oldName", &old),
                ],
            )?;
            Ok(())
        })
    }

    /// Create the init layer and the writable layer on it, then the record. A crash before
    /// the record leaves driver directories that no record names, removed by the collector.
    /// The caller holds the parent layer (a lease); the record is only written if the image
    /// still exists.
    pub fn create(&self, new: NewContainer) -> Result<Container, ContainerError> {
        if let Some(n) = new.name {
            if !valid_name(n) {
                return Err(ContainerError::BadName(n.to_string()));
            }
            if let Some(c) = self.find_exact(n)? {
                return Err(ContainerError::NameInUse {
                    name: n.to_string(),
                    id: c.id,
                });
            }
        }
        let size_limit = storage_size_limit(&new.config.storage_opt)?;
        if size_limit.is_some() {
            self.driver.size_limit_supported()?;
        }
        let id = random_hex(32);
        let cache_id = random_hex(32);
        let init_id = init_layer::id_for(&cache_id);
        let lease = self.lease();
        if let Some(l) = &lease {
            self.meta
                .write_unsynced(|tx| -> Result<(), ContainerError> {
                    l.hold_in(tx, Held::CacheDir, &cache_id)?;
                    l.hold_in(tx, Held::CacheDir, &init_id)?;
                    Ok(())
                })?;
        }
        self.create_init_layer(&init_id, new.parent.map(|p| p.1))?;
        if let Err(e) = self
            .driver
            .create(&cache_id, Some(&init_id), LayerKind::Container)
            .and_then(|()| match size_limit {
                Some(n) => self.driver.limit_size(&cache_id, n),
                None => Ok(()),
            })
        {
            let _ = self.driver.remove(&cache_id);
            let _ = self.driver.remove(&init_id);
            return Err(e.into());
        }
        let c = Container {
            id: id.clone(),
            name: String::new(),
            image_id: new.image_id.clone(),
            image_ref: new.image_ref.to_string(),
            cache_id: cache_id.clone(),
            parent: new.parent.map(|p| p.0.clone()),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            config: new.config,
            state: "created".into(),
            mounts: 0,
        };
        let config = serde_json::to_string(&c.config).expect("serializable");
        let mut name = new.name.map(str::to_string).unwrap_or_else(random_name);
        let mut attempt = 0;
        loop {
            let r = self.meta.write(|tx| -> Result<(), ContainerError> {
                if tx
                    .query_row("SELECT id FROM containers WHERE name=?1", params![name], |r| r.get::<_, String>(0))
                    .optional()?
                    .is_some()
                {
                    return Err(ContainerError::NameInUse { name: name.clone(), id: String::new() });
                }
                let n = tx.execute(
                    &format!("INSERT INTO containers ({COLS}) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0
                              WHERE EXISTS (SELECT 1 FROM images WHERE id = ?3)"),
                    params![
                        c.id,
                        name,
                        c.image_id.to_string(),
                        c.image_ref,
                        c.cache_id,
                        c.parent.as_ref().map(|p| p.to_string()),
                        c.created,
                        config,
                        c.state
                    ],
                )?;
                if n == 0 {
                    return Err(ContainerError::ImageGone(c.image_id.short()));
                }
                crate::events::record(
                    tx,
                    "container",
                    "create",
                    &c.id,
                    &[("image", &c.image_ref), ("name", &name)],
                )?;
                Ok(())
            });
            match r {
                Ok(()) => break,
                Err(ContainerError::NameInUse { .. }) if new.name.is_none() && attempt < 50 => {
                    attempt += 1;
                    name = format!(
                        "{}{}",
                        random_name(),
                        if attempt > 10 {
                            attempt.to_string()
                        } else {
                            String::new()
                        }
                    );
                }
                Err(e) => {
                    let _ = self.driver.remove(&cache_id);
                    let _ = self.driver.remove(&init_id);
                    return Err(match e {
                        ContainerError::NameInUse { name, .. } => {
                            let id = self
                                .find_exact(&name)
                                .ok()
                                .flatten()
                                .map(|c| c.id)
                                .unwrap_or_default();
                            ContainerError::NameInUse { name, id }
                        }
                        e => e,
                    });
                }
            }
        }
        Ok(Container { name, ..c })
    }

    /// The init layer on `parent`, populated through a mount of it (on overlay the image's
    /// directories are copied up as Docker's are, keeping their owner and mode). It is
    /// mounted only here; afterwards it is one of the writable layer's lower layers.
    fn create_init_layer(&self, id: &str, parent: Option<&str>) -> Result<(), ContainerError> {
        self.driver.create(id, parent, LayerKind::ReadWrite)?;
        let r = (|| -> Result<(), ContainerError> {
            let root = self.driver.mount_scratch(id)?;
            let populated = init_layer::populate(&root);
            self.driver.unmount(id)?;
            Ok(populated?)
        })();
        if r.is_err() {
            let _ = self.driver.remove(id);
        }
        r
    }

    fn find_exact(&self, name_or_id: &str) -> Result<Option<Container>, ContainerError> {
        Ok(self
            .meta
            .conn()
            .query_row(
                &format!("SELECT {COLS} FROM containers WHERE name=?1 OR id=?1"),
                params![name_or_id],
                row,
            )
            .optional()?)
    }

    /// By exact name, full ID or unique ID prefix (as Docker).
    pub fn get(&self, s: &str) -> Result<Container, ContainerError> {
        let s = s.strip_prefix('/').unwrap_or(s);
        if let Some(c) = self.find_exact(s)? {
            return Ok(c);
        }
        if !s.is_empty() && s.bytes().all(|c| c.is_ascii_hexdigit()) {
            let mut st = self.meta.conn().prepare(&format!(
                "SELECT {COLS} FROM containers WHERE id >= ?1 AND id < ?2 LIMIT 2"
            ))?;
            let found: Vec<Container> = st
                .query_map(
                    params![s.to_lowercase(), format!("{}g", s.to_lowercase())],
                    row,
                )?
                .collect::<Result<_, _>>()?;
            match found.len() {
                1 => return Ok(found.into_iter().next().expect("one")),
                2 => return Err(ContainerError::Ambiguous(s.to_string())),
                _ => {}
            }
        }
        Err(ContainerError::NotFound(s.to_string()))
    }

    pub fn list(&self) -> Result<Vec<Container>, ContainerError> {
        let mut st = self.meta.conn().prepare(&format!(
            "SELECT {COLS} FROM containers ORDER BY created DESC"
        ))?;
        Ok(st.query_map([], row)?.collect::<Result<_, _>>()?)
    }

    /// Containers whose image is `id`.
    pub fn using_image(&self, id: &Digest) -> Result<Vec<Container>, ContainerError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|c| c.image_id == *id)
            .collect())
    }

    /// Mount the container's root filesystem (counted: each mount needs an unmount).
    pub fn mount(&self, c: &Container) -> Result<PathBuf, ContainerError> {
        let p = self.driver.mount(&c.cache_id)?;
        self.meta.write(|tx| -> Result<(), ContainerError> {
            tx.execute(
                "UPDATE containers SET mounts = mounts + 1 WHERE id=?1",
                params![c.id],
            )?;
            Ok(())
        })?;
        Ok(p)
    }

    /// Run `f` on the container's mounted root filesystem (cp, export). The mount is held by
    /// this process's lease, not by the `mounts` count, so a command killed in `f` leaves
    /// nothing that keeps the container "mounted": the collector unmounts it once the lease
    /// is void. Unmounted afterwards unless someone else still uses it.
    pub fn with_rootfs<T, E: From<ContainerError>>(
        &self,
        c: &Container,
        f: impl FnOnce(&std::path::Path) -> Result<T, E>,
    ) -> Result<T, E> {
        let lease = self.lease();
        if let Some(l) = &lease {
            l.hold(Held::Container, &c.id)
                .map_err(ContainerError::from)?;
        }
        let root = self
            .driver
            .mount(&c.cache_id)
            .map_err(ContainerError::from)?;
        crate::failpoint::pause("rootfs-held");
        let r = f(&root);
        drop(lease);
        self.unmount_if_unused(c)?;
        r
    }

    /// Drop one mount reference (`strata umount`, a stopped container); unmount when none
    /// remain and no process holds the container mounted (or when `force`).
    pub fn unmount(&self, c: &Container, force: bool) -> Result<(), ContainerError> {
        self.meta.write(|tx| -> Result<(), ContainerError> {
            tx.execute(
                "UPDATE containers SET mounts = CASE WHEN ?2 OR mounts <= 1 THEN 0 ELSE mounts - 1 END WHERE id=?1",
                params![c.id, force],
            )?;
            Ok(())
        })?;
        if force {
            self.driver.unmount(&c.cache_id)?;
            return Ok(());
        }
        self.unmount_if_unused(c)
    }

    /// Unmount when no `mounts` reference and no lease holds the container. Decided and done
    /// inside one write transaction: a process that takes a hold (a write) either comes
    /// before, and is seen, or after, and mounts anew.
    fn unmount_if_unused(&self, c: &Container) -> Result<(), ContainerError> {
        self.meta.write(|tx| -> Result<(), ContainerError> {
            let mounts: i64 = tx
                .query_row(
                    "SELECT mounts FROM containers WHERE id=?1",
                    params![c.id],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            let held: bool = tx.query_row(
                &format!("SELECT {}", crate::lease::held_sql(Held::Container, "?1")),
                params![c.id],
                |r| r.get(0),
            )?;
            if mounts == 0 && !held {
                self.driver.unmount(&c.cache_id)?;
            }
            Ok(())
        })
    }

    /// Remove a container: mark it `removing` (held by this process's lease), delete its
    /// files, delete the record last. Killed at any point, the record is still there: `rm`
    /// again, or the collector once the lease is void, finishes the job, and nothing is left
    /// that no record names.
    pub fn remove(&self, c: &Container) -> Result<(), ContainerError> {
        let lease = self.lease();
        self.meta.write(|tx| -> Result<(), ContainerError> {
            tx.execute(
                "UPDATE containers SET state='removing' WHERE id=?1",
                params![c.id],
            )?;
            if let Some(l) = &lease {
                l.hold_in(tx, Held::Container, &c.id)?;
            }
            Ok(())
        })?;
        crate::failpoint::pause("container-removing");
        self.remove_files(c)?;
        // Unsynced: lost in a power cut, the record stays `removing` with its lease void, and
        // the collector finishes the removal.
        self.meta
            .write_unsynced(|tx| -> Result<(), ContainerError> {
                if tx.execute("DELETE FROM containers WHERE id=?1", params![c.id])? > 0 {
                    crate::events::record(
                        tx,
                        "container",
                        "destroy",
                        &c.id,
                        &[("image", &c.image_ref), ("name", &c.name)],
                    )?;
                }
                Ok(())
            })?;
        Ok(())
    }

    fn remove_files(&self, c: &Container) -> Result<(), ContainerError> {
        self.driver.remove(&c.cache_id)?;
        // Records made before init layers have none: removing a missing layer is a no-op.
        self.driver.remove(&init_layer::id_for(&c.cache_id))?;
        if let Some(root) = &self.root {
            let dir = root.join("containers").join(&c.id);
            // Staged bind sources (host directories) must be detached first: deleting the
            // container directory must never descend into a host directory.
            let staging = dir.join("mounts");
            crate::runtime::mounts::remove_staging(&staging)
                .map_err(|e| DriverError::io("removing", &staging, e))?;
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(DriverError::io("removing", dir, e).into());
                }
                _ => {}
            }
        }
        Ok(())
    }
}
