package buffer

import (
	"log/slog"
	"sync"
	"time"
)

// dropLog rate-limits the buffer's loud-but-repetitive logs: on a full disk
// every commit fails and every append drops, and a log line for each would
// itself wear the card and bury the first, useful one.
type dropLog struct {
	log   *slog.Logger
	every time.Duration

	mu      sync.Mutex
	last    map[string]time.Time
	unsaid  map[string]int // drops not yet logged, by reason
	errLast time.Time
	errSkip int
}

func newDropLog(log *slog.Logger, every time.Duration) *dropLog {
	return &dropLog{log: log, every: every, last: map[string]time.Time{}, unsaid: map[string]int{}}
}

// add counts n drops for reason and logs them unless it logged that reason
// within the interval; the count then goes into the next line.
func (d *dropLog) add(reason string, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unsaid[reason] += n
	now := time.Now()
	if now.Sub(d.last[reason]) < d.every {
		return
	}
	d.last[reason] = now
	d.log.Warn("readings dropped", "reason", reason, "count", d.unsaid[reason], "since", d.every)
	d.unsaid[reason] = 0
}

// errorf logs an error at most once per interval, saying how many it held back.
func (d *dropLog) errorf(msg string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if now.Sub(d.errLast) < d.every {
		d.errSkip++
		return
	}
	d.errLast = now
	d.log.Error(msg, append(args, "suppressed", d.errSkip)...)
	d.errSkip = 0
}

// flush logs drops still unsaid (at Close).
func (d *dropLog) flush() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for reason, n := range d.unsaid {
		if n > 0 {
			d.log.Warn("readings dropped", "reason", reason, "count", n)
			d.unsaid[reason] = 0
		}
	}
}
