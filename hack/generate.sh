#!/usr/bin/env bash
# Regenerates everything controller-gen writes: deepcopy code, the SyncedFolder CRD, the
# manager's RBAC role, and the ServiceMonitor CRD that the envtest suite installs (generated
# from the typed structs of prometheus-operator pkg/apis/monitoring in the module cache, the
# same version go.mod pins).
#   hack/generate.sh          → writes into the tree
#   hack/generate.sh OUTDIR   → writes the same files under OUTDIR (the staleness test compares)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-$root}
cg=$(bash hack/tools.sh controller-gen)

mkdir -p "$out/api/v1alpha1" "$out/config/crd/bases" "$out/config/rbac" "$out/config/test/crds"
"$cg" object paths=./api/... output:object:dir="$out/api/v1alpha1"
"$cg" crd rbac:roleName=manager-role paths=./api/... paths=./controllers/... \
  output:crd:dir="$out/config/crd/bases" output:rbac:dir="$out/config/rbac"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$cg" crd paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 output:crd:dir="$tmp"
cp "$tmp/monitoring.coreos.com_servicemonitors.yaml" "$out/config/test/crds/"
