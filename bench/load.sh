#!/bin/bash
# Load benchmark: strata load (overlay, vfs) vs docker load and podman load of the same
# docker-save archive, medians of RUNS; disk used for two images sharing a base; fsck throughput.
# Usage: bench/load.sh  (RUNS=3 FIX=/var/tmp/strata-bench; run bench/peers.sh first for docker/podman)
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
FIX=${FIX:-/var/tmp/strata-bench}
QUIET=${QUIET:-15}
./bench/make-fixtures.sh >/dev/null
[ -n "${NO_BUILD:-}" ] || cargo build --release -q
S=$PWD/target/release/strata
ROOT=/var/tmp/strata-bench-root
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
    results[podman]+="$(timed podman load -i "$FIX/fat.tar") "
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
