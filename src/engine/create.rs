//! `strata create` (and `run`'s first half), storage side: a container record and its
//! writable layer on the image's top layer, which is held by a lease from the moment it is
//! looked up, so an `rmi` racing the create cannot take it away.

use super::{Engine, EngineError};
use crate::container::{Container, NewContainer, RunConfig};

impl Engine {
    pub fn create_container(
        &self,
        name: Option<&str>,
        image: &str,
        mut config: RunConfig,
    ) -> Result<Container, EngineError> {
        let rec = self.images().resolve(image)?;
        let lease = self.lease();
        // The image's VOLUMEs get anonymous volumes (unless a mount covers them).
        let (_, cfg) = self.images().config(&rec.id)?;
        let image_volumes: Vec<String> = cfg
            .field("Volumes")
            .and_then(|v| v.as_object())
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        self.resolve_mounts(&mut config, &image_volumes, &lease)?;
        let top = match &rec.top_layer {
            Some(t) => Some(self.layers().acquire(&lease, t)?.ok_or_else(|| {
                EngineError::Invalid(format!("image {image}: top layer {t} missing"))
            })?),
            None => None,
        };
        crate::failpoint::pause("container-create");
        // As the user typed it (`busybox`, not `busybox:latest`): Docker's `Config.Image` and
        // `ps`'s IMAGE column.
        let shown = image.to_string();
        let made = self.containers().create(NewContainer {
            name,
            image_id: &rec.id,
            image_ref: &shown,
            parent: top.as_ref().map(|l| (&l.chain_id, l.cache_id.as_str())),
            config,
        });
        if made.is_err() {
            // The image went meanwhile: its layers were ours alone to keep; let them go.
            drop(lease);
            let _ = self.collect_layers();
        }
        let c = made?;
        if let Err(e) = self.copy_up(&c) {
            let _ = self.containers().remove(&c);
            self.remove_anonymous_volumes(&c);
            return Err(e);
        }
        Ok(c)
    }
}
