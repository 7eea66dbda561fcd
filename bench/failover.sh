#!/usr/bin/env bash
# Failover under load: three mock upstreams behind rpc-proxy (a failover group,
# 1 s per attempt, retries on), driven by wrk in three back-to-back phases:
# before; during (the upstream taking the traffic is killed at the start, the
# next one frozen with SIGSTOP 2 s later); after (the frozen one thawed).
# Reports, per phase, req/s, p99 and client-visible errors (non-2xx answers
# and socket errors; the target is 0).
#
#   bash bench/failover.sh            # PHASE=10s CONNS=64 by default
set -euo pipefail
cd "$(dirname "$0")/.."
PHASE="${PHASE:-10s}"
CONNS="${CONNS:-64}"
OUT="${OUT:-bench/failover-results.md}"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
# shellcheck source=bench/lib.sh
. bench/lib.sh

ups=()
for port in 19011 19012 19013; do
  taskset -c 0 "$BIN/mock-upstream" "127.0.0.1:$port" >/dev/null & pids+=($!); ups+=($!)
  wait_port "$port"
done
taskset -c 0 "$BIN/rpc-proxy" --listen 127.0.0.1:19010 \
  --upstream a=http://127.0.0.1:19011 --upstream b=http://127.0.0.1:19012 --upstream c=http://127.0.0.1:19013 \
  --timeout 1 --out-of-service 5 --request-timeout 10 >"$TMP/proxy.log" 2>&1 & pids+=($!)
wait_port 19010

phase() { # name
  taskset -c 1 wrk -t1 -c"$CONNS" -d"$PHASE" --latency -s bench/block_number.lua http://127.0.0.1:19010/ > "$TMP/$1.txt"
  awk -v name="$1" '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps=$2 }
    /^ +99%/ { p99=ms($2) }
    /Non-2xx/ { errs+=$NF }
    /Socket errors/ { gsub(/,/, ""); errs+=$4+$6+$8+$10 }
    /requests in/ { total=$1 }
    END { printf "| %s | %d | %.0f | %.2f | %d |\n", name, total, rps, p99, errs }' "$TMP/$1.txt"
}

{
  echo "| phase | calls | req/s | p99 ms | client-visible errors |"
  echo "|---|---|---|---|---|"
  phase before
  ( sleep 0.2; kill -9 "${ups[0]}"; sleep 2; kill -STOP "${ups[1]}" ) &
  phase "during (a killed, b frozen)"
  kill -CONT "${ups[1]}"
  phase "after (b thawed)"
} | tee "$OUT"
grep -c "out of service" "$TMP/proxy.log" | xargs -I{} echo "proxy log: {} out-of-service events" >&2
