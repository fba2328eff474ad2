//! Who and what may open a store (issue 7): a non-root user is told strata needs root, in one
//! line; a store on a read-only filesystem serves the commands that only read.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn non_root_user_is_told_strata_needs_root() {
    let s = Store::new("overlay");
    s.ok(&["images"]);
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(&s.root)
        .arg("images")
        .env_remove("STRATA_ROOT")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("strata needs root"), "{err}");
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

both_drivers!(read_only_store_serves_reads, |driver| {
    let s = Store::new(driver);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let r = work.path().join("rootfs");
    busybox_rootfs(&r);
    s.ok(&["import", r.to_str().unwrap(), "bb:1"]);
    let ro = work.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let sh = |args: &[&str]| assert!(Command::new("mount").args(args).status().unwrap().success());
    sh(&["--bind", s.root.to_str().unwrap(), ro.to_str().unwrap()]);
    let _u = Unmount(ro.clone());
    sh(&["-o", "remount,bind,ro", ro.to_str().unwrap()]);
    let strata = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(&ro)
            .args(args)
            .env_remove("STRATA_ROOT")
            .env_remove("STRATA_STORAGE_DRIVER")
            .output()
            .unwrap()
    };
    for args in [
        &["images"][..],
        &["history", "bb:1"][..],
        &["image", "inspect", "bb:1"][..],
        &["system", "fsck"][..],
    ] {
        let o = strata(args);
        assert!(
            o.status.success(),
            "{args:?} on a read-only store: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = strata(&["save", "bb:1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.len() > 1_000_000);
    // A write fails in one line, and the store is unchanged.
    let o = strata(&["rmi", "bb:1"]);
    assert!(!o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1);
    s.ok(&["image", "inspect", "bb:1"]);
    s.fsck_clean();
});
