package sensors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	"gatewayd/internal/reading"
	"gatewayd/sensors/emul"
)

var update = flag.Bool("update", false, "rewrite golden files")

// eeprom stands for a device Scan does not know: it acknowledges reads.
type eeprom struct{}

func (eeprom) Tx(_ emul.Fault, _, r []byte) error {
	for i := range r {
		r[i] = 0xFF
	}
	return nil
}
func (eeprom) Set(string, float64) error { return errors.New("no") }
func (eeprom) PowerOnReset()             {}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// Scan names every supported chip by its ID registers, including the
// look-alikes sharing addresses, and finds chips behind a TCA9548A.
func TestScan(t *testing.T) {
	b := emul.NewBus("emulated")
	for a, c := range map[uint16]emul.Chip{
		0x76: emul.NewBME280(), 0x38: emul.NewAHT20(), 0x44: emul.NewSHT3x(), 0x45: emul.NewSHT4x(),
		0x47: emul.NewHDC302x(), 0x62: emul.NewSCD4x(), 0x18: emul.NewMCP9808(), 0x48: emul.NewTMP102(),
		0x50: eeprom{},
	} {
		if err := b.Add(a, c); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := b.AddMux(0x70)
	m.Add(1, 0x77, emul.NewBMP280())
	m.Add(5, 0x49, emul.NewTMP102())
	fs, err := Scan(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := FormatFound(&out, fs); err != nil {
		t.Fatal(err)
	}
	golden(t, "scan.golden", out.Bytes())
	if got := b.Addresses(); len(got) != 10 {
		t.Errorf("multiplexer channels left enabled: %x answer", got)
	}
	// The scan is usable for a configuration: every driver named opens.
	var specs []Spec
	for i, f := range fs {
		if f.Driver == "" {
			continue
		}
		sp := Spec{Name: f.Chip + string(rune('a'+i)), Driver: f.Driver, Bus: "emulated", Address: f.Address, Mux: f.Mux,
			Options: map[string]string{}}
		if f.Driver == "hdc302x" {
			sp.Options["rate"] = "10"
		}
		specs = append(specs, sp)
	}
	s, err := New(specs, fastOpts(b))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	for _, r := range s.ReadOnce(context.Background()) {
		if r.Err != nil {
			t.Errorf("%s: %v", r.Sensor, r.Err)
		}
	}
}

func TestScanEmpty(t *testing.T) {
	fs, err := Scan(context.Background(), emul.NewBus("empty"))
	if err != nil || len(fs) != 0 {
		t.Fatalf("%v %v", fs, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Scan(ctx, emul.NewBus("empty")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled scan: %v", err)
	}
}

func TestFormatResults(t *testing.T) {
	rd := func(m, p string, v float64, u string) reading.Reading {
		r := reading.Reading{Sensor: "air", Measurement: m, Property: p, Value: v, Unit: u}
		r.SetStamp(reading.Stamp{Time: mustTime("2026-03-01T12:00:00Z"), Synced: true})
		return r
	}
	rs := []Result{
		{Sensor: "air", Readings: []reading.Reading{rd("temperature", "temperature", 21.456, "°C"), rd("co2", "co2", 612.4, "ppm")}},
		{Sensor: "pipe", Err: errors.New("init: tx 0x44: emul: no acknowledge from device")},
	}
	var text, js bytes.Buffer
	if err := FormatResults(&text, rs, false); err != nil {
		t.Fatal(err)
	}
	golden(t, "read.golden", text.Bytes())
	if err := FormatResults(&js, rs, true); err != nil {
		t.Fatal(err)
	}
	golden(t, "read.json.golden", js.Bytes())
	var back []map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back) != 2 || back[1]["ok"] != false {
		t.Fatalf("json: %v %v", back, err)
	}
	if !strings.Contains(text.String(), "21.46") {
		t.Errorf("text output lacks the value: %s", text.String())
	}
}
