#!/usr/bin/env bash
# The test command: sets up a fresh machine, builds every binary (the end-to-end suites run the
# real swarmd and swarmctl), runs every test of the host workspace and the native tests of the
# plugin workspace's shared scheduler code.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins --locked
cargo test --workspace --locked
cargo test --locked --manifest-path plugins/Cargo.toml -p swarm-scheduler-core
