//! `strata diff` and `strata commit`: what a container's writable layer changed, and a new
//! image made of the container's image plus one layer holding exactly those changes.
//!
//! On overlay the layer tar is the upper directory itself (whiteouts as `.wh.` entries, opaque
//! directories as `.wh..wh..opq`): only the container's own files are read, never the whole
//! tree. On vfs the change list against the parent layer's copy is computed first and only
//! the listed paths are written. Either way the tar is produced on a thread into a pipe and
//! applied as it comes (hashed on the way for its diffID), never buffered whole.

use super::{Engine, EngineError, io_err};
use crate::archive::{self, WhiteoutFormat};
use crate::container::Container;
use crate::digest::Digest;
use crate::driver::changes::{Change, ChangeKind};
use crate::image::{ImageConfig, Reference, change};
use crate::layer::Layer;
use crate::lease::Lease;
use serde_json::{Map, Value, json};
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// diffID of an empty layer tar (two zero blocks): Docker records no layer for it.
pub const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// An in-process pipe of 1 MiB chunks (at most `CHUNKS_IN_FLIGHT` queued): the tar writer
/// thread hands whole buffers to the reader, without the kernel pipe's 64 KiB round trips.
/// Bounded, so the layer is streamed, never held whole in memory.
const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 4;

struct ChunkWriter {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

struct ChunkReader {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

fn chunk_pipe() -> (ChunkReader, ChunkWriter) {
    let (tx, rx) = sync_channel(CHUNKS_IN_FLIGHT);
    (
        ChunkReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        },
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        },
    )
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(full)
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = b.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&b[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0), // writer gone: end of stream
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[derive(Default)]
pub struct CommitOptions<'a> {
    pub message: Option<&'a str>,
    pub author: Option<&'a str>,
    /// Dockerfile-style config edits (`CMD …`, `ENV …`), as `--change`.
    pub changes: &'a [String],
    pub name: Option<&'a Reference>,
    /// Freeze a running container while its layer is read (Docker's `--pause`, default on).
    pub pause: bool,
}

impl Engine {
    /// The cache-id of the layer a container's writable layer sits on: its init layer, or
    /// for records made before init layers, the image's top layer. Changes are measured
    /// against it, so the runtime's mount points never count as the container's.
    fn parent_cache_id(&self, c: &Container) -> Result<Option<String>, EngineError> {
        let init = crate::init_layer::id_for(&c.cache_id);
        if self.driver.exists(&init) {
            return Ok(Some(init));
        }
        Ok(match &c.parent {
            Some(p) => Some(
                self.layers()
                    .get(p)?
                    .ok_or_else(|| {
                        EngineError::Invalid(format!(
                            "container {}: its image's top layer {p} is missing",
                            c.name
                        ))
                    })?
                    .cache_id,
            ),
            None => None,
        })
    }

    /// `docker diff`: the container's changes to its image, in walk order.
    pub fn container_changes(&self, c: &Container) -> Result<Vec<Change>, EngineError> {
        let parent = self.parent_cache_id(c)?;
        Ok(self.driver.changes(&c.cache_id, parent.as_deref())?)
    }

    /// Bytes of the container's writable layer, as Docker's SizeRw: on overlay the upper
    /// directory's own files; on vfs the added and changed files of the copy.
    pub fn container_rw_size(&self, c: &Container) -> Result<u64, EngineError> {
        let parent = self.parent_cache_id(c)?;
        Ok(super::df::rw_size(
            self.driver.as_ref(),
            &c.cache_id,
            parent.as_deref(),
        )?)
    }

    /// The command Docker records as a commit's `created_by`: the container's Cmd (the image's
    /// when the container set neither Cmd nor Entrypoint), joined by spaces.
    pub fn container_cmd(
        &self,
        c: &Container,
        image_config: Option<&Map<String, Value>>,
    ) -> Vec<String> {
        if !c.config.cmd.is_empty() {
            return c.config.cmd.clone();
        }
        if !c.config.entrypoint.is_empty() {
            return Vec::new();
        }
        crate::image::config::string_list(image_config.and_then(|m| m.get("Cmd")))
    }

    /// A new image: the container's image plus one layer of the container's changes (none if
    /// it changed nothing), a history entry, and the container's run config with `changes`
    /// applied. Returns the image ID.
    pub fn commit(&self, c: &Container, o: &CommitOptions) -> Result<Digest, EngineError> {
        let (bytes, base) = self.images().config(&c.image_id)?;
        let cfg: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::Invalid(format!("image {}: config: {e}", c.image_id)))?;
        let mut cc: Map<String, Value> = cfg
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let created_by = self.container_cmd(c, Some(&cc)).join(" ");
        // The container's own run settings over the image's.
        let rc = &c.config;
        if !rc.entrypoint.is_empty() {
            cc.insert("Entrypoint".into(), json!(rc.entrypoint));
            cc.insert(
                "Cmd".into(),
                if rc.cmd.is_empty() {
                    Value::Null
                } else {
                    json!(rc.cmd)
                },
            );
        } else if !rc.cmd.is_empty() {
            cc.insert("Cmd".into(), json!(rc.cmd));
        }
        if !rc.env.is_empty() {
            let mut env = crate::image::config::string_list(cc.get("Env"));
            for e in &rc.env {
                let key = e.split('=').next().unwrap_or(e);
                env.retain(|x| x.split('=').next() != Some(key));
                env.push(e.clone());
            }
            cc.insert("Env".into(), json!(env));
        }
        if !rc.working_dir.is_empty() {
            cc.insert("WorkingDir".into(), json!(rc.working_dir));
        }
        if !rc.user.is_empty() {
            cc.insert("User".into(), json!(rc.user));
        }
        for ch in o.changes {
            change::apply(&mut cc, ch).map_err(|e| EngineError::Invalid(e.to_string()))?;
        }

        let layers = self.layers();
        let lease = self.lease();
        let mut chain = layers.acquire_chain(&lease, &base.rootfs.diff_ids)?;
        let frozen = if o.pause {
            Some(
                super::pause::PausedWhile::new(self, c)
                    .map_err(|e| EngineError::Invalid(e.to_string()))?,
            )
        } else {
            None
        };
        let new_layer = self.commit_layer(&lease, c, chain.last())?;
        drop(frozen);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut h = Map::new();
        h.insert("created".into(), json!(now));
        if let Some(a) = o.author {
            h.insert("author".into(), json!(a));
        }
        if !created_by.is_empty() {
            h.insert("created_by".into(), json!(created_by));
        }
        if let Some(m) = o.message.filter(|m| !m.is_empty()) {
            h.insert("comment".into(), json!(m));
        }
        let mut cfg = crate::image::config::child_config(
            cfg,
            cc,
            &now,
            h,
            new_layer.as_ref().map(|l| &l.diff_id),
        );
        chain.extend(new_layer);
        cfg.insert("container".into(), json!(c.id));
        cfg.remove("container_config");
        cfg.remove("comment");
        match o.author {
            Some(a) => cfg.insert("author".into(), json!(a)),
            None => cfg.remove("author"),
        };
        let out = serde_json::to_vec(&Value::Object(cfg)).expect("serializable");
        let parsed = ImageConfig::parse(&out).map_err(crate::image::ImageError::from)?;
        let names: Vec<Reference> = o.name.cloned().into_iter().collect();
        Ok(self
            .images()
            .add(&lease, &out, &parsed, &chain, &names, None, "")?)
    }

    /// Ingest the container's changes as a layer on `parent`, streaming the tar through a pipe.
    /// None when there is nothing to record.
    pub(crate) fn commit_layer(
        &self,
        lease: &Lease,
        c: &Container,
        parent: Option<&Layer>,
    ) -> Result<Option<Layer>, EngineError> {
        let dir = self.driver.diff_dir(&c.cache_id);
        let overlay = self.driver.whiteout_format() == WhiteoutFormat::Overlay;
        let list: Vec<(Vec<u8>, bool)> = if overlay {
            let empty = std::fs::read_dir(&dir)
                .map_err(io_err(format!("reading {}", dir.display())))?
                .next()
                .is_none();
            if empty {
                return Ok(None);
            }
            Vec::new()
        } else {
            let changes = self.container_changes(c)?;
            if changes.is_empty() {
                return Ok(None);
            }
            changes
                .into_iter()
                .map(|ch| (ch.path, ch.kind == ChangeKind::Delete))
                .collect()
        };
        let (reader, writer) = chunk_pipe();
        let tar_dir = dir.clone();
        let producer = std::thread::spawn(move || {
            if overlay {
                archive::tar_directory(&tar_dir, writer, Some(WhiteoutFormat::Overlay))
            } else {
                archive::tar_changes(&tar_dir, &list, writer)
            }
        });
        let r = self.layers().ingest_unknown(lease, parent, reader);
        let produced = producer
            .join()
            .map_err(|_| EngineError::Invalid("tar writer panicked".into()))?;
        let layer = match (produced, r) {
            (Ok(()), r) => r?,
            (Err(pe), Ok(_)) => {
                return Err(EngineError::Invalid(format!(
                    "container {}: writing its changes: {pe}",
                    c.name
                )));
            }
            // A consumer failure shows as a broken pipe in the producer: report both.
            (Err(pe), Err(e)) => {
                return Err(EngineError::Invalid(format!(
                    "container {}: writing its changes: {pe} ({e})",
                    c.name
                )));
            }
        };
        if layer.diff_id.to_string() == EMPTY_LAYER_DIFF_ID {
            return Ok(None);
        }
        Ok(Some(layer))
    }
}
