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
lint: ## go vet and a gofmt check.
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: bench
bench: ## Run the Go benchmarks (speed targets live here, never in tests).
	bash hack/bench.sh

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 30s) each.
	bash hack/fuzz.sh $(or $(FUZZTIME),30s)

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
