#!/usr/bin/env bash
# Builds the control-plane binaries that envtest runs (kube-apiserver, etcd)
# from the Go module proxy at pinned versions and caches them under bin/.
#
# k8s.io/kubernetes replaces its staging modules with ./staging/... paths that
# are not part of the module zip, so we build through a throwaway wrapper
# module that pins every staging module to the matching published v0.Y.Z.
#
# Usage: hack/build-control-plane.sh [component...]
#   components: kube-apiserver etcd (default), kubelet kube-controller-manager
#   kube-proxy kube-scheduler kubectl coredns (the real node's cluster DNS,
#   hack/node)
# Prints the directory holding the binaries on its last line.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
COREDNS_VERSION="${COREDNS_VERSION:-1.15.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${CONTROL_PLANE_DIR:-$ROOT/bin/k8s/v$KUBE_VERSION}"
# Built binaries are also kept in a per-user cache outside the checkout, so a
# fresh clone on the same machine (CI) reuses them instead of rebuilding.
SHARED="${APISNOOP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-apisnoop}/k8s/v$KUBE_VERSION"
WORK="$ROOT/bin/.build/k8s-v$KUBE_VERSION"
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(kube-apiserver etcd)

major="${KUBE_VERSION%%.*}"
rest="${KUBE_VERSION#*.}"
minor="${rest%%.*}"
staging_version="v0.${minor}.${rest#*.}"
mkdir -p "$OUT"

log() { echo "build-control-plane: $*" >&2; }

# from_shared copies a binary from the shared cache; to_shared stores one.
from_shared() {
  local name="$1"
  [ -x "$SHARED/$name" ] || return 1
  cp "$SHARED/$name" "$OUT/$name.tmp" && mv "$OUT/$name.tmp" "$OUT/$name"
  [ ! -f "$SHARED/$name.version" ] || cp "$SHARED/$name.version" "$OUT/$name.version"
  log "$name taken from $SHARED"
}
to_shared() {
  local name="$1"
  mkdir -p "$SHARED" 2>/dev/null || return 0
  cp "$OUT/$name" "$SHARED/$name.tmp" 2>/dev/null && mv "$SHARED/$name.tmp" "$SHARED/$name" || true
  [ ! -f "$OUT/$name.version" ] || cp "$OUT/$name.version" "$SHARED/$name.version" 2>/dev/null || true
}

build_kube() {
  local name="$1"
  if [ -x "$OUT/$name" ]; then log "$name v$KUBE_VERSION cached"; to_shared "$name"; return; fi
  if from_shared "$name"; then return; fi
  if [ ! -f "$WORK/go.sum" ]; then
    mkdir -p "$WORK"
    local upstream_mod
    upstream_mod="$(mktemp)"
    # The replace block of k8s.io/kubernetes's own go.mod lists the staging modules.
    GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" >"$upstream_mod.json"
    local gomod
    gomod="$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' "$upstream_mod.json")"
    {
      echo "module apisnoop.dev/controlplane"
      echo
      grep -E '^go [0-9]' "$gomod"
      echo
      echo "require k8s.io/kubernetes v$KUBE_VERSION"
      echo
      echo "replace ("
      sed -n '/^replace (/,/^)/p' "$gomod" | awk '/=> \.\/staging/ {print "\t" $1 " => " $1 " '"$staging_version"'"}' |
        grep -v -E 'k8s.io/sample-(cli-plugin|controller) '
      echo ")"
    } >"$WORK/go.mod"
    cat >"$WORK/tools.go" <<'GO'
//go:build tools

package controlplane

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
    rm -f "$upstream_mod" "$upstream_mod.json"
    (cd "$WORK" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
  fi
  log "building $name v$KUBE_VERSION (about 10 minutes cold)"
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION \
-X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean"
  (cd "$WORK" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$OUT/$name.tmp" "k8s.io/kubernetes/cmd/$name")
  mv "$OUT/$name.tmp" "$OUT/$name"
  to_shared "$name"
}

# have_version succeeds when binary $1 at version $2 is in OUT already or
# could be copied from the shared cache.
have_version() {
  local name="$1" version="$2"
  if [ -x "$OUT/$name" ] && [ -f "$OUT/$name.version" ] && [ "$(cat "$OUT/$name.version")" = "$version" ]; then
    log "$name v$version cached"; to_shared "$name"; return 0
  fi
  [ -f "$SHARED/$name.version" ] && [ "$(cat "$SHARED/$name.version")" = "$version" ] && from_shared "$name"
}

# build_main builds binary NAME at VERSION from the main package on standard
# input, in a module of its own that requires MODULE at that version, pinned
# and cached like the Kubernetes binaries.
build_main() {
  local name="$1" version="$2" module="$3"
  local dir="$ROOT/bin/.build/$name-v$version"
  mkdir -p "$dir"
  cat >"$dir/main.go"
  if [ ! -f "$dir/go.sum" ]; then
    (cd "$dir" && printf 'module apisnoop.dev/%s\n\ngo 1.24\n\nrequire %s v%s\n' "$name" "$module" "$version" >go.mod &&
      GOFLAGS=-mod=mod go mod tidy >/dev/null)
  fi
  log "building $name v$version"
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$OUT/$name.tmp" .)
  mv "$OUT/$name.tmp" "$OUT/$name"
  echo "$version" >"$OUT/$name.version"
  to_shared "$name"
}

build_etcd() {
  if have_version etcd "$ETCD_VERSION"; then return; fi
  build_main etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
}

# build_coredns builds CoreDNS with the plugins a cluster DNS needs and no
# forwarding ones (the node has no route out), pinned like etcd.
build_coredns() {
  if have_version coredns "$COREDNS_VERSION"; then return; fi
  build_main coredns "$COREDNS_VERSION" github.com/coredns/coredns <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
	"github.com/coredns/coredns/coremain"
)

// Directives is the plugins' order in a server block, as in CoreDNS's plugin.cfg.
func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
}

for c in "${components[@]}"; do
  case "$c" in
  etcd) build_etcd ;;
  coredns) build_coredns ;;
  kube-apiserver | kubelet | kube-controller-manager | kube-proxy | kube-scheduler | kubectl) build_kube "$c" ;;
  *) log "unknown component $c"; exit 2 ;;
  esac
done
echo "$OUT"
