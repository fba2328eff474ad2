//! Docker's `pause`/`unpause`: the container's processes frozen through its cgroup freezer
//! (`runtime::freezer`); `commit` pauses a running container while it reads the writable
//! layer, as Docker's does by default, so the layer is not taken mid-write.

use super::Engine;
use super::run::{RunError, reconcile};
use crate::container::Container;
use crate::runtime::freezer;
use crate::runtime::state::Status;

fn running(engine: &Engine, c: &Container) -> Result<bool, RunError> {
    Ok(reconcile(engine, c)?.status == Status::Running)
}

fn freezer_error(c: &Container, e: std::io::Error) -> RunError {
    RunError::Io {
        what: format!("container {}: freezer", c.name),
        source: e,
    }
}

/// Freeze a running container (Docker: "Container … is not running" / "is already paused").
pub fn pause(engine: &Engine, c: &Container) -> Result<(), RunError> {
    if !running(engine, c)? {
        return Err(RunError::NotRunning(c.name.clone()));
    }
    if freezer::is_paused(&c.id) {
        return Err(RunError::Paused(c.name.clone(), "is already paused"));
    }
    freezer::set_paused(&c.id, true).map_err(|e| freezer_error(c, e))?;
    let _ = engine.containers().report(c, "pause", &[]);
    Ok(())
}

/// Thaw a paused container (Docker: "Container … is not paused").
pub fn unpause(engine: &Engine, c: &Container) -> Result<(), RunError> {
    if !running(engine, c)? || !freezer::is_paused(&c.id) {
        return Err(RunError::Paused(c.name.clone(), "is not paused"));
    }
    freezer::set_paused(&c.id, false).map_err(|e| freezer_error(c, e))?;
    let _ = engine.containers().report(c, "unpause", &[]);
    Ok(())
}

/// Thaw `c` if it is frozen (before a signal, which a frozen process would not act on).
pub fn thaw_if_paused(c: &Container) {
    if freezer::is_paused(&c.id) {
        let _ = freezer::set_paused(&c.id, false);
    }
}

/// A running, unpaused container frozen for the life of this guard (commit's `--pause`).
pub struct PausedWhile(Option<String>);

impl PausedWhile {
    pub fn new(engine: &Engine, c: &Container) -> Result<PausedWhile, RunError> {
        if !running(engine, c)? || freezer::is_paused(&c.id) {
            return Ok(PausedWhile(None));
        }
        freezer::set_paused(&c.id, true).map_err(|e| freezer_error(c, e))?;
        Ok(PausedWhile(Some(c.id.clone())))
    }
}

impl Drop for PausedWhile {
    fn drop(&mut self) {
        if let Some(id) = &self.0 {
            let _ = freezer::set_paused(id, false);
        }
    }
}
