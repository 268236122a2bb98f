#!/usr/bin/env bash
# Room fan-out benchmark: deliveries per second to CONNS connections in one room, on one
# `wharf serve` node, then spread over two nodes joined through Redis, with the pushes made
# through node 1's HTTP API. Servers run on core 0, the load generator on core 1.
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

cargo build --release -p wharf-app --bin wharf --example fanout
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/wharf
LOAD=$TARGET/release/examples/fanout

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# node NAME BACKPLANE: see bench_node in scripts/lib.sh.
node() { bench_node "$work" "$1" "$2" "$KEY"; }

load() {
  taskset -c 1 "$LOAD" --ws "$1" --http "127.0.0.1:$2" --api-key "$KEY" \
    --conns "$CONNS" --messages "$MESSAGES" --size "$SIZE"
}

echo "# one node, no backplane"
node single ""
read -r ws1 http1 <"$work/single.ports"
load "ws://127.0.0.1:$ws1/wss/rooms/bench" "$http1"
kill $(jobs -p) && wait 2>/dev/null || true

echo "# two nodes through $REDIS (half the connections on each)"
node a "$REDIS"
node b "$REDIS"
read -r wsa httpa <"$work/a.ports"
read -r wsb _ <"$work/b.ports"
load "ws://127.0.0.1:$wsa/wss/rooms/bench,ws://127.0.0.1:$wsb/wss/rooms/bench" "$httpa"
