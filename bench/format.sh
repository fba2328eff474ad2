#!/bin/bash
# `ps -a --format '{{.Names}}'` and `inspect --format '{{.State.Pid}}'` with N containers (created,
# of one busybox image), strata against docker when a daemon answers (bench/peers.sh or the
# peers' start script). hyperfine, WARMUP runs then RUNS runs; median, min and mean ± σ in ms.
# Store and work dir under $(bench/benchfs.sh), a journaled ext4.
# Usage: bench/format.sh   (N=100 RUNS=30 WARMUP=3 STRATA=path/to/strata NO_BUILD=1)
set -eu
cd "$(dirname "$0")/.."
N=${N:-100}
RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
if [ -z "${STRATA:-}" ]; then
  [ -n "${NO_BUILD:-}" ] || cargo build --release -q
  STRATA=$PWD/target/release/strata
fi
command -v hyperfine >/dev/null || { echo "format.sh: needs hyperfine (bench/peers.sh installs it)" >&2; exit 1; }
BENCHFS=$(./bench/benchfs.sh)
ROOT=$BENCHFS/strata-bench-format
WORK=$BENCHFS/strata-bench-format-work
echo "date: $(date -u +%FT%TZ); strata: $STRATA; store: $ROOT ($(findmnt -n -o FSTYPE --target "$BENCHFS")); load average: $(cut -d' ' -f1-3 /proc/loadavg); N=$N"

cleanup() {
  grep " $ROOT" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$ROOT" "$WORK"
}
cleanup
trap cleanup EXIT
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc"
cp /bin/busybox "$WORK/rootfs/bin/"; ln -s busybox "$WORK/rootfs/bin/sh"
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/rootfs/etc/passwd"
s() { "$STRATA" --root "$ROOT" "$@"; }
s import "$WORK/rootfs" fmtbench:1 >/dev/null
for i in $(seq "$N"); do s create --name "fmt$i" fmtbench:1 true >/dev/null; done
mid=fmt$((N / 2))

export HF="hyperfine -N --warmup $WARMUP --runs $RUNS --style none --export-json"
report() { jq -r '.results[] | "\(.command): median \(.median*1000 | .*10 | round / 10) ms, min \(.min*1000 | .*10 | round / 10) ms, mean \(.mean*1000 | .*10 | round / 10) ± \(.stddev*1000 | .*10 | round / 10) ms"' "$1"; }
$HF "$WORK/ps.json" -n "strata ps -a --format {{.Names}}" \
  "$STRATA --root $ROOT ps -a --format {{.Names}}" >/dev/null
report "$WORK/ps.json"
$HF "$WORK/inspect.json" -n "strata inspect --format {{.State.Pid}}" \
  "$STRATA --root $ROOT inspect --format {{.State.Pid}} $mid" >/dev/null
report "$WORK/inspect.json"

if docker info >/dev/null 2>&1; then
  echo "docker: $(docker version --format '{{.Client.Version}} CLI, {{.Server.Version}} daemon'); store: $(docker info --format '{{.DockerRootDir}}')"
  tar -C "$WORK/rootfs" -c . | docker import - fmtbench:1 >/dev/null
  ids=()
  for i in $(seq "$N"); do ids+=("$(docker create --network none --name "fmtbench$i" fmtbench:1 true)"); done
  $HF "$WORK/dps.json" -n "docker ps -a --format {{.Names}}" "docker ps -a --format {{.Names}}" >/dev/null
  report "$WORK/dps.json"
  $HF "$WORK/dinspect.json" -n "docker inspect --format {{.State.Pid}}" \
    "docker inspect --format {{.State.Pid}} fmtbench$((N / 2))" >/dev/null
  report "$WORK/dinspect.json"
  docker rm -f "${ids[@]}" >/dev/null
  docker rmi fmtbench:1 >/dev/null
else
  echo "docker: no daemon answering; strata only"
fi
