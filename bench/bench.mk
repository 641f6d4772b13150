# The proof harness (issues 7 and 11), included by the top-level Makefile:
#   make proof      the full run: every table at the issues' sizes (~15 min),
#                   printed and written to bench/results.md
#   make proof-ci   the small run (time scaled down and said so, ~5 min),
#                   printed and written to bench/results-ci.md (not
#                   committed); a missing tool (strace) fails it
# PROOF=small make proof is the same as make proof-ci.
PROOF ?= full

.PHONY: proof proof-ci

proof:
	$(GO) run ./cmd/gwproof -size $(PROOF) -out bench/results$(if $(filter small,$(PROOF)),-ci,).md

proof-ci:
	$(GO) run ./cmd/gwproof -size small -strict -out bench/results-ci.md
