# xdsbridge — build, run and test.
#
#   make run    build and serve the default plugins.yaml
#   make test   install what the tests need (Consul, BIND, Chromium), then run every test
#   make build  bin/xdsbridge
#   make image  the container image (podman), from a static binary built here
#   make proto  regenerate proto/source/v1 (generated code is committed)
#   make bench  benchmark xdsbridge against go-control-plane's caches and the floor (quick profile)
#   make reliability  the reliability suite's full profile, then every fuzz target

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BIN      := bin/xdsbridge
TOOLS    := $(CURDIR)/bin/tools

PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1

.PHONY: all build image test-deploy run test test-deps test-short vet fmt proto clean bench bench-full bench-micro reliability fuzz fuzz-short

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/xdsbridge

# image builds the container image from a static binary (CGO_ENABLED=0) and
# the file system the Containerfile copies, staged in bin/image: no base
# image is pulled.
IMAGE ?= xdsbridge:$(VERSION)

image:
	@bash test/tools/podman.sh >/dev/null
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/image/xdsbridge ./cmd/xdsbridge
	sh deploy/container/rootfs.sh bin/image/xdsbridge bin/image
	podman build --build-arg VERSION=$(VERSION) -f Containerfile -t $(IMAGE) bin/image

run: build
	$(BIN) run --config plugins.yaml

# test-deps installs the real peers the tests run against: a Consul agent
# (built once from the Go module proxy and cached outside the repository)
# and BIND's named and a headless Chromium from Debian's packages.
test-deps:
	@bash test/tools/dns.sh >/dev/null
	@bash test/tools/chromium.sh >/dev/null
	@bash test/tools/consul.sh >/dev/null
	@bash test/tools/podman.sh >/dev/null
	@bash test/tools/promtool.sh >/dev/null
	@bash test/tools/systemd-analyze.sh >/dev/null

# test requires the real peers (XDSBRIDGE_REQUIRE_PEERS=1): a test whose
# Consul, named or root is missing fails, naming it, where a plain `go test`
# skips. testsum prints go test's usual output, then the skipped tests by
# reason, and exits with go test's status.
test: test-deps build
	$(GO) build -o $(TOOLS)/testsum ./test/tools/testsum
	PATH="$$PATH:$$(dirname $$(bash test/tools/dns.sh))" \
	XDSBRIDGE_CHROMIUM=$$(bash test/tools/chromium.sh) \
	XDSBRIDGE_CONSUL=$$(bash test/tools/consul.sh) XDSBRIDGE_BIN=$(CURDIR)/$(BIN) XDSBRIDGE_REQUIRE_PEERS=1 \
		$(TOOLS)/testsum $(GO) test -json -race -timeout 20m -count=1 ./...
	cd bench && $(GO) test -race -timeout 20m -count=1 ./...
	$(MAKE) test-deploy

# test-deploy tests deploy/ (its own Go module, so that the Kubernetes types
# stay out of the main go.mod): the image `make image` built, the
# Kubernetes manifests, the systemd unit, the alerts and the dashboard.
test-deploy: test-deps build image
	cd deploy && XDSBRIDGE_REQUIRE_PEERS=1 XDSBRIDGE_BIN=$(CURDIR)/$(BIN) XDSBRIDGE_IMAGE=$(IMAGE) \
		PODMAN=$$(bash ../test/tools/podman.sh) PROMTOOL=$$(bash ../test/tools/promtool.sh) \
		SYSTEMD_ANALYZE=$$(bash ../test/tools/systemd-analyze.sh) \
		$(GO) test -race -timeout 10m -count=1 ./...

# test-short runs the tests that need no external peers.
test-short:
	$(GO) test -short -count=1 ./...
	cd bench && $(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...
	cd bench && $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

proto:
	@command -v protoc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null; }
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(TOOLS):$$PATH protoc -I proto \
		--go_out=. --go_opt=module=github.com/xdsbridge/xdsbridge \
		--go-grpc_out=. --go-grpc_opt=module=github.com/xdsbridge/xdsbridge \
		proto/source/v1/source.proto

# The benchmark is a module of its own (bench/go.mod), so that its
# dependencies stay out of the root module's.
bench:
	cd bench && $(GO) run ./cmd/xdsbench --profile quick --out results --publish ../docs/perf --readme ../README.md

bench-full:
	cd bench && $(GO) run ./cmd/xdsbench --profile full --out results

# bench-micro runs the per-stage microbenchmarks.
bench-micro:
	cd bench && $(GO) test -run '^$$' -bench . -benchmem .

FUZZTIME     ?= 5m
FUZZ_TARGETS := ./internal/config:FuzzParse ./plugins/static:FuzzParseFile ./aggregator:FuzzApply ./xds:FuzzRESTRequest ./internal/wire:FuzzAssembler

# reliability runs the reliability suite's full profile (figures are the
# FIGURE lines), then each fuzz target for FUZZTIME.
reliability: test-deps build
	PATH="$$PATH:$$(dirname $$(bash test/tools/dns.sh))" \
	XDSBRIDGE_CONSUL=$$(bash test/tools/consul.sh) XDSBRIDGE_BIN=$(CURDIR)/$(BIN) XDSBRIDGE_PROFILE=full XDSBRIDGE_REQUIRE_PEERS=1 \
		$(GO) test -count=1 -timeout 60m -run 'TestReliability' -v ./test/e2e
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg), $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg || exit 1; \
	done

fuzz-short:
	$(MAKE) fuzz FUZZTIME=10s

clean:
	rm -rf bin
