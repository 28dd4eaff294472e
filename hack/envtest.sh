#!/usr/bin/env bash
# Prints a directory holding `etcd` and `kube-apiserver` for controller-runtime's envtest
# (the value for KUBEBUILDER_ASSETS). Nothing can be downloaded from release buckets on these
# machines, so both binaries are built from the Go module proxy by hack/kube-build.sh (see
# /work/shared/INFRA.md; cached under bin/kube/) and linked into bin/envtest/; a warm run takes
# well under a second. Progress goes to stderr, only the path goes to stdout. An already-set
# KUBEBUILDER_ASSETS holding both binaries wins.
set -euo pipefail

K8S_VERSION=${ENVTEST_K8S_VERSION:-1.37.1}
ETCD_VERSION=${ENVTEST_ETCD_VERSION:-3.5.35}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

root=$(cd "$(dirname "$0")/.." && pwd)
assets="$root/bin/envtest/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
mkdir -p "$assets"

log() { echo "envtest: $*" >&2; }

# Serialise concurrent runs (hack/test.sh and a developer's go test may race on a cold cache).
exec 9>"$root/bin/envtest.lock"
flock 9

if [ ! -x "$assets/etcd" ] || [ ! -x "$assets/kube-apiserver" ]; then
  built=$(KUBE_VERSION=$K8S_VERSION ETCD_VERSION=$ETCD_VERSION bash "$root/hack/kube-build.sh" etcd kube-apiserver)
  for p in $built; do
    n=$(basename "$p")
    [ -x "$assets/$n" ] && continue
    ln -f "$p" "$assets/$n.tmp" 2>/dev/null || cp "$p" "$assets/$n.tmp"
    mv "$assets/$n.tmp" "$assets/$n"
  done
fi
log "assets ready in $assets"
echo "$assets"
