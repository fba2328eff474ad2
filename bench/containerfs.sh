#!/bin/bash
# Container filesystem benchmarks (medians of RUNS):
#  - commit of a container that wrote a 100 MB file (written through `strata mount`), overlay
#    and vfs; "dirty": commit right after the write (its syncfs also flushes the container's
#    100 MB), "synced": after `sync`. Docker's `commit` the same way when a daemon is present.
#  - `ps -a -s` and `system df` with N containers of one image (N in COUNTS), each having
#    written a small file, to show the time stays flat as N grows.
# Store and work dir under $(bench/benchfs.sh), a journaled ext4 (bench/peers.sh puts docker's
# store there too).
# Usage: bench/containerfs.sh   (RUNS=5 COUNTS="10 100 200" STRATA=path/to/strata NO_BUILD=1 SKIP_PS=1
#                                ROOT=dir WORK=dir)
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
COUNTS=${COUNTS:-"10 100 200"}
if [ -z "${STRATA:-}" ]; then
  [ -n "${NO_BUILD:-}" ] || cargo build --release -q
  STRATA=$PWD/target/release/strata
fi
BENCHFS=$(./bench/benchfs.sh)
ROOT=${ROOT:-$BENCHFS/strata-bench-cfs}
WORK=${WORK:-$BENCHFS/strata-bench-cfs-work}
echo "strata: $STRATA; store: $ROOT ($(findmnt -n -o FSTYPE --target "$BENCHFS")); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
docker info >/dev/null 2>&1 && echo "docker store: $(docker info --format '{{.DockerRootDir}}')"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ms() { echo "($2 - $1) * 1000" | bc; }
cleanup() {
  grep " $ROOT" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$ROOT"
}

# A busybox image to build on.
rm -rf "$WORK"; mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc" "$WORK/rootfs/root" "$WORK/rootfs/tmp"
cp /bin/busybox "$WORK/rootfs/bin/"; ln -s busybox "$WORK/rootfs/bin/sh"
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/rootfs/etc/passwd"
head -c 100000000 /dev/urandom > "$WORK/100mb"

for drv in overlay vfs; do
  for mode in dirty synced; do
    times=""
    for run in $(seq "$RUNS"); do
      cleanup
      s() { "$STRATA" --root "$ROOT" --storage-driver "$drv" "$@"; }
      s import "$WORK/rootfs" bb:1 >/dev/null
      s create --name c bb:1 >/dev/null
      m=$(s mount c)
      cp "$WORK/100mb" "$m/root/big"
      s umount c >/dev/null
      if [ "$mode" = synced ]; then sync; fi
      t0=$(now); s commit c bb:2 >/dev/null; t1=$(now)
      times+="$(ms "$t0" "$t1") "
    done
    echo "commit 100MB $drv ($mode): median $(echo $times | tr ' ' '\n' | median) ms  [runs: $times]"
  done
done

if docker info >/dev/null 2>&1; then
  tar -C "$WORK/rootfs" -c . | docker import - strata-cfs-bench:latest >/dev/null
  for mode in dirty synced; do
    times=""
    for run in $(seq "$RUNS"); do
      docker rm -f cfs-bench >/dev/null 2>&1 || true
      docker create --name cfs-bench strata-cfs-bench:latest true >/dev/null
      docker cp "$WORK/100mb" cfs-bench:/root/big
      if [ "$mode" = synced ]; then sync; fi
      t0=$(now); id=$(docker commit cfs-bench); t1=$(now)
      times+="$(ms "$t0" "$t1") "
      docker rm -f cfs-bench >/dev/null; docker rmi "$id" >/dev/null
    done
    echo "docker commit 100MB ($mode): median $(echo $times | tr ' ' '\n' | median) ms  [runs: $times]"
  done
  docker rmi strata-cfs-bench:latest >/dev/null
fi

[ -n "${SKIP_PS:-}" ] && { cleanup; rm -rf "$WORK"; echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"; exit 0; }
for drv in overlay vfs; do
  cleanup
  s() { "$STRATA" --root "$ROOT" --storage-driver "$drv" "$@"; }
  s import "$WORK/rootfs" bb:1 >/dev/null
  have=0
  for n in $COUNTS; do
    while [ "$have" -lt "$n" ]; do
      s create --name "c$have" bb:1 true >/dev/null
      m=$(s mount "c$have"); echo "container $have" > "$m/root/hello"; s umount "c$have" >/dev/null
      have=$((have + 1))
    done
    for cmd in "ps -a -s" "system df"; do
      times=""
      for run in $(seq "$RUNS"); do
        t0=$(now); s $cmd >/dev/null; t1=$(now)
        times+="$(ms "$t0" "$t1") "
      done
      echo "$cmd, $n containers, $drv: median $(echo $times | tr ' ' '\n' | median) ms"
    done
    times=""
    for run in $(seq "$RUNS"); do
      t0=$(now); s ps -a >/dev/null; t1=$(now)
      times+="$(ms "$t0" "$t1") "
    done
    echo "ps -a (no sizes), $n containers, $drv: median $(echo $times | tr ' ' '\n' | median) ms"
  done
  if [ "$drv" = overlay ]; then
    c0=$(s inspect c0 | sed -n 's/.*"UpperDir": "\(.*\)".*/\1/p')
    echo "writable layer of one container on disk: $(du -sk "$(dirname "$c0")" | cut -f1) KiB (dir incl. work/merged), diff: $(du -sk "$c0" | cut -f1) KiB"
  fi
done
cleanup
rm -rf "$WORK"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
