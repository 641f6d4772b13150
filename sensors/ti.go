package sensors

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/mcp9808"
	"periph.io/x/devices/v3/tmp102"

	"gatewayd/sensors/emul"
)

// mcpOpts maps the resolution option onto periph's options (whose
// resolution type is unexported) and the resolution register value.
func mcpOpts(addr uint16, res string) (mcp9808.Opts, byte) {
	o := mcp9808.Opts{Addr: int(addr), Res: mcp9808.Maximum}
	switch res {
	case "0.125":
		o.Res = mcp9808.High
		return o, 2
	case "0.25":
		o.Res = mcp9808.Medium
		return o, 1
	case "0.5":
		o.Res = mcp9808.Low
		return o, 0
	}
	return o, 3
}

var tmpRates = map[string]tmp102.ConversionRate{
	"0.25": tmp102.RateQuarterHertz, "1": tmp102.RateOneHertz, "4": tmp102.RateFourHertz, "8": tmp102.RateEightHertz,
}

// MCP9808 (Microchip) and TMP102 (TI) through periph. Ranges: the
// datasheets' specified range −40..125 °C. Resolution: the MCP9808's
// resolution option (0.0625 °C at power-on), the TMP102's 12-bit 0.0625 °C.
func init() {
	register(&driver{
		name: "mcp9808", chip: "Microchip MCP9808",
		meas:  []measurement{{"temperature", "°C", -40, 125, 0.0625}},
		addrs: []uint16{0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F},
		options: map[string]option{
			"resolution": choice("resolution in °C (coarser converts faster)", "0.0625", "0.0625", "0.125", "0.25", "0.5"),
		},
		res: func(o map[string]string, _ int) float64 {
			r, _ := strconv.ParseFloat(drivers["mcp9808"].opt(o, "resolution"), 64)
			return r
		},
		open:    openMCP,
		emulate: func(sp Spec) (emul.Chip, error) { return emulValues(emul.NewMCP9808(), sp) },
	})
	register(&driver{
		name: "tmp102", chip: "TI TMP102",
		meas:  []measurement{{"temperature", "°C", -40, 125, 0.0625}},
		addrs: []uint16{0x48, 0x49, 0x4A, 0x4B},
		options: map[string]option{
			"rate": choice("conversion rate in Hz", "4", "0.25", "1", "4", "8"),
		},
		open:    openTMP,
		emulate: func(sp Spec) (emul.Chip, error) { return emulValues(emul.NewTMP102(), sp) },
	})
}

type mcpDev struct {
	d   *mcp9808.Dev
	c   i2c.Dev
	res byte
}

func openMCP(b i2c.Bus, addr uint16, o map[string]string, _ time.Duration) (device, error) {
	c := i2c.Dev{Bus: b, Addr: addr}
	// periph's driver does not check what answers; a wrong chip would be
	// read as a thermometer.
	var id [2]byte
	if err := c.Tx([]byte{0x06}, id[:]); err != nil {
		return nil, fmt.Errorf("read manufacturer id: %w", err)
	}
	if id != [2]byte{0x00, 0x54} {
		return nil, fmt.Errorf("manufacturer id %#04x is not Microchip's 0x0054: not an MCP9808", uint16(id[0])<<8|uint16(id[1]))
	}
	opts, reg := mcpOpts(addr, drivers["mcp9808"].opt(o, "resolution"))
	d, err := mcp9808.New(b, &opts)
	if err != nil {
		return nil, err
	}
	return &mcpDev{d: d, c: c, res: reg}, nil
}

func (x *mcpDev) read(_ context.Context, v []float64) error {
	t, err := x.d.SenseTemp()
	if err != nil {
		return err
	}
	// A reset puts the resolution register back to 0.0625 °C.
	var res [1]byte
	if err := x.c.Tx([]byte{0x08}, res[:]); err != nil {
		return fmt.Errorf("read resolution: %w", err)
	}
	if res[0]&3 != x.res {
		return ErrConfigLost
	}
	v[0] = celsius(t)
	return nil
}

func (x *mcpDev) close() error { return x.d.Halt() }

type tmpDev struct {
	d    *tmp102.Dev
	c    i2c.Dev
	rate tmp102.ConversionRate
}

func openTMP(b i2c.Bus, addr uint16, o map[string]string, _ time.Duration) (device, error) {
	rate := tmpRates[drivers["tmp102"].opt(o, "rate")]
	d, err := tmp102.NewI2C(b, addr, &tmp102.Opts{SampleRate: rate, AlertSetting: tmp102.ModeComparator})
	if err != nil {
		return nil, err
	}
	return &tmpDev{d: d, c: i2c.Dev{Bus: b, Addr: addr}, rate: rate}, nil
}

func (x *tmpDev) read(_ context.Context, v []float64) error {
	var e physic.Env
	if err := x.d.Sense(&e); err != nil {
		return err
	}
	// periph's ReadConfiguration drops bus errors; read it ourselves. A
	// reset restores 4 Hz and may have woken a chip meant to sleep.
	var cfg [2]byte
	if err := x.c.Tx([]byte{0x01}, cfg[:]); err != nil {
		return fmt.Errorf("read configuration: %w", err)
	}
	c := uint16(cfg[0])<<8 | uint16(cfg[1])
	if tmp102.ConversionRate(c>>6&3) != x.rate || c&0x0100 != 0 {
		return ErrConfigLost
	}
	v[0] = celsius(e.Temperature)
	return nil
}

// close does nothing: periph's Halt would only clear the shutdown bit.
func (x *tmpDev) close() error { return nil }
