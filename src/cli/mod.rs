//! Command-line parsing and dispatch: one file per command group.

mod build;
mod container;
mod containerfs;
mod events;
mod filter;
mod format;
mod image;
mod inspect;
mod pause;
mod ps;
mod registry;
mod run;
mod run_flags;
mod system;
mod template;
mod timearg;
mod usage;
mod version;
mod volume;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use strata::engine::Engine;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "A container image and storage engine",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Store root directory
    #[arg(
        long,
        global = true,
        env = "STRATA_ROOT",
        default_value = "/var/lib/strata"
    )]
    root: PathBuf,
    /// Storage driver: overlay or vfs (default: overlay where the filesystem supports it)
    #[arg(long = "storage-driver", global = true, env = "STRATA_STORAGE_DRIVER")]
    storage_driver: Option<String>,
    #[command(subcommand)]
    cmd: Command,
}

/// The top-level forms. Each is also a `container …`/`image …`/`system …` form (as Docker's),
/// sharing its arguments and its implementation with it.
#[derive(Subcommand)]
enum Command {
    Build(build::BuildArgs),
    /// Manage builds
    #[command(subcommand)]
    Builder(build::BuilderCmd),
    Load(image::LoadArgs),
    Save(image::SaveArgs),
    Import(image::ImportArgs),
    Images(image::ImagesArgs),
    History(image::HistoryArgs),
    Tag(image::TagArgs),
    Rmi(image::RmiArgs),
    /// Manage images
    #[command(subcommand)]
    Image(image::ImageCmd),
    Create(container::CreateArgs),
    Mount(container::MountArgs),
    Umount(container::UmountArgs),
    Export(container::ExportArgs),
    Rm(container::RmArgs),
    Ps(ps::PsArgs),
    Rename(container::RenameArgs),
    Port(container::PortArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(container::ContainerCmd),
    Diff(containerfs::DiffArgs),
    Commit(containerfs::CommitArgs),
    Cp(containerfs::CpArgs),
    Run(run::RunArgs),
    Start(run::StartArgs),
    Stop(run::StopArgs),
    Kill(run::KillArgs),
    Restart(run::RestartArgs),
    Wait(run::WaitArgs),
    Exec(run::ExecArgs),
    Logs(run::LogsArgs),
    Top(run_flags::TopArgs),
    Pause(pause::PauseArgs),
    Unpause(pause::PauseArgs),
    Stats(pause::StatsArgs),
    #[command(name = "__monitor", hide = true)]
    Monitor(run::MonitorCmdArgs),
    Pull(registry::PullArgs),
    Push(registry::PushArgs),
    Login(registry::LoginArgs),
    Logout(registry::LogoutArgs),
    Inspect(system::InspectArgs),
    Info(system::InfoArgs),
    Events(events::EventsArgs),
    Version(version::VersionArgs),
    /// Manage the store
    #[command(subcommand)]
    System(system::SystemCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeCmd),
}

impl Cli {
    fn engine(&self) -> Result<Engine> {
        // Said up front, in one line: otherwise a non-root user meets a bare EACCES on a lock,
        // or a silent fall-back to vfs and then a failing chown.
        let uid = rustix::process::geteuid();
        if !uid.is_root() {
            anyhow::bail!(
                "strata needs root: it mounts filesystems and sets file owners (running as uid {}); run it with sudo or as root",
                uid.as_raw()
            );
        }
        Ok(Engine::open(&self.root, self.storage_driver.as_deref())?)
    }
}

pub fn main() -> i32 {
    let cli = match usage::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: the object and the reason. A closed stdout (`| head`) is not an error.
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return 0;
            }
            eprintln!("Error: {}", one_line(&e));
            1
        }
    }
}

fn run(cli: &Cli) -> Result<i32> {
    match &cli.cmd {
        Command::Build(a) => build::build(cli, a),
        Command::Builder(c) => build::builder_cmd(cli, c),
        Command::Load(a) => image::load(cli, a),
        Command::Save(a) => image::save(cli, a),
        Command::Import(a) => image::import(cli, a),
        Command::Images(a) => image::images(cli, a),
        Command::History(a) => image::history(cli, a),
        Command::Tag(a) => image::tag(cli, a),
        Command::Rmi(a) => image::rmi(cli, a),
        Command::Image(c) => image::image_cmd(cli, c),
        Command::Create(a) => container::create(cli, a),
        Command::Mount(a) => container::mount(cli, a),
        Command::Umount(a) => container::umount(cli, a),
        Command::Export(a) => container::export(cli, a),
        Command::Rm(a) => container::rm(cli, a),
        Command::Ps(a) => ps::ps(cli, a),
        Command::Rename(a) => container::rename(cli, a),
        Command::Port(a) => container::port(cli, a),
        Command::Container(c) => container::container_cmd(cli, c),
        Command::Diff(a) => containerfs::diff(cli, a),
        Command::Commit(a) => containerfs::commit(cli, a),
        Command::Cp(a) => containerfs::cp(cli, a),
        Command::Run(a) => run::run(cli, a),
        Command::Start(a) => run::start(cli, a),
        Command::Stop(a) => run::stop(cli, a),
        Command::Kill(a) => run::kill(cli, a),
        Command::Restart(a) => run::restart(cli, a),
        Command::Wait(a) => run::wait(cli, a),
        Command::Exec(a) => run::exec(cli, a),
        Command::Logs(a) => run::logs(cli, a),
        Command::Top(a) => run_flags::top(cli, a),
        Command::Pause(a) => pause::pause(cli, a),
        Command::Unpause(a) => pause::unpause(cli, a),
        Command::Stats(a) => pause::stats(cli, a),
        Command::Monitor(a) => run::monitor(cli, a),
        Command::Pull(a) => registry::pull(cli, a),
        Command::Push(a) => registry::push(cli, a),
        Command::Login(a) => registry::login(cli, a),
        Command::Logout(a) => registry::logout(cli, a),
        Command::Inspect(a) => system::inspect(cli, a),
        Command::Info(a) => system::info(cli, a),
        Command::Events(a) => events::events(cli, a),
        Command::Version(a) => version::version(cli, a),
        Command::System(c) => system::system_cmd(cli, c),
        Command::Volume(c) => volume::volume_cmd(cli, c),
    }
}

/// The error and its causes on one line, skipping a cause whose text the message before it
/// already includes (library errors often embed their source in their own message).
/// Docker's prompt before a prune: the warning, then `Are you sure you want to continue?
/// [y/N]`; true when the user answers y or yes.
pub(crate) fn confirmed(warning: &str) -> Result<bool> {
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}
