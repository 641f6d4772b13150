package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"gatewayd/internal/testutil"
)

// `gatewayd status` against a running daemon: a failing emulated sensor and
// a platform outage are both named (exit 1); the platform's return clears
// the uplink's problem; once the broken sensor is removed (SIGHUP reload)
// it is healthy (exit 0) and shows the live sensor's last values.
func TestStatusCommand(t *testing.T) {
	e := newE2E(t)
	cfgPath := e.config(t, e2eSecret)
	hport := testutil.FreePort(t)
	b, _ := os.ReadFile(cfgPath)
	healthy := strings.Replace(string(b), "[health]\nlisten = \"\"", fmt.Sprintf("[health]\nlisten = \"127.0.0.1:%d\"", hport), 1)
	broken := strings.Replace(healthy, "[health]", `[[sensor]]
name     = "cellar"
driver   = "bme280"
bus      = "emulated"
address  = 0x77
interval = "200ms"
[sensor.properties]
temperature = "cellar_temperature"
[sensor.emulate]
fail_after = 0

[health]`, 1)
	if err := os.WriteFile(cfgPath, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfgPath) // the platform is down: no iotsim yet

	status := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		err := Run(context.Background(), append([]string{"status", "--config", cfgPath}, args...), &out, &errb)
		return exitCode(err), out.String(), errb.String()
	}
	var code int
	var out string
	waitFor(t, 20*time.Second, "status to name the broken sensor and the outage", func() bool {
		code, out, _ = status()
		return code == 1 && strings.Contains(out, "sensor cellar: no good reading yet") && strings.Contains(out, "uplink: not connected")
	})
	for _, want := range []string{"UNHEALTHY (2)", "air", "bme280", "NOT connected", "clock", "watchdog", "FAILING"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	code, js, stderr := status("--json")
	var doc statusDoc
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		t.Fatalf("--json: %v\n%s", err, js)
	}
	if code != 1 || len(doc.Problems) != 2 || len(doc.Sensors) != 2 || doc.Uplink.Connected || !strings.Contains(stderr, "unhealthy") {
		t.Errorf("--json: exit %d, problems %q, %d sensors, connected %v, stderr %q", code, doc.Problems, len(doc.Sensors), doc.Uplink.Connected, stderr)
	}

	// The platform comes back: only the sensor is left.
	sim := e.startSim(t)
	waitFor(t, 30*time.Second, "the uplink's problem to clear", func() bool {
		code, out, _ = status()
		return sim.Connected(e2ePK, e2eDN) && strings.Contains(out, "UNHEALTHY (1)") && !strings.Contains(out, "uplink: not connected")
	})

	// The technician removes the broken sensor: healthy.
	if err := os.WriteFile(cfgPath, []byte(healthy), 0o600); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, 30*time.Second, "a healthy status after the reload", func() bool {
		code, out, _ = status()
		return code == 0 && strings.Contains(out, "pressure")
	})
	for _, want := range []string{"HEALTHY", "temperature 23.", "humidity 41.", "pressure 100", "connected to 127.0.0.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("healthy status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "cellar") {
		t.Errorf("the removed sensor is still listed:\n%s", out)
	}
	// Backlog in samples and values; last values at the chip's resolution
	// (a BME280's 0.01: at most two decimals).
	if !regexp.MustCompile(`buffer\s+\d+ samples \(\d+ values\) waiting`).MatchString(out) ||
		regexp.MustCompile(`(temperature|humidity|pressure) -?\d+\.\d{3,}`).MatchString(out) {
		t.Errorf("status's buffer line or value precision:\n%s", out)
	}
	d.stop(t)

	// Nobody home: a distinct exit code and a hint.
	if code, _, stderr := status(); code != 3 || !strings.Contains(stderr, "not answering") {
		t.Errorf("status with the daemon stopped: exit %d, %q", code, stderr)
	}
}
