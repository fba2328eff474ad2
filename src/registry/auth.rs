//! Credentials in Docker's `config.json` (`auths` → base64 `user:password`), and the
//! `WWW-Authenticate` challenges registries answer with (Basic, Bearer realm/service/scope).

use super::RegistryError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            B64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker/config.json")
}

/// The key Docker uses in `auths` for a registry: Docker Hub has its historical URL.
pub fn config_key(registry: &str) -> String {
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

/// `https://host:port/v1/` → `host:port`, so keys written by other tools match too.
fn normalize_key(k: &str) -> String {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

fn read_config(path: &Path) -> Result<serde_json::Value, RegistryError> {
    match std::fs::read(path) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(serde_json::json!({})),
        Ok(b) => serde_json::from_slice(&b).map_err(|e| RegistryError::Io {
            what: format!("reading {}", path.display()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(RegistryError::Io {
            what: format!("reading {}", path.display()),
            source: e,
        }),
    }
}

/// Credentials stored for `registry` (credential helpers are not supported).
pub fn load_credentials(path: &Path, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let cfg = read_config(path)?;
    let Some(auths) = cfg.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let want = normalize_key(&config_key(registry));
    for (k, v) in auths {
        if normalize_key(k) != want {
            continue;
        }
        if let Some(a) = v.get("auth").and_then(|a| a.as_str()) {
            let bad = || RegistryError::Io {
                what: format!("reading {}", path.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("invalid auth for {k}"),
                ),
            };
            let raw = B64.decode(a.trim()).map_err(|_| bad())?;
            let s = String::from_utf8(raw).map_err(|_| bad())?;
            let (u, p) = s.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
        if let (Some(u), Some(p)) = (
            v.get("username").and_then(|u| u.as_str()),
            v.get("password").and_then(|p| p.as_str()),
        ) {
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
    }
    Ok(None)
}

fn write_config(path: &Path, cfg: &serde_json::Value) -> Result<(), RegistryError> {
    let io = |e| RegistryError::Io {
        what: format!("writing {}", path.display()),
        source: e,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut bytes = serde_json::to_vec_pretty(cfg).expect("serializable");
    bytes.push(b'\n');
    let tmp = dir.join(format!(
        ".config.json.{}",
        crate::atomic_file::random_hex(6)
    ));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Record credentials for `registry`, keeping everything else in the file.
pub fn store_credentials(
    path: &Path,
    registry: &str,
    creds: &Credentials,
) -> Result<(), RegistryError> {
    let mut cfg = read_config(path)?;
    if !cfg.is_object() {
        cfg = serde_json::json!({});
    }
    let obj = cfg.as_object_mut().expect("object");
    let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
    if !auths.is_object() {
        *auths = serde_json::json!({});
    }
    let auths = auths.as_object_mut().expect("object");
    let want = normalize_key(&config_key(registry));
    auths.retain(|k, _| normalize_key(k) != want);
    auths.insert(
        config_key(registry),
        serde_json::json!({"auth": B64.encode(format!("{}:{}", creds.username, creds.password))}),
    );
    write_config(path, &cfg)
}

/// Forget credentials for `registry`. Returns false if there were none.
pub fn remove_credentials(path: &Path, registry: &str) -> Result<bool, RegistryError> {
    let mut cfg = read_config(path)?;
    let want = normalize_key(&config_key(registry));
    let Some(auths) = cfg.get_mut("auths").and_then(|a| a.as_object_mut()) else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|k, _| normalize_key(k) != want);
    if auths.len() == before {
        return Ok(false);
    }
    write_config(path, &cfg)?;
    Ok(true)
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercase: `basic` or `bearer`.
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse `Bearer realm="…",service="…",scope="…"` (several challenges may follow each other).
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> String {
        let s = *i;
        while *i < b.len() && !matches!(b[*i], b' ' | b'\t' | b',' | b'=') {
            *i += 1;
        }
        header[s..*i].to_string()
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let t = token(&mut i);
        if i < b.len() && b[i] == b'=' && !out.is_empty() {
            // key=value of the current challenge
            i += 1;
            let v = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch_len = header[i..].chars().next().map(char::len_utf8).unwrap_or(1);
                    v.push_str(&header[i..i + ch_len]);
                    i += ch_len;
                }
                i += 1;
                v
            } else {
                token(&mut i)
            };
            out.last_mut()
                .expect("challenge")
                .params
                .push((t.to_ascii_lowercase(), v));
        } else if !t.is_empty() {
            out.push(Challenge {
                scheme: t.to_ascii_lowercase(),
                params: Vec::new(),
            });
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));
        let c = parse_challenges(r#"Basic realm="Registry Realm""#);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        let c = parse_challenges(r#"Basic realm="a\"b", Bearer realm=x"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].param("realm"), Some("a\"b"));
        assert_eq!(c[1].param("realm"), Some("x"));
    }

    #[test]
    fn config_roundtrip_keeps_other_keys() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"https://other:1/v1/":{"auth":"dTpw"}},"psFormat":"x"}"#,
        )
        .unwrap();
        let c = Credentials {
            username: "me".into(),
            password: "p:w".into(),
        };
        store_credentials(&p, "127.0.0.1:5000", &c).unwrap();
        assert_eq!(load_credentials(&p, "127.0.0.1:5000").unwrap(), Some(c));
        assert_eq!(
            load_credentials(&p, "other:1").unwrap().unwrap().username,
            "u"
        );
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "x");
        assert!(remove_credentials(&p, "127.0.0.1:5000").unwrap());
        assert!(!remove_credentials(&p, "127.0.0.1:5000").unwrap());
        assert_eq!(load_credentials(&p, "127.0.0.1:5000").unwrap(), None);
        store_credentials(
            &p,
            "docker.io",
            &Credentials {
                username: "h".into(),
                password: "x".into(),
            },
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert!(v["auths"]["https://index.docker.io/v1/"]["auth"].is_string());
    }
}
