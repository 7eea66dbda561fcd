#!/usr/bin/env bash
# Client batches against real anvil: direct, behind nginx (a blind reverse
# proxy: one upstream request per client batch) and behind rpc-proxy (the
# batch walks the stack once, each call counted and checked in place, and
# goes upstream as one request).
# One Python http.client keep-alive connection sends the requests one after
# another (latency, not throughput); the mean time per request is reported,
# and rpc-proxy's upstream requests per client batch from its metrics.
#
#   bash bench/batch.sh            # N=200 requests per workload
#   ROUNDS=5 bash bench/batch.sh   # each cell the median of 5 interleaved rounds
#                                  # (the order reversed every other round)
#   PROXY=path bash bench/batch.sh # another build of rpc-proxy
#   CALLGRIND=1 bash bench/batch.sh
#                                  # and rpc-proxy's user-space instructions per
#                                  # 100-call batch under callgrind (200 batches)
#
# Needs nginx (installed from Debian if missing) and anvil (tests/node_modules,
# `npm install --prefix tests`).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-200}"
ROUNDS="${ROUNDS:-1}"
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; }
extra_cleanup() { kill "$(cat "$TMP/nginx.pid" 2>/dev/null)" 2>/dev/null || true; }
# shellcheck source=bench/lib.sh
. bench/lib.sh

tests/node_modules/.bin/anvil --host 127.0.0.1 --port 19101 --silent & pids+=($!)
wait_port 19101
PROXY="${PROXY:-$BIN/rpc-proxy}"
cat > "$TMP/nginx.conf" <<NGINX
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  upstream anvil { server 127.0.0.1:19101; keepalive 64; }
  server {
    listen 127.0.0.1:19102;
    location / { proxy_pass http://anvil; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
nginx -c "$TMP/nginx.conf" -p "$TMP" -g 'daemon off;' 2>/dev/null & pids+=($!)
"$PROXY" --listen 127.0.0.1:19103 --metrics-listen 127.0.0.1:19104 \
  --upstream anvil=http://127.0.0.1:19101 >/dev/null 2>&1 & pids+=($!)
wait_port 19102; wait_port 19103

python3 - "$N" "$ROUNDS" <<'PY'
import json, statistics, sys, urllib.request
sys.path.insert(0, "bench")
from batch_client import batch, mean_us as mean_n, mine, small_batch
n, rounds = int(sys.argv[1]), int(sys.argv[2])
mine(19101)
workloads = [("eth_blockNumber", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"})),
             ("batch of 10 eth_getBlockByNumber", batch(10)),
             ("batch of 100 eth_getBlockByNumber", batch(100)),
             ("batch of 100 eth_chainId", small_batch(100))]
def mean_us(port, body):
    return mean_n(port, body, n)
def metric(name):
    text = urllib.request.urlopen("http://127.0.0.1:19104/metrics").read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name))
print(f"| request ({n} sequential{f', median of {rounds} rounds' if rounds > 1 else ''}) | direct | nginx | rpc-proxy | proxy / direct | upstream requests per client request |")
print("|---|---|---|---|---|---|")
for name, body in workloads:
    ds, gs, ps, rs = [], [], [], []
    for r in range(rounds):
        # The order reversed every other round (see batch-ab.sh: the first
        # measured in a round was seen to come out slower).
        order = [19101, 19102, 19103] if r % 2 == 0 else [19103, 19102, 19101]
        t = {}
        for port in order:
            before = metric("rpc_backend_batch_size_count")
            t[port] = mean_us(port, body)
            if port == 19103:
                # Upstream batches (a single call is one request of its own).
                per = (metric("rpc_backend_batch_size_count") - before) / (n + 20) if name.startswith("batch") else 1
        d, g, p = t[19101], t[19102], t[19103]
        ds.append(d); gs.append(g); ps.append(p); rs.append(p / d)
    d, g, p, r = (statistics.median(v) for v in (ds, gs, ps, rs))
    print(f"| {name} | {d:.0f} µs | {g:.0f} µs | {p:.0f} µs | {r:.2f}× | {per:.2f} |")
PY

if [ -n "${CALLGRIND:-}" ]; then
  # rpc-proxy's own work per 100-call batch: instructions do not move with
  # the machine's load, microseconds do.
  BATCH100="$(python3 -c 'import sys; sys.path.insert(0, "bench"); from batch_client import batch; print(batch(100))')"
  valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" --dump-line=no \
    "$PROXY" --listen 127.0.0.1:19105 --upstream anvil=http://127.0.0.1:19101 >/dev/null 2>&1 & pids+=($!); CG=$!
  wait_port 19105 600
  "$BIN/count-load" 127.0.0.1:19105 1 50 "$BATCH100" >/dev/null
  callgrind_control -z "$CG" >/dev/null
  read -r done errors _ < <("$BIN/count-load" 127.0.0.1:19105 1 200 "$BATCH100")
  callgrind_control -d "$CG" >/dev/null
  [ "$errors" = 0 ] || echo "$errors of $done batches failed under callgrind" >&2
  awk -v n="$done" '/^summary:/ { printf "rpc-proxy: %.0f k user-space instructions per 100-call batch (%d batches)\n", $2 / n / 1000, n }' "$(ls "$TMP"/cg.out.* | head -n 1)"
fi
