//! Images in and out through the real binary: load (docker and OCI archives, gzip/zstd/plain),
//! save byte-exact, IDs, sharing by disk usage, tag/rmi semantics, history, import.

mod common;
use common::*;
use std::process::Command;

fn base_layer() -> Vec<u8> {
    LayerTar::new()
        .dir("bin/")
        .file("bin/tool", &vec![7u8; 300_000])
        .dir("etc/")
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        .symlink("bin/sh", "tool")
        .hardlink("bin/tool2", "bin/tool")
        .dir("usr/")
        .dir("usr/share/")
        .file(
            "usr/share/big",
            &(0..2_000_000u32)
                .map(|i| (i * 7 % 251) as u8)
                .collect::<Vec<_>>(),
        )
        .build()
}

fn top_layer(tag: &str) -> Vec<u8> {
    LayerTar::new()
        .dir("etc/")
        .file("etc/tag", tag.as_bytes())
        .file("etc/.wh.passwd", b"")
        .dir("usr/share/")
        .file("usr/share/.wh..wh..opq", b"")
        .file("usr/share/new", b"new")
        .build()
}

/// Two images sharing one base layer, as docker-save archives in `dir`.
fn two_images(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let base = base_layer();
    let a = vec![base.clone(), top_layer("a")];
    let b = vec![base.clone(), top_layer("b")];
    let arch_a = docker_archive(
        &config_for(&a, "/bin/sh"),
        &[gzip(&a[0]), a[1].clone()],
        &["test/a:1"],
    );
    let arch_b = docker_archive(
        &config_for(&b, "/bin/sh"),
        &[zstd(&b[0]), gzip(&b[1])],
        &["test/b:1"],
    );
    (
        write_file(dir, "a.tar", &arch_a),
        write_file(dir, "b.tar", &arch_b),
    )
}

both_drivers!(load_computes_docker_ids_and_saves_byte_exact, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let layers = vec![base_layer(), top_layer("a")];
    let config = config_for(&layers, "/bin/sh");
    let archive = write_file(
        work.path(),
        "a.tar",
        &docker_archive(
            &config,
            &[gzip(&layers[0]), zstd(&layers[1])],
            &["test/a:1"],
        ),
    );
    let out = s.load(&archive);
    assert_eq!(out.trim(), "Loaded image: test/a:1");
    let info = s.inspect("test/a:1");
    assert_eq!(info["Id"], format!("sha256:{}", sha256_hex(&config)));
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    assert_eq!(info["RootFS"]["Layers"], serde_json::json!(diff_ids));
    assert_eq!(info["RepoTags"], serde_json::json!(["test/a:1"]));
    // Docker's name for its overlay driver, which tools reading inspect expect.
    let docker_name = if driver == "overlay" {
        "overlay2"
    } else {
        driver
    };
    assert_eq!(info["GraphDriver"]["Name"], docker_name);

    // save: each layer blob is byte-for-byte the original tar (sha256 == diffID).
    let saved = work.path().join("saved.tar");
    s.ok(&["save", "-o", saved.to_str().unwrap(), "test/a:1"]);
    let unpack = work.path().join("unpacked");
    std::fs::create_dir(&unpack).unwrap();
    assert!(
        Command::new("tar")
            .arg("-xf")
            .arg(&saved)
            .arg("-C")
            .arg(&unpack)
            .status()
            .unwrap()
            .success()
    );
    for (l, d) in layers.iter().zip(&diff_ids) {
        let blob = std::fs::read(unpack.join("blobs/sha256").join(&d[7..])).unwrap();
        assert_eq!(blob.len(), l.len());
        assert!(blob == *l, "layer {d} differs after save");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpack.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["test/a:1"]));

    // ... and loads anywhere with the same ID, also from stdin.
    let s2 = Store::new(driver);
    let o = s2
        .cmd(&["load"])
        .stdin(std::fs::File::open(&saved).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(s2.image_id("test/a:1"), info["Id"].as_str().unwrap());
    s.fsck_clean();
    s2.fsck_clean();
});

both_drivers!(shared_base_is_stored_once_on_disk, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let (a, b) = two_images(work.path());
    s.load(&a);
    let after_a = s.disk_usage();
    s.load(&b);
    let after_b = s.disk_usage();
    let grew = after_b - after_a;
    if driver == "overlay" {
        // The 2.3 MB base must not be stored twice: b adds only its tiny top layer (+ metadata).
        assert!(grew < 600_000, "loading b grew the store by {grew} bytes");
    }
    let info = s.ok(&["info"]);
    assert!(info.contains("Layers: 3"), "{info}");
    // Removing a keeps the shared base for b.
    let out = s.ok(&["rmi", "test/a:1"]);
    assert!(
        out.contains("Untagged: test/a:1") && out.contains("Deleted: sha256:"),
        "{out}"
    );
    assert!(s.ok(&["info"]).contains("Layers: 2"));
    s.fsck_clean();
    let c = s.ok(&["create", "test/b:1"]);
    let m = s.ok(&["mount", c.trim()]);
    let root = std::path::Path::new(m.trim());
    assert_eq!(std::fs::read(root.join("bin/tool")).unwrap().len(), 300_000);
    assert_eq!(std::fs::read(root.join("etc/tag")).unwrap(), b"b");
    assert!(
        !root.join("etc/passwd").exists(),
        "whiteout must hide etc/passwd"
    );
    let names: Vec<_> = std::fs::read_dir(root.join("usr/share"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("new")],
        "opaque dir must hide the base's files"
    );
    s.ok(&["umount", c.trim()]);
    s.ok(&["rm", c.trim()]);
});

both_drivers!(tag_untag_and_rmi_rules, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let (a, _) = two_images(work.path());
    s.load(&a);
    let id = s.image_id("test/a:1");
    s.ok(&["tag", "test/a:1", "other:2"]);
    assert_eq!(s.image_id("other:2"), id);
    // By ID with names in two repositories: refused without -f.
    let err = s.fails(&["rmi", &id[7..19]]);
    assert!(err.contains("referenced in multiple repositories"), "{err}");
    // By name with another name left: untag only.
    assert_eq!(s.ok(&["rmi", "other:2"]).trim(), "Untagged: other:2");
    assert_eq!(s.image_id("test/a:1"), id);
    // A container uses it: refused without -f, the image stays.
    let c = s.ok(&["create", "--name", "user", "test/a:1"]);
    let err = s.fails(&["rmi", "test/a:1"]);
    assert!(
        err.contains("container") && err.contains("is using"),
        "{err}"
    );
    s.ok(&["rm", "user"]);
    let out = s.ok(&["rmi", "test/a:1"]);
    assert!(out.contains("Deleted: sha256:"), "{out}");
    let err = s.fails(&["rmi", "test/a:1"]);
    assert!(err.contains("No such image: test/a:1"), "{err}");
    let _ = c;
    assert_eq!(s.ok(&["images", "-q"]), "");
    assert!(s.ok(&["info"]).contains("Layers: 0"));
    let blobs = std::fs::read_dir(s.path().join("content/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "the config blob must go with the image");
    s.fsck_clean();
});

both_drivers!(images_and_history_print_like_docker, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let (a, _) = two_images(work.path());
    s.load(&a);
    let out = s.ok(&["images"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{out}"
    );
    assert!(lines[1].starts_with("test/a       1         "), "{out}");
    assert!(lines[1].ends_with("MB"), "{out}");
    let hist = s.ok(&["history", "test/a:1"]);
    let h: Vec<&str> = hist.lines().collect();
    assert!(h[0].starts_with("IMAGE          CREATED"), "{hist}");
    assert_eq!(h.len(), 3, "{hist}");
    assert!(h[2].starts_with("<missing>"), "{hist}");
    assert!(h[1].contains("/bin/sh -c step 1"), "{hist}");
    let raw = s.ok(&["history", "-H=false", "--no-trunc", "test/a:1"]);
    assert!(raw.contains("2024-01-01T00:00:00Z"), "{raw}");
    let j = s.ok(&["images", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(j.lines().next().unwrap()).unwrap();
    assert_eq!(v["Repository"], "test/a");
});

both_drivers!(import_directory_and_tarball, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let out = s.ok(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\"]",
        "-c",
        "ENV PATH=/bin",
        rootfs.to_str().unwrap(),
        "bb:1",
    ]);
    assert!(out.trim().starts_with("sha256:"), "{out}");
    let info = s.inspect("bb:1");
    assert_eq!(info["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(info["Config"]["Env"], serde_json::json!(["PATH=/bin"]));
    // The same tree imported twice gives the same layer (deterministic tar), stored once.
    s.ok(&["import", rootfs.to_str().unwrap(), "bb:2"]);
    assert_eq!(
        s.inspect("bb:2")["RootFS"]["Layers"],
        info["RootFS"]["Layers"]
    );
    assert!(s.ok(&["info"]).contains("Layers: 1"));
    // A tarball (gzip) from stdin.
    let tarball = work.path().join("rootfs.tar.gz");
    assert!(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -C {} -czf {} .",
                rootfs.display(),
                tarball.display()
            ))
            .status()
            .unwrap()
            .success()
    );
    let o = s
        .cmd(&["import", "-", "bb:3"])
        .stdin(std::fs::File::open(&tarball).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hist = s.ok(&["history", "bb:3"]);
    assert!(hist.contains("Imported from -"), "{hist}");
    let err = s.fails(&[
        "import",
        "--change",
        "RUN rm -rf /",
        rootfs.to_str().unwrap(),
    ]);
    assert!(err.contains("RUN"), "{err}");
    s.fsck_clean();
});

both_drivers!(containers_create_mount_export_rm, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    s.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    let id = s
        .ok(&["create", "--name", "c1", "bb:1", "echo", "hi"])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let err = s.fails(&["create", "--name", "c1", "bb:1"]);
    assert!(err.contains("already in use"), "{err}");
    let ps = s.ok(&["ps", "-a"]);
    assert!(
        ps.contains("c1") && ps.contains("\"echo hi\"") && ps.contains("Created"),
        "{ps}"
    );
    assert_eq!(
        s.ok(&["ps"]).lines().count(),
        1,
        "only the header: nothing runs"
    );
    let m = s.ok(&["mount", "c1"]).trim().to_string();
    std::fs::write(
        std::path::Path::new(&m).join("tmp/written"),
        b"in container",
    )
    .unwrap();
    std::fs::remove_file(std::path::Path::new(&m).join("etc/passwd")).unwrap();
    s.ok(&["umount", "c1"]);
    let tar = work.path().join("export.tar");
    s.ok(&["export", "-o", tar.to_str().unwrap(), "c1"]);
    let list = String::from_utf8(
        Command::new("tar")
            .arg("-tf")
            .arg(&tar)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        list.lines()
            .any(|l| l.trim_start_matches("./") == "tmp/written"),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.trim_start_matches("./") == "bin/busybox"),
        "{list}"
    );
    assert!(
        !list
            .lines()
            .any(|l| l.trim_start_matches("./") == "etc/passwd"),
        "{list}"
    );
    // The image is unchanged by the container's writes.
    let id2 = s.ok(&["create", "bb:1"]).trim().to_string();
    let m2 = s.ok(&["mount", &id2]).trim().to_string();
    assert!(std::path::Path::new(&m2).join("etc/passwd").exists());
    assert!(!std::path::Path::new(&m2).join("tmp/written").exists());
    s.ok(&["umount", &id2]);
    s.ok(&["rm", "c1", &id2[..12]]);
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    let err = s.fails(&["rm", "c1"]);
    assert!(err.contains("No such container: c1"), "{err}");
    assert!(s.ok(&["images", "-q"]).trim().len() == 12);
    s.fsck_clean();
});

#[test]
fn root_remembers_its_driver() {
    let s = Store::new("vfs");
    s.ok(&["images"]);
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "--root",
            s.path().to_str().unwrap(),
            "--storage-driver",
            "overlay",
            "images",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("uses storage driver \"vfs\""));
    // Without --storage-driver the recorded one is used.
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--root", s.path().to_str().unwrap(), "info"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("Storage Driver: vfs"));
}

#[test]
fn missing_image_and_bad_input_are_one_line_errors() {
    let s = Store::new("vfs");
    let err = s.fails(&["history", "nope"]);
    assert_eq!(err.trim(), "Error: No such image: nope");
    let err = s.fails(&["create", "--pull", "never", "nope:1"]);
    assert!(err.contains("No such image: nope:1"), "{err}");
    let err = s.fails(&["tag", "nope", "x"]);
    assert!(err.contains("No such image"), "{err}");
    let err = s.fails(&["load", "-i", "/nonexistent.tar"]);
    assert!(err.contains("/nonexistent.tar"), "{err}");
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let junk = write_file(
        work.path(),
        "junk.tar",
        b"this is not a tar archive at all, just text",
    );
    let err = s.fails(&["load", "-i", junk.to_str().unwrap()]);
    assert_eq!(err.lines().count(), 1, "{err}");
    let err = s.fails(&["tag", "x", "UPPER"]);
    assert!(err.contains("invalid reference format"), "{err}");
}
