#!/usr/bin/env bash
# Builds pinned Kubernetes-ecosystem commands from the Go module proxy and caches them under
# bin/kube/ (nothing can be downloaded from release buckets on these machines; see
# /work/shared/INFRA.md). Prints the path of each requested command, one per line, in order.
#   hack/kube-build.sh CMD...
#     kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl
#                     -> bin/kube/v$KUBE_VERSION/<cmd>   (k8s.io/kubernetes, one shared module)
#     etcd            -> bin/kube/etcd-v$ETCD_VERSION/etcd (go.etcd.io/etcd/server/v3)
#     coredns         -> bin/kube/coredns-v$COREDNS_VERSION/coredns (github.com/coredns/coredns)
# Cached commands cost nothing; cold: kube-apiserver ~7 min, kubelet ~3 min, the others ~1 min
# each on an idle 2-core machine. Progress goes to stderr, only paths to stdout.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-${ENVTEST_K8S_VERSION:-1.37.1}}
ETCD_VERSION=${ETCD_VERSION:-${ENVTEST_ETCD_VERSION:-3.5.35}}
COREDNS_VERSION=${COREDNS_VERSION:-1.15.0}

[ $# -gt 0 ] || { echo "usage: $0 kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl|etcd|coredns..." >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/bin/kube-build"
mkdir -p "$build"

log() { echo "kube-build: $*" >&2; }

# locked NAME CMD... runs CMD holding bin/kube-build-NAME.lock, so concurrent runs wanting the
# same module wait for one build instead of fighting over memory; different modules overlap.
locked() {
  local name=$1
  shift
  (
    flock 8
    "$@"
  ) 8>"$root/bin/kube-build-$name.lock"
}

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 GOWORK=off

kube_cmds="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"

# kube_module writes (once) a throwaway module that requires k8s.io/kubernetes and imports every
# command above. kubernetes' go.mod points the staging modules at ./staging/..., which a
# dependent module cannot follow, so each is replaced by its published v0.x twin.
kube_module() {
  local dir="$build/kubernetes-v$KUBE_VERSION"
  if [ -f "$dir/.tidy" ]; then echo "$dir"; return; fi
  rm -rf "$dir" && mkdir -p "$dir"
  local staging="v0.${KUBE_VERSION#*.}"
  printf 'module kubebuild.local/kubernetes\n\ngo 1.25\n' >"$dir/go.mod"
  local kmod
  kmod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [ -f "$kmod" ] || { log "cannot find go.mod of k8s.io/kubernetes v$KUBE_VERSION"; exit 1; }
  {
    printf 'module kubebuild.local/kubernetes\n\ngo 1.25\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$KUBE_VERSION"
    sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\t\1 => \1 '"$staging"'#p' "$kmod"
    printf ')\n'
  } >"$dir/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    local c
    for c in $kube_cmds; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  } >"$dir/tools.go"
  (cd "$dir" && go mod tidy >&2)
  touch "$dir/.tidy"
  echo "$dir"
}

# build_kube builds the given kubernetes commands in one `go build` so shared packages compile
# once.
build_kube() {
  local out="$root/bin/kube/v$KUBE_VERSION" dir minor pkgs="" c
  dir=$(kube_module)
  minor=${KUBE_VERSION#*.}
  minor=${minor%%.*}
  for c in "$@"; do pkgs="$pkgs k8s.io/kubernetes/cmd/$c"; done
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  local tmp="$out/.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  log "building $* v$KUBE_VERSION in $dir (cold: kube-apiserver ~7 min, kubelet ~3 min)"
  # shellcheck disable=SC2086
  (cd "$dir" && go build -trimpath -ldflags "$ld" -o "$tmp/" $pkgs >&2)
  for c in "$@"; do mv "$tmp/$c" "$out/$c"; done
  rm -rf "$tmp"
}

# build_single builds one command of a module that is not kubernetes: NAME MODULE VERSION PKG.
build_single() {
  local name=$1 mod=$2 version=$3 pkg=$4 out=$5
  local dir="$build/$name-v$version"
  rm -rf "$dir" && mkdir -p "$dir"
  log "building $name v$version in $dir"
  printf 'module kubebuild.local/%s\n\ngo 1.25\n\nrequire %s v%s\n' "$name" "$mod" "$version" >"$dir/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >"$dir/tools.go"
  mkdir -p "$(dirname "$out")"
  (cd "$dir" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$out.tmp" "$pkg" >&2)
  mv "$out.tmp" "$out"
}

# build_coredns builds CoreDNS with only the plugins a cluster DNS needs (CoreDNS's documented
# compile-time plugin selection: a main that sets dnsserver.Directives and imports coremain).
# The stock binary links every cloud SDK (Azure, AWS, DataDog, ...) which would triple the cold
# build; `forward` is left out on purpose: the cluster must never query an upstream resolver.
build_coredns() {
  local out=$1 dir="$build/coredns-v$COREDNS_VERSION"
  rm -rf "$dir" && mkdir -p "$dir"
  log "building coredns v$COREDNS_VERSION in $dir"
  printf 'module kubebuild.local/coredns\n\ngo 1.26\n\nrequire github.com/coredns/coredns v%s\n' "$COREDNS_VERSION" >"$dir/go.mod"
  cat >"$dir/main.go" <<'SRC'
// Command coredns is CoreDNS with the plugins of a cluster DNS server and nothing else.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template"
)

// directives keeps CoreDNS's own execution order (core/dnsserver/zdirectives.go) for the
// plugins linked in.
var directives = []string{
	"reload", "ready", "health", "prometheus", "errors", "log", "loadbalance", "cache",
	"template", "kubernetes", "loop",
}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
SRC
  (cd "$dir" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$out.tmp" . >&2)
  mv "$out.tmp" "$out"
}

path_of() {
  case "$1" in
    etcd) echo "$root/bin/kube/etcd-v$ETCD_VERSION/etcd" ;;
    coredns) echo "$root/bin/kube/coredns-v$COREDNS_VERSION/coredns" ;;
    *) echo "$root/bin/kube/v$KUBE_VERSION/$1" ;;
  esac
}

# ensure builds whatever of its arguments is still missing once the lock is held (another run
# may have built it meanwhile).
ensure() {
  local c p missing_kube=()
  for c in "$@"; do
    p=$(path_of "$c")
    [ -x "$p" ] && continue
    mkdir -p "$(dirname "$p")"
    case "$c" in
      etcd) build_single etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$p" ;;
      coredns) build_coredns "$p" ;;
      *) case " ${missing_kube[*]} " in *" $c "*) ;; *) missing_kube+=("$c") ;; esac ;;
    esac
  done
  [ ${#missing_kube[@]} -eq 0 ] || build_kube "${missing_kube[@]}"
}

kube=() other=()
for c in "$@"; do
  case " $kube_cmds " in
    *" $c "*) [ -x "$(path_of "$c")" ] || kube+=("$c") ;;
    *) case "$c" in
         etcd | coredns) [ -x "$(path_of "$c")" ] || other+=("$c") ;;
         *) log "unknown command $c"; exit 2 ;;
       esac ;;
  esac
done
for c in ${other[@]+"${other[@]}"}; do locked "$c" ensure "$c"; done
[ ${#kube[@]} -eq 0 ] || locked kubernetes ensure "${kube[@]}"
for c in "$@"; do path_of "$c"; done
