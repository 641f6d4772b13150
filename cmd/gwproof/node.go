package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// seedVersion is the npm package the seed article's client uses.
const seedVersion = "mqtt@2.18.8"

// seedJS is the seed's client (../shared/seed/mqtt-and-alibaba-iot-platform.txt):
// same login fields (HMAC-SHA1 signed, keepalive 60, clean false, MQTT
// 3.1.1), same topic and payload shape, QoS 1, one post per sensor per
// interval carrying its three values. Changes, all in its favour: the
// per-packet console.log is gone, and it connects to the local broker or
// platform emulator as the device it is given.
// Usage: node seed.js URL SENSORS INTERVAL_MS [PRODUCT_KEY DEVICE_NAME DEVICE_SECRET]
const seedJS = `'use strict';
const crypto = require('crypto');
const mqtt = require('mqtt');
const [url, sensors, intervalMs] = [process.argv[2], +process.argv[3], +process.argv[4]];
const deviceConfig = { productKey: process.argv[5] || 'a1seedPK001', deviceName: process.argv[6] || 'seed-1', deviceSecret: process.argv[7] || 'seed-secret' };
function signHmacSha1(params, deviceSecret) {
  const keys = Object.keys(params).sort();
  const list = keys.map((key) => key + params[key]);
  return crypto.createHmac('sha1', deviceSecret).update(list.join('')).digest('hex');
}
const params = { productKey: deviceConfig.productKey, deviceName: deviceConfig.deviceName,
  timestamp: Date.now(), clientId: Math.random().toString(36).substr(2) };
const options = { keepalive: 60, clean: false, protocolVersion: 4 };
options.password = signHmacSha1(params, deviceConfig.deviceSecret);
options.clientId = params.clientId + '|securemode=3,signmethod=hmacsha1,timestamp=' + params.timestamp + '|';
options.username = deviceConfig.deviceName + '&' + deviceConfig.productKey;
const client = mqtt.connect(url, options);
const topic = '/sys/' + deviceConfig.productKey + '/' + deviceConfig.deviceName + '/thing/event/property/post';
function getPostData(s) {
  const p = {};
  p['s' + s + '_temperature'] = Math.floor((Math.random() * 20) + 10);
  p['s' + s + '_humidity'] = Math.floor((Math.random() * 20) + 60);
  p['s' + s + '_pressure'] = Math.floor((Math.random() * 20) + 1000);
  return JSON.stringify({ id: Date.now(), params: p, method: 'thing.event.property.post' });
}
for (let s = 0; s < sensors; s++) {
  setInterval(function () { client.publish(topic, getPostData(s), { qos: 1 }); }, intervalMs);
}
process.on('SIGTERM', () => { client.end(false, () => process.exit(0)); setTimeout(() => process.exit(0), 2000); });
`

// fleetJS is N seed clients in one process with mqtt.js's default
// reconnectPeriod (1000 ms): a fixed 1 s retry, no backoff, no jitter.
// Prints "up I" / "down I" per client state change.
// Usage: node fleet.js URL N
const fleetJS = `'use strict';
const mqtt = require('mqtt');
const [url, n] = [process.argv[2], +process.argv[3]];
const clients = [];
for (let i = 0; i < n; i++) {
  const c = mqtt.connect(url, { clientId: 'node-' + i, keepalive: 60, clean: false, protocolVersion: 4, reconnectPeriod: 1000 });
  c.on('connect', () => console.log('up ' + i));
  c.on('close', () => console.log('down ' + i));
  c.on('error', () => {});
  clients.push(c);
}
process.on('SIGTERM', () => { for (const c of clients) c.end(true); setTimeout(() => process.exit(0), 500); });
`

// nodeDir installs the seed's client into a throwaway directory once per
// run (npm's registry is the one place outside 127.0.0.1 the harness uses).
func (h *harness) nodeDir() (string, error) {
	dir := filepath.Join(h.work, "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "mqtt", "package.json")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("node dir: %w", err)
	}
	for name, src := range map[string]string{"seed.js": seedJS, "fleet.js": fleetJS} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			return "", fmt.Errorf("write %s: %w", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(h.ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--no-save", "--silent", "--prefix", dir, seedVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install %s: %w: %s", seedVersion, err, out)
	}
	return dir, nil
}

func nodeBin() string {
	if p, err := exec.LookPath("node"); err == nil {
		return p
	}
	return "/usr/bin/node"
}
