# pod-identity-injector. The two commands a new machine needs are
# `make demo` and `make test`; everything else is a building block.

GO        ?= go
BIN       := $(CURDIR)/bin
# The version both binaries print with --version, and the images' tag.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
# Every timestamp in the images: the commit's time, so that two builds of
# one commit give the same digests.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
LDFLAGS   := -s -w -X github.com/podidentity/injector/internal/version.Version=$(VERSION) -X github.com/podidentity/injector/internal/version.Commit=$(COMMIT)
GOFLAGS_BUILD := -trimpath -ldflags "$(LDFLAGS)"
# make images REGISTRY=myacr.azurecr.io [TAG=...] pushes both images there.
REGISTRY  ?=
TAG       ?= $(VERSION)
PLATFORMS ?= linux/amd64,linux/arm64
IMAGES_OUT ?= $(CURDIR)/_output/images
CERTS_DIR ?= $(CURDIR)/.cache/certs
# SCALE is bench-scale's namespace counts.
SCALE     ?= 1,1000,5000

.PHONY: all build deps test unit vet fmt-check tidy-check lint e2e demo tools bench bench-e2e bench-node bench-sidecar bench-scale bench-footprint images certs generate verify-generated fuzz clean chart chart-update chart-e2e plugin

all: build

## build: bin/pod-identity-webhook and bin/pod-identity-sidecar (static)
build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/pod-identity-webhook ./cmd/webhook
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/pod-identity-sidecar ./cmd/sidecar

## plugin: the kubectl plugin, `kubectl pod-identity` once on PATH (set
## GOOS, GOARCH and PLUGIN for another platform)
PLUGIN ?= $(BIN)/kubectl-pod_identity
plugin:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(PLUGIN) ./cmd/kubectl-pod_identity

## test: formatting, vet, lint, go.mod tidy, the unit tests and the e2e
## suite on a real control plane (built once into a cache outside the
## repository)
test: fmt-check vet lint tidy-check verify-generated deps tools
	$(GO) test -tags e2e -count=1 -timeout 30m ./...

# UNIT_NEEDS_TOOLS: the packages whose unit tests run built tools from the
# tools cache, which `make unit` leaves out so that it passes on a fresh
# clone: ./charts (the real Helm CLI and kubectl; `make chart` builds them
# and runs it). `make test` runs them all.
UNIT_NEEDS_TOOLS := github.com/podidentity/injector/charts

## unit: the unit tests of every package except $(UNIT_NEEDS_TOOLS), with
## no control plane and no tools cache
unit:
	@pkgs=$$($(GO) list ./... | grep -vxF $(foreach p,$(UNIT_NEEDS_TOOLS),-e $(p))) && \
		$(GO) test -count=1 $$pkgs

## e2e: every package with a `//go:build e2e` test file (hack/e2e-packages.sh
## finds them; the same suites `make test` runs), on a real control plane
e2e: deps tools
	@pkgs=$$(hack/e2e-packages.sh) && \
		$(GO) test -tags e2e -count=1 -timeout 30m $$pkgs

# CHART_TOOLS: what the chart's tests find in the tools cache: Helm, and
# kubectl for the drift test, which looks it up with testcluster.FindBinaries
# and so also needs the control plane's binaries and azcopy to be there.
CHART_TOOLS := helm kubectl etcd kube-apiserver kube-controller-manager azcopy

## chart: the Helm chart's tests with the real Helm CLI: lint, the goldens,
## the schema's refusals, the CRDs, the drift from manifests/ and the values
## table in docs/install.md (builds the tools they need first)
chart:
	hack/build-tools.sh $(CHART_TOOLS) >/dev/null
	$(GO) test -count=1 ./charts/

## chart-update: rewrite the chart's goldens, its crds/ and the values table
## in docs/install.md after changing the chart; review the diff
chart-update:
	hack/build-tools.sh $(CHART_TOOLS) >/dev/null
	$(GO) test -count=1 ./charts/ -update

## chart-e2e: helm install, upgrade and uninstall on a real control plane
chart-e2e: tools
	$(GO) test -tags e2e -count=1 -timeout 20m -run TestE2EHelm ./charts/

## generate: rewrite the DeepCopy and the CRDs from the API types
## (hack/generate.sh, controller-gen); then `make chart-update` for the
## chart's copy of the CRDs
generate:
	hack/generate.sh

## verify-generated: the committed DeepCopy and CRDs match the API types
verify-generated:
	hack/verify-generated.sh

## tidy-check: go.mod and go.sum are what `go mod tidy` would write
tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy: run 'go mod tidy' and commit the result" >&2; exit 1; }

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...

# GOLANGCI_LINT: the pinned linter in the tools cache (hack/build-tools.sh
# says where, and which version).
GOLANGCI_LINT_VERSION := $(shell sed -n 's/^GOLANGCI_LINT_VERSION=\([^ ]*\).*/\1/p' hack/build-tools.sh)
TOOLS_CACHE ?= $(or $(POD_IDENTITY_TOOLS_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pod-identity-injector)
GOLANGCI_LINT := $(TOOLS_CACHE)/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint

## lint: golangci-lint with .golangci.yml over every package, e2e files
## included (the config sets the build tags); builds the linter into the
## tools cache first if it is missing (about a minute)
lint:
	@test -x $(GOLANGCI_LINT) || POD_IDENTITY_TOOLS_CACHE=$(TOOLS_CACHE) hack/build-tools.sh golangci-lint >/dev/null
	$(GOLANGCI_LINT) run ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## deps: the Debian packages the node and tests need (only those missing),
## and the e2e client matrix's npm packages (into the tools cache, by lockfile)
deps:
	hack/install-deps.sh
	hack/install-npm.sh >/dev/null

## tools: the control plane, the node (kubelet, containerd, runc), Helm and
## azcopy, built from Go modules into the cache
tools:
	hack/build-tools.sh

## demo: the main job on a real one-node cluster (the e2e suite e2e/node's),
## as root. It builds the tools that are missing first (hack/build-tools.sh,
## Azurite included: ~25-30 min cold on 2 cores), and the images on every
## run. Pass flags with DEMO_FLAGS, e.g. `make demo DEMO_FLAGS=--keep-running`.
demo:
	$(GO) build -o $(BIN)/demo ./hack/demo
	@$(BIN)/demo --repo=$(CURDIR) $(DEMO_FLAGS)

## bench: the Go benchmarks
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: every fuzz target in the repository (every func Fuzz... in a
## _test.go), one at a time, each for FUZZTIME, then the list of those that
## failed; not part of make test. A
## new interesting input is minimized in at most FUZZMINIMIZETIME runs, not
## for Go's default 60 s, in which FuzzAdmission once ran 27 inputs in 21 s.
## The first run builds each package with coverage instrumentation, which
## takes minutes for the packages that import client-go.
FUZZTIME ?= 10s
FUZZMINIMIZETIME ?= 10x
fuzz:
	@set -e; \
	targets=$$(grep -rn --include='*_test.go' --exclude-dir=_output --exclude-dir=node_modules -E '^func Fuzz[A-Za-z0-9_]*\(' . \
		| sed -E 's#^(.*)/[^/]*_test\.go:[0-9]+:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' | sort); \
	test -n "$$targets" || { echo "no fuzz targets found" >&2; exit 1; }; \
	printf '%s\n' "$$targets" | { \
		failed=""; \
		while read -r dir name; do \
			echo "== $$name in $$dir ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) "$$dir" </dev/null || failed="$$failed $$dir:$$name"; \
		done; \
		test -z "$$failed" || { echo "fuzz targets that failed (their inputs are in testdata/fuzz):$$failed" >&2; exit 1; }; \
	}

## bench-e2e: pod-create throughput without and with the webhook, and its
## admission latency, through the real apiserver (hack/benche2e; ~1 min)
bench-e2e: build tools
	$(GO) run ./hack/benche2e --markdown

## bench-node: bench-e2e's phases on the real one-node cluster (e2e/node's),
## the webhook as manifests/' two-replica Deployment, plus labelled pods in a
## namespace that is not opted in; every pod is held Pending by a scheduling
## gate (hack/benche2e -node; as root; ~5 min)
bench-node:
	$(GO) build -o $(BIN)/benche2e ./hack/benche2e
	$(BIN)/benche2e -node -repo=$(CURDIR) -pods 500 -rounds 5 --markdown

## bench-scale: the webhook's RSS, admission latency and ready-after-restart
## at 1, 1,000 and 5,000 namespaces (hack/benche2e -scale; ~15 min). Run it
## under the e2e lock on a shared machine.
bench-scale: build tools
	$(GO) run ./hack/benche2e -scale $(SCALE) -paced-pods 100 -paced-rate 20 -warmup 10 -webhook-log-level warn

## bench-footprint: the sidecar container's working set on the real node,
## idle and after 10,000 token requests, from the kubelet's /stats/summary
## (TestSidecarFootprint, build tags e2e and footprint; as root; ~2 min).
## Run it under the e2e lock on a shared machine.
bench-footprint: deps tools
	$(GO) test -tags 'e2e footprint' -count=1 -v -timeout 15m -run '^TestSidecarFootprint$$' ./e2e/node/

## bench-sidecar: the token server under load, as a real binary on loopback
bench-sidecar: build
	$(GO) run ./hack/loadgen bench -sidecar $(BIN)/pod-identity-sidecar -n 100000 -c 8

## images: webhook and sidecar images for $(PLATFORMS), without Docker
## (build/images), as an OCI layout in _output/images/oci; with REGISTRY set,
## also pushed to $(REGISTRY)/pod-identity-{webhook,sidecar}:$(TAG)
images:
	$(GO) run ./build/images --out $(IMAGES_OUT) --platforms $(PLATFORMS) \
		--ldflags "$(LDFLAGS)" --tag $(TAG) --version $(VERSION) --revision $(COMMIT) \
		--source-date-epoch $(SOURCE_DATE_EPOCH) --registry "$(REGISTRY)"

## certs: dev TLS without cert-manager; rerun to rotate under the kept CA
certs:
	$(GO) run ./hack/certgen --out $(CERTS_DIR)/tls --ca-dir $(CERTS_DIR)/ca --ip-addresses 127.0.0.1 --secret-yaml $(CERTS_DIR)/secret.yaml

clean:
	rm -rf $(BIN) $(CURDIR)/_output
