//! `strata ps` / `container ls`: Docker's columns, `--filter`, `-n`/`-l`, and `--format`
//! templates over Docker's container context fields.

use super::Cli;
use super::filter::Filters;
use super::format::{ago, ellipsis, go_time, table};
use super::template::{RowFormat, Value};
use anyhow::{Result, bail};
use clap::Args;
use std::collections::BTreeMap;
use std::io::Write;
use strata::container::Container;
use strata::engine::Engine;

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
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", allow_negative_numbers = true)]
    last: Option<i64>,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    latest: bool,
    /// Format output using a Go template, `table`, `table TEMPLATE` or `json`
    #[arg(long)]
    format: Option<String>,
}

const FILTERS: &[&str] = &[
    "ancestor",
    "before",
    "expose",
    "exited",
    "health",
    "id",
    "isolation",
    "is-task",
    "label",
    "label!",
    "name",
    "network",
    "publish",
    "since",
    "status",
    "volume",
];

const STATES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

/// The column titles of `table` templates, by field, as Docker names them.
pub const HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Platform", "PLATFORM"),
    ("Label", "LABEL"),
];

/// The container's process as the daemon lists it: path and arguments, an argument holding a
/// space wrapped in single quotes (Docker's `daemon/list.go`).
pub(super) fn argv_of(c: &Container, engine: &Engine) -> Vec<String> {
    let mut argv: Vec<String> = c.config.entrypoint.clone();
    argv.extend(c.config.cmd.iter().cloned());
    if argv.is_empty()
        && let Ok((_, cfg)) = engine.images().config(&c.image_id)
    {
        argv = cfg.strings("Entrypoint");
        argv.extend(cfg.strings("Cmd"));
    }
    argv
}

fn listed_command(argv: &[String]) -> String {
    let mut out = argv.first().cloned().unwrap_or_default();
    for a in argv.iter().skip(1) {
        out.push(' ');
        if a.contains(' ') {
            out.push_str(&format!("'{a}'"));
        } else {
            out.push_str(a);
        }
    }
    out
}

/// Go's `strconv.Quote`.
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The container's labels: the image's, then its own (Docker merges them at create).
pub(super) fn labels_of(c: &Container, engine: &Engine) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if let Ok((_, cfg)) = engine.images().config(&c.image_id)
        && let Some(serde_json::Value::Object(m)) =
            cfg.config.as_ref().and_then(|c| c.get("Labels"))
    {
        for (k, v) in m {
            labels.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    // `-l/--label` of run/create over the image's.
    labels.extend(c.config.labels.clone());
    labels
}

fn exit_code(engine: &Engine, c: &Container) -> i64 {
    strata::engine::run::state_of(&engine.root, c).exit_code as i64
}

/// Whether `c`'s image is `id` or was built on it.
fn descends_from(engine: &Engine, c: &Container, id: &strata::digest::Digest) -> bool {
    let mut cur = Some(c.image_id.clone());
    let mut steps = 0;
    while let Some(d) = cur {
        if d == *id {
            return true;
        }
        steps += 1;
        if steps > 256 {
            return false;
        }
        cur = engine.images().parent_of(&d).ok().flatten();
    }
    false
}

fn keep(engine: &Engine, f: &Filters, all: &[Container], c: &Container) -> Result<bool> {
    let position = |name: &str| -> Result<usize> {
        all.iter()
            .position(|x| x.id.starts_with(name) || x.name == name.trim_start_matches('/'))
            .ok_or_else(|| anyhow::anyhow!("No such container: {name}"))
    };
    let mine = all.iter().position(|x| x.id == c.id).unwrap_or(0);
    // `all` is newest first: before=X keeps those listed after X, since=X those before it.
    for v in f.values("before") {
        if mine <= position(v)? {
            return Ok(false);
        }
    }
    for v in f.values("since") {
        if mine >= position(v)? {
            return Ok(false);
        }
    }
    let labels = if f.has("label") || f.has("label!") {
        labels_of(c, engine)
    } else {
        BTreeMap::new()
    };
    let mut exited_ok = true;
    if f.has("exited") {
        let code = exit_code(engine, c);
        exited_ok = c.state == "exited"
            && f.values("exited")
                .any(|v| v.parse::<i64>().is_ok_and(|n| n == code));
    }
    Ok(exited_ok
        && f.any("status", |s| {
            // A frozen running container is `paused` to Docker's filter, not `running`.
            let paused = c.state == "running" && strata::runtime::freezer::is_paused(&c.id);
            if paused { s == "paused" } else { s == c.state }
        })
        && f.any("id", |v| c.id.starts_with(v))
        && f.any("name", |v| name_matches(v, &c.name))
        && f.labels_match(|k| labels.get(k).map(String::as_str))
        && f.any("ancestor", |v| {
            c.image_ref == v
                || engine
                    .images()
                    .resolve(v)
                    .is_ok_and(|img| descends_from(engine, c, &img.id))
        })
        && f.any("volume", |v| {
            c.config
                .mounts
                .iter()
                .any(|m| m.name == v || m.destination == v || m.source == v)
        })
        && f.any("network", |v| {
            let net = if c.config.network.is_empty() {
                "host"
            } else {
                c.config.network.as_str()
            };
            v == net
        })
        && f.any("health", |v| v == "none")
        && f.any("is-task", |v| v == "false")
        && f.any("isolation", |v| v == "default")
        && !f.has("expose")
        && !f.has("publish"))
}

/// Docker matches `name=` as a regular expression on `/name`; the anchors `^` and `$` and
/// plain substrings are what scripts use.
fn name_matches(pattern: &str, name: &str) -> bool {
    let full = format!("/{name}");
    let (anchored_start, p) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (anchored_end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    [name, full.as_str()]
        .iter()
        .any(|n| match (anchored_start, anchored_end) {
            (true, true) => *n == p,
            (true, false) => n.starts_with(p),
            (false, true) => n.ends_with(p),
            (false, false) => n.contains(p),
        })
}

pub fn ps(cli: &Cli, a: &PsArgs) -> Result<i32> {
    let filters = Filters::parse(&a.filter, FILTERS)?;
    for s in filters.values("status") {
        if !STATES.contains(&s) {
            bail!("invalid filter 'status={s}'");
        }
    }
    for v in filters.values("exited") {
        if v.parse::<i64>().is_err() {
            bail!("invalid filter 'exited={v}'");
        }
    }
    let format = RowFormat::parse(a.format.as_deref())?;
    let engine = cli.engine()?;
    let every = strata::engine::run::refresh(&engine, engine.containers().list()?);
    let last = if a.latest {
        Some(1)
    } else {
        a.last.filter(|n| *n >= 0)
    };
    let show_all = a.all || last.is_some() || filters.has("status") || filters.has("exited");
    let mut list = Vec::new();
    for c in &every {
        if (show_all || matches!(c.state.as_str(), "running" | "restarting"))
            && keep(&engine, &filters, &every, c)?
        {
            list.push(c.clone());
        }
    }
    if let Some(n) = last {
        list.truncate(n as usize);
    }
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
    let wants_size = a.size || a.format.as_deref().is_some_and(|f| f.contains(".Size"));
    let sizes = if wants_size {
        super::containerfs::ps_sizes(&engine, &list)?
    } else {
        Default::default()
    };
    let command = |c: &Container| {
        let cmd = listed_command(&argv_of(c, &engine));
        go_quote(&if a.no_trunc { cmd } else { ellipsis(&cmd, 20) })
    };
    let status = |c: &Container| super::run::status_text(&engine.root, c);
    // The name as typed while it still names the container's image; else the image's ID
    // (Docker's daemon/list.go), short unless --no-trunc.
    let mut still_names: std::collections::HashMap<String, Option<String>> = Default::default();
    let mut image_of = |c: &Container| -> String {
        let current = still_names.entry(c.image_ref.clone()).or_insert_with(|| {
            engine
                .images()
                .resolve(&c.image_ref)
                .ok()
                .map(|r| r.id.to_string())
        });
        if current.as_deref() == Some(c.image_id.to_string().as_str()) {
            c.image_ref.clone()
        } else if a.no_trunc {
            c.image_id.to_string()
        } else {
            c.image_id.short()
        }
    };
    if format.is_default() {
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
            rows.push(vec![
                id_of(c),
                image_of(c),
                command(c),
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
        return Ok(0);
    }
    // Labels come from the image's config: read once per image, not once per container.
    let mut image_labels: std::collections::HashMap<String, BTreeMap<String, String>> =
        Default::default();
    let rows: Vec<Value> = list
        .iter()
        .map(|c| {
            let labels = image_labels
                .entry(c.image_id.to_string())
                .or_insert_with(|| labels_of(c, &engine))
                .clone();
            let label_text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mounts: Vec<String> = c
                .config
                .mounts
                .iter()
                .filter(|m| !m.tmpfs_flag)
                .map(|m| {
                    let n = if m.kind == "volume" {
                        m.name.clone()
                    } else {
                        m.source.clone()
                    };
                    if a.no_trunc { n } else { ellipsis(&n, 15) }
                })
                .collect();
            let network = if c.config.network.is_empty() {
                "host"
            } else {
                c.config.network.as_str()
            };
            Value::Struct(
                "*formatter.ContainerContext",
                vec![
                    ("Command".into(), Value::Str(command(c))),
                    ("CreatedAt".into(), Value::Str(go_time(&c.created))),
                    ("ID".into(), Value::Str(id_of(c))),
                    ("Image".into(), Value::Str(image_of(c))),
                    ("Labels".into(), Value::Str(label_text.join(","))),
                    (
                        "LocalVolumes".into(),
                        Value::Str(super::containerfs::local_volumes(c).to_string()),
                    ),
                    ("Mounts".into(), Value::Str(mounts.join(","))),
                    ("Names".into(), Value::Str(c.name.clone())),
                    ("Networks".into(), Value::str(network)),
                    ("Platform".into(), Value::Null),
                    ("Ports".into(), Value::str("")),
                    ("RunningFor".into(), Value::Str(ago(&c.created))),
                    (
                        "Size".into(),
                        Value::Str(sizes.get(&c.id).cloned().unwrap_or_else(|| "0B".into())),
                    ),
                    ("State".into(), Value::Str(c.state.clone())),
                    ("Status".into(), Value::Str(status(c))),
                    (
                        "\0Labels".into(),
                        Value::Map(
                            labels
                                .into_iter()
                                .map(|(k, v)| (k, Value::Str(v)))
                                .collect(),
                        ),
                    ),
                ],
            )
        })
        .collect();
    format.write(&mut out, &rows, HEADERS)?;
    Ok(0)
}
