#!/usr/bin/env bash
# The second demo (the main job is `rpc-proxy --demo`): rpc-proxy in front of
# two real Ethereum dev nodes (anvil) as a failover group, with calls that show
# what the proxy answers, then the primary node killed while calls keep being
# answered. Keeps running until Ctrl-C.
#
#   ./scripts/anvil-demo.sh           # run, then keep the proxy up for your own curl
#   ./scripts/anvil-demo.sh --once    # run the showcase and exit (used by CI)
#
# Ports: PROXY_PORT (default 8545), NODE_PORT (default 8546) and NODE_PORT+1
# for the backup node, on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY_PORT="${PROXY_PORT:-8545}"
NODE_PORT="${NODE_PORT:-8546}"
BACKUP_PORT=$((NODE_PORT + 1))
ONCE=0
[ "${1:-}" = "--once" ] && ONCE=1

if [ -t 1 ]; then
  say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
else
  say() { printf '\n== %s\n' "$*"; }
fi

# The package's native binary (not its Node wrapper, which would leave the
# node running when killed).
anvil_bin() { ls tests/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null | head -n 1; }
if [ -z "$(anvil_bin)" ]; then
  say "Installing anvil (npm package @foundry-rs/anvil) into tests/node_modules"
  npm install --prefix tests --no-audit --no-fund --loglevel=error
fi
ANVIL="$(anvil_bin)"
[ -x "$ANVIL" ] || { echo "anvil binary not found under tests/node_modules/@foundry-rs" >&2; exit 1; }

say "Building rpc-proxy (release)"
cargo build --release --quiet -p rpc-proxy

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

say "Starting two anvil nodes: primary on 127.0.0.1:$NODE_PORT, backup on 127.0.0.1:$BACKUP_PORT"
"$ANVIL" --host 127.0.0.1 --port "$NODE_PORT" --silent &
primary=$!
pids+=($primary)
"$ANVIL" --host 127.0.0.1 --port "$BACKUP_PORT" --silent &
pids+=($!)

say "Starting rpc-proxy on 127.0.0.1:$PROXY_PORT -> failover group [primary, backup] (admin_* and debug_* refused)"
"${CARGO_TARGET_DIR:-target}/release/rpc-proxy" --listen "127.0.0.1:$PROXY_PORT" \
  --upstream "primary=http://127.0.0.1:$NODE_PORT" --upstream "backup=http://127.0.0.1:$BACKUP_PORT" \
  --deny 'admin_*' --deny 'debug_*' &
pids+=($!)

# Wait (bounded) until all three answer.
up() {
  curl -s -o /dev/null -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":0,"method":"eth_chainId"}' "http://127.0.0.1:$1"
}
for _ in $(seq 1 100); do
  if curl -s -o /dev/null "http://127.0.0.1:$PROXY_PORT/healthz" && up "$NODE_PORT" && up "$BACKUP_PORT"; then
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

say "Killing the primary node (kill -9): the next calls fail over to the backup"
kill -9 "$primary"
wait "$primary" 2>/dev/null || true
failed=0
for i in $(seq 1 20); do
  out=$(curl -s --max-time 10 -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":$i,\"method\":\"eth_chainId\"}" "$URL")
  [ "$out" = "{\"jsonrpc\":\"2.0\",\"id\":$i,\"result\":\"0x7a69\"}" ] || { failed=$((failed + 1)); echo "  call $i: $out"; }
done
echo "  20 calls after the kill: $((20 - failed)) answered, $failed failed"

if [ "$ONCE" = 1 ]; then
  # The showcase must have worked: real answers through the proxy, before and
  # after the primary died.
  [ "$failed" = 0 ] || { echo "demo check failed: $failed calls failed after the kill" >&2; exit 1; }
  say "Demo OK"
  exit 0
fi

say "rpc-proxy is serving at $URL (health: $URL/healthz), now from the backup. Try your own curl; Ctrl-C stops it."
wait
