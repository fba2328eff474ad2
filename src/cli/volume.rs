//! `strata volume create|ls|inspect|rm|prune`, and the volume parts of `inspect` (Docker's
//! `HostConfig.Binds`/`Mounts`/`Tmpfs`, `Config.Volumes`).

use super::Cli;
use super::format::{human_size_prec, table};
use super::template::{RowFormat, Value as TValue};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use strata::container::Container;
use strata::volume::{NewVolume, Volume, VolumeError, VolumeStore};

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    driver: String,
    /// Set metadata for a volume
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    opts: Vec<String>,
    name: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
    /// Provide filter values (e.g. 'dangling=true')
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a Go template, `table`, `table TEMPLATE` or `json`
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go template or `json`
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Do not fail on volumes that do not exist (a volume in use is still refused)
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn volume_cmd(cli: &Cli, c: &VolumeCmd) -> Result<i32> {
    match c {
        VolumeCmd::Create(a) => create(cli, a),
        VolumeCmd::Ls(a) => ls(cli, a),
        VolumeCmd::Inspect(a) => inspect(cli, a),
        VolumeCmd::Rm(a) => rm(cli, a),
        VolumeCmd::Prune(a) => prune(cli, a),
    }
}

const VOLUME_HEADERS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
    ("Availability", "AVAILABILITY"),
    ("Group", "GROUP"),
    ("Status", "STATUS"),
];

fn key_values(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn create(cli: &Cli, a: &CreateArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let lease = engine.lease();
    let v = engine.volumes().create(
        NewVolume {
            name: a.name.as_deref(),
            driver: &a.driver,
            labels: key_values(&a.labels),
            options: key_values(&a.opts),
            anonymous: false,
        },
        &lease,
    )?;
    println!("{}", v.name);
    Ok(0)
}

/// Docker's `volume inspect` document (keys sorted, as Docker prints them).
pub fn volume_json(store: &VolumeStore, v: &Volume) -> Value {
    let map = |m: &BTreeMap<String, String>| {
        if m.is_empty() { Value::Null } else { json!(m) }
    };
    json!({
        "CreatedAt": v.created,
        "Driver": v.driver,
        "Labels": map(&v.labels),
        "Mountpoint": store.mountpoint(&v.name),
        "Name": v.name,
        "Options": map(&v.options),
        "Scope": "local",
    })
}

fn ls(cli: &Cli, a: &LsArgs) -> Result<i32> {
    let format = RowFormat::parse(a.format.as_deref())?;
    let engine = cli.engine()?;
    let store = engine.volumes();
    let mut list = Vec::new();
    for v in store.list()? {
        let mut keep = true;
        for f in &a.filter {
            let (k, val) = f.split_once('=').unwrap_or((f, ""));
            keep &= match k {
                "dangling" => {
                    let dangling = store.users(&v.name)?.is_empty();
                    match val {
                        "true" | "1" => dangling,
                        "false" | "0" => !dangling,
                        _ => bail!("invalid filter 'dangling={val}'"),
                    }
                }
                "name" => v.name.contains(val),
                "driver" => v.driver == val,
                "label" => match val.split_once('=') {
                    Some((lk, lv)) => v.labels.get(lk).is_some_and(|x| x == lv),
                    None => v.labels.contains_key(val),
                },
                _ => bail!("invalid filter '{k}'"),
            };
        }
        if keep {
            list.push(v);
        }
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for v in &list {
            writeln!(out, "{}", v.name)?;
        }
    } else if !format.is_default() {
        let rows: Vec<TValue> = list
            .iter()
            .map(|v| {
                let labels: Vec<String> =
                    v.labels.iter().map(|(k, x)| format!("{k}={x}")).collect();
                let links = store
                    .users(&v.name)
                    .map(|u| u.len().to_string())
                    .unwrap_or_else(|_| "N/A".into());
                TValue::Struct(
                    "*formatter.volumeContext",
                    vec![
                        ("Availability".into(), TValue::str("N/A")),
                        ("Driver".into(), TValue::Str(v.driver.clone())),
                        ("Group".into(), TValue::str("N/A")),
                        ("Labels".into(), TValue::Str(labels.join(","))),
                        ("Links".into(), TValue::Str(links)),
                        (
                            "Mountpoint".into(),
                            TValue::Str(store.mountpoint(&v.name).display().to_string()),
                        ),
                        ("Name".into(), TValue::Str(v.name.clone())),
                        ("Scope".into(), TValue::str("local")),
                        ("Size".into(), TValue::str("N/A")),
                        ("Status".into(), TValue::str("N/A")),
                        (
                            "\0Labels".into(),
                            TValue::Map(
                                v.labels
                                    .iter()
                                    .map(|(k, x)| (k.clone(), TValue::Str(x.clone())))
                                    .collect(),
                            ),
                        ),
                    ],
                )
            })
            .collect();
        format.write(&mut out, &rows, VOLUME_HEADERS)?;
    } else {
        let mut rows = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
        for v in &list {
            rows.push(vec![v.driver.clone(), v.name.clone()]);
        }
        table(&mut out, &rows)?;
    }
    Ok(0)
}

fn inspect(cli: &Cli, a: &InspectArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let store = engine.volumes();
    if let Some(f) = a
        .format
        .as_deref()
        .filter(|f| !f.is_empty() && *f != "json")
    {
        super::template::Template::parse(f)?;
    }
    let mut docs = Vec::new();
    let mut failed = false;
    for n in &a.names {
        match store.get(n) {
            Ok(v) => docs.push(TValue::from(volume_json(&store, &v))),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    super::inspect::print(&docs, a.format.as_deref(), failed)
}

fn rm(cli: &Cli, a: &RmArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let store = engine.volumes();
    let mut code = 0;
    for n in &a.names {
        match store.remove(n) {
            Ok(()) => println!("{n}"),
            Err(VolumeError::NotFound(_)) if a.force => {}
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn prune(cli: &Cli, a: &PruneArgs) -> Result<i32> {
    if !a.force {
        let what = if a.all {
            "all local volumes not used by at least one container"
        } else {
            "anonymous local volumes not used by at least one container"
        };
        if !super::confirmed(&format!("WARNING! This will remove {what}."))? {
            return Ok(0);
        }
    }
    let engine = cli.engine()?;
    let removed = engine.volumes().prune(a.all)?;
    if !removed.is_empty() {
        println!("Deleted Volumes:");
        for (n, _) in &removed {
            println!("{n}");
        }
        println!();
    }
    let freed: u64 = removed.iter().map(|(_, b)| b).sum();
    println!("Total reclaimed space: {}", human_size_prec(freed, 4));
    Ok(0)
}

/// The volume parts of Docker's `HostConfig`.
pub fn host_config(c: &Container) -> Value {
    let mounts: Vec<Value> = c
        .config
        .mount_args
        .iter()
        .map(|s| {
            let mut m = serde_json::Map::new();
            let mut vol_opts = serde_json::Map::new();
            let mut tmpfs_opts = serde_json::Map::new();
            m.insert("Type".into(), json!("volume"));
            for field in s.split(',') {
                let (k, v) = field.split_once('=').unwrap_or((field, ""));
                match k {
                    "type" => {
                        m.insert("Type".into(), json!(v));
                    }
                    "source" | "src" => {
                        m.insert("Source".into(), json!(v));
                    }
                    "destination" | "dst" | "target" => {
                        m.insert("Target".into(), json!(v));
                    }
                    "readonly" | "ro" => {
                        m.insert("ReadOnly".into(), json!(matches!(v, "" | "1" | "true")));
                    }
                    "volume-nocopy" => {
                        vol_opts.insert("NoCopy".into(), json!(matches!(v, "" | "1" | "true")));
                    }
                    "tmpfs-size" => {
                        tmpfs_opts.insert("SizeBytes".into(), json!(parse_size(v)));
                    }
                    _ => {}
                }
            }
            if !vol_opts.is_empty() {
                m.insert("VolumeOptions".into(), Value::Object(vol_opts));
            }
            if !tmpfs_opts.is_empty() {
                m.insert("TmpfsOptions".into(), Value::Object(tmpfs_opts));
            }
            Value::Object(m)
        })
        .collect();
    let tmpfs: BTreeMap<String, String> = c
        .config
        .tmpfs
        .iter()
        .map(|t| {
            let (d, o) = t.split_once(':').unwrap_or((t, ""));
            (d.to_string(), o.to_string())
        })
        .collect();
    let or_null = |v: Value, empty: bool| if empty { Value::Null } else { v };
    json!({
        "Binds": or_null(json!(c.config.binds), c.config.binds.is_empty()),
        "Mounts": or_null(json!(mounts), mounts.is_empty()),
        "Tmpfs": or_null(json!(tmpfs), tmpfs.is_empty()),
        "StorageOpt": storage_opt(c),
        "VolumeDriver": "",
        "VolumesFrom": or_null(json!(c.config.volumes_from), c.config.volumes_from.is_empty()),
        "AutoRemove": c.config.auto_remove,
    })
}

/// Docker's `Config.Volumes`: anonymous `-v` destinations and the image's VOLUMEs.
pub fn config_volumes(c: &Container) -> Value {
    let v: BTreeMap<&str, Value> = c
        .config
        .mounts
        .iter()
        .filter(|m| m.anonymous)
        .map(|m| (m.destination.as_str(), json!({})))
        .collect();
    if v.is_empty() { Value::Null } else { json!(v) }
}

/// Docker's `HostConfig.StorageOpt`: a map of the `--storage-opt` pairs, null without any.
fn storage_opt(c: &Container) -> Value {
    let m: BTreeMap<&str, &str> = c
        .config
        .storage_opt
        .iter()
        .filter_map(|o| o.split_once('='))
        .collect();
    if m.is_empty() { Value::Null } else { json!(m) }
}

fn parse_size(s: &str) -> u64 {
    let s = s.trim().to_lowercase();
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s.as_str(), 1),
    };
    num.parse::<u64>().unwrap_or(0) * mult
}
