package emul

import (
	"fmt"
	"math"
)

// MCP9808 emulates a Microchip MCP9808: configuration (shutdown bit),
// alert limits, ambient temperature register quantised by the resolution
// register, manufacturer id 0x0054, device id 0x04.
type MCP9808 struct {
	values
	rawSet bool
	ptr    byte
	config uint16
	res    byte
	limits [3]uint16
	ta     uint16
}

// NewMCP9808 returns an MCP9808 in its power-on state measuring 22 °C.
func NewMCP9808() *MCP9808 {
	c := &MCP9808{values: newValues(map[string]float64{"temperature": 22})}
	c.PowerOnReset()
	return c
}

// Set implements Chip.
func (c *MCP9808) Set(m string, v float64) error { c.rawSet = false; return c.values.set(m, v) }

// SetRaw makes the ambient temperature register hold ta until the next Set.
func (c *MCP9808) SetRaw(ta uint16) { c.rawSet, c.ta = true, ta }

// PowerOnReset implements Chip: continuous conversion, 0.0625 °C.
func (c *MCP9808) PowerOnReset() { c.config, c.res, c.limits, c.ptr = 0, 3, [3]uint16{}, 0 }

// Resolution returns the resolution register (0: 0.5 °C .. 3: 0.0625 °C).
func (c *MCP9808) Resolution() byte { return c.res }

// Tx implements Chip.
func (c *MCP9808) Tx(f Fault, w, r []byte) error {
	if len(w) > 0 {
		c.ptr = w[0] & 0x0F
		switch {
		case len(w) == 2 && c.ptr == 8:
			c.res = w[1] & 3
		case len(w) == 3 && c.ptr == 1:
			c.config = uint16(w[1])<<8 | uint16(w[2])
		case len(w) == 3 && c.ptr >= 2 && c.ptr <= 4:
			c.limits[c.ptr-2] = (uint16(w[1])<<8 | uint16(w[2])) & 0x1FFC
		case len(w) > 1:
			return fmt.Errorf("mcp9808: write % x: %w", w, ErrNACK)
		}
	}
	if len(r) == 0 {
		return nil
	}
	var v uint16
	switch c.ptr {
	case 1:
		v = c.config
	case 2, 3, 4:
		v = c.limits[c.ptr-2]
	case 5:
		if c.config&0x0100 == 0 && f&Stuck == 0 && !c.rawSet {
			c.convert(f)
		}
		v = c.ta
	case 6:
		v = 0x0054
	case 7:
		v = 0x0400
	case 8:
		r[0] = c.res
		for i := 1; i < len(r); i++ {
			r[i] = c.res
		}
		return nil
	}
	r[0] = byte(v >> 8)
	if len(r) > 1 {
		r[1] = byte(v)
	}
	return nil
}

func (c *MCP9808) convert(f Fault) {
	c.next()
	step := [4]float64{0.5, 0.25, 0.125, 0.0625}[c.res]
	t := math.Round(c.get("temperature", 0.25)/step) * step
	n := int(math.Round(t / 0.0625))
	n = max(-4096, min(n, 4095))
	c.ta = uint16(n) & 0x1FFF
	if f&OutOfRange != 0 {
		c.ta = 0x0FFF // +255.94 °C: a converter at full scale
	}
}

// TMP102 emulates a TI TMP102: pointer register, 12-bit temperature,
// configuration (power-on 0x60A0: 4 Hz, comparator mode), TLOW/THIGH.
type TMP102 struct {
	values
	rawSet      bool
	ptr         byte
	config      uint16
	tlow, thigh uint16
	temp        uint16
}

// NewTMP102 returns a TMP102 in its power-on state measuring 22 °C.
func NewTMP102() *TMP102 {
	c := &TMP102{values: newValues(map[string]float64{"temperature": 22})}
	c.PowerOnReset()
	return c
}

// Set implements Chip.
func (c *TMP102) Set(m string, v float64) error { c.rawSet = false; return c.values.set(m, v) }

// SetRaw makes the temperature register hold reg until the next Set.
func (c *TMP102) SetRaw(reg uint16) { c.rawSet, c.temp = true, reg }

// PowerOnReset implements Chip (datasheet table 7.5 defaults).
func (c *TMP102) PowerOnReset() { c.ptr, c.config, c.tlow, c.thigh = 0, 0x60A0, 0x4B00, 0x5000 }

// Config returns the configuration register.
func (c *TMP102) Config() uint16 { return c.config }

// Tx implements Chip.
func (c *TMP102) Tx(f Fault, w, r []byte) error {
	if len(w) > 0 {
		c.ptr = w[0] & 3
		if len(w) == 3 {
			v := uint16(w[1])<<8 | uint16(w[2])
			switch c.ptr {
			case 0:
				return fmt.Errorf("tmp102: temperature register is read-only: %w", ErrNACK)
			case 1:
				// R1/R0 and AL are read-only; OS reads back 0.
				c.config = v&^0xE020 | c.config&0x6020
			case 2:
				c.tlow = v
			case 3:
				c.thigh = v
			}
		} else if len(w) != 1 {
			return fmt.Errorf("tmp102: write % x: %w", w, ErrNACK)
		}
	}
	if len(r) == 0 {
		return nil
	}
	var v uint16
	switch c.ptr {
	case 0:
		if c.config&0x0100 == 0 && f&Stuck == 0 && !c.rawSet {
			c.next()
			n := int(math.Round(c.get("temperature", 0.0625) / 0.0625))
			n = max(-2048, min(n, 2047))
			c.temp = uint16(n&0xFFF) << 4
			if f&OutOfRange != 0 {
				c.temp = 0x7FF0 // +127.94 °C
			}
		}
		v = c.temp
	case 1:
		v = c.config
	case 2:
		v = c.tlow
	case 3:
		v = c.thigh
	}
	r[0] = byte(v >> 8)
	if len(r) > 1 {
		r[1] = byte(v)
	}
	return nil
}
