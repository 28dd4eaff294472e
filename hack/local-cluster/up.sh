#!/usr/bin/env bash
# Starts a real single-node Kubernetes cluster on this machine and prints its kubeconfig path
# (the only line on stdout; progress goes to stderr and component logs to $STATE/logs):
#   KUBECONFIG=$(bash hack/local-cluster/up.sh)
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and CoreDNS
# are built from the Go module proxy (hack/kube-build.sh, cached under bin/kube); containerd,
# runc, the CNI plugins, iptables and conntrack come from Debian. No registry is reachable, so
# the pause and CoreDNS images are packed locally and every pod must use a loaded image
# (hack/local-cluster/load-images.sh) with imagePullPolicy Never or IfNotPresent.
# Needs root. Running it again while the cluster is up only prints the path. down.sh undoes
# everything, including the sysctls recorded here before anything starts.
set -euo pipefail
# shellcheck source=hack/local-cluster/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "needs root (containerd, iptables, mounts)"

if [ -f "$STATE/up.done" ] && pid_of kube-apiserver >/dev/null && pid_of kubelet >/dev/null &&
  kubectl_ get --raw /readyz >/dev/null 2>&1; then
  log "already up"
  echo "$KUBECONFIG_ADMIN"
  exit 0
fi
# Whatever a crashed or half-finished run left behind (state dir, bridge, iptables chains) goes
# first; down.sh is idempotent and cheap when there is nothing to do.
if [ -e "$STATE" ] || ip link show "$BRIDGE" >/dev/null 2>&1; then
  log "a previous cluster left state behind: tearing it down first"
  bash "$(dirname "$0")/down.sh" >&2
fi

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1fs", b-a}'; }

# --- Binaries --------------------------------------------------------------------------------
install_debian() {
  local missing=() p
  for p in containerd:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
    iptables:iptables conntrack:conntrack nft:nftables; do
    local what=${p%%:*} pkg=${p#*:}
    if [ "${what#/}" != "$what" ]; then [ -x "$what" ] || missing+=("$pkg"); else command -v "$what" >/dev/null || missing+=("$pkg"); fi
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]} from Debian"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
install_debian

log "building Kubernetes v$KUBE_VERSION, etcd and CoreDNS v$COREDNS_VERSION (cached under bin/kube)"
built=$(bash "$ROOT/hack/kube-build.sh" etcd kube-apiserver kube-controller-manager \
  kube-scheduler kubelet kube-proxy kubectl coredns)
mapfile -t bins <<<"$built"
ETCD=${bins[0]} APISERVER=${bins[1]} KCM=${bins[2]} SCHEDULER=${bins[3]} KUBELET=${bins[4]}
PROXY=${bins[5]} COREDNS=${bins[7]}
mkdir -p "$TOOLS"
(cd "$ROOT" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$TOOLS/" \
  ./hack/local-cluster/imagepack ./hack/local-cluster/pause ./hack/local-cluster/provisioner >&2)
"$TOOLS/imagepack" -ref "$PAUSE_IMAGE" -out "$TOOLS/pause.tar" "$TOOLS/pause=/pause"
"$TOOLS/imagepack" -ref "$COREDNS_IMAGE" -out "$TOOLS/coredns.tar" "$COREDNS=/coredns"
log "binaries ready ($(elapsed))"

# --- Host state recorded before anything changes it -----------------------------------------
mkdir -p "$STATE"/{pids,logs,pki,etc,cni/net.d,cni/ipam,containerd,kubelet,volumes}
for s in $SYSCTLS; do
  v=$(sysctl -n "$s" 2>/dev/null) && printf '%s=%s\n' "$s" "$(echo "$v" | tr '\t' ' ')"
done >"$STATE/sysctl.before"
for d in $HOST_DIRS; do [ -e "$d" ] && echo "$d"; done >"$STATE/dirs.before" || true
# iptables-nft creates its tables on first use; down.sh deletes the ones that were absent.
nft list tables >"$STATE/nft-tables.before" 2>/dev/null || true

# --- Certificates and kubeconfigs (openssl) ---------------------------------------------------
pki=$STATE/pki
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 3650 \
  -subj "/CN=synced-folder-local-ca" 2>/dev/null
# cert NAME SUBJECT [SANS]: a key pair signed by the CA, usable as server and client.
cert() {
  local n=$1 subj=$2 sans=${3:-}
  openssl req -newkey rsa:2048 -nodes -keyout "$pki/$n.key" -out "$pki/$n.csr" -subj "$subj" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -z "$sans" ] || echo "subjectAltName=$sans"
  } >"$pki/$n.ext"
  openssl x509 -req -in "$pki/$n.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/$n.crt" -days 3650 -extfile "$pki/$n.ext" 2>/dev/null
  rm -f "$pki/$n.csr" "$pki/$n.ext"
}
cert apiserver "/CN=kube-apiserver" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,IP:$GATEWAY,IP:$API_SERVICE_IP,IP:127.0.0.1"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert kubelet "/CN=$NODE_NAME" "DNS:$NODE_NAME,IP:$GATEWAY"
cert admin "/O=system:masters/CN=kubernetes-admin"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
cert kube-proxy "/CN=system:kube-proxy"
cert node "/O=system:nodes/CN=system:node:$NODE_NAME"
cert provisioner "/O=system:masters/CN=synced-folder-local-provisioner"
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
chmod 600 "$pki"/*.key

# kubeconfig NAME CERT: a kubeconfig for the user of pki/CERT.{crt,key}.
kubeconfig() {
  cat >"$STATE/etc/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$GATEWAY:$API_PORT
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$pki/$2.crt")
    client-key-data: $(base64 -w0 "$pki/$2.key")
contexts:
- name: synced-folder-local
  context: {cluster: local, user: $2}
current-context: synced-folder-local
KC
  chmod 600 "$STATE/etc/$1.kubeconfig"
}
for c in admin controller-manager scheduler kube-proxy provisioner; do kubeconfig "$c" "$c"; done
kubeconfig kubelet node
cp "$STATE/etc/admin.kubeconfig" "$KUBECONFIG_ADMIN"

# --- Network: bridge, routes, sysctls, traffic guard -----------------------------------------
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
ip link add "$BRIDGE" type bridge
ip addr add "$GATEWAY/${POD_CIDR#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up
# Host processes (the API server calling webhooks, tests) reach ClusterIPs through the bridge;
# an unknown ClusterIP then dies on the bridge instead of following the default route out.
ip route add "$SERVICE_CIDR" dev "$BRIDGE" src "$GATEWAY"
# Pods talk to each other and to the host, never past it.
iptables -N SFCLUSTER-GUARD
iptables -A SFCLUSTER-GUARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
iptables -A SFCLUSTER-GUARD ! -i "$BRIDGE" -o "$BRIDGE" -j DROP
iptables -I FORWARD 1 -j SFCLUSTER-GUARD
: >"$STATE/resolv.conf" # pods with dnsPolicy Default get no upstream resolver
cat >"$STATE/cni/net.d/10-synced-folder.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "synced-folder",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI

# start NAME CMD...: runs a component detached, its log in logs/NAME.log, its pid in pids/.
start() {
  local n=$1
  shift
  setsid "$@" </dev/null >"$STATE/logs/$n.log" 2>&1 &
  echo $! >"$STATE/pids/$n.pid"
}
# wait_for WHAT SECONDS CMD...: polls CMD every 0.2 s.
wait_for() {
  local what=$1 limit=$2 i
  shift 2
  for ((i = 0; i < limit * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what not ready after ${limit}s (logs in $STATE/logs)"
}

# --- Control plane ----------------------------------------------------------------------------
start etcd "$ETCD" --name local --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" \
  --quota-backend-bytes 2147483648 --unsafe-no-fsync
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver "$APISERVER" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address "$GATEWAY" --advertise-address "$GATEWAY" --secure-port "$API_PORT" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP \
  --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --allow-privileged=true --profiling=false
wait_for kube-apiserver 120 kubectl_ get --raw /readyz
log "control plane answering ($(elapsed))"

cat >"$STATE/containerd/config.toml" <<TOML
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj and fails otherwise.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Pod network namespaces under $STATE instead of /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
TOML
start containerd containerd --config "$STATE/containerd/config.toml"
wait_for containerd 30 ctr -a "$SOCK" version
bash "$(dirname "$0")/load-images.sh" "$TOOLS/pause.tar" "$TOOLS/coredns.tar" >&2

start kube-controller-manager "$KCM" --kubeconfig "$STATE/etc/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$STATE/etc/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$STATE/etc/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false --profiling=false
start kube-scheduler "$SCHEDULER" --kubeconfig "$STATE/etc/scheduler.kubeconfig" \
  --authentication-kubeconfig "$STATE/etc/scheduler.kubeconfig" \
  --authorization-kubeconfig "$STATE/etc/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false

# --- Node -------------------------------------------------------------------------------------
cat >"$STATE/etc/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $GATEWAY
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
# cgroup v1 without systemd as init.
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://$SOCK
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $STATE/resolv.conf
failSwapOn: false
# Loaded images cannot be pulled again: never garbage-collect them, never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
YAML
start kubelet "$KUBELET" --config "$STATE/etc/kubelet.yaml" --kubeconfig "$STATE/etc/kubelet.kubeconfig" \
  --root-dir "$STATE/kubelet" --hostname-override "$NODE_NAME" --node-ip "$GATEWAY" --v 1

cat >"$STATE/etc/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $STATE/etc/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$GATEWAY/32"]
# Leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
YAML
start kube-proxy "$PROXY" --config "$STATE/etc/kube-proxy.yaml"

wait_for "node registration" 120 kubectl_ get node "$NODE_NAME"
kubectl_ wait --for=condition=Ready "node/$NODE_NAME" --timeout=120s >&2
log "node Ready ($(elapsed))"

# --- Cluster add-ons: CoreDNS and the default StorageClass -----------------------------------
start local-provisioner "$TOOLS/provisioner" -kubeconfig "$STATE/etc/provisioner.kubeconfig" \
  -dir "$STATE/volumes"
sed -e "s#@COREDNS_IMAGE@#$COREDNS_IMAGE#g" -e "s#@DNS_SERVICE_IP@#$DNS_SERVICE_IP#g" \
  -e "s#@CLUSTER_DOMAIN@#$CLUSTER_DOMAIN#g" "$(dirname "$0")/coredns.yaml" | kubectl_ apply -f - >&2
kubectl_ apply -f "$(dirname "$0")/storage.yaml" >&2
kubectl_ -n kube-system rollout status deployment/coredns --timeout=120s >&2
touch "$STATE/up.done"
log "cluster up ($(elapsed)); kubectl: $KUBECTL --kubeconfig $KUBECONFIG_ADMIN"
echo "$KUBECONFIG_ADMIN"
