package uplink

import (
	"context"
	"sync"
	"testing"
	"time"

	"gatewayd/internal/reading"
	"gatewayd/internal/tick"
)

// The sliding window lets at most n events into any window of its span,
// where a token bucket with burst n lets 2n into one second.
func TestWindowTable(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	base := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		n     int
		tries []time.Duration // attempt times
		want  string          // y = allowed, n = refused
	}{
		{"no burst: n at once is one", 3, []time.Duration{0, 0, 0, 0, ms(366), ms(367)}, "ynnnny"},
		{"paced at span/n", 3, []time.Duration{0, ms(367), ms(734), ms(1099), ms(1101), ms(1467), ms(1468)}, "yyynyny"},
		{"steady pace at n per span", 2, []time.Duration{0, ms(550), ms(1100), ms(1650), ms(2200)}, "yyyyy"},
		{"the bucket's 2n: full bucket plus refill", 4, []time.Duration{0, 0, 0, 0, ms(999), ms(999), ms(999), ms(999)}, "ynnnynnn"},
		{"one per span", 1, []time.Duration{0, ms(1), ms(1099), ms(1100), ms(2199), ms(2200)}, "ynnyny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWindow(float64(tc.n), 100*time.Millisecond) // the table's times assume a 1.1 s span
			got := ""
			for _, d := range tc.tries {
				if w.take(base.Add(d), 0) {
					got += "y"
				} else {
					got += "n"
				}
			}
			if got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// Whatever the pattern of attempts, no window of the span ever holds more
// than n allowed events; readyAt names the first instant that is allowed.
func TestWindowNeverOverfills(t *testing.T) {
	const n = 5
	span := time.Second + windowGuard
	w := newWindow(n, windowGuard)
	base := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	var allowed []time.Time
	at := base
	for i := 0; i < 5000; i++ {
		at = at.Add(time.Duration((i*7919)%97) * time.Millisecond) // irregular, often bursty
		r := w.readyAt(at, 0)
		ok := w.take(at, 0)
		if ok != !r.After(at) {
			t.Fatalf("readyAt %v but take at %v = %v", r.Sub(base), at.Sub(base), ok)
		}
		if !ok && !w.take(r, 0) {
			t.Fatalf("not allowed at readyAt %v", r.Sub(base))
		} else if !ok {
			at = r
		}
		allowed = append(allowed, at)
	}
	for i := n; i < len(allowed); i++ {
		if d := allowed[i].Sub(allowed[i-n]); d < span {
			t.Fatalf("events %d and %d only %v apart: %d in one window", i-n, i, d, n+1)
		}
	}
	for i := 1; i < len(allowed); i++ {
		if d := allowed[i].Sub(allowed[i-1]); d < span/n {
			t.Fatalf("events %d and %d only %v apart: not paced at span/n = %v", i-1, i, d, span/n)
		}
	}
	// The backlog's reserve keeps the last slot of a window for live data.
	r := newWindow(3, windowGuard)
	gap := span / 3
	if !r.take(base, 1) || !r.take(base.Add(gap), 1) || r.take(base.Add(2*gap), 1) || !r.take(base.Add(2*gap), 0) || r.take(base.Add(3*gap-1), 0) {
		t.Fatal("reserve 1 of 3: want two backlog events, then only a live one")
	}
	if one := newWindow(1, windowGuard); !one.take(base, 1) {
		t.Fatal("a limit of 1 must not be reserved away")
	}
	// Below one per second: one per 1/rate seconds; fractions round down.
	if h := newWindow(0.5, windowGuard); !h.take(base, 0) || h.take(base.Add(2*time.Second+windowGuard-time.Millisecond), 0) || !h.take(base.Add(2*time.Second+windowGuard), 0) {
		t.Fatalf("0.5 per second: want one event per %v", 2*time.Second+windowGuard)
	}
	if f := newWindow(2.5, windowGuard); f.max != 2 || f.span != span {
		t.Fatalf("2.5 per second: %d per %v", f.max, f.span)
	}
	// A 429 halves the limit; successes bring it back.
	w.halve()
	if w.current() != 2 {
		t.Fatalf("after halve: %d", w.current())
	}
	for i := 0; i < 50; i++ {
		w.grow()
	}
	if w.current() != n {
		t.Fatalf("after growing: %d", w.current())
	}
	if newWindow(-1, windowGuard) != nil || !(*window)(nil).take(base, 0) {
		t.Fatal("a negative rate must mean unlimited")
	}
}

// A live Take that is due while the rate window is full waits for the
// window's next slot instead of spinning on a 1 ms timer.
func TestNextWakeWaitsForTheWindow(t *testing.T) {
	c := testClient(t, func(o *Options) { o.MaxMessagesPerSecond = 1; o.BeatEvery = 5 * time.Second })
	// The beat comes on the 5 s ticks of the clock: start well before one.
	if b := tick.Until(time.Now(), 5*time.Second); b < 1500*time.Millisecond {
		time.Sleep(b + 10*time.Millisecond)
	}
	c.win.take(time.Now(), 0)
	now := c.o.Now()
	st := &sendState{pending: map[string]*outMsg{}, window: 16, liveDue: now.Add(-time.Second)}
	if d := c.nextWake(st, now); d < time.Second {
		t.Fatalf("woke after %v with the window full for another ~1.1s", d)
	}
	c.win = nil
	if d := c.nextWake(st, now); d > time.Millisecond {
		t.Fatalf("woke after %v with a live Take due and no limit", d)
	}
}

// A live Take that falls due while the rate window is full (a late
// notification of the round just posted) is made at once, not at the
// window's next slot: taking needs no slot, and finding nothing then must
// not cost the board a wake-up 1.25 s/N later.
func TestDueTakeWhileTheWindowIsFull(t *testing.T) {
	c := testClient(t, func(o *Options) { o.MaxMessagesPerSecond = 1; o.BeatEvery = 5 * time.Second })
	if b := tick.Until(time.Now(), 5*time.Second); b < 1500*time.Millisecond {
		time.Sleep(b + 10*time.Millisecond)
	}
	c.win.take(time.Now(), 0) // a post just went out
	now := c.o.Now()
	st := &sendState{held: map[reading.ID]*heldSample{}, pending: map[string]*outMsg{}, window: 16,
		liveDue: now, backHold: now.Add(time.Hour)}
	var wg sync.WaitGroup
	c.fill(context.Background(), nil, st, now, &wg, make(chan pubResult, 1))
	if !st.liveDue.IsZero() {
		t.Fatal("the due live Take waits for the window")
	}
	if d := c.nextWake(st, now); d < time.Second {
		t.Fatalf("woke after %v with nothing to send", d)
	}
}
