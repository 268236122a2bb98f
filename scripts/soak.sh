#!/usr/bin/env bash
# Soak and churn, the long version of crates/wharf/tests/churn.rs: CONNS connections to the
# echo route of a release `wharf serve`, DROP percent of them dropped abruptly (no close
# frame) and replaced every second for SECONDS, then all dropped. The server runs in its own
# process (the load holds as many sockets as the server; each process may open 20,000 fds
# here); every SAMPLE seconds this prints the server's registry count (/health), its open
# file descriptors and its resident memory, and it keeps sampling after the load ends until
# the registry is back to zero.
#
#   scripts/soak.sh [CONNS] [SECONDS] [DROP] [SAMPLE]     (defaults: 10000 300 1 10)
#
# Figures of a run are in docs/security.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
CONNS=${1:-10000}
SECONDS_TOTAL=${2:-300}
DROP=${3:-1}
SAMPLE=${4:-10}

cargo build --release -p wharf-app --bin wharf --example soak
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/wharf
LOAD=$TARGET/release/examples/soak

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# Every load connection comes from 127.0.0.1: lift the per-address cap for this run.
start_wharf "$work" JWT_OPEN=false WHARF_WS_MAX_CONNECTIONS_PER_IP=0
ws=$WS_PORT
http=$HTTP_PORT
server=$SERVER_PID

sample() {
  local conns fds rss
  conns=$(curl -sf "http://127.0.0.1:$http/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"])')
  fds=$(ls "/proc/$server/fd" | wc -l)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
  printf '%6ss  %-8s registry=%-6s fds=%-6s rss_kib=%s\n' "$(( $(date +%s) - start ))" "$1" "$conns" "$fds" "$rss"
  last_conns=$conns
}

start=$(date +%s)
sample baseline
"$LOAD" --url "ws://127.0.0.1:$ws/echo" --conns "$CONNS" --drop-percent "$DROP" \
  --seconds "$SECONDS_TOTAL" >"$work/load.log" 2>&1 &
load=$!
while kill -0 "$load" 2>/dev/null; do
  sleep "$SAMPLE"
  sample load
done
wait "$load" || { echo "load failed:"; tail -20 "$work/load.log"; exit 1; }
for _ in $(seq 30); do
  sleep 1
  sample after
  if [ "$last_conns" = 0 ]; then break; fi
done
sleep 2
sample settled
echo "--- load"
cat "$work/load.log"
echo "--- server warnings/errors"
grep -v -c '^$' "$work/server.log" | sed 's/^/lines: /'
tail -5 "$work/server.log"
