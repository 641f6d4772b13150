package tick

import (
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	at := func(ms int64) time.Time { return time.UnixMilli(ms) }
	for _, c := range []struct {
		now  time.Time
		iv   time.Duration
		want time.Duration
	}{
		{at(10_000), 10 * time.Second, 10 * time.Second},
		{at(10_001), 10 * time.Second, 9999 * time.Millisecond},
		{at(19_999), 10 * time.Second, time.Millisecond},
		{at(1_250), time.Second, 750 * time.Millisecond},
		{at(-250), time.Second, 250 * time.Millisecond}, // a board's clock before 1970
		{at(1_250), 0, 0},
	} {
		if got := Until(c.now, c.iv); got != c.want {
			t.Errorf("Until(%v, %v) = %v, want %v", c.now.UnixMilli(), c.iv, got, c.want)
		}
	}
}

// Two timers of periods that divide one another, started at different
// moments, fire at the same instants: every tick of the longer one comes
// with a tick of the shorter one (the runtime runs timers with the same
// expiry in one pass, so even on a loaded machine they arrive together).
func TestSince(t *testing.T) {
	at := func(ms int64) time.Time { return time.UnixMilli(ms) }
	for _, c := range []struct {
		now  time.Time
		iv   time.Duration
		want time.Duration
	}{
		{at(10_000), 10 * time.Second, 0},
		{at(10_001), 10 * time.Second, time.Millisecond},
		{at(19_999), 10 * time.Second, 9999 * time.Millisecond},
		{at(-250), time.Second, 750 * time.Millisecond},
		{at(1_250), 0, 0},
	} {
		if got := Since(c.now, c.iv); got != c.want {
			t.Errorf("Since(%v, %v) = %v, want %v", c.now.UnixMilli(), c.iv, got, c.want)
		}
	}
}

func TestTimersShareTicks(t *testing.T) {
	const fast, slow = 40 * time.Millisecond, 120 * time.Millisecond
	a := New(fast)
	defer a.Stop()
	time.Sleep(20 * time.Millisecond) // half a fast period: unaligned tickers would stay 20 ms apart
	b := New(slow)
	defer b.Stop()
	var fastAt []time.Time
	deadline := time.After(2 * time.Second)
	for n := 0; n < 4; {
		select {
		case x := <-a.C:
			fastAt = append(fastAt, x)
			a.Next()
		case x := <-b.C:
			b.Next()
			n++
			near := false
			for _, f := range fastAt {
				if d := x.Sub(f); d > -8*time.Millisecond && d < 8*time.Millisecond {
					near = true
				}
			}
			// the fast tick of this instant may still be in its channel
			select {
			case f := <-a.C:
				fastAt = append(fastAt, f)
				a.Next()
				if d := x.Sub(f); d > -8*time.Millisecond && d < 8*time.Millisecond {
					near = true
				}
			case <-time.After(20 * time.Millisecond):
			}
			if !near {
				t.Fatalf("slow tick %d at %v has no fast tick beside it", n, x.Format("05.000"))
			}
		case <-deadline:
			t.Fatal("timers did not tick within 2 s")
		}
	}
}
