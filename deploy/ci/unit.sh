#!/usr/bin/env bash
# The systemd units: `systemd-analyze verify` must be silent, and the
# service's security exposure (`systemd-analyze security --offline=true`) is
# printed and must not exceed MAX_EXPOSURE (2.0).
# Usage: deploy/ci/unit.sh DIST
set -uo pipefail
cd "$(dirname "$0")/../.."
. deploy/ci/lib.sh
dist=${1:-dist}
max=${MAX_EXPOSURE:-2.0}
bin=$(realpath "$dist/gatewayd-linux-amd64" 2>/dev/null) || bin=
[ -x "$bin" ] || { fail "unit: $dist/gatewayd-linux-amd64 not built"; finish unit; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp deploy/systemd/gatewayd.service deploy/systemd/gatewayd.path deploy/systemd/gatewayd-reload.service "$tmp/"
# verify insists that ExecStart's binary exists: point the copy at the
# built one; everything else is the unit as shipped.
sed -i "s|^ExecStart=/usr/bin/gatewayd |ExecStart=$bin |; s|^ExecReload=/usr/bin/gatewayd |ExecReload=$bin |" "$tmp/gatewayd.service"
grep -q "^ExecStart=$bin run\$" "$tmp/gatewayd.service" || fail "unit: ExecStart is not '/usr/bin/gatewayd run'"

for want in 'Type=notify' 'WatchdogSec=' 'User=gatewayd' 'SupplementaryGroups=i2c$' \
	'StateDirectory=gatewayd' 'Restart=on-failure' 'RestartPreventExitStatus=78' \
	'ProtectSystem=strict' 'DevicePolicy=closed' 'DeviceAllow=char-i2c rw' 'CapabilityBoundingSet='; do
	grep -q "^$want" deploy/systemd/gatewayd.service || fail "unit: missing $want"
done
# Nothing in gatewayd drives a GPIO; reload must not need procps's /bin/kill.
! grep -qi 'gpio' <(grep -v '^#' deploy/systemd/gatewayd.service) || fail "unit: grants GPIO access"
grep -q '^ExecReload=/usr/bin/gatewayd reload$' deploy/systemd/gatewayd.service || fail "unit: ExecReload is not '/usr/bin/gatewayd reload'"

(cd "$tmp" && systemd-analyze verify ./gatewayd.service ./gatewayd.path ./gatewayd-reload.service) >"$tmp/verify.log" 2>&1
rc=$?
if [ $rc -ne 0 ] || [ -s "$tmp/verify.log" ]; then
	fail "unit: systemd-analyze verify (status $rc):"
	sed 's/^/     /' "$tmp/verify.log"
else
	pass "unit: systemd-analyze verify gatewayd.service gatewayd.path gatewayd-reload.service: no findings"
fi

(cd "$tmp" && systemd-analyze security --offline=true --no-pager ./gatewayd.service) >"$tmp/security.log" 2>&1
exposure=$(sed -n 's/.*Overall exposure level for gatewayd.service: \([0-9.]*\).*/\1/p' "$tmp/security.log")
info "systemd-analyze security --offline=true: settings that cost exposure:"
grep '✗' "$tmp/security.log" | sed 's/  */ /g; s/^/       /'
if [ -z "$exposure" ]; then
	fail "unit: no exposure figure from systemd-analyze security:"
	sed 's/^/     /' "$tmp/security.log"
elif awk -v e="$exposure" -v m="$max" 'BEGIN { exit !(e <= m) }'; then
	pass "unit: security exposure $exposure (bound $max)"
else
	fail "unit: security exposure $exposure above $max"
fi
finish unit
