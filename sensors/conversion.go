package sensors

import "time"

// conversion is each chip's longest time to a fresh measurement at the given
// options (datasheet maxima): sampling faster reads stale data or keeps the
// chip from ever finishing. It bounds intervals set from the platform.
var conversion = map[string]func(opts map[string]string) time.Duration{
	"aht20":   fixed(80 * time.Millisecond),  // datasheet 5.4: measurement takes up to 80 ms
	"bme280":  fixed(113 * time.Millisecond), // datasheet 9.1: t_measure,max with every oversampling at x16
	"bmp280":  fixed(44 * time.Millisecond),  // datasheet 3.8.1: ultra high resolution, max
	"ds18b20": fixed(750 * time.Millisecond), // datasheet: 12-bit conversion, max
	"hdc302x": fixed(15 * time.Millisecond),  // datasheet 7.5: low-noise mode, max 14.2 ms
	"sht3x":   fixed(16 * time.Millisecond),  // datasheet 2.2: high repeatability, max 15.5 ms
	"sht4x":   fixed(9 * time.Millisecond),   // datasheet 3.1: high precision, max 8.3 ms
	"mcp9808": fixed(250 * time.Millisecond), // datasheet 5.0: 0.0625 °C resolution, 250 ms
	"tmp102":  fixed(35 * time.Millisecond),  // datasheet 6.5: conversion time max 35 ms
	// Periodic mode measures every 5 s, low-power mode every 30 s (datasheet
	// 3.5, 3.6): a shorter interval reads the same value again.
	"scd4x": func(o map[string]string) time.Duration {
		if o["mode"] == "low-power" {
			return 30 * time.Second
		}
		return 5 * time.Second
	},
}

func fixed(d time.Duration) func(map[string]string) time.Duration {
	return func(map[string]string) time.Duration { return d }
}
