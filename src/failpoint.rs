//! Pause points for crash and race tests: with `STRATA_PAUSE_AT=<name>` and
//! `STRATA_PAUSE_DIR=<dir>` set, the process creates `<dir>/<name>.reached` when it gets to
//! the point called `<name>` and waits there until `<dir>/<name>.go` exists. A test can then
//! run a racing command, or SIGKILL the paused one, at exactly the instant it wants: the races
//! of issue 7 are windows of microseconds that random timing finds only sometimes.
//! Without the variables (every real use) a pause point is one `getenv`.

use std::path::PathBuf;
use std::time::Duration;

pub fn pause(name: &str) {
    let Some(at) = std::env::var_os("STRATA_PAUSE_AT") else {
        return;
    };
    if at.to_str() != Some(name) {
        return;
    }
    let Some(dir) = std::env::var_os("STRATA_PAUSE_DIR").map(PathBuf::from) else {
        return;
    };
    // Written whole, then renamed: the test reads the pid as soon as the name appears.
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::write(&tmp, std::process::id().to_string());
    let _ = std::fs::rename(&tmp, dir.join(format!("{name}.reached")));
    let go = dir.join(format!("{name}.go"));
    while !go.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
}
