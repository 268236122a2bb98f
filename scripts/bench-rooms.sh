#!/usr/bin/env bash
# The rooms protocol's fan-out: SUBSCRIBERS sockets on /wss/rooms spread over ROOMS rooms,
# PUBLICATIONS through node 1's POST /api/publish; deliveries per second and publish-to-
# delivery latency (p50/p99/max), on one `wharf serve` node (history in memory), then on two
# nodes joined through Redis (history in Redis Streams). Servers on core 0, load on core 1.
#
#   scripts/bench-rooms.sh [SUBSCRIBERS] [ROOMS] [PUBLICATIONS]   (defaults: 10000 100 1000)
#
# Needs the Redis of ../shared/services.md (WHARF_BENCH_REDIS overrides the URL).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
SUBSCRIBERS=${1:-10000}
ROOMS=${2:-100}
PUBLICATIONS=${3:-1000}
REDIS=${WHARF_BENCH_REDIS:-redis://127.0.0.1:6379}
KEY=bench-key-0123456789

build_wharf --example rooms_fanout
LOAD=$OUT/examples/rooms_fanout

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# node NAME BACKPLANE: see bench_node in scripts/lib.sh.
node() { bench_node "$work" "$1" "$2" "$KEY"; }

load() {
  taskset -c 1 "$LOAD" --ws "$1" --http "127.0.0.1:$2" --api-key "$KEY" \
    --subscribers "$SUBSCRIBERS" --rooms "$ROOMS" --publications "$PUBLICATIONS"
}

echo "# one node, history in memory"
node single ""
read -r ws1 http1 <"$work/single.ports"
load "ws://127.0.0.1:$ws1/wss/rooms" "$http1"
kill $(jobs -p) && wait 2>/dev/null || true

echo "# two nodes through $REDIS, history in Redis Streams (half the subscribers on each)"
node a "$REDIS"
node b "$REDIS"
read -r wsa httpa <"$work/a.ports"
read -r wsb _ <"$work/b.ports"
load "ws://127.0.0.1:$wsa/wss/rooms,ws://127.0.0.1:$wsb/wss/rooms" "$httpa"
