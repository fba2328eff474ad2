//! The steps that change files: RUN (a real container), WORKDIR (a directory made when
//! missing) and COPY/ADD (sources written into a storage-only container), each committing
//! the container's writable layer as the step's layer, as `commit` does.

use super::context::{self, Origin, Source, Tree, WriteOpts};
use super::download;
use super::steps::{PREDEFINED_ARGS, Temp, bad};
use super::{BuildError, Builder, State};
use crate::container::{Container, RunConfig};
use crate::digest::Digest;
use crate::dockerfile::{self, Args, Instruction, ignore::Ignore};
use crate::engine::run;
use crate::image::platform::WantedPlatform;
use serde_json::{Map, Value};

impl Builder<'_, '_> {
    /// Build args a RUN sees: declared ones with a value that ENV does not override, sorted.
    fn run_args(&mut self, st: &State) -> Vec<String> {
        let env = st.env();
        let mut out: Vec<String> = st
            .args
            .iter()
            .filter(|(k, _)| crate::dockerfile::shell::lookup(&env, k).is_none())
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        for (k, v) in &self.o.build_args {
            if PREDEFINED_ARGS.contains(&k.as_str()) && !st.args.iter().any(|(a, _)| a == k) {
                out.push(format!("{k}={v}"));
            }
        }
        out.sort();
        out
    }

    pub(super) fn run(&mut self, st: &mut State, ins: &Instruction) -> Result<(), BuildError> {
        let argv: Vec<String> = match &ins.args {
            Args::Json(l) => l.clone(),
            Args::Shell(s) => {
                let script = match ins.heredocs.as_slice() {
                    [] => s.clone(),
                    [h] if s
                        .trim()
                        .trim_start_matches("<<")
                        .trim_start_matches('-')
                        .trim_matches(['"', '\''])
                        == h.name =>
                    {
                        h.content.clone()
                    }
                    hs => {
                        let mut t = format!("{s}\n");
                        for h in hs {
                            t.push_str(&h.content);
                            t.push_str(&h.name);
                            t.push('\n');
                        }
                        t
                    }
                };
                let mut l = st.shell();
                l.push(script);
                l
            }
        };
        if argv.is_empty() {
            return Err(bad("RUN requires at least one argument"));
        }
        let args = self.run_args(st);
        for a in &args {
            if let Some(k) = a.split('=').next() {
                self.used_args.insert(k.to_string());
            }
        }
        let mut saved = Vec::new();
        if !args.is_empty() {
            saved.push(format!("|{}", args.len()));
            saved.extend(args.iter().cloned());
        }
        saved.extend(argv.iter().cloned());
        let created_by = saved.join(" ");
        let key = self.cache_key(st, &created_by, "");
        if self.try_cache(st, &key)? {
            return Ok(());
        }
        let id = self.ensure_image(st)?;
        let network = ins
            .flag("network")
            .map(str::to_string)
            .unwrap_or_else(|| self.o.network.clone());
        let cfg = RunConfig {
            entrypoint: argv[..1].to_vec(),
            cmd: argv[1..].to_vec(),
            env: args,
            network,
            ..RunConfig::default()
        };
        let mut tmp = Temp::create(self.engine, &id, cfg)?;
        let short = tmp.c.id[..12].to_string();
        self.say(format!(" ---> Running in {short}"));
        tmp.ran = true;
        let started = run::start(
            self.engine,
            &tmp.c,
            run::Attach {
                output: !self.o.quiet,
                stdin: false,
                size: None,
            },
        )
        .map_err(|e| bad(e.to_string()))?;
        match started.wait_exit() {
            Some(0) => {}
            Some(code) => {
                return Err(BuildError::RunFailed {
                    file: self.file.clone(),
                    line: ins.line,
                    cmd: argv.join(" "),
                    code,
                });
            }
            None => return Err(bad("the container's monitor died")),
        }
        if let Some(epoch) = self.o.source_date_epoch {
            self.clamp_times(&tmp.c, epoch)?;
        }
        let layer = self
            .engine
            .commit_layer(&self.lease, &tmp.c, st.layers.last())?;
        drop(tmp);
        self.say(format!("Removing intermediate container {short}"));
        let rc = st.run_config();
        self.commit_image(st, &created_by, rc, layer, Some(&key))?;
        Ok(())
    }

    /// `--source-date-epoch`: no file the RUN wrote is dated after it, so the layer (and the
    /// image ID) comes out the same on every build of the same inputs. Only the container's
    /// own files are touched (overlay: the upper directory; vfs: its change list), never
    /// following symlinks; directories after their contents.
    fn clamp_times(&self, c: &Container, epoch: i64) -> Result<(), BuildError> {
        use std::os::unix::ffi::OsStrExt;
        let dir = self.engine.driver.diff_dir(&c.cache_id);
        let mut paths: Vec<std::path::PathBuf> = Vec::new();
        if self.engine.driver.whiteout_format() == crate::archive::WhiteoutFormat::Overlay {
            fn walk(p: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten() {
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            walk(&e.path(), out);
                        }
                        out.push(e.path());
                    }
                }
            }
            walk(&dir, &mut paths);
        } else {
            let mut ch = self.engine.container_changes(c)?;
            ch.retain(|x| x.kind != crate::driver::changes::ChangeKind::Delete);
            // Deepest first, so a directory is dated after what is written in it.
            ch.sort_by(|a, b| b.path.cmp(&a.path));
            paths.extend(
                ch.iter()
                    .map(|x| dir.join(std::ffi::OsStr::from_bytes(&x.path))),
            );
        }
        let t = rustix::fs::Timespec {
            tv_sec: epoch,
            tv_nsec: 0,
        };
        for p in paths {
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            use std::os::unix::fs::MetadataExt;
            if md.mtime() > epoch {
                let _ = rustix::fs::utimensat(
                    rustix::fs::CWD,
                    &p,
                    &rustix::fs::Timestamps {
                        last_access: t,
                        last_modification: t,
                    },
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                );
            }
        }
        Ok(())
    }

    pub(super) fn workdir(
        &mut self,
        st: &mut State,
        abs: &str,
        rc: Map<String, Value>,
    ) -> Result<(), BuildError> {
        let created_by = format!("/bin/sh -c #(nop) WORKDIR {abs}");
        let key = self.cache_key(st, &created_by, "");
        if self.try_cache(st, &key)? {
            return Ok(());
        }
        let layer = if st.image.is_some() || !st.layers.is_empty() || abs != "/" {
            let id = self.ensure_image(st)?;
            let tmp = Temp::create(self.engine, &id, RunConfig::default())?;
            let mtime = self.o.source_date_epoch.unwrap_or(0);
            let path = abs.to_string();
            self.engine
                .containers()
                .with_rootfs(&tmp.c, |root| -> Result<(), BuildError> {
                    let rootfd = std::fs::File::open(root).map_err(|e| bad(e.to_string()))?;
                    let exists = rustix::fs::openat2(
                        &rootfd,
                        path.trim_start_matches('/'),
                        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
                        rustix::fs::Mode::empty(),
                        rustix::fs::ResolveFlags::IN_ROOT,
                    )
                    .is_ok();
                    if !exists {
                        context::write_into(
                            root,
                            None,
                            &[],
                            &format!("{path}/"),
                            &WriteOpts {
                                owner: None,
                                chmod: None,
                                mtime,
                                extract_archives: false,
                            },
                        )?;
                    }
                    Ok(())
                })?;
            let l = self
                .engine
                .commit_layer(&self.lease, &tmp.c, st.layers.last())?;
            drop(tmp);
            l
        } else {
            None
        };
        self.commit_image(st, &created_by, rc, layer, Some(&key))?;
        Ok(())
    }

    pub(super) fn copy(
        &mut self,
        st: &mut State,
        ins: &Instruction,
        lookup: &dyn Fn(&str) -> Option<Option<Digest>>,
    ) -> Result<(), BuildError> {
        let name = ins.cmd.to_uppercase();
        let raw: Vec<String> = match &ins.args {
            Args::Json(l) => l.clone(),
            Args::Shell(s) => dockerfile::split_words(s, self.lex.escape),
        };
        if raw.len() < 2 {
            return Err(bad(format!("{name} requires at least two arguments")));
        }
        let env = st.expansion_env();
        let mut words = Vec::new();
        for w in &raw {
            words.push(
                self.lex
                    .process_word(w, &env)
                    .map_err(|e| bad(e.to_string()))?,
            );
        }
        let mut dest = words.pop().expect("two words");
        // History shows the destination as written (`in . `), as Docker's classic builder.
        let dest_as_written = dest.clone();
        let cwd = st
            .run_config()
            .get("WorkingDir")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !dest.starts_with('/') {
            let slash = dest.ends_with('/') || dest == "." || dest.ends_with("/.");
            dest = format!(
                "/{}",
                crate::dockerfile::ignore::clean(&format!("{cwd}/{dest}"))
            );
            if dest == "/." {
                dest = "/".into();
            }
            if slash && !dest.ends_with('/') {
                dest.push('/');
            }
        }
        // Heredoc sources, then the rest from the context or --from.
        let mut inline = Vec::new();
        let mut patterns = Vec::new();
        for (i, w) in words.iter().enumerate() {
            let marker = raw[i]
                .trim_start_matches("<<")
                .trim_start_matches('-')
                .trim_matches(['"', '\'']);
            if raw[i].starts_with("<<")
                && let Some(h) = ins.heredocs.iter().find(|h| h.name == marker)
            {
                let content = if h.expand {
                    self.lex
                        .raw()
                        .process_word(&h.content, &env)
                        .map_err(|e| bad(e.to_string()))?
                } else {
                    h.content.clone()
                };
                // The cache sees the text as written into the image (build args included).
                let (size, digest) = (content.len() as u64, Digest::of(content.as_bytes()));
                inline.push(Source {
                    origin: Origin::Inline(h.name.clone(), content.into_bytes()),
                    is_dir: false,
                    entries: vec![context::Entry {
                        sub: String::new(),
                        kind: context::Kind::File {
                            size,
                            digest: digest.to_string(),
                        },
                        mode: 0o644,
                    }],
                });
            } else {
                if ins.cmd == "add" && download::is_url(w) {
                    let dir = self.engine.tmp_dir()?;
                    inline.push(download::fetch(w, &dir)?);
                    continue;
                }
                if ins.cmd == "add" && (w.starts_with("git@") || w.ends_with(".git")) {
                    return Err(bad(format!(
                        "ADD {w}: git sources are not supported by strata build (Docker's classic builder does not take them either)"
                    )));
                }
                patterns.push(w.clone());
            }
        }
        let downloads: Vec<std::path::PathBuf> = inline
            .iter()
            .filter_map(|s| match &s.origin {
                Origin::Downloaded(d) => Some(d.file.clone()),
                _ => None,
            })
            .collect();
        if inline.len() + patterns.len() > 1 && !dest.ends_with('/') {
            for f in &downloads {
                let _ = std::fs::remove_file(f);
            }
            return Err(bad(format!(
                "When using {name} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        // The tree sources come from.
        let from = ins.flag("from").map(|f| {
            self.lex
                .process_word(f, &self.meta_env)
                .unwrap_or_else(|_| f.to_string())
        });
        let mut from_tmp: Option<Temp> = None;
        let mut tree = match &from {
            None => match self.context.take() {
                Some(t) => t,
                None => {
                    let ignore = std::fs::read_to_string(self.o.context.join(".dockerignore"))
                        .map(|s| Ignore::parse(&s))
                        .unwrap_or_default();
                    Tree::open(&self.o.context, ignore, Some(&self.engine.meta))?
                }
            },
            Some(f) => {
                let image = match lookup(f) {
                    Some(Some(id)) => id,
                    Some(None) => return Err(bad(format!("stage {f} has no filesystem"))),
                    None => {
                        let want = WantedPlatform::parse(self.o.platform.as_deref())
                            .map_err(|e| bad(e.to_string()))?;
                        self.base_image(f, &want)?.image.expect("an image")
                    }
                };
                let mut t = Temp::create(self.engine, &image, RunConfig::default())?;
                let root = self.engine.containers().mount(&t.c)?;
                t.mounted = true;
                from_tmp = Some(t);
                Tree::open(&root, Ignore::default(), None)?
            }
        };
        let resolved = tree.resolve(&patterns);
        let result = (|| -> Result<(), BuildError> {
            let mut sources = resolved?;
            sources.extend(inline);
            let digest = context::sources_digest(&sources);
            let chown = ins.flag("chown").map(|c| self.expand(st, c)).transpose()?;
            let chmod = match ins.flag("chmod") {
                Some(m) => Some(
                    u32::from_str_radix(m, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| bad(format!("invalid chmod parameter {m:?}")))?,
                ),
                None => None,
            };
            let chown_comment = chown
                .as_ref()
                // No space before the source hash: Docker's classic builder writes it so.
                .map(|c| format!("--chown={c}"))
                .unwrap_or_default();
            let created_by =
                format!("/bin/sh -c #(nop) {name} {chown_comment}{digest} in {dest_as_written} ");
            let extra = format!("chmod={chmod:?}");
            let key = self.cache_key(st, &created_by, &extra);
            if self.try_cache(st, &key)? {
                return Ok(());
            }
            let id = self.ensure_image(st)?;
            let tmp = Temp::create(self.engine, &id, RunConfig::default())?;
            let mtime = self.o.source_date_epoch.unwrap_or(0);
            let add = ins.cmd == "add";
            let tree_ref = &tree;
            self.engine
                .containers()
                .with_rootfs(&tmp.c, |root| -> Result<(), BuildError> {
                    let owner = match &chown {
                        None => None,
                        Some(spec) => {
                            let u = crate::runtime::user::resolve_user(root, spec)
                                .map_err(|e| bad(format!("unable to convert uid/gid chown string to host mapping: {e}")))?;
                            Some((u.uid, u.gid))
                        }
                    };
                    context::write_into(
                        root,
                        Some(tree_ref),
                        &sources,
                        &dest,
                        &WriteOpts {
                            owner,
                            chmod,
                            mtime,
                            extract_archives: add,
                        },
                    )
                })?;
            let layer = self
                .engine
                .commit_layer(&self.lease, &tmp.c, st.layers.last())?;
            drop(tmp);
            let rc = st.run_config();
            self.commit_image(st, &created_by, rc, layer, Some(&key))?;
            Ok(())
        })();
        drop(from_tmp);
        for f in downloads {
            let _ = std::fs::remove_file(f);
        }
        if from.is_none() {
            self.context = Some(tree);
        }
        result
    }
}
