//! `strata version`, in Docker's layout: a Client and a Server section. strata has no daemon
//! (the command line is the engine), so both describe this binary; Docker's "Go version" is
//! the Rust compiler's, its runc component is the libcontainer crate strata runs containers
//! with, and there is no API version to report.

use super::Cli;
use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};
use std::io::Write;

/// Show the strata version information
#[derive(Args)]
pub struct VersionArgs {
    /// Format the output: json, or a {{.Path.To.Field}} template
    #[arg(short, long)]
    format: Option<String>,
}

const VERSION: &str = env!("CARGO_PKG_VERSION");
const RUSTC: &str = env!("STRATA_RUSTC_VERSION");
const LIBCONTAINER: &str = env!("STRATA_LIBCONTAINER_VERSION");
const NO_API: &str = "none (no daemon: the command line is the engine)";

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

fn kernel() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Docker's `docker version --format '{{json .}}'` keys, with strata's values.
fn data() -> Value {
    let os = std::env::consts::OS;
    json!({
        "Client": {
            "Platform": {"Name": "strata"},
            "Version": VERSION,
            "ApiVersion": NO_API,
            "GoVersion": format!("rustc {RUSTC}"),
            "Os": os,
            "Arch": arch(),
            "Context": "default",
        },
        "Server": {
            "Platform": {"Name": "strata (daemonless)"},
            "Components": [
                {"Name": "Engine", "Version": VERSION, "Details": {
                    "ApiVersion": NO_API, "GoVersion": format!("rustc {RUSTC}"),
                    "Os": os, "Arch": arch(), "KernelVersion": kernel(), "Experimental": "false"}},
                {"Name": "libcontainer", "Version": LIBCONTAINER, "Details": {}},
            ],
            "Version": VERSION,
            "ApiVersion": NO_API,
            "GoVersion": format!("rustc {RUSTC}"),
            "Os": os,
            "Arch": arch(),
            "KernelVersion": kernel(),
        },
    })
}

/// A label padded so values start in column 21, as Docker's.
fn line(indent: usize, label: &str, value: &str) -> String {
    let head = format!("{}{label}:", " ".repeat(indent));
    format!("{head:<20}{value}")
}

pub fn version(_cli: &Cli, a: &VersionArgs) -> Result<i32> {
    let d = data();
    let mut out = std::io::stdout().lock();
    if let Some(f) = &a.format {
        writeln!(out, "{}", render(&d, f)?)?;
        return Ok(0);
    }
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let c = &d["Client"];
    let srv = &d["Server"];
    let engine = &srv["Components"][0]["Details"];
    let lines = [
        "Client:".to_string(),
        line(1, "Version", &s(&c["Version"])),
        line(1, "API version", &s(&c["ApiVersion"])),
        line(1, "Go version", &s(&c["GoVersion"])),
        line(1, "OS/Arch", &format!("{}/{}", s(&c["Os"]), s(&c["Arch"]))),
        line(1, "Context", &s(&c["Context"])),
        String::new(),
        format!("Server: {}", s(&srv["Platform"]["Name"])),
        " Engine:".to_string(),
        line(2, "Version", &s(&srv["Version"])),
        line(2, "API version", &s(&engine["ApiVersion"])),
        line(2, "Go version", &s(&engine["GoVersion"])),
        line(
            2,
            "OS/Arch",
            &format!("{}/{}", s(&engine["Os"]), s(&engine["Arch"])),
        ),
        line(2, "Kernel version", &s(&engine["KernelVersion"])),
        line(2, "Experimental", &s(&engine["Experimental"])),
        " libcontainer:".to_string(),
        line(2, "Version", LIBCONTAINER),
    ];
    writeln!(out, "{}", lines.join("\n"))?;
    Ok(0)
}

/// `json`, `{{json .}}`, `{{json .Client}}` or `{{.Server.Version}}`: enough for the version
/// checks scripts make.
fn render(d: &Value, f: &str) -> Result<String> {
    if f == "json" {
        return Ok(d.to_string());
    }
    let inner = f
        .trim()
        .strip_prefix("{{")
        .and_then(|s| s.strip_suffix("}}"))
        .map(str::trim);
    let Some(inner) = inner else {
        bail!("template: unsupported --format {f:?}: use json or {{{{.Path.To.Field}}}}");
    };
    let (as_json, path) = match inner.strip_prefix("json ") {
        Some(p) => (true, p.trim()),
        None => (false, inner),
    };
    let mut v = d;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        v = v
            .get(key)
            .ok_or_else(|| anyhow::anyhow!("template: {f}: can't evaluate field {key}"))?;
    }
    Ok(match v {
        Value::String(s) if !as_json => s.clone(),
        v => v.to_string(),
    })
}
