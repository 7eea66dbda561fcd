#!/usr/bin/env bash
# The main job: rpc-proxy in front of a real Ethereum dev node (anvil), with a
# few calls that show what the proxy answers. Keeps running until Ctrl-C.
#
#   ./scripts/demo.sh           # run, then keep the proxy up for your own curl
#   ./scripts/demo.sh --once    # run the showcase and exit (used by CI)
#
# Ports: PROXY_PORT (default 8545) and NODE_PORT (default 8546), on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY_PORT="${PROXY_PORT:-8545}"
NODE_PORT="${NODE_PORT:-8546}"
ONCE=0
[ "${1:-}" = "--once" ] && ONCE=1

if [ -t 1 ]; then
  say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
else
  say() { printf '\n== %s\n' "$*"; }
fi

if [ ! -x tests/node_modules/.bin/anvil ]; then
  say "Installing anvil (npm package @foundry-rs/anvil) into tests/node_modules"
  npm install --prefix tests --no-audit --no-fund --loglevel=error
fi

say "Building rpc-proxy (release)"
cargo build --release --quiet -p rpc-proxy

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

say "Starting anvil on 127.0.0.1:$NODE_PORT"
tests/node_modules/.bin/anvil --host 127.0.0.1 --port "$NODE_PORT" --silent &
pids+=($!)

say "Starting rpc-proxy on 127.0.0.1:$PROXY_PORT -> anvil (admin_* and debug_* refused)"
target/release/rpc-proxy --listen "127.0.0.1:$PROXY_PORT" --upstream "http://127.0.0.1:$NODE_PORT" \
  --name anvil --deny 'admin_*' --deny 'debug_*' &
pids+=($!)

# Wait (bounded) until both answer.
for _ in $(seq 1 100); do
  if curl -s -o /dev/null "http://127.0.0.1:$PROXY_PORT/healthz" &&
     curl -s -o /dev/null -H 'content-type: application/json' \
       -d '{"jsonrpc":"2.0","id":0,"method":"eth_chainId"}' "http://127.0.0.1:$NODE_PORT"; then
    break
  fi
  sleep 0.1
done

URL="http://127.0.0.1:$PROXY_PORT"
rpc() {
  local body="$1"
  printf "\n\$ curl %s -H 'content-type: application/json' -d '%s'\n" "$URL" "$body"
  curl -s --max-time 10 -w '\n  -> HTTP %{http_code}\n' -H 'content-type: application/json' -d "$body" "$URL"
}

say "A single call"
rpc '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
say "A batch: answers in request order, ids echoed exactly, the notification unanswered"
rpc '[{"jsonrpc":"2.0","id":"a","method":"eth_blockNumber"},{"jsonrpc":"2.0","method":"eth_chainId"},{"jsonrpc":"2.0","id":1.0,"method":"net_version"}]'
say "The node's own error passes through unchanged (HTTP 200)"
rpc '{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["not-an-address","latest"]}'
say "A refused method (-32601, HTTP 403), never reaching the node"
rpc '{"jsonrpc":"2.0","id":3,"method":"admin_nodeInfo"}'
say "Malformed input (-32700, HTTP 400)"
rpc '{"jsonrpc":"2.0","id":4,'

if [ "$ONCE" = 1 ]; then
  # The showcase must have worked: a real answer from the node through the proxy.
  out=$(curl -s --max-time 10 -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}' "$URL")
  [ "$out" = '{"jsonrpc":"2.0","id":1,"result":"0x7a69"}' ] || { echo "demo check failed: $out" >&2; exit 1; }
  say "Demo OK"
  exit 0
fi

say "rpc-proxy is serving at $URL (health: $URL/healthz). Try your own curl; Ctrl-C stops both."
wait
