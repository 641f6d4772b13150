# Field deployment: ARM binaries, .deb packages, and the CI checks of both.
# Included by the top-level Makefile; usable alone as `make -f deploy/deploy.mk`.
#
#   make build-arm   dist/{gatewayd,iotsim}-linux-{armv6,armv7,arm64}
#   make deb         dist/gatewayd_<ver>_{armhf,arm64,amd64}.deb (armhf = armv6 build)
#   make ci-deploy   unit verify + security exposure, the daemon's syscalls vs
#                    the unit's filter, ARM e2e under qemu, .deb install into
#                    a throwaway root, armv7 size
#   make ci-systemd  the amd64 .deb installed in a Debian bookworm container
#                    booted with systemd-nspawn (systemd as PID 1), every
#                    behaviour of the unit checked; root only
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DIST    ?= dist

# Static (no cgo: periph talks to /dev/i2c-* with plain syscalls), stripped,
# reproducible paths, version stamped in.
DEPLOY_LDFLAGS := -s -w -X main.version=$(VERSION)
DEPLOY_GOBUILD  = CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags '$(DEPLOY_LDFLAGS)'

# Raspberry Pi flavours: armv6 = Zero/Zero W/1 (and Raspberry Pi OS armhf,
# whose userland is ARMv6), armv7 = 2/3/4 on 32-bit, arm64 = 3/4/5/Zero 2 on 64-bit.
ARM_FLAVOURS := armv6 armv7 arm64
GOENV_armv6  := GOARCH=arm GOARM=6
GOENV_armv7  := GOARCH=arm GOARM=7
GOENV_arm64  := GOARCH=arm64
GOENV_amd64  := GOARCH=amd64

# Debian versions must start with a digit: see deploy/debversion.sh.
DEB_VERSION ?= $(shell deploy/debversion.sh '$(VERSION)')
# armhf gets the armv6 binary: it must run on every Pi.
DEB_ARCHES   := armhf:armv6 arm64:arm64 amd64:amd64

# File times in the packages: the last commit's, so the same commit gives
# byte-identical .debs (the binaries are reproducible with -trimpath).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

NFPM := $(DIST)/.tools/nfpm
NOTIFYLISTEN := $(DIST)/.tools/notifylisten

.PHONY: build-arm build-native deb ci-deploy ci-systemd ci-unit ci-syscalls ci-arm ci-deb ci-size FORCE

build-arm: $(foreach f,$(ARM_FLAVOURS),$(DIST)/gatewayd-linux-$(f) $(DIST)/iotsim-linux-$(f))

# Native builds for the packaging and for the e2e (iotsim runs natively).
build-native: $(DIST)/gatewayd-linux-amd64 $(DIST)/iotsim-native $(NOTIFYLISTEN)

# go build is itself incremental, so always ask it (FORCE).
$(DIST)/gatewayd-linux-%: FORCE
	@mkdir -p $(DIST)
	$(GOENV_$*) $(DEPLOY_GOBUILD) -o $@ ./cmd/gatewayd

$(DIST)/iotsim-linux-%: FORCE
	@mkdir -p $(DIST)
	$(GOENV_$*) $(DEPLOY_GOBUILD) -o $@ ./cmd/iotsim

$(DIST)/iotsim-native: FORCE
	@mkdir -p $(DIST)
	$(DEPLOY_GOBUILD) -o $@ ./cmd/iotsim

# A stand-in for systemd's notify socket, for the e2e.
$(NOTIFYLISTEN): FORCE
	@mkdir -p $(dir $@)
	CGO_ENABLED=0 $(GO) build -o $@ ./deploy/ci/notifylisten

# nfpm lives in its own module (deploy/nfpm/go.mod) so its many
# dependencies stay out of gatewayd's go.mod.
$(NFPM): deploy/nfpm/go.mod deploy/nfpm/go.sum
	@mkdir -p $(dir $@)
	cd deploy/nfpm && CGO_ENABLED=0 $(GO) build -trimpath -o $(abspath $@) github.com/goreleaser/nfpm/v2/cmd/nfpm

deb: $(DIST)/gatewayd-linux-armv6 $(DIST)/gatewayd-linux-arm64 $(DIST)/gatewayd-linux-amd64 $(NFPM)
	@test -f configs/gatewayd.toml || { echo "deb: configs/gatewayd.toml (the example config) is missing"; exit 1; }
	@rm -f $(DIST)/gatewayd_*.deb
	@set -e; for pair in $(DEB_ARCHES); do \
	  deb=$${pair%%:*}; flavour=$${pair##*:}; \
	  SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) DEB_ARCH=$$deb GATEWAYD_BIN=$(DIST)/gatewayd-linux-$$flavour DEB_VERSION='$(DEB_VERSION)' \
	    $(NFPM) package --config deploy/nfpm.yaml --packager deb --target $(DIST)/ >/dev/null; \
	  echo "built $$(ls $(DIST)/gatewayd_*_$$deb.deb)"; \
	done

# CI: every check prints PASS/FAIL lines; all run, the target fails if any did.
ci-deploy: build-arm build-native deb
	@deploy/ci/run.sh $(DIST)

# The .deb under a real systemd (deploy/ci/systemd.sh): a debootstrap root
# cached in /var/cache/gatewayd-ci, booted with systemd-nspawn. Root only;
# without root or nspawn it says so, and fails when CI=true.
ci-systemd: deb $(DIST)/iotsim-native
	@deploy/ci/systemd.sh $(DIST)

# The checks one by one, for local use.
ci-unit: $(DIST)/gatewayd-linux-amd64
	@deploy/ci/unit.sh $(DIST)
ci-syscalls: build-native
	@deploy/ci/syscalls.sh $(DIST)
ci-arm: build-arm $(DIST)/iotsim-native $(NOTIFYLISTEN)
	@deploy/ci/arm-e2e.sh $(DIST)
ci-deb: deb
	@deploy/ci/deb-check.sh $(DIST)
ci-size: $(DIST)/gatewayd-linux-armv7
	@deploy/ci/size.sh $(DIST)

FORCE:
