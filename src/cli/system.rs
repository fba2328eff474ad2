//! Store-wide commands: info, inspect (containers or images), system fsck.

use super::Cli;
use super::format::human_size;
use super::template::Value;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use strata::engine::migrate::{Event, LayerStatus, SourceKind};

/// Display detailed information on containers or images
#[derive(Args)]
pub struct InspectArgs {
    /// Return JSON for the given type only: container or image
    #[arg(long = "type")]
    kind: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    pub size: bool,
    /// Format output using a Go template or `json`
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Display system-wide information
#[derive(Args)]
pub struct InfoArgs {
    /// Output format: json for the storage driver status pairs
    #[arg(short, long)]
    format: Option<String>,
}

/// Verify every blob and layer against its content address
#[derive(Args)]
pub struct FsckArgs {
    /// Remove what no record names (leftovers of interrupted commands, partial downloads)
    #[arg(long)]
    repair: bool,
}

/// Remove unused data
#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    volumes: bool,
    /// Provide filter values (e.g. 'until=<timestamp>', 'label=k=v')
    #[arg(long = "filter")]
    filter: Vec<String>,
}

/// Adopt every image of a Docker or Podman store (read-only; no network)
#[derive(Args)]
pub struct MigrateArgs {
    /// The store to adopt: docker (overlay2) or podman (containers/storage, overlay)
    #[arg(long, value_parser = ["docker", "podman"])]
    from: String,
    /// Docker's data root (with --from docker)
    #[arg(long = "docker-root", default_value = "/var/lib/docker")]
    docker_root: PathBuf,
    /// containers/storage graph root (with --from podman)
    #[arg(long, default_value = "/var/lib/containers/storage")]
    graphroot: PathBuf,
    /// List what would be adopted and the disk it needs; change nothing
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// Hard-link regular files to the source's instead of reflinking or copying them (the
    /// two stores then share those inodes; needs the same filesystem)
    #[arg(long)]
    link: bool,
}

#[derive(Subcommand)]
pub enum SystemCmd {
    Df(super::containerfs::DfArgs),
    Events(super::events::EventsArgs),
    Fsck(FsckArgs),
    Info(InfoArgs),
    Migrate(MigrateArgs),
    Prune(PruneArgs),
}

pub fn system_cmd(cli: &Cli, c: &SystemCmd) -> Result<i32> {
    match c {
        SystemCmd::Df(a) => super::containerfs::df(cli, a),
        SystemCmd::Events(a) => super::events::events(cli, a),
        SystemCmd::Fsck(a) => fsck(cli, a),
        SystemCmd::Info(a) => info(cli, a),
        SystemCmd::Migrate(a) => migrate(cli, a),
        SystemCmd::Prune(a) => prune(cli, a),
    }
}

pub fn inspect(cli: &Cli, a: &InspectArgs) -> Result<i32> {
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
        let container = if a.kind.as_deref() != Some("image") {
            engine.containers().get(n).ok()
        } else {
            None
        };
        if let Some(c) = container {
            docs.push(super::inspect::container_doc(&engine, &c, a.size));
            continue;
        }
        if a.kind.as_deref() == Some("container") {
            eprintln!("Error: No such container: {n}");
            failed = true;
            continue;
        }
        match super::inspect::image_doc(&engine, n) {
            Ok(j) => docs.push(j),
            Err(_) => {
                eprintln!("Error: No such object: {n}");
                failed = true;
            }
        }
    }
    super::inspect::print(&docs, a.format.as_deref(), failed)
}

pub fn info(cli: &Cli, a: &InfoArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let status = engine.driver.status();
    let containers = strata::engine::run::refresh(&engine, engine.containers().list()?);
    let running = containers.iter().filter(|c| c.state == "running").count();
    let images = engine.images().list()?.len();
    let layers = engine.layers().list()?.len();
    if let Some(f) = a.format.as_deref().filter(|f| !f.is_empty()) {
        let status_pairs: Vec<Value> = status
            .iter()
            .map(|(k, v)| Value::List(vec![Value::str(k.as_str()), Value::str(v.as_str())]))
            .collect();
        let doc = Value::obj([
            ("ID", Value::str("")),
            ("Containers", Value::from(containers.len() as u64)),
            ("ContainersRunning", Value::from(running as u64)),
            ("ContainersPaused", Value::Int(0)),
            (
                "ContainersStopped",
                Value::from((containers.len() - running) as u64),
            ),
            ("Images", Value::from(images as u64)),
            ("Driver", Value::str(engine.driver.name())),
            ("DriverStatus", Value::List(status_pairs)),
            ("Layers", Value::from(layers as u64)),
            (
                "DockerRootDir",
                Value::Str(engine.root.display().to_string()),
            ),
            ("OSType", Value::str("linux")),
            ("Architecture", Value::str(std::env::consts::ARCH)),
            (
                "NCPU",
                Value::from(std::thread::available_parallelism().map_or(1, |n| n.get()) as u64),
            ),
            ("ServerVersion", Value::str(env!("CARGO_PKG_VERSION"))),
        ]);
        let f = if f == "json" { "{{json .}}" } else { f };
        let mut out = std::io::stdout().lock();
        super::template::write_objects(&mut out, Some(f), &[doc])?;
        return Ok(0);
    }
    println!("Server:");
    println!(" Containers: {}", containers.len());
    println!("  Running: {running}");
    println!("  Paused: 0");
    println!("  Stopped: {}", containers.len() - running);
    println!(" Images: {images}");
    println!(" Storage Driver: {}", engine.driver.name());
    for (k, v) in &status {
        println!("  {k}: {v}");
    }
    println!("  Layers: {layers}");
    println!("  Storage Opts: {}", strata::driver::SIZE_LIMIT_SUPPORT);
    println!(" Strata Root Dir: {}", engine.root.display());
    Ok(0)
}

/// Docker's `system prune`: stopped containers, with `--volumes` anonymous volumes no
/// container uses, dangling (with `-a`: unused) images, build cache, then everything no
/// record names.
pub fn prune(cli: &Cli, a: &PruneArgs) -> Result<i32> {
    if !a.force {
        let mut what = vec!["all stopped containers"];
        if a.volumes {
            what.push("all anonymous volumes not used by at least one container");
        }
        what.push(if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        });
        what.push(if a.all {
            "all build cache"
        } else {
            "unused build cache"
        });
        what.push("partial downloads and leftovers of interrupted commands");
        let list: String = what.iter().map(|w| format!("  - {w}\n")).collect();
        if !super::confirmed(&format!("WARNING! This will remove:\n{list}"))? {
            return Ok(0);
        }
    }
    let images_wanted = super::image::prune_filter(&a.filter)?;
    let containers_wanted = super::containerfs::container_prune_filter(&a.filter)?;
    let engine = cli.engine()?;
    let (deleted, freed_c, code) =
        super::containerfs::prune_containers(&engine, &|c| containers_wanted(&engine, c));
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for id in deleted {
            println!("{id}");
        }
        println!();
    }
    let mut freed_v = 0;
    if a.volumes {
        let removed = engine.volumes().prune(false)?;
        if !removed.is_empty() {
            println!("Deleted Volumes:");
            for (n, bytes) in &removed {
                println!("{n}");
                freed_v += bytes;
            }
            println!();
        }
    }
    let (lines, freed_i) = engine.prune_images_matching(a.all, &|r| images_wanted(&engine, r))?;
    if !lines.is_empty() {
        println!("Deleted Images:");
        for l in lines {
            println!("{l}");
        }
        println!();
    }
    let (n, freed_b) = engine.prune_build_cache(a.all)?;
    if n > 0 {
        println!("Deleted build cache objects: {n}");
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size(freed_c + freed_v + freed_i + freed_b)
    );
    Ok(code)
}

pub fn fsck(cli: &Cli, a: &FsckArgs) -> Result<i32> {
    let engine = cli.engine()?;
    if a.repair {
        for l in engine.sweep(strata::engine::gc::Sweep::repair(true))? {
            println!("removed {} ({})", l.what, human_size(l.bytes));
        }
    }
    let t = std::time::Instant::now();
    let cpu0 = cpu_seconds();
    let r = engine.fsck()?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    for p in &r.problems {
        println!("ERROR {p}");
    }
    for n in &r.notes {
        println!("NOTE {n}");
    }
    println!(
        "checked {} images, {} blobs, {} layers; hashed {} in {:.2}s ({:.0} MB/s, {:.0} MB per CPU-second); {} problem(s)",
        r.images,
        r.blobs,
        r.layers,
        human_size(r.bytes_hashed),
        secs,
        r.bytes_hashed as f64 / 1e6 / secs.max(1e-9),
        r.bytes_hashed as f64 / 1e6 / cpu.max(1e-9),
        r.problems.len()
    );
    Ok(if r.problems.is_empty() { 0 } else { 1 })
}

/// User + system CPU time of this process (all threads), to report hashing per core.
fn cpu_seconds() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr());
        u.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

pub fn migrate(cli: &Cli, a: &MigrateArgs) -> Result<i32> {
    let (kind, root) = match a.from.as_str() {
        "docker" => (SourceKind::Docker, &a.docker_root),
        _ => (SourceKind::Podman, &a.graphroot),
    };
    let engine = cli.engine()?;
    if a.dry_run {
        let plan = engine.migrate_plan(kind, root)?;
        for p in &plan.problems {
            eprintln!("warning: {p}");
        }
        println!(
            "{:<14}{:<8}{:<12}{:<12}NAMES",
            "IMAGE ID", "LAYERS", "NEW LAYERS", "NEW SIZE"
        );
        for i in &plan.images {
            let names: Vec<String> = i.names.iter().map(|n| n.familiar()).collect();
            println!(
                "{:<14}{:<8}{:<12}{:<12}{}",
                &i.id.hex()[..12],
                i.layers,
                i.new_layers,
                human_size(i.new_bytes),
                if names.is_empty() {
                    "<none>".to_string()
                } else {
                    names.join(", ")
                }
            );
        }
        println!(
            "would adopt {} images: {} new layers ({} of disk), {} layers already present",
            plan.images.len(),
            plan.layers_new,
            human_size(plan.bytes_needed),
            plan.layers_present
        );
        return Ok(0);
    }
    let tty = std::io::stderr().is_terminal();
    let progress = std::sync::Arc::new(move |e: Event| match e {
        Event::Reading { layer, done, total } => {
            if tty {
                eprint!(
                    "\r\x1b[K{layer}: Adopting {} / {}",
                    human_size(done),
                    human_size(total)
                );
            }
        }
        Event::Layer { layer, status } => {
            let clear = if tty { "\r\x1b[K" } else { "" };
            match status {
                LayerStatus::Adopted { bytes } => {
                    eprintln!("{clear}{layer}: Adopted {}", human_size(bytes))
                }
                LayerStatus::Present => eprintln!("{clear}{layer}: Already exists"),
                LayerStatus::Skipped(why) => eprintln!("{clear}{layer}: Refused: {why}"),
            }
        }
        Event::Image { id, names, skipped } => {
            let clear = if tty { "\r\x1b[K" } else { "" };
            let shown = names
                .iter()
                .find(|n| n.tag.is_some())
                .map(|n| n.familiar())
                .unwrap_or_else(|| id.to_string());
            match skipped {
                None => eprintln!("{clear}Adopted image: {shown}"),
                Some(why) => eprintln!("{clear}Skipped image {shown}: {why}"),
            }
        }
    });
    let t = std::time::Instant::now();
    let sum = engine.migrate(kind, root, a.link, progress)?;
    let secs = t.elapsed().as_secs_f64();
    for p in &sum.problems {
        eprintln!("warning: {p}");
    }
    println!(
        "adopted {} images ({} skipped); layers: {} adopted, {} already present, {} refused; {} in {:.2}s ({:.0} MB/s)",
        sum.images_adopted,
        sum.images_skipped,
        sum.layers_adopted,
        sum.layers_present,
        sum.layers_skipped,
        human_size(sum.bytes),
        secs,
        sum.bytes as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(if sum.images_skipped > 0 || sum.layers_skipped > 0 {
        1
    } else {
        0
    })
}
