#!/bin/bash
# Registry benchmark: strata pull/push of the 5-layer "fat" image (~330 MB uncompressed) against a
# local CNCF registry started here (127.0.0.1:$PORT), medians of RUNS:
#   cold pull (empty store), pull when the base layer exists (fat2 after fat), pull of an image
#   fully present, push of a new image (layers compressed at push), push again (registry has all),
#   push to an empty registry of a pulled image (original blobs, no compression).
# If docker/podman are running (bench/peers.sh), their cold pull of the same image is measured too.
# Stores (strata's, the registry's) under $(bench/benchfs.sh), a journaled ext4; bench/peers.sh puts
# docker's and podman's there too. The registry listens on PORT, which must be free (5000 is often
# taken by a peers' registry; docker and podman treat 127.0.0.1 registries as insecure).
# Usage: bench/pull.sh   (RUNS=3 QUIET=5 PORT=5055 FIX=/var/tmp/strata-bench DRIVER=overlay
#                         STRATA=path/to/strata NO_BUILD=1 W=workdir)
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
PORT=${PORT:-5055}
FIX=${FIX:-/var/tmp/strata-bench}
DRIVER=${DRIVER:-overlay}
QUIET=${QUIET:-5}
./bench/make-fixtures.sh >/dev/null
if [ -z "${STRATA:-}" ]; then
  [ -n "${NO_BUILD:-}" ] || cargo build --release -q
  STRATA=$PWD/target/release/strata
fi
S=$STRATA
BENCHFS=$(./bench/benchfs.sh)
W=${W:-$BENCHFS/strata-bench-pull}
if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then
  echo "pull.sh: 127.0.0.1:$PORT is already in use; choose another PORT" >&2; exit 1
fi
echo "strata: $S; stores: $W ($(findmnt -n -o FSTYPE --target "$BENCHFS")); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
docker info >/dev/null 2>&1 && echo "docker store: $(docker info --format '{{.DockerRootDir}}')"
command -v podman >/dev/null && echo "podman store: $(podman info --format '{{.Store.GraphRoot}}' 2>/dev/null)"
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
    res[podman-cold]+="$(timed env -u DOCKER_CONFIG podman pull -q --tls-verify=false $R/fat:latest) "
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
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
