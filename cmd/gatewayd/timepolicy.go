package main

import (
	"log/slog"
	"sync/atomic"
	"time"

	"gatewayd/internal/clock"
	"gatewayd/internal/reading"
	"gatewayd/uplink"
)

// timePolicy decides, for each sample about to be sent, whether its time
// may go out (correcting its one stamp in place when the clock now knows
// better). No sample is ever sent with a time the gateway knows to be wrong
// without saying so:
//   - aliyun: a sample taken before sync in this boot waits for the clock
//     (the platform's NTP service answers within a second of connecting); a
//     sample from an earlier boot whose true time can never be known is
//     TimeUnknown, and the uplink dead-letters it with the reason, visible in
//     `gatewayd buffer export`, instead of posting it with a made-up time;
//   - mqtt: the sample is held for clockWait after start, hoping the system
//     clock synchronises (a Pi without an RTC usually gets NTP within a
//     minute of boot), then sent with "synced": false in its JSON rather
//     than held forever: a plain broker has no time service to wait for.
//
// It only judges: every Source call (release, dead letter) is the uplink's.
func timePolicy(platform string, clockWait time.Duration, clk *clock.Clock, logger *slog.Logger) func(*reading.Sample) uplink.TimeVerdict {
	start := time.Now()
	var warned atomic.Bool
	return func(s *reading.Sample) uplink.TimeVerdict {
		switch clk.Check(&s.Stamp) {
		case clock.Trusted:
			return uplink.TimeOK
		case clock.Wait:
			if platform == "mqtt" && time.Since(start) > clockWait {
				return uplink.TimeOK
			}
			return uplink.TimeHold
		}
		if platform == "mqtt" {
			return uplink.TimeOK
		}
		if warned.CompareAndSwap(false, true) {
			logger.Warn("samples from an earlier boot with an unknown time are set aside (gatewayd buffer export shows them)")
		}
		return uplink.TimeUnknown
	}
}
