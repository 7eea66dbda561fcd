#!/usr/bin/env bash
# Every test: installs the real peers the integration tests start (anvil from
# npm, into tests/node_modules; ElectrumX from PyPI, into
# tests/electrumx/.venv), then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# `npm install`, not `npm ci`: npm 11 writes only this platform's optional
# anvil binary into the lock, which `npm ci` then refuses. The version is
# pinned exactly in tests/package.json and the lock keeps its integrity hash.
npm install --prefix tests --no-audit --no-fund --loglevel=error
# ElectrumX 2.0.0 (needs Python >= 3.10); tests/electrumx/start.sh would do
# this on first use, but parallel tests must not race to create the venv.
if [ ! -x tests/electrumx/.venv/bin/electrumx_server ]; then
  python3 -m venv tests/electrumx/.venv
  tests/electrumx/.venv/bin/pip install -q --disable-pip-version-check 'e-x[leveldb]==2.0.0'
fi
# The binaries the integration tests start, built once, up front and
# visibly, with the very command the tests use (so no test spends its time
# compiling, and nothing looks hung).
echo "==> building rpc-proxy and electrum-gateway for the tests"
cargo build -p rpc-proxy --bin rpc-proxy
cargo build -p electrum-gateway --bin electrum-gateway
echo "==> cargo test --workspace"
cargo test --workspace "$@"
