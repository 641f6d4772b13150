# Shared helpers of the deploy checks. Each check prints PASS/FAIL lines and
# exits non-zero if any FAIL was printed.
fails=0
pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; fails=$((fails + 1)); }
info() { printf '     %s\n' "$*"; }
finish() {
	if [ "$fails" -gt 0 ]; then
		printf 'FAIL %s: %d check(s) failed\n' "$1" "$fails"
		exit 1
	fi
	printf 'PASS %s\n' "$1"
}
