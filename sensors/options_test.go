package sensors

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"gatewayd/internal/reading"

	"gatewayd/sensors/emul"
)

// Options reach the chip: what the driver programmed is read back from the
// emulated registers.
func TestOptionsReachTheChip(t *testing.T) {
	specs := []Spec{
		{Name: "bme", Driver: "bme280", Bus: "emulated", Options: map[string]string{
			"temperature_oversampling": "2", "pressure_oversampling": "8", "humidity_oversampling": "1",
			"filter": "16", "standby": "500ms"}},
		{Name: "bmp", Driver: "bmp280", Bus: "emulated", Address: 0x77, Options: map[string]string{"oversampling": "16", "mode": "forced"}},
		{Name: "sht-heat", Driver: "sht3x", Bus: "emulated", Options: map[string]string{"heater": "on", "repeatability": "medium"}},
		{Name: "sht-cool", Driver: "sht3x", Bus: "emulated", Address: 0x45},
		{Name: "mcp", Driver: "mcp9808", Bus: "emulated", Options: map[string]string{"resolution": "0.5"}},
		{Name: "tmp", Driver: "tmp102", Bus: "emulated", Options: map[string]string{"rate": "8"}},
		{Name: "co2", Driver: "scd4x", Bus: "emulated", Options: map[string]string{"mode": "low-power"}},
		{Name: "hdc", Driver: "hdc302x", Bus: "emulated", Address: 0x46, Options: map[string]string{"rate": "10"}},
	}
	s, b := mustSet(t, specs, nil)
	// The SHT3x at 0x45 had its heater left on by "an earlier program".
	b.Chip(0x45).(*emul.SHT).Tx(0, []byte{0x30, 0x6D}, nil)
	for _, r := range s.ReadOnce(context.Background()) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Sensor, r.Err)
		}
	}
	bme := b.Chip(0x76).(*emul.BME280)
	// osrs_t=2x (010), osrs_p=8x (100), normal mode (11); standby 500 ms
	// (100), filter 16 (100): BME280 datasheet tables 25-28.
	if h, m, c := bme.Reg(0xF2), bme.Reg(0xF4), bme.Reg(0xF5); h != 0x01 || m != 0x53 || c != 0x90 {
		t.Errorf("bme280 ctrl_hum %#02x ctrl_meas %#02x config %#02x, want 0x01 0x53 0x90", h, m, c)
	}
	// Forced mode: the chip is back to sleep, oversampling 16x both.
	if m := b.Chip(0x77).(*emul.BME280).Reg(0xF4); m != 0xB4 {
		t.Errorf("bmp280 ctrl_meas %#02x, want 0xb4", m)
	}
	if st := b.Chip(0x44).(*emul.SHT).Status(); st&(1<<13) == 0 {
		t.Errorf("sht3x heater not on: status %#04x", st)
	}
	if st := b.Chip(0x45).(*emul.SHT).Status(); st&(1<<13) != 0 {
		t.Errorf("sht3x heater left on: status %#04x", st)
	}
	if r := b.Chip(0x18).(*emul.MCP9808).Resolution(); r != 0 {
		t.Errorf("mcp9808 resolution register %d, want 0 (0.5 °C)", r)
	}
	if c := b.Chip(0x48).(*emul.TMP102).Config(); c>>6&3 != 3 || c&0x0100 != 0 {
		t.Errorf("tmp102 config %#04x, want CR=11 (8 Hz), running", c)
	}
	if m := b.Chip(0x62).(*emul.SCD4x).Mode(); m != "low-power" {
		t.Errorf("scd4x in %s mode", m)
	}
	if !b.Chip(0x46).(*emul.HDC302x).Auto() {
		t.Error("hdc302x not in auto mode")
	}
	// Close halts what can be halted: the HDC302x leaves auto mode.
	s.Close(context.Background())
	if b.Chip(0x46).(*emul.HDC302x).Auto() {
		t.Error("hdc302x still measuring after Close")
	}
}

// Every value carries the resolution it is kept and sent at: the chip's by
// default (from its datasheet, see each driver's file), the configured
// "<measurement>_resolution" when set.
func TestResolutions(t *testing.T) {
	specs := []Spec{
		{Name: "bme", Driver: "bme280", Bus: "emulated"},
		{Name: "bmp", Driver: "bmp280", Bus: "emulated", Address: 0x77},
		{Name: "aht", Driver: "aht20", Bus: "emulated"},
		{Name: "co2", Driver: "scd4x", Bus: "emulated"},
		{Name: "hdc", Driver: "hdc302x", Bus: "emulated", Address: 0x46},
		{Name: "mcp", Driver: "mcp9808", Bus: "emulated"},
		{Name: "mcp-coarse", Driver: "mcp9808", Bus: "emulated", Address: 0x19, Options: map[string]string{"resolution": "0.25"}},
		{Name: "tmp", Driver: "tmp102", Bus: "emulated"},
		{Name: "sht3", Driver: "sht3x", Bus: "emulated", Address: 0x44},
		{Name: "sht4", Driver: "sht4x", Bus: "emulated", Address: 0x45},
		{Name: "water", Driver: "ds18b20", Bus: "emulated"},
		{Name: "set", Driver: "bme280", Bus: "emulated:second", Options: map[string]string{
			"pressure_resolution": "0.1", "temperature_resolution": "full", "humidity_resolution": "0.5"}},
		{Name: "mcp-set", Driver: "mcp9808", Bus: "emulated:second", Options: map[string]string{
			"resolution": "0.25", "temperature_resolution": "0.5"}},
	}
	want := map[string]map[string]float64{
		"bme":        {"temperature": 0.01, "humidity": 0.01, "pressure": 0.01},
		"bmp":        {"temperature": 0.01, "pressure": 0.01},
		"aht":        {"temperature": 0.01, "humidity": 0.01},
		"co2":        {"co2": 1, "temperature": 0.01, "humidity": 0.01},
		"hdc":        {"temperature": 0.01, "humidity": 0.01},
		"mcp":        {"temperature": 0.0625},
		"mcp-coarse": {"temperature": 0.25},
		"tmp":        {"temperature": 0.0625},
		"sht3":       {"temperature": 0.01, "humidity": 0.01},
		"sht4":       {"temperature": 0.01, "humidity": 0.01},
		"water":      {"temperature": 0.0625},
		"set":        {"temperature": 0, "humidity": 0.5, "pressure": 0.1},
		"mcp-set":    {"temperature": 0.5},
	}
	s, err := New(specs, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	covered := map[string]bool{}
	for i, r := range s.ReadOnce(context.Background()) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Sensor, r.Err)
		}
		covered[specs[i].Driver] = true
		w := want[r.Sensor]
		if len(r.Sample.Values) != len(w) {
			t.Fatalf("%s: %d values, want %d", r.Sensor, len(r.Sample.Values), len(w))
		}
		for _, v := range r.Sample.Values {
			if res, ok := w[v.Measurement]; !ok || v.Resolution != res {
				t.Errorf("%s %s: resolution %g, want %g", r.Sensor, v.Measurement, v.Resolution, res)
			}
		}
	}
	for _, d := range DriverNames() {
		if !covered[d] {
			t.Errorf("driver %s has no resolution case", d)
		}
	}
}

// A resolution option is checked like every other: a typo names the key.
func TestResolutionOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		driver, key, val, msg string
	}{
		{"bme280", "pressure_resolution", "fine", "is not a step"},
		{"bme280", "pressure_resolution", "-0.1", "outside"},
		{"bme280", "pressure_resolution", "5000", "outside"},
		{"bme280", "pressure_resolution", "NaN", "is not a step"},
		{"bmp280", "humidity_resolution", "0.1", "unknown option for bmp280"},
		{"tmp102", "co2_resolution", "1", "temperature_resolution"},
	} {
		_, err := New([]Spec{{Name: "x", Driver: tc.driver, Bus: "emulated", Options: map[string]string{tc.key: tc.val}}}, Options{Logger: quiet()})
		var se *SpecError
		if !errors.As(err, &se) || se.Key != "options."+tc.key || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("%s %s=%q: %v, want a SpecError on options.%s saying %q", tc.driver, tc.key, tc.val, err, tc.key, tc.msg)
		}
	}
	for _, v := range []string{"0", "full", "0.001", "1", "0.0625"} {
		if _, err := New([]Spec{{Name: "x", Driver: "bme280", Bus: "emulated", Options: map[string]string{"temperature_resolution": v}}}, Options{Logger: quiet()}); err != nil {
			t.Errorf("temperature_resolution = %q refused: %v", v, err)
		}
	}
}

// Shapes tells, without touching a chip, what each sensor will send: the
// selected measurements with their resolutions, and the interval.
func TestShapes(t *testing.T) {
	s, err := New([]Spec{
		{Name: "air", Driver: "bme280", Bus: "/dev/i2c-97", Interval: 30 * time.Second,
			Properties: map[string]string{"temperature": "t", "pressure": "p"}, Options: map[string]string{"pressure_resolution": "0.1"}},
		{Name: "dry", Driver: "bme280", Bus: "/dev/i2c-97", Address: 0x77, Options: map[string]string{"humidity_oversampling": "off"}},
	}, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	sh := s.Shapes()
	if len(sh) != 2 || sh[0].Sensor != "air" || sh[0].Interval != 30*time.Second || sh[1].Interval != DefaultInterval {
		t.Fatalf("shapes %+v", sh)
	}
	want := []reading.Value{{Measurement: "temperature", Property: "t", Unit: "°C", Resolution: 0.01},
		{Measurement: "pressure", Property: "p", Unit: "hPa", Resolution: 0.1}}
	if !reflect.DeepEqual(sh[0].Values, want) {
		t.Errorf("air: %+v, want %+v", sh[0].Values, want)
	}
	if len(sh[1].Values) != 2 || sh[1].Values[0].Property != "dry_temperature" || sh[1].Values[1].Measurement != "pressure" {
		t.Errorf("dry (humidity switched off): %+v", sh[1].Values)
	}
	if st := s.Stats(); st[0].Failed+st[1].Failed != 0 {
		t.Errorf("Shapes touched a chip: %+v", st)
	}
}
