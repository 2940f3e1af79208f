#!/usr/bin/env bash
# The README's first command, on a real node: kube-apisnoop installed by its
# Helm chart on the throwaway node of hack/node (kubelet, containerd, runc,
# in a network namespace with no route out), the sample SnoopSession, a
# Deployment whose pod runs kubectl with its own service account, injected
# by the webhook in iptables mode, and what a user then reads: the injected
# pod, `kubectl describe snoopsession`, `kubectl snoop report` (with the
# fields the request bodies set) and its HTML page.
#
# Usage (root): hack/demo/node.sh          run the demo, then remove the node
#               KEEP=1 hack/demo/node.sh   leave the node running to explore
#                                          (hack/node/node.sh kubectl ...;
#                                          make node-down when done)
#
# hack/demo/run.sh (make demo) calls this where the machine allows a node and
# runs the envtest demo (hack/demo/main.go) where it does not.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
KEEP="${KEEP:-0}"
NS=demo
TAG=demo
IMAGES="bin/images/apisnoop.tar bin/images/snoop-proxy.tar bin/images/apisnoop-testkit.tar"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; }
node() { hack/node/node.sh "$@"; }
k() { show "kubectl $*"; node kubectl "$@"; }

step "Building the images (no Docker engine: OCI archives from our static binaries), kubectl-snoop and helm"
make --no-print-directory image IMAGE_PLATFORMS="linux/$(go env GOARCH)" IMAGE_TAG="$TAG" >/dev/null
ls -l $IMAGES | awk '{printf "  %-32s %5.1f MiB\n", $NF, $5/1048576}'
CGO_ENABLED=0 go build -trimpath -o bin/kubectl-snoop ./cmd/kubectl-snoop
go build -o bin/helm helm.sh/helm/v4/cmd/helm

if [ "$KEEP" != 1 ]; then
  trap 'step "Removing the node (KEEP=1 keeps it)"; make --no-print-directory node-down >/dev/null' EXIT
fi
step "Starting a real node: etcd, kube-apiserver, controller-manager, scheduler, kube-proxy, containerd, kubelet (hack/node)"
make --no-print-directory node-up NODE_IMAGES="$IMAGES"
k get nodes -o wide

step "Installing the operator with its Helm chart"
node kubectl create namespace apisnoop-system --dry-run=client -o yaml | node kubectl apply -f - >/dev/null
node kubectl label namespace apisnoop-system pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
show "helm install apisnoop charts/kube-apisnoop -n apisnoop-system --wait"
HELM_CACHE_HOME="$ROOT/bin/helm-home/cache" HELM_CONFIG_HOME="$ROOT/bin/helm-home/config" HELM_DATA_HOME="$ROOT/bin/helm-home/data" \
  node exec bin/helm upgrade --install apisnoop charts/kube-apisnoop --namespace apisnoop-system \
  --set image.repository=apisnoop.dev/apisnoop --set-string image.tag="$TAG" --set image.pullPolicy=Never \
  --set sidecar.image.repository=apisnoop.dev/apisnoop --set-string sidecar.image.tag="$TAG" \
  --wait --timeout 3m
k get pods -n apisnoop-system

step "Applying the sample SnoopSession (config/samples) in namespace $NS"
node kubectl create namespace "$NS" --dry-run=client -o yaml | node kubectl apply -f - >/dev/null
k apply -n "$NS" -f config/samples/snoop_v1alpha1_snoopsession.yaml
node kubectl wait -n "$NS" snoopsession/demo --for=condition=Ready --timeout=2m >/dev/null
k get snoopsessions -n "$NS"

# The webhook fails open: until the API server reaches the manager through
# its Service (kube-proxy takes a few seconds after the manager is Ready), a
# pod would be created unrecorded. A server-side dry run shows when a
# matching pod would be injected, and creates nothing.
probe='{"apiVersion":"v1","kind":"Pod","metadata":{"name":"probe","labels":{"app":"demo"}},"spec":{"containers":[{"name":"app","image":"apisnoop.dev/apisnoop-testkit:'"$TAG"'"}]}}'
for _ in $(seq 120); do
  if echo "$probe" | node kubectl create -n "$NS" --dry-run=server -f - -o jsonpath='{.spec.initContainers[*].name}' 2>/dev/null | grep -q snoop-proxy; then
    break
  fi
  sleep 1
done

step "Deploying a workload: kubectl in a pod, with its own service account, through a fixed script of API calls"
k apply -n "$NS" -f - <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: demo}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: demo}
rules:
- {apiGroups: [""], resources: [configmaps], verbs: [get, list, create, patch, delete]}
- {apiGroups: [""], resources: [pods], verbs: [list]}
- {apiGroups: [apps], resources: [deployments], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: demo}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: demo}
subjects: [{kind: ServiceAccount, name: demo, namespace: $NS}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: demo}
spec:
  replicas: 1
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      serviceAccountName: demo
      terminationGracePeriodSeconds: 1
      securityContext: {runAsUser: 65532, runAsGroup: 65532, runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: app
        image: apisnoop.dev/apisnoop-testkit:$TAG
        imagePullPolicy: Never
        env: [{name: HOME, value: /scratch}]
        command:
        - /bin/busybox
        - sh
        - -c
        - |
          set -e
          k() { /bin/kubectl --cache-dir=/scratch/kube-cache "\$@"; }
          k get configmaps
          k create configmap demo-script --from-literal=a=1
          k patch configmap demo-script --type=merge -p '{"data":{"b":"2"}}'
          k get configmap demo-script -o yaml >/dev/null
          k delete configmap demo-script --wait=false
          k get pods
          k get deployments
          echo DEMO-SCRIPT-OK
          exec /bin/busybox sleep 3600
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        volumeMounts: [{name: scratch, mountPath: /scratch}]
      volumes: [{name: scratch, emptyDir: {}}]
EOF
node kubectl rollout status -n "$NS" deployment/demo --timeout=3m >/dev/null
pod="$(node kubectl get pods -n "$NS" -l app=demo -o jsonpath='{.items[0].metadata.name}')"
for _ in $(seq 120); do
  node kubectl logs -n "$NS" "$pod" -c app 2>/dev/null | grep -q DEMO-SCRIPT-OK && break
  sleep 1
done

step "The pod came up injected: the recording sidecar and the iptables redirect before the app"
k get pods -n "$NS" -o custom-columns='NAME:.metadata.name,STATUS:.status.phase,INIT CONTAINERS:.spec.initContainers[*].name,SESSION:.metadata.annotations.snoop\.apisnoop\.dev/session'
k logs -n "$NS" "$pod" -c app --tail=3

step "Waiting for the script's requests in the session's status"
for _ in $(seq 120); do
  n="$(node kubectl get snoopsession -n "$NS" demo -o jsonpath='{.status.requests}' 2>/dev/null || true)"
  [ "${n:-0}" -ge 7 ] && break
  sleep 1
done
k get snoopsessions -n "$NS"
k describe snoopsession -n "$NS" demo

step "The same coverage through kubectl-snoop"
show "kubectl snoop report demo -n $NS --max-rows 10 --untested=false"
node exec bin/kubectl-snoop report demo -n "$NS" --max-rows 10 --untested=false

step "The same as one self-contained HTML page, and the session's live page"
mkdir -p bin/demo
show "kubectl snoop report demo -n $NS -o html > bin/demo/report.html"
node exec bin/kubectl-snoop report demo -n "$NS" -o html >bin/demo/report.html
ls -l bin/demo/report.html | awk '{printf "  %s  %d bytes: open it in a browser, no network needed\n", $NF, $5}'
page="$(node kubectl get snoopsession -n "$NS" demo -o jsonpath='{.status.resultsPage}')"
echo "  live page: status.resultsPage = $page on the webhook Service's HTTPS port (README: Results)"

if [ "$KEEP" = 1 ]; then
  step "The node keeps running: hack/node/node.sh kubectl get snoopsessions -A; make node-down removes it"
fi
