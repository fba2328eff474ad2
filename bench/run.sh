#!/bin/bash
# Runtime benchmark (issue 3): `create`+`rm` on overlay, `run --rm IMAGE true` (embedded runtime
# and runc), and 100 containers `run -d IMAGE sleep 1000` (total time, disk of each writable
# layer), medians via hyperfine. Image: a busybox-static rootfs made with `strata import`.
# Store and work dir under $(bench/benchfs.sh), a journaled ext4.
# Also `run --rm -t` against `run --rm` (ONLY_TTY=1 skips what follows it).
# Usage: bench/run.sh   (RUNS=30 N=100 STRATA=path/to/strata NO_BUILD=1 ROOT=dir ONLY_TTY=1)
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
ROOT=${ROOT:-$BENCHFS/strata-bench-run}
export STRATA_ROOT=$ROOT STRATA_STORAGE_DRIVER=overlay
work=$(mktemp -d "$BENCHFS/strata-bench-rootfs.XXXXXX")
echo "strata: $S; store: $ROOT ($(findmnt -n -o FSTYPE --target "$BENCHFS")); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cleanup() {
  "$S" ps -a -q 2>/dev/null | xargs -r "$S" rm -f >/dev/null 2>&1 || true
  rm -rf "$work" "$ROOT"
}
trap cleanup EXIT
"$S" ps -a -q 2>/dev/null | xargs -r "$S" rm -f >/dev/null 2>&1 || true
rm -rf "$ROOT"

r=$work/rootfs
mkdir -p "$r"/{bin,etc,tmp,proc,dev,sys,root}
cp /bin/busybox "$r/bin/"
for a in sh true sleep echo cat; do ln -s busybox "$r/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"
touch "$r"/etc/{hosts,hostname,resolv.conf}
"$S" import "$r" bench/bb:latest -c 'CMD ["sh"]' >/dev/null

median_ms() { # hyperfine JSON -> median in ms
  jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$1"
}

echo "== create + rm (overlay), $RUNS runs"
hyperfine -N -w 3 -r "$RUNS" --export-json "$work/c.json" \
  "sh -c '$S rm \$($S create bench/bb) >/dev/null'" >/dev/null
echo "  median $(median_ms "$work/c.json") ms   (target < 10 ms; docker 82 ms, podman 139 ms for create alone)"

echo "== run --rm IMAGE true, $RUNS runs"
hyperfine -N -w 3 -r "$RUNS" --export-json "$work/r.json" "$S run --rm bench/bb true" >/dev/null
echo "  embedded (libcontainer) median $(median_ms "$work/r.json") ms   (target < 100 ms; docker 579, podman 478, ctr 207)"
if [ -x /usr/sbin/runc ]; then
  hyperfine -N -w 3 -r "$RUNS" --export-json "$work/rr.json" "$S run --rm --runtime /usr/sbin/runc bench/bb true" >/dev/null
  echo "  runc (--runtime)        median $(median_ms "$work/rr.json") ms"
fi

echo "== run --rm -t IMAGE true against run --rm IMAGE true (issue 10), $RUNS runs each"
hyperfine -N -w 3 -r "$RUNS" --export-json "$work/t.json" \
  "$S run --rm bench/bb true" "$S run --rm -t bench/bb true" >/dev/null
plain=$(jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$work/t.json")
tty=$(jq -r '.results[1].median * 1000 | . * 10 | round / 10' "$work/t.json")
echo "  without -t median $plain ms; with -t median $tty ms; ratio $(echo "scale=3; $tty / $plain" | bc)   (target <= 1.10)"
[ -z "${ONLY_TTY:-}" ] || exit 0

echo "== $N containers: run -d IMAGE sleep 1000"
t0=$(date +%s.%N)
for i in $(seq "$N"); do "$S" run -d bench/bb sleep 1000 >/dev/null; done
t1=$(date +%s.%N)
total=$(echo "$t1 - $t0" | bc)
printf '  total %.2f s (%.1f ms per container)\n' "$total" "$(echo "$total * 1000 / $N" | bc -l)"
running=$("$S" ps -q | wc -l)
echo "  running per ps: $running"
# Disk of each writable layer: du of its upper dir (and the whole overlay dir incl. work/).
uppers=$("$S" ps -q --no-trunc | xargs "$S" inspect | jq -r '.[].GraphDriver.Data.UpperDir')
sizes=$(for u in $uppers; do du -s -B1 "$u" | cut -f1; done | sort -n)
whole=$(for u in $uppers; do du -s -x -B1 "$(dirname "$u")" | cut -f1; done | sort -n)
med() { awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "  writable layer upper dir: median $(echo "$sizes" | med) B, max $(echo "$sizes" | tail -1) B (target <= 32768)"
echo "  whole layer dir (diff+work+link, merged mount excluded): median $(echo "$whole" | med) B"
rt=$(for id in $("$S" ps -q --no-trunc); do du -s -B1 "$ROOT/containers/$id" | cut -f1; done | med)
echo "  runtime dir (state, log, bundle, /etc files): median $rt B"
t0=$(date +%s.%N)
"$S" ps -a -q | xargs "$S" rm -f >/dev/null
t1=$(date +%s.%N)
printf '  rm -f of all %d: %.2f s\n' "$N" "$(echo "$t1 - $t0" | bc)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
