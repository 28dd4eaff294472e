#!/usr/bin/env bash
# Local quick start (`make run-local`, after `make build`): one sync server on the embedded
# store (data under ./tmp/server) and two agents syncing ./tmp/a and ./tmp/b through it.
# Ctrl-C stops all three. SYNC_PORT (default 8080) moves the ports (server PORT, agents'
# status pages PORT+1 and PORT+2).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin
port=${SYNC_PORT:-8080}
for b in syncserver syncagent; do
  if [ ! -x "$bin/$b" ]; then
    echo "run-local: $bin/$b is missing; run 'make build' first (or 'make run-local')" >&2
    exit 1
  fi
done
mkdir -p tmp/server tmp/a tmp/b

pids=()
stopping=0
stop_all() {
  [ "$stopping" = 1 ] && return
  stopping=1
  echo
  echo "run-local: stopping the agents and the server…"
  # Agents first, so they do not log the server's absence on the way out.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "run-local: stopped. Your files stay in tmp/a, tmp/b and tmp/server."
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

# Each program's logs go to the terminal with a prefix naming it.
start() {
  local name=$1; shift
  "$@" 2> >(sed -u "s/^/[$name] /" >&2) &
  pids+=($!)
}

start server "$bin/syncserver" --listen "127.0.0.1:$port" --data-dir tmp/server --log-format text
server=http://127.0.0.1:$port
for _ in $(seq 1 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "run-local: the server did not start (see its log above; is port $port free? set SYNC_PORT)" >&2
    exit 1
  fi
  sleep 0.1
done

start agent-a "$bin/syncagent" --server "$server" --dir tmp/a --id agent-a --listen "127.0.0.1:$((port + 1))" --log-format text
start agent-b "$bin/syncagent" --server "$server" --dir tmp/b --id agent-b --listen "127.0.0.1:$((port + 2))" --log-format text

cat <<MSG

  synced-folder is running:
    server   $server          (data in tmp/server)
    agent-a  syncs tmp/a       status http://127.0.0.1:$((port + 1))/status
    agent-b  syncs tmp/b       status http://127.0.0.1:$((port + 2))/status

  Drop a file in tmp/a and watch it appear in tmp/b:
    echo hello > tmp/a/hello.txt && sleep 1 && cat tmp/b/hello.txt

  Edits, deletes, renames and folders sync both ways; version history:
    curl '$server/v1/versions?path=hello.txt'

  Press Ctrl-C to stop all three.

MSG

# Stop everything when any of the three exits on its own.
while :; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null && [ "$stopping" = 0 ]; then
      echo "run-local: a process (pid $pid) exited; stopping the others" >&2
      exit 1
    fi
  done
  # In the background, so that Ctrl-C runs the trap at once.
  sleep 1 &
  wait $! || true
done
