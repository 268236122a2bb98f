#!/usr/bin/env bash
# Room fan-out benchmark: deliveries per second to CONNS connections in one room, on one
# `wharf serve` node, then spread over two nodes joined through Redis, with the pushes made
# through node 1's HTTP API. Servers run on core 0, the load generator on core 1.
#
# Each setup runs twice: history off (room `bench`, `POST /api/push`), then history on (room
# `demo:bench`, which the built-in config keeps 100 messages of: `POST /api/publish` gives
# each message its position and stores it, in memory on one node and in Redis Streams on
# two, before the fan-out).
#
#   scripts/bench-fanout.sh [CONNS] [MESSAGES] [SIZE]      (defaults: 10000 100 32)
#
# Needs the Redis of ../shared/services.md (WHARF_BENCH_REDIS overrides the URL).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
CONNS=${1:-10000}
MESSAGES=${2:-100}
SIZE=${3:-32}
REDIS=${WHARF_BENCH_REDIS:-redis://127.0.0.1:6379}
KEY=bench-key-0123456789

[[ -n ${WHARF_PREBUILT:-} ]] || cargo build --release -p wharf-app --bin wharf --example fanout
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/wharf
LOAD=$TARGET/release/examples/fanout

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# node NAME BACKPLANE: see bench_node in scripts/lib.sh.
node() { bench_node "$work" "$1" "$2" "$KEY"; }

# load WS_URLS HTTP_PORT ROOM [--history]: one run of the load side.
load() {
  local urls=$1 http=$2 room=$3
  shift 3
  taskset -c 1 "$LOAD" --ws "$urls" --http "127.0.0.1:$http" --api-key "$KEY" --room "$room" \
    --conns "$CONNS" --messages "$MESSAGES" --size "$SIZE" "$@"
}

# room_urls NODE_URLS ROOM: each node's room chat URL for ROOM, comma-separated.
room_urls() {
  local out=() url
  for url in ${1//,/ }; do out+=("$url/wss/rooms/$2"); done
  (IFS=,; echo "${out[*]}")
}

# both NODE_URLS HTTP_PORT: history off, then on. NODE_URLS: the nodes' ws://host:port.
both() {
  echo "history off:"
  load "$(room_urls "$1" bench)" "$2" bench
  echo "history on:"
  load "$(room_urls "$1" demo:bench)" "$2" demo:bench --history
}

echo "# one node, no backplane"
node single ""
read -r ws1 http1 <"$work/single.ports"
both "ws://127.0.0.1:$ws1" "$http1"
kill $(jobs -p) && wait 2>/dev/null || true

echo "# two nodes through $REDIS (half the connections on each)"
node a "$REDIS"
node b "$REDIS"
read -r wsa httpa <"$work/a.ports"
read -r wsb _ <"$work/b.ports"
both "ws://127.0.0.1:$wsa,ws://127.0.0.1:$wsb" "$httpa"
