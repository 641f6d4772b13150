package sensors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"

	"gatewayd/internal/reading"
	"gatewayd/sensors/emul"
)

// Chips behind a TCA9548A, through periph's pca9548, two of them at the
// same address on different channels; a dead multiplexer takes down only
// the sensors behind it.
func TestMuxRun(t *testing.T) {
	specs := []Spec{
		{Name: "left", Driver: "sht4x", Bus: "emulated", Mux: &Mux{Address: 0x71, Channel: 0}, Interval: 10 * time.Millisecond,
			Emulate: map[string]float64{"temperature": 10}},
		{Name: "right", Driver: "sht4x", Bus: "emulated", Mux: &Mux{Address: 0x71, Channel: 7}, Interval: 10 * time.Millisecond,
			Emulate: map[string]float64{"temperature": 30}},
		{Name: "direct", Driver: "tmp102", Bus: "emulated", Interval: 10 * time.Millisecond},
	}
	s, b := mustSet(t, specs, nil)
	k, _ := running(t, s)
	eventually(t, "readings from all three", func() bool {
		return len(k.of("left")) >= 6 && len(k.of("right")) >= 6 && len(k.of("direct")) >= 3
	})
	for name, want := range map[string]float64{"left": 10, "right": 30} {
		for _, r := range k.of(name) {
			if r.Measurement == "temperature" && (r.Value < want-0.01 || r.Value > want+0.06) {
				t.Fatalf("%s read %v, want %v: channels mixed up", name, r.Value, want)
			}
		}
	}
	b.Inject(0x71, emul.NACK)
	eventually(t, "both behind the mux failing", func() bool { return stat(s, "left").Failed >= 2 && stat(s, "right").Failed >= 2 })
	n := len(k.of("direct"))
	eventually(t, "direct sensor unaffected", func() bool { return len(k.of("direct")) >= n+5 })
	b.Inject(0x71, 0)
	l, r := stat(s, "left").Taken, stat(s, "right").Taken
	eventually(t, "recovery behind the mux", func() bool { return stat(s, "left").Taken > l+2 && stat(s, "right").Taken > r+2 })
}

// SetInterval takes effect in a running loop, both ways.
func TestSetInterval(t *testing.T) {
	s, _ := mustSet(t, []Spec{{Name: "t", Driver: "tmp102", Bus: "emulated", Interval: time.Hour}}, nil)
	k, _ := running(t, s)
	eventually(t, "the first sample (taken at once)", func() bool { return len(k.of("t")) == 1 })
	if err := s.SetInterval("t", 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	eventually(t, "faster sampling", func() bool { return len(k.of("t")) >= 10 })
	if d, ok := s.Interval("t"); !ok || d != 5*time.Millisecond {
		t.Fatalf("Interval = %v %v", d, ok)
	}
	s.SetInterval("t", time.Hour)
	time.Sleep(30 * time.Millisecond) // let a sample already due pass
	n := len(k.of("t"))
	time.Sleep(100 * time.Millisecond)
	if got := len(k.of("t")); got > n {
		t.Fatalf("%d samples after slowing to 1 h", got-n)
	}
	if s.SetInterval("nope", time.Second) == nil || s.SetInterval("t", 0) == nil {
		t.Fatal("bad SetInterval accepted")
	}
	if _, ok := s.Interval("nope"); ok {
		t.Fatal("Interval of an unknown sensor")
	}
}

// counting is a slog.Handler that counts records by level.
type counting struct {
	mu    sync.Mutex
	warns []string
}

func (c *counting) Enabled(context.Context, slog.Level) bool { return true }
func (c *counting) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		c.mu.Lock()
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
		c.warns = append(c.warns, b.String())
		c.mu.Unlock()
	}
	return nil
}
func (c *counting) WithAttrs(as []slog.Attr) slog.Handler { return &withAttrs{c, as} }
func (c *counting) WithGroup(string) slog.Handler         { return c }
func (c *counting) n() int                                { c.mu.Lock(); defer c.mu.Unlock(); return len(c.warns) }

type withAttrs struct {
	*counting
	as []slog.Attr
}

func (w *withAttrs) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(w.as...)
	return w.counting.Handle(ctx, r)
}
func (w *withAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{w.counting, append(append([]slog.Attr{}, w.as...), as...)}
}

// A sensor that is gone fails hundreds of times without flooding the log:
// one line per LogEvery, the rest counted; the lines carry the component
// and sensor.
func TestErrorLogsRateLimited(t *testing.T) {
	h := &counting{}
	b := emul.NewBus("emulated") // nothing on it
	o := fastOpts(b)
	o.Logger = slog.New(h)
	o.BackoffMin, o.BackoffMax = time.Microsecond, time.Microsecond
	o.LogEvery = 150 * time.Millisecond
	s, err := New([]Spec{{Name: "gone", Driver: "bme280", Bus: "emulated", Interval: time.Millisecond}}, o)
	if err != nil {
		t.Fatal(err)
	}
	_, stop := running(t, s)
	eventually(t, "many failures", func() bool { return stat(s, "gone").Failed >= 200 })
	time.Sleep(200 * time.Millisecond)
	stop()
	fails := stat(s, "gone").Failed
	if n := h.n(); n < 1 || n > 4 {
		t.Fatalf("%d warnings for %d failures; want one per 150 ms", n, fails)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !strings.Contains(h.warns[0], "component=sensors") || !strings.Contains(h.warns[0], "sensor=gone") {
		t.Errorf("log line lacks context: %s", h.warns[0])
	}
	if len(h.warns) > 1 && !strings.Contains(h.warns[1], "suppressed=") {
		t.Errorf("second line does not say how many were left out: %s", h.warns[1])
	}
}

// failingSink refuses appends.
type failingSink struct{ n atomic.Int64 }

func (f *failingSink) Append(context.Context, []reading.Sample) error {
	f.n.Add(1)
	return errors.New("disk full")
}

// A sink that fails does not stop sampling and is not the sensor's fault.
func TestSinkFailure(t *testing.T) {
	s, _ := mustSet(t, []Spec{{Name: "t", Driver: "tmp102", Bus: "emulated", Interval: 5 * time.Millisecond}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &failingSink{}
	done := make(chan error)
	go func() { done <- s.Run(ctx, f) }()
	eventually(t, "appends attempted", func() bool { return f.n.Load() >= 5 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := stat(s, "t"); st.Failed != 0 || st.Taken != 0 {
		t.Fatalf("stats %+v: refused appends are neither taken nor sensor failures", st)
	}
}

// hangBus blocks every transfer until released: a driver stuck in the bus.
type hangBus struct {
	*emul.Bus
	hang    atomic.Bool
	release chan struct{}
}

func (h *hangBus) Tx(addr uint16, w, r []byte) error {
	if h.hang.Load() {
		<-h.release
	}
	return h.Bus.Tx(addr, w, r)
}

// Beat is called while the loops make progress and withheld when one is
// stuck inside a driver for longer than HangAfter.
func TestBeatStopsWhenADriverHangs(t *testing.T) {
	specs := []Spec{{Name: "t", Driver: "tmp102", Bus: "emulated", Interval: 5 * time.Millisecond}}
	eb, err := EmulatedBus(specs)
	if err != nil {
		t.Fatal(err)
	}
	hb := &hangBus{Bus: eb, release: make(chan struct{})}
	var beats atomic.Int64
	o := fastOpts(hb)
	o.Beat = func() { beats.Add(1) }
	o.HangAfter = 100 * time.Millisecond
	s, err := New(specs, o)
	if err != nil {
		t.Fatal(err)
	}
	_, stop := running(t, s)
	eventually(t, "beats", func() bool { return beats.Load() >= 2 })
	hb.hang.Store(true)
	time.Sleep(700 * time.Millisecond) // HangAfter plus a beat period
	n := beats.Load()
	time.Sleep(1100 * time.Millisecond)
	if got := beats.Load(); got != n {
		t.Errorf("%d beats while the driver hung", got-n)
	}
	hb.hang.Store(false)
	close(hb.release)
	eventually(t, "beats again", func() bool { return beats.Load() > n })
	stop()
}

// New talks to no chip; Run twice is refused; Close closes the buses it
// opened and is safe after Run.
func TestLifecycle(t *testing.T) {
	b := emul.NewBus("emulated")
	opened := 0
	o := fastOpts(b)
	o.OpenBus = func(string) (i2c.Bus, error) { opened++; return b, nil }
	s, err := New([]Spec{{Name: "t", Driver: "tmp102", Bus: "emulated"}}, o)
	if err != nil {
		t.Fatal(err)
	}
	if opened != 0 || b.Transactions(0x48) != 0 {
		t.Fatal("New touched the bus")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx, &sink{}) }()
	eventually(t, "an attempt", func() bool { return stat(s, "t").Failed > 0 })
	if err := s.Run(ctx, &sink{}); err == nil {
		t.Fatal("second concurrent Run accepted")
	}
	cancel()
	<-done
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Tx(0x48, nil, make([]byte, 1)); !errors.Is(err, emul.ErrClosed) {
		t.Fatalf("bus not closed by Close: %v", err)
	}
	if opened != 1 {
		t.Fatalf("bus opened %d times", opened)
	}
}

// A multiplexer that power-cycles forgets its selected channel while
// periph's pca9548 still believes it set: the sensors behind it must come
// back anyway, each reading its own chip.
func TestMuxReset(t *testing.T) {
	specs := []Spec{
		{Name: "left", Driver: "tmp102", Bus: "emulated", Mux: &Mux{Address: 0x70, Channel: 2}, Interval: 5 * time.Millisecond,
			Emulate: map[string]float64{"temperature": 10}},
		{Name: "right", Driver: "tmp102", Bus: "emulated", Mux: &Mux{Address: 0x70, Channel: 3}, Interval: 5 * time.Millisecond,
			Emulate: map[string]float64{"temperature": 30}},
	}
	s, b := mustSet(t, specs, nil)
	// Alone behind the mux first: nobody else's channel switch would
	// repair a stale channel cache.
	s.SetInterval("right", time.Hour)
	k, _ := running(t, s)
	eventually(t, "readings", func() bool { return len(k.of("left")) >= 3 && len(k.of("right")) >= 1 })
	b.Reset(0x70)
	l := stat(s, "left").Taken
	eventually(t, "recovery of a lone sensor after a multiplexer reset", func() bool { return stat(s, "left").Taken > l+3 })
	s.SetInterval("right", 5*time.Millisecond)
	for i := 0; i < 3; i++ {
		b.Reset(0x70)
		l, r := stat(s, "left").Taken, stat(s, "right").Taken
		eventually(t, "recovery after a multiplexer reset", func() bool {
			return stat(s, "left").Taken > l+3 && stat(s, "right").Taken > r+3
		})
	}
	for name, want := range map[string]float64{"left": 10, "right": 30} {
		for _, r := range k.of(name) {
			if r.Value < want-0.01 || r.Value > want+0.07 {
				t.Fatalf("%s read %v, want %v: channels mixed up", name, r.Value, want)
			}
		}
	}
}

// Close waits for the loops only until its context ends: a loop wedged in
// its driver is abandoned and named, the healthy ones stop cleanly, and the
// bus is closed, which ends the emulated hang (no goroutine outlives it).
func TestCloseAbandonsAWedgedLoop(t *testing.T) {
	specs := []Spec{
		{Name: "ok", Driver: "tmp102", Bus: "emulated", Address: 0x48, Interval: 5 * time.Millisecond},
		{Name: "stuck", Driver: "tmp102", Bus: "emulated", Address: 0x49, Interval: 5 * time.Millisecond},
	}
	b, err := EmulatedBus(specs)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(specs, fastOpts(b))
	if err != nil {
		t.Fatal(err)
	}
	k := &sink{}
	if err := s.Open(k); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(k); err == nil {
		t.Error("a second Open succeeded")
	}
	eventually(t, "samples from both", func() bool { return len(k.of("ok")) > 2 && len(k.of("stuck")) > 2 })
	b.Inject(0x49, emul.Hang)
	time.Sleep(100 * time.Millisecond) // the stuck loop is inside Tx now
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Close(ctx)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v with a 300ms context", took)
	}
	if err == nil || !strings.Contains(err.Error(), "stuck") || strings.Contains(err.Error(), "[ok") {
		t.Errorf("Close = %v, want the wedged sensor (only) named", err)
	}
	// The bus is closed, so the emulated hang ends and the loop returns.
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("the abandoned loop did not end after the bus closed")
	}
	// Without a wedge, Close stops everything well within its context.
	s2, _ := mustSet(t, specs[:1], nil)
	if err := s2.Open(&sink{}); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := s2.Close(ctx2); err != nil {
		t.Errorf("healthy Close = %v", err)
	}
}

// Sensors that share an interval sample on the same ticks of the clock
// (multiples of the interval), so a round is one wake-up of the process and
// its samples reach the uplink together; a timer's lateness does not shift a
// sensor's phase for good.
func TestSharedIntervalSamplesOnTicks(t *testing.T) {
	const iv = 60 * time.Millisecond
	taken := map[string][]time.Time{}
	var specs []Spec
	for i, name := range []string{"a", "b", "c"} {
		specs = append(specs, Spec{Name: name, Driver: "tmp102", Bus: "emulated", Address: 0x48 + uint16(i), Interval: iv})
	}
	s, _ := mustSet(t, specs, nil)
	k, stop := running(t, s)
	eventually(t, "20 rounds", func() bool {
		return len(k.samples("a")) >= 21 && len(k.samples("b")) >= 21 && len(k.samples("c")) >= 21
	})
	stop()
	for _, name := range []string{"a", "b", "c"} {
		for _, smp := range k.samples(name)[1:] { // the first is taken at once, off the ticks
			taken[name] = append(taken[name], smp.Time)
		}
	}
	// Round r holds the samples taken in [r·iv, (r+1)·iv): each sensor's
	// in the same round, taken close to its tick.
	rounds := map[int64]map[string]bool{}
	late := 0
	n := 0
	for name, ts := range taken {
		for _, ts := range ts {
			n++
			r := ts.UnixNano() / int64(iv)
			if rounds[r] == nil {
				rounds[r] = map[string]bool{}
			}
			rounds[r][name] = true
			if off := time.Duration(ts.UnixNano() % int64(iv)); off > iv/3 {
				late++
			}
		}
	}
	// A loaded machine may wake a timer late now and then; never most.
	if late > n/10 {
		t.Errorf("%d of %d samples taken more than %v after their tick", late, n, iv/3)
	}
	split := 0
	for _, names := range rounds {
		if len(names) != 3 {
			split++
		}
	}
	// The last round may be cut by stop; a late wake-up may split one.
	if split > 2+len(rounds)/10 {
		t.Errorf("%d of %d rounds without all three sensors", split, len(rounds))
	}
}

// Quiet comes once a round is complete: every sensor of the round has
// appended its sample (so all have as many), and it says how long until the
// next tick. Never in the middle of a round.
func TestQuietAfterCompleteRounds(t *testing.T) {
	const iv = 80 * time.Millisecond
	var specs []Spec
	for i, name := range []string{"a", "b", "c"} {
		specs = append(specs, Spec{Name: name, Driver: "tmp102", Bus: "emulated", Address: 0x48 + uint16(i), Interval: iv})
	}
	var (
		mu    sync.Mutex
		k     *sink
		calls int
		bad   []string
	)
	s, _ := mustSet(t, specs, func(o *Options) {
		o.Quiet = func(d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if k == nil {
				return
			}
			calls++
			na, nb, nc := len(k.samples("a")), len(k.samples("b")), len(k.samples("c"))
			if na != nb || nb != nc {
				bad = append(bad, fmt.Sprintf("Quiet(%v) with %d/%d/%d samples appended", d, na, nb, nc))
			}
			if d <= 0 || d > iv {
				bad = append(bad, fmt.Sprintf("Quiet(%v): want (0, %v]", d, iv))
			}
		}
	})
	mu.Lock()
	kk, stop := running(t, s)
	k = kk
	mu.Unlock()
	eventually(t, "10 rounds", func() bool { return len(kk.samples("c")) >= 10 })
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("%d bad calls of %d, e.g. %s", len(bad), calls, bad[0])
	}
	// A late timer may now and then split a round (then that round has
	// no Quiet); most rounds have one.
	if calls < 5 {
		t.Fatalf("%d Quiet calls over %d rounds", calls, len(kk.samples("c")))
	}
}
