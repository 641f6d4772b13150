package sensors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"

	"gatewayd/internal/reading"
	"gatewayd/internal/tick"
)

// Set is a group of configured sensors sampled together.
type Set struct {
	log     *slog.Logger
	opts    Options
	sensors []*sensor
	byName  map[string]*sensor

	mu      sync.Mutex // guards the fields below
	buses   map[string]i2c.Bus
	closers []io.Closer
	muxes   map[muxKey]*muxState
	w1      map[string]fs.FS
	running bool
	closed  bool
	stop    context.CancelFunc // ends the loops Open started
	wg      sync.WaitGroup     // the loops Open started
	loops   map[*sensor]bool   // loops still running, for naming the wedged
}

// Result is one sensor's outcome in ReadOnce.
type Result struct {
	Sensor string
	// Sample is what the chip answered (no values when Err is set); its ID
	// is 0, as it was never buffered.
	Sample reading.Sample
	Err    error
}

// SensorStats are one sensor's counters since New.
type SensorStats struct {
	Name     string
	Driver   string
	Taken    uint64    // samples read, accepted and handed on
	Failed   uint64    // attempts that failed (bus error, absent chip, bad CRC, lost configuration)
	Rejected uint64    // samples read but withheld: implausible or stuck values
	Stuck    bool      // values unchanged for StuckAfter; withheld until they move
	LastErr  string    // last failure or rejection, "" if none yet
	LastOK   time.Time // when the last accepted sample was taken
	Reinits  uint64    // times the chip was re-initialised after a failure
}

// New validates specs and returns a Set. It opens no bus and talks to no
// chip: a sensor that is missing fails (and is retried) when sampled.
// Validation errors are *SpecError.
func New(specs []Spec, o Options) (*Set, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.StuckAfter == 0 {
		o.StuckAfter = DefaultStuckAfter
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 2 * time.Minute
	}
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.LogEvery <= 0 {
		o.LogEvery = time.Minute
	}
	if o.BeatEvery <= 0 {
		o.BeatEvery = 5 * time.Second
	}
	if o.HangAfter <= 0 {
		o.HangAfter = time.Minute
	}
	if o.W1Root == "" {
		o.W1Root = "/sys/bus/w1/devices"
	}
	if o.Stamp == nil {
		o.Stamp = func() reading.Stamp { return reading.Stamp{Time: time.Now().UTC(), Synced: true} }
	}
	s := &Set{
		log:    o.Logger.With("component", "sensors"),
		opts:   o,
		byName: map[string]*sensor{},
		buses:  map[string]i2c.Bus{},
		muxes:  map[muxKey]*muxState{},
		w1:     map[string]fs.FS{},
	}
	type place struct {
		bus  string
		mux  Mux
		addr uint16
	}
	used := map[place]string{}
	w1Roots := map[string][]int{} // 1-Wire root -> spec indexes
	for i, sp := range specs {
		sp, d, err := validate(i, sp)
		if err != nil {
			return nil, err
		}
		if other, dup := s.byName[sp.Name]; dup {
			return nil, &SpecError{Index: i, Sensor: sp.Name, Key: "name",
				Msg: fmt.Sprintf("%q is already the name of sensor[%d]; names must be unique", sp.Name, slices.Index(s.sensors, other))}
		}
		if d.oneWire {
			root := o.W1Root
			if isEmulated(sp.Bus) {
				root = sp.Bus
			}
			w1Roots[root] = append(w1Roots[root], i)
			for _, j := range w1Roots[root] {
				if len(w1Roots[root]) > 1 && specs[j].Device == "" {
					return nil, &SpecError{Index: j, Sensor: specs[j].Name, Key: "device",
						Msg: "is empty but several ds18b20 are configured: give each its 28-… id (see ls /sys/bus/w1/devices)"}
				}
				if j != i && specs[j].Device == sp.Device {
					return nil, &SpecError{Index: i, Sensor: sp.Name, Key: "device", Msg: fmt.Sprintf("%s is already used by sensor %q", sp.Device, specs[j].Name)}
				}
			}
		}
		if !d.oneWire {
			p := place{bus: sp.Bus, addr: sp.Address}
			if sp.Mux != nil {
				p.mux = *sp.Mux
			}
			if other, ok := used[p]; ok {
				return nil, &SpecError{Index: i, Sensor: sp.Name, Key: "address",
					Msg: fmt.Sprintf("%#02x on %s is already used by sensor %q", sp.Address, sp.Bus, other)}
			}
			used[p] = sp.Name
		}
		se := newSensor(s, sp, d)
		s.sensors = append(s.sensors, se)
		s.byName[sp.Name] = se
	}
	return s, nil
}

// Names lists the sensors in configuration order.
func (s *Set) Names() []string {
	out := make([]string, len(s.sensors))
	for i, se := range s.sensors {
		out[i] = se.spec.Name
	}
	return out
}

// Open starts sampling every sensor on its own interval, appending the
// samples to sink, until Close. Failures never end a loop. It fails if the
// Set is already open or closed.
func (s *Set) Open(sink reading.Sink) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running || s.closed {
		return errors.New("sensors: set already running or closed")
	}
	s.running = true
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.loops = map[*sensor]bool{}
	for _, se := range s.sensors {
		s.loops[se] = true
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			se.loop(ctx, sink)
			s.mu.Lock()
			delete(s.loops, se)
			s.mu.Unlock()
		}()
	}
	if s.opts.Beat != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.beat(ctx)
		}()
	}
	s.log.Info("sampling", "sensors", len(s.sensors))
	return nil
}

// Run is Open, then Close once ctx is done (waiting for every loop).
func (s *Set) Run(ctx context.Context, sink reading.Sink) error {
	if err := s.Open(sink); err != nil {
		return err
	}
	<-ctx.Done()
	s.stopLoops(context.Background())
	s.mu.Lock()
	s.running = false
	s.mu.Unlock()
	return nil
}

// stopLoops ends the loops Open started and waits for them until ctx is
// done. A loop still inside its driver then is abandoned: it is named in
// the log and the error, and its chip is left alone (closing it would wait
// on the very access that hangs).
func (s *Set) stopLoops(ctx context.Context) error {
	s.mu.Lock()
	stop := s.stop
	s.stop = nil
	s.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	var wedged []string
	for se := range s.loops {
		se.abandoned.Store(true)
		wedged = append(wedged, se.spec.Name)
	}
	s.mu.Unlock()
	slices.Sort(wedged)
	s.log.Error("sensor loops did not stop in time; abandoning them (their chips stay open)", "sensors", wedged)
	return fmt.Errorf("sensors %v did not stop in time (wedged in their drivers): abandoned", wedged)
}

// beat calls Options.Beat every BeatEvery, on the ticks of the clock
// (shared with the sampling rounds and the uplink's beat, see tick), while
// no loop is hung in a driver.
func (s *Set) beat(ctx context.Context) {
	t := tick.New(s.opts.BeatEvery)
	defer t.Stop()
	warned := false
	for {
		if hung := s.hung(); hung == "" {
			s.opts.Beat()
			warned = false
		} else if !warned {
			s.log.Error("sensor stuck inside its driver; withholding the watchdog heartbeat", "sensor", hung, "after", s.opts.HangAfter)
			warned = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			t.Next()
		}
	}
}

func (s *Set) hung() string {
	for _, se := range s.sensors {
		se.smu.Lock()
		b := se.busySince
		se.smu.Unlock()
		if !b.IsZero() && time.Since(b) > s.opts.HangAfter {
			return se.spec.Name
		}
	}
	return ""
}

// ReadOnce reads every sensor once, concurrently, and reports each outcome
// in configuration order: what `gatewayd read` prints. Implausible values
// are an error here.
func (s *Set) ReadOnce(ctx context.Context) []Result {
	rs := make([]Result, len(s.sensors))
	var wg sync.WaitGroup
	for i, se := range s.sensors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			smp, _, err := se.sample(ctx)
			rs[i] = Result{Sensor: se.spec.Name, Sample: smp, Err: err}
		}()
	}
	wg.Wait()
	return rs
}

// SetInterval changes a sensor's sampling interval; a running loop picks it
// up at once.
func (s *Set) SetInterval(name string, d time.Duration) error {
	se, ok := s.byName[name]
	if !ok {
		return fmt.Errorf("no sensor %q", name)
	}
	if d <= 0 {
		return fmt.Errorf("interval %s: must be positive", d)
	}
	se.smu.Lock()
	se.interval = d
	se.smu.Unlock()
	select {
	case se.wake <- struct{}{}:
	default:
	}
	return nil
}

// MinInterval is the shortest sampling interval that gives a sensor fresh
// data: its chip's conversion time at the configured options.
func (s *Set) MinInterval(name string) (time.Duration, bool) {
	se, ok := s.byName[name]
	if !ok {
		return 0, false
	}
	conv := conversion[se.drv.name]
	if conv == nil {
		return 0, true
	}
	// The options as the driver gets them: each conversion function
	// applies the defaults itself, as the driver does (a bme280's
	// "oversampling" stands for the three unset per-measurement keys).
	return conv(se.spec.Options), true
}

// Interval reports a sensor's sampling interval.
func (s *Set) Interval(name string) (time.Duration, bool) {
	se, ok := s.byName[name]
	if !ok {
		return 0, false
	}
	se.smu.Lock()
	defer se.smu.Unlock()
	return se.interval, true
}

// Stats reports every sensor's counters, in configuration order.
func (s *Set) Stats() []SensorStats {
	out := make([]SensorStats, len(s.sensors))
	for i, se := range s.sensors {
		se.smu.Lock()
		out[i] = se.stats
		se.smu.Unlock()
	}
	return out
}

// Shape is what one sensor produces: a sample every Interval carrying these
// values (measurement, property, unit, resolution; Value 0), unless the
// options switch a measurement off for some reads. It lets the daemon size
// the buffer without touching a chip.
type Shape struct {
	Sensor   string
	Driver   string
	Interval time.Duration
	Values   []reading.Value
}

// Shapes reports every sensor's Shape, in configuration order.
func (s *Set) Shapes() []Shape {
	out := make([]Shape, len(s.sensors))
	for i, se := range s.sensors {
		out[i] = Shape{Sensor: se.spec.Name, Driver: se.spec.Driver, Interval: se.currentInterval(),
			Values: append([]reading.Value(nil), se.tmpl...)}
	}
	return out
}

// Close stops the loops Open started, waiting for them until ctx is done,
// then releases the chips and closes the buses the Set opened. A loop wedged
// inside its driver when ctx ends is abandoned and named in the error; its
// chip is not touched, but its bus is closed (the kernel lets a blocked
// transfer finish on a closed file). Close never blocks past ctx on a
// wedged chip.
func (s *Set) Close(ctx context.Context) error {
	errs := []error{s.stopLoops(ctx)}
	for _, se := range s.sensors {
		if se.abandoned.Load() {
			continue
		}
		se.mu.Lock()
		if se.dev != nil {
			_ = se.dev.close()
			se.dev = nil
		}
		se.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed, s.running = true, false
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	s.buses = map[string]i2c.Bus{}
	return errors.Join(errs...)
}

// bus returns the named bus, opening it on first use.
func (s *Set) bus(name string) (i2c.Bus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("sensor set closed")
	}
	if b, ok := s.buses[name]; ok {
		return b, nil
	}
	var b i2c.Bus
	var err error
	switch {
	case s.opts.OpenBus != nil:
		b, err = s.opts.OpenBus(name)
	case isEmulated(name):
		var specs []Spec
		for _, se := range s.sensors {
			if se.spec.Bus == name && !se.drv.oneWire {
				specs = append(specs, se.spec)
			}
		}
		b, err = EmulatedBus(specs)
	default:
		b, err = openHostBus(name)
	}
	if err != nil {
		return nil, fmt.Errorf("open bus %s: %w", name, err)
	}
	if c, ok := b.(io.Closer); ok {
		s.closers = append(s.closers, c)
	}
	s.buses[name] = b
	return b, nil
}

// OpenBus opens a real I²C bus by name ("/dev/i2c-1", "I2C1" or "1")
// through periph's host drivers, for `gatewayd scan`; the caller closes it.
func OpenBus(name string) (i2c.BusCloser, error) {
	b, err := openHostBus(name)
	if err != nil {
		return nil, fmt.Errorf("open bus %s: %w", name, err)
	}
	return b, nil
}

func openHostBus(name string) (i2c.BusCloser, error) {
	// host.Init is idempotent; it registers periph's sysfs I²C buses as
	// "/dev/i2c-N" with the aliases "I2CN" and the number N.
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("periph host init: %w", err)
	}
	return i2creg.Open(name)
}

// sensor is one configured sensor and its loop's state.
type sensor struct {
	set  *Set
	spec Spec
	drv  *driver
	log  *slog.Logger
	sel  []int // indexes into drv.meas of the measurements sent
	// tmpl holds, for each entry of sel, the sample's value without its
	// number: measurement, property, unit and resolution.
	tmpl []reading.Value
	wake chan struct{}

	mu     sync.Mutex // serialises chip access: Run's loop vs ReadOnce
	dev    device
	devIv  time.Duration // the interval dev was opened for
	opened bool          // the chip was opened at least once
	vals   []float64

	abandoned atomic.Bool // Close gave up waiting for this loop

	smu        sync.Mutex // guards the fields below
	interval   time.Duration
	stats      SensorStats
	busySince  time.Time
	nextAt     time.Time // when the loop samples next (zero: not yet scheduled)
	last       []float64
	lastChange time.Time
	logged     time.Time // last error log
	suppressed int       // error logs skipped since
}

func newSensor(s *Set, sp Spec, d *driver) *sensor {
	se := &sensor{
		set: s, spec: sp, drv: d,
		log:      s.log.With("sensor", sp.Name, "driver", sp.Driver, "chip", d.chip),
		wake:     make(chan struct{}, 1),
		vals:     make([]float64, len(d.meas)),
		interval: sp.Interval,
		stats:    SensorStats{Name: sp.Name, Driver: sp.Driver},
	}
	off := map[string]bool{}
	if d.off != nil {
		for _, m := range d.off(sp.Options) {
			off[m] = true
		}
	}
	for i, m := range d.meas {
		if _, listed := sp.Properties[m.name]; listed || (len(sp.Properties) == 0 && !off[m.name]) {
			se.sel = append(se.sel, i)
			prop := sp.Properties[m.name]
			if prop == "" {
				prop = sp.Name + "_" + m.name
			}
			se.tmpl = append(se.tmpl, reading.Value{Measurement: m.name, Property: prop, Unit: m.unit,
				Resolution: d.resolution(sp.Options, i)})
		}
	}
	return se
}

// errRejected marks samples that were read but are not plausible.
var errRejected = errors.New("rejected")

// sample reads the chip once (opening it first if needed) and returns the
// sample of the selected measurements, stamped the moment the chip
// answered, and every raw value read. A sample whose selected measurements
// are all switched off has no values.
func (se *sensor) sample(ctx context.Context) (reading.Sample, []float64, error) {
	smp := reading.Sample{Sensor: se.spec.Name}
	se.mu.Lock()
	defer se.mu.Unlock()
	se.smu.Lock()
	se.busySince = time.Now()
	se.smu.Unlock()
	defer func() {
		se.smu.Lock()
		se.busySince = time.Time{}
		se.smu.Unlock()
	}()
	if err := ctx.Err(); err != nil {
		return smp, nil, err
	}
	iv := se.currentInterval()
	retune := false
	if se.dev != nil && se.drv.byInterval && se.devIv != iv {
		// The chip was programmed for another interval (a BME280's
		// standby in normal mode): program it for this one.
		_ = se.dev.close()
		se.dev, retune = nil, true
	}
	if se.dev == nil {
		dev, err := se.open(iv)
		if err != nil {
			if se.spec.Mux != nil {
				se.set.muxFailed(se.spec.Bus, *se.spec.Mux)
			}
			return smp, nil, fmt.Errorf("init: %w", err)
		}
		se.dev, se.devIv = dev, iv
		if se.opened && !retune {
			se.smu.Lock()
			se.stats.Reinits++
			se.smu.Unlock()
		}
		se.opened = true
	}
	err := se.dev.read(ctx, se.vals)
	stamp := se.set.opts.Stamp() // the moment the chip answered
	if err != nil {
		// Close and re-open next time: re-initialising is what brings a
		// reset or confused chip back (and the multiplexer in front of it).
		_ = se.dev.close()
		se.dev = nil
		if se.spec.Mux != nil {
			se.set.muxFailed(se.spec.Bus, *se.spec.Mux)
		}
		return smp, nil, err
	}
	vals := append([]float64(nil), se.vals...)
	for i, m := range se.drv.meas {
		v := vals[i]
		if math.IsNaN(v) {
			continue // switched off by the options, never sent
		}
		// A hair of margin: a chip at the edge of its range reads a
		// rounding step beyond it.
		margin := (m.max - m.min) / 1000
		if math.IsInf(v, 0) || v < m.min-margin || v > m.max+margin {
			return smp, vals, fmt.Errorf("%w: implausible %s %.6g %s (the chip measures %g..%g)", errRejected, m.name, v, m.unit, m.min, m.max)
		}
	}
	// The values keep the chip's full output; Resolution tells storage and
	// encoders where to stop, so nothing here rounds twice.
	smp.Stamp = stamp
	smp.Values = make([]reading.Value, 0, len(se.sel))
	for k, i := range se.sel {
		if math.IsNaN(vals[i]) {
			continue
		}
		v := se.tmpl[k]
		v.Value = vals[i]
		smp.Values = append(smp.Values, v)
	}
	return smp, vals, nil
}

// open initialises the chip through its driver, for sampling every iv.
func (se *sensor) open(iv time.Duration) (device, error) {
	if se.drv.oneWire {
		return se.drv.openW1(se.set, se.spec)
	}
	b, err := se.set.bus(se.spec.Bus)
	if err != nil {
		return nil, err
	}
	if se.spec.Mux != nil {
		b, err = se.set.muxPort(se.spec.Bus, b, *se.spec.Mux)
		if err != nil {
			return nil, err
		}
	}
	return se.drv.open(b, se.spec.Address, se.spec.Options, iv)
}

// loop is one sensor's sampling loop.
func (se *sensor) loop(ctx context.Context, sink reading.Sink) {
	fails := 0
	failing := false
	// A Wake, not a time.Timer: see tick.Wake.
	timer := tick.NewWake(0)
	defer timer.Stop()
	var start time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-se.wake:
			// New interval: the next sample is due at its next tick.
			if fails == 0 && !start.IsZero() {
				timer.Stop()
				w := tick.Until(time.Now(), se.currentInterval())
				timer.Reset(w)
				se.scheduled(w)
			}
			continue
		case <-timer.C:
		}
		start = time.Now()
		smp, vals, err := se.sample(ctx)
		if ctx.Err() != nil {
			return
		}
		// Sample on the ticks of the clock: sensors sharing an interval
		// stay in step, so a round is one wake-up and its samples share a
		// message (see package tick).
		wait := tick.Until(time.Now(), se.currentInterval())
		switch {
		case err == nil:
			fails = 0
			if stuck, first := se.checkStuck(vals); stuck {
				if first {
					se.dropDev()
				}
				break
			}
			if len(smp.Values) == 0 {
				break // every measurement switched off: nothing to send
			}
			if err := sink.Append(ctx, []reading.Sample{smp}); err != nil {
				if ctx.Err() != nil {
					return
				}
				se.logErr("append sample", err)
				break
			}
			se.smu.Lock()
			se.stats.Taken++
			se.stats.LastOK = smp.Time
			se.smu.Unlock()
		case errors.Is(err, errRejected):
			fails = 0
			se.smu.Lock()
			se.stats.Rejected++
			se.stats.LastErr = err.Error()
			se.smu.Unlock()
			se.logErr("reading rejected", err)
		default:
			fails++
			se.smu.Lock()
			se.stats.Failed++
			se.stats.LastErr = err.Error()
			se.smu.Unlock()
			wait = se.backoff(fails)
			se.logErr("read failed", err, "consecutive", fails, "retry_in", wait.Round(time.Millisecond))
		}
		if err == nil && failing {
			failing = false
			se.smu.Lock()
			se.logged, se.suppressed = time.Time{}, 0
			se.smu.Unlock()
			se.log.Info("sensor recovered")
		} else if err != nil && !errors.Is(err, errRejected) {
			failing = true
		}
		timer.Reset(max(0, wait))
		se.scheduled(wait)
		se.set.roundDone()
	}
}

// scheduled notes when the loop samples next.
func (se *sensor) scheduled(wait time.Duration) {
	se.smu.Lock()
	se.nextAt = time.Now().Add(max(0, wait))
	se.smu.Unlock()
}

// roundDone calls Options.Quiet once no loop is sampling: when every
// sensor's next sample is still ahead, the earliest of them says how long
// no sample will be appended. A loop whose time has come (its timer fired,
// or it is inside its driver, or it has not sampled yet) holds it back, so
// the last sensor of a round to finish is the one that tells.
func (s *Set) roundDone() {
	if s.opts.Quiet == nil {
		return
	}
	now := time.Now()
	var next time.Time
	for _, se := range s.sensors {
		se.smu.Lock()
		at := se.nextAt
		se.smu.Unlock()
		if !at.After(now) {
			return
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if !next.IsZero() {
		s.opts.Quiet(next.Sub(now))
	}
}

func (se *sensor) currentInterval() time.Duration {
	se.smu.Lock()
	defer se.smu.Unlock()
	return se.interval
}

// backoff is the capped exponential wait before the next attempt after
// fails consecutive failures.
func (se *sensor) backoff(fails int) time.Duration {
	o := se.set.opts
	d := o.BackoffMin
	for i := 1; i < fails && d < o.BackoffMax; i++ {
		d *= 2
	}
	return min(d, o.BackoffMax)
}

// logErr logs at most one error per LogEvery for this sensor, telling how
// many were left out in between: a dead sensor must not flood the log.
func (se *sensor) logErr(msg string, err error, args ...any) {
	se.smu.Lock()
	now := time.Now()
	if !se.logged.IsZero() && now.Sub(se.logged) < se.set.opts.LogEvery {
		se.suppressed++
		se.smu.Unlock()
		return
	}
	n := se.suppressed
	se.logged, se.suppressed = now, 0
	se.smu.Unlock()
	args = append(args, "err", err)
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	se.log.Warn(msg, args...)
}

// checkStuck tracks whether the values moved and reports whether they have
// been frozen for StuckAfter (the sample is then withheld) and whether they
// just became so (the chip is then re-initialised once, which is what
// unfreezes a latched-up BME280).
func (se *sensor) checkStuck(vals []float64) (stuck, first bool) {
	after := se.set.opts.StuckAfter
	now := time.Now()
	se.smu.Lock()
	defer se.smu.Unlock()
	moved := se.last == nil
	for i := range vals {
		if !moved && !(vals[i] == se.last[i] || (math.IsNaN(vals[i]) && math.IsNaN(se.last[i]))) {
			moved = true
		}
	}
	se.last = append(se.last[:0], vals...)
	if moved {
		se.lastChange = now
		if se.stats.Stuck {
			se.stats.Stuck = false
			se.log.Info("values moving again; stuck flag cleared")
		}
		return false, false
	}
	if after < 0 || now.Sub(se.lastChange) < after {
		return false, false
	}
	se.stats.Rejected++
	if se.stats.Stuck {
		return true, false
	}
	se.stats.Stuck = true
	se.stats.LastErr = fmt.Sprintf("values unchanged for %s: stuck", now.Sub(se.lastChange).Round(time.Millisecond))
	se.log.Warn("values frozen; withholding readings and re-initialising the chip", "unchanged_for", now.Sub(se.lastChange).Round(time.Millisecond))
	return true, true
}

// dropDev closes the chip so the next sample re-initialises it.
func (se *sensor) dropDev() {
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.dev != nil {
		_ = se.dev.close()
		se.dev = nil
	}
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
