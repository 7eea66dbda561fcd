#!/usr/bin/env bash
# Client batches against real anvil: direct, behind nginx (a blind reverse
# proxy: one upstream request per client batch) and behind rpc-proxy (each
# call filtered/cached/routed on its own, then re-batched per backend).
# One Python http.client keep-alive connection sends the requests one after
# another (latency, not throughput); the mean time per request is reported,
# and rpc-proxy's upstream requests per client batch from its metrics.
#
#   bash bench/batch.sh            # N=200 requests per workload
#
# Needs nginx (installed from Debian if missing) and anvil (tests/node_modules,
# `npm install --prefix tests`).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-200}"
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; }
extra_cleanup() { [ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true; }
# shellcheck source=bench/lib.sh
. bench/lib.sh

tests/node_modules/.bin/anvil --host 127.0.0.1 --port 19101 --silent & pids+=($!)
wait_port 19101
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
"$BIN/rpc-proxy" --listen 127.0.0.1:19103 --metrics-listen 127.0.0.1:19104 \
  --upstream anvil=http://127.0.0.1:19101 >/dev/null 2>&1 & pids+=($!)
wait_port 19102; wait_port 19103

python3 - "$N" <<'PY'
import http.client, json, sys, time, urllib.request
n = int(sys.argv[1])
def post(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST", "/", body, {"content-type": "application/json"})
    r = c.getresponse(); r.read(); c.close()
post(19101, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "anvil_mine", "params": ["0xc8"]}))
def batch(k):
    return json.dumps([{"jsonrpc": "2.0", "id": i, "method": "eth_getBlockByNumber", "params": [hex(i), True]} for i in range(k)])
workloads = [("eth_blockNumber", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"})),
             ("batch of 10 eth_getBlockByNumber", batch(10)),
             ("batch of 100 eth_getBlockByNumber", batch(100))]
def mean_us(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(20):
        c.request("POST", "/", body, {"content-type": "application/json"}); c.getresponse().read()
    t = time.perf_counter()
    for _ in range(n):
        c.request("POST", "/", body, {"content-type": "application/json"}); c.getresponse().read()
    return (time.perf_counter() - t) / n * 1e6
def metric(name):
    text = urllib.request.urlopen("http://127.0.0.1:19104/metrics").read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name))
print(f"| request ({n} sequential) | direct | nginx | rpc-proxy | proxy / direct | upstream requests per client request |")
print("|---|---|---|---|---|---|")
for name, body in workloads:
    d, g = mean_us(19101, body), mean_us(19102, body)
    before = metric("rpc_backend_batch_size_count")
    p = mean_us(19103, body)
    # Upstream batches (a single call is one request of its own).
    per = (metric("rpc_backend_batch_size_count") - before) / (n + 20) if name.startswith("batch") else 1
    print(f"| {name} | {d:.0f} µs | {g:.0f} µs | {p:.0f} µs | {p/d:.2f}× | {per:.2f} |")
PY
