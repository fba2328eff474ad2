//! Container filesystem commands: `diff`, `commit`, `cp`, `container prune`, `system df`, and
//! the SIZE of `ps -s` / `inspect --size`. The work is in `strata::engine::{commit, copy, df}`.

use super::Cli;
use super::format::{ago, ellipsis, human_size, human_size_prec, table};
use super::template::{RowFormat, Value};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use strata::container::Container;
use strata::engine::Engine;
use strata::engine::commit::CommitOptions;
use strata::engine::copy::CopyOptions;
use strata::image::Reference;

/// Inspect changes to files or directories on a container's filesystem
#[derive(Args)]
pub struct DiffArgs {
    container: String,
}

/// Create a new image from a container's changes
#[derive(Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pause: bool,
    container: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

/// Copy files/folders between a container and the local filesystem
///
/// Use CONTAINER:PATH for the container side; the other side is a host path.
/// `-` for a tar stream: `cp C:PATH -` writes one to stdout, `cp - C:DIR` extracts one from
/// stdin into the container directory.
#[derive(Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short, long)]
    quiet: bool,
    src: String,
    dest: String,
}

/// Remove all stopped containers
#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. 'until=<timestamp>', 'label=k=v')
    #[arg(long = "filter")]
    filter: Vec<String>,
}

/// Show docker disk usage
#[derive(Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    verbose: bool,
    /// Format output using a Go template, `table`, `table TEMPLATE` or `json`
    #[arg(long)]
    format: Option<String>,
}

pub fn diff(cli: &Cli, a: &DiffArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let c = engine.containers().get(&a.container)?;
    let changes = engine
        .container_changes(&c)
        .with_context(|| format!("container {}", a.container))?;
    let mut out = std::io::stdout().lock();
    for ch in changes {
        writeln!(out, "{ch}")?;
    }
    Ok(0)
}

pub fn commit(cli: &Cli, a: &CommitArgs) -> Result<i32> {
    let reference = a
        .reference
        .as_deref()
        .map(Reference::parse_tagged)
        .transpose()?;
    let engine = cli.engine()?;
    let c = engine.containers().get(&a.container)?;
    let id = engine
        .commit(
            &c,
            &CommitOptions {
                message: a.message.as_deref(),
                author: a.author.as_deref(),
                changes: &a.change,
                name: reference.as_ref(),
                pause: a.pause,
            },
        )
        .with_context(|| format!("committing container {}", a.container))?;
    println!("{id}");
    Ok(0)
}

/// Docker's `splitCpArg`: `NAME:PATH` names a container unless the argument is a local path
/// (absolute, or starting with `.`).
fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

pub fn cp(cli: &Cli, a: &CpArgs) -> Result<i32> {
    let opts = CopyOptions {
        follow_link: a.follow_link,
        archive: a.archive,
    };
    let (sc, sp) = if a.src == "-" {
        (None, "-")
    } else {
        split_cp_arg(&a.src)
    };
    let (dc, dp) = if a.dest == "-" {
        (None, "-")
    } else {
        split_cp_arg(&a.dest)
    };
    match (sc, dc) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
        (Some(name), None) => {
            let engine = cli.engine()?;
            let c = engine.containers().get(name)?;
            let sp = if sp.is_empty() { "/" } else { sp };
            if dp == "-" {
                return tar_out(&engine, &c, sp, opts).map(|()| 0);
            }
            engine
                .copy_from_container(&c, sp, Path::new(dp), opts)
                .with_context(|| format!("copying {} to {dp}", a.src))?;
        }
        (None, Some(name)) => {
            let engine = cli.engine()?;
            let c = engine.containers().get(name)?;
            let dp = if dp.is_empty() { "/" } else { dp };
            if sp == "-" {
                return tar_in(&engine, &c, dp).map(|()| 0);
            }
            engine
                .copy_to_container(Path::new(sp), &c, dp, opts)
                .with_context(|| format!("copying {sp} to {}", a.dest))?;
        }
    }
    Ok(0)
}

/// A directory in this process's temp dir, removed on drop (and by the collector if this
/// process dies first: the temp dir belongs to its session).
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new(engine: &Engine) -> Result<ScratchDir> {
        let p = engine
            .tmp_dir()?
            .join(format!("cp-{}", strata::atomic_file::random_hex(6)));
        std::fs::create_dir(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(ScratchDir(p))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `cp C:PATH -`: the copy, made in this process's temp dir, as a tar on stdout (entries
/// named from the source's base name, as Docker's).
fn tar_out(engine: &Engine, c: &Container, src: &str, opts: CopyOptions) -> Result<()> {
    if std::io::stdout().is_terminal() {
        bail!("cowardly refusing to write a tar archive to a terminal; redirect stdout");
    }
    let tmp = ScratchDir::new(engine)?;
    let base = Path::new(src.trim_end_matches("/."))
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "root".into());
    let dest = tmp.path().join(&base);
    engine
        .copy_from_container(c, src, &dest, opts)
        .with_context(|| format!("copying {}:{src}", c.name))?;
    strata::archive::tar_directory(tmp.path(), std::io::stdout().lock(), None)
        .with_context(|| format!("writing {}:{src} as a tar stream", c.name))?;
    Ok(())
}

/// `cp - C:DIR`: a tar from stdin extracted (owners kept, paths confined to the temp dir by
/// the tar reader) into this process's temp dir, then copied into the container directory.
fn tar_in(engine: &Engine, c: &Container, dest: &str) -> Result<()> {
    let tmp = ScratchDir::new(engine)?;
    let mut ar = tar::Archive::new(std::io::stdin().lock());
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    ar.unpack(tmp.path())
        .context("reading the tar stream on stdin")?;
    let src = tmp.path().join(".");
    let opts = CopyOptions {
        follow_link: false,
        archive: true,
    };
    engine
        .copy_to_container(&src, c, dest, opts)
        .with_context(|| format!("extracting the tar stream into {}:{dest}", c.name))?;
    Ok(())
}

pub fn prune(cli: &Cli, a: &PruneArgs) -> Result<i32> {
    if !a.force && !super::confirmed("WARNING! This will remove all stopped containers.")? {
        return Ok(0);
    }
    let wanted = container_prune_filter(&a.filter)?;
    let engine = cli.engine()?;
    let (deleted, freed, code) = prune_containers(&engine, &|c| wanted(&engine, c));
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for id in deleted {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size_prec(freed, 4));
    Ok(code)
}

/// Remove every stopped container not mounted by `strata mount`: the IDs removed, the bytes
/// freed, and 1 if any removal failed (each failure is printed).
/// The containers `container prune --filter` lets go: created before every `until`, labels
/// as given.
pub(super) type ContainerTest = Box<dyn Fn(&Engine, &Container) -> bool>;

pub(super) fn container_prune_filter(args: &[String]) -> Result<ContainerTest> {
    let f = super::filter::Filters::parse(args, &["until", "label", "label!"])?;
    let until: Vec<chrono::DateTime<chrono::Utc>> = f
        .values("until")
        .map(super::filter::parse_until)
        .collect::<Result<_>>()?;
    Ok(Box::new(move |engine, c| {
        let created = strata::image::config::parse_time(&c.created);
        if until.iter().any(|u| created.is_none_or(|t| t >= *u)) {
            return false;
        }
        let labels = super::ps::labels_of(c, engine);
        f.labels_match(|k| labels.get(k).map(String::as_str))
    }))
}

pub(super) fn prune_containers(
    engine: &Engine,
    wanted: &dyn Fn(&Container) -> bool,
) -> (Vec<String>, u64, i32) {
    let list = match engine.containers().list() {
        Ok(l) => strata::engine::run::refresh(engine, l),
        Err(e) => {
            eprintln!("Error: {e}");
            return (Vec::new(), 0, 1);
        }
    };
    // Mounted by `strata mount`: someone is using its files; leave it (rm -f removes it).
    let stopped: Vec<Container> = list
        .into_iter()
        .filter(|c| c.state != "running" && c.mounts == 0 && wanted(c))
        .collect();
    let sizes = engine.container_sizes(&stopped);
    let mut deleted = Vec::new();
    let mut freed = 0u64;
    let mut code = 0;
    for (c, size) in stopped.iter().zip(sizes) {
        let r = (|| -> Result<()> {
            strata::engine::run::prepare_remove(engine, c, false)?;
            let c = engine.containers().get(&c.id)?;
            if c.mounts > 0 {
                return Ok(());
            }
            if engine.driver.is_mounted(&c.cache_id) {
                engine.containers().unmount(&c, true)?;
            }
            engine.containers().remove(&c)?;
            Ok(())
        })();
        match r {
            Ok(()) => {
                freed += size.unwrap_or(0);
                deleted.push(c.id.clone());
            }
            Err(e) => {
                eprintln!("Error: container {}: {}", c.name, super::one_line(&e));
                code = 1;
            }
        }
    }
    (deleted, freed, code)
}

/// Image sizes by image ID (for virtual sizes).
fn image_sizes(engine: &Engine) -> Result<HashMap<String, u64>> {
    Ok(engine
        .images()
        .list()?
        .into_iter()
        .map(|r| (r.id.to_string(), r.size))
        .collect())
}

/// `ps -s` SIZE per container ID: `2B (virtual 103MB)`, as Docker words it.
pub fn ps_sizes(engine: &Engine, list: &[Container]) -> Result<HashMap<String, String>> {
    let images = image_sizes(engine)?;
    let sizes = engine.container_sizes(list);
    Ok(list
        .iter()
        .zip(sizes)
        .map(|(c, r)| {
            let rw = r.unwrap_or(0);
            let root = rw + images.get(&c.image_id.to_string()).copied().unwrap_or(0);
            let s = if root > 0 {
                format!("{} (virtual {})", human_size(rw), human_size(root))
            } else {
                human_size(rw)
            };
            (c.id.clone(), s)
        })
        .collect())
}

/// `inspect --size`: SizeRw and SizeRootFs (the writable layer plus the image's layers).
pub fn add_inspect_sizes(engine: &Engine, c: &Container, j: &mut serde_json::Value) {
    let rw = engine.container_rw_size(c).unwrap_or(0);
    let image = engine
        .images()
        .get(&c.image_id)
        .ok()
        .flatten()
        .map(|r| r.size)
        .unwrap_or(0);
    j["SizeRw"] = json!(rw);
    j["SizeRootFs"] = json!(rw + image);
}

fn df_row(
    kind: &str,
    total: usize,
    active: usize,
    size: u64,
    reclaimable: u64,
    pct: bool,
) -> [String; 5] {
    let rec = if pct && size > 0 {
        format!(
            "{} ({}%)",
            human_size_prec(reclaimable, 4),
            (reclaimable as u128 * 100 / size as u128)
        )
    } else {
        human_size_prec(reclaimable, 4)
    };
    [
        kind.to_string(),
        total.to_string(),
        active.to_string(),
        human_size_prec(size, 4),
        rec,
    ]
}

fn is_active(c: &Container) -> bool {
    ["running", "paused", "restarting"]
        .iter()
        .any(|s| c.state.contains(s))
}

pub fn df(cli: &Cli, a: &DfArgs) -> Result<i32> {
    let format = RowFormat::parse(a.format.as_deref())?;
    let engine = cli.engine()?;
    let mut du = engine.disk_usage()?;
    let list: Vec<Container> = du.containers.iter().map(|u| u.container.clone()).collect();
    let refreshed = strata::engine::run::refresh(&engine, list);
    for (u, c) in du.containers.iter_mut().zip(refreshed) {
        u.container = c;
    }
    let mut out = std::io::stdout().lock();
    if a.verbose && format.is_default() {
        return df_verbose(&engine, &du, &mut out);
    }
    let cache = engine.build_cache_usage()?;
    let cache_size: u64 = cache.iter().map(|c| c.size).sum();
    let vols = engine.volume_usage()?;
    let active_images = du.images.iter().filter(|i| i.containers > 0).count();
    let used: u64 = du
        .images
        .iter()
        .filter(|i| i.containers > 0)
        .map(|i| i.size.saturating_sub(i.shared))
        .sum();
    let c_total: u64 = du.containers.iter().map(|c| c.rw).sum();
    let c_reclaim: u64 = du
        .containers
        .iter()
        .filter(|c| !is_active(&c.container))
        .map(|c| c.rw)
        .sum();
    let c_active = du
        .containers
        .iter()
        .filter(|c| is_active(&c.container))
        .count();
    let rows = [
        df_row(
            "Images",
            du.images.len(),
            active_images,
            // Partial downloads are image data too, and all of it reclaimable.
            du.layers_size + du.partial_downloads,
            du.layers_size.saturating_sub(used) + du.partial_downloads,
            true,
        ),
        df_row(
            "Containers",
            du.containers.len(),
            c_active,
            c_total,
            c_reclaim,
            true,
        ),
        df_row(
            "Local Volumes",
            vols.len(),
            vols.iter().filter(|v| v.1 > 0).count(),
            vols.iter().map(|v| v.2).sum(),
            vols.iter().filter(|v| v.1 == 0).map(|v| v.2).sum(),
            true,
        ),
        df_row("Build Cache", cache.len(), 0, cache_size, cache_size, false),
    ];
    if !format.is_default() {
        let ctx: Vec<Value> = rows
            .iter()
            .map(|r| {
                Value::Struct(
                    "*formatter.diskUsageImagesContext",
                    vec![
                        ("Active".into(), Value::Str(r[2].clone())),
                        ("Reclaimable".into(), Value::Str(r[4].clone())),
                        ("Size".into(), Value::Str(r[3].clone())),
                        ("TotalCount".into(), Value::Str(r[1].clone())),
                        ("Type".into(), Value::Str(r[0].clone())),
                    ],
                )
            })
            .collect();
        format.write(
            &mut out,
            &ctx,
            &[
                ("Type", "TYPE"),
                ("TotalCount", "TOTAL"),
                ("Active", "ACTIVE"),
                ("Size", "SIZE"),
                ("Reclaimable", "RECLAIMABLE"),
            ],
        )?;
        return Ok(0);
    }
    let mut t = vec![
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
            .map(String::from)
            .to_vec(),
    ];
    t.extend(rows.into_iter().map(|r| r.to_vec()));
    table(&mut out, &t)?;
    Ok(0)
}

fn df_verbose(
    engine: &Engine,
    du: &strata::engine::df::DiskUsage,
    out: &mut impl Write,
) -> Result<i32> {
    writeln!(out, "Images space usage:\n")?;
    let mut images: Vec<&strata::engine::df::ImageUsage> = du.images.iter().collect();
    images.sort_by(|a, b| {
        b.record
            .created
            .cmp(&a.record.created)
            .then(a.record.id.cmp(&b.record.id))
    });
    let mut t = vec![
        [
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE",
            "SHARED SIZE",
            "UNIQUE SIZE",
            "CONTAINERS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for i in images {
        let (repo, tag) = match i.record.tags.first() {
            Some(r) => (
                r.familiar_repository(),
                r.tag.clone().unwrap_or_else(|| "<none>".into()),
            ),
            None => ("<none>".into(), "<none>".into()),
        };
        t.push(vec![
            repo,
            tag,
            i.record.id.short(),
            ago(&i.record.created),
            human_size(i.size),
            human_size_prec(i.shared, 4),
            human_size_prec(i.size.saturating_sub(i.shared), 4),
            i.containers.to_string(),
        ]);
    }
    table(out, &t)?;

    writeln!(out, "\nContainers space usage:\n")?;
    let mut t = vec![
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "LOCAL VOLUMES",
            "SIZE",
            "CREATED",
            "STATUS",
            "NAMES",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for u in &du.containers {
        let c = &u.container;
        let cmd = super::container::command_of(c, engine);
        t.push(vec![
            c.id[..12].to_string(),
            c.image_ref.clone(),
            format!("\"{}\"", ellipsis(&cmd, 20)),
            local_volumes(c).to_string(),
            human_size(u.rw),
            ago(&c.created),
            super::run::status_text(&engine.root, c),
            c.name.clone(),
        ]);
    }
    table(out, &t)?;

    writeln!(out, "\nLocal Volumes space usage:\n")?;
    let mut vt = vec![["VOLUME NAME", "LINKS", "SIZE"].map(String::from).to_vec()];
    for (v, links, size) in engine.volume_usage()? {
        vt.push(vec![v.name, links.to_string(), human_size_prec(size, 4)]);
    }
    table(out, &vt)?;

    let cache = engine.build_cache_usage()?;
    let cache_size: u64 = cache.iter().map(|c| c.size).sum();
    writeln!(
        out,
        "\nBuild cache usage: {}\n",
        human_size_prec(cache_size, 4)
    )?;
    let mut t = vec![
        [
            "CACHE ID",
            "CACHE TYPE",
            "SIZE",
            "CREATED",
            "LAST USED",
            "USAGE",
            "SHARED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in &cache {
        let hex = c.key.strip_prefix("sha256:").unwrap_or(&c.key);
        t.push(vec![
            hex[..12.min(hex.len())].to_string(),
            "regular".into(),
            human_size_prec(c.size, 4),
            ago(&c.created),
            ago(&c.last_used),
            c.uses.to_string(),
            "false".into(),
        ]);
    }
    table(out, &t)?;
    Ok(0)
}

/// Docker's LOCAL VOLUMES of a container: its mounts of local volumes.
pub(super) fn local_volumes(c: &Container) -> usize {
    c.config
        .mounts
        .iter()
        .filter(|m| m.kind == "volume")
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_args_split_like_docker() {
        assert_eq!(split_cp_arg("c1:/etc/passwd"), (Some("c1"), "/etc/passwd"));
        assert_eq!(split_cp_arg("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split_cp_arg("./x:y"), (None, "./x:y"));
        assert_eq!(split_cp_arg("plain"), (None, "plain"));
        assert_eq!(split_cp_arg("c1:"), (Some("c1"), ""));
    }

    #[test]
    fn df_rows_like_docker() {
        assert_eq!(
            df_row("Images", 5, 2, 335_200_000, 333_216_000, true),
            ["Images", "5", "2", "335.2MB", "333.2MB (99%)"]
        );
        assert_eq!(
            df_row("Containers", 3, 2, 3_145_728, 0, true),
            ["Containers", "3", "2", "3.146MB", "0B (0%)"]
        );
        assert_eq!(
            df_row("Local Volumes", 0, 0, 0, 0, true),
            ["Local Volumes", "0", "0", "0B", "0B"]
        );
    }
}
