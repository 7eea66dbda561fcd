#!/usr/bin/env bash
# A frozen upstream under load, with rpc-proxy's shipped defaults: three mock
# upstreams in one failover group (no timeout or window tuned), 32 keep-alive
# connections sending eth_blockNumber for 30 s; at second 10 the upstream
# taking the traffic is frozen (SIGSTOP: connected, silent) for 10 s.
# Prints calls, client-visible errors, p50 and p99 per second.
#
#   bash bench/freeze.sh            # CONNS=32 SECONDS=30 by default
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS="${CONNS:-32}"
SECS="${SECONDS_TOTAL:-30}"
OUT="${OUT:-bench/freeze-results.md}"
# shellcheck source=bench/lib.sh
. bench/lib.sh

ups=()
for port in 19021 19022 19023; do
  taskset -c 0 "$BIN/mock-upstream" "127.0.0.1:$port" >/dev/null & pids+=($!); ups+=($!)
  wait_port "$port"
done
taskset -c 0 "$BIN/rpc-proxy" --listen 127.0.0.1:19020 \
  --upstream a=http://127.0.0.1:19021 --upstream b=http://127.0.0.1:19022 --upstream c=http://127.0.0.1:19023 \
  >"$TMP/proxy.log" 2>&1 & pids+=($!)
wait_port 19020

( sleep 10; kill -STOP "${ups[0]}"; sleep 10; kill -CONT "${ups[0]}" ) &
taskset -c 1 "$BIN/freeze-load" 127.0.0.1:19020 "$CONNS" "$SECS" | tee "$OUT"
grep -E "out of service|back in service" "$TMP/proxy.log" | sed 's/^/proxy log: /' >&2 || true
