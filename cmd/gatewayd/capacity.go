package main

import (
	"fmt"
	"time"

	"gatewayd/buffer"
	"gatewayd/internal/config"
	"gatewayd/sensors"
)

// capacity is what the configured sensors put in the buffer over max_age,
// against what max_size lets the buffer file hold.
type capacity struct {
	samples  int64         // samples taken over max_age
	need     int64         // estimated file bytes to hold them
	usable   int64         // file bytes max_size allows before the when_full policy drops
	holds    time.Duration // how long an outage max_size holds (max_age when it all fits)
	suggest  int64         // the smallest max_size that holds max_age (when it does not)
	perDay   int64         // estimated file bytes a day
	maxAge   time.Duration
	maxSize  int64
	whenFull string
}

// estimateCapacity sizes the buffer for the sensors' shapes with the buffer's
// own estimate of record v2 (buffer.EstimateFileBytes), which
// TestBytesPerStoredValue in buffer/ measures.
func estimateCapacity(cfg *config.Config, shapes []sensors.Shape) capacity {
	c := capacity{maxAge: cfg.Buffer.MaxAge.Duration, maxSize: int64(cfg.Buffer.MaxSize), whenFull: cfg.Buffer.WhenFull}
	base := buffer.EstimateFileBytes(0, 0)
	c.need = base
	var day int64
	for _, s := range shapes {
		if s.Interval <= 0 || len(s.Values) == 0 {
			continue
		}
		n := int64(c.maxAge / s.Interval)
		c.samples += n
		c.need += buffer.EstimateFileBytes(int(n), len(s.Values)) - buffer.EstimateFileBytes(0, len(s.Values))
		day += buffer.EstimateFileBytes(int(24*time.Hour/s.Interval), len(s.Values)) - buffer.EstimateFileBytes(0, len(s.Values))
	}
	c.perDay = day
	c.usable = buffer.UsableBytes(c.maxSize)
	c.holds = c.maxAge
	if c.usable > 0 && c.need > c.usable {
		if day > 0 {
			c.holds = time.Duration(float64(c.usable-base) / float64(day) * float64(24*time.Hour))
		}
		// The smallest whole MiB whose usable part holds it all.
		lo, hi := c.maxSize>>20, int64(1)
		for hi = max(lo, 1); buffer.UsableBytes(hi<<20) < c.need && hi < 1<<30; hi *= 2 {
		}
		for lo < hi {
			mid := (lo + hi) / 2
			if buffer.UsableBytes(mid<<20) >= c.need {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		c.suggest = hi << 20
	}
	return c
}

// warning says, when max_size cannot hold max_age of these sensors, for how
// long it can and what would; "" when it all fits.
func (c capacity) warning(cfg *config.Config) string {
	if c.suggest == 0 {
		return ""
	}
	lost := "the oldest samples are dropped"
	if c.whenFull == "drop-newest" {
		lost = "new samples are dropped"
	}
	return fmt.Sprintf("%s:%d: buffer.max_size: %s holds about %s of what the sensors take (%d samples in max_age %s, about %s of buffer file a day), not max_age %s: in a longer outage %s; set max_size to at least %s, or max_age to %s",
		cfg.File, cfg.Line("buffer.max_size"), config.FormatSize(c.maxSize), days(c.holds), c.samples, config.FormatDuration(c.maxAge),
		mib(c.perDay), config.FormatDuration(c.maxAge), lost, config.FormatSize(c.suggest), config.FormatDuration(roundDown(c.holds)))
}

// roundDown gives a max_age a person would write that fits: whole days,
// else hours, else minutes (at least the 1m the config allows).
func roundDown(d time.Duration) time.Duration {
	for _, u := range []time.Duration{24 * time.Hour, time.Hour, time.Minute} {
		if d >= u {
			return d.Truncate(u)
		}
	}
	return time.Minute
}

func days(d time.Duration) string {
	if d < 48*time.Hour {
		return fmt.Sprintf("%.0f hours", d.Hours())
	}
	return fmt.Sprintf("%.1f days", d.Hours()/24)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
