#!/bin/bash
# Volume benchmark (issue 9): inside a container, a 1 GB sequential write (dd, fsync at the end)
# and 20,000 small files (4 KB each): to a named volume, to the container's writable layer,
# and on the host directly; the same with docker where it runs. Then `system df -v` with
# 20 volumes of 10,000 files each, strata vs docker. Medians of RUNS.
# Stores on $(bench/benchfs.sh), a journaled ext4 (docker's too when started by bench/peers.sh).
# Usage: bench/volumes.sh   (RUNS=3 STRATA=path/to/strata NO_BUILD=1 DOCKER_IMAGE=busybox:latest)
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
if [ -z "${STRATA:-}" ]; then
  [ -n "${NO_BUILD:-}" ] || cargo build --release -q
  STRATA=$PWD/target/release/strata
fi
S=$STRATA
BENCHFS=$(./bench/benchfs.sh)
ROOT=$BENCHFS/strata-bench-vol
export STRATA_ROOT=$ROOT STRATA_STORAGE_DRIVER=overlay
work=$(mktemp -d "$BENCHFS/strata-bench-vol-work.XXXXXX")
DI=${DOCKER_IMAGE:-busybox:latest}
have_docker=0
docker info >/dev/null 2>&1 && docker image inspect "$DI" >/dev/null 2>&1 && have_docker=1
echo "strata: $S; store: $ROOT; docker: $([ $have_docker = 1 ] && docker info -f '{{.DockerRootDir}}' || echo absent); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cleanup() {
  "$S" ps -a -q 2>/dev/null | xargs -r "$S" rm -f >/dev/null 2>&1 || true
  rm -rf "$work" "$ROOT"
  if [ $have_docker = 1 ]; then
    docker ps -aq --filter label=strata-bench | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker volume ls -q --filter label=strata-bench | xargs -r docker volume rm >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
rm -rf "$ROOT"
r=$work/rootfs
mkdir -p "$r"/{bin,etc,tmp,proc,dev,sys,data}
cp /bin/busybox "$r/bin/"
for a in sh dd mkdir seq sync rm; do ln -s busybox "$r/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"
"$S" import "$r" bench/bb:latest >/dev/null

med() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now() { date +%s.%N; }
# The workloads, as one shell command run in DIR (inside the container or on the host).
big='dd if=/dev/zero of=DIR/big bs=1M count=1024 conv=fsync 2>/dev/null'
small='mkdir -p DIR/s && cd DIR/s && for i in $(seq 20000); do echo -n 0123456789abcdef > f$i; done && sync'
timed() { # label, then a command; prints the median of RUNS in seconds
  local label=$1; shift
  local xs=()
  for _ in $(seq "$RUNS"); do
    sync; echo 3 > /proc/sys/vm/drop_caches
    local t0; t0=$(now); "$@" >/dev/null; local t1; t1=$(now)
    xs+=("$(echo "$t1 - $t0" | bc)")
  done
  printf '  %-44s %6.2f s   (runs: %s)\n' "$label" "$(printf '%s\n' "${xs[@]}" | med)" "${xs[*]}"
}
for w in big small; do
  cmd=${!w}
  echo "== $w: $( [ $w = big ] && echo '1 GB sequential write + fsync' || echo '20,000 files of 16 B + sync')"
  # The host runs the same busybox shell and applets as the containers.
  timed "host directory" /bin/busybox sh -c "rm -rf $work/host && mkdir -p $work/host && ${cmd//DIR/$work/host}"
  timed "strata: named volume" sh -c "$S volume rm -f bv >/dev/null 2>&1; $S run --rm -v bv:/data bench/bb sh -c '${cmd//DIR//data}'"
  timed "strata: writable layer" sh -c "$S run --rm bench/bb sh -c '${cmd//DIR//tmp}'"
  if [ $have_docker = 1 ]; then
    timed "docker: named volume" sh -c "docker volume rm -f bv >/dev/null 2>&1; docker run --rm --label strata-bench -v bv:/data $DI sh -c '${cmd//DIR//data}'"
    timed "docker: writable layer" sh -c "docker run --rm --label strata-bench $DI sh -c '${cmd//DIR//tmp}'"
  fi
  "$S" volume rm -f bv >/dev/null 2>&1 || true
  [ $have_docker = 1 ] && docker volume rm -f bv >/dev/null 2>&1 || true
done

echo "== system df -v with 20 volumes of 10,000 files"
fill='mkdir -p /v && cd /v && for i in $(seq 10000); do echo -n x > f$i; done'
for i in $(seq 20); do
  "$S" run --rm -v "dfv$i:/v" bench/bb sh -c "$fill" >/dev/null
  [ $have_docker = 1 ] && docker run --rm --label strata-bench -v "dfv$i:/v" "$DI" sh -c "$fill" >/dev/null
done
[ $have_docker = 1 ] && for i in $(seq 20); do docker volume inspect "dfv$i" >/dev/null; done
hf=(hyperfine -N -w 2 -r "$((RUNS * 3))" --export-json "$work/df.json" "$S system df -v")
[ $have_docker = 1 ] && hf+=("docker system df -v")
"${hf[@]}" >/dev/null
jq -r '.results[] | "  \(.command): median \(.median * 1000 | . * 10 | round / 10) ms"' "$work/df.json"
if [ $have_docker = 1 ]; then
  for i in $(seq 20); do docker volume rm "dfv$i" >/dev/null; done
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
