//! `strata build`: a Dockerfile to images, one intermediate image per step, as Docker's
//! classic builder (its output, its `#(nop)` history, intermediate images that `images -a`
//! lists), with a content-addressed cache.
//!
//! - Stages: ARGs before the first FROM are global (usable in FROM); every FROM starts a
//!   stage; only the target stage and the stages it needs (`FROM <stage>`, `COPY --from`) run.
//! - Steps: config-only instructions make an image whose history entry is `empty_layer`;
//!   RUN runs in a real container through the runtime, and the container's writable layer
//!   becomes the step's layer (as `commit`); COPY/ADD/WORKDIR write into a storage-only
//!   container's root filesystem the same way. Temporary containers are removed whether the
//!   step works or fails.
//! - Cache (`cache`): key = sha256(parent image ID, the step's history text after
//!   substitution — which holds the build args a RUN sees and a COPY's content digest —, the
//!   COPY mode flags, the `--source-date-epoch`). A hit reuses the step's image.
//! - Store safety: one lease for the whole build holds every layer and blob from the moment
//!   it is reused or created until the image records naming them are committed, so `rmi`
//!   and `prune` running meanwhile never take them. A failed build leaves only the images of
//!   the steps that completed (and their cache entries).

mod cache;
pub mod context;
mod download;
mod fs_steps;
mod steps;

use super::{Engine, EngineError};
use crate::digest::Digest;
use crate::dockerfile::{self, Args, Instruction, Lex, ParseError};
use crate::image::Reference;
use crate::layer::Layer;
use crate::lease::Lease;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{file}:{line}: {msg}")]
    At {
        file: String,
        line: usize,
        msg: String,
    },
    #[error("{file}:{line}: The command '{cmd}' returned a non-zero code: {code}")]
    RunFailed {
        file: String,
        line: usize,
        cmd: String,
        code: i32,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Invalid(String),
}

impl From<rusqlite::Error> for BuildError {
    fn from(e: rusqlite::Error) -> Self {
        BuildError::Engine(e.into())
    }
}
impl From<crate::container::ContainerError> for BuildError {
    fn from(e: crate::container::ContainerError) -> Self {
        BuildError::Engine(e.into())
    }
}
impl From<crate::meta::MetaError> for BuildError {
    fn from(e: crate::meta::MetaError) -> Self {
        BuildError::Engine(e.into())
    }
}

impl BuildError {
    /// The exit code `strata build` ends with: a failing RUN's own code, as Docker's.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::RunFailed { code, .. } if *code > 0 => *code,
            _ => 1,
        }
    }
}

pub struct BuildOptions {
    /// The context directory (a tar context is unpacked by the caller).
    pub context: PathBuf,
    /// The Dockerfile's name for messages, and its text.
    pub dockerfile_name: String,
    pub dockerfile: String,
    pub tags: Vec<Reference>,
    /// `--build-arg K=V` (a bare `K` is resolved from the environment by the caller).
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub labels: Vec<(String, String)>,
    pub network: String,
    pub quiet: bool,
    pub source_date_epoch: Option<i64>,
    /// `--platform os/arch[/variant]`: the platform of what is built (default: the host's).
    pub platform: Option<String>,
}

/// An `ARG name[=default]` declaration.
type ArgDecl = (String, Option<String>);

/// A stage as written.
struct StageDef {
    name: Option<String>,
    from: Instruction,
    base: String,
    body: Vec<Instruction>,
}

/// A stage while it runs (and after, for `FROM <stage>` and `COPY --from`).
#[derive(Clone, Default)]
pub(crate) struct State {
    /// The current image (None: `FROM scratch` and nothing committed yet).
    image: Option<Digest>,
    /// The whole image config document.
    config: Map<String, Value>,
    layers: Vec<Layer>,
    /// Declared ARGs with their values (None: declared without a value).
    args: Vec<(String, Option<String>)>,
    cmd_set: bool,
}

impl State {
    fn run_config(&self) -> Map<String, Value> {
        self.config
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }
    fn env(&self) -> Vec<String> {
        crate::image::config::string_list(self.run_config().get("Env"))
    }
    /// What `$VAR` sees: ARG values, then ENV (ENV wins, as Docker's).
    fn expansion_env(&self) -> Vec<String> {
        let mut e: Vec<String> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        e.extend(self.env());
        e
    }
    fn shell(&self) -> Vec<String> {
        let s = crate::image::config::string_list(self.run_config().get("Shell"));
        if s.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            s
        }
    }
}

/// One build in progress.
pub(crate) struct Builder<'e, 'o> {
    engine: &'e Engine,
    lease: Lease<'e>,
    o: &'o BuildOptions,
    out: &'o mut dyn Write,
    lex: Lex,
    file: String,
    /// Global ARG values (before the first FROM): FROM lines and `ARG X` without a value.
    meta_env: Vec<String>,
    context: Option<context::Tree>,
    used_args: BTreeSet<String>,
    /// Cache keys reused, recorded at the end.
    hits: Vec<String>,
    /// Config blobs of images this build leased (bases, `--from` images), checked once the
    /// lease is released.
    held_blobs: Vec<String>,
    step: usize,
    total: usize,
}

/// Docker's `%q` of a string (Go's strconv.Quote, for ASCII-printable input and escapes).
pub(crate) fn go_quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                o.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Go's `%q` of a []string: `["a" "b"]`.
pub(crate) fn go_quote_list(l: &[String]) -> String {
    let parts: Vec<String> = l.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", parts.join(" "))
}

fn split_stages(
    file: &str,
    df: &dockerfile::Dockerfile,
    lex: &Lex,
) -> Result<(Vec<ArgDecl>, Vec<StageDef>), BuildError> {
    let mut meta_args = Vec::new();
    let mut stages: Vec<StageDef> = Vec::new();
    for ins in &df.instructions {
        if ins.cmd == "from" {
            let Args::Shell(s) = &ins.args else {
                unreachable!()
            };
            let words: Vec<&str> = s.split_whitespace().collect();
            let (base, name) = match words.as_slice() {
                [b] => (b.to_string(), None),
                [b, kw, n] if kw.eq_ignore_ascii_case("as") => {
                    (b.to_string(), Some(n.to_ascii_lowercase()))
                }
                _ => {
                    return Err(BuildError::At {
                        file: file.into(),
                        line: ins.line,
                        msg: "FROM requires either one or three arguments".into(),
                    });
                }
            };
            stages.push(StageDef {
                name,
                from: ins.clone(),
                base,
                body: Vec::new(),
            });
        } else if let Some(st) = stages.last_mut() {
            st.body.push(ins.clone());
        } else if ins.cmd == "arg" {
            let Args::Shell(s) = &ins.args else {
                unreachable!()
            };
            for w in dockerfile::split_words(s, lex.escape) {
                match w.split_once('=') {
                    Some((k, v)) => meta_args.push((k.to_string(), Some(v.to_string()))),
                    None => meta_args.push((w, None)),
                }
            }
        } else {
            return Err(BuildError::At {
                file: file.into(),
                line: ins.line,
                msg: format!(
                    "{} before FROM: no build stage in current context",
                    ins.cmd.to_uppercase()
                ),
            });
        }
    }
    if stages.is_empty() {
        return Err(BuildError::At {
            file: file.into(),
            line: 1,
            msg: "the Dockerfile has no FROM instruction".into(),
        });
    }
    Ok((meta_args, stages))
}

impl Engine {
    /// Build the Dockerfile; returns the final image ID. Step lines go to `out`; a RUN's own
    /// output goes to this process's stdout/stderr (unless `quiet`).
    pub fn build(&self, o: &BuildOptions, out: &mut dyn Write) -> Result<Digest, BuildError> {
        let df = dockerfile::parse(&o.dockerfile_name, &o.dockerfile)?;
        let lex = Lex::new(df.escape);
        let file = o.dockerfile_name.clone();
        let (meta_decl, mut stages) = split_stages(&file, &df, &lex)?;
        let given: HashMap<&str, &str> = o
            .build_args
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Global ARGs: a --build-arg overrides the default.
        let mut meta_env: Vec<String> = Vec::new();
        let mut used_args = BTreeSet::new();
        for (k, d) in &meta_decl {
            let v = match given.get(k.as_str()) {
                Some(v) => {
                    used_args.insert(k.clone());
                    Some(v.to_string())
                }
                None => match d {
                    Some(d) => Some(
                        lex.process_word(d, &meta_env)
                            .map_err(|e| BuildError::Invalid(format!("{file}: ARG {k}: {e}")))?,
                    ),
                    None => None,
                },
            };
            if let Some(v) = v {
                meta_env.push(format!("{k}={v}"));
            }
        }
        for s in &mut stages {
            s.base = lex
                .process_word(&s.base, &meta_env)
                .map_err(|e| BuildError::At {
                    file: file.clone(),
                    line: s.from.line,
                    msg: e.to_string(),
                })?;
        }
        let stage_names: Vec<Option<String>> = stages.iter().map(|s| s.name.clone()).collect();
        let find_stage = |name: &str, before: usize| find_stage(&stage_names, name, before);
        let target = match &o.target {
            Some(t) => find_stage(t, stages.len()).ok_or_else(|| {
                BuildError::Invalid(format!("failed to reach build target {t} in Dockerfile"))
            })?,
            None => stages.len() - 1,
        };
        // --label: a LABEL step at the end of the target stage, as the classic builder adds.
        if !o.labels.is_empty() {
            let text = o
                .labels
                .iter()
                .map(|(k, v)| format!("{}={}", go_quote(k), go_quote(v)))
                .collect::<Vec<_>>()
                .join(" ");
            let line = stages[target]
                .body
                .last()
                .map_or(stages[target].from.line, |i| i.line);
            let ins = dockerfile::parser::parse_line(&file, line, &format!("LABEL {text}"))?;
            stages[target].body.push(ins);
        }
        // The stages the target needs, and what each needs first.
        let mut needed = BTreeSet::new();
        let mut deps: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if !needed.insert(i) {
                continue;
            }
            let mut d = Vec::new();
            if let Some(j) = find_stage(&stages[i].base, i) {
                d.push(j);
            }
            for ins in &stages[i].body {
                if let Some(f) = ins.flag("from")
                    && matches!(ins.cmd.as_str(), "copy" | "add")
                {
                    let f = lex
                        .process_word(f, &meta_env)
                        .unwrap_or_else(|_| f.to_string());
                    if let Some(j) = find_stage(&f, i) {
                        d.push(j);
                    }
                }
            }
            todo.extend(d.iter().copied());
            deps.insert(i, d);
        }
        // Step numbers as if the stages ran one after another.
        let mut offsets = HashMap::new();
        let mut n = 0;
        for &i in &needed {
            offsets.insert(i, n);
            n += 1 + stages[i].body.len();
        }
        let total = needed.iter().map(|&i| 1 + stages[i].body.len()).sum();
        let mut b = Builder {
            engine: self,
            lease: self.lease(),
            o,
            out,
            lex,
            file: file.clone(),
            meta_env: meta_env.clone(),
            context: None,
            used_args,
            hits: Vec::new(),
            held_blobs: Vec::new(),
            step: 0,
            total,
        };
        let mut done: HashMap<usize, State> = HashMap::new();
        let result = (|| -> Result<State, BuildError> {
            // Waves: every stage whose stages are built is ready; several ready stages run at
            // once (each in a thread with its own store session, its output held back and
            // printed whole, in stage order); a single one runs here, streaming its output.
            while done.len() < needed.len() {
                let ready: Vec<usize> = needed
                    .iter()
                    .copied()
                    .filter(|i| {
                        !done.contains_key(i) && deps[i].iter().all(|d| done.contains_key(d))
                    })
                    .collect();
                if ready.len() == 1 {
                    let i = ready[0];
                    b.step = offsets[&i];
                    let st = b.run_stage(&stages[i], i, &stage_names, &done)?;
                    done.insert(i, st);
                    continue;
                }
                for (i, st) in b.run_parallel(&stages, &ready, &offsets, &stage_names, &done)? {
                    done.insert(i, st);
                }
            }
            Ok(done.remove(&target).unwrap_or_default())
        })();
        if let Some(t) = b.context.as_mut() {
            let _ = t.save_stat_cache(&self.meta);
        }
        let _ = b.record_hits();
        let outcome = (|| -> Result<Digest, BuildError> {
            let st = result?;
            let id = match &st.image {
                Some(id) => id.clone(),
                None => b.ensure_image(&mut st.clone())?,
            };
            let unused: Vec<&str> = o
                .build_args
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| !b.used_args.contains(*k) && !steps::PREDEFINED_ARGS.contains(k))
                .collect();
            if !unused.is_empty() && !o.quiet {
                writeln!(
                    b.out,
                    "[Warning] One or more build-args [{}] were not consumed",
                    unused.join(" ")
                )
                .ok();
            }
            for t in &o.tags {
                // A tag already on this image is not written again (a write costs an fsync).
                if self.images().lookup_ref(t).map_err(EngineError::from)? != Some(id.clone()) {
                    self.images().tag(&id, t).map_err(EngineError::from)?;
                }
            }
            if o.quiet {
                writeln!(b.out, "{id}").ok();
            } else {
                writeln!(b.out, "Successfully built {}", &id.hex()[..12]).ok();
                for t in &o.tags {
                    writeln!(b.out, "Successfully tagged {}", t.familiar()).ok();
                }
            }
            Ok(id)
        })();
        // Blobs this build held (base images' configs) whose image an `rmi` removed
        // meanwhile: nothing names them once the lease is gone.
        let held = std::mem::take(&mut b.held_blobs);
        drop(b);
        let _ = self.remove_blobs_if_unreferenced(&held);
        outcome
    }
}

/// The stage a `FROM`/`--from` name means: a named stage before `before`, or an index.
fn find_stage(names: &[Option<String>], name: &str, before: usize) -> Option<usize> {
    let lname = name.to_ascii_lowercase();
    (0..before)
        .rev()
        .find(|&j| names[j].as_deref() == Some(lname.as_str()))
        .or_else(|| name.parse::<usize>().ok().filter(|&j| j < before))
}

impl Builder<'_, '_> {
    /// Build one stage on the states of the stages it needs (`done`).
    fn run_stage(
        &mut self,
        s: &StageDef,
        i: usize,
        names: &[Option<String>],
        done: &HashMap<usize, State>,
    ) -> Result<State, BuildError> {
        let prev = find_stage(names, &s.base, i).and_then(|j| done.get(&j).cloned());
        let lookup = |name: &str| {
            find_stage(names, name, i).and_then(|j| done.get(&j).map(|x| x.image.clone()))
        };
        let meta_env = self.meta_env.clone();
        let mut st = self.from(s.from.clone(), &s.base, prev, &meta_env, &lookup)?;
        for ins in &s.body {
            self.step_header(ins)?;
            let r = self.dispatch(&mut st, ins, &lookup);
            r.map_err(|e| self.at(ins, e))?;
        }
        Ok(st)
    }

    /// Build independent stages at once. Each thread opens the store itself (an `Engine` is
    /// one SQLite connection, not shared between threads) and holds what it makes with its
    /// own lease; before a thread lets go, this builder leases the stage's result (its layers
    /// and its image's config), so nothing is collectable in between.
    fn run_parallel(
        &mut self,
        stages: &[StageDef],
        ready: &[usize],
        offsets: &HashMap<usize, usize>,
        names: &[Option<String>],
        done: &HashMap<usize, State>,
    ) -> Result<Vec<(usize, State)>, BuildError> {
        use std::sync::mpsc;
        type Done = (
            usize,
            Result<(State, Vec<u8>, BTreeSet<String>), BuildError>,
        );
        let root = self.engine.root.clone();
        let driver = self.engine.driver.name();
        let (o, meta_env, lex, file, total) = (
            self.o,
            self.meta_env.clone(),
            self.lex,
            self.file.clone(),
            self.total,
        );
        let (tx, rx) = mpsc::channel::<Done>();
        let mut out = Vec::new();
        let mut first_err = None;
        std::thread::scope(|sc| {
            let mut acks = HashMap::new();
            for &i in ready {
                let (ack_tx, ack_rx) = mpsc::channel::<()>();
                acks.insert(i, ack_tx);
                let tx = tx.clone();
                let (root, meta_env, file) = (root.clone(), meta_env.clone(), file.clone());
                let s = &stages[i];
                let step = offsets[&i];
                sc.spawn(move || {
                    let r = (|| {
                        let engine = Engine::open(&root, Some(driver))?;
                        let mut buf = Vec::new();
                        let mut tb = Builder {
                            engine: &engine,
                            lease: engine.lease(),
                            o,
                            out: &mut buf,
                            lex,
                            file,
                            meta_env,
                            context: None,
                            used_args: BTreeSet::new(),
                            hits: Vec::new(),
                            held_blobs: Vec::new(),
                            step,
                            total,
                        };
                        let r = tb.run_stage(s, i, names, done);
                        if let Some(t) = tb.context.as_mut() {
                            let _ = t.save_stat_cache(&engine.meta);
                        }
                        let _ = tb.record_hits();
                        let used = std::mem::take(&mut tb.used_args);
                        let held = std::mem::take(&mut tb.held_blobs);
                        // Our lease outlives the builder: kept until the main one holds the result.
                        let lease = std::mem::replace(&mut tb.lease, engine.lease());
                        drop(tb);
                        let _ = tx.send((i, r.map(|st| (st, buf, used))));
                        let _ = ack_rx.recv();
                        drop(lease);
                        let _ = engine.remove_blobs_if_unreferenced(&held);
                        Ok::<(), BuildError>(())
                    })();
                    if let Err(e) = r {
                        let _ = tx.send((i, Err(e)));
                    }
                });
            }
            drop(tx);
            // One message from each thread; each waits for its ack before letting go.
            let mut results: Vec<Done> = (0..ready.len()).filter_map(|_| rx.recv().ok()).collect();
            results.sort_by_key(|(i, _)| *i);
            for (i, r) in results {
                match r {
                    Ok((st, buf, used)) => {
                        let held = match &st.image {
                            Some(id) => self.state_of_image(id).map(|mut h| {
                                h.args = st.args.clone();
                                h.cmd_set = st.cmd_set;
                                h
                            }),
                            None => Ok(st),
                        };
                        if !self.o.quiet {
                            let _ = self.out.write_all(&buf);
                        }
                        self.used_args.extend(used);
                        match held {
                            Ok(h) => out.push((i, h)),
                            Err(e) => {
                                first_err.get_or_insert(e);
                            }
                        }
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
                if let Some(a) = acks.remove(&i) {
                    let _ = a.send(());
                }
            }
        });
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn say(&mut self, s: impl AsRef<str>) {
        if !self.o.quiet {
            let _ = writeln!(self.out, "{}", s.as_ref());
            let _ = self.out.flush();
        }
    }

    fn step_header(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        self.step += 1;
        let line = format!("Step {}/{} : {}", self.step, self.total, ins.display());
        self.say(line);
        Ok(())
    }

    /// An error in a step, located at its instruction (unless it already is).
    fn at(&self, ins: &Instruction, e: BuildError) -> BuildError {
        match e {
            e @ (BuildError::At { .. } | BuildError::RunFailed { .. } | BuildError::Parse(_)) => e,
            e => BuildError::At {
                file: self.file.clone(),
                line: ins.line,
                msg: e.to_string(),
            },
        }
    }
}

impl Engine {
    /// `builder prune`: forget the step cache and the context stat cache, and remove the
    /// intermediate images (untagged parents of other images, used by no container) — the
    /// classic builder's cache. Final images stay (each image's config lists all its layers,
    /// so no image needs its parent's record). Returns (entries removed, bytes freed).
    pub fn prune_build_cache(&self, _all: bool) -> Result<(usize, u64), EngineError> {
        let mut ids: Vec<String> = {
            let conn = self.meta.conn();
            let mut st = conn.prepare(
                "SELECT DISTINCT parent FROM image_parents
                 WHERE parent NOT IN (SELECT image_id FROM refs)",
            )?;
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?
        };
        let cached: usize =
            self.meta
                .conn()
                .query_row("SELECT COUNT(*) FROM build_cache", [], |r| {
                    r.get::<_, i64>(0)
                })? as usize;
        self.meta.write(|tx| -> Result<(), EngineError> {
            tx.execute("DELETE FROM build_cache", [])?;
            tx.execute("DELETE FROM build_files", [])?;
            Ok(())
        })?;
        let before: u64 = self.layers().list()?.iter().map(|l| l.size).sum();
        let mut removed = 0;
        ids.sort();
        for id in ids {
            let Ok(d) = id.parse::<Digest>() else {
                continue;
            };
            if !self.containers().using_image(&d)?.is_empty() {
                continue;
            }
            if self.remove_image(&id, false).is_ok() {
                removed += 1;
            }
        }
        let after: u64 = self.layers().list()?.iter().map(|l| l.size).sum();
        Ok((cached.max(removed), before.saturating_sub(after)))
    }
}

/// One build cache entry, for `system df -v`.
#[derive(Clone, Debug)]
pub struct CacheEntry {
    pub key: String,
    /// Bytes of the layer the step added (0 for config-only steps).
    pub size: u64,
    pub created: String,
    pub last_used: String,
    pub uses: u64,
}

impl Engine {
    /// The build cache's entries (`system df`'s Build Cache row): each step's own layer.
    pub fn build_cache_usage(&self) -> Result<Vec<CacheEntry>, EngineError> {
        let conn = self.meta.conn();
        let mut st = conn.prepare(
            "SELECT b.key, b.created, b.last_used, b.uses,
                    (SELECT l.size FROM layers l WHERE l.chain_id = i.top_layer
                       AND i.top_layer IS NOT (SELECT pi.top_layer FROM image_parents p
                           JOIN images pi ON pi.id = p.parent WHERE p.image_id = i.id))
             FROM build_cache b JOIN images i ON i.id = b.image_id
             ORDER BY b.last_used DESC",
        )?;
        let rows = st.query_map([], |r| {
            Ok(CacheEntry {
                key: r.get(0)?,
                created: r.get(1)?,
                last_used: r.get(2)?,
                uses: r.get::<_, i64>(3)? as u64,
                size: r.get::<_, Option<i64>>(4)?.unwrap_or(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
