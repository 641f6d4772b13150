#!/usr/bin/env bash
# The .deb packages: contents and control fields of each, the right binary
# in each (armhf carries the armv6 build), and the amd64 package installed,
# upgraded, removed and purged with the real dpkg into throwaway roots,
# running its real maintainer scripts (dpkg --root --force-script-chrootless
# sets DPKG_ROOT, which the scripts honour).
# Usage: deploy/ci/deb-check.sh DIST
set -uo pipefail
cd "$(dirname "$0")/../.."
. deploy/ci/lib.sh
dist=${1:-dist}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

deb_for() { ls "$dist"/gatewayd_*_"$1".deb 2>/dev/null | head -n1; }

# --- Contents of every package ----------------------------------------------
for pair in armhf:armv6 arm64:arm64 amd64:amd64; do
	arch=${pair%%:*} flavour=${pair##*:}
	deb=$(deb_for "$arch")
	if [ -z "$deb" ]; then
		fail "deb $arch: no $dist/gatewayd_*_$arch.deb"
		continue
	fi
	info "$(basename "$deb"): $(stat -c %s "$deb") bytes"
	field() { dpkg-deb --field "$deb" "$1"; }
	[ "$(field Package)" = gatewayd ] || fail "deb $arch: Package is '$(field Package)'"
	[ "$(field Architecture)" = "$arch" ] || fail "deb $arch: Architecture is '$(field Architecture)'"
	case "$(field Version)" in [0-9]*) ;; *) fail "deb $arch: Version '$(field Version)' does not start with a digit" ;; esac
	dpkg-deb --contents "$deb" | awk '{ print $1, $2, $6 }' >"$tmp/contents-$arch"
	for want in \
		"-rwxr-xr-x root/root ./usr/bin/gatewayd" \
		"-rw-r--r-- root/root ./usr/lib/systemd/system/gatewayd.service" \
		"-rw-r--r-- root/root ./usr/lib/systemd/system/gatewayd.path" \
		"-rw-r--r-- root/root ./usr/lib/systemd/system/gatewayd-reload.service" \
		"-rw-r--r-- root/root ./usr/lib/udev/rules.d/60-gatewayd.rules" \
		"-rw-r--r-- root/root ./usr/share/doc/gatewayd/examples/gatewayd.toml" \
		"-rw-r--r-- root/root ./usr/share/doc/gatewayd/README.md" \
		"drwxr-xr-x root/root ./etc/gatewayd/"; do
		grep -qxF -- "$want" "$tmp/contents-$arch" || fail "deb $arch: missing '$want'"
	done
	# No live config: it would start the daemon with placeholder credentials.
	if grep -q '\./etc/gatewayd/gatewayd.toml$\|\./boot/' "$tmp/contents-$arch"; then
		fail "deb $arch: ships a live config"
	fi
	mkdir -p "$tmp/x-$arch"
	dpkg-deb -x "$deb" "$tmp/x-$arch"
	if cmp -s "$tmp/x-$arch/usr/bin/gatewayd" "$dist/gatewayd-linux-$flavour"; then
		pass "deb $arch: contents, control fields, binary is the $flavour build"
	else
		fail "deb $arch: /usr/bin/gatewayd is not $dist/gatewayd-linux-$flavour"
	fi
	cmp -s "$tmp/x-$arch/usr/lib/systemd/system/gatewayd.service" deploy/systemd/gatewayd.service ||
		fail "deb $arch: gatewayd.service differs from deploy/systemd/gatewayd.service"
	cmp -s "$tmp/x-$arch/usr/share/doc/gatewayd/examples/gatewayd.toml" configs/gatewayd.toml ||
		fail "deb $arch: example config differs from configs/gatewayd.toml"
done

deb=$(deb_for amd64)
[ -n "$deb" ] || finish deb-check

# --- Maintainer scripts --------------------------------------------------------
dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$tmp" ./postinst ./prerm ./postrm 2>/dev/null
for s in postinst prerm postrm; do
	if [ -x "$tmp/$s" ] && sh -n "$tmp/$s"; then :; else fail "deb: maintainer script $s missing, not executable or not valid sh"; fi
done

# --- Maintainer scripts on a board with a running systemd ---------------------
# The branch every real install takes, run directly in a private mount
# namespace: tmpfs over /run (with /run/systemd/system, which is how the
# script tells systemd runs) and over /etc (so the host's accounts and config
# are neither seen nor touched), with systemctl, udevadm, useradd, usermod
# and groupadd replaced by stubs that log their arguments.
live_script() { # SCRIPT NAME EXPECT-REGEX FORBID-REGEX CONFIG? ACTIVE? ARGS...
	local script=$1 name=$2 expect=$3 forbid=$4 config=$5 active=$6
	shift 6
	local d=$tmp/live-$script-$name
	mkdir -p "$d/stubs"
	for s in systemctl useradd usermod groupadd udevadm; do
		printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\n[ "$1" != is-active ] || exit %s\n' \
			"$s" "$d" "$([ "$active" = yes ] && echo 0 || echo 3)" >"$d/stubs/$s"
		chmod +x "$d/stubs/$s"
	done
	: >"$d/calls"
	if ! unshare --mount --propagation private --fork sh -c '
		mount -t tmpfs gatewayd-test /run && mkdir -p /run/systemd/system &&
		mount -t tmpfs gatewayd-test /etc &&
		{ [ "$1" != yes ] || { mkdir -p /etc/gatewayd && : >/etc/gatewayd/gatewayd.toml; }; } &&
		shift && PATH="$0:$PATH" sh "$@"' "$d/stubs" "$config" "$tmp/$script" "$@" >"$d/out" 2>&1; then
		fail "deb: $script ($name) failed:"
		sed 's/^/     /' "$d/out" "$d/calls"
		return
	fi
	local calls
	calls=$(tr '\n' ';' <"$d/calls")
	if [[ $calls =~ $expect ]] && { [ -z "$forbid" ] || ! [[ $calls =~ $forbid ]]; }; then
		pass "deb: $script $name: $(sed 's/useradd [^;]*/useradd …/; s/--subsystem-match=[^;]*//' <<<"$calls")"
	else
		fail "deb: $script $name: calls '$calls' (want /$expect/, not /$forbid/)"
	fi
}
live_script postinst first-install-no-config \
	'useradd .*--system.*gatewayd;groupadd --system i2c;usermod --append --groups i2c gatewayd;udevadm trigger --subsystem-match=i2c-dev;systemctl daemon-reload;systemctl enable gatewayd.service gatewayd.path;systemctl start gatewayd.path;' \
	';systemctl start gatewayd.service|restart|gpio' no no configure ''
live_script postinst first-install-with-config \
	'systemctl start gatewayd.path;.*systemctl start gatewayd.service;' 'restart' yes no configure ''
live_script postinst upgrade-running \
	'systemctl restart gatewayd.service;' ';systemctl start gatewayd.service' yes yes configure 0.9.0
live_script postinst upgrade-stopped-on-purpose \
	'systemctl start gatewayd.path;' ';systemctl start gatewayd.service|restart' yes no configure 0.9.0
live_script prerm remove \
	'^systemctl stop gatewayd.path gatewayd.service;systemctl disable gatewayd.service gatewayd.path;$' '' yes yes remove
live_script prerm upgrade '^$' '' yes yes upgrade 1.0.0
live_script postrm remove '^systemctl daemon-reload;$' '' yes no remove

# --- Install into a throwaway root ---------------------------------------------
# A minimal root: dpkg's database, and the account files useradd edits. The
# i2c and gpio groups exist as on Raspberry Pi OS; gatewayd is in gpio, as
# an earlier version of the package put it (upgrades take that away).
mkroot() {
	local r=$1 groups=$2
	mkdir -p "$r/var/lib/dpkg/info" "$r/var/lib/dpkg/updates" "$r/etc"
	: >"$r/var/lib/dpkg/status"
	: >"$r/var/lib/dpkg/available"
	printf 'root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n' >"$r/etc/passwd"
	printf 'root:*:19000:0:99999:7:::\npi:*:19000:0:99999:7:::\n' >"$r/etc/shadow"
	printf 'root:x:0:\npi:x:1000:\n%s' "$groups" >"$r/etc/group"
	printf 'root:*::\npi:!::\n%s' "$(printf '%s' "$groups" | sed 's/:x:[0-9]*:/:!::/')" >"$r/etc/gshadow"
	chmod 640 "$r/etc/shadow" "$r/etc/gshadow"
}
# passwd (useradd) is not in the throwaway root's dpkg database, only on the
# host: hence --force-depends. Nothing else is forced.
dpkg_root() { dpkg --root="$1" --force-script-chrootless --force-depends "${@:2}"; }

root=$tmp/root
mkroot "$root" $'i2c:x:998:\ngpio:x:997:pi,gatewayd\n'
if dpkg_root "$root" -i "$deb" >"$tmp/install.log" 2>&1; then
	pass "deb: dpkg -i into a throwaway root"
else
	fail "deb: dpkg -i into a throwaway root failed:"
	sed 's/^/     /' "$tmp/install.log"
	finish deb-check
fi
status=$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Status}' gatewayd 2>/dev/null)
[ "$status" = "install ok installed" ] || fail "deb: dpkg status is '$status'"
[ -x "$root/usr/bin/gatewayd" ] || fail "deb: /usr/bin/gatewayd not installed executable"
if out=$("$root/usr/bin/gatewayd" version 2>&1) && [[ $out == gatewayd* ]]; then
	pass "deb: installed binary runs: $out"
else
	fail "deb: installed 'gatewayd version' said: $out"
fi

user=$(grep '^gatewayd:' "$root/etc/passwd")
IFS=: read -r _ _ uid _ _ home shell <<<"$user"
if [ -n "$user" ] && [ "$uid" -lt 1000 ] && [ "$home" = /var/lib/gatewayd ] && [ "$shell" = /usr/sbin/nologin ]; then
	pass "deb: postinst created system user: $user"
else
	fail "deb: gatewayd user wrong or missing: '$user'"
fi
grep -q '^gatewayd:' "$root/etc/group" || fail "deb: no gatewayd group"
grep -q "^i2c:.*[:,]gatewayd\(,\|$\)" "$root/etc/group" || fail "deb: gatewayd not in group i2c: $(grep "^i2c:" "$root/etc/group")"
# No GPIO access: nothing in gatewayd drives a pin.
if grep -q "^gpio:.*[:,]gatewayd\(,\|$\)" "$root/etc/group"; then
	fail "deb: gatewayd still in group gpio: $(grep "^gpio:" "$root/etc/group")"
fi
grep -q '^gpio:x:997:pi$' "$root/etc/group" || fail "deb: postinst lost other gpio members: $(grep "^gpio:" "$root/etc/group")"
for l in multi-user.target.wants/gatewayd.service paths.target.wants/gatewayd.path; do
	[ -L "$root/etc/systemd/system/$l" ] || fail "deb: not enabled: /etc/systemd/system/$l missing"
done
grep -q 'enabled but not started' "$tmp/install.log" ||
	fail "deb: postinst did not tell the user the service waits for a config"

# Reinstall (an upgrade) with a config on the boot partition: idempotent user
# handling, and no "waiting for a config" message.
mkdir -p "$root/boot/firmware"
cp configs/gatewayd.toml "$root/boot/firmware/gatewayd.toml"
if dpkg_root "$root" -i "$deb" >"$tmp/upgrade.log" 2>&1; then
	[ "$(grep -c '^gatewayd:' "$root/etc/passwd")" = 1 ] || fail "deb: reinstall duplicated the user"
	[ "$(grep -o 'gatewayd' <<<"$(grep '^i2c:' "$root/etc/group")" | wc -l)" = 1 ] || fail "deb: reinstall duplicated group membership"
	! grep -q 'enabled but not started' "$tmp/upgrade.log" || fail "deb: postinst claims no config although one exists"
	pass "deb: reinstall/upgrade over itself"
else
	fail "deb: reinstall failed:"
	sed 's/^/     /' "$tmp/upgrade.log"
fi

# Remove keeps the buffer and the user, disables the units; purge deletes
# the buffer.
mkdir -p "$root/var/lib/gatewayd"
echo buffer >"$root/var/lib/gatewayd/buffer.db"
if dpkg_root "$root" -r gatewayd >"$tmp/remove.log" 2>&1; then
	[ ! -e "$root/usr/bin/gatewayd" ] || fail "deb: remove left /usr/bin/gatewayd"
	[ ! -e "$root/etc/systemd/system/multi-user.target.wants/gatewayd.service" ] || fail "deb: remove left the service enabled"
	[ ! -e "$root/etc/systemd/system/paths.target.wants/gatewayd.path" ] || fail "deb: remove left the path unit enabled"
	[ -f "$root/var/lib/gatewayd/buffer.db" ] || fail "deb: remove deleted the buffer (only purge may)"
	grep -q '^gatewayd:' "$root/etc/passwd" || fail "deb: remove deleted the user"
	pass "deb: remove"
else
	fail "deb: remove failed:"
	sed 's/^/     /' "$tmp/remove.log"
fi
if dpkg_root "$root" -P gatewayd >"$tmp/purge.log" 2>&1; then
	[ ! -e "$root/var/lib/gatewayd" ] || fail "deb: purge left /var/lib/gatewayd"
	[ -f "$root/boot/firmware/gatewayd.toml" ] || fail "deb: purge deleted the user's config on the boot partition"
	pass "deb: purge"
else
	fail "deb: purge failed:"
	sed 's/^/     /' "$tmp/purge.log"
fi

# A board without an i2c group (not Raspberry Pi OS): it is created
# (SupplementaryGroups= would fail otherwise) as a system group; no gpio.
root2=$tmp/root2
mkroot "$root2" ""
if dpkg_root "$root2" -i "$deb" >"$tmp/install2.log" 2>&1 && grep -q '^gatewayd:' "$root2/etc/passwd"; then
	IFS=: read -r _ _ gid members <<<"$(grep "^i2c:" "$root2/etc/group")"
	[ -n "$gid" ] && [ "$gid" -lt 1000 ] && [ "$members" = gatewayd ] ||
		fail "deb: group i2c not created as a system group with gatewayd: '$(grep "^i2c:" "$root2/etc/group")'"
	! grep -q '^gpio:' "$root2/etc/group" || fail "deb: a gpio group was created"
	pass "deb: installs where the i2c group does not exist: $(grep -E '^(i2c|gpio):' "$root2/etc/group" | tr '\n' ' ')"
else
	fail "deb: install without an i2c group failed:"
	sed 's/^/     /' "$tmp/install2.log"
fi

finish deb-check
