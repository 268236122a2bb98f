# Shared by the scripts that start a release `wharf serve` on free loopback ports.

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
