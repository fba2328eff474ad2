//! The per-container monitor (what conmon is to Podman): a small process, `strata` itself
//! re-executed with a hidden subcommand, in its own session and detached from the CLI
//! (setsid + fork), that holds the container's `monitor.lock`, starts the container through
//! the runtime, copies its stdout/stderr into the json-file log (and to an attached CLI),
//! waits for it, and records the exit status. Its file descriptors, set up by the CLI:
//! 0/1/2 the attached terminal or /dev/null, 3 the held monitor lock, 4 a pipe on which it
//! reports `started PID` (or `error CODE MESSAGE`) and finally `exit CODE`.

use super::RuntimeError;
use super::backend::{Backend, ProcIo, ProcStdio, decode_status};
use super::logs::{LogOpts, LogWriter};
use super::pty::{ConsoleSocket, WinSize};
use super::state::{ContainerDir, RunState, Status, now_rfc3339, process_start_time};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const LOCK_FD: i32 = 3;
pub const NOTIFY_FD: i32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StdinMode {
    /// /dev/null.
    #[default]
    Null,
    /// The attached CLI's stdin (fd 0) is given to the container as is (`-i` attached).
    Inherit,
    /// A pipe the monitor keeps open, so the container never sees EOF (`-d -i`).
    Pipe,
}

/// What the CLI tells the monitor (one JSON argument).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorArgs {
    pub id: String,
    pub runtime: String,
    pub log_opts: Vec<String>,
    /// Copy output to fds 1 and 2 as well as to the log.
    pub attach: bool,
    pub stdin: StdinMode,
    pub tty: bool,
    /// The attached terminal's size, given to the container's pty before it runs.
    #[serde(default)]
    pub size: Option<WinSize>,
}

/// Become the long-lived monitor: fork, let the parent (the CLI's child) exit at once so the
/// CLI can reap it, and continue in the grandchild, which init (or a subreaper) adopts. Must
/// be called while the process has a single thread. Returns in the grandchild only.
pub fn daemonize() -> Result<(), RuntimeError> {
    // SAFETY: single-threaded at this point (called first thing by the hidden subcommand).
    match unsafe { libc::fork() } {
        -1 => Err(RuntimeError::io("fork")(std::io::Error::last_os_error())),
        0 => Ok(()),
        _ => unsafe { libc::_exit(0) },
    }
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// SIGPIPE handled by a no-op (not SIG_IGN): a vanished attached CLI makes writes fail with
/// EPIPE instead of killing the monitor, while the container (whose exec resets handlers)
/// still gets the default SIGPIPE behaviour.
fn prepare_process() {
    unsafe {
        libc::signal(
            libc::SIGPIPE,
            ignore_signal as *const () as libc::sighandler_t,
        );
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        for fd in [LOCK_FD, NOTIFY_FD] {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

pub struct Notifier(Option<File>);

impl Notifier {
    /// The inherited notify pipe (fd 4).
    pub fn inherited() -> Notifier {
        // SAFETY: fd 4 is the pipe the CLI passed; nothing else in this process owns it.
        let valid = unsafe { libc::fcntl(NOTIFY_FD, libc::F_GETFD) } >= 0;
        Notifier(valid.then(|| unsafe { File::from_raw_fd(NOTIFY_FD) }))
    }
    pub fn send(&mut self, line: &str) {
        if let Some(f) = self.0.as_mut()
            && f.write_all(format!("{line}\n").as_bytes()).is_err()
        {
            self.0 = None;
        }
    }
}

/// A pipe (read end, write end), both close-on-exec.
pub fn pipe() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(RuntimeError::io("creating a pipe")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: pipe2 just returned these two descriptors, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn dup(fd: i32) -> Option<OwnedFd> {
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    (n >= 0).then(|| unsafe { OwnedFd::from_raw_fd(n) })
}

fn dev_null() -> Result<OwnedFd, RuntimeError> {
    Ok(File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(RuntimeError::io("opening /dev/null"))?
        .into())
}

/// Copy one stream into the log (whole lines) and, while it listens, to the attached CLI.
fn pump(mut src: File, stream: &'static str, log: Arc<Mutex<LogWriter>>, mut attach: Option<File>) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO on a pty master once the last slave holder is gone: the end.
            Err(_) => break,
        };
        if let Some(a) = attach.as_mut()
            && a.write_all(&buf[..n]).is_err()
        {
            attach = None;
        }
        pending.extend_from_slice(&buf[..n]);
        let used = log
            .lock()
            .map(|mut l| {
                l.write_lines(stream, &pending, false)
                    .unwrap_or(pending.len())
            })
            .unwrap_or(pending.len());
        pending.drain(..used);
    }
    if !pending.is_empty()
        && let Ok(mut l) = log.lock()
    {
        let _ = l.write_lines(stream, &pending, true);
    }
}

/// Start the container and watch it to its end. `on_started` runs once the process runs
/// (the state file already says so); returns the exit code. The state file is left at
/// Running: the caller records the exit after its own cleanup.
pub fn run(
    args: &MonitorArgs,
    dir: &ContainerDir,
    notify: &mut Notifier,
    on_started: impl FnOnce(&RunState),
) -> Result<i32, RuntimeError> {
    prepare_process();
    let backend = Backend::from_config(&args.runtime);
    let opts = LogOpts::parse(&args.log_opts)?;
    let log = Arc::new(Mutex::new(
        LogWriter::open(&dir.log(), opts).map_err(RuntimeError::io("opening the log"))?,
    ));
    let attach_out = if args.attach {
        dup(1).map(File::from)
    } else {
        None
    };
    let attach_err = if args.attach {
        dup(2).map(File::from)
    } else {
        None
    };

    // The container's stdio: pipes, or (-t) the pty the runtime makes inside the container.
    let mut stdin_keep: Option<OwnedFd> = None;
    let mut stdin_forward: Option<File> = None;
    let console = if args.tty {
        Some(ConsoleSocket::bind(&dir.dir, "console.sock")?)
    } else {
        None
    };
    let (io, pipes) = match &console {
        Some(console) => (
            ProcIo::Terminal {
                console,
                size: args.size,
            },
            None,
        ),
        None => {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let stdin = match args.stdin {
                StdinMode::Null => dev_null()?,
                StdinMode::Inherit => dup(0).map(Ok).unwrap_or_else(dev_null)?,
                StdinMode::Pipe => {
                    let (r, w) = pipe()?;
                    stdin_keep = Some(w);
                    r
                }
            };
            (
                ProcIo::Fds(ProcStdio {
                    stdin,
                    stdout: out_w,
                    stderr: err_w,
                }),
                Some((File::from(out_r), File::from(err_r))),
            )
        }
    };

    let started = backend.start(dir, io)?;
    drop(console);
    let pid = started.pid;
    let (out_r, err_r) = match (pipes, started.master) {
        (Some((o, e)), _) => (o, Some(e)),
        (None, Some(master)) => {
            if args.stdin == StdinMode::Inherit {
                stdin_forward = dup(0).map(File::from);
            }
            // Kept open for the container's life: `-d -it` reattaches, and a closed master
            // would hang up the container's terminal.
            stdin_keep = Some(master.try_clone().map_err(RuntimeError::io("dup"))?);
            (File::from(master), None)
        }
        (None, None) => {
            return Err(RuntimeError::Backend("the runtime gave no terminal".into()));
        }
    };
    let mut st = dir.read_state();
    st.status = Status::Running;
    st.pid = pid;
    st.pid_start = process_start_time(pid).unwrap_or(0);
    st.monitor_pid = std::process::id() as i32;
    st.started_at = now_rfc3339();
    st.finished_at = String::new();
    st.exit_code = 0;
    st.error = String::new();
    dir.write_state(&st)
        .map_err(RuntimeError::io("writing the state file"))?;
    on_started(&st);
    notify.send(&format!("started {pid}"));

    // Threads only now: the runtime forked above, and forking with other threads is unsafe.
    let mut pumps = Vec::new();
    {
        let log = log.clone();
        pumps.push(std::thread::spawn(move || {
            pump(out_r, "stdout", log, attach_out)
        }));
    }
    if let Some(err_r) = err_r {
        let log = log.clone();
        pumps.push(std::thread::spawn(move || {
            pump(err_r, "stderr", log, attach_err)
        }));
    }
    if let (Some(from), Some(to)) = (stdin_forward, stdin_keep.as_ref()) {
        // -it: the CLI's keystrokes into the pty master.
        let to = File::from(to.try_clone().map_err(RuntimeError::io("dup"))?);
        std::thread::spawn(move || super::pty::copy(from, to));
    }

    // Reap everything (we are a subreaper) until the container's init is gone.
    let code = loop {
        let mut status = 0;
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r == pid {
            break decode_status(status);
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // No child: the runtime did not leave the init as our child; poll it.
            while process_start_time(pid).is_some() {
                std::thread::sleep(Duration::from_millis(20));
            }
            break 255;
        }
    };
    drop(stdin_keep);
    // Output still in the pipes is drained; processes that escaped the pid namespace and
    // keep the pipe open do not hold the exit record back for long.
    let deadline = Instant::now() + Duration::from_secs(2);
    for p in pumps {
        while !p.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if p.is_finished() {
            let _ = p.join();
        }
    }
    backend.delete(dir);
    Ok(code)
}
