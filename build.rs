//! Records the compiler's version and the runtime crate's version for `strata version`
//! (Docker's "Go version" line, and its runc component).

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.split_whitespace().nth(1).unwrap_or("unknown").to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=STRATA_RUSTC_VERSION={version}");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut runtime = "unknown".to_string();
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == "name = \"libcontainer\""
            && let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = \""))
        {
            runtime = v.trim_end_matches('"').to_string();
        }
    }
    println!("cargo:rustc-env=STRATA_LIBCONTAINER_VERSION={runtime}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
}
