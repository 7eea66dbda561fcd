#!/usr/bin/env bash
# Every test: installs the real peers the integration tests start (anvil from
# npm, into tests/node_modules), then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefix tests --no-audit --no-fund --loglevel=error
cargo test --workspace "$@"
