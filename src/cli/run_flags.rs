//! The options of `create` and `run` (Docker's flags) and what they turn into: the
//! container's `RunConfig`, and the image pulled first when `--pull` says so.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::io::IsTerminal;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use strata::container::RunConfig;
use strata::engine::Engine;
use strata::engine::pull::PullOptions;
use strata::image::Reference;
use strata::registry::ClientOptions;
use strata::registry::progress::Printer;
use strata::runtime::logs::LogOpts;
use strata::runtime::spec::Network;

/// Options of `create` and `run` that say how the container runs.
#[derive(Args, Clone, Default)]
pub struct RunOpts {
    /// Set environment variables (KEY=VALUE, or KEY to pass this process's value)
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Network: host (default; this machine has no bridge, Docker's default would be one) or none
    #[arg(long, default_value = "host")]
    network: String,
    /// json-file log options: max-size=SIZE, max-file=N
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// An external OCI runtime binary (e.g. /usr/sbin/runc); default: the embedded one
    #[arg(long)]
    runtime: Option<String>,
    /// Bind mount a volume (NAME:DEST[:MODE], /HOST:DEST[:MODE], or DEST for an anonymous one)
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Attach a filesystem mount (type=volume|bind|tmpfs,src=…,dst=…[,readonly][,volume-nocopy][,tmpfs-size=…])
    #[arg(long = "mount")]
    mount: Vec<String>,
    /// Mount a tmpfs directory (PATH[:OPTIONS])
    #[arg(long = "tmpfs")]
    tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s) (C[:ro|rw])
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    /// Pull image before running
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pull: PullPolicy,
}

impl RunOpts {
    /// The container's run config from these options and the command line after the image.
    pub fn to_config(&self, cmd: &[String]) -> Result<RunConfig> {
        if Network::parse(&self.network).is_none() {
            bail!(
                "invalid network mode {:?}: choose host or none (there is no bridge network here)",
                self.network
            );
        }
        LogOpts::parse(&self.log_opt)?;
        if let Some(r) = &self.runtime
            && !r.is_empty()
            && !std::path::Path::new(r).is_file()
        {
            bail!(
                "runtime {r:?}: no such file (give the path of an OCI runtime binary such as /usr/sbin/runc)"
            );
        }
        Ok(RunConfig {
            cmd: cmd.to_vec(),
            entrypoint: self
                .entrypoint
                .as_ref()
                .filter(|e| !e.is_empty())
                .map(|e| vec![e.clone()])
                .unwrap_or_default(),
            env: self.env.clone(),
            working_dir: self.workdir.clone().unwrap_or_default(),
            user: self.user.clone().unwrap_or_default(),
            tty: self.tty,
            open_stdin: self.interactive,
            network: if self.network == "host" {
                String::new()
            } else {
                self.network.clone()
            },
            log_opts: self.log_opt.clone(),
            auto_remove: self.rm,
            runtime: self.runtime.clone().unwrap_or_default(),
            binds: self
                .volume
                .iter()
                .filter(|v| is_bind_spec(v))
                .cloned()
                .collect(),
            volumes: self
                .volume
                .iter()
                .filter(|v| !is_bind_spec(v))
                .cloned()
                .collect(),
            mount_args: self.mount.clone(),
            tmpfs: self.tmpfs.clone(),
            volumes_from: self.volumes_from.clone(),
            mounts: Vec::new(),
        })
    }
}

/// `-v SRC:DEST[:MODE]` (a bind or named volume: Docker's `HostConfig.Binds`) rather than
/// `-v DEST[:MODE]` (an anonymous volume: `Config.Volumes`).
fn is_bind_spec(v: &str) -> bool {
    let parts: Vec<&str> = v.split(':').collect();
    match parts.len() {
        1 => false,
        2 => parts[1].starts_with('/'),
        _ => true,
    }
}

/// `--pull`: when `create`/`run` fetch the image from its registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    /// Pull only when the image is not in the store (Docker's default)
    #[default]
    Missing,
    /// Pull every time (the store's copy is replaced when the registry has a newer one)
    Always,
    /// Never pull: a missing image is an error
    Never,
}

impl RunOpts {
    /// Make sure `image` is in the store as `--pull` asks, pulling through the registry
    /// client with Docker's words on stderr (`Unable to find image 'x:latest' locally`, then
    /// the pull's progress), so stdout stays the container's own output.
    pub fn ensure_image(&self, engine: &Engine, image: &str) -> Result<()> {
        let present = engine.images().resolve(image).is_ok();
        let pull = match self.pull {
            PullPolicy::Never => false,
            PullPolicy::Missing => !present,
            PullPolicy::Always => true,
        };
        if !pull {
            return Ok(());
        }
        // Only a name can be pulled; an ID that is not here is just missing.
        let Ok(r) = Reference::parse(image) else {
            return Ok(());
        };
        let shown = if r.tag.is_some() || r.digest.is_some() {
            r.key()
        } else {
            format!("{}:latest", r.key())
        };
        if !present {
            eprintln!("Unable to find image '{shown}' locally");
        }
        let opts = PullOptions {
            client: ClientOptions::from_env(),
            platform: None,
            all_tags: false,
            max_concurrent: 3,
        };
        let tty = std::io::stderr().is_terminal();
        let pulled = engine
            .pull(
                image,
                &opts,
                Arc::new(Printer::new(Box::new(std::io::stderr()), tty)),
            )
            .with_context(|| format!("pulling {shown}"))?;
        for p in &pulled {
            eprintln!("Digest: {}", p.digest);
            let status = if p.newer {
                "Downloaded newer image"
            } else {
                "Image is up to date"
            };
            eprintln!("Status: {status} for {}", p.reference.familiar());
        }
        Ok(())
    }
}

static WINCH_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_winch(_: libc::c_int) {
    let fd = WINCH_PIPE.load(std::sync::atomic::Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the wake-up.
        unsafe { libc::write(fd, b"w".as_ptr().cast(), 1) };
    }
}

/// While attached to a container with a terminal: when this terminal is resized (SIGWINCH),
/// give the container's pty the new size. The pty is reached as the container init's stdin
/// (`/proc/PID/fd/0`), so the monitor needs no channel for it.
pub fn follow_window_size(pid: i32) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return;
    }
    WINCH_PIPE.store(fds[1], std::sync::atomic::Ordering::SeqCst);
    unsafe { libc::signal(libc::SIGWINCH, on_winch as *const () as libc::sighandler_t) };
    let r = fds[0];
    std::thread::spawn(move || {
        let mut b = [0u8; 16];
        loop {
            let mut p = libc::pollfd {
                fd: r,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd; a read of at most 16 bytes into `b`.
            if unsafe { libc::poll(&mut p, 1, -1) } < 0 {
                continue;
            }
            while unsafe { libc::read(r, b.as_mut_ptr().cast(), b.len()) } > 0 {}
            let (Some(size), Ok(f)) = (
                strata::runtime::pty::WinSize::of_caller(),
                std::fs::File::options()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NOCTTY)
                    .open(format!("/proc/{pid}/fd/0")),
            ) else {
                continue;
            };
            use std::os::fd::AsRawFd;
            size.apply(f.as_raw_fd());
        }
    });
}
