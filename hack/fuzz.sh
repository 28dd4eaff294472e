#!/usr/bin/env bash
# `make fuzz`: runs every Go fuzz target (func FuzzXxx) for the given time each.
# The seed corpora of the same targets also run in `make test` as plain tests, and
# hack/test.sh ends with a short pass of this script (a few seconds per target).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-30s}
status=0
while IFS= read -r file; do
  pkg=./$(dirname "$file")
  for target in $(grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | awk '{print $2}'); do
    echo "== $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" || status=1
  done
done < <(git ls-files --cached --others --exclude-standard '*_test.go' | sort -u | xargs grep -l '^func Fuzz' || true)
exit $status
