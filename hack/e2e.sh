#!/usr/bin/env bash
# `make e2e`: the product end to end on a real single-node cluster on this machine.
#   1. brings the local cluster up (hack/local-cluster/up.sh; reuses a running one),
#   2. builds and loads the product image and the probe image,
#   3. starts a throwaway PostgreSQL listening on loopback and on the cluster bridge
#      (10.244.0.1, which pods reach) with password auth for the pod network,
#   4. runs the Go suite test/e2e/cluster (build tag e2e): helm install, SyncedFolders on the
#      embedded database and on PostgreSQL, injected agents, sync, conflicts, deletes, server
#      and operator restarts, access control and audit, Prometheus (Debian) scraping the server,
#   5. always tears the cluster down; on failure first keeps every component's log and the
#      operator's, servers' and agents' pod logs in a folder it prints.
# In CI (CI=true) a missing dependency fails the run; elsewhere the suite may skip a check whose
# tool is missing (it says so). Needs root. Knobs: E2E_KEEP_CLUSTER=1 leaves the cluster up
# (the next run reuses it), E2E_LOGS=DIR where failure logs go (default tmp/e2e-logs-<time>),
# E2E_GOTESTFLAGS extra `go test` flags (e.g. -run 'TestCluster/chart').
set -euo pipefail
# shellcheck source=hack/demo-lib.sh
. "$(dirname "$0")/demo-lib.sh"
# shellcheck source=hack/local-cluster/lib.sh
. "$ROOT/hack/local-cluster/lib.sh"
cd "$ROOT"

[ "$(id -u)" = 0 ] || { echo "e2e: needs root (the local cluster runs containerd and changes iptables)" >&2; exit 1; }
LOGS=${E2E_LOGS:-$ROOT/tmp/e2e-logs-$(date +%Y%m%d-%H%M%S)}
work=$(mktemp -d -t synced-folder-e2e.XXXXXX)
chmod 755 "$work"
t_start=$SECONDS

# collect_pod_logs writes every pod's logs (all containers, and the previous instance of a
# restarted one), the objects and the events into $LOGS/cluster.
collect_pod_logs() {
  local d="$LOGS/cluster" ns pod
  mkdir -p "$d"
  [ -n "${KUBECTL:-}" ] && [ -f "$KUBECONFIG_ADMIN" ] || return 0
  local kc=("$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout=20s)
  "${kc[@]}" get nodes,all,syncedfolders,pvc,pv,secrets,configmaps,servicemonitors,endpointslices \
    -A -o wide >"$d/objects.txt" 2>&1 || true
  "${kc[@]}" get syncedfolders -A -o yaml >"$d/syncedfolders.yaml" 2>&1 || true
  "${kc[@]}" get events -A --sort-by=.lastTimestamp >"$d/events.txt" 2>&1 || true
  "${kc[@]}" get mutatingwebhookconfigurations -o yaml >"$d/webhooks.yaml" 2>&1 || true
  "${kc[@]}" get pods -A --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name 2>/dev/null |
    while read -r ns pod; do
      "${kc[@]}" -n "$ns" describe pod "$pod" >"$d/$ns.$pod.describe.txt" 2>&1 || true
      "${kc[@]}" -n "$ns" logs "$pod" --all-containers --prefix --timestamps >"$d/$ns.$pod.log" 2>&1 || true
      "${kc[@]}" -n "$ns" logs "$pod" --all-containers --prefix --timestamps --previous \
        >"$d/$ns.$pod.previous.log" 2>/dev/null || rm -f "$d/$ns.$pod.previous.log"
    done
}

finish() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" != 0 ]; then
    echo "e2e: FAILED (exit $rc); collecting logs into $LOGS" >&2
    mkdir -p "$LOGS"
    collect_pod_logs
    [ -f "$work/pg/log" ] && cp "$work/pg/log" "$LOGS/postgres.log"
    [ -d "$work/artifacts" ] && cp -a "$work/artifacts/." "$LOGS/" 2>/dev/null
  fi
  bash "$ROOT/hack/postgres.sh" stop "$work/pg" >/dev/null 2>&1 || true
  if [ -n "${E2E_KEEP_CLUSTER:-}" ]; then
    echo "e2e: cluster left up (E2E_KEEP_CLUSTER): KUBECONFIG=$KUBECONFIG_ADMIN; remove it with make demo-down" >&2
  elif [ "$rc" != 0 ]; then
    bash "$ROOT/hack/local-cluster/down.sh" --keep-logs "$LOGS/components" >&2 || true
  else
    bash "$ROOT/hack/local-cluster/down.sh" >&2 || true
  fi
  rm -rf "$work"
  if [ "$rc" != 0 ]; then
    echo "e2e: FAILED after $((SECONDS - t_start))s; logs: $LOGS" >&2
  else
    echo "e2e: passed in $((SECONDS - t_start))s" >&2
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

# --- Dependencies: Debian's Prometheus (run by the suite on a loopback port, never as a service).
if ! command -v prometheus >/dev/null; then
  say "installing prometheus from Debian (no recommends; policy-rc.d keeps services from starting)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } >&2; then
    [ "${CI:-}" = true ] && { echo "e2e: cannot install prometheus (CI: a missing dependency is a failure)" >&2; exit 1; }
    echo "e2e: prometheus missing; the suite skips the scrape check" >&2
  fi
fi
PROMETHEUS=$(command -v prometheus || true)
export PROMETHEUS

product_cluster_up
t_cluster=$SECONDS
product_images

# --- PostgreSQL on loopback and the bridge: pods reach the host at $GATEWAY.
say "PostgreSQL on 127.0.0.1 and $GATEWAY (password auth for $POD_CIDR)"
PG_LISTEN_ADDRESSES="127.0.0.1,$GATEWAY" bash "$ROOT/hack/postgres.sh" start "$work/pg" >/dev/null
E2E_PG_PORT=$(cat "$work/pg/port")
E2E_PG_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
echo "host all all $POD_CIDR scram-sha-256" >>"$work/pg/data/pg_hba.conf"
pgbin=$(dirname "$(find /usr/lib/postgresql -path '*/bin/pg_ctl' | sort | head -1)")
runuser -u postgres -- "$pgbin/psql" -q -h "$work/pg" -p "$E2E_PG_PORT" -U postgres -d postgres \
  -c "ALTER ROLE postgres PASSWORD '$E2E_PG_PASSWORD'" >&2
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg/data" reload >/dev/null
E2E_PG_HOST=$GATEWAY
export E2E_PG_HOST E2E_PG_PORT E2E_PG_PASSWORD

mkdir -p "$work/artifacts"
export E2E_ARTIFACTS="$work/artifacts" E2E_CHART="$ROOT/charts/synced-folder"
export E2E_SERVICEMONITOR_CRD="$ROOT/config/test/crds/monitoring.coreos.com_servicemonitors.yaml"
export E2E_OPERATOR_NS="$OPERATOR_NS"
say "go test -tags e2e ./test/e2e/cluster (cluster up in $((t_cluster - t_start))s)"
t_test=$SECONDS
set +e
# shellcheck disable=SC2086 # E2E_GOTESTFLAGS is a list of flags
go test -tags e2e -count=1 -timeout 20m -v ./test/e2e/cluster ${E2E_GOTESTFLAGS:-} 2>&1 | tee "$work/artifacts/go-test.log"
rc=${PIPESTATUS[0]}
set -e
say "suite finished in $((SECONDS - t_test))s (exit $rc)"
exit "$rc"
