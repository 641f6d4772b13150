#!/usr/bin/env bash
# The demo: iotsim (a local stand-in for the Alibaba Cloud IoT Platform) with a
# throwaway CA, and gatewayd reading an emulated BME280 through the real periph
# driver, sending over TLS. Readings appear as iotsim prints them. Ctrl-C stops
# both.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .demo
port=18883
pk=a1demoPK001 dn=greenhouse-7 secret=demo-secret-not-for-production

bin/iotsim --tls "127.0.0.1:$port" --certs .demo --device "$pk:$dn:$secret" &
sim=$!
gw=
stop() {
  trap - INT TERM EXIT
  [ -n "$gw" ] && kill -TERM "$gw" 2>/dev/null && wait "$gw" 2>/dev/null || true
  kill -TERM "$sim" 2>/dev/null && wait "$sim" 2>/dev/null || true
  echo "demo stopped"
}
trap stop INT TERM EXIT
for _ in $(seq 50); do
  [ -s .demo/ca.pem ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$sim" 2>/dev/null || { echo "iotsim failed to start" >&2; exit 1; }
  sleep 0.1
done
echo "iotsim listening on 127.0.0.1:$port; starting gatewayd (Ctrl-C stops both)"
bin/gatewayd run --config configs/demo.toml &
gw=$!
wait "$gw" || true
