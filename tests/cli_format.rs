//! `--format` templates, `--filter` and `inspect` key order, driving the binary; compared with
//! a throwaway dockerd where one starts.

mod common;

use common::*;

fn store_with_busybox() -> (Store, tempfile::TempDir) {
    let s = Store::overlay();
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    s.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    (s, work)
}

#[test]
fn templates_on_images_ps_and_inspect() {
    let (s, _w) = store_with_busybox();
    s.ok(&["tag", "bb:1", "acme/bb:2"]);
    let out = s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["acme/bb:2", "bb:1"]);
    let out = s.ok(&["images", "--format", "table {{.Repository}}\\t{{.Tag}}"]);
    assert_eq!(out.lines().next().unwrap(), "REPOSITORY   TAG");
    assert!(out.contains("acme/bb      2\n"), "{out}");

    s.ok(&[
        "create",
        "--name",
        "one",
        "bb:1",
        "sh",
        "-c",
        "echo hi there",
    ]);
    s.ok(&["create", "--name", "two", "bb:1", "true"]);
    assert_eq!(s.ok(&["ps", "-a", "--format", "{{.Names}}"]), "two\none\n");
    assert_eq!(
        s.ok(&[
            "ps",
            "-a",
            "--filter",
            "name=one",
            "--format",
            "{{.Image}} {{.Command}}"
        ]),
        "bb:1 \"sh -c 'echo hi ther…\"\n"
    );
    assert_eq!(s.ok(&["ps", "-l", "--format", "{{.Names}}"]), "two\n");
    assert_eq!(s.ok(&["ps", "-n", "2", "-q"]).lines().count(), 2);
    assert_eq!(
        s.ok(&[
            "ps",
            "-a",
            "--filter",
            "status=created",
            "--filter",
            "before=two",
            "--format",
            "{{.Names}}"
        ]),
        "one\n"
    );
    assert_eq!(
        s.ok(&[
            "ps",
            "-a",
            "--filter",
            "since=one",
            "--format",
            "{{.Names}}"
        ]),
        "two\n"
    );
    let header = s.ok(&["ps", "-a", "--format", "table {{.ID}}\t{{.Names}}"]);
    assert!(header.starts_with("CONTAINER ID   NAMES\n"), "{header}");
    assert_eq!(
        s.ok(&[
            "inspect",
            "-f",
            "{{.Name}} {{json .Config.Cmd}} {{.State.Status}}",
            "one"
        ]),
        "/one [\"sh\",\"-c\",\"echo hi there\"] created\n"
    );
    assert_eq!(
        s.ok(&[
            "container",
            "inspect",
            "--format",
            "{{range .Args}}[{{.}}]{{end}}",
            "one"
        ]),
        "[-c][echo hi there]\n"
    );
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.GraphDriver.Name}}", "bb:1"]),
        "overlay2\n"
    );
    assert_eq!(
        s.ok(&[
            "image",
            "inspect",
            "-f",
            "{{upper .Os}} {{len .RootFS.Layers}}",
            "bb:1"
        ]),
        "LINUX 1\n"
    );
    let json = s.ok(&["ps", "-a", "--filter", "name=two", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["Names"], "two");
    assert_eq!(v["Command"], "\"true\"");
}

#[test]
fn template_and_filter_errors_fail() {
    let (s, _w) = store_with_busybox();
    let e = s.fails(&["images", "--format", "{{.Nope}}"]);
    assert!(e.contains("can't evaluate field Nope"), "{e}");
    let e = s.fails(&["ps", "--format", "{{nosuch .ID}}"]);
    assert!(e.contains("function \"nosuch\" not defined"), "{e}");
    let e = s.fails(&["inspect", "-f", "{{.Id", "bb:1"]);
    assert!(e.contains("template"), "{e}");
    let e = s.fails(&["inspect", "-f", "{{index .RepoTags 7}}", "bb:1"]);
    assert!(e.contains("index out of range"), "{e}");
    let e = s.fails(&["ps", "--filter", "color=red"]);
    assert!(e.contains("invalid filter 'color'"), "{e}");
    let e = s.fails(&["images", "--filter", "bogus=1"]);
    assert!(e.contains("invalid filter 'bogus'"), "{e}");
    let e = s.fails(&["ps", "--filter", "status=sleepy"]);
    assert!(e.contains("invalid filter 'status=sleepy'"), "{e}");
    // A map key that is not there is `<no value>`, as Go prints it.
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.Config.Nope}}", "bb:1"]),
        "<no value>\n"
    );
}

#[test]
fn images_filters() {
    let (s, _w) = store_with_busybox();
    s.ok(&["tag", "bb:1", "busybox:latest"]);
    let out = s.ok(&[
        "images",
        "--filter",
        "reference=busy*",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    assert_eq!(out, "busybox:latest\n");
    let out = s.ok(&["images", "--filter", "dangling=true", "-q"]);
    assert_eq!(out, "");
    let out = s.ok(&[
        "images",
        "--filter",
        "reference=bb:1",
        "--format",
        "{{.Tag}}",
    ]);
    assert_eq!(out, "1\n");
}

#[test]
fn inspect_keys_in_docker_order() {
    let (s, _w) = store_with_busybox();
    s.ok(&["create", "--name", "c1", "bb:1", "true"]);
    let text = s.ok(&["inspect", "c1"]);
    let keys: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("        \"") && !l.starts_with("         "))
        .map(|l| l.trim().split('"').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "Id",
            "Created",
            "Path",
            "Args",
            "State",
            "Image",
            "ResolvConfPath",
            "HostnamePath",
            "HostsPath",
            "LogPath",
            "Name",
            "RestartCount",
            "Driver",
            "Platform",
            "MountLabel",
            "ProcessLabel",
            "AppArmorProfile",
            "ExecIDs",
            "HostConfig",
            "GraphDriver",
            "Mounts",
            "Config",
            "NetworkSettings"
        ]
    );
    let created = s.ok(&["inspect", "-f", "{{.Created}}", "c1"]);
    assert!(created.trim().ends_with('Z'), "{created}");
    let img = s.ok(&["image", "inspect", "bb:1"]);
    let keys: Vec<String> = img
        .lines()
        .filter(|l| l.starts_with("        \"") && !l.starts_with("         "))
        .map(|l| l.trim().split('"').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "Id",
            "RepoTags",
            "RepoDigests",
            "Parent",
            "Comment",
            "Created",
            "Container",
            "ContainerConfig",
            "DockerVersion",
            "Author",
            "Config",
            "Architecture",
            "Os",
            "Size",
            "VirtualSize",
            "GraphDriver",
            "RootFS",
            "Metadata"
        ]
    );
}

/// The same image in strata and a throwaway dockerd: the same templates give the same text.
#[test]
fn same_output_as_docker() {
    let Some(d) = dockerd::Dockerd::start() else {
        return;
    };
    let (s, w) = store_with_busybox();
    let archive = w.path().join("bb.tar");
    s.ok(&["save", "-o", archive.to_str().unwrap(), "bb:1"]);
    let load = d.docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let docker = |args: &[&str]| {
        let o = d.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    for f in [
        "{{.Repository}} {{.Tag}} {{.ID}} {{.Size}}",
        "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}",
        "{{.Digest}} {{.CreatedAt}}",
    ] {
        assert_eq!(
            s.ok(&["images", "--format", f]),
            docker(&["images", "--format", f]),
            "images --format {f}"
        );
    }
    for f in [
        "{{.ID}} {{.CreatedBy}} {{.Size}} {{.Comment}}",
        "table {{.ID}}\\t{{.Size}}",
    ] {
        assert_eq!(
            s.ok(&["history", "--format", f, "bb:1"]),
            docker(&["history", "--format", f, "bb:1"]),
            "history --format {f}"
        );
    }
    for f in [
        "{{.Id}}",
        "{{json .RootFS}}",
        "{{.Os}}/{{.Architecture}} {{json .RepoTags}} {{.Size}}",
        "{{json .Config.Env}} {{json .Config.Cmd}}",
        "{{range .RootFS.Layers}}{{println .}}{{end}}",
        "{{json .GraphDriver.Name}} {{.Parent}}|{{.Comment}}",
    ] {
        assert_eq!(
            s.ok(&["image", "inspect", "-f", f, "bb:1"]),
            docker(&["image", "inspect", "-f", f, "bb:1"]),
            "image inspect -f {f}"
        );
    }
    s.ok(&["create", "--name", "fa", "bb:1", "sh", "-c", "echo a b"]);
    s.ok(&["create", "--name", "fb", "bb:1", "true"]);
    docker(&[
        "create",
        "--network",
        "none",
        "--name",
        "fa",
        "bb:1",
        "sh",
        "-c",
        "echo a b",
    ]);
    docker(&[
        "create",
        "--network",
        "none",
        "--name",
        "fb",
        "bb:1",
        "true",
    ]);
    for (filter, f) in [
        ("name=fa", "{{.Names}} {{.Image}} {{.Command}} {{.State}}"),
        ("status=created", "{{.Names}}"),
        ("ancestor=bb:1", "{{.Names}} {{.Status}}"),
        ("before=fb", "{{.Names}}"),
    ] {
        assert_eq!(
            s.ok(&["ps", "-a", "--filter", filter, "--format", f]),
            docker(&["ps", "-a", "--filter", filter, "--format", f]),
            "ps --filter {filter} --format {f}"
        );
    }
    // Rows as JSON: the same keys, and the same values where they do not depend on time.
    let ours = s.ok(&["images", "--format", "{{json .}}"]);
    let theirs = docker(&["images", "--format", "{{json .}}"]);
    assert_eq!(json_keys(&ours), json_keys(&theirs), "images json keys");
    let ps_ours = s.ok(&["ps", "-a", "--filter", "name=fb", "--format", "{{json .}}"]);
    let ps_theirs = docker(&["ps", "-a", "--filter", "name=fb", "--format", "{{json .}}"]);
    assert_eq!(json_keys(&ps_ours), json_keys(&ps_theirs), "ps json keys");
    let (o, t): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&ps_ours).unwrap(),
        serde_json::from_str(&ps_theirs).unwrap(),
    );
    for k in [
        "Command",
        "Image",
        "Labels",
        "LocalVolumes",
        "Mounts",
        "Names",
        "Ports",
        "State",
        "Status",
        "Platform",
    ] {
        assert_eq!(o[k], t[k], "ps json {k}");
    }
    // The same keys in the same order: the documents' top level, and State and Config.
    for obj in ["fa", "bb:1"] {
        assert_eq!(
            top_keys(&s.ok(&["inspect", obj])),
            top_keys(&docker(&["inspect", obj])),
            "inspect {obj} keys"
        );
    }
    for f in [
        "{{json .State}}",
        "{{json .Config}}",
        "{{json .HostConfig}}",
    ] {
        assert_eq!(
            json_keys(&s.ok(&["inspect", "-f", f, "fa"])),
            json_keys(&docker(&["inspect", "-f", f, "fa"])),
            "keys of {f}"
        );
    }
    let f = "{{.Path}} {{json .Args}} {{.Name}} {{.Config.Image}} {{json .Config.Cmd}} {{.State.Status}}";
    assert_eq!(
        s.ok(&["inspect", "-f", f, "fa"]),
        docker(&["inspect", "-f", f, "fa"]),
        "inspect -f {f}"
    );
}

/// The keys of the first object in an indented `inspect` array, in order.
fn top_keys(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("        \"") && !l.starts_with("         "))
        .map(|l| l.trim().split('"').nth(1).unwrap().to_string())
        .collect()
}

/// The top-level keys of one compact JSON object, in order.
fn json_keys(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut depth = 0;
    let mut in_str = false;
    let mut esc = false;
    let mut cur = String::new();
    let b: Vec<char> = text.trim().chars().collect();
    for (i, &c) in b.iter().enumerate() {
        if in_str {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
                if depth == 1 && b.get(i + 1) == Some(&':') {
                    keys.push(cur.clone());
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                cur.clear();
            }
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ => {}
        }
    }
    keys
}

#[test]
fn prune_filters() {
    let (s, _w) = store_with_busybox();
    s.ok(&["create", "--name", "young", "bb:1", "true"]);
    // Created less than an hour ago: `until=1h` keeps it; `until=0s` lets it go.
    let out = s.ok(&["container", "prune", "-f", "--filter", "until=1h"]);
    assert!(!out.contains("Deleted Containers"), "{out}");
    let out = s.ok(&["container", "prune", "-f", "--filter", "label=nope"]);
    assert!(!out.contains("Deleted Containers"), "{out}");
    let out = s.ok(&["container", "prune", "-f", "--filter", "until=0s"]);
    assert!(out.contains("Deleted Containers"), "{out}");
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    let e = s.fails(&["container", "prune", "-f", "--filter", "dangling=true"]);
    assert!(e.contains("invalid filter 'dangling'"), "{e}");
    let e = s.fails(&["image", "prune", "-f", "--filter", "until=soon"]);
    assert!(e.contains("until=soon"), "{e}");
    let out = s.ok(&["image", "prune", "-af", "--filter", "label=nope"]);
    assert!(!out.contains("Deleted Images"), "{out}");
    s.ok(&["images", "-q"]).lines().next().expect("bb:1 kept");
}

#[test]
fn volume_templates() {
    let (s, _w) = store_with_busybox();
    s.ok(&["volume", "create", "--label", "team=a", "v1"]);
    s.ok(&["volume", "create", "v2"]);
    assert_eq!(
        s.ok(&[
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Label \"team\"}}"
        ]),
        "v1 local a\nv2 local \n"
    );
    assert_eq!(
        s.ok(&[
            "volume",
            "ls",
            "--filter",
            "label=team",
            "--format",
            "table {{.Name}}\t{{.Scope}}"
        ]),
        "VOLUME NAME   SCOPE\nv1            local\n"
    );
    assert_eq!(
        s.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Name}} {{.Labels.team}} {{json .Options}}",
            "v1"
        ]),
        "v1 a null\n"
    );
    let df = s.ok(&["system", "df", "--format", "{{.Type}}={{.TotalCount}}"]);
    assert!(
        df.starts_with("Images=1\nContainers=0\nLocal Volumes=2\n"),
        "{df}"
    );
    let info = s.ok(&["info", "--format", "{{.Images}} {{.Driver}}"]);
    assert_eq!(info, "1 overlay\n");
}

#[test]
fn ps_image_as_typed_until_the_name_moves() {
    let (s, w) = store_with_busybox();
    s.ok(&["tag", "bb:1", "bb:latest"]);
    s.ok(&["create", "--name", "typed", "bb", "true"]);
    assert_eq!(s.ok(&["ps", "-a", "--format", "{{.Image}}"]), "bb\n");
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.Config.Image}}", "typed"]),
        "bb\n"
    );
    // `bb` now names another image: the container's own image is shown by ID.
    let other = w.path().join("other");
    std::fs::create_dir_all(other.join("etc")).unwrap();
    std::fs::write(other.join("etc/x"), b"x").unwrap();
    s.ok(&["import", other.to_str().unwrap(), "bb:latest"]);
    let id = s.image_id("bb:1");
    let short = id.trim_start_matches("sha256:")[..12].to_string();
    assert_eq!(
        s.ok(&["ps", "-a", "--format", "{{.Image}}"]),
        format!("{short}\n")
    );
}
