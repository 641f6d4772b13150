# Power cuts: the real gatewayd with its buffer on LazyFS, cut at random
# points (kill -9, then LazyFS drops every write not yet fsynced), plus torn
# writes on the journal and the bbolt file; every reading accounted for by
# identity against what iotsim accepted. Included by the top-level Makefile.
#
#   make powercut                        ~3 min (+1 min the first time: LazyFS build, cached)
#   make powercut POWERCUT_ARGS='-seed N -cycles 20 -folds 20 -torn 30 -budget 10m'
#
# Needs root and /dev/fuse (LazyFS is a FUSE file system); installs LazyFS's
# Debian build dependencies when missing. LazyFS's source: LAZYFS_SRC.
GO            ?= go
POWERCUT_BIN  ?= bin/powercut
POWERCUT_ARGS ?=
LAZYFS_SRC    ?= ../shared/tools/lazyfs
LAZYFS_CACHE  ?= /var/cache/gatewayd-ci

.PHONY: powercut

powercut:
	@mkdir -p $(POWERCUT_BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(POWERCUT_BIN)/gatewayd ./cmd/gatewayd
	CGO_ENABLED=0 $(GO) build -trimpath -o $(POWERCUT_BIN)/iotsim ./cmd/iotsim
	CGO_ENABLED=0 $(GO) build -trimpath -o $(POWERCUT_BIN)/powercut ./cmd/powercut
	@LAZYFS_SRC='$(LAZYFS_SRC)' LAZYFS_CACHE='$(LAZYFS_CACHE)' deploy/powercut.sh $(POWERCUT_BIN) $(POWERCUT_ARGS)
