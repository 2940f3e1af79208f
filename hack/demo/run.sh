#!/usr/bin/env bash
# make demo: the real thing where the machine allows it, the envtest demo
# where it does not.
#
# A real node (hack/demo/node.sh) needs root, network namespaces, cgroups
# and apt-get (containerd, runc and the CNI plugins are Debian packages).
# Without them, the demo runs on a local control plane alone
# (hack/demo/main.go: kube-apiserver and etcd, the sidecar as a local
# process), and says why. DEMO=node or DEMO=envtest chooses; KEEP=1 leaves
# either running to explore.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
DEMO="${DEMO:-auto}"

# why_no_node prints why this machine cannot run the node, or nothing.
why_no_node() {
  if [ "$(id -u)" != 0 ]; then
    echo "it needs root (the node runs containerd, a kubelet and iptables)"
    return
  fi
  for tool in ip nsenter apt-get; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed"; return; }
  done
  if [ ! -d /sys/fs/cgroup ] || [ -z "$(ls -A /sys/fs/cgroup 2>/dev/null)" ]; then
    echo "no cgroup file system is mounted at /sys/fs/cgroup"
    return
  fi
  local probe="apisnoop-demo-probe-$$"
  if ! ip netns add "$probe" 2>/dev/null; then
    echo "network namespaces cannot be made here (ip netns add failed)"
    return
  fi
  ip netns del "$probe"
}

case "$DEMO" in
node) exec hack/demo/node.sh ;;
envtest) ;;
auto)
  reason="$(why_no_node)"
  if [ -z "$reason" ]; then
    exec hack/demo/node.sh
  fi
  printf '\033[1mThis machine cannot run a real node for the demo: %s.\n' "$reason"
  printf 'Running the envtest demo instead: a local kube-apiserver and etcd, the sidecar as a local process (no kubelet runs pods).\033[0m\n'
  ;;
*)
  echo "DEMO=$DEMO: use node, envtest or auto" >&2
  exit 2
  ;;
esac

make --no-print-directory control-plane build
args=()
[ "${KEEP:-0}" = 1 ] && args+=(-keep)
exec go run ./hack/demo "${args[@]}"
