package sensors

import (
	"testing"
	"time"

	"gatewayd/sensors/emul"
)

// Each injected fault on one chip: that sensor is counted as failing or
// rejected, the other sensor on the same bus keeps its pace, and once the
// fault clears the sensor comes back on its own (re-initialised).
func TestFaultsBME280(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(b *emul.Bus) error
		failed bool // counted in Failed (else Rejected)
		reinit bool
	}{
		{"nack", func(b *emul.Bus) error { return b.Inject(0x76, emul.NACK) }, true, true},
		{"timeout", func(b *emul.Bus) error { return b.Inject(0x76, emul.Timeout) }, true, true},
		{"out of range", func(b *emul.Bus) error { return b.Inject(0x76, emul.OutOfRange) }, false, false},
		{"reset", func(b *emul.Bus) error { return b.Reset(0x76) }, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			specs := []Spec{
				{Name: "air", Driver: "bme280", Bus: "emulated", Interval: 10 * time.Millisecond, Options: map[string]string{"oversampling": "1"}},
				{Name: "other", Driver: "bmp280", Bus: "emulated", Address: 0x77, Interval: 10 * time.Millisecond, Options: map[string]string{"oversampling": "1"}},
			}
			s, b := mustSet(t, specs, nil)
			k, _ := running(t, s)
			eventually(t, "first readings", func() bool { return stat(s, "air").Taken > 0 && stat(s, "other").Taken > 0 })
			if err := tc.inject(b); err != nil {
				t.Fatal(err)
			}
			bad := func() uint64 {
				st := stat(s, "air")
				if tc.failed {
					return st.Failed
				}
				return st.Rejected
			}
			want := uint64(3)
			if tc.name == "reset" {
				want = 1 // one read notices the lost configuration; the re-init cures it
			}
			eventually(t, "the fault counted", func() bool { return bad() >= want })
			takenDuring := stat(s, "air").Taken
			otherBefore := len(k.of("other"))
			eventually(t, "the other sensor unaffected", func() bool { return len(k.of("other")) >= otherBefore+10 })
			if tc.name != "reset" {
				if got := stat(s, "air").Taken; got != takenDuring {
					t.Fatalf("faulty sensor delivered %d samples during the fault", got-takenDuring)
				}
				b.Inject(0x76, 0)
			}
			n := stat(s, "air").Taken
			eventually(t, "recovery", func() bool { return stat(s, "air").Taken >= n+3 })
			st := stat(s, "air")
			if tc.reinit && st.Reinits == 0 {
				t.Errorf("recovered without a re-init: %+v", st)
			}
			if st.LastErr == "" {
				t.Errorf("no LastErr recorded: %+v", st)
			}
			if o := stat(s, "other"); o.Failed != 0 || o.Rejected != 0 {
				t.Errorf("other sensor affected: %+v", o)
			}
		})
	}
}
