#!/usr/bin/env bash
# ci-systemd: the amd64 .deb under a real systemd PID 1. A Debian bookworm
# root (deploy/ci/nspawn-root.sh, cached) is booted with systemd-nspawn; the
# package is installed with apt as on a board, and the service is driven
# only through systemctl and its config file while iotsim, the platform
# emulator, runs on the host's loopback (the container shares the host's
# network) and counts what arrives. Prints a table of checks.
#
# The container's own seccomp filter (systemd-nspawn's, not the unit's)
# allows the @clock calls only to a container holding CAP_SYS_TIME; a board
# has no such outer filter, so the container is booted with
# --system-call-filter=adjtimex (no CAP_SYS_TIME: the clock stays unsettable)
# and the unit's own filter is what decides, as on a board.
#
# Usage: deploy/ci/systemd.sh DIST     (root; CI=true makes a missing tool fatal)
set -uo pipefail
cd "$(dirname "$0")/../.."
. deploy/ci/lib.sh
dist=${1:-dist}
t0=$SECONDS
export LC_ALL=C # sort and comm agree

# --- Can we? -------------------------------------------------------------------
cannot() {
	echo "ci-systemd: $*"
	if [ "${CI:-}" = true ]; then
		echo "FAIL ci-systemd: cannot run here (CI=true)"
		exit 1
	fi
	echo "SKIP ci-systemd: cannot run here; the unit was NOT checked under systemd"
	exit 0
}
[ "$(id -u)" = 0 ] || cannot "needs root (debootstrap, systemd-nspawn, nsenter): sudo make ci-systemd"
if ! command -v systemd-nspawn >/dev/null && command -v apt-get >/dev/null; then
	echo "     installing systemd-container (systemd-nspawn)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd-container >/dev/null 2>&1 ||
		{ DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd-container >/dev/null; }
fi
command -v systemd-nspawn >/dev/null || cannot "systemd-nspawn not found (apt-get install systemd-container)"
command -v nsenter >/dev/null || cannot "nsenter not found (apt-get install util-linux)"

deb=$(ls "$dist"/gatewayd_*_amd64.deb 2>/dev/null | head -n1)
sim=$dist/iotsim-native
[ -n "$deb" ] || { fail "systemd: no $dist/gatewayd_*_amd64.deb (make deb)"; finish ci-systemd; }
[ -x "$sim" ] || { fail "systemd: $sim not built"; finish ci-systemd; }

base=$(deploy/ci/nspawn-root.sh) || { fail "systemd: no bookworm root (deploy/ci/nspawn-root.sh)"; finish ci-systemd; }

# --- Table -------------------------------------------------------------------------
rows=()
row() { # NAME ok|fail DETAIL
	local name=$1 ok=$2 detail=$3
	if [ "$ok" = ok ]; then
		pass "systemd: $name: $detail"
		rows+=("$(printf '%-50s PASS  %s' "$name" "$detail")")
	else
		fail "systemd: $name: $detail"
		rows+=("$(printf '%-50s FAIL  %s' "$name" "$detail")")
	fi
}
table() {
	echo "== ci-systemd: gatewayd $(dpkg-deb --field "$deb" Version) (.deb amd64) under systemd $(in_c systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }') as PID 1, Debian bookworm, $((SECONDS - t0))s"
	printf '%-50s %-5s %s\n' CHECK RESULT DETAIL
	printf '%s\n' "${rows[@]}"
}

# --- Scratch, container, iotsim; all stopped on exit -----------------------------
work=$(mktemp -d /var/tmp/gatewayd-ci-systemd.XXXXXX)
croot=$work/root
nspawn= cpid= simpid=
cleanup() {
	local i
	[ -n "$simpid" ] && kill -TERM "$simpid" 2>/dev/null
	if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
		kill -TERM "$nspawn" # nspawn halts the container cleanly on SIGTERM
		for ((i = 0; i < 300; i++)); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$nspawn" 2>/dev/null
	fi
	wait 2>/dev/null
	# Never follow a mount out of the scratch directory.
	if [ "$(findmnt -rn -o TARGET | grep -c "^$work/")" = 0 ]; then
		rm -rf --one-file-system "$work"
	else
		echo "ci-systemd: mounts left under $work; not removing it" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp -a --reflink=auto "$base" "$croot"
cp "$deb" "$croot/root/gatewayd.deb"

# A command inside the container: its mount, UTS, IPC and PID namespaces,
# its root; a clean environment (UTC, so times print as iotsim's do).
in_c() {
	nsenter -t "$cpid" -m -u -i -p -r -w \
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TZ=UTC SYSTEMD_COLORS=0 SYSTEMD_PAGER= "$@"
}
prop() { in_c systemctl show -p "$2" --value "$1"; } # UNIT PROPERTY
mainpid() { prop gatewayd.service MainPID; }
nrestarts() { prop gatewayd.service NRestarts; }
state() { echo "$(prop gatewayd.service ActiveState)/$(prop gatewayd.service SubState)"; }
journal() { in_c journalctl -u gatewayd.service -b --no-pager -o cat "$@"; }
# jhas REGEX: the journal has a matching line (reads it all: no SIGPIPE
# under pipefail, as grep -q would cause).
jhas() { [ "$(journal | grep -c -E -e "$1")" -gt 0 ]; }
# put_config FILE: install FILE as /etc/gatewayd/gatewayd.toml in one rename,
# as an editor's save does (gatewayd.path sees the new file once, complete;
# staged outside the watched directory).
put_config() {
	cp "$1" "$croot/root/gatewayd.toml.new"
	in_c mv /root/gatewayd.toml.new /etc/gatewayd/gatewayd.toml
}

echo "== booting $base (a copy) with systemd-nspawn"
systemd-nspawn --keep-unit --register=no --console=passive --quiet \
	--machine="gatewayd-ci-$$" --system-call-filter=adjtimex \
	-D "$croot" -b </dev/null >"$work/nspawn.log" 2>&1 &
nspawn=$!
# The container's systemd: nspawn's child whose pid in its namespace is 1.
find_cpid() {
	local st pid ppid
	for st in /proc/[0-9]*/status; do
		ppid=$(awk '/^PPid:/ { print $2 }' "$st" 2>/dev/null)
		[ "$ppid" = "$nspawn" ] || continue
		pid=${st#/proc/}
		pid=${pid%/status}
		if awk '/^NSpid:/ { exit !($NF == 1 && NF > 2) }' "$st" 2>/dev/null; then
			cpid=$pid
			return 0
		fi
	done
	return 1
}
if ! wait_for 30 find_cpid; then
	fail "systemd: the container did not start:"
	sed 's/^/     /' "$work/nspawn.log"
	finish ci-systemd
fi
boot=$(timeout 60 nsenter -t "$cpid" -m -u -i -p -r -w env -i PATH=/usr/bin:/bin systemctl is-system-running --wait 2>&1)
case "$boot" in
running | degraded) info "container booted ($boot), systemd pid $cpid on the host, $((SECONDS - t0))s" ;;
*)
	fail "systemd: the container did not boot: '$boot'"
	in_c systemctl --failed --no-pager 2>&1 | sed 's/^/     /'
	finish ci-systemd
	;;
esac

# --- iotsim on the host's loopback --------------------------------------------------
pk=a1ciSysPK01 dn=nspawn-1 secret=ci-systemd-secret
port=$(free_port 23883)
hport=$(free_port 24102)
start_sim() {
	TZ=UTC "$sim" --tls "127.0.0.1:$port" --tcp "" --certs "$work/certs" --device "$pk:$dn:$secret" \
		>>"$work/iotsim.out" 2>>"$work/iotsim.err" &
	simpid=$!
	wait_for 20 eval "(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null"
}
stop_sim() {
	stop "$simpid" 10
	simpid=
}
start_sim || { fail "systemd: iotsim did not start"; finish ci-systemd; }
ca=$(sed -n "s/^iotsim: CA for the gateway's ca_file: //p" "$work/iotsim.err" | head -n1)
# values PROPERTY: how many values of PROPERTY iotsim accepted so far.
values() { grep -c " $dn $1=" "$work/iotsim.out"; }

# config FILE [key=value...]: the board's config. Keys: temp (the property
# id of the temperature), interval, rate (max_messages_per_second), hang
# (hang_after of a second, wedging emulated chip), bad (an invalid value),
# air2 (a second BME280, properties air2_*).
config() {
	local f=$1 temp=temperature interval=1s rate=20 hang= bad= air2= kv
	shift
	for kv in "$@"; do local "${kv%%=*}=${kv#*=}"; done
	cat >"$f" <<EOF
[device]
product_key   = "$pk"
device_name   = "$dn"
device_secret = "$secret"

[uplink]
platform    = "aliyun"
endpoint    = "127.0.0.1:$port"
ca_file     = "/etc/gatewayd/iotsim-ca.pem"
ca_replace  = true
server_name = "localhost"
max_messages_per_second = $rate

[buffer]
max_size        = "16MiB"
commit_interval = "1s"

[[sensor]]
name     = "air"
driver   = "bme280"
bus      = "emulated"
address  = 0x76
interval = "${bad:-$interval}"
[sensor.properties]
temperature = "$temp"
humidity    = "humidity"
pressure    = "pressure"
[sensor.emulate]
temperature = 21.5
humidity    = 40.0
EOF
	if [ -n "$air2" ]; then
		cat >>"$f" <<EOF

[[sensor]]
name     = "air2"
driver   = "bme280"
bus      = "emulated"
address  = 0x77
interval = "$interval"
EOF
	fi
	if [ -n "$hang" ]; then
		cat >>"$f" <<EOF

[[sensor]]
name     = "probe"
driver   = "tmp102"
bus      = "emulated"
address  = 0x48
interval = "1s"
[sensor.emulate]
hang_after = $hang
EOF
	fi
	cat >>"$f" <<EOF

[health]
listen = "127.0.0.1:$hport"
EOF
}

# --- 1. install ------------------------------------------------------------------------
if in_c apt-get install -y -q /root/gatewayd.deb >"$work/install.log" 2>&1 &&
	[ "$(in_c dpkg-query -W -f '${Status}' gatewayd)" = "install ok installed" ] &&
	[ "$(in_c systemctl is-enabled gatewayd.service)" = enabled ] &&
	[ "$(in_c systemctl is-active gatewayd.path)" = active ]; then
	row "install (apt install ./gatewayd_*.deb)" ok "installed $(in_c dpkg-query -W -f '${Version}' gatewayd); gatewayd.service enabled, gatewayd.path active; no /bin/kill on this system: $(in_c sh -c 'test -e /bin/kill && echo present || echo absent')"
else
	row "install (apt install ./gatewayd_*.deb)" fail "$(tail -n 5 "$work/install.log" | tr '\n' ' ')"
fi
# The package created /etc/gatewayd; the CA the config names goes there.
cp "$ca" "$croot/etc/gatewayd/iotsim-ca.pem"

# --- 2. not started without a config ------------------------------------------------------
in_c systemctl start gatewayd.service 2>/dev/null
sleep 1
if [ "$(in_c systemctl is-active gatewayd.service)" = inactive ] && [ "$(prop gatewayd.service ConditionResult)" = no ]; then
	row "not started without a config" ok "inactive after install; 'systemctl start' skipped it (ConditionPathExists unmet)"
else
	row "not started without a config" fail "state $(state), ConditionResult=$(prop gatewayd.service ConditionResult)"
fi

# --- 3. gatewayd.path starts it when the config appears; Type=notify ---------------------
config "$work/c1.toml"
put_config "$work/c1.toml"
start=$SECONDS
if wait_for 30 eval '[ "$(state)" = active/running ]'; then
	row "gatewayd.path starts it when the config appears" ok "active/running $((SECONDS - start))s after the file was written; pid $(mainpid)"
else
	row "gatewayd.path starts it when the config appears" fail "state $(state) 30s after the config appeared"
	journal | tail -n 20 | sed 's/^/     /'
fi
pid1=$(mainpid)
wait_for 10 eval '[ "$(prop gatewayd.service WatchdogTimestampMonotonic)" != 0 ]'
if [ "$(prop gatewayd.service Type)" = notify ] && [ "$(prop gatewayd.service StatusText)" = running ] &&
	[ "$(prop gatewayd.service WatchdogTimestampMonotonic)" != 0 ]; then
	row "Type=notify readiness and watchdog" ok "READY=1 made it active; Status=\"$(prop gatewayd.service StatusText)\"; WATCHDOG=1 received (WatchdogUSec=$(prop gatewayd.service WatchdogUSec))"
else
	row "Type=notify readiness and watchdog" fail "Type=$(prop gatewayd.service Type) Status=\"$(prop gatewayd.service StatusText)\" WatchdogTimestampMonotonic=$(prop gatewayd.service WatchdogTimestampMonotonic)"
fi

# --- 4. readings delivered through the sandbox --------------------------------------------
if wait_for 30 eval '[ "$(values temperature)" -ge 3 ]'; then
	row "readings delivered through the sandbox" ok "$(values temperature) temperature, $(values humidity) humidity values at iotsim from pid $pid1 (User=gatewayd, the unit's seccomp filter)"
else
	row "readings delivered through the sandbox" fail "$(values temperature) temperature values at iotsim after 30s"
	journal | tail -n 20 | sed 's/^/     /'
fi

# --- 5. systemctl reload applies an edit without a restart -------------------------------
# gatewayd.path stopped, so this is systemctl reload alone.
in_c systemctl stop gatewayd.path
config "$work/c2.toml" temp=air_temp
put_config "$work/c2.toml"
n0=$(nrestarts)
start=$SECONDS
out=$(in_c systemctl reload gatewayd.service 2>&1)
rc=$?
took=$((SECONDS - start))
if [ $rc = 0 ] && wait_for 15 eval '[ "$(values air_temp)" -ge 1 ]' && [ "$(mainpid)" = "$pid1" ] &&
	[ "$(nrestarts)" = "$n0" ] && sleep 2 && [ "$(state)" = active/running ]; then
	row "systemctl reload applies an edit, no restart" ok "returned 0 after ${took}s; same MainPID $pid1; renamed property air_temp at iotsim; still active/running"
else
	row "systemctl reload applies an edit, no restart" fail "rc $rc ($out); MainPID $(mainpid) (was $pid1); air_temp values $(values air_temp); state $(state)"
	journal | tail -n 20 | sed 's/^/     /'
fi

# --- 6. an invalid edit is refused, the process keeps running -----------------------------
in_c systemctl start gatewayd.path
config "$work/bad.toml" temp=air_temp bad=soon
put_config "$work/bad.toml" # gatewayd.path asks for a reload by itself
sleep 1
out=$(in_c systemctl reload gatewayd.service 2>&1)
rc=$?
n=$(values air_temp)
if [ $rc != 0 ] && [ "$(mainpid)" = "$pid1" ] && [ "$(state)" = active/running ] &&
	jhas 'reload refused' && wait_for 15 eval '[ "$(values air_temp)" -gt $((n + 2)) ]'; then
	row "an invalid edit is refused, process keeps running" ok "systemctl reload failed (rc $rc), journal: \"$(journal | grep -m1 -o 'gatewayd reload: pid [0-9]* refused[^:]*')\"; same MainPID, readings still arriving"
else
	row "an invalid edit is refused, process keeps running" fail "rc $rc; MainPID $(mainpid) (was $pid1); state $(state); refused in journal: $(journal | grep -c 'reload refused')"
	journal | tail -n 20 | sed 's/^/     /'
fi

# --- 7. a fixed edit is applied by gatewayd.path alone -------------------------------------
config "$work/c3.toml" temp=air_temp2
put_config "$work/c3.toml"
if wait_for 20 eval '[ "$(values air_temp2)" -ge 1 ]' && [ "$(mainpid)" = "$pid1" ] && [ "$(state)" = active/running ]; then
	row "an edit is applied by gatewayd.path alone" ok "air_temp2 at iotsim; same MainPID $pid1; no systemctl command"
else
	row "an edit is applied by gatewayd.path alone" fail "air_temp2 values $(values air_temp2); MainPID $(mainpid) (was $pid1); state $(state)"
fi

# --- 8. an invalid config at start: exit 78, no restart loop --------------------------------
in_c systemctl stop gatewayd.service
put_config "$work/bad.toml" # gatewayd.path starts it
if wait_for 20 eval '[ "$(prop gatewayd.service ExecMainStatus)" = 78 ] && [ "$(prop gatewayd.service ActiveState)" = failed ]'; then
	n0=$(nrestarts) p0=$(prop gatewayd.service ExecMainPID)
	sleep 13 # RestartSec=10s: a restart would have happened by now
	if [ "$(prop gatewayd.service ActiveState)" = failed ] && [ "$(nrestarts)" = "$n0" ] && [ "$(prop gatewayd.service ExecMainPID)" = "$p0" ]; then
		row "invalid config at start: exit 78, no restart loop" ok "status 78, failed, NRestarts stays $n0 after 13s (RestartSec=10s); journal: \"$(journal | grep -o 'gatewayd.toml:[0-9]*: [^:]*: invalid [a-z]*' | head -n1)\""
	else
		row "invalid config at start: exit 78, no restart loop" fail "restarted: state $(state), NRestarts $(nrestarts) (was $n0)"
	fi
else
	row "invalid config at start: exit 78, no restart loop" fail "ExecMainStatus=$(prop gatewayd.service ExecMainStatus) state $(state)"
	journal | tail -n 10 | sed 's/^/     /'
fi
put_config "$work/c1.toml" # fixed: gatewayd.path starts it again
if wait_for 30 eval '[ "$(state)" = active/running ]'; then
	row "fixing the config starts it again" ok "active/running, pid $(mainpid), by gatewayd.path"
else
	row "fixing the config starts it again" fail "state $(state)"
fi

# --- 9. the watchdog kills and restarts a daemon whose sensor loop wedges -------------------
# WatchdogSec=90s is cut to 10s by a drop-in for this check only, or it
# would take 3 minutes; the daemon's own bounds are the shipped ones (a read
# wedged 1 min stops the sensor heartbeat; 30 s without one stops the feeding).
in_c systemctl stop gatewayd.path
mkdir -p "$croot/etc/systemd/system/gatewayd.service.d"
printf '[Service]\nWatchdogSec=10s\n' >"$croot/etc/systemd/system/gatewayd.service.d/ci-watchdog.conf"
in_c systemctl daemon-reload
config "$work/hang.toml" hang=2
put_config "$work/hang.toml"
in_c systemctl restart gatewayd.service
pidw=$(mainpid) n0=$(nrestarts) start=$SECONDS stuck=
while [ $((SECONDS - start)) -lt 180 ]; do
	st=$(prop gatewayd.service StatusText)
	[[ $st == *sensors* ]] && stuck=$st
	[ "$(nrestarts)" != "$n0" ] && break
	sleep 2
done
took=$((SECONDS - start))
if jhas 'Watchdog timeout' && [ "$(nrestarts)" != "$n0" ] && wait_for 20 eval '[ "$(state)" = active/running ]' && [ "$(mainpid)" != "$pidw" ]; then
	row "watchdog kills and restarts a wedged daemon" ok "chip read wedged 2s after start; Status while stuck: \"${stuck:-?}\"; 'Watchdog timeout' after ${took}s, restarted as pid $(mainpid)"
else
	row "watchdog kills and restarts a wedged daemon" fail "after ${took}s: NRestarts $(nrestarts) (was $n0), state $(state), Status \"${stuck:-never showed the sensors}\""
	journal | tail -n 15 | sed 's/^/     /'
fi

# --- 10. SIGKILL leads to a restart ------------------------------------------------------------
# (also ends the wedged daemon: the healthy config and the shipped unit are back first)
put_config "$work/c1.toml"
rm -f "$croot/etc/systemd/system/gatewayd.service.d/ci-watchdog.conf"
in_c systemctl daemon-reload
pidk=$(mainpid) n0=$(nrestarts)
in_c systemctl kill --kill-whom=main --signal=SIGKILL gatewayd.service
start=$SECONDS
if wait_for 30 eval '[ "$(state)" = active/running ] && [ "$(mainpid)" != "$pidk" ] && [ "$(mainpid)" != 0 ]'; then
	row "SIGKILL leads to a restart" ok "pid $pidk killed; pid $(mainpid) active $((SECONDS - start))s later (RestartSec=10s), NRestarts $n0 -> $(nrestarts)"
else
	row "SIGKILL leads to a restart" fail "state $(state), MainPID $(mainpid) (killed $pidk)"
fi
in_c systemctl start gatewayd.path

# --- 11. no denial from the sandbox in the journal ---------------------------------------------
denials=$(journal | grep -i -E 'operation not permitted|permission denied|seccomp|audit|adjtimex failed|falling back')
if [ -z "$denials" ]; then
	row "no sandbox denial in journalctl -u gatewayd" ok "$(journal | wc -l) lines, $(journal | grep -c 'gatewayd started') starts this boot: no EPERM, seccomp/audit or 'adjtimex failed' line"
else
	row "no sandbox denial in journalctl -u gatewayd" fail "$(head -n 3 <<<"$denials" | tr '\n' ' ')"
fi
# The check above can fail: ProtectClock=yes (which does deny adjtimex) makes
# the fallback line appear under the same unit.
printf '[Service]\nProtectClock=yes\n' >"$croot/etc/systemd/system/gatewayd.service.d/ci-clock.conf"
in_c systemctl daemon-reload
in_c systemctl restart gatewayd.service
inv=$(prop gatewayd.service InvocationID)
seen=
wait_for 15 eval '[ "$(in_c journalctl _SYSTEMD_INVOCATION_ID=$inv --no-pager -o cat | grep -c "adjtimex failed")" -gt 0 ]' && seen=1
rm -f "$croot/etc/systemd/system/gatewayd.service.d/ci-clock.conf"
in_c systemctl daemon-reload
in_c systemctl restart gatewayd.service
if [ -n "$seen" ]; then
	row "control: a denied adjtimex is caught" ok "with a ProtectClock=yes drop-in the journal says \"adjtimex failed ... operation not permitted\""
else
	row "control: a denied adjtimex is caught" fail "no 'adjtimex failed' line with ProtectClock=yes: the check above proves nothing"
fi
wait_for 30 eval '[ "$(state)" = active/running ]'

# --- 12. stop during a backlog drain loses nothing ---------------------------------------------
# A backlog built while iotsim is down (two chips, 60 values/s for 15 s),
# drained at one message (at most 200 values) per second so the drain takes
# several seconds; gatewayd stopped mid-drain, started again; every reading
# of the backlog must arrive. Readings are identified as iotsim prints them:
# property and time taken to the millisecond (a chip sampled every 100 ms
# never repeats that pair).
config "$work/drain.toml" interval=100ms rate=1 air2=1
put_config "$work/drain.toml"
in_c systemctl reload gatewayd.service # returns once the new config runs
export_ids() { # the buffer's waiting readings, as property@HH:MM:SS.mmm
	in_c gatewayd buffer export --path /var/lib/gatewayd/buffer.db 2>/dev/null | awk -F'\t' '
		NR > 1 && $2 == "pending" {
			t = $3; sub(/^[^T]*T/, "", t); sub(/(Z|[+-][0-9][0-9]:[0-9][0-9])$/, "", t)
			s = t; frac = ""
			if (index(t, ".")) { s = substr(t, 1, index(t, ".") - 1); frac = substr(t, index(t, ".") + 1) }
			frac = substr(frac "000", 1, 3)
			print $6 "@" s "." frac
		}' | sort -u
}
delivered_ids() { sed -n "s/^[^ ]* $dn \([^=]*\)=[^ ]* taken=\([^ ]*\) id=.*/\1@\2/p" "$work/iotsim.out" | sort; }
stop_sim
sleep 15
in_c systemctl stop gatewayd.service
export_ids >"$work/backlog"
nb=$(wc -l <"$work/backlog")
start_sim
in_c systemctl start gatewayd.service
got() { delivered_ids | sort -u | comm -12 - "$work/backlog" | wc -l; }
wait_for 30 eval '[ "$(got)" -ge 1 ]'
sleep 1
in_c systemctl stop gatewayd.service
mid=$(got)
export_ids >"$work/backlog2"
left=$(comm -12 "$work/backlog" "$work/backlog2" | wc -l)
in_c systemctl start gatewayd.service
wait_for 60 eval '[ "$(got)" -ge "$nb" ]'
lost=$(delivered_ids | sort -u | comm -13 - "$work/backlog" | wc -l)
dups=$(delivered_ids | uniq -d | comm -12 - "$work/backlog" | wc -l)
if [ "$nb" -ge 300 ] && [ "$mid" -gt 0 ] && [ "$left" -gt 0 ] && [ "$lost" = 0 ]; then
	row "stop during a backlog drain loses nothing" ok "backlog $nb values; stopped with $mid delivered, $left still buffered; after restart: 0 lost, $dups delivered twice"
else
	row "stop during a backlog drain loses nothing" fail "backlog $nb values (want >= 300); at the stop $mid delivered, $left buffered (both must be > 0); lost $lost"
	journal | tail -n 15 | sed 's/^/     /'
fi

# --- 13. systemctl stop is clean ----------------------------------------------------------------
wait_for 10 eval '[ "$(state)" = active/running ]'
inv=$(prop gatewayd.service InvocationID)
start=$SECONDS
in_c systemctl stop gatewayd.service
took=$((SECONDS - start))
jl=$(in_c journalctl _SYSTEMD_INVOCATION_ID="$inv" --no-pager -o cat)
if [ "$(prop gatewayd.service ActiveState)" = inactive ] && [ "$(prop gatewayd.service Result)" = success ] &&
	[ "$(prop gatewayd.service ExecMainStatus)" = 0 ] && grep -q 'gatewayd stopped' <<<"$jl" &&
	! grep -q -i -E 'sigkill|timed out|killing' <<<"$jl"; then
	row "systemctl stop is clean" ok "exit 0 in ${took}s, Result=success; journal: \"$(grep -o 'gatewayd stopped.*' <<<"$jl" | head -n1)\""
else
	row "systemctl stop is clean" fail "state $(state), Result=$(prop gatewayd.service Result), status $(prop gatewayd.service ExecMainStatus)"
	tail -n 10 <<<"$jl" | sed 's/^/     /'
fi

table
finish ci-systemd
