#!/usr/bin/env bash
# Throwaway PostgreSQL 15 for tests, on a free loopback port.
#   hack/postgres.sh start DIR   → starts a server with its data under DIR, prints its URL
#   hack/postgres.sh stop DIR    → stops it (fast shutdown) and removes DIR
# PG_LISTEN_ADDRESSES (default 127.0.0.1) sets the listen addresses, e.g. 127.0.0.1,10.244.0.1 (the
# local cluster's bridge, for hack/e2e.sh); the caller adds the matching pg_hba.conf lines.
# initdb refuses to run as root, so as root the server runs as the `postgres` user.
set -euo pipefail

PGBIN=${PGBIN:-}
find_pgbin() {
  for d in "$PGBIN" /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

ensure_installed() {
  if ! PGBIN=$(find_pgbin); then
    echo "postgres.sh: PostgreSQL not found; installing postgresql-15 from Debian" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq postgresql-15 >&2
    PGBIN=$(find_pgbin) || { echo "postgres.sh: PostgreSQL still missing after install" >&2; exit 1; }
  fi
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

case "$cmd" in
start)
  ensure_installed
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    # The postgres user must be able to reach DIR; temp dirs are often 0700.
    d=$(dirname "$dir")
    while [ "$d" != / ]; do chmod o+x "$d"; d=$(dirname "$d"); done
  fi
  as_owner "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust --no-locale -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    if as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
      -o "-c listen_addresses=${PG_LISTEN_ADDRESSES:-127.0.0.1} -p $port -k $dir -c fsync=off -c full_page_writes=off -c max_connections=200" start >/dev/null 2>&1; then
      echo "$port" >"$dir/port"
      echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
      exit 0
    fi
  done
  echo "postgres.sh: could not start PostgreSQL; log follows" >&2
  cat "$dir/log" >&2 || true
  exit 1
  ;;
stop)
  PGBIN=$(find_pgbin) || exit 0
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
