// Package tick puts the daemon's periodic work on one grid of the clock.
//
// On a board that samples every few seconds, what a round costs is mostly
// wake-ups: each timer that expires on its own wakes the process (a futex
// or epoll round trip, the scheduler, and the runtime's monitor thread,
// which sleeps until the next timer). Timers set with Until for the same
// period, or for periods that divide one another, expire at the same
// instants whichever goroutine set them and whenever: the sensors of one
// interval, the watchdog beats, the buffer's commit and the uplink's idle
// checks then share one wake-up instead of each taking its own.
package tick

import "time"

// Until is how long from now until the next multiple of iv on the clock
// (since the Unix epoch), in (0, iv]. iv <= 0 returns 0.
//
// It is Telegraf's round_interval: scheduling each run one interval after
// the last one started would instead let every timer's lateness shift its
// phase for good.
func Until(now time.Time, iv time.Duration) time.Duration {
	if iv <= 0 {
		return 0
	}
	off := time.Duration(now.UnixNano() % int64(iv))
	if off < 0 {
		off += iv
	}
	return iv - off
}

// Since is how long ago the last multiple of iv on the clock at or before
// now was, in [0, iv). iv <= 0 returns 0.
func Since(now time.Time, iv time.Duration) time.Duration {
	if iv <= 0 {
		return 0
	}
	return (iv - Until(now, iv)) % iv
}

// Timer is a ticker on the grid: C receives at every multiple of the
// period on the clock. Unlike time.Ticker it re-aligns after every tick,
// so a step of the wall clock or a late tick does not shift it off the grid
// that the daemon's other timers use.
//
// It runs on a Wake, so on Linux its ticks come through the timerfd and
// cost the runtime's monitor thread no wake-up.
type Timer struct {
	C  <-chan time.Time
	t  *Wake
	iv time.Duration
}

// New starts a Timer with period iv (> 0). Its ticks may come up to
// Slack(iv) late: a Timer is for housekeeping (commits, heartbeats), and
// the slack lets its tick share the sampling round's wake-up when the two
// are a few hundred µs apart, as they are when computed from clock readings
// taken at different moments (see Wake.SetSlack).
func New(iv time.Duration) *Timer {
	t := NewWake(time.Hour)
	t.SetSlack(Slack(iv))
	t.Reset(Until(time.Now(), iv))
	return &Timer{C: t.C, t: t, iv: iv}
}

// Slack is how late a Timer with period iv may tick: a hundredth of the
// period, at most 20 ms.
func Slack(iv time.Duration) time.Duration { return min(iv/100, 20*time.Millisecond) }

// Next arms the timer for the next tick; call it after each receive.
func (t *Timer) Next() { t.t.Reset(Until(time.Now(), t.iv)) }

// Stop stops the timer.
func (t *Timer) Stop() { t.t.Stop() }
