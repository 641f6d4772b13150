package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatewayd/internal/reading"
	"gatewayd/sensors"
)

// An interval set from the platform is bounded per chip (never below its
// conversion time, never below 1 s), echoed back as "<sensor>_interval",
// kept across a restart, and dropped once the config file changes that
// sensor's interval. Through the real daemon and the platform emulator.
func TestPlatformIntervalBoundedEchoedAndKept(t *testing.T) {
	e := newE2E(t)
	sim := e.startSim(t)
	cfgPath := e.config(t, e2eSecret)
	// A second sensor whose chip is slow: the SCD4x measures every 5 s.
	b, _ := os.ReadFile(cfgPath)
	src := strings.Replace(string(b), "[health]", `[[sensor]]
name     = "co2"
driver   = "scd4x"
bus      = "emulated"
interval = "10s"

[health]`, 1)
	os.WriteFile(cfgPath, []byte(src), 0o600)

	d := startDaemon(t, cfgPath)
	waitFor(t, 15*time.Second, "the daemon to connect", func() bool { return sim.Connected(e2ePK, e2eDN) })
	set := func(params map[string]any) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := sim.SetProperty(ctx, e2ePK, e2eDN, params)
		if err != nil {
			t.Fatalf("set %v: %v", params, err)
		}
		return r.Code
	}
	for _, bad := range []map[string]any{
		{"air_interval": 0.1},   // below 1 s: refused for every chip
		{"air_interval": 0.5},   // still below 1 s
		{"co2_interval": 2},     // below the SCD4x's 5 s
		{"air_interval": 90000}, // above 24 h
	} {
		if code := set(bad); code == 200 {
			t.Errorf("set %v accepted", bad)
		}
	}
	if code := set(map[string]any{"air_interval": 2}); code != 200 {
		t.Fatalf("set air_interval=2: code %d", code)
	}
	if code := set(map[string]any{"co2_interval": 6}); code != 200 {
		t.Fatalf("set co2_interval=6: code %d", code)
	}
	// Echoed back as property posts, so the device shadow shows them.
	echo := func(prop string, want float64) bool {
		for _, a := range sim.Accepted() {
			if a.Property == prop && a.Value == want {
				return true
			}
		}
		return false
	}
	waitFor(t, 15*time.Second, "the applied intervals echoed to the platform", func() bool {
		return echo("air_interval", 2) && echo("co2_interval", 6)
	})
	for _, never := range []float64{0.1, 0.5} {
		if echo("air_interval", never) {
			t.Errorf("a refused interval %v was echoed", never)
		}
	}
	d.stop(t)

	// Restart with the same file: the platform's intervals still apply.
	d = startDaemon(t, cfgPath)
	waitFor(t, 10*time.Second, "the restarted daemon to log the kept interval", func() bool {
		return strings.Contains(d.stderr.String(), "kept across the restart") &&
			strings.Count(d.stderr.String(), "kept across the restart") == 2
	})
	d.stop(t)

	// The technician edits air's interval in the file: the file wins for
	// air, co2 keeps the platform's.
	os.WriteFile(cfgPath, []byte(strings.Replace(src, `interval = "200ms"`, `interval = "300ms"`, 1)), 0o600)
	d = startDaemon(t, cfgPath)
	waitFor(t, 10*time.Second, "the restarted daemon to apply the file's interval", func() bool {
		return strings.Contains(d.stderr.String(), "the config file changed this sensor's interval")
	})
	d.stop(t)
	st, err := loadIntervals(filepath.Join(e.dir, intervalsFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.m["air"]; ok {
		t.Errorf("air's platform interval still saved after the file changed it: %v", st.m)
	}
	if sv := st.m["co2"]; sv.Interval != "6s" || sv.Config != "10s" {
		t.Errorf("co2's saved interval = %+v, want 6s set over a configured 10s", sv)
	}
}

// The bounds and the echo, without the network.
func TestControlSetIntervalBounds(t *testing.T) {
	set := newTestSet(t)
	var got []reading.Reading
	sink := sinkFunc(func(rs []reading.Reading) { got = append(got, rs...) })
	dir := t.TempDir()
	st, _ := loadIntervals(filepath.Join(dir, intervalsFile))
	c := control{set: set, configured: map[string]time.Duration{"air": 200 * time.Millisecond}, saved: st, sink: sink,
		stamp: func() reading.Stamp { return reading.Stamp{Time: time.Unix(1e9, 0)} }}
	for _, d := range []time.Duration{0, 100 * time.Millisecond, 999 * time.Millisecond, 25 * time.Hour} {
		if err := c.SetInterval("air", d); err == nil {
			t.Errorf("SetInterval(%v) accepted", d)
		}
	}
	if err := c.SetInterval("nope", time.Minute); err == nil {
		t.Error("unknown sensor accepted")
	}
	if len(got) != 0 {
		t.Fatalf("refused intervals echoed: %v", got)
	}
	if err := c.SetInterval("air", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if d, _ := set.Interval("air"); d != 3*time.Second {
		t.Errorf("interval now %v", d)
	}
	if len(got) != 1 || got[0].Property != "air_interval" || got[0].Value != 3 || got[0].Unit != "s" || got[0].Time.IsZero() {
		t.Errorf("echo = %+v", got)
	}
	// Saved with the config interval it was set over.
	st2, err := loadIntervals(filepath.Join(dir, intervalsFile))
	if err != nil || st2.m["air"] != (savedInterval{Interval: "3s", Config: "200ms"}) {
		t.Errorf("saved = %v, %v", st2.m, err)
	}
	// A damaged file is reported, and the config's intervals apply.
	os.WriteFile(filepath.Join(dir, intervalsFile), []byte("{not json"), 0o600)
	if _, err := loadIntervals(filepath.Join(dir, intervalsFile)); err == nil {
		t.Error("damaged intervals file not reported")
	}
}

type sinkFunc func([]reading.Reading)

func (f sinkFunc) Append(_ context.Context, rs []reading.Reading) error { f(rs); return nil }

// newTestSet is one emulated BME280 named "air", not running.
func newTestSet(t *testing.T) *sensors.Set {
	t.Helper()
	s, err := sensors.New([]sensors.Spec{{Name: "air", Driver: "bme280", Bus: "emulated", Interval: 200 * time.Millisecond}}, sensors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}
