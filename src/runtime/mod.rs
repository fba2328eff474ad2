//! Running containers: the OCI runtime spec strata generates (`spec`), the runtime that
//! executes it (`backend`: embedded libcontainer, or an external OCI runtime such as runc),
//! the per-container monitor process that owns the container's stdio, json-file logs and exit
//! status (`monitor`, as conmon does for Podman), and the state file it keeps (`state`).
//!
//! This module knows nothing of images or the metadata store; `engine::run` ties it to them.

pub mod backend;
pub mod cgroup_stats;
pub mod freezer;
pub mod limits;
pub mod logs;
pub mod monitor;
pub mod mounts;
pub mod pty;
pub mod spec;
pub mod state;
pub mod user;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Backend(String),
    #[error(transparent)]
    Exec(#[from] user::ExecError),
    #[error(transparent)]
    User(#[from] user::UserError),
    #[error(transparent)]
    LogOpt(#[from] logs::LogOptError),
}

impl RuntimeError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let what = what.into();
        move |source| RuntimeError::Io { what, source }
    }
}
