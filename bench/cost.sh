#!/usr/bin/env bash
# Forwarding cost (issue "a JSON-RPC-aware hop that costs no more CPU than
# nginx's blind one"): what one request costs each proxy, measured in one
# invocation, side by side:
#
#   nginx        blind reverse proxy (Debian; one worker, keep-alive upstream)
#   thin-proxy   the floor for a JSON-RPC-aware hop (rpc-bench: hyper 1
#                server, body buffered, call and answer parsed with
#                serde_json, pooled hyper-util client)
#   plain        rpc-proxy --upstream mock=... --retries 0
#   full miss    rpc-proxy --config bench/full.toml, eth_getBalance of a new
#                address every call (metrics, filter, rate limit, cache
#                miss, retry, head-tracked group)
#   full cached  the same, eth_chainId (a cache hit)
#   batch10      a 10-call client batch through nginx and through plain
#
# Two phases per target, both with the target and the mock upstream pinned to
# core 0 and the load on core 1:
#   1. wrk for DURATION at CONNS connections: req/s, p50, p99, CPU µs per
#      request of the target and of the upstream (utime+stime from /proc),
#      peak RSS (VmHWM);
#   2. the target under `valgrind --tool=callgrind`: 2 000 requests to warm
#      up, counters zeroed, exactly N requests (N/10 batches of ten;
#      `count-load`, CONNS connections), counters dumped: user-space
#      instructions per request (kinstr). Instruction counts are repeatable;
#      seconds are not.
# With PROFILES=DIR, each target's callgrind summary (top functions, and
# instructions by category: allocator, tokio, hashing, hyper, serde_json,
# ours) is written there as text.
#
#   bash bench/cost.sh                       # N=20000 CONNS=64 DURATION=10s
#   PROFILES=bench/profiles/after bash bench/cost.sh
#   ONLY="plain thin-proxy" bash bench/cost.sh
#   PROXY=/path/to/other/rpc-proxy bash bench/cost.sh   # another build
#
# Needs wrk, nginx, valgrind (installed from Debian if missing), taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-20000}"
CONNS="${CONNS:-64}"
DURATION="${DURATION:-10s}"
OUT="${OUT:-bench/cost-results.md}"
PROFILES="${PROFILES:-}"
ONLY="${ONLY:-}"
PROXY="${PROXY:-}"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v valgrind >/dev/null || need+=(valgrind)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
extra_cleanup() { pkill -f "nginx -c $TMP/" 2>/dev/null || true; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -n "$PROFILES" ] && mkdir -p "$PROFILES"
PROXY="${PROXY:-$BIN/rpc-proxy}"

BLOCK='{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'
MISS='{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x000000000000000000000000%N%","latest"]}'
CACHED='{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
BATCH10="[$(for i in $(seq 10); do
  printf '{"jsonrpc":"2.0","id":%d,"method":"eth_blockNumber","params":[]}' "$i"
  if [ "$i" -lt 10 ]; then printf ','; fi
done)]"

taskset -c 0 "$BIN/mock-upstream" 127.0.0.1:19001 >/dev/null & pids+=($!); UP=$!
wait_port 19001

cat > "$TMP/nginx.conf" <<NGINX
worker_processes 1;
master_process off;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream mock { server 127.0.0.1:19001; keepalive 256; }
  server {
    listen 127.0.0.1:19002;
    location / { proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX

# start TARGET [PREFIX...]: starts the target's server (under PREFIX, e.g.
# valgrind) pinned to core 0; sets SRV (its pid) and PORT.
start() {
  local target=$1; shift
  case "$target" in
    nginx | "nginx batch10") PORT=19002; set -- "$@" nginx -c "$TMP/nginx.conf" -p "$TMP" ;;
    thin-proxy) PORT=19006; set -- "$@" "$BIN/thin-proxy" 127.0.0.1:19006 http://127.0.0.1:19001/ ;;
    plain | "plain batch10") PORT=19003; set -- "$@" "$PROXY" --listen 127.0.0.1:19003 --upstream mock=http://127.0.0.1:19001 --retries 0 ;;
    "full miss" | "full cached") PORT=19004; set -- "$@" "$PROXY" --config bench/full.toml ;;
  esac
  taskset -c 0 "$@" >"$TMP/server.log" 2>&1 &
  SRV=$!; pids+=($SRV)
  wait_port "$PORT" 600
}
stop() { kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; }
body_of() {
  case "$1" in
    *batch10) echo "$BATCH10" ;;
    "full miss") echo "$MISS" ;;
    "full cached") echo "$CACHED" ;;
    *) echo "$BLOCK" ;;
  esac
}
lua_of() {
  case "$1" in
    *batch10) echo bench/batch10.lua ;;
    "full miss") echo bench/balance_miss.lua ;;
    "full cached") echo bench/chain_id.lua ;;
    *) echo bench/block_number.lua ;;
  esac
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ="$(getconf CLK_TCK)"

declare -A KI CPU UCPU RPS P50 P99 RSS
targets=(nginx thin-proxy plain "full miss" "full cached" "nginx batch10" "plain batch10")
for t in "${targets[@]}"; do
  if [ -n "$ONLY" ] && ! grep -qw -- "${t%% *}" <<<"$ONLY"; then continue; fi
  # 1. wrk, natively.
  start "$t"
  taskset -c 1 wrk -t1 -c"$CONNS" -d1s -s "$(lua_of "$t")" "http://127.0.0.1:$PORT/" >/dev/null
  t0=$(ticks "$SRV"); u0=$(ticks "$UP")
  taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$(lua_of "$t")" "http://127.0.0.1:$PORT/" >"$TMP/wrk.txt"
  t1=$(ticks "$SRV"); u1=$(ticks "$UP")
  read -r reqs rps p50 p99 < <(awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    / requests in / { n=$1 } /Requests\/sec/ { r=$2 } /^ +50%/ { a=ms($2) } /^ +99%/ { b=ms($2) }
    END { printf "%d %.0f %.3f %.3f\n", n, r, a, b }' "$TMP/wrk.txt")
  RPS[$t]=$rps; P50[$t]=$p50; P99[$t]=$p99
  CPU[$t]=$(awk -v d=$((t1 - t0)) -v n="$reqs" -v hz="$HZ" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')
  UCPU[$t]=$(awk -v d=$((u1 - u0)) -v n="$reqs" -v hz="$HZ" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')
  RSS[$t]=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$SRV/status")
  stop
  # 2. callgrind: instructions per request.
  out="$TMP/callgrind.out"
  rm -f "$out"*
  start "$t" valgrind --tool=callgrind --callgrind-out-file="$out" --dump-line=no
  taskset -c 1 "$BIN/count-load" "127.0.0.1:$PORT" "$CONNS" 2000 "$(body_of "$t")" >/dev/null
  callgrind_control -z "$SRV" >/dev/null
  n="$N"
  case "$t" in *batch10) n=$((N / 10)) ;; esac # ten calls each
  read -r done errors _ < <(taskset -c 1 "$BIN/count-load" "127.0.0.1:$PORT" "$CONNS" "$n" "$(body_of "$t")")
  callgrind_control -d "$SRV" >/dev/null
  stop
  dump="$(ls "$out".* 2>/dev/null | head -n 1)"
  KI[$t]=$(awk -v n="$done" '/^summary:/ { printf "%.1f", $2 / n / 1000 }' "$dump")
  [ "$errors" = 0 ] || echo "  $t: $errors of $done calls failed under callgrind" >&2
  if [ -n "$PROFILES" ]; then
    python3 bench/callgrind_summary.py "$dump" "$done" >"$PROFILES/${t// /-}.txt"
  fi
  echo "  $t: ${KI[$t]} kinstr/req, ${CPU[$t]} µs CPU/req, $rps req/s, p50 $p50 ms, p99 $p99 ms, RSS ${RSS[$t]} MiB" >&2
done

{
  echo "| target | kinstr / request | CPU µs / request | upstream CPU µs / request | req/s | p50 ms | p99 ms | peak RSS MiB |"
  echo "|---|---|---|---|---|---|---|---|"
  for t in "${targets[@]}"; do
    [ -n "${KI[$t]:-}" ] || continue
    echo "| $t | ${KI[$t]} | ${CPU[$t]} | ${UCPU[$t]} | ${RPS[$t]} | ${P50[$t]} | ${P99[$t]} | ${RSS[$t]} |"
  done
  echo
  echo "N=$N calls counted under callgrind, $CONNS connections; wrk $DURATION; $(nproc) cores, $(date -u +%F)."
} | tee "$OUT"
echo "written to $OUT" >&2
