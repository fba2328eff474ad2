//! Container filesystems through the real binary, both drivers: `diff` after writes through
//! `strata mount`, `commit` (a layer of only the changes, history, round trip through
//! save/load, streamed), `cp` both ways against symlinks that point out of the container,
//! `ps -s` / `inspect --size`, `system df` counting shared layers once, `container prune`.

mod common;
use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A store with image `bb:1` (busybox rootfs plus a few known files) imported.
fn store_with_image(driver: &'static str) -> (Store, tempfile::TempDir) {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    std::fs::write(rootfs.join("etc/motd"), b"welcome\n").unwrap();
    std::fs::write(rootfs.join("etc/issue"), b"issue\n").unwrap();
    std::fs::create_dir_all(rootfs.join("opq")).unwrap();
    std::fs::write(rootfs.join("opq/old"), b"old").unwrap();
    std::fs::create_dir_all(rootfs.join("root")).unwrap();
    s.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    (s, work)
}

fn mount(s: &Store, c: &str) -> PathBuf {
    PathBuf::from(s.ok(&["mount", c]).trim())
}

/// Writes, modifies, deletes and replaces a directory in container `c`, through its mount.
fn make_changes(s: &Store, c: &str) {
    let m = mount(s, c);
    std::fs::write(m.join("root/new.txt"), b"new file").unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(m.join("etc/motd"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"more\n"))
        .unwrap();
    std::fs::remove_file(m.join("etc/issue")).unwrap();
    std::fs::remove_dir_all(m.join("opq")).unwrap();
    std::fs::create_dir(m.join("opq")).unwrap();
    std::fs::write(m.join("opq/new"), b"n").unwrap();
    std::fs::create_dir_all(m.join("a/b")).unwrap();
    std::fs::write(m.join("a/b/f"), b"f").unwrap();
    s.ok(&["umount", c]);
}

const EXPECTED_DIFF: &[&str] = &[
    "A /a",
    "A /a/b",
    "A /a/b/f",
    "C /etc",
    "D /etc/issue",
    "C /etc/motd",
    "C /opq",
    "A /opq/new",
    "D /opq/old",
    "C /root",
    "A /root/new.txt",
];

both_drivers!(diff_reports_adds_changes_deletes, |driver| {
    let (s, _w) = store_with_image(driver);
    s.ok(&["create", "--name", "c1", "bb:1", "true"]);
    assert_eq!(
        s.ok(&["diff", "c1"]),
        "",
        "a fresh container changed nothing"
    );
    // Reading copies nothing up.
    let m = mount(&s, "c1");
    assert_eq!(std::fs::read(m.join("etc/motd")).unwrap(), b"welcome\n");
    s.ok(&["umount", "c1"]);
    assert_eq!(s.ok(&["container", "diff", "c1"]), "");
    make_changes(&s, "c1");
    let out = s.ok(&["diff", "c1"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), EXPECTED_DIFF, "{out}");
    let err = s.fails(&["diff", "nope"]);
    assert!(err.contains("No such container: nope"), "{err}");
    s.ok(&["rm", "c1"]);
    s.fsck_clean();
});

/// The layer directories the driver holds (cache-ids; overlay's `l/` link directory left out).
fn driver_dirs(s: &Store) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(s.layer_home())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "l")
        .collect()
}

/// Overlay's short links (`ROOT/overlay/l/*`), one per layer directory.
fn overlay_links(s: &Store) -> usize {
    std::fs::read_dir(s.root.join("overlay/l")).map_or(0, |d| d.count())
}

// The runtime's mount points (/proc, /sys, /dev, the /etc files it bind-mounts) live in the
// container's init layer, so the writable layer holds only what the container wrote: `diff`,
// `commit`, `ps -s` and `inspect --size` show nothing for a container that wrote nothing.
both_drivers!(run_changes_only_what_the_container_wrote, |driver| {
    let (s, w) = store_with_image(driver);
    let image_size = s.inspect("bb:1")["Size"].as_u64().unwrap();
    let base_layers = s.inspect("bb:1")["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    s.ok(&["run", "--name", "quiet", "bb:1", "true"]);
    let o = s.run(&["diff", "quiet"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "",
        "ran `true`: no changes"
    );

    s.ok(&[
        "run",
        "--name",
        "writer",
        "bb:1",
        "sh",
        "-c",
        "echo hi > /tmp/x",
    ]);
    let out = s.ok(&["diff", "writer"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["C /tmp", "A /tmp/x"],
        "{out}"
    );

    // Sizes: nothing written is 0B, the image alone is the virtual size.
    let ps = s.ok(&["ps", "-a", "-s"]);
    let row = ps.lines().find(|l| l.contains("quiet")).unwrap();
    assert!(
        row.ends_with(&format!("0B (virtual {})", human(image_size))),
        "{ps}"
    );
    let quiet = inspect_container(&s, "quiet", true);
    assert_eq!(quiet["SizeRw"], 0);
    assert_eq!(quiet["SizeRootFs"], image_size);
    assert_eq!(inspect_container(&s, "writer", true)["SizeRw"], 3);

    // commit: no layer for `true`; exactly /tmp and /tmp/x for the writer.
    s.ok(&["commit", "quiet", "bb:quiet"]);
    let img = s.inspect("bb:quiet");
    assert_eq!(
        img["RootFS"]["Layers"].as_array().unwrap().len(),
        base_layers
    );
    let hist = s.ok(&["history", "bb:quiet"]);
    let top = hist.lines().nth(1).unwrap();
    assert!(top.contains(" 0B "), "{hist}");
    s.ok(&["commit", "writer", "bb:writer"]);
    let (entries, _) = last_layer_entries(&s, "bb:writer", w.path());
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["tmp/", "tmp/x"]);
    // And the committed image runs with its own mount points again.
    let o = s.run(&["run", "--rm", "bb:writer", "cat", "/tmp/x"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    s.fsck_clean();
});

// A container is two driver directories (the writable layer and its init layer); `rm`
// removes both, and `run --rm` leaves nothing either.
both_drivers!(rm_leaves_no_driver_dirs, |driver| {
    let (s, _w) = store_with_image(driver);
    let before = driver_dirs(&s);
    let links = overlay_links(&s);
    s.ok(&["create", "--name", "c1", "bb:1", "true"]);
    let made: Vec<String> = driver_dirs(&s).difference(&before).cloned().collect();
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!(made[1], format!("{}-init", made[0]), "{made:?}");
    s.ok(&["start", "-a", "c1"]);
    s.ok(&["rm", "c1"]);
    assert_eq!(driver_dirs(&s), before);
    assert_eq!(overlay_links(&s), links);
    s.ok(&["run", "--rm", "bb:1", "true"]);
    assert_eq!(driver_dirs(&s), before);
    assert_eq!(overlay_links(&s), links);
    s.fsck_clean();
});

// The cleanup after an interrupted process removes driver directories no record names: a
// container's init layer is named by its record (the writable layer's cache-id + `-init`),
// an orphaned one is not.
both_drivers!(leftover_scan_keeps_init_layers_of_containers, |driver| {
    let (s, _w) = store_with_image(driver);
    let before = driver_dirs(&s);
    s.ok(&["create", "--name", "c1", "bb:1", "true"]);
    let with_c1 = driver_dirs(&s);
    let home = s.layer_home();
    std::fs::create_dir(home.join("0123456789abcdef0123456789abcdef-init")).unwrap();
    // What a killed process leaves: its session file, no longer locked by anyone.
    std::fs::create_dir_all(s.root.join("locks/sessions")).unwrap();
    std::fs::write(s.root.join("locks/sessions/00000000dead0000"), b"").unwrap();
    s.ok(&["ps", "-a"]);
    assert_eq!(driver_dirs(&s), with_c1, "only the orphan went");
    s.ok(&["start", "-a", "c1"]);
    assert_eq!(s.ok(&["diff", "c1"]), "");
    s.ok(&["rm", "c1"]);
    assert_eq!(driver_dirs(&s), before);
    s.fsck_clean();
});

// Containers created before init layers existed (the writable layer directly on the image)
// still mount, run, measure and are removed completely.
both_drivers!(records_without_an_init_layer_still_work, |driver| {
    let (s, _w) = store_with_image(driver);
    let before = driver_dirs(&s);
    s.ok(&[
        "create",
        "--name",
        "old",
        "bb:1",
        "sh",
        "-c",
        "echo hi > /tmp/x",
    ]);
    let made: Vec<String> = driver_dirs(&s).difference(&before).cloned().collect();
    let (rw, init) = (&made[0], &made[1]);
    // Make it what an older strata made: no init layer below the writable one.
    if driver == "overlay" {
        let home = s.root.join("overlay");
        let short = std::fs::read_to_string(home.join(init).join("link")).unwrap();
        let lower = std::fs::read_to_string(home.join(rw).join("lower")).unwrap();
        let rest = lower.strip_prefix(&format!("l/{short}:")).unwrap();
        std::fs::write(home.join(rw).join("lower"), rest).unwrap();
        std::fs::remove_file(home.join("l").join(short)).unwrap();
        std::fs::remove_dir_all(home.join(init)).unwrap();
    } else if driver == "btrfs" {
        // The writable layer a snapshot of the image's (only) layer.
        let home = s.layer_home();
        let image_layer = before.iter().next().unwrap();
        let btrfs = |args: &[&std::ffi::OsStr]| {
            let st = std::process::Command::new("btrfs")
                .arg("-q")
                .args(args)
                .status();
            assert!(st.unwrap().success(), "btrfs {args:?}");
        };
        for d in [rw, init] {
            btrfs(&[
                "subvolume".as_ref(),
                "delete".as_ref(),
                home.join(d).as_os_str(),
            ]);
        }
        btrfs(&[
            "subvolume".as_ref(),
            "snapshot".as_ref(),
            home.join(image_layer).as_os_str(),
            home.join(rw).as_os_str(),
        ]);
    } else {
        // The writable layer a copy of the image's (only) layer, as vfs made it.
        let home = s.root.join("vfs/dir");
        let image_layer = before.iter().next().unwrap();
        std::fs::remove_dir_all(home.join(rw)).unwrap();
        std::fs::remove_dir_all(home.join(init)).unwrap();
        let cp = std::process::Command::new("cp")
            .arg("-a")
            .arg(home.join(image_layer))
            .arg(home.join(rw))
            .status()
            .unwrap();
        assert!(cp.success());
    }
    assert_eq!(s.ok(&["diff", "old"]), "");
    s.ok(&["start", "-a", "old"]);
    let out = s.ok(&["diff", "old"]);
    assert!(out.lines().any(|l| l == "A /tmp/x"), "{out}");
    assert!(
        inspect_container(&s, "old", true)["SizeRw"]
            .as_u64()
            .unwrap()
            >= 3
    );
    s.ok(&["ps", "-a", "-s"]);
    s.ok(&["rm", "old"]);
    assert_eq!(driver_dirs(&s), before);
    s.fsck_clean();
});

/// The entries of the last layer of `image` in a `save` archive: (path, size).
fn last_layer_entries(s: &Store, image: &str, dir: &Path) -> (Vec<(String, u64)>, Vec<u8>) {
    let arch = dir.join(format!("{}.tar", image.replace(':', "_")));
    s.ok(&["save", "-o", arch.to_str().unwrap(), image]);
    let mut files = std::collections::HashMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(&arch).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        files.insert(p, v);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    let last = &files[layers.last().unwrap().as_str().unwrap()];
    let mut entries = Vec::new();
    let mut t = tar::Archive::new(&last[..]);
    for e in t.entries().unwrap() {
        let e = e.unwrap();
        entries.push((
            e.path().unwrap().to_string_lossy().into_owned(),
            e.header().size().unwrap(),
        ));
    }
    (entries, std::fs::read(&arch).unwrap())
}

both_drivers!(commit_makes_a_layer_of_only_the_changes, |driver| {
    let (s, w) = store_with_image(driver);
    let base_layers = s.inspect("bb:1")["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    s.ok(&["create", "--name", "c1", "bb:1", "sh", "-c", "echo hi"]);
    make_changes(&s, "c1");
    let out = s.ok(&[
        "commit",
        "-m",
        "my message",
        "-a",
        "Jane <j@example.com>",
        "-c",
        "ENV FOO=bar",
        "c1",
        "bb:2",
    ]);
    let id = out.trim();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "prints the image ID: {out}"
    );
    let img = s.inspect("bb:2");
    assert_eq!(img["Id"], id);
    assert_eq!(
        img["RootFS"]["Layers"].as_array().unwrap().len(),
        base_layers + 1
    );
    assert_eq!(img["Config"]["Env"], serde_json::json!(["FOO=bar"]));
    assert_eq!(
        img["Config"]["Cmd"],
        serde_json::json!(["sh", "-c", "echo hi"])
    );
    assert_eq!(img["Author"], "Jane <j@example.com>");
    let hist = s.ok(&["history", "--no-trunc", "bb:2"]);
    let first = hist.lines().nth(1).unwrap();
    assert!(
        first.contains("sh -c echo hi") && first.contains("my message"),
        "{hist}"
    );

    // The new layer holds exactly the changes: whiteouts for deletions, nothing unchanged.
    let (entries, archive) = last_layer_entries(&s, "bb:2", w.path());
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "a/",
        "a/b/f",
        "etc/motd",
        "etc/.wh.issue",
        "root/new.txt",
        "opq/new",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // The replaced directory: opaque on overlay; an explicit whiteout of the old entry on vfs.
    assert!(
        names.contains(&"opq/.wh..wh..opq") || names.contains(&"opq/.wh.old"),
        "{names:?}"
    );
    for unwanted in ["bin/busybox", "etc/passwd", "etc/issue", "opq/old"] {
        assert!(!names.contains(&unwanted), "{unwanted} in {names:?}");
    }
    assert!(
        entries.iter().map(|(_, n)| n).sum::<u64>() < 100,
        "{entries:?}"
    );

    // It loads back elsewhere with the same ID, and a container of it sees the changes.
    let s2 = Store::new(driver);
    let arch = write_file(w.path(), "again.tar", &archive);
    s2.load(&arch);
    assert_eq!(s2.image_id("bb:2"), id);
    for st in [&s, &s2] {
        st.ok(&["create", "--name", "c2", "bb:2"]);
        let m = mount(st, "c2");
        assert_eq!(std::fs::read(m.join("root/new.txt")).unwrap(), b"new file");
        assert_eq!(
            std::fs::read(m.join("etc/motd")).unwrap(),
            b"welcome\nmore\n"
        );
        assert!(!m.join("etc/issue").exists());
        assert!(!m.join("opq/old").exists());
        assert!(m.join("opq/new").exists());
        assert!(m.join("bin/busybox").exists());
        st.ok(&["umount", "c2"]);
        assert_eq!(st.ok(&["diff", "c2"]), "");
        st.fsck_clean();
    }

    // Nothing changed: no new layer, an empty_layer history entry.
    s.ok(&["create", "--name", "c3", "bb:1"]);
    let id3 = s.ok(&["commit", "c3"]).trim().to_string();
    let layers3 = s.inspect(&id3)["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(layers3, base_layers);
    let err = s.fails(&["commit", "-c", "BOGUS x", "c1"]);
    assert!(err.contains("BOGUS"), "{err}");
    let err = s.fails(&["commit", "nope"]);
    assert!(err.contains("No such container: nope"), "{err}");
});

/// Peak resident memory (KiB) of running strata with `args` to completion, and its status.
fn peak_rss_kib(s: &Store, args: &[&str]) -> (u64, i32) {
    let child = s
        .cmd(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child; `ru` and `status` are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid);
    std::mem::forget(child);
    (ru.ru_maxrss as u64, status)
}

both_drivers!(commit_streams_the_layer, |driver| {
    let (s, _w) = store_with_image(driver);
    s.ok(&["create", "--name", "big", "bb:1"]);
    let m = mount(&s, "big");
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 31 % 253) as u8).collect();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(m.join("root/big")).unwrap();
        for _ in 0..160 {
            f.write_all(&chunk).unwrap();
        }
    }
    s.ok(&["umount", "big"]);
    let (kib, status) = peak_rss_kib(&s, &["commit", "big", "bb:big"]);
    assert_eq!(status, 0);
    // 160 MiB went through; a buffered tar would need at least that much memory.
    assert!(kib < 80 * 1024, "commit peaked at {kib} KiB resident");
    s.ok(&["create", "--name", "c2", "bb:big"]);
    let m = mount(&s, "c2");
    assert_eq!(
        std::fs::metadata(m.join("root/big")).unwrap().len(),
        160 << 20
    );
    s.ok(&["umount", "c2"]);
    s.fsck_clean();
});

both_drivers!(cp_both_ways_stays_inside_the_container, |driver| {
    let (s, w) = store_with_image(driver);
    let host = w.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    // A host file that container symlinks point at by absolute path.
    let marker = host.join("marker");
    std::fs::write(&marker, b"host secret").unwrap();
    let host_passwd = std::fs::read("/etc/passwd").unwrap();
    s.ok(&["create", "--name", "c1", "bb:1"]);
    let m = mount(&s, "c1");
    let link = |target: &str, name: &str| std::os::unix::fs::symlink(target, m.join(name)).unwrap();
    link("/etc/passwd", "evil");
    link("/etc", "etcl");
    link("../../../../../../../../etc", "rel");
    link(marker.to_str().unwrap(), "tomarker");
    std::fs::create_dir_all(m.join("data/sub")).unwrap();
    std::fs::write(m.join("data/sub/f"), b"data").unwrap();
    std::os::unix::fs::symlink("f", m.join("data/sub/lnk")).unwrap();
    s.ok(&["umount", "c1"]);
    let container_passwd = b"root:x:0:0:root:/root:/bin/sh\n";

    // Out of the container: symlinks in the path resolve inside it.
    let out = host.join("out");
    std::fs::create_dir(&out).unwrap();
    s.ok(&["cp", "c1:/etcl/passwd", out.join("p1").to_str().unwrap()]);
    assert_eq!(std::fs::read(out.join("p1")).unwrap(), container_passwd);
    s.ok(&["cp", "c1:/rel/passwd", out.join("p2").to_str().unwrap()]);
    assert_eq!(std::fs::read(out.join("p2")).unwrap(), container_passwd);
    // A symlink is copied as a symlink, not as the host file it names.
    s.ok(&["cp", "c1:/evil", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_link(out.join("evil")).unwrap(),
        Path::new("/etc/passwd")
    );
    s.ok(&["cp", "c1:/tomarker", out.join("m").to_str().unwrap()]);
    assert!(
        std::fs::symlink_metadata(out.join("m"))
            .unwrap()
            .is_symlink()
    );
    // Directories: into an existing directory by name, or to a new name; `/.` = contents.
    s.ok(&["cp", "c1:/data", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(out.join("data/sub/f")).unwrap(), b"data");
    assert!(
        std::fs::symlink_metadata(out.join("data/sub/lnk"))
            .unwrap()
            .is_symlink()
    );
    s.ok(&["cp", "c1:/data/.", out.join("copy").to_str().unwrap()]);
    assert_eq!(std::fs::read(out.join("copy/sub/f")).unwrap(), b"data");
    let err = s.fails(&["cp", "c1:/nope", out.to_str().unwrap()]);
    assert!(err.contains("/nope"), "{err}");

    // Into the container: writes through container symlinks land inside the container.
    let src = host.join("src.txt");
    std::fs::write(&src, b"from host").unwrap();
    s.ok(&["cp", src.to_str().unwrap(), "c1:/evil"]);
    s.ok(&["cp", src.to_str().unwrap(), "c1:/rel/passwd2"]);
    s.ok(&["cp", src.to_str().unwrap(), "c1:/tomarker"]);
    s.ok(&["cp", host.join("out/data").to_str().unwrap(), "c1:/root/"]);
    s.ok(&["cp", src.to_str().unwrap(), "c1:/etcl"]);
    let err = s.fails(&["cp", src.to_str().unwrap(), "c1:/nodir/x"]);
    assert!(err.contains("nodir"), "{err}");
    assert_eq!(
        std::fs::read("/etc/passwd").unwrap(),
        host_passwd,
        "host file written"
    );
    assert!(!Path::new("/etc/passwd2").exists());
    assert!(!Path::new("/etc/src.txt").exists());
    assert_eq!(std::fs::read(&marker).unwrap(), b"host secret");
    let m = mount(&s, "c1");
    assert_eq!(std::fs::read(m.join("etc/passwd")).unwrap(), b"from host");
    assert_eq!(std::fs::read(m.join("etc/passwd2")).unwrap(), b"from host");
    assert_eq!(std::fs::read(m.join("etc/src.txt")).unwrap(), b"from host");
    assert_eq!(std::fs::read(m.join("root/data/sub/f")).unwrap(), b"data");
    // A dangling symlink (its target is absent inside the container) is replaced, never
    // followed out to the host path it names.
    assert!(
        !std::fs::symlink_metadata(m.join("tomarker"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(std::fs::read(m.join("tomarker")).unwrap(), b"from host");
    s.ok(&["umount", "c1"]);
    let err = s.fails(&["cp", "c1:/a", "c2:/b"]);
    assert!(err.contains("between containers"), "{err}");
    s.fsck_clean();
});

fn inspect_container(s: &Store, c: &str, size: bool) -> serde_json::Value {
    let mut args = vec!["inspect"];
    if size {
        args.push("--size");
    }
    args.push(c);
    let v: serde_json::Value = serde_json::from_str(&s.ok(&args)).unwrap();
    v[0].clone()
}

both_drivers!(ps_size_and_inspect_size, |driver| {
    let (s, _w) = store_with_image(driver);
    s.ok(&["create", "--name", "fat", "bb:1", "true"]);
    s.ok(&["create", "--name", "thin", "bb:1", "true"]);
    let m = mount(&s, "fat");
    std::fs::write(m.join("root/w"), vec![0u8; 3 << 20]).unwrap();
    s.ok(&["umount", "fat"]);
    let image_size = s.inspect("bb:1")["Size"].as_u64().unwrap();
    let ps = s.ok(&["ps", "-a", "-s"]);
    let header = ps.lines().next().unwrap();
    assert!(header.ends_with("NAMES     SIZE"), "{ps}");
    let row = |name: &str| ps.lines().find(|l| l.contains(name)).unwrap().to_string();
    assert!(row("fat").contains("3.15MB (virtual "), "{ps}");
    assert!(
        row("thin").ends_with(&format!("0B (virtual {})", human(image_size))),
        "{ps}"
    );
    assert!(!s.ok(&["ps", "-a"]).contains("SIZE"));
    let j = s.ok(&["ps", "-a", "-s", "--format", "json"]);
    assert!(j.contains("\"Size\":\"3.15MB (virtual"), "{j}");
    let fat = inspect_container(&s, "fat", true);
    assert_eq!(fat["SizeRw"], 3 << 20);
    assert_eq!(fat["SizeRootFs"], (3 << 20) + image_size);
    assert_eq!(inspect_container(&s, "thin", true)["SizeRw"], 0);
    assert!(inspect_container(&s, "fat", false).get("SizeRw").is_none());
});

/// Docker's 3-significant-digit size (`1.98MB`), for the sizes these tests produce.
fn human(b: u64) -> String {
    let units = ["B", "kB", "MB", "GB"];
    let (mut v, mut i) = (b as f64, 0);
    while v >= 1000.0 && i < 3 {
        v /= 1000.0;
        i += 1;
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

both_drivers!(system_df_counts_shared_layers_once, |driver| {
    let (s, _w) = store_with_image(driver);
    let image_size = s.inspect("bb:1")["Size"].as_u64().unwrap();
    let before = s.disk_usage_of(driver);
    for i in 0..5 {
        let name = format!("c{i}");
        s.ok(&["create", "--name", &name, "bb:1", "true"]);
        let m = mount(&s, &name);
        std::fs::write(m.join("root/f"), vec![1u8; 1000]).unwrap();
        s.ok(&["umount", &name]);
    }
    if driver == "overlay" {
        // Each writable layer holds only its own files: the image (2 MB) is stored once. A
        // container is two layer directories (the writable layer and its init layer of
        // mount points, as Docker's overlay2), about 25 directory blocks of 4 KiB.
        let per = (s.disk_usage_of(driver) - before) / 5;
        assert!(per < 128 * 1024, "{per} bytes on disk per container");
    }
    let rows: Vec<serde_json::Value> = s
        .ok(&["system", "df", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["Type"], "Images");
    assert_eq!(rows[0]["TotalCount"], "1");
    assert_eq!(rows[0]["Active"], "1");
    // One image's layers, not five virtual sizes.
    let img = |b: u64| {
        let v = b as f64 / 1e6;
        format!(
            "{}MB",
            format!("{v:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
        )
    };
    assert_eq!(rows[0]["Size"], img(image_size));
    assert_eq!(rows[1]["Type"], "Containers");
    assert_eq!(rows[1]["TotalCount"], "5");
    assert_eq!(rows[1]["Active"], "0");
    assert_eq!(rows[1]["Size"], "5kB");
    assert_eq!(rows[1]["Reclaimable"], "5kB (100%)");
    assert_eq!(rows[2]["Type"], "Local Volumes");
    assert_eq!(rows[3]["Reclaimable"], "0B");
    let table = s.ok(&["system", "df"]);
    assert!(
        table.starts_with(
            "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\nImages          1         1"
        ),
        "{table}"
    );
    assert!(
        table.contains("\nContainers      5         0         5kB       5kB (100%)\n"),
        "{table}"
    );
    let v = s.ok(&["system", "df", "-v"]);
    for part in [
        "Images space usage:",
        "SHARED SIZE",
        "Containers space usage:",
        "LOCAL VOLUMES",
        "Local Volumes space usage:",
        "Build cache usage: 0B",
    ] {
        assert!(v.contains(part), "{part} missing: {v}");
    }
    let bb = v.lines().find(|l| l.starts_with("bb ")).unwrap();
    assert!(bb.trim_end().ends_with(" 5"), "5 containers use it: {bb}");
    assert_eq!(
        v.lines().filter(|l| l.contains("\"true\"")).count(),
        5,
        "{v}"
    );
});

both_drivers!(container_prune_removes_stopped, |driver| {
    let (s, _w) = store_with_image(driver);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            s.ok(&["create", "--name", &format!("p{i}"), "bb:1"])
                .trim()
                .to_string(),
        );
    }
    let m = mount(&s, "p1");
    std::fs::write(m.join("root/x"), vec![2u8; 1500]).unwrap();
    s.ok(&["umount", "p1"]);
    // A container mounted with `strata mount` is in use: prune leaves it.
    s.ok(&["create", "--name", "kept", "bb:1"]);
    mount(&s, "kept");
    let out = s.ok(&["container", "prune", "-f"]);
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.remove(0), "Deleted Containers:");
    let mut got: Vec<&str> = lines[..3].to_vec();
    got.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(got, want, "{out}");
    assert_eq!(lines[3], "");
    assert_eq!(lines[4], "Total reclaimed space: 1.5kB");
    assert_eq!(s.ok(&["ps", "-a", "--format", "json"]).lines().count(), 1);
    s.ok(&["umount", "kept"]);
    s.ok(&["rm", "kept"]);
    assert_eq!(
        s.ok(&["container", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    assert_eq!(s.ok(&["images", "-q"]).lines().count(), 1, "images stay");
    s.fsck_clean();
});
