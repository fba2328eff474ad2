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
