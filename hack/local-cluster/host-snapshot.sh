#!/usr/bin/env bash
# Writes the host state a local cluster touches into DIR, so `diff -r BEFORE AFTER` around
# up.sh + down.sh shows whether the teardown restored the host:
#   hack/local-cluster/host-snapshot.sh DIR
# sysctls (less the counters that move on their own), mounts, iptables/ip6tables rules and
# chains, network links and routes, the directories the cluster may create, and kubepods
# cgroups.
set -euo pipefail
out=${1:?usage: $0 DIR}
mkdir -p "$out"
# Counters and random values change without the cluster touching them.
sysctl -a 2>/dev/null | grep -vE '^(fs\.(dentry-state|inode-nr|inode-state|file-nr|aio-nr|quota)|kernel\.(random|ns_last_pid|pty\.nr|sched_domain)|net\.netfilter\.nf_conntrack_count|fs\.fscache|net\.ipv6\.conf\.[^ ]*\.stable_secret|dev\.cdrom)' | sort >"$out/sysctl"
awk '{print $2, $3}' /proc/self/mounts | sort >"$out/mounts"
for t in iptables ip6tables; do
  command -v "$t-save" >/dev/null || continue
  "$t-save" 2>/dev/null | grep -vE '^#|^:.*\[[0-9]+:[0-9]+\]$' | sed 's/\[[0-9]*:[0-9]*\]//' >"$out/$t" || true
  "$t-save" 2>/dev/null | sed -n 's/^:\([^ ]*\) .*/\1/p' | sort >"$out/$t-chains" || true
done
ip -o link show | sed 's/^[0-9]*: //; s/ qlen.*//; s/state [A-Z]*//' | awk '{print $1}' | sort >"$out/links"
ip route show table all 2>/dev/null | sort >"$out/routes"
for d in /var/lib/kubelet /var/lib/cni /run/containerd /var/run/netns /run/netns /opt/containerd /etc/cni /var/tmp/synced-folder-cluster; do
  [ -e "$d" ] && echo "$d"
done >"$out/dirs"
ls -d /sys/fs/cgroup/*/kubepods* 2>/dev/null >"$out/cgroups" || true
