#!/bin/bash
# Installs and starts the reference engines for comparison benchmarks (not needed by tests):
# Debian's docker.io (dockerd --iptables=false --bridge=none) and podman (runc, lowered ulimits).
# Their stores are on the benchmarks' journaled filesystem, $(bench/benchfs.sh), like strata's:
# docker in $BENCHFS/docker, containerd in $BENCHFS/containerd, podman in $BENCHFS/containers.
# A dockerd already running elsewhere is left alone, with a warning.
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=""
for p in docker.io podman runc containerd hyperfine jq; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $need >/dev/null
fi
BENCHFS=$(./bench/benchfs.sh)

# podman: its store on the bench fs; runc (crun refuses some hosts' hybrid cgroup layout); rlimits
# within the current hard limits (root may lack CAP_SYS_RESOURCE).
mkdir -p /etc/containers
if ! grep -qs "graphroot = \"$BENCHFS/containers/storage\"" /etc/containers/storage.conf; then
  cat > /etc/containers/storage.conf <<CONF
[storage]
driver = "overlay"
graphroot = "$BENCHFS/containers/storage"
runroot = "/run/containers/storage"
CONF
fi
[ -f /etc/containers/containers.conf ] || cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF

if ! docker info >/dev/null 2>&1; then
  if ! ctr --address /run/containerd/containerd.sock version >/dev/null 2>&1; then
    nohup containerd --root "$BENCHFS/containerd" >/var/tmp/containerd.log 2>&1 &
    for _ in $(seq 50); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  nohup dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver=overlay2 \
    --data-root "$BENCHFS/docker" --insecure-registry 127.0.0.1:5000 \
    --containerd /run/containerd/containerd.sock >/var/tmp/dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
root=$(docker info --format '{{.DockerRootDir}}')
case "$root" in
  "$BENCHFS"/*) ;;
  *) echo "peers.sh: warning: the running dockerd keeps its store in $root, not on $BENCHFS;" \
       "stop it and re-run to time docker on the bench filesystem" >&2 ;;
esac
echo "docker $(docker info --format '{{.ServerVersion}} {{.Driver}}'), store $root"
echo "$(podman --version), store $(podman info --format '{{.Store.GraphRoot}}')"
