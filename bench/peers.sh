#!/bin/bash
# Installs and starts the reference engines for comparison benchmarks (not needed by tests):
# Debian's docker.io (dockerd --iptables=false --bridge=none) and podman (runc, lowered ulimits).
set -eu
export DEBIAN_FRONTEND=noninteractive
need=""
for p in docker.io podman runc containerd hyperfine; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $need >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  pgrep -x containerd >/dev/null || (nohup containerd >/var/tmp/containerd.log 2>&1 &)
  sleep 1
  nohup dockerd --iptables=false --bridge=none --insecure-registry 127.0.0.1:5000 \
    --containerd /run/containerd/containerd.sock >/var/tmp/dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
mkdir -p /etc/containers
[ -f /etc/containers/containers.conf ] || cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
CONF
docker info --format '{{.ServerVersion}} {{.Driver}}'
podman --version
