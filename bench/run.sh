#!/usr/bin/env bash
# The benchmark rig: on one machine and in one run, a fast in-repo mock
# upstream measured with wrk at a fixed concurrency: direct, behind nginx (a
# plain keep-alive reverse proxy), and behind rpc-proxy with (a) plain
# forwarding, (b) the full stack on a cache miss, (c) a cached method.
# Reports req/s, p50, p99 and peak RSS, and each as a ratio to direct and to
# nginx. Then the failover rig (bench/failover.sh). Not part of CI's verdict.
#
#   bash bench/run.sh                 # DURATION=10s CONNS=64 by default
#   DURATION=30s CONNS=128 bash bench/run.sh
#
# Pinning: the server under test and the upstream share core 0; wrk runs on
# core 1 (a 2-core machine). Needs wrk and nginx (installed from Debian if
# missing) and taskset (util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
OUT="${OUT:-bench/results.md}"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
extra_cleanup() { [ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

taskset -c 0 "$BIN/mock-upstream" 127.0.0.1:19001 >/dev/null & pids+=($!); UP=$!
wait_port 19001

# nginx: one worker, keep-alive to the upstream.
cat > "$TMP/nginx.conf" <<NGINX
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream mock { server 127.0.0.1:19001; keepalive 256; }
  server {
    listen 127.0.0.1:19002;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
taskset -c 0 nginx -c "$TMP/nginx.conf" -p "$TMP" -g 'daemon off;' 2>/dev/null & NGINX_MASTER=$!; pids+=($NGINX_MASTER)
wait_port 19002
NGINX_WORKER="$(pgrep -P "$NGINX_MASTER" | head -n 1)"

taskset -c 0 "$BIN/rpc-proxy" --listen 127.0.0.1:19003 --upstream mock=http://127.0.0.1:19001 --retries 0 >/dev/null 2>&1 & pids+=($!); PLAIN=$!
taskset -c 0 "$BIN/rpc-proxy" --config bench/full.toml >/dev/null 2>&1 & pids+=($!); FULL=$!
wait_port 19003; wait_port 19004

# wrk's summary → "req/s p50 p99" (latencies in ms).
measure() { # port script
  taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "bench/$2" "http://127.0.0.1:$1/" > "$TMP/wrk.txt"
  awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps=$2 }
    /^ +50%/ { p50=ms($2) }
    /^ +99%/ { p99=ms($2) }
    /Non-2xx/ { errs=$NF }
    END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, errs }' "$TMP/wrk.txt"
}

declare -A RPS P50 P99 RSS ERR
run() { # name port script pid
  read -r rps p50 p99 errs < <(measure "$2" "$3")
  RPS[$1]=$rps; P50[$1]=$p50; P99[$1]=$p99; ERR[$1]=$errs; RSS[$1]=$(peak_rss_kib "$4")
  echo "  $1: $rps req/s, p50 $p50 ms, p99 $p99 ms, non-2xx $errs" >&2
}
echo "wrk: 1 thread, $CONNS connections, $DURATION each" >&2
run direct 19001 block_number.lua "$UP"
run nginx 19002 block_number.lua "$NGINX_WORKER"
run "rpc-proxy plain" 19003 block_number.lua "$PLAIN"
run "rpc-proxy full, cache miss" 19004 balance_miss.lua "$FULL"
run "rpc-proxy full, cached" 19004 chain_id.lua "$FULL"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
{
  echo "| setup | req/s | p50 ms | p99 ms | peak RSS MiB | req/s vs direct | req/s vs nginx | p99 vs nginx |"
  echo "|---|---|---|---|---|---|---|---|"
  for k in direct nginx "rpc-proxy plain" "rpc-proxy full, cache miss" "rpc-proxy full, cached"; do
    printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n" "$k" "${RPS[$k]}" "${P50[$k]}" "${P99[$k]}" \
      "$(awk -v r="${RSS[$k]}" 'BEGIN { printf "%.1f", r / 1024 }')" \
      "$(ratio "${RPS[$k]}" "${RPS[direct]}")" "$(ratio "${RPS[$k]}" "${RPS[nginx]}")" "$(ratio "${P99[$k]}" "${P99[nginx]}")"
  done
  echo
  echo "Non-2xx answers: $(for k in "${!ERR[@]}"; do printf '%s=%s ' "$k" "${ERR[$k]}"; done)"
} | tee "$OUT"
echo "written to $OUT" >&2
