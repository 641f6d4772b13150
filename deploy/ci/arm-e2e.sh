#!/usr/bin/env bash
# Each ARM build of gatewayd, run under qemu-user with the CPU of the oldest
# Raspberry Pi it is meant for (so an ARMv7 instruction in the armv6 build
# traps), reads an emulated BME280 through the real driver and delivers
# readings over TLS to the native iotsim; we assert on iotsim's output, on
# /healthz and /metrics of the emulated daemon, on what it tells a real
# systemd notify socket (READY, WATCHDOG, STOPPING), on a clean SIGTERM exit,
# and on every system call it made being allowed by the unit's filter.
# Usage: deploy/ci/arm-e2e.sh DIST
set -uo pipefail
cd "$(dirname "$0")/../.."
. deploy/ci/lib.sh
dist=${1:-dist}
: "${E2E_TIMEOUT:=90}" # seconds for the first reading to arrive (qemu is slow)

scratch # $tmp, and $pids killed on exit

sim=$dist/iotsim-native
notify=$dist/.tools/notifylisten
[ -x "$sim" ] || { fail "arm: $sim not built"; finish arm-e2e; }
[ -x "$notify" ] || { fail "arm: $notify not built"; finish arm-e2e; }

e2e() {
	local flavour=$1 qemu=$2 cpu=$3
	local bin=$dist/gatewayd-linux-$flavour dir=$tmp/$flavour
	local pk=a1e2eTestPK dn=pi-$flavour secret=e2e-secret-$flavour
	mkdir -p "$dir"
	if ! command -v "$qemu" >/dev/null; then
		fail "arm $flavour: $qemu not installed (apt-get install qemu-user-static)"
		return
	fi
	if [ ! -x "$bin" ]; then
		fail "arm $flavour: $bin not built"
		return
	fi
	local run=("$qemu" -cpu "$cpu" "$bin")
	local out
	if out=$("${run[@]}" version 2>&1) && [[ $out == "gatewayd "* ]]; then
		info "arm $flavour: $qemu -cpu $cpu: $out"
	else
		fail "arm $flavour: 'gatewayd version' under $qemu -cpu $cpu: $out"
		return
	fi
	if ! "$qemu" -cpu "$cpu" "$dist/iotsim-linux-$flavour" -h >/dev/null 2>&1; then
		fail "arm $flavour: iotsim-linux-$flavour does not run under $qemu -cpu $cpu"
	fi

	local port hport
	port=$(free_port 28883)
	"$sim" --tls "127.0.0.1:$port" --tcp "" --certs "$dir/certs" --device "$pk:$dn:$secret" \
		>"$dir/iotsim.out" 2>"$dir/iotsim.err" &
	local simpid=$!
	pids+=("$simpid")
	if ! wait_for 20 eval "grep -q 'listening' '$dir/iotsim.err' && (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null"; then
		fail "arm $flavour: iotsim did not start:"
		sed 's/^/     /' "$dir/iotsim.err"
		stop "$simpid" 10
		return
	fi
	# iotsim says where its throwaway CA is.
	local ca
	ca=$(sed -n "s/^iotsim: CA for the gateway's ca_file: //p" "$dir/iotsim.err")
	hport=$(free_port 29102)

	e2e_config "$dir/gatewayd.toml" "$pk" "$dn" "$secret" "$port" "$ca" "$hport"
	# A notify socket as systemd provides it, with a 2 s watchdog.
	"$notify" -socket "$dir/notify.sock" -max 5m >"$dir/notify.log" 2>&1 &
	local npid=$!
	pids+=("$npid")
	wait_for 10 test -S "$dir/notify.sock" || fail "arm $flavour: notify socket not created"

	local start=$SECONDS
	# qemu-user runs the program in its own process, so its pid is ours
	# (exec keeps $$): WATCHDOG_PID must name it, as systemd's does.
	NOTIFY_SOCKET=$dir/notify.sock WATCHDOG_USEC=2000000 \
		bash -c 'WATCHDOG_PID=$$ exec "$@"' gatewayd "$qemu" -cpu "$cpu" -d strace -D "$dir/strace.log" \
		"$bin" run --config "$dir/gatewayd.toml" \
		>"$dir/gatewayd.out" 2>"$dir/gatewayd.log" &
	local gwpid=$!
	pids+=("$gwpid")

	# A reading of the emulated chip, as the platform received it.
	if wait_for "$E2E_TIMEOUT" grep -q "$dn temperature=21\.[0-9]*" "$dir/iotsim.out"; then
		pass "arm $flavour: reading delivered after $((SECONDS - start))s: $(grep -m1 "$dn temperature=" "$dir/iotsim.out")"
	else
		fail "arm $flavour: no temperature reading at iotsim within ${E2E_TIMEOUT}s; gatewayd log:"
		tail -n 30 "$dir/gatewayd.log" | sed 's/^/     /'
		info "iotsim output:"
		tail -n 10 "$dir/iotsim.out" "$dir/iotsim.err" | sed 's/^/     /'
	fi
	grep -q "$dn humidity=40\(\.[0-9]*\)\? " "$dir/iotsim.out" || fail "arm $flavour: no humidity=40 reading at iotsim"

	# The health endpoints of the emulated daemon.
	if wait_for 10 http_get "$hport" /healthz "$dir/healthz" && [ "$(cat "$dir/healthz")" = ok ]; then
		pass "arm $flavour: /healthz ok"
	else
		fail "arm $flavour: /healthz: $(cat "$dir/healthz" 2>&1)"
	fi
	if http_get "$hport" /metrics "$dir/metrics" &&
		grep -q '^gatewayd_readings_taken_total{sensor="air"} [1-9]' "$dir/metrics" &&
		grep -q '^gatewayd_pipeline_alive 1$' "$dir/metrics"; then
		pass "arm $flavour: /metrics counts readings and says alive"
	else
		fail "arm $flavour: /metrics lacks readings or liveness:"
		grep -E '^gatewayd_(readings_taken|pipeline_alive)' "$dir/metrics" 2>/dev/null | sed 's/^/     /'
	fi

	# What systemd would hear: READY once, then WATCHDOG=1 every second.
	feeds() { [ "$(grep -c ' WATCHDOG=1$' "$dir/notify.log")" -ge "$1" ]; }
	if [ "$(grep -c ' READY=1$' "$dir/notify.log")" = 1 ] && wait_for 10 feeds 3; then
		pass "arm $flavour: sd_notify READY=1, then WATCHDOG=1 x$(grep -c ' WATCHDOG=1$' "$dir/notify.log") (WATCHDOG_USEC=2s)"
	else
		fail "arm $flavour: notify socket got:"
		sed 's/^/     /' "$dir/notify.log"
	fi

	# SIGTERM drains and exits 0 well inside the unit's TimeoutStopSec (45 s).
	local t0=$SECONDS
	stop "$gwpid" 30
	if [ "$stopped" = 0 ]; then
		pass "arm $flavour: SIGTERM -> clean exit in $((SECONDS - t0))s"
		grep -q ' STOPPING=1$' "$dir/notify.log" || fail "arm $flavour: no STOPPING=1 on SIGTERM"
	else
		fail "arm $flavour: SIGTERM -> exit status $stopped; log tail:"
		tail -n 10 "$dir/gatewayd.log" | sed 's/^/     /'
	fi
	stop "$simpid" 10
	stop "$npid" 10

	# Every system call this ARM build made (qemu -d strace logs the guest's,
	# with ARM names such as mmap2) must be allowed by the unit's filter.
	local used denied=() sc
	used=$(sed -n 's/^[0-9][0-9]* \([a-z_0-9]*\)(.*/\1/p' "$dir/strace.log" | sort -u)
	if [ -z "$used" ]; then
		fail "arm $flavour: qemu recorded no system calls"
	else
		for sc in $used; do [ -n "${allowed[$sc]:-}" ] || denied+=("$sc"); done
		# qemu 7 cannot name the newer calls; the kernel's numbers (same on
		# arm and arm64 from 424, 403-423 are 32-bit time64 variants).
		local n name
		for n in $(sed -n 's/^[0-9]* Unknown syscall \([0-9]*\).*/\1/p' "$dir/strace.log" | sort -u); do
			name=${syscall_names[$n]:-}
			if [ -z "$name" ]; then
				denied+=("unknown-syscall-$n")
			elif [ -z "${allowed[$name]:-}" ]; then
				denied+=("$name")
			fi
			used+=" $name"
		done
		if [ ${#denied[@]} -eq 0 ]; then
			pass "arm $flavour: all $(wc -w <<<"$used") system calls it made are allowed by the unit's SystemCallFilter="
		else
			fail "arm $flavour: the unit would deny (EPERM): ${denied[*]}"
		fi
	fi
}

declare -A allowed
while read -r sc; do allowed[$sc]=1; done < <(unit_syscalls deploy/systemd/gatewayd.service)
declare -A syscall_names=(
	[403]=clock_gettime64 [404]=clock_settime64 [405]=clock_adjtime64 [406]=clock_getres_time64
	[407]=clock_nanosleep_time64 [408]=timer_gettime64 [409]=timer_settime64 [410]=timerfd_gettime64
	[411]=timerfd_settime64 [412]=utimensat_time64 [413]=pselect6_time64 [414]=ppoll_time64
	[416]=io_pgetevents_time64 [417]=recvmmsg_time64 [418]=mq_timedsend_time64
	[419]=mq_timedreceive_time64 [420]=semtimedop_time64 [421]=rt_sigtimedwait_time64
	[422]=futex_time64 [423]=sched_rr_get_interval_time64 [424]=pidfd_send_signal
	[425]=io_uring_setup [426]=io_uring_enter [427]=io_uring_register [434]=pidfd_open
	[435]=clone3 [436]=close_range [437]=openat2 [438]=pidfd_getfd [439]=faccessat2
	[441]=epoll_pwait2
)

e2e armv6 qemu-arm-static arm1176     # Pi Zero / Zero W / 1
e2e armv7 qemu-arm-static cortex-a7   # Pi 2
e2e arm64 qemu-aarch64-static cortex-a53 # Pi 3 / Zero 2 W (64-bit)
finish arm-e2e
