package sensors

import (
	"context"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/aht20"

	"gatewayd/sensors/emul"
)

// AHT20 through periph's aht20 (fixed address 0x38). A power-on reset
// clears the chip's calibration bit; the driver then reports
// NotInitializedError and the re-init calibrates it again. Ranges: datasheet
// table 1 (−40..85 °C, 0..100 %RH). Resolution: datasheet 0.01 °C and
// 0.024 %RH (20-bit words); humidity is kept at 0.01 %RH.
func init() {
	register(&driver{
		name: "aht20", chip: "Aosong AHT20",
		meas:    []measurement{{"temperature", "°C", -40, 85, 0.01}, {"humidity", "%RH", 0, 100, 0.01}},
		addrs:   []uint16{0x38},
		options: map[string]option{},
		open: func(b i2c.Bus, _ uint16, _ map[string]string, _ time.Duration) (device, error) {
			opts := aht20.DefaultOpts // CRC checked, 150 ms read timeout
			d, err := aht20.NewI2C(b, &opts)
			if err != nil {
				return nil, err
			}
			return ahtDev{d}, nil
		},
		emulate: func(sp Spec) (emul.Chip, error) { return emulValues(emul.NewAHT20(), sp) },
	})
}

type ahtDev struct{ d *aht20.Dev }

func (x ahtDev) read(_ context.Context, v []float64) error {
	var e physic.Env
	if err := x.d.Sense(&e); err != nil {
		return err
	}
	v[0], v[1] = celsius(e.Temperature), percentRH(e.Humidity)
	return nil
}

func (x ahtDev) close() error { return x.d.Halt() }
