#!/usr/bin/env bash
# The unit's SystemCallFilter= must allow every system call gatewayd makes,
# or the call fails with EPERM on the board (SystemCallErrorNumber=EPERM).
# Without a systemd to run the unit under, we do the next best thing: run the
# native daemon end to end (emulated BME280 -> iotsim, /healthz, /metrics,
# sd_notify with a watchdog, SIGTERM) under strace, and check every system
# call it made against the allow list computed from the unit's own
# SystemCallFilter= lines with systemd-analyze's definitions of the groups.
# The ARM builds use the same Go runtime paths with ARM syscall names; amd64
# is what strace can watch here.
# Usage: deploy/ci/syscalls.sh DIST
set -uo pipefail
cd "$(dirname "$0")/../.."
. deploy/ci/lib.sh
dist=${1:-dist}

if ! command -v strace >/dev/null; then
	echo "     installing strace"
	apt-get install -y -qq strace >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq strace >/dev/null; }
fi
command -v strace >/dev/null || { fail "syscalls: strace not available"; finish syscalls; }
bin=$dist/gatewayd-linux-amd64 sim=$dist/iotsim-native notify=$dist/.tools/notifylisten
for f in "$bin" "$sim" "$notify"; do [ -x "$f" ] || { fail "syscalls: $f not built"; finish syscalls; }; done

scratch # $tmp, and $pids killed on exit

declare -A allowed
while read -r sc; do allowed[$sc]=1; done < <(unit_syscalls deploy/systemd/gatewayd.service)
info "unit allows ${#allowed[@]} system calls"
[ -n "${allowed[adjtimex]:-}" ] || fail "syscalls: the unit denies adjtimex, which the clock needs"

# --- The daemon, end to end, under strace ----------------------------------------
pk=a1sysTestPK dn=pi-strace secret=strace-secret
port=$(free_port 21883)
"$sim" --tls "127.0.0.1:$port" --tcp "" --certs "$tmp/certs" --device "$pk:$dn:$secret" >"$tmp/iotsim.out" 2>"$tmp/iotsim.err" &
pids+=($!)
simpid=$!
wait_for 20 eval "grep -q listening '$tmp/iotsim.err' && (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null" ||
	{ fail "syscalls: iotsim did not start"; finish syscalls; }
ca=$(sed -n "s/^iotsim: CA for the gateway's ca_file: //p" "$tmp/iotsim.err")
hport=$(free_port 22102)
e2e_config "$tmp/gatewayd.toml" "$pk" "$dn" "$secret" "$port" "$ca" "$hport"
"$notify" -socket "$tmp/notify.sock" -max 5m >"$tmp/notify.log" 2>&1 &
pids+=($!)
npid=$!
wait_for 10 test -S "$tmp/notify.sock"

# strace -f: every thread; -qq: quiet. The summary (-c) lists each call.
# No WATCHDOG_PID (go-systemd then accepts any pid), so nothing but the
# daemon itself runs under strace.
NOTIFY_SOCKET=$tmp/notify.sock WATCHDOG_USEC=1000000 \
	strace -f -qq -c -U name,calls,errors -o "$tmp/strace.sum" \
	"$bin" run --config "$tmp/gatewayd.toml" >"$tmp/gatewayd.out" 2>"$tmp/gatewayd.log" &
tracer=$!
pids+=("$tracer")
ok=1
wait_for 60 grep -q "$dn temperature=21\.[0-9]*" "$tmp/iotsim.out" || { ok=; fail "syscalls: no reading delivered under strace"; }
wait_for 10 grep -q ' WATCHDOG=1$' "$tmp/notify.log" || { ok=; fail "syscalls: watchdog not fed under strace"; }
http_get "$hport" /healthz "$tmp/healthz" || { ok=; fail "syscalls: /healthz failed under strace"; }
http_get "$hport" /metrics "$tmp/metrics" || { ok=; fail "syscalls: /metrics failed under strace"; }
if [ -z "$ok" ]; then
	info "last lines of the daemon's log:"
	tail -n 15 "$tmp/gatewayd.log" | sed 's/^/     | /'
fi
# SIGTERM the daemon (strace's child), not strace.
gw=
for st in /proc/[0-9]*/stat; do # no pgrep on a bare machine
	read -r pid _ _ ppid _ <"$st" 2>/dev/null || continue
	[ "$ppid" = "$tracer" ] && gw=$pid && break
done
[ -n "$gw" ] && kill -TERM "$gw"
for _ in $(seq 300); do kill -0 "$tracer" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$tracer" 2>/dev/null; then
	fail "syscalls: daemon did not exit within 30 s of SIGTERM under strace"
	kill -KILL "$tracer"
fi
wait "$tracer" 2>/dev/null
stop "$simpid" 10
stop "$npid" 10
[ -n "$ok" ] && pass "syscalls: daemon ran end to end under strace (reading delivered, watchdog fed, health served, SIGTERM)"

# --- Compare ----------------------------------------------------------------------
used=$(awk 'NR > 2 && $1 ~ /^[a-z_0-9]+$/ && $1 != "total" { print $1 }' "$tmp/strace.sum" | sort -u)
if [ -z "$used" ]; then
	fail "syscalls: strace recorded nothing:"
	sed 's/^/     /' "$tmp/strace.sum"
	finish syscalls
fi
denied=()
for sc in $used; do
	[ -n "${allowed[$sc]:-}" ] || denied+=("$sc")
done
info "the daemon made $(wc -w <<<"$used") distinct system calls: $(tr '\n' ' ' <<<"$used")"
if [ ${#denied[@]} -eq 0 ]; then
	pass "syscalls: every system call the daemon made is allowed by the unit's SystemCallFilter="
else
	fail "syscalls: the unit would deny (EPERM): ${denied[*]}"
fi
finish syscalls
