#!/bin/bash
# Build benchmark (issue 8), strata alone (peers: bench/peers.sh, not run here): the seeds'
# cow-test pair cold (--no-cache) and fully cached; 20 small RUN steps cold (per-step cost);
# a large context (FILES files, MB megabytes in all) with one `COPY . /src`, cold, then
# rebuilt unchanged, and after `touch`ing every file (the stat cache re-reads them, the step
# stays cached). Medians via hyperfine. Base image: busybox-static via `strata import`.
# Usage: bench/build.sh   (RUNS=20 FILES=20000 MB=1000 NO_BUILD=1 STRATA=path/to/strata)
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
FILES=${FILES:-20000}
MB=${MB:-1000}
if [ -z "${STRATA:-}" ]; then
  [ -n "${NO_BUILD:-}" ] || cargo build --release -q
  STRATA=$PWD/target/release/strata
fi
S=$STRATA
# Store, contexts and work dirs on the journaled bench filesystem (see bench/benchfs.sh).
BENCHFS=$(./bench/benchfs.sh)
ROOT=$BENCHFS/strata-bench-build
export STRATA_ROOT=$ROOT STRATA_STORAGE_DRIVER=overlay
work=$(mktemp -d "$BENCHFS/strata-bench-build.XXXXXX")
echo "strata: $S; store: $ROOT; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cleanup() { rm -rf "$work" "$ROOT"; }
trap cleanup EXIT
rm -rf "$ROOT"

r=$work/rootfs
mkdir -p "$r"/{bin,etc,tmp,proc,dev,sys,root}
cp /bin/busybox "$r/bin/"
for a in sh true sleep echo cat; do ln -s busybox "$r/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"
"$S" import "$r" bench/bb:latest -c 'CMD ["sh"]' >/dev/null

median_ms() { jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$1"; }

cow=$work/cow-test
mkdir -p "$cow"
printf '#!/bin/sh\necho "Hello world"\n' > "$cow/hello.sh"
chmod +x "$cow/hello.sh"
printf 'FROM bench/bb:latest\nCOPY . /app\n' > "$cow/Dockerfile.base"
printf 'FROM acme/my-base-image:1.0\nCMD /app/hello.sh\n' > "$cow/Dockerfile"
base="$S build -q -t acme/my-base-image:1.0 -f $cow/Dockerfile.base $cow"
final="$S build -q -t acme/my-final-image:1.0 -f $cow/Dockerfile $cow"
echo "== cow-test pair, cold (--no-cache), $RUNS runs"
hyperfine -N -w 2 -r "$RUNS" --export-json "$work/a.json" \
  "sh -c '$base --no-cache >/dev/null && $final --no-cache >/dev/null'" >/dev/null
echo "  median $(median_ms "$work/a.json") ms   (docker classic 525 ms, podman 726 ms)"
echo "== cow-test pair, fully cached, $RUNS runs"
hyperfine -N -w 2 -r "$RUNS" --export-json "$work/b.json" \
  "sh -c '$base >/dev/null && $final >/dev/null'" >/dev/null
echo "  median $(median_ms "$work/b.json") ms   (target < 50 ms; docker classic 269 ms, podman 670 ms)"

runs=$work/runs
mkdir -p "$runs"
{ echo 'FROM bench/bb:latest'; for i in $(seq 1 20); do echo "RUN echo $i > /f$i"; done; } > "$runs/Dockerfile"
echo "== 20 RUN steps, cold, 5 runs"
hyperfine -N -w 1 -r 5 --export-json "$work/c.json" \
  "$S build -q --no-cache $runs" >/dev/null
m=$(median_ms "$work/c.json")
echo "  median $m ms, $(echo "$m / 20" | bc -l | xargs printf '%.1f') ms a step   (target < 50 ms a step)"

big=$work/big
mkdir -p "$big/data"
per=$(( MB * 1024 / FILES ))
python3 bench/make_context.py "$big/data" "$FILES" "$per"
printf 'FROM bench/bb:latest\nCOPY . /src\n' > "$big/Dockerfile"
sync
echo "== large context ($FILES files, $MB MB): cold (--no-cache), 3 runs"
hyperfine -N -w 0 -r 3 --export-json "$work/d.json" "$S build -q --no-cache $big" >/dev/null
echo "  median $(median_ms "$work/d.json") ms"
"$S" build -q "$big" >/dev/null
echo "== large context, unchanged rebuild, 10 runs"
hyperfine -N -w 1 -r 10 --export-json "$work/e.json" "$S build -q $big" >/dev/null
echo "  median $(median_ms "$work/e.json") ms"
echo "== large context, every file touched (re-hashed, still cached), 3 runs"
hyperfine -N -w 0 -r 3 --export-json "$work/f.json" \
  --prepare "find $big -type f -exec touch {} +" "$S build -q $big" >/dev/null
echo "  median $(median_ms "$work/f.json") ms"
