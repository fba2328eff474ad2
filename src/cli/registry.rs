//! Registry commands: pull, push, login, logout.

use super::Cli;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use strata::engine::pull::PullOptions;
use strata::engine::push::PushOptions;
use strata::image::Reference;
use strata::registry::auth::{self, Credentials};
use strata::registry::progress::{Printer, Silent};
use strata::registry::{Client, ClientOptions, Progress, RegistryError};

#[derive(Args, Clone)]
pub struct TransportArgs {
    /// Require HTTPS and verify certificates (--tls-verify=false: allow http, skip verification)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    tls_verify: bool,
    /// Treat this registry as insecure (http allowed, TLS unverified); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
}

impl TransportArgs {
    fn options(&self) -> ClientOptions {
        let mut o = ClientOptions::from_env();
        o.tls_verify = self.tls_verify;
        o.insecure.extend(self.insecure.iter().cloned());
        o
    }
}

/// Download an image from a registry
#[derive(Args)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long)]
    all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Platform to pick from a multi-platform image: os/arch[/variant]
    #[arg(long)]
    platform: Option<String>,
    /// Layers downloaded at once
    #[arg(long, default_value_t = 3)]
    max_concurrent_downloads: usize,
    #[command(flatten)]
    transport: TransportArgs,
    /// NAME[:TAG|@DIGEST]
    name: String,
}

/// Upload an image to a registry
#[derive(Args)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Layers uploaded at once
    #[arg(long, default_value_t = 5)]
    max_concurrent_uploads: usize,
    /// Upload blobs in chunks of this many bytes (PATCH) instead of one PUT
    #[arg(long, value_name = "BYTES")]
    chunk_size: Option<u64>,
    #[command(flatten)]
    transport: TransportArgs,
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long)]
    all_tags: bool,
    /// NAME[:TAG]
    name: String,
}

/// Log in to a registry
#[derive(Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    transport: TransportArgs,
    /// Registry (default docker.io)
    server: Option<String>,
}

/// Log out from a registry
#[derive(Args)]
pub struct LogoutArgs {
    /// Registry (default docker.io)
    server: Option<String>,
}

fn printer(quiet: bool) -> Arc<dyn Progress> {
    if quiet {
        Arc::new(Silent)
    } else {
        let tty = std::io::stdout().is_terminal();
        Arc::new(Printer::new(Box::new(std::io::stdout()), tty))
    }
}

pub fn pull(cli: &Cli, a: &PullArgs) -> Result<i32> {
    let shown = Reference::parse(&a.name)
        .map(|r| {
            if a.all_tags || r.tag.is_some() || r.digest.is_some() {
                r.key()
            } else {
                format!("{}:latest", r.key())
            }
        })
        .unwrap_or_else(|_| a.name.clone());
    let engine = cli.engine()?;
    if !a.quiet
        && !a.all_tags
        && Reference::parse(&a.name).is_ok_and(|r| r.tag.is_none() && r.digest.is_none())
    {
        println!("Using default tag: latest");
    }
    let opts = PullOptions {
        client: a.transport.options(),
        platform: a.platform.clone(),
        all_tags: a.all_tags,
        max_concurrent: a.max_concurrent_downloads.max(1),
    };
    let pulled = engine
        .pull(&a.name, &opts, printer(a.quiet))
        .with_context(|| format!("pulling {shown}"))?;
    let mut out = std::io::stdout().lock();
    for p in &pulled {
        if !a.quiet {
            writeln!(out, "Digest: {}", p.digest)?;
            let status = if p.newer {
                "Downloaded newer image"
            } else {
                "Image is up to date"
            };
            writeln!(out, "Status: {status} for {}", p.reference.familiar())?;
        }
        writeln!(out, "{}", p.reference.key())?;
    }
    if std::env::var_os("STRATA_PULL_STATS").is_some() {
        let n: u64 = pulled.iter().map(|p| p.bytes_downloaded).sum();
        eprintln!("downloaded {n} bytes");
    }
    Ok(0)
}

pub fn push(cli: &Cli, a: &PushArgs) -> Result<i32> {
    let engine = cli.engine()?;
    let opts = PushOptions {
        client: a.transport.options(),
        max_concurrent: a.max_concurrent_uploads.max(1),
        chunk_size: a.chunk_size,
    };
    let names = if a.all_tags {
        all_tags(&engine, &a.name)?
    } else {
        if !a.quiet
            && Reference::parse(&a.name).is_ok_and(|r| r.tag.is_none() && r.digest.is_none())
        {
            println!("Using default tag: latest");
        }
        vec![a.name.clone()]
    };
    for name in &names {
        let shown = Reference::parse_tagged(name)
            .map(|r| r.key())
            .unwrap_or_else(|_| name.clone());
        let pushed = engine
            .push(name, &opts, printer(a.quiet))
            .with_context(|| format!("pushing {shown}"))?;
        if a.quiet {
            println!("{}", pushed.reference.key());
        } else {
            println!(
                "{}: digest: {} size: {}",
                pushed.tag, pushed.digest, pushed.size
            );
        }
    }
    Ok(0)
}

/// `push --all-tags REPO`: every local tag of the repository, in name order.
fn all_tags(engine: &strata::engine::Engine, name: &str) -> Result<Vec<String>> {
    let r = Reference::parse(name)?;
    if r.tag.is_some() || r.digest.is_some() {
        anyhow::bail!("tag can't be used with --all-tags/-a");
    }
    let mut tags: Vec<String> = engine
        .images()
        .list()?
        .iter()
        .flat_map(|img| img.tags.iter())
        .filter(|t| t.repository() == r.repository())
        .map(|t| t.key())
        .collect();
    tags.sort();
    if tags.is_empty() {
        anyhow::bail!(
            "An image does not exist locally with the tag: {}",
            r.familiar_repository()
        );
    }
    Ok(tags)
}

/// `https://index.docker.io/v1/` → `docker.io`; `host:port/` → `host:port`.
fn registry_name(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io");
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "" => "docker.io".into(),
        h => h.to_string(),
    }
}

fn prompt(label: &str) -> Result<String> {
    eprint!("{label}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn login(_cli: &Cli, a: &LoginArgs) -> Result<i32> {
    let registry = registry_name(a.server.as_deref());
    if a.password.is_some() && a.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    let username = match &a.username {
        Some(u) => u.clone(),
        None if a.password_stdin => bail!("Must provide --username with --password-stdin"),
        None => prompt("Username: ")?,
    };
    let password = if let Some(p) = &a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p.clone()
    } else if a.password_stdin {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        prompt("Password: ")?
    };
    if username.is_empty() || password.is_empty() {
        bail!("logging in to {registry}: username and password are required");
    }
    let creds = Credentials { username, password };
    let mut opts = a.transport.options();
    opts.credentials = Some(creds.clone());
    let client = Client::new(&registry, &opts, vec![])
        .with_context(|| format!("logging in to {registry}"))?;
    client
        .ping()
        .map_err(|e| match e {
            RegistryError::Unauthorized { detail, .. } => anyhow::anyhow!("unauthorized: {detail}"),
            e => e.into(),
        })
        .with_context(|| format!("logging in to {registry} as {}", creds.username))?;
    auth::store_credentials(&opts.docker_config, &registry, &creds)
        .with_context(|| format!("logging in to {registry}"))?;
    eprintln!(
        "WARNING! Your password will be stored unencrypted in {}.",
        opts.docker_config.display()
    );
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(_cli: &Cli, a: &LogoutArgs) -> Result<i32> {
    let registry = registry_name(a.server.as_deref());
    let path = auth::docker_config_path();
    let shown = auth::config_key(&registry);
    if auth::remove_credentials(&path, &registry)
        .with_context(|| format!("logging out of {registry}"))?
    {
        println!("Removing login credentials for {shown}");
    } else {
        println!("Not logged in to {shown}");
    }
    Ok(0)
}
