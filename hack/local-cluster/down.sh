#!/usr/bin/env bash
# Stops the local cluster and restores the host: kills every pod and component, writes back the
# sysctls up.sh recorded, unmounts what the kubelet and containerd mounted, deletes the KUBE-*,
# CNI-* and SFCLUSTER-* iptables chains, the bridge, the kubepods cgroups and every directory
# the cluster created. Idempotent: safe to run twice, or after a half-finished up.sh.
#   hack/local-cluster/down.sh [--keep-logs DIR]   (copies the component logs to DIR first)
set -uo pipefail
# shellcheck source=hack/local-cluster/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "needs root"
keep=""
if [ "${1:-}" = --keep-logs ]; then
  keep=${2:?--keep-logs needs a directory}
fi
if [ -n "$keep" ] && [ -d "$STATE/logs" ]; then
  mkdir -p "$keep" && cp -a "$STATE/logs/." "$keep/" && log "logs kept in $keep"
fi

# alive PID: the process exists and is not a zombie (this machine's init reaps orphans only
# every couple of seconds, and up.sh's components are orphans).
alive() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# stop NAME: SIGTERM, then SIGKILL after 10 s.
stop() {
  local pid i
  pid=$(pid_of "$1") || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  log "$1 ignored SIGTERM for 10s: killing it"
  kill -KILL "$pid" 2>/dev/null
  sleep 0.2
}

# 1. Nothing may restart pods while they are taken down.
for c in local-provisioner kube-proxy kubelet kube-scheduler kube-controller-manager; do stop "$c"; done

# 2. Every container and sandbox, through containerd while it still runs.
if [ -S "$SOCK" ] && pid_of containerd >/dev/null; then
  ctr_() { timeout 30 ctr -a "$SOCK" -n k8s.io "$@"; }
  for t in $(ctr_ task ls -q 2>/dev/null); do ctr_ task kill -a -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 0.5
  for t in $(ctr_ task ls -q 2>/dev/null); do ctr_ task delete -f "$t" >/dev/null 2>&1; done
  for c in $(ctr_ container ls -q 2>/dev/null); do ctr_ container delete "$c" >/dev/null 2>&1; done
fi
# Whatever still runs in the pods' cgroups (a task containerd lost) and the shims of our
# containerd (their command line names its socket).
for f in /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods /sys/fs/cgroup/cpu/kubepods; do
  [ -d "$f" ] && find "$f" -name tasks -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
done
for p in $(pgrep -f containerd-shim 2>/dev/null); do
  tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$SOCK" && kill -KILL "$p" 2>/dev/null
done

# 3. The rest of the components.
for c in containerd kube-apiserver etcd; do stop "$c"; done

# 4. Mounts under the state dir and the runtimes' fixed dirs, deepest first.
for _ in 1 2 3; do
  mapfile -t mnts < <(awk '{print $2}' /proc/self/mounts | sed 's/\\040/ /g' |
    grep -E "^($STATE|/run/containerd|/var/run/netns|/run/netns|/var/lib/kubelet)(/|$)" | sort -r)
  [ ${#mnts[@]} -eq 0 ] && break
  for m in "${mnts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
done

# 5. iptables: drop the jumps from built-in chains, then flush and delete our chains.
for ipt in iptables ip6tables; do
  command -v "$ipt-save" >/dev/null || continue
  for table in filter nat mangle raw; do
    "$ipt" -t "$table" -S >/dev/null 2>&1 || continue
    "$ipt-save" -t "$table" 2>/dev/null | grep -E '^-A (PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) .*-j (KUBE-|CNI-|SFCLUSTER-)' |
      sed 's/^-A /-D /' | while read -r rule; do eval "$ipt -t $table $rule" 2>/dev/null; done
    chains=$("$ipt-save" -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE-\|CNI-\|SFCLUSTER-\)[^ ]*\) .*/\1/p')
    for ch in $chains; do "$ipt" -t "$table" -F "$ch" 2>/dev/null; done
    for ch in $chains; do "$ipt" -t "$table" -X "$ch" 2>/dev/null; done
  done
done

# iptables-nft created these tables on first use: drop the ones that were absent before up.sh
# and are now empty (no rules, every policy ACCEPT), so iptables-save reads as it did.
if [ -f "$STATE/nft-tables.before" ] && command -v nft >/dev/null; then
  nft list tables 2>/dev/null | while read -r _ fam name; do
    grep -qxF "table $fam $name" "$STATE/nft-tables.before" && continue
    case "$fam" in ip) ipt=iptables ;; ip6) ipt=ip6tables ;; *) continue ;; esac
    dump=$("$ipt-save" -t "$name" 2>/dev/null) || continue
    echo "$dump" | grep -q '^-A ' && continue
    echo "$dump" | grep '^:' | grep -qv ' ACCEPT ' && continue
    nft delete table "$fam" "$name" 2>/dev/null
  done
fi

# 6. Network: the pods' veths died with their namespaces; the bridge (and its routes) goes now.
for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  ip link del "$v" 2>/dev/null
done
ip link del "$BRIDGE" 2>/dev/null
command -v conntrack >/dev/null && conntrack -D -s "$POD_CIDR" >/dev/null 2>&1
command -v conntrack >/dev/null && conntrack -D -d "$POD_CIDR" >/dev/null 2>&1

# 7. Sysctls as they were before up.sh.
if [ -f "$STATE/sysctl.before" ]; then
  while IFS='=' read -r k v; do
    [ -n "$k" ] || continue
    [ "$(sysctl -n "$k" 2>/dev/null | tr '\t' ' ')" = "$v" ] || sysctl -qw "$k=$v" 2>/dev/null || log "cannot restore $k=$v"
  done <"$STATE/sysctl.before"
fi

# 8. kubepods cgroups (children first).
for d in /sys/fs/cgroup/*/kubepods; do
  [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 9. Directories: ours, and the fixed ones that did not exist before up.sh.
if [ -f "$STATE/dirs.before" ]; then
  for d in $HOST_DIRS; do
    grep -qxF "$d" "$STATE/dirs.before" || rm -rf "$d"
  done
fi
rm -rf "$STATE"
[ -d "$STATE" ] && log "could not remove $STATE (busy mounts?)"
log "down"
exit 0
