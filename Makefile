# Outrider: a Consul-native, SPIFFE-native sidecar proxy.
#   make demo   build everything and run a small local mesh (Ctrl-C stops it)
#   make test   format, vet, staticcheck, and every test (with -race) against real Consul, Jaeger and SPIRE,
#               then every fuzz target for 2s
#   make fuzz   every fuzz target for FUZZTIME (default 60s) each
SHELL := /bin/bash
GO ?= go
BIN := bin/outrider
TOOLS_BIN := $(CURDIR)/.tools/bin
STATICCHECK_VERSION := v0.8.2
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all build test fuzz check fmt-check vet staticcheck unit tools tools-consul tools-jaeger tools-spire tools-redis demo bench scale clean

all: build

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/outrider

## tools: build the pinned real peers (Consul, Jaeger, SPIRE) into .tools/bin when missing
tools:
	tools/build.sh consul jaeger spire

tools-consul:
	tools/build.sh consul

tools-jaeger:
	tools/build.sh jaeger

tools-spire:
	tools/build.sh spire

## tools-redis: install Debian's redis-server when missing (global rate-limit tests)
tools-redis:
	tools/redis.sh

$(TOOLS_BIN)/staticcheck:
	GOBIN=$(TOOLS_BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*')); \
	if [ -n "$$out" ]; then echo "gofmt: not formatted:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck: $(TOOLS_BIN)/staticcheck
	$(TOOLS_BIN)/staticcheck ./...

check: fmt-check vet staticcheck

## test: everything CI runs; integration tests start real Consul agents, Jaeger and SPIRE
test: check tools-consul tools-jaeger tools-spire tools-redis
	OUTRIDER_TOOLS_BIN=$(TOOLS_BIN) OUTRIDER_REQUIRE_REDIS=1 $(GO) test -race -count=1 -timeout 20m ./...
	FUZZTIME=2s GO=$(GO) tools/fuzz.sh

## fuzz: every native fuzz target in turn, FUZZTIME each (tools/fuzz.sh)
FUZZTIME ?= 60s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) tools/fuzz.sh

## demo: a local mesh with a dev Consul agent, Jaeger, three services and their Outrider sidecars
demo: build tools-consul tools-jaeger
	examples/demo/run.sh

## bench: the sidecar-pair benchmark against direct and Consul's built-in proxy (see bench/README.md)
bench: build tools-consul
	bench/pair.sh

## scale: idle connections held, a burst of new ones, twice the capacity for 60 s and a 10-minute
## soak at half capacity through a real pair (about 14 minutes; see bench/README.md)
scale: build
	mkdir -p bench/results && set -o pipefail && (uptime && $(GO) run ./bench/scale -outrider $(BIN) && uptime) 2>&1 | \
		tee bench/results/scale-$$(date -u +%Y%m%dT%H%M%SZ).txt

clean:
	rm -rf bin
