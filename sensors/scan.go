package sensors

import (
	"context"
	"fmt"
	"sort"
	"time"

	"periph.io/x/conn/v3/i2c"

	"gatewayd/sensors/sht"
)

// Found is one device Scan saw.
type Found struct {
	Address uint16
	Mux     *Mux   // the TCA9548A channel it sits behind, nil if on the bus itself
	Chip    string // "BME280", "TCA9548A", "unknown device", ...
	Driver  string // the driver to configure for it, "" if none
	Detail  string // what identified it: "chip id 0x60", "manufacturer id 0x3000", ...
}

type probe struct {
	addrs []uint16
	// try identifies the chip at c, or returns ok=false.
	try func(c *i2c.Dev) (chip, driver, detail string, ok bool)
}

// crcWords reads n CRC-protected words after writing w.
func crcWords(c *i2c.Dev, w []byte, n int) ([]uint16, bool) {
	r := make([]byte, 3*n)
	if err := c.Tx(w, r); err != nil {
		return nil, false
	}
	out := make([]uint16, n)
	for i := range out {
		if sht.CRC8(r[3*i:3*i+2]) != r[3*i+2] {
			return nil, false
		}
		out[i] = uint16(r[3*i])<<8 | uint16(r[3*i+1])
	}
	return out, true
}

func rangeAddrs(lo, hi uint16) []uint16 {
	var a []uint16
	for x := lo; x <= hi; x++ {
		a = append(a, x)
	}
	return a
}

// probes, in the order they are tried at an address. Each uses the
// chip's identification register or a command only that chip answers with
// a valid CRC; the order matters where chips share addresses (the HDC302x
// also answers the SHT3x's status command, so it is asked first).
var probes = []probe{
	{[]uint16{0x76, 0x77}, func(c *i2c.Dev) (string, string, string, bool) {
		var id [1]byte
		if c.Tx([]byte{0xD0}, id[:]) != nil {
			return "", "", "", false
		}
		d := fmt.Sprintf("chip id %#02x", id[0])
		switch id[0] {
		case 0x60:
			return "BME280", "bme280", d, true
		case 0x56, 0x57, 0x58:
			return "BMP280", "bmp280", d, true
		case 0x55:
			return "BMP180 (not supported)", "", d, true
		case 0x61:
			return "BME680 (not supported)", "", d, true
		}
		return "", "", "", false
	}},
	{rangeAddrs(0x18, 0x1F), func(c *i2c.Dev) (string, string, string, bool) {
		var m, d [2]byte
		if c.Tx([]byte{0x06}, m[:]) != nil || c.Tx([]byte{0x07}, d[:]) != nil {
			return "", "", "", false
		}
		if m == [2]byte{0x00, 0x54} && d[0] == 0x04 {
			return "MCP9808", "mcp9808", fmt.Sprintf("manufacturer id 0x0054, device id %#02x rev %d", d[0], d[1]), true
		}
		return "", "", "", false
	}},
	{[]uint16{0x38}, func(c *i2c.Dev) (string, string, string, bool) {
		var st [1]byte
		if c.Tx([]byte{0x71}, st[:]) != nil || st[0] == 0xFF {
			return "", "", "", false
		}
		return "AHT20 (or AHT10/AHT21)", "aht20", fmt.Sprintf("status %#02x", st[0]), true
	}},
	{rangeAddrs(0x44, 0x47), func(c *i2c.Dev) (string, string, string, bool) {
		if w, ok := crcWords(c, []byte{0x37, 0x81}, 1); ok && w[0] == 0x3000 {
			return "HDC302x", "hdc302x", "manufacturer id 0x3000 (TI)", true
		}
		return "", "", "", false
	}},
	{rangeAddrs(0x44, 0x46), func(c *i2c.Dev) (string, string, string, bool) {
		if c.Tx([]byte{0x89}, nil) != nil {
			return "", "", "", false
		}
		time.Sleep(time.Millisecond)
		r := make([]byte, 6)
		if c.Tx(nil, r) != nil || sht.CRC8(r[:2]) != r[2] || sht.CRC8(r[3:5]) != r[5] {
			return "", "", "", false
		}
		return "SHT4x", "sht4x", fmt.Sprintf("serial %02x%02x%02x%02x", r[0], r[1], r[3], r[4]), true
	}},
	{[]uint16{0x44, 0x45}, func(c *i2c.Dev) (string, string, string, bool) {
		if w, ok := crcWords(c, []byte{0xF3, 0x2D}, 1); ok {
			return "SHT3x", "sht3x", fmt.Sprintf("status %#04x", w[0]), true
		}
		return "", "", "", false
	}},
	{[]uint16{0x62}, func(c *i2c.Dev) (string, string, string, bool) {
		if _, ok := crcWords(c, []byte{0xE4, 0xB8}, 1); ok {
			return "SCD4x", "scd4x", "answers get_data_ready with a valid CRC", true
		}
		return "", "", "", false
	}},
	{rangeAddrs(0x48, 0x4B), func(c *i2c.Dev) (string, string, string, bool) {
		var r [2]byte
		if c.Tx([]byte{0x01}, r[:]) != nil {
			return "", "", "", false
		}
		// No ID register: the configuration's read-only converter
		// resolution bits (R1 R0 = 11) and zero low nibble identify it.
		if cfg := uint16(r[0])<<8 | uint16(r[1]); cfg>>13&3 == 3 && cfg&0x0F == 0 {
			return "TMP102", "tmp102", fmt.Sprintf("configuration %#04x (no ID register)", cfg), true
		}
		return "", "", "", false
	}},
}

// isMux tells whether a TCA9548A sits at addr: its one register reads back
// what was written. The channels are left all disabled.
func isMux(b i2c.Bus, addr uint16) bool {
	var r [1]byte
	if b.Tx(addr, []byte{0x00}, nil) != nil || b.Tx(addr, nil, r[:]) != nil || r[0] != 0x00 {
		return false
	}
	if b.Tx(addr, []byte{0x05}, nil) != nil || b.Tx(addr, nil, r[:]) != nil {
		return false
	}
	ok := r[0] == 0x05
	_ = b.Tx(addr, []byte{0x00}, nil)
	return ok
}

// Scan probes every 7-bit address of bus and names the chips it knows by
// their ID registers. TCA9548A multiplexers are found first and their
// channels scanned one at a time; the multiplexers are left with every
// channel disabled. It writes nothing to unknown devices except, at
// 0x70..0x77, the multiplexer check (0x00, 0x05, 0x00).
func Scan(ctx context.Context, bus i2c.Bus) ([]Found, error) {
	var found []Found
	var muxes []uint16
	isMuxAddr := map[uint16]bool{}
	for a := uint16(0x70); a <= 0x77; a++ {
		if err := ctx.Err(); err != nil {
			return found, err
		}
		// A BME280/BMP280 at 0x76/0x77 is asked for its chip id first,
		// so the multiplexer check never writes to it.
		if a >= 0x76 {
			if f, ok := identify(bus, a); ok && f.Chip != "unknown device" {
				continue
			}
		}
		if isMux(bus, a) {
			muxes = append(muxes, a)
			isMuxAddr[a] = true
			found = append(found, Found{Address: a, Chip: "TCA9548A", Detail: "I²C multiplexer (register reads back)"})
		}
	}
	onBus := map[uint16]bool{}
	for a := uint16(0x08); a <= 0x77; a++ {
		if err := ctx.Err(); err != nil {
			return found, err
		}
		if isMuxAddr[a] {
			continue
		}
		if f, ok := identify(bus, a); ok {
			onBus[a] = true
			found = append(found, f)
		}
	}
	for _, m := range muxes {
		for ch := 0; ch < 8; ch++ {
			if err := bus.Tx(m, []byte{1 << ch}, nil); err != nil {
				return found, fmt.Errorf("select channel %d of multiplexer %#02x: %w", ch, m, err)
			}
			for a := uint16(0x08); a <= 0x77; a++ {
				if err := ctx.Err(); err != nil {
					_ = bus.Tx(m, []byte{0}, nil)
					return found, err
				}
				if onBus[a] || isMuxAddr[a] {
					continue
				}
				if f, ok := identify(bus, a); ok {
					f.Mux = &Mux{Address: m, Channel: ch}
					found = append(found, f)
				}
			}
		}
		if err := bus.Tx(m, []byte{0}, nil); err != nil {
			return found, fmt.Errorf("disable multiplexer %#02x: %w", m, err)
		}
	}
	// On the bus itself by address, then per multiplexer channel.
	key := func(f Found) int {
		if f.Mux == nil {
			return int(f.Address)
		}
		return int(f.Mux.Address)<<16 | (f.Mux.Channel+1)<<8 | int(f.Address)
	}
	sort.SliceStable(found, func(i, j int) bool { return key(found[i]) < key(found[j]) })
	return found, nil
}

// identify names what answers at addr, if anything does.
func identify(bus i2c.Bus, addr uint16) (Found, bool) {
	c := &i2c.Dev{Bus: bus, Addr: addr}
	for _, p := range probes {
		for _, a := range p.addrs {
			if a != addr {
				continue
			}
			if chip, drv, detail, ok := p.try(c); ok {
				return Found{Address: addr, Chip: chip, Driver: drv, Detail: detail}, true
			}
		}
	}
	var r [1]byte
	if bus.Tx(addr, nil, r[:]) == nil {
		return Found{Address: addr, Chip: "unknown device", Detail: "acknowledges a read"}, true
	}
	return Found{}, false
}
