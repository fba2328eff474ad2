//! Volumes through the real `strata` binary: the seeds' walkthroughs, copy-up, nocopy, `:ro`,
//! tmpfs, binds, `rm -v`/`--rm`, prune, in-use refusal, `--volumes-from`, sharing, and images
//! whose mount destinations are symlinks pointing out of their root filesystem.

mod common;
use common::*;
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `bb:latest`: busybox, `/app` with a setuid file, a symlink and a sticky dir owned by 1000,
/// `VOLUME /app`, and hostile symlinks `/evil -> /etc`, `/up -> ../../../../tmp/strata-evil`.
fn store() -> Store {
    let s = Store::new("overlay");
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let r = work.path().join("rootfs");
    busybox_rootfs(&r);
    for a in ["sleep", "ls", "stat", "touch", "cat", "head", "echo"] {
        let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(a));
    }
    for d in ["proc", "dev", "sys", "root", "app/sticky", "seed"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("app/tool"), b"tool").unwrap();
    std::fs::set_permissions(r.join("app/tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink("tool", r.join("app/link")).unwrap();
    std::fs::set_permissions(
        r.join("app/sticky"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    std::os::unix::fs::chown(r.join("app"), Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(r.join("app"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::write(r.join("seed/s"), b"seed").unwrap();
    std::os::unix::fs::symlink("/etc", r.join("evil")).unwrap();
    std::os::unix::fs::symlink("../../../../tmp/strata-evil", r.join("up")).unwrap();
    s.ok(&[
        "import",
        r.to_str().unwrap(),
        "bb:latest",
        "-c",
        "CMD [\"sh\"]",
        "-c",
        "ENV PATH=/bin",
        "-c",
        "VOLUME /app",
    ]);
    s
}

fn inspect(s: &Store, c: &str) -> Value {
    serde_json::from_str::<Value>(&s.ok(&["inspect", c])).unwrap()[0].clone()
}

fn mountpoint(s: &Store, v: &str) -> PathBuf {
    let j: Value = serde_json::from_str(&s.ok(&["volume", "inspect", v])).unwrap();
    PathBuf::from(j[0]["Mountpoint"].as_str().unwrap())
}

#[test]
fn seeds_walkthroughs() {
    let s = store();
    // run -d -v /code; write inside; find it on the host at the Mountpoint.
    let id = s.ok(&[
        "run",
        "-d",
        "-v",
        "/code",
        "bb",
        "sh",
        "-c",
        "echo hi > /code/f; sleep 60",
    ]);
    let id = id.trim();
    let j = inspect(&s, id);
    let m = j["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/code")
        .unwrap()
        .clone();
    assert_eq!(m["Type"], "volume");
    assert_eq!(m["Driver"], "local");
    assert_eq!(m["RW"], true);
    let name = m["Name"].as_str().unwrap();
    assert_eq!(name.len(), 64);
    let src = mountpoint(&s, name);
    assert_eq!(m["Source"].as_str().unwrap(), src.to_str().unwrap());
    assert!(src.ends_with(format!("volumes/{name}/_data")));
    let t = std::time::Instant::now();
    while !src.join("f").exists() && t.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(src.join("f")).unwrap(), "hi\n");
    // A file written on the host is visible inside.
    std::fs::write(src.join("h"), b"host").unwrap();
    assert_eq!(s.ok(&["exec", id, "cat", "/code/h"]), "host");
    s.ok(&["rm", "-f", id]);

    // volume create myvolume; write from one container, rm it, read from another.
    assert_eq!(s.ok(&["volume", "create", "myvolume"]).trim(), "myvolume");
    s.ok(&[
        "run",
        "--name",
        "w",
        "-v",
        "myvolume:/data",
        "bb",
        "sh",
        "-c",
        "echo Hello > /data/myfile.txt",
    ]);
    s.ok(&["rm", "w"]);
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "-v",
            "myvolume:/data",
            "bb",
            "cat",
            "/data/myfile.txt"
        ]),
        "Hello\n"
    );
    let j: Value = serde_json::from_str(&s.ok(&["volume", "inspect", "myvolume"])).unwrap();
    assert_eq!(j[0]["Scope"], "local");
    assert_eq!(j[0]["Labels"], Value::Null);
    assert!(j[0]["CreatedAt"].as_str().unwrap().ends_with('Z'));
    // Creating it again returns it unchanged.
    s.ok(&["volume", "create", "myvolume", "--label", "x=y"]);
    let j2: Value = serde_json::from_str(&s.ok(&["volume", "inspect", "myvolume"])).unwrap();
    assert_eq!(j, j2);
    assert!(
        s.ok(&["volume", "ls", "-q"])
            .lines()
            .any(|l| l == "myvolume")
    );
    assert!(
        s.fails(&["volume", "create", "a/b"])
            .contains("invalid characters")
    );
}

#[test]
fn copy_up_rules() {
    let s = store();
    // The image's VOLUME /app gets an anonymous volume filled from the image.
    s.ok(&["run", "--name", "c1", "bb", "true"]);
    let j = inspect(&s, "c1");
    let m = &j["Mounts"][0];
    assert_eq!(m["Destination"], "/app");
    let src = PathBuf::from(m["Source"].as_str().unwrap());
    let root = std::fs::metadata(&src).unwrap();
    assert_eq!((root.uid(), root.mode() & 0o7777), (1000, 0o750));
    assert_eq!(
        std::fs::metadata(src.join("tool")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        std::fs::metadata(src.join("sticky")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        std::fs::read_link(src.join("link")).unwrap(),
        Path::new("tool")
    );
    // A named volume mounted :ro is filled too; a non-empty one is not touched.
    s.ok(&["run", "--rm", "-v", "seeded:/seed:ro", "bb", "true"]);
    assert_eq!(
        std::fs::read(mountpoint(&s, "seeded").join("s")).unwrap(),
        b"seed"
    );
    s.ok(&["volume", "create", "full"]);
    std::fs::write(mountpoint(&s, "full").join("mine"), b"x").unwrap();
    s.ok(&["run", "--rm", "-v", "full:/seed", "bb", "true"]);
    assert!(!mountpoint(&s, "full").join("s").exists());
    // nocopy, binds and tmpfs never copy.
    s.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=nc,dst=/seed,volume-nocopy",
        "bb",
        "true",
    ]);
    assert!(!mountpoint(&s, "nc").join("s").exists());
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    s.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/seed", host.path().display()),
        "bb",
        "true",
    ]);
    assert!(!host.path().join("s").exists());
    assert_eq!(
        s.ok(&["run", "--rm", "--tmpfs", "/seed", "bb", "ls", "/seed"]),
        ""
    );
}

#[test]
fn read_only_and_tmpfs_limits_are_enforced() {
    let s = store();
    let o = s.run(&[
        "run",
        "--rm",
        "-v",
        "rov:/data:ro",
        "bb",
        "sh",
        "-c",
        "echo x > /data/f",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Read-only file system"));
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let spec = format!("type=bind,src={},dst=/h,readonly", host.path().display());
    let o = s.run(&["run", "--rm", "--mount", &spec, "bb", "touch", "/h/f"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Read-only file system"));
    let o = s.run(&[
        "run",
        "--rm",
        "--tmpfs",
        "/t:size=1m",
        "bb",
        "sh",
        "-c",
        "head -c 2000000 /dev/zero > /t/big",
    ]);
    assert_ne!(o.status.code(), Some(0));
    s.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=1m",
        "bb",
        "sh",
        "-c",
        "head -c 500000 /dev/zero > /t/ok",
    ]);
}

#[test]
fn binds_and_sharing() {
    let s = store();
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(host.path().join("keep"), b"keep").unwrap();
    let missing = host.path().join("made/by/v");
    s.ok(&[
        "run",
        "--name",
        "b",
        "-v",
        &format!("{}:/h", host.path().display()),
        "-v",
        &format!("{}:/m", missing.display()),
        "bb",
        "sh",
        "-c",
        "cat /h/keep; echo w > /h/w",
    ]);
    assert!(missing.is_dir());
    assert_eq!(std::fs::read(host.path().join("w")).unwrap(), b"w\n");
    let j = inspect(&s, "b");
    assert_eq!(
        j["HostConfig"]["Binds"][0],
        format!("{}:/h", host.path().display())
    );
    let m = j["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/h")
        .unwrap()
        .clone();
    assert_eq!(
        (m["Type"].as_str(), m["Propagation"].as_str()),
        (Some("bind"), Some("rprivate"))
    );
    // Removing the container never touches the bound host directory.
    s.ok(&["rm", "-v", "b"]);
    assert_eq!(std::fs::read(host.path().join("keep")).unwrap(), b"keep");
    // Two running containers share a volume.
    let a = s.ok(&[
        "run",
        "-d",
        "-v",
        "shared:/s",
        "bb",
        "sh",
        "-c",
        "echo from-a > /s/a; sleep 60",
    ]);
    let t = std::time::Instant::now();
    while !mountpoint(&s, "shared").join("a").exists() && t.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        s.ok(&["run", "--rm", "-v", "shared:/s", "bb", "cat", "/s/a"]),
        "from-a\n"
    );
    // --volumes-from (ro).
    let o = s.run(&[
        "run",
        "--rm",
        "--volumes-from",
        &format!("{}:ro", a.trim()),
        "bb",
        "sh",
        "-c",
        "cat /s/a; echo x > /s/b",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from-a\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Read-only"));
    // In use: refused, also with -f, naming the container.
    let e = s.fails(&["volume", "rm", "-f", "shared"]);
    assert!(e.contains("in use"), "{e}");
    s.ok(&["rm", "-f", a.trim()]);
    s.ok(&["volume", "rm", "shared"]);
    s.ok(&["volume", "rm", "-f", "no-such-volume"]);
    assert!(
        s.fails(&["volume", "rm", "no-such-volume"])
            .contains("no such volume")
    );
    s.fsck_clean();
}

#[test]
fn rm_v_rm_and_prune() {
    let s = store();
    let count = |s: &Store| s.ok(&["volume", "ls", "-q"]).lines().count();
    s.ok(&["run", "--rm", "-v", "/x", "bb", "true"]); // /x and the image's /app: gone with --rm
    assert_eq!(count(&s), 0);
    s.ok(&[
        "run", "--name", "k", "-v", "/x", "-v", "named:/n", "bb", "true",
    ]);
    assert_eq!(count(&s), 3);
    s.ok(&["rm", "-v", "k"]);
    assert_eq!(s.ok(&["volume", "ls", "-q"]), "named\n");
    s.ok(&["run", "--name", "k2", "-v", "/x", "bb", "true"]);
    s.ok(&["rm", "k2"]); // no -v: the anonymous volumes stay, dangling
    assert_eq!(count(&s), 3);
    assert_eq!(
        s.ok(&["volume", "ls", "-q", "--filter", "dangling=true"])
            .lines()
            .count(),
        3
    );
    let out = s.ok(&["volume", "prune", "-f"]); // anonymous only
    assert!(out.contains("Deleted Volumes:"));
    assert_eq!(s.ok(&["volume", "ls", "-q"]), "named\n");
    s.ok(&["volume", "prune", "-a", "-f"]);
    assert_eq!(count(&s), 0);
    let df = s.ok(&["system", "df"]);
    assert!(df.contains("Local Volumes   0"), "{df}");
    s.fsck_clean();
}

#[test]
fn hostile_destinations_stay_in_the_rootfs() {
    let s = store();
    let _ = std::fs::remove_dir_all("/tmp/strata-evil");
    s.ok(&[
        "run",
        "--rm",
        "-v",
        "ev:/evil",
        "bb",
        "sh",
        "-c",
        "echo pwn > /evil/pwned",
    ]);
    assert!(!Path::new("/etc/pwned").exists());
    assert_eq!(
        std::fs::read(mountpoint(&s, "ev").join("pwned")).unwrap(),
        b"pwn\n"
    );
    s.ok(&[
        "run",
        "--rm",
        "-v",
        "up:/up/x",
        "bb",
        "sh",
        "-c",
        "echo pwn > /up/x/f",
    ]);
    assert!(!Path::new("/tmp/strata-evil").exists());
    assert_eq!(
        std::fs::read(mountpoint(&s, "up").join("f")).unwrap(),
        b"pwn\n"
    );
    s.ok(&["run", "--rm", "--tmpfs", "/evil", "bb", "true"]);
    assert!(Path::new("/etc/passwd").exists());
}

/// Kills at the three instants where a volume is half made or half gone (issue 9: "a SIGKILL
/// during `volume create`, copy-up or `rm -v` leaves no half volume and never deletes data of
/// a volume that is still named").
#[test]
fn killed_volume_operations_leave_no_half_volume() {
    let s = store();
    let vols = s.path().join("volumes");
    let on_disk = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&vols)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    // A named volume with data: nothing below may touch it.
    s.ok(&["volume", "create", "keep"]);
    std::fs::write(mountpoint(&s, "keep").join("precious"), b"data").unwrap();

    // create killed after its directory, before its record: the next command collects it.
    let p = Paused::start(&s, &["volume", "create", "half"], "volume-created-dir");
    assert!(vols.join("half").exists());
    p.kill();
    assert!(!s.ok(&["volume", "ls", "-q"]).contains("half"));
    assert_eq!(on_disk(), ["keep"]);

    // rm killed after its record, before its directory: collected too.
    s.ok(&["volume", "create", "going"]);
    std::fs::write(mountpoint(&s, "going").join("f"), b"x").unwrap();
    let p = Paused::start(&s, &["volume", "rm", "going"], "volume-removed-record");
    p.kill();
    s.ok(&["volume", "ls"]);
    assert_eq!(on_disk(), ["keep"]);

    // copy-up killed half way: the volume stays empty (no partial copy), and the next
    // container copies the image's files up whole.
    s.ok(&["volume", "create", "cu"]);
    let p = Paused::start(
        &s,
        &["run", "--rm", "-v", "cu:/app", "bb:latest", "true"],
        "volume-copied-up",
    );
    p.kill();
    s.ok(&["system", "fsck", "--repair"]);
    let data = mountpoint(&s, "cu");
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "half a copy-up"
    );
    assert!(
        std::fs::read_dir(vols.join("cu"))
            .unwrap()
            .flatten()
            .all(|e| e.file_name() == "_data"),
        "copy-up leftovers stay"
    );
    s.ok(&["run", "--rm", "-v", "cu:/app", "bb:latest", "true"]);
    assert_eq!(std::fs::read(data.join("tool")).unwrap(), b"tool");

    assert_eq!(
        std::fs::read(mountpoint(&s, "keep").join("precious")).unwrap(),
        b"data"
    );
    for c in s.ok(&["ps", "-a", "-q"]).split_whitespace() {
        s.ok(&["rm", "-f", c]);
    }
    s.fsck_clean();
}

#[test]
fn df_counts_a_containers_local_volumes() {
    let s = store();
    let c = s.ok(&["create", "-v", "named:/data", "bb:latest", "true"]);
    let out = s.ok(&["system", "df", "-v"]);
    let row = out
        .lines()
        .find(|l| l.starts_with(&c.trim()[..12]))
        .unwrap_or_else(|| panic!("{out}"));
    // IMAGE's VOLUME /app (anonymous) and `named`: two local volumes.
    assert_eq!(row.split_whitespace().nth(3), Some("2"), "{row}");
    let json = s.ok(&["ps", "-a", "--format", "json"]);
    assert!(json.contains("\"LocalVolumes\":\"2\""), "{json}");
    s.ok(&["rm", "-v", c.trim()]);
    s.ok(&["volume", "rm", "named"]);
    s.fsck_clean();
}
