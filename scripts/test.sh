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
# redis-server (Debian's package): the replica tests start their own on a
# free port. Installed here when possible, else a clear message.
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
    # Only the binary is wanted: the tests start their own instances.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
  else
    echo "redis-server is needed by the replica tests: sudo apt-get install redis-server" >&2
    exit 1
  fi
fi
# The binaries the integration tests start, built once, up front and
# visibly, with the very command the tests use (so no test spends its time
# compiling, and nothing looks hung).
echo "==> building rpc-proxy and electrum-gateway for the tests"
cargo build -p rpc-proxy --bin rpc-proxy
cargo build -p electrum-gateway --bin electrum-gateway
echo "==> cargo test --workspace"
cargo test --workspace "$@"
