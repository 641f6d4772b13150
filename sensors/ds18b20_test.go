package sensors

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/sensors/w1"
)

// writeW1 writes a w1_slave file in a sysfs-like fixture tree.
func writeW1(tb testing.TB, root, id string, text []byte) {
	tb.Helper()
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	// Write-and-rename, as sysfs never shows a half-written file.
	tmp := filepath.Join(dir, ".w1_slave.tmp")
	if err := os.WriteFile(tmp, text, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "w1_slave")); err != nil {
		tb.Fatal(err)
	}
}

func TestDS18B20FixtureTree(t *testing.T) {
	s, err := New([]Spec{
		{Name: "a", Driver: "ds18b20", Device: "28-0316a2791dff"},
		{Name: "b", Driver: "ds18b20", Device: "28-00000a1b2c3d"},
	}, Options{Logger: quiet(), W1Root: "w1/testdata/devices"})
	if err != nil {
		t.Fatal(err)
	}
	res := s.ReadOnce(context.Background())
	for i, want := range []float64{23.125, -10.125} {
		if res[i].Err != nil || len(res[i].Sample.Values) != 1 || res[i].Sample.Values[0].Value != want || res[i].Sample.Values[0].Unit != "°C" {
			t.Errorf("%s: %+v, want %g °C", res[i].Sensor, res[i], want)
		}
	}
	// Two sensors, one without an id: refused up front.
	_, err = New([]Spec{{Name: "a", Driver: "ds18b20"}, {Name: "b", Driver: "ds18b20", Device: "28-00000a1b2c3d"}}, Options{})
	var se *SpecError
	if !errors.As(err, &se) || se.Key != "device" {
		t.Fatalf("got %v", err)
	}
}

// Faults on a real file tree: CRC NO and the 85 °C power-on value are
// failures, a vanished sensor is a failure, an out-of-range value is
// rejected; a second sensor is unaffected; the sensor recovers.
func TestDS18B20Faults(t *testing.T) {
	root := t.TempDir()
	const id, other = "28-0000000000aa", "28-0000000000bb"
	writeW1(t, root, id, w1.Format(21.5, false))
	writeW1(t, root, other, w1.Format(4.25, false))
	s, err := New([]Spec{
		{Name: "pipe", Driver: "ds18b20", Device: id, Interval: 5 * time.Millisecond},
		{Name: "tank", Driver: "ds18b20", Device: other, Interval: 5 * time.Millisecond},
	}, Options{Logger: quiet(), W1Root: root, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, StuckAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := running(t, s)
	eventually(t, "first reading", func() bool { return stat(s, "pipe").Taken > 0 })
	for _, tc := range []struct {
		name     string
		break_   func()
		rejected bool
	}{
		{"crc NO", func() { writeW1(t, root, id, w1.Format(21.5, true)) }, false},
		{"power-on 85", func() { writeW1(t, root, id, w1.Format(85, false)) }, false},
		{"gone", func() { os.RemoveAll(filepath.Join(root, id)) }, false},
		{"out of range", func() { writeW1(t, root, id, w1.Format(127, false)) }, true},
	} {
		before := stat(s, "pipe")
		tc.break_()
		eventually(t, tc.name+" counted", func() bool {
			st := stat(s, "pipe")
			if tc.rejected {
				return st.Rejected >= before.Rejected+2
			}
			return st.Failed >= before.Failed+2
		})
		n := len(k.of("tank"))
		eventually(t, "tank unaffected", func() bool { return len(k.of("tank")) >= n+3 })
		writeW1(t, root, id, w1.Format(22, false))
		taken := stat(s, "pipe").Taken
		eventually(t, tc.name+" recovery", func() bool { return stat(s, "pipe").Taken >= taken+2 })
	}
	for _, r := range k.of("pipe") {
		if r.Value != 21.5 && r.Value != 22 {
			t.Fatalf("a bad value got through: %+v", r)
		}
	}
	if st := stat(s, "tank"); st.Failed+st.Rejected != 0 {
		t.Fatalf("tank: %+v", st)
	}
}

// bus = "emulated" gives DS18B20s an emulated sysfs tree.
func TestDS18B20Emulated(t *testing.T) {
	s, err := New([]Spec{{Name: "pipe", Driver: "ds18b20", Bus: "emulated", Emulate: map[string]float64{"temperature": -7.5}}}, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	res := s.ReadOnce(context.Background())[0]
	// With the one-step wiggle the first conversion reads -7.5 + 0.0625.
	if res.Err != nil || len(res.Sample.Values) != 1 || (res.Sample.Values[0].Value != -7.5 && res.Sample.Values[0].Value != -7.4375) {
		t.Fatalf("%+v", res)
	}
}
