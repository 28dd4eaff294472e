# synced-folder — build, test and run. `make help` lists the targets.

GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/syncedfolder/synced-folder/internal/version.Version=$(VERSION)
export GOFLAGS := -buildvcs=false

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Build

.PHONY: build
build: ## Build syncserver, syncagent and manager into bin/.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

##@ Test

.PHONY: test
test: ## Run every test tier (unit, property, store conformance on PostgreSQL, engine e2e, envtest, fuzz seeds).
	bash hack/test.sh

.PHONY: lint
lint: ## go vet, a gofmt check and golangci-lint (.golangci.yml; pinned by hack/tools.sh), the e2e-tagged suite included; the agent and server cross-built for macOS and Windows.
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/cluster/
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$$(bash hack/tools.sh golangci-lint) run --build-tags e2e ./...
	@# The server and agent also run on a laptop: they must build for macOS and Windows.
	GOOS=darwin $(GO) build ./cmd/syncagent ./cmd/syncserver
	GOOS=windows $(GO) build ./cmd/syncagent ./cmd/syncserver

.PHONY: bench
bench: ## Run the Go benchmarks, then the side-by-side harness against rsync and Syncthing (QUICK=1: small sizes).
	QUICK=$(QUICK) bash hack/bench.sh

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 30s) each.
	bash hack/fuzz.sh $(or $(FUZZTIME),30s)

.PHONY: chaos
chaos: ## Randomized fault-injection runs (test/chaos) over SEEDS seeds (default 50) from SEED_BASE (default 1).
	$(GO) test -count=1 -timeout 0 -v ./test/chaos -run '^(TestChaos|TestCrashConsistency)$$' \
		-seeds=$(or $(SEEDS),50) -seed-base=$(or $(SEED_BASE),1) -steps=$(or $(STEPS),40)

##@ Run

.PHONY: run-local
run-local: build ## Local quick start: one server and two agents on ./tmp/a and ./tmp/b.
	bash hack/run-local.sh

##@ Operator

KUBECTL ?= kubectl
IMG ?= ghcr.io/syncedfolder/synced-folder:$(VERSION)

.PHONY: manifests
manifests: ## Generate the CRD, the RBAC role and the test ServiceMonitor CRD into config/ (controller-gen).
	bash hack/generate.sh

.PHONY: generate
generate: manifests ## Generate deepcopy code (and everything else controller-gen writes).

.PHONY: envtest
envtest: ## Build envtest's etcd and kube-apiserver (cached under bin/) and print their directory.
	@bash hack/envtest.sh

.PHONY: install
install: manifests ## Install the CRDs into the cluster of the current kubeconfig.
	$$(bash hack/tools.sh kustomize) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: ## Remove the CRDs (and every SyncedFolder) from the cluster.
	$$(bash hack/tools.sh kustomize) build config/crd | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: run
run: manifests ## Run the manager from this tree against the current kubeconfig (no webhooks).
	ENABLE_WEBHOOKS=false $(GO) run ./cmd/manager --server-image=$(IMG) --agent-image=$(IMG)

.PHONY: deploy
deploy: manifests ## Deploy the operator (config/default) with image IMG.
	cd config/manager && $$(bash ../../hack/tools.sh kustomize) edit set image controller=$(IMG)
	$$(bash hack/tools.sh kustomize) build config/default | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove the operator deployed by `make deploy`.
	$$(bash hack/tools.sh kustomize) build config/default | $(KUBECTL) delete --ignore-not-found -f -

##@ Ship

IMAGES_DIR := $(BIN)/images

.PHONY: images
images: ## Build the one image (/manager, /syncserver, /syncagent) as an OCI tarball under bin/images (no Docker needed).
	$(GO) run ./hack/images build -image $(IMG) -version $(VERSION) -ldflags '$(LDFLAGS)' -out $(IMAGES_DIR) \
		-revision "$$(git rev-parse HEAD 2>/dev/null)"

.PHONY: push
push: images ## Push the image tarball to IMG's registry (credentials: REGISTRY_USERNAME, REGISTRY_PASSWORD).
	$(GO) run ./hack/images push -image $(IMG) -dir $(IMAGES_DIR)

.PHONY: chart
chart: manifests ## Lint the Helm chart (helm lint --strict) and render it with default values.
	$$(bash hack/tools.sh helm) lint --strict charts/synced-folder
	$$(bash hack/tools.sh helm) template synced-folder charts/synced-folder --namespace synced-folder-system \
		--kube-version 1.37.0 >/dev/null

.PHONY: helm-lint
helm-lint: chart ## Alias of chart.

##@ Local cluster

.PHONY: cluster-up
cluster-up: ## Start a real single-node cluster here (root; first run builds Kubernetes, ~15 min) and print its kubeconfig.
	@bash hack/local-cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and restore the host (sysctls, mounts, iptables, bridge, dirs).
	bash hack/local-cluster/down.sh

.PHONY: demo
demo: ## The real product on a local single-node cluster: chart, a SyncedFolder, two synced pods (root).
	bash hack/demo.sh

.PHONY: demo-down
demo-down: ## Remove the demo: stop the local cluster and restore the host.
	bash hack/demo.sh down

.PHONY: e2e
e2e: ## End-to-end suite on a real local cluster (test/e2e/cluster); always tears it down, keeps logs on failure.
	bash hack/e2e.sh
