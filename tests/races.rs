//! Deletes racing work in flight, kills at chosen instants, leftovers and their collection
//! (issue 7). The instants are chosen with the binary's pause points (`STRATA_PAUSE_AT`, see
//! src/failpoint.rs): the command under test stops exactly where the race window is, the test
//! runs the racing command (or SIGKILLs it), then lets it go.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn layer_tar(name: &str, size: usize) -> Vec<u8> {
    LayerTar::new().file(name, &vec![b'x'; size]).build()
}

/// `base:1` (one layer) and an archive of `app:1` (base's layer plus two more).
fn setup(s: &Store) -> PathBuf {
    let base = layer_tar("base.txt", 10_000);
    let l2 = layer_tar("two.txt", 20_000);
    let l3 = layer_tar("three.txt", 30_000);
    let cfg = config_for(std::slice::from_ref(&base), "true");
    let a = docker_archive(&cfg, std::slice::from_ref(&base), &["base:1"]);
    let p = write_file(s.path().parent().unwrap(), "base.tar", &a);
    s.load(&p);
    let layers = vec![base, l2, l3];
    let cfg = config_for(&layers, "true");
    let a = docker_archive(&cfg, &layers, &["app:1"]);
    write_file(s.path().parent().unwrap(), "app.tar", &a)
}

fn busybox_dir(parent: &Path) -> PathBuf {
    let r = parent.join("rootfs");
    busybox_rootfs(&r);
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    for f in ["hosts", "hostname", "resolv.conf"] {
        std::fs::write(r.join("etc").join(f), "").unwrap();
    }
    for a in ["sleep", "dd", "rm"] {
        let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(a));
    }
    r
}

/// The image is complete: every layer there, its files readable through a container.
fn image_is_whole(s: &Store, image: &str, file: &str) {
    let c = s.ok(&["create", image]);
    let mnt = s.ok(&["mount", c.trim()]);
    assert!(
        Path::new(mnt.trim()).join(file).exists(),
        "{file} missing in {image}"
    );
    s.ok(&["umount", c.trim()]);
    s.ok(&["rm", c.trim()]);
}

both_drivers!(delete_during_load_waits_for_the_image, |driver| {
    for racer in [
        &["rmi", "base:1"][..],
        &["image", "prune", "-a", "-f"][..],
        &["container", "prune", "-f"][..],
        &["system", "prune", "-a", "-f"][..],
        &["rm", "-f", "victim"][..],
    ] {
        let s = Store::new(driver);
        let app = setup(&s);
        s.ok(&["create", "--name", "victim", "base:1"]);
        // The load has committed its layers and stops before its image record.
        let p = Paused::start(&s, &["load", "-i", app.to_str().unwrap()], "image-add");
        s.run(racer);
        let (ok, out) = p.resume();
        assert!(ok, "load failed after {racer:?}: {out}");
        image_is_whole(&s, "app:1", "three.txt");
        image_is_whole(&s, "app:1", "base.txt");
        s.fsck_clean();
    }
});

both_drivers!(delete_during_import_and_commit, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let r = busybox_dir(work.path());
    // import: its one layer is committed, the image not yet.
    let p = Paused::start(&s, &["import", r.to_str().unwrap(), "bb:1"], "image-add");
    s.run(&["image", "prune", "-a", "-f"]);
    let (ok, out) = p.resume();
    assert!(ok, "{out}");
    image_is_whole(&s, "bb:1", "bin/busybox");

    // commit: the container's image is removed (forced) and pruned while the commit is
    // between its layer and its image.
    let c = s.ok(&["create", "--name", "c1", "bb:1"]);
    let mnt = s.ok(&["mount", "c1"]);
    std::fs::write(Path::new(mnt.trim()).join("new.txt"), b"hello").unwrap();
    s.ok(&["umount", "c1"]);
    let p = Paused::start(&s, &["commit", "c1", "snap:1"], "image-add");
    s.ok(&["rmi", "-f", "bb:1"]);
    s.run(&["image", "prune", "-a", "-f"]);
    let (ok, out) = p.resume();
    assert!(ok, "{out}");
    image_is_whole(&s, "snap:1", "new.txt");
    image_is_whole(&s, "snap:1", "bin/busybox");
    s.ok(&["rm", c.trim()]);
    s.fsck_clean();
});

both_drivers!(create_racing_rmi_keeps_its_layers, |driver| {
    let s = Store::new(driver);
    let app = setup(&s);
    s.load(&app);
    // `create` has its parent layer leased and stops before its record; the image goes.
    let id = s.image_id("app:1");
    let p = Paused::start(
        &s,
        &["create", "--name", "late", "app:1"],
        "container-create",
    );
    s.ok(&["rmi", "app:1"]);
    let (ok, out) = p.resume();
    assert!(!ok, "create of a deleted image succeeded: {out}");
    assert!(out.contains("No such image"), "{out}");
    // Nothing half-made: no container, the image's layers collected, fsck clean.
    assert!(!s.ok(&["ps", "-a"]).contains("late"));
    s.fsck_clean();
    // And the other way round: the container is recorded first, then the image is only untagged.
    let p = Paused::start(&s, &["load", "-i", app.to_str().unwrap()], "image-add");
    let (ok, out) = p.resume();
    assert!(ok, "{out}");
    s.ok(&["create", "--name", "early", "app:1"]);
    let out = s.ok(&["rmi", "-f", "app:1"]);
    assert!(!out.contains("Deleted:"), "{out}");
    image_is_whole(&s, &id, "three.txt");
    s.ok(&["rm", "early"]);
    s.fsck_clean();
});

both_drivers!(rmi_force_with_containers_only_untags, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let r = busybox_dir(work.path());
    s.ok(&["import", r.to_str().unwrap(), "bb:1"]);
    let id = s.image_id("bb:1");
    s.ok(&["create", "--name", "stopped", "bb:1", "true"]);
    let out = s.ok(&["rmi", "-f", "bb:1"]);
    assert!(out.contains("Untagged: bb:1"), "{out}");
    assert!(!out.contains("Deleted:"), "{out}");
    // Still there, as <none>, and the container works.
    let images = s.ok(&["images", "-a"]);
    assert!(images.contains("<none>"), "{images}");
    assert!(images.contains(&id[7..19]), "{images}");
    s.ok(&["start", "-a", "stopped"]);
    let out = s.ok(&["rmi", "-f", &id]);
    assert!(!out.contains("Deleted:"), "{out}");
    s.ok(&["commit", "stopped", "after:1"]);
    s.fsck_clean();
    // Once no container uses it, prune takes it, and nothing stays behind.
    s.ok(&["rm", "stopped"]);
    s.ok(&["rmi", "after:1"]);
    s.ok(&["image", "prune", "-f"]);
    assert!(s.ok(&["images", "-a", "-q"]).trim().is_empty());
    s.fsck_clean();
    let left: Vec<_> = std::fs::read_dir(s.layer_home())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "l")
        .collect();
    assert!(left.is_empty(), "driver dirs left: {left:?}");
});

both_drivers!(killed_removal_is_finished_later, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let r = busybox_dir(work.path());
    s.ok(&["import", r.to_str().unwrap(), "bb:1"]);
    s.ok(&[
        "run",
        "--name",
        "gone",
        "bb:1",
        "sh",
        "-c",
        "echo some output",
    ]);
    let cdirs = || {
        std::fs::read_dir(s.path().join("containers"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(cdirs(), 1);
    // Killed after the record is marked, before anything is removed.
    let p = Paused::start(&s, &["rm", "-f", "gone"], "container-removing");
    // Meanwhile `ps -a` says what Docker says of a container being removed.
    assert!(s.ok(&["ps", "-a"]).contains("Removal In Progress"));
    p.kill();
    // rm -f again works (the record is still there, or the next command's collector already
    // finished the removal: then, as Docker, -f ignores the missing name) ...
    s.ok(&["rm", "-f", "gone"]);
    assert_eq!(cdirs(), 0);
    s.fsck_clean();

    // ... and if nobody asks, the next command collects it.
    s.ok(&["run", "--name", "gone2", "bb:1", "true"]);
    let p = Paused::start(&s, &["rm", "gone2"], "container-removing");
    p.kill();
    s.ok(&["images"]);
    assert!(!s.ok(&["ps", "-a"]).contains("gone2"));
    assert_eq!(cdirs(), 0);
    s.fsck_clean();

    // --rm: the monitor is killed while it removes the container.
    let p = Paused::start(
        &s,
        &["run", "--rm", "--name", "gone3", "bb:1", "true"],
        "container-removing",
    );
    let reached = std::fs::read_to_string(p.dir.path().join("container-removing.reached")).unwrap();
    unsafe { libc_kill(reached.trim().parse().unwrap()) };
    let _ = p.resume();
    s.ok(&["images"]);
    assert!(!s.ok(&["ps", "-a"]).contains("gone3"));
    assert_eq!(cdirs(), 0);
    s.fsck_clean();
});

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
unsafe fn libc_kill(pid: i32) {
    unsafe { kill(pid, 9) };
}

both_drivers!(killed_start_leaves_no_mount, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let r = busybox_dir(work.path());
    s.ok(&["import", r.to_str().unwrap(), "bb:1"]);
    s.ok(&["create", "--name", "c", "bb:1", "true"]);
    let p = Paused::start(&s, &["start", "c"], "start-mounted");
    p.kill();
    // rm without -f: the interrupted start is finished, its mount undone.
    s.ok(&["rm", "c"]);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(s.path().to_str().unwrap()), "mount left");
    s.fsck_clean();
    // And a start after a killed start works and stops cleanly.
    s.ok(&["create", "--name", "d", "bb:1", "true"]);
    let p = Paused::start(&s, &["start", "d"], "start-mounted");
    p.kill();
    s.ok(&["start", "-a", "d"]);
    s.ok(&["rm", "d"]);
    // export (and cp) killed while they have the root filesystem mounted: nothing keeps the
    // container "mounted" afterwards.
    s.ok(&["create", "--name", "e", "bb:1", "true"]);
    let p = Paused::start(&s, &["export", "-o", "/dev/null", "e"], "rootfs-held");
    p.kill();
    s.ok(&["rm", "e"]);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(s.path().to_str().unwrap()), "mount left");
    s.fsck_clean();
});

both_drivers!(
    leftovers_are_reported_and_collected_while_others_run,
    |driver| {
        let s = Store::new(driver);
        let work = tempfile::tempdir_in("/var/tmp").unwrap();
        let r = busybox_dir(work.path());
        s.ok(&["import", r.to_str().unwrap(), "bb:1"]);
        // A long-running attached container: another live strata process the whole time.
        let mut long = s
            .cmd(&["run", "--name", "long", "bb:1", "sleep", "30"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !s.ok(&["ps"]).contains("long") {
            assert!(
                Instant::now() < deadline,
                "the long-running container never ran"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let app = setup(&s);
        let layers_dir = s.path().join("layers");
        let splits_before = std::fs::read_dir(&layers_dir).unwrap().count();
        // A load killed after its layers: 3 layers' files left, held by a dead session.
        let p = Paused::start(&s, &["load", "-i", app.to_str().unwrap()], "image-add");
        p.kill();
        // The next command finds the dead session and collects the killed load's layers, though
        // `long` runs.
        s.ok(&["images"]);
        let splits = std::fs::read_dir(&layers_dir).unwrap().count();
        assert_eq!(
            splits, splits_before,
            "the killed load's tar-splits were not collected"
        );
        // Planted leftovers: a blob, a driver dir, a container dir, a partial download.
        let blob = s.path().join("content/blobs/sha256").join("ab".repeat(32));
        std::fs::write(&blob, b"orphan").unwrap();
        std::fs::create_dir_all(s.path().join("containers").join("cd".repeat(32))).unwrap();
        std::fs::create_dir_all(s.path().join("ingest")).unwrap();
        let partial = s
            .path()
            .join("ingest")
            .join(format!("{}.partial", "ef".repeat(32)));
        std::fs::write(&partial, vec![0u8; 100_000]).unwrap();
        let o = s.run(&["system", "fsck"]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(!o.status.success(), "fsck must fail on leftovers: {out}");
        for needle in [
            "ERROR leftover: blob sha256:abab",
            "ERROR leftover: container directory cdcd",
            "NOTE leftover: partial download efef",
        ] {
            assert!(out.contains(needle), "fsck does not report {needle}: {out}");
        }
        let o = s.run(&["system", "fsck", "--repair"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        assert!(!blob.exists() && !partial.exists());
        s.fsck_clean();
        // `long` is untouched by all this.
        let ps = s.ok(&["ps"]);
        assert!(ps.contains("long"), "{ps}");
        s.ok(&["rm", "-f", "long"]);
        let _ = long.wait();
        s.fsck_clean();
    }
);

#[test]
fn removal_works_on_a_full_disk() {
    let mnt = tempfile::tempdir_in("/var/tmp").unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _u = Unmount(mnt.path().to_path_buf());
    let root = mnt.path().join("root");
    let strata = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(&root)
            .arg("--storage-driver")
            .arg("vfs")
            .args(args)
            .env_remove("STRATA_ROOT")
            .output()
            .unwrap()
    };
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let r = busybox_dir(work.path());
    let o = strata(&["import", r.to_str().unwrap(), "bb:1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Fill the disk from inside a container.
    let _ = strata(&[
        "run",
        "--name",
        "filler",
        "bb:1",
        "sh",
        "-c",
        "dd if=/dev/zero of=/big bs=1M count=100",
    ]);
    let o = strata(&["rm", "-f", "filler"]);
    assert!(
        o.status.success(),
        "rm on a full disk: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = strata(&["rmi", "-f", "bb:1"]);
    assert!(
        o.status.success(),
        "rmi on a full disk: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = strata(&["system", "fsck"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn partial_downloads_count_in_df_and_go_with_prune() {
    let s = Store::new("overlay");
    s.ok(&["images"]);
    let df_images = |s: &Store| -> String {
        let out = s.ok(&["system", "df"]);
        out.lines()
            .find(|l| l.starts_with("Images"))
            .unwrap()
            .split_whitespace()
            .nth(3)
            .unwrap()
            .to_string()
    };
    assert_eq!(df_images(&s), "0B");
    std::fs::create_dir_all(s.path().join("ingest")).unwrap();
    let partial = s
        .path()
        .join("ingest")
        .join(format!("{}.partial", "12".repeat(32)));
    std::fs::write(&partial, vec![7u8; 3_000_000]).unwrap();
    assert_eq!(df_images(&s), "3MB");
    let out = s.ok(&["image", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space: 3"), "{out}");
    assert!(!partial.exists());
    assert_eq!(df_images(&s), "0B");
}

/// Several commands creating the same fresh store at once all open it: none fails with
/// "database is locked" (two first pulls did, one time in four, before the open retried).
#[test]
fn concurrent_first_commands_on_a_fresh_store() {
    for _ in 0..20 {
        let s = Store::new("overlay");
        let children: Vec<_> = (0..2)
            .map(|_| {
                s.cmd(&["pull", "127.0.0.1:1/none:1"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("connection refused"), "{err}");
        }
    }
}
