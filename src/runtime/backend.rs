//! The OCI runtime that creates the container from the bundle: embedded (youki's
//! `libcontainer`, the default: no extra binary, ~10 ms to start) or an external OCI runtime
//! binary such as runc (`--runtime /usr/sbin/runc`). Both take the same `config.json`, and in
//! both the container's init process ends up a child of the caller (directly for the embedded
//! one; for runc through `PR_SET_CHILD_SUBREAPER`), so the monitor waits on it with waitpid.

use super::RuntimeError;
use super::pty::{ConsoleSocket, WinSize};
use super::state::ContainerDir;
use libcontainer::container::Container as LcContainer;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use std::os::fd::AsRawFd;
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

/// How the container's process is connected: given descriptors, or (`-t`) a terminal the
/// runtime makes inside the container and hands over through the console socket.
pub enum ProcIo<'a> {
    Fds(ProcStdio),
    Terminal {
        console: &'a ConsoleSocket,
        size: Option<WinSize>,
    },
}

/// `exec -t` with the embedded runtime: where the pty comes back, its size, and whether
/// this process's stdin goes to it (`-i`).
pub struct ExecTerminal<'a> {
    pub console: &'a ConsoleSocket,
    pub size: Option<WinSize>,
    pub stdin: bool,
}

/// A started process: its host pid, and the pty master when it has a terminal.
pub struct StartedProc {
    pub pid: i32,
    pub master: Option<OwnedFd>,
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

    /// Create and start the container from `dir.bundle()`; returns the init's host pid (and
    /// the pty master with `-t`, sized before the process runs).
    /// The caller must be a child subreaper (for external runtimes) and must not have other
    /// threads running (the embedded runtime forks).
    pub fn start(&self, dir: &ContainerDir, io: ProcIo) -> Result<StartedProc, RuntimeError> {
        let rt = dir.runtime_root();
        std::fs::create_dir_all(&rt)
            .map_err(RuntimeError::io(format!("creating {}", rt.display())))?;
        let take_master = |console: &ConsoleSocket, size: Option<WinSize>| {
            let m = console.receive_master()?;
            if let Some(ws) = size {
                ws.apply(m.as_raw_fd());
            }
            Ok::<_, RuntimeError>(m)
        };
        match self {
            Backend::Embedded => {
                let mut b = ContainerBuilder::new(dir.id.clone(), SyscallType::default())
                    .with_root_path(&rt)
                    .map_err(backend_err("runtime root"))?;
                let terminal = match io {
                    ProcIo::Fds(stdio) => {
                        b = b
                            .with_stdin(stdio.stdin)
                            .with_stdout(stdio.stdout)
                            .with_stderr(stdio.stderr);
                        None
                    }
                    ProcIo::Terminal { console, size } => {
                        b = b.with_console_socket(Some(console.path()));
                        Some((console, size))
                    }
                };
                // libcontainer wants "detached" with a console socket; it changes nothing else
                // (the init is our child either way).
                let mut c = b
                    .as_init(dir.bundle())
                    .with_systemd(false)
                    .with_detach(terminal.is_some())
                    .build()
                    .map_err(backend_err("creating the container"))?;
                let master = match terminal {
                    Some((console, size)) => Some(take_master(console, size)?),
                    None => None,
                };
                c.start().map_err(backend_err("starting the container"))?;
                let pid = c
                    .pid()
                    .map(|p| p.as_raw())
                    .ok_or_else(|| RuntimeError::Backend("the runtime reported no pid".into()))?;
                Ok(StartedProc { pid, master })
            }
            Backend::External(bin) => {
                let pid_file = dir.dir.join("init.pid");
                let _ = std::fs::remove_file(&pid_file);
                let mut cmd = Command::new(bin);
                cmd.arg("--root").arg(&rt);
                let terminal = match io {
                    ProcIo::Fds(stdio) => {
                        cmd.args(["run", "--detach"])
                            .stdin(Stdio::from(stdio.stdin))
                            .stdout(Stdio::from(stdio.stdout))
                            .stderr(Stdio::from(stdio.stderr));
                        None
                    }
                    ProcIo::Terminal { console, size } => {
                        // create, take the terminal and size it, then start.
                        cmd.args(["create", "--console-socket"])
                            .arg(console.short_path())
                            .stdin(Stdio::null())
                            .stdout(Stdio::null());
                        Some((console, size))
                    }
                };
                let out = cmd
                    .arg("--pid-file")
                    .arg(&pid_file)
                    .arg("--bundle")
                    .arg(dir.bundle())
                    .arg(&dir.id)
                    .status()
                    .map_err(RuntimeError::io(format!("running {}", bin.display())))?;
                if !out.success() {
                    return Err(RuntimeError::Backend(format!(
                        "{} run failed ({out}); its message is in the container's log",
                        bin.display()
                    )));
                }
                let master = match terminal {
                    Some((console, size)) => {
                        let m = take_master(console, size)?;
                        let st = Command::new(bin)
                            .arg("--root")
                            .arg(&rt)
                            .arg("start")
                            .arg(&dir.id)
                            .status()
                            .map_err(RuntimeError::io(format!("running {}", bin.display())))?;
                        if !st.success() {
                            return Err(RuntimeError::Backend(format!(
                                "{} start failed ({st})",
                                bin.display()
                            )));
                        }
                        Some(m)
                    }
                    None => None,
                };
                let pid = std::fs::read_to_string(&pid_file)
                    .map_err(RuntimeError::io("reading the runtime's pid file"))?;
                let pid = pid
                    .trim()
                    .parse()
                    .map_err(|_| RuntimeError::Backend(format!("bad pid file content {pid:?}")))?;
                Ok(StartedProc { pid, master })
            }
        }
    }

    /// Start the process described by `process_json` (an OCI `process` object in a file) in
    /// the running container, with the caller's standard streams (stdin replaced by `stdin`).
    /// Returns its exit status (128+signal when killed).
    /// With `terminal` (a process whose spec says `terminal: true`), the embedded runtime
    /// makes the pty in the container and this process relays it; an external runtime
    /// relays it itself.
    pub fn exec(
        &self,
        dir: &ContainerDir,
        process_json: &Path,
        stdin: Option<OwnedFd>,
        terminal: Option<ExecTerminal>,
        detach: bool,
    ) -> Result<i32, RuntimeError> {
        let rt = dir.runtime_root();
        let null = || -> Result<OwnedFd, RuntimeError> {
            Ok(std::fs::File::options()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(RuntimeError::io("opening /dev/null"))?
                .into())
        };
        match self {
            Backend::Embedded => {
                let mut b = ContainerBuilder::new(dir.id.clone(), SyscallType::default())
                    .with_root_path(&rt)
                    .map_err(backend_err("runtime root"))?;
                if detach {
                    // `exec -d`: nothing attached; the process is left running (its parent
                    // gone, it is reaped by whoever adopts it).
                    let pid = b
                        .with_stdin(null()?)
                        .with_stdout(null()?)
                        .with_stderr(null()?)
                        .as_tenant()
                        .with_process(Some(process_json))
                        .with_detach(false)
                        .build()
                        .map_err(backend_err("exec"))?;
                    let _ = pid;
                    return Ok(0);
                }
                if let Some(t) = &terminal {
                    b = b.with_console_socket(Some(t.console.path()));
                    if t.size.is_some() {
                        b = b.with_executor(SizedTerminal);
                    }
                } else if let Some(fd) = stdin {
                    b = b.with_stdin(fd);
                }
                let pid = b
                    .as_tenant()
                    .with_process(Some(process_json))
                    .with_detach(terminal.is_some())
                    .build()
                    .map_err(backend_err("exec"))?;
                let Some(t) = terminal else {
                    return Ok(wait_child(pid.as_raw()));
                };
                let master = t.console.receive_master()?;
                if let Some(ws) = t.size {
                    ws.apply(master.as_raw_fd());
                }
                let relay = super::pty::Relay::start(master, t.stdin)
                    .map_err(RuntimeError::io("relaying the terminal"))?;
                let code = wait_child(pid.as_raw());
                relay.finish();
                Ok(code)
            }
            Backend::External(bin) => {
                let mut c = Command::new(bin);
                c.arg("--root").arg(&rt).arg("exec");
                if detach {
                    c.arg("--detach")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null());
                }
                c.arg("--process").arg(process_json).arg(&dir.id);
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

/// The exec'd process's workload runner for `exec -t`: libcontainer hands the pty master
/// over and goes straight on to exec, and it cannot size the terminal first (no
/// `process.consoleSize`), so the process would see 0x0 in that instant. This waits (inside
/// the container, at most half a second) until the caller has applied the size, then runs the
/// command as the default executor does.
#[derive(Clone)]
struct SizedTerminal;

impl libcontainer::workload::Executor for SizedTerminal {
    fn exec(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while WinSize::of_fd(0).is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        libcontainer::workload::default::DefaultExecutor {}.exec(spec)
    }

    fn validate(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::DefaultExecutor {}.validate(spec)
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
