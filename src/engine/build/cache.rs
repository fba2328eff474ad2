//! The build cache (table `build_cache`: key → image ID) and committing a step's image.
//!
//! A key is the sha256 of everything a step's result depends on: the parent image ID (which
//! covers all earlier steps and the base), the step's history text after substitution (RUN:
//! the command and the build args it sees; COPY/ADD: the sources' content digest and the
//! destination), extra inputs that are not in that text (COPY `--chmod`), and the
//! `--source-date-epoch` (it decides the config's timestamps). A hit is used only if the image
//! still exists and its layers can be leased; otherwise the row is dropped.

use super::{BuildError, Builder, State};
use crate::digest::Digest;
use crate::image::ImageConfig;
use crate::layer::Layer;
use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value, json};

impl Builder<'_, '_> {
    pub(super) fn cache_key(&self, st: &State, created_by: &str, extra: &str) -> String {
        let parent = st
            .image
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_else(|| "scratch".into());
        let doc = json!([
            "strata-build-1",
            parent,
            created_by,
            extra,
            self.o.source_date_epoch
        ]);
        Digest::of(doc.to_string().as_bytes()).to_string()
    }

    /// The cached image for `key`, its layers leased, loaded into `st`. False on a miss.
    pub(super) fn try_cache(&mut self, st: &mut State, key: &str) -> Result<bool, BuildError> {
        if self.o.no_cache {
            return Ok(false);
        }
        let conn = self.engine.meta.conn();
        let row: Option<String> = conn
            .query_row(
                "SELECT image_id FROM build_cache WHERE key=?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = row.and_then(|s| s.parse::<Digest>().ok()) else {
            return Ok(false);
        };
        let loaded = (|| -> Option<(Map<String, Value>, Vec<Layer>)> {
            self.engine.images().get(&id).ok()??;
            let (bytes, cfg) = self.engine.images().config(&id).ok()?;
            let layers = self
                .engine
                .layers()
                .acquire_chain(&self.lease, &cfg.rootfs.diff_ids)
                .ok()?;
            let map: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
            Some((map, layers))
        })();
        let Some((config, layers)) = loaded else {
            self.engine.meta.write(|tx| -> Result<(), BuildError> {
                tx.execute("DELETE FROM build_cache WHERE key=?1", params![key])?;
                Ok(())
            })?;
            return Ok(false);
        };
        // Recorded at the end of the build, in one transaction (each write costs an fsync).
        self.hits.push(key.to_string());
        st.image = Some(id.clone());
        st.config = config;
        st.layers = layers;
        self.say(" ---> Using cache");
        self.say(format!(" ---> {}", &id.hex()[..12]));
        Ok(true)
    }

    /// Mark the cache entries this build reused as used now.
    pub(super) fn record_hits(&mut self) -> Result<(), BuildError> {
        if self.hits.is_empty() {
            return Ok(());
        }
        let hits = std::mem::take(&mut self.hits);
        let now = chrono::Utc::now().to_rfc3339();
        self.engine.meta.write(|tx| -> Result<(), BuildError> {
            for k in &hits {
                tx.execute(
                    "UPDATE build_cache SET last_used=?2, uses=uses+1 WHERE key=?1",
                    params![k, now],
                )?;
            }
            Ok(())
        })
    }

    fn created_time(&self) -> String {
        match self.o.source_date_epoch {
            Some(t) => chrono::DateTime::from_timestamp(t, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            None => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        }
    }

    /// Record the step's image: `st`'s config with `run_config` and one more history entry
    /// (and layer, if any); remember its parent (for `images` without `-a`) and the cache key.
    pub(super) fn commit_image(
        &mut self,
        st: &mut State,
        created_by: &str,
        run_config: Map<String, Value>,
        layer: Option<Layer>,
        key: Option<&str>,
    ) -> Result<Digest, BuildError> {
        let now = self.created_time();
        let mut h = Map::new();
        h.insert("created".into(), json!(now));
        h.insert("created_by".into(), json!(created_by));
        let mut cfg = crate::image::config::child_config(
            st.config.clone(),
            run_config,
            &now,
            h,
            layer.as_ref().map(|l| &l.diff_id),
        );
        let mut chain = st.layers.clone();
        chain.extend(layer);
        cfg.remove("container");
        cfg.remove("container_config");
        let bytes = serde_json::to_vec(&Value::Object(cfg.clone())).expect("serializable");
        let parsed = ImageConfig::parse(&bytes)
            .map_err(|e| BuildError::Invalid(format!("image config: {e}")))?;
        let id = self
            .engine
            .images()
            .add(&self.lease, &bytes, &parsed, &chain, &[], None, "")
            .map_err(super::EngineError::from)?;
        let now = chrono::Utc::now().to_rfc3339();
        self.engine.meta.write(|tx| -> Result<(), BuildError> {
            if let Some(p) = &st.image {
                tx.execute(
                    "INSERT OR REPLACE INTO image_parents (image_id, parent) VALUES (?1, ?2)",
                    params![id.to_string(), p.to_string()],
                )?;
            }
            if let Some(k) = key {
                tx.execute(
                    "INSERT OR REPLACE INTO build_cache (key, image_id, created, last_used, uses)
                     VALUES (?1, ?2, ?3, ?3, 1)",
                    params![k, id.to_string(), now],
                )?;
            }
            Ok(())
        })?;
        st.image = Some(id.clone());
        st.config = cfg;
        st.layers = chain;
        self.say(format!(" ---> {}", &id.hex()[..12]));
        Ok(id)
    }

    /// A config-only step: cached, or a new image with an `empty_layer` history entry.
    pub(super) fn config_step(
        &mut self,
        st: &mut State,
        comment: &str,
        run_config: Map<String, Value>,
    ) -> Result<(), BuildError> {
        let created_by = format!("/bin/sh -c #(nop)  {comment}");
        let key = self.cache_key(st, &created_by, "");
        if self.try_cache(st, &key)? {
            return Ok(());
        }
        self.commit_image(st, &created_by, run_config, None, Some(&key))?;
        Ok(())
    }

    /// An image record for a stage that has none yet (`FROM scratch`): containers need one.
    pub(super) fn ensure_image(&mut self, st: &mut State) -> Result<Digest, BuildError> {
        if let Some(id) = &st.image {
            return Ok(id.clone());
        }
        let bytes = serde_json::to_vec(&Value::Object(st.config.clone())).expect("serializable");
        let parsed = ImageConfig::parse(&bytes)
            .map_err(|e| BuildError::Invalid(format!("image config: {e}")))?;
        let id = self
            .engine
            .images()
            .add(&self.lease, &bytes, &parsed, &[], &[], None, "")
            .map_err(super::EngineError::from)?;
        st.image = Some(id.clone());
        Ok(id)
    }
}
