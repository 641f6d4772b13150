package emul

import (
	"fmt"
	"math"
)

// crc8 is Sensirion's (and Aosong's) CRC-8: polynomial 0x31, init 0xFF.
// Kept apart from the drivers' copies so an error in one is caught by the
// other.
func crc8(b []byte) byte {
	crc := byte(0xFF)
	for _, x := range b {
		crc ^= x
		for i := 0; i < 8; i++ {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x31
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// words packs 16-bit words with their CRCs; corrupt flips each CRC.
func words(f Fault, ws ...uint16) []byte {
	out := make([]byte, 0, 3*len(ws))
	for _, w := range ws {
		b := []byte{byte(w >> 8), byte(w)}
		c := crc8(b)
		if f&CorruptCRC != 0 {
			c ^= 0xFF
		}
		out = append(out, b[0], b[1], c)
	}
	return out
}

// count16 maps x in [lo, lo+span] onto 0..65535, rounded and clamped: the
// inverse of Sensirion's and TI's  x = lo + span·S/65535.
func count16(x, lo, span float64) uint16 {
	s := math.Round((x - lo) * 65535 / span)
	return uint16(max(0, min(s, 65535)))
}

// readOut hands out a pending response; with none pending the chip does not
// acknowledge the read header, as Sensirion chips do.
func readOut(out *[]byte, r []byte) error {
	if len(r) == 0 {
		return nil
	}
	if len(*out) < len(r) {
		return fmt.Errorf("nothing to read: %w", ErrNACK)
	}
	copy(r, *out)
	*out = nil
	return nil
}

// SHT emulates a Sensirion SHT3x (NewSHT3x) or SHT4x (NewSHT4x):
// single-shot measurements (with and without clock stretching on the
// SHT3x), status register with the reset and heater bits, heater, serial
// number, soft reset. Unknown commands are not acknowledged.
type SHT struct {
	values
	is4x   bool
	status uint16
	out    []byte
	raw    [2]uint16
	serial uint32
}

// NewSHT3x returns an SHT3x in its power-on state (22 °C, 50 %RH).
func NewSHT3x() *SHT { return newSHT(false) }

// NewSHT4x returns an SHT4x in its power-on state (22 °C, 50 %RH).
func NewSHT4x() *SHT { return newSHT(true) }

func newSHT(is4x bool) *SHT {
	c := &SHT{values: newValues(map[string]float64{"temperature": 22, "humidity": 50}), is4x: is4x, serial: 0x0A1B2C3D}
	c.PowerOnReset()
	return c
}

// Set implements Chip.
func (c *SHT) Set(m string, v float64) error { return c.values.set(m, v) }

// PowerOnReset implements Chip: heater off, status "alert pending, reset
// detected" (0x8010, SHT3x datasheet table 17).
func (c *SHT) PowerOnReset() { c.status, c.out = 0x8010, nil }

// Status returns the SHT3x status word (heater bit 13, reset bit 4).
func (c *SHT) Status() uint16 { return c.status }

func (c *SHT) measure(f Fault) {
	if f&Stuck == 0 {
		c.next()
		t := count16(c.get("temperature", 0.05), -45, 175)
		var h uint16
		if c.is4x {
			h = count16(c.get("humidity", 0.1), -6, 125)
		} else {
			h = count16(c.get("humidity", 0.1), 0, 100)
		}
		c.raw = [2]uint16{t, h}
		if f&OutOfRange != 0 {
			c.raw = [2]uint16{0xFFFF, 0xFFFF}
		}
	}
	c.out = words(f, c.raw[0], c.raw[1])
}

// Tx implements Chip.
func (c *SHT) Tx(f Fault, w, r []byte) error {
	if len(w) > 0 {
		if err := c.command(f, w); err != nil {
			return err
		}
	}
	return readOut(&c.out, r)
}

func (c *SHT) command(f Fault, w []byte) error {
	if c.is4x {
		if len(w) != 1 {
			return fmt.Errorf("sht4x: %d-byte command: %w", len(w), ErrNACK)
		}
		switch w[0] {
		case 0xFD, 0xF6, 0xE0, 0x39, 0x32, 0x2F, 0x24, 0x1E, 0x15:
			c.measure(f)
		case 0x89:
			c.out = words(f, uint16(c.serial>>16), uint16(c.serial))
		case 0x94:
			c.PowerOnReset()
		default:
			return fmt.Errorf("sht4x: command %#02x: %w", w[0], ErrNACK)
		}
		return nil
	}
	if len(w) != 2 {
		return fmt.Errorf("sht3x: %d-byte command: %w", len(w), ErrNACK)
	}
	switch cmd := uint16(w[0])<<8 | uint16(w[1]); cmd {
	case 0x2400, 0x240B, 0x2416, 0x2C06, 0x2C0D, 0x2C10:
		c.measure(f)
	case 0xF32D:
		c.out = words(f, c.status)
	case 0x3041:
		c.status &^= 0x8C10 // alert, RH/T alert and reset bits
	case 0x306D:
		c.status |= 1 << 13
	case 0x3066:
		c.status &^= 1 << 13
	case 0x3780:
		c.out = words(f, uint16(c.serial>>16), uint16(c.serial))
	case 0x30A2:
		c.PowerOnReset()
	default:
		return fmt.Errorf("sht3x: command %#04x: %w", cmd, ErrNACK)
	}
	return nil
}

// SCD4x emulates a Sensirion SCD40/SCD41 CO₂ sensor: idle and periodic
// (normal or low-power) modes, get_data_ready, read_measurement, serial
// number, variant, reinit, and the rule that most commands are refused
// during periodic measurement. Each read during periodic measurement finds
// a fresh measurement ready (the 5 s / 30 s cadence is not emulated).
// Unlike the datasheet's chip, wake_up is acknowledged when idle (the real
// one never acknowledges it, which costs periph's driver a 550 ms detour
// on every start; the outcome is the same).
type SCD4x struct {
	values
	rawSet bool // raw words given by SetRaw
	mode   int  // 0 idle, 1 periodic, 2 low-power periodic
	out    []byte
	raw    [3]uint16
	ready  bool
	serial uint64
}

// NewSCD4x returns an idle SCD41 measuring 600 ppm, 22 °C, 45 %RH.
func NewSCD4x() *SCD4x {
	c := &SCD4x{values: newValues(map[string]float64{"co2": 600, "temperature": 22, "humidity": 45}), serial: 0x1234_5678_9ABC}
	return c
}

// Set implements Chip.
func (c *SCD4x) Set(m string, v float64) error { c.rawSet = false; return c.values.set(m, v) }

// SetRaw makes read_measurement return these words (CO₂, T, RH) until the
// next Set: the datasheet's example is given as raw words.
func (c *SCD4x) SetRaw(co2, t, rh uint16) { c.rawSet, c.raw = true, [3]uint16{co2, t, rh} }

// PowerOnReset implements Chip: back to idle, measurement mode lost.
func (c *SCD4x) PowerOnReset() { c.mode, c.out, c.ready = 0, nil, false }

// Mode reports "idle", "periodic" or "low-power".
func (c *SCD4x) Mode() string { return [...]string{"idle", "periodic", "low-power"}[c.mode] }

// Tx implements Chip.
func (c *SCD4x) Tx(f Fault, w, r []byte) error {
	if len(w) > 0 {
		if len(w) < 2 {
			return fmt.Errorf("scd4x: 1-byte command: %w", ErrNACK)
		}
		cmd := uint16(w[0])<<8 | uint16(w[1])
		measuring := c.mode != 0
		idleOnly := func() error {
			if measuring {
				return fmt.Errorf("scd4x: command %#04x during periodic measurement: %w", cmd, ErrNACK)
			}
			return nil
		}
		switch cmd {
		case 0x21B1, 0x21AC:
			if err := idleOnly(); err != nil {
				return err
			}
			c.mode, c.ready = 1, true
			if cmd == 0x21AC {
				c.mode = 2
			}
		case 0x3F86:
			c.mode, c.ready = 0, false
		case 0x36F6:
			if err := idleOnly(); err != nil {
				return err
			}
		case 0xE4B8:
			st := uint16(0x8000)
			if c.ready {
				st |= 0x0006
			}
			c.out = words(f, st)
		case 0xEC05:
			if !c.ready {
				return fmt.Errorf("scd4x: no measurement ready: %w", ErrNACK)
			}
			if f&Stuck == 0 && !c.rawSet {
				c.next()
				c.raw = [3]uint16{
					uint16(math.Round(max(0, min(c.get("co2", 1), 65535)))),
					count16(c.get("temperature", 0.05), -45, 175),
					count16(c.get("humidity", 0.1), 0, 100),
				}
				if f&OutOfRange != 0 {
					c.raw = [3]uint16{0xFFFF, 0xFFFF, 0xFFFF}
				}
			}
			c.out = words(f, c.raw[0], c.raw[1], c.raw[2])
		case 0x3682:
			if err := idleOnly(); err != nil {
				return err
			}
			c.out = words(f, uint16(c.serial>>32), uint16(c.serial>>16), uint16(c.serial))
		case 0x202F:
			if err := idleOnly(); err != nil {
				return err
			}
			c.out = words(f, 0x1440) // SCD41
		case 0x3646, 0x3632, 0x3615:
			if err := idleOnly(); err != nil {
				return err
			}
			if cmd == 0x3646 || cmd == 0x3632 {
				c.PowerOnReset()
			}
		case 0x2318, 0x2322, 0x2313, 0x233F, 0x2340, 0x234B:
			if err := idleOnly(); err != nil {
				return err
			}
			c.out = words(f, 0)
		case 0xE000:
			if len(w) == 2 {
				c.out = words(f, 1013)
			}
		default:
			return fmt.Errorf("scd4x: command %#04x: %w", cmd, ErrNACK)
		}
	}
	return readOut(&c.out, r)
}

// HDC302x emulates a TI HDC3020/3021/3022: auto-measurement modes read with
// 0xE000 (refused, as on the chip, when no auto mode runs), trigger-on-demand,
// manufacturer id 0x3000, NIST id, status, heater, soft reset.
type HDC302x struct {
	values
	auto   bool
	out    []byte
	raw    [2]uint16
	status uint16
}

// NewHDC302x returns an HDC302x in its power-on (sleep) state measuring
// 22 °C and 40 %RH.
func NewHDC302x() *HDC302x {
	c := &HDC302x{values: newValues(map[string]float64{"temperature": 22, "humidity": 40})}
	c.PowerOnReset()
	return c
}

// Set implements Chip.
func (c *HDC302x) Set(m string, v float64) error { return c.values.set(m, v) }

// PowerOnReset implements Chip: sleep mode, status "device reset".
func (c *HDC302x) PowerOnReset() { c.auto, c.out, c.status = false, nil, 1<<4 }

// Auto reports whether an auto-measurement mode runs.
func (c *HDC302x) Auto() bool { return c.auto }

func (c *HDC302x) measure(f Fault) {
	if f&Stuck == 0 {
		c.next()
		c.raw = [2]uint16{count16(c.get("temperature", 0.05), -45, 175), count16(c.get("humidity", 0.1), 0, 100)}
		if f&OutOfRange != 0 {
			c.raw = [2]uint16{0xFFFF, 0xFFFF}
		}
	}
	c.out = words(f, c.raw[0], c.raw[1])
}

// Tx implements Chip.
func (c *HDC302x) Tx(f Fault, w, r []byte) error {
	if len(w) > 0 {
		if len(w) < 2 {
			return fmt.Errorf("hdc302x: 1-byte command: %w", ErrNACK)
		}
		switch cmd := uint16(w[0])<<8 | uint16(w[1]); {
		case cmd>>8 >= 0x20 && cmd>>8 <= 0x27 && cmd != 0x2400 && cmd != 0x240B && cmd != 0x2416 && cmd != 0x24FF:
			c.auto = true
		case cmd == 0x2400 || cmd == 0x240B || cmd == 0x2416 || cmd == 0x24FF:
			c.measure(f)
		case cmd == 0xE000:
			if !c.auto {
				return fmt.Errorf("hdc302x: read in sleep mode: %w", ErrNACK)
			}
			c.measure(f)
		case cmd == 0x3093:
			c.auto = false
		case cmd == 0x30A2:
			c.PowerOnReset()
		case cmd == 0x3781:
			c.out = words(f, 0x3000)
		case cmd >= 0x3683 && cmd <= 0x3685:
			c.out = words(f, 0x1234+cmd-0x3683)
		case cmd == 0xF32D:
			c.out = words(f, c.status)
		case cmd == 0x3041:
			c.status = 0
		case cmd == 0x306D:
			c.status |= 1 << 13
		case cmd == 0x3066:
			c.status &^= 1 << 13
		case cmd == 0x306E, cmd == 0xA004, cmd>>8 == 0x61, cmd>>8 == 0xE1:
			if len(w) == 2 {
				c.out = words(f, 0)
			}
		default:
			return fmt.Errorf("hdc302x: command %#04x: %w", cmd, ErrNACK)
		}
	}
	return readOut(&c.out, r)
}
