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
