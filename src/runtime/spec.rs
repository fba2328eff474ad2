//! The OCI runtime spec (`config.json`) a container runs with: Docker's defaults (capabilities,
//! masked and read-only paths, /dev, /proc, /sys ro, /dev/pts, /dev/shm, /dev/mqueue) plus the
//! image config and run options. The same document serves the embedded runtime and an external
//! one (`--runtime /usr/sbin/runc`).

use serde_json::{Value, json};
use std::path::Path;

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The host's network namespace (strata's default: there is no bridge on this machine;
    /// Docker's default would be a bridge).
    Host,
    /// A new network namespace with only the loopback device.
    None,
}

impl Network {
    pub fn parse(s: &str) -> Option<Network> {
        match s {
            "" | "host" => Some(Network::Host),
            "none" => Some(Network::None),
            _ => None,
        }
    }
}

/// The process part of the spec (also what `exec` runs).
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub terminal: bool,
    /// Its capabilities (`limits::capabilities`: Docker's default set unless changed).
    pub caps: Vec<String>,
}

pub fn process_json(p: &ProcessSpec) -> Value {
    let caps = json!(p.caps);
    let mut user = json!({"uid": p.uid, "gid": p.gid});
    if !p.additional_gids.is_empty() {
        user["additionalGids"] = json!(p.additional_gids);
    }
    json!({
        "terminal": p.terminal,
        "user": user,
        "args": p.args,
        "env": p.env,
        "cwd": p.cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": false,
    })
}

pub struct SpecInput<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub rootfs: &'a Path,
    pub process: &'a ProcessSpec,
    pub network: Network,
    /// Files bind-mounted read-write over /etc/hosts, /etc/resolv.conf, /etc/hostname.
    pub etc_files: &'a [(String, &'a Path)],
    /// The container's volumes, binds and tmpfs mounts (`runtime::mounts::oci_mount`),
    /// parents first.
    pub extra_mounts: &'a [Value],
    /// `--read-only`: the root filesystem mounted read-only (mounts on it stay writable).
    pub readonly_rootfs: bool,
    /// `--privileged`: no masked or read-only paths, /sys writable, every device.
    pub privileged: bool,
    /// cgroup limits.
    pub limits: super::limits::Limits,
}

pub fn runtime_spec(i: &SpecInput) -> Value {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": if i.privileged { json!(["nosuid", "noexec", "nodev"]) } else { json!(["nosuid", "noexec", "nodev", "ro"]) }}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    ];
    for (dest, src) in i.etc_files {
        mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    }
    mounts.extend(i.extra_mounts.iter().cloned());
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if i.network == Network::None {
        namespaces.push(json!({"type": "network"}));
    }
    let allow = |kind: &str, major: i64, minor: Option<i64>| {
        let mut d = json!({"allow": true, "type": kind, "major": major, "access": "rwm"});
        if let Some(m) = minor {
            d["minor"] = json!(m);
        }
        d
    };
    let devices = if i.privileged {
        vec![json!({"allow": true, "access": "rwm"})]
    } else {
        vec![
            json!({"allow": false, "access": "rwm"}),
            json!({"allow": true, "type": "c", "access": "m"}),
            json!({"allow": true, "type": "b", "access": "m"}),
            allow("c", 1, Some(3)),
            allow("c", 1, Some(5)),
            allow("c", 1, Some(7)),
            allow("c", 1, Some(8)),
            allow("c", 1, Some(9)),
            allow("c", 5, Some(0)),
            allow("c", 5, Some(1)),
            allow("c", 5, Some(2)),
            allow("c", 136, None),
            allow("c", 10, Some(200)),
        ]
    };
    let mut resources = serde_json::Map::new();
    resources.insert("devices".into(), json!(devices));
    i.limits.resources(&mut resources);
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": cgroup_path(i.id),
        "resources": resources,
    });
    if i.privileged {
        linux["devices"] = json!(super::limits::host_devices());
    } else {
        linux["maskedPaths"] = json!(MASKED);
        linux["readonlyPaths"] = json!(READONLY);
    }
    json!({
        "ociVersion": "1.0.2",
        "process": process_json(i.process),
        "root": {"path": i.rootfs, "readonly": i.readonly_rootfs},
        "hostname": i.hostname,
        "mounts": mounts,
        "linux": linux,
    })
}

/// Each container's cgroup, under every v1 controller (or the v2 tree): `/strata/<id>`.
pub fn cgroup_path(id: &str) -> String {
    format!("/strata/{id}")
}

/// Remove the container's (empty) cgroup directories a runtime left behind, e.g. after its
/// monitor was killed. Errors are ignored: a cgroup still holding a process stays.
pub fn remove_cgroups(id: &str) {
    let rel = cgroup_path(id);
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs =
        vec![std::path::PathBuf::from("/sys/fs/cgroup").join(rel.trim_start_matches('/'))];
    for e in rd.flatten() {
        dirs.push(e.path().join(rel.trim_start_matches('/')));
    }
    for d in dirs {
        let _ = std::fs::remove_dir(&d);
    }
}

/// The environment a container starts with: the image's, overridden by `-e`, then PATH,
/// HOSTNAME, TERM=xterm (with a terminal) and HOME when unset (as Docker adds them).
pub fn merge_env(
    image: &[String],
    overrides: &[String],
    hostname: &str,
    home: &str,
    tty: bool,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let key = |s: &str| s.split('=').next().unwrap_or("").to_string();
    let set = |v: String, out: &mut Vec<String>| {
        let k = key(&v);
        if let Some(slot) = out.iter_mut().find(|e| key(e) == k) {
            *slot = v;
        } else {
            out.push(v);
        }
    };
    for e in image {
        set(e.clone(), &mut out);
    }
    for e in overrides {
        if e.contains('=') {
            set(e.clone(), &mut out);
        } else if let Ok(v) = std::env::var(e) {
            // `-e NAME` passes the caller's value, as Docker does; unset names are dropped.
            set(format!("{e}={v}"), &mut out);
        }
    }
    let has = |out: &Vec<String>, k: &str| out.iter().any(|e| key(e) == k);
    if !has(&out, "PATH") {
        out.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        );
    }
    if !has(&out, "HOSTNAME") {
        out.push(format!("HOSTNAME={hostname}"));
    }
    if tty && !has(&out, "TERM") {
        out.push("TERM=xterm".to_string());
    }
    if !has(&out, "HOME") {
        out.push(format!("HOME={home}"));
    }
    out
}

pub fn env_value<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter()
        .find_map(|e| e.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_as_oci_runtime_spec() {
        let p = ProcessSpec {
            args: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 1000,
            gid: 1000,
            additional_gids: vec![10],
            terminal: false,
            caps: DEFAULT_CAPS.iter().map(|c| c.to_string()).collect(),
        };
        let hosts = Path::new("/tmp/x/hosts");
        let v = runtime_spec(&SpecInput {
            id: "abc",
            hostname: "abc",
            rootfs: Path::new("/tmp/rootfs"),
            process: &p,
            network: Network::None,
            etc_files: &[("/etc/hosts".into(), hosts)],
            extra_mounts: &[],
            readonly_rootfs: false,
            privileged: false,
            limits: Default::default(),
        });
        let spec: oci_spec::runtime::Spec = serde_json::from_value(v.clone()).unwrap();
        let proc_ = spec.process().as_ref().unwrap();
        assert_eq!(proc_.user().uid(), 1000);
        assert_eq!(proc_.user().additional_gids().as_ref().unwrap(), &vec![10]);
        let ns = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        assert_eq!(ns.len(), 5);
        assert!(
            spec.mounts()
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.destination() == Path::new("/etc/hosts"))
        );
        // No rlimits: this machine may not raise them (no CAP_SYS_RESOURCE).
        assert!(proc_.rlimits().is_none());
    }

    #[test]
    fn env_merging() {
        let e = merge_env(
            &["PATH=/bin".into(), "A=1".into()],
            &["A=2".into(), "B=3".into()],
            "h",
            "/root",
            true,
        );
        assert_eq!(
            e,
            vec![
                "PATH=/bin",
                "A=2",
                "B=3",
                "HOSTNAME=h",
                "TERM=xterm",
                "HOME=/root"
            ]
        );
        let e = merge_env(&[], &[], "h", "/", false);
        assert!(e[0].starts_with("PATH=/usr/local/sbin"));
        assert_eq!(env_value(&e, "HOME"), Some("/"));
    }
}
