# krm — Kubernetes Resource Monitor. `make help` lists the targets.

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
KRM_CACHE ?= $(HOME)/.cache/krm
export KRM_CACHE

CLUSTER := $(BIN)/krm-cluster
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The release version of make dist: krew wants a semantic version with a
# leading v, so an untagged checkout gets v0.0.0-g<commit>.
KREW_VERSION ?= $(shell git describe --tags --match 'v*' 2>/dev/null || echo v0.0.0-g$$(git rev-parse --short HEAD 2>/dev/null))
LDFLAGS := -X github.com/krm-project/krm/pkg/version.Version=$(VERSION)
# Packages that need the local cluster check testing.Short() and skip.
TEST_FLAGS ?= -count=1
TEST_TIMEOUT ?= 20m

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build every command into bin/, with kubectl-krm's completion helper.
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/... ./test/cmd/...
	install -m 0755 cmd/kubectl-krm/kubectl_complete-krm $(BIN)/

IMAGE ?= krm-project/krm-agent:$(VERSION)
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)

.PHONY: image
image: ## Build the krm-agent image without Docker into bin/krm-agent-image.tar (IMAGE, IMAGE_ARCH).
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(BIN)/linux_$(IMAGE_ARCH)/krm-agent ./cmd/krm-agent
	$(GO) run ./internal/cmd/krm-image --binary $(BIN)/linux_$(IMAGE_ARCH)/krm-agent --arch $(IMAGE_ARCH) \
		--tag $(IMAGE) --version $(VERSION) --output $(BIN)/krm-agent-image.tar
	@echo "Load it with: docker load -i bin/krm-agent-image.tar"
	@echo "          or: kind load image-archive bin/krm-agent-image.tar"

.PHONY: verify
verify: verify-krew verify-helm verify-plugin-deps verify-ui ## gofmt, go vet and go mod tidy must be clean, manifests/install/ current, .krew.yaml a valid krew manifest, the chart linted, and the plugin free of the agent's dependencies.
	@files=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi
	$(GO) vet ./...
	$(GO) run ./internal/cmd/krm-manifests -check
	$(GO) mod tidy -diff
	cd test/tools/etcd && $(GO) mod tidy -diff
	cd test/tools/kube && $(GO) mod tidy -diff
	cd test/kind && $(GO) mod tidy -diff
	cd test/kind && $(GO) vet ./...

# The plugin reads the agent through pkg/client; linking the agent's store
# (go-redis) or its metrics server (Prometheus) would mean it imports a
# package of the agent's.
PLUGIN_FORBIDDEN_DEPS := ^github\.com/redis/go-redis(/|$$)|^github\.com/prometheus/client_golang/prometheus(/promhttp)?$$

# The web view's front-end dependency: uPlot, pinned in web/package.json and
# web/package-lock.json. Its built files are committed in pkg/ui/static/vendor
# so that go build needs no npm; make ui refreshes them, make verify-ui checks
# they are the pinned package's.
UI_VENDOR := pkg/ui/static/vendor
UI_FILES := dist/uPlot.iife.min.js dist/uPlot.min.css

.PHONY: ui
ui: ## Install web/'s pinned npm packages (npm ci) and copy uPlot's built files into pkg/ui/static/vendor.
	cd web && npm ci --ignore-scripts --no-audit --no-fund
	for f in $(UI_FILES); do cp web/node_modules/uplot/$$f $(UI_VENDOR)/; done
	cp web/node_modules/uplot/LICENSE $(UI_VENDOR)/uPlot.LICENSE

.PHONY: verify-ui
verify-ui: ## pkg/ui/static/vendor must hold the files of the uPlot that web/package-lock.json pins (npm ci into a temporary copy of web/).
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp web/package.json web/package-lock.json web/.npmrc "$$tmp"/; \
	(cd "$$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null); \
	for f in $(UI_FILES) LICENSE; do \
		dst=$(UI_VENDOR)/$$(basename $$f); [ "$$f" = LICENSE ] && dst=$(UI_VENDOR)/uPlot.LICENSE; \
		if ! cmp -s "$$tmp/node_modules/uplot/$$f" "$$dst"; then \
			echo "$$dst differs from the pinned uplot package's $$f: run make ui and commit the result"; exit 1; \
		fi; \
	done; echo "pkg/ui/static/vendor matches the pinned uplot $$(cd "$$tmp" && node -p 'require("./node_modules/uplot/package.json").version')"

.PHONY: verify-plugin-deps
verify-plugin-deps: ## kubectl-krm must link neither go-redis nor the Prometheus client.
	@set -e; deps=$$($(GO) list -deps ./cmd/kubectl-krm); \
	bad=$$(grep -E '$(PLUGIN_FORBIDDEN_DEPS)' <<<"$$deps" || true); \
	if [ -n "$$bad" ]; then \
		echo "kubectl-krm links packages of the agent's store or metrics server, which the plugin must not:"; \
		sed -E 's#^(github\.com/redis/go-redis/v[0-9]+)/.*#\1#' <<<"$$bad" | sort -u | sed 's/^/  /'; \
		echo "krm packages it links: $$(grep '^github.com/krm-project/' <<<"$$deps" | tr '\n' ' ')"; \
		echo "find the importer with: go list -deps -f '{{.ImportPath}}: {{.Imports}}' ./cmd/kubectl-krm | grep <package>"; \
		exit 1; \
	fi

CODE_GENERATOR_VERSION := v0.37.2

.PHONY: generate
generate: ## Regenerate pkg/apis' deepcopy functions with deepcopy-gen (time.Time is copied by value).
	@set -e; header=$$(mktemp); trap 'rm -f "$$header"' EXIT; \
	$(GO) run k8s.io/code-generator/cmd/deepcopy-gen@$(CODE_GENERATOR_VERSION) --go-header-file "$$header" \
		--output-file zz_generated.deepcopy.go ./pkg/apis/krm/v1alpha1; \
	sed -i -E 's/^(\t+)in\.([A-Za-z]+)\.DeepCopyInto\(&out\.([A-Za-z]+)\)$$/\1out.\3 = in.\2/' pkg/apis/krm/v1alpha1/zz_generated.deepcopy.go

.PHONY: manifests
manifests: ## Render manifests/install/*.yaml from the kustomizations (make verify checks they are current).
	$(GO) run ./internal/cmd/krm-manifests

.PHONY: demo
demo: build ## Bring up the local cluster with a workload, install krm from manifests/ and show the plugin's output; leaves it running.
	$(BIN)/krm-demo -bin $(BIN) -manifests manifests

.PHONY: test
test: verify unit fuzz integration ## verify, then unit tests, the fuzz targets for FUZZ_TIME each, integration and e2e tests on the local cluster (started if needed).

.PHONY: unit
unit: ## Unit tests only: no cluster.
	$(GO) test -short $(TEST_FLAGS) ./...

# Each Go fuzz target, with the package that holds it and its budget in
# executions, sized to about 10 s each on 2 shared cores. A count, not a
# duration: Go 1.26's fuzz coordinator can fail a target with a bare "context
# deadline exceeded" when a duration's deadline races a starved worker
# (golang/go#75804, fixed in Go 1.27). FUZZ_TIME, when set (60s, 50000x),
# replaces every budget. -short: no fuzz target needs the local cluster.
FUZZ_TARGETS := ./pkg/server:FuzzQuery:6000x ./pkg/server:FuzzSecureHandlerAuthorization:6000x \
	./pkg/agent/source:FuzzRawMeta:10000x ./pkg/store:FuzzDecode:15000x \
	./cmd/krm-agent:FuzzSecureListenerHandshake:1000x
FUZZ_TIME ?=

.PHONY: fuzz
fuzz: ## Run every Go fuzz target for its budget, or for FUZZ_TIME each: bad input must never panic (make test runs it).
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${rest#*:}; \
		budget=$${FUZZ_TIME:-$$budget}; \
		echo "fuzzing $$name in $$pkg for $$budget"; \
		$(GO) test -short -run '^$$' -fuzz "^$$name\$$" -fuzztime $$budget $$pkg; \
	done

.PHONY: integration
integration: $(CLUSTER) ## Integration and e2e tests; installs their Debian packages if missing (test/deps.sh), starts the local cluster if none runs, and stops it after.
	@bash test/deps.sh
	@set -e; started=; \
	if ! $(CLUSTER) status -q 2>/dev/null; then $(CLUSTER) up >/dev/null; started=1; fi; \
	trap 'if [ -n "$$started" ]; then $(CLUSTER) down; fi' EXIT; \
	$(GO) test $(TEST_FLAGS) -timeout $(TEST_TIMEOUT) ./...

.PHONY: bench
bench: $(CLUSTER) ## Benchmark krm-agent against kube-apiserver with 10k pods on the local cluster; prints a markdown report.
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/krm-agent ./test/cmd/krm-bench
	@set -e; started=; \
	if ! $(CLUSTER) status -q 2>/dev/null; then $(CLUSTER) up >/dev/null; started=1; fi; \
	trap 'if [ -n "$$started" ]; then $(CLUSTER) down; fi' EXIT; \
	$(BIN)/krm-bench -agent $(BIN)/krm-agent $(BENCH_FLAGS)

.PHONY: chaos
chaos: ## The fault suite in full (test/chaos) on a cluster of its own in /tmp/krm-chaos-cluster (CHAOS_FLAGS, e.g. -run drop); prints a markdown report. make test runs its short form.
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/krm-agent ./test/cmd/krm-chaos
	$(BIN)/krm-chaos -agent $(BIN)/krm-agent $(CHAOS_FLAGS)

.PHONY: load
load: $(CLUSTER) ## Load suite: krm-agent with 10k pods at 100 changes/s, 200 readers, 100 watchers (10 never read); prints a markdown report, fails when a bound does not hold (LOAD_FLAGS).
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/krm-agent ./test/cmd/krm-load
	@set -e; started=; \
	if ! $(CLUSTER) status -q 2>/dev/null; then $(CLUSTER) up >/dev/null; started=1; fi; \
	trap 'if [ -n "$$started" ]; then $(CLUSTER) down; fi' EXIT; \
	$(BIN)/krm-load -agent $(BIN)/krm-agent $(LOAD_FLAGS)

.PHONY: cluster-up
cluster-up: $(CLUSTER) ## Start the local cluster (idempotent); prints the env file to source.
	@$(CLUSTER) up

.PHONY: cluster-down
cluster-down: $(CLUSTER) ## Stop the local cluster and remove its state.
	@$(CLUSTER) down

.PHONY: $(CLUSTER)
$(CLUSTER):
	@$(GO) build -o $@ ./test/cmd/krm-cluster

# Where a release's files are downloaded from: with index.yaml among them,
# that URL is a chart repository (helm repo add krm $(CHART_REPO_URL)).
CHART_REPO_URL ?= https://github.com/krm-project/krm/releases/download/$(KREW_VERSION)

.PHONY: dist
dist: ## Build the release into dist/ (KREW_VERSION; DIST_FLAGS, e.g. --platforms host): the plugin's archives, checksums.txt, krm.yaml for krew, and the chart krm-<version>.tgz with index.yaml.
	$(GO) run ./internal/cmd/krm-dist --version $(KREW_VERSION) $(DIST_FLAGS)
	$(MAKE) --no-print-directory dist-chart

.PHONY: dist-chart
dist-chart: ## Package charts/krm into dist/krm-<version>.tgz (KREW_VERSION without its v; appVersion and image tag KREW_VERSION) and write dist/index.yaml for CHART_REPO_URL.
	@set -e; helm=$$($(GO) run ./test/cmd/krm-helm path); version=$(KREW_VERSION); \
	mkdir -p dist; rm -f dist/krm-*.tgz dist/index.yaml; \
	"$$helm" package $(CHART) --version "$${version#v}" --app-version "$$version" --destination dist; \
	"$$helm" repo index dist --url "$(CHART_REPO_URL)"; \
	echo "dist/index.yaml: a chart repository at $(CHART_REPO_URL)"

.PHONY: verify-krew
verify-krew: ## Render .krew.yaml with placeholder sums and check it with krew's validate-krew-manifest (built once into KRM_CACHE).
	cd test/tools/krew && $(GO) mod tidy -diff
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	validate=$$($(GO) run ./test/cmd/krm-krew path validate-krew-manifest); \
	$(GO) run ./internal/cmd/krm-dist --manifest-only --version $(KREW_VERSION) --out "$$tmp"; \
	echo "validate-krew-manifest -manifest krm.yaml -skip-install"; \
	"$$validate" -manifest "$$tmp/krm.yaml" -skip-install

CHART := charts/krm

.PHONY: verify-helm
verify-helm: ## helm lint the chart and render it with its defaults and every charts/krm/examples/*.yaml (helm built once into KRM_CACHE).
	cd test/tools/helm && $(GO) mod tidy -diff
	@set -e; helm=$$($(GO) run ./test/cmd/krm-helm path); \
	echo "helm lint --strict $(CHART)"; "$$helm" lint --strict --quiet $(CHART); \
	"$$helm" template krm $(CHART) --namespace krm-system >/dev/null; \
	for f in $(CHART)/examples/*.yaml; do \
		echo "helm lint --strict and helm template $(CHART) --values $$f"; \
		"$$helm" lint --strict --quiet $(CHART) --values "$$f"; \
		"$$helm" template krm $(CHART) --namespace krm-system --values "$$f" >/dev/null; \
	done

.PHONY: e2e-kind
e2e-kind: ## End-to-end test on a kind cluster: needs Docker or Podman; skips without one (CI does not run it).
	$(MAKE) image build VERSION=$(VERSION) IMAGE=$(IMAGE)
	cd test/kind && $(GO) test -count=1 -v -timeout 20m . -args \
		-image-archive $(BIN)/krm-agent-image.tar -image $(IMAGE) -plugin $(BIN) -manifests $(CURDIR)/manifests

.PHONY: clean
clean: ## Remove bin/ and dist/ (the binary cache in KRM_CACHE is kept).
	rm -rf $(BIN) dist
