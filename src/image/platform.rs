//! Platforms (`os/arch[/variant]`) as `--platform` names them and image configs and indexes
//! record them, normalized as containerd's `platforms` package does: pull picks a manifest by
//! them, build stamps them on what it makes.

/// The host's architecture in Go's GOARCH words, as image configs record it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        a => a,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPlatform(pub String);

/// What `--platform` asks for, normalized as containerd's `platforms.Parse` does.
#[derive(Debug, PartialEq)]
pub struct WantedPlatform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
    /// Given by the user (a single manifest must then match it), not the host's default.
    pub explicit: bool,
}

impl std::fmt::Display for WantedPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

impl WantedPlatform {
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        os == self.os
            && arch == self.arch
            && (self.variant.is_none() || variant == self.variant.as_deref())
    }
}

/// Go's GOOS and GOARCH values: a one-word `--platform` must be one of them (containerd's rule).
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

pub fn normalize_os(os: &str) -> String {
    match os.to_ascii_lowercase().as_str() {
        "macos" => "darwin".into(),
        o => o.into(),
    }
}

/// containerd's `normalizeArch`: the aliases distributions use, and variants made canonical.
pub fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.map(str::to_ascii_lowercase);
    match arch.as_str() {
        "i386" => ("386".into(), None),
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64".into(), variant.filter(|v| v != "8" && v != "v8")),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => (
            "arm".into(),
            variant.map(|v| match v.as_str() {
                "5" | "6" | "7" | "8" => format!("v{v}"),
                _ => v,
            }),
        ),
        _ => (arch, variant),
    }
}

/// Parses `--platform` (default: linux and the host's architecture) as Docker does, so that a
/// typo is refused before anything is fetched rather than pulling the default platform.
pub fn parse_wanted(p: Option<&str>) -> Result<WantedPlatform, InvalidPlatform> {
    let host = host_arch();
    let Some(s) = p else {
        return Ok(WantedPlatform {
            os: "linux".into(),
            arch: host.into(),
            variant: None,
            explicit: false,
        });
    };
    let invalid = |why: &str| InvalidPlatform(format!("{s:?}: {why}: invalid argument"));
    let parts: Vec<&str> = s.split('/').collect();
    if let Some(bad) = parts.iter().find(|c| {
        c.is_empty()
            || !c
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
    }) {
        return Err(invalid(&format!(
            "{bad:?} is an invalid component of {s:?}: platform specifier component must match \"^[A-Za-z0-9_-]+$\""
        )));
    }
    let (os, (arch, variant)) = match parts.as_slice() {
        [one] => {
            let os = normalize_os(one);
            if KNOWN_OS.contains(&os.as_str()) {
                (os, (host.to_string(), None))
            } else {
                let (arch, variant) = normalize_arch(one, None);
                if !KNOWN_ARCH.contains(&arch.as_str()) {
                    return Err(invalid("unknown operating system or architecture"));
                }
                ("linux".to_string(), (arch, variant))
            }
        }
        [os, arch] => (normalize_os(os), normalize_arch(arch, None)),
        [os, arch, v] => (normalize_os(os), normalize_arch(arch, Some(v))),
        _ => return Err(invalid("cannot parse platform specifier")),
    };
    Ok(WantedPlatform {
        os,
        arch,
        variant,
        explicit: true,
    })
}

impl WantedPlatform {
    /// `--platform` as given (None: linux and the host's architecture).
    pub fn parse(p: Option<&str>) -> Result<WantedPlatform, InvalidPlatform> {
        parse_wanted(p)
    }
}
