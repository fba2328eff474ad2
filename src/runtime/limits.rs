//! What a container may do and use: its capabilities (Docker's default set, `--cap-add`,
//! `--cap-drop`, `--privileged`), the host devices a privileged container sees, and its
//! cgroup limits (`--memory`, `--cpus`, `--pids-limit`) as OCI `linux.resources`.

use serde_json::{Value, json};

/// Every capability, in bit order (CAP_CHOWN is bit 0).
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapError {
    #[error("unknown capability: {0:?}")]
    Unknown(String),
    #[error("capability {0} is not available on this host (this process's bounding set lacks it)")]
    Unavailable(String),
}

/// `net_admin`, `CAP_NET_ADMIN` → `CAP_NET_ADMIN`; `all` → `ALL`.
fn normalize(name: &str) -> Result<String, CapError> {
    let up = name.to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(CapError::Unknown(full))
    }
}

/// This process's bounding set: what a container can be given at all.
fn host_bounding() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

fn available(cap: &str) -> bool {
    let bit = ALL_CAPS.iter().position(|c| *c == cap).unwrap_or(63);
    host_bounding() & (1u64 << bit) != 0
}

/// Check `--cap-add`/`--cap-drop` names (at create, before anything is made).
pub fn check_names(names: &[String]) -> Result<(), CapError> {
    names.iter().try_for_each(|n| normalize(n).map(|_| ()))
}

/// The container's capability set as Docker's TweakCapabilities computes it: privileged or
/// `--cap-add ALL` give every capability (those this host has), `--cap-drop ALL` keeps only
/// the added ones, otherwise the default set plus additions minus drops (an added name wins
/// over the same name dropped). A named capability the host lacks is an error.
pub fn capabilities(
    add: &[String],
    drop: &[String],
    privileged: bool,
) -> Result<Vec<String>, CapError> {
    let add = add
        .iter()
        .map(|n| normalize(n))
        .collect::<Result<Vec<_>, _>>()?;
    let drop = drop
        .iter()
        .map(|n| normalize(n))
        .collect::<Result<Vec<_>, _>>()?;
    let everything = || -> Vec<String> {
        ALL_CAPS
            .iter()
            .filter(|c| available(c))
            .map(|c| c.to_string())
            .collect()
    };
    if privileged {
        return Ok(everything());
    }
    let has_all = |v: &[String]| v.iter().any(|c| c == "ALL");
    let mut caps: Vec<String> = if has_all(&add) {
        everything()
    } else if has_all(&drop) {
        Vec::new()
    } else {
        super::spec::DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .collect()
    };
    if !has_all(&add) {
        caps.retain(|c| !drop.contains(c) || add.contains(c));
        for c in add.iter().filter(|c| *c != "ALL") {
            if !available(c) {
                return Err(CapError::Unavailable(c.clone()));
            }
            if !caps.contains(c) {
                caps.push(c.clone());
            }
        }
    } else {
        caps.retain(|c| !drop.contains(c));
    }
    Ok(caps)
}

/// The host's device nodes (top level of /dev) for a privileged container, as OCI
/// `linux.devices` entries; the standard ones the runtime makes anyway are left out.
pub fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    const STANDARD: &[&str] = &[
        "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
    ];
    let Ok(rd) = std::fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if STANDARD.contains(&name.as_str()) {
            continue;
        }
        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let kind = if m.file_type().is_char_device() {
            "c"
        } else if m.file_type().is_block_device() {
            "b"
        } else {
            continue;
        };
        let rdev = m.rdev();
        out.push(json!({
            "path": format!("/dev/{name}"),
            "type": kind,
            "major": libc::major(rdev),
            "minor": libc::minor(rdev),
            "fileMode": m.permissions().mode() & 0o777,
            "uid": m.uid(),
            "gid": m.gid(),
        }));
    }
    out
}

/// Cgroup limits as Docker's HostConfig holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// `Memory` in bytes (0: none).
    pub memory: i64,
    /// `NanoCpus` (1e9 = one CPU; 0: none).
    pub nano_cpus: i64,
    /// `PidsLimit` (None or <= 0: none).
    pub pids: Option<i64>,
}

/// Docker's CFS period for `--cpus`.
const CPU_PERIOD: u64 = 100_000;

impl Limits {
    /// The OCI `linux.resources` members for these limits (memory+swap as Docker: twice the
    /// memory when swap is not given).
    pub fn resources(&self, into: &mut serde_json::Map<String, Value>) {
        if self.memory > 0 {
            into.insert(
                "memory".into(),
                json!({"limit": self.memory, "swap": self.memory * 2}),
            );
        }
        if self.nano_cpus > 0 {
            let quota = (self.nano_cpus as u64 * CPU_PERIOD / 1_000_000_000) as i64;
            into.insert("cpu".into(), json!({"quota": quota, "period": CPU_PERIOD}));
        }
        if let Some(p) = self.pids.filter(|p| *p > 0) {
            into.insert("pids".into(), json!({"limit": p}));
        }
    }
}

/// Docker's `RAMInBytes`: a number with an optional unit b, k, m, g, t, p (binary, case
/// insensitive, an optional trailing `b`: `64m`, `1GB`, `512k`).
pub fn parse_bytes(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1i64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        'p' => (&t[..t.len() - 1], 1 << 50),
        _ => (t, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn capability_sets() {
        let d = capabilities(&[], &[], false).unwrap();
        assert_eq!(d.len(), super::super::spec::DEFAULT_CAPS.len());
        let c = capabilities(&v(&["net_admin"]), &v(&["CAP_CHOWN", "kill"]), false).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()) && !c.contains(&"CAP_KILL".to_string()));
        assert_eq!(
            capabilities(&v(&["chown"]), &v(&["ALL"]), false).unwrap(),
            v(&["CAP_CHOWN"])
        );
        assert_eq!(
            capabilities(&[], &v(&["NOPE"]), false),
            Err(CapError::Unknown("CAP_NOPE".into()))
        );
        assert!(capabilities(&[], &[], true).unwrap().len() > d.len());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("64m"), Some(64 << 20));
        assert_eq!(parse_bytes("1GB"), Some(1 << 30));
        assert_eq!(parse_bytes("512"), Some(512));
        assert_eq!(parse_bytes("1.5k"), Some(1536));
        assert_eq!(parse_bytes("x"), None);
    }
}
