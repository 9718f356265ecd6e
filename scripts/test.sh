#!/usr/bin/env bash
# The test command: sets up a fresh machine, builds every binary (the end-to-end suites run the
# real swarmd and swarmctl), runs every test of the host workspace and the native tests of the
# plugin workspace (scheduler core, SDK and the guide's examples, the nodes:// parser). The
# Docker executor's tests need the local image `swarm-test/busybox` on the engine at DOCKER_HOST
# (default unix:///var/run/docker.sock).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/docker-test-image.sh
cargo build --workspace --bins --locked
cargo test --workspace --locked
cargo test --locked --manifest-path plugins/Cargo.toml -p swarm-scheduler-core \
    -p swarm-plugin-sdk -p discovery-nodes -p executor-docker
