#!/usr/bin/env bash
# Autobahn|Testsuite's full suite (all 517 cases, permessage-deflate sections 12 and 13
# included) against the echo route of a `wharf serve` with compression on (release;
# WHARF_PROFILE=debug for the debug build, as `.ci/run` does). Exits
# non-zero on any FAILED case, so `.ci/run` fails on a conformance regression.
#
#   scripts/autobahn.sh [--strict-close] [REPORT_DIR]   (default: <target>/autobahn)
#   scripts/autobahn.sh --prepare                       (only install the suite and build wharf)
#
# --strict-close also fails on a case whose closing behaviour is FAILED or UNCLEAN (the
# suite's own verdict counts only the data part); `.ci/run` uses it.
#
# The suite comes from the shared tool `autobahn.sh` (installed here on first use, as root,
# about a minute): $WHARF_AUTOBAHN, else ../shared/tools/autobahn/autobahn.sh beside the
# repository, else /work/shared/tools/autobahn/autobahn.sh. It takes about 10 minutes, bound
# by the suite's Python client; docs/conformance.md has the latest result.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
TARGET=${CARGO_TARGET_DIR:-target}
strict=()
if [[ ${1:-} == --strict-close ]]; then
  strict=(--strict-close)
  shift
fi
REPORT=${1:-$TARGET/autobahn}

tool=""
for candidate in "${WHARF_AUTOBAHN:-}" ../shared/tools/autobahn/autobahn.sh /work/shared/tools/autobahn/autobahn.sh; do
  if [[ -n $candidate && -x $candidate ]]; then tool=$candidate; break; fi
done
if [[ -z $tool ]]; then
  echo "autobahn: the suite's tool autobahn.sh was not found; set WHARF_AUTOBAHN to its path" >&2
  exit 2
fi
"$tool" install
build_wharf
if [[ ${1:-} == --prepare ]]; then exit 0; fi

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
start_wharf "$work" WHARF_WS_COMPRESSION=true
rm -rf "$REPORT"
status=0
"$tool" run "ws://127.0.0.1:$WS_PORT/echo" --exclude '' --out "$REPORT" "${strict[@]}" || status=$?
if [[ $status -ne 0 ]]; then
  echo "autobahn: FAILED (exit $status); the server's log:" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit $status
