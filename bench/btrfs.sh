#!/bin/bash
# btrfs driver benchmark (issue 11): `create`+`rm` and `run --rm IMAGE true` on btrfs vs overlay
# (medians via hyperfine), and the disk 100 containers of one image take on each.
# btrfs: a filesystem made on a loop file *on* the journaled bench filesystem ($(bench/benchfs.sh),
# ext4), so its writes go through two filesystems; overlay: a store directly on the bench fs.
# Image: a busybox-static rootfs plus 8 MB of random data, made with `strata import`.
# Usage: bench/btrfs.sh   (RUNS=30 N=100 STRATA=path/to/strata NO_BUILD=1)
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
N=${N:-100}
if [ -z "${STRATA:-}" ]; then
  [ -n "${NO_BUILD:-}" ] || cargo build --release -q
  STRATA=$PWD/target/release/strata
fi
S=$STRATA
BENCHFS=$(./bench/benchfs.sh)
work=$(mktemp -d "$BENCHFS/strata-bench-btrfs.XXXXXX")
mkdir "$work/mnt"
cleanup() {
  umount -l "$work/mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
truncate -s 8G "$work/fs.img"
mkfs.btrfs -q -f "$work/fs.img"
mount -o loop "$work/fs.img" "$work/mnt"
echo "strata: $S; bench fs: $BENCHFS ($(findmnt -n -o FSTYPE --target "$BENCHFS")); btrfs: loop file on it ($(mkfs.btrfs --version | head -1)); kernel $(uname -r)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%F %H:%M UTC')"

r=$work/rootfs
mkdir -p "$r"/{bin,etc,tmp,proc,dev,sys,root}
cp /bin/busybox "$r/bin/"
for a in sh true sleep echo cat; do ln -s busybox "$r/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"
touch "$r"/etc/{hosts,hostname,resolv.conf}
head -c 8M /dev/urandom > "$r/etc/data"

median_ms() { jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$1"; }
kb() { echo "$(( $1 / 1024 )) KiB"; }

for driver in overlay btrfs; do
  if [ $driver = btrfs ]; then root=$work/mnt/root; else root=$work/overlay-root; fi
  export STRATA_ROOT=$root STRATA_STORAGE_DRIVER=$driver
  "$S" import "$r" bench/bb:latest -c 'CMD ["sh"]' >/dev/null
  echo "== $driver: create + rm, $RUNS runs"
  hyperfine -N -w 3 -r "$RUNS" --export-json "$work/c.json" \
    "sh -c '$S rm \$($S create bench/bb) >/dev/null'" >/dev/null
  echo "  median $(median_ms "$work/c.json") ms"
  echo "== $driver: run --rm IMAGE true, $RUNS runs"
  hyperfine -N -w 3 -r "$RUNS" --export-json "$work/r.json" "$S run --rm bench/bb true" >/dev/null
  echo "  median $(median_ms "$work/r.json") ms"
  echo "== $driver: disk of $N containers (create)"
  sync
  if [ $driver = btrfs ]; then
    btrfs filesystem sync "$work/mnt"
    read -r d0 m0 < <(btrfs filesystem df -b "$work/mnt" | awk -F'used=' '/^Data/{d+=$2} /^Metadata/{m+=$2} END{print d, m}')
  else
    u0=$(df -B1 --output=used "$BENCHFS" | tail -1)
  fi
  t0=$(date +%s.%N)
  for i in $(seq "$N"); do "$S" create bench/bb >/dev/null; done
  t1=$(date +%s.%N)
  sync
  if [ $driver = btrfs ]; then
    btrfs filesystem sync "$work/mnt"
    read -r d1 m1 < <(btrfs filesystem df -b "$work/mnt" | awk -F'used=' '/^Data/{d+=$2} /^Metadata/{m+=$2} END{print d, m}')
    echo "  data +$(kb $((d1 - d0))), metadata +$(kb $((m1 - m0))) (btrfs filesystem df, store db included)"
  else
    u1=$(df -B1 --output=used "$BENCHFS" | tail -1)
    echo "  bench fs used +$(kb $((u1 - u0))) (df; store db included)"
  fi
  printf '  %d creates: %.2f s\n' "$N" "$(echo "$t1 - $t0" | bc)"
  t0=$(date +%s.%N)
  "$S" ps -a -q | xargs "$S" rm -f >/dev/null
  t1=$(date +%s.%N)
  printf '  rm -f of all %d: %.2f s\n' "$N" "$(echo "$t1 - $t0" | bc)"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
