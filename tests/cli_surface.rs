//! Docker's command surface: the management-command forms (`container …`, `image …`,
//! `system …`), `version`, exit codes and usage errors as Docker's CLI has them, `rename`,
//! `port`, `events` from the store's log, `logs --since/--until`, `cp -a/-L/-`, and a shell
//! script written for the docker CLI run unchanged against strata and docker.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A busybox image `bb:latest` (CMD sh) with the applets the tests use.
fn image(s: &Store) {
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let r = work.path().join("rootfs");
    busybox_rootfs(&r);
    for a in ["sleep", "id", "ln", "stat", "env"] {
        let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(a));
    }
    for d in ["proc", "dev", "sys", "root"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    for f in ["hosts", "hostname", "resolv.conf", "group"] {
        std::fs::write(r.join("etc").join(f), "").unwrap();
    }
    s.ok(&[
        "import",
        r.to_str().unwrap(),
        "bb:latest",
        "-c",
        "CMD [\"sh\"]",
        "-c",
        "ENV PATH=/bin",
    ]);
}

fn store() -> Store {
    let s = Store::overlay();
    image(&s);
    s
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn management_forms_share_the_top_level_commands() {
    let s = store();
    // Every alias of `container ls` prints what `ps` prints.
    let header = s.ok(&["ps", "-a"]);
    for form in [
        ["container", "ls"],
        ["container", "ps"],
        ["container", "list"],
    ] {
        assert_eq!(s.ok(&[form[0], form[1], "-a"]), header);
    }
    let id = s.ok(&["container", "create", "--name", "c1", "bb", "sleep", "100"]);
    assert_eq!(id.trim().len(), 64);
    assert_eq!(s.ok(&["container", "start", "c1"]), "c1\n");
    assert_eq!(
        s.ok(&["container", "exec", "c1", "sh", "-c", "echo in"]),
        "in\n"
    );
    assert!(s.ok(&["container", "ls", "-q"]).contains(&id[..12]));
    let v: Value = serde_json::from_str(&s.ok(&["container", "inspect", "c1"])).unwrap();
    assert_eq!(v[0]["Name"], "/c1");
    assert_eq!(s.ok(&["container", "stop", "-t", "1", "c1"]), "c1\n");
    assert_eq!(s.ok(&["container", "wait", "c1"]).trim(), "137");
    assert_eq!(
        s.ok(&[
            "container",
            "run",
            "--rm",
            "bb",
            "sh",
            "-c",
            "echo hi; echo x > /f"
        ]),
        "hi\n"
    );
    s.ok(&[
        "container",
        "run",
        "--name",
        "c2",
        "bb",
        "sh",
        "-c",
        "echo log; echo x > /f",
    ]);
    assert_eq!(s.ok(&["container", "logs", "c2"]), "log\n");
    assert!(s.ok(&["container", "diff", "c2"]).contains("A /f"));
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let tar = dir.path().join("c2.tar");
    s.ok(&["container", "export", "-o", tar.to_str().unwrap(), "c2"]);
    assert!(std::fs::metadata(&tar).unwrap().len() > 0);
    s.ok(&["container", "cp", "c2:/f", dir.path().to_str().unwrap()]);
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"x\n");
    s.ok(&["container", "commit", "c2", "committed:1"]);
    assert_eq!(s.ok(&["container", "rename", "c2", "c3"]), "");
    assert_eq!(s.ok(&["container", "port", "c3"]), "");
    assert_eq!(s.ok(&["container", "restart", "-t", "1", "c1"]), "c1\n");
    assert_eq!(s.ok(&["container", "kill", "c1"]), "c1\n");
    assert_eq!(s.ok(&["container", "wait", "c1"]), "137\n");
    assert_eq!(s.ok(&["container", "rm", "c1"]), "c1\n");
    assert_eq!(s.ok(&["container", "remove", "c3"]), "c3\n");
    // Images.
    let images = s.ok(&["images"]);
    for form in [["image", "ls"], ["image", "list"], ["image", "images"]] {
        assert_eq!(s.ok(&form), images);
    }
    s.ok(&["image", "tag", "bb", "other:2"]);
    assert!(s.ok(&["image", "ls"]).contains("other "));
    let v: Value = serde_json::from_str(&s.ok(&["image", "inspect", "other:2"])).unwrap();
    assert_eq!(v[0]["RepoTags"][1], "other:2", "{v}");
    assert!(s.ok(&["image", "history", "bb"]).starts_with("IMAGE "));
    let saved = dir.path().join("bb.tar");
    s.ok(&["image", "save", "-o", saved.to_str().unwrap(), "other:2"]);
    assert_eq!(s.ok(&["image", "rm", "other:2"]), "Untagged: other:2\n");
    assert_eq!(
        s.ok(&["image", "rmi", "committed:1"]).lines().next(),
        Some("Untagged: committed:1")
    );
    assert_eq!(
        s.ok(&["image", "load", "-i", saved.to_str().unwrap()]),
        "Loaded image: other:2\n"
    );
    assert_eq!(s.ok(&["image", "remove", "other:2"]), "Untagged: other:2\n");
    let imported = s.ok(&["image", "import", tar.to_str().unwrap(), "imp:1"]);
    assert!(imported.starts_with("sha256:"), "{imported}");
    s.ok(&["image", "prune", "-f"]);
    let df = dir.path().join("Dockerfile");
    std::fs::write(&df, "FROM bb\nRUN echo built > /b\n").unwrap();
    s.ok(&[
        "image",
        "build",
        "-q",
        "-t",
        "built:1",
        dir.path().to_str().unwrap(),
    ]);
    assert!(s.ok(&["images"]).contains("built "));
    // System.
    assert!(
        s.ok(&["system", "info"])
            .contains("Storage Driver: overlay")
    );
    assert_eq!(
        s.ok(&["container", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
}

#[test]
fn system_prune_with_volumes_and_all() {
    let s = store();
    s.ok(&["run", "--name", "gone", "-v", "/data", "bb", "true"]);
    s.ok(&["volume", "create", "named"]);
    s.ok(&["tag", "bb", "extra:1"]);
    let o = s.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(o.starts_with("Deleted Containers:\n"), "{o}");
    assert!(o.contains("Deleted Volumes:\n"), "{o}");
    assert!(o.ends_with("Total reclaimed space: 0B\n") || o.contains("Total reclaimed space: "));
    // The anonymous volume went, the named one stays; images stay without -a.
    assert_eq!(s.ok(&["volume", "ls", "-q"]), "named\n");
    assert!(s.ok(&["images"]).contains("extra "));
    let o = s.ok(&["system", "prune", "-a", "-f"]);
    assert!(o.contains("Deleted Images:"), "{o}");
    assert_eq!(s.ok(&["images", "-q"]), "");
    // Without -f it asks; "n" keeps everything.
    image(&s);
    s.ok(&["create", "--name", "kept", "bb"]);
    let mut ch = s
        .cmd(&["system", "prune"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ch.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let o = ch.wait_with_output().unwrap();
    assert!(err(&o).contains("WARNING! This will remove:\n  - all stopped containers\n"));
    assert!(s.ok(&["ps", "-a"]).contains("kept"));
}

#[test]
fn version_in_docker_layout() {
    let s = Store::new("overlay");
    let v = s.ok(&["version"]);
    let lines: Vec<&str> = v.lines().collect();
    assert_eq!(lines[0], "Client:");
    let version = env!("CARGO_PKG_VERSION");
    // Docker's column: values start at column 21.
    assert_eq!(lines[1], format!(" Version:           {version}"));
    assert!(lines[3].starts_with(" Go version:        rustc 1."), "{v}");
    assert!(v.contains("\nServer: strata"), "{v}");
    assert!(v.contains("\n Engine:\n  Version:          "), "{v}");
    assert_eq!(
        s.ok(&["version", "--format", "{{.Client.Version}}"]),
        format!("{version}\n")
    );
    let j: Value = serde_json::from_str(&s.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(j["Server"]["Version"], version);
    let o = s.run(&["version", "--format", "{{.Nope}}"]);
    assert_eq!(code(&o), 1);
}

#[test]
fn usage_errors_word_and_exit_as_docker() {
    let s = Store::new("overlay");
    // Unknown flags: 125, Docker's three parts.
    let o = s.run(&["run", "--xyz", "bb"]);
    assert_eq!(code(&o), 125);
    let e = err(&o);
    assert!(
        e.starts_with("unknown flag: --xyz\n\nUsage:  strata run [OPTIONS]"),
        "{e}"
    );
    assert!(
        e.ends_with("\nRun 'strata run --help' for more information\n"),
        "{e}"
    );
    let o = s.run(&["container", "ls", "--bogus"]);
    assert_eq!(code(&o), 125);
    assert!(
        err(&o).contains("Run 'strata container ls --help'"),
        "{}",
        err(&o)
    );
    let o = s.run(&["ps", "-z"]);
    assert_eq!(code(&o), 125);
    assert!(err(&o).starts_with("unknown shorthand flag: 'z' in -z\n"));
    // A malformed flag value is a flag error too.
    let o = s.run(&["stop", "-t", "soon", "x"]);
    assert_eq!(code(&o), 125);
    // Argument counts and unknown commands: 1.
    let o = s.run(&["rm"]);
    assert_eq!(code(&o), 1);
    assert!(
        err(&o).starts_with("strata: 'strata rm' requires at least 1 argument\n"),
        "{}",
        err(&o)
    );
    let o = s.run(&["tag", "a"]);
    assert_eq!(code(&o), 1);
    assert!(
        err(&o).starts_with("strata: 'strata tag' requires exactly 2 arguments\n"),
        "{}",
        err(&o)
    );
    let o = s.run(&["images", "a", "b"]);
    assert_eq!(code(&o), 1);
    assert!(err(&o).starts_with("strata: 'strata images' requires at most 1 argument\n"));
    let o = s.run(&["bogus"]);
    assert_eq!(code(&o), 1);
    assert!(
        err(&o).starts_with("strata: unknown command: strata bogus\n"),
        "{}",
        err(&o)
    );
    let o = s.run(&["container", "bogus"]);
    assert_eq!(code(&o), 1);
    assert!(err(&o).starts_with("strata: unknown command: strata container bogus\n"));
    // Help is not an error.
    let o = s.run(&["system", "prune", "--help"]);
    assert_eq!(code(&o), 0);
    assert!(out(&o).contains("--volumes"));
}

#[test]
fn exit_codes_as_docker() {
    let s = store();
    // run: the command's code, 127/126 when it cannot be started, 125 for strata's errors.
    assert_eq!(
        code(&s.run(&["run", "--rm", "bb", "sh", "-c", "exit 3"])),
        3
    );
    assert_eq!(code(&s.run(&["run", "--rm", "bb", "nosuch"])), 127);
    assert_eq!(code(&s.run(&["run", "--rm", "bb", "/etc"])), 126);
    let o = s.run(&["run", "--rm", "-u", "nosuch", "bb", "true"]);
    assert_eq!(code(&o), 125);
    assert!(err(&o).contains("unable to find user nosuch: no matching entries in passwd file"));
    assert_eq!(code(&s.run(&["run", "--rm", "nosuchimage:1", "true"])), 125);
    // exec: 126 for any process that cannot be started (Docker's daemon reports 126 for a
    // missing command too), 1 for a stopped container.
    s.ok(&["run", "-d", "--name", "up", "bb", "sleep", "100"]);
    assert_eq!(code(&s.run(&["exec", "up", "sh", "-c", "exit 4"])), 4);
    assert_eq!(code(&s.run(&["exec", "up", "nosuch"])), 126);
    let o = s.run(&["exec", "-u", "nosuch", "up", "true"]);
    assert_eq!(code(&o), 126);
    assert!(err(&o).contains("unable to find user nosuch: no matching entries in passwd file"));
    s.ok(&["create", "--name", "down", "bb", "true"]);
    let o = s.run(&["exec", "down", "true"]);
    assert_eq!(code(&o), 1);
    assert!(err(&o).contains("is not running"), "{}", err(&o));
    // start of a container whose command is missing: 1 and Docker's summary line.
    s.ok(&["create", "--name", "broken", "bb", "nosuch"]);
    let o = s.run(&["start", "broken"]);
    assert_eq!(code(&o), 1);
    assert!(
        err(&o).ends_with("Error: failed to start containers: broken\n"),
        "{}",
        err(&o)
    );
    // Everything else strata refuses: 1, as Docker's CLI (which uses 125 only for run).
    for args in [
        &["rm", "ghost"][..],
        &["inspect", "ghost"],
        &["rmi", "ghost"],
        &["logs", "ghost"],
        &["stop", "ghost"],
        &["rename", "ghost", "x"],
        &["port", "ghost"],
    ] {
        assert_eq!(code(&s.run(args)), 1, "{args:?}");
    }
    s.ok(&["rm", "-f", "up"]);
}

#[test]
fn rename_and_port() {
    let s = store();
    s.ok(&["create", "--name", "old", "bb"]);
    s.ok(&["create", "--name", "other", "bb"]);
    s.ok(&["rename", "old", "new"]);
    let v: Value = serde_json::from_str(&s.ok(&["inspect", "new"])).unwrap();
    assert_eq!(v[0]["Name"], "/new");
    assert!(
        s.fails(&["inspect", "--type", "container", "old"])
            .contains("No such container")
    );
    // The old name is free at once. (Names that are not hex: a hex name could also be an
    // ID prefix, which Docker's lookup accepts too.)
    s.ok(&["create", "--name", "old", "bb"]);
    let e = s.fails(&["rename", "new", "other"]);
    assert!(
        e.contains("Conflict. The container name \"/other\" is already in use"),
        "{e}"
    );
    assert!(
        e.ends_with("Error: failed to rename container named new\n"),
        "{e}"
    );
    let e = s.fails(&["rename", "new", "new"]);
    assert!(e.contains("Renaming a container with the same name as its current name"));
    assert!(
        s.fails(&["rename", "new", "bad/name"])
            .contains("Invalid container name")
    );
    // No published ports (networks host and none), as Docker prints for those.
    assert_eq!(s.ok(&["port", "new"]), "");
    let e = s.fails(&["port", "new", "80"]);
    assert!(
        e.contains("No public port '80/tcp' published for new"),
        "{e}"
    );
}

fn events(s: &Store, args: &[&str]) -> Vec<String> {
    let mut a = vec!["events", "--since", "1h", "--until", "0s"];
    a.extend_from_slice(args);
    s.ok(&a).lines().map(str::to_string).collect()
}

/// `<time> <type> <action> <actor> (attrs)` without the time.
fn shape(line: &str) -> String {
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(
        time.len() == 30 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
        "Docker's time format: {line}"
    );
    rest.to_string()
}

#[test]
fn events_are_recorded_with_each_change() {
    let s = store();
    let o = s.run(&["run", "--name", "e1", "bb", "sh", "-c", "exit 2"]);
    assert_eq!(code(&o), 2);
    let v: Value = serde_json::from_str(&s.ok(&["inspect", "e1"])).unwrap();
    let cid = v[0]["Id"].as_str().unwrap().to_string();

    s.ok(&["rename", "e1", "e2"]);
    s.ok(&["rm", "e2"]);
    s.ok(&["tag", "bb", "bb:two"]);
    s.ok(&["rmi", "bb:two"]);
    let img = s.image_id("bb");
    let lines: Vec<String> = events(&s, &[]).iter().map(|l| shape(l)).collect();
    // The image as the container's record names it (Docker: as the user typed it).
    let create = lines
        .iter()
        .find(|l| l.starts_with("container create"))
        .unwrap();
    let image = create
        .split("(image=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    assert!(image == "bb" || image == "bb:latest", "{create}");
    let want = [
        format!("image import {img} (name={img})"),
        format!("image tag {img} (name=bb:latest)"),
        format!("container create {cid} (image={image}, name=e1)"),
        format!("container start {cid} (image={image}, name=e1)"),
        format!("container die {cid} (exitCode=2, image={image}, name=e1)"),
        format!("container rename {cid} (image={image}, name=e2, oldName=/e1)"),
        format!("container destroy {cid} (image={image}, name=e2)"),
        format!("image tag {img} (name=bb:two)"),
        format!("image untag {img} (name={img})"),
    ];
    // import records the image; the tag event of import's name is not Docker's (no tag
    // event), so only check that what Docker prints is there, in order.
    let mut it = lines.iter();
    for w in want
        .iter()
        .filter(|w| !w.starts_with("image tag") || w.contains("bb:two"))
    {
        assert!(it.any(|l| l == w), "missing {w:?} in order in {lines:#?}");
    }
    // Filters: same key ORs, different keys AND.
    let only = events(&s, &["--filter", "type=container", "--filter", "event=die"]);
    assert_eq!(only.len(), 1, "{only:?}");
    assert!(only[0].contains(" container die "));
    let by_name = events(&s, &["--filter", "container=e2"]);
    assert_eq!(by_name.len(), 2, "{by_name:?}");
    let two = events(&s, &["-f", "event=create", "-f", "event=destroy"]);
    assert_eq!(two.len(), 2, "{two:?}");
    assert!(events(&s, &["--filter", "type=image", "--filter", "event=die"]).is_empty());
    // --format.
    let f = events(
        &s,
        &[
            "--filter",
            "event=rename",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.oldName}}",
        ],
    );
    assert_eq!(f, vec!["container rename /e1".to_string()]);
    let j = events(&s, &["--filter", "event=die", "--format", "{{json .}}"]);
    let v: Value = serde_json::from_str(&j[0]).unwrap();
    assert_eq!(v["status"], "die");
    assert_eq!(v["id"], cid.as_str());
    assert_eq!(v["Actor"]["Attributes"]["exitCode"], "2");
    // A window that ends before everything: nothing.
    assert!(
        s.ok(&["events", "--since", "2h", "--until", "1h"])
            .is_empty()
    );
    assert!(
        s.fails(&["events", "--since", "yesterday", "--until", "0s"])
            .contains("invalid time")
    );
    assert!(
        s.fails(&["events", "--filter", "colour=red", "--until", "0s"])
            .contains("invalid filter")
    );
}

#[test]
fn events_follow_new_events_until_interrupted() {
    let s = store();
    s.ok(&["create", "--name", "before", "bb"]);
    let mut ch = s
        .cmd(&["events", "--filter", "type=container"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(ch.stdout.take().unwrap()).lines();
    // Give it time to start reading at the end of the log.
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    s.ok(&["create", "--name", "after", "bb"]);
    let line = lines.next().unwrap().unwrap();
    assert!(
        line.contains(" container create ") && line.contains("name=after"),
        "{line}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    unsafe { libc::kill(ch.id() as i32, libc::SIGINT) };
    ch.wait().unwrap();
}

#[test]
fn logs_since_and_until() {
    let s = store();
    s.ok(&[
        "run",
        "--name",
        "l",
        "bb",
        "sh",
        "-c",
        "echo early; sleep 2; echo late",
    ]);
    let stamped = s.ok(&["logs", "-t", "l"]);
    let times: Vec<&str> = stamped
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(times.len(), 2);
    assert_eq!(s.ok(&["logs", "--since", times[1], "l"]), "late\n");
    assert_eq!(s.ok(&["logs", "--until", times[1], "l"]), "early\n");
    assert_eq!(s.ok(&["logs", "--since", "1h", "l"]), "early\nlate\n");
    assert_eq!(s.ok(&["logs", "--until", "1h", "l"]), "");
    // Unix seconds.
    let secs = chrono::DateTime::parse_from_rfc3339(times[1])
        .unwrap()
        .timestamp();
    assert_eq!(s.ok(&["logs", "--since", &(secs + 1).to_string(), "l"]), "");
    assert_eq!(
        s.ok(&["logs", "--since", &(secs - 10).to_string(), "l"]),
        "early\nlate\n"
    );
    assert!(
        s.fails(&["logs", "--since", "soon", "l"])
            .contains("invalid time")
    );
}

#[test]
fn cp_archive_follow_link_and_tar_streams() {
    let s = store();
    s.ok(&["create", "--name", "c", "bb"]);
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let f = write_file(dir.path(), "f", b"data\n");
    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::symlink("f", dir.path().join("link")).unwrap();
    let host = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    s.ok(&["cp", &host("f"), "c:/tmp/"]);
    s.ok(&["cp", &host("f"), "c:/tmp/plain"]);
    s.ok(&["cp", "-a", &host("f"), "c:/tmp/kept"]);
    s.ok(&["cp", &host("link"), "c:/tmp/"]);
    s.ok(&["cp", "-L", &host("link"), "c:/tmp/followed"]);
    let mnt = s.ok(&["mount", "c"]);
    let root = Path::new(mnt.trim());
    use std::os::unix::fs::MetadataExt;
    let md = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!((md("tmp/plain").uid(), md("tmp/plain").gid()), (0, 0));
    assert_eq!((md("tmp/kept").uid(), md("tmp/kept").gid()), (1234, 5678));
    assert!(md("tmp/link").file_type().is_symlink());
    assert!(md("tmp/followed").file_type().is_file());
    assert_eq!(std::fs::read(root.join("tmp/followed")).unwrap(), b"data\n");
    s.ok(&["umount", "c"]);
    // Out of the container: -L copies the target under the link's name.
    s.ok(&["cp", "-L", "c:/tmp/link", &host("out")]);
    assert!(
        std::fs::symlink_metadata(dir.path().join("out"))
            .unwrap()
            .is_file()
    );
    s.ok(&["cp", "c:/tmp/link", &host("out2")]);
    assert!(
        std::fs::symlink_metadata(dir.path().join("out2"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // `cp C:PATH -`: a tar on stdout, named from the source's base name.
    let o = s.run(&["cp", "c:/tmp", "-"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let mut names: Vec<String> = tar::Archive::new(&o.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"tmp/kept".to_string()), "{names:?}");
    assert!(names.contains(&"tmp/followed".to_string()), "{names:?}");
    // `cp - C:DIR`: a tar from stdin, owners kept.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o640);
    h.set_uid(42);
    h.set_gid(43);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "sub/streamed", &b"in\n"[..]).unwrap();
    let tarball = b.into_inner().unwrap();
    let mut ch = s
        .cmd(&["cp", "-", "c:/tmp"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ch.stdin.take().unwrap().write_all(&tarball).unwrap();
    let o = ch.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    let mnt = s.ok(&["mount", "c"]);
    let p = Path::new(mnt.trim()).join("tmp/sub/streamed");
    assert_eq!(std::fs::read(&p).unwrap(), b"in\n");
    let m = std::fs::metadata(&p).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (42, 43, 0o640));
    s.ok(&["umount", "c"]);
    // Nothing is left in the temp dirs.
    let tmp = s.path().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|r| {
            r.flatten()
                .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten())
                .count()
        })
        .unwrap_or(0)
        .to_string()
        .into_bytes();
    assert_eq!(left, b"0");
}

// ---------------------------------------------------------------------------------------
// Against a registry and docker: pull/push forms, and a docker-CLI script run unchanged.

struct Registry {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (scripts/setup.sh)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pull_default_tag_and_push_all_tags() {
    let reg = Registry::start();
    let s = store();
    let repo = format!("{}/team/bb", reg.addr);
    for t in ["1", "2", "latest"] {
        s.ok(&["tag", "bb", &format!("{repo}:{t}")]);
    }
    let o = s.ok(&["push", "--all-tags", &repo]);
    for t in ["1", "2", "latest"] {
        assert!(o.contains(&format!("{t}: digest: sha256:")), "{o}");
    }
    assert!(
        s.fails(&["push", "-a", &format!("{repo}:1")])
            .contains("tag can't be used with --all-tags")
    );
    let o = s.ok(&["push", &repo]);
    assert!(o.starts_with("Using default tag: latest\n"), "{o}");
    let t = Store::new("overlay");
    let o = t.ok(&["pull", &repo]);
    assert!(o.starts_with("Using default tag: latest\n"), "{o}");
    let o = t.ok(&["pull", &format!("{repo}:2")]);
    assert!(!o.contains("Using default tag"), "{o}");
    let o = t.ok(&["image", "pull", "-q", &repo]);
    assert_eq!(o, format!("{repo}:latest\n"));
    assert!(
        t.ok(&[
            "events",
            "--since",
            "1h",
            "--until",
            "0s",
            "--filter",
            "event=pull"
        ])
        .contains(&format!(" image pull {repo}:latest (name={repo})"))
    );
}

/// A script written for the docker CLI: the same text runs with `docker` as a shell function
/// calling strata, and with the real docker, and prints the same once IDs, times and sizes
/// are normalized (`normalize`).
const SCRIPT: &str = r#"
set -e
REG=$1
docker pull $REG/lib/bb:1 | tail -1
docker images | grep lib/bb
cid=$(docker run -d --name web $REG/lib/bb:1 sleep 1000)
echo "started ${#cid}"
docker exec web sh -c 'echo hello from exec'
docker exec web sh -c 'exit 3' || echo "exec exit $?"
docker exec web nosuchcommand >/dev/null 2>&1 || echo "exec exit $?"
docker run --name once $REG/lib/bb:1 sh -c 'echo out; sleep 0.2; echo err >&2' 2>&1
docker logs once 2>&1
docker container logs --tail 1 once
docker inspect web | grep -c '"Id": '
docker ps
docker ps -a -q | wc -l
docker container ls -a -q | wc -l
docker exec web sh -c 'echo changed > /changed'
docker commit web $REG/lib/committed:1 | cut -c1-7
docker tag $REG/lib/committed:1 $REG/lib/committed:2
docker push $REG/lib/committed:2 | tail -1 | sed 's/digest: sha256:[0-9a-f]*/digest: D/; s/size: [0-9]*/size: N/'
docker run --rm $REG/lib/committed:2 cat /changed
docker stop -t 1 web
docker rename web web2
docker start web2
docker rm -f web2
docker rm once
docker rmi $REG/lib/committed:1 $REG/lib/committed:2 | grep -c -E '^(Untagged|Deleted): '
docker container run --rm $REG/lib/bb:1 sh -c 'exit 5' || echo "run exit $?"
docker run --rm $REG/lib/bb:1 nosuchcommand 2>/dev/null || echo "run exit $?"
docker rm nosuchcontainer 2>/dev/null || echo "rm exit $?"
docker run --nosuchflag $REG/lib/bb:1 2>/dev/null || echo "run exit $?"
docker create --name gone $REG/lib/bb:1 true >/dev/null
docker system prune -f | head -1
docker image ls | grep -c lib/
"#;

/// The part that needs Go templates and filters (branch `format`).
const TEMPLATE_SCRIPT: &str = r#"
set -e
REG=$1
docker pull -q $REG/lib/bb:1
docker images --format '{{.Repository}}:{{.Tag}}' | sort
docker run -d --name web $REG/lib/bb:1 sleep 1000 >/dev/null
docker run --name once $REG/lib/bb:1 true
docker inspect --format '{{.Name}} {{.State.Running}}' web
docker inspect --format '{{.Config.Image}}' once
docker inspect --format '{{json .Config.Cmd}}' web
docker ps --format '{{.Names}}'
docker ps -a --filter name=once --format '{{.Names}} {{.Image}} {{.Command}}'
docker ps -a --filter status=exited --format 'table {{.Names}}\t{{.Status}}' | sed 's/Exited (0) .*/Exited (0) T/'
docker image ls --filter reference='*/lib/*' --format '{{.Repository}}'
docker rm -f web once >/dev/null
docker system prune -f >/dev/null
"#;

/// IDs, times and sizes replaced; runs of spaces (table padding) squeezed.
fn normalize(text: &str, reg: &str) -> String {
    let rules = [
        (r"sha256:[0-9a-f]{64}", "<digest>"),
        (r"\b[0-9a-f]{64}\b", "<id>"),
        (r"\b[0-9a-f]{12}\b", "<id>"),
        (r"(About an? \w+|Less than a second|\d+ \w+) ago", "<ago>"),
        (r"Up (About an? \w+|Less than a second|\d+ \w+)", "Up <t>"),
        (r"\b\d+(\.\d+)?[kMG]?B\b", "<size>"),
        (r"[a-z]+_[a-z]+\d*", "<name>"),
    ];
    let mut t = text.replace(reg, "REG");
    for (re, to) in rules {
        t = regex::Regex::new(re)
            .unwrap()
            .replace_all(&t, to)
            .into_owned();
    }
    let spaces = regex::Regex::new(r"  +").unwrap();
    t.lines()
        .map(|l| spaces.replace_all(l.trim_end(), "  ").into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `script` with `docker` as a shell function that calls `program` (with extra args).
fn run_script(script: &str, program: &str, extra: &[String], reg: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let path = dir.path().join("script.sh");
    let quoted: Vec<String> = extra.iter().map(|a| format!("'{a}'")).collect();
    std::fs::write(
        &path,
        format!(
            "docker() {{ command '{program}' {} \"$@\"; }}\n{script}",
            quoted.join(" ")
        ),
    )
    .unwrap();
    let o = Command::new("bash")
        .arg(&path)
        .arg(reg)
        .env_remove("STRATA_ROOT")
        .env_remove("STRATA_STORAGE_DRIVER")
        .output()
        .unwrap();
    (code(&o), normalize(&out(&o), reg), err(&o))
}

fn compare_script(script: &str) {
    let reg = Registry::start();
    // The image the script pulls, pushed from a strata store.
    let seed = store();
    seed.ok(&["tag", "bb", &format!("{}/lib/bb:1", reg.addr)]);
    seed.ok(&["push", &format!("{}/lib/bb:1", reg.addr)]);
    let s = Store::new("overlay");
    let strata_args = vec![
        "--root".to_string(),
        s.path().to_str().unwrap().to_string(),
        "--storage-driver".to_string(),
        "overlay".to_string(),
    ];
    let (c1, o1, e1) = run_script(
        script,
        env!("CARGO_BIN_EXE_strata"),
        &strata_args,
        &reg.addr,
    );
    assert_eq!(c1, 0, "the script failed under strata:\n{o1}\n{e1}");
    let Some(d) = dockerd::Dockerd::start() else {
        return;
    };
    let docker_args = vec!["-H".to_string(), d.host.clone()];
    let (c2, o2, e2) = run_script(script, "docker", &docker_args, &reg.addr);
    assert_eq!(c2, 0, "the script failed under docker:\n{o2}\n{e2}");
    let (l1, l2): (Vec<&str>, Vec<&str>) = (o1.lines().collect(), o2.lines().collect());
    for (i, (a, b)) in l1.iter().zip(&l2).enumerate() {
        assert_eq!(a, b, "line {i} differs\nstrata:\n{o1}\n\ndocker:\n{o2}");
    }
    assert_eq!(l1.len(), l2.len(), "strata:\n{o1}\n\ndocker:\n{o2}");
}

#[test]
fn a_docker_cli_script_runs_unchanged() {
    compare_script(SCRIPT);
}

#[test]
fn a_docker_cli_script_with_templates_runs_unchanged() {
    compare_script(TEMPLATE_SCRIPT);
}
