package sht_test

import (
	"errors"
	"math"
	"testing"

	"periph.io/x/conn/v3/physic"

	"gatewayd/sensors/emul"
	"gatewayd/sensors/sht"
)

func open(t *testing.T, c *emul.SHT, o sht.Opts) (*sht.Dev, *emul.Bus) {
	t.Helper()
	b := emul.NewBus("test")
	if err := b.Add(0x44, c); err != nil {
		t.Fatal(err)
	}
	d, err := sht.NewI2C(b, 0x44, &o)
	if err != nil {
		t.Fatal(err)
	}
	return d, b
}

func TestSenseBothModels(t *testing.T) {
	for _, tc := range []struct {
		chip *emul.SHT
		opts sht.Opts
	}{
		{emul.NewSHT3x(), sht.Opts{Model: sht.SHT3x, Repeatability: sht.Low}},
		{emul.NewSHT4x(), sht.Opts{Model: sht.SHT4x, Repeatability: sht.Low}},
	} {
		d, _ := open(t, tc.chip, tc.opts)
		tc.chip.Set("temperature", -12.5)
		tc.chip.Set("humidity", 33.3)
		var e physic.Env
		if err := d.Sense(&e); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		tC := float64(e.Temperature-physic.ZeroCelsius) / float64(physic.Celsius)
		h := float64(e.Humidity) / float64(physic.PercentRH)
		if math.Abs(tC+12.5) > 0.003 || math.Abs(h-33.3) > 0.002 {
			t.Errorf("%s: %.4f °C %.4f %%RH, want -12.5 °C 33.3 %%RH", d, tC, h)
		}
		if _, err := d.SerialNumber(); err != nil {
			t.Errorf("%s serial: %v", d, err)
		}
	}
}

// A corrupted CRC is an error, never a value; an SHT3x reset is reported.
func TestSenseFaults(t *testing.T) {
	d, b := open(t, emul.NewSHT3x(), sht.DefaultOpts)
	var e physic.Env
	b.Inject(0x44, emul.CorruptCRC)
	if err := d.Sense(&e); !errors.Is(err, sht.ErrCRC) {
		t.Fatalf("corrupt CRC: %v", err)
	}
	b.Inject(0x44, 0)
	if err := d.Sense(&e); err != nil {
		t.Fatal(err)
	}
	b.Reset(0x44)
	if err := d.Sense(&e); !errors.Is(err, sht.ErrReset) {
		t.Fatalf("after a reset: %v", err)
	}
	b.Inject(0x44, emul.NACK)
	if err := d.Sense(&e); !errors.Is(err, emul.ErrNACK) {
		t.Fatalf("absent chip: %v", err)
	}
}

// NewI2C sets the heater explicitly, whatever state the chip was left in.
func TestHeater(t *testing.T) {
	c := emul.NewSHT3x()
	c.Tx(0, []byte{0x30, 0x6D}, nil) // left on by someone else
	open(t, c, sht.Opts{})
	if c.Status()&sht.StatusHeater != 0 {
		t.Fatal("heater left on")
	}
	c2 := emul.NewSHT3x()
	d, _ := open(t, c2, sht.Opts{Heater: true})
	if c2.Status()&sht.StatusHeater == 0 {
		t.Fatal("heater not switched on")
	}
	d.Halt()
	if c2.Status()&sht.StatusHeater != 0 {
		t.Fatal("Halt left the heater on")
	}
}
