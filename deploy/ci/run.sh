#!/usr/bin/env bash
# ci-deploy: runs every deployment check, all of them even if one fails.
# Usage: deploy/ci/run.sh DIST
set -uo pipefail
cd "$(dirname "$0")/../.."
dist=${1:-dist}
status=0
results=()
for check in unit syscalls size deb-check arm-e2e; do
	echo "== deploy check: $check"
	start=$(date +%s)
	if deploy/ci/$check.sh "$dist"; then
		results+=("PASS $check ($(($(date +%s) - start))s)")
	else
		results+=("FAIL $check ($(($(date +%s) - start))s)")
		status=1
	fi
done
echo "== deploy checks"
printf '%s\n' "${results[@]}"
exit $status
