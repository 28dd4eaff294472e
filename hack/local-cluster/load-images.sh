#!/usr/bin/env bash
# Loads image tarballs (`docker save` or OCI layout tarballs, e.g. what hack/images writes) into
# the local cluster's containerd, where the kubelet finds them; pods must use
# imagePullPolicy Never or IfNotPresent since no registry is reachable.
#   hack/local-cluster/load-images.sh TARBALL...
set -euo pipefail
# shellcheck source=hack/local-cluster/lib.sh
. "$(dirname "$0")/lib.sh"
[ $# -gt 0 ] || die "usage: $0 TARBALL..."
[ -S "$SOCK" ] || die "no containerd at $SOCK: run hack/local-cluster/up.sh first"
for t in "$@"; do
  [ -f "$t" ] || die "no image tarball $t"
  ctr -a "$SOCK" -n k8s.io image import "$t" >&2 || die "import $t"
done
ctr -a "$SOCK" -n k8s.io image ls -q | grep -v '^sha256:' >&2
