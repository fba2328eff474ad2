#!/bin/bash
# The whole test suite on a fresh machine: installs what tests need, then runs unit and
# integration tests (as root: they mount overlays) for both storage drivers.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --all-targets
cargo test --release --no-fail-fast -- --test-threads=2
