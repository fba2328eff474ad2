//! The container's terminal for `-t`: as runc and Docker do it, the runtime opens the pty
//! *inside* the container (from the container's own /dev/pts, so `tty` names a device the
//! container can see), makes it the process's controlling terminal and stdio, and sends the
//! master end back over a unix socket (the OCI "console socket"). This module owns that
//! socket and the master it receives.

use super::RuntimeError;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// A terminal size (rows, columns), as `TIOCGWINSZ` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WinSize {
    pub rows: u16,
    pub cols: u16,
}

impl WinSize {
    /// The size of the terminal on `fd`, if it is one.
    pub fn of_fd(fd: i32) -> Option<WinSize> {
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one winsize into `ws`.
        let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
        (ok && ws.ws_row > 0 && ws.ws_col > 0).then_some(WinSize {
            rows: ws.ws_row,
            cols: ws.ws_col,
        })
    }

    /// The caller's terminal: stdout first (what Docker measures), then stdin, then stderr.
    pub fn of_caller() -> Option<WinSize> {
        [1, 0, 2].into_iter().find_map(WinSize::of_fd)
    }

    /// Set this size on a pty (either end); the foreground process group gets SIGWINCH.
    pub fn apply(&self, fd: i32) {
        let ws = libc::winsize {
            ws_row: self.rows,
            ws_col: self.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize.
        unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    }
}

/// The listening console socket. Bound through `/proc/self/fd/N/` (an `O_PATH` descriptor of
/// its directory), because a container directory's full path can be longer than the 108
/// bytes a socket address holds; runtimes are given a path they can connect to.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
    short: PathBuf,
    _dir: OwnedFd,
}

impl ConsoleSocket {
    /// A socket `name` in directory `dir`.
    pub fn bind(dir: &Path, name: &str) -> Result<ConsoleSocket, RuntimeError> {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let d: OwnedFd = File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .map_err(RuntimeError::io(format!("opening {}", dir.display())))?
            .into();
        let short = PathBuf::from(format!(
            "/proc/{}/fd/{}/{name}",
            std::process::id(),
            d.as_raw_fd()
        ));
        let listener = UnixListener::bind(format!("/proc/self/fd/{}/{name}", d.as_raw_fd()))
            .map_err(RuntimeError::io("creating the console socket"))?;
        Ok(ConsoleSocket {
            listener,
            path,
            short,
            _dir: d,
        })
    }

    /// The socket's real path (for the embedded runtime, which links to it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path of at most ~40 bytes that reaches the socket while this process lives (for an
    /// external runtime, which connects to it directly).
    pub fn short_path(&self) -> &Path {
        &self.short
    }

    /// Accept the runtime's connection and take the pty master it sends.
    pub fn receive_master(&self) -> Result<OwnedFd, RuntimeError> {
        let (conn, _) = self
            .listener
            .accept()
            .map_err(RuntimeError::io("accepting on the console socket"))?;
        recv_fd(conn.as_raw_fd())
            .map_err(RuntimeError::io("receiving the terminal from the runtime"))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// One descriptor passed with SCM_RIGHTS.
fn recv_fd(sock: i32) -> std::io::Result<OwnedFd> {
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // Room for one cmsghdr with one int, 8-byte aligned.
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data; every pointer set below outlives the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    loop {
        // SAFETY: msg describes valid buffers.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    // SAFETY: the kernel filled msg_control; CMSG_* walk it within msg_controllen.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_level != libc::SOL_SOCKET || (*c).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(std::io::Error::other("the runtime sent no terminal"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Copy `from` into `to` until either end closes (EIO on a master whose slave is gone).
pub fn copy(mut from: File, mut to: File) {
    let _ = std::io::copy(&mut from, &mut to);
}

/// This process's stdio joined to a pty master (`exec -t`): output to stdout, and with
/// `stdin` this process's input to the terminal.
pub struct Relay {
    output: std::thread::JoinHandle<()>,
}

impl Relay {
    pub fn start(master: OwnedFd, stdin: bool) -> std::io::Result<Relay> {
        let out = File::from(master.try_clone()?);
        let stdout = File::from(
            std::io::stdout()
                .as_fd_owned()
                .ok_or_else(|| std::io::Error::other("no stdout"))?,
        );
        if stdin && let Some(fd) = std::io::stdin().as_fd_owned() {
            let to = File::from(master);
            std::thread::spawn(move || copy(File::from(fd), to));
        }
        let output = std::thread::spawn(move || copy(out, stdout));
        Ok(Relay { output })
    }

    /// After the process exited: let the last output through (bounded: a background process
    /// that keeps the terminal open does not hold the caller forever).
    pub fn finish(self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !self.output.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

trait DupFd {
    fn as_fd_owned(&self) -> Option<OwnedFd>;
}

impl<T: std::os::fd::AsFd> DupFd for T {
    fn as_fd_owned(&self) -> Option<OwnedFd> {
        self.as_fd().try_clone_to_owned().ok()
    }
}
