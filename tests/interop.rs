//! Interop with peer tools (installed by scripts/setup.sh): images made by umoci and skopeo
//! load with the IDs those tools compute, and what strata saves, skopeo and umoci read.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn sh(script: &str) -> String {
    let o = Command::new("bash")
        .arg("-ec")
        .arg(script)
        .output()
        .expect("bash");
    assert!(
        o.status.success(),
        "script failed: {script}\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// A two-layer OCI image built with umoci: busybox, then a change with a deletion.
fn umoci_image(work: &Path) -> std::path::PathBuf {
    let layout = work.join("oci");
    let bundle = work.join("bundle");
    sh(&format!(
        "umoci init --layout {l}
         umoci new --image {l}:v1
         umoci unpack --image {l}:v1 {b}
         mkdir -p {b}/rootfs/bin {b}/rootfs/etc {b}/rootfs/tmp
         cp /bin/busybox {b}/rootfs/bin/busybox
         for a in sh ls cat echo; do ln -s busybox {b}/rootfs/bin/$a; done
         echo 'root:x:0:0:root:/root:/bin/sh' > {b}/rootfs/etc/passwd
         echo hello > {b}/rootfs/etc/motd
         umoci repack --image {l}:v1 {b}
         rm -rf {b}
         umoci unpack --image {l}:v1 {b}
         rm {b}/rootfs/etc/motd
         echo changed > {b}/rootfs/etc/passwd
         mkdir -p {b}/rootfs/data && head -c 200000 /dev/urandom > {b}/rootfs/data/blob
         umoci repack --image {l}:v2 {b}
         umoci config --image {l}:v2 --config.cmd /bin/sh --config.env PATH=/bin",
        l = layout.display(),
        b = bundle.display()
    ));
    layout
}

#[test]
fn ids_agree_with_umoci_and_skopeo() {
    let s = Store::new("overlay");
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let layout = umoci_image(work.path());
    let l = layout.display();
    // What umoci recorded: the config digest (= image ID) and the diffIDs.
    let config_digest = sh(&format!(
        "skopeo inspect --raw oci:{l}:v2 | jq -r .config.digest"
    ))
    .trim()
    .to_string();
    let diff_ids = sh(&format!(
        "skopeo inspect --config --raw oci:{l}:v2 | jq -c .rootfs.diff_ids"
    ))
    .trim()
    .to_string();

    // 1. A docker-archive written by skopeo.
    let da = work.path().join("docker.tar");
    sh(&format!(
        "skopeo copy -q oci:{l}:v2 docker-archive:{}:interop/img:v2",
        da.display()
    ));
    let skopeo_id = sh(&format!(
        "skopeo inspect --config --raw docker-archive:{} | sha256sum | cut -d' ' -f1",
        da.display()
    ));
    assert_eq!(s.load(&da).trim(), "Loaded image: interop/img:v2");
    let info = s.inspect("interop/img:v2");
    assert_eq!(
        info["Id"].as_str().unwrap(),
        format!("sha256:{}", skopeo_id.trim())
    );
    assert_eq!(info["Id"].as_str().unwrap(), config_digest);
    assert_eq!(
        serde_json::to_string(&info["RootFS"]["Layers"]).unwrap(),
        diff_ids
    );

    // 2. The OCI layout itself, as a tar (gzip layers, names are bare tags there).
    let oa = work.path().join("oci.tar");
    sh(&format!("tar -C {l} -cf {} .", oa.display()));
    let s2 = Store::new("vfs");
    let out = s2.load(&oa);
    assert!(out.contains(&config_digest), "{out}");
    s2.fsck_clean();

    // 3. strata's own archives, read back by skopeo and umoci.
    let saved = work.path().join("saved-docker.tar");
    s.ok(&["save", "-o", saved.to_str().unwrap(), "interop/img:v2"]);
    let back = sh(&format!(
        "skopeo inspect --config --raw docker-archive:{} | sha256sum | cut -d' ' -f1",
        saved.display()
    ));
    assert_eq!(format!("sha256:{}", back.trim()), config_digest);
    let saved_oci = work.path().join("saved-oci.tar");
    s.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        saved_oci.to_str().unwrap(),
        "interop/img:v2",
    ]);
    let back = sh(&format!(
        "skopeo inspect --raw oci-archive:{}:v2 | jq -r .config.digest",
        saved_oci.display()
    ));
    assert_eq!(back.trim(), config_digest);
    // umoci unpacks it and sees the second layer's changes (deletion and modification).
    let ext = work.path().join("ext");
    let bundle = work.path().join("b2");
    sh(&format!(
        "mkdir {e} && tar -C {e} -xf {o} && umoci unpack --image {e}:v2 {b}",
        e = ext.display(),
        o = saved_oci.display(),
        b = bundle.display()
    ));
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/passwd")).unwrap(),
        "changed\n"
    );
    assert!(!bundle.join("rootfs/etc/motd").exists());
    assert_eq!(
        std::fs::metadata(bundle.join("rootfs/data/blob"))
            .unwrap()
            .len(),
        200_000
    );
    // skopeo copies strata's docker archive with the image ID unchanged (to dir:, which keeps
    // the manifest type; converting to OCI makes skopeo re-serialize the config).
    sh(&format!(
        "skopeo copy -q docker-archive:{} dir:{}/copy",
        saved.display(),
        work.path().display()
    ));
    let copied = sh(&format!(
        "skopeo inspect --raw dir:{}/copy | jq -r .config.digest",
        work.path().display()
    ));
    assert_eq!(copied.trim(), config_digest);
    s.fsck_clean();
}
