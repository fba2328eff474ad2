//! Hostile and broken input through `strata load`, crash safety under SIGKILL, concurrent
//! processes on one root, and images deeper than the overlay mount-option page limit.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};

/// Load must fail with one line, store nothing, and touch nothing outside the store.
fn rejected(s: &Store, archive: &[u8], expect: &str) {
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let p = write_file(work.path(), "bad.tar", archive);
    let err = s.fails(&["load", "-i", p.to_str().unwrap()]);
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one-line error expected: {err}"
    );
    assert!(
        err.to_lowercase().contains(&expect.to_lowercase()),
        "expected {expect:?} in: {err}"
    );
    s.holds_nothing();
}

fn image_of(layer: Vec<u8>) -> Vec<u8> {
    docker_archive(
        &config_for(std::slice::from_ref(&layer), "/x"),
        &[layer],
        &["bad:1"],
    )
}

fn outside_is_untouched(marker: &Path) {
    assert!(
        !marker.exists(),
        "{} was written outside the layer",
        marker.display()
    );
}

both_drivers!(hostile_layers_are_rejected_or_contained, |driver| {
    let s = Store::new(driver);
    // `..` escapes.
    let victim = s.path().parent().unwrap().join("escaped");
    rejected(
        &s,
        &image_of(
            LayerTar::new()
                .raw(b"../../escaped", tar::EntryType::Regular, b"", b"x")
                .build(),
        ),
        "unsafe",
    );
    outside_is_untouched(&victim);
    // Hardlink to a path outside.
    rejected(
        &s,
        &image_of(
            LayerTar::new()
                .raw(b"link", tar::EntryType::Link, b"../../../etc/passwd", b"")
                .build(),
        ),
        "unsafe",
    );
    // NUL in a name: the tar header field ends at NUL, so hand-craft a PAX path with one.
    let mut pax = tar::Builder::new(Vec::new());
    let rec = b"path=a\0b\n";
    let line = format!("{} ", rec.len() + 3);
    let mut data = line.into_bytes();
    data.extend_from_slice(rec);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(data.len() as u64);
    h.set_path("PaxHeaders/x").unwrap();
    h.set_cksum();
    pax.append(&h, &data[..]).unwrap();
    let mut f = tar::Header::new_ustar();
    f.set_entry_type(tar::EntryType::Regular);
    f.set_size(1);
    f.set_path("placeholder").unwrap();
    f.set_cksum();
    pax.append(&f, &b"x"[..]).unwrap();
    rejected(&s, &image_of(pax.into_inner().unwrap()), "");
    // A whiteout that escapes.
    rejected(
        &s,
        &image_of(
            LayerTar::new()
                .raw(b"../.wh.victim", tar::EntryType::Regular, b"", b"")
                .build(),
        ),
        "unsafe",
    );

    // Symlink then write through it: contained inside the layer, never the host's /tmp.
    let host_target = format!("/tmp/strata-escape-{}", std::process::id());
    let layer = LayerTar::new()
        .symlink("evil", "/tmp")
        .file(
            &format!("evil/strata-escape-{}", std::process::id()),
            b"owned",
        )
        .build();
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let p = write_file(work.path(), "sym.tar", &image_of(layer));
    let _ = s.run(&["load", "-i", p.to_str().unwrap()]);
    outside_is_untouched(Path::new(&host_target));
    // Device nodes stay inside the layer.
    let layer = LayerTar::new()
        .raw(b"dev-null", tar::EntryType::Char, b"", b"")
        .build();
    let p = write_file(work.path(), "dev.tar", &image_of(layer));
    let _ = s.run(&["load", "-i", p.to_str().unwrap()]);
    s.fsck_clean();
});

both_drivers!(digest_mismatch_and_truncation_leave_nothing, |driver| {
    let s = Store::new(driver);
    let good = LayerTar::new().file("a", &vec![1u8; 100_000]).build();
    let other = LayerTar::new().file("a", &vec![2u8; 100_000]).build();
    // The config names one diffID, the archive carries another layer.
    let cfg = config_for(std::slice::from_ref(&good), "/x");
    rejected(
        &s,
        &docker_archive(&cfg, &[gzip(&other)], &["bad:1"]),
        "diffid",
    );
    // Two-layer image whose second layer is wrong: the first must not stay either.
    let cfg = config_for(&[good.clone(), good.clone()], "/x");
    rejected(
        &s,
        &docker_archive(&cfg, &[good.clone(), other.clone()], &["bad:1"]),
        "diffid",
    );
    // A truncated gzip layer.
    let gz = gzip(&good);
    rejected(
        &s,
        &docker_archive(
            &config_for(std::slice::from_ref(&good), "/x"),
            &[gz[..gz.len() / 2].to_vec()],
            &["bad:1"],
        ),
        "",
    );
    // A truncated archive.
    let whole = docker_archive(
        &config_for(std::slice::from_ref(&good), "/x"),
        std::slice::from_ref(&good),
        &["bad:1"],
    );
    rejected(&s, &whole[..whole.len() / 3], "");
    // A config whose name says another digest.
    let mut a = docker_archive(
        &config_for(std::slice::from_ref(&good), "/x"),
        std::slice::from_ref(&good),
        &["bad:1"],
    );
    let cfg = config_for(std::slice::from_ref(&good), "/x");
    let name = format!("{}.json", sha256_hex(&cfg));
    let pos = a
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .unwrap();
    // Flip one character of the config's content inside the archive (keep the tar valid).
    let cpos = a.windows(8).position(|w| w == b"\"amd64\",").unwrap();
    a[cpos + 1] = b'A';
    let _ = pos;
    rejected(&s, &a, "config");
});

// SIGKILL `strata load` at many instants; after each, the store is consistent: fsck clean,
// the image fully there or absent, and leftovers gone after the next command.
both_drivers!(sigkill_during_load_never_corrupts, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut layers = Vec::new();
    for i in 0..4u32 {
        let mut t = LayerTar::new().dir(&format!("d{i}/"));
        for f in 0..150u32 {
            t = t.file(
                &format!("d{i}/f{f}"),
                &vec![(i * 31 + f) as u8; 4000 + f as usize * 37],
            );
        }
        layers.push(
            t.file(
                &format!("big{i}"),
                &(0..3_000_000u32).map(|x| (x ^ i) as u8).collect::<Vec<_>>(),
            )
            .build(),
        );
    }
    let cfg = config_for(&layers, "/x");
    let blobs: Vec<Vec<u8>> = layers.iter().map(|l| gzip(l)).collect();
    let archive = write_file(
        work.path(),
        "img.tar",
        &docker_archive(&cfg, &blobs, &["crash:1"]),
    );
    let id = format!("sha256:{}", sha256_hex(&cfg));
    let mut seed: u64 = 0x9e3779b97f4a7c15 ^ std::process::id() as u64;
    let mut present = 0;
    for round in 0..12 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay_ms = seed % 400;
        let mut child = s
            .cmd(&["load", "-i", archive.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // The next command cleans leftovers; then everything must check out.
        s.fsck_clean();
        let ids = s.ok(&["images", "-q", "--no-trunc"]);
        if ids.trim().is_empty() {
            assert!(s.run(&["image", "inspect", "crash:1"]).status.code() != Some(0));
        } else {
            assert_eq!(ids.trim(), id, "round {round}");
            present += 1;
            s.ok(&["rmi", "crash:1"]);
        }
        let tmp = std::fs::read_dir(s.path().join("tmp")).unwrap().count();
        assert_eq!(tmp, 0, "round {round}: tmp not cleaned");
    }
    // Finally a load without interruption works on the same root.
    s.load(&archive);
    assert_eq!(s.image_id("crash:1"), id);
    s.fsck_clean();
    eprintln!("{driver}: image complete in {present}/12 killed rounds");
});

both_drivers!(concurrent_processes_share_layers, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let base = LayerTar::new().file("base", &vec![9u8; 3_000_000]).build();
    let mut archives = Vec::new();
    for i in 0..4 {
        let top = LayerTar::new()
            .file("top", format!("{i}").as_bytes())
            .build();
        let layers = vec![base.clone(), top];
        let a = docker_archive(
            &config_for(&layers, "/x"),
            &[gzip(&layers[0]), layers[1].clone()],
            &[&format!("par:{i}")],
        );
        archives.push(write_file(work.path(), &format!("a{i}.tar"), &a));
    }
    let mut children: Vec<_> = archives
        .iter()
        .map(|a| {
            s.cmd(&["load", "-i", a.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Readers at the same time.
    for _ in 0..5 {
        let o = s.run(&["images"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for c in children.drain(..) {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(s.ok(&["images", "-q"]).lines().count(), 4);
    // One base layer + four tops: the base is stored once.
    assert!(s.ok(&["info"]).contains("Layers: 5"), "{}", s.ok(&["info"]));
    s.fsck_clean();
});

both_drivers!(deep_image_mounts, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    // 200 layers: with absolute lowerdir paths this exceeds the classic one-page mount options.
    let n = if driver == "overlay" { 200 } else { 40 };
    let layers: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            LayerTar::new()
                .file(&format!("f{i:03}"), format!("{i}").as_bytes())
                .build()
        })
        .collect();
    let a = docker_archive(&config_for(&layers, "/x"), &layers, &["deep:1"]);
    s.load(&write_file(work.path(), "deep.tar", &a));
    let c = s.ok(&["create", "deep:1"]).trim().to_string();
    let m = s.ok(&["mount", &c]).trim().to_string();
    for i in [0, n / 2, n - 1] {
        assert_eq!(
            std::fs::read_to_string(Path::new(&m).join(format!("f{i:03}"))).unwrap(),
            format!("{i}")
        );
    }
    // Every layer's file, beside the init layer's mount points (dev, etc, proc, sys).
    let files = std::fs::read_dir(&m)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('f')
        })
        .count();
    assert_eq!(files, n);
    s.ok(&["umount", &c]);
    s.ok(&["rm", &c]);
    s.fsck_clean();
});

#[test]
fn fsck_detects_tampering() {
    let s = Store::new("overlay");
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let layer = LayerTar::new()
        .file("etc/data", b"original content")
        .build();
    let a = docker_archive(
        &config_for(std::slice::from_ref(&layer), "/x"),
        std::slice::from_ref(&layer),
        &["t:1"],
    );
    s.load(&write_file(work.path(), "t.tar", &a));
    s.fsck_clean();
    // Change a byte of an unpacked file behind strata's back.
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find {} -path '*/etc/data' -not -path '*/merged/*' | head -1",
            s.layer_home().display()
        ))
        .output()
        .unwrap();
    let target = String::from_utf8(found.stdout).unwrap().trim().to_string();
    assert!(!target.is_empty());
    std::fs::write(&target, b"Original content").unwrap();
    let o = s.run(&["system", "fsck"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("ERROR layer sha256:") && out.contains("mismatch"),
        "{out}"
    );
}
