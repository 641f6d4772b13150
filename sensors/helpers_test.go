package sensors

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"

	"gatewayd/internal/reading"
	"gatewayd/sensors/emul"
)

// sink is a reading.Sink that keeps what it is given.
type sink struct {
	mu sync.Mutex
	rs []reading.Reading
}

func (s *sink) Append(_ context.Context, rs []reading.Reading) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rs = append(s.rs, rs...)
	return nil
}

func (s *sink) of(sensor string) []reading.Reading {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []reading.Reading
	for _, r := range s.rs {
		if r.Sensor == sensor {
			out = append(out, r)
		}
	}
	return out
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fastOpts are Options for tests: short backoff and log limits, the bus
// given.
func fastOpts(b i2c.Bus) Options {
	return Options{
		Logger:     quiet(),
		OpenBus:    func(string) (i2c.Bus, error) { return b, nil },
		BackoffMin: 5 * time.Millisecond,
		BackoffMax: 40 * time.Millisecond,
		LogEvery:   time.Hour,
		BeatEvery:  50 * time.Millisecond,
	}
}

// mustSet builds an emulated bus from specs and a Set on it.
func mustSet(tb testing.TB, specs []Spec, mod func(*Options)) (*Set, *emul.Bus) {
	tb.Helper()
	b, err := EmulatedBus(specs)
	if err != nil {
		tb.Fatal(err)
	}
	o := fastOpts(b)
	if mod != nil {
		mod(&o)
	}
	s, err := New(specs, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close(context.Background()) })
	return s, b
}

// running starts s.Run and returns its sink and a stop function that waits
// for Run to return.
func running(tb testing.TB, s *Set) (*sink, func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	k := &sink{}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, k) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			tb.Fatal("Run did not return within 5 s of cancel")
		}
	}
	tb.Cleanup(stop)
	return k, stop
}

// eventually polls cond every 5 ms for up to 5 s.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.Fatalf("timed out waiting for %s", what)
}

func stat(s *Set, name string) SensorStats {
	for _, st := range s.Stats() {
		if st.Name == name {
			return st
		}
	}
	return SensorStats{}
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
