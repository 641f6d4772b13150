package w1

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// Errors Parse and Read return.
var (
	ErrCRC      = errors.New("w1: crc check failed (crc=.. NO)")
	ErrPowerOn  = errors.New("w1: 85 °C power-on value (conversion did not run)")
	ErrFormat   = errors.New("w1: malformed w1_slave")
	ErrNoDevice = errors.New("w1: no DS18B20 found")
)

// FamilyDS18B20 is the DS18B20's 1-Wire family code.
const FamilyDS18B20 = "28"

// Parse decodes the text of a w1_slave file and returns the temperature in
// millidegrees Celsius. Besides the kernel's verdict it checks the
// scratchpad CRC itself (Maxim's CRC-8, x⁸+x⁵+x⁴+1 reflected) and that t=
// agrees with the scratchpad's temperature bytes.
func Parse(b []byte) (int, error) {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) != 2 {
		return 0, fmt.Errorf("%w: %d lines, want 2", ErrFormat, len(lines))
	}
	first, second := string(lines[0]), string(lines[1])
	i := strings.Index(first, " : crc=")
	if i < 0 {
		return 0, fmt.Errorf("%w: no crc= in %q", ErrFormat, first)
	}
	verdict := first[i+len(" : crc="):]
	switch {
	case strings.HasSuffix(verdict, " NO"):
		return 0, ErrCRC
	case !strings.HasSuffix(verdict, " YES"):
		return 0, fmt.Errorf("%w: crc verdict %q", ErrFormat, verdict)
	}
	pad, err := scratchpad(first[:i])
	if err != nil {
		return 0, err
	}
	if crc(pad[:8]) != pad[8] {
		return 0, ErrCRC
	}
	// Byte 4 is the configuration register, whose low five bits always
	// read 1: an all-zero scratchpad (a sensor that stopped driving the
	// line) has a valid CRC but fails here.
	if pad[4]&0x9F != 0x1F {
		return 0, fmt.Errorf("%w: configuration byte %#02x: not a DS18B20 scratchpad", ErrFormat, pad[4])
	}
	j := strings.Index(second, " t=")
	if j < 0 {
		return 0, fmt.Errorf("%w: no t= in %q", ErrFormat, second)
	}
	pad2, err := scratchpad(second[:j])
	if err != nil {
		return 0, err
	}
	if pad2 != pad {
		return 0, fmt.Errorf("%w: the two scratchpad copies differ", ErrFormat)
	}
	t, err := strconv.Atoi(second[j+len(" t="):])
	if err != nil {
		return 0, fmt.Errorf("%w: t=%q", ErrFormat, second[j+3:])
	}
	// The scratchpad holds 1/16 °C steps; the kernel's t= may be rounded
	// or masked to the resolution, but never off by a whole step.
	raw := int(int16(uint16(pad[0]) | uint16(pad[1])<<8))
	if d := t - raw*1000/16; d < -62 || d > 62 {
		return 0, fmt.Errorf("%w: t=%d disagrees with scratchpad %#04x", ErrFormat, t, uint16(raw))
	}
	if t == 85000 || raw == 0x0550 {
		return 0, ErrPowerOn
	}
	return t, nil
}

func scratchpad(s string) ([9]byte, error) {
	var pad [9]byte
	f := strings.Fields(s)
	if len(f) != 9 {
		return pad, fmt.Errorf("%w: %d scratchpad bytes, want 9", ErrFormat, len(f))
	}
	for i, x := range f {
		v, err := strconv.ParseUint(x, 16, 8)
		if err != nil || len(x) != 2 {
			return pad, fmt.Errorf("%w: scratchpad byte %q", ErrFormat, x)
		}
		pad[i] = byte(v)
	}
	return pad, nil
}

// crc is Maxim's 1-Wire CRC-8 (polynomial 0x31 reflected: 0x8C, init 0).
func crc(b []byte) byte {
	var c byte
	for _, x := range b {
		for i := 0; i < 8; i++ {
			mix := (c ^ x) & 1
			c >>= 1
			if mix != 0 {
				c ^= 0x8C
			}
			x >>= 1
		}
	}
	return c
}

// CRC exposes the 1-Wire CRC for emulators and tests.
func CRC(b []byte) byte { return crc(b) }

// List returns the DS18B20 ids present under root, sorted.
func List(root fs.FS) ([]string, error) {
	es, err := fs.ReadDir(root, ".")
	if err != nil {
		return nil, fmt.Errorf("w1: list devices: %w", err)
	}
	var ids []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), FamilyDS18B20+"-") {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Find resolves an id: "" means the only DS18B20 present.
func Find(root fs.FS, id string) (string, error) {
	if id != "" {
		return id, nil
	}
	ids, err := List(root)
	if err != nil {
		return "", err
	}
	switch len(ids) {
	case 0:
		return "", ErrNoDevice
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("w1: %d DS18B20s present (%s): name one", len(ids), strings.Join(ids, ", "))
}

// Read runs a conversion on the sensor id and returns °C.
func Read(root fs.FS, id string) (float64, error) {
	b, err := fs.ReadFile(root, id+"/w1_slave")
	if err != nil {
		return 0, fmt.Errorf("w1: read %s: %w", id, err)
	}
	t, err := Parse(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", id, err)
	}
	return float64(t) / 1000, nil
}

// Format renders a w1_slave file for a temperature in °C as the kernel
// does; emulators and fixtures use it. bad makes the kernel's verdict NO.
func Format(celsius float64, bad bool) []byte {
	raw := int16(roundHalfAway(celsius * 16))
	pad := [9]byte{byte(raw), byte(uint16(raw) >> 8), 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10}
	pad[8] = crc(pad[:8])
	var hex strings.Builder
	for _, x := range pad {
		fmt.Fprintf(&hex, "%02x ", x)
	}
	verdict := "YES"
	if bad {
		verdict = "NO"
		pad[8] ^= 0xFF
	}
	return fmt.Appendf(nil, "%s: crc=%02x %s\n%st=%d\n", hex.String(), pad[8], verdict, hex.String(), int(raw)*1000/16)
}

func roundHalfAway(x float64) float64 {
	if x < 0 {
		return -float64(int(-x + 0.5))
	}
	return float64(int(x + 0.5))
}
