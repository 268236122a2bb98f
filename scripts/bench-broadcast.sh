#!/usr/bin/env bash
# Fan-out latency at equal offered load (docs/decisions.md, "Fan-out latency"): a wharf room
# broadcast (the echo example's `/broadcast`: every message to room `all`, one encoding for
# every member) and one peer of the shared harness, each alone on core 0, under
# `wsload broadcast` on core 1 at the same fixed send rates, so latency is compared at the
# same load rather than each at its own maximum.
#
#   scripts/bench-broadcast.sh PEER RATE [RATE ...]     e.g. scripts/bench-broadcast.sh fastws 900 450
#
# RATE: messages per second from the sender; each reaches every subscriber (BCAST_SUBS,
# default 1000), 64 B, for BCAST_SECS (default 10) after a 1 s warm-up. Needs the harness
# built by one `run.sh` run (its binaries in WHARF_BENCH_BUILT, default
# /tmp/wsbench/target/release, where a read-only harness builds). Prints wsload's lines and
# appends its JSON to WHARF_BENCH_JSON (default /tmp/wharf-bench-broadcast.jsonl), which
# `wsload table` renders. WHARF_PREBUILT=1: the echo example is built already.
# WHARF_ECHO_ARGS: more arguments for the echo example (`--multi-thread`: tokio's
# multi-thread runtime with one worker instead of the current-thread runtime that it, like
# `wharf serve`, picks on one core).
set -euo pipefail
cd "$(dirname "$0")/.."
peer=${1:?usage: scripts/bench-broadcast.sh PEER RATE [RATE ...]}
shift
[[ $# -gt 0 ]] || { echo "give at least one rate" >&2; exit 2; }
built=${WHARF_BENCH_BUILT:-/tmp/wsbench/target/release}
wsload=$built/wsload
json=${WHARF_BENCH_JSON:-/tmp/wharf-bench-broadcast.jsonl}
subs=${BCAST_SUBS:-1000}
secs=${BCAST_SECS:-10}
[[ -x $wsload && -x $built/peer-$peer ]] || {
  echo "no $wsload or $built/peer-$peer: run ../shared/bench/run.sh once" >&2
  exit 1
}
source scripts/lib.sh
[[ -n ${WHARF_PREBUILT:-} ]] || cargo build --release -p wharf --example echo
echo_bin=${CARGO_TARGET_DIR:-target}/release/examples/echo

pid=""
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; true' EXIT
# measure LABEL RATE CMD...: the server (PORT in CMD is its port) on core 0, one wsload run
# against it, the server stopped.
measure() {
  local label=$1 rate=$2 port
  shift 2
  port=$(free_port)
  taskset -c 0 "${@//PORT/$port}" >/dev/null 2>&1 &
  pid=$!
  "$wsload" probe --url "ws://127.0.0.1:$port/broadcast" --wait 20 >/dev/null
  taskset -c 1 "$wsload" broadcast --url "ws://127.0.0.1:$port/broadcast" -n "$subs" -s 64 \
    -d "$secs" --warmup 1 --rate "$rate" --label "$label" --kind custom \
    --scenario "broadcast-rate-$rate" --server-pid "$pid" --json-out "$json" | grep -v '^{'
  kill "$pid" && wait "$pid" 2>/dev/null || true
  pid=""
}
for rate in "$@"; do
  # shellcheck disable=SC2086 # WHARF_ECHO_ARGS is a list of words
  measure wharf "$rate" "$echo_bin" PORT ${WHARF_ECHO_ARGS:-}
  measure "$peer" "$rate" "$built/peer-$peer" --port PORT --threads 1
done
