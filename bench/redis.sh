#!/usr/bin/env bash
# What sharing state through Redis costs and buys: starts a redis-server
# (Debian's package) on a free loopback port, without persistence, runs
# bench/src/bin/redis-cost.rs against it, stops it. BENCHMARKS.md has the
# figures ("Replicas sharing state through Redis").
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cargo build --release -q -p rpc-bench --bin redis-cost
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
  --maxmemory 256mb --maxmemory-policy allkeys-lru >/tmp/redis-bench.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  grep -q "Ready to accept" /tmp/redis-bench.log && break
  sleep 0.1
done
target/release/redis-cost "redis://127.0.0.1:$port"
