#!/usr/bin/env bash
# The demo: iotsim (a local stand-in for the Alibaba Cloud IoT Platform) with a
# throwaway CA, and gatewayd reading an emulated BME280 through the real periph
# driver, sending over TLS. Readings appear as iotsim prints them. Ctrl-C stops
# both (gatewayd drains and disconnects first).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .demo
port=18883
pk=a1demoPK001 dn=greenhouse-7 secret=demo-secret-not-for-production

bin/iotsim --tls "127.0.0.1:$port" --tcp "" --certs .demo --device "$pk:$dn:$secret" &
sim=$!
trap 'kill -TERM $sim 2>/dev/null || true; wait $sim 2>/dev/null || true; echo "demo stopped"' EXIT
# Ctrl-C reaches gatewayd (the foreground job) by itself; this shell only
# waits for it to finish draining, then stops iotsim.
trap ':' INT TERM
for _ in $(seq 100); do
  [ -s .demo/iotsim-ca.pem ] && break
  kill -0 "$sim" 2>/dev/null || { echo "iotsim failed to start" >&2; exit 1; }
  sleep 0.1
done
echo "== iotsim on 127.0.0.1:$port; starting gatewayd with configs/demo.toml (Ctrl-C stops both)"
bin/gatewayd run --config configs/demo.toml || true
exit 0
