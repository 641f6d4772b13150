package sensors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"

	"gatewayd/sensors/emul"
)

// BME280 / BMP280 through periph's bmxx80. Ranges are the datasheets'
// operating ranges (BME280 ds002 table 1, BMP280 ds001 table 1).
// Resolutions: the compensation formulas output 0.01 °C, 1/1024 %RH
// (datasheet: 0.008 %RH) and 1/256 Pa (datasheet: 0.18 Pa at 16×
// oversampling, noise 1.3 Pa at 1×); humidity and pressure are kept at
// 0.01 %RH and 0.01 hPa (1 Pa), well inside the ±3 %RH and ±0.12 hPa
// relative accuracy.
var (
	bmeTemp  = measurement{"temperature", "°C", -40, 85, 0.01}
	bmeHum   = measurement{"humidity", "%RH", 0, 100, 0.01}
	bmePress = measurement{"pressure", "hPa", 300, 1100, 0.01}
)

var bmxOptions = map[string]option{
	"oversampling":             choice("oversampling of every measurement (sets the three below)", "", "1", "2", "4", "8", "16"),
	"temperature_oversampling": choice("temperature oversampling", "4", "1", "2", "4", "8", "16"),
	"pressure_oversampling":    choice("pressure oversampling (off skips pressure)", "4", "off", "1", "2", "4", "8", "16"),
	"humidity_oversampling":    choice("humidity oversampling, BME280 only (off skips humidity)", "4", "off", "1", "2", "4", "8", "16"),
	"mode": choice("normal: the chip converts on its own every standby and a reading takes the latest conversion, with no wait; "+
		"forced: one conversion per reading, which periph waits for (8 ms at 1x up to ~100 ms at 16x)", "normal", "normal", "forced"),
	"filter": choice("IIR filter coefficient (normal mode only)", "off", "off", "2", "4", "8", "16"),
	"standby": durationOpt("time between conversions in normal mode; empty = the longest the chip has (at most 1 s on the BME280, 4 s on the BMP280) "+
		"that still gives every reading a conversion of its own at the sensor's interval", "", 500*time.Microsecond, 4*time.Second),
}

func init() {
	register(&driver{
		name: "bme280", chip: "Bosch BME280",
		meas:    []measurement{bmeTemp, bmeHum, bmePress},
		addrs:   []uint16{0x76, 0x77},
		options: bmxOptions, checkOpts: checkBmxOpts, off: bmxOff, byInterval: true,
		open: func(b i2c.Bus, addr uint16, o map[string]string, iv time.Duration) (device, error) {
			return openBmx(b, addr, o, iv, true)
		},
		emulate: func(sp Spec) (emul.Chip, error) { return emulValues(emul.NewBME280(), sp) },
	})
	bmp := map[string]option{}
	for k, v := range bmxOptions {
		if k != "humidity_oversampling" {
			bmp[k] = v
		}
	}
	register(&driver{
		name: "bmp280", chip: "Bosch BMP280",
		meas:    []measurement{bmeTemp, bmePress},
		addrs:   []uint16{0x76, 0x77},
		options: bmp, checkOpts: checkBmxOpts, off: bmxOff, byInterval: true,
		open: func(b i2c.Bus, addr uint16, o map[string]string, iv time.Duration) (device, error) {
			return openBmx(b, addr, o, iv, false)
		},
		emulate: func(sp Spec) (emul.Chip, error) { return emulValues(emul.NewBMP280(), sp) },
	})
}

func checkBmxOpts(o map[string]string) (string, error) {
	if o["mode"] == "forced" {
		// periph's bmxx80 programs the filter and the standby only in
		// normal mode; in forced mode they would be silently ignored.
		if f, ok := o["filter"]; ok && f != "off" {
			return "filter", errors.New(`the IIR filter works only in normal mode (mode = "normal")`)
		}
		if _, ok := o["standby"]; ok {
			return "standby", errors.New(`standby is the time between conversions in normal mode; forced mode converts once per reading`)
		}
	}
	if _, ok := o["oversampling"]; ok {
		for _, k := range []string{"temperature_oversampling", "pressure_oversampling", "humidity_oversampling"} {
			if _, ok := o[k]; ok {
				return k, errors.New("conflicts with oversampling (use one or the other)")
			}
		}
	}
	return "", nil
}

// bmxOff lists the measurements the options switch off.
func bmxOff(o map[string]string) []string {
	var off []string
	if bmxOpts(o).Pressure == bmxx80.Off {
		off = append(off, "pressure")
	}
	if bmxOpts(o).Humidity == bmxx80.Off {
		off = append(off, "humidity")
	}
	return off
}

func oversampling(v string) bmxx80.Oversampling {
	switch v {
	case "1":
		return bmxx80.O1x
	case "2":
		return bmxx80.O2x
	case "4":
		return bmxx80.O4x
	case "8":
		return bmxx80.O8x
	case "16":
		return bmxx80.O16x
	}
	return bmxx80.Off
}

// bmxNormal reports whether the options run the chip in normal mode.
func bmxNormal(o map[string]string) bool { return o["mode"] != "forced" }

// bmxConversion is the longest a conversion with opts takes (BME280
// datasheet 9.1, t_measure,max).
func bmxConversion(opts bmxx80.Opts) time.Duration {
	us := 1250
	if opts.Temperature != bmxx80.Off {
		us += 2300 * osValue(opts.Temperature)
	}
	if opts.Pressure != bmxx80.Off {
		us += 2300*osValue(opts.Pressure) + 575
	}
	if opts.Humidity != bmxx80.Off {
		us += 2300*osValue(opts.Humidity) + 575
	}
	return time.Duration(us) * time.Microsecond
}

// osValue is the number of samples an oversampling setting takes.
func osValue(o bmxx80.Oversampling) int {
	if o == bmxx80.Off {
		return 0
	}
	return 1 << (o - bmxx80.O1x)
}

func bmxOpts(o map[string]string) bmxx80.Opts {
	get := func(k, def string) string {
		if v, ok := o[k]; ok {
			return v
		}
		if v, ok := o["oversampling"]; ok {
			return v
		}
		return def
	}
	opts := bmxx80.Opts{
		Temperature: oversampling(get("temperature_oversampling", "4")),
		Pressure:    oversampling(get("pressure_oversampling", "4")),
		Humidity:    oversampling(get("humidity_oversampling", "4")),
	}
	switch o["filter"] {
	case "2":
		opts.Filter = bmxx80.F2
	case "4":
		opts.Filter = bmxx80.F4
	case "8":
		opts.Filter = bmxx80.F8
	case "16":
		opts.Filter = bmxx80.F16
	}
	if s := o["standby"]; s != "" {
		opts.Standby, _ = time.ParseDuration(s)
	}
	return opts
}

type bmxDev struct {
	d      *bmxx80.Dev
	c      i2c.Dev
	isBME  bool
	normal bool // normal mode: the chip converts on its own
	opts   bmxx80.Opts
	// want is ctrl_hum, ctrl_meas and config as programmed at init; a
	// chip that browned out reads back its reset values instead.
	want [4]byte
	buf  [4]byte
}

// ErrConfigLost means a chip no longer holds the configuration gatewayd
// programmed: it was reset (brown-out, ESD) behind the driver's back.
var ErrConfigLost = errors.New("chip lost its configuration (reset?)")

// openBmx opens a BME280/BMP280 sampled every iv.
//
// Normal mode is the default: a reading is one register read with no wait,
// so the sensors of a round are read, and their round is posted, on the
// tick itself (forced mode waits for each conversion: another wake-up of
// the board per round, and 8-100 ms of latency). The standby is chosen so
// that a conversion ends between any two readings; the reading's stamp is
// the read, the conversion is at most standby + conversion time older.
// periph's bmxx80 runs normal mode only with an IIR filter; without one
// configured the filter is switched off again after periph's init, so the
// values are the chip's unfiltered conversions, as in forced mode.
func openBmx(b i2c.Bus, addr uint16, o map[string]string, iv time.Duration, isBME bool) (device, error) {
	opts := bmxOpts(o)
	if !isBME {
		opts.Humidity = bmxx80.Off
	}
	normal := bmxNormal(o)
	unfiltered := normal && opts.Filter == bmxx80.NoFilter
	if normal {
		if opts.Standby == 0 {
			opts.Standby = max(iv-bmxConversion(opts), 500*time.Microsecond)
		}
		if unfiltered {
			opts.Filter = bmxx80.F2 // periph's condition for normal mode; switched off below
		}
	} else {
		opts.Filter, opts.Standby = bmxx80.NoFilter, 0
	}
	d, err := bmxx80.NewI2C(b, addr, &opts)
	if err != nil {
		return nil, err
	}
	x := &bmxDev{d: d, c: i2c.Dev{Bus: b, Addr: addr}, isBME: isBME, normal: normal, opts: opts}
	// The driver refuses an unexpected chip id but accepts a BMP280 where
	// a BME280 was configured: humidity would silently be missing.
	var id [1]byte
	if err := x.c.Tx([]byte{0xD0}, id[:]); err != nil {
		return nil, fmt.Errorf("read chip id: %w", err)
	}
	if isBME && id[0] != 0x60 {
		return nil, fmt.Errorf("chip id %#02x is not a BME280 (0x60); a BMP280 (0x58) has no humidity: use driver bmp280", id[0])
	}
	if err := x.c.Tx([]byte{0xF2}, x.want[:]); err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	if unfiltered {
		// config is written in sleep mode (writes in normal mode may be
		// ignored, datasheet 5.4.6), ctrl_meas last (5.4.5).
		meas, cfg := x.want[2], x.want[3]&^(7<<2)
		if err := x.c.Tx([]byte{0xF4, meas &^ 3, 0xF5, cfg, 0xF4, meas}, nil); err != nil {
			return nil, fmt.Errorf("switch the filter off: %w", err)
		}
		x.want[3] = cfg
	}
	if normal {
		// Until the first conversion ends the output registers hold their
		// reset values (0x80000), which compensate to plausible-looking
		// numbers (70 %RH, 820 hPa): wait for it, once per open.
		time.Sleep(bmxConversion(opts))
	}
	return x, nil
}

func (x *bmxDev) read(_ context.Context, v []float64) error {
	var e physic.Env
	if err := x.d.Sense(&e); err != nil {
		return err
	}
	// One more transaction checks ctrl_hum/ctrl_meas/config: after a reset
	// the chip would go on answering with skipped (humidity) or stale
	// (normal mode) values that look plausible.
	if err := x.c.Tx([]byte{0xF2}, x.buf[:]); err != nil {
		return fmt.Errorf("read configuration: %w", err)
	}
	meas, want := x.buf[2], x.want[2]
	if !x.normal {
		meas, want = meas&^3, want&^3 // forced mode: mode bits return to sleep
	}
	if (x.isBME && x.buf[0]&7 != x.want[0]&7) || meas != want || x.buf[3]&^2 != x.want[3]&^2 {
		return ErrConfigLost
	}
	v[0] = celsius(e.Temperature)
	if x.isBME {
		v[1] = percentRH(e.Humidity)
		v[2] = hPa(e.Pressure)
	} else {
		v[1] = hPa(e.Pressure)
	}
	if x.opts.Pressure == bmxx80.Off {
		v[len(v)-1] = math.NaN()
	}
	if x.isBME && x.opts.Humidity == bmxx80.Off {
		v[1] = math.NaN()
	}
	return nil
}

func (x *bmxDev) close() error { return x.d.Halt() }
