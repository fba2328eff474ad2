//! `inspect` documents of containers and images with Docker's key set and key order (the
//! daemon writes Go structs in field order), and `-f/--format` templates over them.

use super::format::docker_time;
use super::template::Value;
use anyhow::Result;
use strata::container::Container;
use strata::engine::Engine;

/// A container config as Docker writes one (`Config` of containers and images), defaults in place.
const CONFIG: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}"#;

/// Where the optional (`omitempty`) config keys go when present: after the key named.
const CONFIG_OPTIONAL: &[(&str, &str)] = &[
    ("ExposedPorts", "AttachStderr"),
    ("Healthcheck", "Cmd"),
    ("ArgsEscaped", "Cmd"),
    ("NetworkDisabled", "Entrypoint"),
    ("MacAddress", "Entrypoint"),
    ("StopSignal", "Labels"),
    ("StopTimeout", "StopSignal"),
    ("Shell", "StopTimeout"),
];

const STATE: &str = r#"{"Status":"created","Running":false,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":0,"ExitCode":0,"Error":"","StartedAt":"0001-01-01T00:00:00Z","FinishedAt":"0001-01-01T00:00:00Z"}"#;

const HOST_CONFIG: &str = r#"{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"json-file","Config":{}},"NetworkMode":"host","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"host","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"private","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":67108864,"Runtime":"runc","Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":null,"OomKillDisable":false,"PidsLimit":null,"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":["/proc/asound","/proc/acpi","/proc/kcore","/proc/keys","/proc/latency_stats","/proc/timer_list","/proc/timer_stats","/proc/sched_debug","/proc/scsi","/sys/firmware"],"ReadonlyPaths":["/proc/bus","/proc/fs","/proc/irq","/proc/sys","/proc/sysrq-trigger"]}"#;

/// `|` separates anchors tried in turn (the first optional one may be absent).
const HOST_CONFIG_OPTIONAL: &[(&str, &str)] = &[
    ("StorageOpt", "SecurityOpt"),
    ("Tmpfs", "StorageOpt|SecurityOpt"),
    ("Mounts", "Ulimits"),
];

const NETWORK_SETTINGS: &str = r#"{"Bridge":"","SandboxID":"","HairpinMode":false,"LinkLocalIPv6Address":"","LinkLocalIPv6PrefixLen":0,"Ports":{},"SandboxKey":"","SecondaryIPAddresses":null,"SecondaryIPv6Addresses":null,"EndpointID":"","Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","MacAddress":"","Networks":{}}"#;

const ENDPOINT: &str = r#"{"IPAMConfig":null,"Links":null,"Aliases":null,"NetworkID":"","EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"","DriverOpts":null}"#;

const MOUNT_ORDER: &[&str] = &[
    "Type",
    "Name",
    "Source",
    "Destination",
    "Driver",
    "Mode",
    "RW",
    "Propagation",
];

fn template(text: &str) -> Value {
    serde_json::from_str(text).expect("a constant document parses")
}

/// `base` (Docker's keys in order, with defaults) with the values of `over` laid on: a known
/// key keeps its place, an optional one goes after its anchor, any other one at the end.
fn overlay(mut base: Value, over: &serde_json::Value, optional: &[(&str, &str)]) -> Value {
    let serde_json::Value::Object(m) = over else {
        return base;
    };
    for (k, v) in m {
        if base.get(k).is_some() {
            base.set(k, Value::from(v));
            continue;
        }
        if v.is_null() {
            continue;
        }
        let anchor = optional.iter().find(|(o, _)| o == k).map(|(_, a)| *a);
        if let (Some(anchor), Value::Map(fields)) = (anchor, &mut base) {
            let at = anchor
                .split('|')
                .find_map(|a| fields.iter().position(|(n, _)| n == a))
                .map_or(fields.len(), |i| i + 1);
            fields.insert(at, (k.clone(), Value::from(v)));
        } else {
            base.set(k, Value::from(v));
        }
    }
    base
}

fn in_order(v: &serde_json::Value, order: &[&str]) -> Value {
    let serde_json::Value::Object(m) = v else {
        return Value::from(v);
    };
    let mut out: Vec<(String, Value)> = order
        .iter()
        .filter_map(|k| m.get(*k).map(|x| (k.to_string(), Value::from(x))))
        .collect();
    for (k, x) in m {
        if !order.contains(&k.as_str()) {
            out.push((k.clone(), Value::from(x)));
        }
    }
    Value::Map(out)
}

/// An image's or container's `Config` in Docker's order, with Docker's defaults filled in.
pub fn config_doc(cfg: Option<&serde_json::Value>) -> Value {
    match cfg {
        Some(c) => overlay(template(CONFIG), c, CONFIG_OPTIONAL),
        None => template(CONFIG),
    }
}

fn graph_driver(engine: &Engine, cache_id: &str) -> Value {
    let data: Vec<(String, Value)> = engine
        .driver
        .metadata(cache_id)
        .into_iter()
        .map(|(k, v)| (k, Value::Str(v)))
        .collect();
    Value::obj([
        (
            "Data",
            if data.is_empty() {
                Value::Null
            } else {
                Value::Map(data)
            },
        ),
        ("Name", Value::str(docker_driver_name(engine.driver.name()))),
    ])
}

/// Docker calls its overlay driver `overlay2`; tools that read `GraphDriver.Name` expect it.
fn docker_driver_name(name: &str) -> &str {
    if name == "overlay" { "overlay2" } else { name }
}

pub fn container_doc(engine: &Engine, c: &Container, sizes: bool) -> Value {
    // The image's config is read once: the command, labels and Config defaults all come from it.
    let image_cfg = engine.images().config(&c.image_id).ok().map(|(_, cfg)| cfg);
    let mut argv: Vec<String> = c.config.entrypoint.clone();
    argv.extend(c.config.cmd.iter().cloned());
    if argv.is_empty()
        && let Some(cfg) = &image_cfg
    {
        argv = cfg.strings("Entrypoint");
        argv.extend(cfg.strings("Cmd"));
    }
    let dir = strata::engine::run::container_dir(&engine.root, c);
    let path = |name: &str| Value::Str(dir.dir.join(name).display().to_string());
    let mut state = overlay(template(STATE), &super::run::state_json(engine, c), &[]);
    for k in ["StartedAt", "FinishedAt"] {
        if let Some(Value::Str(t)) = state.get(k) {
            let t = docker_time(t);
            state.set(k, Value::Str(t));
        }
    }
    let mut host = overlay(
        template(HOST_CONFIG),
        &super::volume::host_config(c),
        HOST_CONFIG_OPTIONAL,
    );
    let network = if c.config.network.is_empty() {
        "host"
    } else {
        c.config.network.as_str()
    };
    host.set("NetworkMode", Value::str(network));
    // What `run`/`create` flags set (src/cli/run_flags.rs), under Docker's HostConfig names.
    let cc = &c.config;
    let list_or_null = |l: &Vec<String>| {
        if l.is_empty() {
            Value::Null
        } else {
            l.clone().into()
        }
    };
    host.set("ExtraHosts", list_or_null(&cc.extra_hosts));
    host.set("GroupAdd", list_or_null(&cc.group_add));
    host.set("CapAdd", list_or_null(&cc.cap_add));
    host.set("CapDrop", list_or_null(&cc.cap_drop));
    host.set("Privileged", Value::Bool(cc.privileged));
    host.set("ReadonlyRootfs", Value::Bool(cc.readonly_rootfs));
    host.set("Memory", Value::from(cc.memory));
    if cc.memory > 0 {
        host.set("MemorySwap", Value::from(cc.memory * 2));
    }
    host.set("NanoCpus", Value::from(cc.nano_cpus));
    host.set("PidsLimit", cc.pids_limit.map_or(Value::Null, Value::from));
    if cc.init {
        host.set("Init", Value::Bool(true));
    }
    let (policy, retries) = match strata::engine::run::RestartPolicy::parse(&cc.restart) {
        Ok(strata::engine::run::RestartPolicy::Always) => ("always", 0),
        Ok(strata::engine::run::RestartPolicy::UnlessStopped) => ("unless-stopped", 0),
        Ok(strata::engine::run::RestartPolicy::OnFailure(n)) => {
            ("on-failure", i64::from(n.unwrap_or(0)))
        }
        _ => ("no", 0),
    };
    host.set(
        "RestartPolicy",
        Value::obj([
            ("Name", Value::str(policy)),
            ("MaximumRetryCount", Value::from(retries)),
        ]),
    );
    if !c.config.runtime.is_empty() {
        host.set("Runtime", Value::Str(c.config.runtime.clone()));
    }
    let log_opts: Vec<(String, Value)> = c
        .config
        .log_opts
        .iter()
        .map(|o| {
            let (k, v) = o.split_once('=').unwrap_or((o, ""));
            (k.to_string(), Value::str(v))
        })
        .collect();
    host.set(
        "LogConfig",
        Value::obj([
            ("Type", Value::str("json-file")),
            ("Config", Value::Map(log_opts)),
        ]),
    );
    let image_cfg = image_cfg.and_then(|cfg| cfg.config);
    let mut labels: Vec<(String, Value)> = match image_cfg.as_ref().and_then(|c| c.get("Labels")) {
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), Value::str(v.as_str().unwrap_or_default())))
            .collect(),
        _ => Vec::new(),
    };
    // `-l/--label` over the image's labels, as Docker merges them.
    for (k, v) in &c.config.labels {
        labels.retain(|(l, _)| l != k);
        labels.push((k.clone(), Value::Str(v.clone())));
    }
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    let mut config = config_doc(image_cfg.as_ref());
    config.set("Hostname", Value::Str(strata::engine::run::hostname_of(c)));
    config.set("Tty", Value::Bool(c.config.tty));
    config.set("OpenStdin", Value::Bool(c.config.open_stdin));
    config.set("AttachStdout", Value::Bool(true));
    config.set("AttachStderr", Value::Bool(true));
    if !c.config.env.is_empty() {
        config.set("Env", c.config.env.clone().into());
    }
    if !c.config.cmd.is_empty() || !c.config.entrypoint.is_empty() {
        config.set(
            "Cmd",
            if c.config.cmd.is_empty() {
                Value::Null
            } else {
                c.config.cmd.clone().into()
            },
        );
    }
    if !c.config.entrypoint.is_empty() {
        config.set("Entrypoint", c.config.entrypoint.clone().into());
    }
    config.set("Image", Value::Str(c.image_ref.clone()));
    let volumes = super::volume::config_volumes(c);
    if !volumes.is_null() {
        config.set("Volumes", Value::from(&volumes));
    }
    if !c.config.working_dir.is_empty() {
        config.set("WorkingDir", Value::Str(c.config.working_dir.clone()));
    }
    if !c.config.user.is_empty() {
        config.set("User", Value::Str(c.config.user.clone()));
    }
    config.set("Labels", Value::Map(labels));
    if !c.config.stop_signal.is_empty() {
        config.set("StopSignal", Value::Str(c.config.stop_signal.clone()));
    }
    if let Some(t) = c.config.stop_timeout {
        config.set("StopTimeout", Value::from(t));
    }
    let mut net = template(NETWORK_SETTINGS);
    net.set(
        "Networks",
        Value::Map(vec![(network.to_string(), template(ENDPOINT))]),
    );
    let mut doc = Value::obj([
        ("Id", Value::Str(c.id.clone())),
        ("Created", Value::Str(docker_time(&c.created))),
        (
            "Path",
            Value::Str(argv.first().cloned().unwrap_or_default()),
        ),
        (
            "Args",
            argv.iter().skip(1).cloned().collect::<Vec<_>>().into(),
        ),
        ("State", state),
        ("Image", Value::Str(c.image_id.to_string())),
        ("ResolvConfPath", path("resolv.conf")),
        ("HostnamePath", path("hostname")),
        ("HostsPath", path("hosts")),
        ("LogPath", path(&format!("{}-json.log", c.id))),
        ("Name", Value::Str(format!("/{}", c.name))),
        ("RestartCount", Value::Int(0)),
        (
            "Driver",
            Value::str(docker_driver_name(engine.driver.name())),
        ),
        ("Platform", Value::str("linux")),
        ("MountLabel", Value::str("")),
        ("ProcessLabel", Value::str("")),
        ("AppArmorProfile", Value::str("")),
        ("ExecIDs", Value::Null),
        ("HostConfig", host),
        ("GraphDriver", graph_driver(engine, &c.cache_id)),
    ]);
    if sizes {
        let mut j = serde_json::json!({});
        super::containerfs::add_inspect_sizes(engine, c, &mut j);
        doc.set("SizeRw", Value::from(&j["SizeRw"]));
        doc.set("SizeRootFs", Value::from(&j["SizeRootFs"]));
    }
    let mounts: Vec<Value> = c
        .config
        .mounts
        .iter()
        .filter(|m| !m.tmpfs_flag)
        .map(|m| in_order(&m.docker_json(), MOUNT_ORDER))
        .collect();
    doc.set("Mounts", Value::List(mounts));
    doc.set("Config", config);
    doc.set("NetworkSettings", net);
    doc
}

pub fn image_doc(engine: &Engine, name: &str) -> Result<Value> {
    let rec = engine.images().resolve(name)?;
    let (bytes, cfg) = engine.images().config(&rec.id)?;
    let graph = match &rec.top_layer {
        Some(top) => match engine.layers().get(top)? {
            Some(l) => graph_driver(engine, &l.cache_id),
            None => graph_driver(engine, ""),
        },
        None => Value::obj([
            ("Data", Value::Null),
            ("Name", Value::str(docker_driver_name(engine.driver.name()))),
        ]),
    };
    let parent = engine
        .images()
        .parent_of(&rec.id)?
        .map_or_else(String::new, |p| p.to_string());
    let raw: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let container_config = config_doc(raw.get("container_config"));
    // The daemon falls back to the last history entry's comment (`Imported from -`).
    let comment = cfg
        .comment
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| cfg.history.last().and_then(|h| h.comment.clone()))
        .unwrap_or_default();
    let mut doc = Value::obj([
        ("Id", Value::Str(rec.id.to_string())),
        (
            "RepoTags",
            rec.tags
                .iter()
                .map(|t| t.familiar())
                .collect::<Vec<_>>()
                .into(),
        ),
        (
            "RepoDigests",
            rec.digests
                .iter()
                .map(|t| t.familiar())
                .collect::<Vec<_>>()
                .into(),
        ),
        ("Parent", Value::Str(parent)),
        ("Comment", Value::Str(comment)),
        (
            "Created",
            Value::Str(docker_time(cfg.created.as_deref().unwrap_or_default())),
        ),
        (
            "Container",
            Value::Str(cfg.container.clone().unwrap_or_default()),
        ),
        ("ContainerConfig", container_config),
        (
            "DockerVersion",
            Value::Str(cfg.docker_version.clone().unwrap_or_default()),
        ),
        ("Author", Value::Str(cfg.author.clone().unwrap_or_default())),
        ("Config", config_doc(cfg.config.as_ref())),
        ("Architecture", Value::Str(cfg.architecture.clone())),
    ]);
    if let Some(v) = &cfg.variant {
        doc.set("Variant", Value::Str(v.clone()));
    }
    doc.set("Os", Value::Str(cfg.os.clone()));
    doc.set("Size", Value::from(rec.size));
    doc.set("VirtualSize", Value::from(rec.size));
    doc.set("GraphDriver", graph);
    doc.set(
        "RootFS",
        Value::obj([
            ("Type", Value::str("layers")),
            (
                "Layers",
                cfg.rootfs
                    .diff_ids
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .into(),
            ),
        ]),
    );
    doc.set(
        "Metadata",
        Value::obj([(
            "LastTagTime",
            Value::Str(
                rec.last_tag
                    .as_deref()
                    .map_or_else(|| "0001-01-01T00:00:00Z".into(), docker_time),
            ),
        )]),
    );
    Ok(doc)
}

/// Objects found, printed with the format; a name that is neither is reported and makes the
/// exit status 1, as Docker's `inspect`.
pub fn print(docs: &[Value], format: Option<&str>, failed: bool) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    super::template::write_objects(&mut out, format, docs)?;
    Ok(i32::from(failed))
}
