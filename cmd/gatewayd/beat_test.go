package main

import (
	"testing"
	"time"
)

// The heartbeat's period stays within half the bound and on the sampling
// grid (a multiple of the smallest interval, or a fraction of it that also
// lands on the commit's grid when it can), so a beat shares a wake-up.
func TestBeatEvery(t *testing.T) {
	const s = time.Second
	for _, c := range []struct {
		ivs          []time.Duration
		commit, want time.Duration
	}{
		{[]time.Duration{5 * s, 5 * s, 5 * s}, 10 * s, 15 * s},    // the seed's rate
		{[]time.Duration{10 * s}, 10 * s, 10 * s},                 // three BME280s at 10 s
		{[]time.Duration{300 * time.Millisecond}, 10 * s, 15 * s}, // 10 readings/s
		{[]time.Duration{7 * s, 60 * s}, 10 * s, 14 * s},          // the smallest interval sets it
		{[]time.Duration{60 * s}, 10 * s, 10 * s},                 // on the commit's grid
		{[]time.Duration{45 * s}, 10 * s, 15 * s},                 // 45 is no multiple of 10: a third of 45
		{[]time.Duration{time.Hour}, 10 * time.Minute, 15 * s},    // commit too slow: 3600/240
		{[]time.Duration{100 * s}, 10 * s, 10 * s},
		{[]time.Duration{50 * s}, 0, 12500 * time.Millisecond},
		{nil, 10 * s, 5 * s}, // no sensors: the uplink's default
	} {
		got := beatEvery(c.ivs, c.commit, 30*s)
		if got != c.want {
			t.Errorf("beatEvery(%v, commit %v) = %v, want %v", c.ivs, c.commit, got, c.want)
		}
		if got > 15*s {
			t.Errorf("beatEvery(%v) = %v: over half the 30 s bound", c.ivs, got)
		}
	}
}
