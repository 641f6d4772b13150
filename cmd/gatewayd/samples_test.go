package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gatewayd/internal/testutil"
	"gatewayd/sensors"
	"gatewayd/uplink"
)

// threeSensorConfig is the field case: three BME280s sampled on one
// interval, with /metrics on a free port. maxDelay "" keeps the default.
func (e *e2eEnv) threeSensorConfig(t *testing.T, maxDelay, interval string, healthPort int) string {
	t.Helper()
	delay := ""
	if maxDelay != "" {
		delay = fmt.Sprintf("max_delay = %q", maxDelay)
	}
	var sensors strings.Builder
	for i, s := range []struct{ name, bus, addr string }{
		{"north", "emulated", "0x76"}, {"south", "emulated", "0x77"}, {"roof", "emulated:second", "0x76"},
	} {
		fmt.Fprintf(&sensors, `
[[sensor]]
name     = %q
driver   = "bme280"
bus      = %q
address  = %s
interval = %q
[sensor.emulate]
temperature = %d.5
`, s.name, s.bus, s.addr, interval, 20+i)
	}
	cfg := fmt.Sprintf(`[device]
product_key   = %q
device_name   = %q
device_secret = %q

[uplink]
endpoint    = "127.0.0.1:%d"
ca_file     = %q
ca_replace  = true
server_name = "localhost"
keepalive   = "30s"
%s

[buffer]
path            = "buffer.db"
commit_interval = "500ms"
%s
[health]
listen = "127.0.0.1:%d"
`, e2ePK, e2eDN, e2eSecret, e.port, e.caFile, delay, sensors.String(), healthPort)
	path := filepath.Join(e.dir, "three.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// scrape reads /metrics into name{labels} -> value; nil while the endpoint
// is not up yet.
func scrape(t *testing.T, port int) map[string]float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// Three sensors sampled together go out as one message per round with the
// default max_delay, and /metrics says so: gatewayd_messages_per_reading
// (data messages per acknowledged sample; a reading is one sensor read) and
// the counters it comes from. The rate is measured after start-up, whose
// backlog (samples taken before the platform answered) shares messages even
// better. Every value goes out at the BME280's 0.01 resolution.
func TestMessagesPerReadingInMetrics(t *testing.T) {
	e := newE2E(t)
	sim := e.startSim(t)
	port := testutil.FreePort(t)
	d := startDaemon(t, e.threeSensorConfig(t, "", "1200ms", port))
	var a, b map[string]float64
	waitFor(t, 30*time.Second, "6 samples acknowledged", func() bool {
		a = scrape(t, port)
		return a["gatewayd_samples_acked_total"] >= 6
	})
	waitFor(t, 40*time.Second, "15 more samples acknowledged", func() bool {
		b = scrape(t, port)
		return b["gatewayd_samples_acked_total"] >= a["gatewayd_samples_acked_total"]+15
	})
	d.stop(t)
	msgs := b["gatewayd_messages_acked_total"] - a["gatewayd_messages_acked_total"]
	samples := b["gatewayd_samples_acked_total"] - a["gatewayd_samples_acked_total"]
	t.Logf("steady state: %.0f messages for %.0f samples (%.3f); since start %.3f messages per reading",
		msgs, samples, msgs/samples, b["gatewayd_messages_per_reading"])
	if rate := msgs / samples; rate < 0.3 || rate > 0.4 {
		t.Errorf("%.3f messages per reading with three sensors sampled together, want about 1/3 (0.30..0.40)", rate)
	}
	total := b["gatewayd_messages_acked_total"] / b["gatewayd_samples_acked_total"]
	if mpr := b["gatewayd_messages_per_reading"]; mpr <= 0 || mpr < total-0.01 || mpr > total+0.01 {
		t.Errorf("gatewayd_messages_per_reading %v, its counters say %v", mpr, total)
	}
	for _, a := range sim.Accepted() {
		if _, frac, ok := strings.Cut(a.Raw, "."); !ok || len(frac) > 2 {
			t.Fatalf("%s sent as %q: want at most 2 decimals (0.01 resolution)", a.Property, a.Raw)
		}
	}
}

// uplink.max_delay reaches the uplink: the default 1s, a configured value,
// and "0s", which must mean "at once", not the uplink's zero-value default.
func TestMaxDelayWiring(t *testing.T) {
	e := newE2E(t)
	for _, tc := range []struct {
		conf string
		want time.Duration
	}{{"", time.Second}, {"2500ms", 2500 * time.Millisecond}, {"0s", uplink.NoDelay}} {
		var stderr bytes.Buffer
		cfg, err := loadConfig(&app{stdout: io.Discard, stderr: &stderr}, e.threeSensorConfig(t, tc.conf, "10s", 0))
		if err != nil {
			t.Fatalf("%q: %v", tc.conf, err)
		}
		if got := uplinkOptions(cfg, "", newLogger(io.Discard, "error")).MaxDelay; got != tc.want {
			t.Errorf("max_delay %q: uplink MaxDelay %v, want %v", tc.conf, got, tc.want)
		}
	}
}

// The annotated example's commented [sensor.options] (the resolution
// override) is valid once uncommented: the sensor layer accepts it and the
// sample carries the configured resolution.
func TestExampleResolutionOption(t *testing.T) {
	src, err := os.ReadFile("../../configs/gatewayd.toml")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^# (\[sensor\.options\]|pressure_resolution = "[^"]*")`)
	if n := len(re.FindAll(src, -1)); n != 2 {
		t.Fatalf("the example's commented [sensor.options] block is gone (%d lines found)", n)
	}
	out := re.ReplaceAll(src, []byte("$1"))
	out = bytes.Replace(out, []byte(`device_secret_file = "gatewayd.secret"`), []byte(`device_secret = "x"`), 1)
	out = bytes.Replace(out, []byte(`bus      = "/dev/i2c-1"`), []byte(`bus      = "emulated"`), 1)
	path := filepath.Join(t.TempDir(), "gatewayd.toml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := Run(context.Background(), []string{"check", "--config", path}, &stdout, &stderr); err != nil {
		t.Fatalf("check of the example with its options: %v\n%s", err, stderr.String())
	}
	cfg, err := loadConfig(&app{stdout: &stdout, stderr: &stderr}, path)
	if err != nil {
		t.Fatal(err)
	}
	set, err := sensors.New(sensorSpecs(cfg), sensors.Options{Logger: newLogger(&stderr, "error")})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close(context.Background())
	res := set.ReadOnce(context.Background())[0]
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, v := range res.Sample.Values {
		want := map[string]float64{"temperature": 0.01, "humidity": 0.01, "pressure": 0.1}[v.Measurement]
		if v.Resolution != want {
			t.Errorf("%s resolution %v, want %v", v.Measurement, v.Resolution, want)
		}
	}
}
