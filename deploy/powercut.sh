#!/usr/bin/env bash
# make powercut: builds LazyFS once (cached), then runs cmd/powercut against
# the built gatewayd and iotsim. Whatever happens, the trap stops every
# process the run started (by the pids it recorded) and unmounts LazyFS.
# Usage: deploy/powercut.sh BINDIR [powercut flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
bindir=$1
shift
src=${LAZYFS_SRC:-../shared/tools/lazyfs}
cache=${LAZYFS_CACHE:-/var/cache/gatewayd-ci}

fail() { echo "FAIL powercut: $*"; exit 1; }
# Without root or FUSE: say so; a failure only in CI (CI=true).
skip() {
	if [ "${CI:-}" = true ]; then fail "$*"; fi
	echo "SKIP powercut: $* (not run)"
	exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (LazyFS mounts a FUSE file system; apt-get for its build)"
[ -c /dev/fuse ] || skip "no /dev/fuse on this machine"
[ -f "$src/build.sh" ] || fail "LazyFS source not found in $src (set LAZYFS_SRC)"

# LazyFS: built once per version of its source, build script and patch.
hash=$(cat "$src/build.sh" "$src"/*.tar.gz "$src"/*.patch | sha256sum | cut -c1-12)
lazyfs=$cache/lazyfs-$hash/lazyfs
mkdir -p "$cache"
exec 8>"$cache/.lazyfs.lock"
flock -w 600 8 || fail "another LazyFS build holds $cache/.lazyfs.lock"
if [ ! -x "$lazyfs" ] || ! LD_LIBRARY_PATH="$cache/lazyfs-$hash" ldd "$cache/lazyfs-$hash/lazyfs.bin" >/dev/null 2>&1 || LD_LIBRARY_PATH="$cache/lazyfs-$hash" ldd "$cache/lazyfs-$hash/lazyfs.bin" | grep -q "not found" ||
	! command -v fusermount3 >/dev/null; then
	echo "== building LazyFS from $src (once; cached in $cache/lazyfs-$hash)"
	start=$(date +%s)
	tmp=$(mktemp -d "$cache/lazyfs-build.XXXXXX")
	# build.sh installs its Debian build dependencies (and fuse3) when missing.
	if ! "$src/build.sh" "$tmp" >"$tmp.log" 2>&1; then
		tail -20 "$tmp.log"
		rm -rf "$tmp" "$tmp.log"
		fail "LazyFS build failed"
	fi
	rm -rf "$cache/lazyfs-$hash" "$tmp.log"
	mv "$tmp" "$cache/lazyfs-$hash"
	echo "   built in $(($(date +%s) - start))s"
fi
exec 8>&-

work=$(mktemp -d /tmp/pc.XXXXXX)
pid=
cleanup() {
	local p name
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	# Processes the run started and did not reap (it died?): by pid, and
	# only if the pid still runs the program it recorded.
	if [ -f "$work/pids" ]; then
		while read -r p name; do
			if [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' <"/proc/$p/cmdline" | grep -q "$name"; then
				kill -KILL "$p" 2>/dev/null || true
			fi
		done <"$work/pids"
	fi
	if grep -q " $work/m " /proc/self/mountinfo 2>/dev/null; then
		fusermount3 -u "$work/m" 2>/dev/null || fusermount3 -u -z "$work/m" 2>/dev/null || umount -l "$work/m" 2>/dev/null || true
	fi
	[ -n "${POWERCUT_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
status=0
"$bindir/powercut" -gatewayd "$bindir/gatewayd" -iotsim "$bindir/iotsim" -lazyfs "$lazyfs" -dir "$work" "$@" &
pid=$!
wait "$pid" || status=$?
pid=
echo "== powercut took $(($(date +%s) - start))s, status $status"
exit $status
