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
