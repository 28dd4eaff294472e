# Shared settings of the local single-node cluster (sourced by up.sh, down.sh, load-images.sh).
# Everything the cluster writes lives under $STATE except what the runtimes hard-code
# (/run/containerd, /var/run/netns, /var/lib/cni), which down.sh removes when up.sh found them
# absent. Traffic stays on loopback and the cluster's own bridge: the API server and the
# kubelet listen on the bridge address, etcd and the other ports on 127.0.0.1, and a FORWARD
# guard drops anything a pod sends anywhere but the bridge.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${LOCAL_CLUSTER_DIR:-/var/tmp/synced-folder-cluster}
case "$STATE" in
  /*/?*) ;;
  *) echo "local-cluster: LOCAL_CLUSTER_DIR must be an absolute path at least two levels deep" >&2; exit 2 ;;
esac
KUBE_VERSION=${KUBE_VERSION:-1.37.1}
COREDNS_VERSION=${COREDNS_VERSION:-1.15.0}
BRIDGE=sfcluster0
POD_CIDR=10.244.0.0/24
GATEWAY=10.244.0.1 # the bridge address: API server, kubelet and node IP
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local
NODE_NAME=synced-folder-node
ETCD_PORT=23790
ETCD_PEER_PORT=23800
API_PORT=6443
PAUSE_IMAGE=localhost/synced-folder/pause:v1
COREDNS_IMAGE=localhost/synced-folder/coredns:v$COREDNS_VERSION
SOCK=$STATE/containerd/containerd.sock
KUBECONFIG_ADMIN=$STATE/kubeconfig
KUBECTL=$ROOT/bin/kube/v$KUBE_VERSION/kubectl
TOOLS=$ROOT/bin/local-cluster
# Sysctls the kubelet, kube-proxy or up.sh may change; down.sh writes back the recorded values.
SYSCTLS="net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
kernel.keys.root_maxbytes net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
net.netfilter.nf_conntrack_tcp_timeout_close_wait net.ipv4.conf.all.route_localnet"
# Directories outside $STATE that containerd, CNI or the kubelet create on their own.
HOST_DIRS="/run/containerd /var/run/netns /run/netns /var/lib/cni /var/lib/kubelet /opt/containerd /etc/cni"
# Components in start order; down.sh stops them in reverse.
COMPONENTS="etcd kube-apiserver containerd kube-controller-manager kube-scheduler kubelet kube-proxy local-provisioner"

log() { echo "local-cluster: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# pid_of NAME prints the pid of a running component started by up.sh, checking that the
# process still is ours (its command line names $STATE) so a recycled pid is never signalled.
pid_of() {
  local f="$STATE/pids/$1.pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$STATE" || return 1
  echo "$pid"
}

kubectl_() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
