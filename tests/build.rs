//! `strata build` through the real binary: the seeds' walkthroughs (the cow-test pair, the
//! `changed-ubuntu` image), the cache (unchanged, one changed file, mtime-only, build args,
//! --no-cache), multi-stage builds, .dockerignore, determinism, and failures (located
//! errors, exit codes, no stray containers, a clean store).

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// A busybox image `bb:latest` made with `strata import` (no network, no docker).
fn base(s: &Store) -> tempfile::TempDir {
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let r = work.path().join("rootfs");
    busybox_rootfs(&r);
    for a in ["ls", "touch", "mkdir", "stat", "id", "sh", "sleep"] {
        let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(a));
    }
    for d in ["proc", "dev", "sys", "root"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    s.ok(&[
        "import",
        r.to_str().unwrap(),
        "bb:latest",
        "-c",
        "ENV PATH=/bin",
    ]);
    work
}

fn ctx(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (n, c) in files {
        let p = dir.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    dir.to_path_buf()
}

fn build(s: &Store, dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    s.ok(&args)
}

fn layers(s: &Store, image: &str) -> Vec<String> {
    s.inspect(image)["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn no_containers(s: &Store) {
    assert_eq!(s.ok(&["ps", "-a", "-q"]).trim(), "", "stray containers");
}

both_drivers!(cow_test_pair, |d| {
    let s = Store::new(d);
    let w = base(&s);
    let c = ctx(
        &w.path().join("cow-test"),
        &[
            ("hello.sh", "#!/bin/sh\necho \"Hello world\"\n"),
            ("Dockerfile.base", "FROM bb:latest\nCOPY . /app\n"),
            (
                "Dockerfile",
                "FROM acme/my-base-image:1.0\nCMD /app/hello.sh\n",
            ),
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(c.join("hello.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = build(
        &s,
        &c,
        &[
            "-t",
            "acme/my-base-image:1.0",
            "-f",
            c.join("Dockerfile.base").to_str().unwrap(),
        ],
    );
    assert!(out.contains("Step 1/2 : FROM bb:latest\n"), "{out}");
    assert!(out.contains("Step 2/2 : COPY . /app\n"), "{out}");
    assert!(
        out.contains("Successfully tagged acme/my-base-image:1.0"),
        "{out}"
    );
    let before = s.layers_disk_usage();
    let out = build(
        &s,
        &c,
        &[
            "-t",
            "acme/my-final-image:1.0",
            "-f",
            c.join("Dockerfile").to_str().unwrap(),
        ],
    );
    let id = s.image_id("acme/my-final-image:1.0");
    assert!(
        out.contains(&format!("Successfully built {}", &id[7..19])),
        "{out}"
    );
    // The second image's layers are the first's: nothing new.
    assert_eq!(
        layers(&s, "acme/my-final-image:1.0"),
        layers(&s, "acme/my-base-image:1.0")
    );
    assert_eq!(
        layers(&s, "acme/my-base-image:1.0").len(),
        layers(&s, "bb:latest").len() + 1
    );
    let after = s.layers_disk_usage();
    assert!(
        after <= before + 64 * 1024,
        "no new layer data: {before} -> {after}"
    );
    let h = s.ok(&["history", "--no-trunc", "acme/my-final-image:1.0"]);
    let rows: Vec<&str> = h.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{h}");
    assert!(
        rows[0].contains("/bin/sh -c #(nop)  CMD [\"/bin/sh\" \"-c\" \"/app/hello.sh\"]"),
        "{h}"
    );
    assert!(rows[0].contains(" 0B "), "{h}");
    assert!(rows[1].contains("/bin/sh -c #(nop) COPY dir:"), "{h}");
    assert!(rows[1].contains(" in /app "), "{h}");
    // Local ancestors show their IDs, as Docker's history.
    assert!(
        rows[1].starts_with(&s.image_id("acme/my-base-image:1.0")),
        "{h}"
    );
    assert_eq!(
        s.ok(&["run", "--rm", "acme/my-final-image:1.0"]),
        "Hello world\n"
    );
    no_containers(&s);
    s.fsck_clean();
});

both_drivers!(changed_ubuntu, |d| {
    let s = Store::new(d);
    let w = base(&s);
    let c = ctx(
        &w.path().join("cu"),
        &[(
            "Dockerfile",
            "FROM bb:latest\nRUN echo \"Hello world\" > /tmp/newfile\n",
        )],
    );
    let out = build(&s, &c, &["-t", "changed-ubuntu"]);
    assert!(
        out.contains("Step 2/2 : RUN echo \"Hello world\" > /tmp/newfile\n ---> Running in "),
        "{out}"
    );
    assert!(out.contains("Removing intermediate container "), "{out}");
    assert!(
        out.contains("Successfully tagged changed-ubuntu:latest"),
        "{out}"
    );
    assert_eq!(
        layers(&s, "changed-ubuntu").len(),
        layers(&s, "bb:latest").len() + 1
    );
    let h = s.ok(&["history", "changed-ubuntu"]);
    let top = h.lines().nth(1).unwrap();
    assert!(
        top.contains("/bin/sh -c echo \"Hello world\" > /tmp/newfile"),
        "{h}"
    );
    assert!(top.contains(" 12B "), "{h}");
    assert_eq!(
        s.ok(&["run", "--rm", "changed-ubuntu", "cat", "/tmp/newfile"]),
        "Hello world\n"
    );
    // The intermediate images: `images -a` only.
    no_containers(&s);
    s.fsck_clean();
});

#[test]
fn cache_behaviour() {
    let s = Store::new("overlay");
    let w = base(&s);
    let c = ctx(
        &w.path().join("app"),
        &[
            ("a.txt", "aaa"),
            ("b.txt", "bbb"),
            (
                "Dockerfile",
                "FROM bb:latest\nARG V=1\nCOPY a.txt /a.txt\nRUN echo step-one > /one\nCOPY b.txt /b.txt\nRUN echo $V > /v\nCMD [\"cat\", \"/v\"]\n",
            ),
        ],
    );
    let first = build(&s, &c, &["-t", "app"]);
    assert!(!first.contains("Using cache"), "{first}");
    let id = s.image_id("app");
    // Unchanged: every step cached, same image.
    let t = std::time::Instant::now();
    let again = build(&s, &c, &["-t", "app"]);
    let cached_ms = t.elapsed().as_millis();
    assert_eq!(again.matches(" ---> Using cache").count(), 6, "{again}");
    assert!(!again.contains("Running in"), "{again}");
    assert_eq!(s.image_id("app"), id);
    eprintln!("fully cached rebuild: {cached_ms} ms");
    // mtime-only change (and a new inode): still cached.
    let content = std::fs::read(c.join("b.txt")).unwrap();
    std::fs::remove_file(c.join("b.txt")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(c.join("b.txt"), content).unwrap();
    let touched = build(&s, &c, &["-t", "app"]);
    assert_eq!(touched.matches(" ---> Using cache").count(), 6, "{touched}");
    assert_eq!(s.image_id("app"), id);
    // One changed file: steps before it cached, it and the rest rebuilt.
    std::fs::write(c.join("b.txt"), "changed").unwrap();
    let changed = build(&s, &c, &["-t", "app"]);
    assert_eq!(changed.matches(" ---> Using cache").count(), 3, "{changed}");
    let step5 = changed.split("Step 5/7").nth(1).unwrap();
    assert!(
        !step5.starts_with(" : COPY b.txt /b.txt\n ---> Using cache"),
        "{changed}"
    );
    assert_ne!(s.image_id("app"), id);
    assert_eq!(s.ok(&["run", "--rm", "app", "cat", "/b.txt"]), "changed");
    // A changed build arg: the RUNs after its ARG rebuild (their history holds `|1 V=2`, as
    // the classic builder's), the steps before them do not.
    let arg = build(&s, &c, &["-t", "app", "--build-arg", "V=2"]);
    assert_eq!(arg.matches(" ---> Using cache").count(), 2, "{arg}");
    assert_eq!(s.ok(&["run", "--rm", "app"]), "2\n");
    let h = s.ok(&["history", "--no-trunc", "app"]);
    assert!(h.contains("|1 V=2 /bin/sh -c echo $V > /v"), "{h}");
    // --no-cache: nothing reused.
    let nc = build(&s, &c, &["-t", "app", "--no-cache"]);
    assert!(!nc.contains("Using cache"), "{nc}");
    no_containers(&s);
    // Intermediate images: listed with -a only.
    let all = s.ok(&["images", "-a"]).lines().count();
    let top = s.ok(&["images"]).lines().count();
    assert!(all > top + 4, "images -a {all} vs images {top}");
    s.fsck_clean();
    // builder prune drops the cache: the next build runs again.
    s.ok(&["builder", "prune", "-f"]);
    let pruned = build(&s, &c, &["-t", "app"]);
    assert!(!pruned.contains("Using cache"), "{pruned}");
    s.fsck_clean();
}

#[test]
fn failures_are_located_and_leave_nothing() {
    let s = Store::new("overlay");
    let w = base(&s);
    let dir = w.path().join("bad");
    let c = ctx(
        &dir,
        &[
            ("ok.txt", "ok"),
            ("Dockerfile", "FROM bb:latest\nCOPY ok.txt /\n\nFOO bar\n"),
        ],
    );
    let e = s.fails(&["build", c.to_str().unwrap()]);
    assert!(e.contains("Dockerfile:4: unknown instruction: FOO"), "{e}");

    std::fs::write(
        c.join("Dockerfile"),
        "FROM bb:latest\nCOPY ok.txt /\nCOPY missing.txt /\n",
    )
    .unwrap();
    let e = s.fails(&["build", c.to_str().unwrap()]);
    assert!(
        e.contains("Dockerfile:3:") && e.contains("missing.txt"),
        "{e}"
    );

    std::fs::write(c.join("Dockerfile"), "FROM bb:latest\nCOPY ../escape /\n").unwrap();
    let e = s.fails(&["build", c.to_str().unwrap()]);
    assert!(
        e.contains("Dockerfile:2:") && e.contains("outside the build context"),
        "{e}"
    );

    // A symlink in the context pointing outside resolves inside it (here: to nothing).
    std::os::unix::fs::symlink("/etc/hostname", c.join("leak")).unwrap();
    std::fs::write(c.join("Dockerfile"), "FROM bb:latest\nCOPY leak /leak\n").unwrap();
    let e = s.fails(&["build", c.to_str().unwrap()]);
    assert!(e.contains("Dockerfile:2:"), "{e}");

    std::fs::write(
        c.join("Dockerfile"),
        "FROM bb:latest\nRUN echo done > /done\nRUN echo partial > /p; exit 3\n",
    )
    .unwrap();
    let o = s.run(&["build", "-t", "never", c.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("Dockerfile:3: The command '/bin/sh -c echo partial > /p; exit 3' returned a non-zero code: 3"),
        "{e}"
    );
    s.fails(&["image", "inspect", "never"]);
    no_containers(&s);
    s.fsck_clean();
    // The completed step stays cached.
    std::fs::write(
        c.join("Dockerfile"),
        "FROM bb:latest\nRUN echo done > /done\n",
    )
    .unwrap();
    let out = build(&s, &c, &[]);
    assert!(out.contains(" ---> Using cache"), "{out}");
    s.fails(&["build", "--target", "nope", c.to_str().unwrap()]);
}

#[test]
fn stages_ignore_and_determinism() {
    let s = Store::new("overlay");
    let w = base(&s);
    let c = ctx(
        &w.path().join("ms"),
        &[
            ("src/a.txt", "a"),
            ("src/skip.log", "log"),
            ("src/keep.log", "keep"),
            (".dockerignore", "**/*.log\n!src/keep.log\n"),
            (
                "Dockerfile",
                "ARG BASE=bb:latest\nFROM ${BASE} AS builder\nWORKDIR /w\nCOPY src/ ./\nRUN ls /w > /w/list\n\nFROM scratch AS unused\nCOPY nothing-here /\n\nFROM bb:latest\nCOPY --from=builder /w/list /list\nCOPY --chown=app:app --chmod=600 src/a.txt /home/\n",
            ),
        ],
    );
    let out = build(&s, &c, &["-t", "ms"]);
    assert!(
        out.contains("Step 7/7"),
        "the unused stage is skipped: {out}"
    );
    assert_eq!(
        s.ok(&["run", "--rm", "ms", "cat", "/list"]),
        "a.txt\nkeep.log\nlist\n"
    );
    assert_eq!(
        s.ok(&["run", "--rm", "ms", "stat", "-c", "%U %a", "/home/a.txt"]),
        "app 600\n"
    );
    // -q prints only the ID; --iidfile writes it.
    let iid = w.path().join("iid");
    let q = build(&s, &c, &["-q", "--iidfile", iid.to_str().unwrap()]);
    assert_eq!(q.trim(), s.image_id("ms"));
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), s.image_id("ms"));
    // Same inputs, same layers; with --source-date-epoch, the same image ID too.
    let d = ctx(
        &w.path().join("det"),
        &[
            ("f", "x"),
            (
                "Dockerfile",
                "FROM bb:latest\nCOPY f /f\nRUN mkdir -p /made && echo y > /made/y\nCMD [\"cat\", \"/f\"]\n",
            ),
        ],
    );
    let a = build(
        &s,
        &d,
        &["-q", "--no-cache", "--source-date-epoch", "1700000000"],
    );
    let la = layers(&s, a.trim());
    let b = build(
        &s,
        &d,
        &["-q", "--no-cache", "--source-date-epoch", "1700000000"],
    );
    assert_eq!(a, b);
    assert_eq!(layers(&s, b.trim()), la);
    // Without it: the COPY layer (files dated 0) is still the same on every build (the RUN
    // layer holds the times the command ran at).
    let c2 = layers(&s, build(&s, &d, &["-q", "--no-cache"]).trim());
    let c3 = layers(&s, build(&s, &d, &["-q", "--no-cache"]).trim());
    assert_eq!(c2[..c2.len() - 1], c3[..c3.len() - 1]);
    no_containers(&s);
    s.fsck_clean();
}

#[test]
fn language_features() {
    let s = Store::new("overlay");
    let w = base(&s);
    let inner = LayerTar::new()
        .dir("pkg/")
        .file("pkg/data.txt", b"from the tar")
        .build();
    let c = ctx(
        &w.path().join("lang"),
        &[(
            "Dockerfile",
            r#"FROM bb:latest
# a comment between instructions
ENV DIR=/opt/app NAME=world
WORKDIR ${DIR}
WORKDIR sub
USER ${NAME:+root}
SHELL ["/bin/sh", "-c"]
RUN <<EOT
echo "hello $NAME" > greeting
EOT
ARG TAG=one
COPY <<EOF /etc/app.conf
name="$NAME" tag=$TAG
EOF
ADD pkg.tar /unpacked/
COPY pkg.tar /copied/
ONBUILD RUN echo triggered > /onbuild
"#,
        )],
    );
    std::fs::write(c.join("pkg.tar"), &inner).unwrap();
    build(&s, &c, &["-t", "lang"]);
    let cfg = s.inspect("lang");
    assert_eq!(cfg["Config"]["WorkingDir"], "/opt/app/sub");
    assert_eq!(cfg["Config"]["User"], "root");
    assert_eq!(cfg["Config"]["OnBuild"][0], "RUN echo triggered > /onbuild");
    let r = |cmd: &str| s.ok(&["run", "--rm", "lang", "sh", "-c", cmd]);
    assert_eq!(r("cat greeting"), "hello world\n");
    // Heredoc bodies keep their quotes (buildkit's raw quotes); variables are substituted.
    assert_eq!(r("cat /etc/app.conf"), "name=\"world\" tag=one\n");
    // A build arg that only a heredoc uses still changes what is copied (no stale hit).
    build(&s, &c, &["-t", "lang2", "--build-arg", "TAG=two"]);
    assert_eq!(
        s.ok(&["run", "--rm", "lang2", "cat", "/etc/app.conf"]),
        "name=\"world\" tag=two\n"
    );
    assert_eq!(r("cat /unpacked/pkg/data.txt"), "from the tar");
    assert_eq!(r("ls /copied"), "pkg.tar\n");
    // ONBUILD triggers run in the child build.
    let child = ctx(
        &w.path().join("child"),
        &[("Dockerfile", "FROM lang\nCMD [\"cat\", \"/onbuild\"]\n")],
    );
    let out = build(&s, &child, &["-t", "child"]);
    assert!(out.contains("# Executing 1 build trigger"), "{out}");
    assert_eq!(s.ok(&["run", "--rm", "child"]), "triggered\n");
    assert!(s.inspect("child")["Config"]["OnBuild"].is_null());

    // The context as a tar file, and on stdin; the Dockerfile on stdin.
    let tarball = w.path().join("ctx.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&c)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let from_file = s.ok(&["build", "-q", tarball.to_str().unwrap()]);
    assert_eq!(from_file.trim(), s.image_id("lang"), "same inputs, cached");
    let o = s
        .cmd(&["build", "-q", "-"])
        .stdin(std::fs::File::open(&tarball).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        s.image_id("lang")
    );
    let mut child = s
        .cmd(&["build", "-q", "-f", "-", c.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FROM bb:latest\nLABEL from=stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(s.inspect(&id)["Config"]["Labels"]["from"], "stdin");

    // A hostile tar given to ADD is refused; nothing is left behind.
    let evil = LayerTar::new()
        .raw(b"../../../../escaped", tar::EntryType::Regular, b"", b"x")
        .build();
    std::fs::write(c.join("evil.tar"), &evil).unwrap();
    std::fs::write(c.join("Dockerfile"), "FROM bb:latest\nADD evil.tar /x/\n").unwrap();
    let e = s.fails(&["build", c.to_str().unwrap()]);
    assert!(e.contains("Dockerfile:2:"), "{e}");
    assert!(!Path::new("/escaped").exists());
    no_containers(&s);
    s.fsck_clean();
}

/// `rmi` and `prune` racing a build: the build's lease keeps its layers and in-flight images;
/// the build finishes, its image works, and the store stays consistent.
#[test]
fn prune_and_rmi_during_build() {
    let s = Store::new("overlay");
    let w = base(&s);
    let c = ctx(
        &w.path().join("race"),
        &[
            ("f", "data"),
            (
                "Dockerfile",
                "FROM bb:latest\nCOPY f /f\nRUN sleep 1; echo one > /one\nRUN sleep 1; echo two > /two\nCMD [\"cat\", \"/one\", \"/two\", \"/f\"]\n",
            ),
        ],
    );
    let child = s
        .cmd(&["build", "-t", "raced", c.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    s.ok(&["rmi", "-f", "bb:latest"]);
    for _ in 0..6 {
        s.ok(&["image", "prune", "-a", "-f"]);
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(s.ok(&["run", "--rm", "raced"]), "one\ntwo\ndata");
    no_containers(&s);
    s.fsck_clean();
}

/// Independent stages run at once: both RUNs start before either has finished.
#[test]
fn independent_stages_run_in_parallel() {
    let s = Store::new("overlay");
    let w = base(&s);
    let c = ctx(
        &w.path().join("par"),
        &[(
            "Dockerfile",
            "FROM bb:latest AS a\nRUN cat /proc/uptime > /a; sleep 1\nFROM bb:latest AS b\nRUN cat /proc/uptime > /b; sleep 1\nFROM bb:latest\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
        )],
    );
    let out = build(&s, &c, &["-t", "par"]);
    // Output stays in stage order, numbered as if sequential.
    let a = out.find("Step 2/7 : RUN cat /proc/uptime > /a").unwrap();
    let b = out.find("Step 4/7 : RUN cat /proc/uptime > /b").unwrap();
    assert!(a < b, "{out}");
    let t = |f: &str| -> f64 {
        s.ok(&["run", "--rm", "par", "cat", f])
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (ta, tb) = (t("/a"), t("/b"));
    assert!(
        (ta - tb).abs() < 0.9,
        "stages ran one after the other: {ta} {tb}"
    );
    no_containers(&s);
    s.fsck_clean();
}

/// The members of a docker-save archive: path -> bytes.
fn archive_members(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.insert(name, data);
    }
    out
}

/// An image's config and its layers as entry listings (path, type, mode, owner, size, content
/// digest, link): everything the image holds except mtimes, which differ between builds.
fn saved_image(save: &Path) -> (serde_json::Value, Vec<Vec<String>>) {
    let m = archive_members(save);
    let manifest: serde_json::Value = serde_json::from_slice(&m["manifest.json"]).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&m[manifest[0]["Config"].as_str().unwrap()]).unwrap();
    let mut layers = Vec::new();
    for l in manifest[0]["Layers"].as_array().unwrap() {
        let blob = &m[l.as_str().unwrap()];
        let mut entries = Vec::new();
        let mut ar = tar::Archive::new(&blob[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            entries.push(format!(
                "{} {:?} {:o} {}:{} {} {} {:?}",
                String::from_utf8_lossy(&e.path_bytes()),
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                data.len(),
                &sha256_hex(&data)[..12],
                h.link_name().unwrap()
            ));
        }
        entries.sort();
        layers.push(entries);
    }
    (config, layers)
}

/// Entries of an exported root filesystem (`export` of a container of the image), mtimes aside.
fn exported(tar_path: &Path) -> Vec<String> {
    let mut ar = tar::Archive::new(std::fs::File::open(tar_path).unwrap());
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = String::from_utf8_lossy(&e.path_bytes())
            .trim_end_matches('/')
            .to_string();
        // The init layer's files (hosts, resolv.conf, …) are the runtime's, not the image's.
        if matches!(
            path.as_str(),
            "etc/hosts"
                | "etc/hostname"
                | "etc/resolv.conf"
                | ".dockerenv"
                | "dev/console"
                | "dev/pts"
                | "dev/shm"
                | "proc"
                | "sys"
                | "dev"
                | "etc/mtab"
        ) {
            continue;
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push(format!(
            "{path} {:?} {:o} {}:{} {} {:?}",
            h.entry_type(),
            h.mode().unwrap() & 0o7777,
            h.uid().unwrap(),
            h.gid().unwrap(),
            &sha256_hex(&data)[..12],
            h.link_name().unwrap()
        ));
    }
    out.sort();
    out
}

/// History lines with the source hashes after `file:`/`dir:` masked (Docker's are tarsums of
/// the context), and whether each made a layer.
fn history_lines(config: &serde_json::Value) -> Vec<(String, bool)> {
    config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let by = h["created_by"].as_str().unwrap_or("");
            let masked = by
                .split(' ')
                .map(|w| match w.rsplit_once(':') {
                    Some((k, hash))
                        if hash.len() == 64
                            && ["file", "dir", "multi"].iter().any(|t| k.ends_with(t)) =>
                    {
                        format!("{k}:HASH")
                    }
                    // A download's hash stands alone (`ADD <hash> in /dl/`).
                    _ if w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()) => {
                        "HASH".to_string()
                    }
                    _ => w.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ");
            (masked, h["empty_layer"].as_bool().unwrap_or(false))
        })
        .collect()
}

/// Build `dir` with docker's classic builder and with strata as `tag`; compare the image
/// config, the history, every layer's entries and the exported root filesystem.
fn compare_with_docker(
    docker: &common::dockerd::Dockerd,
    s: &Store,
    work: &Path,
    dir: &Path,
    tag: &str,
) {
    let o = docker
        .cmd(&[
            "build",
            "--network",
            "none",
            "-t",
            tag,
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docker build {tag}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    build(s, dir, &["--network", "none", "-t", tag]);

    let name = tag.replace([':', '/'], "-");
    let (dsave, ssave) = (
        work.join(format!("{name}-d.tar")),
        work.join(format!("{name}-s.tar")),
    );
    docker.ok(&["save", "-o", dsave.to_str().unwrap(), tag]);
    s.ok(&["save", "-o", ssave.to_str().unwrap(), tag]);
    let (dconf, dlayers) = saved_image(&dsave);
    let (sconf, slayers) = saved_image(&ssave);

    // Docker's classic builder also writes the container config's zero values and the parent
    // image's ID into the image config (nulls, false, ""); strata writes only what is set, as
    // BuildKit does.
    let mut dconfig = dconf["config"].as_object().unwrap().clone();
    dconfig.retain(|k, v| {
        !(k == "Image"
            || v.is_null()
            || v == &serde_json::json!(false)
            || v == &serde_json::json!(""))
    });
    assert_eq!(
        sconf["config"],
        serde_json::Value::Object(dconfig),
        "{tag}: image config"
    );
    for k in ["architecture", "os"] {
        assert_eq!(sconf[k], dconf[k], "{tag}: {k}");
    }
    let (sh, dh) = (history_lines(&sconf), history_lines(&dconf));
    assert_eq!(sh, dh, "{tag}: history");
    assert_eq!(slayers.len(), dlayers.len(), "{tag}: layer count");
    for (i, (sl, dl)) in slayers.iter().zip(&dlayers).enumerate() {
        let step = sh.iter().filter(|h| !h.1).nth(i).map(|h| h.0.clone());
        assert_eq!(sl, dl, "{tag}: layer {i} ({step:?})");
    }

    let (dexp, sexp) = (
        work.join(format!("{name}-d-export.tar")),
        work.join(format!("{name}-s-export.tar")),
    );
    let dc = docker.ok(&["create", "--network", "none", tag, "true"]);
    docker.ok(&["export", "-o", dexp.to_str().unwrap(), dc.trim()]);
    docker.ok(&["rm", dc.trim()]);
    let sc = s.ok(&["create", tag, "true"]);
    s.ok(&["export", "-o", sexp.to_str().unwrap(), sc.trim()]);
    s.ok(&["rm", sc.trim()]);
    assert_eq!(exported(&sexp), exported(&dexp), "{tag}: exported rootfs");
}

/// A suite of Dockerfiles built by Docker's classic builder (`DOCKER_BUILDKIT=0 docker
/// build`, the builder whose output and history strata follows) and by strata from the same
/// base image: configs, history lines, layers and exported root filesystems are equal.
#[test]
fn matches_docker_classic_builder() {
    let Some(docker) = common::dockerd::Dockerd::start() else {
        return;
    };
    let s = Store::new("overlay");
    let w = base(&s);
    let bb = w.path().join("bb.tar");
    s.ok(&["save", "-o", bb.to_str().unwrap(), "bb:latest"]);
    docker.load(&bb);

    // Most instructions, ADD of a local tar, --chown, .dockerignore, relative WORKDIR.
    let all = ctx(
        &w.path().join("all"),
        &[
            ("a.txt", "hi\n"),
            ("sub/b", "x\n"),
            ("sub/deeper/c", "y\n"),
            (".dockerignore", "ignored\n"),
            ("ignored", "not copied\n"),
            (
                "Dockerfile",
                r#"FROM bb:latest
ARG V=1
ENV A=b C="d e"
LABEL x=y "k 2"=v
WORKDIR /app
COPY a.txt .
COPY sub /app/sub/
COPY --chown=app:app sub/b /owned
ADD t.tar /opt/
RUN echo "Hello world" > /tmp/newfile && echo $V > v && mkdir -p /var/empty
WORKDIR rel
USER app
EXPOSE 80 443/udp
VOLUME /data
HEALTHCHECK --interval=5s CMD true
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-c"]
ONBUILD RUN echo hi
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo hi"]
"#,
            ),
        ],
    );
    std::fs::set_permissions(
        all.join("a.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let t = std::process::Command::new("tar")
        .args(["-cf", "t.tar", "sub"])
        .current_dir(&all)
        .status()
        .unwrap();
    assert!(t.success());
    compare_with_docker(&docker, &s, w.path(), &all, "cmp/all:1");

    // The seeds' cow-test pair: a base with the app, and an image adding only a CMD.
    let cow = ctx(
        &w.path().join("cow"),
        &[
            ("hello.sh", "#!/bin/sh\necho \"Hello world\"\n"),
            ("Dockerfile", "FROM bb:latest\nCOPY . /app\n"),
        ],
    );
    compare_with_docker(&docker, &s, w.path(), &cow, "acme/my-base-image:1.0");
    let fin = ctx(
        &w.path().join("final"),
        &[(
            "Dockerfile",
            "FROM acme/my-base-image:1.0\nCMD /app/hello.sh\n",
        )],
    );
    compare_with_docker(&docker, &s, w.path(), &fin, "acme/my-final-image:1.0");

    // Multi-stage with COPY --from, symlinks copied as symlinks, deletes (whiteouts), ENV in
    // words, several sources into a directory, and a directory's contents copied.
    let multi = ctx(
        &w.path().join("multi"),
        &[
            ("one", "1\n"),
            ("two", "2\n"),
            ("d/x", "x\n"),
            (
                "Dockerfile",
                "FROM bb:latest AS builder\nWORKDIR /w\nRUN echo built > out && ln -s out link && mkdir gone && touch gone/f\nRUN rm -r gone && rm /bin/ls\n\nFROM bb:latest\nENV DEST=/dst\nCOPY --from=builder /w/ $DEST/\nCOPY one two /many/\nCOPY d /flat\nRUN rm /bin/touch\nCMD [\"cat\", \"/dst/out\"]\n",
            ),
        ],
    );
    std::os::unix::fs::symlink("one", multi.join("lnk")).unwrap();
    compare_with_docker(&docker, &s, w.path(), &multi, "cmp/multi:1");

    // ADD of a URL: fetched, 0600, not extracted.
    let port = http_server(std::sync::Arc::new(std::sync::Mutex::new(
        LayerTar::new().file("inside", b"x").build(),
    )));
    let url = ctx(
        &w.path().join("url"),
        &[(
            "Dockerfile",
            &format!(
                "FROM bb:latest\nADD http://127.0.0.1:{port}/t.tar /dl/\nADD http://127.0.0.1:{port}/t.tar /f\n"
            ),
        )],
    );
    compare_with_docker(&docker, &s, w.path(), &url, "cmp/url:1");
}

/// A one-file HTTP server on 127.0.0.1 for `ADD <url>`: serves whatever `body` holds now, with
/// a fixed Last-Modified, to any number of requests.
fn http_server(body: std::sync::Arc<std::sync::Mutex<Vec<u8>>>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut req = [0u8; 4096];
            let _ = std::io::Read::read(&mut c, &mut req);
            let b = body.lock().unwrap().clone();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                b.len()
            );
            let _ = std::io::Write::write_all(&mut c, head.as_bytes());
            let _ = std::io::Write::write_all(&mut c, &b);
        }
    });
    port
}

/// `ADD <url>`: the file is fetched, named after the URL, mode 0600, dated by Last-Modified,
/// never extracted (even a tar); the cache holds while the content is the same and not when it
/// changes; a URL that fails is a located error.
#[test]
fn add_from_url() {
    let s = Store::new("overlay");
    let w = base(&s);
    let tarball = LayerTar::new().file("inside", b"x").build();
    let body = std::sync::Arc::new(std::sync::Mutex::new(tarball.clone()));
    let port = http_server(body.clone());
    let c = ctx(
        &w.path().join("c"),
        &[(
            "Dockerfile",
            &format!(
                "FROM bb:latest\nADD http://127.0.0.1:{port}/files/t.tar /dl/\nADD http://127.0.0.1:{port}/x?y=1 /named\n"
            ),
        )],
    );
    let first = build(&s, &c, &["-t", "dl:1"]);
    assert!(!first.contains("Using cache"), "{first}");
    let out = s.ok(&[
        "run",
        "--rm",
        "dl:1",
        "sh",
        "-c",
        "stat -c '%a %Y %s' /dl/t.tar /named; ls /dl",
    ]);
    let n = tarball.len();
    assert_eq!(
        out,
        format!("600 1445412480 {n}\n600 1445412480 {n}\nt.tar\n"),
        "not extracted, mode 0600, Last-Modified"
    );
    let h = s.ok(&["history", "--no-trunc", "dl:1"]);
    assert!(h.contains("#(nop) ADD ") && h.contains(" in /dl/ "), "{h}");

    let again = build(&s, &c, &["-t", "dl:2"]);
    assert_eq!(again.matches("Using cache").count(), 2, "{again}");
    assert_eq!(s.image_id("dl:1"), s.image_id("dl:2"));

    *body.lock().unwrap() = b"changed".to_vec();
    let changed = build(&s, &c, &["-t", "dl:3"]);
    assert!(!changed.contains("Using cache"), "{changed}");
    assert_eq!(s.ok(&["run", "--rm", "dl:3", "cat", "/named"]), "changed");

    let bad = ctx(
        &w.path().join("bad"),
        &[(
            "Dockerfile",
            "FROM bb:latest\nADD http://127.0.0.1:1/nothing /n\n",
        )],
    );
    let err = s.fails(&["build", bad.to_str().unwrap()]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("ADD http://127.0.0.1:1/nothing"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// `--platform` and `FROM --platform=`: what is built carries the platform asked for; a local
/// base of that platform is used, one of another platform is not (strata tries to pull the
/// right one, as Docker's classic builder does); a bad platform is refused up front.
#[test]
fn build_for_another_platform() {
    let s = Store::new("overlay");
    let w = base(&s);
    let c = ctx(
        &w.path().join("c"),
        &[
            ("a", "a\n"),
            ("Dockerfile", "FROM scratch\nCOPY a /a\n"),
            ("Dockerfile.child", "FROM cross:1\nCOPY a /b\n"),
            ("Dockerfile.wrong", "FROM bb:latest\nCOPY a /b\n"),
            (
                "Dockerfile.stage",
                "ARG P=linux/arm/v7\nFROM --platform=$P scratch AS a\nCOPY a /a\nFROM bb:latest\nCOPY --from=a /a /a\n",
            ),
        ],
    );
    let platform = |img: &str| {
        let v = s.inspect(img);
        format!(
            "{}/{}{}",
            v["Os"].as_str().unwrap(),
            v["Architecture"].as_str().unwrap(),
            v["Variant"]
                .as_str()
                .map(|v| format!("/{v}"))
                .unwrap_or_default()
        )
    };
    build(&s, &c, &["--platform", "linux/arm64", "-t", "cross:1"]);
    assert_eq!(platform("cross:1"), "linux/arm64");
    build(
        &s,
        &c,
        &[
            "--platform",
            "linux/aarch64",
            "-f",
            "Dockerfile.child",
            "-t",
            "cross:2",
        ],
    );
    assert_eq!(platform("cross:2"), "linux/arm64");
    assert_eq!(layers(&s, "cross:2")[0], layers(&s, "cross:1")[0]);

    let err = s.fails(&[
        "build",
        "--platform",
        "linux/arm64",
        "-f",
        "Dockerfile.wrong",
        c.to_str().unwrap(),
    ]);
    assert!(
        err.contains("Dockerfile.wrong:1") && err.contains("not the wanted linux/arm64"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    build(&s, &c, &["-f", "Dockerfile.stage", "-t", "staged:1"]);
    let host = platform("bb:latest");
    assert_eq!(platform("staged:1"), host);

    let err = s.fails(&["build", "--platform", "linux/x/y/z", c.to_str().unwrap()]);
    assert!(err.contains("linux/x/y/z"), "{err}");
    no_containers(&s);
}
