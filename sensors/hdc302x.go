package sensors

import (
	"context"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/hdc302x"

	"gatewayd/sensors/emul"
)

var hdcRates = map[string]hdc302x.SampleRate{
	"0.5": hdc302x.RateHalfHertz, "1": hdc302x.RateHertz, "2": hdc302x.RateTwoHertz,
	"4": hdc302x.RateFourHertz, "10": hdc302x.Rate10Hertz,
}

// TI HDC3020/3021/3022 through periph's hdc302x, in auto-measurement mode.
// A reset drops the chip to sleep mode, where it refuses the auto-mode read;
// the re-init starts it again. Ranges: datasheet operating range.
// Resolution: 16-bit words, 175/65535 °C and 100/65535 %RH a step; kept at
// 0.01 °C and 0.01 %RH, below the datasheet's repeatability.
func init() {
	register(&driver{
		name: "hdc302x", chip: "TI HDC3020/3021/3022",
		meas:  []measurement{{"temperature", "°C", -40, 125, 0.01}, {"humidity", "%RH", 0, 100, 0.01}},
		addrs: []uint16{0x44, 0x45, 0x46, 0x47},
		options: map[string]option{
			"rate": choice("auto-measurement rate in Hz (periph sleeps one period when starting)", "1", "0.5", "1", "2", "4", "10"),
		},
		open: func(b i2c.Bus, addr uint16, o map[string]string, _ time.Duration) (device, error) {
			d, err := hdc302x.NewI2C(b, addr, hdcRates[drivers["hdc302x"].opt(o, "rate")])
			if err != nil {
				return nil, err
			}
			return hdcDev{d}, nil
		},
		emulate: func(sp Spec) (emul.Chip, error) { return emulValues(emul.NewHDC302x(), sp) },
	})
}

type hdcDev struct{ d *hdc302x.Dev }

func (x hdcDev) read(_ context.Context, v []float64) error {
	var e physic.Env
	if err := x.d.Sense(&e); err != nil {
		return err
	}
	v[0], v[1] = celsius(e.Temperature), percentRH(e.Humidity)
	return nil
}

func (x hdcDev) close() error { return x.d.Halt() }
