//! Container commands, storage side: create, mount, umount, export, rm, ps.

use super::Cli;
use super::format::{ago, ellipsis, table};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::{IsTerminal, Write};
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

/// List containers
#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum ContainerCmd {
    Create(CreateArgs),
    Mount(MountArgs),
    Umount(UmountArgs),
    Export(ExportArgs),
    Rm(RmArgs),
    #[command(alias = "ps", alias = "list")]
    Ls(PsArgs),
    Inspect(super::system::InspectArgs),
    Diff(super::containerfs::DiffArgs),
    Commit(super::containerfs::CommitArgs),
    Cp(super::containerfs::CpArgs),
    Prune(super::containerfs::PruneArgs),
}

pub fn container_cmd(cli: &Cli, c: &ContainerCmd) -> Result<i32> {
    match c {
        ContainerCmd::Create(a) => create(cli, a),
        ContainerCmd::Mount(a) => mount(cli, a),
        ContainerCmd::Umount(a) => umount(cli, a),
        ContainerCmd::Export(a) => export(cli, a),
        ContainerCmd::Rm(a) => rm(cli, a),
        ContainerCmd::Ls(a) => ps(cli, a),
        ContainerCmd::Inspect(a) if a.size => super::system::inspect(cli, a),
        ContainerCmd::Inspect(a) => inspect_containers(cli, &a.names),
        ContainerCmd::Diff(a) => super::containerfs::diff(cli, a),
        ContainerCmd::Commit(a) => super::containerfs::commit(cli, a),
        ContainerCmd::Cp(a) => super::containerfs::cp(cli, a),
        ContainerCmd::Prune(a) => super::containerfs::prune(cli, a),
    }
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

pub fn ps(cli: &Cli, a: &PsArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let list: Vec<Container> = strata::engine::run::refresh(&engine, engine.containers().list()?)
        .into_iter()
        .filter(|c| a.all || matches!(c.state.as_str(), "running" | "restarting"))
        .collect();
    let mut out = std::io::stdout().lock();
    let id_of = |c: &Container| {
        if a.no_trunc {
            c.id.clone()
        } else {
            c.id[..12].to_string()
        }
    };
    if a.quiet {
        for c in &list {
            writeln!(out, "{}", id_of(c))?;
        }
        return Ok(0);
    }
    let status = |c: &Container| super::run::status_text(&engine.root, c);
    let sizes = if a.size {
        super::containerfs::ps_sizes(&engine, &list)?
    } else {
        Default::default()
    };
    if a.format == "json" || a.format == "{{json .}}" {
        for c in &list {
            let cmd = command_of(c, &engine);
            writeln!(
                out,
                "{}",
                json!({"Command": format!("{:?}", ellipsis(&cmd, 20)), "CreatedAt": c.created, "ID": id_of(c), "Image": c.image_ref,
                       "Labels": "", "LocalVolumes": super::containerfs::local_volumes(c).to_string(), "Mounts": "", "Names": c.name, "Networks": "", "Ports": "",
                       "RunningFor": ago(&c.created), "Size": sizes.get(&c.id).map_or("0B", String::as_str), "State": c.state, "Status": status(c)})
            )?;
        }
        return Ok(0);
    }
    let mut rows = vec![
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ]
        .map(String::from)
        .to_vec(),
    ];
    if a.size {
        rows[0].push("SIZE".into());
    }
    for c in &list {
        let cmd = command_of(c, &engine);
        let cmd = if a.no_trunc { cmd } else { ellipsis(&cmd, 20) };
        rows.push(vec![
            id_of(c),
            c.image_ref.clone(),
            format!("\"{cmd}\""),
            ago(&c.created),
            status(c),
            String::new(),
            c.name.clone(),
        ]);
        if let Some(s) = sizes.get(&c.id) {
            rows.last_mut().expect("a row").push(s.clone());
        }
    }
    table(&mut out, &rows)?;
    Ok(0)
}

pub fn container_json(engine: &Engine, c: &Container) -> serde_json::Value {
    let mut data = serde_json::Map::new();
    for (k, v) in engine.driver.metadata(&c.cache_id) {
        data.insert(k, json!(v));
    }
    json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.config.cmd.first().cloned().unwrap_or_default(),
        "Args": c.config.cmd.iter().skip(1).collect::<Vec<_>>(),
        "State": super::run::state_json(engine, c),
        "Image": c.image_id.to_string(),
        "Name": format!("/{}", c.name),
        "Driver": engine.driver.name(),
        "GraphDriver": {"Data": if data.is_empty() { serde_json::Value::Null } else { serde_json::Value::Object(data) }, "Name": engine.driver.name()},
        "Mounts": c.config.mounts.iter().filter(|m| !m.tmpfs_flag).map(|m| m.docker_json()).collect::<Vec<_>>(),
        "HostConfig": super::volume::host_config(c),
        "Config": {"Image": c.image_ref, "Cmd": c.config.cmd, "Entrypoint": c.config.entrypoint, "Env": c.config.env,
                   "WorkingDir": c.config.working_dir, "User": c.config.user, "Volumes": super::volume::config_volumes(c),
                   "Hostname": strata::engine::run::hostname_of(c), "Labels": c.config.labels, "Tty": c.config.tty},
    })
}

pub fn inspect_containers(cli: &Cli, names: &[String]) -> Result<i32> {
    let engine = cli.engine()?;
    let mut out = Vec::new();
    let mut code = 0;
    for n in names {
        match engine.containers().get(n) {
            Ok(c) => out.push(container_json(&engine, &c)),
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(code)
}
