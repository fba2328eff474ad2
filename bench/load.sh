#!/bin/bash
# Load benchmark: strata load (overlay, vfs) vs docker load and podman load of the same
# docker-save archive, medians of RUNS; disk used for two images sharing a base; fsck throughput.
# Stores: strata's under $(bench/benchfs.sh) (a journaled ext4); bench/peers.sh puts docker's and
# podman's there too.
# Usage: bench/load.sh  (RUNS=3 QUIET=15 FIX=/var/tmp/strata-bench STRATA=path/to/strata NO_BUILD=1
#                        ROOT=dir; run bench/peers.sh first for docker/podman)
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
FIX=${FIX:-/var/tmp/strata-bench}
QUIET=${QUIET:-15}
./bench/make-fixtures.sh >/dev/null
if [ -z "${STRATA:-}" ]; then
  [ -n "${NO_BUILD:-}" ] || cargo build --release -q
  STRATA=$PWD/target/release/strata
fi
S=$STRATA
BENCHFS=$(./bench/benchfs.sh)
ROOT=${ROOT:-$BENCHFS/strata-bench-root}
echo "strata: $S; store: $ROOT ($(findmnt -n -o FSTYPE --target "$BENCHFS")); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
docker info >/dev/null 2>&1 && echo "docker store: $(docker info --format '{{.DockerRootDir}}')"
command -v podman >/dev/null && echo "podman store: $(podman info --format '{{.Store.GraphRoot}}' 2>/dev/null)"
MB=$(( $(stat -c %s "$FIX/fat.tar") / 1000000 ))

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# Same conditions for every tool: nothing cached, a settled disk.
quiet() { sync; echo 3 > /proc/sys/vm/drop_caches; sleep "$QUIET"; }
timed() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc; }

declare -A results
for run in $(seq "$RUNS"); do
  for drv in overlay vfs; do
    rm -rf "$ROOT"; quiet
    results[strata-$drv]+="$(timed "$S" --root "$ROOT" --storage-driver "$drv" load -i "$FIX/fat.tar") "
  done
  if docker info >/dev/null 2>&1; then
    # Every image removed and pruned: a remaining tag would keep the layers and make the
    # next load a no-op.
    docker rmi -f $(docker images -aq) >/dev/null 2>&1 || true
    docker image prune -af >/dev/null 2>&1 || true; quiet
    results[docker]+="$(timed docker load -i "$FIX/fat.tar") "
  fi
  if command -v podman >/dev/null; then
    podman rmi -af >/dev/null 2>&1 || true; quiet
    results[podman]+="$(timed podman load -q -i "$FIX/fat.tar") "
  fi
done
echo "load of fat.tar (${MB} MB, 5 layers), seconds, runs: $RUNS"
for k in strata-overlay strata-vfs docker podman; do
  [ -n "${results[$k]:-}" ] || continue
  m=$(echo "${results[$k]}" | tr ' ' '\n' | grep . | median)
  printf '  %-15s median %6.2f s  (%s)  %6.0f MB/s\n' "$k" "$m" "${results[$k]% }" "$(echo "$MB / $m" | bc -l)"
  eval "med_${k//-/_}=$m"
done
if [ -n "${med_docker:-}" ] && [ -n "${med_podman:-}" ]; then
  best=$(echo "if ($med_docker < $med_podman) $med_docker else $med_podman" | bc -l)
  printf '  strata-overlay / faster peer = %.2fx\n' "$(echo "$med_strata_overlay / $best" | bc -l)"
fi

echo "two images sharing a base (fat 5 layers + fat2 = fat's base + 20 MB), disk used:"
for drv in overlay vfs; do
  rm -rf "$ROOT"; quiet
  t=$(timed sh -c "$S --root $ROOT --storage-driver $drv load -i $FIX/fat.tar && $S --root $ROOT load -i $FIX/fat2.tar")
  printf '  %-8s load both %.2f s, du %s\n' "$drv" "$t" "$(du -sh -x "$ROOT" | cut -f1)"
done

echo "fsck (re-hash every blob and layer):"
sync; echo 3 > /proc/sys/vm/drop_caches
"$S" --root "$ROOT" system fsck | tail -1
"$S" --root "$ROOT" system fsck | tail -1
rm -rf "$ROOT"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
