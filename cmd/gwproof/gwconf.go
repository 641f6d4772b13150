package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The device identity every gatewayd in the harness uses.
const (
	pk, dn, secret = "a1proofPK01", "proof-1", "proof-secret"
)

// gwConfig is what varies between the harness's gatewayd runs.
type gwConfig struct {
	Platform  string // "aliyun" (iotsim, TLS) or "mqtt" (mosquitto, plain TCP)
	Endpoint  string
	CAFile    string // aliyun: iotsim's CA
	Buffer    string
	Commit    time.Duration // 0: the default 10 s
	Health    string        // listen address for /metrics
	Sensors   int           // emulated BME280s, each on its own emulated bus
	Interval  time.Duration
	Keepalive time.Duration // 0: the default
	Rate      float64       // max_messages_per_second; 0: default
	MaxSize   string
}

// sensorProps are the thing-model property names of sensor i's three
// measurements; distinct per sensor so (property, time) identifies a reading.
func sensorProps(i int) []string {
	return []string{fmt.Sprintf("s%d_temperature", i), fmt.Sprintf("s%d_humidity", i), fmt.Sprintf("s%d_pressure", i)}
}

// write renders the config into dir and returns its path.
func (c gwConfig) write(dir string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "[device]\nproduct_key = %q\ndevice_name = %q\ndevice_secret = %q\n\n", pk, dn, secret)
	fmt.Fprintf(&b, "[uplink]\nplatform = %q\nendpoint = %q\n", c.Platform, c.Endpoint)
	if c.Platform == "aliyun" {
		fmt.Fprintf(&b, "tls = true\nca_file = %q\nca_replace = true\nserver_name = \"localhost\"\n", c.CAFile)
	} else {
		// This machine's clock is not NTP-disciplined (adjtimex says
		// unsynced): without this, readings wait the default 2 min and
		// then go out flagged "synced": false anyway.
		b.WriteString("tls = false\nallow_plaintext = true\nclock_wait = \"0s\"\n")
	}
	if c.Keepalive > 0 {
		fmt.Fprintf(&b, "keepalive = %q\n", c.Keepalive.String())
	}
	if c.Rate > 0 {
		fmt.Fprintf(&b, "max_messages_per_second = %g\n", c.Rate)
	}
	fmt.Fprintf(&b, "\n[buffer]\npath = %q\n", c.Buffer)
	if c.Commit > 0 {
		fmt.Fprintf(&b, "commit_interval = %q\n", c.Commit.String())
	}
	if c.MaxSize != "" {
		fmt.Fprintf(&b, "max_size = %q\n", c.MaxSize)
	}
	for i := 0; i < c.Sensors; i++ {
		p := sensorProps(i)
		fmt.Fprintf(&b, "\n[[sensor]]\nname = \"s%d\"\ndriver = \"bme280\"\nbus = \"emulated:b%d\"\naddress = 0x76\ninterval = %q\n"+
			"[sensor.properties]\ntemperature = %q\nhumidity = %q\npressure = %q\n",
			i, i, c.Interval.String(), p[0], p[1], p[2])
	}
	fmt.Fprintf(&b, "\n[health]\nlisten = %q\n\n[log]\nlevel = \"warn\"\n", c.Health)
	path := filepath.Join(dir, "gatewayd.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("write config: %w", err)
	}
	return path, nil
}
