//! A throwaway Docker daemon for the tests that compare strata with docker: Debian's `dockerd`
//! (installed by scripts/setup.sh) with its own data root, exec root and socket, no bridge and
//! no iptables, stopped and removed on drop. Tests call `Dockerd::start()` and skip, saying
//! why, when it returns None (no dockerd on the machine, or it does not come up).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Dockerd {
    child: Child,
    containerd: Child,
    pub dir: PathBuf,
    exec_root: PathBuf,
    pub host: String,
    stopped: bool,
}

impl Dockerd {
    /// A fresh daemon, or None with the reason printed (the caller skips its comparison).
    pub fn start() -> Option<Dockerd> {
        if Command::new("dockerd").arg("--version").output().is_err()
            || Command::new("containerd")
                .arg("--version")
                .output()
                .is_err()
            || Command::new("docker").arg("--version").output().is_err()
        {
            eprintln!(
                "SKIP docker comparison: dockerd/docker not installed (scripts/setup.sh installs docker.io)"
            );
            return None;
        }
        std::fs::create_dir_all("/var/tmp/strata-tests").unwrap();
        let dir = tempfile::Builder::new()
            .prefix("dockerd-")
            .tempdir_in("/var/tmp/strata-tests")
            .unwrap()
            .keep();
        // The exec root holds containerd's socket: short, so the path fits sockaddr_un.
        let exec_root = PathBuf::from(format!(
            "/run/sd-{}",
            dir.file_name()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("dockerd-")
        ));
        let host = format!("unix://{}/docker.sock", exec_root.display());
        std::fs::create_dir_all(&exec_root).unwrap();
        // Its own containerd: dockerd would otherwise use (or choke on a stale socket of) the
        // system's /run/containerd/containerd.sock.
        let containerd_sock = exec_root.join("containerd.sock");
        let containerd = Command::new("containerd")
            .arg("--root")
            .arg(dir.join("containerd"))
            .arg("--state")
            .arg(exec_root.join("containerd-state"))
            .arg("--address")
            .arg(&containerd_sock)
            .arg("--config")
            .arg("/dev/null")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--storage-driver=overlay2",
                "--insecure-registry=127.0.0.0/8",
            ])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--containerd")
            .arg(&containerd_sock)
            .arg("-H")
            .arg(&host)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut d = Dockerd {
            child,
            containerd,
            dir,
            exec_root,
            host,
            stopped: false,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if d.docker(&["version"]).status.success() {
                return Some(d);
            }
            if Instant::now() > deadline || d.child.try_wait().unwrap().is_some() {
                let log = std::fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                eprintln!("SKIP docker comparison: dockerd did not start: {tail:?}");
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H").arg(&self.host).args(args);
        c.env("DOCKER_CONFIG", self.dir.join("client"))
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_HOST");
        c
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Run and require success; return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// `docker load -i archive`.
    pub fn load(&self, archive: &Path) -> String {
        self.ok(&["load", "-i", archive.to_str().unwrap()])
    }
}

impl Dockerd {
    /// The daemon's data root (`--data-root`): its image store, for reading.
    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stop the daemons (SIGTERM, then SIGKILL after 20 s) but keep the data root until
    /// drop, so a test can read the store of a stopped Docker.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.containerd.kill();
        let _ = self.containerd.wait();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        // Whatever the daemon left mounted under its roots, then the roots.
        for root in [&self.dir, &self.exec_root] {
            if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
                let mut under: Vec<&str> = mounts
                    .lines()
                    .filter_map(|l| l.split(' ').nth(1))
                    .filter(|m| m.starts_with(root.to_str().unwrap()))
                    .collect();
                under.sort_by_key(|m| std::cmp::Reverse(m.len()));
                for m in under {
                    let _ = Command::new("umount").arg("-l").arg(m).status();
                }
            }
            let _ = std::fs::remove_dir_all(root);
        }
    }
}
