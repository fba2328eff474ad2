//! `pause`, `unpause` and `stats`: the commands that act on or read a running container's
//! cgroups.

use super::Cli;
use super::format::{bytes_size, human_size, table};
use super::template::{RowFormat, Value as TValue};
use anyhow::Result;
use clap::Args;
use std::io::Write;
use strata::runtime::cgroup_stats::{self, Sample};

/// Pause all processes within one or more containers
#[derive(Args)]
pub struct PauseArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Display a live stream of container(s) resource usage statistics
#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', or a Go template)
    #[arg(long)]
    format: Option<String>,
    containers: Vec<String>,
}

fn each(cli: &Cli, names: &[String], verb: &str, paused: bool) -> Result<i32> {
    let engine = cli.engine()?;
    let mut failed = Vec::new();
    for n in names {
        let r = engine
            .containers()
            .get(n)
            .map_err(anyhow::Error::from)
            .and_then(|c| {
                if paused {
                    strata::engine::pause::pause(&engine, &c)?;
                } else {
                    strata::engine::pause::unpause(&engine, &c)?;
                }
                Ok(())
            });
        match r {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from daemon: {}", super::one_line(&e));
                failed.push(n.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        eprintln!("Error: failed to {verb} containers: [{}]", failed.join(" "));
        Ok(1)
    }
}

pub fn pause(cli: &Cli, a: &PauseArgs) -> Result<i32> {
    each(cli, &a.containers, "pause", true)
}

pub fn unpause(cli: &Cli, a: &PauseArgs) -> Result<i32> {
    each(cli, &a.containers, "unpause", false)
}

const STATS_HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// Docker's `stats`: CPU % over about a second, memory (page cache excluded) against the
/// limit or the host's memory, network (none: containers share the host's network or have
/// none), block I/O and PIDs; `--no-stream` prints one table, otherwise it refreshes every
/// second until interrupted.
pub fn stats(cli: &Cli, a: &StatsArgs) -> Result<i32> {
    let format = RowFormat::parse(a.format.as_deref())?;
    let engine = cli.engine()?;
    let store = engine.containers();
    let list = if a.containers.is_empty() {
        store.list()?
    } else {
        a.containers
            .iter()
            .map(|n| store.get(n))
            .collect::<Result<Vec<_>, _>>()?
    };
    let running = |c: &strata::container::Container| {
        strata::engine::run::reconcile(&engine, c)
            .is_ok_and(|s| s.status == strata::runtime::state::Status::Running)
    };
    let shown: Vec<_> = list
        .into_iter()
        .filter(|c| a.all || !a.containers.is_empty() || running(c))
        .collect();
    let mut prev: Vec<Sample> = shown.iter().map(|c| cgroup_stats::sample(&c.id)).collect();
    let mut out = std::io::stdout().lock();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(1000));
        let now: Vec<Sample> = shown.iter().map(|c| cgroup_stats::sample(&c.id)).collect();
        let mut rows = Vec::new();
        let mut table_rows = vec![
            STATS_HEADERS[1..]
                .iter()
                .map(|(_, h)| h.to_string())
                .collect::<Vec<_>>(),
        ];
        for ((c, before), after) in shown.iter().zip(&prev).zip(&now) {
            let up = running(c);
            let id = if a.no_trunc {
                c.id.clone()
            } else {
                c.id[..12].to_string()
            };
            let (cpu, mem, mem_pct, block, pids) = if up {
                let pct = if after.mem_limit > 0 {
                    after.mem_usage as f64 / after.mem_limit as f64 * 100.0
                } else {
                    0.0
                };
                (
                    format!("{:.2}%", cgroup_stats::cpu_percent(before, after)),
                    format!(
                        "{} / {}",
                        bytes_size(after.mem_usage),
                        bytes_size(after.mem_limit)
                    ),
                    format!("{pct:.2}%"),
                    format!(
                        "{} / {}",
                        human_size(after.blk_read),
                        human_size(after.blk_write)
                    ),
                    after.pids.to_string(),
                )
            } else {
                (
                    "0.00%".into(),
                    "0B / 0B".into(),
                    "0.00%".into(),
                    "0B / 0B".into(),
                    "0".into(),
                )
            };
            let container = a
                .containers
                .iter()
                .find(|n| store.get(n).is_ok_and(|x| x.id == c.id))
                .cloned()
                .unwrap_or_else(|| id.clone());
            table_rows.push(vec![
                id.clone(),
                c.name.clone(),
                cpu.clone(),
                mem.clone(),
                mem_pct.clone(),
                "0B / 0B".into(),
                block.clone(),
                pids.clone(),
            ]);
            rows.push(TValue::Struct(
                "*formatter.containerStatsContext",
                vec![
                    ("BlockIO".into(), TValue::Str(block)),
                    ("CPUPerc".into(), TValue::Str(cpu)),
                    ("Container".into(), TValue::Str(container)),
                    ("ID".into(), TValue::Str(id)),
                    ("MemPerc".into(), TValue::Str(mem_pct)),
                    ("MemUsage".into(), TValue::Str(mem)),
                    ("Name".into(), TValue::Str(c.name.clone())),
                    ("NetIO".into(), TValue::str("0B / 0B")),
                    ("PIDs".into(), TValue::Str(pids)),
                ],
            ));
        }
        if !a.no_stream {
            // Docker redraws in place on a terminal.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        if format.is_default() {
            table(&mut out, &table_rows)?;
        } else {
            format.write(&mut out, &rows, STATS_HEADERS)?;
        }
        out.flush()?;
        if a.no_stream {
            return Ok(0);
        }
        prev = now;
    }
}
