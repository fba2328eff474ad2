//! A container's runtime state: `ROOT/containers/<id>/state.json`, written (temp + rename) by
//! whoever changes it — the starting CLI, then the monitor, or a process that finds the monitor
//! dead — always while holding the container's `monitor.lock`.
//!
//! The monitor holds `monitor.lock` (an flock) for its whole life, so "the lock is free but the
//! state says running" means the monitor died: nobody records an exit any more, and the first
//! process to notice finishes the container (see `engine::run::reconcile`). flocks vanish
//! with their holder, so a SIGKILLed monitor can never leave a stale "alive" answer behind.

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};
use std::fs;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The per-container runtime directory and the files in it.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    pub dir: PathBuf,
    pub id: String,
}

impl ContainerDir {
    pub fn new(root: &Path, id: &str) -> ContainerDir {
        ContainerDir {
            dir: root.join("containers").join(id),
            id: id.to_string(),
        }
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join("monitor.lock")
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    /// The OCI runtime's own state root (`runc --root`, libcontainer's root path).
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.join("rt")
    }
    /// Docker's name for the json-file log.
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("{}-json.log", self.id))
    }
    /// Where the monitor writes its own diagnostics when no terminal is attached.
    pub fn monitor_log(&self) -> PathBuf {
        self.dir.join("monitor.log")
    }
    pub fn create(&self) -> io::Result<()> {
        fs::create_dir_all(&self.dir)
    }
    /// Wait for the monitor lock (None: the directory is gone, the container was removed).
    pub fn lock_wait(&self) -> io::Result<Option<MonitorLock>> {
        let f = match crate::lock::open_lock_file(&self.lock()) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        loop {
            match flock(&f, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(Some(MonitorLock(f))),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    /// The monitor lock unless someone (the monitor, a starting CLI) holds it. Never creates
    /// the directory: a container that never started (or was removed) has nobody to hold it.
    pub fn try_lock(&self) -> io::Result<TryLock> {
        let f = match crate::lock::open_lock_file(&self.lock()) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TryLock::NoDir),
            Err(e) => return Err(e),
        };
        match flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(TryLock::Acquired(MonitorLock(f))),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(TryLock::Busy),
            Err(e) => Err(e.into()),
        }
    }
    pub fn read_state(&self) -> RunState {
        RunState::read(&self.state())
    }
    pub fn write_state(&self, s: &RunState) -> io::Result<()> {
        s.write(&self.state())
    }
}

/// The container's `monitor.lock`, held (flock, exclusive) by the monitor for its whole life.
/// Its open file can be handed to a child process, which then holds the same lock.
pub struct MonitorLock(File);

impl MonitorLock {
    /// Adopt an inherited descriptor that already holds the lock.
    pub fn from_fd(fd: OwnedFd) -> MonitorLock {
        MonitorLock(File::from(fd))
    }
}

impl AsFd for MonitorLock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

pub enum TryLock {
    Acquired(MonitorLock),
    /// Held by a live process (the monitor, or a CLI starting the container).
    Busy,
    /// No runtime directory: the container has never been started.
    NoDir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    /// Set by `start` before the monitor runs; the monitor turns it into Running.
    Starting,
    Running,
    /// Exited, and the monitor will start it again (`--restart`), after a delay.
    Restarting,
    Exited,
}

impl Status {
    /// The word Docker uses in State.Status.
    pub fn docker(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Starting | Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
        }
    }
}

/// What `inspect` shows under State, plus what the monitor needs to find its process again.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    pub status: Status,
    /// The container's init process as seen from the host, and its start time (field 22 of
    /// /proc/PID/stat), so a recycled pid is never signalled.
    #[serde(default)]
    pub pid: i32,
    #[serde(default)]
    pub pid_start: u64,
    #[serde(default)]
    pub monitor_pid: i32,
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub finished_at: String,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub restart_count: u32,
    /// The start mounted the root filesystem and nobody has unmounted it yet.
    #[serde(default)]
    pub rootfs_mounted: bool,
}

impl RunState {
    /// A missing or unreadable state file is a container that never started.
    pub fn read(path: &Path) -> RunState {
        fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// temp + rename without fsync: runtime state does not outlive a reboot anyway (nothing is
    /// running after one), but a crashed writer must never leave a torn file.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let tmp = dir.join(format!(".state-{}", crate::atomic_file::random_hex(6)));
        fs::write(&tmp, serde_json::to_vec(self).expect("serializable"))?;
        fs::rename(&tmp, path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot), None if the process is gone.
pub fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is index 19.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// The process `pid` is alive and is the one that started at `start`.
pub fn same_process(pid: i32, start: u64) -> bool {
    pid > 0 && process_start_time(pid) == Some(start)
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self_and_missing() {
        let me = std::process::id() as i32;
        let t = process_start_time(me).unwrap();
        assert!(same_process(me, t));
        assert!(!same_process(me, t + 1));
        assert_eq!(process_start_time(0), None);
        assert_eq!(process_start_time(i32::MAX), None);
    }

    #[test]
    fn state_round_trip_and_missing_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        assert_eq!(RunState::read(&p).status, Status::Created);
        let s = RunState {
            status: Status::Exited,
            exit_code: 3,
            ..Default::default()
        };
        s.write(&p).unwrap();
        let r = RunState::read(&p);
        assert_eq!(r.status, Status::Exited);
        assert_eq!(r.exit_code, 3);
        fs::write(&p, b"{torn").unwrap();
        assert_eq!(RunState::read(&p).status, Status::Created);
    }
}
