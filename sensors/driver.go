package sensors

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"gatewayd/sensors/emul"
)

// measurement is one quantity a driver reports, with the chip's physical
// range (a value outside it cannot come from a working chip and is
// rejected) and the resolution its values are kept and sent at by default:
// the chip's own step where it is a binary one (0.0625 °C), else the
// decimal step at or above the conversion step and well inside the
// accuracy (0.01 °C), from the datasheet named in the driver's file.
type measurement struct {
	name     string
	unit     string
	min, max float64
	res      float64
}

// resolutionSuffix makes the option that overrides a measurement's
// resolution: "pressure_resolution" = "0.1" sends pressure at 0.1 hPa.
const resolutionSuffix = "_resolution"

// maxResolution bounds a configured resolution: coarser than this is a typo.
const maxResolution = 1000

// parseResolution reads a resolution option: a step in the measurement's
// unit ("0.1", "0.05", "1"), or "0" or "full" for full precision.
func parseResolution(v string) (float64, error) {
	if v == "full" {
		return 0, nil
	}
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(r) || math.IsInf(r, 0) {
		return 0, fmt.Errorf("%q is not a step like 0.1 or 0.01 (or \"full\" for full precision)", v)
	}
	if r != 0 && (r < 1e-6 || r > maxResolution) {
		return 0, fmt.Errorf("%g is outside 0.000001..%d (0 or \"full\": full precision)", r, maxResolution)
	}
	return r, nil
}

// device is an opened chip.
type device interface {
	// read measures once and stores every measurement of the driver, in the
	// driver's order, into v.
	read(ctx context.Context, v []float64) error
	// close releases the chip (never the bus).
	close() error
}

// option is one driver option.
type option struct {
	help  string
	def   string
	check func(string) error
}

// driver describes one supported chip.
type driver struct {
	name    string
	chip    string // marketing name, for logs and the README
	meas    []measurement
	addrs   []uint16 // allowed addresses, default first
	oneWire bool
	options map[string]option
	// checkOpts validates combinations of options; it returns the key at fault.
	checkOpts func(opts map[string]string) (string, error)
	// off lists the measurements the options switch off (never sent).
	off func(opts map[string]string) []string
	// res returns measurement i's default resolution under the options;
	// nil: meas[i].res.
	res func(opts map[string]string, i int) float64
	// openW1 opens a 1-Wire sensor (oneWire drivers only).
	openW1 func(s *Set, sp Spec) (device, error)
	open   func(b i2c.Bus, addr uint16, opts map[string]string, interval time.Duration) (device, error)
	// byInterval: open programs the chip for the sampling interval; a
	// new interval opens it again.
	byInterval bool
	// emulate builds the emulated chip for a spec.
	emulate func(sp Spec) (emul.Chip, error)
}

func (d *driver) index(m string) int {
	for i, x := range d.meas {
		if x.name == m {
			return i
		}
	}
	return -1
}

func (d *driver) measList() string {
	s := make([]string, len(d.meas))
	for i, m := range d.meas {
		s[i] = m.name
	}
	return strings.Join(s, ", ")
}

func (d *driver) optionList() string {
	s := make([]string, 0, len(d.options)+len(d.meas))
	for k := range d.options {
		s = append(s, k)
	}
	for _, m := range d.meas {
		s = append(s, m.name+resolutionSuffix)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// resolution returns the resolution measurement i is kept and sent at: the
// "<measurement>_resolution" option if set, else the chip's under opts.
func (d *driver) resolution(opts map[string]string, i int) float64 {
	if v, ok := opts[d.meas[i].name+resolutionSuffix]; ok {
		if r, err := parseResolution(v); err == nil {
			return r
		}
	}
	if d.res != nil {
		return d.res(opts, i)
	}
	return d.meas[i].res
}

// opt returns the option's value or its default.
func (d *driver) opt(opts map[string]string, key string) string {
	if v, ok := opts[key]; ok {
		return v
	}
	return d.options[key].def
}

// drivers is the fixed table of supported chips; it is never modified.
var drivers = map[string]*driver{}

func register(d *driver) *driver {
	drivers[d.name] = d
	return d
}

func choice(help, def string, allowed ...string) option {
	return option{help: help, def: def, check: func(v string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
	}}
}

func durationOpt(help, def string, min, max time.Duration) option {
	return option{help: help, def: def, check: func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 500ms or 1s", v)
		}
		if d < min || d > max {
			return fmt.Errorf("%s is outside %s..%s", d, min, max)
		}
		return nil
	}}
}

// Unit conversions out of periph's fixed-point physic types.
func celsius(t physic.Temperature) float64 {
	return float64(t-physic.ZeroCelsius) / float64(physic.Celsius)
}
func percentRH(h physic.RelativeHumidity) float64 { return float64(h) / float64(physic.PercentRH) }
func hPa(p physic.Pressure) float64               { return float64(p) / float64(100*physic.Pascal) }

// emulValues applies a spec's Emulate values to a chip.
func emulValues(c emul.Chip, sp Spec) (emul.Chip, error) {
	keys := make([]string, 0, len(sp.Emulate))
	for k := range sp.Emulate {
		if _, fault := emulateFaults[k]; !fault {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := c.Set(k, sp.Emulate[k]); err != nil {
			return nil, err
		}
	}
	return c, nil
}
