package sensors

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"

	"gatewayd/internal/reading"
	"gatewayd/sensors/emul"
)

// The real bmxx80 driver, through a Set, against the emulated chip across
// the operating range, in forced and in normal mode.
func TestBME280Range(t *testing.T) {
	for _, opts := range []map[string]string{
		{"oversampling": "1", "mode": "forced"},
		{"oversampling": "16", "filter": "4", "standby": "10ms"},
		{}, // normal mode, filter off, standby from the interval
	} {
		specs := []Spec{{Name: "air", Driver: "bme280", Bus: "emulated", Interval: time.Second, Options: opts}}
		s, b := mustSet(t, specs, nil)
		chip := b.Chip(0x76)
		chip.(emul.Jitterer).SetJitter(false)
		for _, tc := range []struct{ t, h, p float64 }{
			{-40, 0, 300}, {-5.25, 12.5, 650}, {0, 50, 1013.25}, {23.45, 61.8, 998.7}, {85, 100, 1100},
		} {
			chip.Set("temperature", tc.t)
			chip.Set("humidity", tc.h)
			chip.Set("pressure", tc.p)
			res := s.ReadOnce(context.Background())
			if len(res) != 1 || res[0].Err != nil {
				t.Fatalf("ReadOnce: %+v", res)
			}
			got := map[string]reading.Value{}
			for _, r := range res[0].Sample.Values {
				got[r.Measurement] = r
			}
			for _, w := range []struct {
				m, unit string
				v, tol  float64
			}{{"temperature", "°C", tc.t, 0.0101}, {"humidity", "%RH", tc.h, 0.01}, {"pressure", "hPa", tc.p, 0.002}} {
				r := got[w.m]
				if r.Unit != w.unit || r.Property != "air_"+w.m || math.Abs(r.Value-w.v) > w.tol {
					t.Errorf("%v: %s = %+v, want %.4f %s ±%g as air_%s", opts, w.m, r, w.v, w.unit, w.tol, w.m)
				}
			}
		}
	}
}

// A BMP280 answers where a BME280 is configured: the humidity would silently
// be missing, so the sensor fails with a message saying what to do.
func TestBME280ConfiguredButBMP280Fitted(t *testing.T) {
	b := emul.NewBus("emulated")
	b.Add(0x76, emul.NewBMP280())
	s, err := New([]Spec{{Name: "air", Driver: "bme280", Bus: "emulated"}}, fastOpts(b))
	if err != nil {
		t.Fatal(err)
	}
	res := s.ReadOnce(context.Background())
	if res[0].Err == nil || !contains(res[0].Err.Error(), "use driver bmp280") {
		t.Fatalf("got %v, want an error naming driver bmp280", res[0].Err)
	}
}

// Run: two chips on one emulated bus, properties mapped for one, readings
// stamped by Options.Stamp at the moment of reading.
func TestRunTwoChipsOneBus(t *testing.T) {
	specs := []Spec{
		{Name: "air", Driver: "bme280", Bus: "emulated", Interval: 20 * time.Millisecond,
			Options:    map[string]string{"oversampling": "1"},
			Properties: map[string]string{"temperature": "temp", "pressure": "press"},
			Emulate:    map[string]float64{"temperature": 19.5, "pressure": 990}},
		{Name: "box", Driver: "bmp280", Bus: "emulated", Address: 0x77, Interval: 30 * time.Millisecond,
			Options: map[string]string{"oversampling": "1"}, Emulate: map[string]float64{"temperature": 30}},
	}
	var n atomic.Int64 // Stamp is called from every sensor's loop
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s, _ := mustSet(t, specs, func(o *Options) {
		o.Stamp = func() reading.Stamp {
			i := n.Add(1)
			return reading.Stamp{Time: base.Add(time.Duration(i) * time.Second), Mono: time.Duration(i), BootID: "b", Synced: true}
		}
	})
	k, stop := running(t, s)
	eventually(t, "readings from both", func() bool { return len(k.of("air")) >= 6 && len(k.of("box")) >= 6 })
	stop()
	for _, r := range k.of("air") {
		if r.Measurement == "humidity" {
			t.Fatalf("humidity sent although properties list only temperature and pressure: %+v", r)
		}
		want := map[string]string{"temperature": "temp", "pressure": "press"}[r.Measurement]
		if r.Property != want || r.BootID != "b" || !r.Time.After(base) || r.Mono == 0 {
			t.Fatalf("bad reading %+v", r)
		}
	}
	// One read is one sample: one stamp, one ID, its measurements in the
	// driver's order, each at the chip's resolution.
	for _, smp := range k.samples("air") {
		if len(smp.Values) != 2 || smp.Values[0].Measurement != "temperature" || smp.Values[1].Measurement != "pressure" {
			t.Fatalf("sample %+v: want temperature and pressure", smp)
		}
		if smp.Values[0].Resolution != 0.01 || smp.Values[1].Resolution != 0.01 {
			t.Fatalf("resolutions %+v: want the BME280's 0.01 °C and 0.01 hPa", smp.Values)
		}
	}
	if air := k.samples("air"); air[0].Time == air[1].Time || air[0].ID == air[1].ID {
		t.Errorf("two samples, one stamp or ID: %+v %+v", air[0], air[1])
	}
	for _, r := range k.of("box") {
		if r.Property != "box_"+r.Measurement {
			t.Fatalf("default property name: %+v", r)
		}
		if r.Measurement == "temperature" && math.Abs(r.Value-30) > 0.06 {
			t.Fatalf("box temperature %v, emulated 30 (+ one 0.05 step of jitter)", r.Value)
		}
	}
	st := stat(s, "air")
	if st.Taken < 3 || st.Failed != 0 || st.LastOK.IsZero() {
		t.Errorf("stats %+v", st)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// txLog records the writes of every transaction on a bus.
type txLog struct {
	i2c.Bus
	mu     sync.Mutex
	writes [][]byte
}

func (l *txLog) Tx(addr uint16, w, r []byte) error {
	l.mu.Lock()
	l.writes = append(l.writes, append([]byte(nil), w...))
	l.mu.Unlock()
	return l.Bus.Tx(addr, w, r)
}

// forcedTriggers counts the writes that start a forced conversion.
func (l *txLog) forcedTriggers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, w := range l.writes {
		for i := 0; i+1 < len(w); i += 2 {
			if w[i] == 0xF4 && w[i+1]&3 == 1 {
				n++
			}
		}
	}
	l.writes = nil
	return n
}

// TestBmxNormalModeByDefault: without options a BME280/BMP280 runs in
// normal mode with the IIR filter off and the longest standby that still
// gives every reading a conversion of its own, so a reading is a register
// read with no conversion to wait for; mode = "forced" converts once per
// reading; a new interval programs a new standby without counting as a
// re-initialisation.
func TestBmxNormalModeByDefault(t *testing.T) {
	specs := []Spec{
		{Name: "slow", Driver: "bme280", Bus: "emulated", Interval: 10 * time.Second},
		{Name: "fast", Driver: "bmp280", Bus: "emulated", Address: 0x77, Interval: 300 * time.Millisecond},
	}
	b, err := EmulatedBus(specs)
	if err != nil {
		t.Fatal(err)
	}
	log := &txLog{Bus: b}
	o := fastOpts(log)
	s, err := New(specs, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	read := func() {
		t.Helper()
		for _, r := range s.ReadOnce(context.Background()) {
			if r.Err != nil || len(r.Sample.Values) == 0 {
				t.Fatalf("%s: %v", r.Sensor, r.Err)
			}
		}
	}
	read()
	slow, fast := b.Chip(0x76).(*emul.BME280), b.Chip(0x77).(*emul.BME280)
	// ctrl_meas: oversampling 4x (011) for t and p, normal mode (11).
	// config: standby 1 s (101) at 10 s, 250 ms (011) at 300 ms (a 4x/4x
	// conversion takes up to 20 ms), filter off (000): datasheet tables
	// 25-28.
	if m, c := slow.Reg(0xF4), slow.Reg(0xF5); m != 0x6F || c != 0xA0 {
		t.Errorf("bme280 at 10 s: ctrl_meas %#02x config %#02x, want 0x6f 0xa0", m, c)
	}
	if m, c := fast.Reg(0xF4), fast.Reg(0xF5); m != 0x6F || c != 0x60 {
		t.Errorf("bmp280 at 300 ms: ctrl_meas %#02x config %#02x, want 0x6f 0x60", m, c)
	}
	log.forcedTriggers()
	for i := 0; i < 3; i++ {
		read()
	}
	if n := log.forcedTriggers(); n != 0 {
		t.Errorf("%d forced conversions started in normal mode", n)
	}
	if err := s.SetInterval("fast", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	read()
	// 3 s less the conversion: the BMP280's 2 s standby (110).
	if c := fast.Reg(0xF5); c != 0xC0 {
		t.Errorf("bmp280 at 3 s: config %#02x, want 0xc0", c)
	}
	for _, st := range s.Stats() {
		if st.Reinits != 0 {
			t.Errorf("%s: %d re-initialisations; a new interval is not a failure", st.Name, st.Reinits)
		}
	}

	forced := []Spec{{Name: "f", Driver: "bme280", Bus: "emulated", Interval: 10 * time.Second, Options: map[string]string{"mode": "forced"}}}
	fb, err := EmulatedBus(forced)
	if err != nil {
		t.Fatal(err)
	}
	flog := &txLog{Bus: fb}
	fs, err := New(forced, fastOpts(flog))
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close(context.Background())
	for i := 0; i < 3; i++ {
		if r := fs.ReadOnce(context.Background()); r[0].Err != nil {
			t.Fatal(r[0].Err)
		}
	}
	if n := flog.forcedTriggers(); n != 3 {
		t.Errorf("forced mode: %d conversions started for 3 readings", n)
	}
	if m := fb.Chip(0x76).(*emul.BME280).Reg(0xF4); m&3 != 0 {
		t.Errorf("forced mode: ctrl_meas %#02x, want the chip asleep between readings", m)
	}
}
