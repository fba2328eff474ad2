//! Running containers: run, start, stop, kill, restart, wait, exec, logs, and the hidden
//! `__monitor` subcommand a started container's monitor process runs.

use super::Cli;
use super::format::human_duration;
use anyhow::{Result, bail};
use clap::Args;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;
use strata::container::Container;
use strata::engine::Engine;
use strata::engine::run::{self as er, Attach, ExecOpts, RunError};
use strata::runtime::logs::{self, Follower};
use strata::runtime::pty::WinSize;
use strata::runtime::state::{RunState, Status};

/// Create and run a new container from an image
#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    opts: super::run_flags::RunOpts,
    image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

/// Start one or more stopped containers
#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Stop one or more running containers
#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    /// (default: the container's --stop-timeout, else 10)
    #[arg(short = 't', long = "time", visible_alias = "timeout")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Kill one or more running containers
#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Restart one or more containers
#[derive(Args)]
pub struct RestartArgs {
    /// Seconds to wait before killing the container
    /// (default: the container's --stop-timeout, else 10)
    #[arg(short = 't', long = "time", visible_alias = "timeout")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Block until one or more containers stop, then print their exit codes
#[derive(Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Execute a command in a running container
#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

/// Fetch the logs of a container
#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for everything)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    until: Option<String>,
    container: String,
}

/// (internal) the monitor process of a started container
#[derive(Args)]
pub struct MonitorCmdArgs {
    args: String,
}

fn run_error(e: RunError) -> Result<i32> {
    eprintln!("Error: {}", super::one_line(&anyhow::Error::new(e)));
    Ok(1)
}

/// An error that ends `run`/`start`/`exec` with Docker's code (125, or 126/127 for the command).
fn fail(e: RunError) -> Result<i32> {
    let code = e.exit_code();
    let _ = run_error(e);
    Ok(code)
}

// Foreground `run`/`start -a`: SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR* go to the container, as
// Docker's --sig-proxy does.
static PROXY_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn proxy_signal(sig: libc::c_int) {
    let pid = PROXY_PID.load(Ordering::SeqCst);
    if pid > 0 {
        unsafe { libc::kill(pid, sig) };
    }
}

fn proxy_signals(pid: i32) {
    PROXY_PID.store(pid, Ordering::SeqCst);
    for s in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        unsafe { libc::signal(s, proxy_signal as *const () as libc::sighandler_t) };
    }
}

/// Raw mode on this terminal while attached to a container's pty; restored on drop.
struct RawTerminal(Option<libc::termios>);

impl RawTerminal {
    fn enable(want: bool) -> RawTerminal {
        if !want || !std::io::stdin().is_terminal() {
            return RawTerminal(None);
        }
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return RawTerminal(None);
        }
        let saved = t;
        unsafe {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}

/// Docker's refusal of `-it` when stdin is not a terminal (exit 1, before anything is made).
fn check_tty(tty: bool, stdin: bool) -> Option<i32> {
    if tty && stdin && !std::io::stdin().is_terminal() {
        eprintln!("the input device is not a TTY");
        return Some(1);
    }
    None
}

/// Start attached: wait for the exit, return its code.
fn attached(engine: &Engine, c: &Container, stdin: bool) -> Result<i32> {
    if let Some(code) = check_tty(c.config.tty, stdin) {
        return Ok(code);
    }
    let _raw = RawTerminal::enable(c.config.tty && stdin);
    let started = match er::start(
        engine,
        c,
        Attach {
            output: true,
            stdin,
            size: if c.config.tty {
                WinSize::of_caller()
            } else {
                None
            },
        },
    ) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    proxy_signals(started.pid);
    if c.config.tty {
        super::run_flags::follow_window_size(started.pid);
    }
    match started.wait_exit() {
        Some(code) => Ok(code),
        None => {
            // The monitor died: the container is finished by whoever looks next; do it now.
            let st = er::reconcile(engine, c)?;
            eprintln!("Error: container {}: its monitor died", c.name);
            Ok(if st.exit_code != 0 { st.exit_code } else { 125 })
        }
    }
}

pub fn run(cli: &Cli, a: &RunArgs) -> Result<i32> {
    if !a.detach
        && let Some(code) = check_tty(a.opts.tty, a.opts.interactive)
    {
        return Ok(code);
    }
    // Docker's `run` reports every failure of its own with 125.
    let engine = match cli.engine() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("Error: {}", super::one_line(&e));
            return Ok(125);
        }
    };
    let config = match a.opts.to_config(&a.cmd) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {}", super::one_line(&e));
            return Ok(125);
        }
    };
    if let Err(e) = a.opts.ensure_image(&engine, &a.image) {
        eprintln!("Error: {}", super::one_line(&e));
        return Ok(125);
    }
    let c = match super::container::create_container(&engine, a.name.as_deref(), &a.image, config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {}", super::one_line(&e));
            return Ok(125);
        }
    };
    if a.detach {
        match er::start(
            &engine,
            &c,
            Attach {
                output: false,
                stdin: false,
                size: None,
            },
        ) {
            Ok(_) => {
                println!("{}", c.id);
                Ok(0)
            }
            Err(e) => {
                if c.config.auto_remove && engine.containers().remove(&c).is_ok() {
                    engine.remove_anonymous_volumes(&c);
                }
                fail(e)
            }
        }
    } else {
        let code = attached(&engine, &c, a.opts.interactive)?;
        // A start that failed leaves a Created container; --rm removes it all the same.
        if c.config.auto_remove
            && let Ok(c) = engine.containers().get(&c.id)
            && engine.containers().remove(&c).is_ok()
        {
            engine.remove_anonymous_volumes(&c);
        }
        Ok(code)
    }
}

pub fn start(cli: &Cli, a: &StartArgs) -> Result<i32> {
    let engine = cli.engine()?;
    if (a.attach || a.interactive) && a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let mut failed = Vec::new();
    for name in &a.containers {
        let c = match engine.containers().get(name) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("Error: {e}");
                failed.push(name.as_str());
                continue;
            }
        };
        if a.attach || a.interactive {
            return attached(&engine, &c, a.interactive);
        }
        let st = er::reconcile(&engine, &c)?;
        if st.status == Status::Running {
            // Docker: starting a running container is a no-op.
            println!("{name}");
            continue;
        }
        match er::start(
            &engine,
            &c,
            Attach {
                output: false,
                stdin: false,
                size: None,
            },
        ) {
            Ok(_) => println!("{name}"),
            Err(e) => {
                // Docker: the reason, a summary line after all, and 1 (not the 126/127 of run).
                let _ = run_error(e);
                failed.push(name.as_str());
            }
        }
    }
    if failed.is_empty() {
        return Ok(0);
    }
    eprintln!("Error: failed to start containers: {}", failed.join(", "));
    Ok(1)
}

fn each(
    cli: &Cli,
    names: &[String],
    f: impl Fn(&Engine, &Container) -> Result<(), RunError>,
) -> Result<i32> {
    let engine = cli.engine()?;
    let mut code = 0;
    for name in names {
        match engine.containers().get(name) {
            Ok(c) => match f(&engine, &c) {
                Ok(()) => println!("{name}"),
                Err(e) => {
                    code = 1;
                    let _ = run_error(e);
                }
            },
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn stop(cli: &Cli, a: &StopArgs) -> Result<i32> {
    each(cli, &a.containers, |e, c| {
        er::stop(e, c, a.time.map(Duration::from_secs))
    })
}

pub fn kill(cli: &Cli, a: &KillArgs) -> Result<i32> {
    let sig = er::parse_signal(&a.signal)?;
    each(cli, &a.containers, |e, c| er::kill(e, c, sig))
}

pub fn restart(cli: &Cli, a: &RestartArgs) -> Result<i32> {
    each(cli, &a.containers, |e, c| {
        er::stop(e, c, a.time.map(Duration::from_secs))?;
        let c = e.containers().get(&c.id)?;
        er::start(
            e,
            &c,
            Attach {
                output: false,
                stdin: false,
                size: None,
            },
        )
        .map(|_| ())
    })
}

pub fn wait(cli: &Cli, a: &WaitArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let mut code = 0;
    for name in &a.containers {
        let r = engine
            .containers()
            .get(name)
            .map_err(RunError::from)
            .and_then(|c| er::wait(&engine, &c));
        match r {
            Ok(n) => println!("{n}"),
            Err(e) => {
                code = 1;
                let _ = run_error(e);
            }
        }
    }
    Ok(code)
}

pub fn exec(cli: &Cli, a: &ExecArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let c = match engine.containers().get(&a.container) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {e}");
            return Ok(1);
        }
    };
    if !a.detach
        && let Some(code) = check_tty(a.tty, a.interactive)
    {
        return Ok(code);
    }
    // A process started in a frozen cgroup would hang frozen with it: refused, as Docker does.
    if strata::runtime::freezer::is_paused(&c.id) {
        eprintln!(
            "Error response from daemon: Container {} is paused, unpause the container before exec",
            c.id
        );
        return Ok(1);
    }
    let _raw = RawTerminal::enable(a.tty && a.interactive && !a.detach);
    match er::exec(
        &engine,
        &c,
        ExecOpts {
            args: a.cmd.clone(),
            env: &a.env,
            workdir: a.workdir.as_deref(),
            user: a.user.as_deref(),
            interactive: a.interactive,
            tty: a.tty,
            detach: a.detach,
        },
    ) {
        Ok(code) => Ok(code),
        // Docker: a process that cannot be started in the container (not found, not
        // executable, an unknown user) is 126, whatever the cause; a container that is not
        // running, like every other refusal, is 1.
        Err(e @ (RunError::Exec { .. } | RunError::StartFailed { .. })) => {
            let _ = run_error(e);
            Ok(126)
        }
        Err(e) => run_error(e),
    }
}

/// Docker's `logs -t` format: RFC 3339 with nine fraction digits.
fn fixed_time(t: &str) -> String {
    match strata::image::config::parse_time(t) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        None => t.to_string(),
    }
}

fn print_entry(e: &logs::Entry, timestamps: bool) -> std::io::Result<()> {
    let text = if timestamps {
        format!("{} {}", fixed_time(&e.time), e.log)
    } else {
        e.log.clone()
    };
    if e.stream == "stderr" {
        let mut err = std::io::stderr().lock();
        err.write_all(text.as_bytes())?;
        err.flush()
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}

pub fn logs(cli: &Cli, a: &LogsArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let c = engine.containers().get(&a.container)?;
    let path = er::container_dir(&engine.root, &c).log();
    let tail: Option<usize> = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse()
                .map_err(|_| anyhow::anyhow!("invalid --tail value {n:?}: a number or \"all\""))?,
        ),
    };
    let now = chrono::Utc::now();
    let since = a
        .since
        .as_deref()
        .map(|s| super::timearg::parse_nanos(s, now))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|s| super::timearg::parse_nanos(s, now))
        .transpose()?;
    // Docker: --since is inclusive, --until exclusive; entries without a readable time pass.
    let in_window = |e: &logs::Entry| match super::timearg::rfc3339_nanos(&e.time) {
        Some(t) => since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u),
        None => true,
    };
    let mut follower = a.follow.then(|| Follower::at_end(&path));
    let entries: Vec<logs::Entry> = logs::read_all(&path)?
        .into_iter()
        .filter(|e| in_window(e))
        .collect();
    let skip = tail.map(|n| entries.len().saturating_sub(n)).unwrap_or(0);
    for e in &entries[skip..] {
        print_entry(e, a.timestamps)?;
    }
    if let Some(f) = follower.as_mut() {
        loop {
            let running = er::reconcile(&engine, &c)
                .map(|s| matches!(s.status, Status::Running | Status::Starting))
                .unwrap_or(false);
            for e in f.poll()? {
                if in_window(&e) {
                    print_entry(&e, a.timestamps)?;
                }
            }
            let past_until =
                until.is_some_and(|u| chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) >= u);
            if !running || past_until {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(0)
}

pub fn monitor(cli: &Cli, a: &MonitorCmdArgs) -> Result<i32> {
    let driver = cli.storage_driver.clone().unwrap_or_default();
    Ok(er::monitor_main(&cli.root, &driver, &a.args))
}

/// `ps` STATUS as Docker words it: `Created`, `Up 3 seconds`, `Exited (0) 2 minutes ago`.
pub fn status_text(root: &std::path::Path, c: &Container) -> String {
    let st: RunState = er::state_of(root, c);
    let since = |t: &str| {
        strata::image::config::parse_time(t)
            .map(|t| human_duration(chrono::Utc::now() - t))
            .unwrap_or_else(|| "Less than a second".into())
    };
    match (c.state.as_str(), st.status) {
        ("removing", _) => "Removal In Progress".into(),
        (_, Status::Restarting) => format!(
            "Restarting ({}) {} ago",
            st.exit_code,
            since(&st.finished_at)
        ),
        ("running", _) if strata::runtime::freezer::is_paused(&c.id) => {
            format!("Up {} (Paused)", since(&st.started_at))
        }
        ("running", _) => format!("Up {}", since(&st.started_at)),
        ("exited", _) | (_, Status::Exited) => {
            format!("Exited ({}) {} ago", st.exit_code, since(&st.finished_at))
        }
        _ => "Created".into(),
    }
}

/// `inspect`'s State object, as Docker shapes it (the container's monitor checked first).
pub fn state_json(engine: &Engine, c: &Container) -> serde_json::Value {
    let st = er::reconcile(engine, c).unwrap_or_else(|_| er::state_of(&engine.root, c));
    let running = st.status == Status::Running;
    let paused = running && strata::runtime::freezer::is_paused(&c.id);
    let time = |t: &str| {
        if t.is_empty() {
            "0001-01-01T00:00:00Z".to_string()
        } else {
            t.to_string()
        }
    };
    serde_json::json!({
        "Status": if paused { "paused" } else { st.status.docker() },
        "Running": running,
        "Paused": paused,
        "Restarting": st.status == Status::Restarting,
        "OOMKilled": false,
        "Dead": false,
        "Pid": if running { st.pid } else { 0 },
        "ExitCode": st.exit_code,
        "Error": st.error,
        "StartedAt": time(&st.started_at),
        "FinishedAt": time(&st.finished_at),
    })
}
