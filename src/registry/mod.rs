//! Image registries: the OCI distribution API over blocking HTTP (ureq + rustls), Docker's
//! credential file and auth challenges, and pull/push progress in Docker's words.
//!
//! Knows nothing of the store: `engine::pull` and `engine::push` drive it. A `Client` talks
//! to one registry (host[:port]) and may be shared by several threads (one connection pool,
//! one auth state).
//!
//! Transport rules (documented in README):
//! - https, verified against the system roots plus `*.crt` in `CERTS_D/HOST[:PORT]/`
//!   (`/etc/strata/certs.d`, env `STRATA_CERTS_D`), client certificates `*.cert` + `*.key` there;
//! - plain http is tried after https fails for localhost / 127.0.0.0/8 / ::1 and for insecure
//!   registries (env `STRATA_INSECURE_REGISTRIES`, comma separated, or `insecure HOST[:PORT]`
//!   lines in `/etc/strata/registries.conf`); insecure registries and `--tls-verify=false` also
//!   skip certificate verification.

pub mod auth;
pub mod client;
pub mod progress;

pub use auth::Credentials;
pub use client::{Client, ClientOptions, Payload};
pub use progress::{Progress, Status};

use std::io;

/// `docker.io` is served at `registry-1.docker.io`; every other name is its own host.
pub fn api_host(registry: &str) -> &str {
    if registry == "docker.io" || registry == "index.docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unauthorized: {detail} (registry {registry}; log in with `strata login {registry}`)")]
    Unauthorized { registry: String, detail: String },
    #[error("denied: {detail} (registry {registry})")]
    Denied { registry: String, detail: String },
    #[error("manifest for {reference} not found: manifest unknown: {detail}")]
    ManifestUnknown { reference: String, detail: String },
    #[error("repository {repository} not found: name unknown: {detail}")]
    NameUnknown { repository: String, detail: String },
    #[error("blob {digest} not found in {repository}: blob unknown")]
    BlobUnknown { repository: String, digest: String },
    #[error("toomanyrequests: {detail} (registry {registry}; retry after {retry_after})")]
    TooManyRequests {
        registry: String,
        detail: String,
        retry_after: String,
    },
    #[error(
        "TLS failure talking to registry {registry}: {detail} (CA certificates: {certs_dir}/{registry}/*.crt; --tls-verify=false skips verification)"
    )]
    Tls {
        registry: String,
        detail: String,
        certs_dir: String,
    },
    #[error("cannot connect to registry {registry} ({url}): connection refused")]
    ConnectionRefused { registry: String, url: String },
    #[error("registry {registry}: {what}: {detail}")]
    Transport {
        registry: String,
        what: String,
        detail: String,
    },
    #[error("registry {registry}: {what}: unexpected HTTP status {status}: {detail}")]
    Status {
        registry: String,
        what: String,
        status: u16,
        detail: String,
    },
    #[error("registry {registry}: {msg}")]
    Invalid { registry: String, msg: String },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

impl RegistryError {
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            RegistryError::ManifestUnknown { .. }
                | RegistryError::NameUnknown { .. }
                | RegistryError::BlobUnknown { .. }
        )
    }
}
