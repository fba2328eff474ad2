#!/bin/bash
# Mounts a journaled ext4 (a loop file) at ${BENCHFS:-/mnt/benchfs} and prints the mount point:
# the filesystem every benchmark keeps its stores on (strata's, and the peers' via bench/peers.sh).
#
# Why: a root filesystem that is ext4 *without a journal* (as on this project's VMs) makes the
# kernel's inode allocator skip inodes deleted in the last minutes (ext4 recently_deleted()), so
# every file created after a large deletion pays a scan: ~500 us instead of ~25 us. A pull or load
# of a few thousand files then times that scan (seconds) rather than the engine, for every engine.
# Users' hosts run journaled ext4 or xfs; benchmarks should too.
#
# Idempotent: if something is already mounted at the mount point it is reused as it is (a warning
# if it is ext4 without a journal). Otherwise the loop file is created once (sparse) and mounted.
#   BENCHFS       mount point          (default /mnt/benchfs)
#   BENCHFS_IMG   the loop file        (default /var/tmp/benchfs.img)
#   BENCHFS_SIZE  its size when made   (default 60G, sparse: only what is written takes space)
set -eu
MNT=${BENCHFS:-/mnt/benchfs}
IMG=${BENCHFS_IMG:-/var/tmp/benchfs.img}
SIZE=${BENCHFS_SIZE:-60G}

if mountpoint -q "$MNT"; then
  dev=$(findmnt -n -o SOURCE --target "$MNT" | head -1)
  fstype=$(findmnt -n -o FSTYPE --target "$MNT" | head -1)
  if [ "$fstype" = ext4 ]; then
    file=$(losetup -n -O BACK-FILE "$dev" 2>/dev/null | head -1 || true)
    if ! dumpe2fs -h "${file:-$dev}" 2>/dev/null | grep -q '^Filesystem features:.*has_journal'; then
      echo "benchfs.sh: warning: $MNT ($dev) is ext4 without a journal: timings will include" \
        "the recently-deleted-inode scan" >&2
    fi
  fi
  echo "$MNT"
  exit 0
fi

for tool in mkfs.ext4 mount mountpoint; do
  command -v "$tool" >/dev/null || { echo "benchfs.sh: $tool not found (apt-get install e2fsprogs mount)" >&2; exit 1; }
done
if [ ! -f "$IMG" ]; then
  mkdir -p "$(dirname "$IMG")"
  truncate -s "$SIZE" "$IMG.tmp"
  # A journal (the default for ext4, made explicit), no lazy init: the background zeroing of the
  # inode tables and journal would otherwise run during the first benchmarks.
  mkfs.ext4 -q -F -O has_journal -E lazy_itable_init=0,lazy_journal_init=0 "$IMG.tmp"
  mv "$IMG.tmp" "$IMG"
fi
mkdir -p "$MNT"
mount -o loop "$IMG" "$MNT"
echo "$MNT"
