//! Shared helpers for the integration tests: a throwaway store root per test, the real
//! `strata` binary, and builders for layer tars and docker-save / OCI archives.
#![allow(dead_code)]

pub mod dockerd;

use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Bytes on disk under `path` (`du -s -B1 -x`: not crossing into mounts below it).
pub fn du_bytes(path: &Path) -> u64 {
    let o = Command::new("du")
        .args(["-s", "-B1", "-x"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A store root under /var/tmp (a real disk filesystem; overlay needs one), removed on drop
/// after unmounting anything left mounted inside it.
pub struct Store {
    pub root: PathBuf,
    pub driver: &'static str,
    _dir: tempfile::TempDir,
}

/// The btrfs mount the suite runs on when `STRATA_TEST_BTRFS` names one (scripts/test.sh's
/// second pass): every store goes there, and overlay stores use the btrfs driver instead.
pub fn btrfs_suite() -> Option<PathBuf> {
    std::env::var_os("STRATA_TEST_BTRFS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The driver a test asking for `driver` gets: "btrfs" for "overlay" in the btrfs pass.
pub fn suite_driver(driver: &'static str) -> &'static str {
    if driver == "overlay" && btrfs_suite().is_some() {
        "btrfs"
    } else {
        driver
    }
}

impl Store {
    /// A store for `driver` (see `suite_driver`) under /var/tmp, or on the btrfs pass's mount.
    pub fn new(driver: &'static str) -> Store {
        let base = btrfs_suite()
            .map(|p| p.join("strata-tests"))
            .unwrap_or_else(|| PathBuf::from("/var/tmp/strata-tests"));
        Store::new_in(&base, suite_driver(driver))
    }

    /// An overlay store under /var/tmp even in the btrfs pass: for tests of what Docker
    /// prints for overlay2 (driver names) or of overlay's own layout.
    pub fn overlay() -> Store {
        Store::new_in(Path::new("/var/tmp/strata-tests"), "overlay")
    }

    /// A store for exactly `driver` in a fresh directory under `base`.
    pub fn new_in(base: &Path, driver: &'static str) -> Store {
        std::fs::create_dir_all(base).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("t-")
            .tempdir_in(base)
            .unwrap();
        Store {
            root: dir.path().join("root"),
            driver,
            _dir: dir,
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.arg("--root")
            .arg(&self.root)
            .arg("--storage-driver")
            .arg(self.driver)
            .args(args);
        c.env_remove("STRATA_ROOT")
            .env_remove("STRATA_STORAGE_DRIVER");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Run and require success; return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "strata {args:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Run and require failure; return stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "strata {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(!err.contains("panicked"), "strata {args:?} panicked: {err}");
        err
    }

    pub fn load(&self, archive: &Path) -> String {
        self.ok(&["load", "-i", archive.to_str().unwrap()])
    }

    pub fn inspect(&self, image: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["image", "inspect", image])).unwrap();
        v[0].clone()
    }

    pub fn image_id(&self, image: &str) -> String {
        self.inspect(image)["Id"].as_str().unwrap().to_string()
    }

    /// A refused input left nothing: no image, no layer, fsck clean, nothing half-written in
    /// the temp dirs or the tar-splits.
    pub fn holds_nothing(&self) {
        assert_eq!(self.ok(&["images", "-q"]), "", "nothing may be stored");
        assert!(self.ok(&["info"]).contains("Layers: 0"));
        self.fsck_clean();
        for sub in ["tmp", "layers"] {
            let d = self.path().join(sub);
            let n = std::fs::read_dir(&d).map(|r| r.count()).unwrap_or(0);
            assert_eq!(n, 0, "{} not empty", d.display());
        }
    }

    pub fn fsck_clean(&self) {
        let out = self.ok(&["system", "fsck"]);
        assert!(out.contains("0 problem(s)"), "fsck: {out}");
    }

    /// Bytes on disk under the root (du), to prove sharing by space, not by counting records.
    pub fn disk_usage(&self) -> u64 {
        self.disk_usage_of("")
    }

    /// Bytes on disk under `ROOT/sub` (e.g. the driver's directory, without the database).
    pub fn disk_usage_of(&self, sub: &str) -> u64 {
        du_bytes(&self.root.join(sub))
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Bytes on disk of the driver's layers (du; on btrfs crossing into the subvolumes, which
    /// are other st_devs of the same filesystem, so shared extents count once per snapshot).
    pub fn layers_disk_usage(&self) -> u64 {
        let home = self.layer_home();
        if self.driver != "btrfs" {
            return du_bytes(&home);
        }
        let o = Command::new("du")
            .args(["-s", "-B1"])
            .arg(&home)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The directory holding the driver's layer directories (named by cache-id).
    pub fn layer_home(&self) -> PathBuf {
        match self.driver {
            "overlay" => self.root.join("overlay"),
            "btrfs" => self.root.join("btrfs/subvolumes"),
            _ => self.root.join("vfs/dir"),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Unmount whatever a failed test left mounted under the root, deepest first.
        if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
            let root = self.root.to_string_lossy().to_string();
            let mut points: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").arg("-l").arg(p).status();
            }
        }
    }
}

/// A btrfs filesystem made for one test: `mkfs.btrfs` on a sparse image file under /var/tmp,
/// loop-mounted; unmounted (which frees the loop device) and deleted on drop.
pub struct BtrfsFs {
    pub mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl BtrfsFs {
    /// None (with a printed reason) only when the kernel has no btrfs.
    pub fn new(size: &str) -> Option<BtrfsFs> {
        let _ = Command::new("modprobe").arg("btrfs").status();
        let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !fs.lines().any(|l| l.trim_end().ends_with("btrfs")) {
            eprintln!("skipped: this kernel has no btrfs");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("strata-btrfs-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let ok = |c: &mut Command| {
            let o = c
                .output()
                .unwrap_or_else(|e| panic!("{c:?}: {e} (run scripts/setup.sh)"));
            assert!(
                o.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        ok(Command::new("truncate").arg("-s").arg(size).arg(&img));
        ok(Command::new("mkfs.btrfs").arg("-q").arg("-f").arg(&img));
        ok(Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(&img)
            .arg(&mnt));
        Some(BtrfsFs { mnt, _dir: dir })
    }

    /// Bytes of data and of metadata in use (`btrfs filesystem df`), after a sync, so
    /// what was just written is counted.
    pub fn used(&self) -> (u64, u64) {
        let _ = Command::new("btrfs")
            .args(["filesystem", "sync"])
            .arg(&self.mnt)
            .status();
        let o = Command::new("btrfs")
            .args(["filesystem", "df", "-b"])
            .arg(&self.mnt)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let used = |kind: &str| -> u64 {
            out.lines()
                .filter(|l| l.starts_with(kind))
                .filter_map(|l| l.split("used=").nth(1))
                .map(|v| v.trim().parse::<u64>().unwrap())
                .sum()
        };
        (used("Data"), used("Metadata"))
    }
}

impl Drop for BtrfsFs {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
            let root = self.mnt.to_string_lossy().to_string();
            let mut points: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").arg("-l").arg(p).status();
            }
        }
    }
}

/// Builds an uncompressed layer tar with the `tar` crate, the way image builders write them.
#[derive(Default)]
pub struct LayerTar {
    b: Option<tar::Builder<Vec<u8>>>,
}

impl LayerTar {
    pub fn new() -> LayerTar {
        LayerTar {
            b: Some(tar::Builder::new(Vec::new())),
        }
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }
    pub fn dir(mut self, path: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.b
            .as_mut()
            .unwrap()
            .append_data(&mut h, path, std::io::empty())
            .unwrap();
        self
    }
    pub fn file(mut self, path: &str, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        self.b
            .as_mut()
            .unwrap()
            .append_data(&mut h, path, data)
            .unwrap();
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.b
            .as_mut()
            .unwrap()
            .append_link(&mut h, path, target)
            .unwrap();
        self
    }
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.b
            .as_mut()
            .unwrap()
            .append_link(&mut h, path, target)
            .unwrap();
        self
    }
    /// Raw header with an arbitrary (possibly hostile) name, bypassing the tar crate's checks.
    pub fn raw(mut self, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Self {
        let mut h = Self::header(kind, 0o644, data.len() as u64);
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name);
            g.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_cksum();
        let b = self.b.as_mut().unwrap();
        b.append(&h, data).unwrap();
        self
    }
    pub fn build(mut self) -> Vec<u8> {
        self.b.take().unwrap().into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    ::zstd::encode_all(data, 3).unwrap()
}

/// An image config for `layers` (uncompressed tars), as `docker build` would write one.
pub fn config_for(layers: &[Vec<u8>], cmd: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let history: Vec<serde_json::Value> = (0..layers.len())
        .map(|i| serde_json::json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("/bin/sh -c step {i}")}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": [cmd], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }))
    .unwrap()
}

/// A classic `docker save` archive (`<id>/layer.tar`, `<config>.json`, manifest.json).
/// `blobs` are the layer files as stored (possibly compressed); `config` names the diffIDs.
pub fn docker_archive(config: &[u8], blobs: &[Vec<u8>], tags: &[&str]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    };
    let cfg_name = format!("{}.json", sha256_hex(config));
    let mut layer_paths = Vec::new();
    for (i, blob) in blobs.iter().enumerate() {
        let p = format!("{:064x}/layer.tar", i + 1);
        add(&p, blob);
        layer_paths.push(p);
    }
    add(&cfg_name, config);
    let manifest =
        serde_json::json!([{"Config": cfg_name, "RepoTags": tags, "Layers": layer_paths}]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    b.into_inner().unwrap()
}

pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// A busybox-static root filesystem (needs busybox-static, installed by scripts/setup.sh).
pub fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("busybox-static is installed (scripts/setup.sh)");
    for a in ["sh", "ls", "cat", "echo", "true"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(a)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}

/// Declare a test that runs once per storage driver.
#[macro_export]
macro_rules! both_drivers {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn overlay() {
                ($body)($crate::common::suite_driver("overlay"))
            }
            #[test]
            fn vfs() {
                ($body)("vfs")
            }
        }
    };
}

/// A command of `s` started in the background and stopped at the binary's pause point
/// `point` (src/failpoint.rs): the test runs a racing command, or SIGKILLs it, right there.
pub struct Paused {
    pub child: std::process::Child,
    pub dir: tempfile::TempDir,
    point: &'static str,
}

impl Paused {
    pub fn start(s: &Store, args: &[&str], point: &'static str) -> Paused {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let child = s
            .cmd(args)
            .env("STRATA_PAUSE_AT", point)
            .env("STRATA_PAUSE_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let p = Paused { child, dir, point };
        let reached = p.dir.path().join(format!("{point}.reached"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !reached.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{args:?} never reached {point}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        p
    }
    /// Let it go on; its output and success.
    pub fn resume(self) -> (bool, String) {
        std::fs::write(self.dir.path().join(format!("{}.go", self.point)), "").unwrap();
        let o = self.child.wait_with_output().unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}
