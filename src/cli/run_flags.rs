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
    /// Print help (`-h` is --hostname here, as Docker's)
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
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
    /// Storage driver options for the container: size=SIZE limits its writable layer (btrfs)
    #[arg(long = "storage-opt")]
    storage_opt: Vec<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<std::path::PathBuf>,
    /// Set meta data on a container (KEY=VALUE)
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    read_only: bool,
    /// Signal to stop the container
    #[arg(long)]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long, allow_hyphen_values = true)]
    stop_timeout: Option<i64>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    group_add: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    privileged: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Restart policy to apply when a container exits (no, on-failure[:N], always, unless-stopped)
    #[arg(long, default_value = "no")]
    restart: String,
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
        strata::container::storage_size_limit(&self.storage_opt)?;
        if let Some(r) = &self.runtime
            && !r.is_empty()
            && !std::path::Path::new(r).is_file()
        {
            bail!(
                "runtime {r:?}: no such file (give the path of an OCI runtime binary such as /usr/sbin/runc)"
            );
        }
        if let Some(sig) = &self.stop_signal {
            strata::engine::run::parse_signal(sig)?;
        }
        for h in &self.add_host {
            parse_extra_host(h)?;
        }
        strata::engine::run::RestartPolicy::parse(&self.restart).map_err(anyhow::Error::msg)?;
        if self.rm && !matches!(self.restart.as_str(), "" | "no") {
            bail!("Conflicting options: --restart and --rm");
        }
        strata::runtime::limits::check_names(&self.cap_add)?;
        strata::runtime::limits::check_names(&self.cap_drop)?;
        let memory = match &self.memory {
            None => 0,
            Some(m) => {
                let n = strata::runtime::limits::parse_bytes(m).ok_or_else(|| {
                    anyhow::anyhow!(
                        "invalid argument {m:?} for \"-m, --memory\" flag: invalid size"
                    )
                })?;
                if n > 0 && n < 6 << 20 {
                    bail!("Minimum memory limit allowed is 6MB");
                }
                n
            }
        };
        let nano_cpus = match self.cpus {
            None => 0,
            Some(c) => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                if !(0.0..=n as f64).contains(&c) || (c > 0.0 && c < 0.01) {
                    bail!(
                        "Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
                    );
                }
                (c * 1e9).round() as i64
            }
        };
        let mut env = Vec::new();
        for f in &self.env_file {
            env.extend(read_env_file(f)?);
        }
        env.extend(self.env.iter().cloned());
        let labels = self
            .label
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.clone(), String::new()),
            })
            .collect();
        Ok(RunConfig {
            hostname: self.hostname.clone().unwrap_or_default(),
            labels,
            stop_signal: self.stop_signal.clone().unwrap_or_default(),
            stop_timeout: self.stop_timeout,
            extra_hosts: self.add_host.clone(),
            readonly_rootfs: self.read_only,
            group_add: self.group_add.clone(),
            privileged: self.privileged,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            memory,
            nano_cpus,
            pids_limit: self.pids_limit.filter(|p| *p != 0),
            init: self.init,
            restart: if self.restart == "no" {
                String::new()
            } else {
                self.restart.clone()
            },
            cmd: cmd.to_vec(),
            entrypoint: self
                .entrypoint
                .as_ref()
                .filter(|e| !e.is_empty())
                .map(|e| vec![e.clone()])
                .unwrap_or_default(),
            env,
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
            storage_opt: self.storage_opt.clone(),
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

/// `--add-host HOST:IP` (or Docker's newer `HOST=IP`); the IP may be IPv6 (`h:::1`).
pub fn parse_extra_host(s: &str) -> Result<(String, String)> {
    let (host, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "invalid argument {s:?} for \"--add-host\" flag: bad format for add-host: {s:?}"
            )
        })?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || ip.parse::<std::net::IpAddr>().is_err() {
        bail!(
            "invalid argument {s:?} for \"--add-host\" flag: invalid IP address in add-host: {ip:?}"
        );
    }
    Ok((host.to_string(), ip.to_string()))
}

/// Docker's env file: one `KEY=VALUE` a line (the value taken literally: no quotes, no
/// expansion), `KEY` alone passes this process's value, `#` lines and blank lines skipped.
fn read_env_file(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read(path).with_context(|| format!("open {}", path.display()))?;
    let text = String::from_utf8(text)
        .map_err(|_| anyhow::anyhow!("env file {} is not valid UTF-8", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split('=').next().unwrap_or("");
        if name.is_empty() {
            bail!("invalid environment variable: {line}");
        }
        if name.contains(char::is_whitespace) {
            bail!("variable '{name}' contains whitespaces");
        }
        if line.contains('=') {
            out.push(line.to_string());
        } else if let Ok(v) = std::env::var(name) {
            out.push(format!("{name}={v}"));
        }
    }
    Ok(out)
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

/// Display the running processes of a container
#[derive(Args)]
pub struct TopArgs {
    container: String,
    /// ps options (default: -ef, as Docker)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_options: Vec<String>,
}

/// Docker's `top`: the host's `ps` (default `-ef`), rows kept for the processes in the
/// container's cgroup (read from `cgroup.procs`, so every process of it counts, exec'd ones
/// too).
pub fn top(cli: &super::Cli, a: &TopArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let c = engine.containers().get(&a.container)?;
    let st = strata::engine::run::reconcile(&engine, &c)?;
    if st.status != strata::runtime::state::Status::Running {
        bail!("container {} is not running", c.name);
    }
    let rel = strata::runtime::spec::cgroup_path(&c.id);
    let rel = rel.trim_start_matches('/');
    let procs = ["pids", "memory", "cpu", "unified", ""]
        .iter()
        .map(|ctl| {
            std::path::Path::new("/sys/fs/cgroup")
                .join(ctl)
                .join(rel)
                .join("cgroup.procs")
        })
        .find_map(|p| std::fs::read_to_string(p).ok())
        .ok_or_else(|| anyhow::anyhow!("container {}: its cgroup is not readable", c.name))?;
    let pids: Vec<&str> = procs.split_whitespace().collect();
    let opts = if a.ps_options.is_empty() {
        vec!["-ef".to_string()]
    } else {
        a.ps_options.clone()
    };
    let out = std::process::Command::new("ps")
        .args(&opts)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!("ps: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow::anyhow!("Couldn't find PID field in ps output"))?;
    println!("{header}");
    for l in lines {
        if l.split_whitespace()
            .nth(pid_col)
            .is_some_and(|p| pids.contains(&p))
        {
            println!("{l}");
        }
    }
    Ok(0)
}
