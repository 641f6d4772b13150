package main

import (
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGHUP rereads the config: a valid edit takes effect without a restart of
// the process; an invalid one is refused and the running config stays.
func TestSIGHUPReload(t *testing.T) {
	e := newE2E(t)
	sim := e.startSim(t)
	cfg := e.config(t, e2eSecret)
	d := startDaemon(t, cfg)
	seen := func(prop string) func() bool {
		return func() bool {
			for _, a := range sim.Accepted() {
				if a.Property == prop {
					return true
				}
			}
			return false
		}
	}
	waitFor(t, 15*time.Second, "temperature at iotsim", seen("temperature"))

	// A broken edit: refused, logged, the daemon keeps sending.
	src, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(src, []byte(`interval = "200ms"`), []byte(`interval = "soon"`), 1), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the refusal in the log", func() bool {
		return strings.Contains(d.stderr.String(), "reload refused")
	})
	n := len(sim.Accepted())
	waitFor(t, 10*time.Second, "readings still arriving after the refused reload", func() bool { return len(sim.Accepted()) > n+3 })

	// A good edit: the property is renamed in the console, and here.
	os.WriteFile(cfg, bytes.Replace(src, []byte(`temperature = "temperature"`), []byte(`temperature = "air_temp"`), 1), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, 15*time.Second, "air_temp at iotsim after the reload", seen("air_temp"))
	d.stop(t)
	if !strings.Contains(d.stderr.String(), "SIGHUP: reloading the config") {
		t.Errorf("no reload line in the log")
	}
}
