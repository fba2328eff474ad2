#!/bin/bash
# Migration benchmark: `strata system migrate --from docker` (and with --link) of a Docker store
# holding the ~350 MB 5-layer fat image and a Debian base, against `docker save | strata load`
# of the same two images; medians of RUNS, seconds and MB/s (MB of layer tar adopted), and the
# disk each strata store takes.
# A throwaway dockerd (its own containerd, no networking) keeps its data root on the bench
# filesystem next to strata's store (same mount, so --link can link). Caches dropped before
# every timed run.
# Usage: bench/migrate.sh  (RUNS=3 QUIET=5 FIX=/var/tmp/strata-bench STRATA=path NO_BUILD=1 MIGRATE_FS=dir)
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
FIX=${FIX:-/var/tmp/strata-bench}
QUIET=${QUIET:-5}
./bench/make-fixtures.sh >/dev/null
if [ -z "${STRATA:-}" ]; then
  [ -n "${NO_BUILD:-}" ] || cargo build --release -q
  STRATA=$PWD/target/release/strata
fi
S=$STRATA
# MIGRATE_FS=DIR puts both stores on another filesystem instead (a btrfs mount: files are
# then reflinked, and the filesystem should grow by metadata only).
BENCHFS=${MIGRATE_FS:-$(./bench/benchfs.sh)}
W=$BENCHFS/migrate-bench
EXEC=/run/strata-migbench
ROOT=$W/strata
mkdir -p "$W" "$EXEC"

cleanup() {
  [ -n "${DPID:-}" ] && { kill "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; }
  [ -n "${CPID:-}" ] && { kill "$CPID" 2>/dev/null || true; wait "$CPID" 2>/dev/null || true; }
  for m in $(grep -o "$W[^ ]*\|$EXEC[^ ]*" /proc/self/mounts | sort -r); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$W" "$EXEC"
}
trap cleanup EXIT
rm -rf "$W/docker" "$W/containerd"

containerd --root "$W/containerd" --state "$EXEC/cstate" --address "$EXEC/containerd.sock" \
  --config /dev/null >"$W/containerd.log" 2>&1 &
CPID=$!
dockerd --iptables=false --ip6tables=false --ip-masq=false --bridge=none --storage-driver=overlay2 \
  --data-root "$W/docker" --exec-root "$EXEC" --pidfile "$EXEC/dockerd.pid" \
  --containerd "$EXEC/containerd.sock" -H "unix://$EXEC/docker.sock" >"$W/dockerd.log" 2>&1 &
DPID=$!
D() { docker -H "unix://$EXEC/docker.sock" "$@"; }
for _ in $(seq 100); do D version >/dev/null 2>&1 && break; sleep 0.3; done
D version >/dev/null

# The two images: fat (5 layers) and a Debian base (the fixture rootfs, one layer).
D load -i "$FIX/fat.tar" >/dev/null
FAT=$(tar -xOf "$FIX/fat.tar" manifest.json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["RepoTags"][0])')
tar -C "$FIX/rootfs" -c . | D import - debian-base:bench >/dev/null

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
quiet() { sync; echo 3 > /proc/sys/vm/drop_caches; sleep "$QUIET"; }
timed() { local t0 t1; t0=$(now); "$@" >/dev/null 2>&1; t1=$(now); echo "$t1 - $t0" | bc; }
migrate() { "$S" --root "$ROOT" system migrate --from docker --docker-root "$W/docker" "$@"; }
save_load() { D save "$FAT" debian-base:bench | "$S" --root "$ROOT" load; }

echo "strata: $S; stores on $BENCHFS ($(findmnt -n -o FSTYPE --target "$BENCHFS")); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$ROOT"
migrate --dry-run | tail -1
MB=$(migrate | sed -n 's/.*; \([0-9.]*\)MB in .*/\1/p')
echo "layer tar adopted: ${MB} MB"

used() { df --output=used -B1 "$BENCHFS" | tail -1; }
declare -A results disk grow
measure() { # k command...
  local k=$1; shift
  rm -rf "$ROOT"; quiet
  local u0; u0=$(used)
  results[$k]+="$(timed "$@") "
  sync; grow[$k]=$(( $(used) - u0 ))
  "$S" --root "$ROOT" images -q | wc -l | grep -qx 2 || { echo "$k: not 2 images" >&2; exit 1; }
  disk[$k]=$(du -s -B1 -x "$ROOT" | cut -f1)
}
for run in $(seq "$RUNS"); do measure save-load save_load; done
# Migration with Docker stopped, as a user switching engines would run it (a running dockerd
# also bind-mounts its overlay2 dir onto itself, and a hard link cannot cross that mount).
kill "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=
for run in $(seq "$RUNS"); do
  measure migrate migrate
  measure migrate-link migrate --link
done
echo "fat ($FAT, 5 layers) + debian base, docker overlay2 store -> strata overlay, seconds, runs: $RUNS"
for k in migrate migrate-link save-load; do
  m=$(echo "${results[$k]}" | tr ' ' '\n' | grep . | median)
  printf '  %-22s median %6.2f s  (%s)  %6.0f MB/s  store (du) %s MB, filesystem grew %s MB\n' \
    "$k" "$m" "${results[$k]% }" "$(echo "$MB / $m" | bc -l)" "$(( ${disk[$k]} / 1000000 ))" \
    "$(( ${grow[$k]} / 1000000 ))"
  eval "med_${k//-/_}=$m"
done
printf '  migrate / (docker save | strata load) = %.2f\n' "$(echo "$med_migrate / $med_save_load" | bc -l)"
printf '  migrate --link / (docker save | strata load) = %.2f\n' "$(echo "$med_migrate_link / $med_save_load" | bc -l)"
rm -rf "$ROOT"
