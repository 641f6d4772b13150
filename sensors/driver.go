package sensors

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"gatewayd/sensors/emul"
)

// measurement is one quantity a driver reports, with the chip's physical
// range: a value outside it cannot come from a working chip and is rejected.
type measurement struct {
	name     string
	unit     string
	min, max float64
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
	// openW1 opens a 1-Wire sensor (oneWire drivers only).
	openW1 func(s *Set, sp Spec) (device, error)
	open   func(b i2c.Bus, addr uint16, opts map[string]string) (device, error)
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
	if len(d.options) == 0 {
		return "none"
	}
	s := make([]string, 0, len(d.options))
	for k := range d.options {
		s = append(s, k)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
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
