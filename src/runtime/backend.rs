//! The OCI runtime that creates the container from the bundle: embedded (youki's
//! `libcontainer`, the default: no extra binary, ~10 ms to start) or an external OCI runtime
//! binary such as runc (`--runtime /usr/sbin/runc`). Both take the same `config.json`, and in
//! both the container's init process ends up a child of the caller (directly for the embedded
//! one; for runc through `PR_SET_CHILD_SUBREAPER`), so the monitor waits on it with waitpid.

use super::RuntimeError;
use super::state::ContainerDir;
use libcontainer::container::Container as LcContainer;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    External(PathBuf),
}

/// The container process's standard streams.
pub struct ProcStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

fn backend_err(what: &str) -> impl FnOnce(libcontainer::error::LibcontainerError) -> RuntimeError {
    let what = what.to_string();
    move |e| RuntimeError::Backend(format!("{what}: {e}"))
}

impl Backend {
    pub fn from_config(runtime: &str) -> Backend {
        if runtime.is_empty() || runtime == "embedded" || runtime == "libcontainer" {
            Backend::Embedded
        } else {
            Backend::External(PathBuf::from(runtime))
        }
    }

    pub fn name(&self) -> String {
        match self {
            Backend::Embedded => "libcontainer".into(),
            Backend::External(p) => p.display().to_string(),
        }
    }

    /// Create and start the container from `dir.bundle()`; returns the init's host pid.
    /// The caller must be a child subreaper (for external runtimes) and must not have other
    /// threads running (the embedded runtime forks).
    pub fn start(&self, dir: &ContainerDir, stdio: ProcStdio) -> Result<i32, RuntimeError> {
        let rt = dir.runtime_root();
        std::fs::create_dir_all(&rt)
            .map_err(RuntimeError::io(format!("creating {}", rt.display())))?;
        match self {
            Backend::Embedded => {
                let mut c = ContainerBuilder::new(dir.id.clone(), SyscallType::default())
                    .with_root_path(&rt)
                    .map_err(backend_err("runtime root"))?
                    .with_stdin(stdio.stdin)
                    .with_stdout(stdio.stdout)
                    .with_stderr(stdio.stderr)
                    .as_init(dir.bundle())
                    .with_systemd(false)
                    .with_detach(false)
                    .build()
                    .map_err(backend_err("creating the container"))?;
                c.start().map_err(backend_err("starting the container"))?;
                c.pid()
                    .map(|p| p.as_raw())
                    .ok_or_else(|| RuntimeError::Backend("the runtime reported no pid".into()))
            }
            Backend::External(bin) => {
                let pid_file = dir.dir.join("init.pid");
                let _ = std::fs::remove_file(&pid_file);
                let out = Command::new(bin)
                    .arg("--root")
                    .arg(&rt)
                    .args(["run", "--detach", "--pid-file"])
                    .arg(&pid_file)
                    .arg("--bundle")
                    .arg(dir.bundle())
                    .arg(&dir.id)
                    .stdin(Stdio::from(stdio.stdin))
                    .stdout(Stdio::from(stdio.stdout))
                    .stderr(Stdio::from(stdio.stderr))
                    .status()
                    .map_err(RuntimeError::io(format!("running {}", bin.display())))?;
                if !out.success() {
                    return Err(RuntimeError::Backend(format!(
                        "{} run failed ({out}); its message is in the container's log",
                        bin.display()
                    )));
                }
                let pid = std::fs::read_to_string(&pid_file)
                    .map_err(RuntimeError::io("reading the runtime's pid file"))?;
                pid.trim()
                    .parse()
                    .map_err(|_| RuntimeError::Backend(format!("bad pid file content {pid:?}")))
            }
        }
    }

    /// Start the process described by `process_json` (an OCI `process` object in a file) in
    /// the running container, with the caller's standard streams (stdin replaced by `stdin`).
    /// Returns its exit status (128+signal when killed).
    pub fn exec(
        &self,
        dir: &ContainerDir,
        process_json: &Path,
        stdin: Option<OwnedFd>,
    ) -> Result<i32, RuntimeError> {
        let rt = dir.runtime_root();
        match self {
            Backend::Embedded => {
                let mut b = ContainerBuilder::new(dir.id.clone(), SyscallType::default())
                    .with_root_path(&rt)
                    .map_err(backend_err("runtime root"))?;
                if let Some(fd) = stdin {
                    b = b.with_stdin(fd);
                }
                let pid = b
                    .as_tenant()
                    .with_process(Some(process_json))
                    .with_detach(false)
                    .build()
                    .map_err(backend_err("exec"))?;
                Ok(wait_child(pid.as_raw()))
            }
            Backend::External(bin) => {
                let mut c = Command::new(bin);
                c.arg("--root")
                    .arg(&rt)
                    .args(["exec", "--process"])
                    .arg(process_json)
                    .arg(&dir.id);
                if let Some(fd) = stdin {
                    c.stdin(Stdio::from(fd));
                }
                let st = c
                    .status()
                    .map_err(RuntimeError::io(format!("running {}", bin.display())))?;
                Ok(exit_status_code(st))
            }
        }
    }

    /// Remove the runtime's state and the container's cgroups (killing what is left).
    pub fn delete(&self, dir: &ContainerDir) {
        let rt = dir.runtime_root();
        match self {
            Backend::Embedded => {
                if let Ok(mut c) = LcContainer::load(rt.join(&dir.id)) {
                    let _ = c.delete(true);
                }
            }
            Backend::External(bin) => {
                let _ = Command::new(bin)
                    .arg("--root")
                    .arg(&rt)
                    .args(["delete", "--force"])
                    .arg(&dir.id)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        super::spec::remove_cgroups(&dir.id);
        let _ = std::fs::remove_dir_all(&rt);
    }
}

fn exit_status_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// Decode a waitpid status as Docker reports exit codes.
pub fn decode_status(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// Wait for child `pid` (EINTR retried); its exit code.
pub fn wait_child(pid: i32) -> i32 {
    loop {
        let mut status = 0;
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return decode_status(status);
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return 255;
        }
    }
}
