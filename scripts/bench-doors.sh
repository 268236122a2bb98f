#!/usr/bin/env bash
# One of wharf's two doors (docs/decisions.md, "Two doors") under the shared benchmark
# harness, beside its peers in the same run: `wharf serve`'s built-in `/echo` on its own
# WebSocket listener (`raw`: wharf reads the head off the TCP stream), or on its http
# server's port (`mounted`: hyper parses the head, then hands the connection over).
#
#   scripts/bench-doors.sh raw|mounted [RUN.SH ARGS ...]
#
# Default run.sh arguments: --repeat 2 --scenarios echo-32B,echo-4KiB,echo-32B-p16,idle
# fastws tokio-websockets axum tcp-raw. The server runs with its own data dir and no
# per-address cap (the load comes from one address); the harness pins it to core 0 and its
# load generator to core 1. WHARF_BENCH_DIR: the harness (default ../shared/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
door=${1:?usage: scripts/bench-doors.sh raw|mounted [RUN.SH ARGS ...]}
shift
args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
  args=(--repeat 2 --scenarios echo-32B,echo-4KiB,echo-32B-p16,idle fastws tokio-websockets axum tcp-raw)
fi
bench=$(realpath "${WHARF_BENCH_DIR:-../shared/bench}")

build_wharf
bin=$(realpath "$BIN")
work=$(mktemp -d /tmp/wharf-bench-doors.XXXXXX)
trap 'rm -rf "$work"' EXIT
ws=$(free_port)
http=$(free_port)
serve="env WHARF_DATA_DIR=$work WHARF_LOG=warn WHARF_HTTP_HOST=127.0.0.1 WHARF_HTTP_PORT=$http"
case $door in
  raw)
    cmd="$serve WHARF_WS_HOST=127.0.0.1 WHARF_WS_PORT=$ws WHARF_WS_MAX_CONNECTIONS_PER_IP=0 $bin serve"
    url=ws://127.0.0.1:$ws/echo
    ;;
  mounted)
    # One port: the echo route on the http server, which is also the app's WebSocket server.
    cat >"$work/mounted.toml" <<TOML
[[server]]
name = "http"
kind = "http"
host = "127.0.0.1"
port = $http
route = [{ path = "/echo", handler = "echo" }]

[app]
ws_server = "http"
TOML
    cmd="$serve WHARF_HTTP_MAX_CONNECTIONS_PER_IP=0 $bin serve --config $work/mounted.toml"
    url=ws://127.0.0.1:$http/echo
    ;;
  *)
    echo "unknown door '$door': raw or mounted" >&2
    exit 2
    ;;
esac
"$bench/run.sh" --custom "$cmd" "$url" --custom-name "wharf-$door" "${args[@]}"
