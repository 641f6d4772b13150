#!/usr/bin/env bash
# Runs every Fuzz target in the module for a bounded time each. A failure that
# leaves a new input under testdata/fuzz/ is a real finding (rerun it with
# go test -run 'FuzzX/<file>'); a worker that merely died or hung on a loaded
# machine leaves none, and that target is run once more before failing.
set -euo pipefail
t=${1:-8s}
cd "$(dirname "$0")/.."
fail=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
count() { { find "$1/testdata/fuzz/$2" -type f 2>/dev/null || true; } | wc -l; }
while IFS=: read -r file name; do
  pkg=./$(dirname "$file")
  echo "== fuzz $pkg $name ($t)"
  for try in 1 2; do
    before=$(count "$pkg" "$name")
    if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >"$log" 2>&1; then
      tail -n 1 "$log"; break
    fi
    if [ "$(count "$pkg" "$name")" != "$before" ] || [ $try = 2 ]; then
      cat "$log"; fail=1; break
    fi
    echo "   (no failing input was saved: the fuzz worker died or hung under load; trying once more)"
    tail -n 5 "$log" | sed 's/^/   | /'
  done
done < <(grep -rEo --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' . | sed 's/func //' | sort)
exit $fail
