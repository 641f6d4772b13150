package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"gatewayd/internal/iotsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "iotsim:", err)
		os.Exit(1)
	}
}

type devices []iotsim.Device

func (d *devices) String() string { return fmt.Sprint(len(*d), " devices") }

func (d *devices) Set(v string) error {
	p := strings.SplitN(v, ":", 3)
	if len(p) != 3 || p[0] == "" || p[1] == "" || p[2] == "" {
		return fmt.Errorf("%q: want PRODUCTKEY:DEVICENAME:SECRET", v)
	}
	*d = append(*d, iotsim.Device{ProductKey: p[0], DeviceName: p[1], DeviceSecret: p[2]})
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("iotsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tlsAddr := fs.String("tls", "127.0.0.1:8883", "TLS listen address (securemode=2); empty to disable")
	tcpAddr := fs.String("tcp", "127.0.0.1:1883", "plain TCP listen address (securemode=3); empty to disable")
	certs := fs.String("certs", "iotsim-certs", "directory with the CA and server certificate (generated there if absent)")
	rateLimit := fs.Float64("rate-limit", 0, "per-device messages per second (token bucket) above which posts get 429 (0 = unlimited)")
	rateWindow := fs.Int("rate-window", 0, "most messages a device may publish in any sliding second (all of them: posts, NTP, replies); posts beyond get 429 (0 = no window)")
	verbose := fs.Bool("v", false, "log connections and protocol details to stderr")
	var devs devices
	fs.Var(&devs, "device", "device triple PRODUCTKEY:DEVICENAME:SECRET (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(devs) == 0 {
		return errors.New("no --device PRODUCTKEY:DEVICENAME:SECRET given")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	o := iotsim.Options{TCPAddr: *tcpAddr, Devices: devs, Out: stdout, Logger: log, RateLimit: *rateLimit, RateWindow: *rateWindow}
	if *tlsAddr != "" {
		ca, cert, key, err := iotsim.GenerateCerts(*certs)
		if err != nil {
			return err
		}
		o.TLSAddr, o.CertFile, o.KeyFile = *tlsAddr, cert, key
		fmt.Fprintf(stderr, "iotsim: CA for the gateway's ca_file: %s\n", ca)
	}
	s, err := iotsim.Start(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "iotsim: listening tls=%s tcp=%s for %d device(s); Ctrl-C stops\n", s.TLSAddr(), s.TCPAddr(), len(devs))
	<-ctx.Done()
	fmt.Fprintln(stderr, "iotsim: stopping")
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		return errors.New("close did not finish within 5s")
	}
}
