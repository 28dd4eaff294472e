# shellcheck shell=bash
# Shared steps of `make demo` (hack/demo.sh) and `make e2e` (hack/e2e.sh): bring the local
# single-node cluster up, build and load the product image and the probe image, install the
# chart. Sourced, not run. Progress goes to stderr.
#   product_cluster_up    sets KUBECONFIG (exported), KUBECTL, HELM
#   product_images        builds bin/images/<image>.tar and the probe image, loads both;
#                         sets IMG_REPO, IMG_TAG, IMG_ID, PROBE_IMAGE (exported)
#   product_helm_install  installs or upgrades charts/synced-folder in $OPERATOR_NS and waits
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OPERATOR_NS=${OPERATOR_NS:-synced-folder-system}
RELEASE=${RELEASE:-synced-folder}
# Images are loaded into containerd, never pulled: a localhost/ name so nothing ever tries.
IMG_REPO=${IMG_REPO:-localhost/synced-folder/synced-folder}
PROBE_IMAGE=${PROBE_IMAGE:-localhost/synced-folder/probe:v1}
export PROBE_IMAGE

say() { echo "==> $*" >&2; }

# product_cluster_up starts (or reuses) the cluster and pins the tools built with it.
product_cluster_up() {
  local t0=$SECONDS
  say "local cluster (hack/local-cluster/up.sh; the first run builds Kubernetes, 15-30 min)"
  KUBECONFIG=$(bash "$ROOT/hack/local-cluster/up.sh")
  export KUBECONFIG
  KUBECTL=$(bash "$ROOT/hack/tools.sh" kubectl)
  HELM=$(bash "$ROOT/hack/tools.sh" helm)
  export KUBECTL HELM
  say "cluster up in $((SECONDS - t0))s: KUBECONFIG=$KUBECONFIG"
}

# product_images builds the one product image and the probe, and loads them into the cluster.
product_images() {
  local t0=$SECONDS version tools="$ROOT/bin/local-cluster"
  version=$(cd "$ROOT" && git describe --tags --always --dirty 2>/dev/null || echo dev)
  IMG_TAG=${IMG_TAG:-$version}
  export IMG_REPO IMG_TAG
  say "image $IMG_REPO:$IMG_TAG (make images)"
  make -C "$ROOT" --no-print-directory images IMG="$IMG_REPO:$IMG_TAG" VERSION="$version" >&2
  local tarball="$ROOT/bin/images/${IMG_REPO##*/}-$IMG_TAG.tar"
  [ -f "$tarball" ] || { echo "no image tarball $tarball after make images" >&2; return 1; }
  # The tag stays while the tree is dirty: this digest, as a pod annotation, rolls the
  # operator on a reused cluster when the image's content changed.
  IMG_ID=$(sha256sum "$tarball" | cut -c1-16)
  export IMG_ID
  say "probe image $PROBE_IMAGE"
  mkdir -p "$tools"
  (cd "$ROOT" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$tools/" \
    ./hack/local-cluster/probe ./hack/local-cluster/imagepack)
  "$tools/imagepack" -ref "$PROBE_IMAGE" -out "$tools/probe.tar" "$tools/probe=/probe"
  bash "$ROOT/hack/local-cluster/load-images.sh" "$tarball" "$tools/probe.tar" >/dev/null
  say "images built and loaded in $((SECONDS - t0))s"
}

# product_helm_install installs the chart with the loaded image and waits for the operator.
product_helm_install() {
  local t0=$SECONDS
  say "helm upgrade --install $RELEASE charts/synced-folder -n $OPERATOR_NS"
  "$HELM" upgrade --install "$RELEASE" "$ROOT/charts/synced-folder" --namespace "$OPERATOR_NS" \
    --create-namespace --set image.repository="$IMG_REPO" --set-string image.tag="$IMG_TAG" \
    --set image.pullPolicy=IfNotPresent --set-string operator.podAnnotations.image-id="$IMG_ID" \
    --wait --timeout 5m >&2
  "$KUBECTL" -n "$OPERATOR_NS" rollout status deployment/synced-folder-controller-manager --timeout=5m >&2
  say "operator Ready in $((SECONDS - t0))s"
}
