package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"gatewayd/buffer"
	"gatewayd/sensors"
	"gatewayd/uplink"
)

// checkNow is check's clock for the root-expiry warning; tests move it.
var checkNow = time.Now

func cmdCheck(_ context.Context, a *app, args []string) error {
	fs := newFlags(a, "check")
	path := fs.String("config", "", "config file")
	quiet := fs.Bool("q", false, "print nothing when the config is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(a, *path)
	if err != nil {
		return err
	}
	if u := cfg.Uplink; u.Platform == "aliyun" && u.UseTLS() && !u.CAReplace {
		for _, w := range uplink.RootWarnings(checkNow()) {
			fmt.Fprintf(a.stderr, "warning: %s\n", w)
		}
	}
	// The sensor layer knows the drivers, their measurements and options:
	// let it validate too, without touching any hardware.
	set, err := sensors.New(sensorSpecs(cfg), sensors.Options{})
	if err != nil {
		return specError(cfg, err)
	}
	set.Close(context.Background())
	if *quiet {
		return nil
	}
	if err := cfg.WriteEffective(a.stdout); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "\n# %s is valid.\n", cfg.File)
	if cfg.Uplink.Platform == "aliyun" {
		fmt.Fprintf(a.stdout, "# Note: the platform allows one connection per device; two gateways with the same\n"+
			"# device_name kick each other off forever. Give every board its own device.\n")
	}
	return nil
}

func cmdBuffer(_ context.Context, a *app, args []string) error {
	if len(args) == 0 || (args[0] != "stats" && args[0] != "export") {
		fmt.Fprintf(a.stderr, "usage: gatewayd buffer stats|export [--json] [--config FILE | --path FILE]\n")
		return &exitError{2, errReported}
	}
	sub := args[0]
	fs := newFlags(a, "buffer "+sub)
	path := fs.String("config", "", "config file (its [buffer] path is used)")
	file := fs.String("path", "", "buffer file (instead of --config)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *file == "" {
		cfg, err := loadConfig(a, *path)
		if err != nil {
			return err
		}
		*file = cfg.Path(cfg.Buffer.Path)
	}
	if sub == "export" {
		return buffer.Export(*file, a.stdout, *asJSON)
	}
	st, err := buffer.Inspect(*file)
	if err != nil {
		return err
	}
	return writeBufferStats(a.stdout, *file, st, *asJSON)
}

func cmdSign(_ context.Context, a *app, args []string) error {
	fs := newFlags(a, "sign")
	path := fs.String("config", "", "config file")
	show := fs.Bool("show-password", false, "print the password (it logs in as this device: keep it private)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(a, *path)
	if err != nil {
		return err
	}
	secret, err := cfg.Secret()
	if err != nil {
		return err
	}
	cr, err := uplinkOptions(cfg, secret, newLogger(io.Discard, "error")).Credentials()
	if err != nil {
		return err
	}
	// Not a single character of the password unless asked: a prefix narrows
	// the search, and a short password would be printed whole.
	pass := "(hidden; --show-password prints it)"
	if *show {
		pass = cr.Password
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "clientId\t%s\n", cr.ClientID)
	fmt.Fprintf(w, "username\t%s\n", cr.Username)
	fmt.Fprintf(w, "password\t%s\n", pass)
	return w.Flush()
}
