//! The btrfs ioctls the btrfs driver uses, called directly (no `btrfs` program, no libbtrfs).
//! Argument structures and request numbers come from `linux-raw-sys` (bindgen output of the
//! kernel's `include/uapi/linux/btrfs.h`), so their layout is the kernel's, not hand-copied.

use linux_raw_sys::btrfs as b;
use linux_raw_sys::ioctl as nr;
use rustix::fd::{AsFd, AsRawFd};
use rustix::io::Errno;

/// `st_ino` of every subvolume's root directory (`BTRFS_FIRST_FREE_OBJECTID`).
pub const SUBVOL_ROOT_INO: u64 = b::BTRFS_FIRST_FREE_OBJECTID as u64;
pub const SUPER_MAGIC: u64 = 0x9123_683E;

/// # Safety
/// `arg` must point to the structure request `req` expects (or be null where it takes none).
unsafe fn ioctl<T>(fd: impl AsFd, req: u32, arg: *mut T) -> Result<(), Errno> {
    // SAFETY: the caller passes the structure the request is defined with.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), req as _, arg) };
    if r < 0 {
        Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ))
    } else {
        Ok(())
    }
}

/// Copies `name` into a kernel name field, refusing what does not fit (with its NUL) or holds
/// a NUL or a slash (a subvolume name is one path component).
fn fill_name(dst: &mut [libc::c_char], name: &str) -> Result<(), Errno> {
    if name.len() >= dst.len() || name.is_empty() || name.contains(['\0', '/']) {
        return Err(Errno::INVAL);
    }
    for (d, s) in dst.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(())
}

/// `BTRFS_IOC_SUBVOL_CREATE`: an empty subvolume `name` in directory `dir`.
pub fn subvol_create(dir: impl AsFd, name: &str) -> Result<(), Errno> {
    // SAFETY: plain-old-data structure; all zero is its empty value.
    let mut a: b::btrfs_ioctl_vol_args = unsafe { std::mem::zeroed() };
    fill_name(&mut a.name, name)?;
    // SAFETY: SUBVOL_CREATE takes a btrfs_ioctl_vol_args.
    unsafe { ioctl(dir, nr::BTRFS_IOC_SUBVOL_CREATE, &mut a) }
}

/// `BTRFS_IOC_SNAP_CREATE_V2`: a writable snapshot of subvolume `src` named `name` in `dir`.
/// The kernel commits a transaction for it; no data is copied.
pub fn snapshot(src: impl AsFd, dir: impl AsFd, name: &str) -> Result<(), Errno> {
    // SAFETY: plain-old-data structure; all zero is its empty value (no flags, no qgroup
    // inheritance, no async transid).
    let mut a: b::btrfs_ioctl_vol_args_v2 = unsafe { std::mem::zeroed() };
    a.fd = src.as_fd().as_raw_fd() as i64;
    // SAFETY: the name member of the union is the one SNAP_CREATE_V2 reads (no SPEC_BY_ID flag).
    fill_name(unsafe { &mut a.__bindgen_anon_2.name }, name)?;
    // SAFETY: SNAP_CREATE_V2 takes a btrfs_ioctl_vol_args_v2.
    unsafe { ioctl(dir, nr::BTRFS_IOC_SNAP_CREATE_V2, &mut a) }
}

/// `BTRFS_IOC_SNAP_DESTROY`: delete subvolume `name` in `dir` (root may delete any; it must
/// hold no other subvolume). Its space is reclaimed by the filesystem's cleaner afterwards.
pub fn subvol_destroy(dir: impl AsFd, name: &str) -> Result<(), Errno> {
    // SAFETY: plain-old-data structure; all zero is its empty value.
    let mut a: b::btrfs_ioctl_vol_args = unsafe { std::mem::zeroed() };
    fill_name(&mut a.name, name)?;
    // SAFETY: SNAP_DESTROY takes a btrfs_ioctl_vol_args.
    unsafe { ioctl(dir, nr::BTRFS_IOC_SNAP_DESTROY, &mut a) }
}

/// The id of the subvolume holding `fd` (`BTRFS_IOC_INO_LOOKUP` with objectid 256 returns the
/// tree id), which is also its level-0 qgroup id.
pub fn subvol_id(fd: impl AsFd) -> Result<u64, Errno> {
    // SAFETY: plain-old-data structure; all zero is its empty value.
    let mut a: b::btrfs_ioctl_ino_lookup_args = unsafe { std::mem::zeroed() };
    a.objectid = SUBVOL_ROOT_INO;
    // SAFETY: INO_LOOKUP takes a btrfs_ioctl_ino_lookup_args.
    unsafe { ioctl(fd, nr::BTRFS_IOC_INO_LOOKUP, &mut a)? };
    Ok(a.treeid)
}

/// `BTRFS_IOC_QUOTA_CTL` enable on the filesystem of `fd` (a no-op when quotas are on), then
/// `BTRFS_IOC_QUOTA_RESCAN_WAIT`, so accounting is complete before a limit relies on it.
pub fn quota_enable(fd: impl AsFd) -> Result<(), Errno> {
    let fd = fd.as_fd();
    let mut a = b::btrfs_ioctl_quota_ctl_args {
        cmd: b::BTRFS_QUOTA_CTL_ENABLE as u64,
        status: 0,
    };
    // SAFETY: QUOTA_CTL takes a btrfs_ioctl_quota_ctl_args.
    unsafe { ioctl(fd, nr::BTRFS_IOC_QUOTA_CTL, &mut a)? };
    // SAFETY: QUOTA_RESCAN_WAIT takes no argument.
    match unsafe {
        ioctl(
            fd,
            nr::BTRFS_IOC_QUOTA_RESCAN_WAIT,
            std::ptr::null_mut::<u8>(),
        )
    } {
        Ok(()) | Err(Errno::INVAL) => Ok(()), // EINVAL: no rescan running
        Err(e) => Err(e),
    }
}

/// `BTRFS_IOC_QGROUP_CREATE` (create=1) or destroy (create=0) of qgroup `id` (level 0: a
/// subvolume's). Creating one that exists fails with EEXIST.
pub fn qgroup_create(fd: impl AsFd, id: u64, create: bool) -> Result<(), Errno> {
    let mut a = b::btrfs_ioctl_qgroup_create_args {
        create: create as u64,
        qgroupid: id,
    };
    // SAFETY: QGROUP_CREATE takes a btrfs_ioctl_qgroup_create_args.
    unsafe { ioctl(fd, nr::BTRFS_IOC_QGROUP_CREATE, &mut a) }
}

/// `BTRFS_IOC_QGROUP_LIMIT`: at most `bytes` exclusive to qgroup `id` (data only this
/// subvolume holds: what it wrote, not what it shares with the snapshot it was made from).
pub fn qgroup_limit_exclusive(fd: impl AsFd, id: u64, bytes: u64) -> Result<(), Errno> {
    let mut a = b::btrfs_ioctl_qgroup_limit_args {
        qgroupid: id,
        lim: b::btrfs_qgroup_limit {
            flags: b::BTRFS_QGROUP_LIMIT_MAX_EXCL as u64,
            max_rfer: 0,
            max_excl: bytes,
            rsv_rfer: 0,
            rsv_excl: 0,
        },
    };
    // SAFETY: QGROUP_LIMIT takes a btrfs_ioctl_qgroup_limit_args.
    unsafe { ioctl(fd, nr::BTRFS_IOC_QGROUP_LIMIT, &mut a) }
}

/// Bytes used by data and by metadata (all profiles) on the filesystem of `fd`
/// (`BTRFS_IOC_SPACE_INFO`, what `btrfs filesystem df` shows).
pub fn space_used(fd: impl AsFd) -> Result<(u64, u64), Errno> {
    #[repr(C)]
    struct Args {
        head: b::btrfs_ioctl_space_args,
        spaces: [b::btrfs_ioctl_space_info; 16],
    }
    // SAFETY: plain-old-data structure; all zero is its empty value.
    let mut a: Args = unsafe { std::mem::zeroed() };
    a.head.space_slots = 16;
    // SAFETY: SPACE_INFO takes a btrfs_ioctl_space_args followed by space_slots entries.
    unsafe { ioctl(fd, nr::BTRFS_IOC_SPACE_INFO, &mut a)? };
    let n = (a.head.total_spaces as usize).min(16);
    let (mut data, mut meta) = (0, 0);
    for s in &a.spaces[..n] {
        if s.flags & b::BTRFS_BLOCK_GROUP_DATA as u64 != 0 {
            data += s.used_bytes;
        } else if s.flags & b::BTRFS_BLOCK_GROUP_METADATA as u64 != 0 {
            meta += s.used_bytes;
        }
    }
    Ok((data, meta))
}
