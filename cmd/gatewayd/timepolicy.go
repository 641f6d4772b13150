package main

import (
	"log/slog"
	"sync/atomic"
	"time"

	"gatewayd/internal/clock"
	"gatewayd/internal/reading"
)

// timePolicy decides, for each reading about to be sent, whether its time
// may go out (correcting it in place when the clock now knows better). No
// reading is ever sent with a time the gateway knows to be wrong without
// saying so:
//   - aliyun: a reading taken before sync in this boot waits for the clock
//     (the platform's NTP service answers within a second of connecting); a
//     reading from an earlier boot whose true time can never be known is
//     dead-lettered with the reason, visible in `gatewayd buffer export`,
//     instead of being posted with a made-up time;
//   - mqtt: the reading is held for clockWait after start, hoping the system
//     clock synchronises (a Pi without an RTC usually gets NTP within a
//     minute of boot), then sent with "synced": false in its JSON rather
//     than held forever: a plain broker has no time service to wait for.
func timePolicy(platform string, clockWait time.Duration, clk *clock.Clock, deadLetter func([]reading.ID, string) error, logger *slog.Logger) func(*reading.Reading) bool {
	start := time.Now()
	var warned atomic.Bool
	return func(r *reading.Reading) bool {
		switch clk.Check(r) {
		case clock.Trusted:
			return true
		case clock.Wait:
			return platform == "mqtt" && time.Since(start) > clockWait
		}
		if platform == "mqtt" {
			return true
		}
		if err := deadLetter([]reading.ID{r.ID}, "time unknown: taken before the clock was synchronised in an earlier boot"); err == nil && warned.CompareAndSwap(false, true) {
			logger.Warn("readings from an earlier boot with an unknown time were set aside (gatewayd buffer export shows them)")
		}
		return false
	}
}
