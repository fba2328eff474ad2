#!/bin/bash
# The whole test suite on a fresh machine: installs what tests need, then runs unit and
# integration tests (as root: they mount overlays) for both storage drivers; then the suite a
# second time with every store on a btrfs filesystem (a loop-mounted image under /var/tmp),
# where the tests that ask for overlay get the btrfs driver (tests/common `suite_driver`).
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --all-targets
status=0
cargo test --release --no-fail-fast -- --test-threads=2 || status=1

if grep -qw btrfs /proc/filesystems || modprobe btrfs 2>/dev/null; then
  work=$(mktemp -d /var/tmp/strata-btrfs-suite.XXXXXX)
  trap 'umount -l "$work/mnt" 2>/dev/null; rm -rf "$work"' EXIT
  truncate -s 20G "$work/fs.img"
  mkfs.btrfs -q -f "$work/fs.img"
  mkdir "$work/mnt"
  mount -o loop "$work/fs.img" "$work/mnt"
  echo "== the suite again on btrfs ($work/mnt) =="
  STRATA_TEST_BTRFS="$work/mnt" STRATA_DRIVER_TEST_DIR="$work/mnt" \
    cargo test --release --no-fail-fast --tests -- --test-threads=2 || status=1
else
  echo "== btrfs pass skipped: this kernel has no btrfs =="
fi
exit $status
