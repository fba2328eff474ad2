#!/bin/bash
# Installs everything strata's tests and quick start need on a fresh Debian machine of this kind.
# Idempotent: skips packages already present. Waits for another apt holder rather than failing.
set -eu
export DEBIAN_FRONTEND=noninteractive
PKGS="btrfs-progs docker.io containerd busybox-static debootstrap skopeo umoci docker-registry jq zstd pigz hyperfine apache2-utils openssl runc bsdutils tini"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $missing
fi
