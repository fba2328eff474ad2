//! Running containers over the store: start (prepare the root filesystem, config files and
//! OCI bundle, then hand over to a monitor process), stop, kill, wait, exec, and finding out a
//! container's true state when its monitor may have died.
//!
//! Ownership of a running container: whoever holds `ROOT/containers/<id>/monitor.lock`. The
//! starting CLI takes it, prepares everything, and passes the locked descriptor to the monitor
//! it spawns, so there is no moment when a started container has no owner. The monitor records
//! the exit (state file + the `state` column) and unmounts before it lets go. A process that
//! finds the lock free while the state still says running knows the monitor died, and
//! finishes the container itself (`reconcile`): kills what is left, removes the runtime's
//! state, unmounts, records the exit.

use super::Engine;
use crate::container::{Container, ContainerError, ContainerStore};
use crate::driver;
use crate::image::ImageError;
use crate::lock::LockFile;
use crate::meta::Meta;
use crate::runtime::RuntimeError;
use crate::runtime::backend::{Backend, ExecTerminal};
use crate::runtime::monitor::{self, LOCK_FD, MonitorArgs, NOTIFY_FD, Notifier, StdinMode};
use crate::runtime::pty::{ConsoleSocket, WinSize};
use crate::runtime::spec::{self, Network, ProcessSpec, SpecInput};
use crate::runtime::state::{
    ContainerDir, MonitorLock, RunState, Status, TryLock, now_rfc3339, same_process,
};
use crate::runtime::user::{self, ExecError, ExecUser};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    /// pause/unpause in the wrong state: Docker's "Container x is not paused".
    #[error("Container {0} {1}")]
    Paused(String, &'static str),
    #[error(
        "You cannot remove a running container {0}. Stop the container before attempting removal or force remove"
    )]
    RemoveRunning(String),
    #[error("Invalid signal: {0}")]
    BadSignal(String),
    #[error("invalid network mode {0:?}: choose host or none")]
    BadNetwork(String),
    /// The command could not be started: Docker's 127 (not found) / 126 (not executable).
    #[error("container {name}: {source}")]
    Exec { name: String, source: ExecError },
    #[error("container {name}: {msg}")]
    StartFailed { name: String, msg: String },
    #[error("container {name}: {source}")]
    Runtime { name: String, source: RuntimeError },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl RunError {
    /// The exit code `run`/`start`/`exec` report for this failure (Docker's 125/126/127).
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Exec { source, .. } => source.exit_code(),
            _ => 125,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

fn rt_err(c: &Container) -> impl FnOnce(RuntimeError) -> RunError + '_ {
    move |source| match source {
        RuntimeError::Exec(source) => RunError::Exec {
            name: c.name.clone(),
            source,
        },
        source => RunError::Runtime {
            name: c.name.clone(),
            source,
        },
    }
}

pub fn container_dir(root: &Path, c: &Container) -> ContainerDir {
    ContainerDir::new(root, &c.id)
}

/// `--hostname`, else Docker's default: the short ID.
pub fn hostname_of(c: &Container) -> String {
    if c.config.hostname.is_empty() {
        c.id[..12].to_string()
    } else {
        c.config.hostname.clone()
    }
}

// ---------------------------------------------------------------------------------------
// Finding the true state

/// Record an exit: unmount what the start mounted, then the state file, then the `state`
/// column, then `--rm`. Called with the monitor lock held (by the monitor, or by whoever
/// found the monitor dead).
fn record_exit(
    store: &ContainerStore,
    dir: &ContainerDir,
    c: &Container,
    mut st: RunState,
    code: i32,
    error: &str,
) -> RunState {
    if st.rootfs_mounted {
        let _ = store.unmount(c, false);
        st.rootfs_mounted = false;
    }
    st.status = Status::Exited;
    st.exit_code = code;
    st.finished_at = now_rfc3339();
    st.error = error.to_string();
    st.pid = 0;
    let _ = dir.write_state(&st);
    let _ = store.set_state_reporting(&c.id, "exited", Some(code));
    if c.config.auto_remove
        && store.remove(c).is_ok()
        && let Some(root) = store.root()
    {
        let volumes = crate::volume::VolumeStore::new(store.meta, root, "");
        super::volumes::remove_anonymous(&volumes, c);
    }
    st
}

/// The monitor is gone (we hold its lock) but the state says the container runs: kill what
/// is left of it, remove the runtime's state, record the exit (137 if we had to kill it).
fn finish_dead(
    store: &ContainerStore,
    dir: &ContainerDir,
    c: &Container,
    st: RunState,
) -> RunState {
    let mut code = 255;
    if same_process(st.pid, st.pid_start) {
        unsafe { libc::kill(st.pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while same_process(st.pid, st.pid_start) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        code = 137;
    }
    Backend::from_config(&c.config.runtime).delete(dir);
    let error = if st.status == Status::Starting {
        "the start was interrupted"
    } else {
        "the container's monitor died"
    };
    record_exit(store, dir, c, st, code, error)
}

/// The container's state, correcting it first when its monitor died.
pub fn reconcile(engine: &Engine, c: &Container) -> Result<RunState, RunError> {
    let dir = container_dir(&engine.root, c);
    let st = dir.read_state();
    let claims_alive = matches!(
        st.status,
        Status::Starting | Status::Running | Status::Restarting
    ) || c.state == "running";
    if !claims_alive {
        return Ok(st);
    }
    match dir.try_lock().map_err(io_err("locking the container"))? {
        TryLock::Busy => Ok(st),
        TryLock::Acquired(_lock) => {
            // Re-read under the lock: the monitor may have finished in between.
            let st = dir.read_state();
            if matches!(
                st.status,
                Status::Starting | Status::Running | Status::Restarting
            ) {
                Ok(finish_dead(&engine.containers(), &dir, c, st))
            } else {
                if c.state == "running" {
                    engine.containers().set_state(&c.id, st.status.docker())?;
                }
                Ok(st)
            }
        }
        TryLock::NoDir => {
            engine.containers().set_state(&c.id, "exited")?;
            Ok(RunState {
                status: Status::Exited,
                exit_code: 255,
                ..st
            })
        }
    }
}

/// `reconcile`, and if a start is in flight (Starting, its owner alive), wait a little for it
/// to become Running (or fail), so stop/kill/rm/exec act on a settled state.
fn settled(engine: &Engine, c: &Container) -> Result<RunState, RunError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = reconcile(engine, c)?;
        if st.status != Status::Starting || Instant::now() >= deadline {
            return Ok(st);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `list` with each container that claims to run checked (and corrected if its monitor died).
pub fn refresh(engine: &Engine, list: Vec<Container>) -> Vec<Container> {
    list.into_iter()
        .map(|mut c| {
            if c.state == "running"
                && let Ok(st) = reconcile(engine, &c)
            {
                c.state = st.status.docker().to_string();
            }
            c
        })
        .collect()
}

/// The state file as it is (for `ps` STATUS and `inspect`; call `refresh` first).
pub fn state_of(root: &Path, c: &Container) -> RunState {
    container_dir(root, c).read_state()
}

// ---------------------------------------------------------------------------------------
// What the container runs

/// The image config's `Config` fields a start needs.
struct ImageDefaults {
    cmd: Vec<String>,
    entrypoint: Vec<String>,
    env: Vec<String>,
    working_dir: String,
    user: String,
    stop_signal: Option<String>,
}

fn image_defaults(engine: &Engine, c: &Container) -> Result<ImageDefaults, RunError> {
    let (_, cfg) = engine.images().config(&c.image_id)?;
    let s = |k: &str| {
        cfg.field(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    Ok(ImageDefaults {
        cmd: cfg.strings("Cmd"),
        entrypoint: cfg.strings("Entrypoint"),
        env: cfg.strings("Env"),
        working_dir: s("WorkingDir"),
        user: s("User"),
        stop_signal: Some(s("StopSignal")).filter(|s| !s.is_empty()),
    })
}

/// Docker's rule: the container's entrypoint replaces the image's (and drops the image's Cmd);
/// the container's cmd replaces the image's Cmd.
pub fn argv_of(c: &Container, img_entrypoint: &[String], img_cmd: &[String]) -> Vec<String> {
    let (ep, cmd) = if !c.config.entrypoint.is_empty() {
        (c.config.entrypoint.clone(), c.config.cmd.clone())
    } else if !c.config.cmd.is_empty() {
        (img_entrypoint.to_vec(), c.config.cmd.clone())
    } else {
        (img_entrypoint.to_vec(), img_cmd.to_vec())
    };
    ep.into_iter().chain(cmd).collect()
}

/// Process settings resolved against the image and the container's root filesystem.
fn resolve_process(
    c: &Container,
    img: &ImageDefaults,
    rootfs: &Path,
    o: ExecOpts,
) -> Result<ProcessSpec, RunError> {
    let ExecOpts {
        args,
        env: extra_env,
        workdir: cwd,
        user,
        tty: terminal,
        ..
    } = o;
    let user_spec = user
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| {
            if c.config.user.is_empty() {
                img.user.clone()
            } else {
                c.config.user.clone()
            }
        });
    let user_err = |e: user::UserError| RunError::StartFailed {
        name: c.name.clone(),
        msg: e.to_string(),
    };
    let mut u: ExecUser = user::resolve_user(rootfs, &user_spec).map_err(user_err)?;
    for g in &c.config.group_add {
        let gid = user::group_id(rootfs, g).map_err(user_err)?;
        if !u.additional_gids.contains(&gid) {
            u.additional_gids.push(gid);
        }
    }
    let mut overrides = c.config.env.clone();
    overrides.extend(extra_env.iter().cloned());
    let env = spec::merge_env(&img.env, &overrides, &hostname_of(c), &u.home, terminal);
    let cwd = cwd
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| {
            if !c.config.working_dir.is_empty() {
                c.config.working_dir.clone()
            } else if !img.working_dir.is_empty() {
                img.working_dir.clone()
            } else {
                "/".into()
            }
        });
    if !cwd.starts_with('/') {
        return Err(RunError::StartFailed {
            name: c.name.clone(),
            msg: format!(
                "the working directory {cwd:?} is invalid, it needs to be an absolute path"
            ),
        });
    }
    if args.is_empty() {
        return Err(RunError::Exec {
            name: c.name.clone(),
            source: ExecError::NoCommand,
        });
    }
    user::find_command(
        rootfs,
        &args[0],
        spec::env_value(&env, "PATH").unwrap_or(""),
        &cwd,
    )
    .map_err(|source| RunError::Exec {
        name: c.name.clone(),
        source,
    })?;
    let caps = crate::runtime::limits::capabilities(
        &c.config.cap_add,
        &c.config.cap_drop,
        c.config.privileged,
    )
    .map_err(|e| RunError::StartFailed {
        name: c.name.clone(),
        msg: e.to_string(),
    })?;
    Ok(ProcessSpec {
        args,
        env,
        cwd,
        uid: u.uid,
        gid: u.gid,
        additional_gids: u.additional_gids,
        terminal,
        caps,
    })
}

fn etc_files(
    dir: &ContainerDir,
    hostname: &str,
    extra_hosts: &[String],
) -> Result<Vec<(String, PathBuf)>, RunError> {
    let mut hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string();
    // `--add-host` entries after the defaults, then the container's own name, as Docker
    // writes them.
    for h in extra_hosts {
        if let Some((host, ip)) = h.split_once('=').or_else(|| h.split_once(':')) {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            hosts.push_str(&format!("{ip}\t{host}\n"));
        }
    }
    hosts.push_str(&format!("127.0.0.1\t{hostname}\n"));
    let resolv = fs::read("/etc/resolv.conf").unwrap_or_default();
    let files = [
        ("/etc/hosts", "hosts", hosts.into_bytes()),
        (
            "/etc/hostname",
            "hostname",
            format!("{hostname}\n").into_bytes(),
        ),
        ("/etc/resolv.conf", "resolv.conf", resolv),
    ];
    let mut out = Vec::new();
    for (dest, name, content) in files {
        let p = dir.dir.join(name);
        // Kept across restarts (the container may have edited them), as Docker does.
        if !p.exists() {
            fs::write(&p, content).map_err(io_err(format!("writing {}", p.display())))?;
        }
        out.push((dest.to_string(), p));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// start

/// Where `--init` puts its init in the container, as Docker.
const INIT_PATH: &str = "/sbin/docker-init";
/// Static tini builds (a container's root may have no libc): Debian's tini package, then
/// Docker's own copy.
const INIT_BINARIES: &[&str] = &["/usr/bin/tini-static", "/usr/bin/docker-init"];

fn init_binary() -> Option<PathBuf> {
    INIT_BINARIES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// How the CLI that starts the container stays connected to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attach {
    /// Copy the container's output to this process's stdout/stderr.
    pub output: bool,
    /// Give this process's stdin to the container (`-i` attached).
    pub stdin: bool,
    /// The caller's terminal size, for a container with `-t`.
    pub size: Option<crate::runtime::pty::WinSize>,
}

/// A started container: the monitor's report pipe.
pub struct Started {
    pub pid: i32,
    reader: BufReader<File>,
}

impl Started {
    /// Block until the monitor reports the exit (all output copied, cleanup done). None if the
    /// monitor died first.
    pub fn wait_exit(mut self) -> Option<i32> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {
                    if let Some(code) = line.trim().strip_prefix("exit ") {
                        return code.parse().ok();
                    }
                }
            }
        }
    }
}

fn high_dup(fd: i32) -> Result<OwnedFd, RunError> {
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(io_err("duplicating a descriptor")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Start a created or exited container: mount its root filesystem, write its config files
/// and OCI bundle, and hand over to a new monitor process. Returns once the process runs.
pub fn start(engine: &Engine, c: &Container, attach: Attach) -> Result<Started, RunError> {
    let dir = container_dir(&engine.root, c);
    dir.create()
        .map_err(io_err(format!("creating {}", dir.dir.display())))?;
    let lock = match dir.try_lock().map_err(io_err("locking the container"))? {
        TryLock::Acquired(l) => l,
        _ => return Err(RunError::AlreadyRunning(c.name.clone())),
    };
    let store = engine.containers();
    let mut st = dir.read_state();
    if matches!(
        st.status,
        Status::Starting | Status::Running | Status::Restarting
    ) {
        st = finish_dead(&store, &dir, c, st);
    }
    let network = Network::parse(&c.config.network)
        .ok_or_else(|| RunError::BadNetwork(c.config.network.clone()))?;
    let img = image_defaults(engine, c)?;
    // Intent before action: a start killed from here on leaves `Starting` with the monitor
    // lock free, and whoever notices (`reconcile`) unmounts what this mounted.
    let _ = fs::remove_file(dir.dir.join(STOP_MARK));
    let before = st.clone();
    st.status = Status::Starting;
    st.restart_count = 0;
    st.rootfs_mounted = true;
    st.error = String::new();
    dir.write_state(&st)
        .map_err(io_err("writing the state file"))?;
    let rootfs = match store.mount(c) {
        Ok(r) => r,
        Err(e) => {
            let _ = dir.write_state(&before);
            return Err(e.into());
        }
    };
    crate::failpoint::pause("start-mounted");
    let prepared = (|| -> Result<(), RunError> {
        let argv = argv_of(c, &img.entrypoint, &img.cmd);
        let process = resolve_process(
            c,
            &img,
            &rootfs,
            ExecOpts {
                args: argv,
                env: &[],
                workdir: None,
                user: None,
                interactive: false,
                tty: c.config.tty,
                detach: false,
            },
        )?;
        user::mkdir_in_root(&rootfs, &process.cwd).map_err(io_err(format!(
            "creating the working directory {}",
            process.cwd
        )))?;
        let mut process = process;
        let mut extra_init = Vec::new();
        if c.config.init {
            // Docker's --init: tini (docker-init) bind-mounted read-only and run as PID 1.
            let tini = init_binary().ok_or_else(|| RunError::StartFailed {
                name: c.name.clone(),
                msg: format!(
                    "--init: no static tini on this host ({}; install Debian's tini package)",
                    INIT_BINARIES.join(", ")
                ),
            })?;
            extra_init.push(serde_json::json!({"destination": INIT_PATH, "type": "bind",
                "source": tini, "options": ["rbind", "ro", "rprivate"]}));
            let mut argv = vec![INIT_PATH.to_string(), "--".to_string()];
            argv.append(&mut process.args);
            process.args = argv;
        }
        let hostname = hostname_of(c);
        let files = etc_files(&dir, &hostname, &c.config.extra_hosts)?;
        let files: Vec<(String, &Path)> = files
            .iter()
            .map(|(d, p)| (d.clone(), p.as_path()))
            .collect();
        let extra =
            super::volumes::spec_mounts(&engine.volumes(), &rootfs, c, &dir.dir.join("mounts"))
                .map_err(|e| RunError::StartFailed {
                    name: c.name.clone(),
                    msg: e.to_string(),
                })?;
        let mut extra = extra;
        extra.extend(extra_init);
        let doc = spec::runtime_spec(&SpecInput {
            id: &c.id,
            hostname: &hostname,
            rootfs: &rootfs,
            process: &process,
            network,
            etc_files: &files,
            extra_mounts: &extra,
            readonly_rootfs: c.config.readonly_rootfs,
            privileged: c.config.privileged,
            limits: crate::runtime::limits::Limits {
                memory: c.config.memory,
                nano_cpus: c.config.nano_cpus,
                pids: c.config.pids_limit,
            },
        });
        let bundle = dir.bundle();
        fs::create_dir_all(&bundle).map_err(io_err("creating the bundle"))?;
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&doc).expect("serializable"),
        )
        .map_err(io_err("writing config.json"))?;
        Ok(())
    })();
    if let Err(e) = prepared {
        crate::runtime::mounts::detach_all(&dir.dir.join("mounts"));
        let _ = store.unmount(c, false);
        let _ = dir.write_state(&before);
        return Err(e);
    }

    let args = MonitorArgs {
        id: c.id.clone(),
        runtime: c.config.runtime.clone(),
        log_opts: c.config.log_opts.clone(),
        attach: attach.output,
        stdin: if attach.stdin && c.config.open_stdin {
            StdinMode::Inherit
        } else if c.config.open_stdin {
            StdinMode::Pipe
        } else {
            StdinMode::Null
        },
        tty: c.config.tty,
        size: attach.size,
    };
    let (notify_r, notify_w) = monitor::pipe().map_err(rt_err(c))?;
    let lock_fd = high_dup(lock.as_raw_fd_())?;
    let notify_fd = high_dup(notify_w.as_raw_fd())?;
    drop(notify_w);
    let exe = std::env::current_exe().map_err(io_err("finding the strata binary"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(&engine.root)
        .arg("--storage-driver")
        .arg(engine.driver.name())
        .arg("__monitor")
        .arg(serde_json::to_string(&args).expect("serializable"));
    cmd.env_remove("STRATA_ROOT")
        .env_remove("STRATA_STORAGE_DRIVER");
    if attach.output {
        cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    if args.stdin == StdinMode::Inherit {
        cmd.stdin(Stdio::inherit());
    } else {
        cmd.stdin(Stdio::null());
    }
    let (lfd, nfd) = (lock_fd.as_raw_fd(), notify_fd.as_raw_fd());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::dup2(lfd, LOCK_FD) < 0 || libc::dup2(nfd, NOTIFY_FD) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn().and_then(|mut ch| ch.wait());
    drop(lock_fd);
    drop(notify_fd);
    drop(lock);
    if let Err(e) = spawned {
        // Nobody took over: finish the start ourselves.
        if let TryLock::Acquired(_l) = dir.try_lock().map_err(io_err("locking the container"))? {
            let st = dir.read_state();
            let st = RunState {
                status: Status::Created,
                ..st
            };
            if st.rootfs_mounted {
                let _ = store.unmount(c, false);
            }
            let _ = dir.write_state(&RunState {
                rootfs_mounted: false,
                ..st
            });
        }
        return Err(io_err("starting the container monitor")(e));
    }
    let mut reader = BufReader::new(File::from(notify_r));
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    // The runtime has made its own mounts of the staged bind sources (or failed): the
    // staging mounts are not needed any more.
    crate::runtime::mounts::detach_all(&dir.dir.join("mounts"));
    let line = line.trim_end();
    if let Some(pid) = line.strip_prefix("started ") {
        return Ok(Started {
            pid: pid.parse().unwrap_or(0),
            reader,
        });
    }
    if let Some(rest) = line.strip_prefix("error ") {
        return Err(RunError::StartFailed {
            name: c.name.clone(),
            msg: rest.to_string(),
        });
    }
    // The monitor died before reporting: whoever looks next finishes the container.
    let _ = reconcile(engine, c);
    Err(RunError::StartFailed {
        name: c.name.clone(),
        msg: "the container monitor exited before starting the container".into(),
    })
}

trait RawLock {
    fn as_raw_fd_(&self) -> i32;
}
impl RawLock for MonitorLock {
    fn as_raw_fd_(&self) -> i32 {
        use std::os::fd::AsFd;
        self.as_fd().as_raw_fd()
    }
}

/// The hidden `__monitor` subcommand: become the container's monitor. Returns the process's
/// exit code (nobody waits for it: the CLI reaped the parent of the fork already).
pub fn monitor_main(root: &Path, driver_name: &str, args_json: &str) -> i32 {
    let Ok(args) = serde_json::from_str::<MonitorArgs>(args_json) else {
        eprintln!("strata monitor: bad arguments");
        return 2;
    };
    if monitor::daemonize().is_err() {
        return 1;
    }
    // SAFETY: fd 3 is the locked monitor.lock the CLI passed; owned here from now on.
    let _lock = MonitorLock::from_fd(unsafe { OwnedFd::from_raw_fd(LOCK_FD) });
    let mut notify = Notifier::inherited();
    let dir = ContainerDir::new(root, &args.id);
    let opened = (|| -> Result<(Meta, Box<dyn driver::Driver>), String> {
        let meta = Meta::open(&root.join("meta.db")).map_err(|e| e.to_string())?;
        let d = driver::open(root, driver_name).map_err(|e| e.to_string())?;
        Ok((meta, d))
    })();
    let (meta, drv) = match opened {
        Ok(x) => x,
        Err(e) => {
            notify.send(&format!("error {e}"));
            return 1;
        }
    };
    let store = ContainerStore::new(&meta, drv.as_ref()).with_root(root);
    let Ok(c) = store.get(&args.id) else {
        notify.send("error the container was removed");
        return 1;
    };
    let policy = RestartPolicy::parse(&c.config.restart).unwrap_or(RestartPolicy::No);
    let mut restarts = 0u32;
    let mut delay = Duration::from_millis(100);
    loop {
        let began = Instant::now();
        let result = monitor::run(&args, &dir, &mut notify, |_| {
            let _ = store.set_state(&c.id, "running");
        });
        // Hold the store lock (shared) while changing records, as every strata process does.
        let _store_lock = LockFile::shared(&root.join("locks/store")).ok();
        match result {
            Ok(code) => {
                let stopped = dir.dir.join(STOP_MARK).exists();
                if !stopped && policy.restarts(code, restarts) {
                    // Docker's restart manager: 100 ms, doubling, back to 100 ms after a run
                    // of 10 s or more; `ps` says `Restarting (code) … ago` meanwhile.
                    if began.elapsed() >= Duration::from_secs(10) {
                        delay = Duration::from_millis(100);
                    }
                    restarts += 1;
                    let mut st = dir.read_state();
                    st.status = Status::Restarting;
                    st.exit_code = code;
                    st.finished_at = now_rfc3339();
                    st.pid = 0;
                    st.restart_count = restarts;
                    let _ = dir.write_state(&st);
                    notify.send(&format!("exit {code}"));
                    drop(_store_lock);
                    let until = Instant::now() + delay;
                    while Instant::now() < until && !dir.dir.join(STOP_MARK).exists() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    delay = (delay * 2).min(Duration::from_secs(60));
                    if !dir.dir.join(STOP_MARK).exists() {
                        continue;
                    }
                }
                let st = dir.read_state();
                record_exit(&store, &dir, &c, st, code, "");
                notify.send(&format!("exit {code}"));
                return 0;
            }
            Err(e) => {
                // Not started: back to Created (as Docker leaves a container whose start failed).
                Backend::from_config(&args.runtime).delete(&dir);
                let mut st = dir.read_state();
                if restarts > 0 {
                    let code = st.exit_code;
                    record_exit(&store, &dir, &c, st, code, &e.to_string());
                    return 1;
                }
                if st.rootfs_mounted {
                    let _ = store.unmount(&c, false);
                    st.rootfs_mounted = false;
                }
                st.status = Status::Created;
                st.error = e.to_string();
                let _ = dir.write_state(&st);
                notify.send(&format!("error {e}"));
                return 1;
            }
        }
    }
}

/// Docker's `--restart` policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    /// At most N restarts (None: no limit).
    OnFailure(Option<u32>),
}

impl RestartPolicy {
    /// `no`, `always`, `unless-stopped`, `on-failure[:N]` (empty: no).
    pub fn parse(s: &str) -> Result<RestartPolicy, String> {
        let (name, n) = match s.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let p = match name {
            "" | "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure(match n {
                None => None,
                Some(v) => Some(v.parse().map_err(|_| format!("invalid restart policy format: maximum retry count must be an integer: {v:?}"))?),
            }),
            _ => return Err(format!("invalid restart policy {name}")),
        };
        if n.is_some() && !matches!(p, RestartPolicy::OnFailure(_)) {
            return Err(format!(
                "maximum retry count cannot be used with restart policy '{name}'"
            ));
        }
        Ok(p)
    }

    /// Whether a container that exited with `code` after `done` restarts goes again.
    pub fn restarts(self, code: i32, done: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure(max) => code != 0 && max.is_none_or(|m| done < m),
        }
    }
}

// ---------------------------------------------------------------------------------------
// stop, kill, wait, rm

/// Signal numbers by Docker's names (`KILL`, `SIGKILL`, `9`, `SIGRTMIN+3`).
pub fn parse_signal(s: &str) -> Result<i32, RunError> {
    let bad = || RunError::BadSignal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(off) = name.strip_prefix("RTMIN+") {
        let n: i32 = off.parse().map_err(|_| bad())?;
        let v = libc::SIGRTMIN() + n;
        return if v <= libc::SIGRTMAX() {
            Ok(v)
        } else {
            Err(bad())
        };
    }
    if let Some(off) = name.strip_prefix("RTMAX-") {
        let n: i32 = off.parse().map_err(|_| bad())?;
        let v = libc::SIGRTMAX() - n;
        return if v >= libc::SIGRTMIN() {
            Ok(v)
        } else {
            Err(bad())
        };
    }
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        "RTMIN" => libc::SIGRTMIN(),
        "RTMAX" => libc::SIGRTMAX(),
        _ => return Err(bad()),
    };
    Ok(n)
}

fn signal_process(st: &RunState, sig: i32) -> bool {
    same_process(st.pid, st.pid_start) && unsafe { libc::kill(st.pid, sig) } == 0
}

/// Wait until no monitor holds the lock (true), or `timeout` passes (false).
fn wait_monitor(dir: &ContainerDir, timeout: Option<Duration>) -> bool {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut pause = Duration::from_millis(1);
    loop {
        match dir.try_lock() {
            Ok(TryLock::Busy) => {}
            _ => return true,
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Send a signal to the container's main process; it must be running.
pub fn kill(engine: &Engine, c: &Container, sig: i32) -> Result<(), RunError> {
    let st = settled(engine, c)?;
    // A frozen process acts on no signal: thawed first, as Docker does for a paused one.
    super::pause::thaw_if_paused(c);
    if st.status == Status::Running {
        mark_stopped(&container_dir(&engine.root, c));
    }
    if st.status != Status::Running || !signal_process(&st, sig) {
        return Err(RunError::NotRunning(c.name.clone()));
    }
    let _ = engine
        .containers()
        .report(c, "kill", &[("signal", &sig.to_string())]);
    Ok(())
}

/// Docker's stop: the container's `--stop-signal`, else the image's StopSignal, else
/// SIGTERM; then SIGKILL after `timeout` (None: the container's `--stop-timeout`, else 10 s).
/// Stopping a container that does not run is not an error.
pub fn stop(engine: &Engine, c: &Container, timeout: Option<Duration>) -> Result<(), RunError> {
    let st = settled(engine, c)?;
    let dir = container_dir(&engine.root, c);
    if st.status == Status::Restarting {
        mark_stopped(&dir);
        wait_monitor(&dir, None);
        reconcile(engine, c)?;
        return Ok(());
    }
    if st.status != Status::Running {
        return Ok(());
    }
    mark_stopped(&dir);
    super::pause::thaw_if_paused(c);
    let sig = Some(c.config.stop_signal.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| image_defaults(engine, c).ok().and_then(|i| i.stop_signal))
        .and_then(|s| parse_signal(&s).ok())
        .unwrap_or(libc::SIGTERM);
    let store = engine.containers();
    let _ = store.report(c, "kill", &[("signal", &sig.to_string())]);
    let timeout = timeout.unwrap_or_else(|| stop_timeout(c));
    signal_process(&st, sig);
    if !wait_monitor(&dir, Some(timeout)) {
        let _ = store.report(c, "kill", &[("signal", &libc::SIGKILL.to_string())]);
        signal_process(&st, libc::SIGKILL);
        wait_monitor(&dir, None);
    }
    reconcile(engine, c)?;
    let _ = store.report(c, "stop", &[]);
    Ok(())
}

/// The mark `stop`, `kill` and `rm -f` leave for the monitor: do not restart (Docker's
/// HasBeenManuallyStopped). Removed by `start`.
fn mark_stopped(dir: &ContainerDir) {
    let _ = fs::write(dir.dir.join(STOP_MARK), b"");
}

const STOP_MARK: &str = "stop-requested";

/// How long `stop` waits before SIGKILL when not told: `--stop-timeout`, else Docker's 10 s
/// (a negative timeout waits for ever, as Docker's -1).
pub fn stop_timeout(c: &Container) -> Duration {
    match c.config.stop_timeout {
        Some(t) if t < 0 => Duration::from_secs(100 * 365 * 86400),
        Some(t) => Duration::from_secs(t as u64),
        None => Duration::from_secs(10),
    }
}

/// Block until the container is not running; its exit code.
pub fn wait(engine: &Engine, c: &Container) -> Result<i32, RunError> {
    let dir = container_dir(&engine.root, c);
    let Some(_lock) = dir.lock_wait().map_err(io_err("locking the container"))? else {
        return Ok(dir.read_state().exit_code);
    };
    let st = dir.read_state();
    if matches!(
        st.status,
        Status::Starting | Status::Running | Status::Restarting
    ) {
        return Ok(finish_dead(&engine.containers(), &dir, c, st).exit_code);
    }
    Ok(st.exit_code)
}

/// Before `rm`: a running container is refused, or with `force` killed (and its monitor
/// allowed to finish) first.
pub fn prepare_remove(engine: &Engine, c: &Container, force: bool) -> Result<(), RunError> {
    let st = settled(engine, c)?;
    if !matches!(st.status, Status::Running | Status::Restarting) {
        return Ok(());
    }
    if !force {
        return Err(RunError::RemoveRunning(c.name.clone()));
    }
    mark_stopped(&container_dir(&engine.root, c));
    signal_process(&st, libc::SIGKILL);
    wait_monitor(
        &container_dir(&engine.root, c),
        Some(Duration::from_secs(30)),
    );
    reconcile(engine, c)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// exec

pub struct ExecOpts<'a> {
    pub args: Vec<String>,
    pub env: &'a [String],
    pub workdir: Option<&'a str>,
    pub user: Option<&'a str>,
    pub interactive: bool,
    pub tty: bool,
    /// `exec -d`: start it and return (exit code 0), nothing attached.
    pub detach: bool,
}

/// Run a process in the running container with this process's stdio; its exit code.
pub fn exec(engine: &Engine, c: &Container, o: ExecOpts) -> Result<i32, RunError> {
    let st = settled(engine, c)?;
    if st.status != Status::Running || !same_process(st.pid, st.pid_start) {
        return Err(RunError::NotRunning(c.name.clone()));
    }
    let img = image_defaults(engine, c)?;
    let interactive = o.interactive;
    let tty = o.tty && !o.detach;
    let detach = o.detach;
    // The container's own view of its root, whatever mounts it has.
    let root = PathBuf::from(format!("/proc/{}/root", st.pid));
    let process = resolve_process(c, &img, &root, o)?;
    let dir = container_dir(&engine.root, c);
    let path = dir
        .dir
        .join(format!("exec-{}.json", crate::atomic_file::random_hex(6)));
    fs::write(
        &path,
        serde_json::to_vec(&spec::process_json(&process)).expect("serializable"),
    )
    .map_err(io_err("writing the exec process spec"))?;
    let stdin = if interactive {
        None
    } else {
        Some(
            File::open("/dev/null")
                .map_err(io_err("opening /dev/null"))?
                .into(),
        )
    };
    let backend = Backend::from_config(&c.config.runtime);
    let console = if tty && backend == Backend::Embedded {
        let name = format!("exec-{}.sock", crate::atomic_file::random_hex(6));
        Some(ConsoleSocket::bind(&dir.dir, &name).map_err(rt_err(c))?)
    } else {
        None
    };
    let terminal = console.as_ref().map(|console| ExecTerminal {
        console,
        size: WinSize::of_caller(),
        stdin: interactive,
    });
    let r = backend.exec(&dir, &path, stdin, terminal, detach);
    drop(console);
    let _ = fs::remove_file(&path);
    r.map_err(rt_err(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse_signal("FOO").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
    }
}
