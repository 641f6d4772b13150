package emul

import (
	"fmt"
	"math"
)

// AHT20 emulates an Aosong AHT20 at 0x38: status (calibrated bit),
// initialise, trigger measurement, soft reset, and the 7-byte result with
// its CRC-8. A measurement is ready as soon as it is triggered.
type AHT20 struct {
	values
	calibrated bool
	data       [7]byte
}

// NewAHT20 returns an AHT20 in its power-on state (uncalibrated) measuring
// 22 °C and 50 %RH.
func NewAHT20() *AHT20 {
	c := &AHT20{values: newValues(map[string]float64{"temperature": 22, "humidity": 50})}
	c.PowerOnReset()
	return c
}

// Set implements Chip.
func (c *AHT20) Set(m string, v float64) error { return c.values.set(m, v) }

// PowerOnReset implements Chip: the calibration-enable bit is cleared and
// the chip must be initialised (0xBE) again.
func (c *AHT20) PowerOnReset() {
	c.calibrated = false
	c.data = [7]byte{}
	c.data[0] = c.status()
}

func (c *AHT20) status() byte {
	if c.calibrated {
		return 0x18
	}
	return 0x10
}

// Tx implements Chip.
func (c *AHT20) Tx(f Fault, w, r []byte) error {
	switch {
	case len(w) == 0:
	case len(w) == 1 && w[0] == 0x71:
		if len(r) > 0 {
			r[0] = c.status()
			for i := 1; i < len(r); i++ {
				r[i] = 0xFF
			}
		}
		return nil
	case len(w) == 1 && w[0] == 0xBA:
		c.PowerOnReset()
	case len(w) == 3 && w[0] == 0xBE:
		c.calibrated = true
	case len(w) == 3 && w[0] == 0xAC && w[1] == 0x33:
		c.measure(f)
	default:
		return fmt.Errorf("aht20: command % x: %w", w, ErrNACK)
	}
	d := c.data
	d[0] = c.status()
	d[6] = crc8(d[:6])
	if f&CorruptCRC != 0 {
		d[6] ^= 0xFF
	}
	copy(r, d[:])
	return nil
}

func (c *AHT20) measure(f Fault) {
	if f&Stuck != 0 {
		return
	}
	c.next()
	h := uint32(max(0, min(math.Round(c.get("humidity", 0.1)/100*(1<<20)), 1<<20-1)))
	t := uint32(max(0, min(math.Round((c.get("temperature", 0.05)+50)/200*(1<<20)), 1<<20-1)))
	if f&OutOfRange != 0 {
		h, t = 1<<20-1, 1<<20-1
	}
	c.data[1], c.data[2] = byte(h>>12), byte(h>>4)
	c.data[3] = byte(h<<4) | byte(t>>16)
	c.data[4], c.data[5] = byte(t>>8), byte(t)
}
