//go:build linux

package sensors

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/internal/testutil"
	"gatewayd/sensors/w1"
)

// cpuTime is the process's CPU time (testutil.CPUTime: nanoseconds;
// getrusage counts in ticks, too coarse for a few hundred samples).
func cpuTime(b *testing.B) time.Duration { return testutil.CPUTime(b) }

// BenchmarkRead is the cost of one sample — driver, emulated chip,
// plausibility, readings built and stamped — per driver. ns/op is wall time
// and includes the measurement times the drivers sleep (periph's aht20
// sleeps 80 ms, sht3x waits 15.5 ms at high repeatability, bmxx80 sleeps
// its typical conversion time in forced mode); cpu-ns/op is the CPU the
// process spent per sample, which is what a reading costs the board.
func BenchmarkRead(b *testing.B) {
	root := b.TempDir()
	os.MkdirAll(filepath.Join(root, "28-0000000000aa"), 0o755)
	os.WriteFile(filepath.Join(root, "28-0000000000aa", "w1_slave"), w1.Format(21.5, false), 0o644)
	cases := []struct {
		name string
		spec Spec
	}{
		{"bme280-forced", Spec{Driver: "bme280", Options: map[string]string{"oversampling": "1", "mode": "forced"}}},
		{"bme280-normal", Spec{Driver: "bme280", Options: map[string]string{"oversampling": "1"}}},
		{"bmp280-forced", Spec{Driver: "bmp280", Options: map[string]string{"oversampling": "1", "mode": "forced"}}},
		{"aht20", Spec{Driver: "aht20"}},
		{"scd4x", Spec{Driver: "scd4x"}},
		{"hdc302x", Spec{Driver: "hdc302x", Options: map[string]string{"rate": "10"}}},
		{"mcp9808", Spec{Driver: "mcp9808"}},
		{"tmp102", Spec{Driver: "tmp102"}},
		{"sht3x-high", Spec{Driver: "sht3x"}},
		{"sht4x-high", Spec{Driver: "sht4x"}},
		{"ds18b20-sysfs", Spec{Driver: "ds18b20", Device: "28-0000000000aa"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			sp := c.spec
			sp.Name = "s"
			if sp.Driver != "ds18b20" {
				sp.Bus = "emulated"
			}
			s, _ := mustSet(b, []Spec{sp}, func(o *Options) { o.W1Root = root })
			se := s.sensors[0]
			ctx := context.Background()
			if _, _, err := se.sample(ctx); err != nil { // open the chip outside the timing
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			for i := 0; i < b.N; i++ {
				if _, _, err := se.sample(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkSleepBaseline is the control for the drivers that sleep: what a
// bare 8 ms time.Sleep costs the process in CPU on this machine (runtime
// idle and wake-up work). A sleeping driver's cpu-ns/op minus this is its
// own work.
func BenchmarkSleepBaseline(b *testing.B) {
	cpu0 := cpuTime(b)
	for i := 0; i < b.N; i++ {
		time.Sleep(8 * time.Millisecond)
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}
