#!/usr/bin/env bash
# `make bench`: every Go benchmark of the engine, with a throwaway PostgreSQL so the
# PostgreSQL store is measured beside the embedded one. Speed targets live here, never in
# tests. BENCHTIME (default 1s) and BENCH (a -bench regexp) narrow it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d -t synced-folder-bench.XXXXXX)
trap 'bash "$root/hack/postgres.sh" stop "$work/pg" || true; rm -rf "$work"' EXIT

SYNC_TEST_DATABASE_URL=$(bash hack/postgres.sh start "$work/pg")
export SYNC_TEST_DATABASE_URL

pkgs=$(go list ./syncserver/... ./syncagent/... ./test/... 2>/dev/null)
go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1s}" -benchmem $pkgs | tee "$work/bench.txt"
echo
echo "Figures and targets: docs/benchmarks.md"
