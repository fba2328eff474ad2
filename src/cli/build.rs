//! `strata build` and `strata builder prune`.

use super::Cli;
use super::format::human_size;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use strata::engine::build::{BuildError, BuildOptions};
use strata::image::Reference;

/// Build an image from a Dockerfile
#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short, long = "tag")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile"; "-" reads it from stdin)
    #[arg(short, long = "file")]
    file: Option<String>,
    /// Set build-time variables (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Always attempt to pull a newer version of the image (accepted; bases are pulled when missing)
    #[arg(long)]
    pull: bool,
    /// Set metadata for an image
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Networking mode for the RUN instructions: host (default) or none
    #[arg(long, default_value = "host")]
    network: String,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Set target platform for build (os/arch[/variant]; RUN needs the host's or an emulator)
    #[arg(long)]
    platform: Option<String>,
    /// Timestamp for the image's dates and copied files (default: $SOURCE_DATE_EPOCH)
    #[arg(long = "source-date-epoch", env = "SOURCE_DATE_EPOCH")]
    source_date_epoch: Option<i64>,
    /// The build context: a directory, a tar archive, or "-" (a tar on stdin)
    context: String,
}

/// Manage builds
#[derive(Subcommand)]
pub enum BuilderCmd {
    /// Remove build cache
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused build cache, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

/// Removes a directory tree when dropped (an unpacked tar context).
struct TempTree(Option<PathBuf>);
impl Drop for TempTree {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

fn unpack_context(engine: &strata::engine::Engine, input: Box<dyn Read>) -> Result<PathBuf> {
    let dir = engine
        .tmp_dir()?
        .join(format!("context-{}", strata::atomic_file::random_hex(6)));
    std::fs::create_dir_all(&dir)?;
    let (_, r) = strata::archive::compression::decompress(input)?;
    strata::archive::apply_layer(
        &dir,
        r,
        strata::archive::WhiteoutFormat::Apply,
        &mut std::io::sink(),
    )
    .context("unpacking the build context")?;
    Ok(dir)
}

pub fn build(cli: &Cli, a: &BuildArgs) -> Result<i32> {
    // A typo in --platform is refused before anything is read or pulled.
    if let Some(p) = &a.platform {
        strata::image::platform::WantedPlatform::parse(Some(p))
            .with_context(|| format!("--platform {p}"))?;
    }
    if a.file.as_deref() == Some("-") && a.context == "-" {
        bail!("the Dockerfile and the context cannot both come from stdin");
    }
    let engine = cli.engine()?;
    let mut tmp = TempTree(None);
    let context: PathBuf = if a.context == "-" {
        let d = unpack_context(&engine, Box::new(std::io::stdin()))?;
        tmp.0 = Some(d.clone());
        d
    } else {
        let p = Path::new(&a.context);
        let md = std::fs::metadata(p).with_context(|| {
            format!("unable to prepare context: path {:?} not found", a.context)
        })?;
        if md.is_dir() {
            std::fs::canonicalize(p)?
        } else {
            let d = unpack_context(&engine, Box::new(std::fs::File::open(p)?))?;
            tmp.0 = Some(d.clone());
            d
        }
    };
    let (dockerfile_name, dockerfile) = match a.file.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            ("Dockerfile".to_string(), s)
        }
        Some(f) => {
            let here = Path::new(f);
            let path = if here.exists() && tmp.0.is_none() {
                here.to_path_buf()
            } else {
                context.join(f)
            };
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("unable to read Dockerfile {}", path.display()))?;
            (f.to_string(), text)
        }
        None => {
            let path = context.join("Dockerfile");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("unable to read Dockerfile {}", path.display()))?;
            ("Dockerfile".to_string(), text)
        }
    };
    let tags = a
        .tags
        .iter()
        .map(|t| Reference::parse_tagged(t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut build_args = Vec::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(b) {
                    build_args.push((b.clone(), v));
                }
            }
        }
    }
    let labels = a
        .labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    if a.network != "host" && a.network != "none" && a.network != "default" {
        bail!("invalid network mode {:?}: choose host or none", a.network);
    }
    let o = BuildOptions {
        context,
        dockerfile_name,
        dockerfile,
        tags,
        build_args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        labels,
        network: if a.network == "default" {
            "host".into()
        } else {
            a.network.clone()
        },
        quiet: a.quiet,
        source_date_epoch: a.source_date_epoch,
        platform: a.platform.clone(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match engine.build(&o, &mut out) {
        Ok(id) => {
            if let Some(f) = &a.iidfile {
                std::fs::write(f, id.to_string())
                    .with_context(|| format!("writing {}", f.display()))?;
            }
            Ok(0)
        }
        Err(e) => {
            out.flush().ok();
            eprintln!("Error: {e}");
            Ok(match e {
                BuildError::RunFailed { .. } => e.exit_code(),
                _ => 1,
            })
        }
    }
}

pub fn builder_cmd(cli: &Cli, c: &BuilderCmd) -> Result<i32> {
    match c {
        BuilderCmd::Prune(a) => {
            if !a.force {
                eprint!(
                    "WARNING! This will remove all dangling build cache. Are you sure you want to continue? [y/N] "
                );
                let mut s = String::new();
                std::io::stdin().read_line(&mut s)?;
                if !s.trim().eq_ignore_ascii_case("y") {
                    return Ok(0);
                }
            }
            let engine = cli.engine()?;
            let (n, bytes) = engine.prune_build_cache(a.all)?;
            if n > 0 {
                println!("Deleted build cache objects: {n}");
            }
            println!("Total reclaimed space: {}", human_size(bytes));
            Ok(0)
        }
    }
}
