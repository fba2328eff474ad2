//! strata: a container image and storage engine. See docs/architecture.md for the module map;
//! arrows point down only: cli → engine-level stores → layer/image → driver/archive/content → digest/meta.

pub mod archive;
pub mod atomic_file;
pub mod container;
pub mod content;
pub mod digest;
pub mod dockerfile;
pub mod driver;
pub mod engine;
pub mod events;
pub mod failpoint;
pub mod image;
pub mod init_layer;
pub mod layer;
pub mod lease;
pub mod lock;
pub mod meta;
pub mod registry;
pub mod runtime;
pub mod volume;
pub mod worker_pool;
