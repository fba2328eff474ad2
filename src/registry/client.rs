//! A blocking client for one registry: scheme selection (https, http fallback where allowed),
//! auth (Basic or Bearer tokens, re-negotiated on 401), and the distribution API calls
//! strata needs. Shared by the worker threads of one pull or push.

use super::auth::{self, Challenge, Credentials};
use super::{RegistryError, api_host};
use crate::digest::Digest;
use crate::image::archive_format::{
    MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST,
};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use ureq::http::{self, Method, Response};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::{Agent, Body, SendBody};

/// Largest manifest or index accepted (the distribution spec suggests 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;
const MAX_ERROR_BODY: u64 = 64 << 10;
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How to reach registries: TLS verification, CA directory, insecure hosts, credentials file.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub tls_verify: bool,
    /// `certs.d` directory: `HOST[:PORT]/*.crt` are extra CAs, `*.cert` + `*.key` client certs.
    pub certs_dir: PathBuf,
    /// Registries where plain http and unverified TLS are allowed.
    pub insecure: Vec<String>,
    /// Docker's config.json (credentials).
    pub docker_config: PathBuf,
    /// Use these credentials instead of the ones in the config file (login).
    pub credentials: Option<Credentials>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self::from_env()
    }
}

impl ClientOptions {
    /// Defaults from the environment: `STRATA_CERTS_D` (else /etc/strata/certs.d),
    /// `STRATA_INSECURE_REGISTRIES` plus `insecure HOST` lines of /etc/strata/registries.conf
    /// (env `STRATA_REGISTRIES_CONF`), `DOCKER_CONFIG`.
    pub fn from_env() -> ClientOptions {
        let certs_dir = std::env::var_os("STRATA_CERTS_D")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/strata/certs.d"));
        let mut insecure: Vec<String> = std::env::var("STRATA_INSECURE_REGISTRIES")
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let conf = std::env::var_os("STRATA_REGISTRIES_CONF")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/strata/registries.conf"));
        if let Ok(text) = std::fs::read_to_string(conf) {
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("").trim();
                if let Some(h) = line.strip_prefix("insecure") {
                    insecure.extend(h.split_whitespace().map(str::to_string));
                }
            }
        }
        ClientOptions {
            tls_verify: true,
            certs_dir,
            insecure,
            docker_config: auth::docker_config_path(),
            credentials: None,
        }
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.insecure.iter().any(|h| h == registry)
    }
}

fn is_local(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(registry)
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// What a request sends; re-sendable after an auth challenge.
pub enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes from a reader made by `open` (called again for a retry).
    Stream {
        len: u64,
        open: &'a (dyn Fn() -> io::Result<Box<dyn Read + Send>> + Sync),
    },
}

#[derive(Clone)]
enum AuthState {
    None,
    Basic,
    Bearer { token: String, challenge: Challenge },
}

pub struct Client {
    agent: Agent,
    /// The registry as named in references: `127.0.0.1:5000`, `docker.io`.
    pub registry: String,
    host: String,
    allow_http: bool,
    certs_dir: PathBuf,
    scheme: Mutex<Option<&'static str>>,
    creds: Option<Credentials>,
    auth: Mutex<AuthState>,
    /// Bumped whenever `auth` changes: a request that got a 401 with an older generation
    /// than the current one just retries (another thread negotiated meanwhile) instead of
    /// taking the 401 as refused credentials.
    auth_generation: std::sync::atomic::AtomicU64,
    scopes: Mutex<Vec<String>>,
    /// Count of requests sent (for tests and benchmarks: `STRATA_DEBUG_HTTP`).
    pub requests: std::sync::atomic::AtomicU64,
}

fn load_certs(dir: &Path) -> (Vec<Certificate<'static>>, Option<ClientCert>) {
    let mut cas = Vec::new();
    let mut client = None;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (cas, client);
    };
    let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    names.sort();
    for p in &names {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "crt" {
            if let Ok(pem) = std::fs::read(p) {
                cas.extend(pem_certs(&pem));
            }
        } else if ext == "cert" {
            let key = p.with_extension("key");
            if let (Ok(c), Ok(k)) = (std::fs::read(p), std::fs::read(&key))
                && let Ok(k) = PrivateKey::from_pem(&k)
            {
                let chain = pem_certs(&c);
                if !chain.is_empty() {
                    client = Some(ClientCert::new_with_certs(&chain, k));
                }
            }
        }
    }
    (cas, client)
}

fn pem_certs(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|i| match i {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

impl Client {
    /// A client for `registry` whose tokens will be asked for `scopes`
    /// (e.g. `repository:library/busybox:pull`).
    pub fn new(
        registry: &str,
        opts: &ClientOptions,
        scopes: Vec<String>,
    ) -> Result<Client, RegistryError> {
        let insecure = opts.is_insecure(registry);
        let (mut roots, client_cert) = load_certs(&opts.certs_dir.join(registry));
        let mut tls = TlsConfig::builder()
            .disable_verification(!opts.tls_verify || insecure)
            .client_cert(client_cert);
        if !roots.is_empty() {
            if let Ok(pem) = std::fs::read(SYSTEM_CA_BUNDLE) {
                roots.extend(pem_certs(&pem));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&roots));
        } else if let Ok(pem) = std::fs::read(SYSTEM_CA_BUNDLE) {
            let sys = pem_certs(&pem);
            if !sys.is_empty() {
                tls = tls.root_certs(RootCerts::new_with_certs(&sys));
            }
        }
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls.build())
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(300)))
            .timeout_per_read(Some(Duration::from_secs(300)))
            .max_idle_connections_per_host(16)
            .input_buffer_size(256 << 10)
            .output_buffer_size(256 << 10)
            .build();
        let creds = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => auth::load_credentials(&opts.docker_config, registry)?,
        };
        Ok(Client {
            agent: config.new_agent(),
            registry: registry.to_string(),
            host: api_host(registry).to_string(),
            allow_http: insecure || !opts.tls_verify || is_local(registry),
            certs_dir: opts.certs_dir.clone(),
            scheme: Mutex::new(None),
            creds,
            auth: Mutex::new(AuthState::None),
            auth_generation: Default::default(),
            scopes: Mutex::new(scopes),
            requests: Default::default(),
        })
    }

    /// Ask for one more scope (e.g. pull access to a repository to mount from). A Bearer
    /// token in use is renewed with it.
    pub fn add_scope(&self, scope: String) -> Result<(), RegistryError> {
        {
            let mut s = self.scopes.lock().unwrap();
            if s.contains(&scope) {
                return Ok(());
            }
            s.push(scope);
        }
        let state = self.auth.lock().unwrap().clone();
        if let AuthState::Bearer { challenge, .. } = state {
            let token = self.fetch_token(&challenge)?;
            self.set_auth(AuthState::Bearer { token, challenge });
        }
        Ok(())
    }

    fn base(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.host)
    }

    /// `/v2/...` paths are relative to the registry; Location headers may be absolute.
    fn url(&self, scheme: &str, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base(scheme))
        }
    }

    fn transport_error(&self, what: &str, url: &str, e: ureq::Error) -> RegistryError {
        let text = e.to_string();
        let io_kind = match &e {
            ureq::Error::Io(io) => Some(io.kind()),
            _ => None,
        };
        if io_kind == Some(io::ErrorKind::ConnectionRefused) || text.contains("Connection refused")
        {
            return RegistryError::ConnectionRefused {
                registry: self.registry.clone(),
                url: url.to_string(),
            };
        }
        let tls = matches!(e, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
            || (url.starts_with("https:")
                && (io_kind == Some(io::ErrorKind::InvalidData)
                    || text.contains("certificate")
                    || text.contains("rustls")
                    || text.contains("peer")));
        if tls {
            return RegistryError::Tls {
                registry: self.registry.clone(),
                detail: text,
                certs_dir: self.certs_dir.display().to_string(),
            };
        }
        RegistryError::Transport {
            registry: self.registry.clone(),
            what: what.to_string(),
            detail: text,
        }
    }

    fn auth_header(&self) -> Option<String> {
        match &*self.auth.lock().unwrap() {
            AuthState::None => None,
            AuthState::Basic => self.creds.as_ref().map(Credentials::basic_header),
            AuthState::Bearer { token, .. } => Some(format!("Bearer {token}")),
        }
    }

    fn run_once(
        &self,
        scheme: &str,
        method: &Method,
        path: &str,
        headers: &[(&str, String)],
        body: &Payload,
    ) -> Result<Response<Body>, ureq::Error> {
        let url = self.url(scheme, path);
        let mut b = http::Request::builder().method(method.clone()).uri(&url);
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        // Never send credentials to another host (absolute Location URLs may point elsewhere).
        let same_host = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .is_some_and(|h| h == self.host);
        if same_host && let Some(a) = self.auth_header() {
            b = b.header("Authorization", a);
        }
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if std::env::var_os("STRATA_DEBUG_HTTP").is_some() {
            eprintln!("http: {method} {url}");
        }
        match body {
            Payload::Empty => {
                if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                    self.agent
                        .run(b.header("Content-Length", "0").body(SendBody::none())?)
                } else {
                    self.agent.run(b.body(())?)
                }
            }
            Payload::Bytes(bytes) => self.agent.run(b.body(*bytes)?),
            Payload::Stream { len, open } => {
                let r = open()?;
                self.agent.run(
                    b.header("Content-Length", len.to_string())
                        .body(SendBody::from_owned_reader(r))?,
                )
            }
        }
    }

    /// Send with the registry's scheme (found on first use) and auth (negotiated on 401).
    pub fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Payload,
        what: &str,
    ) -> Result<Response<Body>, RegistryError> {
        use std::sync::atomic::Ordering;
        let mut authed = false;
        loop {
            let generation = self.auth_generation.load(Ordering::SeqCst);
            let resp = self.send_scheme(&method, path, headers, &body, what)?;
            if resp.status() == 401 && !authed {
                authed = true;
                if self.auth_generation.load(Ordering::SeqCst) != generation
                    || self.authenticate(&resp)?
                {
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    fn send_scheme(
        &self,
        method: &Method,
        path: &str,
        headers: &[(&str, String)],
        body: &Payload,
        what: &str,
    ) -> Result<Response<Body>, RegistryError> {
        let known = *self.scheme.lock().unwrap();
        if let Some(s) = known {
            return self
                .run_once(s, method, path, headers, body)
                .map_err(|e| self.transport_error(what, &self.url(s, path), e));
        }
        match self.run_once("https", method, path, headers, body) {
            Ok(r) => {
                *self.scheme.lock().unwrap() = Some("https");
                Ok(r)
            }
            Err(e) => {
                let https_err = self.transport_error(what, &self.url("https", path), e);
                if !self.allow_http {
                    return Err(https_err);
                }
                match self.run_once("http", method, path, headers, body) {
                    // A TLS server answers plain http with 400: the https error is the real one.
                    Ok(r) if r.status() != 400 => {
                        *self.scheme.lock().unwrap() = Some("http");
                        Ok(r)
                    }
                    Ok(_) => Err(https_err),
                    Err(e) => {
                        let http_err = self.transport_error(what, &self.url("http", path), e);
                        match https_err {
                            RegistryError::Tls { .. } => Err(https_err),
                            _ => Err(http_err),
                        }
                    }
                }
            }
        }
    }

    fn set_auth(&self, state: AuthState) {
        *self.auth.lock().unwrap() = state;
        self.auth_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Answer a 401's challenge. Returns false when there is nothing to answer with.
    fn authenticate(&self, resp: &Response<Body>) -> Result<bool, RegistryError> {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(auth::parse_challenges)
            .collect();
        if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = self.fetch_token(c)?;
            self.set_auth(AuthState::Bearer {
                token,
                challenge: c.clone(),
            });
            return Ok(true);
        }
        if challenges.iter().any(|c| c.scheme == "basic") && self.creds.is_some() {
            let mut a = self.auth.lock().unwrap();
            if matches!(*a, AuthState::Basic) {
                return Ok(false); // the credentials were refused
            }
            *a = AuthState::Basic;
            self.auth_generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Ok(true);
        }
        Ok(false)
    }

    fn fetch_token(&self, c: &Challenge) -> Result<String, RegistryError> {
        let realm = c.param("realm").ok_or_else(|| RegistryError::Invalid {
            registry: self.registry.clone(),
            msg: "Bearer challenge without realm".into(),
        })?;
        let mut q: Vec<String> = Vec::new();
        if let Some(s) = c.param("service") {
            q.push(format!("service={}", urlencode(s)));
        }
        let mut scopes = self.scopes.lock().unwrap().clone();
        if let Some(s) = c.param("scope") {
            for s in s.split(' ') {
                if !scopes.iter().any(|x| x == s) {
                    scopes.push(s.to_string());
                }
            }
        }
        for s in &scopes {
            q.push(format!("scope={}", urlencode(s)));
        }
        let url = if q.is_empty() {
            realm.to_string()
        } else if realm.contains('?') {
            format!("{realm}&{}", q.join("&"))
        } else {
            format!("{realm}?{}", q.join("&"))
        };
        let mut req = self.agent.get(&url);
        if let Some(cr) = &self.creds {
            req = req.header("Authorization", cr.basic_header());
        }
        let mut resp = req
            .call()
            .map_err(|e| self.transport_error("getting a token", &url, e))?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                detail: if self.creds.is_some() {
                    "incorrect username or password".into()
                } else {
                    "authentication required".into()
                },
            });
        }
        if status != 200 {
            return Err(self.status_error("getting a token", "", resp));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| self.transport_error("getting a token", &url, e))?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
                registry: self.registry.clone(),
                msg: format!("token response: {e}"),
            })?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| RegistryError::Invalid {
                registry: self.registry.clone(),
                msg: "token response without a token".into(),
            })
    }

    /// Turn an unexpected response into an error that names what failed. `subject` names the
    /// manifest/repository for 404s.
    pub fn status_error(
        &self,
        what: &str,
        subject: &str,
        mut resp: Response<Body>,
    ) -> RegistryError {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                if s.bytes().all(|b| b.is_ascii_digit()) {
                    format!("{s} seconds")
                } else {
                    s.to_string()
                }
            });
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BODY)
            .read_to_vec()
            .unwrap_or_default();
        let (code, message) = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = v.get("errors")?.get(0)?.clone();
                Some((
                    e.get("code")?.as_str()?.to_string(),
                    e.get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("")
                        .to_string(),
                ))
            })
            .unwrap_or_default();
        let detail = if message.is_empty() {
            let t = String::from_utf8_lossy(&body).trim().to_string();
            if t.is_empty() {
                http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("")
                    .to_lowercase()
            } else {
                t.chars().take(200).collect()
            }
        } else {
            message
        };
        let registry = self.registry.clone();
        match (status, code.as_str()) {
            (401, _) | (_, "UNAUTHORIZED") => RegistryError::Unauthorized { registry, detail },
            (403, _) | (_, "DENIED") => RegistryError::Denied { registry, detail },
            (429, _) | (_, "TOOMANYREQUESTS") => RegistryError::TooManyRequests {
                registry,
                detail,
                retry_after: retry_after.unwrap_or_else(|| "an unspecified delay".into()),
            },
            (404, "MANIFEST_UNKNOWN") => RegistryError::ManifestUnknown {
                reference: subject.to_string(),
                detail,
            },
            (404, "NAME_UNKNOWN") => RegistryError::NameUnknown {
                repository: subject
                    .split(['@'])
                    .next()
                    .map(|s| strip_tag(s).to_string())
                    .unwrap_or_default(),
                detail,
            },
            (404, "BLOB_UNKNOWN") => RegistryError::BlobUnknown {
                repository: subject.to_string(),
                digest: what.to_string(),
            },
            (404, _) if what.starts_with("manifest") => RegistryError::ManifestUnknown {
                reference: subject.to_string(),
                detail,
            },
            _ => RegistryError::Status {
                registry,
                what: what.to_string(),
                status,
                detail,
            },
        }
    }

    fn full(&self, repo: &str) -> String {
        format!("{}/{repo}", self.registry)
    }

    /// `GET /v2/` (login): Ok if the credentials (or anonymous access) are accepted.
    pub fn ping(&self) -> Result<(), RegistryError> {
        let resp = self.send(Method::GET, "/v2/", &[], Payload::Empty, "checking /v2/")?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            401 => Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                detail: if self.creds.is_some() {
                    "incorrect username or password".into()
                } else {
                    "authentication required".into()
                },
            }),
            _ => Err(self.status_error("checking /v2/", "", resp)),
        }
    }

    /// Fetch a manifest or index: bytes and media type. `reference` is a tag or a digest.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let accept = [
            MT_OCI_INDEX,
            MT_DOCKER_LIST,
            MT_DOCKER_MANIFEST,
            MT_OCI_MANIFEST,
        ]
        .join(", ");
        let sep = if reference.starts_with("sha256:") {
            "@"
        } else {
            ":"
        };
        let subject = format!("{}{sep}{reference}", self.full(repo));
        let what = format!("manifest {subject}");
        let mut resp = self.send(
            Method::GET,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", accept)],
            Payload::Empty,
            &what,
        )?;
        if resp.status() != 200 {
            return Err(self.status_error(&what, &subject, resp));
        }
        let mt = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(|e| self.transport_error(&what, "", e))?;
        Ok((bytes, mt))
    }

    /// Start reading a blob at `offset`. Returns the response (200: whole blob, 206: from
    /// `offset`); the caller streams its body.
    pub fn get_blob(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<Response<Body>, RegistryError> {
        let what = format!("blob {digest}");
        let headers: Vec<(&str, String)> = if offset > 0 {
            vec![("Range", format!("bytes={offset}-"))]
        } else {
            vec![]
        };
        let resp = self.send(
            Method::GET,
            &format!("/v2/{repo}/blobs/{digest}"),
            &headers,
            Payload::Empty,
            &what,
        )?;
        match resp.status().as_u16() {
            200 | 206 => Ok(resp),
            _ => Err(self.status_error(&what, &self.full(repo), resp)),
        }
    }

    /// A small blob (a config), verified against its digest.
    pub fn get_blob_bytes(
        &self,
        repo: &str,
        digest: &Digest,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let mut resp = self.get_blob(repo, digest, 0)?;
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| self.transport_error(&format!("blob {digest}"), "", e))?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(RegistryError::Invalid {
                registry: self.registry.clone(),
                msg: format!(
                    "blob {digest} of {}: digest mismatch, got {actual}",
                    self.full(repo)
                ),
            });
        }
        Ok(bytes)
    }

    /// `HEAD` a blob: does the repository have it?
    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let what = format!("blob {digest}");
        let resp = self.send(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            Payload::Empty,
            &what,
        )?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_error(&what, &self.full(repo), resp)),
        }
    }

    fn location(&self, resp: &Response<Body>, what: &str) -> Result<String, RegistryError> {
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Invalid {
                registry: self.registry.clone(),
                msg: format!("{what}: upload response without Location"),
            })?;
        if loc.starts_with("http://") || loc.starts_with("https://") {
            Ok(loc.to_string())
        } else {
            let scheme = self.scheme.lock().unwrap().unwrap_or("https");
            Ok(format!(
                "{}{}{loc}",
                self.base(scheme),
                if loc.starts_with('/') { "" } else { "/" }
            ))
        }
    }

    /// Try a cross-repository mount. Ok(None) when mounted; Ok(Some(location)) when the
    /// registry started an ordinary upload instead.
    pub fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<Option<String>, RegistryError> {
        let what = format!("mounting blob {digest} from {from}");
        let resp = self.send(
            Method::POST,
            &format!(
                "/v2/{repo}/blobs/uploads/?mount={digest}&from={}",
                urlencode(from)
            ),
            &[],
            Payload::Empty,
            &what,
        )?;
        match resp.status().as_u16() {
            201 => Ok(None),
            202 => Ok(Some(self.location(&resp, &what)?)),
            _ => Err(self.status_error(&what, &self.full(repo), resp)),
        }
    }

    /// Start an upload session: its Location.
    pub fn start_upload(&self, repo: &str) -> Result<String, RegistryError> {
        let what = format!("starting an upload to {}", self.full(repo));
        let resp = self.send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Payload::Empty,
            &what,
        )?;
        match resp.status().as_u16() {
            202 => self.location(&resp, &what),
            _ => Err(self.status_error(&what, &self.full(repo), resp)),
        }
    }

    /// Upload a blob of `len` bytes to `location` (from `start_upload`/`mount_blob`):
    /// one monolithic PUT, or PATCH chunks of `chunk` bytes then a closing PUT.
    /// `open(offset)` returns a reader of the blob from `offset`.
    pub fn upload(
        &self,
        repo: &str,
        location: String,
        digest: &Digest,
        len: u64,
        chunk: Option<u64>,
        open: &(dyn Fn(u64, u64) -> io::Result<Box<dyn Read + Send>> + Sync),
    ) -> Result<(), RegistryError> {
        let what = format!("uploading blob {digest} to {}", self.full(repo));
        let with_digest = |loc: &str| {
            format!(
                "{loc}{}digest={}",
                if loc.contains('?') { "&" } else { "?" },
                urlencode(&digest.to_string())
            )
        };
        let mut loc = location;
        if let Some(chunk) = chunk.filter(|c| *c > 0 && *c < len) {
            let mut off = 0;
            while off < len {
                let n = chunk.min(len - off);
                let start = off;
                let opener = move || open(start, n);
                let resp = self.send(
                    Method::PATCH,
                    &loc,
                    &[
                        ("Content-Type", "application/octet-stream".into()),
                        ("Content-Range", format!("{}-{}", off, off + n - 1)),
                    ],
                    Payload::Stream {
                        len: n,
                        open: &opener,
                    },
                    &what,
                )?;
                if resp.status() != 202 {
                    return Err(self.status_error(&what, &self.full(repo), resp));
                }
                loc = self.location(&resp, &what)?;
                off += n;
            }
            let resp = self.send(Method::PUT, &with_digest(&loc), &[], Payload::Empty, &what)?;
            if resp.status() != 201 {
                return Err(self.status_error(&what, &self.full(repo), resp));
            }
            return Ok(());
        }
        let opener = move || open(0, len);
        let resp = self.send(
            Method::PUT,
            &with_digest(&loc),
            &[("Content-Type", "application/octet-stream".into())],
            Payload::Stream { len, open: &opener },
            &what,
        )?;
        if resp.status() != 201 {
            return Err(self.status_error(&what, &self.full(repo), resp));
        }
        Ok(())
    }

    /// Upload small bytes (a config) as one blob, unless present.
    pub fn put_blob_bytes(
        &self,
        repo: &str,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        if self.blob_exists(repo, digest)? {
            return Ok(());
        }
        let loc = self.start_upload(repo)?;
        let data = bytes.to_vec();
        let open = move |off: u64, n: u64| -> io::Result<Box<dyn Read + Send>> {
            Ok(Box::new(io::Cursor::new(
                data[off as usize..(off + n) as usize].to_vec(),
            )))
        };
        self.upload(repo, loc, digest, bytes.len() as u64, None, &open)
    }

    /// PUT a manifest under a tag (or digest). Returns the digest the registry reports.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Option<String>, RegistryError> {
        let what = format!("pushing manifest {}:{reference}", self.full(repo));
        let resp = self.send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type.to_string())],
            Payload::Bytes(bytes),
            &what,
        )?;
        match resp.status().as_u16() {
            200..=299 => Ok(resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)),
            _ => Err(self.status_error(&what, &format!("{}:{reference}", self.full(repo)), resp)),
        }
    }

    /// Every tag of a repository (`pull -a`), following `Link` pagination.
    pub fn tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        let mut out = Vec::new();
        let mut path = format!("/v2/{repo}/tags/list");
        for _ in 0..1000 {
            let what = format!("listing tags of {}", self.full(repo));
            let mut resp = self.send(Method::GET, &path, &[], Payload::Empty, &what)?;
            if resp.status() != 200 {
                return Err(self.status_error(&what, &self.full(repo), resp));
            }
            let link = resp
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.split('<').nth(1)?.split('>').next().map(str::to_string));
            let body = resp
                .body_mut()
                .with_config()
                .limit(16 << 20)
                .read_to_vec()
                .map_err(|e| self.transport_error(&what, "", e))?;
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
                    registry: self.registry.clone(),
                    msg: format!("{what}: {e}"),
                })?;
            if let Some(t) = v.get("tags").and_then(|t| t.as_array()) {
                out.extend(t.iter().filter_map(|t| t.as_str().map(str::to_string)));
            }
            match link {
                Some(l) => path = l,
                None => break,
            }
        }
        Ok(out)
    }
}

fn strip_tag(s: &str) -> &str {
    match s.rfind(':') {
        Some(i) if !s[i + 1..].contains('/') => &s[..i],
        _ => s,
    }
}

/// Percent-encode a query value.
pub fn urlencode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_local(h), "{h}");
        }
        for h in ["docker.io", "example.com:5000", "10.0.0.1:5000"] {
            assert!(!is_local(h), "{h}");
        }
    }

    #[test]
    fn encodes_scopes() {
        assert_eq!(
            urlencode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert_eq!(strip_tag("127.0.0.1:5000/x:latest"), "127.0.0.1:5000/x");
        assert_eq!(strip_tag("127.0.0.1:5000/x"), "127.0.0.1:5000/x");
    }
}
