package sensors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"gatewayd/sensors/emul"
	"gatewayd/sensors/sht"
)

var shtRep = map[string]sht.Repeatability{"high": sht.High, "medium": sht.Medium, "low": sht.Low}

// Sensirion SHT3x and SHT4x through our own sensors/sht. Ranges: the
// datasheets' −40..125 °C, 0..100 %RH. Resolution: the datasheets give
// 0.01 %RH and 0.015 °C (SHT3x) / 0.01 °C (SHT4x) at high repeatability;
// both are kept at 0.01.
func init() {
	meas := []measurement{{"temperature", "°C", -40, 125, 0.01}, {"humidity", "%RH", 0, 100, 0.01}}
	register(&driver{
		name: "sht3x", chip: "Sensirion SHT30/31/35",
		meas: meas, addrs: []uint16{0x44, 0x45},
		options: map[string]option{
			"repeatability": choice("single-shot repeatability (high: 15.5 ms, lowest noise)", "high", "high", "medium", "low"),
			"heater":        choice("internal heater; on biases readings by several °C (for drying a condensed sensor)", "off", "off", "on"),
		},
		open: func(b i2c.Bus, addr uint16, o map[string]string, _ time.Duration) (device, error) {
			d := drivers["sht3x"]
			return openSHT(b, addr, sht.Opts{Model: sht.SHT3x, Repeatability: shtRep[d.opt(o, "repeatability")], Heater: d.opt(o, "heater") == "on"})
		},
		emulate: func(sp Spec) (emul.Chip, error) { return emulValues(emul.NewSHT3x(), sp) },
	})
	register(&driver{
		name: "sht4x", chip: "Sensirion SHT40/41/43/45",
		meas: meas, addrs: []uint16{0x44, 0x45, 0x46},
		options: map[string]option{
			"precision": choice("measurement precision (high: 8.3 ms, lowest noise)", "high", "high", "medium", "low"),
		},
		open: func(b i2c.Bus, addr uint16, o map[string]string, _ time.Duration) (device, error) {
			return openSHT(b, addr, sht.Opts{Model: sht.SHT4x, Repeatability: shtRep[drivers["sht4x"].opt(o, "precision")]})
		},
		emulate: func(sp Spec) (emul.Chip, error) { return emulValues(emul.NewSHT4x(), sp) },
	})
}

type shtDev struct{ d *sht.Dev }

func openSHT(b i2c.Bus, addr uint16, o sht.Opts) (device, error) {
	d, err := sht.NewI2C(b, addr, &o)
	if err != nil {
		return nil, err
	}
	return shtDev{d}, nil
}

func (x shtDev) read(_ context.Context, v []float64) error {
	var e physic.Env
	if err := x.d.Sense(&e); err != nil {
		if errors.Is(err, sht.ErrReset) {
			return fmt.Errorf("%w: %w", ErrConfigLost, err)
		}
		return err
	}
	v[0], v[1] = celsius(e.Temperature), percentRH(e.Humidity)
	return nil
}

func (x shtDev) close() error { return x.d.Halt() }
