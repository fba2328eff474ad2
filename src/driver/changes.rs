//! What a writable layer changed relative to its parent, as `docker diff` reports it:
//! `A` added, `C` changed, `D` deleted, paths absolute (`/etc/motd`), in walk order (each
//! directory's entries sorted by name, a directory before its contents). Every ancestor
//! directory of a change is listed as `C` (unless it is itself added), as Docker does, so a
//! layer made from the list restores the directories' metadata.
//!
//! Two ways to compute it:
//! - [`overlay_changes`]: walk only the upper directory (the layer's own files). A 0/0
//!   character device is a deletion; a path also visible in the lower layers is a change,
//!   else an addition; an opaque directory hides what the lowers had below it (those entries
//!   are reported deleted). The lowers are consulted per directory the way overlayfs merges
//!   them (whiteouts and opaque directories in the lowers are honoured).
//! - [`tree_changes`]: compare two full trees (vfs: the container's copy and its parent
//!   layer's copy) by lstat fields, as Docker's naive diff does: mode, owner, rdev, and for
//!   non-directories size and mtime (ns).

use super::DriverError;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub(super) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Modify,
    Add,
    Delete,
}

impl ChangeKind {
    /// Docker's letter (and the numeric `Kind` of its API: 0, 1, 2).
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modify => 'C',
            ChangeKind::Add => 'A',
            ChangeKind::Delete => 'D',
        }
    }
    pub fn code(self) -> u8 {
        self as u8
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Path inside the layer, without the leading `/` (`etc/motd`); never empty.
    pub path: Vec<u8>,
    pub kind: ChangeKind,
}

impl Change {
    /// The absolute path as Docker prints it (`/etc/motd`).
    pub fn display_path(&self) -> PathBuf {
        Path::new("/").join(OsStr::from_bytes(&self.path))
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.kind.letter(),
            self.display_path().display()
        )
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

fn err(op: &'static str, root: &Path, rel: &[u8], e: Errno) -> DriverError {
    DriverError::io(op, root.join(OsStr::from_bytes(rel)), e.into())
}

fn open_dir(path: &Path) -> Result<OwnedFd, DriverError> {
    rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| DriverError::io("open", path, e.into()))
}

fn open_sub(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn names(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    let mut d = rfs::Dir::read_from(dir)?;
    let mut v = Vec::new();
    while let Some(ent) = d.read() {
        let n = ent?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            v.push(n);
        }
    }
    v.sort();
    Ok(v)
}

fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<Stat>, Errno> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn kind(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

fn is_whiteout(st: &Stat) -> bool {
    kind(st) == FileType::CharacterDevice && st.st_rdev == 0
}

fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 4];
    matches!(rfs::fgetxattr(dir, OPAQUE_XATTR, &mut buf), Ok(1) if buf[0] == b'y')
}

/// Inserts `C dir` before `sub` when the subtree changed but the directory itself was not
/// reported, and appends all to `out`.
fn emit(out: &mut Vec<Change>, path: Vec<u8>, own: Option<ChangeKind>, sub: Vec<Change>) {
    match own {
        Some(k) => out.push(Change { path, kind: k }),
        None if !sub.is_empty() => out.push(Change {
            path,
            kind: ChangeKind::Modify,
        }),
        None => {}
    }
    out.extend(sub);
}

// ---------------------------------------------------------------------------------------
// overlay: walk the upper directory only
// ---------------------------------------------------------------------------------------

/// The changes recorded in overlay upper directory `upper` over `lowers` (the lower layers'
/// directories, nearest first).
pub fn overlay_changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>, DriverError> {
    let up = open_dir(upper)?;
    let mut low = Vec::with_capacity(lowers.len());
    for l in lowers {
        low.push(open_dir(l)?);
    }
    let mut out = Vec::new();
    let w = OverlayWalk { root: upper };
    w.dir(up.as_fd(), b"", &low, false, &mut out)?;
    Ok(out)
}

struct OverlayWalk<'a> {
    root: &'a Path,
}

/// What the merged lower view holds at `name` in a directory whose lower stack is `lowers`:
/// the first layer that has the name decides (a whiteout there means absent).
fn lower_entry(lowers: &[OwnedFd], name: &[u8]) -> Result<Option<Stat>, Errno> {
    for l in lowers {
        if let Some(st) = lstat_at(l.as_fd(), name)? {
            return Ok((!is_whiteout(&st)).then_some(st));
        }
    }
    Ok(None)
}

/// The lower stack of subdirectory `name`, as overlayfs builds it: each layer's `name` while
/// it is a directory, stopping after an opaque one or at a non-directory (or whiteout).
fn lower_stack(lowers: &[OwnedFd], name: &[u8]) -> Result<Vec<OwnedFd>, Errno> {
    let mut v = Vec::new();
    for l in lowers {
        match lstat_at(l.as_fd(), name)? {
            None => continue,
            Some(st) if kind(&st) == FileType::Directory => {
                let fd = open_sub(l.as_fd(), name)?;
                let opaque = is_opaque(fd.as_fd());
                v.push(fd);
                if opaque {
                    break;
                }
            }
            Some(_) => break,
        }
    }
    Ok(v)
}

/// Names visible in the merged view of a lower stack (whiteouts removed).
fn merged_names(lowers: &[OwnedFd]) -> Result<BTreeSet<Vec<u8>>, Errno> {
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut out = BTreeSet::new();
    for l in lowers {
        for n in names(l.as_fd())? {
            if !seen.insert(n.clone()) {
                continue;
            }
            if let Some(st) = lstat_at(l.as_fd(), &n)?
                && !is_whiteout(&st)
            {
                out.insert(n);
            }
        }
    }
    Ok(out)
}

impl OverlayWalk<'_> {
    /// Appends the changes below directory `up` (path `rel`, lower stack `lowers`). With
    /// `opaque`, the lowers are hidden: what they had and `up` lacks is deleted.
    fn dir(
        &self,
        up: BorrowedFd<'_>,
        rel: &[u8],
        lowers: &[OwnedFd],
        opaque: bool,
        out: &mut Vec<Change>,
    ) -> Result<(), DriverError> {
        let e = |op, e| err(op, self.root, rel, e);
        let upper_names = names(up).map_err(|x| e("read directory", x))?;
        let mut all: BTreeSet<Vec<u8>> = upper_names.iter().cloned().collect();
        let hidden = if opaque {
            merged_names(lowers).map_err(|x| e("read lower directory", x))?
        } else {
            BTreeSet::new()
        };
        all.extend(hidden.iter().cloned());
        for name in all {
            let path = join(rel, &name);
            let pe = |op, x| err(op, self.root, &path, x);
            let Some(st) = lstat_at(up, &name).map_err(|x| pe("stat", x))? else {
                // Only in the hidden lowers of an opaque directory.
                if hidden.contains(&name) {
                    out.push(Change {
                        path,
                        kind: ChangeKind::Delete,
                    });
                }
                continue;
            };
            if is_whiteout(&st) {
                out.push(Change {
                    path,
                    kind: ChangeKind::Delete,
                });
                continue;
            }
            let below = lower_entry(lowers, &name).map_err(|x| pe("stat lower", x))?;
            if kind(&st) != FileType::Directory {
                let kind = if below.is_some() {
                    ChangeKind::Modify
                } else {
                    ChangeKind::Add
                };
                out.push(Change { path, kind });
                continue;
            }
            let sub_fd = open_sub(up, &name).map_err(|x| pe("open", x))?;
            let sub_opaque = is_opaque(sub_fd.as_fd());
            let (own, sub_lowers) = match &below {
                None => (Some(ChangeKind::Add), Vec::new()),
                Some(b) if kind(b) != FileType::Directory => (Some(ChangeKind::Modify), Vec::new()),
                Some(b) => {
                    let differs =
                        b.st_mode != st.st_mode || b.st_uid != st.st_uid || b.st_gid != st.st_gid;
                    let stack = lower_stack(lowers, &name).map_err(|x| pe("open lower", x))?;
                    ((differs || sub_opaque).then_some(ChangeKind::Modify), stack)
                }
            };
            let mut sub = Vec::new();
            self.dir(sub_fd.as_fd(), &path, &sub_lowers, sub_opaque, &mut sub)?;
            emit(out, path, own, sub);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// vfs: compare two full trees
// ---------------------------------------------------------------------------------------

/// The changes that turn tree `old` (None: empty) into tree `new`.
pub fn tree_changes(new: &Path, old: Option<&Path>) -> Result<Vec<Change>, DriverError> {
    let n = open_dir(new)?;
    let o = old.map(open_dir).transpose()?;
    let mut out = Vec::new();
    let w = TreeWalk { root: new };
    w.dir(n.as_fd(), o.as_ref().map(|f| f.as_fd()), b"", &mut out)?;
    Ok(out)
}

struct TreeWalk<'a> {
    root: &'a Path,
}

/// Docker's `statDifferent`: directories compare only mode and owner.
fn stat_differs(a: &Stat, b: &Stat) -> bool {
    a.st_mode != b.st_mode
        || a.st_uid != b.st_uid
        || a.st_gid != b.st_gid
        || a.st_rdev != b.st_rdev
        || (kind(a) != FileType::Directory
            && (a.st_mtime != b.st_mtime
                || a.st_mtime_nsec != b.st_mtime_nsec
                || a.st_size != b.st_size))
}

impl TreeWalk<'_> {
    fn dir(
        &self,
        new: BorrowedFd<'_>,
        old: Option<BorrowedFd<'_>>,
        rel: &[u8],
        out: &mut Vec<Change>,
    ) -> Result<(), DriverError> {
        let e = |op, x| err(op, self.root, rel, x);
        let mut all: BTreeSet<Vec<u8>> = names(new)
            .map_err(|x| e("read directory", x))?
            .into_iter()
            .collect();
        if let Some(o) = old {
            all.extend(names(o).map_err(|x| e("read directory", x))?);
        }
        for name in all {
            let path = join(rel, &name);
            let pe = |op, x| err(op, self.root, &path, x);
            let ns = lstat_at(new, &name).map_err(|x| pe("stat", x))?;
            let os = match old {
                Some(o) => lstat_at(o, &name).map_err(|x| pe("stat", x))?,
                None => None,
            };
            let Some(ns) = ns else {
                if os.is_some() {
                    out.push(Change {
                        path,
                        kind: ChangeKind::Delete,
                    });
                }
                continue;
            };
            let own = match &os {
                None => Some(ChangeKind::Add),
                Some(os) if stat_differs(os, &ns) => Some(ChangeKind::Modify),
                Some(_) => None,
            };
            if kind(&ns) != FileType::Directory {
                if let Some(kind) = own {
                    out.push(Change { path, kind });
                }
                continue;
            }
            let nsub = open_sub(new, &name).map_err(|x| pe("open", x))?;
            let osub = match (&os, old) {
                (Some(s), Some(o)) if kind(s) == FileType::Directory => {
                    Some(open_sub(o, &name).map_err(|x| pe("open", x))?)
                }
                _ => None,
            };
            let mut sub = Vec::new();
            self.dir(
                nsub.as_fd(),
                osub.as_ref().map(|f| f.as_fd()),
                &path,
                &mut sub,
            )?;
            emit(out, path, own, sub);
        }
        Ok(())
    }
}

/// Docker's `ChangesSize`: bytes of the added and changed non-directories under `root`
/// (hardlinked files counted once).
pub fn changes_size(root: &Path, changes: &[Change]) -> Result<u64, DriverError> {
    let r = open_dir(root)?;
    let mut seen = HashSet::new();
    let mut total = 0u64;
    for c in changes {
        if c.kind == ChangeKind::Delete {
            continue;
        }
        let st = match rfs::statat(r.as_fd(), &c.path[..], AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
            Err(e) => return Err(err("stat", root, &c.path, e)),
        };
        if kind(&st) == FileType::Directory {
            continue;
        }
        if st.st_nlink > 1 && !seen.insert(st.st_ino) {
            continue;
        }
        total += st.st_size as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn show(v: &[Change]) -> Vec<String> {
        v.iter().map(|c| c.to_string()).collect()
    }

    fn whiteout(p: &Path) {
        rfs::mknodat(rfs::CWD, p, FileType::CharacterDevice, Mode::empty(), 0).unwrap();
    }

    #[test]
    fn overlay_upper_walk() {
        let t = super::super::fsutil::test_tempdir();
        let (l1, l2, up) = (
            t.path().join("l1"),
            t.path().join("l2"),
            t.path().join("up"),
        );
        for d in [&l1, &l2, &up] {
            fs::create_dir(d).unwrap();
        }
        // Bottom layer.
        fs::create_dir_all(l1.join("etc/opq")).unwrap();
        fs::write(l1.join("etc/motd"), "m").unwrap();
        fs::write(l1.join("etc/gone-below"), "g").unwrap();
        fs::write(l1.join("etc/opq/old"), "o").unwrap();
        fs::create_dir_all(l1.join("root")).unwrap();
        fs::create_dir_all(l1.join("tmp")).unwrap();
        // Middle layer deletes etc/gone-below.
        fs::create_dir_all(l2.join("etc")).unwrap();
        whiteout(&l2.join("etc/gone-below"));
        // Upper: add, modify, delete, opaque dir, untouched copied-up dir.
        fs::create_dir_all(up.join("root")).unwrap();
        fs::write(up.join("root/new.txt"), "n").unwrap();
        fs::create_dir_all(up.join("etc/opq")).unwrap();
        fs::write(up.join("etc/motd"), "M").unwrap();
        fs::write(up.join("etc/gone-below"), "again").unwrap();
        fs::write(up.join("etc/opq/fresh"), "f").unwrap();
        rfs::setxattr(
            up.join("etc/opq"),
            OPAQUE_XATTR,
            b"y",
            rfs::XattrFlags::empty(),
        )
        .unwrap();
        whiteout(&up.join("tmp"));
        fs::create_dir_all(up.join("newdir/sub")).unwrap();
        let m = fs::metadata(l1.join("root")).unwrap();
        fs::set_permissions(up.join("root"), m.permissions()).unwrap();
        let got = overlay_changes(&up, &[l2.clone(), l1.clone()]).unwrap();
        assert_eq!(
            show(&got),
            [
                "C /etc",
                "A /etc/gone-below",
                "C /etc/motd",
                "C /etc/opq",
                "A /etc/opq/fresh",
                "D /etc/opq/old",
                "A /newdir",
                "A /newdir/sub",
                "C /root",
                "A /root/new.txt",
                "D /tmp",
            ]
        );
    }

    #[test]
    fn tree_compare() {
        let t = super::super::fsutil::test_tempdir();
        let (old, new) = (t.path().join("old"), t.path().join("new"));
        for d in [&old, &new] {
            fs::create_dir_all(d.join("etc")).unwrap();
            fs::create_dir_all(d.join("usr/bin")).unwrap();
            fs::write(d.join("usr/bin/same"), "s").unwrap();
            fs::write(d.join("etc/motd"), "m").unwrap();
            fs::write(d.join("etc/issue"), "i").unwrap();
        }
        let ts = rfs::Timestamps {
            last_access: rfs::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
            last_modification: rfs::Timespec {
                tv_sec: 1_600_000_000,
                tv_nsec: 5,
            },
        };
        for d in [&old, &new] {
            rfs::utimensat(rfs::CWD, d.join("usr/bin/same"), &ts, AtFlags::empty()).unwrap();
            rfs::utimensat(rfs::CWD, d.join("etc/issue"), &ts, AtFlags::empty()).unwrap();
        }
        fs::write(new.join("etc/motd"), "changed!").unwrap();
        fs::remove_file(new.join("etc/issue")).unwrap();
        fs::create_dir_all(new.join("root/a")).unwrap();
        fs::write(new.join("root/a/f"), "f").unwrap();
        let got = tree_changes(&new, Some(&old)).unwrap();
        assert_eq!(
            show(&got),
            [
                "C /etc",
                "D /etc/issue",
                "C /etc/motd",
                "A /root",
                "A /root/a",
                "A /root/a/f"
            ]
        );
        assert_eq!(changes_size(&new, &got).unwrap(), 8 + 1);
        assert!(tree_changes(&old, Some(&old)).unwrap().is_empty());
        // etc, etc/issue, etc/motd, usr, usr/bin, usr/bin/same: all added to nothing.
        assert_eq!(tree_changes(&old, None).unwrap().len(), 6);
    }
}
