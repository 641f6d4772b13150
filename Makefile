# gatewayd — the two commands a newcomer needs:
#   make demo   emulated BME280 -> gatewayd -> iotsim (local platform emulator) over TLS
#   make test   everything CI runs on the code: gofmt, vet, tidy, tests, short fuzzing
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 8s

.PHONY: all build demo test fuzz lint bench clean

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gatewayd ./cmd/gatewayd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/iotsim ./cmd/iotsim

demo: build
	@scripts/demo.sh

lint:
	@echo "== gofmt, go vet, go mod tidy"
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@$(GO) mod tidy -diff >/dev/null || { echo "go mod tidy would change go.mod/go.sum"; $(GO) mod tidy -diff; exit 1; }

# Every fuzz target runs for FUZZTIME (their seed corpora also run in `go test`).
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

test: lint fuzz
	@echo "== go test ./..."
	@$(GO) test -count=1 -json ./... | $(GO) run ./internal/tools/testsum

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

clean:
	rm -rf bin dist .demo

-include deploy/deploy.mk
-include bench/bench.mk
-include deploy/powercut.mk
