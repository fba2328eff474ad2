#!/bin/bash
# Offline quick start: build strata, make a busybox base image from busybox-static with
# `strata import`, and walk through images, containers and integrity checks.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release
S="./target/release/strata --root ${STRATA_ROOT:-/var/tmp/strata-quickstart}"
R=$(mktemp -d /var/tmp/strata-rootfs.XXXXXX)
trap 'rm -rf "$R"' EXIT
mkdir -p "$R/bin" "$R/etc" "$R/tmp"
cp /bin/busybox "$R/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
set -x
$S import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' "$R" busybox:latest
$S images
$S history busybox
C=$($S create --name quickstart busybox)
M=$($S mount quickstart)
echo hello > "$M/tmp/hello"
$S umount quickstart
$S ps -a
$S diff quickstart
$S run --rm busybox echo hello from a container
$S run -d --name sleeper busybox sleep 30
$S ps -s
$S exec sleeper cat /proc/1/cmdline | tr '\0' ' '; echo
$S rm -f sleeper
$S system df
$S export quickstart | tar -t | grep -c . 
$S save -o /var/tmp/strata-busybox.tar busybox
$S rm quickstart
$S system fsck
$S info
