package sensors

import (
	"fmt"
	"testing"
	"time"

	"gatewayd/sensors/emul"
)

// faultCase is one I²C driver in the fault matrix, with options that keep
// it fast and make a reset observable (a non-default setting to lose).
type faultCase struct {
	driver string
	addr   uint16
	opts   map[string]string
	crc    bool // the chip protects its data with CRCs
	// resetSeen: a power-on reset is detected (counted as a failure and
	// cured by a re-init); false where the chip holds no setting to lose.
	resetSeen bool
}

var faultCases = []faultCase{
	{"bme280", 0x76, map[string]string{"oversampling": "1"}, false, true},
	{"bmp280", 0x77, map[string]string{"oversampling": "1", "filter": "2", "standby": "1ms"}, false, true},
	{"aht20", 0x38, nil, true, true},
	{"scd4x", 0x62, nil, true, true},
	{"hdc302x", 0x45, map[string]string{"rate": "10"}, true, true},
	{"mcp9808", 0x18, map[string]string{"resolution": "0.25"}, false, true},
	{"tmp102", 0x48, map[string]string{"rate": "1"}, false, true},
	{"sht3x", 0x44, map[string]string{"repeatability": "low"}, true, true},
	{"sht4x", 0x46, map[string]string{"precision": "low"}, true, false},
}

// Every fault on every driver: the faulty sensor is skipped and counted,
// its neighbour on the same bus keeps going, and it comes back by itself
// once the fault clears.
func TestFaultMatrix(t *testing.T) {
	faults := []struct {
		name     string
		fault    emul.Fault
		rejected bool // counted as Rejected (values read but withheld), else Failed
	}{
		{"nack", emul.NACK, false},
		{"timeout", emul.Timeout, false},
		{"corrupt-crc", emul.CorruptCRC, false},
		{"out-of-range", emul.OutOfRange, true},
		{"stuck", emul.Stuck, true},
		{"reset", 0, false},
	}
	for _, dc := range faultCases {
		t.Run(dc.driver, func(t *testing.T) {
			t.Parallel()
			specs := []Spec{
				{Name: "dut", Driver: dc.driver, Bus: "emulated", Address: dc.addr, Options: dc.opts, Interval: 10 * time.Millisecond},
				{Name: "witness", Driver: "tmp102", Bus: "emulated", Address: 0x4B, Interval: 10 * time.Millisecond},
			}
			s, b := mustSet(t, specs, func(o *Options) { o.StuckAfter = 150 * time.Millisecond })
			k, _ := running(t, s)
			eventually(t, "first readings", func() bool { return stat(s, "dut").Taken > 0 && stat(s, "witness").Taken > 0 })
			for _, f := range faults {
				if f.fault == emul.CorruptCRC && !dc.crc {
					continue
				}
				if f.name == "reset" && !dc.resetSeen {
					// Still: a reset must not stop the readings.
					n := stat(s, "dut").Taken
					b.Reset(dc.addr)
					eventually(t, "readings after a harmless reset", func() bool { return stat(s, "dut").Taken >= n+3 })
					continue
				}
				before := stat(s, "dut")
				if f.name == "reset" {
					b.Reset(dc.addr)
				} else {
					b.Inject(dc.addr, f.fault)
				}
				what := fmt.Sprintf("%s counted", f.name)
				eventually(t, what, func() bool {
					st := stat(s, "dut")
					switch {
					case f.name == "reset":
						return st.Failed > before.Failed
					case f.rejected:
						return st.Rejected >= before.Rejected+2
					}
					return st.Failed >= before.Failed+2
				})
				if f.name == "stuck" && !stat(s, "dut").Stuck {
					t.Errorf("stuck values not flagged: %+v", stat(s, "dut"))
				}
				during := stat(s, "dut").Taken
				w := len(k.of("witness"))
				eventually(t, "witness unaffected during "+f.name, func() bool { return len(k.of("witness")) >= w+5 })
				if f.name != "reset" {
					if got := stat(s, "dut").Taken; got != during {
						t.Errorf("%s: %d samples delivered during the fault", f.name, got-during)
					}
					b.Inject(dc.addr, 0)
				}
				n := stat(s, "dut").Taken
				eventually(t, "recovery from "+f.name, func() bool { return stat(s, "dut").Taken >= n+3 })
				st := stat(s, "dut")
				if !f.rejected && st.Reinits <= before.Reinits {
					t.Errorf("%s: recovered without re-initialising: %+v", f.name, st)
				}
				if st.Stuck {
					t.Errorf("%s: still flagged stuck after recovery", f.name)
				}
			}
			if st := stat(s, "witness"); st.Failed+st.Rejected != 0 || st.Stuck {
				t.Errorf("witness affected: %+v", st)
			}
			// What was delivered is plausible (nothing of the faults leaked).
			for _, r := range k.of("dut") {
				m := drivers[dc.driver].meas[drivers[dc.driver].index(r.Measurement)]
				if r.Value < m.min || r.Value > m.max {
					t.Fatalf("implausible value delivered: %+v", r)
				}
			}
		})
	}
}
