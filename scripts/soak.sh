#!/usr/bin/env bash
# Soak and churn, the long version of crates/wharf/tests/churn.rs: CONNS connections to the
# echo route of a `wharf serve` (release; WHARF_PROFILE=debug for the debug build), DROP percent of them dropped abruptly (no close
# frame) and replaced every second for SECONDS, then all dropped. The server runs in its own
# process (the load holds as many sockets as the server; each process may open 20,000 fds
# here); every SAMPLE seconds this prints the server's registry count (/health), its open
# file descriptors and its resident memory, and it keeps sampling after the load ends until
# the registry is back to zero.
#
#   scripts/soak.sh [CONNS] [SECONDS] [DROP] [SAMPLE]     (defaults: 10000 300 1 10)
#   scripts/soak.sh 300 20 5 2                            (the short run in .ci/run)
#
# Exits non-zero (after printing why) unless, at the end, the registry is back to 0, the
# server's fds are back to the baseline (plus SOAK_FD_SLACK, default 2) and its RSS reached a
# plateau under load: over the second half of the load it grew by no more than half of what
# it grew over the first half, or by SOAK_RSS_SLACK_KIB (default 2048) if that is more. A
# leak grows about as much in each half; a plateau flattens. `.ci/run` runs a short one.
#
# Figures of a run are in docs/security.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
CONNS=${1:-10000}
SECONDS_TOTAL=${2:-300}
DROP=${3:-1}
SAMPLE=${4:-10}

build_wharf --example soak
LOAD=$OUT/examples/soak

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
  last_fds=$fds
  last_rss=$rss
}

start=$(date +%s)
sample baseline
baseline_fds=$last_fds
load_rss=()
"$LOAD" --url "ws://127.0.0.1:$ws/echo" --conns "$CONNS" --drop-percent "$DROP" \
  --seconds "$SECONDS_TOTAL" >"$work/load.log" 2>&1 &
load=$!
while kill -0 "$load" 2>/dev/null; do
  sleep "$SAMPLE"
  sample load
  # Only samples taken with the load still running count towards the plateau.
  if kill -0 "$load" 2>/dev/null; then load_rss+=("$last_rss"); fi
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
grep -v -c '^$' "$work/server.log" | sed 's/^/lines: /' || true
tail -5 "$work/server.log"

# The verdict.
failed=0
fail() {
  echo "soak: FAILED: $*" >&2
  failed=1
}
if ! kill -0 "$server" 2>/dev/null; then fail "the server exited"; fi
if [[ $last_conns != 0 ]]; then fail "registry $last_conns after the load, not 0"; fi
fd_slack=${SOAK_FD_SLACK:-2}
if ((last_fds > baseline_fds + fd_slack)); then
  fail "fds $last_fds after the load, baseline $baseline_fds (+$fd_slack allowed)"
fi
n=${#load_rss[@]}
if ((n < 3)); then
  fail "only $n RSS samples under load; run longer or sample more often (SAMPLE)"
else
  first=${load_rss[0]} mid=${load_rss[$((n / 2))]} end=${load_rss[$((n - 1))]}
  grew1=$((mid - first)) grew2=$((end - mid))
  allowed=$((grew1 / 2))
  rss_slack=${SOAK_RSS_SLACK_KIB:-2048}
  if ((allowed < rss_slack)); then allowed=$rss_slack; fi
  echo "rss under load (KiB): first $first, middle $mid, last $end; grew $grew1 then $grew2 (allowed $allowed)"
  if ((grew2 > allowed)); then fail "RSS still growing under load: +$grew2 KiB over the second half, +$grew1 over the first"; fi
fi
if ((failed)); then exit 1; fi
echo "soak: OK (registry 0, fds $last_fds vs baseline $baseline_fds, RSS plateau)"
