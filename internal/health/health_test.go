package health

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// notifySocket is a real systemd notify socket: a unixgram socket in a temp
// dir that NOTIFY_SOCKET points at, as systemd sets it up for Type=notify.
type notifySocket struct {
	conn *net.UnixConn
	msgs chan string
}

func listenNotify(t *testing.T, watchdog time.Duration) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
		t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	} else {
		t.Setenv("WATCHDOG_USEC", "")
		t.Setenv("WATCHDOG_PID", "")
	}
	ns := &notifySocket{conn: conn, msgs: make(chan string, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return // closed at cleanup
			}
			// One datagram may carry several assignments.
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				ns.msgs <- line
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return ns
}

// next returns the next assignment, failing the test after timeout.
func (ns *notifySocket) next(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case m := <-ns.msgs:
		return m
	case <-time.After(timeout):
		t.Fatalf("no sd_notify message within %v", timeout)
		return ""
	}
}

// waitFor reads until an assignment satisfies ok, returning those before it.
func (ns *notifySocket) waitFor(t *testing.T, timeout time.Duration, ok func(string) bool) []string {
	t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case m := <-ns.msgs:
			if ok(m) {
				return seen
			}
			seen = append(seen, m)
		case <-deadline:
			t.Fatalf("no matching sd_notify message within %v; got %q", timeout, seen)
			return nil
		}
	}
}

// collect gathers assignments for d.
func (ns *notifySocket) collect(d time.Duration) []string {
	deadline := time.After(d)
	var got []string
	for {
		select {
		case m := <-ns.msgs:
			got = append(got, m)
		case <-deadline:
			return got
		}
	}
}

// beater beats a loop every period until stopped.
type beater struct {
	stop chan struct{}
	done chan struct{}
}

func beat(h *Health, name string, period time.Duration) *beater {
	b := &beater{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			h.Beat(name)
			select {
			case <-b.stop:
				return
			case <-t.C:
			}
		}
	}()
	return b
}

func (b *beater) Stop() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
}

func count(msgs []string, m string) int {
	n := 0
	for _, x := range msgs {
		if x == m {
			n++
		}
	}
	return n
}

// The acceptance case: the watchdog is not fed when the uplink loop is
// wedged, is fed while every loop beats, and is fed again when it recovers.
func TestWatchdogNotFedWhenUplinkWedged(t *testing.T) {
	const watchdog = 200 * time.Millisecond // fed every 100 ms
	const bound = 300 * time.Millisecond
	ns := listenNotify(t, watchdog)

	h := New(Options{Logger: quiet()}) // real go-systemd, real env
	h.Register("sensors", bound)
	h.Register("uplink", bound)
	sensors := beat(h, "sensors", 20*time.Millisecond)
	defer sensors.Stop()
	uplink := beat(h, "uplink", 20*time.Millisecond)
	defer uplink.Stop()

	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-runErr:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}()

	if m := ns.next(t, 2*time.Second); m != "READY=1" {
		t.Fatalf("first notification = %q, want READY=1", m)
	}
	// Alive: fed repeatedly.
	for i := 0; i < 3; i++ {
		ns.waitFor(t, 2*time.Second, func(m string) bool { return m == "WATCHDOG=1" })
	}

	// Wedge the uplink loop; the sensors keep going.
	uplink.Stop()
	ns.waitFor(t, 3*time.Second, func(m string) bool {
		return strings.HasPrefix(m, "STATUS=") && strings.Contains(m, "uplink: no heartbeat")
	})
	if got := ns.collect(6 * watchdog / 2); count(got, "WATCHDOG=1") != 0 {
		t.Fatalf("watchdog fed while the uplink is wedged: %q", got)
	}
	if err := h.Check(); err == nil || !strings.Contains(err.Error(), "uplink") || strings.Contains(err.Error(), "sensors") {
		t.Errorf("Check() = %v, want only the uplink stuck", err)
	}

	// The uplink recovers: fed again.
	defer beat(h, "uplink", 20*time.Millisecond).Stop()
	ns.waitFor(t, 2*time.Second, func(m string) bool { return m == "WATCHDOG=1" })

	cancel()
	ns.waitFor(t, 2*time.Second, func(m string) bool { return m == "STOPPING=1" })
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run() = %v", err)
		}
		runErr <- nil // for the deferred wait
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRunWithoutWatchdog(t *testing.T) {
	ns := listenNotify(t, 0)
	h := New(Options{Logger: quiet()})
	h.Register("uplink", time.Millisecond) // stuck at once; irrelevant without a watchdog
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	if m := ns.next(t, 2*time.Second); m != "READY=1" {
		t.Fatalf("first notification = %q, want READY=1", m)
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	got := ns.waitFor(t, 2*time.Second, func(m string) bool { return m == "STOPPING=1" })
	if count(got, "WATCHDOG=1") != 0 {
		t.Errorf("watchdog fed without WATCHDOG_USEC: %q", got)
	}
	if err := <-done; err != nil {
		t.Errorf("Run() = %v", err)
	}
}

// fakeNow is a settable clock for the deterministic tests.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeNow) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(h *Health, clk *fakeNow)
		wantErr string // "" means alive
	}{
		{name: "nothing registered", setup: func(h *Health, clk *fakeNow) {}},
		{name: "registered, within first bound", setup: func(h *Health, clk *fakeNow) {
			h.Register("uplink", time.Minute)
			clk.Advance(59 * time.Second)
		}},
		{name: "registered, never beat", setup: func(h *Health, clk *fakeNow) {
			h.Register("uplink", time.Minute)
			clk.Advance(61 * time.Second)
		}, wantErr: "pipeline stuck: uplink: no heartbeat for 1m1s (bound 1m0s)"},
		{name: "both stuck, named in order", setup: func(h *Health, clk *fakeNow) {
			h.Register("uplink", time.Minute)
			h.Register("sensors", 30*time.Second)
			clk.Advance(2 * time.Minute)
		}, wantErr: "pipeline stuck: sensors: no heartbeat for 2m0s (bound 30s); uplink: no heartbeat for 2m0s (bound 1m0s)"},
		{name: "one beats, one wedged", setup: func(h *Health, clk *fakeNow) {
			h.Register("uplink", time.Minute)
			h.Register("sensors", time.Minute)
			clk.Advance(50 * time.Second)
			h.Beat("sensors")
			clk.Advance(50 * time.Second)
		}, wantErr: "pipeline stuck: uplink: no heartbeat for 1m40s (bound 1m0s)"},
		{name: "unregistered beat uses the default bound", setup: func(h *Health, clk *fakeNow) {
			h.Beat("extra")
			clk.Advance(DefaultBound + time.Second)
		}, wantErr: "pipeline stuck: extra: no heartbeat for 2m1s (bound 2m0s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeNow{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
			h := New(Options{Logger: quiet(), Now: clk.Now})
			tc.setup(h, clk)
			err := h.Check()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Check() = %v, want alive", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Errorf("Check() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// systemd unreachable: logged, never fatal; the watchdog logic still runs.
func TestRunNotifyFails(t *testing.T) {
	var mu sync.Mutex
	var states []string
	h := New(Options{Logger: quiet(), Watchdog: 40 * time.Millisecond, Notify: func(s string) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		states = append(states, s)
		return false, os.ErrPermission
	}})
	h.Register("uplink", time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := h.Run(ctx); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(states) < 4 || states[0] != "READY=1\nSTATUS=running" || count(states, "WATCHDOG=1") < 2 ||
		states[len(states)-1] != "STOPPING=1\nSTATUS=stopping" {
		t.Errorf("notifications = %q", states)
	}
}
