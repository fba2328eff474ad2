//! The overlay driver, laid out like Docker's overlay2.
//!
//! Under `ROOT/overlay`:
//! - `<id>/diff`   the layer's own files (layer tars are applied here; the upperdir when mounted)
//! - `<id>/link`   the layer's short link name (26 random `[A-Z0-9]`)
//! - `<id>/lower`  `l/<short>:l/<short>…` of all ancestors, nearest parent first (absent for a
//!   parentless layer)
//! - `<id>/work`, `<id>/merged`  overlay workdir and mount point; `work` is created only for
//!   ReadWrite layers and its presence is what marks a layer as ReadWrite
//! - `<id>/empty`  an empty directory used as the sole lowerdir when a parentless layer is mounted
//!   (overlayfs needs at least one lower); created on demand at mount time
//! - `l/<short>` → `../<id>/diff`
//!
//! Mounts use the new mount API (`fsopen`/`fsconfig`/`fsmount`/`move_mount`) with one
//! `lowerdir+` per layer, so image depth is limited only by the kernel (500 lowers), not by the
//! one-page limit of the legacy mount data string.

use super::fsutil::{self, OVERLAY_MAGIC};
use super::*;
use rustix::fd::{AsFd, OwnedFd};
use rustix::io::Errno;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags};
use std::os::unix::fs::MetadataExt;

/// The `link` file of a layer that has no short link (a container's writable layer).
const NO_LINK: &str = "-";
const LINK_DIR: &str = "l";
const SHORT_LEN: usize = 26;

/// Whether overlay can be used under `root`: the backing filesystem can hold an upperdir, has
/// d_type, and a probe overlay mount (made and removed in a temporary directory under `root`)
/// works.
pub fn supported(root: &Path) -> Result<(), DriverError> {
    let unsupported = |reason: String| DriverError::Unsupported {
        driver: "overlay",
        reason,
    };
    std::fs::create_dir_all(root).map_err(|e| DriverError::io("mkdir", root, e))?;
    let magic = fsutil::fs_magic(root).map_err(|e| DriverError::io("statfs", root, e))?;
    let name = fsutil::fs_name(magic);
    if matches!(
        name,
        "overlayfs" | "aufs" | "ecryptfs" | "squashfs" | "erofs" | "cramfs"
    ) {
        return Err(unsupported(format!(
            "backing filesystem {name} of {} cannot hold an overlay upper layer",
            root.display()
        )));
    }
    let probe = root.join(format!(".overlay-probe-{}", fsutil::random_name(12)));
    let res = probe_mount(&probe);
    // Clean up whatever happened; a failed unmount leaves the mount in place and remove_all
    // refuses to descend into it.
    let merged = probe.join("merged");
    if mounted_at(&probe, &merged) {
        let _ = unmount_path(&merged);
    }
    let cleanup = fsutil::remove_all(&probe);
    res.map_err(unsupported)?;
    cleanup
}

fn probe_mount(probe: &Path) -> Result<(), String> {
    let err = |what: &str, e: std::io::Error| format!("{what}: {e}");
    for d in ["", "lower", "upper", "work", "merged"] {
        std::fs::create_dir(probe.join(d)).map_err(|e| err("creating probe directories", e))?;
    }
    std::fs::write(probe.join("lower/probe"), b"x").map_err(|e| err("writing probe file", e))?;
    match fsutil::supports_dtype(&probe.join("lower")) {
        Ok(true) => {}
        Ok(false) => {
            return Err(
                "the backing filesystem does not support d_type (xfs needs ftype=1)".into(),
            );
        }
        Err(e) => return Err(err("checking d_type", e)),
    }
    let merged = probe.join("merged");
    mount_overlay(
        &[probe.join("lower")],
        Some((&probe.join("upper"), &probe.join("work"))),
        &merged,
        false,
    )
    .map_err(|e| format!("probe overlay mount failed: {e}"))?;
    let seen = std::fs::read(merged.join("probe"));
    let _ = unmount_path(&merged);
    match seen {
        Ok(b) if b == b"x" => Ok(()),
        Ok(_) => Err("probe overlay mount shows wrong contents".into()),
        Err(e) => Err(err("reading through the probe overlay mount", e)),
    }
}

/// Whether `target` is a mount point distinct from `dir` (its parent in our layout):
/// st_dev differs. Works for mounts made by any process in this mount namespace.
fn mounted_at(dir: &Path, target: &Path) -> bool {
    match (
        std::fs::symlink_metadata(dir),
        std::fs::symlink_metadata(target),
    ) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

fn unmount_path(target: &Path) -> std::io::Result<()> {
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::BUSY) => {
            rustix::mount::unmount(target, UnmountFlags::DETACH).map_err(Into::into)
        }
        Err(e) => Err(e.into()),
    }
}

/// Messages the kernel queued on an fs context fd ("e overlay: …"), for error reports.
fn kernel_log(fs: &OwnedFd) -> String {
    let mut out = String::new();
    let mut buf = [0u8; 1024];
    for _ in 0..16 {
        match rustix::io::read(fs.as_fd(), &mut buf) {
            Ok(n) if n > 0 => {
                if !out.is_empty() {
                    out.push_str("; ");
                }
                out.push_str(String::from_utf8_lossy(&buf[..n]).trim_end());
            }
            _ => break,
        }
    }
    if out.is_empty() {
        out
    } else {
        format!(" (kernel: {out})")
    }
}

/// Mount an overlay at `target`. `lowers` nearest-first; `upper` = (upperdir, workdir), or None
/// for a read-only mount.
fn mount_overlay(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
    volatile: bool,
) -> Result<(), String> {
    use rustix::mount::{fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount};
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| format!("fsopen(overlay): {e}"))?;
    let fail = |what: String, e: Errno| format!("{what}: {e}{}", kernel_log(&fs));
    fsconfig_set_string(&fs, "source", "overlay").map_err(|e| fail("fsconfig source".into(), e))?;
    // As Docker's overlay2: no inode index, and no redirect_dir/metacopy so that the upper dir
    // is a self-contained native diff. Best effort: older kernels may not know a key.
    for (k, v) in [
        ("index", "off"),
        ("redirect_dir", "off"),
        ("metacopy", "off"),
    ] {
        if fsconfig_set_string(&fs, k, v).is_err() {
            let _ = kernel_log(&fs);
        }
    }
    let mut added = 0;
    for l in lowers {
        match fsconfig_set_string(&fs, "lowerdir+", l.as_path()) {
            Ok(()) => added += 1,
            Err(Errno::INVAL) if added == 0 => break, // kernel without `lowerdir+` (< 6.8)
            Err(e) => return Err(fail(format!("fsconfig lowerdir+={}", l.display()), e)),
        }
    }
    if added == 0 && !lowers.is_empty() {
        // Legacy single option; limited to one page. Escape the separators overlayfs parses.
        let _ = kernel_log(&fs);
        let joined = lowers
            .iter()
            .map(|l| {
                l.to_string_lossy()
                    .replace('\\', "\\\\")
                    .replace(':', "\\:")
                    .replace(',', "\\,")
            })
            .collect::<Vec<_>>()
            .join(":");
        fsconfig_set_string(&fs, "lowerdir", joined.as_str())
            .map_err(|e| fail("fsconfig lowerdir".into(), e))?;
    }
    if let Some((up, work)) = upper {
        fsconfig_set_string(&fs, "upperdir", up)
            .map_err(|e| fail(format!("fsconfig upperdir={}", up.display()), e))?;
        fsconfig_set_string(&fs, "workdir", work)
            .map_err(|e| fail(format!("fsconfig workdir={}", work.display()), e))?;
        if volatile && rustix::mount::fsconfig_set_flag(&fs, "volatile").is_err() {
            let _ = kernel_log(&fs); // older kernel: an ordinary (synced) mount
        }
    }
    fsconfig_create(&fs).map_err(|e| fail("creating the overlay superblock".into(), e))?;
    let attrs = if upper.is_none() {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| fail("fsmount".into(), e))?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| format!("move_mount onto {}: {e}", target.display()))?;
    Ok(())
}

/// Drops the lower layers beneath the first one (nearest first) whose root directory is
/// opaque. A layer tar with `.wh..wh..opq` at its root hides everything beneath it, and its
/// diff root gets `trusted.overlay.opaque=y` like any opaque directory, but overlayfs ignores
/// that xattr on a layer's root (checked on 6.x kernels): the lower layers would show through.
/// Leaving them out of the mount gives the same view as a full copy (vfs) does.
fn cut_below_opaque_root(lowers: &mut Vec<PathBuf>) {
    let opaque = |p: &Path| {
        let mut buf = [0u8; 4];
        matches!(rustix::fs::getxattr(p, super::changes::OPAQUE_XATTR, &mut buf), Ok(1) if buf[0] == b'y')
    };
    if let Some(i) = lowers.iter().position(|l| opaque(l)) {
        lowers.truncate(i + 1);
    }
}

pub struct Overlay {
    home: PathBuf,
}

impl Overlay {
    /// Mount the layer's merged view (read-write when it has a work dir); `volatile` skips
    /// the upper filesystem's syncs (see `Driver::mount_scratch`).
    fn mount_with(&self, id: &str, volatile: bool) -> Result<PathBuf, DriverError> {
        Self::check_id(id)?;
        let dir = self.dir(id);
        let diff = dir.join("diff");
        if !diff.is_dir() {
            return Err(DriverError::NotFound(id.to_string()));
        }
        let merged = dir.join("merged");
        if mounted_at(&dir, &merged) {
            return Ok(merged);
        }
        let work = dir.join("work");
        let read_write = work.is_dir();
        fsutil::mkdir(&merged, 0o700)?;
        let mut lowers = Vec::new();
        if !read_write {
            lowers.push(diff.clone());
        }
        lowers.extend(self.lower_dirs(id)?);
        cut_below_opaque_root(&mut lowers);
        if lowers.is_empty() || (!read_write && lowers.len() < 2) {
            // overlayfs needs a lower layer (two without an upper on older kernels).
            let empty = dir.join("empty");
            fsutil::mkdir(&empty, 0o755)?;
            lowers.push(empty);
        }
        let upper = read_write.then_some((diff.as_path(), work.as_path()));
        mount_overlay(&lowers, upper, &merged, volatile).map_err(|reason| DriverError::Mount {
            id: id.to_string(),
            reason,
        })?;
        Ok(merged)
    }

    /// Unmount every mount stacked on the layer's merged dir.
    fn unmount_all(&self, id: &str) -> Result<(), DriverError> {
        if Self::check_id(id).is_err() {
            return Ok(());
        }
        let dir = self.dir(id);
        let merged = dir.join("merged");
        // Loop in case the same layer was mounted more than once (stacked mounts).
        for _ in 0..16 {
            if !mounted_at(&dir, &merged) {
                return Ok(());
            }
            match unmount_path(&merged) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
                Err(e) => return Err(DriverError::io("unmount", &merged, e)),
            }
        }
        if mounted_at(&dir, &merged) {
            return Err(DriverError::Mount {
                id: id.to_string(),
                reason: "still mounted after repeated unmounts".into(),
            });
        }
        Ok(())
    }

    /// Open (creating if needed) the overlay driver directory `ROOT/overlay`.
    pub fn open(dir: &Path) -> Result<Overlay, DriverError> {
        std::fs::create_dir_all(dir.join(LINK_DIR))
            .map_err(|e| DriverError::io("mkdir", dir, e))?;
        let magic = fsutil::fs_magic(dir).map_err(|e| DriverError::io("statfs", dir, e))?;
        if magic == OVERLAY_MAGIC {
            return Err(DriverError::Unsupported {
                driver: "overlay",
                reason: format!(
                    "{} is on overlayfs, which cannot hold an overlay upper layer",
                    dir.display()
                ),
            });
        }
        Ok(Overlay {
            home: dir.to_path_buf(),
        })
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.home.join(id)
    }

    fn check_id(id: &str) -> Result<(), DriverError> {
        fsutil::check_id(id, LINK_DIR)
    }

    fn read_link_name(&self, id: &str) -> Option<String> {
        let s = std::fs::read_to_string(self.dir(id).join("link")).ok()?;
        let s = s.trim().to_string();
        (!s.is_empty() && !s.contains('/')).then_some(s)
    }

    /// The `lower` file's entries (`l/<short>`), nearest parent first; empty if none.
    fn lower_entries(&self, id: &str) -> Result<Vec<String>, DriverError> {
        let p = self.dir(id).join("lower");
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(s
                .trim()
                .split(':')
                .filter(|e| !e.is_empty())
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(DriverError::io("read", p, e)),
        }
    }

    /// Absolute diff directories of the ancestors, nearest parent first, resolved through the
    /// `l/` short links.
    fn lower_dirs(&self, id: &str) -> Result<Vec<PathBuf>, DriverError> {
        self.lower_entries(id)?
            .into_iter()
            .map(|entry| {
                let link = self.home.join(&entry);
                let target =
                    std::fs::read_link(&link).map_err(|e| DriverError::io("readlink", &link, e))?;
                let target = target
                    .strip_prefix("..")
                    .map(Path::to_path_buf)
                    .unwrap_or(target);
                Ok(if target.is_absolute() {
                    target
                } else {
                    self.home.join(target)
                })
            })
            .collect()
    }

    fn find_links_to(&self, id: &str) -> Vec<PathBuf> {
        let want = Path::new("..").join(id).join("diff");
        let Ok(rd) = std::fs::read_dir(self.home.join(LINK_DIR)) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == want))
            .map(|e| e.path())
            .collect()
    }
}

impl Driver for Overlay {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn create(&self, id: &str, parent: Option<&str>, kind: LayerKind) -> Result<(), DriverError> {
        Self::check_id(id)?;
        let dir = self.dir(id);
        let lower = match parent {
            Some(p) => {
                Self::check_id(p)?;
                let short = self
                    .read_link_name(p)
                    .ok_or_else(|| DriverError::NotFound(p.to_string()))?;
                let mut entries = vec![format!("{LINK_DIR}/{short}")];
                entries.extend(self.lower_entries(p)?);
                Some(entries.join(":"))
            }
            None => None,
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(DriverError::Exists(id.to_string()));
            }
            Err(e) => return Err(DriverError::io("mkdir", &dir, e)),
        }
        fsutil::mkdir(&dir.join("diff"), 0o755)?;
        if kind != LayerKind::ReadOnly {
            fsutil::mkdir(&dir.join("work"), 0o700)?;
            fsutil::mkdir(&dir.join("merged"), 0o700)?;
        }
        if kind == LayerKind::Container {
            if let Some(lower) = lower {
                fsutil::write_atomic(&dir.join("lower"), lower.as_bytes())?;
            }
            // No short link: nothing stacks on a container. The marker tells `remove` there is
            // no symlink to look for; it needs no fsync (lost, `remove` just searches `l/`).
            std::fs::write(dir.join("link"), NO_LINK)
                .map_err(|e| DriverError::io("write", dir.join("link"), e))?;
            return Ok(());
        }
        let short = loop {
            let short = fsutil::random_name(SHORT_LEN);
            let link = self.home.join(LINK_DIR).join(&short);
            match std::os::unix::fs::symlink(Path::new("..").join(id).join("diff"), &link) {
                Ok(()) => break short,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(DriverError::io("symlink", link, e)),
            }
        };
        if let Some(lower) = lower {
            fsutil::write_atomic(&dir.join("lower"), lower.as_bytes())?;
        }
        // Written last: a layer with a `link` file is complete.
        fsutil::write_atomic(&dir.join("link"), short.as_bytes())?;
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<(), DriverError> {
        if Self::check_id(id).is_err() {
            return Ok(());
        }
        let dir = self.dir(id);
        if std::fs::symlink_metadata(&dir).is_err() {
            return Ok(());
        }
        self.unmount(id)?;
        let links = match self.read_link_name(id) {
            Some(short) if short == NO_LINK => Vec::new(),
            Some(short) => vec![self.home.join(LINK_DIR).join(short)],
            // Half-created layer: the symlink may exist without the `link` file.
            None => self.find_links_to(id),
        };
        for l in links {
            match std::fs::remove_file(&l) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(DriverError::io("remove", l, e));
                }
                _ => {}
            }
        }
        fsutil::remove_all(&dir)
    }

    fn exists(&self, id: &str) -> bool {
        Self::check_id(id).is_ok() && self.dir(id).is_dir()
    }

    fn diff_dir(&self, id: &str) -> PathBuf {
        self.dir(id).join("diff")
    }

    fn whiteout_format(&self) -> WhiteoutFormat {
        WhiteoutFormat::Overlay
    }

    fn mount(&self, id: &str) -> Result<PathBuf, DriverError> {
        self.mount_with(id, false)
    }

    fn mount_scratch(&self, id: &str) -> Result<PathBuf, DriverError> {
        self.mount_with(id, true)
    }

    fn unmount(&self, id: &str) -> Result<(), DriverError> {
        self.unmount_all(id)
    }

    fn is_mounted(&self, id: &str) -> bool {
        Self::check_id(id).is_ok() && {
            let dir = self.dir(id);
            mounted_at(&dir, &dir.join("merged"))
        }
    }

    fn usage(&self, id: &str) -> Result<Usage, DriverError> {
        Self::check_id(id)?;
        let diff = self.diff_dir(id);
        if !diff.is_dir() {
            return Err(DriverError::NotFound(id.to_string()));
        }
        fsutil::dir_usage(&diff)
    }

    fn status(&self) -> Vec<(String, String)> {
        let dtype = fsutil::supports_dtype(&self.home).unwrap_or(false);
        vec![
            ("Backing Filesystem".into(), fsutil::backing_fs(&self.home)),
            ("Supports d_type".into(), dtype.to_string()),
            ("Native Overlay Diff".into(), "true".into()),
            ("userxattr".into(), "false".into()),
        ]
    }

    fn metadata(&self, id: &str) -> Vec<(String, String)> {
        let dir = self.dir(id);
        let mut out = Vec::new();
        if let Ok(lowers) = self.lower_dirs(id)
            && !lowers.is_empty()
        {
            let joined = lowers
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(":");
            out.push(("LowerDir".to_string(), joined));
        }
        out.push((
            "MergedDir".into(),
            dir.join("merged").to_string_lossy().into_owned(),
        ));
        out.push((
            "UpperDir".into(),
            dir.join("diff").to_string_lossy().into_owned(),
        ));
        out.push((
            "WorkDir".into(),
            dir.join("work").to_string_lossy().into_owned(),
        ));
        out
    }

    /// Walks only the upper (diff) directory, looking up the lowers per directory.
    fn changes(
        &self,
        id: &str,
        _parent: Option<&str>,
    ) -> Result<Vec<super::changes::Change>, DriverError> {
        Self::check_id(id)?;
        super::changes::overlay_changes(&self.diff_dir(id), &self.lower_dirs(id)?)
    }

    /// Docker's overlay2 limits size with xfs project quotas only; this kernel has no quota
    /// support to test them with, so strata does not offer them.
    fn size_limit_supported(&self) -> Result<(), DriverError> {
        Err(DriverError::StorageOpt(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
        ))
    }

    fn list(&self) -> Result<Vec<String>, DriverError> {
        let rd =
            std::fs::read_dir(&self.home).map_err(|e| DriverError::io("readdir", &self.home, e))?;
        let mut ids = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| DriverError::io("readdir", &self.home, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name == LINK_DIR || name.starts_with('.') {
                continue;
            }
            if ent.file_type().is_ok_and(|t| t.is_dir()) {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{CWD, FileType, Mode, XattrFlags};
    use std::os::unix::fs::FileTypeExt;

    /// Unmounts the listed layers when dropped, so a failing test leaves no mounts behind.
    struct Unmounter<'a>(&'a Overlay, Vec<String>);
    impl Drop for Unmounter<'_> {
        fn drop(&mut self) {
            for id in &self.1 {
                let _ = self.0.unmount(id);
            }
        }
    }

    fn whiteout(p: &Path) {
        rustix::fs::mknodat(CWD, p, FileType::CharacterDevice, Mode::empty(), 0).unwrap();
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    }

    #[test]
    fn overlay_chain_mount_copyup_whiteouts() {
        let tmp = fsutil::test_tempdir();
        let d = Overlay::open(&tmp.path().join("overlay")).unwrap();
        let guard = Unmounter(&d, vec!["c".into(), "top".into()]);
        d.create("base", None, LayerKind::ReadOnly).unwrap();
        d.create("mid", Some("base"), LayerKind::ReadOnly).unwrap();
        d.create("top", Some("mid"), LayerKind::ReadOnly).unwrap();
        d.create("c", Some("top"), LayerKind::ReadWrite).unwrap();
        assert!(matches!(
            d.create("c", Some("top"), LayerKind::ReadWrite),
            Err(DriverError::Exists(_))
        ));
        assert!(matches!(
            d.create("x", Some("nope"), LayerKind::ReadWrite),
            Err(DriverError::NotFound(_))
        ));
        assert!(!d.exists("x"));

        let base = d.diff_dir("base");
        std::fs::write(base.join("a.txt"), "a").unwrap();
        std::fs::write(base.join("gone.txt"), "gone").unwrap();
        std::fs::create_dir_all(base.join("d")).unwrap();
        std::fs::write(base.join("d/x"), "x").unwrap();
        std::fs::create_dir_all(base.join("opq")).unwrap();
        std::fs::write(base.join("opq/old"), "old").unwrap();
        let mid = d.diff_dir("mid");
        std::fs::write(mid.join("b.txt"), "b").unwrap();
        whiteout(&mid.join("gone.txt"));
        std::fs::create_dir_all(mid.join("opq")).unwrap();
        rustix::fs::setxattr(
            mid.join("opq"),
            "trusted.overlay.opaque",
            b"y",
            XattrFlags::empty(),
        )
        .unwrap();
        std::fs::write(mid.join("opq/new"), "new").unwrap();
        let top = d.diff_dir("top");
        std::fs::write(top.join("b.txt"), "b2").unwrap();
        std::fs::write(top.join("c.txt"), "c").unwrap();

        // Layout like overlay2.
        let short = |id: &str| read(&tmp.path().join("overlay").join(id).join("link"));
        assert_eq!(short("c").len(), 26);
        assert_eq!(
            read(&tmp.path().join("overlay/c/lower")),
            format!("l/{}:l/{}:l/{}", short("top"), short("mid"), short("base"))
        );
        assert_eq!(
            std::fs::read_link(tmp.path().join("overlay/l").join(short("mid"))).unwrap(),
            Path::new("../mid/diff")
        );
        assert!(!tmp.path().join("overlay/base/lower").exists());

        let md = d.metadata("c");
        let home = tmp.path().join("overlay");
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        assert_eq!(
            md,
            vec![
                (
                    "LowerDir".into(),
                    format!(
                        "{}:{}:{}",
                        s(home.join("top/diff")),
                        s(home.join("mid/diff")),
                        s(home.join("base/diff"))
                    )
                ),
                ("MergedDir".into(), s(home.join("c/merged"))),
                ("UpperDir".into(), s(home.join("c/diff"))),
                ("WorkDir".into(), s(home.join("c/work"))),
            ]
        );
        assert_eq!(d.metadata("base")[0].0, "MergedDir");

        assert!(!d.is_mounted("c"));
        let m = d.mount("c").unwrap();
        assert_eq!(m, home.join("c/merged"));
        assert!(d.is_mounted("c"));
        assert_eq!(d.mount("c").unwrap(), m, "mount is idempotent");
        // Another driver instance (as another strata process would) sees the mount too.
        assert!(Overlay::open(&home).unwrap().is_mounted("c"));
        assert_eq!(Overlay::open(&home).unwrap().mount("c").unwrap(), m);

        // Reads see the lower layers, with upper layers winning.
        assert_eq!(read(&m.join("a.txt")), "a");
        assert_eq!(read(&m.join("b.txt")), "b2");
        assert_eq!(read(&m.join("c.txt")), "c");
        assert_eq!(read(&m.join("d/x")), "x");
        // A whiteout made by hand in a lower diff hides the file below it.
        assert!(!m.join("gone.txt").exists());
        // An opaque directory hides the lower contents.
        assert_eq!(read(&m.join("opq/new")), "new");
        assert!(!m.join("opq/old").exists());

        // Copy-up on write.
        std::fs::write(m.join("a.txt"), "A").unwrap();
        assert_eq!(read(&m.join("a.txt")), "A");
        assert_eq!(read(&d.diff_dir("c").join("a.txt")), "A");
        assert_eq!(read(&base.join("a.txt")), "a");
        // Deleting a lower file leaves a 0/0 character device whiteout in the upper dir.
        std::fs::remove_file(m.join("d/x")).unwrap();
        assert!(!m.join("d/x").exists());
        let wh = std::fs::symlink_metadata(d.diff_dir("c").join("d/x")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert_eq!(read(&base.join("d/x")), "x");

        // A read-only layer can be mounted too, read-only.
        let tm = d.mount("top").unwrap();
        assert_eq!(read(&tm.join("b.txt")), "b2");
        assert_eq!(read(&tm.join("a.txt")), "a");
        assert!(!tm.join("gone.txt").exists());
        let err = std::fs::write(tm.join("new"), "n").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        d.unmount("top").unwrap();
        assert!(!d.is_mounted("top"));

        d.unmount("c").unwrap();
        assert!(!d.is_mounted("c"));
        d.unmount("c").unwrap();
        assert!(!m.join("a.txt").exists());
        assert_eq!(d.list().unwrap(), vec!["base", "c", "mid", "top"]);
        drop(guard);
    }

    #[test]
    fn overlay_deep_chain_beyond_page_limit() {
        const DEPTH: usize = 260;
        let tmp = fsutil::test_tempdir();
        let d = Overlay::open(&tmp.path().join("overlay")).unwrap();
        let _guard = Unmounter(&d, vec!["container".into()]);
        let mut parent: Option<String> = None;
        for i in 0..DEPTH {
            let id = format!("layer-{i:04}-{}", "x".repeat(40));
            d.create(&id, parent.as_deref(), LayerKind::ReadOnly)
                .unwrap();
            std::fs::write(d.diff_dir(&id).join(format!("f{i}")), i.to_string()).unwrap();
            parent = Some(id);
        }
        d.create("container", parent.as_deref(), LayerKind::ReadWrite)
            .unwrap();
        let lower = &d.metadata("container")[0];
        assert_eq!(lower.0, "LowerDir");
        assert!(
            lower.1.len() > 4096,
            "the test must exceed the legacy one-page option limit"
        );
        let m = d.mount("container").unwrap();
        for i in 0..DEPTH {
            assert_eq!(read(&m.join(format!("f{i}"))), i.to_string());
        }
        assert_eq!(std::fs::read_dir(&m).unwrap().count(), DEPTH);
        d.unmount("container").unwrap();
        assert!(!d.is_mounted("container"));
    }

    #[test]
    fn overlay_opaque_layer_root_hides_the_layers_beneath() {
        let tmp = fsutil::test_tempdir();
        let d = Overlay::open(&tmp.path().join("overlay")).unwrap();
        let _guard = Unmounter(&d, vec!["opq".into(), "top".into(), "rw".into()]);
        let names = |m: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(m)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        d.create("base", None, LayerKind::ReadOnly).unwrap();
        std::fs::write(d.diff_dir("base").join("a"), "a").unwrap();
        d.create("opq", Some("base"), LayerKind::ReadOnly).unwrap();
        std::fs::write(d.diff_dir("opq").join("c"), "c").unwrap();
        rustix::fs::setxattr(
            d.diff_dir("opq"),
            "trusted.overlay.opaque",
            b"y",
            XattrFlags::empty(),
        )
        .unwrap();
        d.create("top", Some("opq"), LayerKind::ReadOnly).unwrap();
        std::fs::write(d.diff_dir("top").join("e"), "e").unwrap();
        d.create("rw", Some("top"), LayerKind::ReadWrite).unwrap();
        assert_eq!(names(&d.mount("opq").unwrap()), ["c"]);
        assert_eq!(names(&d.mount("top").unwrap()), ["c", "e"]);
        assert_eq!(names(&d.mount("rw").unwrap()), ["c", "e"]);
    }

    #[test]
    fn overlay_parentless_layers() {
        let tmp = fsutil::test_tempdir();
        let d = Overlay::open(&tmp.path().join("overlay")).unwrap();
        let _guard = Unmounter(&d, vec!["rw".into(), "ro".into()]);
        d.create("rw", None, LayerKind::ReadWrite).unwrap();
        let m = d.mount("rw").unwrap();
        std::fs::write(m.join("hello"), "world").unwrap();
        assert_eq!(read(&d.diff_dir("rw").join("hello")), "world");
        assert_eq!(
            d.metadata("rw").len(),
            3,
            "no LowerDir for a parentless layer"
        );

        d.create("ro", None, LayerKind::ReadOnly).unwrap();
        std::fs::write(d.diff_dir("ro").join("f"), "f").unwrap();
        let m = d.mount("ro").unwrap();
        assert_eq!(read(&m.join("f")), "f");
        assert!(std::fs::write(m.join("g"), "g").is_err());
        d.unmount("ro").unwrap();
        d.unmount("rw").unwrap();
    }

    #[test]
    fn overlay_remove_mounted_and_half_created() {
        let tmp = fsutil::test_tempdir();
        let home = tmp.path().join("overlay");
        let d = Overlay::open(&home).unwrap();
        let _guard = Unmounter(&d, vec!["c".into()]);
        d.create("base", None, LayerKind::ReadOnly).unwrap();
        std::fs::write(d.diff_dir("base").join("f"), "f").unwrap();
        d.create("c", Some("base"), LayerKind::ReadWrite).unwrap();
        let m = d.mount("c").unwrap();
        std::fs::write(m.join("g"), "g").unwrap();
        assert!(d.is_mounted("c"));
        d.remove("c").unwrap();
        assert!(!d.exists("c"));
        assert!(!home.join("c").exists());
        assert_eq!(
            std::fs::read_dir(home.join("l")).unwrap().count(),
            1,
            "only base's short link remains"
        );
        assert_eq!(read(&d.diff_dir("base").join("f")), "f");

        // A half-created layer: directory and short link, but no `link` file yet.
        std::fs::create_dir_all(home.join("half/diff/sub")).unwrap();
        std::fs::write(home.join("half/diff/sub/file"), "x").unwrap();
        std::os::unix::fs::symlink("../half/diff", home.join("l/HALFCREATEDLINKNAME0000000"))
            .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", home.join("half/diff/sub/link")).unwrap();
        assert_eq!(d.list().unwrap(), vec!["base", "half"]);
        d.remove("half").unwrap();
        assert!(!home.join("half").exists());
        assert!(std::fs::symlink_metadata(home.join("l/HALFCREATEDLINKNAME0000000")).is_err());
        assert!(Path::new("/etc/passwd").exists());
        d.remove("half").unwrap();
        d.remove("base").unwrap();
        assert_eq!(d.list().unwrap(), Vec::<String>::new());
        assert_eq!(std::fs::read_dir(home.join("l")).unwrap().count(), 0);
    }

    #[test]
    fn overlay_usage_counts_hardlinks_once() {
        let tmp = fsutil::test_tempdir();
        let d = Overlay::open(&tmp.path().join("overlay")).unwrap();
        d.create("a", None, LayerKind::ReadOnly).unwrap();
        let diff = d.diff_dir("a");
        assert_eq!(
            d.usage("a").unwrap(),
            Usage {
                bytes: 0,
                inodes: 1
            }
        );
        std::fs::write(diff.join("big"), vec![7u8; 1000]).unwrap();
        std::fs::hard_link(diff.join("big"), diff.join("big2")).unwrap();
        std::fs::create_dir(diff.join("dir")).unwrap();
        std::fs::write(diff.join("dir/small"), "0123456789").unwrap();
        std::os::unix::fs::symlink("big", diff.join("sym")).unwrap();
        // root + big + dir + small + sym
        assert_eq!(
            d.usage("a").unwrap(),
            Usage {
                bytes: 1000 + 10 + 3,
                inodes: 5
            }
        );
        assert!(matches!(d.usage("missing"), Err(DriverError::NotFound(_))));
    }

    #[test]
    fn overlay_supported_and_status() {
        let tmp = fsutil::test_tempdir();
        supported(tmp.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "the probe cleans up after itself"
        );
        let d = Overlay::open(&tmp.path().join("overlay")).unwrap();
        let st = d.status();
        let keys: Vec<&str> = st.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "Backing Filesystem",
                "Supports d_type",
                "Native Overlay Diff",
                "userxattr"
            ]
        );
        assert_eq!(st[0].1, fsutil::backing_fs(tmp.path()));
        assert_ne!(st[0].1, "<unknown>");
        assert_eq!(st[1].1, "true");
        assert_eq!(d.list().unwrap(), Vec::<String>::new());
        let default = match st[0].1.as_str() {
            "btrfs" => "btrfs", // STRATA_DRIVER_TEST_DIR on btrfs: Docker's choice there
            _ => "overlay",
        };
        assert_eq!(super::super::default_driver_name(tmp.path()), default);
    }
}
