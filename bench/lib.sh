# Shared by the bench scripts (sourced, after `cd` to the workspace root):
# builds the release binaries, sets BIN and TMP, tracks started processes in
# `pids` and stops them (thawing frozen ones) on exit, and `wait_port`.
# A script may define `extra_cleanup` before sourcing this file.
cargo build --release --quiet -p rpc-proxy -p rpc-bench
BIN="${CARGO_TARGET_DIR:-target}/release"
TMP="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  if declare -F extra_cleanup >/dev/null; then extra_cleanup; fi
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
# wait_port PORT [TRIES]: 50 ms apart, 100 tries unless told.
wait_port() { for _ in $(seq "${2:-100}"); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
