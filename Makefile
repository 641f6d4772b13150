# gatewayd — the two commands a newcomer needs:
#   make demo   emulated BME280 -> gatewayd -> iotsim (local platform emulator) over TLS
#   make test   everything CI runs on the code: gofmt, vet, tidy, staticcheck, short
#               fuzzing, all tests, and the race detector on the concurrent packages;
#               installs Mosquitto first when run as root on Debian (scripts/deps.sh)
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 8s
# staticcheck, run with `go run pkg@version` so it stays out of go.mod; the
# module proxy serves it, and this release supports Go 1.26.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The packages with goroutines, locks and shared state, under -race. -short
# skips their few long trials (about 1 min of CPU for the four on CI).
RACE_PKGS ?= ./buffer/ ./uplink/ ./sensors/... ./internal/health/ ./internal/tick/

.PHONY: all build demo deps test fuzz lint staticcheck race bench clean

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gatewayd ./cmd/gatewayd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/iotsim ./cmd/iotsim

demo: build
	@scripts/demo.sh

# What the tests need from Debian (Mosquitto): installed if root, otherwise
# the one command to run is printed and make stops here.
deps:
	@scripts/deps.sh test

lint:
	@echo "== gofmt, go vet, go mod tidy"
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@$(GO) mod tidy -diff >/dev/null || { echo "go mod tidy would change go.mod/go.sum"; $(GO) mod tidy -diff; exit 1; }

# Every fuzz target runs for FUZZTIME (their seed corpora also run in `go test`).
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

staticcheck:
	@echo "== staticcheck ($(STATICCHECK))"
	@$(GO) run $(STATICCHECK) ./...

race:
	@$(GO) test -race -short -count=1 $(RACE_PKGS)

# One summary for both runs: every test, then the concurrent packages again
# under the race detector (their package lines appear twice).
test: deps lint staticcheck fuzz
	@echo "== go test ./... ; go test -race -short $(RACE_PKGS)"
	@{ $(GO) test -count=1 -json ./...; $(GO) test -race -short -count=1 -json $(RACE_PKGS); } | $(GO) run ./internal/tools/testsum

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

clean:
	rm -rf bin dist .demo

-include deploy/deploy.mk
-include bench/bench.mk
-include deploy/powercut.mk
