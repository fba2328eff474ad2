//! Image commands: load, save, import, images, history, tag, rmi, image inspect/prune.

use super::Cli;
use super::filter::{Filters, glob_match, parse_until};
use super::format::{ago, ellipsis, go_time, human_size, table};
use super::template::{RowFormat, Value};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use strata::engine::import::ImportSource;
use strata::engine::save::SaveFormat;
use strata::image::{ImageRecord, Reference};

/// Load images from a tar archive (docker save or OCI layout), from a file or stdin
#[derive(Args)]
pub struct LoadArgs {
    /// Read from a tar archive file instead of stdin
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

/// Save one or more images to a tar archive (streamed to stdout by default)
#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file, instead of stdout
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Archive format: docker (manifest.json + OCI layout) or oci
    #[arg(long, default_value = "docker", value_parser = ["docker", "oci", "docker-archive", "oci-archive"])]
    format: String,
    #[arg(required = true)]
    images: Vec<String>,
}

/// Import the contents from a tarball or directory to create a filesystem image
#[derive(Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    message: Option<String>,
    /// File, directory or - for stdin
    source: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

/// List images
#[derive(Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output using a Go template, `table`, `table TEMPLATE` or `json`
    #[arg(long)]
    format: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Only images of this repository (and tag)
    reference: Option<String>,
}

/// Show the history of an image
#[derive(Args)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Format output using a Go template, `table`, `table TEMPLATE` or `json`
    #[arg(long)]
    format: Option<String>,
    image: String,
}

/// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
#[derive(Args)]
pub struct TagArgs {
    source: String,
    target: String,
}

/// Remove one or more images
#[derive(Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

/// Display detailed information on one or more images
#[derive(Args)]
pub struct ImageInspectArgs {
    /// Format output using a Go template or `json`
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    images: Vec<String>,
}

/// Remove unused images
#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub(super) all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub(super) force: bool,
    /// Provide filter values (e.g. 'until=<timestamp>', 'label=k=v')
    #[arg(long = "filter")]
    pub(super) filter: Vec<String>,
}

/// `strata image …`: every image command under Docker's management-command name, sharing
/// the top-level form's arguments and implementation.
#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum ImageCmd {
    Build(super::build::BuildArgs),
    History(HistoryArgs),
    Import(ImportArgs),
    Inspect(ImageInspectArgs),
    Load(LoadArgs),
    #[command(alias = "list", alias = "images")]
    Ls(ImagesArgs),
    Prune(PruneArgs),
    Pull(super::registry::PullArgs),
    Push(super::registry::PushArgs),
    #[command(alias = "rmi", alias = "remove")]
    Rm(RmiArgs),
    Save(SaveArgs),
    Tag(TagArgs),
}

pub fn image_cmd(cli: &Cli, c: &ImageCmd) -> Result<i32> {
    match c {
        ImageCmd::Build(a) => super::build::build(cli, a),
        ImageCmd::History(a) => history(cli, a),
        ImageCmd::Import(a) => import(cli, a),
        ImageCmd::Inspect(a) => inspect_images(cli, a),
        ImageCmd::Load(a) => load(cli, a),
        ImageCmd::Ls(a) => images(cli, a),
        ImageCmd::Prune(a) => prune(cli, a),
        ImageCmd::Pull(a) => super::registry::pull(cli, a),
        ImageCmd::Push(a) => super::registry::push(cli, a),
        ImageCmd::Rm(a) => rmi(cli, a),
        ImageCmd::Save(a) => save(cli, a),
        ImageCmd::Tag(a) => tag(cli, a),
    }
}

pub fn load(cli: &Cli, a: &LoadArgs) -> Result<i32> {
    let engine = cli.engine()?;
    if a.input.is_none() && std::io::stdin().is_terminal() {
        bail!("requested load from stdin, but stdin is empty");
    }
    let what = a
        .input
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "stdin".into());
    let loaded = engine
        .load(a.input.as_deref())
        .with_context(|| format!("loading {what}"))?;
    if !a.quiet {
        for l in loaded {
            if l.names.is_empty() {
                println!("Loaded image ID: {}", l.id);
            }
            for n in l.names {
                println!("Loaded image: {}", n.familiar());
            }
        }
    }
    Ok(0)
}

pub fn save(cli: &Cli, a: &SaveArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let format = if a.format.starts_with("oci") {
        SaveFormat::Oci
    } else {
        SaveFormat::Docker
    };
    match &a.output {
        Some(p) => {
            // Write next to the destination and rename: a failed save leaves no half archive.
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = tempfile_in(dir)?;
            let f = std::fs::File::create(&tmp.0)
                .with_context(|| format!("creating {}", tmp.0.display()))?;
            engine.save(&a.images, format, &f)?;
            f.sync_all()?;
            std::fs::rename(&tmp.0, p).with_context(|| format!("writing {}", p.display()))?;
            std::mem::forget(tmp);
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            engine.save(&a.images, format, std::io::stdout().lock())?;
        }
    }
    Ok(0)
}

struct TempOut(PathBuf);
impl Drop for TempOut {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
fn tempfile_in(dir: &std::path::Path) -> Result<TempOut> {
    Ok(TempOut(dir.join(format!(
        ".strata-save-{}",
        strata::atomic_file::random_hex(6)
    ))))
}

pub fn import(cli: &Cli, a: &ImportArgs) -> Result<i32> {
    let reference = a
        .reference
        .as_deref()
        .map(Reference::parse_tagged)
        .transpose()?;
    let engine = cli.engine()?;
    let path = PathBuf::from(&a.source);
    let source = if a.source == "-" {
        ImportSource::Stdin
    } else {
        ImportSource::Path(&path)
    };
    let id = engine
        .import(source, reference.as_ref(), &a.change, a.message.as_deref())
        .with_context(|| format!("importing {}", a.source))?;
    println!("{id}");
    Ok(0)
}

fn sorted_images(engine: &strata::engine::Engine) -> Result<Vec<ImageRecord>> {
    let mut list = engine.images().list()?;
    list.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    Ok(list)
}

pub fn images(cli: &Cli, a: &ImagesArgs) -> Result<i32> {
    let filters = Filters::parse(
        &a.filter,
        &[
            "dangling",
            "label",
            "label!",
            "before",
            "since",
            "reference",
            "until",
        ],
    )?;
    let dangling = filters.bool("dangling")?;
    let format = RowFormat::parse(a.format.as_deref())?;
    let engine = cli.engine()?;
    let filter = a.reference.as_deref().map(Reference::parse).transpose()?;
    let id_of = |r: &ImageRecord| {
        if a.no_trunc {
            r.id.to_string()
        } else {
            r.id.short()
        }
    };
    let created_of = |name: &str| -> Result<String> { Ok(engine.images().resolve(name)?.created) };
    let before: Vec<String> = filters
        .values("before")
        .map(created_of)
        .collect::<Result<_>>()?;
    let since: Vec<String> = filters
        .values("since")
        .map(created_of)
        .collect::<Result<_>>()?;
    let until: Vec<chrono::DateTime<chrono::Utc>> = filters
        .values("until")
        .map(parse_until)
        .collect::<Result<_>>()?;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    let parents = if a.all {
        Default::default()
    } else {
        engine.images().parents()?
    };
    for img in sorted_images(&engine)? {
        let untagged = img.tags.is_empty() && img.digests.is_empty();
        if untagged && parents.contains(&img.id.to_string()) {
            continue;
        }
        if dangling.is_some_and(|d| d != img.tags.is_empty())
            || before.iter().any(|b| img.created >= *b)
            || since.iter().any(|b| img.created <= *b)
            || until
                .iter()
                .any(|u| strata::image::config::parse_time(&img.created).is_none_or(|t| t >= *u))
        {
            continue;
        }
        if filters.has("label") || filters.has("label!") {
            let (_, cfg) = engine.images().config(&img.id)?;
            let labels = cfg.config.as_ref().and_then(|c| c.get("Labels")).cloned();
            let get = |k: &str| {
                labels
                    .as_ref()
                    .and_then(|l| l.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            let owned: std::collections::BTreeMap<String, String> = filters
                .values("label")
                .chain(filters.values("label!"))
                .filter_map(|f| {
                    let k = f.split_once('=').map_or(f, |(k, _)| k);
                    get(k).map(|v| (k.to_string(), v))
                })
                .collect();
            if !filters.labels_match(|k| owned.get(k).map(String::as_str)) {
                continue;
            }
        }
        // Docker shows on each row the digest recorded for that row's repository.
        let digest_of = |repo: &str| {
            img.digests
                .iter()
                .find(|d| d.familiar_repository() == repo)
                .and_then(|d| d.digest.as_ref())
                .map(|d| d.to_string())
        };
        let mut entries: Vec<(String, String)> = img
            .tags
            .iter()
            .map(|t| (t.familiar_repository(), t.tag.clone().unwrap_or_default()))
            .collect();
        if entries.is_empty() {
            entries = img
                .digests
                .iter()
                .map(|d| (d.familiar_repository(), "<none>".into()))
                .collect();
        }
        if entries.is_empty() {
            entries.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in entries {
            if let Some(f) = &filter
                && (f.familiar_repository() != repo || f.tag.as_ref().is_some_and(|t| *t != tag))
            {
                continue;
            }
            let digest = digest_of(&repo);
            if filters.has("reference")
                && !filters.values("reference").any(|p| {
                    glob_match(p, &repo)
                        || (tag != "<none>" && glob_match(p, &format!("{repo}:{tag}")))
                })
            {
                continue;
            }
            let mut row = vec![repo.clone(), tag.clone()];
            if a.digests {
                row.push(digest.clone().unwrap_or_else(|| "<none>".into()));
            }
            row.extend([id_of(&img), ago(&img.created), human_size(img.size)]);
            json_rows.push(Value::Struct(
                "*formatter.ImageContext",
                vec![
                    ("Containers".into(), Value::str("N/A")),
                    ("CreatedAt".into(), Value::Str(go_time(&img.created))),
                    ("CreatedSince".into(), Value::Str(ago(&img.created))),
                    (
                        "Digest".into(),
                        Value::Str(digest.clone().unwrap_or_else(|| "<none>".into())),
                    ),
                    ("ID".into(), Value::Str(id_of(&img))),
                    ("Repository".into(), Value::Str(repo)),
                    ("SharedSize".into(), Value::str("N/A")),
                    ("Size".into(), Value::Str(human_size(img.size))),
                    ("Tag".into(), Value::Str(tag)),
                    ("UniqueSize".into(), Value::str("N/A")),
                    ("VirtualSize".into(), Value::Str(human_size(img.size))),
                ],
            ));
            rows.push((img.id.clone(), row));
        }
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for (id, _) in &rows {
            if seen.insert(id.clone()) {
                writeln!(
                    out,
                    "{}",
                    if a.no_trunc {
                        id.to_string()
                    } else {
                        id.short()
                    }
                )?;
            }
        }
        return Ok(0);
    }
    if !format.is_default() {
        format.write(&mut out, &json_rows, IMAGE_HEADERS)?;
        return Ok(0);
    }
    let mut header = vec!["REPOSITORY".to_string(), "TAG".into()];
    if a.digests {
        header.push("DIGEST".into());
    }
    header.extend(["IMAGE ID".into(), "CREATED".into(), "SIZE".into()]);
    let mut t = vec![header];
    t.extend(rows.into_iter().map(|(_, r)| r));
    table(&mut out, &t)?;
    Ok(0)
}

const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("VirtualSize", "VIRTUAL SIZE"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
];

const HISTORY_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

pub fn history(cli: &Cli, a: &HistoryArgs) -> Result<i32> {
    let format = RowFormat::parse(a.format.as_deref())?;
    let engine = cli.engine()?;
    let rec = engine.images().resolve(&a.image)?;
    let (_, cfg) = engine.images().config(&rec.id)?;
    let layers = engine.layers().chain(&cfg.rootfs.diff_ids)?;
    // Pair history entries with layers: each entry that is not an empty layer owns the next one.
    let mut sizes = layers.iter().map(|l| l.size);
    let mut entries: Vec<(strata::image::config::History, u64)> = Vec::new();
    if cfg.history.is_empty() {
        entries.extend(layers.iter().map(|l| (Default::default(), l.size)));
    }
    for h in &cfg.history {
        let size = if h.empty_layer {
            0
        } else {
            sizes.next().unwrap_or(0)
        };
        entries.push((h.clone(), size));
    }
    entries.reverse();
    let mut out = std::io::stdout().lock();
    let mut rows = vec![vec![
        "IMAGE".into(),
        "CREATED".into(),
        "CREATED BY".into(),
        "SIZE".into(),
        "COMMENT".into(),
    ]];
    // Row i from the top belongs to the i-th ancestor, while ancestors are known locally
    // (images built here record their parent), as Docker's history.
    let mut ids = vec![rec.id.clone()];
    while ids.len() < entries.len() {
        match engine.images().parent_of(ids.last().expect("one"))? {
            Some(p) if engine.images().get(&p)?.is_some() => ids.push(p),
            _ => break,
        }
    }
    let mut ctx_rows = Vec::new();
    for (i, (h, size)) in entries.iter().enumerate() {
        let id = match ids.get(i) {
            Some(d) if a.no_trunc => d.to_string(),
            Some(d) => d.short(),
            None => "<missing>".to_string(),
        };
        if a.quiet {
            writeln!(out, "{id}")?;
            continue;
        }
        let created = h.created.clone().unwrap_or_default();
        let created_by = h.created_by.clone().unwrap_or_default().replace('\t', " ");
        let created_by = if a.no_trunc {
            created_by
        } else {
            ellipsis(&created_by, 45)
        };
        let when = if a.human {
            ago(&created)
        } else {
            created.clone()
        };
        let size_s = if a.human {
            human_size(*size)
        } else {
            size.to_string()
        };
        let comment = h.comment.clone().unwrap_or_default();
        if !format.is_default() {
            let created_at = strata::image::config::parse_time(&created)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
            let since = if a.human {
                ago(&created)
            } else {
                created_at.clone()
            };
            ctx_rows.push(Value::Struct(
                "*formatter.historyContext",
                vec![
                    ("Comment".into(), Value::Str(comment)),
                    ("CreatedAt".into(), Value::Str(created_at)),
                    ("CreatedBy".into(), Value::Str(created_by)),
                    ("CreatedSince".into(), Value::Str(since)),
                    ("ID".into(), Value::Str(id)),
                    ("Size".into(), Value::Str(size_s)),
                ],
            ));
            continue;
        }
        rows.push(vec![id, when, created_by, size_s, comment]);
    }
    if a.quiet {
        return Ok(0);
    }
    if format.is_default() {
        table(&mut out, &rows)?;
    } else {
        format.write(&mut out, &ctx_rows, HISTORY_HEADERS)?;
    }
    Ok(0)
}

pub fn tag(cli: &Cli, a: &TagArgs) -> Result<i32> {
    let target = Reference::parse_tagged(&a.target)?;
    if target.digest.is_some() {
        bail!(
            "refusing to create a tag with a digest reference: {}",
            a.target
        );
    }
    let engine = cli.engine()?;
    let rec = engine.images().resolve(&a.source)?;
    engine.images().tag(&rec.id, &target)?;
    Ok(0)
}

pub fn rmi(cli: &Cli, a: &RmiArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let mut code = 0;
    for img in &a.images {
        match engine.remove_image(img, a.force) {
            Ok(r) => {
                for l in r.lines {
                    println!("{l}");
                }
            }
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn inspect_images(cli: &Cli, a: &ImageInspectArgs) -> Result<i32> {
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
    for n in &a.images {
        match super::inspect::image_doc(&engine, n) {
            Ok(j) => docs.push(j),
            Err(e) => {
                eprintln!("Error: {}", super::one_line(&e));
                failed = true;
            }
        }
    }
    super::inspect::print(&docs, a.format.as_deref(), failed)
}

/// The images `image prune --filter` lets go: created before every `until`, labels as given.
pub(super) type ImageTest = Box<dyn Fn(&strata::engine::Engine, &ImageRecord) -> bool>;

pub(super) fn prune_filter(args: &[String]) -> Result<ImageTest> {
    let f = Filters::parse(args, &["until", "label", "label!"])?;
    let until: Vec<chrono::DateTime<chrono::Utc>> =
        f.values("until").map(parse_until).collect::<Result<_>>()?;
    Ok(Box::new(move |engine, rec| {
        let created = strata::image::config::parse_time(&rec.created);
        if until.iter().any(|u| created.is_none_or(|t| t >= *u)) {
            return false;
        }
        if !f.has("label") && !f.has("label!") {
            return true;
        }
        let labels = engine
            .images()
            .config(&rec.id)
            .ok()
            .and_then(|(_, c)| c.config)
            .and_then(|c| c.get("Labels").cloned())
            .unwrap_or_default();
        f.labels_match(|k| labels.get(k).and_then(|v| v.as_str()))
    }))
}

pub fn prune(cli: &Cli, a: &PruneArgs) -> Result<i32> {
    if !a.force {
        let what = if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        if !super::confirmed(&format!("WARNING! This will remove {what}."))? {
            return Ok(0);
        }
    }
    let wanted = prune_filter(&a.filter)?;
    let engine = cli.engine()?;
    let (lines, freed) = engine.prune_images_matching(a.all, &|r| wanted(&engine, r))?;
    if !lines.is_empty() {
        println!("Deleted Images:");
        for l in lines {
            println!("{l}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(freed));
    Ok(0)
}
