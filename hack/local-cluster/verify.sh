#!/usr/bin/env bash
# Checks that the running local cluster does what the project's end-to-end tests rely on, and
# prints how long each step took:
#   1. the node is Ready;
#   2. a pod from a locally loaded image (hack/local-cluster/probe) runs;
#   3. a ClusterIP Service routes through kube-proxy;
#   4. CoreDNS resolves <svc>.<ns>.svc.cluster.local from a pod (and the Service answers by name);
#   5. a StatefulSet's volumeClaimTemplate binds and its data survives the pod's deletion;
#   6. deleting the namespace releases and reclaims the volume.
# Exits non-zero at the first failed check. Uses namespace local-cluster-verify.
set -euo pipefail
# shellcheck source=hack/local-cluster/lib.sh
. "$(dirname "$0")/lib.sh"

NS=local-cluster-verify
PROBE_IMAGE=localhost/synced-folder/probe:v1
k() { kubectl_ -n "$NS" "$@"; }
t=$(date +%s.%N)
step() {
  local now
  now=$(date +%s.%N)
  log "ok: $1 ($(awk -v a="$t" -v b="$now" 'BEGIN{printf "%.1fs", b-a}'))"
  t=$now
}
fail() {
  log "FAILED: $*"
  k get pods,svc,pvc -o wide >&2 || true
  exit 1
}

kubectl_ wait --for=condition=Ready "node/$NODE_NAME" --timeout=60s >/dev/null || fail "node not Ready"
step "node $NODE_NAME Ready"

(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$TOOLS/probe" ./hack/local-cluster/probe)
"$TOOLS/imagepack" -ref "$PROBE_IMAGE" -out "$TOOLS/probe.tar" "$TOOLS/probe=/probe"
bash "$(dirname "$0")/load-images.sh" "$TOOLS/probe.tar" >/dev/null 2>&1
step "probe image built and loaded"

kubectl_ delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
kubectl_ create namespace "$NS" >/dev/null
k apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: $PROBE_IMAGE, imagePullPolicy: Never, command: [/probe, serve, ":8080"], ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: client, image: $PROBE_IMAGE, imagePullPolicy: Never, command: [/probe, sleep]}
YAML
k wait --for=condition=Ready pod/client --timeout=120s >/dev/null || fail "client pod not Ready"
step "pod from a locally loaded image Running"
k rollout status deployment/web --timeout=120s >/dev/null || fail "web Deployment not Ready"

ip=$(k get svc web -o jsonpath='{.spec.clusterIP}')
pods=$(k get pods -l app=web -o jsonpath='{.items[*].metadata.name}')
seen=""
for _ in $(seq 1 20); do
  h=$(k exec client -- /probe get "http://$ip/") || fail "GET http://$ip/ through the ClusterIP"
  case " $seen " in *" $h "*) ;; *) seen="$seen $h" ;; esac
done
for p in $pods; do
  case " $seen " in *" $p "*) ;; *) fail "ClusterIP $ip never reached pod $p (reached:$seen)" ;; esac
done
step "ClusterIP $ip routes to both endpoints ($seen )"

name="web.$NS.svc.$CLUSTER_DOMAIN"
got=$(k exec client -- /probe lookup "$name") || fail "look up $name"
[ "$got" = "$ip" ] || fail "$name resolved to '$got', want $ip"
k exec client -- /probe get "http://web/" >/dev/null || fail "GET http://web/ (search path)"
if k exec client -- /probe lookup example.com >/dev/null 2>&1; then fail "example.com resolved: DNS must not leave the cluster"; fi
step "DNS: $name -> $got, short name works, outside names refused"

k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: data}
spec: {clusterIP: None, selector: {app: data}, ports: [{port: 8080}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: data}
spec:
  serviceName: data
  replicas: 1
  selector: {matchLabels: {app: data}}
  template:
    metadata: {labels: {app: data}}
    spec:
      terminationGracePeriodSeconds: 1
      securityContext: {runAsUser: 65532, runAsGroup: 65532}
      containers:
      - name: data
        image: $PROBE_IMAGE
        imagePullPolicy: Never
        command: [/probe, sleep]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
YAML
k wait --for=condition=Ready pod/data-0 --timeout=120s >/dev/null || fail "data-0 not Ready"
[ "$(k get pvc data-data-0 -o jsonpath='{.status.phase}')" = Bound ] || fail "claim data-data-0 not Bound"
step "StatefulSet claim Bound, pod Ready (as uid 65532)"
stamp="kept $(date +%s%N)"
k exec data-0 -- /probe write /data/stamp "$stamp" || fail "write to the volume"
uid=$(k get pod data-0 -o jsonpath='{.metadata.uid}')
k delete pod data-0 --wait=true >/dev/null
for _ in $(seq 1 600); do
  nu=$(k get pod data-0 -o jsonpath='{.metadata.uid}' 2>/dev/null || true)
  [ -n "$nu" ] && [ "$nu" != "$uid" ] && break
  sleep 0.2
done
k wait --for=condition=Ready pod/data-0 --timeout=120s >/dev/null || fail "data-0 not back"
got=$(k exec data-0 -- /probe cat /data/stamp) || fail "read the volume after the pod's deletion"
[ "$got" = "$stamp" ] || fail "volume holds '$got', want '$stamp'"
step "data kept across pod deletion"

pv=$(k get pvc data-data-0 -o jsonpath='{.spec.volumeName}')
kubectl_ delete namespace "$NS" --wait=true --timeout=120s >/dev/null || fail "delete namespace"
for _ in $(seq 1 150); do
  kubectl_ get pv "$pv" >/dev/null 2>&1 || break
  sleep 0.2
done
kubectl_ get pv "$pv" >/dev/null 2>&1 && fail "volume $pv not reclaimed"
[ ! -e "$STATE/volumes/$pv" ] || fail "volume dir of $pv left behind"
step "namespace deleted, volume $pv reclaimed"
log "all checks passed"
