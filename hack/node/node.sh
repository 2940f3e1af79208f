#!/usr/bin/env bash
# A throwaway single-node Kubernetes cluster for the e2e suite and the demo,
# inside a network namespace of its own with no route out: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy
# (iptables), CoreDNS as the cluster DNS (on the node address, answering
# cluster.local names only), containerd (Debian's, CRI, runc) and a kubelet,
# pods on the Debian CNI bridge. hack/node/README.md says how tests use the
# node and why it is entered with nsenter, not `ip netns exec`; the comments
# below explain the rest (restrict_oom_score_adj, for one).
#
# Usage (root): hack/node/node.sh COMMAND
#   up              start what is not running; a second run changes nothing
#   down            stop everything and remove every process, mount, network
#                   namespace, cgroup, sysctl change and state file the node
#                   made; safe after a failed or partial up
#   status          which components run
#   kubectl ARGS    kubectl with the admin kubeconfig, inside the namespace
#   exec CMD ARGS   CMD inside the namespace, KUBECONFIG set to the admin's
#   ctr ARGS        ctr on the node's containerd, namespace k8s.io
#   import FILE...  import image archives for pods with imagePullPolicy Never
#
# Everything the node listens on (kube-apiserver at https://$NODE_IP:6443,
# the kubelet, services, pods) exists only inside the namespace; talk to it
# through `kubectl`/`exec` above, or from a process that enters the
# namespace itself (nsenter --net=/var/run/netns/$NODE_NAME).
# $NODE_DIR/node.env lists the facts for tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KUBE_VERSION="${KUBE_VERSION:-1.37.2}"
CONTROL_PLANE_DIR="${CONTROL_PLANE_DIR:-$ROOT/bin/k8s/v$KUBE_VERSION}"
# NODE_NAME names the node, its network namespace, its cgroup parent and its
# CNI network; NODE_DIR keeps what is worth reading after a run (PKI,
# kubeconfigs, configs, logs); NODE_STATE is the runtime state (etcd,
# containerd, kubelet, pod logs, pid files), removed by down.
NODE_NAME="${NODE_NAME:-apisnoop-node}"
NODE_DIR="${NODE_DIR:-$ROOT/bin/node}"
NODE_STATE="${NODE_STATE:-/var/lib/$NODE_NAME}"
# NODE_IMAGES: more image archives for up to import (make image's output).
NODE_IMAGES="${NODE_IMAGES:-}"

# Addresses exist only inside the namespace, so they cannot clash with the
# machine's. The node address sits on a bridge (the kernel has no dummy
# module; kube-apiserver refuses a loopback advertise address).
NODE_IP=10.200.0.1
NODE_PREFIX=24
NODE_BRIDGE=node0
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
API_PORT=6443
PAUSE_IMAGE=apisnoop.dev/node-pause:1
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack curl)
COMPONENTS=(etcd kube-apiserver containerd coredns kube-controller-manager kube-scheduler kube-proxy kubelet)

NETNS_PATH="/var/run/netns/$NODE_NAME"
RUN="$NODE_STATE/run"
LOGS="$NODE_DIR/logs"
ETC="$NODE_DIR/etc"
PKI="$NODE_DIR/pki"
KUBECONFIG_ADMIN="$NODE_DIR/kubeconfig"
CONTAINERD_SOCK="$NODE_STATE/containerd/containerd.sock"
CONTAINERD_STATE="$NODE_STATE/containerd/state"
# Sysctls the kubelet sets machine-wide (they are not per network
# namespace); up saves them, down puts them back.
KUBELET_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
# Machine paths that kubelet, containerd, CNI or mount(8) use whatever they
# are told: kubelet's device-plugin socket and its pod-log links, libcni's
# result cache, libmount's utab directory, containerd 1.6's shim sockets.
# Down removes what the node put there, and the directory itself when up
# found it missing.
HOST_PATHS=(/var/lib/kubelet /var/log/containers /var/lib/cni /run/mount /run/containerd)
KUBECTL="$CONTROL_PLANE_DIR/kubectl"

log() { echo "node: $*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

in_netns() { nsenter --net="$NETNS_PATH" "$@"; }
# kubectl keeps its discovery cache with the node's files, not in ~/.kube.
export KUBECACHEDIR="$NODE_DIR/kube-cache"
kubectl_node() { in_netns "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
ctr_node() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# wait_for SECONDS WHAT CMD...: run CMD every half second until it succeeds;
# fail after SECONDS.
wait_for() {
  local seconds="$1" what="$2" i
  shift 2
  for ((i = 0; i < seconds * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$what: not after ${seconds}s"
  return 1
}

# netns_inode prints the inode of the node's network namespace, or nothing.
netns_inode() { stat -L -c %i "$NETNS_PATH" 2>/dev/null || true; }

# started_at PID prints the process's start time (clock ticks after boot),
# which exec keeps and a recycled pid does not have; nothing for a zombie.
started_at() {
  local stat fields
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  read -r -a fields <<<"${stat##*) }"
  [ "${fields[0]}" != Z ] || return 1
  echo "${fields[19]}"
}

# recorded_pid NAME prints the pid in NAME's pid file (pid and start time)
# when that process still runs.
recorded_pid() {
  local pidfile="$RUN/$1.pid" pid at
  [ -f "$pidfile" ] || return 1
  read -r pid at <"$pidfile"
  [ -n "$pid" ] && [ "$(started_at "$pid")" = "$at" ] && echo "$pid"
}

# running NAME: the component's process is alive inside the node's namespace.
running() {
  local pid ino
  pid="$(recorded_pid "$1")" || return 1
  ino="$(netns_inode)"
  [ -n "$ino" ] && [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "net:[$ino]" ]
}

# start NAME CMD...: start CMD in the background inside the namespace, in a
# session of its own, logging to $LOGS/NAME.log. nsenter and setsid exec the
# command without forking, so $! is the component itself.
start() {
  local name="$1"
  shift
  if running "$name"; then
    log "$name running"
    return
  fi
  [ ! -f "$LOGS/$name.log" ] || mv "$LOGS/$name.log" "$LOGS/$name.previous.log"
  setsid nsenter --net="$NETNS_PATH" "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo "$! $(started_at $!)" >"$RUN/$name.pid"
  log "$name started (pid $!)"
}

# failed NAME: show the end of a component's log and fail.
failed() {
  log "$1 did not come up; the end of $LOGS/$1.log:"
  tail -n 30 "$LOGS/$1.log" >&2 || true
  die "run 'make node-down' to clean up"
}

ensure_packages() {
  local p need=()
  for p in "${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || need+=("$p")
  done
  [ ${#need[@]} -gt 0 ] || return 0
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${need[@]}" >&2; }
}

ensure_binaries() {
  KUBE_VERSION="$KUBE_VERSION" CONTROL_PLANE_DIR="$CONTROL_PLANE_DIR" "$ROOT/hack/build-control-plane.sh" \
    kube-apiserver etcd kubelet kube-controller-manager kube-proxy kube-scheduler kubectl coredns >/dev/null
}

# ensure_files writes the PKI, the kubeconfigs, the pause image and every
# config file. All are functions of this script's settings, so rewriting
# them on a second up changes nothing.
ensure_files() {
  mkdir -p "$NODE_DIR" "$LOGS" "$ETC/cni" "$RUN" "$NODE_STATE/containerd" "$NODE_STATE/cni"
  (cd "$ROOT" && go run ./hack/node pki -dir "$NODE_DIR" -node-name "$NODE_NAME" \
    -node-ip "$NODE_IP" -service-ip "$API_SERVICE_IP" -port "$API_PORT")
  [ "$NODE_DIR/pause.tar" -nt "$ROOT/hack/node/pause/main.go" ] ||
    (cd "$ROOT" && go run ./hack/node pause-image -out "$NODE_DIR/pause.tar" -ref "$PAUSE_IMAGE")

  cat >"$ETC/containerd.toml" <<EOF
# containerd for $NODE_NAME: its own root, state and socket, so it leaves the
# machine's containerd alone. Written by hack/node/node.sh.
version = 2
root = "$NODE_STATE/containerd/root"
state = "$CONTAINERD_STATE"
# opt would install into /opt/containerd; the others have no use here.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Without it runc fails to write /proc/self/oom_score_adj on this machine.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$NODE_STATE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ETC/cni"
    max_conf_num = 1
EOF

  cat >"$ETC/cni/10-$NODE_NAME.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NODE_NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_STATE/cni/networks",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  # The "upstream" of pods with dnsPolicy Default: none, so such a lookup
  # fails at once on the pod's own loopback instead of leaving the
  # namespace. Pods with ClusterFirst ask CoreDNS (clusterDNS below).
  printf 'nameserver 127.0.0.1\noptions ndots:1\n' >"$ETC/resolv.conf"

  # CoreDNS answers for the cluster's zones from the API server and forwards
  # nothing; any other name gets SERVFAIL at once.
  cat >"$ETC/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    ready 127.0.0.1:8181
    errors
    cache 5
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $ETC/coredns.kubeconfig apisnoop-node
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
}
EOF
  # CoreDNS's read-only role, as kubeadm grants it.
  cat >"$ETC/coredns-rbac.yaml" <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: system:coredns
EOF

  # Anonymous authentication and AlwaysAllow only because this is a
  # throwaway test node whose kubelet port exists inside the namespace alone.
  cat >"$ETC/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_NAME
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
podLogsDir: $NODE_STATE/pod-logs
resolvConf: $ETC/resolv.conf
clusterDomain: cluster.local
clusterDNS:
- $NODE_IP
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
serializeImagePulls: false
# Imported images cannot be pulled again: never collect them, and evict
# nothing for disk use on a machine that is shared with builds.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
EOF

  cat >"$NODE_DIR/node.env" <<EOF
# The node that hack/node/node.sh runs; source it or read it as KEY=VALUE.
NODE_NAME=$NODE_NAME
NODE_NETNS=$NETNS_PATH
NODE_IP=$NODE_IP
NODE_KUBECONFIG=$KUBECONFIG_ADMIN
NODE_API_SERVER=https://$NODE_IP:$API_PORT
NODE_CONTAINERD_SOCK=$CONTAINERD_SOCK
NODE_POD_CIDR=$POD_CIDR
NODE_SERVICE_CIDR=$SERVICE_CIDR
NODE_PAUSE_IMAGE=$PAUSE_IMAGE
NODE_CLUSTER_DNS=$NODE_IP
KUBECTL=$KUBECTL
EOF
}

# ensure_netns makes the namespace: loopback and a bridge with the node's
# address, forwarding on, bridged pod traffic through iptables (services
# between pods on the bridge), no default route.
ensure_netns() {
  if [ -z "$(netns_inode)" ]; then
    ip netns add "$NODE_NAME"
    log "network namespace $NODE_NAME made"
  fi
  netns_inode >"$RUN/netns.inode"
  in_netns ip link set lo up
  in_netns ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || in_netns ip link add "$NODE_BRIDGE" type bridge
  in_netns ip -4 addr show dev "$NODE_BRIDGE" | grep -q "inet $NODE_IP/" ||
    in_netns ip addr add "$NODE_IP/$NODE_PREFIX" dev "$NODE_BRIDGE"
  in_netns ip link set "$NODE_BRIDGE" up
  in_netns sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward && echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables'
  # A connection made inside the namespace (kube-apiserver to a webhook's
  # Service) needs a route before kube-proxy's OUTPUT rules rewrite the
  # service IP; the bridge has no ports, so an unanswered one ends there.
  in_netns ip route replace "$SERVICE_CIDR" dev "$NODE_BRIDGE"
  if in_netns ip route show default | grep -q .; then die "namespace $NODE_NAME has a default route"; fi
}

# ensure_cgroups makes the kubelet's cgroup root in every cgroup v1
# hierarchy (cpuset needs its CPUs and memory nodes before a task joins), or
# in the cgroup v2 tree.
ensure_cgroups() {
  local h
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p "/sys/fs/cgroup/$NODE_NAME"
    return
  fi
  for h in /sys/fs/cgroup/*/; do
    [ -f "$h/cgroup.procs" ] && [ ! -f "$h/cgroup.controllers" ] || continue # v1 hierarchies only
    mkdir -p "$h$NODE_NAME"
    if [ -f "$h/cpuset.cpus" ]; then
      [ -n "$(<"$h$NODE_NAME/cpuset.cpus")" ] || cat "$h/cpuset.cpus" >"$h$NODE_NAME/cpuset.cpus"
      [ -n "$(<"$h$NODE_NAME/cpuset.mems")" ] || cat "$h/cpuset.mems" >"$h$NODE_NAME/cpuset.mems"
    fi
  done
}

# save_host_state records, once per node, the kubelet's machine-wide
# sysctls and which of HOST_PATHS are missing, for down to restore.
save_host_state() {
  [ ! -f "$RUN/host-state" ] || return 0
  local s p
  {
    for s in "${KUBELET_SYSCTLS[@]}"; do
      [ ! -f "/proc/sys/$s" ] || echo "sysctl $s $(<"/proc/sys/$s")"
    done
    for p in "${HOST_PATHS[@]}"; do
      [ -e "$p" ] || echo "missing $p"
    done
  } >"$RUN/host-state.tmp"
  mv "$RUN/host-state.tmp" "$RUN/host-state"
}

api_ready() { [ "$(kubectl_node get --raw /readyz 2>/dev/null)" = ok ]; }

# import_images imports image archives into the CRI's image store; an image
# that is there already is replaced by the archive's.
import_images() {
  local f
  for f in "$@"; do
    [ -f "$f" ] || die "no image archive $f"
    ctr_node images import --all-platforms "$f" >/dev/null
    log "imported $f"
  done
}

up() {
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces, mounts, cgroups)"
  local t0 t1 images=() f
  t0="$(now)"
  read -r -a images <<<"$NODE_IMAGES"
  for f in "${images[@]}"; do [ -f "$f" ] || die "no image archive $f (NODE_IMAGES)"; done
  ensure_packages
  ensure_binaries
  ensure_files
  log "packages, binaries and files ready after $(since "$t0")s"
  t1="$(now)"
  ensure_netns
  ensure_cgroups
  save_host_state

  local bin="$CONTROL_PLANE_DIR"
  start etcd "$bin/etcd" --name "$NODE_NAME" --data-dir "$NODE_STATE/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --unsafe-no-fsync --log-level warn
  start kube-apiserver "$bin/kube-apiserver" \
    --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
    --etcd-servers http://127.0.0.1:2379 \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --client-ca-file "$PKI/ca.crt" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --allow-privileged=true \
    --enable-admission-plugins NodeRestriction
  start containerd /usr/bin/containerd --config "$ETC/containerd.toml"

  wait_for 60 "kube-apiserver ready" api_ready || failed kube-apiserver
  log "kube-apiserver ready after $(since "$t1")s"
  wait_for 30 "containerd" ctr_node version || failed containerd
  ctr_node images ls -q | grep -qx "$PAUSE_IMAGE" || import_images "$NODE_DIR/pause.tar"
  [ ${#images[@]} -eq 0 ] || import_images "${images[@]}"

  kubectl_node apply --server-side --field-manager apisnoop-node -f "$ETC/coredns-rbac.yaml" >/dev/null
  start coredns "$bin/coredns" -conf "$ETC/Corefile"
  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$ETC/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --controllers '*,-node-ipam-controller' --use-service-account-credentials \
    --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-name "$NODE_NAME"
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$ETC/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false
  start kube-proxy "$bin/kube-proxy" \
    --kubeconfig "$ETC/kube-proxy.kubeconfig" --hostname-override "$NODE_NAME" \
    --proxy-mode iptables --cluster-cidr "$POD_CIDR" --conntrack-max-per-core 0 \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256
  start kubelet "$bin/kubelet" \
    --config "$ETC/kubelet.yaml" --kubeconfig "$ETC/kubelet.kubeconfig" \
    --root-dir "$NODE_STATE/kubelet" --cert-dir "$NODE_STATE/kubelet/pki" \
    --node-ip "$NODE_IP" --hostname-override "$NODE_NAME"

  wait_for 60 "node $NODE_NAME registered" kubectl_node get node "$NODE_NAME" || failed kubelet
  kubectl_node wait --for condition=Ready --timeout 90s node "$NODE_NAME" >/dev/null || failed kubelet
  log "node $NODE_NAME Ready after $(since "$t1")s"
  wait_for 60 "service account default/default" kubectl_node get serviceaccount default --namespace default ||
    failed kube-controller-manager
  wait_for 30 "CoreDNS ready" in_netns curl -fsS http://127.0.0.1:8181/ready || failed coredns
  local c
  for c in "${COMPONENTS[@]}"; do
    running "$c" || failed "$c"
  done
  log "up after $(since "$t0")s; admin kubeconfig $KUBECONFIG_ADMIN for https://$NODE_IP:$API_PORT" \
    "inside the namespace: hack/node/node.sh kubectl get pods -A"
}

# node_pids prints every process in the node's namespace or in a pod's, found
# by namespace inode, so processes still count after their namespace lost its
# name; and the recorded component pids, should the namespace be gone.
node_pids() {
  local inodes=() f ns
  [ -z "$(netns_inode)" ] || inodes+=("$(netns_inode)")
  [ ! -f "$RUN/netns.inode" ] || inodes+=("$(<"$RUN/netns.inode")")
  for f in "$CONTAINERD_STATE"/io.containerd.grpc.v1.cri/netns/*; do
    [ -e "$f" ] || continue
    ns="$(stat -L -c %i "$f" 2>/dev/null)" || continue
    inodes+=("$ns")
  done
  if [ ${#inodes[@]} -gt 0 ]; then
    find /proc/[0-9]*/ns -maxdepth 1 -name net -printf '%h %l\n' 2>/dev/null |
      awk -v inodes="${inodes[*]}" 'BEGIN { n = split(inodes, list, " "); for (i = 1; i <= n; i++) want["net:[" list[i] "]"] = 1 }
        $2 in want { split($1, path, "/"); print path[3] }' || true
  fi
  for f in "$RUN"/*.pid; do
    [ -f "$f" ] || continue
    f="${f##*/}"
    recorded_pid "${f%.pid}" || true
  done
}

# stop_processes sends TERM to every process of the node, then KILL, again
# and again, to what is left after three seconds (nothing on a throwaway
# node is worth a graceful shutdown: kube-apiserver's takes a minute, a
# shell as a container's PID 1 ignores TERM), until none is left.
stop_processes() {
  local pids i signal=TERM
  for ((i = 0; i < 32; i++)); do
    pids="$(node_pids | sort -un | tr '\n' ' ')"
    [ -n "${pids// /}" ] || return 0
    [ "$i" -lt 12 ] || signal=KILL
    if [ "$i" = 0 ] || [ "$signal" = KILL ]; then
      [ "$i" != 0 ] && [ "$i" != 12 ] || log "sending $signal to $pids"
      # shellcheck disable=SC2086
      kill -"$signal" $pids 2>/dev/null || true
    fi
    sleep 0.25
  done
  die "processes $pids outlived SIGKILL"
}

# node_mounts prints the mount points under the node's directories, the
# deepest first.
node_mounts() {
  local dirs=("$NODE_STATE" "$NODE_DIR") d
  for d in "${dirs[@]}"; do
    awk -v d="$(realpath -m "$d")" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo
  done | awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2- | uniq
}

unmount_all() {
  local m i
  for ((i = 0; i < 5; i++)); do
    [ -n "$(node_mounts)" ] || return 0
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(node_mounts)
  done
  [ -z "$(node_mounts)" ] || die "mounts left: $(node_mounts | tr '\n' ' ')"
}

# remove_shim_sockets removes the task shims' sockets of this containerd:
# /run/containerd/s/<sha256 of address/namespace/id>, a path containerd 1.6
# fixes whatever its state directory. A shim that is killed leaves its
# socket behind.
remove_shim_sockets() {
  local d ns id sum
  for d in "$CONTAINERD_STATE"/io.containerd.runtime.v2.task/*/*; do
    [ -d "$d" ] || continue
    id="${d##*/}"
    ns="$(basename "$(dirname "$d")")"
    sum="$(printf '%s' "$CONTAINERD_SOCK/$ns/$id" | sha256sum | cut -d' ' -f1)"
    rm -f "/run/containerd/s/$sum"
  done
}

# remove_cni_results removes libcni's cached results of the node's pods
# (/var/lib/cni/results/<network>-<sandbox>-<interface>, and the loopback's),
# which only a CNI DEL, skipped when pods are killed, would remove.
remove_cni_results() {
  local f id
  for f in /var/lib/cni/results/"$NODE_NAME"-*; do
    [ -f "$f" ] || continue
    id="${f#/var/lib/cni/results/"$NODE_NAME"-}"
    id="${id%-*}"
    rm -f "$f" "/var/lib/cni/results/cni-loopback-$id-lo"
  done
}

remove_container_log_links() {
  local l
  for l in /var/log/containers/*; do
    [ -L "$l" ] || continue
    case "$(readlink "$l")" in "$NODE_STATE"/*) rm -f "$l" ;; esac
  done
}

remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/"$NODE_NAME" "/sys/fs/cgroup/$NODE_NAME"; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ ! -d "$d" ] || log "cgroup $d left (tasks still in it?)"
  done
}

# restore_host_state puts back the sysctls and removes the HOST_PATHS that
# up found missing: everything in them is the node's, except in /run/mount
# and /run/containerd, which go only when empty.
restore_host_state() {
  local kind what value
  [ -f "$RUN/host-state" ] || return 0
  while read -r kind what value; do
    case "$kind" in
    sysctl) echo "$value" >"/proc/sys/$what" ;;
    missing)
      case "$what" in
      /run/mount | /run/containerd) find "$what" -depth -type d -empty -delete 2>/dev/null || true ;;
      *) rm -rf --one-file-system "$what" ;;
      esac
      ;;
    esac
  done <"$RUN/host-state"
}

down() {
  [ "$(id -u)" = 0 ] || die "needs root"
  local t0
  t0="$(now)"
  stop_processes
  unmount_all
  remove_shim_sockets
  remove_cni_results
  remove_container_log_links
  if [ -n "$(netns_inode)" ] || [ -e "$NETNS_PATH" ]; then
    ip netns delete "$NODE_NAME"
    log "network namespace $NODE_NAME deleted"
  fi
  remove_cgroups
  restore_host_state
  if [ -d "$NODE_STATE" ]; then
    unmount_all # nothing may be mounted below a directory that rm descends into
    rm -rf --one-file-system "$NODE_STATE"
  fi
  log "down after $(since "$t0")s"
}

status() {
  local c
  [ -n "$(netns_inode)" ] && log "network namespace $NETNS_PATH" || log "no network namespace $NODE_NAME"
  for c in "${COMPONENTS[@]}"; do
    if running "$c"; then echo "$c running (pid $(recorded_pid "$c"))"; else echo "$c stopped"; fi
  done
}

cmd="${1:-}"
[ $# -eq 0 ] || shift
case "$cmd" in
up) up ;;
down) down ;;
status) status ;;
kubectl) kubectl_node "$@" ;;
exec) KUBECONFIG="$KUBECONFIG_ADMIN" in_netns "$@" ;;
ctr) ctr_node "$@" ;;
import) import_images "$@" ;;
*)
  echo "usage: $0 up|down|status|kubectl ARGS|exec CMD ARGS|ctr ARGS|import FILE..." >&2
  exit 2
  ;;
esac
