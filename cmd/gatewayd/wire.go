package main

import (
	"log/slog"

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
	return o
}

func uplinkOptions(cfg *config.Config, secret string, logger *slog.Logger) uplink.Options {
	o := cfg.UplinkOptions(secret)
	o.Logger = logger
	return o
}
