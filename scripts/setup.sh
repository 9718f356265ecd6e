#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test swarm: the pinned toolchain's
# wasm32-wasip2 target (plugins are WebAssembly components). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is missing; install Rust with rustup first" >&2
    exit 1
fi
# rust-toolchain.toml pins the toolchain; make sure its wasm target is there.
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup target list --installed --toolchain "$toolchain" 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 target to toolchain $toolchain"
    rustup target add --toolchain "$toolchain" wasm32-wasip2
fi
