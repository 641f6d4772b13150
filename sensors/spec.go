package sensors

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"periph.io/x/conn/v3/i2c"

	"gatewayd/internal/reading"
	"gatewayd/sensors/emul"
)

// Spec is one configured sensor.
type Spec struct {
	Name    string // unique sensor name; used in logs and default property names
	Driver  string // see DriverNames: bme280 bmp280 aht20 scd4x hdc302x mcp9808 tmp102 sht3x sht4x ds18b20
	Bus     string // "/dev/i2c-1" or "1", or "emulated" / "emulated:<name>"; unused for ds18b20 (except "emulated")
	Address uint16 // 7-bit I²C address; 0 = the driver's default address
	Mux     *Mux   // optional TCA9548A in front of the chip
	// Interval is the sampling interval; 0 = DefaultInterval. The first
	// sample is taken at once, the next ones on the clock's multiples of
	// Interval, so sensors sharing an interval sample together.
	Interval time.Duration
	// Properties maps measurement -> property id. Nil or empty: every
	// measurement of the driver, named "<name>_<measurement>". When set,
	// only the listed measurements are sent.
	Properties map[string]string
	// Options are driver options (see README.md), validated by New. Every
	// driver also takes "<measurement>_resolution" (a step in the
	// measurement's unit, or "full"), which overrides the chip's resolution
	// the values are kept and sent at.
	Options map[string]string
	// Emulate holds, for emulated buses, the values the emulated chip
	// reports (measurement -> value); missing ones get a plausible default.
	// The key EmulateHangAfter wedges the chip's bus after that many seconds.
	Emulate map[string]float64
	// Device is the ds18b20's 1-Wire id "28-xxxxxxxxxxxx"; empty = the only
	// one present.
	Device string
}

// Mux is a TCA9548A (PCA9548A) I²C multiplexer in front of a chip.
type Mux struct {
	Address uint16 // 0x70..0x77; 0 = 0x70
	Channel int    // 0..7
}

// Emulate keys that script a fault into an emulated chip, that many
// seconds after the bus is built, to try the watchdog, the stop bound and
// `gatewayd status` without hardware.
const (
	// EmulateHangAfter: transfers hang for good (a wedged I²C read).
	EmulateHangAfter = "hang_after"
	// EmulateFailAfter: the chip stops acknowledging (unplugged, dead).
	EmulateFailAfter = "fail_after"
)

var emulateFaults = map[string]emul.Fault{EmulateHangAfter: emul.Hang, EmulateFailAfter: emul.NACK}

// MinInterval and MaxInterval bound a configured sensor's sampling
// interval (Check). New itself runs any positive interval (tests sample
// every few milliseconds).
const (
	MinInterval = 100 * time.Millisecond
	MaxInterval = 24 * time.Hour
)

// DefaultBus is the I²C bus a configured sensor is on unless it says, and
// DefaultMuxAddress a TCA9548A's address unless set.
const (
	DefaultBus        = "/dev/i2c-1"
	DefaultMuxAddress = 0x70
)

// DefaultInterval is the sampling interval of a Spec whose Interval is 0.
const DefaultInterval = 10 * time.Second

// DefaultStuckAfter is how long values may stay bit-for-bit identical before
// the sensor is flagged as stuck when Options.StuckAfter is 0. Real chips
// move their last digit within minutes even in a still room; an hour of
// identical values is a frozen chip.
const DefaultStuckAfter = time.Hour

// Options configure a Set. The zero value is usable.
type Options struct {
	// Logger receives the sensor layer's logs (component=sensors); nil:
	// slog.Default().
	Logger *slog.Logger
	// OpenBus opens an I²C bus by name. Nil: names "emulated" and
	// "emulated:*" get an emulated bus holding the chips of the specs on
	// that bus; anything else is opened with periph's host drivers
	// (host.Init + i2creg.Open). Buses returned by OpenBus that implement
	// io.Closer are closed by Set.Close.
	OpenBus func(name string) (i2c.Bus, error)
	// Stamp dates a reading the moment its chip was read; it is called
	// from every sensor's loop concurrently. Nil: time.Now() in UTC,
	// Synced=true, Mono and BootID left empty.
	Stamp func() reading.Stamp
	// Beat is called every BeatEvery while Run runs and no sensor loop has
	// been inside one chip access for longer than HangAfter: a watchdog
	// heartbeat that stops when a driver hangs. Nil: none.
	Beat func()
	// Quiet is called when a sampling round is complete: every sensor has
	// appended its sample (or failed) and the next sample of any sensor is
	// d away, so nothing will be appended for d. The uplink uses it to send
	// a round at once when waiting out its max_delay could not add another
	// sample to the message. Called from the sensors' loops. Nil: none.
	Quiet func(d time.Duration)
	// W1Root is the 1-Wire sysfs devices directory; "" = /sys/bus/w1/devices.
	W1Root string
	// StuckAfter is how long unchanged values make a sensor stuck;
	// 0 = DefaultStuckAfter, negative = never.
	StuckAfter time.Duration
	// BackoffMin and BackoffMax bound the wait before re-initialising a
	// failed sensor (doubling from Min up to Max); 0 = 1 s and 2 min.
	BackoffMin, BackoffMax time.Duration
	// LogEvery is the least time between two error logs of one sensor
	// (the ones in between are counted and summarised); 0 = 1 min.
	LogEvery time.Duration
	// HangAfter is how long one chip access may take before Beat stops
	// being called; 0 = 1 min.
	HangAfter time.Duration
	// BeatEvery is how often Beat is called while alive; 0 = 5 s. Each
	// wake-up costs CPU on an otherwise idle board, so keep it well inside
	// the watchdog's bound rather than as short as possible.
	BeatEvery time.Duration
}

// SpecError is a configuration mistake in one Spec.
type SpecError struct {
	Index  int    // position of the spec
	Sensor string // its Name (may be empty)
	Key    string // the field or option at fault, e.g. "address", "options.filter"
	Msg    string
}

func (e *SpecError) Error() string {
	name := e.Sensor
	if name == "" {
		name = fmt.Sprintf("#%d", e.Index+1)
	}
	return fmt.Sprintf("sensor %q: %s: %s", name, e.Key, e.Msg)
}

// Measurements lists what a driver measures, in the order it reports them.
func Measurements(driver string) ([]string, error) {
	d, ok := drivers[driver]
	if !ok {
		return nil, fmt.Errorf("unknown driver %q (known: %s)", driver, strings.Join(DriverNames(), ", "))
	}
	out := make([]string, len(d.meas))
	for i, m := range d.meas {
		out[i] = m.name
	}
	return out, nil
}

// DriverNames lists the supported drivers.
func DriverNames() []string {
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func isEmulated(bus string) bool {
	return bus == "emulated" || strings.HasPrefix(bus, "emulated:")
}

// isW1ID reports whether s is a 1-Wire sysfs device id: two lower-case hex
// digits of family, a dash, twelve of serial ("28-0316a2795aff").
func isW1ID(s string) bool {
	if len(s) != 15 || s[2] != '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i == 2 {
			continue
		}
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// validate checks one spec and returns it with defaults filled in.
func validate(i int, sp Spec) (Spec, *driver, error) {
	bad := func(key, format string, a ...any) error {
		return &SpecError{Index: i, Sensor: sp.Name, Key: key, Msg: fmt.Sprintf(format, a...)}
	}
	if strings.TrimSpace(sp.Name) == "" {
		return sp, nil, bad("name", "is empty")
	}
	d, ok := drivers[sp.Driver]
	if !ok {
		return sp, nil, bad("driver", "unknown driver %q (known: %s)", sp.Driver, strings.Join(DriverNames(), ", "))
	}
	if sp.Interval < 0 {
		return sp, nil, bad("interval", "is negative (%s)", sp.Interval)
	}
	if sp.Interval == 0 {
		sp.Interval = DefaultInterval
	}
	if d.oneWire {
		if sp.Address != 0 || sp.Mux != nil {
			return sp, nil, bad("address", "a 1-Wire sensor has no I²C address or multiplexer")
		}
		if sp.Device != "" && !isW1ID(sp.Device) {
			return sp, nil, bad("device", "%q is not a 1-Wire id like 28-0316a2791dff", sp.Device)
		}
	} else {
		if sp.Device != "" {
			return sp, nil, bad("device", "only 1-Wire sensors (ds18b20) take a device id")
		}
		if strings.TrimSpace(sp.Bus) == "" {
			return sp, nil, bad("bus", `is empty (use "/dev/i2c-1", or "emulated" to run without hardware)`)
		}
		// "1" and "I2C1" name the same bus as "/dev/i2c-1": one name, so one
		// handle and one address book per bus.
		if n, err := strconv.Atoi(strings.TrimPrefix(sp.Bus, "I2C")); err == nil && n >= 0 {
			sp.Bus = "/dev/i2c-" + strconv.Itoa(n)
		}
		if sp.Address == 0 {
			sp.Address = d.addrs[0]
		}
		okAddr := false
		for _, a := range d.addrs {
			okAddr = okAddr || a == sp.Address
		}
		if !okAddr {
			return sp, nil, bad("address", "%#02x is not an address of the %s (allowed: %s)", sp.Address, sp.Driver, hexList(d.addrs))
		}
		if sp.Mux != nil {
			m := *sp.Mux
			if m.Address == 0 {
				m.Address = DefaultMuxAddress
			}
			if m.Address < 0x70 || m.Address > 0x77 {
				return sp, nil, bad("mux.address", "%#02x is outside the TCA9548A's 0x70..0x77", m.Address)
			}
			if m.Channel < 0 || m.Channel > 7 {
				return sp, nil, bad("mux.channel", "%d is outside 0..7", m.Channel)
			}
			if m.Address == sp.Address {
				return sp, nil, bad("mux.address", "%#02x is the chip's own address", m.Address)
			}
			sp.Mux = &m
		}
	}
	for k := range sp.Properties {
		if d.index(k) < 0 {
			return sp, nil, bad("properties."+k, "the %s does not measure %q (it measures %s)", sp.Driver, k, d.measList())
		}
		if strings.TrimSpace(sp.Properties[k]) == "" {
			return sp, nil, bad("properties."+k, "property id is empty")
		}
	}
	for k := range sp.Emulate {
		if _, fault := emulateFaults[k]; fault {
			if v := sp.Emulate[k]; !(v >= 0 && v <= 86400) {
				return sp, nil, bad("emulate."+k, "must be seconds between 0 and 86400, not %v", v)
			}
			continue
		}
		if d.index(k) < 0 {
			return sp, nil, bad("emulate."+k, "the %s does not measure %q (it measures %s)", sp.Driver, k, d.measList())
		}
	}
	keys := make([]string, 0, len(sp.Options))
	for k := range sp.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if m, isRes := strings.CutSuffix(k, resolutionSuffix); isRes && d.index(m) >= 0 {
			if _, err := parseResolution(sp.Options[k]); err != nil {
				return sp, nil, bad("options."+k, "%v", err)
			}
			continue
		}
		o, ok := d.options[k]
		if !ok {
			return sp, nil, bad("options."+k, "unknown option for %s (known: %s)", sp.Driver, d.optionList())
		}
		if err := o.check(sp.Options[k]); err != nil {
			return sp, nil, bad("options."+k, "%v", err)
		}
	}
	if d.checkOpts != nil {
		if key, err := d.checkOpts(sp.Options); err != nil {
			return sp, nil, bad("options."+key, "%v", err)
		}
	}
	if d.off != nil {
		for _, m := range d.off(sp.Options) {
			if _, ok := sp.Properties[m]; ok {
				return sp, nil, bad("properties."+m, "%s is switched off by the options but listed to be sent", m)
			}
		}
	}
	return sp, d, nil
}

func hexList(as []uint16) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = fmt.Sprintf("%#02x", a)
	}
	return strings.Join(s, ", ")
}

// Check validates configured specs: everything New checks, and the bounds
// a configuration must respect (MinInterval..MaxInterval). It returns the
// first problem as a *SpecError, or nil.
func Check(specs []Spec) error {
	for i, sp := range specs {
		if iv := sp.Interval; iv != 0 && (iv < MinInterval || iv > MaxInterval) {
			return &SpecError{Index: i, Sensor: sp.Name, Key: "interval",
				Msg: fmt.Sprintf("must be between %s and %s, not %s", MinInterval, MaxInterval, iv)}
		}
	}
	s, err := New(specs, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	return s.Close(context.Background())
}
