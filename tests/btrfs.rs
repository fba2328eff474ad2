//! The btrfs driver on a real btrfs filesystem (a loop-mounted image made per test): layers
//! as subvolumes and snapshots, sharing shown by the filesystem's own space accounting, the
//! `--storage-opt size` qgroup limit, the driver chosen by default on btrfs, and leftovers
//! (snapshots nothing recorded, with subvolumes nested in them) removed by the collector.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// A busybox image `bb:latest` with a 4 MB file of random bytes (data no compression or
/// dedup could hide), imported into `s`.
fn image(s: &Store) {
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let r = work.path().join("rootfs");
    busybox_rootfs(&r);
    for a in ["dd", "rm", "sync", "stat"] {
        let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(a));
    }
    let mut data = vec![0u8; 4 << 20];
    getrandom(&mut data);
    std::fs::write(r.join("etc/data"), &data).unwrap();
    s.ok(&[
        "import",
        r.to_str().unwrap(),
        "bb:latest",
        "-c",
        "CMD [\"sh\"]",
    ]);
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}

fn fs_and_store(size: &str) -> Option<(BtrfsFs, Store)> {
    let fs = BtrfsFs::new(size)?;
    let s = Store::new_in(&fs.mnt, "btrfs");
    image(&s);
    Some((fs, s))
}

fn subvolumes(s: &Store) -> std::path::PathBuf {
    s.root.join("btrfs/subvolumes")
}

/// A subvolume's root directory has inode 256 (BTRFS_FIRST_FREE_OBJECTID).
fn is_subvolume(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.ino() == 256)
}

fn strata(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("STRATA_ROOT")
        .env_remove("STRATA_STORAGE_DRIVER")
        .output()
        .unwrap()
}

#[test]
fn btrfs_is_the_default_on_btrfs_and_info_shows_it() {
    let Some(fs) = BtrfsFs::new("1G") else { return };
    let root = fs.mnt.join("root");
    let o = strata(&root, &["info"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(" Storage Driver: btrfs\n"), "{out}");
    assert!(out.contains("  Btrfs: \n"), "{out}");
    assert!(out.contains("  Build Version: Btrfs (Linux "), "{out}");
    assert!(out.contains("  Library Version: "), "{out}");
    assert!(out.contains("Storage Opts: size on btrfs"), "{out}");
    let o = strata(&root, &["info", "-f", "{{json .DriverStatus}}"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[1][0], "Build Version");

    // Off btrfs, btrfs is refused in one line and the store is not bound to it.
    let plain = Store::new_in(Path::new("/var/tmp/strata-tests"), "btrfs");
    let err = plain.fails(&["info"]);
    assert!(
        err.contains("storage driver btrfs is not supported here") && err.contains("not btrfs"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let o = strata(&plain.root, &["--storage-driver", "vfs", "info"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!plain.root.join("btrfs").exists());
}

#[test]
fn btrfs_layers_are_subvolumes_and_containers_snapshots() {
    let Some((_fs, s)) = fs_and_store("1G") else {
        return;
    };
    let layers: Vec<_> = std::fs::read_dir(subvolumes(&s))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(layers.len(), 1);
    assert!(is_subvolume(&layers[0]));
    let id = s.ok(&["create", "--name", "c", "bb"]).trim().to_string();
    let c: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", &id])).unwrap();
    assert_eq!(c[0]["GraphDriver"]["Name"], "btrfs");
    let mut dirs: Vec<_> = std::fs::read_dir(subvolumes(&s))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 3, "image layer, init layer, writable layer");
    assert!(dirs.iter().all(|d| is_subvolume(d)));
    assert!(dirs.iter().any(|d| d.to_string_lossy().ends_with("-init")));
    // A snapshot: the same file, the same inode number, the same bytes, no copy.
    let (a, b) = (
        std::fs::metadata(layers[0].join("etc/data")).unwrap(),
        std::fs::metadata(
            dirs.iter()
                .find(|d| **d != layers[0] && !d.to_string_lossy().ends_with("-init"))
                .unwrap()
                .join("etc/data"),
        )
        .unwrap(),
    );
    assert_eq!((a.ino(), a.len()), (b.ino(), b.len()));
    assert_ne!(a.dev(), b.dev(), "each subvolume is its own st_dev");

    // run, diff, commit, run the commit, rm: all on snapshots.
    s.ok(&[
        "run",
        "--name",
        "w",
        "bb",
        "sh",
        "-c",
        "echo new > /etc/new; rm /etc/passwd; echo more >> /etc/data",
    ]);
    let diff = s.ok(&["diff", "w"]);
    for l in ["C /etc", "A /etc/new", "D /etc/passwd", "C /etc/data"] {
        assert!(diff.lines().any(|x| x == l), "{l} missing in:\n{diff}");
    }
    assert_eq!(diff.lines().count(), 4, "{diff}");
    s.ok(&["commit", "w", "bb:2"]);
    let out = s.ok(&[
        "run",
        "--rm",
        "bb:2",
        "sh",
        "-c",
        "cat /etc/new; ls /etc/passwd || echo gone",
    ]);
    assert_eq!(out, "new\ngone\n");
    s.ok(&["rm", "w", "c"]);
    s.ok(&["rmi", "bb:2"]);
    s.fsck_clean();
    assert_eq!(std::fs::read_dir(subvolumes(&s)).unwrap().count(), 1);
}

/// 100 containers of a 4 MB image add no data extents (their snapshots share the image's);
/// each costs only tree blocks. The data measured includes the store's database, which is on
/// the same filesystem.
#[test]
fn btrfs_hundred_containers_cost_under_a_megabyte() {
    let Some((fs, s)) = fs_and_store("2G") else {
        return;
    };
    s.ok(&["create", "--name", "warm", "bb"]);
    let (data0, meta0) = fs.used();
    for i in 0..100 {
        s.ok(&["create", "--name", &format!("c{i}"), "bb"]);
    }
    let (data1, meta1) = fs.used();
    let data = data1.saturating_sub(data0);
    eprintln!(
        "100 containers: data +{data} bytes, metadata +{} bytes",
        meta1.saturating_sub(meta0)
    );
    assert!(data < 1 << 20, "100 containers took {data} bytes of data");
    // The same measure sees a copy: one vfs-like full copy of the image's data would show.
    let sub = subvolumes(&s);
    let any = std::fs::read_dir(&sub)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("etc/data").exists())
        .unwrap();
    // (Written, not std::fs::copy: copy_file_range would reflink on btrfs.)
    let bytes = std::fs::read(any.join("etc/data")).unwrap();
    std::fs::write(fs.mnt.join("copy"), bytes).unwrap();
    let (data2, _) = fs.used();
    assert!(
        data2 - data1 >= 4 << 20,
        "a real copy is {} bytes",
        data2 - data1
    );
    s.ok(&["container", "prune", "-f"]);
    s.fsck_clean();
}

#[test]
fn btrfs_size_limit_is_enforced_for_that_container_only() {
    let Some((_fs, s)) = fs_and_store("1G") else {
        return;
    };
    let o = s.run(&[
        "run",
        "--name",
        "small",
        "--storage-opt",
        "size=120M",
        "bb",
        "dd",
        "if=/dev/zero",
        "of=/big",
        "bs=1M",
        "count=200",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "dd past 120M succeeded: {err}");
    // btrfs reports a qgroup limit as EDQUOT.
    assert!(
        err.contains("Disk quota exceeded") || err.contains("No space left on device"),
        "{err}"
    );
    let c: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "small"])).unwrap();
    assert_eq!(c[0]["HostConfig"]["StorageOpt"]["size"], "120M");
    // Under the limit it writes; another container, unlimited, writes past 120M.
    s.ok(&[
        "run",
        "--rm",
        "--storage-opt",
        "size=120M",
        "bb",
        "dd",
        "if=/dev/zero",
        "of=/f",
        "bs=1M",
        "count=100",
    ]);
    s.ok(&[
        "run",
        "--rm",
        "bb",
        "dd",
        "if=/dev/zero",
        "of=/f",
        "bs=1M",
        "count=200",
    ]);
    // The store still works: a commit of the full container, a new one, fsck.
    s.ok(&["commit", "small", "bb:full"]);
    s.ok(&["run", "--rm", "bb:full", "true"]);
    s.ok(&["rm", "small"]);
    s.ok(&["rmi", "bb:full"]);
    s.fsck_clean();

    // Refused before anything is made: a bad value, an unknown option.
    let err = s.fails(&["create", "--storage-opt", "size=lots", "bb"]);
    assert!(err.contains("invalid size: 'lots'"), "{err}");
    let err = s.fails(&["create", "--storage-opt", "inodes=5", "bb"]);
    assert!(err.contains("Unknown option inodes"), "{err}");
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}

/// overlay and vfs refuse `--storage-opt size` with Docker's words, leaving nothing behind.
#[test]
fn size_limit_refused_by_overlay_and_vfs() {
    for (driver, want) in [
        (
            "overlay",
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
        ),
        (
            "vfs",
            "Filesystem does not support, or has not enabled quotas",
        ),
    ] {
        let s = Store::new_in(Path::new("/var/tmp/strata-tests"), driver);
        image(&s);
        let err = s.fails(&["run", "--storage-opt", "size=120M", "bb", "true"]);
        assert!(err.contains(want), "{driver}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert_eq!(s.ok(&["ps", "-aq"]), "");
        s.fsck_clean();
    }
}

/// A snapshot made and never recorded (a create killed after the ioctl), with a subvolume
/// nested inside it, is found and deleted by `fsck --repair`; `rm -rf` could not.
#[test]
fn btrfs_unrecorded_snapshots_collected() {
    let Some((_fs, s)) = fs_and_store("1G") else {
        return;
    };
    let sub = subvolumes(&s);
    let layer = std::fs::read_dir(&sub)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let leftover = sub.join("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
    ok(Command::new("btrfs")
        .args(["-q", "subvolume", "snapshot"])
        .arg(&layer)
        .arg(&leftover));
    ok(Command::new("btrfs")
        .args(["-q", "subvolume", "create"])
        .arg(leftover.join("nested")));
    std::fs::write(leftover.join("nested/file"), "x").unwrap();
    s.ok(&["create", "--name", "c", "bb"]);
    let out = s.run(&["system", "fsck"]);
    assert!(!out.status.success());
    s.ok(&["system", "fsck", "--repair"]);
    assert!(!leftover.exists());
    s.fsck_clean();
    // A container whose writable layer holds a nested subvolume is removed whole.
    let cdir = std::fs::read_dir(&sub)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            p != &layer && !n.ends_with("-init")
        })
        .unwrap();
    ok(Command::new("btrfs")
        .args(["-q", "subvolume", "create"])
        .arg(cdir.join("var-lib-machines")));
    s.ok(&["rm", "c"]);
    assert!(!cdir.exists());
    assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 1);
    s.fsck_clean();
}
