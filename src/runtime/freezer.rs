//! `pause`/`unpause`: a container's processes frozen by its cgroup's freezer (v1
//! `freezer.state`, or v2 `cgroup.freeze`), as Docker does. The freezer's own state is the
//! record: nothing in the store says "paused", so a container can never be shown paused
//! when it is not, whatever was killed half-way.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The container's freezer control file: v1 `freezer/strata/<id>/freezer.state`, else v2
/// `strata/<id>/cgroup.freeze`. None when the container has no such cgroup (not running).
fn control(id: &str) -> Option<(PathBuf, bool)> {
    let rel = super::spec::cgroup_path(id);
    let rel = rel.trim_start_matches('/');
    let v1 = PathBuf::from("/sys/fs/cgroup/freezer")
        .join(rel)
        .join("freezer.state");
    if v1.exists() {
        return Some((v1, true));
    }
    let v2 = PathBuf::from("/sys/fs/cgroup")
        .join(rel)
        .join("cgroup.freeze");
    v2.exists().then_some((v2, false))
}

/// Whether the container's processes are frozen.
pub fn is_paused(id: &str) -> bool {
    let Some((path, v1)) = control(id) else {
        return false;
    };
    let state = std::fs::read_to_string(path).unwrap_or_default();
    if v1 {
        state.trim() == "FROZEN" || state.trim() == "FREEZING"
    } else {
        state.trim() == "1"
    }
}

/// Freeze (`true`) or thaw the container's cgroup, waiting until the kernel reports it done.
pub fn set_paused(id: &str, paused: bool) -> std::io::Result<()> {
    let Some((path, v1)) = control(id) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the container has no freezer cgroup",
        ));
    };
    let (want, value) = match (v1, paused) {
        (true, true) => ("FROZEN", "FROZEN"),
        (true, false) => ("THAWED", "THAWED"),
        (false, true) => ("1", "1"),
        (false, false) => ("0", "0"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::fs::write(&path, value)?;
        if std::fs::read_to_string(&path)?.trim() == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the freezer did not reach {want}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
