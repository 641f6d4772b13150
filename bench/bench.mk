# The proof harness (issue 7), included by the top-level Makefile:
#   make proof      the full run: every table at the issue's sizes (~20 min),
#                   printed and written to bench/results.md
#   make proof-ci   the small run (time scaled down, < ~3 min), printed and
#                   written to bench/results-ci.md (not committed)
# PROOF=small make proof is the same as make proof-ci.
PROOF ?= full

.PHONY: proof proof-ci

proof:
	$(GO) run ./cmd/gwproof -size $(PROOF) -out bench/results$(if $(filter small,$(PROOF)),-ci,).md

proof-ci:
	$(GO) run ./cmd/gwproof -size small -out bench/results-ci.md
