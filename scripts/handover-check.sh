#!/usr/bin/env bash
# The handover check (issue 15's acceptance): one `wharf serve` (release; WHARF_PROFILE=debug
# for the debug build) with its own data directory, per-address cap off and free ports (it
# binds port 0 and reads them from its log), a config of three servers (the HTTP API, plain
# `ws` with `/echo` and the rooms protocol `/wss/rooms`, and a `tls` WebSocket server with a
# certificate of a test CA the check generates). The load, from one process:
#
# - CONNS plain connections (default 10,000): ECHO echo clients on `/echo` (default 1,000),
#   each sending a numbered message every 100 ms and waiting for exactly it back, and the
#   rest subscribers of the rooms protocol on `/wss/rooms`, each following one of 500 history
#   rooms, with 1,000 publications a second in all through `POST /api/publish`, numbered and
#   stamped with their due time;
# - 100 TLS connections to the `tls` server's `/echo`, which cannot move;
#
# then three `wharf upgrade`s in a row, `[drain] spread` apart (10 s), with a successor that
# crashes on start between the first and the second (the release is a symlink the check
# switches). The clients report what they saw:
#
#   scripts/handover-check.sh [CONNS] [EXTRA EXAMPLE ARGS...]        (default 10000)
#   scripts/handover-check.sh 2000 --echo 500 --tls 20 --spread-secs 4
#   scripts/handover-check.sh 10000 --no-rooms     (echo and TLS only)
#
# Prints, per kind of client, closes, lost, duplicated and out-of-order messages and the
# largest pause each client saw (slowest round trip, largest gap between pushes) as p50/p99/
# max, and per upgrade the TLS closes (1012 with the reason, first and last after the
# upgrade); exits 1 on any close of a plain connection, any loss, duplicate or reordering,
# or TLS closes that are not 1012 or not spread over the window (2 if it could not run).
# The short version runs in the test suite: crates/wharf-app/tests/handover.rs
# `clients_ride_three_upgrades_and_two_failing_successors_with_nothing_lost`. Figures of a
# run are in docs/operations.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
CONNS=${1:-10000}
shift $(( $# > 1 ? 1 : $# ))

# The load holds as many sockets as the server (each its own process): both need
# CONNS + TLS + some descriptors.
need=$((CONNS + 1000))
if (( $(ulimit -n) < need )); then
  ulimit -n "$(ulimit -Hn)"
fi
if (( $(ulimit -n) < need )); then
  echo "handover-check: $CONNS connections need $need file descriptors; the hard limit is $(ulimit -Hn)" >&2
  exit 2
fi

build_wharf --example handover_check
exec "$OUT/examples/handover_check" --wharf "$BIN" --conns "$CONNS" "$@"
