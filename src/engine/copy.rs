//! `strata cp`: copying files and directories between a container's root filesystem and the
//! host, both ways, with `docker cp`'s rules for the destination (an existing directory
//! receives the source by name; `SRC/.` copies a directory's contents).
//!
//! Containment: the container's root is opened once and every container path is resolved
//! with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` on it, so symlinks in the
//! container (absolute or relative, `..` included) resolve inside the container, never on the
//! host. Below the resolved directory everything is done with `*at` calls on directory fds,
//! never following a symlink (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`): symlinks are copied as
//! symlinks; an existing non-directory at a destination name is removed and created anew
//! (`O_EXCL`), so a symlink planted there is replaced, not written through. Only regular files
//! are ever opened for reading or writing (a device node in the container is recreated as a
//! node, never opened).

use super::{Engine, EngineError};
use crate::container::Container;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps,
    Uid,
};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

fn ioerr(what: String, e: Errno) -> EngineError {
    EngineError::Io {
        what,
        source: e.into(),
    }
}

fn openat2_retry(dir: BorrowedFd<'_>, path: &[u8], fl: OFlags) -> Result<OwnedFd, Errno> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    let mut tries = 0;
    loop {
        match rfs::openat2(dir, path, fl | OFlags::CLOEXEC, Mode::empty(), IN_ROOT) {
            Err(Errno::AGAIN | Errno::INTR) if tries < 16 => tries += 1,
            r => return r,
        }
    }
}

/// A container path split for resolution: its components (`.` and empty ones dropped, `..`
/// kept: RESOLVE_IN_ROOT clamps it at the root), and whether it ended in `/.` (contents of a
/// directory) or `/` (must be a directory).
struct CPath {
    comps: Vec<Vec<u8>>,
    contents: bool,
    trailing_slash: bool,
}

fn split_path(p: &[u8]) -> CPath {
    let comps: Vec<Vec<u8>> = p
        .split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect();
    let contents = p == b"." || p.ends_with(b"/.");
    let trailing_slash = p.ends_with(b"/") && p.len() > 1;
    CPath {
        comps,
        contents,
        trailing_slash,
    }
}

fn join_comps(c: &[Vec<u8>]) -> Vec<u8> {
    c.join(&b'/')
}

/// What to copy: entry `name` of directory `parent` (`.` for the directory itself), and the
/// name it takes at the destination when copied into an existing directory.
struct Source {
    parent: OwnedFd,
    name: Vec<u8>,
    base: Vec<u8>,
    contents: bool,
    is_dir: bool,
    shown: String,
}

/// Where to put it: entry `name` of directory `parent` (`.`: the directory itself, when a
/// directory's contents go into an existing directory).
struct Dest {
    parent: OwnedFd,
    name: Vec<u8>,
    shown: String,
}

fn stat_nofollow(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<Stat>, Errno> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn ftype(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Resolves a source path inside the container root `root`.
fn container_source(root: BorrowedFd<'_>, path: &str) -> Result<Source, EngineError> {
    let p = split_path(path.as_bytes());
    let shown = path.to_string();
    let missing = |e: Errno| {
        if e == Errno::NOENT || e == Errno::NOTDIR {
            EngineError::Invalid(format!("Could not find the file {path} in container"))
        } else {
            ioerr(format!("opening {path} in the container"), e)
        }
    };
    let last_dotdot = p.comps.last().is_some_and(|c| c == b"..");
    if p.comps.is_empty() || p.contents || p.trailing_slash || last_dotdot {
        // The directory itself, symlinks (the last one too) resolved inside the root.
        let fd = openat2_retry(root, &join_comps(&p.comps), DIR).map_err(missing)?;
        let base = p
            .comps
            .iter()
            .rev()
            .find(|c| *c != b"..")
            .cloned()
            .unwrap_or_default();
        return Ok(Source {
            parent: fd,
            name: b".".to_vec(),
            contents: p.contents || p.comps.is_empty(),
            base,
            is_dir: true,
            shown,
        });
    }
    let (last, dir) = p.comps.split_last().expect("non-empty");
    let parent = openat2_retry(root, &join_comps(dir), DIR).map_err(missing)?;
    let st = stat_nofollow(parent.as_fd(), last)
        .map_err(missing)?
        .ok_or_else(|| missing(Errno::NOENT))?;
    Ok(Source {
        parent,
        name: last.clone(),
        base: last.clone(),
        contents: false,
        is_dir: ftype(&st) == FileType::Directory,
        shown,
    })
}

fn host_source(path: &Path) -> Result<Source, EngineError> {
    let raw = path.as_os_str().as_bytes();
    let shown = path.display().to_string();
    let p = split_path(raw);
    let open_err = |e: std::io::Error| EngineError::Io {
        what: format!("opening {shown}"),
        source: e,
    };
    let last_dotdot = p.comps.last().is_some_and(|c| c == b"..");
    if p.comps.is_empty() || p.contents || p.trailing_slash || last_dotdot {
        let fd = rfs::open(path, DIR, Mode::empty()).map_err(|e| open_err(e.into()))?;
        let base = std::fs::canonicalize(path)
            .ok()
            .and_then(|c| c.file_name().map(|n| n.as_bytes().to_vec()))
            .unwrap_or_default();
        return Ok(Source {
            parent: fd,
            name: b".".to_vec(),
            contents: p.contents || base.is_empty(),
            base,
            is_dir: true,
            shown,
        });
    }
    let name = path.file_name().expect("has a last component").as_bytes();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let parent = rfs::open(dir, DIR, Mode::empty()).map_err(|e| open_err(e.into()))?;
    let st = stat_nofollow(parent.as_fd(), name)
        .map_err(|e| open_err(e.into()))?
        .ok_or_else(|| open_err(std::io::ErrorKind::NotFound.into()))?;
    Ok(Source {
        parent,
        name: name.to_vec(),
        base: name.to_vec(),
        contents: false,
        is_dir: ftype(&st) == FileType::Directory,
        shown,
    })
}

/// Where `src` goes, given that `dest` is (or is not) an existing directory.
fn place(
    src: &Source,
    dest_dir: Option<OwnedFd>,
    shown: &str,
) -> Result<Option<Dest>, EngineError> {
    Ok(dest_dir.map(|d| Dest {
        parent: d,
        name: if src.contents {
            b".".to_vec()
        } else {
            src.base.clone()
        },
        shown: if src.contents {
            shown.to_string()
        } else {
            format!(
                "{}/{}",
                shown.trim_end_matches('/'),
                String::from_utf8_lossy(&src.base)
            )
        },
    }))
}

/// Resolves a destination inside the container root `root` (mounted at `root_path`).
fn container_dest(
    root: BorrowedFd<'_>,
    root_path: &Path,
    path: &str,
    src: &Source,
) -> Result<Dest, EngineError> {
    let p = split_path(path.as_bytes());
    let rel = join_comps(&p.comps);
    match openat2_retry(root, &rel, OFlags::PATH) {
        Ok(fd) => {
            // Exists (symlinks followed inside the root): find its real path in the container.
            let st = rfs::fstat(&fd).map_err(|e| ioerr(format!("stat {path}"), e))?;
            let real =
                std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| {
                    EngineError::Io {
                        what: format!("resolving {path} in the container"),
                        source: e,
                    }
                })?;
            let canon = real
                .strip_prefix(root_path)
                .map_err(|_| {
                    EngineError::Invalid(format!("{path} resolves outside the container"))
                })?
                .as_os_str()
                .as_bytes()
                .to_vec();
            if ftype(&st) == FileType::Directory {
                let d = openat2_retry(root, &canon, DIR)
                    .map_err(|e| ioerr(format!("opening {path} in the container"), e))?;
                return Ok(place(src, Some(d), path)?.expect("directory"));
            }
            if src.is_dir {
                return Err(EngineError::Invalid(format!(
                    "cannot overwrite non-directory {path} with directory {}",
                    src.shown
                )));
            }
            let cp = split_path(&canon);
            let (last, dir) = cp
                .comps
                .split_last()
                .ok_or_else(|| EngineError::Invalid(format!("{path}: not a valid destination")))?;
            let parent = openat2_retry(root, &join_comps(dir), DIR)
                .map_err(|e| ioerr(format!("opening the directory of {path}"), e))?;
            Ok(Dest {
                parent,
                name: last.clone(),
                shown: path.to_string(),
            })
        }
        Err(Errno::NOENT) => {
            if p.trailing_slash && !src.is_dir {
                return Err(EngineError::Invalid(format!(
                    "no such directory {path} in the container"
                )));
            }
            let Some((last, dir)) = p.comps.split_last().filter(|(l, _)| *l != b"..") else {
                return Err(EngineError::Invalid(format!(
                    "{path}: not a valid destination"
                )));
            };
            let parent = openat2_retry(root, &join_comps(dir), DIR).map_err(|e| {
                if e == Errno::NOENT || e == Errno::NOTDIR {
                    EngineError::Invalid(format!(
                        "no such directory {} in the container",
                        String::from_utf8_lossy(&join_comps(dir))
                    ))
                } else {
                    ioerr(format!("opening the directory of {path}"), e)
                }
            })?;
            Ok(Dest {
                parent,
                name: last.clone(),
                shown: path.to_string(),
            })
        }
        Err(e) => Err(ioerr(format!("resolving {path} in the container"), e)),
    }
}

fn host_dest(path: &Path, src: &Source) -> Result<Dest, EngineError> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            let d = rfs::open(path, DIR, Mode::empty())
                .map_err(|e| ioerr(format!("opening {shown}"), e))?;
            Ok(place(src, Some(d), &shown)?.expect("directory"))
        }
        Ok(_) if src.is_dir => Err(EngineError::Invalid(format!(
            "cannot overwrite non-directory {shown} with directory {}",
            src.shown
        ))),
        Ok(_) | Err(_) => {
            if path.as_os_str().as_bytes().ends_with(b"/") && !src.is_dir {
                return Err(EngineError::Invalid(format!("no such directory {shown}")));
            }
            let name = path
                .file_name()
                .ok_or_else(|| EngineError::Invalid(format!("{shown}: not a valid destination")))?;
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let parent = rfs::open(dir, DIR, Mode::empty())
                .map_err(|e| ioerr(format!("destination directory {}", dir.display()), e))?;
            Ok(Dest {
                parent,
                name: name.as_bytes().to_vec(),
                shown,
            })
        }
    }
}

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Copies entry `sname` of `sp` to entry `dname` of `dp`, recursively, never following a
/// symlink on either side.
struct Copier {
    owner: Owner,
}

/// Who owns the copies.
#[derive(Clone, Copy)]
enum Owner {
    /// The copying process (root): Docker's copy out of a container.
    Caller,
    /// Docker's copy into a container: root.
    Root,
    /// `cp -a`: the source's uid/gid.
    Source,
}

impl Copier {
    fn owner(&self, st: &Stat) -> Option<(u32, u32)> {
        match self.owner {
            Owner::Caller => None,
            Owner::Root => Some((0, 0)),
            Owner::Source => Some((st.st_uid, st.st_gid)),
        }
    }

    fn node(
        &self,
        sp: BorrowedFd<'_>,
        sname: &[u8],
        dp: BorrowedFd<'_>,
        dname: &[u8],
        shown: &Path,
    ) -> Result<(), EngineError> {
        let e = |op: &str, x: Errno| ioerr(format!("{op} {}", shown.display()), x);
        let Some(st) = stat_nofollow(sp, sname).map_err(|x| e("stat source of", x))? else {
            return Ok(()); // vanished meanwhile
        };
        let ft = ftype(&st);
        let existing = stat_nofollow(dp, dname).map_err(|x| e("stat", x))?;
        let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
        if ft != FileType::Directory && ft != FileType::Socket {
            match existing {
                Some(x) if ftype(&x) == FileType::Directory => {
                    return Err(EngineError::Invalid(format!(
                        "cannot overwrite directory {} with non-directory",
                        shown.display()
                    )));
                }
                Some(_) => {
                    rfs::unlinkat(dp, dname, AtFlags::empty()).map_err(|x| e("remove", x))?
                }
                None => {}
            }
        }
        let chown_at = |name: &[u8]| -> Result<(), EngineError> {
            if let Some((u, g)) = self.owner(&st) {
                rfs::chownat(
                    dp,
                    name,
                    Some(Uid::from_raw(u)),
                    Some(Gid::from_raw(g)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|x| e("chown", x))?;
            }
            Ok(())
        };
        match ft {
            FileType::Directory => {
                match existing {
                    Some(x) if ftype(&x) == FileType::Directory => {}
                    Some(_) => {
                        rfs::unlinkat(dp, dname, AtFlags::empty()).map_err(|x| e("remove", x))?;
                        rfs::mkdirat(dp, dname, Mode::from_raw_mode(0o700))
                            .map_err(|x| e("mkdir", x))?;
                    }
                    None => rfs::mkdirat(dp, dname, Mode::from_raw_mode(0o700))
                        .map_err(|x| e("mkdir", x))?,
                }
                let nf = DIR | OFlags::NOFOLLOW;
                let dfd = rfs::openat(dp, dname, nf, Mode::empty()).map_err(|x| e("open", x))?;
                let sfd = rfs::openat(sp, sname, nf, Mode::empty())
                    .map_err(|x| e("open source of", x))?;
                let mut names = Vec::new();
                let mut d = rfs::Dir::read_from(sfd.as_fd()).map_err(|x| e("read", x))?;
                while let Some(ent) = d.read() {
                    let n = ent
                        .map_err(|x| e("read", x))?
                        .file_name()
                        .to_bytes()
                        .to_vec();
                    if n != b"." && n != b".." {
                        names.push(n);
                    }
                }
                names.sort();
                for n in names {
                    let child = shown.join(OsStr::from_bytes(&n));
                    self.node(sfd.as_fd(), &n, dfd.as_fd(), &n, &child)?;
                }
                if let Some((u, g)) = self.owner(&st) {
                    rfs::fchown(&dfd, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))
                        .map_err(|x| e("chown", x))?;
                }
                rfs::fchmod(&dfd, mode).map_err(|x| e("chmod", x))?;
                rfs::futimens(&dfd, &times(&st)).map_err(|x| e("set times of", x))?;
            }
            FileType::RegularFile => {
                let sf = rfs::openat(
                    sp,
                    sname,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|x| e("open source of", x))?;
                let df = rfs::openat(
                    dp,
                    dname,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|x| e("create", x))?;
                let (mut sf, mut df) = (File::from(sf), File::from(df));
                std::io::copy(&mut sf, &mut df).map_err(|x| EngineError::Io {
                    what: format!("copying {}", shown.display()),
                    source: x,
                })?;
                if let Some((u, g)) = self.owner(&st) {
                    rfs::fchown(&df, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))
                        .map_err(|x| e("chown", x))?;
                }
                rfs::fchmod(&df, mode).map_err(|x| e("chmod", x))?;
                rfs::futimens(&df, &times(&st)).map_err(|x| e("set times of", x))?;
            }
            FileType::Symlink => {
                let target =
                    rfs::readlinkat(sp, sname, Vec::new()).map_err(|x| e("readlink", x))?;
                rfs::symlinkat(target.as_bytes(), dp, dname).map_err(|x| e("symlink", x))?;
                chown_at(dname)?;
                let _ = rfs::utimensat(dp, dname, &times(&st), AtFlags::SYMLINK_NOFOLLOW);
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                rfs::mknodat(dp, dname, ft, mode, st.st_rdev).map_err(|x| e("mknod", x))?;
                chown_at(dname)?;
                let _ = rfs::utimensat(dp, dname, &times(&st), AtFlags::SYMLINK_NOFOLLOW);
            }
            _ => {} // sockets are not copied
        }
        Ok(())
    }
}

/// `docker cp`'s `-L` and `-a`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// `-L`: when the source is a symlink, copy what it points to (under the link's name).
    pub follow_link: bool,
    /// `-a`: keep the source's uid/gid in the container instead of making copies root's.
    pub archive: bool,
}

/// With `-L`, a source that is a symlink is replaced by its target, keeping the link's name
/// for the destination (Docker renames the target to the link's name).
fn follow(
    mut s: Source,
    target: impl FnOnce() -> Result<Source, EngineError>,
) -> Result<Source, EngineError> {
    if s.contents || s.name == b"." {
        return Ok(s);
    }
    let is_link = stat_nofollow(s.parent.as_fd(), &s.name)
        .ok()
        .flatten()
        .is_some_and(|st| ftype(&st) == FileType::Symlink);
    if !is_link {
        return Ok(s);
    }
    let t = target()?;
    s.parent = t.parent;
    s.name = t.name;
    s.is_dir = t.is_dir;
    s.contents = false;
    Ok(s)
}

/// The container path a path resolves to inside the root (symlinks followed in the root).
fn resolve_in_root(
    root: BorrowedFd<'_>,
    real_root: &Path,
    path: &str,
) -> Result<String, EngineError> {
    let p = split_path(path.as_bytes());
    let fd = openat2_retry(root, &join_comps(&p.comps), OFlags::PATH).map_err(|e| {
        if e == Errno::NOENT || e == Errno::NOTDIR || e == Errno::LOOP {
            EngineError::Invalid(format!("Could not find the file {path} in container"))
        } else {
            ioerr(format!("resolving {path} in the container"), e)
        }
    })?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| {
        EngineError::Io {
            what: format!("resolving {path} in the container"),
            source: e,
        }
    })?;
    let inside = real.strip_prefix(real_root).unwrap_or(Path::new("/"));
    Ok(format!("/{}", inside.display()))
}

impl Engine {
    /// `strata cp C:SRC HOSTDEST`.
    pub fn copy_from_container(
        &self,
        c: &Container,
        src: &str,
        dest: &Path,
        opts: CopyOptions,
    ) -> Result<(), EngineError> {
        self.containers().with_rootfs(c, |root_path| {
            let root = rfs::open(root_path, DIR, Mode::empty())
                .map_err(|e| ioerr(format!("opening {}", root_path.display()), e))?;
            let real_root = std::fs::read_link(format!("/proc/self/fd/{}", root.as_raw_fd()))
                .unwrap_or_else(|_| root_path.to_path_buf());
            let mut s = container_source(root.as_fd(), src)?;
            if opts.follow_link {
                s = follow(s, || {
                    container_source(
                        root.as_fd(),
                        &resolve_in_root(root.as_fd(), &real_root, src)?,
                    )
                })?;
            }
            let d = host_dest(dest, &s)?;
            Copier {
                owner: Owner::Caller,
            }
            .node(
                s.parent.as_fd(),
                &s.name,
                d.parent.as_fd(),
                &d.name,
                &PathBuf::from(&d.shown),
            )
        })
    }

    /// `strata cp HOSTSRC C:DEST`. Copies are owned by root (uid 0), as Docker's, unless
    /// `opts.archive` keeps the source's owners.
    pub fn copy_to_container(
        &self,
        src: &Path,
        c: &Container,
        dest: &str,
        opts: CopyOptions,
    ) -> Result<(), EngineError> {
        self.containers().with_rootfs(c, |root_path| {
            let root = rfs::open(root_path, DIR, Mode::empty())
                .map_err(|e| ioerr(format!("opening {}", root_path.display()), e))?;
            // The path the kernel reports for fds under the root (it may differ from
            // `root_path` by symlinks in the store path).
            let real_root = std::fs::read_link(format!("/proc/self/fd/{}", root.as_raw_fd()))
                .unwrap_or_else(|_| root_path.to_path_buf());
            let mut s = host_source(src)?;
            if opts.follow_link {
                s = follow(s, || {
                    let target = std::fs::canonicalize(src).map_err(|e| EngineError::Io {
                        what: format!("following the symlink {}", src.display()),
                        source: e,
                    })?;
                    host_source(&target)
                })?;
            }
            let d = container_dest(root.as_fd(), &real_root, dest, &s)?;
            Copier {
                owner: if opts.archive {
                    Owner::Source
                } else {
                    Owner::Root
                },
            }
            .node(
                s.parent.as_fd(),
                &s.name,
                d.parent.as_fd(),
                &d.name,
                &PathBuf::from(&d.shown),
            )
        })
    }
}
