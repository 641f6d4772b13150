#!/usr/bin/env bash
# A minimal Debian bookworm root with systemd as its init, for booting with
# systemd-nspawn (deploy/ci/systemd.sh). Built once with
#   debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,ca-certificates bookworm ROOT MIRROR
# from this machine's own apt sources, then reused: it is cached under
# $GATEWAYD_CI_CACHE (/var/cache/gatewayd-ci) in a directory named after
# everything that decides its contents, so a changed recipe builds a new one
# and a re-run reuses the old one. Never written to after it is built: every
# run boots a copy.
# Usage: deploy/ci/nspawn-root.sh   (prints the root's path on stdout; logs on stderr)
set -euo pipefail

suite=bookworm
variant=minbase
include=systemd,systemd-sysv,dbus,ca-certificates
arch=$(dpkg --print-architecture)
cache=${GATEWAYD_CI_CACHE:-/var/cache/gatewayd-ci}
# Bump when the recipe below changes in a way the key does not capture.
recipe=1
key=$(printf '%s\n' "$suite" "$variant" "$include" "$arch" "$recipe" | sha256sum | cut -c1-12)
root=$cache/root-$suite-$arch-$key

log() { printf 'nspawn-root: %s\n' "$*" >&2; }

if [ -f "$root/.complete" ]; then
	log "reusing $root (built $(cat "$root/.complete"))"
	echo "$root"
	exit 0
fi

# The mirror of the suite we bootstrap, from this machine's apt sources
# (deb822 .sources files or one-line .list files); never a hard-coded host.
mirror_from_sources() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		# One stanza per paragraph: Types, URIs, Suites, Components.
		awk -v suite="$suite" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && enabled != "no" && uris != "")
					{ split(uris, u, " "); print u[1]; found = 1; exit }
				types = uris = suites = ""; enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			tolower($1) == "types:"   { $1 = ""; types = $0 }
			tolower($1) == "uris:"    { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
			tolower($1) == "suites:"  { $1 = ""; suites = $0; sub(/^ +/, "", suites) }
			tolower($1) == "enabled:" { enabled = tolower($2) }
			END { if (!found) flush() }
		' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		# deb [options] URI SUITE COMPONENTS...
		awk -v suite="$suite" '
			$1 != "deb" { next }
			{ i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } }
			$(i + 1) == suite { print $i; exit }
		' "$f"
	done
}
mirror=$(mirror_from_sources | head -n1)
if [ -z "$mirror" ]; then
	log "no '$suite' source with Types: deb in /etc/apt/sources.list or /etc/apt/sources.list.d/; cannot pick a mirror"
	exit 1
fi

if ! command -v debootstrap >/dev/null; then
	log "installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2 ||
		{ DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2; }
fi

mkdir -p "$cache"
# One builder at a time; a second caller waits, then reuses the result.
exec 9>"$cache/.lock"
flock -w 900 9 || { log "another build holds $cache/.lock"; exit 1; }
if [ -f "$root/.complete" ]; then
	log "reusing $root (built meanwhile)"
	echo "$root"
	exit 0
fi
keyring=()
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
tmp=$root.tmp
rm -rf "$tmp"
log "debootstrap --variant=$variant --include=$include $suite (from this machine's apt sources; a few minutes, once)"
start=$(date +%s)
if ! debootstrap --variant="$variant" --include="$include" "${keyring[@]}" "$suite" "$tmp" "$mirror" >"$cache/debootstrap.log" 2>&1; then
	log "debootstrap failed; its log:"
	tail -n 30 "$cache/debootstrap.log" >&2
	rm -rf "$tmp"
	exit 1
fi
# No package lists or archives: the root is for booting, not for apt.
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
# A machine id per boot (systemd makes a transient one when this is empty).
: >"$tmp/etc/machine-id"
printf '%s took %ss\n' "$(date -u +%FT%TZ)" "$(($(date +%s) - start))" >"$tmp/.complete"
mv "$tmp" "$root"
log "built $root in $(($(date +%s) - start))s"
echo "$root"
