//! A container's mounts, store side: the `-v`/`--mount`/`--tmpfs`/`--volumes-from` arguments
//! and the image's VOLUMEs turned into `MountPoint`s at create (named volumes created if
//! missing, anonymous ones made), Docker's copy-up into empty volumes, the spec mounts at
//! start, and the removal of anonymous volumes with their container.

use super::{Engine, EngineError, io_err};
use crate::container::{Container, RunConfig};
use crate::lease::Lease;
use crate::runtime::mounts;
use crate::volume::{self, MountPoint, NewVolume, Volume, VolumeError, VolumeStore};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

impl From<VolumeError> for EngineError {
    fn from(e: VolumeError) -> Self {
        match e {
            VolumeError::Meta(m) => EngineError::Meta(m),
            e => EngineError::Invalid(e.to_string()),
        }
    }
}

fn invalid(msg: String) -> EngineError {
    EngineError::Invalid(msg)
}

fn is_mode(m: &str) -> bool {
    m.split(',').filter(|o| !o.is_empty()).all(|o| {
        [
            "ro",
            "rw",
            "z",
            "Z",
            "nocopy",
            "private",
            "rprivate",
            "shared",
            "rshared",
            "slave",
            "rslave",
            "consistent",
            "cached",
            "delegated",
        ]
        .contains(&o)
    })
}

fn check_dest(d: &str, spec: &str) -> Result<(), EngineError> {
    if !d.starts_with('/') {
        return Err(invalid(format!(
            "invalid mount config for type \"volume\": invalid mount path: '{d}' mount path must be absolute ({spec})"
        )));
    }
    if d == "/" {
        return Err(invalid(format!(
            "invalid specification: destination can't be '/' ({spec})"
        )));
    }
    Ok(())
}

/// A parsed mount request, before volumes exist.
struct Request {
    mp: MountPoint,
    /// A named (or, empty, anonymous) volume to create if missing.
    volume: Option<String>,
    /// `-v` binds create a missing host directory; `--mount` binds do not (as Docker).
    create_source: bool,
}

fn parse_v(spec: &str) -> Result<Request, EngineError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [d, m] if is_mode(m) && !m.is_empty() => ("", *d, *m),
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => return Err(invalid(format!("invalid volume specification: '{spec}'"))),
    };
    if !is_mode(mode) {
        return Err(invalid(format!(
            "invalid mode: {mode} (in volume specification '{spec}')"
        )));
    }
    check_dest(dst, spec)?;
    let opts: Vec<&str> = mode.split(',').filter(|o| !o.is_empty()).collect();
    let rw = !opts.contains(&"ro");
    let mut mp = MountPoint {
        destination: clean(dst),
        rw,
        mode: mode.to_string(),
        no_copy: opts.contains(&"nocopy"),
        ..Default::default()
    };
    if src.starts_with('/') {
        mp.kind = "bind".into();
        mp.source = clean(src);
        mp.propagation = "rprivate".into();
        return Ok(Request {
            mp,
            volume: None,
            create_source: true,
        });
    }
    mp.kind = "volume".into();
    mp.driver = "local".into();
    if src.is_empty() {
        mp.anonymous = true;
    } else {
        if !volume::valid_name(src) {
            return Err(VolumeError::BadName(src.to_string()).into());
        }
        if mp.mode.is_empty() {
            mp.mode = "z".into();
        }
    }
    Ok(Request {
        mp,
        volume: Some(src.to_string()),
        create_source: false,
    })
}

fn parse_mount(spec: &str) -> Result<Request, EngineError> {
    let mut kind = "volume".to_string();
    let (mut src, mut dst) = (String::new(), String::new());
    let (mut ro, mut nocopy) = (false, false);
    let mut tmpfs = Vec::new();
    let truthy = |v: &str| matches!(v, "" | "1" | "true");
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => kind = v.to_string(),
            "source" | "src" => src = v.to_string(),
            "destination" | "dst" | "target" => dst = v.to_string(),
            "readonly" | "ro" => ro = truthy(v),
            "volume-nocopy" => nocopy = truthy(v),
            "tmpfs-size" => tmpfs.push(format!("size={v}")),
            "tmpfs-mode" => tmpfs.push(format!("mode={v}")),
            "bind-propagation" | "consistency" | "volume-driver" | "volume-label"
            | "volume-opt" | "bind-nonrecursive" => {}
            _ => return Err(invalid(format!("unexpected key '{k}' in '{field}'"))),
        }
    }
    if dst.is_empty() {
        return Err(invalid(format!(
            "invalid argument \"{spec}\" for \"--mount\" flag: target is required"
        )));
    }
    check_dest(&dst, spec)?;
    let mut mp = MountPoint {
        kind: kind.clone(),
        destination: clean(&dst),
        rw: !ro,
        no_copy: nocopy,
        ..Default::default()
    };
    match kind.as_str() {
        "volume" => {
            mp.driver = "local".into();
            mp.anonymous = src.is_empty();
            if !src.is_empty() {
                if !volume::valid_name(&src) {
                    return Err(VolumeError::BadName(src).into());
                }
                mp.mode = "z".into();
            }
            Ok(Request {
                mp,
                volume: Some(src),
                create_source: false,
            })
        }
        "bind" => {
            if !src.starts_with('/') {
                return Err(invalid(format!(
                    "invalid mount config for type \"bind\": invalid mount path: '{src}' mount path must be absolute"
                )));
            }
            mp.source = clean(&src);
            mp.propagation = "rprivate".into();
            Ok(Request {
                mp,
                volume: None,
                create_source: false,
            })
        }
        "tmpfs" => {
            mp.tmpfs_options = tmpfs.join(",");
            Ok(Request {
                mp,
                volume: None,
                create_source: false,
            })
        }
        k => Err(invalid(format!(
            "mount type {k:?} is not supported (volume, bind, tmpfs)"
        ))),
    }
}

fn parse_tmpfs(spec: &str) -> Result<Request, EngineError> {
    let (dst, opts) = spec.split_once(':').unwrap_or((spec, ""));
    check_dest(dst, spec)?;
    Ok(Request {
        mp: MountPoint {
            kind: "tmpfs".into(),
            destination: clean(dst),
            rw: !opts.split(',').any(|o| o == "ro"),
            tmpfs_options: opts.to_string(),
            tmpfs_flag: true,
            ..Default::default()
        },
        volume: None,
        create_source: false,
    })
}

/// `/a//b/` → `/a/b` (Docker compares destinations cleaned).
fn clean(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

impl Engine {
    pub fn volumes(&self) -> VolumeStore<'_> {
        VolumeStore::new(&self.meta, &self.root, self.session_token())
    }

    /// Turn the mount arguments of `config` and the image's VOLUMEs into `config.mounts`:
    /// volumes are created (or found) and held by `lease` until the container record that
    /// names them is committed.
    pub(crate) fn resolve_mounts(
        &self,
        config: &mut RunConfig,
        image_volumes: &[String],
        lease: &Lease,
    ) -> Result<(), EngineError> {
        let mut reqs = Vec::new();
        for s in config.binds.iter().chain(&config.volumes) {
            reqs.push(parse_v(s)?);
        }
        for s in &config.mount_args {
            reqs.push(parse_mount(s)?);
        }
        for s in &config.tmpfs {
            reqs.push(parse_tmpfs(s)?);
        }
        let mut seen = std::collections::HashSet::new();
        for r in &reqs {
            if !seen.insert(r.mp.destination.clone()) {
                return Err(invalid(format!(
                    "Duplicate mount point: {}",
                    r.mp.destination
                )));
            }
        }
        // --volumes-from: every volume and bind of the other container, at the same place.
        for from in &config.volumes_from {
            let (name, mode) = from.split_once(':').unwrap_or((from, ""));
            if !matches!(mode, "" | "ro" | "rw") {
                return Err(invalid(format!("invalid mode for volumes-from: {mode}")));
            }
            let other = self.containers().get(name)?;
            for m in other.config.mounts.iter().filter(|m| m.kind != "tmpfs") {
                if !seen.insert(m.destination.clone()) {
                    continue;
                }
                let mut mp = m.clone();
                mp.anonymous = false;
                match mode {
                    "ro" => mp.rw = false,
                    "rw" => mp.rw = true,
                    _ => {}
                }
                let volume = (mp.kind == "volume").then(|| mp.name.clone());
                reqs.push(Request {
                    mp,
                    volume,
                    create_source: false,
                });
            }
        }
        for d in image_volumes {
            let d = clean(d);
            if seen.insert(d.clone()) {
                reqs.push(Request {
                    mp: MountPoint {
                        kind: "volume".into(),
                        destination: d,
                        driver: "local".into(),
                        rw: true,
                        anonymous: true,
                        ..Default::default()
                    },
                    volume: Some(String::new()),
                    create_source: false,
                });
            }
        }
        let store = self.volumes();
        let mut out = Vec::new();
        for r in reqs {
            let mut mp = r.mp;
            if let Some(name) = r.volume {
                let v = store.create(
                    NewVolume {
                        name: (!name.is_empty()).then_some(name.as_str()),
                        driver: "local",
                        labels: BTreeMap::new(),
                        options: BTreeMap::new(),
                        anonymous: name.is_empty(),
                    },
                    lease,
                )?;
                mp.source = store.mountpoint(&v.name).to_string_lossy().into_owned();
                mp.name = v.name;
            } else if mp.kind == "bind" && fs::symlink_metadata(&mp.source).is_err() {
                if !r.create_source {
                    return Err(invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        mp.source
                    )));
                }
                fs::create_dir_all(&mp.source)
                    .map_err(io_err(format!("creating {}", mp.source)))?;
            }
            out.push(mp);
        }
        config.mounts = out;
        Ok(())
    }

    /// Docker's copy-up, right after the container record is committed (its volumes still
    /// leased): a volume mount whose volume is empty receives what the image has at the
    /// destination — owners, modes, times, symlinks, xattrs; the volume root takes the image
    /// directory's owner and mode. A non-empty volume is left alone; nocopy, binds and tmpfs
    /// never copy. The copy goes to a temporary directory beside `_data` and is renamed over
    /// the empty `_data` at the end, so a kill mid-copy leaves the volume empty (the
    /// collector removes the temporary directory).
    pub(crate) fn copy_up(&self, c: &Container) -> Result<(), EngineError> {
        let store = self.volumes();
        let todo: Vec<&MountPoint> = c
            .config
            .mounts
            .iter()
            .filter(|m| m.kind == "volume" && !m.no_copy)
            .filter(|m| volume::is_empty_dir(&store.mountpoint(&m.name)))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        self.containers()
            .with_rootfs(c, |root| -> Result<(), EngineError> {
                for m in todo {
                    let Ok(src) = mounts::open_in_root(root, &m.destination) else {
                        continue; // nothing there in the image
                    };
                    let src = PathBuf::from(format!("/proc/self/fd/{}", {
                        use std::os::fd::AsRawFd;
                        src.as_raw_fd()
                    }));
                    let Ok(md) = fs::metadata(&src) else { continue };
                    if !md.is_dir() {
                        continue;
                    }
                    copy_into_volume(&store, &m.name, &src, &md)?;
                }
                Ok(())
            })
    }

    /// Every volume with its number of containers (LINKS) and bytes used, for `system df`:
    /// all volumes are measured at once by one pool of threads (`volume::dir_sizes`).
    pub fn volume_usage(&self) -> Result<Vec<(Volume, usize, u64)>, EngineError> {
        let store = self.volumes();
        let list = store.list()?;
        let paths: Vec<PathBuf> = list.iter().map(|v| store.mountpoint(&v.name)).collect();
        let sizes = volume::dir_sizes(&paths);
        let mut out = Vec::new();
        for (v, size) in list.into_iter().zip(sizes) {
            let links = store.users(&v.name)?.len();
            out.push((v, links, size));
        }
        Ok(out)
    }

    /// `rm -v`, `run --rm`: the container's anonymous volumes go (a volume another container
    /// still uses stays). Named volumes are never removed here.
    pub fn remove_anonymous_volumes(&self, c: &Container) {
        remove_anonymous(&self.volumes(), c);
    }
}

/// See `Engine::remove_anonymous_volumes` (also called by the monitor for `--rm`).
pub fn remove_anonymous(store: &VolumeStore, c: &Container) {
    for m in c.config.mounts.iter().filter(|m| m.anonymous) {
        let _ = store.remove(&m.name);
    }
}

fn copy_into_volume(
    store: &VolumeStore,
    name: &str,
    src: &Path,
    md: &fs::Metadata,
) -> Result<(), EngineError> {
    let data = store.mountpoint(name);
    let v = store.get(name)?;
    if v.options.contains_key("type") {
        // A filesystem of its own is mounted on _data: copy straight into it.
        store.ensure_mounted(&v)?;
        return Ok(crate::driver::vfs::copy_tree(src, &data, md)?);
    }
    let tmp = store
        .dir()
        .join(name)
        .join(format!("_copyup.{}", crate::atomic_file::random_hex(6)));
    fs::create_dir(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    let r = (|| -> Result<(), EngineError> {
        crate::driver::vfs::copy_tree(src, &tmp, md)?;
        crate::failpoint::pause("volume-copied-up");
        match fs::rename(&tmp, &data) {
            Ok(()) => Ok(()),
            // Someone wrote into the volume meanwhile: it is not empty, so no copy (Docker).
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
            Err(e) => Err(io_err(format!("renaming {}", tmp.display()))(e)),
        }
    })();
    if tmp.exists() {
        let _ = fs::remove_dir_all(&tmp);
    }
    r
}

/// The spec mounts of a container at start, on its mounted root filesystem `rootfs`. Bind
/// sources are staged under `staging` (see `runtime::mounts`); the caller detaches them once
/// the runtime has started the container.
pub fn spec_mounts(
    store: &VolumeStore,
    rootfs: &Path,
    c: &Container,
    staging: &Path,
) -> Result<Vec<Value>, EngineError> {
    mounts::detach_all(staging);
    let mut out: Vec<(PathBuf, Value)> = Vec::new();
    for (i, m) in c.config.mounts.iter().enumerate() {
        let what = |e: std::io::Error| {
            EngineError::Invalid(format!(
                "mounting {} on {}: {e}",
                if m.source.is_empty() {
                    &m.kind
                } else {
                    &m.source
                },
                m.destination
            ))
        };
        match m.kind.as_str() {
            "volume" => {
                let v: Volume = store.get(&m.name)?;
                store.ensure_mounted(&v)?;
                let src = store.mountpoint(&v.name);
                let dest =
                    mounts::prepare_destination(rootfs, &m.destination, false).map_err(what)?;
                out.push((
                    src.clone(),
                    mounts::oci_mount("bind", &src, &dest, m.rw, &[]),
                ));
            }
            "bind" => {
                let (fd, is_dir) = mounts::open_source(Path::new(&m.source)).map_err(what)?;
                let stage = staging.join(i.to_string());
                mounts::stage_bind(&fd, &stage, is_dir).map_err(what)?;
                let dest =
                    mounts::prepare_destination(rootfs, &m.destination, !is_dir).map_err(what)?;
                out.push((
                    stage.clone(),
                    mounts::oci_mount("bind", &stage, &dest, m.rw, &[]),
                ));
            }
            _ => {
                let mut opts: Vec<String> = vec!["nosuid".into(), "nodev".into()];
                if m.tmpfs_flag {
                    opts.push("noexec".into());
                }
                opts.extend(
                    m.tmpfs_options
                        .split(',')
                        .filter(|o| !o.is_empty() && *o != "ro" && *o != "rw")
                        .map(str::to_string),
                );
                let dest =
                    mounts::prepare_destination(rootfs, &m.destination, false).map_err(what)?;
                out.push((
                    PathBuf::new(),
                    mounts::oci_mount("tmpfs", Path::new(""), &dest, m.rw, &opts),
                ));
            }
        }
    }
    mounts::sort_mounts(&mut out);
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_specs() {
        let r = parse_v("/code").unwrap();
        assert!(r.mp.anonymous && r.mp.kind == "volume" && r.mp.rw);
        let r = parse_v("myvol:/data:ro").unwrap();
        assert_eq!(
            (r.volume.as_deref(), r.mp.rw, r.mp.mode.as_str()),
            (Some("myvol"), false, "ro")
        );
        let r = parse_v("/host:/data").unwrap();
        assert_eq!(
            (r.mp.kind.as_str(), r.mp.propagation.as_str()),
            ("bind", "rprivate")
        );
        let r = parse_v("/x:ro").unwrap();
        assert!(r.mp.anonymous && !r.mp.rw);
        assert!(parse_v("a:b").is_err());
        assert!(parse_v("x:/d:bogus").is_err());
        let r = parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m").unwrap();
        assert_eq!(r.mp.tmpfs_options, "size=1m");
        let r = parse_mount("type=volume,src=v1,dst=/d,readonly,volume-nocopy").unwrap();
        assert!(!r.mp.rw && r.mp.no_copy);
        assert!(parse_mount("type=bind,src=rel,dst=/d").is_err());
    }
}
