#!/usr/bin/env bash
# Prints the path of a pinned Go tool, installing it into bin/ with `go install` on first use.
#   hack/tools.sh controller-gen | kustomize
# Progress goes to stderr, only the path to stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
mkdir -p "$bin"

case "${1:-}" in
  controller-gen) pkg=sigs.k8s.io/controller-tools/cmd/controller-gen version=v0.23.0 ;;
  kustomize) pkg=sigs.k8s.io/kustomize/kustomize/v5 version=v5.8.2 ;;
  *) echo "usage: $0 controller-gen|kustomize" >&2; exit 2 ;;
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
