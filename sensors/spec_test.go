package sensors

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestSpecValidation(t *testing.T) {
	ok := Spec{Name: "air", Driver: "bme280", Bus: "/dev/i2c-1"}
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
		key  string
	}{
		{"empty name", func(s *Spec) { s.Name = " " }, "name"},
		{"unknown driver", func(s *Spec) { s.Driver = "bme680" }, "driver"},
		{"no bus", func(s *Spec) { s.Bus = "" }, "bus"},
		{"bad address", func(s *Spec) { s.Address = 0x40 }, "address"},
		{"negative interval", func(s *Spec) { s.Interval = -1 }, "interval"},
		{"unknown measurement", func(s *Spec) { s.Properties = map[string]string{"co2": "x"} }, "properties.co2"},
		{"empty property", func(s *Spec) { s.Properties = map[string]string{"humidity": ""} }, "properties.humidity"},
		{"unknown option", func(s *Spec) { s.Options = map[string]string{"heater": "on"} }, "options.heater"},
		{"bad oversampling", func(s *Spec) { s.Options = map[string]string{"oversampling": "3"} }, "options.oversampling"},
		{"filter in forced mode", func(s *Spec) { s.Options = map[string]string{"filter": "4", "mode": "forced"} }, "options.filter"},
		{"standby in forced mode", func(s *Spec) { s.Options = map[string]string{"standby": "1s", "mode": "forced"} }, "options.standby"},
		{"bad mode", func(s *Spec) { s.Options = map[string]string{"mode": "continuous"} }, "options.mode"},
		{"bad standby", func(s *Spec) { s.Options = map[string]string{"standby": "10"} }, "options.standby"},
		{"sent but off", func(s *Spec) {
			s.Options = map[string]string{"humidity_oversampling": "off"}
			s.Properties = map[string]string{"humidity": "h"}
		}, "properties.humidity"},
		{"emulate unknown", func(s *Spec) { s.Emulate = map[string]float64{"co2": 400} }, "emulate.co2"},
		{"mux address", func(s *Spec) { s.Mux = &Mux{Address: 0x20} }, "mux.address"},
		{"mux channel", func(s *Spec) { s.Mux = &Mux{Channel: 8} }, "mux.channel"},
		{"device on i2c", func(s *Spec) { s.Device = "28-000000000001" }, "device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := ok
			tc.mod(&sp)
			_, err := New([]Spec{sp}, Options{})
			var se *SpecError
			if !errors.As(err, &se) || se.Key != tc.key || se.Index != 0 {
				t.Fatalf("got %v, want a SpecError on %q", err, tc.key)
			}
		})
	}
	if _, err := New([]Spec{ok}, Options{}); err != nil {
		t.Fatalf("valid spec refused: %v", err)
	}
	_, err := New([]Spec{ok, ok}, Options{})
	var se *SpecError
	if !errors.As(err, &se) || se.Key != "name" || se.Index != 1 {
		t.Fatalf("duplicate name: %v", err)
	}
	other := ok
	other.Name = "two"
	other.Bus = "1" // the same bus as /dev/i2c-1
	_, err = New([]Spec{ok, other}, Options{})
	if !errors.As(err, &se) || se.Key != "address" {
		t.Fatalf("two sensors on one address: %v", err)
	}
}

func TestMeasurements(t *testing.T) {
	m, err := Measurements("bme280")
	if err != nil || len(m) != 3 || m[0] != "temperature" || m[1] != "humidity" || m[2] != "pressure" {
		t.Fatalf("bme280: %v %v", m, err)
	}
	if _, err := Measurements("nope"); err == nil {
		t.Fatal("unknown driver accepted")
	}
}

// With no OpenBus, "emulated" builds the emulated bus from the specs and a
// device path goes to periph's host drivers; a bus that does not exist is
// a sensor error, not a crash, and the other sensors still read.
func TestDefaultBusOpening(t *testing.T) {
	s, err := New([]Spec{
		{Name: "air", Driver: "bme280", Bus: "emulated", Emulate: map[string]float64{"pressure": 950}},
		{Name: "box", Driver: "sht4x", Bus: "emulated:second"},
		{Name: "real", Driver: "tmp102", Bus: "/dev/i2c-97"},
	}, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	res := s.ReadOnce(context.Background())
	if res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("emulated sensors failed: %v / %v", res[0].Err, res[1].Err)
	}
	for _, r := range res[0].Sample.Values {
		if r.Measurement == "pressure" && (r.Value < 949.99 || r.Value > 950.06) {
			t.Errorf("pressure %v, emulated 950", r.Value)
		}
	}
	if res[2].Err == nil || !strings.Contains(res[2].Err.Error(), "open bus /dev/i2c-97") {
		t.Fatalf("missing bus: %v", res[2].Err)
	}
}
