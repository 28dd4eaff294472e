#!/usr/bin/env bash
# Prints a directory holding `etcd` and `kube-apiserver` for controller-runtime's envtest
# (the value for KUBEBUILDER_ASSETS). Nothing can be downloaded from release buckets on these
# machines, so both binaries are built from the Go module proxy (see /work/shared/INFRA.md)
# and cached under bin/; a warm run takes well under a second. Progress goes to stderr, only
# the path goes to stdout. An already-set KUBEBUILDER_ASSETS holding both binaries wins.
set -euo pipefail

K8S_VERSION=${ENVTEST_K8S_VERSION:-1.37.1}
ETCD_VERSION=${ENVTEST_ETCD_VERSION:-3.5.35}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

root=$(cd "$(dirname "$0")/.." && pwd)
assets="$root/bin/envtest/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
build="$root/bin/envtest-build"
mkdir -p "$assets" "$build"

log() { echo "envtest: $*" >&2; }

# Serialise concurrent runs (hack/test.sh and a developer's go test may race on a cold cache).
exec 9>"$root/bin/envtest.lock"
flock 9

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 GOWORK=off

# build_etcd builds the etcd server from go.etcd.io/etcd/server/v3.
build_etcd() {
  local dir="$build/etcd-$ETCD_VERSION"
  rm -rf "$dir" && mkdir -p "$dir"
  log "building etcd $ETCD_VERSION in $dir"
  cat >"$dir/go.mod" <<MOD
module envtest.local/etcd

go 1.25

require go.etcd.io/etcd/server/v3 v$ETCD_VERSION
MOD
  cat >"$dir/tools.go" <<'SRC'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
SRC
  (cd "$dir" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$assets/etcd.tmp" go.etcd.io/etcd/server/v3 >&2)
  mv "$assets/etcd.tmp" "$assets/etcd"
}

# build_apiserver builds kube-apiserver from k8s.io/kubernetes, whose go.mod points the staging
# modules at ./staging/...; the throwaway module replaces each with its published v0.x twin.
build_apiserver() {
  local dir="$build/kube-apiserver-$K8S_VERSION"
  local minor=${K8S_VERSION#*.}
  minor=${minor%%.*}
  local staging="v0.${K8S_VERSION#*.}"
  rm -rf "$dir" && mkdir -p "$dir"
  log "building kube-apiserver $K8S_VERSION in $dir (cold: ~7 min, 2.4 GB)"
  printf 'module envtest.local/kubeapiserver\n\ngo 1.25\n' >"$dir/go.mod"
  local kmod
  kmod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [ -f "$kmod" ] || { log "cannot find go.mod of k8s.io/kubernetes v$K8S_VERSION"; exit 1; }
  {
    printf 'module envtest.local/kubeapiserver\n\ngo 1.25\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
    sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\t\1 => \1 '"$staging"'#p' "$kmod"
    printf ')\n'
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'SRC'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
SRC
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  (cd "$dir" && go mod tidy >&2 && go build -trimpath -ldflags "$ld" -o "$assets/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2)
  mv "$assets/kube-apiserver.tmp" "$assets/kube-apiserver"
}

[ -x "$assets/etcd" ] || build_etcd
[ -x "$assets/kube-apiserver" ] || build_apiserver
log "assets ready in $assets"
echo "$assets"
