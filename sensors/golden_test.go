package sensors

import (
	"context"
	"math"
	"testing"

	"gatewayd/sensors/emul"
)

// Datasheet values, fed to the real drivers as raw chip output.
func TestDatasheetGoldenValues(t *testing.T) {
	read := func(t *testing.T, s *Set) Result {
		t.Helper()
		return s.ReadOnce(context.Background())[0]
	}
	t.Run("scd4x", func(t *testing.T) {
		// SCD4x datasheet, read_measurement example: CO₂ 0x01F4 = 500 ppm,
		// T 0x6667 = 25 °C, RH 0x5EB9 = 37 %RH.
		s, b := mustSet(t, []Spec{{Name: "c", Driver: "scd4x", Bus: "emulated"}}, nil)
		b.Chip(0x62).(*emul.SCD4x).SetRaw(0x01F4, 0x6667, 0x5EB9)
		r := read(t, s)
		want := map[string]float64{"co2": 500, "temperature": 25, "humidity": 37}
		if r.Err != nil || len(r.Sample.Values) != 3 {
			t.Fatalf("%+v", r)
		}
		for _, x := range r.Sample.Values {
			if math.Abs(x.Value-want[x.Measurement]) > 0.005 {
				t.Errorf("%s = %v, datasheet %v", x.Measurement, x.Value, want[x.Measurement])
			}
		}
	})
	t.Run("mcp9808", func(t *testing.T) {
		// MCP9808 datasheet section 5.1.3: 0x1F60 is −10 °C (two's
		// complement, sign bit 12); 0x07CC is 124.75 °C; 0x0004 0.25 °C.
		for raw, want := range map[uint16]float64{0x1F60: -10, 0x07CC: 124.75, 0x0004: 0.25, 0x1FFC: -0.25} {
			s, b := mustSet(t, []Spec{{Name: "m", Driver: "mcp9808", Bus: "emulated"}}, nil)
			b.Chip(0x18).(*emul.MCP9808).SetRaw(raw)
			if r := read(t, s); r.Err != nil || r.Sample.Values[0].Value != want {
				t.Errorf("%#04x: %+v, datasheet %v °C", raw, r, want)
			}
		}
	})
	t.Run("tmp102", func(t *testing.T) {
		// TMP102 datasheet table "12-bit temperature data format"; the
		// rows outside −40..125 °C are rejected as implausible.
		for raw, want := range map[uint16]float64{0x640: 100, 0x190: 25, 0x004: 0.25, 0xFFC: -0.25, 0xE70: -25,
			0x7FF: math.NaN(), 0xC90: math.NaN()} {
			s, b := mustSet(t, []Spec{{Name: "t", Driver: "tmp102", Bus: "emulated"}}, nil)
			b.Chip(0x48).(*emul.TMP102).SetRaw(raw << 4)
			r := read(t, s)
			if math.IsNaN(want) {
				if r.Err == nil {
					t.Errorf("%#03x: %+v accepted, outside the specified range", raw, r.Sample.Values)
				}
				continue
			}
			if r.Err != nil || r.Sample.Values[0].Value != want {
				t.Errorf("%#03x: %+v, datasheet %v °C", raw, r, want)
			}
		}
	})
}
