package main

import (
	"fmt"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"gatewayd/buffer"
	"gatewayd/internal/config"
	"gatewayd/sensors"
	"gatewayd/uplink"
)

// The config is parsed once; each layer gets only its own options, built by
// the config package (which also maps their field errors to the file). The
// daemon adds what is not in the file: the logger and callbacks.

func sensorSpecs(cfg *config.Config) []sensors.Spec { return cfg.SensorSpecs() }

// specError turns a sensors validation error into a config error that names
// the line and key in the file.
func specError(cfg *config.Config, err error) error { return cfg.SpecError(err) }

func bufferOptions(cfg *config.Config, logger *slog.Logger) buffer.Options {
	o := cfg.BufferOptions()
	o.Logger = logger
	o.Starting = notifyStarting
	return o
}

// sdNotify is the notifier gatewayd talks to systemd with (health's default
// too): go-systemd's, a no-op without $NOTIFY_SOCKET.
var sdNotify = func(state string) (bool, error) { return sd.SdNotify(false, state) }

// notifyStarting tells systemd that the start goes on (a buffer open that is
// retrying I/O errors): the reason, and more time before TimeoutStartSec
// kills the service.
func notifyStarting(status string, extend time.Duration) {
	_, _ = sdNotify(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d\nSTATUS=%s", extend.Microseconds(), status))
}

func uplinkOptions(cfg *config.Config, secret string, logger *slog.Logger) uplink.Options {
	o := cfg.UplinkOptions(secret)
	o.Logger = logger
	return o
}

// beatEvery is how often the sensors and the uplink beat the heartbeat
// (each must beat within bound, heartbeatBound) and how often an idle
// uplink looks for backlog. It is at most half the bound and sits on the
// sampling grid, so a beat rides on a round's wake-up (or the buffer's
// commit) instead of waking the board on its own: with the smallest
// interval iv at most bound/2, the largest multiple of iv that fits; above
// it, the commit interval when iv is a multiple of it, else the largest
// fraction of iv that fits. Three BME280s at 60 s beat every 10 s with the
// default commit, not every 5 s; at the seed's 5 s, every 15 s.
func beatEvery(intervals []time.Duration, commit, bound time.Duration) time.Duration {
	most := bound / 2
	var iv time.Duration
	for _, d := range intervals {
		if d > 0 && (iv == 0 || d < iv) {
			iv = d
		}
	}
	switch {
	case iv == 0 || most <= 0:
		return uplink.DefaultBeatEvery
	case iv <= most:
		return iv * (most / iv)
	case commit > 0 && commit <= most && iv%commit == 0:
		return commit
	}
	return iv / ((iv + most - 1) / most)
}
