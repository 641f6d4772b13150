#!/usr/bin/env bash
# Installs the Debian packages a make target needs, only those missing.
# As root on Debian/Ubuntu: `apt-get update` once, then `apt-get install`.
# Otherwise: prints the one command to run and fails at once, before any
# test starts and fails halfway for want of a tool.
#
#   scripts/deps.sh test            what `make test` needs (Mosquitto)
#   scripts/deps.sh deploy          `make ci-deploy`: qemu-user-static, strace, systemd-analyze
#   scripts/deps.sh systemd         `make ci-systemd`: systemd-nspawn, debootstrap
#   scripts/deps.sh proof           `make proof`: Node.js and npm (the seed client)
#   scripts/deps.sh test deploy ... several at once (one apt-get update)
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin

# package:probe — the probe is a command that the package provides.
declare -A groups=(
	[test]="mosquitto:mosquitto git:git"
	[deploy]="qemu-user-static:qemu-arm-static strace:strace systemd:systemd-analyze dpkg:dpkg-deb"
	[systemd]="systemd-container:systemd-nspawn debootstrap:debootstrap util-linux:nsenter"
	[proof]="nodejs:node npm:npm mosquitto:mosquitto"
)

missing=()
for g in "$@"; do
	[ -n "${groups[$g]:-}" ] || { echo "deps.sh: unknown group '$g' (known: ${!groups[*]})" >&2; exit 2; }
	for pair in ${groups[$g]}; do
		pkg=${pair%%:*} probe=${pair##*:}
		command -v "$probe" >/dev/null 2>&1 && continue
		[[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
	done
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
	echo "missing: ${missing[*]} (for: $*). Run:" >&2
	if command -v apt-get >/dev/null; then
		echo "  sudo apt-get install -y ${missing[*]}" >&2
	else
		echo "  install ${missing[*]} with your package manager" >&2
	fi
	exit 1
fi
echo "== installing ${missing[*]} (for: $*)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
