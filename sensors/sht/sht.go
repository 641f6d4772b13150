package sht

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Model selects the chip family.
type Model uint8

const (
	SHT3x Model = iota // SHT30, SHT31, SHT35: 2-byte commands, status register
	SHT4x              // SHT40, SHT41, SHT43, SHT45: 1-byte commands
)

func (m Model) String() string {
	if m == SHT4x {
		return "SHT4x"
	}
	return "SHT3x"
}

// Repeatability trades measurement time (and self-heating) for noise.
type Repeatability uint8

const (
	High   Repeatability = iota // SHT3x 15.5 ms max, SHT4x 8.3 ms max
	Medium                      // 6.5 ms / 4.5 ms
	Low                         // 4.5 ms / 1.7 ms
)

// Opts configure a Dev. The zero value is an SHT3x at high repeatability
// with its heater switched off.
type Opts struct {
	Model         Model
	Repeatability Repeatability
	// Heater switches the SHT3x's internal heater on (it biases the
	// readings by several °C; it is for drying a condensed sensor or
	// checking it works). NewI2C always sets the heater state explicitly,
	// so a heater left on by an earlier program is switched off.
	// Ignored for SHT4x, whose heater is pulsed per command.
	Heater bool
}

// DefaultOpts are the options used when opts is nil.
var DefaultOpts = Opts{Model: SHT3x, Repeatability: High}

// Errors.
var (
	ErrCRC   = errors.New("sht: CRC mismatch")
	ErrReset = errors.New("sht: chip was reset since initialisation")
)

// SHT3x commands (datasheet table 9 ff.), clock stretching disabled.
var (
	cmd3xMeasure = [3][2]byte{{0x24, 0x00}, {0x24, 0x0B}, {0x24, 0x16}}
	cmd3xStatus  = []byte{0xF3, 0x2D}
	cmd3xClear   = []byte{0x30, 0x41}
	cmd3xHeatOn  = []byte{0x30, 0x6D}
	cmd3xHeatOff = []byte{0x30, 0x66}
	cmd3xSerial  = []byte{0x37, 0x80}
	cmd3xReset   = []byte{0x30, 0xA2}
)

// SHT4x commands (datasheet section 4.5).
var (
	cmd4xMeasure = [3]byte{0xFD, 0xF6, 0xE0}
	cmd4xSerial  = byte(0x89)
	cmd4xReset   = byte(0x94)
)

// Maximum measurement durations from the datasheets (SHT3x table 4, SHT4x
// table 5): waiting the maximum means the first read finds the result.
var (
	wait3x = [3]time.Duration{15500 * time.Microsecond, 6500 * time.Microsecond, 4500 * time.Microsecond}
	wait4x = [3]time.Duration{8300 * time.Microsecond, 4500 * time.Microsecond, 1700 * time.Microsecond}
)

// StatusReset is the SHT3x status bit "system reset detected".
const StatusReset = 1 << 4

// StatusHeater is the SHT3x status bit "heater on".
const StatusHeater = 1 << 13

// Dev is one SHT3x or SHT4x.
type Dev struct {
	c    i2c.Dev
	opts Opts
	mu   sync.Mutex
}

// NewI2C opens the chip at addr (SHT3x: 0x44 or 0x45; SHT4x: 0x44, 0x45 or
// 0x46 depending on the part) and puts it in a known state: SHT3x heater as
// configured and status cleared (so a later reset shows up), SHT4x serial
// number read (proving the chip answers with valid CRCs).
func NewI2C(b i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if opts.Repeatability > Low {
		return nil, fmt.Errorf("sht: invalid repeatability %d", opts.Repeatability)
	}
	d := &Dev{c: i2c.Dev{Bus: b, Addr: addr}, opts: *opts}
	if d.opts.Model == SHT4x {
		if _, err := d.SerialNumber(); err != nil {
			return nil, err
		}
		return d, nil
	}
	heat := cmd3xHeatOff
	if d.opts.Heater {
		heat = cmd3xHeatOn
	}
	if err := d.c.Tx(heat, nil); err != nil {
		return nil, fmt.Errorf("sht: set heater: %w", err)
	}
	if err := d.c.Tx(cmd3xClear, nil); err != nil {
		return nil, fmt.Errorf("sht: clear status: %w", err)
	}
	st, err := d.Status()
	if err != nil {
		return nil, err
	}
	if st&StatusReset != 0 || (st&StatusHeater != 0) != d.opts.Heater {
		return nil, fmt.Errorf("sht: status %#04x after initialisation: chip did not take the commands", st)
	}
	return d, nil
}

// CRC8 is Sensirion's checksum over a 16-bit word: polynomial 0x31
// (x⁸+x⁵+x⁴+1), initial value 0xFF, no reflection, no final XOR. The
// datasheet's example: CRC8(0xBE, 0xEF) = 0x92.
func CRC8(b []byte) byte {
	crc := byte(0xFF)
	for _, x := range b {
		crc ^= x
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x31
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// words checks and strips the CRCs of a response of 3-byte groups.
func words(r []byte, out []uint16) error {
	for i := range out {
		g := r[3*i : 3*i+3]
		if CRC8(g[:2]) != g[2] {
			return ErrCRC
		}
		out[i] = uint16(g[0])<<8 | uint16(g[1])
	}
	return nil
}

// Status reads the SHT3x status register (SHT4x has none).
func (d *Dev) Status() (uint16, error) {
	if d.opts.Model == SHT4x {
		return 0, errors.New("sht: the SHT4x has no status register")
	}
	var r [3]byte
	if err := d.c.Tx(cmd3xStatus, r[:]); err != nil {
		return 0, fmt.Errorf("sht: read status: %w", err)
	}
	var w [1]uint16
	if err := words(r[:], w[:]); err != nil {
		return 0, err
	}
	return w[0], nil
}

// SerialNumber reads the chip's 32-bit serial number.
func (d *Dev) SerialNumber() (uint32, error) {
	var r [6]byte
	var err error
	if d.opts.Model == SHT4x {
		if err = d.c.Tx([]byte{cmd4xSerial}, nil); err == nil {
			time.Sleep(time.Millisecond) // tₘ: the SHT4x needs a moment before the read
			err = d.c.Tx(nil, r[:])
		}
	} else {
		err = d.c.Tx(cmd3xSerial, r[:])
	}
	if err != nil {
		return 0, fmt.Errorf("sht: read serial number: %w", err)
	}
	var w [2]uint16
	if err := words(r[:], w[:]); err != nil {
		return 0, err
	}
	return uint32(w[0])<<16 | uint32(w[1]), nil
}

// Sense makes one single-shot measurement. On an SHT3x it then reads the
// status register and reports ErrReset if the chip was reset since NewI2C
// (its heater setting is lost then): the caller should open it again.
func (d *Dev) Sense(e *physic.Env) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	var wait time.Duration
	if d.opts.Model == SHT4x {
		err = d.c.Tx([]byte{cmd4xMeasure[d.opts.Repeatability]}, nil)
		wait = wait4x[d.opts.Repeatability]
	} else {
		c := cmd3xMeasure[d.opts.Repeatability]
		err = d.c.Tx(c[:], nil)
		wait = wait3x[d.opts.Repeatability]
	}
	if err != nil {
		return fmt.Errorf("sht: start measurement: %w", err)
	}
	time.Sleep(wait)
	var r [6]byte
	// Until the result is there the chip does not acknowledge the read;
	// the maximum time was waited, so retry only twice, briefly.
	for try := 0; ; try++ {
		if err = d.c.Tx(nil, r[:]); err == nil || try == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("sht: read measurement: %w", err)
	}
	var w [2]uint16
	if err := words(r[:], w[:]); err != nil {
		return err
	}
	e.Temperature = temperature(w[0])
	if d.opts.Model == SHT4x {
		e.Humidity = humidity4x(w[1])
	} else {
		e.Humidity = humidity3x(w[1])
		st, err := d.Status()
		if err != nil {
			return err
		}
		if st&StatusReset != 0 {
			return ErrReset
		}
	}
	return nil
}

// temperature: T = -45 + 175·S/(2¹⁶-1) °C for both families.
func temperature(s uint16) physic.Temperature {
	return physic.ZeroCelsius - 45*physic.Celsius + physic.Temperature(int64(s)*175*int64(physic.Celsius)/65535)
}

// humidity3x: RH = 100·S/(2¹⁶-1) %.
func humidity3x(s uint16) physic.RelativeHumidity {
	return physic.RelativeHumidity(int64(s) * 100 * int64(physic.PercentRH) / 65535)
}

// humidity4x: RH = -6 + 125·S/(2¹⁶-1) %, cropped to 0..100 as the SHT4x
// datasheet prescribes (values outside come from condensation or the
// sensor's tolerance, not from the air).
func humidity4x(s uint16) physic.RelativeHumidity {
	h := -6*physic.PercentRH + physic.RelativeHumidity(int64(s)*125*int64(physic.PercentRH)/65535)
	return max(0, min(h, 100*physic.PercentRH))
}

// Precision reports the resolution of one count.
func (d *Dev) Precision(e *physic.Env) {
	e.Temperature = physic.Temperature(175 * int64(physic.Celsius) / 65535)
	e.Humidity = physic.RelativeHumidity(100 * int64(physic.PercentRH) / 65535)
	if d.opts.Model == SHT4x {
		e.Humidity = physic.RelativeHumidity(125 * int64(physic.PercentRH) / 65535)
	}
}

// Reset sends a soft reset.
func (d *Dev) Reset() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	if d.opts.Model == SHT4x {
		err = d.c.Tx([]byte{cmd4xReset}, nil)
	} else {
		err = d.c.Tx(cmd3xReset, nil)
	}
	time.Sleep(time.Millisecond) // both reset within 1 ms
	return err
}

// Halt implements conn.Resource: single-shot chips idle between
// measurements, so there is nothing to stop; an SHT3x heater is switched off.
func (d *Dev) Halt() error {
	if d.opts.Model == SHT3x && d.opts.Heater {
		return d.c.Tx(cmd3xHeatOff, nil)
	}
	return nil
}

func (d *Dev) String() string { return fmt.Sprintf("%s{%s}", d.opts.Model, &d.c) }

var _ conn.Resource = &Dev{}
