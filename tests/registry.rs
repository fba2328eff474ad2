//! Pull and push against a real registry: Debian's `docker-registry` (CNCF distribution 2.8),
//! started here on 127.0.0.1 with a free port and a temp storage dir; htpasswd basic auth and
//! TLS with a CA made here by openssl; interop with skopeo.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The registry server

#[derive(Default)]
struct RegOpts {
    htpasswd: Option<(String, String)>,
    tls: bool,
}

struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
    /// CA certificate (TLS registries).
    ca: Option<PathBuf>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sh(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

impl Registry {
    fn start(opts: RegOpts) -> Registry {
        std::fs::create_dir_all("/var/tmp/strata-tests").unwrap();
        let dir = tempfile::Builder::new()
            .prefix("reg-")
            .tempdir_in("/var/tmp/strata-tests")
            .unwrap();
        let d = dir.path();
        let mut extra = String::new();
        if let Some((u, p)) = &opts.htpasswd {
            let o = sh(Command::new("htpasswd").args(["-Bbn", u, p]));
            std::fs::write(d.join("htpasswd"), &o.stdout).unwrap();
            extra.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                d.join("htpasswd").display()
            ));
        }
        let mut tls = String::new();
        let mut ca = None;
        if opts.tls {
            let run = |args: &[&str]| {
                sh(Command::new("openssl").args(args).current_dir(d));
            };
            run(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=strata test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ]);
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ]);
            std::fs::write(
                d.join("ext.cnf"),
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
            )
            .unwrap();
            run(&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                "server.crt",
            ]);
            tls = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("server.crt").display(),
                d.join("server.key").display()
            );
            ca = Some(d.join("ca.crt"));
        }
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls}{extra}",
            d.join("data").display()
        );
        std::fs::write(d.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(d.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed (scripts/setup.sh)");
        let t0 = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            dir,
            addr,
            ca,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap()
    }

    /// Access-log lines of GETs of this blob: (status, bytes written).
    fn blob_gets(&self, digest: &str) -> Vec<(u16, u64)> {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{digest} ")))
            .filter_map(|l| {
                let rest = l.rsplit_once("HTTP/1.1\" ")?.1;
                let mut it = rest.split_whitespace();
                Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
            })
            .collect()
    }

    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy to `target` that sends at most `rate` bytes/s back to the client: makes a pull
/// slow enough to be interrupted, and lets concurrent pulls overlap.
struct Proxy {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: &str, rate: u64) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let target = target.to_string();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        let Ok(up) = TcpStream::connect(&target) else {
                            continue;
                        };
                        let (mut c1, mut u1) = (c.try_clone().unwrap(), up.try_clone().unwrap());
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut c1, &mut u1);
                            let _ = u1.shutdown(std::net::Shutdown::Write);
                        });
                        let (mut c2, mut u2) = (c, up);
                        std::thread::spawn(move || {
                            let mut buf = vec![0u8; 16 << 10];
                            loop {
                                let n = match u2.read(&mut buf) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => n,
                                };
                                if c2.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                                std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                            }
                            let _ = c2.shutdown(std::net::Shutdown::Both);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy { addr, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// strata with a private credentials file and certs.d

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker")
    }
    fn certs_d(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }
    fn cmd(&self, s: &Store, args: &[&str]) -> Command {
        let mut c = s.cmd(args);
        c.env("DOCKER_CONFIG", self.docker_config())
            .env("STRATA_CERTS_D", self.certs_d())
            .env("STRATA_REGISTRIES_CONF", self.dir.path().join("none.conf"))
            .env_remove("STRATA_INSECURE_REGISTRIES")
            .stdin(Stdio::null());
        c
    }
    fn run(&self, s: &Store, args: &[&str]) -> Output {
        self.cmd(s, args).output().unwrap()
    }
    fn ok(&self, s: &Store, args: &[&str]) -> String {
        let o = self.run(s, args);
        assert!(
            o.status.success(),
            "strata {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    fn fails(&self, s: &Store, args: &[&str]) -> String {
        let o = self.run(s, args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(
            !o.status.success(),
            "strata {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(!err.contains("panicked"), "strata {args:?} panicked: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("Error:")).collect();
        assert_eq!(errors.len(), 1, "one error line: {err}");
        assert_eq!(err.trim_end().lines().last(), Some(errors[0]), "{err}");
        err
    }
}

// ---------------------------------------------------------------------------------------------
// Test images

/// Deterministic incompressible bytes.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

struct TestImage {
    archive: PathBuf,
    /// Uncompressed layer tars, bottom first.
    layers: Vec<Vec<u8>>,
    config: Vec<u8>,
}

impl TestImage {
    fn id(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.config))
    }
}

/// A base layer and `extra` layers on it (layer i holds `sizes[i]` bytes of noise).
fn make_image(dir: &Path, name: &str, tag: &str, sizes: &[usize], seed: u64) -> TestImage {
    let mut layers = vec![
        LayerTar::new()
            .dir("etc/")
            .file("etc/os-release", b"ID=strata-test\n")
            .file("etc/base", &noise(1, 200_000))
            .build(),
    ];
    for (i, n) in sizes.iter().enumerate() {
        layers.push(
            LayerTar::new()
                .dir("data/")
                .file(&format!("data/{name}-{i}"), &noise(seed + i as u64, *n))
                .build(),
        );
    }
    let config = config_for(&layers, &format!("/bin/{name}"));
    let blobs: Vec<Vec<u8>> = layers.iter().map(|l| gzip(l)).collect();
    let a = docker_archive(&config, &blobs, &[tag]);
    let archive = write_file(dir, &format!("{name}.tar"), &a);
    TestImage {
        archive,
        layers,
        config,
    }
}

/// A one-layer linux/arm64 image as a docker-save archive tagged `tag`, and its config.
fn arm64_archive(dir: &Path, tag: &str) -> (PathBuf, Vec<u8>) {
    let layers = [LayerTar::new().file("arm", b"arm64").build()];
    let mut cfg: serde_json::Value = serde_json::from_slice(&config_for(&layers, "/arm")).unwrap();
    cfg["architecture"] = "arm64".into();
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let archive = write_file(
        dir,
        "arm.tar",
        &docker_archive(&cfg, &[gzip(&layers[0])], &[tag]),
    );
    (archive, cfg)
}

fn manifest_digest_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.split_once(": digest: "))
        .map(|(_, r)| r.split_whitespace().next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no digest line in {stdout}"))
}

fn skopeo_digest(reference: &str) -> String {
    let o = sh(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    format!("sha256:{}", sha256_hex(&o.stdout))
}

fn raw_manifest(reference: &str) -> serde_json::Value {
    let o = sh(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A PUT with curl-free plain HTTP from the test: the response head and body as text.
fn http_put(addr: &str, path: &str, content_type: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

/// Uploads `data` as a blob of `repo` (monolithic POST then PUT); returns its digest.
fn http_put_blob(addr: &str, repo: &str, data: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v2/{repo}/blobs/uploads/ HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    let location = resp
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap();
    let location = location
        .strip_prefix(&format!("http://{addr}"))
        .unwrap_or(&location)
        .to_string();
    let digest = format!("sha256:{}", sha256_hex(data));
    let sep = if location.contains('?') { '&' } else { '?' };
    let resp = http_put(
        addr,
        &format!("{location}{sep}digest={digest}"),
        "application/octet-stream",
        data,
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    digest
}

fn partials(s: &Store) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(s.root.join("ingest"))
        .map(|rd| {
            rd.flatten()
                .map(|e| (e.path(), e.metadata().unwrap().len()))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Tests

both_drivers!(push_then_pull_into_fresh_store, |driver| {
    let reg = Registry::start(RegOpts::default());
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let name = format!("{}/app:1.0", reg.addr);
    let img = make_image(work.path(), "app", &name, &[300_000, 50_000], 10);
    let a = Store::new(driver);
    a.load(&img.archive);
    let out = env.ok(&a, &["push", &name]);
    assert!(
        out.starts_with(&format!(
            "The push refers to repository [{}/app]\n",
            reg.addr
        )),
        "{out}"
    );
    assert_eq!(out.matches(": Preparing").count(), 3, "{out}");
    assert_eq!(out.matches(": Pushed").count(), 3, "{out}");
    // Push prints diffIDs, top layer first.
    let top = sha256_hex(&img.layers[2]);
    assert!(out.contains(&format!("{}: Preparing", &top[..12])), "{out}");
    let digest = manifest_digest_of(&out);
    assert_eq!(
        skopeo_digest(&name),
        digest,
        "registry serves what we pushed"
    );

    // Pushing again sends nothing.
    let again = env.ok(&a, &["push", &name]);
    assert_eq!(again.matches("Layer already exists").count(), 3, "{again}");
    assert_eq!(manifest_digest_of(&again), digest);

    let b = Store::new(driver);
    let out = env.ok(&b, &["pull", &name]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1.0: Pulling from app", "{out}");
    assert_eq!(out.matches(": Pulling fs layer").count(), 3, "{out}");
    assert_eq!(out.matches(": Pull complete").count(), 3, "{out}");
    assert!(out.contains(&format!("Digest: {digest}\n")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}\n")),
        "{out}"
    );
    assert_eq!(*lines.last().unwrap(), name);
    assert_eq!(b.image_id(&name), img.id());
    let inspect = b.inspect(&name);
    assert_eq!(
        inspect["RepoDigests"][0].as_str().unwrap(),
        format!("{}/app@{digest}", reg.addr)
    );
    b.fsck_clean();

    // Pulling again: nothing to do, Docker's three lines.
    let out = env.ok(&b, &["pull", &name]);
    assert_eq!(
        out,
        format!(
            "1.0: Pulling from app\nDigest: {digest}\nStatus: Image is up to date for {name}\n{name}\n"
        )
    );
    // -q prints the name only; by digest works too.
    let by_digest = format!("{}/app@{digest}", reg.addr);
    assert_eq!(
        env.ok(&b, &["pull", "-q", &by_digest]),
        format!("{by_digest}\n")
    );

    // Pulled and pushed elsewhere: same manifest digest (the original blobs are kept).
    let other = format!("{}/copy/app:x", reg.addr);
    b.ok(&["tag", &name, &other]);
    let out = env.ok(&b, &["push", &other]);
    assert_eq!(out.matches("Mounted from app").count(), 3, "{out}");
    assert_eq!(manifest_digest_of(&out), digest);
    b.fsck_clean();
});

#[test]
fn pull_skips_present_layers() {
    let reg = Registry::start(RegOpts::default());
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let base_name = format!("{}/base:1", reg.addr);
    let app_name = format!("{}/app:1", reg.addr);
    // Same base layer; the app adds one more.
    let base = make_image(work.path(), "base", &base_name, &[], 1);
    let app = make_image(work.path(), "app", &app_name, &[400_000], 7);
    let a = Store::new("overlay");
    a.load(&base.archive);
    a.load(&app.archive);
    env.ok(&a, &["push", &base_name]);
    env.ok(&a, &["push", &app_name]);

    let b = Store::new("overlay");
    env.ok(&b, &["pull", &base_name]);
    let out = env.ok(&b, &["pull", &app_name]);
    assert_eq!(out.matches(": Already exists").count(), 1, "{out}");
    assert_eq!(out.matches(": Pulling fs layer").count(), 1, "{out}");
    assert_eq!(out.matches(": Pull complete").count(), 1, "{out}");
    // The base blob was fetched once only (by the first pull).
    let m: serde_json::Value = serde_json::from_slice(
        &sh(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{app_name}"),
        ]))
        .stdout,
    )
    .unwrap();
    let base_blob = m["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(reg.blob_gets(base_blob).len(), 1);
    assert_eq!(b.image_id(&app_name), app.id());
    b.fsck_clean();
    // rmi frees what the pulls kept: manifests, configs and compressed blobs; the shared
    // base's blob stays until the last image using that layer goes.
    let blobs = |s: &Store| {
        std::fs::read_dir(s.path().join("content/blobs/sha256"))
            .unwrap()
            .count()
    };
    let with_both = blobs(&b);
    env.ok(&b, &["rmi", &app_name]);
    assert!(blobs(&b) < with_both, "rmi of app freed no blob");
    assert!(
        b.path()
            .join("content/blobs/sha256")
            .join(&base_blob[7..])
            .exists()
    );
    env.ok(&b, &["rmi", &base_name]);
    assert_eq!(blobs(&b), 0, "blobs left after removing every image");
    b.fsck_clean();
}

#[test]
fn errors_are_one_line_and_name_image_and_registry() {
    let reg = Registry::start(RegOpts::default());
    let env = Env::new();
    let s = Store::new("overlay");
    let err = env.fails(&s, &["pull", &format!("{}/nothing:here", reg.addr)]);
    assert!(err.contains(&format!("{}/nothing:here", reg.addr)), "{err}");
    assert!(
        err.contains("not found") && err.contains("unknown"),
        "{err}"
    );
    // Nobody listening.
    let port = free_port();
    let err = env.fails(&s, &["pull", &format!("127.0.0.1:{port}/x")]);
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    let err = env.fails(&s, &["push", &format!("{}/not-local:1", reg.addr)]);
    assert!(err.contains("does not exist locally"), "{err}");
    assert!(s.run(&["images", "-q"]).stdout.is_empty());
}

#[test]
fn basic_auth_login_logout() {
    let reg = Registry::start(RegOpts {
        htpasswd: Some(("alice".into(), "s3cret".into())),
        tls: false,
    });
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let name = format!("{}/private:1", reg.addr);
    let img = make_image(work.path(), "private", &name, &[10_000], 3);
    let a = Store::new("overlay");
    a.load(&img.archive);

    let err = env.fails(&a, &["push", &name]);
    assert!(err.contains("unauthorized"), "{err}");
    assert!(err.contains(&reg.addr), "{err}");

    let err = env.fails(&a, &["login", "-u", "alice", "-p", "wrong", &reg.addr]);
    assert!(err.contains("unauthorized"), "{err}");
    assert!(!env.docker_config().join("config.json").exists());

    let mut c = env.cmd(&a, &["login", "-u", "alice", "--password-stdin", &reg.addr]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "Login Succeeded\n");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.docker_config().join("config.json")).unwrap())
            .unwrap();
    assert!(cfg["auths"][&reg.addr]["auth"].is_string(), "{cfg}");

    env.ok(&a, &["push", &name]);
    let b = Store::new("overlay");
    env.ok(&b, &["pull", &name]);
    assert_eq!(b.image_id(&name), img.id());

    assert_eq!(
        env.ok(&a, &["logout", &reg.addr]),
        format!("Removing login credentials for {}\n", reg.addr)
    );
    let c = Store::new("overlay");
    let err = env.fails(&c, &["pull", &name]);
    assert!(err.contains("unauthorized"), "{err}");
    assert!(err.contains(&name), "{err}");
}

#[test]
fn tls_with_own_ca_via_certs_d() {
    let reg = Registry::start(RegOpts {
        htpasswd: None,
        tls: true,
    });
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let name = format!("{}/secure:1", reg.addr);
    let img = make_image(work.path(), "secure", &name, &[20_000], 4);
    let a = Store::new("overlay");
    a.load(&img.archive);

    // Unknown CA: refused, and said so.
    let err = env.fails(&a, &["push", &name]);
    assert!(err.contains("TLS"), "{err}");
    assert!(err.contains(&reg.addr), "{err}");

    // --tls-verify=false skips verification.
    env.ok(&a, &["push", "--tls-verify=false", &name]);

    // The CA in certs.d/HOST:PORT/ca.crt: verified TLS.
    let d = env.certs_d().join(&reg.addr);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(reg.ca.as_ref().unwrap(), d.join("ca.crt")).unwrap();
    let b = Store::new("overlay");
    env.ok(&b, &["pull", &name]);
    assert_eq!(b.image_id(&name), img.id());
    env.ok(&a, &["push", &name]);
}

#[test]
fn corrupted_blob_fails_naming_the_layer_and_keeps_nothing() {
    let reg = Registry::start(RegOpts::default());
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let name = format!("{}/bad:1", reg.addr);
    let img = make_image(work.path(), "bad", &name, &[2_000_000], 5);
    let a = Store::new("overlay");
    a.load(&img.archive);
    env.ok(&a, &["push", &name]);
    let m: serde_json::Value = serde_json::from_slice(
        &sh(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ]))
        .stdout,
    )
    .unwrap();
    let blob = m["layers"][1]["digest"].as_str().unwrap().to_string();
    // Flip one byte in the middle of the stored blob (same size).
    let f = reg.blob_file(&blob);
    let mut data = std::fs::read(&f).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    std::fs::write(&f, &data).unwrap();

    for driver in ["overlay", "vfs"] {
        let b = Store::new(driver);
        let err = env.fails(&b, &["pull", &name]);
        assert!(err.contains(&blob), "names the layer: {err}");
        assert!(err.contains(&name), "names the image: {err}");
        assert!(b.run(&["images", "-q"]).stdout.is_empty());
        b.fsck_clean();
        let damaged = format!("{}.partial", &blob[7..]);
        assert!(
            !partials(&b).iter().any(|(p, _)| p.ends_with(&damaged)),
            "a damaged download is not kept: {:?}",
            partials(&b)
        );
        let layers = std::fs::read_dir(b.root.join("layers")).unwrap().count();
        assert_eq!(layers, 0, "no layer of the failed pull remains");
    }
}

#[test]
fn sigkill_mid_pull_then_resume_with_range() {
    let reg = Registry::start(RegOpts::default());
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let name = format!("{}/big:1", reg.addr);
    let size = 24 << 20;
    let img = make_image(work.path(), "big", &name, &[size], 9);
    let a = Store::new("overlay");
    a.load(&img.archive);
    env.ok(&a, &["push", &name]);
    let m: serde_json::Value = serde_json::from_slice(
        &sh(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ]))
        .stdout,
    )
    .unwrap();
    let blob = m["layers"][1]["digest"].as_str().unwrap().to_string();
    let blob_size = m["layers"][1]["size"].as_u64().unwrap();

    // Through a slow proxy (8 MB/s), killed once a good part has arrived.
    let proxy = Proxy::start(&reg.addr, 8 << 20);
    let slow_name = format!("{}/big:1", proxy.addr);
    let b = Store::new("overlay");
    let mut child = env
        .cmd(&b, &["pull", &slow_name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let partial = b
        .root
        .join("ingest")
        .join(format!("{}.partial", blob.strip_prefix("sha256:").unwrap()));
    loop {
        let have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if have > 6 << 20 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "pull made no progress"
        );
        assert!(child.try_wait().unwrap().is_none(), "pull ended too early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(proxy);
    let have = std::fs::metadata(&partial).unwrap().len();
    assert!(have > 6 << 20 && have < blob_size, "{have}");

    // The store is consistent, and opening it does not throw the partial away.
    b.fsck_clean();
    assert!(b.run(&["images", "-q"]).stdout.is_empty());
    assert!(std::fs::metadata(&partial).unwrap().len() >= have);

    let o = env
        .cmd(&b, &["pull", &name])
        .env("STRATA_PULL_STATS", "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains(&format!("{}: Resuming download at", &blob[7..19])),
        "{out}"
    );
    let downloaded: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("downloaded "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        downloaded <= blob_size - have + 300_000,
        "downloaded {downloaded} of {blob_size} with {have} kept"
    );
    // The registry saw a Range request answered with 206 for the rest.
    let gets = reg.blob_gets(&blob);
    let last = gets.last().unwrap();
    assert_eq!(last.0, 206, "{gets:?}");
    assert!(last.1 <= blob_size - have, "{gets:?}");
    assert_eq!(b.image_id(&name), img.id());
    assert!(partials(&b).is_empty(), "{:?}", partials(&b));
    b.fsck_clean();
}

#[test]
fn concurrent_pulls_fetch_each_blob_once() {
    let reg = Registry::start(RegOpts::default());
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let name = format!("{}/twice:1", reg.addr);
    let img = make_image(work.path(), "twice", &name, &[3 << 20, 2 << 20], 11);
    let a = Store::new("overlay");
    a.load(&img.archive);
    env.ok(&a, &["push", &name]);
    let proxy = Proxy::start(&reg.addr, 16 << 20);
    let slow_name = format!("{}/twice:1", proxy.addr);
    let b = Store::new("overlay");
    let children: Vec<Child> = (0..2)
        .map(|_| {
            env.cmd(&b, &["pull", &slow_name])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(b.image_id(&slow_name), img.id());
    let m: serde_json::Value = serde_json::from_slice(
        &sh(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ]))
        .stdout,
    )
    .unwrap();
    for l in m["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        assert_eq!(reg.blob_gets(d).len(), 1, "blob {d} fetched once");
    }
    b.fsck_clean();
}

#[test]
fn skopeo_interop_both_ways() {
    let reg = Registry::start(RegOpts::default());
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();

    // strata pushes, skopeo pulls the same manifest.
    let name = format!("{}/fromstrata:1", reg.addr);
    let img = make_image(work.path(), "fromstrata", &name, &[100_000], 12);
    let a = Store::new("overlay");
    a.load(&img.archive);
    let digest = manifest_digest_of(&env.ok(&a, &["push", &name]));
    let oci = work.path().join("oci");
    sh(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}:x", oci.display()),
    ]));
    assert_eq!(skopeo_digest(&name), digest);
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    assert!(idx["manifests"][0]["digest"].is_string());

    // skopeo pushes (zstd in an OCI manifest, then gzip), strata pulls: the same image ID.
    let plain = make_image(work.path(), "fromskopeo", "fromskopeo:1", &[150_000], 13);
    // skopeo keeps compressed blobs as they are: give it uncompressed layers to zstd.
    let raw = write_file(work.path(), "raw.tar", &{
        // Layers of their own: skopeo would otherwise reuse the registry's gzip blobs.
        let z = make_image(work.path(), "zstd", "zstd:1", &[150_000], 14);
        docker_archive(&z.config, &z.layers, &["fromskopeo:raw"])
    });
    let zs = format!("{}/fromskopeo:zstd", reg.addr);
    sh(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "oci",
        "--dest-compress",
        "--dest-compress-format",
        "zstd",
        &format!("docker-archive:{}", raw.display()),
        &format!("docker://{zs}"),
    ]));
    let gz = format!("{}/fromskopeo:gzip", reg.addr);
    sh(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", plain.archive.display()),
        &format!("docker://{gz}"),
    ]));
    let b = Store::new("overlay");
    env.ok(&b, &["pull", &gz]);
    // skopeo may convert to OCI (rewriting the config) and reuse blobs it pushed before
    // (the base layer as zstd): the image ID is the config digest of what it pushed.
    assert_eq!(
        b.image_id(&gz),
        raw_manifest(&gz)["config"]["digest"].as_str().unwrap()
    );
    let m = raw_manifest(&zs);
    assert!(
        m["layers"][1]["mediaType"]
            .as_str()
            .unwrap()
            .ends_with("+zstd"),
        "{m}"
    );
    let c = Store::new("vfs");
    let out = env.ok(&c, &["pull", &zs]);
    assert_eq!(
        c.image_id(&zs),
        m["config"]["digest"].as_str().unwrap(),
        "{out}"
    );
    let zs_digest = skopeo_digest(&zs);
    assert!(out.contains(&format!("Digest: {zs_digest}")), "{out}");
    // And back: strata pushes the zstd image elsewhere with the same manifest digest.
    let again = format!("{}/again:zstd", reg.addr);
    c.ok(&["tag", &zs, &again]);
    assert_eq!(
        manifest_digest_of(&env.ok(&c, &["push", &again])),
        zs_digest
    );
    c.fsck_clean();
}

#[test]
fn multi_platform_index_picks_the_host() {
    let reg = Registry::start(RegOpts::default());
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    // Two single-platform images pushed by strata, then an index over them pushed by skopeo.
    let amd = make_image(
        work.path(),
        "amd",
        &format!("{}/multi:amd", reg.addr),
        &[1000],
        20,
    );
    let (arm_archive, arm_cfg) = arm64_archive(work.path(), &format!("{}/multi:arm", reg.addr));
    let a = Store::new("overlay");
    a.load(&amd.archive);
    a.load(&arm_archive);
    let amd_out = env.ok(&a, &["push", &format!("{}/multi:amd", reg.addr)]);
    let arm_out = env.ok(&a, &["push", &format!("{}/multi:arm", reg.addr)]);
    let entry = |out: &str, arch: &str| {
        let d = manifest_digest_of(out);
        let size = out
            .trim_end()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap();
        serde_json::json!({
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": d, "size": size,
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [entry(&arm_out, "arm64"), entry(&amd_out, "amd64")]
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let resp = http_put(
        &reg.addr,
        "/v2/multi/manifests/latest",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        &index_bytes,
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");

    let host_arch = if cfg!(target_arch = "x86_64") {
        "amd64"
    } else {
        "arm64"
    };
    let b = Store::new("overlay");
    let name = format!("{}/multi", reg.addr);
    let out = env.ok(&b, &["pull", &name]);
    let index_digest = format!("sha256:{}", sha256_hex(&index_bytes));
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    let want = if host_arch == "amd64" {
        amd.id()
    } else {
        format!("sha256:{}", sha256_hex(&arm_cfg))
    };
    assert_eq!(b.image_id(&format!("{name}:latest")), want);
    let other = if host_arch == "amd64" {
        "linux/arm64"
    } else {
        "linux/amd64"
    };
    let c = Store::new("overlay");
    env.ok(&c, &["pull", "--platform", other, &name]);
    let got = c.image_id(&format!("{name}:latest"));
    assert_ne!(got, want);
    let err = env.fails(&c, &["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("no matching manifest for linux/s390x"),
        "{err}"
    );
}

#[test]
fn chunked_push_and_present_image_costs_one_request() {
    let reg = Registry::start(RegOpts::default());
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let name = format!("{}/chunky:1", reg.addr);
    let img = make_image(work.path(), "chunky", &name, &[1 << 20], 30);
    let a = Store::new("overlay");
    a.load(&img.archive);
    let out = env.ok(&a, &["push", "--chunk-size", "100000", &name]);
    let digest = manifest_digest_of(&out);
    assert_eq!(skopeo_digest(&name), digest);
    assert!(reg.log().contains("\"PATCH /v2/chunky/blobs/uploads/"));
    let b = Store::new("overlay");
    env.ok(&b, &["pull", &name]);
    assert_eq!(b.image_id(&name), img.id());
    // Fully present: only the manifest is asked for.
    let before = reg.log().matches("\" 200 ").count() + reg.log().matches("\" 404 ").count();
    let o = env
        .cmd(&b, &["pull", &name])
        .env("STRATA_DEBUG_HTTP", "1")
        .output()
        .unwrap();
    assert!(o.status.success());
    let after = reg.log().matches("\" 200 ").count() + reg.log().matches("\" 404 ").count();
    assert_eq!(after - before, 1, "one request for a present image");
}

#[test]
fn pull_platform_is_checked_before_network_and_against_the_image() {
    // A typo is refused before any connection: nothing listens on this port.
    let env = Env::new();
    let s = Store::new("overlay");
    let closed = format!("127.0.0.1:{}/x", free_port());
    let err = env.fails(&s, &["pull", "--platform", "bogus", &closed]);
    assert!(
        err.contains("\"bogus\": unknown operating system or architecture"),
        "{err}"
    );
    let err = env.fails(&s, &["pull", "--platform", "linux/amd64/v2/x", &closed]);
    assert!(err.contains("cannot parse platform specifier"), "{err}");

    let reg = Registry::start(RegOpts::default());
    let work = tempfile::tempdir().unwrap();
    let img = make_image(
        work.path(),
        "plat",
        &format!("{}/plat:amd", reg.addr),
        &[1000],
        30,
    );
    let (arm_archive, arm_cfg) = arm64_archive(work.path(), &format!("{}/plat:arm", reg.addr));
    let a = Store::new("overlay");
    a.load(&img.archive);
    a.load(&arm_archive);
    let amd_out = env.ok(&a, &["push", &format!("{}/plat:amd", reg.addr)]);
    let arm_out = env.ok(&a, &["push", &format!("{}/plat:arm", reg.addr)]);
    let entry = |out: &str, arch: &str| {
        let size: u64 = out.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
        serde_json::json!({
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": manifest_digest_of(out), "size": size,
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [entry(&amd_out, "amd64"), entry(&arm_out, "arm64")]
    }))
    .unwrap();
    let resp = http_put(
        &reg.addr,
        "/v2/plat/manifests/multi",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        &index,
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");

    // An index without the platform asked for: Docker's wording, nothing pulled.
    let b = Store::new("overlay");
    let err = env.fails(
        &b,
        &[
            "pull",
            "--platform",
            "windows/arm",
            &format!("{}/plat:multi", reg.addr),
        ],
    );
    assert!(
        err.contains("no matching manifest for windows/arm in the manifest list entries"),
        "{err}"
    );
    // Aliases are normalized as Docker does: aarch64 is arm64.
    env.ok(
        &b,
        &[
            "pull",
            "--platform",
            "linux/aarch64",
            &format!("{}/plat:multi", reg.addr),
        ],
    );
    assert_eq!(
        b.image_id(&format!("{}/plat:multi", reg.addr)),
        format!("sha256:{}", sha256_hex(&arm_cfg))
    );
    // A single-platform image of another platform than asked for is refused too.
    let c = Store::new("overlay");
    let err = env.fails(
        &c,
        &[
            "pull",
            "--platform",
            "linux/arm64",
            &format!("{}/plat:amd", reg.addr),
        ],
    );
    assert!(
        err.contains(
            "does not match the specified platform: wanted linux/arm64, actual: linux/amd64"
        ),
        "{err}"
    );
    assert_eq!(c.ok(&["images", "-q"]), "");
    env.ok(
        &c,
        &[
            "pull",
            "--platform",
            "linux/amd64",
            &format!("{}/plat:amd", reg.addr),
        ],
    );
    assert_eq!(c.image_id(&format!("{}/plat:amd", reg.addr)), img.id());
}

#[test]
fn pull_refuses_layers_that_are_not_layer_tars() {
    let reg = Registry::start(RegOpts::default());
    let env = Env::new();
    let layer = LayerTar::new().file("f", b"data").build();
    let config = config_for(std::slice::from_ref(&layer), "/f");
    let blob = gzip(&layer);
    let layer_digest = http_put_blob(&reg.addr, "art", &blob);
    let config_digest = http_put_blob(&reg.addr, "art", &config);
    for (tag, mt) in [
        ("cfg", "application/vnd.oci.image.config.v1+json"),
        ("txt", "text/plain"),
    ] {
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": mt, "digest": layer_digest, "size": blob.len()}],
        }))
        .unwrap();
        let resp = http_put(
            &reg.addr,
            &format!("/v2/art/manifests/{tag}"),
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        );
        assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
        let s = Store::new("overlay");
        let err = env.fails(&s, &["pull", &format!("{}/art:{tag}", reg.addr)]);
        assert!(err.contains(&format!("{mt:?}")), "{err}");
        assert!(err.contains("media type"), "{err}");
        assert_eq!(s.ok(&["images", "-q"]), "");
    }
}

/// A pull that has committed its layers but not yet its image record, while `rmi` of an image
/// sharing its base layer and `image prune -a` run (issue 7): the pull succeeds and its image
/// is whole. The pull is stopped inside that window by the binary's pause point.
#[test]
fn delete_during_pull_waits_for_the_image() {
    let reg = Registry::start(RegOpts::default());
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let name = format!("{}/app:1", reg.addr);
    let img = make_image(work.path(), "app", &name, &[300_000, 200_000], 21);
    let a = Store::new("overlay");
    a.load(&img.archive);
    env.ok(&a, &["push", &name]);
    // b has another image on the same base layer.
    let b = Store::new("overlay");
    let other = make_image(work.path(), "other", "other:1", &[1000], 77);
    b.load(&other.archive);
    let pause = tempfile::tempdir_in("/var/tmp").unwrap();
    let child = env
        .cmd(&b, &["pull", &name])
        .env("STRATA_PAUSE_AT", "image-add")
        .env("STRATA_PAUSE_DIR", pause.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pause.path().join("image-add.reached").exists() {
        assert!(
            Instant::now() < deadline,
            "pull never reached its image record"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    env.ok(&b, &["rmi", "other:1"]);
    env.ok(&b, &["image", "prune", "-a", "-f"]);
    std::fs::write(pause.path().join("image-add.go"), "").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let c = b.ok(&["create", &name]);
    let mnt = b.ok(&["mount", c.trim()]);
    assert!(Path::new(mnt.trim()).join("data/app-1").exists());
    assert!(Path::new(mnt.trim()).join("etc/base").exists());
    b.ok(&["umount", c.trim()]);
    b.ok(&["rm", c.trim()]);
    b.fsck_clean();
}
