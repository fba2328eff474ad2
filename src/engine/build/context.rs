//! The build context, read in place: COPY/ADD sources resolved inside it, hashed for the cache
//! (names, bytes, modes, symlink targets; never mtimes, so a fresh checkout hits the cache),
//! and written into a container's root filesystem.
//!
//! Containment: the context directory is opened once and every source is resolved with
//! `openat2(RESOLVE_IN_ROOT)` on it, so `..` and symlinks (absolute or relative) never lead
//! outside; below a source, symlinks are entries of their own and never followed. Writes into
//! the image go through descriptors resolved the same way in the container's root.
//!
//! The stat cache (table `build_files`: path, device, inode, size, mtime, ctime → sha256)
//! spares re-reading unchanged files, as git's index does: any change of those fields (an
//! edit, a `touch`, a new checkout) re-hashes the file, and only its content decides.

use super::BuildError;
use crate::dockerfile::ignore::{Glob, Ignore, clean};
use crate::meta::Meta;
use rusqlite::params;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps,
};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

fn ioe(what: impl std::fmt::Display, e: impl Into<io::Error>) -> BuildError {
    BuildError::Invalid(format!("{what}: {}", e.into()))
}

/// What one copied entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File { size: u64, digest: String },
    Dir,
    Symlink(Vec<u8>),
}

/// One entry to write: `sub` is its path below its source ("" for the source itself).
#[derive(Debug, Clone)]
pub struct Entry {
    pub sub: String,
    pub kind: Kind,
    pub mode: u32,
}

/// Where a source's bytes come from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A path relative to the context (or the `--from` root).
    Path(String),
    /// A heredoc (`COPY <<EOF /f`): its name and content.
    Inline(String, Vec<u8>),
    /// A file `ADD <url>` fetched into the temp dir.
    Downloaded(super::download::Downloaded),
}

#[derive(Debug, Clone)]
pub struct Source {
    pub origin: Origin,
    pub is_dir: bool,
    pub entries: Vec<Entry>,
}

impl Source {
    /// The name a file source gets inside a destination directory.
    pub fn base_name(&self) -> String {
        match &self.origin {
            Origin::Path(p) => p.rsplit('/').next().unwrap_or(p).to_string(),
            Origin::Inline(n, _) => n.clone(),
            Origin::Downloaded(d) => d.name.clone(),
        }
    }
}

/// `dir:`/`file:`/`multi:` plus the sha256 of what the sources put in the image, as the
/// classic builder's `COPY dir:<hash> in /dest` history.
pub fn sources_digest(sources: &[Source]) -> String {
    let mut h = Sha256::new();
    for s in sources {
        match &s.origin {
            Origin::Path(p) => h.update(format!("src {p} {}\n", s.is_dir)),
            Origin::Inline(n, _) => h.update(format!("heredoc {n}\n")),
            Origin::Downloaded(d) => h.update(format!("url {}\n", d.name)),
        }
        for e in &s.entries {
            h.update(e.sub.as_bytes());
            h.update(format!("\0{:o}\0", e.mode));
            match &e.kind {
                Kind::File { size, digest } => h.update(format!("f {size} {digest}")),
                Kind::Dir => h.update("d"),
                Kind::Symlink(t) => {
                    h.update("l ");
                    h.update(t);
                }
            }
            h.update("\n");
        }
    }
    let hex = hex::encode(h.finalize());
    // One downloaded file: Docker's classic builder shows a bare hash (`ADD 34fa… in /dl/ `).
    if let [s] = sources
        && let Origin::Downloaded(_) = s.origin
    {
        return hex;
    }
    let kind = match sources {
        [s] if s.is_dir => "dir",
        [_] => "file",
        _ => "multi",
    };
    format!("{kind}:{hex}")
}

type StatKey = (u64, u64, u64, i64, i64);

/// A directory sources are read from: the build context, or another stage's/image's root.
pub struct Tree {
    pub root: PathBuf,
    fd: OwnedFd,
    ignore: Ignore,
    /// Only the build context keeps a stat cache (other roots are throwaway mounts).
    cache: Option<HashMap<String, (StatKey, String)>>,
    fresh: Vec<(String, StatKey, String)>,
    all_paths: Option<Vec<String>>,
}

impl Tree {
    pub fn open(root: &Path, ignore: Ignore, meta: Option<&Meta>) -> Result<Tree, BuildError> {
        let fd = rfs::open(root, DIR, Mode::empty())
            .map_err(|e| ioe(format!("opening {}", root.display()), e))?;
        let cache = match meta {
            Some(m) => Some(load_stat_cache(m, root)?),
            None => None,
        };
        Ok(Tree {
            root: root.to_path_buf(),
            fd,
            ignore,
            cache,
            fresh: Vec::new(),
            all_paths: None,
        })
    }

    /// Persist the digests computed in this build (one transaction).
    pub fn save_stat_cache(&mut self, meta: &Meta) -> Result<(), BuildError> {
        if self.fresh.is_empty() {
            return Ok(());
        }
        let fresh = std::mem::take(&mut self.fresh);
        meta.write(|tx| -> Result<(), BuildError> {
            let mut st = tx.prepare(
                "INSERT OR REPLACE INTO build_files (path, dev, ino, size, mtime, ctime, digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (p, k, d) in &fresh {
                st.execute(params![p, k.0 as i64, k.1 as i64, k.2 as i64, k.3, k.4, d])?;
            }
            Ok(())
        })
    }

    fn abs(&self, rel: &str) -> String {
        format!("{}/{rel}", self.root.display())
    }

    /// Every non-excluded path of the tree (for globs), sorted.
    fn paths(&mut self) -> Result<&[String], BuildError> {
        if self.all_paths.is_none() {
            let mut out = Vec::new();
            let fd = rfs::openat(self.fd.as_fd(), ".", DIR, Mode::empty())
                .map_err(|e| ioe("reading the context", e))?;
            walk_names(fd.as_fd(), "", &self.ignore, &mut out)?;
            out.sort();
            self.all_paths = Some(out);
        }
        Ok(self.all_paths.as_deref().unwrap_or_default())
    }

    /// The sources a COPY/ADD names: literal paths must exist (and not be ignored), globs
    /// must match something. `..` leaving the tree is refused.
    pub fn resolve(&mut self, patterns: &[String]) -> Result<Vec<Source>, BuildError> {
        let mut out = Vec::new();
        for pat in patterns {
            let c = clean(pat);
            if c == ".." || c.starts_with("../") {
                return Err(BuildError::Invalid(format!(
                    "forbidden path outside the build context: {pat} ()"
                )));
            }
            if Glob::is_literal(&c) {
                if c != "." && self.ignore.excluded(&c) {
                    return Err(not_found(pat));
                }
                out.push(self.source(&c).map_err(|e| match e {
                    BuildError::Invalid(m) if m.contains("No such file") => not_found(pat),
                    e => e,
                })?);
            } else {
                let g = Glob::new(&c);
                let hits: Vec<String> = self
                    .paths()?
                    .iter()
                    .filter(|p| g.matches(p))
                    .cloned()
                    .collect();
                // A match inside a matched directory is already copied with it.
                let mut tops: Vec<String> = Vec::new();
                for h in hits {
                    if !tops.iter().any(|t| h.starts_with(&format!("{t}/"))) {
                        tops.push(h);
                    }
                }
                if tops.is_empty() {
                    return Err(BuildError::Invalid(format!(
                        "no source files were specified (nothing matches {pat})"
                    )));
                }
                for t in tops {
                    out.push(self.source(&t)?);
                }
            }
        }
        Ok(out)
    }

    fn source(&mut self, rel: &str) -> Result<Source, BuildError> {
        let path = if rel == "." { "." } else { rel };
        let fd = rfs::openat2(
            self.fd.as_fd(),
            path,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )
        .map_err(|e| ioe(rel, e))?;
        let st = rfs::fstat(&fd).map_err(|e| ioe(rel, e))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        let mut entries = Vec::new();
        if ft == FileType::Directory {
            let d = rfs::openat(&fd, ".", DIR, Mode::empty()).map_err(|e| ioe(rel, e))?;
            let prefix = if rel == "." { "" } else { rel };
            self.walk(d.as_fd(), prefix, "", &mut entries)?;
        } else if ft == FileType::RegularFile {
            let digest = self.file_digest(rel, &st, || {
                rfs::openat(&fd, ".", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).or_else(
                    |_| {
                        rfs::open(
                            format!("/proc/self/fd/{}", fd.as_raw_fd()),
                            OFlags::RDONLY | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                    },
                )
            })?;
            entries.push(Entry {
                sub: String::new(),
                kind: Kind::File {
                    size: st.st_size as u64,
                    digest,
                },
                mode: st.st_mode & 0o7777,
            });
        } else {
            return Err(BuildError::Invalid(format!(
                "{rel}: not a regular file or directory"
            )));
        }
        Ok(Source {
            origin: Origin::Path(rel.to_string()),
            is_dir: ft == FileType::Directory,
            entries,
        })
    }

    fn file_digest(
        &mut self,
        rel: &str,
        st: &rfs::Stat,
        open: impl FnOnce() -> Result<OwnedFd, Errno>,
    ) -> Result<String, BuildError> {
        let key: StatKey = (
            st.st_dev,
            st.st_ino,
            st.st_size as u64,
            st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64,
            st.st_ctime * 1_000_000_000 + st.st_ctime_nsec as i64,
        );
        let abs = self.abs(rel);
        if let Some(c) = &self.cache
            && let Some((k, d)) = c.get(&abs)
            && *k == key
        {
            return Ok(d.clone());
        }
        let fd = open().map_err(|e| ioe(rel, e))?;
        let mut f = File::from(fd);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = f.read(&mut buf).map_err(|e| ioe(rel, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let d = format!("sha256:{}", hex::encode(h.finalize()));
        if self.cache.is_some() {
            self.fresh.push((abs, key, d.clone()));
        }
        Ok(d)
    }

    fn walk(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &str,
        sub: &str,
        out: &mut Vec<Entry>,
    ) -> Result<(), BuildError> {
        let mut names = list(dir).map_err(|e| ioe(rel, e))?;
        names.sort();
        for name in names {
            let crel = join(rel, &name);
            if self.ignore.excluded(&crel) && !self.ignore.has_exclusions() {
                continue;
            }
            let csub = join(sub, &name);
            let st = rfs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| ioe(&crel, e))?;
            let ft = FileType::from_raw_mode(st.st_mode);
            let excluded = self.ignore.excluded(&crel);
            let mode = st.st_mode & 0o7777;
            match ft {
                FileType::Directory => {
                    let d = rfs::openat(dir, name.as_str(), DIR | OFlags::NOFOLLOW, Mode::empty())
                        .map_err(|e| ioe(&crel, e))?;
                    let at = out.len();
                    if !excluded {
                        out.push(Entry {
                            sub: csub.clone(),
                            kind: Kind::Dir,
                            mode,
                        });
                    }
                    self.walk(d.as_fd(), &crel, &csub, out)?;
                    // An excluded directory holding re-included entries is still created.
                    if excluded && out.len() > at {
                        out.insert(
                            at,
                            Entry {
                                sub: csub,
                                kind: Kind::Dir,
                                mode,
                            },
                        );
                    }
                }
                _ if excluded => {}
                FileType::RegularFile => {
                    let digest = self.file_digest(&crel, &st, || {
                        rfs::openat(
                            dir,
                            name.as_str(),
                            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                    })?;
                    out.push(Entry {
                        sub: csub,
                        kind: Kind::File {
                            size: st.st_size as u64,
                            digest,
                        },
                        mode,
                    });
                }
                FileType::Symlink => {
                    let t = rfs::readlinkat(dir, name.as_str(), Vec::new())
                        .map_err(|e| ioe(&crel, e))?;
                    out.push(Entry {
                        sub: csub,
                        kind: Kind::Symlink(t.into_bytes()),
                        mode,
                    });
                }
                _ => {} // devices, fifos and sockets are not copied
            }
        }
        Ok(())
    }

    /// Open a source file's bytes (never following a final symlink).
    fn open_file(&self, rel: &str) -> Result<File, BuildError> {
        let fd = rfs::openat2(
            self.fd.as_fd(),
            if rel.is_empty() { "." } else { rel },
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )
        .map_err(|e| ioe(rel, e))?;
        Ok(File::from(fd))
    }
}

fn not_found(pat: &str) -> BuildError {
    BuildError::Invalid(format!(
        "COPY failed: file not found in build context or excluded by .dockerignore: stat {pat}: file does not exist"
    ))
}

fn load_stat_cache(
    meta: &Meta,
    root: &Path,
) -> Result<HashMap<String, (StatKey, String)>, BuildError> {
    let lo = format!("{}/", root.display());
    let hi = format!("{}0", root.display()); // '0' follows '/'
    let mut st = meta.conn().prepare(
        "SELECT path, dev, ino, size, mtime, ctime, digest FROM build_files WHERE path >= ?1 AND path < ?2",
    )?;
    let rows = st.query_map(params![lo, hi], |r| {
        Ok((
            r.get::<_, String>(0)?,
            (
                (
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ),
                r.get::<_, String>(6)?,
            ),
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn join(a: &str, b: &str) -> String {
    if b.is_empty() {
        a.to_string()
    } else if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

fn list(dir: BorrowedFd<'_>) -> Result<Vec<String>, Errno> {
    let d = rfs::openat(dir, ".", DIR, Mode::empty())?;
    let mut rd = rfs::Dir::read_from(&d)?;
    let mut out = Vec::new();
    while let Some(e) = rd.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        out.push(String::from_utf8_lossy(n).into_owned());
    }
    Ok(out)
}

fn walk_names(
    dir: BorrowedFd<'_>,
    rel: &str,
    ignore: &Ignore,
    out: &mut Vec<String>,
) -> Result<(), BuildError> {
    for name in list(dir).map_err(|e| ioe(rel, e))? {
        let crel = join(rel, &name);
        let st = rfs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ioe(&crel, e))?;
        let excluded = ignore.excluded(&crel);
        if !excluded {
            out.push(crel.clone());
        }
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory
            && (!excluded || ignore.has_exclusions())
        {
            let d = rfs::openat(dir, name.as_str(), DIR | OFlags::NOFOLLOW, Mode::empty())
                .map_err(|e| ioe(&crel, e))?;
            walk_names(d.as_fd(), &crel, ignore, out)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Writing into the image

/// How copied entries are owned, moded and dated.
pub struct WriteOpts {
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<u32>,
    /// Every written entry gets this mtime: layers do not depend on when or where the
    /// context was checked out (`--source-date-epoch`, else 0).
    pub mtime: i64,
    /// ADD: a local tar archive source is extracted instead of copied.
    pub extract_archives: bool,
}

fn open_in(root: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, Errno> {
    let p = path.trim_start_matches('/');
    rfs::openat2(
        root,
        if p.is_empty() { "." } else { p },
        DIR,
        Mode::empty(),
        IN_ROOT,
    )
}

fn times(t: i64) -> Timestamps {
    let ts = Timespec {
        tv_sec: t,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

fn is_archive(f: &mut File) -> bool {
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let _ = io::Seek::seek(f, io::SeekFrom::Start(0));
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n == 512 && &head[257..262] == b"ustar")
}

/// Write `sources` to `dest` (absolute, in the image) under the root filesystem `rootfs`,
/// with Docker's rules: a directory source gives its contents; several sources, or a
/// destination ending in `/` or naming an existing directory, make a directory that
/// receives file sources by name; else a single file source becomes `dest` itself.
pub fn write_into(
    rootfs: &Path,
    tree: Option<&Tree>,
    sources: &[Source],
    dest: &str,
    o: &WriteOpts,
) -> Result<(), BuildError> {
    let root = rfs::open(rootfs, DIR, Mode::empty())
        .map_err(|e| ioe(format!("opening {}", rootfs.display()), e))?;
    let as_dir = dest.ends_with('/')
        || sources.len() > 1
        || sources.iter().any(|s| s.is_dir)
        || open_in(root.as_fd(), dest).is_ok();
    let mut dated: Vec<(OwnedFd, String)> = Vec::new();
    let (dir_path, single_name) = if as_dir {
        (dest.trim_end_matches('/').to_string(), None)
    } else {
        let d = dest.trim_end_matches('/');
        let (p, n) = d.rsplit_once('/').unwrap_or(("", d));
        (p.to_string(), Some(n.to_string()))
    };
    crate::runtime::user::mkdir_in_root(rootfs, &dir_path)
        .map_err(|e| ioe(format!("creating {dir_path}"), e))?;
    let dfd = open_in(root.as_fd(), &dir_path).map_err(|e| ioe(&dir_path, e))?;
    for s in sources {
        let mut archive = None;
        if o.extract_archives
            && !s.is_dir
            && let (Origin::Path(p), Some(t)) = (&s.origin, tree)
        {
            let mut f = t.open_file(p)?;
            if is_archive(&mut f) {
                archive = Some(f);
            }
        }
        if let Some(f) = archive {
            let (_, r) = crate::archive::compression::decompress(f)
                .map_err(|e| BuildError::Invalid(e.to_string()))?;
            let target = PathBuf::from(format!("/proc/self/fd/{}", dfd.as_raw_fd()));
            crate::archive::apply_layer(
                &target,
                r,
                crate::archive::WhiteoutFormat::Apply,
                &mut io::sink(),
            )
            .map_err(|e| BuildError::Invalid(format!("extracting {}: {e}", s.base_name())))?;
            continue;
        }
        for e in &s.entries {
            let name_in_dest = if e.sub.is_empty() {
                single_name.clone().unwrap_or_else(|| s.base_name())
            } else {
                e.sub.clone()
            };
            let (parent, name) = match name_in_dest.rsplit_once('/') {
                Some((p, n)) => (p.to_string(), n.to_string()),
                None => (String::new(), name_in_dest.clone()),
            };
            let pfd = open_in(dfd.as_fd(), &parent).map_err(|x| ioe(&name_in_dest, x))?;
            let mode = o.chmod.unwrap_or(e.mode);
            let err = |x: Errno| ioe(format!("writing {name_in_dest}"), x);
            let existing = rfs::statat(&pfd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).ok();
            let existing_dir = existing
                .as_ref()
                .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
            if existing.is_some() && !(existing_dir && e.kind == Kind::Dir) {
                let fl = if existing_dir {
                    AtFlags::REMOVEDIR
                } else {
                    AtFlags::empty()
                };
                rfs::unlinkat(&pfd, name.as_str(), fl).map_err(err)?;
            }
            match &e.kind {
                Kind::Dir => {
                    if !existing_dir {
                        rfs::mkdirat(&pfd, name.as_str(), Mode::from_raw_mode(0o700))
                            .map_err(err)?;
                    }
                    let fd =
                        rfs::openat(&pfd, name.as_str(), DIR | OFlags::NOFOLLOW, Mode::empty())
                            .map_err(err)?;
                    let (u, g) = o.owner.unwrap_or((0, 0));
                    rfs::fchown(
                        &fd,
                        Some(rfs::Uid::from_raw(u)),
                        Some(rfs::Gid::from_raw(g)),
                    )
                    .map_err(err)?;
                    rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(err)?;
                    dated.push((fd, name_in_dest.clone()));
                }
                Kind::File { .. } => {
                    let fd = rfs::openat(
                        &pfd,
                        name.as_str(),
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(err)?;
                    let mut out = File::from(fd);
                    match &s.origin {
                        Origin::Inline(_, bytes) => {
                            out.write_all(bytes).map_err(|x| ioe(&name, x))?
                        }
                        Origin::Downloaded(d) => {
                            let mut f = File::open(&d.file).map_err(|x| ioe(&name, x))?;
                            io::copy(&mut f, &mut out).map_err(|x| ioe(&name, x))?;
                        }
                        Origin::Path(p) => {
                            let tree =
                                tree.ok_or_else(|| BuildError::Invalid("no source".into()))?;
                            let mut f = tree.open_file(&join(p, &e.sub))?;
                            io::copy(&mut f, &mut out).map_err(|x| ioe(&name, x))?;
                        }
                    }
                    let (u, g) = o.owner.unwrap_or((0, 0));
                    rfs::fchown(
                        &out,
                        Some(rfs::Uid::from_raw(u)),
                        Some(rfs::Gid::from_raw(g)),
                    )
                    .map_err(err)?;
                    rfs::fchmod(&out, Mode::from_raw_mode(mode)).map_err(err)?;
                    // A download keeps its Last-Modified time, as Docker's (clamped by
                    // --source-date-epoch like everything else).
                    let mtime = match &s.origin {
                        Origin::Downloaded(d) => d
                            .mtime
                            .map_or(o.mtime, |m| if o.mtime > 0 { m.min(o.mtime) } else { m }),
                        _ => o.mtime,
                    };
                    rfs::futimens(&out, &times(mtime)).map_err(err)?;
                }
                Kind::Symlink(t) => {
                    rfs::symlinkat(t.as_slice(), &pfd, name.as_str()).map_err(err)?;
                    let (u, g) = o.owner.unwrap_or((0, 0));
                    rfs::chownat(
                        &pfd,
                        name.as_str(),
                        Some(rfs::Uid::from_raw(u)),
                        Some(rfs::Gid::from_raw(g)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(err)?;
                    rfs::utimensat(
                        &pfd,
                        name.as_str(),
                        &times(o.mtime),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(err)?;
                }
            }
        }
    }
    // Directories last, deepest first: writing into them changed their mtimes.
    for (fd, name) in dated.iter().rev() {
        rfs::futimens(fd, &times(o.mtime)).map_err(|x| ioe(name, x))?;
    }
    // The destination and its ancestors (made or touched by this copy).
    let mut p = dir_path.trim_matches('/').to_string();
    loop {
        if let Ok(fd) = open_in(root.as_fd(), &p) {
            let _ = rfs::futimens(&fd, &times(o.mtime));
        }
        match p.rsplit_once('/') {
            Some((a, _)) => p = a.to_string(),
            None if !p.is_empty() => p.clear(),
            None => break,
        }
    }
    Ok(())
}
