package sensors

import (
	"time"

	"periph.io/x/devices/v3/bmxx80"
)

// conversion is each chip's longest time to a fresh measurement at the given
// options (datasheet maxima): sampling faster reads stale data or keeps the
// chip from ever finishing. It bounds intervals set from the platform.
var conversion = map[string]func(opts map[string]string) time.Duration{
	"aht20": fixedConv(80 * time.Millisecond), // datasheet 5.4: measurement takes up to 80 ms
	// Datasheet 9.1 (BME280) / 3.8.1 (BMP280): t_measure,max at the
	// configured oversampling.
	"bme280": func(o map[string]string) time.Duration { return bmxConversion(bmxOpts(o)) },
	"bmp280": func(o map[string]string) time.Duration {
		opts := bmxOpts(o)
		opts.Humidity = bmxx80.Off
		return bmxConversion(opts)
	},
	"ds18b20": fixedConv(750 * time.Millisecond), // datasheet: 12-bit conversion, max
	"hdc302x": fixedConv(15 * time.Millisecond),  // datasheet 7.5: low-noise mode, max 14.2 ms
	"sht3x":   fixedConv(16 * time.Millisecond),  // datasheet 2.2: high repeatability, max 15.5 ms
	"sht4x":   fixedConv(9 * time.Millisecond),   // datasheet 3.1: high precision, max 8.3 ms
	"mcp9808": fixedConv(250 * time.Millisecond), // datasheet 5.0: 0.0625 °C resolution, 250 ms
	"tmp102":  fixedConv(35 * time.Millisecond),  // datasheet 6.5: conversion time max 35 ms
	// Periodic mode measures every 5 s, low-power mode every 30 s (datasheet
	// 3.5, 3.6): a shorter interval reads the same value again.
	"scd4x": func(o map[string]string) time.Duration {
		if o["mode"] == "low-power" {
			return 30 * time.Second
		}
		return 5 * time.Second
	},
}

func fixedConv(d time.Duration) func(map[string]string) time.Duration {
	return func(map[string]string) time.Duration { return d }
}
