#!/usr/bin/env bash
# Checks the services the tests need on loopback and starts any that is down.
# Addresses can be overridden with WHARF_TEST_* variables (see README).
set -u

up_tcp() { timeout 2 bash -c ">/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

ensure() {
  local name=$1 port=$2 start=$3
  if up_tcp "$port"; then return 0; fi
  echo "services: $name is down on 127.0.0.1:$port; starting it: $start"
  bash -c "$start" || echo "services: starting $name failed"
  for _ in $(seq 1 30); do up_tcp "$port" && return 0; sleep 1; done
  echo "services: $name is still not reachable on 127.0.0.1:$port" >&2
  return 1
}

ok=0
ensure PostgreSQL 5432 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start' || ok=1
ensure MariaDB 3306 'start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd' || ok=1
ensure Redis 6379 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log' || ok=1
# The cluster tests run over NATS too (JetStream on, for presence).
ensure NATS 4222 'start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log' || ok=1
exit $ok
