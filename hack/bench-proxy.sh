#!/usr/bin/env bash
# Measures, side by side in one run, what a proxy in front of the API server
# costs: one kube-apiserver and etcd (bin/k8s/$KUBERNETES_VERSION) on
# loopback, reached directly and through snoop-proxy (recording, as the
# sidecar runs: a byte relay reading HTTP on the way), snoop-proxy with
# --relay=false (its reverse proxy), a bare Go reverse proxy
# (test/proxy/testdata/bareproxy: the floor of proxying with Go's
# net/http), a TLS byte relay that parses nothing
# (test/proxy/testdata/relayfloor: the floor of terminating TLS in Go at
# all, the client's protocol negotiated upstream), kubectl proxy and
# mitmproxy's mitmdump; GETs of one ConfigMap and LISTs of 100 ConfigMaps at 1 and 16
# connections. It reports
# requests/s, p50/p99 latency, CPU per request of each proxy and of the API
# server (utime+stime from /proc/PID/stat before and after the load, divided
# by the requests), and each proxy's RSS after the load. The driver is
# hack/bench-proxy (go run ./hack/bench-proxy -h for its flags).
#
# mitmproxy is Debian's package, installed with apt-get when mitmdump is
# missing; when apt cannot provide it, the rest runs without it. kubectl is
# the one of bin/k8s/$KUBERNETES_VERSION, else the machine's.
#
# Usage: hack/bench-proxy.sh [driver flags, e.g. -rounds 3 -duration 5s]
# Environment: KUBERNETES_VERSION (v1.37.2), WORK (a temporary directory,
# removed at the end unless given), PROFILE_DIR (write snoop-proxy CPU
# profiles of the 16-connection loads there).
set -euo pipefail

KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.37.2}
root=$(cd "$(dirname "$0")/.." && pwd)
export KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$root/bin/k8s/$KUBERNETES_VERSION}
[[ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]] || {
  echo "no kube-apiserver in $KUBEBUILDER_ASSETS (make the control-plane binaries first)" >&2
  exit 1
}

if [[ -z "${WORK:-}" ]]; then
  WORK=$(mktemp -d -t bench-proxy.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
say() { printf '==> %s\n' "$*" >&2; }

mitmdump=$(command -v mitmdump || true)
if [[ -z "$mitmdump" ]]; then
  say "installing mitmproxy (Debian package)"
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mitmproxy >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mitmproxy >/dev/null 2>&1; }; then
    mitmdump=$(command -v mitmdump || true)
  fi
  [[ -n "$mitmdump" ]] || say "apt-get cannot provide mitmproxy: running without it"
fi

kubectl=$KUBEBUILDER_ASSETS/kubectl
[[ -x "$kubectl" ]] || kubectl=$(command -v kubectl || true)
[[ -n "$kubectl" ]] || say "no kubectl: running without kubectl proxy"

say "building snoop-proxy as the image does (static, trimmed) and the driver"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$WORK/snoop-proxy" ./cmd/snoop-proxy)
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$WORK/bareproxy" ./test/proxy/testdata/bareproxy)
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$WORK/relayfloor" ./test/proxy/testdata/relayfloor)
(cd "$root" && go build -o "$WORK/bench-proxy" ./hack/bench-proxy)

args=(-snoop-proxy "$WORK/snoop-proxy" -bare "$WORK/bareproxy" -relay "$WORK/relayfloor" -kubectl "$kubectl" -mitmdump "$mitmdump")
[[ -n "${PROFILE_DIR:-}" ]] && mkdir -p "$PROFILE_DIR" && args+=(-profile-dir "$PROFILE_DIR")
echo "kube-apiserver: $("$KUBEBUILDER_ASSETS/kube-apiserver" --version 2>/dev/null || echo unknown); kubectl: ${kubectl:-none}; mitmdump: $([[ -n "$mitmdump" ]] && "$mitmdump" --version 2>/dev/null | head -1 || echo none)" >&2
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
(cd "$root" && "$WORK/bench-proxy" "${args[@]}" "$@")
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
