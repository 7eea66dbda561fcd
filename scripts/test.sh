#!/usr/bin/env bash
# Every test: installs the real peers the integration tests start (anvil from
# npm, into tests/node_modules), then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# `npm install`, not `npm ci`: npm 11 writes only this platform's optional
# anvil binary into the lock, which `npm ci` then refuses. The version is
# pinned exactly in tests/package.json and the lock keeps its integrity hash.
npm install --prefix tests --no-audit --no-fund --loglevel=error
cargo test --workspace "$@"
