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

// The config is parsed once; each layer gets only its own options.

func sensorSpecs(cfg *config.Config) []sensors.Spec {
	specs := make([]sensors.Spec, len(cfg.Sensors))
	for i, s := range cfg.Sensors {
		specs[i] = sensors.Spec{
			Name:       s.Name,
			Driver:     s.Driver,
			Bus:        s.Bus,
			Address:    s.Address,
			Interval:   s.Interval.Duration,
			Properties: s.Properties,
			Options:    s.Options,
			Emulate:    s.Emulate,
			Device:     s.Device,
		}
		if s.MuxChannel != nil {
			specs[i].Mux = &sensors.Mux{Address: s.MuxAddress, Channel: *s.MuxChannel}
		}
	}
	return specs
}

// specError turns a sensors validation error into a config error that names
// the line and key in the file.
func specError(cfg *config.Config, err error) error {
	var se *sensors.SpecError
	if !asError(err, &se) {
		return err
	}
	key := fmt.Sprintf("sensor[%d]", se.Index)
	if se.Key != "" {
		key += "." + se.Key
	}
	return config.Errors{cfg.Errorf(key, "%s", se.Msg)}
}

func bufferOptions(cfg *config.Config, logger *slog.Logger) buffer.Options {
	b := cfg.Buffer
	return buffer.Options{
		Path:           cfg.Path(b.Path),
		MaxSize:        int64(b.MaxSize),
		MaxAge:         b.MaxAge.Duration,
		WhenFull:       b.WhenFull,
		CommitInterval: b.CommitInterval.Duration,
		Logger:         logger,
		Starting:       notifyStarting,
	}
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
	u := cfg.Uplink
	o := uplink.Options{
		Platform:             u.Platform,
		ProductKey:           cfg.Device.ProductKey,
		DeviceName:           cfg.Device.DeviceName,
		DeviceSecret:         secret,
		Endpoint:             u.Endpoint,
		Region:               u.Region,
		TLS:                  u.UseTLS(),
		CAFile:               cfg.Path(u.CAFile),
		CAReplace:            u.CAReplace,
		ServerName:           u.ServerName,
		SignMethod:           u.SignMethod,
		Keepalive:            u.Keepalive.Duration,
		ClientID:             u.ClientID,
		MaxMessagesPerSecond: u.MaxMessagesPerSecond,
		Logger:               logger,
	}
	if u.Platform == "mqtt" {
		scheme := "tcp://"
		if u.UseTLS() {
			scheme = "tls://"
		}
		o.Broker = scheme + u.Endpoint
		o.Username, o.Password = u.Username, u.Password
		o.ClientCert, o.ClientKey = cfg.Path(u.ClientCert), cfg.Path(u.ClientKey)
		o.Topic = u.Topic
	}
	return o
}
