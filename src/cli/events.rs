//! `strata events`: the store's event log (`strata::events`), in Docker's line format
//! (`2026-11-28T08:51:05.123456789Z container create <id> (image=busybox, name=web)`).
//! Without `--until` it follows the log until interrupted, polling the table: strata has
//! no daemon to push events, and the poll is one indexed query.

use super::Cli;
use super::timearg;
use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;
use strata::events::Event;

/// Get real time events from the store
#[derive(Args)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    until: Option<String>,
    /// Filter output based on conditions provided (type, event, container, image)
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format the output: json, or a template such as '{{.Type}} {{.Action}}'
    #[arg(long)]
    format: Option<String>,
}

/// Filters as Docker applies them: values of one key are alternatives, keys must all match.
struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    fn parse(args: &[String]) -> Result<Filters> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in args {
            let Some((k, v)) = a.split_once('=') else {
                bail!("bad format of filter (expected name=value): {a}");
            };
            let k = k.to_lowercase();
            if !matches!(
                k.as_str(),
                "type" | "event" | "container" | "image" | "label"
            ) {
                bail!("invalid filter '{k}'");
            }
            m.entry(k).or_default().push(v.to_string());
        }
        Ok(Filters(m))
    }

    fn matches(&self, e: &Event) -> bool {
        let name = e.attributes.get("name").map(String::as_str);
        self.0.iter().all(|(k, vals)| {
            vals.iter().any(|v| match k.as_str() {
                "type" => e.kind == *v,
                "event" => e.action == *v,
                "container" => {
                    e.kind == "container"
                        && (e.actor.starts_with(v.as_str()) || name == Some(v.as_str()))
                }
                "image" => {
                    e.attributes.get("image").map(String::as_str) == Some(v.as_str())
                        || (e.kind == "image" && (e.actor == *v || name == Some(v.as_str())))
                }
                "label" => {
                    let (lk, lv) = v.split_once('=').unwrap_or((v, ""));
                    e.attributes
                        .get(lk)
                        .is_some_and(|x| lv.is_empty() || x == lv)
                }
                _ => false,
            })
        })
    }
}

/// Docker's time: RFC 3339 with nine fraction digits, `Z` in UTC, else the local offset.
fn time_text(nanos: i64) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(nanos).with_timezone(&chrono::Local);
    let s = t.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string();
    match s.strip_suffix("+00:00") {
        Some(head) => format!("{head}Z"),
        None => s,
    }
}

fn line(e: &Event) -> String {
    let attrs: Vec<String> = e
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{} {} {} {} ({})",
        time_text(e.time_nano),
        e.kind,
        e.action,
        e.actor,
        attrs.join(", ")
    )
}

/// Docker's JSON message for an event (`--format '{{json .}}'`).
fn event_json(e: &Event) -> Value {
    let mut v = json!({
        "Type": e.kind,
        "Action": e.action,
        "Actor": {"ID": e.actor, "Attributes": e.attributes},
        "scope": "local",
        "time": e.time_nano / 1_000_000_000,
        "timeNano": e.time_nano,
    });
    if e.kind == "container" {
        v["status"] = json!(e.action);
        v["id"] = json!(e.actor);
        v["from"] = json!(e.attributes.get("image").cloned().unwrap_or_default());
    }
    v
}

/// `json`, or text with `{{.Path}}` / `{{json .Path}}` fields.
fn render(e: &Event, format: &str) -> Result<String> {
    let v = event_json(e);
    if format == "json" {
        return Ok(v.to_string());
    }
    let mut out = String::new();
    let mut rest = format;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            bail!("template: unclosed action in {format:?}");
        };
        let inner = rest[start + 2..start + end].trim();
        rest = &rest[start + end + 2..];
        let (as_json, path) = match inner.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, inner),
        };
        if !path.starts_with('.') {
            bail!("template: unsupported action {{{{{inner}}}}} in {format:?}");
        }
        let mut cur = &v;
        for key in path.split('.').filter(|k| !k.is_empty()) {
            cur = cur.get(key).unwrap_or(&Value::Null);
        }
        match cur {
            Value::String(s) if !as_json => out.push_str(s),
            Value::Null if !as_json => out.push_str("<no value>"),
            other => out.push_str(&other.to_string()),
        }
    }
    out.push_str(rest);
    Ok(out.replace("\\t", "\t").replace("\\n", "\n"))
}

pub fn events(cli: &Cli, a: &EventsArgs) -> Result<i32> {
    let now = chrono::Utc::now();
    let since = a
        .since
        .as_deref()
        .map(|s| timearg::parse_nanos(s, now))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|s| timearg::parse_nanos(s, now))
        .transpose()?;
    let filters = Filters::parse(&a.filter)?;
    let engine = cli.engine()?;
    let conn = engine.meta.conn();
    // Without --since (and without --until) only what happens from now on, as Docker.
    let mut after = if since.is_none() && until.is_none() {
        strata::events::last_seq(conn)?
    } else {
        0
    };
    let mut out = std::io::stdout().lock();
    loop {
        for e in strata::events::read(conn, after, since, until)? {
            after = e.seq;
            if !filters.matches(&e) {
                continue;
            }
            let text = match &a.format {
                Some(f) => render(&e, f)?,
                None => line(&e),
            };
            writeln!(out, "{text}")?;
        }
        out.flush()?;
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        if until.is_some_and(|u| u <= now) {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
