// Command gatewayd reads sensor chips, keeps every reading in a crash-safe
// buffer on the SD card and uplinks them to the Alibaba Cloud IoT Platform or
// any MQTT broker. See the README for the commands and the config file.
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
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"gatewayd/internal/config"
	"gatewayd/uplink"
)

// version is stamped in at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "run" && os.Getenv("GOMAXPROCS") == "" {
		// The daemon waits >99% of the time; its work comes in small
		// bursts (a sample, a post, a reply). With one P a burst runs on
		// the thread that woke, instead of waking idle threads to steal
		// it: at 10 readings/s that is 23% less CPU and 2.4 fewer
		// syscalls per reading (futex, epoll) in the proof harness
		// (bench/README.md). Blocking syscalls (fsync) still hand the P
		// to another thread, so sampling never waits for the disk.
		// GOMAXPROCS in the environment overrides this.
		runtime.GOMAXPROCS(1)
	}
	if len(os.Args) > 1 && os.Args[1] == "run" && os.Getenv("GOGC") == "" {
		// The heap the daemon keeps is small (~1 MiB); with the default
		// GOGC=100 the runtime lets garbage grow to its 4 MiB minimum
		// before the first collection, and the pages stay resident: at
		// 10 readings/s peak RSS 13.3-13.7 MiB (issue 11's bound: 12).
		// At 40 the minimum is 1.6 MiB: 11.4 MiB, same CPU (side by
		// side, 70-80 s: 226 vs 220 ms at 100 vs 50, 177 vs 176 ms at
		// 50 vs 40). GOGC in the environment overrides this.
		debug.SetGCPercent(40)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "gatewayd: %v: shutting down (send again to abort)\n", s)
		cancel()
		s = <-sigs
		fmt.Fprintf(os.Stderr, "gatewayd: %v again: aborting\n", s)
		os.Exit(130)
	}()
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	os.Exit(exitCode(err))
}

// errSilent marks an error already reported to the user; only the exit
// status is left to set.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case config.IsInvalid(err):
		return config.ExitConfig
	case errors.Is(err, flag.ErrHelp):
		return 2
	}
	return 1
}

// app is what every command gets.
type app struct {
	stdout, stderr io.Writer
}

type command struct {
	summary string
	run     func(ctx context.Context, a *app, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"run":     {"run the daemon (the default command)", cmdRun},
		"check":   {"validate the config file and show the effective settings, secrets masked", cmdCheck},
		"read":    {"read every configured sensor once and print the values (exit 1 if any failed)", cmdRead},
		"scan":    {"probe an I2C bus and name the chips found", cmdScan},
		"buffer":  {"inspect the buffer file: buffer stats | buffer export [--json] [--dead] | buffer requeue [--reason TEXT]", cmdBuffer},
		"reload":  {"make the running daemon reread its config and wait for the outcome (the unit's ExecReload=)", cmdReload},
		"sign":    {"print the MQTT CONNECT fields for the device (to debug sign-in problems)", cmdSign},
		"status":  {"ask the running daemon how it is: sensors, connection, backlog, clock, watchdog (exit 1 if unhealthy)", cmdStatus},
		"version": {"print the version", cmdVersion},
	}
}

// Run is the whole program without os.Exit, for tests.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a := &app{stdout: stdout, stderr: stderr}
	name := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if name == "--version" || name == "help" {
		name = map[string]string{"--version": "version", "help": "help"}[name]
	}
	cmds := commands()
	c, ok := cmds[name]
	if !ok {
		usage(stderr, cmds)
		if name == "help" {
			return nil
		}
		return &exitError{2, fmt.Errorf("unknown command %q", name)}
	}
	err := c.run(ctx, a, args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		var ee *exitError
		if !errors.As(err, &ee) || ee.err != errReported {
			fmt.Fprintf(stderr, "gatewayd %s: %v\n", name, err)
		}
	}
	return err
}

// errReported: the command already told the user what went wrong.
var errReported = errors.New("reported")

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "usage: gatewayd [command] [--config FILE] [flags]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(w, "\nWithout --config the file is searched in %s.\n", strings.Join(config.DefaultPaths, ", "))
}

func newFlags(a *app, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("gatewayd "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	return fs
}

// loadConfig finds, reads and validates the config; warnings go to stderr.
func loadConfig(a *app, path string) (*config.Config, error) {
	if path == "" {
		p, err := config.Find(nil)
		if err != nil {
			return nil, err
		}
		path = p
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(a.stderr, "warning: %s\n", w)
	}
	return cfg, nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})
	return slog.New(h)
}

func cmdVersion(_ context.Context, a *app, _ []string) error {
	fmt.Fprintf(a.stdout, "gatewayd %s\n", version)
	for _, r := range uplink.BuiltinRoots() {
		fmt.Fprintf(a.stdout, "built-in root: %s, valid until %s (%s)\n", r.Name, r.NotAfter.Format("2006-01-02"), r.Use)
	}
	return nil
}
