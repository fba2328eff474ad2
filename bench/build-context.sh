#!/bin/bash
# Issue 8's large-context benchmark against docker's classic builder: a context of FILES files
# (MB megabytes in all) and one `COPY . /src`, cold (--no-cache) and rebuilt unchanged, strata
# and `DOCKER_BUILDKIT=0 docker build` alternating run by run; medians. docker sends the whole
# context to its daemon on every build; strata reads it in place and hashes only what changed
# (its stat cache). Stores and the context on the journaled bench filesystem.
# Needs a running dockerd (bench/peers.sh). Usage: bench/build-context.sh  (RUNS=5 FILES=20000 MB=1000 STRATA=…)
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
FILES=${FILES:-20000}
MB=${MB:-1000}
if [ -z "${STRATA:-}" ]; then
  cargo build --release -q
  STRATA=$PWD/target/release/strata
fi
S=$STRATA
BENCHFS=$(./bench/benchfs.sh)
ROOT=$BENCHFS/strata-bench-context
export STRATA_ROOT=$ROOT STRATA_STORAGE_DRIVER=overlay DOCKER_BUILDKIT=0
work=$(mktemp -d "$BENCHFS/strata-bench-context.XXXXXX")
cleanup() {
  rm -rf "$work" "$ROOT"
  docker rmi -f bench/ctx:latest bench/ctx-bb:latest >/dev/null 2>&1 || true
  docker builder prune -f >/dev/null 2>&1 || true
}
trap cleanup EXIT
rm -rf "$ROOT"
echo "strata: $S; docker: $(docker version --format '{{.Server.Version}}'); load average: $(cut -d' ' -f1-3 /proc/loadavg)"

r=$work/rootfs
mkdir -p "$r"/{bin,etc,tmp,proc,dev,sys,root}
cp /bin/busybox "$r/bin/"
ln -s busybox "$r/bin/sh"
"$S" import "$r" bench/ctx-bb:latest >/dev/null
"$S" save bench/ctx-bb:latest | docker load >/dev/null

big=$work/big
mkdir -p "$big/data"
python3 bench/make_context.py "$big/data" "$FILES" "$(( MB * 1024 / FILES ))"
printf 'FROM bench/ctx-bb:latest\nCOPY . /src\n' > "$big/Dockerfile"
sync

ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
median() { python3 -c 'import sys,statistics; print(statistics.median(int(x) for x in sys.argv[1:]))' "$@"; }
sc=(); dc=(); su=(); du=()
for i in $(seq "$RUNS"); do
  sc+=("$(ms "$S" build -q --no-cache -t bench/ctx "$big")")
  dc+=("$(ms docker build -q --no-cache -t bench/ctx "$big")")
  # Drop what the cold builds made but the tagged image, so the stores don't grow run by run.
  "$S" image prune -f >/dev/null; docker image prune -f >/dev/null
done
for i in $(seq "$RUNS"); do
  su+=("$(ms "$S" build -q -t bench/ctx "$big")")
  du+=("$(ms docker build -q -t bench/ctx "$big")")
done
echo "cold (--no-cache), ms: strata ${sc[*]}; docker ${dc[*]}"
echo "unchanged rebuild, ms: strata ${su[*]}; docker ${du[*]}"
printf '| %s files, %s MB, `COPY . /src` | strata | docker classic | ratio |\n' "$FILES" "$MB"
s1=$(median "${sc[@]}"); d1=$(median "${dc[@]}"); s2=$(median "${su[@]}"); d2=$(median "${du[@]}")
echo "| cold | $s1 ms | $d1 ms | $(python3 -c "print(round($s1/$d1,3))")x |"
echo "| unchanged rebuild | $s2 ms | $d2 ms | $(python3 -c "print(round($s2/$d2,3))")x |"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
