#!/usr/bin/env bash
# Runs every test: unit tests (with the published vectors), framing and path
# checks, and the integration tests that start the real gatehouse binary
# against a real backend on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --locked
cargo test --workspace --locked
