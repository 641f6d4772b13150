package tick

import (
	"sync"
	"time"
)

// Wake is a one-shot timer with time.Timer's API (C, Reset, Stop) for the
// daemon's long-lived timers: the sampling loops, the grid Timers, the
// uplink's send loop.
//
// Why not time.Timer: the runtime's monitor thread (sysmon) sleeps until
// the runtime's next timer whenever the process is idle, so every timer
// that expires wakes two threads, the one that runs it and sysmon (which
// then sleeps 10 ms more before sleeping deeply again). On Linux all
// Wakes share one timerfd that the netpoller waits on, so while they are
// the only timers pending sysmon sleeps its full minute and an expiry
// wakes one thread. BenchmarkIdleWake on the proof VM (GOMAXPROCS=1,
// CPU of the whole process per wake-up): 112-136 µs with time.Timer,
// ~79 µs with a Wake.
//
// Unlike pre-1.23 time.Timers, Reset and Stop drop a tick that fired but
// was not received yet, so a receive after either never sees a stale one.
type Wake struct {
	C <-chan time.Time
	c chan time.Time
	// when is the expiry, since the clock's base on the monotonic clock;
	// idx its place in the clock's active list, -1 when not armed.
	when time.Duration
	idx  int
	k    *clock
	// slack is how late w may fire (see SetSlack).
	slack time.Duration
}

// NewWake returns a Wake that fires once after d.
func NewWake(d time.Duration) *Wake { return theClock().newWake(d) }

func (k *clock) newWake(d time.Duration) *Wake {
	c := make(chan time.Time, 1)
	w := &Wake{C: c, c: c, idx: -1, k: k}
	w.Reset(d)
	return w
}

// Reset arms w to fire after d (at once if d <= 0), dropping a pending
// expiry. It reports whether w was armed.
func (w *Wake) Reset(d time.Duration) bool {
	k := w.k
	k.mu.Lock()
	defer k.mu.Unlock()
	was := w.idx >= 0
	w.drain()
	w.when = quantize(k.now() + max(d, 0))
	if !was {
		w.idx = len(k.active)
		k.active = append(k.active, w)
	}
	k.rearm()
	return was
}

// SetSlack lets w fire up to d after its expiry (d >= 0; default 0), so it
// can share a wake-up with another Wake due within that time instead of
// taking one of its own, as the kernel's timer slack does. Housekeeping
// timers take it; the sampling loops, whose expiry is the sampling instant,
// do not. It applies at once, also to an armed w.
func (w *Wake) SetSlack(d time.Duration) {
	k := w.k
	k.mu.Lock()
	defer k.mu.Unlock()
	w.slack = max(d, 0)
	if w.idx >= 0 {
		k.rearm()
	}
}

// Stop disarms w, dropping a pending expiry. It reports whether w was
// armed.
func (w *Wake) Stop() bool {
	k := w.k
	k.mu.Lock()
	defer k.mu.Unlock()
	w.drain()
	if w.idx < 0 {
		return false
	}
	k.remove(w)
	k.rearm()
	return true
}

func (w *Wake) drain() {
	select {
	case <-w.c:
	default:
	}
}

// source is what the clock waits on: a timerfd in the netpoller on Linux,
// else a runtime timer.
type source interface {
	// arm makes wait return after d (> 0); d == 0 disarms.
	arm(d time.Duration)
	// wait blocks until the armed time has passed (or returns early:
	// the clock checks what is due).
	wait()
	kind() string
}

// clock dispatches the Wakes: one goroutine for the process.
type clock struct {
	mu     sync.Mutex
	base   time.Time
	active []*Wake
	armed  time.Duration // expiry the source is armed for; -1: disarmed
	src    source
}

var (
	clockOnce sync.Once
	theClk    *clock
)

func theClock() *clock {
	clockOnce.Do(func() { theClk = newClock(newSource()) })
	return theClk
}

func newClock(src source) *clock {
	k := &clock{base: time.Now(), armed: -1, src: src}
	go k.run()
	return k
}

// SourceKind names what the Wakes wait on: "timerfd" or "runtime timer".
func SourceKind() string { return theClock().src.kind() }

func (k *clock) now() time.Duration { return time.Since(k.base) }

// quantum is the grain of the expiries. Timers set for the same instant
// of the grid by different goroutines compute it from clock readings a
// few µs apart; rounded up to the quantum they are equal, so the timerfd
// is not re-armed for each (a system call each) and they fire in one
// pass. A Wake fires up to a quantum late, never early.
const quantum = time.Millisecond

func quantize(t time.Duration) time.Duration { return (t + quantum - 1) / quantum * quantum }

func (k *clock) remove(w *Wake) {
	last := len(k.active) - 1
	k.active[w.idx] = k.active[last]
	k.active[w.idx].idx = w.idx
	k.active[last] = nil
	k.active = k.active[:last]
	w.idx = -1
}

// rearm points the source at the earliest latest-allowed expiry (expiry
// plus slack): when it fires, fire sends on every Wake already expired,
// so a Wake with slack rides along with any Wake due within it. Called
// with mu held. A handful of Wakes are active (one per sensor loop and a
// few more), so a scan is cheaper than keeping a heap.
func (k *clock) rearm() {
	next := time.Duration(-1)
	for _, w := range k.active {
		if d := w.when + w.slack; next < 0 || d < next {
			next = d
		}
	}
	if next == k.armed {
		return
	}
	k.armed = next
	if next < 0 {
		k.src.arm(0)
		return
	}
	k.src.arm(max(next-k.now(), 1))
}

func (k *clock) run() {
	for {
		k.src.wait()
		k.fire()
	}
}

// fire sends on every Wake that is due and re-arms for the next.
func (k *clock) fire() {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	var stamp time.Time
	for i := 0; i < len(k.active); {
		w := k.active[i]
		if w.when > now {
			i++
			continue
		}
		if stamp.IsZero() {
			stamp = time.Now()
		}
		k.remove(w) // moves the last one to i
		select {
		case w.c <- stamp:
		default:
		}
	}
	// The source is one-shot: having fired, it is disarmed (unless a
	// Reset re-armed it since, which rearm then repeats, harmlessly).
	k.armed = -1
	k.rearm()
}

// timerSource is the portable source: one runtime timer.
type timerSource struct{ t *time.Timer }

func newTimerSource() *timerSource {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerSource{t: t}
}

func (s *timerSource) arm(d time.Duration) {
	if d == 0 {
		s.t.Stop()
		return
	}
	s.t.Reset(d)
}

func (s *timerSource) wait()        { <-s.t.C }
func (s *timerSource) kind() string { return "runtime timer" }
