package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"gatewayd/internal/iotsim"
)

// trial is one real gatewayd process (restartable) against iotsim running
// in this process (aliyun over TLS), or against mosquitto (mqtt).
type trial struct {
	h      *harness
	name   string
	dir    string
	conf   gwConfig
	cfg    string
	sim    *iotsim.Server
	gw     *proc
	led    *ledger
	logs   []string // stderr of earlier lifetimes
	starts int
}

const simSensors = 3

// readingsPerSample: a BME280 sample holds three values (temperature,
// humidity, pressure).
const readingsPerSample = 3

// newSimTrial starts iotsim on a free port and writes gatewayd's config.
func (h *harness) newSimTrial(name string, mod func(*gwConfig)) (*trial, error) {
	return h.newSimTrialOpts(name, nil, mod)
}

// newSimTrialOpts is newSimTrial with iotsim's options changed by simMod
// (nil: none) and the device named in the config registered.
func (h *harness) newSimTrialOpts(name string, simMod func(*iotsim.Options), mod func(*gwConfig)) (*trial, error) {
	dir, err := os.MkdirTemp(h.work, "trial-")
	if err != nil {
		return nil, fmt.Errorf("trial dir: %w", err)
	}
	ca, cert, key, err := iotsim.GenerateCerts(filepath.Join(dir, "certs"))
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	hp, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := gwConfig{Platform: "aliyun", CAFile: ca, Buffer: filepath.Join(dir, "buffer.db"),
		Commit: time.Second, Health: fmt.Sprintf("127.0.0.1:%d", hp), Sensors: simSensors, Interval: h.sz.SampleEvery}
	if mod != nil {
		mod(&conf)
	}
	dev := conf.Device
	if dev == "" {
		dev = dn
	}
	o := iotsim.Options{TLSAddr: "127.0.0.1:0", CertFile: cert, KeyFile: key,
		Devices: []iotsim.Device{{ProductKey: pk, DeviceName: dev, DeviceSecret: secret}}}
	if simMod != nil {
		simMod(&o)
	}
	sim, err := iotsim.Start(o)
	if err != nil {
		return nil, fmt.Errorf("iotsim: %w", err)
	}
	t := &trial{h: h, name: name, dir: dir, sim: sim, led: newLedger(), conf: conf}
	if t.conf.Endpoint == "" {
		t.conf.Endpoint = sim.TLSAddr()
	}
	if t.cfg, err = t.conf.write(dir); err != nil {
		sim.Close()
		return nil, err
	}
	return t, nil
}

func (t *trial) start() error {
	p, err := t.h.startProc("gatewayd", nil, t.h.gw, "run", "--config", t.cfg)
	if err != nil {
		return err
	}
	t.gw = p
	t.starts++
	if err := waitPort(t.conf.Health, 10*time.Second); err != nil {
		return fmt.Errorf("gatewayd health endpoint: %w: %s", err, p.Stderr())
	}
	return nil
}

func (t *trial) metrics() (map[string]float64, error) { return metrics(t.conf.Health) }

// stop ends the current lifetime gracefully after scraping its counters:
// taken and drops add to the ledger, cutoff moves to the scrape.
func (t *trial) stop() error {
	m, err := t.metrics()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", t.name, err, t.gw.Stderr())
	}
	t.led.mu.Lock()
	// Both counters count samples; the ledger counts values, and a
	// BME280 sample holds three.
	t.led.taken += m["gatewayd_readings_taken_total"] * readingsPerSample
	t.led.drops += m["gatewayd_buffer_drops_total"] * readingsPerSample
	t.led.cutoff = time.Now()
	t.led.mu.Unlock()
	ok := t.gw.stop(syscall.SIGTERM, 15*time.Second)
	t.logs = append(t.logs, t.gw.Stderr())
	t.h.log.Debug("gatewayd log", "trial", t.name, "stderr", tail(t.gw.Stderr(), 30))
	if !ok {
		return fmt.Errorf("%s: gatewayd did not stop on SIGTERM within 15 s", t.name)
	}
	return nil
}

// close stops everything and reads the final state: the buffer file and
// what the far end accepted.
func (t *trial) close() error {
	if t.gw != nil && !t.gw.exited() {
		if err := t.stop(); err != nil {
			return err
		}
	}
	if t.sim != nil {
		t.led.fromSim(t.sim.Accepted())
		t.sim.Close()
		t.sim = nil
	}
	pending, dead, err := export(t.conf.Buffer)
	if err != nil {
		return err
	}
	for _, r := range pending {
		t.led.remaining[recKey(r)] = true
	}
	for _, r := range dead {
		t.led.dead[recKey(r)] = true
	}
	return nil
}

// drained waits until the backlog is gone: the oldest unsent reading is
// younger than a few sampling intervals. It returns how long that took.
func (t *trial) drained(bound time.Duration) (time.Duration, bool) {
	start := time.Now()
	live := 3*t.conf.Interval + 2*time.Second
	ok := waitFor(bound, 200*time.Millisecond, func() bool {
		m, err := t.metrics()
		return err == nil && m["gatewayd_buffer_oldest_age_seconds"] < live.Seconds() && m["gatewayd_connected"] == 1
	})
	return time.Since(start), ok
}

// faultRow is one line of the fault table.
func faultRow(s *section, fault, trials string, tl tally, recovered bool, how string, lostWhy ...string) {
	lost := itoa(tl.lost)
	if tl.lost != 0 {
		lost = "**" + lost + "**"
		if tl.lost == tl.drops {
			lost += " (all counted drops)"
		}
		for _, w := range lostWhy {
			lost += " " + w
		}
		if tl.lostDetail != "" {
			lost += " (" + tl.lostDetail + ")"
		}
	}
	s.row(fault, trials, tl.taken, tl.unique, tl.dups, tl.remaining, tl.dead, tl.drops, lost, yesNo(recovered), how)
}
