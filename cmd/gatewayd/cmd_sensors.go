package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"periph.io/x/conn/v3/i2c"

	"gatewayd/internal/clock"
	"gatewayd/internal/config"
	"gatewayd/sensors"
)

func cmdRead(ctx context.Context, a *app, args []string) error {
	fs := newFlags(a, "read")
	path := fs.String("config", "", "config file")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(a, *path)
	if err != nil {
		return err
	}
	// Stamp as the daemon does, so "synced" tells the technician whether
	// this board's clock can be trusted yet.
	clk := clock.New(clock.Options{Logger: newLogger(io.Discard, "error")})
	set, err := sensors.New(sensorSpecs(cfg), sensors.Options{Logger: newLogger(io.Discard, "error"), Stamp: clk.Stamp})
	if err != nil {
		return specError(cfg, err)
	}
	defer set.Close(context.Background())
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	results := set.ReadOnce(ctx)
	if err := sensors.FormatResults(a.stdout, results, *asJSON); err != nil {
		return err
	}
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(a.stderr, "%d of %d sensors failed\n", failed, len(results))
		return &exitError{1, errReported}
	}
	return nil
}

func cmdScan(ctx context.Context, a *app, args []string) error {
	fs := newFlags(a, "scan")
	bus := fs.String("bus", "/dev/i2c-1", `I2C bus to probe ("emulated": the emulated chips of --config)`)
	path := fs.String("config", "", `config file (for --bus emulated)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var specs []sensors.Spec
	var cfg *config.Config
	if *bus == "emulated" {
		var err error
		if cfg, err = loadConfig(a, *path); err != nil {
			return err
		}
		// The chips of the config's emulated bus ("emulated"), not those of
		// other buses that could share an address with them.
		for _, sp := range sensorSpecs(cfg) {
			if sp.Bus == "emulated" {
				specs = append(specs, sp)
			}
		}
	}
	var b i2c.Bus
	if *bus == "emulated" {
		eb, err := sensors.EmulatedBus(specs)
		if err != nil {
			return specError(cfg, err)
		}
		b = eb
	} else {
		hb, err := sensors.OpenBus(*bus)
		if err != nil {
			return fmt.Errorf("%w (is I2C enabled? raspi-config -> Interface Options -> I2C)", err)
		}
		defer hb.Close()
		b = hb
	}
	found, err := sensors.Scan(ctx, b)
	if err != nil {
		return err
	}
	return sensors.FormatFound(a.stdout, found)
}
