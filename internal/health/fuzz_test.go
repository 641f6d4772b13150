package health

import (
	"math"
	"strings"
	"testing"
)

// Sensor names and versions reach label values and may hold anything: the
// page must still parse and give back exactly what was written.
func FuzzExposition(f *testing.F) {
	f.Add("air", "Readings taken.", "v1.2.3", 1.5)
	f.Add(`soil "north"\bed`+"\n2", "back\\slash\nnewline", "", math.Inf(-1))
	f.Add("\x00\xff", "", "\"", math.NaN())
	f.Fuzz(func(t *testing.T, sensor, help, version string, value float64) {
		var w MetricWriter
		w.Counter("gatewayd_readings_taken_total", help, value, "sensor", sensor)
		w.Gauge("gatewayd_build_info", help, 1, "version", version)
		if err := w.Err(); err != nil {
			t.Fatalf("valid names refused: %v", err)
		}
		var b strings.Builder
		if _, err := w.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		fams, err := parseExposition(b.String())
		if err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, b.String())
		}
		// Invalid UTF-8 is replaced, everything else comes back verbatim.
		sensor = strings.ToValidUTF8(sensor, "\uFFFD")
		version = strings.ToValidUTF8(version, "\uFFFD")
		f := fams["gatewayd_readings_taken_total"]
		if f == nil || f.help != strings.ToValidUTF8(help, "\uFFFD") || f.typ != "counter" {
			t.Fatalf("family lost or altered: %+v", f)
		}
		got, ok := f.samples["sensor="+sensor]
		if !ok || !(got == value || math.IsNaN(got) && math.IsNaN(value)) {
			t.Errorf("sample for %q = %v (present %v), want %v\n%s", sensor, got, ok, value, b.String())
		}
		if _, ok := fams["gatewayd_build_info"].samples["version="+version]; !ok {
			t.Errorf("build_info for %q lost", version)
		}
	})
}
