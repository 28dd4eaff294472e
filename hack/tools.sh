#!/usr/bin/env bash
# Prints the path of a pinned Go tool, installing it into bin/ with `go install` on first use.
#   hack/tools.sh controller-gen | kustomize | helm | golangci-lint
# Progress goes to stderr, only the path to stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
mkdir -p "$bin"

# kubectl is built from k8s.io/kubernetes like the local cluster's other commands
# (hack/kube-build.sh caches it under bin/kube/).
if [ "${1:-}" = kubectl ]; then
  target=$(bash "$root/hack/kube-build.sh" kubectl)
  ln -sf "${target#"$bin"/}" "$bin/kubectl"
  echo "$target"
  exit 0
fi

case "${1:-}" in
  controller-gen) pkg=sigs.k8s.io/controller-tools/cmd/controller-gen version=v0.23.0 ;;
  kustomize) pkg=sigs.k8s.io/kustomize/kustomize/v5 version=v5.8.2 ;;
  helm) pkg=helm.sh/helm/v3/cmd/helm version=v3.22.0 ;;
  # v2.15.0 is the newest whose go.mod (go 1.26.0) builds with the local go 1.26.8.
  golangci-lint) pkg=github.com/golangci/golangci-lint/v2/cmd/golangci-lint version=v2.15.0 ;;
  *) echo "usage: $0 controller-gen|kustomize|helm|golangci-lint" >&2; exit 2 ;;
esac

target="$bin/$1-$version"
if [ ! -x "$target" ]; then
  echo "tools: installing $pkg@$version" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  GOBIN="$tmp" GOFLAGS= GOTOOLCHAIN=local GOWORK=off go install "$pkg@$version" >&2
  mv "$tmp/$1" "$target"
fi
ln -sf "$(basename "$target")" "$bin/$1"
echo "$target"
