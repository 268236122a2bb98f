#!/usr/bin/env bash
# What one echoed message costs `wharf serve` in user space, counted rather than timed:
# instructions (and, with --cache, L1 and L2 misses) a message under callgrind, which the
# machine's noise does not move. docs/decisions.md quotes these figures.
#
#   scripts/callgrind-echo.sh [--cache] [--locked] [--peer BIN] SIZE [CONNS]
#
# Runs `wharf serve` (one worker thread, no per-address cap) under valgrind, or with --peer a
# harness peer (`BIN --port P --threads 1`, such as peer-fastws), resets the counters once it
# answers, runs `wsload echo -c CONNS -s SIZE -d 5` (CONNS 16 by default; the harness uses
# 64), and divides the counts by the messages echoed. --cache simulates a 32 KiB 8-way L1
# and a 512 KiB L2 (this machine's). --locked also counts the bus-locking instructions a
# message (atomic read-modify-writes: `lock`-prefixed, or `xchg` with memory) and the
# functions that execute them (scripts/callgrind-locked.py; needs objdump). Needs valgrind and the harness's wsload
# (WHARF_BENCH_DIR, default ../shared/bench; its target/release/wsload built). The release
# build must exist (BIN, else <target>/release/wharf); build it with line tables
# (CARGO_PROFILE_RELEASE_DEBUG=line-tables-only) to read the profile with callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
cache=()
locked=
peer=
while [[ $# -gt 0 ]]; do
  case $1 in
    --cache) cache=(--cache-sim=yes --D1=32768,8,64 --I1=32768,8,64 --LL=524288,8,64) ;;
    --locked) locked=1 ;;
    --peer) peer=$(realpath "$2"); shift ;;
    *) break ;;
  esac
  shift
done
size=${1:?usage: scripts/callgrind-echo.sh [--cache] [--locked] [--peer BIN] SIZE [CONNS]}
conns=${2:-16}
bench=$(realpath "${WHARF_BENCH_DIR:-../shared/bench}")
wsload=$bench/target/release/wsload
work=$(mktemp -d /tmp/wharf-callgrind.XXXXXX)
out=$work/callgrind.out
valgrind=(valgrind --tool=callgrind "${cache[@]}" ${locked:+--dump-instr=yes} --callgrind-out-file="$out")
if [[ -n $peer ]]; then
  port=$(free_port)
  "${valgrind[@]}" "$peer" --port "$port" --threads 1 >"$work/server.log" 2>&1 &
  pid=$!
  url=ws://127.0.0.1:$port/
else
  start_wharf "$work" WHARF_WORKER_THREADS=1 WHARF_WS_MAX_CONNECTIONS_PER_IP=0 -- "${valgrind[@]}"
  pid=$SERVER_PID
  url=ws://127.0.0.1:$WS_PORT/echo
fi
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; echo "profile and logs: $work"' EXIT
# Under valgrind a peer's start takes seconds: ask for up to a minute.
"$wsload" probe --url "$url" --wait 60 >/dev/null
callgrind_control -z "$pid" >/dev/null 2>&1
"$wsload" echo -c "$conns" -s "$size" -d 5 --url "$url" --json-out "$work/echo.json" >/dev/null
callgrind_control -d "$pid" >/dev/null 2>&1
messages=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["sent_total"])' "$work/echo.json")
python3 - "$messages" "$out".* <<'PY'
import sys
messages = int(sys.argv[1])
events = totals = None
for line in open(sys.argv[2]):
    if line.startswith("events:"):
        events = line.split()[1:]
    elif line.startswith("totals:"):
        totals = [int(x) for x in line.split()[1:]]
print(f"{messages} messages; a message:", " ".join(
    f"{name} {count / messages:,.1f}" for name, count in zip(events, totals)))
PY
[[ -z $locked ]] || python3 scripts/callgrind-locked.py "$messages" "$out".*
