//! `run`/`create` flags as Docker's (issue 10): `--pull`, `-t` with a real pty, hostname,
//! env files, labels, /etc/hosts entries, read-only roots, stop signal/timeout, groups,
//! capabilities, cgroup limits, restart policies, `--init`, and the commands around a running
//! container (`exec -d`, `attach`, `pause`, `top`, `stats`), through the real binary.

mod common;
use common::*;
use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A busybox image `bb:latest` (CMD sh) with users and groups for the `id` checks.
fn image(s: &Store) {
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let r = work.path().join("rootfs");
    busybox_rootfs(&r);
    for a in [
        "sleep", "hostname", "id", "ps", "env", "cat", "stty", "tty", "ls", "touch", "grep",
    ] {
        let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(a));
    }
    for d in ["proc", "dev", "sys", "root", "home/app", "tmp"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        r.join("etc/group"),
        "root:x:0:\napp:x:1000:\nwheel:x:10:app,root\naudio:x:29:app\n",
    )
    .unwrap();
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
    let s = Store::new("overlay");
    image(&s);
    s
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn inspect(s: &Store, name: &str) -> Value {
    let v: Value = serde_json::from_str(&s.ok(&["inspect", name])).unwrap();
    v[0].clone()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// A throwaway registry (Debian's docker-registry, as tests/registry.rs and
// scripts/registry-test-server.sh start it)

struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    addr: String,
}

impl Registry {
    fn start() -> Registry {
        std::fs::create_dir_all("/var/tmp/strata-tests").unwrap();
        let dir = tempfile::Builder::new()
            .prefix("reg-")
            .tempdir_in("/var/tmp/strata-tests")
            .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let d = dir.path();
        std::fs::write(
            d.join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                d.join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed (scripts/setup.sh)");
        let t0 = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            _dir: dir,
            addr,
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
fn pull_missing_always_never() {
    let reg = Registry::start();
    let s = store();
    let name = format!("{}/bb", reg.addr);
    s.ok(&["tag", "bb", &name]);
    s.ok(&["push", &name]);
    s.ok(&["rmi", &name]);

    // never: refused as Docker, nothing pulled.
    let o = s.run(&["run", "--rm", "--pull", "never", &name, "true"]);
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("No such image: {name}")),
        "{}",
        stderr(&o)
    );
    let o = s.run(&["create", "--pull=never", &name]);
    assert_ne!(code(&o), 0);
    assert!(
        s.fails(&["image", "inspect", &name])
            .contains("No such image")
    );

    // missing (the default): Docker's words on stderr, then the pull, then the run.
    let o = s.run(&["run", "--rm", &name, "echo", "ran"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "ran\n");
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("Unable to find image '{name}:latest' locally\n")),
        "{err}"
    );
    assert!(err.contains("latest: Pulling from bb"), "{err}");
    assert!(
        err.contains(&format!("Status: Downloaded newer image for {name}:latest")),
        "{err}"
    );
    // Present now: no pull at all.
    let o = s.run(&["run", "--rm", &name, "true"]);
    assert_eq!(code(&o), 0);
    assert_eq!(stderr(&o), "");

    // always: pulls though present ("Image is up to date").
    let o = s.run(&["create", "--pull", "always", "--name", "c1", &name]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("Image is up to date"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("Unable to find"));

    // A name nobody serves: the pull's error, exit 125, no container left.
    let o = s.run(&["run", &format!("{}/nothing", reg.addr), "true"]);
    assert_eq!(code(&o), 125);
    assert_eq!(
        stderr(&o)
            .lines()
            .filter(|l| l.starts_with("Error"))
            .count(),
        1
    );
    assert_eq!(s.ok(&["ps", "-aq"]).lines().count(), 1);
    let o = s.run(&["run", "--pull", "sometimes", "bb", "true"]);
    assert_ne!(code(&o), 0);
}

/// Run `strata ARGS` inside `script(1)`: a real terminal of 33 rows and 101 columns on its
/// stdin/stdout, as a user's shell would give it. Returns (exit code, output with CR LF).
fn in_terminal(s: &Store, args: &str, input: &str) -> (i32, String) {
    let strata = format!(
        "{} --root {} --storage-driver {}",
        env!("CARGO_BIN_EXE_strata"),
        s.root.display(),
        s.driver
    );
    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!("stty rows 33 cols 101; {strata} {args}"),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (bsdutils) is installed (scripts/setup.sh)");
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    drop(stdin);
    (code(&o), stdout(&o))
}

#[test]
fn tty_is_a_real_controlling_terminal() {
    let s = store();
    let probe = "sh -c 'tty; stty size; echo TERM=$TERM; ls -l /proc/self/fd/1; [ -t 0 ] && echo stdin-tty; exit 7'";
    for runtime in ["", "--runtime /usr/sbin/runc"] {
        let (rc, out) = in_terminal(&s, &format!("run --rm -t {runtime} bb {probe}"), "");
        assert_eq!(rc, 7, "{runtime}: {out}");
        let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
        assert_eq!(lines[0], "/dev/pts/0", "{runtime}: {out}");
        assert_eq!(
            lines[1], "33 101",
            "{runtime}: the caller's window size: {out}"
        );
        assert_eq!(lines[2], "TERM=xterm");
        assert!(lines[3].ends_with("-> /dev/pts/0"), "{out}");
        assert_eq!(lines[4], "stdin-tty");
    }
    // The pty's output discipline: "\n" becomes "\r\n", as on Docker's -t.
    let o = s.run(&["run", "--rm", "-t", "bb", "tty"]);
    assert_eq!(stdout(&o), "/dev/pts/0\r\n");
    // -e TERM wins over the default.
    let o = s.run(&[
        "run",
        "--rm",
        "-t",
        "-e",
        "TERM=vt100",
        "bb",
        "sh",
        "-c",
        "echo $TERM",
    ]);
    assert_eq!(stdout(&o), "vt100\r\n");
    let o = s.run(&["run", "--rm", "bb", "sh", "-c", "echo ${TERM:-unset}; tty"]);
    assert_eq!(stdout(&o), "unset\nnot a tty\n");

    // -it: keystrokes reach the container through the terminal.
    let (rc, out) = in_terminal(&s, "run --rm -it bb sh -c 'read x; echo got-$x'", "hello\n");
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("got-hello"), "{out}");

    // -it with a stdin that is not a terminal: Docker's refusal, exit 1, nothing created.
    let o = s.run(&["run", "-it", "bb", "true"]);
    assert_eq!(code(&o), 1);
    assert_eq!(stderr(&o), "the input device is not a TTY\n");
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    // -d -it is fine (nothing is attached), and exec -t gets its own terminal.
    s.ok(&["run", "-d", "-it", "--name", "bg", "bb", "sh"]);
    let (rc, out) = in_terminal(&s, &format!("exec -t bg {probe}"), "");
    assert_eq!(rc, 7, "{out}");
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{out}");
    assert_eq!(lines[1], "33 101");
    assert_eq!(lines[2], "TERM=xterm");
    let (rc, out) = in_terminal(
        &s,
        "exec -it bg sh -c 'read x; echo got-$x; exit 4'",
        "hi\n",
    );
    assert_eq!(rc, 4, "{out}");
    assert!(out.contains("got-hi"), "{out}");
    let o = s.run(&["exec", "-it", "bg", "true"]);
    assert_eq!(code(&o), 1);
    assert_eq!(stderr(&o), "the input device is not a TTY\n");
    s.ok(&["rm", "-f", "bg"]);
}

#[test]
fn hostname_env_file_labels_hosts_read_only_groups() {
    let s = store();
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let env_file = work.path().join("app.env");
    std::fs::write(
        &env_file,
        "# comment\nA=1\n\nB=two words\nC=\"quoted\"\nPASSED\nUNSET_HERE\n",
    )
    .unwrap();
    // -h is --hostname on run/create (not help); --help still helps.
    let o = s
        .cmd(&[
            "run",
            "--rm",
            "-h",
            "myhost",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "B=over",
            "--add-host",
            "db:10.0.0.5",
            "--add-host",
            "v6:::1",
            "bb",
            "sh",
            "-c",
            "hostname; cat /etc/hostname; echo $HOSTNAME; env | sort; cat /etc/hosts",
        ])
        .env("PASSED", "from-caller")
        .env_remove("UNSET_HERE")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["myhost", "myhost", "myhost"]);
    for want in ["A=1", "B=over", "C=\"quoted\"", "PASSED=from-caller"] {
        assert!(lines.contains(&want), "{want}: {out}");
    }
    assert!(!out.contains("UNSET_HERE"), "{out}");
    let hosts: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("127.0.0.1\tlocalhost"))
        .collect();
    assert_eq!(
        &hosts[hosts.len() - 3..],
        ["10.0.0.5\tdb", "::1\tv6", "127.0.0.1\tmyhost"],
        "{out}"
    );
    assert!(s.ok(&["run", "--help"]).contains("--hostname"));
    assert!(s.ok(&["create", "--help"]).contains("--env-file"));
    let o = s.run(&[
        "run",
        "--rm",
        "--env-file",
        "/nonexistent.env",
        "bb",
        "true",
    ]);
    assert_eq!(code(&o), 125);
    assert!(stderr(&o).contains("/nonexistent.env"), "{}", stderr(&o));
    let o = s.run(&["run", "--rm", "--add-host", "foo:bar", "bb", "true"]);
    assert_eq!(code(&o), 125);
    assert_eq!(
        stderr(&o),
        "Error: invalid argument \"foo:bar\" for \"--add-host\" flag: invalid IP address in add-host: \"bar\"\n"
    );

    // Labels are recorded; inspect shows them (and the hostname) under Config.
    s.ok(&[
        "create", "--name", "lab", "-l", "a=1", "--label", "b", "-h", "box", "bb",
    ]);
    let c = inspect(&s, "lab");
    assert_eq!(
        c["Config"]["Labels"],
        serde_json::json!({"a": "1", "b": ""})
    );
    assert_eq!(c["Config"]["Hostname"], "box");

    // --read-only: the root refuses writes; the mounted /etc files and volumes do not.
    let o = s.run(&[
        "run",
        "--rm",
        "--read-only",
        "-v",
        "/data",
        "bb",
        "sh",
        "-c",
        "touch /x; echo rc=$?; echo 1 >> /etc/hosts && touch /data/y && echo writable",
    ]);
    assert_eq!(stdout(&o), "rc=1\nwritable\n", "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );

    // Groups as Docker: the primary group and the image's /etc/group memberships, plus
    // --group-add (names looked up in the image, numbers as given).
    assert_eq!(
        s.ok(&["run", "--rm", "bb", "id"]),
        "uid=0(root) gid=0(root) groups=0(root),10(wheel)\n"
    );
    assert_eq!(
        s.ok(&["run", "--rm", "-u", "app", "bb", "id"]),
        "uid=1000(app) gid=1000(app) groups=10(wheel),29(audio),1000(app)\n"
    );
    assert_eq!(
        s.ok(&["run", "--rm", "-u", "app:root", "bb", "id"]),
        "uid=1000(app) gid=0(root) groups=0(root)\n"
    );
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--group-add",
            "77",
            "--group-add",
            "audio",
            "bb",
            "id"
        ]),
        "uid=0(root) gid=0(root) groups=0(root),10(wheel),29(audio),77\n"
    );
    let o = s.run(&["run", "--rm", "--group-add", "nogroup", "bb", "id"]);
    assert_eq!(code(&o), 125);
    assert!(stderr(&o).contains("nogroup"), "{}", stderr(&o));
}

#[test]
fn stop_signal_and_stop_timeout() {
    let s = store();
    // The container traps TERM; --stop-signal USR1 is what stop sends instead.
    s.ok(&[
        "run", "-d", "--name", "sig", "--stop-signal", "USR1", "bb", "sh", "-c",
        "trap 'echo got-usr1; exit 3' USR1; trap 'echo got-term; exit 4' TERM; while true; do sleep 0.1; done",
    ]);
    // Let the shell set its traps.
    std::thread::sleep(Duration::from_millis(300));
    s.ok(&["stop", "sig"]);
    assert_eq!(s.ok(&["logs", "sig"]), "got-usr1\n");
    assert_eq!(s.ok(&["wait", "sig"]), "3\n");
    // --stop-timeout 1: a process ignoring SIGTERM is killed after 1 s, not 10.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "--stop-timeout",
        "1",
        "bb",
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    s.ok(&["stop", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(s.ok(&["wait", "stubborn"]), "137\n");
    let o = s.run(&["run", "--stop-signal", "NOPE", "bb", "true"]);
    assert_eq!(code(&o), 125);
    assert_eq!(stderr(&o), "Error: Invalid signal: NOPE\n");
}

/// The effective capability mask of the container's process.
fn cap_eff(s: &Store, args: &[&str]) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["bb", "grep", "CapEff", "/proc/self/status"]);
    let out = s.ok(&a);
    out.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn capabilities_and_privileged() {
    let s = store();
    // Docker's default set, bit for bit.
    assert_eq!(cap_eff(&s, &[]), "00000000a80425fb");
    // +NET_ADMIN (bit 12), -CHOWN (bit 0), names in any case, with or without CAP_.
    assert_eq!(
        cap_eff(&s, &["--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN"]),
        "00000000a80435fa"
    );
    assert_eq!(
        cap_eff(&s, &["--cap-drop", "ALL", "--cap-add", "KILL"]),
        "0000000000000020"
    );
    // --privileged: every capability this host has, /sys writable, no masked paths.
    let host: String = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(cap_eff(&s, &["--privileged"]), host);
    let sys = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[
            "bb",
            "sh",
            "-c",
            "grep ' /sys ' /proc/mounts; grep -c ' /proc/' /proc/mounts; true",
        ]);
        s.ok(&a)
    };
    let plain = sys(&[]);
    assert!(plain.contains(" ro,"), "{plain}");
    let privileged = sys(&["--privileged"]);
    assert!(privileged.contains(" rw,"), "{privileged}");
    assert!(
        privileged.lines().last().unwrap().parse::<u32>().unwrap()
            < plain.lines().last().unwrap().parse::<u32>().unwrap(),
        "masked and read-only /proc paths are not mounted: {plain} / {privileged}"
    );
    let o = s.run(&["run", "--rm", "--cap-add", "bogus", "bb", "true"]);
    assert_eq!(code(&o), 125);
    assert_eq!(stderr(&o), "Error: unknown capability: \"CAP_BOGUS\"\n");
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}

/// A cgroup v1 controller's directory for the container, or the v2 one; None when this host
/// has no such controller.
fn cgroup_file(id: &str, controller: &str, v1: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new("/sys/fs/cgroup")
        .join(controller)
        .join("strata")
        .join(id)
        .join(v1);
    p.exists().then_some(p)
}

#[test]
fn memory_cpus_pids_limits() {
    let s = store();
    let id = s.ok(&[
        "run",
        "-d",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "20",
        "bb",
        "sleep",
        "30",
    ]);
    let id = id.trim();
    let read = |controller: &str, file: &str| {
        cgroup_file(id, controller, file)
            .map(|p| std::fs::read_to_string(p).unwrap().trim().to_string())
    };
    match read("memory", "memory.limit_in_bytes") {
        Some(v) => assert_eq!(v, (64 << 20).to_string()),
        None => println!("no cgroup v1 memory controller on this host: --memory not checked"),
    }
    match read("cpu", "cpu.cfs_quota_us") {
        Some(v) => {
            assert_eq!(v, "50000");
            assert_eq!(read("cpu", "cpu.cfs_period_us").unwrap(), "100000");
        }
        None => println!("no cgroup v1 cpu controller on this host: --cpus not checked"),
    }
    let have_pids = match read("pids", "pids.max") {
        Some(v) => {
            assert_eq!(v, "20");
            true
        }
        None => {
            println!("no cgroup v1 pids controller on this host: --pids-limit not checked");
            false
        }
    };
    s.ok(&["rm", "-f", id]);
    if have_pids {
        // The limit bites: the sixth process cannot be forked.
        let o = s.run(&[
            "run",
            "--rm",
            "--pids-limit",
            "5",
            "bb",
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait",
        ]);
        assert!(stderr(&o).contains("can't fork"), "{}", stderr(&o));
    }
    if read("memory", "memory.limit_in_bytes").is_some()
        || std::path::Path::new("/sys/fs/cgroup/memory").exists()
    {
        // 60 MB through sort in a 10 MB container: the kernel's OOM killer ends it.
        let o = s.run(&[
            "run",
            "--rm",
            "-m",
            "10m",
            "bb",
            "sh",
            "-c",
            "head -c 60000000 /dev/zero | sort >/dev/null",
        ]);
        assert_eq!(code(&o), 137, "{}", stderr(&o));
    }
    // Refused before anything is made, with Docker's words.
    let o = s.run(&["run", "--rm", "-m", "1m", "bb", "true"]);
    assert_eq!(code(&o), 125);
    assert_eq!(stderr(&o), "Error: Minimum memory limit allowed is 6MB\n");
    let o = s.run(&["run", "--rm", "--cpus", "1000", "bb", "true"]);
    assert_eq!(code(&o), 125);
    assert!(
        stderr(&o).starts_with("Error: Range of CPUs is from 0.01 to "),
        "{}",
        stderr(&o)
    );
    let o = s.run(&["run", "--rm", "-m", "lots", "bb", "true"]);
    assert_eq!(code(&o), 125);
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}

fn state_json(s: &Store, name: &str) -> Value {
    let id = inspect(s, name)["Id"].as_str().unwrap().to_string();
    serde_json::from_slice(
        &std::fs::read(s.root.join("containers").join(id).join("state.json")).unwrap(),
    )
    .unwrap()
}

fn ps_status(s: &Store, name: &str, all: bool) -> Option<String> {
    let mut a = vec!["ps", "--format", "json"];
    if all {
        a.push("-a");
    }
    s.ok(&a).lines().find_map(|l| {
        let v: Value = serde_json::from_str(l).unwrap();
        (v["Names"] == name).then(|| v["Status"].as_str().unwrap().to_string())
    })
}

#[test]
fn restart_policies_and_init() {
    let s = store();
    // on-failure:3 — the first run and three restarts, then Exited; RestartCount 3.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "fail3",
        "--restart",
        "on-failure:3",
        "bb",
        "sh",
        "-c",
        "echo run; exit 2",
    ]);
    wait_until("four runs", || {
        s.ok(&["logs", "fail3"]).lines().count() == 4
            && state_json(&s, "fail3")["status"] == "exited"
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.ok(&["logs", "fail3"]), "run\nrun\nrun\nrun\n");
    let st = state_json(&s, "fail3");
    assert_eq!(st["restart_count"], 3);
    assert_eq!(st["exit_code"], 2);
    assert!(
        ps_status(&s, "fail3", true)
            .unwrap()
            .starts_with("Exited (2) ")
    );
    // on-failure does not restart a success.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "fine",
        "--restart",
        "on-failure",
        "bb",
        "true",
    ]);
    wait_until("fine exits", || {
        state_json(&s, "fine")["status"] == "exited"
    });
    assert_eq!(state_json(&s, "fine")["restart_count"], 0);

    // always: restarted after every exit; `ps` (without -a) shows it Restarting between
    // runs; `stop` ends it for good.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "bb",
        "sh",
        "-c",
        "echo x; sleep 0.2; exit 1",
    ]);
    let mut seen = false;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) && !seen {
        if let Some(st) = ps_status(&s, "loop", false)
            && st.starts_with("Restarting (1) ")
        {
            assert!(st.ends_with(" ago"), "{st}");
            seen = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen, "never saw Restarting in ps");
    wait_until("a few restarts", || {
        state_json(&s, "loop")["restart_count"].as_u64().unwrap() >= 2
    });
    s.ok(&["stop", "loop"]);
    let n = state_json(&s, "loop")["restart_count"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(state_json(&s, "loop")["status"], "exited");
    assert_eq!(
        state_json(&s, "loop")["restart_count"].as_u64().unwrap(),
        n,
        "restarted after stop"
    );
    assert!(inspect(&s, "loop")["State"]["Restarting"] == false);
    // A manual start counts from zero again, as Docker's.
    s.ok(&["start", "fail3"]);
    wait_until("fail3 again", || {
        state_json(&s, "fail3")["status"] == "exited"
            && state_json(&s, "fail3")["restart_count"] == 3
    });

    for bad in ["sometimes", "on-failure:x", "always:3"] {
        let o = s.run(&["run", "--restart", bad, "bb", "true"]);
        assert_eq!(code(&o), 125, "{bad}");
    }
    let o = s.run(&["run", "--rm", "--restart", "always", "bb", "true"]);
    assert_eq!(
        stderr(&o),
        "Error: Conflicting options: --restart and --rm\n"
    );

    // --init: tini (Docker's docker-init) is PID 1 and passes the exit code on.
    let out = s.ok(&["run", "--rm", "--init", "bb", "ps", "-o", "pid,args"]);
    let first = out.lines().nth(1).unwrap();
    assert!(
        first.trim_start().starts_with("1 /sbin/docker-init -- ps"),
        "{out}"
    );
    let o = s.run(&["run", "--rm", "--init", "bb", "sh", "-c", "exit 5"]);
    assert_eq!(code(&o), 5);
}

#[test]
fn exec_detached() {
    let s = store();
    s.ok(&["run", "-d", "--name", "host", "bb", "sleep", "100"]);
    let t = Instant::now();
    let o = s.run(&[
        "exec",
        "-d",
        "host",
        "sh",
        "-c",
        "sleep 1; echo done > /tmp/marker",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "exec -d waited: {:?}",
        t.elapsed()
    );
    assert_ne!(
        code(&s.run(&["exec", "host", "cat", "/tmp/marker"])),
        0,
        "ran in the foreground"
    );
    wait_until("the detached process ran", || {
        s.run(&["exec", "host", "cat", "/tmp/marker"])
            .status
            .success()
    });
    // A missing command is still reported (the lookup happens before the start).
    assert_eq!(code(&s.run(&["exec", "-d", "host", "nosuch"])), 126);
    s.ok(&["rm", "-f", "host"]);
}

#[test]
fn top_lists_the_container_processes() {
    let s = store();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "bb",
        "sh",
        "-c",
        "sleep 101 & sleep 102 & wait",
    ]);
    s.ok(&["run", "-d", "--name", "other", "bb", "sleep", "103"]);
    wait_until("both sleeps", || {
        s.ok(&["top", "busy"]).contains("sleep 102")
    });
    let out = s.ok(&["top", "busy"]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(out.contains("sleep 101") && out.contains("sh -c"), "{out}");
    assert!(
        !out.contains("sleep 103"),
        "another container's process: {out}"
    );
    let out = s.ok(&["top", "busy", "-o", "pid,comm"]);
    assert_eq!(
        out.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    assert_eq!(out.lines().count(), 4, "{out}");
    s.ok(&["rm", "-f", "busy", "other"]);
    s.ok(&["create", "--name", "idle", "bb"]);
    assert!(s.fails(&["top", "idle"]).contains("is not running"));
}

/// The counter file a paused-or-not container writes, read through `cp` (which works on a
/// paused container: it reads the rootfs, starts nothing in it).
fn counter(s: &Store, c: &str) -> String {
    let o = s.run(&["cp", &format!("{c}:/tmp/n"), "-"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut ar = tar::Archive::new(&o.stdout[..]);
    let mut e = ar.entries().unwrap().next().unwrap().unwrap();
    let mut v = String::new();
    std::io::Read::read_to_string(&mut e, &mut v).unwrap();
    v
}

/// `pause` freezes every process of the container (its counter stops; ps, inspect and the
/// status filter say paused; exec is refused), `unpause` lets it go on; wrong states are
/// errors in Docker's words; `commit` of a running container pauses it only while it reads,
/// and `stop` of a paused one works. `stats --no-stream` reads the container's cgroups.
#[test]
fn pause_unpause_commit_and_stats() {
    let s = store();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "bb",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done",
    ]);
    wait_until("the counter runs", || {
        s.run(&["cp", "busy:/tmp/n", "-"]).status.success()
    });
    assert_eq!(s.ok(&["pause", "busy"]), "busy\n");
    let a = counter(&s, "busy");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(counter(&s, "busy"), a, "a paused container went on");
    let v = inspect(&s, "busy");
    assert_eq!(v["State"]["Status"], "paused");
    assert_eq!(v["State"]["Paused"], true);
    assert!(s.ok(&["ps"]).contains("(Paused)"));
    assert_eq!(
        s.ok(&["ps", "--filter", "status=paused", "--format", "{{.Names}}"]),
        "busy\n"
    );
    let o = s.run(&["exec", "busy", "true"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("is paused, unpause the container before exec"));
    let o = s.run(&["pause", "busy"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("is already paused"), "{}", stderr(&o));

    assert_eq!(s.ok(&["unpause", "busy"]), "busy\n");
    wait_until("the counter goes on", || counter(&s, "busy") != a);
    assert_eq!(inspect(&s, "busy")["State"]["Status"], "running");
    let o = s.run(&["unpause", "busy"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("is not paused"), "{}", stderr(&o));

    // commit pauses while it reads, and leaves the container running.
    s.ok(&["commit", "busy", "snap:1"]);
    assert_eq!(inspect(&s, "busy")["State"]["Status"], "running");
    s.ok(&["commit", "--pause=false", "busy", "snap:2"]);

    let st = s.ok(&["stats", "--no-stream", "busy"]);
    let lines: Vec<&str> = st.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID") && lines[0].contains("MEM USAGE / LIMIT"),
        "{st}"
    );
    assert!(lines[1].contains("busy") && lines[1].contains("%"), "{st}");
    let f = s.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "busy",
    ]);
    // The shell, and its `sleep` when the reading falls inside one.
    let pids: u32 = f.trim().strip_prefix("busy ").unwrap().parse().unwrap();
    assert!((1..=2).contains(&pids), "{f}");

    // A paused container stops (thawed first), and a stopped one cannot be paused.
    s.ok(&["pause", "busy"]);
    s.ok(&["stop", "-t", "1", "busy"]);
    let o = s.run(&["pause", "busy"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
    s.ok(&["rm", "busy"]);
}
