# kube-apisnoop

# Control-plane versions the tests and the demo run against, built from the Go
# module proxy by hack/build-control-plane.sh and cached under bin/.
KUBE_VERSION ?= 1.37.2
ETCD_VERSION ?= 3.6.16
CONTROL_PLANE_DIR ?= $(CURDIR)/bin/k8s/v$(KUBE_VERSION)
export KUBEBUILDER_ASSETS ?= $(CONTROL_PLANE_DIR)

CONTROLLER_GEN ?= go tool controller-gen
GO_TEST_FLAGS ?=

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

.PHONY: demo
demo: control-plane build ## Run the main job on a local control plane: CRD, manager, sample session, kubectl describe.
	go run ./hack/demo

##@ Development

.PHONY: manifests
manifests: ## Generate the CRD, RBAC and webhook manifests under config/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./api/...;./controllers/...;./internal/...;./cmd/..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: ## Generate deepcopy code and the embedded release catalogs (from the k8s.io/kubernetes modules).
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."
	go generate ./internal/catalog/...

.PHONY: verify-generated
verify-generated: manifests generate ## Fail when generated files differ from what is committed.
	@git diff --exit-code -- api config internal || { echo "generated files are out of date: run 'make manifests generate' and commit"; exit 1; }

.PHONY: fmt
fmt: ## Run gofmt.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: control-plane
control-plane: ## Build (or reuse) kube-apiserver and etcd for envtest under bin/.
	KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) CONTROL_PLANE_DIR=$(CONTROL_PLANE_DIR) hack/build-control-plane.sh kube-apiserver etcd

.PHONY: test
test: control-plane vet ## Run unit and envtest suites against a real kube-apiserver and etcd.
	go test $(GO_TEST_FLAGS) ./...

.PHONY: bench
bench: control-plane ## Run the benchmarks.
	go test -run '^$$' -bench . -benchmem ./...

##@ Build

.PHONY: build
build: ## Build bin/apisnoop, bin/snoop-proxy and bin/kubectl-snoop.
	CGO_ENABLED=0 go build -trimpath -o bin/apisnoop ./cmd/apisnoop
	CGO_ENABLED=0 go build -trimpath -o bin/snoop-proxy ./cmd/snoop-proxy
	CGO_ENABLED=0 go build -trimpath -o bin/kubectl-snoop ./cmd/kubectl-snoop

.PHONY: run
run: manifests ## Run the manager against the cluster of the current kubeconfig.
	go run ./cmd/apisnoop manager
