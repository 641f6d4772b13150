package sensors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"periph.io/x/conn/v3/i2c"

	"gatewayd/sensors/sht"
	"periph.io/x/devices/v3/scd4x"

	"gatewayd/sensors/emul"
)

// SCD40/SCD41 through periph's scd4x. Ranges: CO₂ output range 0..40000 ppm,
// operating conditions −10..60 °C, 0..100 %RH (datasheet table 1, 3).
// Resolution: CO₂ comes in whole ppm; temperature and humidity are 16-bit
// words (175/65535 °C, 100/65535 %RH a step), kept at 0.01 °C and 0.01 %RH.
func init() {
	register(&driver{
		name: "scd4x", chip: "Sensirion SCD40/SCD41",
		meas:  []measurement{{"co2", "ppm", 0, 40000, 1}, {"temperature", "°C", -10, 60, 0.01}, {"humidity", "%RH", 0, 100, 0.01}},
		addrs: []uint16{0x62},
		options: map[string]option{
			"mode": choice("periodic (a measurement every 5 s) or low-power (every 30 s, for intervals of a minute or more)", "periodic", "periodic", "low-power"),
		},
		open:    openSCD,
		emulate: func(sp Spec) (emul.Chip, error) { return emulValues(emul.NewSCD4x(), sp) },
	})
}

type scdDev struct {
	d   *scd4x.Dev
	c   i2c.Dev
	buf [9]byte
}

func openSCD(b i2c.Bus, addr uint16, o map[string]string, _ time.Duration) (device, error) {
	d, err := scd4x.NewI2C(b, addr)
	if err != nil {
		return nil, err
	}
	x := &scdDev{d: d, c: i2c.Dev{Bus: b, Addr: addr}}
	if o["mode"] == "low-power" {
		// periph starts normal periodic measurement; switch it over:
		// stop_periodic_measurement needs 500 ms before the next command.
		if err := x.c.Tx([]byte{0x3F, 0x86}, nil); err != nil {
			return nil, fmt.Errorf("stop periodic measurement: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
		if err := x.c.Tx([]byte{0x21, 0xAC}, nil); err != nil {
			return nil, fmt.Errorf("start low-power periodic measurement: %w", err)
		}
	}
	return x, nil
}

func (x *scdDev) read(_ context.Context, v []float64) error {
	// periph's Sense polls get_data_ready for up to 6 s. A chip that was
	// reset sits idle and would never become ready; ask first, and if it is
	// not ready, tell idle from busy by a command an idle chip accepts and
	// a measuring one refuses (get_serial_number).
	r := x.buf[:3]
	if err := x.c.Tx([]byte{0xE4, 0xB8}, r); err != nil {
		return fmt.Errorf("get data ready: %w", err)
	}
	if sht.CRC8(r[:2]) != r[2] {
		return errors.New("get data ready: invalid crc")
	}
	if (uint16(r[0])<<8|uint16(r[1]))&0x07FF == 0 {
		if err := x.c.Tx([]byte{0x36, 0x82}, x.buf[:]); err == nil {
			return ErrConfigLost // idle: the periodic measurement was lost
		}
	}
	var e scd4x.Env
	if err := x.d.Sense(&e); err != nil {
		return err
	}
	v[0], v[1], v[2] = float64(e.CO2), celsius(e.Temperature), percentRH(e.Humidity)
	return nil
}

// close leaves the chip measuring: stopping costs periph's driver a 550 ms
// sleep, a failed chip would not hear it, and the next open stops and
// restarts it anyway.
func (x *scdDev) close() error { return nil }
