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
demo: ## Run the main job: on a real node where the machine allows it (root, network namespaces), else on a local control plane; DEMO=node|envtest chooses, KEEP=1 keeps it running.
	hack/demo/run.sh

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
test: control-plane chromium vet ## Run unit and envtest suites against a real kube-apiserver and etcd (and the HTML pages in headless Chromium).
	go test $(GO_TEST_FLAGS) ./...

.PHONY: chromium
chromium: ## Install Debian's chromium for the HTML report's browser tests (needs root; without it, and without CI set, those tests skip).
	@hack/install-chromium.sh >/dev/null || [ -z "$$CI" ]

.PHONY: ui
ui: ## Rebuild the HTML report's charting library (internal/htmlreport/assets) from the npm packages pinned in web/report-ui.
	cd web/report-ui && npm ci --no-audit --no-fund && npm run build

.PHONY: bench
bench: control-plane ## Run the benchmarks.
	go test -run '^$$' -bench . -benchmem ./...

# make e2e: the test/e2e suite on a real node (root). It builds the images
# (for this machine's architecture only), starts the node with them imported, builds the suite and helm
# outside (the module proxy is not reachable inside the node's namespace),
# runs the suite inside, and always stops the node, keeping the suite's exit
# status. E2E_FLAGS adds test flags, e.g. E2E_FLAGS=-ginkgo.focus=env.
E2E_IMAGES = bin/images/apisnoop.tar bin/images/snoop-proxy.tar bin/images/apisnoop-testkit.tar
E2E_FLAGS ?=

.PHONY: e2e
e2e: ## Run the e2e suite (test/e2e) on a real node: images, node-up, the suite inside the node's namespace, node-down.
	$(MAKE) image IMAGE_PLATFORMS=linux/$(shell go env GOARCH) IMAGE_TAG=$(IMAGE_TAG)
	go test -c -tags e2e -o bin/e2e.test ./test/e2e
	go build -o bin/e2e/helm helm.sh/helm/v4/cmd/helm
	status=0; \
	trap '$(MAKE) node-down' INT TERM; \
	$(MAKE) node-up NODE_IMAGES="$(E2E_IMAGES)" && \
	E2E_IMAGE_TAG=$(IMAGE_TAG) E2E_HELM=$(CURDIR)/bin/e2e/helm E2E_KUBECTL=$(CONTROL_PLANE_DIR)/kubectl \
		$(NODE_ENV) hack/node/node.sh exec bin/e2e.test -test.v -test.timeout 40m -ginkgo.v $(E2E_FLAGS) || status=$$?; \
	$(MAKE) node-down || { [ $$status -ne 0 ] || status=1; }; \
	exit $$status

##@ Build

.PHONY: build
build: ## Build bin/apisnoop, bin/snoop-proxy and bin/kubectl-snoop.
	CGO_ENABLED=0 go build -trimpath -o bin/apisnoop ./cmd/apisnoop
	CGO_ENABLED=0 go build -trimpath -o bin/snoop-proxy ./cmd/snoop-proxy
	CGO_ENABLED=0 go build -trimpath -o bin/kubectl-snoop ./cmd/kubectl-snoop

.PHONY: run
run: manifests ## Run the manager against the cluster of the current kubeconfig.
	go run ./cmd/apisnoop manager

# What the images and release archives are stamped with; override for a
# release (make image dist VERSION=v0.1.0). Every timestamp inside them is
# SOURCE_DATE_EPOCH (the last commit's time), so a rebuild gives the same bytes.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_REPO ?= apisnoop.dev
IMAGE_TAG ?= $(VERSION)
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
RELEASE_URL ?= https://apisnoop.dev/kube-apisnoop/releases/download/$(VERSION)

.PHONY: image
image: ## Build OCI image archives bin/images/{apisnoop,snoop-proxy,apisnoop-testkit}.tar without Docker (import: ctr -n k8s.io images import --all-platforms FILE).
	KUBE_VERSION=$(KUBE_VERSION) CONTROL_PLANE_DIR=$(CONTROL_PLANE_DIR) hack/build-control-plane.sh kubectl >/dev/null
	go run ./hack/release image -out bin/images -repo $(IMAGE_REPO) -tag $(IMAGE_TAG) \
		-version $(VERSION) -revision $(REVISION) -created $(SOURCE_DATE_EPOCH) \
		-platforms $(IMAGE_PLATFORMS) -kubectl $(CONTROL_PLANE_DIR)/kubectl

.PHONY: dist
dist: ## Build kubectl-snoop release archives for linux/darwin amd64/arm64, SHA256SUMS and the filled krew manifest under bin/dist/.
	go run ./hack/release dist -out bin/dist -version $(VERSION) -created $(SOURCE_DATE_EPOCH) \
		-release-url $(RELEASE_URL) -manifest plugins/snoop.yaml

##@ Helm

# helm is a Go tool of this module (go.mod's tool directive): no download
# beyond the Go module proxy.
HELM ?= go tool helm
CHART ?= charts/kube-apisnoop
CHART_OUT ?= $(CURDIR)/bin/chart
HELM_CERT_MANAGER ?= --set webhook.certManager.enabled=true --set webhook.certManager.issuerRef.name=example-issuer

.PHONY: helm
helm: ## Copy config/crd/bases into the chart's crds/, lint the chart (strict) and render it, with its defaults and with cert-manager, into bin/chart/.
	rm -f $(CHART)/crds/*.yaml
	cp config/crd/bases/*.yaml $(CHART)/crds/
	$(HELM) lint --strict --namespace apisnoop-system $(CHART)
	$(HELM) lint --strict --namespace apisnoop-system $(CHART) $(HELM_CERT_MANAGER)
	mkdir -p $(CHART_OUT)
	$(HELM) template apisnoop $(CHART) --namespace apisnoop-system --include-crds > $(CHART_OUT)/kube-apisnoop.yaml
	$(HELM) template apisnoop $(CHART) --namespace apisnoop-system --include-crds $(HELM_CERT_MANAGER) > $(CHART_OUT)/kube-apisnoop-cert-manager.yaml
	@echo "rendered into $(CHART_OUT); go test ./test/helm checks the chart against config/ and an API server"

##@ Real node

# A throwaway single-node cluster in the network namespace $(NODE_NAME), with
# no route out (root; hack/node/node.sh says what runs and how to reach it).
# NODE_IMAGES: image archives for node-up to import, e.g.
# NODE_IMAGES="$(wildcard bin/images/*.tar)" after make image.
NODE_NAME ?= apisnoop-node
NODE_IMAGES ?=
NODE_ENV = KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) CONTROL_PLANE_DIR=$(CONTROL_PLANE_DIR) NODE_NAME=$(NODE_NAME)

.PHONY: node-up
node-up: ## Start (or keep) a real node in a network namespace of its own: etcd, kube-apiserver, controller-manager, scheduler, kube-proxy, containerd, kubelet; reach it with hack/node/node.sh kubectl|exec (admin kubeconfig bin/node/kubeconfig).
	$(NODE_ENV) NODE_IMAGES="$(NODE_IMAGES)" hack/node/node.sh up

.PHONY: node-down
node-down: ## Stop the real node and remove every process, mount, network namespace, cgroup and state file it made (also after a failed node-up).
	$(NODE_ENV) hack/node/node.sh down
