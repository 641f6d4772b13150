package emul

import (
	"strings"
	"testing"

	"gatewayd/sensors/w1"
)

// Datasheet table 1 (temperature/data relationship) and a real part's
// w1_slave text: the emulator's own rendering must match them.
func TestDS18B20Scratchpad(t *testing.T) {
	for _, c := range []struct {
		celsius  float64
		lsb, msb byte
	}{
		{125, 0xD0, 0x07}, {85, 0x50, 0x05}, {25.0625, 0x91, 0x01}, {10.125, 0xA2, 0x00},
		{0.5, 0x08, 0x00}, {0, 0x00, 0x00}, {-0.5, 0xF8, 0xFF}, {-10.125, 0x5E, 0xFF},
		{-25.0625, 0x6F, 0xFE}, {-55, 0x90, 0xFC},
	} {
		p := scratchpad(c.celsius)
		if p[0] != c.lsb || p[1] != c.msb {
			t.Errorf("%v °C: %02x %02x, want %02x %02x", c.celsius, p[0], p[1], c.lsb, c.msb)
		}
	}
	// A real DS18B20 at 23.125 °C (raw 0x0172) as w1_therm prints it.
	real := []byte{0x72, 0x01, 0x4b, 0x46, 0x7f, 0xff, 0x0e, 0x10}
	if got := dallasCRC8(real); got != 0x57 {
		t.Errorf("CRC of a real scratchpad = %02x, want 57", got)
	}
	// Maxim AN27's example ROM: family 0x02, serial 1C B8 01 00 00 00, CRC A2.
	if got := dallasCRC8([]byte{0x02, 0x1C, 0xB8, 0x01, 0x00, 0x00, 0x00}); got != 0xA2 {
		t.Errorf("AN27 example CRC = %02x, want A2", got)
	}
}

// The product's parser reads what the emulator renders (and refuses the
// garbled CRC), so the two agree without sharing code.
func TestW1SlaveTextParses(t *testing.T) {
	// (85 °C is the power-on value the parser refuses by design.)
	for _, c := range []float64{21.5, -10.125, 0, -0.0625, 125, -55} {
		txt := w1SlaveText(scratchpad(c), false)
		if !strings.Contains(string(txt), " YES\n") {
			t.Errorf("%v: %q", c, txt)
		}
		got, err := w1.Parse(txt)
		// w1_therm's integer m°C truncates toward zero (-0.0625 -> -62).
		if want := int(c*16) * 1000 / 16; err != nil || got != want {
			t.Errorf("%v: parsed %v, %v from %q", c, got, err, txt)
		}
		bad := w1SlaveText(scratchpad(c), true)
		if !strings.Contains(string(bad), " NO\n") {
			t.Errorf("%v bad CRC: %q", c, bad)
		}
		if _, err := w1.Parse(bad); err == nil {
			t.Errorf("%v: the parser accepted a NO verdict", c)
		}
	}
}
