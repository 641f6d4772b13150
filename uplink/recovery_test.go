package uplink

import (
	"slices"
	"testing"
	"time"
)

// timeline plays one board's reconnect schedule with the real backoff at
// the default floor and cap: the link is lost at 0, every attempt before
// back fails, and the first attempt at or after back succeeds. It returns
// the attempt times (the last one is the successful one).
func timeline(c *Client, back time.Duration) []time.Duration {
	var at []time.Duration
	failures := lostFailures
	t := c.backoff(failures)
	for i := 0; i < 100000; i++ {
		at = append(at, t)
		if t >= back {
			return at
		}
		failures++
		t += c.backoff(failures)
	}
	return at
}

// After the platform returns, a board resumes within seconds whatever the
// outage length: median at most 15 s over trials, never past the cap.
func TestRecoveryAfterOutageWithinSeconds(t *testing.T) {
	c := &Client{o: Options{BackoffMin: DefaultBackoffMin, BackoffMax: DefaultBackoffMax}}
	const trials = 2000
	for _, outage := range []time.Duration{5 * time.Second, 30 * time.Second, 3 * time.Minute, 30 * time.Minute, 6 * time.Hour} {
		resume := make([]time.Duration, trials)
		for i := range resume {
			at := timeline(c, outage)
			resume[i] = at[len(at)-1] - outage
		}
		slices.Sort(resume)
		med, worst := resume[trials/2], resume[trials-1]
		t.Logf("outage %-8v resume after the platform returns: median %5.1fs, p95 %5.1fs, max %5.1fs",
			outage, med.Seconds(), resume[trials*95/100].Seconds(), worst.Seconds())
		if med > 15*time.Second {
			t.Errorf("outage %v: median resume %v, want at most 15s", outage, med)
		}
		if worst > DefaultBackoffMax+DefaultBackoffMin {
			t.Errorf("outage %v: a board waited %v after the return, past the cap", outage, worst)
		}
	}
}

// A fleet of 500 boards that lost a restarted broker together: at the
// broker's return the attempts per second stay at most 1/5 of a fixed 1 s
// retry (500/s), and all are back within 60 s.
func TestFleetRecoveryGentleAndQuick(t *testing.T) {
	c := &Client{o: Options{BackoffMin: DefaultBackoffMin, BackoffMax: DefaultBackoffMax}}
	const boards = 500
	for _, outage := range []time.Duration{3 * time.Second, 20 * time.Second, 5 * time.Minute} {
		perSecond := map[int]int{}
		var last time.Duration
		for b := 0; b < boards; b++ {
			at := timeline(c, outage)
			for _, a := range at {
				perSecond[int(a/time.Second)]++
			}
			last = max(last, at[len(at)-1])
		}
		peakAfter := 0
		for s, n := range perSecond {
			if time.Duration(s)*time.Second >= outage {
				peakAfter = max(peakAfter, n)
			}
		}
		allBack := last - outage
		t.Logf("%d boards, outage %v: peak %d attempts/s at the returned broker (fixed 1 s retry: %d/s), all back %.1fs after",
			boards, outage, peakAfter, boards, allBack.Seconds())
		if peakAfter*5 > boards {
			t.Errorf("outage %v: peak %d attempts/s, want at most %d (1/5 of a fixed 1 s retry)", outage, peakAfter, boards/5)
		}
		if allBack > time.Minute {
			t.Errorf("outage %v: all back only %v after the return", outage, allBack)
		}
	}
}
