//! Container commands, storage side: create, mount, umount, export, rm, ps.

use super::Cli;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use std::io::IsTerminal;
use std::path::PathBuf;
use strata::container::{Container, RunConfig};
use strata::engine::Engine;

/// Create a new container (its writable layer on top of the image)
#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    run: super::run_flags::RunOpts,
    image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

/// Mount a container's root filesystem and print its path
#[derive(Args)]
pub struct MountArgs {
    container: String,
}

/// Unmount a container's root filesystem
#[derive(Args)]
pub struct UmountArgs {
    /// Unmount even if other mounts of it are recorded
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Export a container's filesystem as a tar archive
#[derive(Args)]
pub struct ExportArgs {
    /// Write to a file, instead of stdout
    #[arg(short, long)]
    output: Option<PathBuf>,
    container: String,
}

/// Remove one or more containers
#[derive(Args)]
pub struct RmArgs {
    /// Force the removal (unmounting it first)
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long = "volumes")]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Rename a container
#[derive(Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

/// List port mappings or a specific mapping for the container
#[derive(Args)]
pub struct PortArgs {
    container: String,
    /// PRIVATE_PORT[/PROTO]
    port: Option<String>,
}

/// `strata container …`: every container command under Docker's management-command name,
/// sharing the top-level form's arguments and implementation.
#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum ContainerCmd {
    Commit(super::containerfs::CommitArgs),
    Cp(super::containerfs::CpArgs),
    Create(CreateArgs),
    Diff(super::containerfs::DiffArgs),
    Exec(super::run::ExecArgs),
    Export(ExportArgs),
    Inspect(super::system::InspectArgs),
    Kill(super::run::KillArgs),
    Logs(super::run::LogsArgs),
    #[command(alias = "ps", alias = "list")]
    Ls(super::ps::PsArgs),
    Mount(MountArgs),
    Port(PortArgs),
    Prune(super::containerfs::PruneArgs),
    Rename(RenameArgs),
    Restart(super::run::RestartArgs),
    #[command(alias = "remove")]
    Rm(RmArgs),
    Run(super::run::RunArgs),
    Start(super::run::StartArgs),
    Stop(super::run::StopArgs),
    Umount(UmountArgs),
    Pause(super::pause::PauseArgs),
    Stats(super::pause::StatsArgs),
    Top(super::run_flags::TopArgs),
    Unpause(super::pause::PauseArgs),
    Wait(super::run::WaitArgs),
}

pub fn container_cmd(cli: &Cli, c: &ContainerCmd) -> Result<i32> {
    use super::{containerfs, run};
    match c {
        ContainerCmd::Commit(a) => containerfs::commit(cli, a),
        ContainerCmd::Cp(a) => containerfs::cp(cli, a),
        ContainerCmd::Create(a) => create(cli, a),
        ContainerCmd::Diff(a) => containerfs::diff(cli, a),
        ContainerCmd::Exec(a) => run::exec(cli, a),
        ContainerCmd::Export(a) => export(cli, a),
        ContainerCmd::Inspect(a) if a.size => super::system::inspect(cli, a),
        ContainerCmd::Inspect(a) => inspect_containers(cli, a),
        ContainerCmd::Kill(a) => run::kill(cli, a),
        ContainerCmd::Logs(a) => run::logs(cli, a),
        ContainerCmd::Ls(a) => super::ps::ps(cli, a),
        ContainerCmd::Mount(a) => mount(cli, a),
        ContainerCmd::Port(a) => port(cli, a),
        ContainerCmd::Prune(a) => containerfs::prune(cli, a),
        ContainerCmd::Rename(a) => rename(cli, a),
        ContainerCmd::Restart(a) => run::restart(cli, a),
        ContainerCmd::Rm(a) => rm(cli, a),
        ContainerCmd::Run(a) => run::run(cli, a),
        ContainerCmd::Start(a) => run::start(cli, a),
        ContainerCmd::Stop(a) => run::stop(cli, a),
        ContainerCmd::Umount(a) => umount(cli, a),
        ContainerCmd::Pause(a) => super::pause::pause(cli, a),
        ContainerCmd::Stats(a) => super::pause::stats(cli, a),
        ContainerCmd::Top(a) => super::run_flags::top(cli, a),
        ContainerCmd::Unpause(a) => super::pause::unpause(cli, a),
        ContainerCmd::Wait(a) => run::wait(cli, a),
    }
}

pub fn rename(cli: &Cli, a: &RenameArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let r = engine
        .containers()
        .get(&a.container)
        .and_then(|c| engine.containers().rename(&c, &a.new_name));
    if let Err(e) = r {
        // Docker: the reason, then what failed.
        eprintln!("Error: {e}");
        eprintln!("Error: failed to rename container named {}", a.container);
        return Ok(1);
    }
    Ok(0)
}

/// Docker's `port`: the published ports. strata's networks are `host` and `none`, which
/// publish nothing (Docker prints nothing for those either).
pub fn port(cli: &Cli, a: &PortArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let c = engine.containers().get(&a.container)?;
    if let Some(p) = &a.port {
        let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        if num.parse::<u16>().is_err() {
            bail!("Invalid port: {p}");
        }
        bail!("No public port '{num}/{proto}' published for {}", c.name);
    }
    Ok(0)
}

pub fn create(cli: &Cli, a: &CreateArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let config = a.run.to_config(&a.cmd)?;
    a.run.ensure_image(&engine, &a.image)?;
    let c = create_container(&engine, a.name.as_deref(), &a.image, config)?;
    println!("{}", c.id);
    Ok(0)
}

pub(super) fn create_container(
    engine: &Engine,
    name: Option<&str>,
    image: &str,
    config: RunConfig,
) -> Result<Container> {
    Ok(engine.create_container(name, image, config)?)
}

pub fn mount(cli: &Cli, a: &MountArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let c = engine.containers().get(&a.container)?;
    let p = engine.containers().mount(&c)?;
    println!("{}", p.display());
    Ok(0)
}

pub fn umount(cli: &Cli, a: &UmountArgs) -> Result<i32> {
    let engine = cli.engine()?;
    for name in &a.containers {
        let c = engine.containers().get(name)?;
        engine.containers().unmount(&c, a.force)?;
        println!("{}", c.id);
    }
    Ok(0)
}

pub fn export(cli: &Cli, a: &ExportArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let c = engine.containers().get(&a.container)?;
    if a.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    engine.containers().with_rootfs(&c, |root| -> Result<()> {
        let written = (|| -> Result<()> {
            match &a.output {
                Some(p) => {
                    let f = std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?;
                    strata::archive::tar_directory(root, std::io::BufWriter::new(f), None)?;
                }
                None => strata::archive::tar_directory(
                    root,
                    std::io::BufWriter::new(std::io::stdout().lock()),
                    None,
                )?,
            }
            Ok(())
        })();
        written.with_context(|| format!("exporting container {}", a.container))
    })?;
    Ok(0)
}

pub fn rm(cli: &Cli, a: &RmArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let mut code = 0;
    for name in &a.containers {
        let r = (|| -> Result<bool> {
            let c = match engine.containers().get(name) {
                // Docker: with -f a missing container is not an error.
                Err(strata::container::ContainerError::NotFound(_)) if a.force => return Ok(false),
                r => r?,
            };
            strata::engine::run::prepare_remove(&engine, &c, a.force)?;
            let c = engine.containers().get(name)?;
            if c.mounts > 0 && !a.force {
                bail!("container {name} is mounted; unmount it first or use -f");
            }
            if c.mounts > 0 || engine.driver.is_mounted(&c.cache_id) {
                engine.containers().unmount(&c, true)?;
            }
            engine.containers().remove(&c)?;
            if a.volumes {
                engine.remove_anonymous_volumes(&c);
            }
            Ok(true)
        })();
        match r {
            Ok(true) => println!("{name}"),
            Ok(false) => {}
            Err(e) => {
                eprintln!("Error: {}", super::one_line(&e));
                code = 1;
            }
        }
    }
    Ok(code)
}

/// The command `ps` shows: the container's entrypoint and command, else the image's.
pub(super) fn command_of(c: &Container, engine: &Engine) -> String {
    let mut argv: Vec<String> = c.config.entrypoint.clone();
    argv.extend(c.config.cmd.iter().cloned());
    if argv.is_empty()
        && let Ok((_, cfg)) = engine.images().config(&c.image_id)
    {
        argv = cfg.strings("Entrypoint");
        argv.extend(cfg.strings("Cmd"));
    }
    argv.join(" ")
}

pub fn inspect_containers(cli: &Cli, a: &super::system::InspectArgs) -> Result<i32> {
    if let Some(f) = a
        .format
        .as_deref()
        .filter(|f| !f.is_empty() && *f != "json")
    {
        super::template::Template::parse(f)?;
    }
    let engine = cli.engine()?;
    let mut docs = Vec::new();
    let mut failed = false;
    for n in &a.names {
        match engine.containers().get(n) {
            Ok(c) => docs.push(super::inspect::container_doc(&engine, &c, a.size)),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    super::inspect::print(&docs, a.format.as_deref(), failed)
}
