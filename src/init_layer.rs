//! A container's init layer (Docker's `<id>-init`): the mount points the runtime needs, kept
//! in a layer of their own between the image's top layer and the container's writable layer.
//!
//! Without it the runtime creates /proc, /sys, /dev and the /etc files it bind-mounts in the
//! writable layer itself, so every container "changed" them: `diff` lists them and `commit`
//! writes empty mount points into the new image. With it the writable layer starts as an
//! exact view of image + init layer and holds only what the container wrote.
//!
//! The entries and the rules are Docker's (`daemon/initlayer`): every component of each path
//! is unlinked first (a symlink or file in the image at that place is replaced; a directory
//! stays, `unlink` fails on it), then what is missing is created. All of it goes through
//! descriptors opened without following symlinks, so an image's symlink (`/etc -> /host`)
//! never leads a creation outside the layer. Docker's `/.dockerenv` is left out: strata is not
//! Docker and writes no such marker.

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::os::fd::OwnedFd;
use std::path::Path;

/// The init layer's cache-id is the writable layer's plus this suffix, as Docker names it.
pub const SUFFIX: &str = "-init";

/// The cache-id of the init layer under writable layer `cache_id`.
pub fn id_for(cache_id: &str) -> String {
    format!("{cache_id}{SUFFIX}")
}

#[derive(Debug, thiserror::Error)]
#[error("preparing the init layer: {op} {path}: {source}")]
pub struct InitLayerError {
    op: &'static str,
    path: String,
    source: std::io::Error,
}

enum Entry {
    Dir,
    File,
    Symlink(&'static str),
}

/// What the runtime mounts over (src/runtime/spec.rs) plus Docker's /dev/console and
/// /etc/mtab, so a container sees the same tree it would under Docker.
const ENTRIES: &[(&str, Entry)] = &[
    ("dev/pts", Entry::Dir),
    ("dev/shm", Entry::Dir),
    ("proc", Entry::Dir),
    ("sys", Entry::Dir),
    ("etc/resolv.conf", Entry::File),
    ("etc/hosts", Entry::File),
    ("etc/hostname", Entry::File),
    ("dev/console", Entry::File),
    ("etc/mtab", Entry::Symlink("/proc/mounts")),
];

/// Directories and (empty) files are 0755, owned by the caller (root), as Docker makes them.
const MODE: u32 = 0o755;

/// Populate the mounted init layer at `root` (its full view: image plus the layer itself).
pub fn populate(root: &Path) -> Result<(), InitLayerError> {
    let err = |op: &'static str, path: &'static str| {
        move |e: Errno| InitLayerError {
            op,
            path: format!("/{path}"),
            source: e.into(),
        }
    };
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let top = rfs::open(root, dir_flags, Mode::empty()).map_err(err("opening", ""))?;
    for (path, entry) in ENTRIES {
        let (parents, name) = path.rsplit_once('/').unwrap_or(("", path));
        let mut dir: OwnedFd =
            rfs::openat(&top, ".", dir_flags, Mode::empty()).map_err(err("opening", ""))?;
        for comp in parents.split('/').filter(|c| !c.is_empty()) {
            dir = child_dir(&dir, comp).map_err(err("creating", path))?;
        }
        // Docker replaces whatever non-directory the image has there.
        let _ = rfs::unlinkat(&dir, name, AtFlags::empty());
        match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => continue, // a directory the image has: kept
            Err(Errno::NOENT) => {}
            Err(e) => return Err(err("checking", path)(e)),
        }
        let made = match entry {
            Entry::Dir => rfs::mkdirat(&dir, name, Mode::from_raw_mode(MODE)),
            Entry::File => rfs::openat(
                &dir,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(MODE),
            )
            .map(drop),
            Entry::Symlink(target) => rfs::symlinkat(*target, &dir, name),
        };
        made.map_err(err("creating", path))?;
    }
    Ok(())
}

/// Directory `name` in `dir`, made when missing; a non-directory there is removed first.
fn child_dir(dir: &OwnedFd, name: &str) -> Result<OwnedFd, Errno> {
    let fl = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let _ = rfs::unlinkat(dir, name, AtFlags::empty());
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(MODE)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e),
    }
    rfs::openat(dir, name, fl, Mode::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn makes_the_mount_points_in_an_empty_root() {
        let d = tempfile::tempdir().unwrap();
        populate(d.path()).unwrap();
        for p in ["dev/pts", "dev/shm", "proc", "sys"] {
            assert!(d.path().join(p).is_dir(), "{p}");
        }
        for p in [
            "etc/hosts",
            "etc/hostname",
            "etc/resolv.conf",
            "dev/console",
        ] {
            let m = fs::symlink_metadata(d.path().join(p)).unwrap();
            assert!(m.is_file() && m.len() == 0, "{p}");
        }
        assert_eq!(
            fs::read_link(d.path().join("etc/mtab")).unwrap(),
            Path::new("/proc/mounts")
        );
    }

    #[test]
    fn keeps_directories_replaces_files_and_never_follows_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir(r.join("proc")).unwrap();
        fs::write(r.join("proc/keep"), b"k").unwrap();
        fs::set_permissions(
            r.join("proc"),
            std::os::unix::fs::PermissionsExt::from_mode(0o555),
        )
        .unwrap();
        // /etc a symlink out of the root, /sys a file, /dev a symlink to a directory.
        symlink(outside.path(), r.join("etc")).unwrap();
        fs::write(r.join("sys"), b"not a dir").unwrap();
        symlink("/", r.join("dev")).unwrap();
        populate(r).unwrap();
        assert_eq!(
            fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing outside"
        );
        assert_eq!(fs::read(r.join("proc/keep")).unwrap(), b"k");
        assert_eq!(fs::metadata(r.join("proc")).unwrap().mode() & 0o777, 0o555);
        for p in ["etc", "sys", "dev"] {
            assert!(fs::symlink_metadata(r.join(p)).unwrap().is_dir(), "{p}");
        }
        assert!(r.join("etc/hosts").is_file());
        assert!(r.join("dev/pts").is_dir());
    }

    #[test]
    fn replaces_an_image_file_with_an_empty_one() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/hosts"), b"1.2.3.4 x").unwrap();
        symlink("/etc/elsewhere", d.path().join("etc/hostname")).unwrap();
        populate(d.path()).unwrap();
        assert_eq!(fs::read(d.path().join("etc/hosts")).unwrap(), b"");
        assert!(
            fs::symlink_metadata(d.path().join("etc/hostname"))
                .unwrap()
                .is_file()
        );
    }
}
