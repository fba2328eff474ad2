//! Running containers with real processes: run/start/stop/kill/wait/exec/logs, the image
//! config applied, namespaces, the monitor's robustness, and copy-on-write on overlay
//! (checked in the container's upper directory), through the real `strata` binary.

mod common;
use common::*;
use serde_json::Value;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A busybox image `bb:latest` (CMD sh, ENV PATH and FOO, a 100 kB /etc/data, /etc/old) with
/// the mount points a runtime needs, so a container that only reads writes nothing.
fn image(s: &Store) {
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let r = work.path().join("rootfs");
    busybox_rootfs(&r);
    for a in [
        "sleep", "hostname", "id", "ps", "rm", "env", "pwd", "kill", "wc", "ls", "stat", "touch",
    ] {
        let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(a));
    }
    for d in ["proc", "dev", "sys", "root", "home/app"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        r.join("etc/group"),
        "root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
    )
    .unwrap();
    for f in ["hosts", "hostname", "resolv.conf"] {
        std::fs::write(r.join("etc").join(f), "").unwrap();
    }
    std::fs::write(r.join("etc/data"), vec![b'd'; 100_000]).unwrap();
    std::fs::write(r.join("etc/old"), b"old").unwrap();
    s.ok(&[
        "import",
        r.to_str().unwrap(),
        "bb:latest",
        "-c",
        "CMD [\"sh\"]",
        "-c",
        "ENV PATH=/bin FOO=from-image",
    ]);
}

fn store(driver: &'static str) -> Store {
    let s = Store::new(driver);
    image(&s);
    s
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The STATUS column of `ps -a` for a container name ("" when absent).
fn status_or_none(s: &Store, name: &str) -> String {
    let out = s.ok(&["ps", "-a", "--format", "json"]);
    for l in out.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        if v["Names"] == name {
            return v["Status"].as_str().unwrap().to_string();
        }
    }
    String::new()
}

fn status(s: &Store, name: &str) -> String {
    let st = status_or_none(s, name);
    assert!(!st.is_empty(), "{name} not in ps -a");
    st
}

fn state_file(s: &Store, id: &str) -> Value {
    let p = s.root.join("containers").join(id).join("state.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn upper_dir(s: &Store, name: &str) -> PathBuf {
    graph_dir(s, name, "UpperDir").expect("an overlay store")
}

/// A GraphDriver.Data path of the container (None on drivers without it: btrfs and vfs give
/// null, as Docker's).
fn graph_dir(s: &Store, name: &str, key: &str) -> Option<PathBuf> {
    let v: Value = serde_json::from_str(&s.ok(&["inspect", name])).unwrap();
    v[0]["GraphDriver"]["Data"][key].as_str().map(PathBuf::from)
}

/// A store that stays overlay in the btrfs pass too (there on the btrfs mount): for the tests
/// of overlay's own layout (upper dirs, whiteout devices).
fn overlay_store() -> Store {
    let base = btrfs_suite()
        .map(|p| p.join("strata-tests"))
        .unwrap_or_else(|| PathBuf::from("/var/tmp/strata-tests"));
    let s = Store::new_in(&base, "overlay");
    image(&s);
    s
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().unwrap().trim_start().starts_with('Z'))
        .unwrap_or(false)
}

both_drivers!(run_prints_output_and_exits_with_the_code, |driver| {
    let s = store(driver);
    let o = s.run(&["run", "--name", "hello", "bb", "echo", "hello world"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello world\n");
    assert!(
        status(&s, "hello").starts_with("Exited (0) "),
        "{}",
        status(&s, "hello")
    );
    let o = s.run(&["run", "bb", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(code(&o), 3);
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    // The image's Cmd when none is given.
    let o = s.run(&["run", "bb"]);
    assert_eq!(
        code(&o),
        0,
        "sh with /dev/null stdin exits 0: {}",
        stderr(&o)
    );
    s.fsck_clean();
});

#[test]
fn missing_or_unrunnable_command_is_127_or_126() {
    let s = store("overlay");
    let o = s.run(&["run", "--name", "nf", "bb", "nosuchcmd"]);
    assert_eq!(code(&o), 127);
    let err = stderr(&o);
    assert!(
        err.contains("\"nosuchcmd\": executable file not found in $PATH"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(status(&s, "nf"), "Created");
    assert_eq!(code(&s.run(&["run", "bb", "/bin/nope"])), 127);
    let o = s.run(&["run", "bb", "/etc/data"]);
    assert_eq!(code(&o), 126);
    assert!(stderr(&o).contains("permission denied"), "{}", stderr(&o));
    // A failed start leaves nothing mounted.
    if let Some(merged) = graph_dir(&s, "nf", "MergedDir") {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(merged.to_str().unwrap()));
    }
}

#[test]
fn bad_input_is_one_line_and_nonzero() {
    let s = store("overlay");
    let err = s.fails(&["run", "--pull", "never", "nosuch/image"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    let err = s.fails(&["start", "ghost"]);
    assert!(err.contains("No such container: ghost"), "{err}");
    for cmd in ["stop", "kill", "wait", "logs", "restart"] {
        let err = s.fails(&[cmd, "ghost"]);
        assert!(err.contains("No such container"), "{cmd}: {err}");
    }
    let err = s.fails(&["exec", "ghost", "true"]);
    assert!(err.contains("No such container"), "{err}");
    s.ok(&["create", "--name", "taken", "bb"]);
    let err = s.fails(&["run", "--name", "taken", "bb", "true"]);
    assert!(err.contains("is already in use"), "{err}");
    s.ok(&["run", "-d", "--name", "sleeper", "bb", "sleep", "1000"]);
    let err = s.fails(&["kill", "-s", "NOTASIGNAL", "sleeper"]);
    assert!(err.contains("Invalid signal: NOTASIGNAL"), "{err}");
    let err = s.fails(&["exec", "taken", "true"]);
    assert!(err.contains("is not running"), "{err}");
    let err = s.fails(&["kill", "taken"]);
    assert!(err.contains("is not running"), "{err}");
    let err = s.fails(&["run", "--network", "bridge", "bb", "true"]);
    assert!(err.contains("network"), "{err}");
    let err = s.fails(&["rm", "sleeper"]);
    assert!(err.contains("cannot remove a running container"), "{err}");
    s.ok(&["rm", "-f", "sleeper"]);
}

#[test]
fn image_config_env_workdir_user_applied() {
    let s = store("overlay");
    let out = s.ok(&[
        "run",
        "-e",
        "A=1",
        "-e",
        "FOO=over",
        "bb",
        "sh",
        "-c",
        "echo $A $FOO $PATH $HOME; pwd; id",
    ]);
    // Groups as Docker's: the primary group always, and the memberships.
    assert_eq!(
        out,
        "1 over /bin /root\n/\nuid=0(root) gid=0(root) groups=0(root)\n"
    );
    let out = s.ok(&[
        "run",
        "-w",
        "/new/dir",
        "-u",
        "app",
        "bb",
        "sh",
        "-c",
        "pwd; id; echo $HOME",
    ]);
    assert_eq!(
        out,
        "/new/dir\nuid=1000(app) gid=1000(app) groups=10(wheel),1000(app)\n/home/app\n"
    );
    let out = s.ok(&["run", "-u", "4242:7", "bb", "id"]);
    assert_eq!(out, "uid=4242 gid=7 groups=7\n");
    let err = s.fails(&["run", "-u", "nobody-here", "bb", "id"]);
    assert!(err.contains("unable to find user nobody-here"), "{err}");
    // --entrypoint replaces the image's, CMD becomes its arguments.
    let out = s.ok(&["run", "--entrypoint", "echo", "bb", "a", "b"]);
    assert_eq!(out, "a b\n");
    // create takes the run options too.
    s.ok(&[
        "create",
        "--name",
        "c1",
        "-e",
        "X=y",
        "-w",
        "/tmp",
        "bb",
        "sh",
        "-c",
        "echo $X; pwd",
    ]);
    let o = s.run(&["start", "-a", "c1"]);
    assert_eq!(stdout(&o), "y\n/tmp\n");
}

#[test]
fn namespaces_hostname_pid_ipc_net() {
    let s = store("overlay");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = s.ok(&[
        "run",
        "--name",
        "ns",
        "bb",
        "sh",
        "-c",
        "hostname; echo $$; cat /etc/hostname; ls /proc | grep -c '^[0-9]'",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    let v: Value = serde_json::from_str(&s.ok(&["inspect", "ns"])).unwrap();
    let id = v[0]["Id"].as_str().unwrap();
    assert_eq!(lines[0], &id[..12]);
    assert_ne!(lines[0], host.trim());
    assert_eq!(lines[1], "1", "pid 1 in its own pid namespace");
    assert_eq!(lines[2], &id[..12]);
    assert!(
        lines[3].parse::<u32>().unwrap() <= 3,
        "only its own processes: {out}"
    );
    // Own mount, uts, ipc namespaces (different inode than ours).
    let mine = |ns: &str| std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
    let out = s.ok(&[
        "run",
        "bb",
        "sh",
        "-c",
        "for n in mnt uts ipc pid net; do ls -l /proc/self/ns/$n | sed 's/.*-> //'; done",
    ]);
    let theirs: Vec<&str> = out.lines().collect();
    for (i, ns) in ["mnt", "uts", "ipc"].iter().enumerate() {
        assert_ne!(theirs[i], mine(ns).to_str().unwrap(), "{ns}");
    }
    // --network host (the default) shares ours; none has only lo.
    assert_eq!(theirs[4], mine("net").to_str().unwrap());
    assert_eq!(
        s.ok(&["run", "--network", "none", "bb", "ls", "/sys/class/net"]),
        "lo\n"
    );
    // /sys is read-only, /dev has its device nodes, /etc files are the container's own.
    let out = s.ok(&[
        "run",
        "bb",
        "sh",
        "-c",
        "touch /sys/x 2>/dev/null || echo ro; ls /dev; cat /etc/hosts | grep -c localhost",
    ]);
    assert!(out.starts_with("ro\n"), "{out}");
    for d in [
        "null", "zero", "random", "urandom", "tty", "full", "pts", "shm",
    ] {
        assert!(out.lines().any(|l| l == d), "/dev/{d}: {out}");
    }
}

both_drivers!(detached_ps_stop_kill_wait, |driver| {
    let s = store(driver);
    let t = Instant::now();
    let id = s.ok(&["run", "-d", "--name", "bg", "bb", "sleep", "1000"]);
    assert!(t.elapsed() < Duration::from_secs(5));
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64);
    let up = s.ok(&["ps"]);
    assert!(up.contains("bg"), "{up}");
    assert!(status(&s, "bg").starts_with("Up "), "{}", status(&s, "bg"));
    let pid = state_file(&s, &id)["pid"].as_i64().unwrap();
    assert!(alive(pid));
    // sleep as pid 1 ignores SIGTERM: stop escalates to SIGKILL after the timeout → 137.
    let t = Instant::now();
    assert_eq!(s.ok(&["stop", "-t", "1", "bg"]), "bg\n");
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert!(!alive(pid));
    assert!(
        status(&s, "bg").starts_with("Exited (137) "),
        "{}",
        status(&s, "bg")
    );
    assert!(!s.ok(&["ps"]).contains("bg"));
    assert_eq!(s.ok(&["wait", "bg"]), "137\n");
    // A process that handles SIGTERM exits with its own code: 143 for `exit 143` as Docker's
    // usual shell trap does.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "trap",
        "bb",
        "sh",
        "-c",
        "trap 'exit 143' TERM; while true; do sleep 0.05; done",
    ]);
    let t = Instant::now();
    s.ok(&["stop", "trap"]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        status(&s, "trap").starts_with("Exited (143) "),
        "{}",
        status(&s, "trap")
    );
    // kill -s: the signal the process gets; wait blocks until the end and prints the code.
    s.ok(&["start", "trap"]);
    assert!(status(&s, "trap").starts_with("Up "));
    let waiter = s
        .cmd(&["wait", "trap"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.ok(&["kill", "-s", "SIGTERM", "trap"]);
    let o = waiter.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "143\n");
    s.ok(&["start", "trap"]);
    s.ok(&["kill", "trap"]);
    assert_eq!(s.ok(&["wait", "trap"]), "137\n");
    // restart.
    s.ok(&["restart", "-t", "1", "bg"]);
    assert!(status(&s, "bg").starts_with("Up "));
    s.ok(&["rm", "-f", "bg"]);
    s.fsck_clean();
});

#[test]
fn exec_into_a_running_container() {
    let s = store("overlay");
    s.ok(&[
        "run", "-d", "--name", "box", "-e", "C=1", "bb", "sleep", "1000",
    ]);
    let out = s.ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        "echo $C $FOO; hostname; tr '\\0' ' ' < /proc/1/cmdline",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1 from-image");
    assert_eq!(
        lines[2], "sleep 1000 ",
        "in the container's pid namespace: {out}"
    );
    let out = s.ok(&[
        "exec",
        "-u",
        "app",
        "-w",
        "/tmp",
        "-e",
        "D=2",
        "box",
        "sh",
        "-c",
        "id -u; pwd; echo $D",
    ]);
    assert_eq!(out, "1000\n/tmp\n2\n");
    // The exit code comes back; a command that cannot be started is 126, as Docker's exec
    // (its daemon reports 126 for every exec start failure, not found included).
    assert_eq!(code(&s.run(&["exec", "box", "sh", "-c", "exit 7"])), 7);
    assert_eq!(code(&s.run(&["exec", "box", "nosuch"])), 126);
    // exec -i passes stdin.
    let mut ch = s
        .cmd(&["exec", "-i", "box", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    ch.stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let o = ch.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "through stdin\n");
    // Written by exec, seen by the container.
    s.ok(&["exec", "box", "sh", "-c", "echo x > /tmp/from-exec"]);
    assert_eq!(s.ok(&["exec", "box", "cat", "/tmp/from-exec"]), "x\n");
    s.ok(&["rm", "-f", "box"]);
}

#[test]
fn logs_json_file_tail_timestamps_follow_rotation() {
    let s = store("overlay");
    let id = s.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "bb",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo out $i; echo err $i >&2; done",
    ]);
    assert_eq!(s.ok(&["wait", "talker"]), "0\n");
    let o = s.run(&["logs", "talker"]);
    assert_eq!(stdout(&o), "out 1\nout 2\nout 3\nout 4\nout 5\n");
    assert_eq!(stderr(&o), "err 1\nerr 2\nerr 3\nerr 4\nerr 5\n");
    let o = s.run(&["logs", "--tail", "2", "talker"]);
    assert_eq!(format!("{}{}", stdout(&o), stderr(&o)).lines().count(), 2);
    let o = s.run(&["logs", "-t", "--tail", "1", "talker"]);
    let line = format!("{}{}", stdout(&o), stderr(&o));
    let (ts, rest) = line.split_once(' ').unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{line}");
    assert_eq!(ts.len(), "2024-01-01T00:00:00.000000000Z".len(), "{line}");
    assert!(rest.ends_with(" 5\n"), "{line}");
    // The file is Docker's json-file format.
    let log = s
        .root
        .join("containers")
        .join(id.trim())
        .join(format!("{}-json.log", id.trim()));
    let text = std::fs::read_to_string(&log).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(first["log"].as_str().unwrap().ends_with(" 1\n"));
    assert!(first["stream"] == "stdout" || first["stream"] == "stderr");
    assert!(chrono::DateTime::parse_from_rfc3339(first["time"].as_str().unwrap()).is_ok());
    // -f follows a running container to its end.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "bb",
        "sh",
        "-c",
        "for i in 1 2 3; do echo tick $i; sleep 0.2; done",
    ]);
    let o = s.run(&["logs", "-f", "slow"]);
    assert_eq!(stdout(&o), "tick 1\ntick 2\ntick 3\n");
    // Rotation: max-size per file, max-file files kept.
    let id = s.ok(&[
        "run",
        "-d",
        "--name",
        "rot",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=3",
        "bb",
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done",
    ]);
    assert_eq!(s.ok(&["wait", "rot"]), "0\n");
    let dir = s.root.join("containers").join(id.trim());
    let base = format!("{}-json.log", id.trim());
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&base))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert!(std::fs::metadata(dir.join(f)).unwrap().len() <= 1024);
    }
    let out = s.ok(&["logs", "rot"]);
    assert!(out.ends_with("line 299\n"));
    assert!(!out.contains("line 0\n"), "oldest rotated away");
    let nums: Vec<u32> = out.lines().map(|l| l[5..].parse().unwrap()).collect();
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gaps"
    );
}

#[test]
fn rm_option_removes_the_container() {
    let s = store("overlay");
    let before = s.ok(&["ps", "-a", "-q"]);
    assert_eq!(s.ok(&["run", "--rm", "bb", "echo", "bye"]), "bye\n");
    assert_eq!(
        code(&s.run(&["run", "--rm", "bb", "sh", "-c", "exit 4"])),
        4
    );
    assert_eq!(code(&s.run(&["run", "--rm", "bb", "nosuch"])), 127);
    s.ok(&["run", "-d", "--rm", "--name", "gone", "bb", "true"]);
    // The record goes first, then the layer and the runtime directory.
    wait_until("the detached --rm container to go", || {
        !s.ok(&["ps", "-a"]).contains("gone")
            && std::fs::read_dir(s.root.join("containers"))
                .map(|d| d.count())
                .unwrap_or(0)
                == 0
    });
    assert_eq!(s.ok(&["ps", "-a", "-q"]), before);
    s.fsck_clean();
}

#[test]
fn killing_the_monitor_or_the_process_never_corrupts() {
    let s = store("overlay");
    // The monitor killed: the container is finished by the next look, rm works, fsck clean.
    let id = s
        .ok(&["run", "-d", "--name", "m", "bb", "sleep", "1000"])
        .trim()
        .to_string();
    let st = state_file(&s, &id);
    let (mon, pid) = (
        st["monitor_pid"].as_i64().unwrap(),
        st["pid"].as_i64().unwrap(),
    );
    assert!(alive(mon) && alive(pid));
    unsafe { libc::kill(mon as i32, libc::SIGKILL) };
    wait_until("the monitor to die", || !alive(mon));
    assert!(
        status(&s, "m").starts_with("Exited (137)"),
        "{}",
        status(&s, "m")
    );
    assert!(!alive(pid), "the orphaned container process was killed");
    assert!(!s.ok(&["ps"]).contains(" m\n"));
    if let Some(merged) = graph_dir(&s, "m", "MergedDir") {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(merged.to_str().unwrap()), "unmounted");
    }
    // It can start again, then be removed.
    s.ok(&["start", "m"]);
    assert!(status(&s, "m").starts_with("Up "));
    s.ok(&["rm", "-f", "m"]);
    s.fsck_clean();

    // The container process killed from outside: the monitor records it.
    let id = s
        .ok(&["run", "-d", "--name", "p", "bb", "sleep", "1000"])
        .trim()
        .to_string();
    let pid = state_file(&s, &id)["pid"].as_i64().unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(s.ok(&["wait", "p"]), "137\n");
    assert!(status(&s, "p").starts_with("Exited (137)"));
    s.ok(&["rm", "p"]);

    // `strata run` itself killed: the container keeps its monitor; stop still works.
    let mut ch = s
        .cmd(&["run", "--name", "fg", "bb", "sleep", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("fg to run", || status_or_none(&s, "fg").starts_with("Up "));
    ch.kill().unwrap();
    ch.wait().unwrap();
    assert!(status(&s, "fg").starts_with("Up "));
    s.ok(&["stop", "-t", "0", "fg"]);
    assert!(status(&s, "fg").starts_with("Exited (137)"));

    // Monitors killed at random moments of start/stop cycles: every state is recoverable.
    for i in 0..5u64 {
        let name = format!("r{i}");
        let mut ch = s
            .cmd(&["run", "-d", "--name", &name, "bb", "sleep", "1000"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + i * 7));
        let _ = ch.kill();
        let _ = ch.wait();
        // Whatever happened, the container can be removed and the store stays clean.
        let o = s.run(&["rm", "-f", &name]);
        assert!(
            o.status.success() || stderr(&o).contains("No such container"),
            "{}",
            stderr(&o)
        );
    }
    s.ok(&["rm", "-f", "fg"]);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(s.root.to_str().unwrap()),
        "nothing left mounted"
    );
    s.fsck_clean();
}

#[test]
fn rm_force_kills_a_running_container() {
    let s = store("overlay");
    let id = s
        .ok(&["run", "-d", "--name", "victim", "bb", "sleep", "1000"])
        .trim()
        .to_string();
    let pid = state_file(&s, &id)["pid"].as_i64().unwrap();
    let upper = graph_dir(&s, "victim", "UpperDir");
    assert!(upper.as_ref().is_none_or(|u| u.exists()));
    let layers = std::fs::read_dir(s.layer_home()).unwrap().count();
    assert_eq!(s.ok(&["rm", "-f", "victim"]), "victim\n");
    assert!(!alive(pid));
    assert!(upper.is_none_or(|u| !u.exists()));
    assert_eq!(
        std::fs::read_dir(s.layer_home()).unwrap().count(),
        layers - 2,
        "the writable and init layers went"
    );
    assert!(!s.root.join("containers").join(&id).exists());
    s.fsck_clean();
}

#[test]
fn external_runtime_runc() {
    if !Path::new("/usr/sbin/runc").exists() {
        panic!("runc is not installed (scripts/setup.sh installs it)");
    }
    let s = store("overlay");
    let o = s.run(&[
        "run",
        "--runtime",
        "/usr/sbin/runc",
        "bb",
        "sh",
        "-c",
        "echo via runc; hostname; echo $$; exit 5",
    ]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("via runc\n"), "{out}");
    assert!(out.ends_with("\n1\n"), "{out}");
    s.ok(&[
        "run",
        "-d",
        "--runtime",
        "/usr/sbin/runc",
        "--name",
        "r",
        "bb",
        "sleep",
        "1000",
    ]);
    let exec_pid: u32 = s
        .ok(&["exec", "r", "sh", "-c", "echo $$"])
        .trim()
        .parse()
        .unwrap();
    assert!(
        exec_pid > 1,
        "exec runs beside pid 1 in the container's pid namespace"
    );
    s.ok(&["stop", "-t", "0", "r"]);
    assert!(status(&s, "r").starts_with("Exited (137)"));
    s.ok(&["rm", "r"]);
}

// ---------------------------------------------------------------------------------------
// Copy-on-write, seen in the overlay upper directory.

fn files_under(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, p: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let rel = e
                .path()
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(base, &e.path(), out);
            } else {
                out.push(rel);
            }
        }
    }
    walk(p, p, &mut out);
    out.sort();
    out
}

#[test]
fn overlay_copy_on_write_in_the_upper_dir() {
    let s = overlay_store();
    // A container that only reads copies nothing.
    s.ok(&[
        "create",
        "--name",
        "reader",
        "bb",
        "sh",
        "-c",
        "cat /etc/data /etc/old /bin/busybox > /dev/null; ls -R / > /dev/null",
    ]);
    let o = s.run(&["start", "-a", "reader"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let upper = upper_dir(&s, "reader");
    assert_eq!(
        files_under(&upper),
        Vec::<String>::new(),
        "nothing copied up"
    );
    assert_eq!(std::fs::read_dir(&upper).unwrap().count(), 0);

    // The first write to a lower file copies it up once; a second write reuses that copy.
    s.ok(&[
        "create",
        "--name",
        "writer",
        "bb",
        "sh",
        "-c",
        "echo more >> /etc/data",
    ]);
    s.ok(&["start", "-a", "writer"]);
    let upper = upper_dir(&s, "writer");
    assert_eq!(files_under(&upper), vec!["etc/data".to_string()]);
    let m1 = std::fs::metadata(upper.join("etc/data")).unwrap();
    assert_eq!(m1.len(), 100_005);
    s.ok(&["start", "-a", "writer"]);
    let m2 = std::fs::metadata(upper.join("etc/data")).unwrap();
    assert_eq!(m2.ino(), m1.ino(), "copied up once, then written in place");
    assert_eq!(m2.len(), 100_010);

    // Deleting a lower file leaves a whiteout (a 0/0 character device).
    s.ok(&["run", "--name", "deleter", "bb", "rm", "/etc/old"]);
    let upper = upper_dir(&s, "deleter");
    assert_eq!(files_under(&upper), vec!["etc/old".to_string()]);
    let m = std::fs::symlink_metadata(upper.join("etc/old")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    // The image is untouched.
    let o = s.run(&["run", "--rm", "bb", "cat", "/etc/old"]);
    assert_eq!(stdout(&o), "old");
}

/// The seeds' walkthrough: five containers from one image, each writing a tiny file; each
/// writable layer is a few kB on disk, the image is stored once, and `rm` deletes only that
/// container's layer.
#[test]
fn five_containers_share_one_image() {
    let s = overlay_store();
    let before = s.disk_usage();
    let mut uppers = Vec::new();
    for i in 0..5 {
        let name = format!("c{i}");
        s.ok(&[
            "run",
            "--name",
            &name,
            "bb",
            "sh",
            "-c",
            &format!("echo {i} > /tmp/mine"),
        ]);
        uppers.push(upper_dir(&s, &name));
    }
    for (i, u) in uppers.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(u.join("tmp/mine")).unwrap(),
            format!("{i}\n")
        );
        assert_eq!(files_under(u), vec!["tmp/mine".to_string()]);
        let bytes = du_bytes(u);
        assert!(
            bytes <= 32 * 1024,
            "writable layer {} uses {bytes} bytes",
            u.display()
        );
    }
    // The image (>2 MB of busybox) is not copied per container: the five together (writable
    // layers, init layers of ~100 kB of directory blocks each as Docker's, logs, bundles)
    // cost less than one copy of it.
    let grown = s.disk_usage() - before;
    let image_bytes = 2_000_000;
    assert!(grown < image_bytes, "5 containers added {grown} bytes");
    // rm deletes exactly that container's layer.
    s.ok(&["rm", "c2"]);
    for (i, u) in uppers.iter().enumerate() {
        assert_eq!(u.exists(), i != 2, "{}", u.display());
    }
    let o = s.run(&["run", "--rm", "bb", "cat", "/tmp/mine"]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (1, ""),
        "the image has no /tmp/mine"
    );
    s.fsck_clean();
}
