#!/usr/bin/env bash
# Runs every Fuzz target in the module for a bounded time each.
set -euo pipefail
t=${1:-8s}
cd "$(dirname "$0")/.."
fail=0
while IFS=: read -r file name; do
  pkg=./$(dirname "$file")
  echo "== fuzz $pkg $name ($t)"
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >/tmp/gatewayd-fuzz.log 2>&1; then
    cat /tmp/gatewayd-fuzz.log; fail=1
  else
    tail -n 1 /tmp/gatewayd-fuzz.log
  fi
done < <(grep -rEo --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' . | sed 's/func //' | sort)
exit $fail
