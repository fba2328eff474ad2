//! `strata system migrate`: a real Docker store (a throwaway dockerd) and a real Podman store
//! (`podman --root`) adopted with the same IDs, tags and digests; a crafted source refused
//! layer by layer; a migration killed in the middle of a layer, then re-run.

mod common;
use common::dockerd::Dockerd;
use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A busybox base `bb:latest` and two images built on it (`c1:1` adds /a.txt, `c2:1`
/// adds /b.txt), saved into one docker-save archive: three images sharing a layer.
fn images_sharing_layers(w: &Path) -> PathBuf {
    let s = Store::new("overlay");
    let r = w.join("rootfs");
    busybox_rootfs(&r);
    s.ok(&[
        "import",
        r.to_str().unwrap(),
        "bb:latest",
        "-c",
        "ENV PATH=/bin",
    ]);
    for (tag, file, data) in [("c1:1", "a.txt", "alpha\n"), ("c2:1", "b.txt", "bravo\n")] {
        let ctx = w.join(format!("ctx-{file}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join(file), data).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM bb:latest\nCOPY {file} /{file}\nCMD [\"cat\", \"/{file}\"]\n"),
        )
        .unwrap();
        s.ok(&["build", "-q", "-t", tag, ctx.to_str().unwrap()]);
    }
    let out = w.join("all.tar");
    s.ok(&[
        "save",
        "-o",
        out.to_str().unwrap(),
        "bb:latest",
        "c1:1",
        "c2:1",
    ]);
    out
}

/// REPOSITORY TAG DIGEST IMAGE-ID of every row of `images --digests --no-trunc`.
fn image_rows(out: &str) -> BTreeSet<String> {
    out.lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .collect()
}

/// Every path of a store with its size, mtime and ctime: a write into it changes this.
fn fingerprint(dir: &Path) -> String {
    let o = Command::new("find")
        .arg(dir)
        .args(["-printf", "%p %s %T@ %C@ %m\n"])
        .output()
        .unwrap();
    let mut lines: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
    lines.sort();
    lines.join("\n")
}

/// (config bytes, layer digests) of the one image in a docker-save archive.
fn saved_image(archive: &Path) -> (Vec<u8>, Vec<String>) {
    let mut files = std::collections::HashMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if e.header().entry_type().is_file() {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut b).unwrap();
            files.insert(name, b);
        }
    }
    let m: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let config = files[m[0]["Config"].as_str().unwrap()].clone();
    let layers = m[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| sha256_hex(&files[l.as_str().unwrap()]))
        .collect();
    (config, layers)
}

fn migrate_docker_args(root: &Path) -> Vec<String> {
    vec![
        "system".into(),
        "migrate".into(),
        "--from".into(),
        "docker".into(),
        "--docker-root".into(),
        root.to_str().unwrap().into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A stopped Docker holding the three images, docker's `images` rows, and `docker save c1:1`.
fn docker_store(w: &Path) -> Option<(Dockerd, BTreeSet<String>, PathBuf)> {
    let archive = images_sharing_layers(w);
    let mut d = Dockerd::start()?;
    d.load(&archive);
    let rows = image_rows(&d.ok(&["images", "--digests", "--no-trunc"]));
    let saved = w.join("docker-c1.tar");
    d.ok(&["save", "-o", saved.to_str().unwrap(), "c1:1"]);
    d.stop();
    Some((d, rows, saved))
}

#[test]
fn docker_store_adopted_with_ids_tags_and_digests() {
    let w = tempfile::tempdir_in("/var/tmp").unwrap();
    let Some((d, docker_rows, docker_saved)) = docker_store(w.path()) else {
        return;
    };
    let root = d.data_root();
    // A digest name, as a pull records it (docker load records none): in this throwaway store.
    let repos = root.join("image/overlay2/repositories.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&repos).unwrap()).unwrap();
    let c1_id = v["Repositories"]["c1"]["c1:1"]
        .as_str()
        .unwrap()
        .to_string();
    let fake = format!("sha256:{}", "5".repeat(64));
    v["Repositories"]["c1"][format!("c1@{fake}")] = serde_json::json!(c1_id);
    std::fs::write(&repos, serde_json::to_vec(&v).unwrap()).unwrap();

    let before = fingerprint(&root);
    let s = Store::overlay();
    let dry = s.ok(&[&strs(&migrate_docker_args(&root))[..], &["--dry-run"]].concat());
    assert!(dry.contains("would adopt 3 images: 3 new layers"), "{dry}");
    assert_eq!(s.ok(&["images", "-q"]), "", "--dry-run adopted something");

    let out = s.ok(&strs(&migrate_docker_args(&root)));
    assert!(
        out.contains(
            "adopted 3 images (0 skipped); layers: 3 adopted, 0 already present, 0 refused"
        ),
        "{out}"
    );
    assert_eq!(
        fingerprint(&root),
        before,
        "the source store was written to"
    );
    let strata_rows = image_rows(&s.ok(&["images", "--digests", "--no-trunc"]));
    // (repository, tag, image ID) as both print them; the digest column is checked below
    // (docker load records no digest, so docker's own column is empty).
    let norm = |rows: &BTreeSet<String>| -> BTreeSet<String> {
        rows.iter()
            .map(|r| {
                let f: Vec<&str> = r.split(' ').collect();
                format!("{} {} {}", f[0], f[1], f[3])
            })
            .collect()
    };
    assert_eq!(norm(&strata_rows), norm(&docker_rows));
    assert!(
        strata_rows.contains(&format!("c1 1 {fake} {c1_id}")),
        "digest name lost: {strata_rows:?}"
    );
    assert_eq!(s.image_id("c1:1"), c1_id);

    // save: the same config bytes and layer tars as docker's own save.
    let ours = w.path().join("strata-c1.tar");
    s.ok(&["save", "-o", ours.to_str().unwrap(), "c1:1"]);
    assert_eq!(saved_image(&ours), saved_image(&docker_saved));

    assert_eq!(s.ok(&["run", "--rm", "c1:1"]), "alpha\n");
    assert_eq!(s.ok(&["run", "--rm", "c2:1"]), "bravo\n");
    s.fsck_clean();

    // A re-run finds everything adopted.
    let again = s.ok(&strs(&migrate_docker_args(&root)));
    assert!(
        again.contains("layers: 0 adopted, 3 already present, 0 refused"),
        "{again}"
    );

    // --link: regular files share the source's inodes (so the source's link counts and
    // ctimes change, nothing else), the store is whole and verifies.
    let no_ctime = |f: &str| -> String {
        f.lines()
            .map(|l| {
                let mut v: Vec<&str> = l.split(' ').collect();
                v.remove(3);
                v.join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let l = Store::overlay();
    l.ok(&[&strs(&migrate_docker_args(&root))[..], &["--link"]].concat());
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let ours = diff_dir_with(&l.root, "a.txt").join("a.txt");
    assert_eq!(
        ino(&ours),
        ino(&diff_dir_with(&root, "a.txt").join("a.txt"))
    );
    assert_eq!(no_ctime(&fingerprint(&root)), no_ctime(&before));
    assert_eq!(l.ok(&["run", "--rm", "c1:1"]), "alpha\n");
    l.fsck_clean();
    drop(l);

    // Killed in the middle of a layer, then re-run: consistent, then complete.
    let k = Store::overlay();
    let p = Paused::start(&k, &strs(&migrate_docker_args(&root)), "migrate-layer-read");
    p.kill();
    k.fsck_clean();
    k.ok(&strs(&migrate_docker_args(&root)));
    assert_eq!(
        image_rows(&k.ok(&["images", "--digests", "--no-trunc"])),
        strata_rows
    );
    k.fsck_clean();
    assert_eq!(k.ok(&["run", "--rm", "c2:1"]), "bravo\n");
    // Killed between images: the first image is complete, the re-run adds the rest.
    let k2 = Store::overlay();
    let p = Paused::start(&k2, &strs(&migrate_docker_args(&root)), "migrate-image");
    p.kill();
    k2.fsck_clean();
    let out = k2.ok(&strs(&migrate_docker_args(&root)));
    assert!(out.contains("adopted 3 images"), "{out}");
    k2.fsck_clean();
    assert_eq!(
        no_ctime(&fingerprint(&root)),
        no_ctime(&before),
        "the source store was written to"
    );
}

/// The diff dir of the layer that holds `file` at its root (a Docker root or a strata root).
fn diff_dir_with(root: &Path, file: &str) -> PathBuf {
    let drivers = if root.join("overlay2").exists() {
        "overlay2"
    } else {
        "overlay"
    };
    for e in std::fs::read_dir(root.join(drivers)).unwrap() {
        let d = e.unwrap().path().join("diff");
        if d.join(file).symlink_metadata().is_ok() {
            return d;
        }
    }
    panic!("no layer holds {file}");
}

#[test]
fn crafted_docker_store_refused_layer_by_layer() {
    let w = tempfile::tempdir_in("/var/tmp").unwrap();
    let Some((d, _, _)) = docker_store(w.path()) else {
        return;
    };
    let root = d.data_root();
    // c1's layer: same size, other bytes (its tar-split no longer matches the files).
    std::fs::write(diff_dir_with(&root, "a.txt").join("a.txt"), "ALPHA\n").unwrap();
    // c2's layer: the file replaced by a symlink pointing out of the layer.
    let secret = w.path().join("secret");
    std::fs::write(&secret, "secret").unwrap();
    let b = diff_dir_with(&root, "b.txt").join("b.txt");
    std::fs::remove_file(&b).unwrap();
    std::os::unix::fs::symlink(&secret, &b).unwrap();

    let s = Store::new("overlay");
    let o = s.run(&strs(&migrate_docker_args(&root)));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        out.contains(
            "adopted 1 images (2 skipped); layers: 1 adopted, 0 already present, 2 refused"
        ),
        "{out}{err}"
    );
    assert!(err.contains("not its diffID"), "{err}");
    assert!(err.contains("is a symlink"), "{err}");
    assert!(!err.contains("secret\n"), "{err}");
    let ids = s.ok(&["images", "--format", "json"]);
    assert!(
        ids.contains("bb") && !ids.contains("c1") && !ids.contains("c2"),
        "{ids}"
    );
    s.fsck_clean();
    assert_eq!(
        s.ok(&["run", "--rm", "bb:latest", "cat", "/etc/passwd"])
            .lines()
            .count(),
        1
    );
}

/// `podman --root … load` of the same archive, then migrate --from podman.
#[test]
fn podman_store_adopted_with_ids_tags_and_digests() {
    if Command::new("podman").arg("--version").output().is_err() {
        eprintln!("SKIP podman comparison: podman not installed (scripts/setup.sh installs it)");
        return;
    }
    let w = tempfile::tempdir_in("/var/tmp/strata-tests").unwrap();
    let archive = images_sharing_layers(w.path());
    let graph = w.path().join("graph");
    let run = w.path().join("run");
    let podman = |args: &[&str]| {
        let o = Command::new("podman")
            .arg("--root")
            .arg(&graph)
            .arg("--runroot")
            .arg(&run)
            .args(["--storage-driver", "overlay"])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (ok, out) = podman(&["load", "-i", archive.to_str().unwrap()]);
    if !ok {
        eprintln!("SKIP podman comparison: podman load failed: {out}");
        return;
    }
    let (_, listed) = podman(&[
        "images",
        "--digests",
        "--no-trunc",
        "--format",
        "{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}",
    ]);
    let before = fingerprint(&graph);
    let s = Store::new("overlay");
    let out = s.ok(&[
        "system",
        "migrate",
        "--from",
        "podman",
        "--graphroot",
        graph.to_str().unwrap(),
    ]);
    assert!(out.contains("adopted 3 images (0 skipped)"), "{out}");
    assert_eq!(
        fingerprint(&graph),
        before,
        "the source store was written to"
    );
    let strata = s.ok(&["images", "--digests", "--no-trunc"]);
    for l in listed.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let id = f[3].trim_start_matches("sha256:");
        // Podman names loaded images `localhost/NAME`.
        let repo = f[0];
        let found = strata.lines().any(|r| {
            let g: Vec<&str> = r.split_whitespace().collect();
            g.len() > 3
                && g[0] == repo
                && g[1] == f[1]
                && g[2] == f[2]
                && g[3].trim_start_matches("sha256:") == id
        });
        assert!(found, "podman's {l:?} not in strata's:\n{strata}");
    }
    let c1 = listed
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f[0].ends_with("/c1"))
        .map(|f| format!("{}:{}", f[0], f[1]))
        .expect("podman lists c1");
    assert_eq!(s.ok(&["run", "--rm", &c1]), "alpha\n");
    s.fsck_clean();
}

/// Onto btrfs, where files are reflinked and a child layer's directory is a snapshot that
/// already holds its parent's files: a layer replacing a file of the layer below is adopted
/// (it was refused: the parent's file, found where the child's goes, was taken for the
/// child's own content), its content is the child's, and the store checks clean.
#[test]
fn docker_store_adopted_onto_btrfs_with_reflinks() {
    let Some(fs) = BtrfsFs::new("2G") else {
        return;
    };
    let w = tempfile::tempdir_in("/var/tmp").unwrap();
    let s0 = Store::new("overlay");
    let r = w.path().join("rootfs");
    busybox_rootfs(&r);
    s0.ok(&[
        "import",
        r.to_str().unwrap(),
        "bb:latest",
        "-c",
        "ENV PATH=/bin",
    ]);
    let ctx = w.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("short"), "old\n").unwrap();
    std::fs::write(
        ctx.join("long"),
        "the replacement, longer than the file below\n",
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:latest\nCOPY short /etc/file\nCOPY long /etc/file\nCMD [\"cat\", \"/etc/file\"]\n",
    )
    .unwrap();
    s0.ok(&["build", "-q", "-t", "replaced:1", ctx.to_str().unwrap()]);
    let archive = w.path().join("replaced.tar");
    s0.ok(&["save", "-o", archive.to_str().unwrap(), "replaced:1"]);
    let Some(mut d) = Dockerd::start() else {
        return;
    };
    d.load(&archive);
    let docker_id = d.ok(&["image", "inspect", "-f", "{{.Id}}", "replaced:1"]);
    d.stop();
    // Docker's store copied onto the btrfs filesystem, next to strata's: same filesystem, so
    // the migration reflinks.
    let src = fs.mnt.join("docker");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(d.data_root())
        .arg(&src)
        .status()
        .unwrap();
    assert!(cp.success());
    let s = Store::new_in(&fs.mnt.join("strata"), "btrfs");
    s.ok(&[
        "system",
        "migrate",
        "--from",
        "docker",
        "--docker-root",
        src.to_str().unwrap(),
    ]);
    assert_eq!(s.image_id("replaced:1"), docker_id.trim());
    assert_eq!(
        s.ok(&["run", "--rm", "replaced:1"]),
        "the replacement, longer than the file below\n"
    );
    s.fsck_clean();
}
