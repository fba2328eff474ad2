//! Reading the container's own files to apply the image config: `User` through the image's
//! /etc/passwd and /etc/group, and the command looked up on `PATH` (so a missing command is
//! exit 127 and a non-executable one 126, as Docker reports them, before anything starts).
//!
//! Every file is opened with `openat2(RESOLVE_IN_ROOT)` on the root filesystem: a symlink in
//! the image (`/etc/passwd -> /host/...`) resolves inside the container, never on the host.

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn open_in_root(root: &Path, path: &str) -> io::Result<File> {
    let dir = rfs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let res = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    loop {
        match rfs::openat2(
            &dir,
            path,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            res,
        ) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn read_in_root(root: &Path, path: &str) -> io::Result<String> {
    let mut s = String::new();
    open_in_root(root, path)?
        .take(16 << 20)
        .read_to_string(&mut s)?;
    Ok(s)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn passwd(root: &Path) -> Vec<PasswdEntry> {
    read_in_root(root, "/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).unwrap_or(&"/").to_string(),
            })
        })
        .collect()
}

/// (name, gid, members)
fn groups(root: &Path) -> Vec<(String, u32, Vec<String>)> {
    read_in_root(root, "/etc/group")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Some((f[0].to_string(), f[2].parse().ok()?, members))
        })
        .collect()
}

/// A `--group-add` value: a group name of the image's /etc/group, or a number.
pub fn group_id(root: &Path, group: &str) -> Result<u32, UserError> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(n);
    }
    groups(root)
        .iter()
        .find(|(n, _, _)| n == group)
        .map(|(_, id, _)| *id)
        .ok_or_else(|| UserError::NoGroup(group.to_string()))
}

/// Docker's `user`, `uid`, `user:group`, `uid:gid` forms (empty: root).
pub fn resolve_user(root: &Path, spec: &str) -> Result<ExecUser, UserError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let users = passwd(root);
    let entry = match u.parse::<u32>() {
        Ok(uid) => users.iter().find(|e| e.uid == uid),
        Err(_) => Some(
            users
                .iter()
                .find(|e| e.name == u)
                .ok_or_else(|| UserError::NoUser(u.to_string()))?,
        ),
    };
    let uid = entry
        .map(|e| e.uid)
        .unwrap_or_else(|| u.parse().unwrap_or(0));
    let name = entry.map(|e| e.name.clone());
    let home = entry.map(|e| e.home.clone()).unwrap_or_else(|| "/".into());
    let all_groups = groups(root);
    let gid = match g {
        None | Some("") => entry.map(|e| e.gid).unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => all_groups
                .iter()
                .find(|(n, _, _)| n == g)
                .map(|(_, id, _)| *id)
                .ok_or_else(|| UserError::NoGroup(g.to_string()))?,
        },
    };
    // Supplementary groups as Docker (runc's GetExecUser) sets them: the primary group, and
    // unless the group was given, every group listing the user as a member.
    let mut additional_gids = vec![gid];
    if g.is_none()
        && let Some(name) = &name
    {
        for (_, id, members) in &all_groups {
            if members.iter().any(|m| m == name) && !additional_gids.contains(id) {
                additional_gids.push(*id);
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    #[error("exec: {0:?}: stat {0}: no such file or directory")]
    NoSuchFile(String),
    #[error("exec: {0:?}: permission denied")]
    NotExecutable(String),
    #[error("exec: {0:?}: is a directory")]
    IsDirectory(String),
    #[error("no command specified")]
    NoCommand,
}

impl ExecError {
    /// Docker's exit code for a process that could not start: 127 not found, 126 not runnable.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExecError::NotFound(_) | ExecError::NoSuchFile(_) => 127,
            ExecError::NoCommand => 125,
            _ => 126,
        }
    }
}

fn check_file(root: &Path, path: &str) -> Result<(), ExecError> {
    match open_in_root(root, path).and_then(|f| f.metadata()) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Err(ExecError::NotExecutable(path.into()))
        }
        Err(_) => Err(ExecError::NoSuchFile(path.into())),
        Ok(m) if m.is_dir() => Err(ExecError::IsDirectory(path.into())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 || !m.is_file() => {
            let _ = m.mode();
            Err(ExecError::NotExecutable(path.into()))
        }
        Ok(_) => Ok(()),
    }
}

/// The program `argv0` would run as, checked in the root filesystem: a path (absolute, or
/// relative to `cwd`) or a name searched on `path_var`. Returns the path to execute.
pub fn find_command(
    root: &Path,
    argv0: &str,
    path_var: &str,
    cwd: &str,
) -> Result<String, ExecError> {
    if argv0.is_empty() {
        return Err(ExecError::NoCommand);
    }
    if argv0.contains('/') {
        let full = if argv0.starts_with('/') {
            argv0.to_string()
        } else {
            format!("{}/{}", cwd.trim_end_matches('/'), argv0)
        };
        return check_file(root, &full).map(|_| argv0.to_string());
    }
    let mut denied = None;
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let dir = if dir.starts_with('/') {
            dir.to_string()
        } else {
            format!("{}/{}", cwd.trim_end_matches('/'), dir)
        };
        let p = format!("{}/{}", dir.trim_end_matches('/'), argv0);
        match check_file(root, &p) {
            Ok(()) => return Ok(p),
            Err(ExecError::NotExecutable(_)) => {
                denied = Some(ExecError::NotExecutable(argv0.into()))
            }
            Err(_) => {}
        }
    }
    Err(denied.unwrap_or_else(|| ExecError::NotFound(argv0.to_string())))
}

/// `mkdir -p` of `path` inside the root filesystem, every component resolved in the root (an
/// image's symlink never leads the creation outside it). Used for a missing working directory.
pub fn mkdir_in_root(root: &Path, path: &str) -> io::Result<()> {
    let res = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let fl = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rfs::open(root, fl, Mode::empty())?;
    for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let next = match rfs::openat2(&dir, comp, fl, Mode::empty(), res) {
            Ok(d) => d,
            Err(rustix::io::Errno::NOENT) => {
                match rfs::mkdirat(&dir, comp, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                rfs::openat2(&dir, comp, fl, Mode::empty(), res)?
            }
            Err(e) => return Err(e.into()),
        };
        dir = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::write(
            r.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            r.join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,root\naudio:x:29:app\n",
        )
        .unwrap();
        fs::write(r.join("bin/tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(r.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(r.join("bin/data"), "x").unwrap();
        // A symlink pointing at the host's root must resolve inside the rootfs.
        std::os::unix::fs::symlink("/bin/tool", r.join("bin/link")).unwrap();
        d
    }

    #[test]
    fn users_and_groups() {
        let d = rootfs();
        let r = d.path();
        assert_eq!(
            resolve_user(r, "").unwrap(),
            ExecUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![0, 10],
                home: "/root".into()
            }
        );
        let app = resolve_user(r, "app").unwrap();
        assert_eq!(
            (app.uid, app.gid, app.home.as_str()),
            (1000, 1000, "/home/app")
        );
        assert_eq!(app.additional_gids, vec![1000, 10, 29]);
        let u = resolve_user(r, "app:nogroup").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 65534));
        assert_eq!(u.additional_gids, vec![65534]);
        assert_eq!(group_id(r, "wheel"), Ok(10));
        assert_eq!(group_id(r, "77"), Ok(77));
        assert!(group_id(r, "nope").is_err());
        let u = resolve_user(r, "4242:7").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 7, "/"));
        assert_eq!(
            resolve_user(r, "ghost"),
            Err(UserError::NoUser("ghost".into()))
        );
        assert_eq!(
            resolve_user(r, "app:ghosts"),
            Err(UserError::NoGroup("ghosts".into()))
        );
    }

    #[test]
    fn commands() {
        let d = rootfs();
        let r = d.path();
        assert_eq!(
            find_command(r, "tool", "/usr/bin:/bin", "/").unwrap(),
            "/bin/tool"
        );
        assert_eq!(find_command(r, "/bin/link", "", "/").unwrap(), "/bin/link");
        assert_eq!(
            find_command(r, "nope", "/bin", "/")
                .unwrap_err()
                .exit_code(),
            127
        );
        assert_eq!(
            find_command(r, "/bin/nope", "/bin", "/")
                .unwrap_err()
                .exit_code(),
            127
        );
        assert_eq!(
            find_command(r, "data", "/bin", "/")
                .unwrap_err()
                .exit_code(),
            126
        );
        assert_eq!(
            find_command(r, "/bin", "/bin", "/")
                .unwrap_err()
                .exit_code(),
            126
        );
        assert_eq!(find_command(r, "./tool", "", "/bin").unwrap(), "./tool");
    }

    #[test]
    fn mkdir_stays_inside() {
        let d = rootfs();
        let r = d.path();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("esc")).unwrap();
        mkdir_in_root(r, "/a/b/c").unwrap();
        assert!(r.join("a/b/c").is_dir());
        // A symlink to a path outside: resolved inside the root (where it dangles), so the
        // creation fails rather than touching the host.
        let _ = mkdir_in_root(r, "/esc/new");
        assert!(!outside.path().join("new").exists());
    }
}
