//! A container's own mounts (volumes, binds, tmpfs) in the OCI spec, with the two defences an
//! image or a racing user could otherwise defeat:
//!
//! - Destinations are resolved inside the root filesystem (`openat2(RESOLVE_IN_ROOT)`), created
//!   there if missing, and written into the spec as the symlink-free path they resolved to: an
//!   image whose `/data` is a symlink to `/etc` or `../../../../tmp` gets the mount on its own
//!   `/etc` or `/tmp`, never on the host's.
//! - A bind source is opened once (`O_PATH`) and bind-mounted through that descriptor onto a
//!   private staging directory of the container (`ROOT/containers/<id>/mounts/<n>`), which is
//!   what the spec names: replacing a path component with a symlink after the open cannot
//!   redirect the mount. The staging mounts are detached once the runtime has started the
//!   container (it has its own copies by then) and before the container directory is removed.

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::mount::{MountPropagationFlags, UnmountFlags};
use serde_json::{Value, json};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

const RES: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
            r => return r.map_err(Into::into),
        }
    }
}

/// The path `fd` refers to, relative to `root` ("/" for the root itself). None if it is not
/// under `root` (cannot happen with RESOLVE_IN_ROOT, checked anyway).
fn path_in_root(root: &Path, fd: &OwnedFd) -> io::Result<Option<String>> {
    let real = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    let root = fs::canonicalize(root)?;
    Ok(real
        .strip_prefix(&root)
        .ok()
        .map(|rel| format!("/{}", rel.to_string_lossy())))
}

/// Open `path` inside `root` (every symlink resolved in the root) without creating anything.
pub fn open_in_root(root: &Path, path: &str) -> io::Result<OwnedFd> {
    let dir = rfs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    retry(|| {
        rfs::openat2(
            &dir,
            path,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            RES,
        )
    })
}

/// `mkdir -p` of `path` inside `root`: each component is looked up from the root with
/// RESOLVE_IN_ROOT; a missing one is created, and a dangling symlink is followed (inside the
/// root) by creating its target, as the runtime would have resolved it. Returns the directory.
fn mkdir_all_in_root(root: &Path, path: &str) -> io::Result<OwnedFd> {
    let rootfd = rfs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let dirfl = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let split = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_string)
            .collect()
    };
    let mut todo: std::collections::VecDeque<String> = split(path).into();
    let mut cur = String::from("/");
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            cur = Path::new(&cur)
                .parent()
                .map_or("/".into(), |p| p.to_string_lossy().into_owned());
            continue;
        }
        let next = format!("{}/{c}", cur.trim_end_matches('/'));
        match retry(|| rfs::openat2(&rootfd, next.as_str(), dirfl, Mode::empty(), RES)) {
            Ok(fd) => {
                cur = path_in_root(root, &fd)?
                    .ok_or_else(|| io::Error::other(format!("{path}: outside the root")))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent =
                    retry(|| rfs::openat2(&rootfd, cur.as_str(), dirfl, Mode::empty(), RES))?;
                match rfs::readlinkat(&parent, c.as_str(), Vec::new()) {
                    Ok(target) => {
                        hops += 1;
                        if hops > 40 {
                            return Err(io::Error::other(format!("{path}: too many symlinks")));
                        }
                        let t = target.to_string_lossy().into_owned();
                        if t.starts_with('/') {
                            cur = "/".into();
                        }
                        for (i, tc) in split(&t).into_iter().enumerate() {
                            todo.insert(i, tc);
                        }
                    }
                    Err(_) => {
                        match rfs::mkdirat(&parent, c.as_str(), Mode::from_raw_mode(0o755)) {
                            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                            Err(e) => return Err(e.into()),
                        }
                        cur = next;
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    retry(|| rfs::openat2(&rootfd, cur.as_str(), dirfl, Mode::empty(), RES))
}

/// Make `dest` exist inside `root` (a directory, or an empty file when `file`: a bind of a
/// file), resolving every component in the root, and return the symlink-free path it resolved
/// to, for the spec.
pub fn prepare_destination(root: &Path, dest: &str, file: bool) -> io::Result<String> {
    let fd = if file {
        let (parent, name) = dest
            .trim_end_matches('/')
            .rsplit_once('/')
            .unwrap_or(("", dest));
        let dir = mkdir_all_in_root(root, parent)?;
        let dir_path = path_in_root(root, &dir)?
            .ok_or_else(|| io::Error::other(format!("{dest}: outside the root")))?;
        let full = format!("{}/{name}", dir_path.trim_end_matches('/'));
        match open_in_root(root, &full) {
            Ok(fd) => fd,
            Err(_) => {
                let dirfd = open_in_root(root, &dir_path)?;
                // Created without following anything: a dangling symlink there is refused.
                let dirfd = retry(|| {
                    rfs::openat(
                        &dirfd,
                        ".",
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                })?;
                retry(|| {
                    rfs::openat(
                        &dirfd,
                        name,
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::WRONLY
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    )
                })?;
                open_in_root(root, &full)?
            }
        }
    } else {
        mkdir_all_in_root(root, dest)?
    };
    path_in_root(root, &fd)?.ok_or_else(|| io::Error::other(format!("{dest}: outside the root")))
}

/// Bind-mount the already opened `src` onto `staging` (created here) through its descriptor,
/// recursively, and make the copy private so nothing propagates between it and its origin.
pub fn stage_bind(src: &OwnedFd, staging: &Path, is_dir: bool) -> io::Result<()> {
    detach(staging);
    if is_dir {
        fs::create_dir_all(staging)?;
    } else {
        if let Some(p) = staging.parent() {
            fs::create_dir_all(p)?;
        }
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(staging)?;
    }
    let by_fd = format!("/proc/self/fd/{}", src.as_fd().as_raw_fd());
    rustix::mount::mount_bind_recursive(by_fd.as_str(), staging)?;
    rustix::mount::mount_change(
        staging,
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )?;
    Ok(())
}

/// Detach whatever is mounted on `p` (no error if nothing is).
pub fn detach(p: &Path) {
    while crate::volume::is_mountpoint(p) {
        if rustix::mount::unmount(p, UnmountFlags::DETACH).is_err() {
            break;
        }
    }
}

/// Detach every staging mount under `dir` (`ROOT/containers/<id>/mounts`). Returns false if
/// one is still mounted (then nothing under it may be deleted).
pub fn detach_all(dir: &Path) -> bool {
    let Ok(rd) = fs::read_dir(dir) else {
        return true;
    };
    let mut clean = true;
    for e in rd.flatten() {
        let p = e.path();
        detach(&p);
        clean &= !crate::volume::is_mountpoint(&p);
    }
    clean
}

/// Remove the staging directory `dir` without ever descending into a mount: each entry is
/// detached, then removed with `rmdir`/`unlink` only, so an entry still mounted (a host
/// directory) makes this fail instead of emptying it.
pub fn remove_staging(dir: &Path) -> io::Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in rd {
        let p = e?.path();
        detach(&p);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs::remove_dir(&p)?,
            Ok(_) => fs::remove_file(&p)?,
            Err(_) => {}
        }
    }
    fs::remove_dir(dir)
}

/// Open a bind source on the host once (symlinks the user put in the path are followed now,
/// and only now).
pub fn open_source(src: &Path) -> io::Result<(OwnedFd, bool)> {
    let fd = rfs::open(src, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    let st = rfs::fstat(&fd)?;
    let is_dir = rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory;
    Ok((fd, is_dir))
}

/// One mount in the spec: a bind of `source` (a volume's `_data` or a staging dir) or a tmpfs.
pub fn oci_mount(kind: &str, source: &Path, dest: &str, rw: bool, tmpfs_opts: &[String]) -> Value {
    if kind == "tmpfs" {
        let mut o: Vec<String> = tmpfs_opts.to_vec();
        if !rw {
            o.push("ro".into());
        }
        return json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": o});
    }
    let mut o = vec!["rbind".to_string(), "rprivate".to_string()];
    o.push(if rw { "rw" } else { "ro" }.into());
    json!({"destination": dest, "type": "bind", "source": source, "options": o})
}

/// Parents before children (Docker sorts by the number of path components).
pub fn sort_mounts(mounts: &mut [(PathBuf, Value)]) {
    mounts.sort_by_key(|(_, m)| {
        m["destination"]
            .as_str()
            .unwrap_or("")
            .split('/')
            .filter(|c| !c.is_empty())
            .count()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("data")).unwrap();
        std::os::unix::fs::symlink("../../../../tmp/x", root.join("up")).unwrap();
        assert_eq!(prepare_destination(&root, "/data", false).unwrap(), "/etc");
        assert_eq!(
            prepare_destination(&root, "/up/y", false).unwrap(),
            "/tmp/x/y"
        );
        assert!(root.join("tmp/x/y").is_dir());
        assert_eq!(
            prepare_destination(&root, "/data/f.conf", true).unwrap(),
            "/etc/f.conf"
        );
        assert!(root.join("etc/f.conf").is_file());
    }
}
