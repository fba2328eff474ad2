//! Archives `load` must refuse, or store without letting them cost what they claim: empty
//! manifests, OCI descriptors that lie about sizes or media types, a layer of gigabytes of
//! zeros, an opaque whiteout at a layer's root, and garbage or truncated input. Every archive
//! is built here; errors must be one line naming the user's file (or stdin) and the reason,
//! and leave nothing in the store.

mod common;
use common::*;
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Builders

/// A tar of `files` (path, content) with ustar headers, as archive writers make them.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

fn desc(media_type: &str, data: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": digest(data), "size": data.len()})
}

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// An OCI image layout archive holding `blobs` and the given index.json.
fn oci_layout(blobs: &[&[u8]], index: &serde_json::Value) -> Vec<u8> {
    let index = serde_json::to_vec(index).unwrap();
    let mut files: Vec<(String, &[u8])> = vec![
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json".into(), &index),
    ];
    for b in blobs {
        files.push((format!("blobs/sha256/{}", sha256_hex(b)), b));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (p.as_str(), *d)).collect();
    tar_of(&refs)
}

/// A one-image OCI layout: `layers` are (stored blob, media type); `edit` may change the
/// manifest JSON (and the index entry is made for the edited manifest).
fn oci_image(
    layers: &[(Vec<u8>, &str)],
    config: &[u8],
    edit: impl FnOnce(&mut serde_json::Value),
) -> Vec<u8> {
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": desc(MT_CONFIG, config),
        "layers": layers.iter().map(|(b, mt)| desc(mt, b)).collect::<Vec<_>>(),
    });
    edit(&mut manifest);
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let mut entry = desc(MT_MANIFEST, &manifest);
    entry["annotations"] = serde_json::json!({"io.containerd.image.name": "oci/test:1"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry]});
    let mut blobs: Vec<&[u8]> = vec![&manifest, config];
    blobs.extend(layers.iter().map(|(b, _)| b.as_slice()));
    oci_layout(&blobs, &index)
}

/// `load` of `archive` (written to a file) fails: one line naming the file and containing
/// `expect`, and the store holds nothing afterwards.
fn refused(s: &Store, archive: &[u8], expect: &str) -> String {
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let p = write_file(work.path(), "input.tar", archive);
    let err = s.fails(&["load", "-i", p.to_str().unwrap()]);
    check_refusal(s, &err, &format!("loading {}", p.display()), expect);
    err
}

fn check_refusal(s: &Store, err: &str, names: &str, expect: &str) {
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    assert!(err.contains(names), "{names:?} expected in: {err}");
    assert!(
        err.to_lowercase().contains(&expect.to_lowercase()),
        "{expect:?} expected in: {err}"
    );
    assert!(
        !err.contains("/tmp/load-"),
        "the spool file is not the user's: {err}"
    );
    assert!(
        err.chars()
            .all(|c| c == '\n' || c.is_ascii_graphic() || c == ' '),
        "raw bytes in the error: {err:?}"
    );
    s.holds_nothing();
}

/// The names under `/` of a container made from `image`, through `strata mount`.
fn root_listing(s: &Store, image: &str) -> Vec<String> {
    let c = s.ok(&["create", image]).trim().to_string();
    let m = s.ok(&["mount", &c]).trim().to_string();
    let mut names: Vec<String> = std::fs::read_dir(&m)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // The container's init layer adds the runtime's mount points (as Docker's does).
        .filter(|n| !["dev", "etc", "proc", "sys"].contains(&n.as_str()))
        .collect();
    names.sort();
    s.ok(&["umount", &c]);
    s.ok(&["rm", &c]);
    names
}

/// The sha256 of every layer tar in `strata save IMAGE` (streamed, never on disk), in the
/// order of the saved manifest.
fn saved_layer_digests(s: &Store, image: &str) -> Vec<String> {
    let mut child = s
        .cmd(&["save", image])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ar = tar::Archive::new(child.stdout.take().unwrap());
    let mut hashes = std::collections::HashMap::new();
    let mut manifest = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        if path == "manifest.json" {
            e.read_to_end(&mut manifest).unwrap();
            continue;
        }
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = e.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        hashes.insert(path, format!("sha256:{}", hex::encode(h.finalize())));
    }
    assert!(child.wait().unwrap().success());
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    m[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| hashes[l.as_str().unwrap()].clone())
        .collect()
}

fn diff_ids(layers: &[Vec<u8>]) -> Vec<String> {
    layers.iter().map(|l| digest(l)).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Archives that list no image

both_drivers!(archives_listing_no_image_are_refused, |driver| {
    let s = Store::new(driver);
    refused(
        &s,
        &tar_of(&[("manifest.json", b"[]")]),
        "manifest.json lists no image",
    );
    let index = serde_json::json!({"schemaVersion": 2, "manifests": []});
    refused(&s, &oci_layout(&[], &index), "index.json lists no manifest");
});

// ---------------------------------------------------------------------------------------------
// 2. OCI descriptors that lie

both_drivers!(oci_descriptors_with_wrong_sizes_are_refused, |driver| {
    let s = Store::new(driver);
    let layer = LayerTar::new().file("f", b"hello").build();
    let blob = gzip(&layer);
    let config = config_for(std::slice::from_ref(&layer), "/f");
    let layers = [(blob.clone(), MT_GZIP_LAYER)];
    // The layer's size.
    let err = refused(
        &s,
        &oci_image(&layers, &config, |m| {
            m["layers"][0]["size"] = (blob.len() + 1).into()
        }),
        &digest(&blob),
    );
    assert!(err.contains("size") || err.contains("bytes"), "{err}");
    // The config's size.
    refused(
        &s,
        &oci_image(&layers, &config, |m| m["config"]["size"] = 3.into()),
        &digest(&config),
    );
    // The manifest's size, in index.json.
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": desc(MT_CONFIG, &config), "layers": [desc(MT_GZIP_LAYER, &blob)],
    }))
    .unwrap();
    let mut entry = desc(MT_MANIFEST, &manifest);
    entry["size"] = (manifest.len() - 1).into();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry]});
    refused(
        &s,
        &oci_layout(&[&manifest, &config, &blob], &index),
        &digest(&manifest),
    );
    // With honest sizes the same image loads.
    s.ok(&[
        "load",
        "-i",
        write_file(
            tempfile::tempdir().unwrap().path(),
            "ok.tar",
            &oci_image(&layers, &config, |_| {}),
        )
        .to_str()
        .unwrap(),
    ]);
});

both_drivers!(oci_layers_must_be_layer_tars, |driver| {
    let s = Store::new(driver);
    let layer = LayerTar::new().file("f", b"hello").build();
    let config = config_for(std::slice::from_ref(&layer), "/f");
    for mt in [MT_CONFIG, "text/plain"] {
        let err = refused(
            &s,
            &oci_image(&[(gzip(&layer), mt)], &config, |_| {}),
            &format!("{mt:?}"),
        );
        assert!(err.contains("media type"), "{err}");
    }
    // Every tar media type, Docker's and OCI's, plain, gzip and zstd, loads.
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    for (i, (mt, blob)) in [
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            gzip(&layer),
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar",
            layer.clone(),
        ),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            gzip(&layer),
        ),
        ("application/vnd.oci.image.layer.v1.tar", layer.clone()),
        (MT_GZIP_LAYER, gzip(&layer)),
        ("application/vnd.oci.image.layer.v1.tar+zstd", zstd(&layer)),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            layer.clone(),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            gzip(&layer),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            zstd(&layer),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let p = write_file(
            work.path(),
            &format!("ok{i}.tar"),
            &oci_image(&[(blob, mt)], &config, |_| {}),
        );
        let out = s.ok(&["load", "-i", p.to_str().unwrap()]);
        assert!(out.contains("oci/test:1"), "{mt}: {out}");
    }
    s.fsck_clean();
});

// ---------------------------------------------------------------------------------------------
// 3. Gigabytes of zeros are stored as holes

const ZEROS: u64 = 4 << 30;
/// The zeros are compressed in members of this size (a multi-member gzip, as pigz writes).
const MEMBER: usize = 64 << 20;
/// Where the only non-zero bytes of `/zeros` are: not block aligned.
const MARK_AT: u64 = (1000 << 20) + 777;
const MARK: &[u8] = b"not a zero!";

fn gz(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A gzip layer holding `/small` (a few bytes), `/zeros` (ZEROS bytes of zeros but for MARK
/// at MARK_AT) and `/after`: (blob, diffID). The zeros are streamed through flate2 once per
/// distinct member (a 4 GiB deflate at the best level takes half a minute; its members repeat).
fn zero_bomb_layer() -> (Vec<u8>, String) {
    let header = |path: &str, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        h
    };
    let mut hash = Sha256::new();
    let mut blob = Vec::new();
    let mut member = |data: &[u8], compressed: Option<&[u8]>| {
        hash.update(data);
        match compressed {
            Some(c) => blob.extend_from_slice(c),
            None => blob.extend_from_slice(&gz(data, 9)),
        }
    };
    let small = b"small file\n";
    let mut head = header("small", small.len() as u64).as_bytes().to_vec();
    head.extend_from_slice(small);
    head.resize(1024, 0);
    head.extend_from_slice(header("zeros", ZEROS).as_bytes());
    member(&head, None);
    let zeros = vec![0u8; MEMBER];
    let zero_member = gz(&zeros, 9);
    for i in 0..ZEROS / MEMBER as u64 {
        let start = i * MEMBER as u64;
        if (start..start + MEMBER as u64).contains(&MARK_AT) {
            let mut chunk = zeros.clone();
            let at = (MARK_AT - start) as usize;
            chunk[at..at + MARK.len()].copy_from_slice(MARK);
            member(&chunk, None);
        } else {
            member(&zeros, Some(&zero_member));
        }
    }
    let mut tail = header("after", 3).as_bytes().to_vec();
    tail.extend_from_slice(b"end");
    tail.resize(512 + 512 + 1024, 0);
    member(&tail, None);
    (blob, format!("sha256:{}", hex::encode(hash.finalize())))
}

both_drivers!(zeros_are_stored_as_holes, |driver| {
    let s = Store::new(driver);
    let t0 = Instant::now();
    let (blob, diff_id) = zero_bomb_layer();
    eprintln!(
        "built a {} MB gzip layer of {} GiB in {:.1?}",
        blob.len() >> 20,
        ZEROS >> 30,
        t0.elapsed()
    );
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/small"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let p = write_file(
        work.path(),
        "zeros.tar",
        &docker_archive(&config, &[blob], &["zeros:1"]),
    );
    let t0 = Instant::now();
    s.load(&p);
    let load_time = t0.elapsed();
    let used = s.disk_usage();
    eprintln!(
        "{driver}: load took {load_time:.1?}; the store uses {} KiB",
        used >> 10
    );
    assert!(used < 64 << 20, "{used} bytes on disk for {ZEROS} of zeros");

    // The file reads back with its size and content, in a container (vfs copies the layer).
    let c = s.ok(&["create", "zeros:1"]).trim().to_string();
    let m = PathBuf::from(s.ok(&["mount", &c]).trim());
    let f = m.join("zeros");
    assert_eq!(std::fs::metadata(&f).unwrap().len(), ZEROS);
    let mut file = std::fs::File::open(&f).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(MARK_AT - 777)).unwrap();
    file.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[777..777 + MARK.len()], MARK);
    assert!(
        buf[..777]
            .iter()
            .chain(&buf[777 + MARK.len()..])
            .all(|&b| b == 0)
    );
    assert_eq!(std::fs::read(m.join("after")).unwrap(), b"end");
    s.ok(&["umount", &c]);
    let used = s.disk_usage();
    eprintln!(
        "{driver}: with a container, the store uses {} KiB",
        used >> 10
    );
    assert!(used < 64 << 20, "{used} bytes on disk with a container");

    // Saved byte for byte, and fsck re-hashes it to the diffID.
    let t0 = Instant::now();
    assert_eq!(saved_layer_digests(&s, "zeros:1"), vec![diff_id]);
    eprintln!("{driver}: save took {:.1?}", t0.elapsed());
    let t0 = Instant::now();
    s.fsck_clean();
    eprintln!("{driver}: fsck took {:.1?}", t0.elapsed());
    s.ok(&["rm", &c]);
});

// ---------------------------------------------------------------------------------------------
// 4. An opaque whiteout at a layer's root

both_drivers!(
    opaque_whiteout_at_layer_root_hides_every_lower_entry,
    |driver| {
        let s = Store::new(driver);
        let layers = vec![
            LayerTar::new()
                .file("a", b"a")
                .file("b", b"b")
                .dir("d/")
                .file("d/x", b"x")
                .build(),
            LayerTar::new()
                .file(".wh..wh..opq", b"")
                .file("c", b"c")
                .build(),
            LayerTar::new().file("e", b"e").build(),
        ];
        let config = config_for(&layers, "/c");
        let work = tempfile::tempdir_in("/var/tmp").unwrap();
        // The two-layer image, and the three-layer one with a layer above the opaque one.
        let two = write_file(
            work.path(),
            "two.tar",
            &docker_archive(&config_for(&layers[..2], "/c"), &layers[..2], &["opq:2"]),
        );
        let three = write_file(
            work.path(),
            "three.tar",
            &docker_archive(&config, &layers, &["opq:3"]),
        );
        s.load(&two);
        s.load(&three);
        assert_eq!(root_listing(&s, "opq:2"), ["c"]);
        assert_eq!(root_listing(&s, "opq:3"), ["c", "e"]);
        assert_eq!(saved_layer_digests(&s, "opq:3"), diff_ids(&layers));
        assert_eq!(saved_layer_digests(&s, "opq:2"), diff_ids(&layers[..2]));
        s.fsck_clean();
    }
);

// ---------------------------------------------------------------------------------------------
// 5. Garbage and truncated input: the user's file, the real reason

/// Deterministic incompressible bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn load_stdin(s: &Store, data: &[u8]) -> String {
    let mut child = s
        .cmd(&["load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(!o.status.success(), "load from stdin succeeded");
    String::from_utf8(o.stderr).unwrap()
}

both_drivers!(
    garbage_and_truncated_input_name_the_file_and_reason,
    |driver| {
        let s = Store::new(driver);
        // Garbage: no raw bytes in the message.
        refused(&s, &noise(100_000), "not a tar archive");
        // Gzipped garbage: the user's file, not the spooled copy under ROOT/tmp.
        refused(&s, &gzip(&noise(100_000)), "not a tar archive");

        // Truncated: Docker's "unexpected EOF", whatever was cut.
        let layer = LayerTar::new().file("a", &noise(300_000)).build();
        let whole = docker_archive(
            &config_for(std::slice::from_ref(&layer), "/x"),
            std::slice::from_ref(&layer),
            &["cut:1"],
        );
        // Inside a layer's data, inside a header, and at an entry boundary before manifest.json.
        let boundary = {
            let mut ar = tar::Archive::new(&whole[..]);
            let e = ar
                .entries()
                .unwrap()
                .map(|e| e.unwrap())
                .find(|e| e.path().unwrap().to_str() == Some("manifest.json"))
                .unwrap();
            e.raw_header_position() as usize
        };
        for cut in [whole.len() / 3, boundary + 100, boundary] {
            let err = refused(&s, &whole[..cut], "unexpected EOF");
            assert!(err.contains(": unexpected EOF"), "{err}");
        }
        let gz = gzip(&whole);
        refused(&s, &gz[..gz.len() / 2], "unexpected EOF");
        let err = load_stdin(&s, &gz[..gz.len() / 2]);
        check_refusal(&s, &err, "loading stdin: unexpected EOF", "");
        let err = load_stdin(&s, &whole[..whole.len() / 2]);
        check_refusal(&s, &err, "loading stdin: unexpected EOF", "");
        // Empty input.
        refused(&s, b"", "unexpected EOF");
    }
);
