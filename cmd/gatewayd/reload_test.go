package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

// `gatewayd reload` (the unit's ExecReload=) returns once the daemon runs
// the edited config, fails when the daemon refused it, and the daemon tells
// systemd RELOADING=1 for a reload, never STOPPING=1 (which systemd takes
// for the whole service stopping).
func TestReloadCommand(t *testing.T) {
	e := newE2E(t)
	sim := e.startSim(t)
	cfg := e.config(t, e2eSecret)
	run := t.TempDir()
	t.Setenv("RUNTIME_DIRECTORY", run)
	notify := listenNotify(t)
	t.Setenv("MAINPID", "")

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
	reload := func() (string, error) {
		var out syncBuffer
		err := Run(context.Background(), []string{"reload", "--pid", strconv.Itoa(os.Getpid()), "--timeout", "20s"}, &out, &out)
		return out.String(), err
	}

	d := startDaemon(t, cfg)
	waitFor(t, 15*time.Second, "temperature at iotsim", seen("temperature"))
	waitFor(t, 5*time.Second, "the start reported", func() bool { g, o, _ := readReloadStatus(run); return g == 0 && o == "started" })

	src, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(src, []byte(`temperature = "temperature"`), []byte(`temperature = "air_temp"`), 1), 0o600)
	if out, err := reload(); err != nil || !strings.Contains(out, "runs the new config") {
		t.Fatalf("reload of a good edit: %v: %s", err, out)
	}
	if g, o, _ := readReloadStatus(run); g != 1 || o != "applied" {
		t.Errorf("status after the good edit: %d %s", g, o)
	}
	waitFor(t, 15*time.Second, "air_temp at iotsim", seen("air_temp"))

	os.WriteFile(cfg, bytes.Replace(src, []byte(`interval = "200ms"`), []byte(`interval = "soon"`), 1), 0o600)
	out, err := reload()
	if exitCode(err) != 1 || !strings.Contains(out, "refused the new config") || !strings.Contains(out, "sensor.interval") {
		t.Fatalf("reload of a bad edit: exit %d (%v): %s", exitCode(err), err, out)
	}
	n := len(sim.Accepted())
	waitFor(t, 10*time.Second, "readings still arriving after the refused reload", func() bool { return len(sim.Accepted()) > n+3 })

	var discard syncBuffer
	if err := Run(context.Background(), []string{"reload"}, &discard, &discard); exitCode(err) != 2 {
		t.Errorf("reload without a pid: exit %d, want 2", exitCode(err))
	}

	states := notify()
	if strings.Contains(states, "STOPPING=1") {
		t.Errorf("STOPPING=1 sent during a reload:\n%s", states)
	}
	if strings.Count(states, "RELOADING=1") != 2 || strings.Count(states, "READY=1") != 3 {
		t.Errorf("want RELOADING=1 twice and READY=1 three times:\n%s", states)
	}
	d.stop(t)
	if !strings.Contains(notify(), "STOPPING=1") {
		t.Errorf("no STOPPING=1 at the real stop")
	}
}

// listenNotify stands in for systemd's notify socket (NOTIFY_SOCKET); the
// returned func gives what was received so far.
func listenNotify(t *testing.T) func() string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	var mu sync.Mutex
	var got strings.Builder
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got.Write(buf[:n])
			got.WriteByte('\n')
			mu.Unlock()
		}
	}()
	return func() string {
		time.Sleep(100 * time.Millisecond) // let datagrams in flight land
		mu.Lock()
		defer mu.Unlock()
		return got.String()
	}
}
