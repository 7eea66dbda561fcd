#!/usr/bin/env bash
# A/B of rpc-proxy builds on a 100-call client batch of bench/batch.sh:
# direct anvil and each build, interleaved round by round (one Python
# http.client keep-alive connection, N sequential batches per round; the
# order of the targets reversed every other round: with a fixed order, on
# this VM, the build measured first in a round came out 20-60 µs slower
# than the same build measured second), the median per target and its
# ratio to direct.
#
#   bash bench/batch-ab.sh before=/tmp/rpc-proxy-old after=target/release/rpc-proxy
#   ROUNDS=9 N=200 bash bench/batch-ab.sh tuned="env GLIBC_TUNABLES=... target/release/rpc-proxy"
#   BATCH=chainid bash bench/batch-ab.sh ...   # 100 eth_chainId (small answers)
#                                              # instead of 100 blocks (BATCH=blocks)
#
# Each NAME=COMMAND is started with `--listen` and `--upstream` appended.
# Needs anvil (tests/node_modules, `npm install --prefix tests`).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: bash bench/batch-ab.sh NAME=COMMAND..." >&2; exit 2; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
tests/node_modules/.bin/anvil --host 127.0.0.1 --port 19121 --silent & pids+=($!)
wait_port 19121
port=19122
names=()
ports=()
for v in "$@"; do
  name="${v%%=*}"
  # shellcheck disable=SC2086 # the command is words on purpose
  ${v#*=} --listen 127.0.0.1:$port --upstream anvil=http://127.0.0.1:19121 >/dev/null 2>&1 & pids+=($!)
  wait_port $port
  names+=("$name")
  ports+=("$port")
  port=$((port + 1))
done
python3 - "${ROUNDS:-7}" "${N:-200}" "${names[*]}" "${ports[*]}" "${BATCH:-blocks}" <<'PY'
import statistics, sys
sys.path.insert(0, "bench")
from batch_client import BATCHES, mean_us, mine
rounds, n = int(sys.argv[1]), int(sys.argv[2])
names, ports = sys.argv[3].split(), [int(p) for p in sys.argv[4].split()]
if sys.argv[5] not in BATCHES:
    sys.exit(f"BATCH={sys.argv[5]}: one of {', '.join(BATCHES)}")
mine(19121)
body = BATCHES[sys.argv[5]]()
targets = [("direct", 19121)] + list(zip(names, ports))
runs = {name: [] for name, _ in targets}
for r in range(rounds):
    for name, port in targets if r % 2 == 0 else targets[::-1]:
        runs[name].append(mean_us(port, body, n))
direct = statistics.median(runs["direct"])
print(f"| 100-call batch, {sys.argv[5]} ({n} sequential, median of {rounds} interleaved rounds) | µs | / direct | rounds |")
print("|---|---|---|---|")
for name, v in runs.items():
    m = statistics.median(v)
    print(f"| {name} | {m:.0f} | {m / direct:.2f}× | {' '.join(f'{x:.0f}' for x in v)} |")
PY
