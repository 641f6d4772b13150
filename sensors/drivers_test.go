package sensors

import (
	"context"
	"math"
	"testing"
	"time"

	"gatewayd/sensors/emul"
)

// driverCase is one driver, the options that keep its test fast, and the
// decoding precision to hold it to (one converter count, from the
// datasheet's transfer function).
type driverCase struct {
	driver string
	addr   uint16
	opts   map[string]string
	tol    map[string]float64
	points []map[string]float64
}

var sensirionTol = map[string]float64{"temperature": 175.0 / 65535, "humidity": 100.0 / 65535, "co2": 0.5}

var driverCases = []driverCase{
	{driver: "bme280", opts: map[string]string{"oversampling": "1"},
		// Humidity: one ADC count is about 0.008 %RH with this calibration.
		tol: map[string]float64{"temperature": 0.0101, "humidity": 0.01, "pressure": 0.002},
		points: []map[string]float64{
			{"temperature": -40, "humidity": 0, "pressure": 300},
			{"temperature": 21.37, "humidity": 55.5, "pressure": 1013.25},
			{"temperature": 85, "humidity": 100, "pressure": 1100},
		}},
	{driver: "bmp280", addr: 0x77, opts: map[string]string{"oversampling": "1"},
		tol: map[string]float64{"temperature": 0.0101, "pressure": 0.002},
		points: []map[string]float64{
			{"temperature": -39.99, "pressure": 301},
			{"temperature": 60.5, "pressure": 1099},
		}},
	{driver: "aht20", tol: map[string]float64{"temperature": 200.0 / (1 << 20), "humidity": 100.0 / (1 << 20)},
		points: []map[string]float64{
			{"temperature": -40, "humidity": 0},
			{"temperature": 24.8, "humidity": 63.3},
			{"temperature": 85, "humidity": 100},
		}},
	{driver: "scd4x", tol: sensirionTol,
		points: []map[string]float64{
			{"co2": 0, "temperature": -10, "humidity": 0},
			{"co2": 415, "temperature": 22.2, "humidity": 48.7},
			{"co2": 40000, "temperature": 60, "humidity": 100},
		}},
	{driver: "hdc302x", addr: 0x45, opts: map[string]string{"rate": "10"}, tol: sensirionTol,
		points: []map[string]float64{
			{"temperature": -40, "humidity": 0},
			{"temperature": 18.25, "humidity": 71.1},
			{"temperature": 125, "humidity": 100},
		}},
	{driver: "mcp9808", opts: map[string]string{"resolution": "0.0625"}, tol: map[string]float64{"temperature": 0.0625 / 2},
		points: []map[string]float64{{"temperature": -40}, {"temperature": -0.3}, {"temperature": 23.5}, {"temperature": 124.9}}},
	{driver: "mcp9808", addr: 0x1F, opts: map[string]string{"resolution": "0.5"}, tol: map[string]float64{"temperature": 0.25},
		points: []map[string]float64{{"temperature": -12.6}, {"temperature": 99.9}}},
	{driver: "tmp102", tol: map[string]float64{"temperature": 0.0625 / 2},
		points: []map[string]float64{{"temperature": -40}, {"temperature": -0.0625}, {"temperature": 36.6}, {"temperature": 125}}},
	{driver: "sht3x", opts: map[string]string{"repeatability": "low"}, tol: sensirionTol,
		points: []map[string]float64{
			{"temperature": -40, "humidity": 0},
			{"temperature": 21.9, "humidity": 42.42},
			{"temperature": 125, "humidity": 100},
		}},
	{driver: "sht4x", addr: 0x46, tol: map[string]float64{"temperature": 175.0 / 65535, "humidity": 125.0 / 65535},
		points: []map[string]float64{
			{"temperature": -40, "humidity": 0},
			{"temperature": 30.3, "humidity": 88.8},
			{"temperature": 125, "humidity": 100},
		}},
}

// Every driver, through a Set and its real periph (or sht) driver, decodes
// what its emulated chip was set to, across the chip's range.
func TestDriversAgainstEmulators(t *testing.T) {
	for _, tc := range driverCases {
		t.Run(tc.driver, func(t *testing.T) {
			t.Parallel()
			sp := Spec{Name: "s", Driver: tc.driver, Bus: "emulated", Address: tc.addr, Options: tc.opts, Interval: time.Second}
			s, b := mustSet(t, []Spec{sp}, nil)
			addr := tc.addr
			if addr == 0 {
				addr = drivers[tc.driver].addrs[0]
			}
			chip := b.Chip(addr)
			chip.(emul.Jitterer).SetJitter(false)
			for _, p := range tc.points {
				for m, v := range p {
					if err := chip.Set(m, v); err != nil {
						t.Fatal(err)
					}
				}
				res := s.ReadOnce(context.Background())[0]
				if res.Err != nil {
					t.Fatalf("%v: %v", p, res.Err)
				}
				if len(res.Sample.Values) != len(p) {
					t.Fatalf("%v: got %d values, want %d", p, len(res.Sample.Values), len(p))
				}
				// tol is one converter count; 1e-5 covers periph's fixed-point
				// quantum (0.1 µ%RH) on top.
				for _, r := range res.Sample.Values {
					want, tol := p[r.Measurement], tc.tol[r.Measurement]
					if math.Abs(r.Value-want) > tol+1e-5 {
						t.Errorf("%s set to %g, read %g %s (precision %g)", r.Measurement, want, r.Value, r.Unit, tol)
					}
				}
			}
			if st := stat(s, "s"); st.Failed != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// Every driver has a conversion time, so no platform-set interval can
// outrun a chip; the SCD4x's depends on its mode.
func TestConversionTimes(t *testing.T) {
	for name := range drivers {
		if conversion[name] == nil {
			t.Errorf("driver %s has no conversion time", name)
		}
	}
	s, err := New([]Spec{
		{Name: "co2", Driver: "scd4x", Bus: "emulated", Emulate: map[string]float64{}},
		{Name: "slow", Driver: "scd4x", Bus: "emulated:2", Options: map[string]string{"mode": "low-power"}, Emulate: map[string]float64{}},
		{Name: "air", Driver: "bme280", Bus: "emulated", Emulate: map[string]float64{}},
		{Name: "fine", Driver: "bmp280", Bus: "emulated", Address: 0x77, Options: map[string]string{"oversampling": "16"}, Emulate: map[string]float64{}},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	for name, want := range map[string]time.Duration{"co2": 5 * time.Second, "slow": 30 * time.Second, "air": 30 * time.Millisecond, "fine": 75425 * time.Microsecond} {
		if got, ok := s.MinInterval(name); !ok || got != want {
			t.Errorf("MinInterval(%s) = %v, %v; want %v", name, got, ok, want)
		}
	}
	if _, ok := s.MinInterval("nope"); ok {
		t.Error("MinInterval of an unknown sensor")
	}
}
