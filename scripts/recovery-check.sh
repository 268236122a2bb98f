#!/usr/bin/env bash
# The recovery check (issue 13, point 5): two `wharf serve` nodes (release; WHARF_PROFILE=debug
# for the debug build) sharing a private Redis or NATS started on a free port (never the
# machine's shared 6379/4222), 200 subscribers of the rooms protocol (wharf_client::rooms)
# spread over both nodes on 20 rooms, 1,000 publications a second through both nodes'
# `POST /api/publish` for SECONDS, and meanwhile: every second one subscriber closed with
# `DELETE /api/connections/{id}` and another reset at the TCP level, one node SIGKILLed and
# started again (its subscribers go on on the other), the engine restarted once.
#
#   scripts/recovery-check.sh [redis|nats] [SECONDS] [EXTRA EXAMPLE ARGS...]   (defaults: redis 60)
#   scripts/recovery-check.sh nats 10 --subscribers 40 --rate 200
#
# Prints one line
#   recovery: N subscribers, M publications, L lost, D duplicated, O out of order, U unrecoverable
# and exits non-zero on any L, D or O. The short version runs in the test suite:
# crates/wharf-app/tests/recovery_check.rs. Figures of a run are in docs/cluster.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ENGINE=${1:-redis}
SECONDS_TOTAL=${2:-60}
shift $(( $# > 2 ? 2 : $# ))
case $ENGINE in
  redis) command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 2; } ;;
  nats) command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || { echo "nats-server is not installed" >&2; exit 2; } ;;
  *) echo "usage: $0 [redis|nats] [SECONDS]" >&2; exit 2 ;;
esac

build_wharf --example recovery_check
exec "$OUT/examples/recovery_check" --wharf "$BIN" --engine "$ENGINE" --seconds "$SECONDS_TOTAL" "$@"
