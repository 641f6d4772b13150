package tick

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"gatewayd/internal/testutil"
)

// clocks are the sources under test: the process's own (the timerfd on
// Linux) and the portable one, each behind a clock of its own.
func clocks(t *testing.T) map[string]*clock {
	return map[string]*clock{"process": theClock(), "runtime timer": newClock(newTimerSource())}
}

func TestWakeSourceIsTheTimerfdOnLinux(t *testing.T) {
	want := "runtime timer"
	if runtime.GOOS == "linux" {
		want = "timerfd"
	}
	if got := SourceKind(); got != want {
		t.Fatalf("Wakes wait on %q, want %q", got, want)
	}
}

// recv waits up to 2 s for a tick.
func recv(t *testing.T, w *Wake) time.Time {
	t.Helper()
	select {
	case x := <-w.C:
		return x
	case <-time.After(2 * time.Second):
		t.Fatal("wake did not fire within 2 s")
		return time.Time{}
	}
}

// none checks that w does not fire within d.
func none(t *testing.T, w *Wake, d time.Duration, why string) {
	t.Helper()
	select {
	case <-w.C:
		t.Fatalf("wake fired: %s", why)
	case <-time.After(d):
	}
}

func TestWakeFiresOnceNotEarly(t *testing.T) {
	for name, k := range clocks(t) {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			w := k.newWake(30 * time.Millisecond)
			at := recv(t, w)
			if el := at.Sub(start); el < 30*time.Millisecond {
				t.Fatalf("fired after %v, before its 30 ms", el)
			}
			none(t, w, 60*time.Millisecond, "a second time without a Reset")
			if w.Stop() {
				t.Fatal("Stop after the fire reports the wake armed")
			}
		})
	}
}

func TestWakeStopAndReset(t *testing.T) {
	for name, k := range clocks(t) {
		t.Run(name, func(t *testing.T) {
			w := k.newWake(20 * time.Millisecond)
			if !w.Stop() {
				t.Fatal("Stop of an armed wake reports it disarmed")
			}
			none(t, w, 80*time.Millisecond, "after Stop")

			// A later wake armed first, then an earlier one: the source
			// is re-armed for the earlier.
			late := k.newWake(time.Hour)
			defer late.Stop()
			early := k.newWake(20 * time.Millisecond)
			recv(t, early)

			// Reset moves an armed wake later, then earlier.
			w.Reset(time.Hour)
			if !w.Reset(10 * time.Millisecond) {
				t.Fatal("Reset of an armed wake reports it disarmed")
			}
			recv(t, w)

			// A tick that fired but was not received is dropped by Reset
			// and by Stop: no stale tick after either.
			w.Reset(0)
			deadline := time.Now().Add(2 * time.Second)
			for len(w.C) == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if len(w.C) == 0 {
				t.Fatal("Reset(0) did not fire within 2 s")
			}
			w.Reset(time.Hour)
			none(t, w, 30*time.Millisecond, "stale tick after Reset")
			w.Reset(0)
			for len(w.C) == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			w.Stop()
			none(t, w, 30*time.Millisecond, "stale tick after Stop")
		})
	}
}

// Wakes armed in any order fire in the order of their expiries, each once.
func TestWakesFireInOrder(t *testing.T) {
	for name, k := range clocks(t) {
		t.Run(name, func(t *testing.T) {
			const n = 20
			ws := make([]*Wake, n)
			for _, i := range rand.Perm(n) {
				ws[i] = k.newWake(time.Duration(10+3*i) * time.Millisecond)
			}
			var prev time.Time
			for i, w := range ws {
				at := recv(t, w)
				if at.Before(prev) {
					t.Fatalf("wake %d fired at %v, before wake %d (%v)", i, at.Format("05.000000"), i-1, prev.Format("05.000000"))
				}
				prev = at
			}
			for i, w := range ws {
				select {
				case <-w.C:
					t.Fatalf("wake %d fired twice", i)
				default:
				}
			}
			k.mu.Lock()
			defer k.mu.Unlock()
			if len(k.active) != 0 || k.armed != -1 {
				t.Fatalf("after every wake fired: %d active, armed %v; want none", len(k.active), k.armed)
			}
		})
	}
}

// A Wake with slack fires in the same pass as a Wake due within its slack
// (one wake-up: fire stamps everything it sends in one pass alike) and
// never before its own expiry; alone, it still fires. Without slack the two
// take a pass each.
func TestWakeSlackSharesAWakeUp(t *testing.T) {
	for name, k := range clocks(t) {
		t.Run(name, func(t *testing.T) {
			for _, slack := range []time.Duration{0, 400 * time.Millisecond} {
				start := time.Now()
				house := k.newWake(time.Hour)
				house.SetSlack(slack)
				house.Reset(10 * time.Millisecond)
				round := k.newWake(150 * time.Millisecond)
				h, r := recv(t, house), recv(t, round)
				if el := h.Sub(start); el < 10*time.Millisecond {
					t.Fatalf("slack %v: fired after %v, before its 10 ms", slack, el)
				}
				if shared := h.Equal(r); shared != (slack > 0) {
					t.Fatalf("slack %v: fired at %v and %v (same pass: %v), want a shared pass only with slack",
						slack, h.Format("05.000000"), r.Format("05.000000"), shared)
				}
			}
			// Alone, it fires within its slack.
			start := time.Now()
			w := k.newWake(time.Hour)
			w.SetSlack(50 * time.Millisecond)
			w.Reset(10 * time.Millisecond)
			if el := recv(t, w).Sub(start); el < 10*time.Millisecond {
				t.Fatalf("alone: fired after %v, before its 10 ms", el)
			}
		})
	}
}

func TestTimerSlack(t *testing.T) {
	for iv, want := range map[time.Duration]time.Duration{time.Second: 10 * time.Millisecond, 5 * time.Second: 20 * time.Millisecond,
		time.Hour: 20 * time.Millisecond, 100 * time.Millisecond: time.Millisecond} {
		if got := Slack(iv); got != want {
			t.Errorf("Slack(%v) = %v, want %v", iv, got, want)
		}
	}
}

// Goroutines resetting, stopping and receiving their own wakes at once
// (run under -race in make test) leave the clock's list consistent.
func TestWakesConcurrent(t *testing.T) {
	for name, k := range clocks(t) {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					w := k.newWake(0)
					for i := 0; i < 300; i++ {
						switch rand.IntN(3) {
						case 0:
							w.Reset(time.Duration(rand.IntN(200)) * time.Microsecond)
							select {
							case <-w.C:
							case <-time.After(2 * time.Second):
								t.Error("wake did not fire within 2 s")
								return
							}
						case 1:
							w.Reset(time.Duration(rand.IntN(50)) * time.Millisecond)
						case 2:
							w.Stop()
						}
					}
					w.Stop()
				}()
			}
			wg.Wait()
			k.mu.Lock()
			defer k.mu.Unlock()
			for i, w := range k.active {
				if w.idx != i {
					t.Fatalf("active[%d] has idx %d", i, w.idx)
				}
			}
			if len(k.active) != 0 {
				t.Fatalf("%d wakes still active after every goroutine stopped its own", len(k.active))
			}
		})
	}
}

// The dispatcher's wait for the next expiry allocates nothing: it runs
// on every tick of a board's life.
func TestWakeWaitAllocatesNothing(t *testing.T) {
	src := newSource() // a source of its own: no dispatcher reads it
	allocs := testing.AllocsPerRun(20, func() {
		src.arm(time.Microsecond)
		src.wait()
	})
	if allocs != 0 {
		t.Fatalf("%s: %v allocations per arm and wait, want 0", src.kind(), allocs)
	}
}

// BenchmarkIdleWake is what one wake-up of an otherwise idle process
// costs in CPU (all threads, cpu-ns/op), with GOMAXPROCS=1 as the daemon
// runs: a runtime timer, which also wakes the runtime's monitor thread,
// against a Wake. Compare the two within one run:
//
//	go test ./internal/tick -run '^$' -bench IdleWake -benchtime 100x
func BenchmarkIdleWake(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const period = 20 * time.Millisecond
	run := func(b *testing.B, c <-chan time.Time, reset func()) {
		<-c // settle: the first wake-up after the benchmark's own work
		reset()
		cpu0 := testutil.CPUTime(b)
		for i := 0; i < b.N; i++ {
			<-c
			reset()
		}
		b.ReportMetric(float64(testutil.CPUTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	}
	b.Run("time.Timer", func(b *testing.B) {
		t := time.NewTimer(period)
		defer t.Stop()
		run(b, t.C, func() { t.Reset(period) })
	})
	b.Run("tick.Wake", func(b *testing.B) {
		w := NewWake(period)
		defer w.Stop()
		run(b, w.C, func() { w.Reset(period) })
	})
}
