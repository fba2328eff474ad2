//! `strata import`: a one-layer image from a rootfs tarball or directory, as `docker import`.

use super::{Engine, EngineError, io_err};
use crate::archive;
use crate::digest::Digest;
use crate::image::change;
use crate::image::{ImageConfig, Reference};
use crate::layer::Layer;
use crate::lease::Lease;
use serde_json::{Map, Value, json};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

pub enum ImportSource<'a> {
    Stdin,
    Path(&'a Path),
}

impl Engine {
    pub fn import(
        &self,
        source: ImportSource,
        name: Option<&Reference>,
        changes: &[String],
        message: Option<&str>,
    ) -> Result<Digest, EngineError> {
        // Validate the changes before any work.
        let mut container_config = Map::new();
        for c in changes {
            change::apply(&mut container_config, c)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
        }
        let lease = self.lease();
        let layer = match source {
            ImportSource::Stdin => self.import_stream(&lease, io::stdin().lock(), "-")?,
            ImportSource::Path(p) if p.is_dir() => self.import_dir(&lease, p)?,
            ImportSource::Path(p) => {
                let f = File::open(p).map_err(io_err(format!("opening {}", p.display())))?;
                self.import_stream(
                    &lease,
                    BufReader::with_capacity(1 << 20, f),
                    &p.display().to_string(),
                )?
            }
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut history = json!({"created": now, "comment": "Imported from -"});
        if let Some(m) = message {
            history["comment"] = json!(m);
        }
        let config = json!({
            "architecture": super::load::host_arch(),
            "config": Value::Object(container_config),
            "created": now,
            "history": [history],
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.to_string()]},
        });
        let bytes = serde_json::to_vec(&config).expect("serializable");
        let cfg = ImageConfig::parse(&bytes).map_err(crate::image::ImageError::from)?;
        let names: Vec<Reference> = name.cloned().into_iter().collect();
        Ok(self
            .images()
            .add(&lease, &bytes, &cfg, &[layer], &names, None, "import")?)
    }

    fn import_stream(&self, lease: &Lease, r: impl Read, what: &str) -> Result<Layer, EngineError> {
        let (_, r) = archive::decompress(r)
            .map_err(|e| EngineError::Invalid(format!("import {what}: {e}")))?;
        Ok(self.layers().ingest_unknown(lease, None, r)?)
    }

    /// Tar the directory on a thread into a pipe and apply it as the layer, so the diffID is
    /// that of a normal, deterministic layer tar.
    fn import_dir(&self, lease: &Lease, dir: &Path) -> Result<Layer, EngineError> {
        let (reader, writer) = io::pipe().map_err(io_err("creating a pipe"))?;
        let dir = dir.to_path_buf();
        let producer = std::thread::spawn(move || archive::tar_directory(&dir, writer, None));
        let r =
            self.layers()
                .ingest_unknown(lease, None, BufReader::with_capacity(1 << 20, reader));
        let produced = producer
            .join()
            .map_err(|_| EngineError::Invalid("tar writer panicked".into()))?;
        produced.map_err(|e| EngineError::Invalid(format!("import: {e}")))?;
        Ok(r?)
    }
}
