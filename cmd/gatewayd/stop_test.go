package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gatewayd/buffer"
)

// A sensor wedged inside its driver (an emulated bus that never answers)
// when SIGTERM comes: the sensors get their share of the bound, the wedged
// loop is abandoned and named, and the buffer's final commit still happens.
// The process exits within the 10 s bound and every sample taken is in the
// file. The commit window is 10 minutes, so only the final commit can have
// put them there; the platform is down, so none left by the uplink.
func TestSIGTERMWithAWedgedSensorKeepsTheBound(t *testing.T) {
	e := newE2E(t) // no iotsim started: an outage for the whole run
	cfgPath := e.config(t, e2eSecret)
	b, _ := os.ReadFile(cfgPath)
	src := strings.Replace(string(b), `commit_interval = "500ms"`, `commit_interval = "10m"`, 1)
	src = strings.Replace(src, "[health]", `[[sensor]]
name     = "wedged"
driver   = "bme280"
bus      = "emulated"
address  = 0x77
interval = "200ms"
[sensor.properties]
temperature = "temperature_2"
humidity    = "humidity_2"
pressure    = "pressure_2"
[sensor.emulate]
hang_after = 1.0

[health]`, 1)
	if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfgPath)
	waitFor(t, 10*time.Second, "the wedged sensor to stop answering", func() bool {
		return strings.Contains(d.stderr.String(), "sampling")
	})
	time.Sleep(2500 * time.Millisecond) // past hang_after: the read is stuck now

	start := time.Now()
	d.cancel() // SIGTERM
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("run returned %v\n%s", err, d.stderr.String())
		}
	case <-time.After(shutdownBound + 2*time.Second):
		t.Fatalf("did not exit within the %v bound\n%s", shutdownBound, d.stderr.String())
	}
	took := time.Since(start)
	logs := d.stderr.String()
	if took > shutdownBound {
		t.Errorf("stop took %v, over the %v bound", took, shutdownBound)
	}
	if !strings.Contains(logs, "abandoning them") || !strings.Contains(logs, "wedged") {
		t.Errorf("the wedged sensor was not named as abandoned:\n%s", logs)
	}
	m := regexp.MustCompile(`"sensors stopped" samples_taken=(\d+)`).FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("no stop line with the samples taken:\n%s", logs)
	}
	taken, _ := strconv.Atoi(m[1])
	st, err := buffer.Inspect(filepath.Join(e.dir, "buffer.db"))
	if err != nil {
		t.Fatal(err)
	}
	// Both sensors send 3 values per sample.
	if taken < 5 {
		t.Fatalf("taken %d: the run did not sample", taken)
	}
	if st.Depth != 3*taken {
		t.Errorf("the file holds %d values, the sensors took %d samples (%d values): the final commit lost some\n%s",
			st.Depth, taken, 3*taken, logs)
	}
}
