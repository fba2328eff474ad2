#!/bin/bash
# Registry benchmark: strata pull/push of the 5-layer "fat" image (~330 MB uncompressed) against a
# local CNCF registry started here (127.0.0.1:$PORT), medians of RUNS:
#   cold pull (empty store), pull when the base layer exists (fat2 after fat), pull of an image
#   fully present, push of a new image (layers compressed at push), push again (registry has all),
#   push to an empty registry of a pulled image (original blobs, no compression).
# If docker/podman are running (bench/peers.sh), their cold pull of the same image is measured too.
# Usage: bench/pull.sh   (RUNS=3 PORT=5000 FIX=/var/tmp/strata-bench DRIVER=overlay)
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
PORT=${PORT:-5000}
FIX=${FIX:-/var/tmp/strata-bench}
DRIVER=${DRIVER:-overlay}
QUIET=${QUIET:-5}
./bench/make-fixtures.sh >/dev/null
[ -n "${NO_BUILD:-}" ] || cargo build --release -q
S=$PWD/target/release/strata
W=/var/tmp/strata-bench-pull
REG=$W/registry
R=127.0.0.1:$PORT
rm -rf "$W"; mkdir -p "$W"
export DOCKER_CONFIG=$W/docker STRATA_CERTS_D=$W/certs.d

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
quiet() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; sleep "$QUIET"; }
timed() {
  local t0 t1; t0=$(now)
  if ! "$@" >/dev/null; then echo "failed: $*" >&2; exit 1; fi
  t1=$(now); echo "$t1 - $t0" | bc
}
st() { local root=$1; shift; "$S" --root "$root" --storage-driver "$DRIVER" "$@"; }
reg_start() { ./scripts/registry-test-server.sh start "$REG" "$PORT"; }
reg_stop() { ./scripts/registry-test-server.sh stop "$REG"; sleep 0.3; }
reg_fresh() { reg_stop; rm -rf "$REG"; reg_start; }
trap 'reg_stop' EXIT

# A source store with both images, tagged for the registry; one push fills the registry.
SRC=$W/src
reg_fresh
st "$SRC" load -i "$FIX/fat.tar" >/dev/null
st "$SRC" load -i "$FIX/fat2.tar" >/dev/null
st "$SRC" tag bench/fat:latest $R/fat:latest
st "$SRC" tag bench/fat2:latest $R/fat2:latest
st "$SRC" push $R/fat:latest >/dev/null
st "$SRC" push $R/fat2:latest >/dev/null
COMP=$(du -sb "$REG/data/docker/registry/v2/blobs" | cut -f1)
UNCOMP=$(stat -c %s "$FIX/fat.tar")

declare -A res
for run in $(seq "$RUNS"); do
  D=$W/dst
  rm -rf "$D"; quiet
  res[cold]+="$(timed st "$D" pull $R/fat:latest) "
  quiet
  res[base]+="$(timed st "$D" pull $R/fat2:latest) "
  quiet
  res[present]+="$(timed st "$D" pull $R/fat:latest) "
  # push of a new image: a fresh source store (no compressed blobs yet) to an empty registry
  P=$W/pushsrc
  rm -rf "$P"; st "$P" load -i "$FIX/fat.tar" >/dev/null; st "$P" tag bench/fat:latest $R/new:latest
  reg_fresh; quiet
  res[push-new]+="$(timed st "$P" push $R/new:latest) "
  quiet
  res[push-again]+="$(timed st "$P" push $R/new:latest) "
  # the pulled image (original blobs kept) pushed to an empty registry: no compression
  st "$D" tag $R/fat:latest $R/repush:latest
  reg_fresh; quiet
  res[push-pulled]+="$(timed st "$D" push $R/repush:latest) "
  # put fat/fat2 back for the next round
  st "$SRC" push $R/fat:latest >/dev/null
  st "$SRC" push $R/fat2:latest >/dev/null
  if docker info >/dev/null 2>&1; then
    # all images, pruned: another tag would keep the layers and make the pull a no-op
    docker rmi -f $(docker images -aq) >/dev/null 2>&1 || true; docker image prune -af >/dev/null 2>&1 || true; quiet
    res[docker-cold]+="$(timed env -u DOCKER_CONFIG docker pull $R/fat:latest) "
  fi
  if command -v podman >/dev/null && podman info >/dev/null 2>&1; then
    podman rmi -af >/dev/null 2>&1 || true; quiet
    res[podman-cold]+="$(timed env -u DOCKER_CONFIG podman pull --tls-verify=false $R/fat:latest) "
  fi
done

echo "registry benchmark: fat (5 layers, $((UNCOMP / 1000000)) MB uncompressed; registry blobs of fat+fat2 $((COMP / 1000000)) MB), driver $DRIVER, runs: $RUNS"
for k in cold base present push-new push-again push-pulled docker-cold podman-cold; do
  [ -n "${res[$k]:-}" ] || continue
  m=$(echo "${res[$k]}" | tr ' ' '\n' | grep . | median)
  extra=""
  case $k in cold|docker-cold|podman-cold) extra=$(printf '%6.0f MB/s uncompressed' "$(echo "$UNCOMP / 1000000 / $m" | bc -l)");; esac
  printf '  %-12s median %6.2f s  (%s) %s\n' "$k" "$m" "${res[$k]% }" "$extra"
done
if [ -n "${res[docker-cold]:-}" ]; then
  s=$(echo "${res[cold]}" | tr ' ' '\n' | grep . | median)
  d=$(echo "${res[docker-cold]}" | tr ' ' '\n' | grep . | median)
  printf '  strata/docker cold pull ratio: %.2f\n' "$(echo "$s / $d" | bc -l)"
fi
