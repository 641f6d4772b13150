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

# free_port N: the first port from N up that nothing listens on. Callers pass
# an N below the kernel's ephemeral range (32768 up), so no client socket of
# ours or of a concurrent process can take it before the daemon binds it.
free_port() {
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
	echo "$p"
}

# wait_for SECONDS CMD...: poll CMD every 0.2 s, bounded.
wait_for() {
	local n=$(($1 * 5))
	shift
	while [ $n -gt 0 ]; do
		"$@" && return 0
		sleep 0.2
		n=$((n - 1))
	done
	return 1
}

# stop PID SECONDS: SIGTERM, then wait at most SECONDS; sets $stopped to the
# exit status, or "timeout" (and kills it). Not in $(...): a subshell cannot
# wait for our children.
stopped=
stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < $2 * 10; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			stopped=$?
			return
		fi
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	stopped=timeout
}

# http_get PORT PATH FILE: GET over bash's /dev/tcp (no curl on a bare CI
# machine); writes the body to FILE and succeeds on status 200.
http_get() {
	local resp
	resp=$(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
		timeout 10 cat <&3
	) || return 1
	printf '%s' "${resp#*$'\r\n\r\n'}" >"$3"
	[[ $resp == "HTTP/1."?" 200 "* ]]
}

# e2e_config FILE PK DN SECRET PORT CA HEALTHPORT: a config with one emulated
# BME280 (21.5 °C, 40 %RH) sending to iotsim on 127.0.0.1:PORT over TLS.
e2e_config() {
	cat >"$1" <<EOF
[device]
product_key   = "$2"
device_name   = "$3"
device_secret = "$4"

[uplink]
platform    = "aliyun"
endpoint    = "127.0.0.1:$5"
tls         = true
ca_file     = "$6"
ca_replace  = true
server_name = "localhost"
sign_method = "hmacsha256"
keepalive   = "60s"

[buffer]
path            = "buffer.db"
max_size        = "4MiB"
commit_interval = "1s"

[[sensor]]
name     = "air"
driver   = "bme280"
bus      = "emulated"
address  = 0x76
interval = "1s"
[sensor.properties]
temperature = "temperature"
humidity    = "humidity"
pressure    = "pressure"
[sensor.emulate]
temperature = 21.5
humidity    = 40.0
pressure    = 1001.0

[health]
listen = "127.0.0.1:$7"

[log]
level = "info"
EOF
}

# unit_syscalls UNIT: the system calls UNIT's SystemCallFilter= lines allow,
# one per line, with systemd-analyze's definitions of the @groups. The first
# line must be an allow list; later ones add to it, or remove with "~".
unit_syscalls() {
	local -A seen=() allowed=()
	_expand() {
		case "$1" in
		@*)
			[ -n "${seen[$1]:-}" ] && return
			seen[$1]=1
			local line
			while read -r line; do
				case "$line" in "" | "#"* | "$1") continue ;; esac
				_expand "$line"
			done < <(systemd-analyze syscall-filter "$1")
			;;
		*) echo "$1" ;;
		esac
	}
	local value deny item sc
	while IFS= read -r value; do
		deny=
		[[ $value == "~"* ]] && deny=1 value=${value#\~}
		for item in $value; do
			seen=()
			while read -r sc; do
				if [ -n "$deny" ]; then unset "allowed[$sc]"; else allowed[$sc]=1; fi
			done < <(_expand "$item")
		done
	done < <(sed -n 's/^SystemCallFilter=//p' "$1")
	# systemd always permits these, whatever the filter (systemd.exec(5)).
	for sc in execve exit exit_group getrlimit rt_sigreturn sigreturn; do allowed[$sc]=1; done
	printf '%s\n' "${!allowed[@]}"
}

# scratch makes a temp dir ($tmp) and kills every pid a script appends to
# $pids, then removes $tmp, when the script exits.
scratch() {
	tmp=$(mktemp -d)
	pids=()
	trap scratch_cleanup EXIT
}
scratch_cleanup() {
	local p
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$tmp"
}
