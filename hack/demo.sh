#!/usr/bin/env bash
# `make demo`: the real product on a real single-node cluster on this machine. Brings the local
# cluster up (hack/local-cluster), builds and loads the image, installs the Helm chart, applies
# the embedded-database SyncedFolder sample, starts two annotated pods on it, shows a file
# written in one appearing in the other, and prints what to type to try it by hand.
#   hack/demo.sh        (make demo)       needs root; the first run builds Kubernetes
#   hack/demo.sh down   (make demo-down)  removes everything and restores the host
set -euo pipefail
# shellcheck source=hack/demo-lib.sh
. "$(dirname "$0")/demo-lib.sh"

DEMO_NS=${DEMO_NS:-synced-folder-demo}
FOLDER=team-docs # config/samples/sync_v1alpha1_syncedfolder.yaml

if [ "${1:-}" = down ]; then
  exec bash "$ROOT/hack/local-cluster/down.sh"
fi
[ $# -eq 0 ] || { echo "usage: $0 [down]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "demo: needs root (the local cluster runs containerd and changes iptables)" >&2; exit 1; }

t0=$SECONDS
product_cluster_up
product_images
product_helm_install
k() { "$KUBECTL" -n "$DEMO_NS" "$@"; }

say "namespace $DEMO_NS, SyncedFolder $FOLDER (config/samples, embedded database)"
"$KUBECTL" create namespace "$DEMO_NS" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
k apply -f "$ROOT/config/samples/sync_v1alpha1_syncedfolder.yaml" >&2
k wait --for=condition=Ready "syncedfolder/$FOLDER" --timeout=5m >&2

say "two pods annotated with sync.syncedfolder.io/folder=$FOLDER (the webhook injects the agent)"
for p in demo-a demo-b; do
  k apply -f - >&2 <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $p
  annotations:
    sync.syncedfolder.io/folder: $FOLDER
    sync.syncedfolder.io/volume: shared
spec:
  terminationGracePeriodSeconds: 5
  securityContext: {runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, runAsNonRoot: true}
  containers:
  - name: app
    image: $PROBE_IMAGE
    imagePullPolicy: Never
    # Lists the folder once at start (after the agent's first sync), then sleeps.
    command: [/probe, sleep, /data]
    volumeMounts: [{name: shared, mountPath: /data}]
  volumes:
  - name: shared
    emptyDir: {}
YAML
done
k wait --for=condition=Ready pod/demo-a pod/demo-b --timeout=5m >&2

say "writing hello.txt in demo-a"
k exec demo-a -c app -- /probe write /data/hello.txt "hello from demo-a" >&2
ok=""
for _ in $(seq 1 60); do
  if out=$(k exec demo-b -c app -- /probe cat /data/hello.txt 2>/dev/null) && [ "$out" = "hello from demo-a" ]; then
    ok=1
    break
  fi
  sleep 0.5
done
[ -n "$ok" ] || { echo "demo: hello.txt did not reach demo-b within 30s" >&2; k get pods -o wide >&2; exit 1; }
say "demo-b sees it: $out"
k get syncedfolders >&2
say "demo ready in $((SECONDS - t0))s"

kc="$KUBECTL --kubeconfig $KUBECONFIG -n $DEMO_NS"
cat <<EOF

The real product runs on a single-node cluster on this machine. Try it:

  alias k='$kc'
  k get syncedfolders                      # the folder, its server endpoint and live figures
  k get pods                               # demo-a and demo-b, each 2/2 (app + the injected agent)
  k exec demo-a -c app -- /probe write /data/notes.txt "written in demo-a"
  k exec demo-b -c app -- /probe cat /data/notes.txt     # there within a second
  k exec demo-b -c app -- /probe rm /data/notes.txt
  k exec demo-a -c app -- /probe ls /data                # gone from demo-a too
  k logs demo-a -c syncagent -f            # the agent's log (JSON)
  k logs $FOLDER-0 -f                    # the server's log

Remove everything and restore the host: make demo-down
EOF
