#!/bin/bash
# Builds the benchmark fixtures offline (from the apt mirror), once; later runs reuse them.
#   $FIX/rootfs           Debian bookworm minbase (debootstrap)
#   $FIX/fat.tar          docker-save archive, 5 layers (~330 MB): the rootfs, 150 MB of data,
#                         2000 small files, modified files, deletions (as the peers' "fat" image)
#   $FIX/fat2.tar         a second image sharing fat's base layer (for sharing benchmarks)
set -eu
FIX=${FIX:-/var/tmp/strata-bench}
mkdir -p "$FIX"
if [ ! -x "$FIX/rootfs/bin/bash" ]; then
  MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  rm -rf "$FIX/rootfs"
  debootstrap --variant=minbase bookworm "$FIX/rootfs" "$MIRROR" >"$FIX/debootstrap.log" 2>&1
  rm -rf "$FIX/rootfs/var/cache/apt/archives/"*.deb
fi
if [ ! -s "$FIX/fat.tar" ] || [ ! -s "$FIX/fat2.tar" ]; then
  python3 "$(dirname "$0")/make_fat.py" "$FIX"
fi
ls -la "$FIX"/*.tar
