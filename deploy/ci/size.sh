#!/usr/bin/env bash
# The stripped armv7 binary must stay under MAX_MIB (12) MiB; all sizes printed.
# Usage: deploy/ci/size.sh DIST
set -uo pipefail
cd "$(dirname "$0")/../.."
. deploy/ci/lib.sh
dist=${1:-dist}
max=${MAX_MIB:-12}
for f in "$dist"/gatewayd-linux-* "$dist"/iotsim-linux-*; do
	[ -f "$f" ] || continue
	info "$(basename "$f"): $(stat -c %s "$f") bytes ($(awk -v s="$(stat -c %s "$f")" 'BEGIN { printf "%.2f", s / 1048576 }') MiB)"
done
bin=$dist/gatewayd-linux-armv7
if [ ! -f "$bin" ]; then
	fail "size: $bin not built"
else
	size=$(stat -c %s "$bin")
	mib=$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }')
	# `go tool nm` finds no symbols in a stripped (-s) binary.
	if go tool nm "$bin" >/dev/null 2>&1; then
		fail "size: $bin is not stripped"
	fi
	if [ "$size" -le $((max * 1048576)) ]; then
		pass "size: stripped armv7 gatewayd is $mib MiB ($size bytes; bound $max MiB)"
	else
		fail "size: stripped armv7 gatewayd is $mib MiB, above $max MiB"
	fi
fi
finish size
