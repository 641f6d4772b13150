package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gatewayd/buffer"
	"gatewayd/internal/iotsim"
	"gatewayd/internal/testutil"
)

const (
	e2ePK     = "a1e2eTestPK"
	e2eDN     = "bench-3"
	e2eSecret = "e2e-secret"
)

// The emulated chip's values, the driver's precision for each (the BME280
// compensation formulas resolve 0.01 °C, 1/1024 %RH and 1/256 Pa), and the
// one-step wiggle the emulated chip adds to every other conversion, as a
// real chip's noise does (so the stuck-value detector does not fire).
var e2eValues = map[string]struct{ set, tol, wiggle float64 }{
	"temperature": {23.45, 0.01, 0.05},
	"humidity":    {41.2, 0.01, 0.1},
	"pressure":    {1008.5, 0.01, 0.05},
}

type e2eEnv struct {
	dir, caFile, certFile, keyFile string
	port                           int
}

func newE2E(t *testing.T) *e2eEnv {
	t.Helper()
	dir := t.TempDir()
	ca, cert, key, err := iotsim.GenerateCerts(filepath.Join(dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	return &e2eEnv{dir: dir, caFile: ca, certFile: cert, keyFile: key, port: testutil.FreePort(t)}
}

func (e *e2eEnv) config(t *testing.T, secret string) string {
	t.Helper()
	var emulate strings.Builder
	for m, v := range e2eValues {
		fmt.Fprintf(&emulate, "%s = %v\n", m, v.set)
	}
	cfg := fmt.Sprintf(`[device]
product_key   = %q
device_name   = %q
device_secret = %q

[uplink]
endpoint    = "127.0.0.1:%d"
ca_file     = %q
ca_replace  = true
server_name = "localhost"
keepalive   = "30s"

[buffer]
path            = "buffer.db"
commit_interval = "500ms"

[[sensor]]
name     = "air"
driver   = "bme280"
bus      = "emulated"
interval = "200ms"
[sensor.properties]
temperature = "temperature"
humidity    = "humidity"
pressure    = "pressure"
[sensor.emulate]
%s
[health]
listen = ""
`, e2ePK, e2eDN, secret, e.port, e.caFile, emulate.String())
	path := filepath.Join(e.dir, "gatewayd.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (e *e2eEnv) startSim(t *testing.T) *iotsim.Server {
	t.Helper()
	sim, err := iotsim.Start(iotsim.Options{
		TLSAddr: fmt.Sprintf("127.0.0.1:%d", e.port), CertFile: e.certFile, KeyFile: e.keyFile,
		Devices: []iotsim.Device{{ProductKey: e2ePK, DeviceName: e2eDN, DeviceSecret: e2eSecret}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// daemon is `gatewayd run` in this process, as main would run it.
type daemon struct {
	cancel context.CancelFunc
	done   chan error
	stderr *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startDaemon(t *testing.T, config string) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{cancel: cancel, done: make(chan error, 1), stderr: &syncBuffer{}}
	go func() { d.done <- Run(ctx, []string{"run", "--config", config}, &syncBuffer{}, d.stderr) }()
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop cancels as SIGTERM does and requires a clean exit within the bound.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("gatewayd run returned %v\n%s", err, d.stderr.String())
		}
	case <-time.After(shutdownBound + 2*time.Second):
		t.Fatalf("gatewayd did not stop within %v\n%s", shutdownBound, d.stderr.String())
	}
}

// waitFor polls cond until it holds or the bound passes.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func acceptedBefore(sim *iotsim.Server, t0 time.Time) map[string]int {
	n := map[string]int{}
	for _, a := range sim.Accepted() {
		if a.Time.Before(t0) {
			n[a.Property]++
		}
	}
	return n
}

// A reading from the emulated BME280 reaches the platform emulator over TLS
// with the value the chip was set to and the time it was taken — also when it
// was taken while the platform was unreachable and sent later.
func TestEndToEndEmulatedBME280ToIotsim(t *testing.T) {
	e := newE2E(t)
	testStart := time.Now()
	d := startDaemon(t, e.config(t, e2eSecret))

	// The platform is down for the first second: those readings wait in the
	// buffer and must arrive with the time they were taken, not the send time.
	time.Sleep(time.Second)
	simStart := time.Now()
	sim := e.startSim(t)
	waitFor(t, 20*time.Second, "readings taken before and after the platform came up", func() bool {
		before, total := acceptedBefore(sim, simStart), acceptedBefore(sim, time.Now().Add(time.Hour))
		for m := range e2eValues {
			if before[m] < 3 || total[m] < before[m]+3 {
				return false
			}
		}
		return true
	})
	d.stop(t)

	acc := sim.Accepted()
	times := map[string][]time.Time{}
	for _, a := range acc {
		want, ok := e2eValues[a.Property]
		if !ok {
			t.Errorf("unexpected property %q", a.Property)
			continue
		}
		if math.Abs(a.Value-want.set) > want.tol && math.Abs(a.Value-want.set-want.wiggle) > want.tol {
			t.Errorf("%s = %v (raw %s), chip was set to %v (+%v wiggle, precision %v)", a.Property, a.Value, a.Raw, want.set, want.wiggle, want.tol)
		}
		if a.Time.Before(testStart.Add(-time.Millisecond)) || a.Time.After(a.Received) {
			t.Errorf("%s taken at %v: outside [test start %v, received %v]", a.Property, a.Time, testStart, a.Received)
		}
		if !strings.Contains(a.Raw, ".") {
			t.Errorf("%s sent as %q: floats must carry a decimal point", a.Property, a.Raw)
		}
		times[a.Property] = append(times[a.Property], a.Time)
	}
	// Taken every 200ms: the buffered readings are spread over the outage,
	// not bunched at the moment they were sent.
	for m, ts := range times {
		first, last := ts[0], ts[0]
		for _, x := range ts {
			if x.Before(first) {
				first = x
			}
			if x.After(last) {
				last = x
			}
		}
		if span := simStart.Sub(first); span < 600*time.Millisecond {
			t.Errorf("%s: oldest reading taken only %v before the platform came up; want the outage's readings", m, span)
		}
		seen := map[int64]bool{}
		for _, x := range ts {
			if seen[x.UnixMilli()] {
				t.Errorf("%s: two readings with the same time %v (duplicate delivery)", m, x)
			}
			seen[x.UnixMilli()] = true
		}
	}
	if st, err := buffer.Inspect(filepath.Join(e.dir, "buffer.db")); err != nil {
		t.Errorf("inspect buffer after stop: %v", err)
	} else if st.Depth > 3*4 { // at most the readings of the last moments before stop
		t.Errorf("buffer still holds %d readings after delivery", st.Depth)
	}
}

// A wrong device secret is refused by the platform emulator and the buffered
// readings are kept; with the right secret they are delivered.
func TestWrongSecretKeepsReadings(t *testing.T) {
	e := newE2E(t)
	sim := e.startSim(t)
	d := startDaemon(t, e.config(t, "not-the-secret"))
	waitFor(t, 15*time.Second, "a refused CONNECT", func() bool {
		for _, c := range sim.Connects() {
			if c.Code == 4 {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second) // let readings accumulate
	d.stop(t)
	if n := len(sim.Accepted()); n != 0 {
		t.Fatalf("iotsim accepted %d values from a device with a wrong secret", n)
	}
	if !strings.Contains(strings.ToLower(d.stderr.String()), "password") {
		t.Errorf("log does not name the cause (bad user name or password):\n%s", d.stderr.String())
	}
	st, err := buffer.Inspect(filepath.Join(e.dir, "buffer.db"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Depth < 3 {
		t.Fatalf("buffer holds %d readings after the refused sign-in; want the readings taken meanwhile", st.Depth)
	}
	kept, oldest := st.Depth, st.OldestUnsent

	restart := time.Now()
	d = startDaemon(t, e.config(t, e2eSecret))
	waitFor(t, 20*time.Second, "the kept readings delivered", func() bool {
		n := 0
		for _, c := range acceptedBefore(sim, restart) {
			n += c
		}
		return n >= kept
	})
	d.stop(t)
	for _, a := range sim.Accepted() {
		// On a machine whose clock is not NTP-disciplined the readings are
		// re-dated from the platform's NTP answer: allow its precision.
		if a.Time.Before(oldest.Add(-50 * time.Millisecond)) {
			t.Errorf("accepted a reading older than the oldest buffered one: %v < %v", a.Time, oldest)
		}
	}
}
