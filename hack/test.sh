#!/usr/bin/env bash
# The whole test suite (`make test`, which .ci/run calls): lint, then every Go test tier with
# its real dependencies started here — a throwaway PostgreSQL on loopback for the store
# conformance suite and the engine end-to-end tests on PostgreSQL, and envtest's etcd and
# kube-apiserver (built from the Go module proxy, cached under bin/) for the operator.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

echo "== lint"
make -s lint

work=$(mktemp -d -t synced-folder-test.XXXXXX)
cleanup() {
  bash "$root/hack/postgres.sh" stop "$work/pg" || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== PostgreSQL"
SYNC_TEST_DATABASE_URL=$(bash hack/postgres.sh start "$work/pg")
export SYNC_TEST_DATABASE_URL
echo "started on ${SYNC_TEST_DATABASE_URL}"

if [ -f hack/envtest.sh ]; then
  echo "== envtest control plane"
  KUBEBUILDER_ASSETS=$(bash hack/envtest.sh)
  export KUBEBUILDER_ASSETS
  echo "KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS}"
fi

echo "== go test"
go test -count=1 -timeout 40m ${GOTESTFLAGS:-} ./...

echo "== race detector over the engine's concurrent packages (agent, client, block store)"
go test -race -count=1 -timeout 20m ./syncagent/... ./syncserver/client/ ./syncserver/blobs/

echo "== fuzz (a short pass over every target; \`make fuzz\` runs them longer)"
bash hack/fuzz.sh "${FUZZTIME_SHORT:-2s}"
