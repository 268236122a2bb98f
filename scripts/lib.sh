# Shared by the scripts that start a `wharf serve` on free loopback ports.

# build_wharf [CARGO ARGS ...]: builds the `wharf` binary (and whatever else the arguments
# name, such as `--example soak`) and sets BIN and OUT (the folder of the built artifacts).
# The profile is release unless WHARF_PROFILE=debug: `.ci/run` uses the debug build, the one
# the tests already built, so CI builds the workspace once instead of twice. WHARF_PREBUILT=1:
# the caller built them; only BIN and OUT are set.
build_wharf() {
  local target=${CARGO_TARGET_DIR:-target}
  local profile=release
  if [[ ${WHARF_PROFILE:-release} == debug ]]; then profile=debug; fi
  if [[ -n ${WHARF_PREBUILT:-} ]]; then
    # The caller built them already (`.ci/run`): no cargo here, whose lock other builds hold.
    OUT=$target/$profile
    BIN=$OUT/wharf
    return
  fi
  if [[ $profile == debug ]]; then
    # The whole workspace with every target, as the tests build it: the same features, so
    # nothing is compiled again after them (`-p wharf-app` alone would unify features
    # differently and rebuild tokio and the rest). The arguments name nothing more here.
    cargo build --workspace --all-targets
    OUT=$target/debug
  else
    cargo build --release -p wharf-app --bin wharf "$@"
    OUT=$target/release
  fi
  BIN=$OUT/wharf
}

# A free TCP port on 127.0.0.1 (bound to 0 and released).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (up to 10 s) for http://127.0.0.1:$1/health to answer.
wait_for_health() {
  for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$1/health" >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "wharf did not answer /health on port $1" >&2
  return 1
}

# start_wharf DIR [NAME=VALUE ...] [-- PREFIX ...]: starts `wharf serve` ($BIN, else
# <target>/release/wharf) in the background on two free loopback ports, with its data
# in DIR, its log in DIR/server.log, warn-level logging and the extra environment given.
# Words after `--` go before the command (such as `taskset -c 0`). Sets WS_PORT, HTTP_PORT
# and SERVER_PID, and returns once /health answers.
start_wharf() {
  local dir=$1
  shift
  local vars=() prefix=()
  while [[ $# -gt 0 ]]; do
    if [[ $1 == -- ]]; then
      shift
      prefix=("$@")
      break
    fi
    vars+=("$1")
    shift
  done
  WS_PORT=$(free_port)
  HTTP_PORT=$(free_port)
  mkdir -p "$dir"
  env WHARF_DATA_DIR="$dir" WHARF_LOG=warn \
    WHARF_WS_HOST=127.0.0.1 WHARF_WS_PORT="$WS_PORT" WHARF_HTTP_HOST=127.0.0.1 WHARF_HTTP_PORT="$HTTP_PORT" \
    "${vars[@]}" "${prefix[@]}" "${BIN:-${CARGO_TARGET_DIR:-target}/release/wharf}" serve \
    >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  wait_for_health "$HTTP_PORT"
}

# bench_node DIR NAME BACKPLANE KEY: a benchmark node on core 0 (auth off, the API key KEY,
# no per-address cap, the cluster prefix of this run), started in the background; writes
# "WS_PORT HTTP_PORT" to DIR/NAME.ports.
bench_node() {
  start_wharf "$1/$2" JWT_OPEN=false WHARF_API_KEY="$4" WHARF_CLUSTER_BACKPLANE="$3" \
    WHARF_CLUSTER_PREFIX="bench$$" WHARF_WS_MAX_CONNECTIONS_PER_IP=0 -- taskset -c 0
  echo "$WS_PORT $HTTP_PORT" >"$1/$2.ports"
}
