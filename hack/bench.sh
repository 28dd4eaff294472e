#!/usr/bin/env bash
# `make bench`: every Go benchmark of the engine, with a throwaway PostgreSQL so the
# PostgreSQL store is measured beside the embedded one, then the side-by-side harness
# (test/bench: our server and agents against an rsync daemon and a Syncthing pair, W1–W9),
# which renders its table into docs/benchmarks.md. Speed targets live here, never in
# tests. BENCHTIME (default 1s) and BENCH (a -bench regexp) narrow the Go benchmarks;
# QUICK=1 (or BENCH_QUICK=1) runs the harness with small sizes; SYNCBENCH_FLAGS passes
# more flags to it (e.g. "-workloads W1,W2 -reps 5"); SYNCBENCH=0 skips it; SETTLE
# (seconds, default 61) is its wait after the Go benchmarks' removals.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d -t synced-folder-bench.XXXXXX)
trap 'bash "$root/hack/postgres.sh" stop "$work/pg" || true; rm -rf "$work"' EXIT

SYNC_TEST_DATABASE_URL=$(bash hack/postgres.sh start "$work/pg")
export SYNC_TEST_DATABASE_URL

pkgs=$(go list ./syncserver/... ./syncagent/... ./test/... 2>/dev/null)
go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1s}" -benchmem $pkgs | tee "$work/bench.txt"

if [ "${SYNCBENCH:-1}" != 0 ]; then
  # The Go benchmarks removed their temp dirs; on ext4 the files created in the minute
  # after a flush pay for the removed inodes (docs/benchmarks.md, "Folder removal"), and
  # W1 runs first: flush, and let that minute pass (SETTLE=0 skips the wait).
  sync
  sleep "${SETTLE:-61}"
  echo
  echo "== side-by-side harness (ours, rsync, Syncthing)"
  quick=()
  if [ -n "${QUICK:-}${BENCH_QUICK:-}" ]; then
    quick=(-quick)
  fi
  # shellcheck disable=SC2086 # SYNCBENCH_FLAGS is a list of flags
  go run ./test/bench/cmd/syncbench "${quick[@]}" ${SYNCBENCH_FLAGS:-}
fi
echo
echo "Figures and targets: docs/benchmarks.md"
