package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sys/unix"

	"gatewayd/buffer"
	"gatewayd/internal/iotsim"
)

// faults runs every fault as a repeatable trial and prints one table.
func (h *harness) faults() error {
	s := &section{
		title: "Reliability: faults",
		method: fmt.Sprintf("Each row is a trial this command ran against the real gatewayd binary (3 emulated BME280s sampled every %v, "+
			"group commit 1 s) unless it says \"in-process\". Every count is of *values* (a BME280 sample holds 3), each accounted for by "+
			"its identity: (property, time in ms) on the wire and in the buffer file (exact: the property names the sensor and "+
			"measurement, and a sensor never takes two samples in one ms), (sample ID, measurement) in the in-process trials. "+
			"*taken* is gatewayd's own `gatewayd_readings_taken_total` (samples) × 3, scraped just "+
			"before each graceful stop (summed over restarts); every value stamped by then must be *delivered* (accepted by iotsim, "+
			"or seen on the broker by a subscriber), *still buffered* (`buffer export` of the file afterwards) or *set aside* "+
			"(dead letter, visible in the export). *lost* = taken − those; *dropped* is the buffer's own counted drop "+
			"(`gatewayd_buffer_drops_total` samples × 3, disk-full/size policy). *duplicates* = extra acceptances of a value already accepted. "+
			"*recovered* = the backlog drained (oldest unsent sample back to live) within %v after the fault ended.",
			h.sz.SampleEvery, h.sz.RecoverBound),
		head: []string{"fault", "trials", "taken", "delivered", "duplicates", "still buffered", "set aside", "dropped (counted)", "lost", "recovered", "what happened"},
	}
	h.report.add(s)
	trials := []struct {
		name string
		fn   func(*section) error
	}{
		{"outage", h.faultOutage},
		{"blackhole", h.faultBlackhole},
		{"kill9", h.faultKill9},
		{"diskfull", h.faultDiskFull},
		{"corrupt", h.faultCorrupt},
		{"clock", h.faultClock},
		{"sensor", h.faultSensor},
		{"429", h.fault429},
		{"460", h.fault460},
	}
	// Each trial writes its rows into its own section; they are merged in
	// the order above, so a concurrent run prints the same table.
	subs := make([]*section, len(trials))
	errs := make([]error, len(trials))
	var wg sync.WaitGroup
	for i, f := range trials {
		if len(h.faultSet) > 0 && !h.faultSet[f.name] {
			continue
		}
		subs[i] = &section{}
		one := func() {
			if h.ctx.Err() != nil {
				errs[i] = h.ctx.Err()
				return
			}
			h.log.Info("fault", "name", f.name)
			if err := f.fn(subs[i]); err != nil {
				h.log.Error("fault trial failed", "fault", f.name, "err", err)
				subs[i].row(f.name, "—", "—", "—", "—", "—", "—", "—", "—", "**trial failed**", fmt.Sprint(err))
				errs[i] = fmt.Errorf("%s: %w", f.name, err)
			}
		}
		if h.sz.ParallelFaults {
			wg.Go(one)
		} else {
			one()
		}
	}
	wg.Wait()
	for _, sub := range subs {
		if sub != nil {
			s.rows = append(s.rows, sub.rows...)
		}
	}
	if h.sz.ParallelFaults {
		s.notes = append(s.notes, "small run: the fault trials ran concurrently (each with its own processes, ports and files) to fit CI's time")
	}
	errs = slices.DeleteFunc(errs, func(e error) bool { return e == nil })
	if len(errs) > 0 {
		return fmt.Errorf("%d fault trials failed: %v", len(errs), errs)
	}
	return nil
}

func (t *trial) abort() {
	if t.gw != nil {
		t.gw.stop(syscall.SIGKILL, 5*time.Second)
	}
	if t.sim != nil {
		t.sim.Close()
		t.sim = nil
	}
}

func (h *harness) scaled(d time.Duration, what string) string {
	if h.sz.Name == "full" {
		return d.String()
	}
	return d.String() + " (scaled down from minutes: " + what + ")"
}

func (h *harness) faultOutage(s *section) error {
	t, err := h.newSimTrial("outage", nil)
	if err != nil {
		return err
	}
	defer t.abort()
	if err := t.start(); err != nil {
		return err
	}
	h.sleep(3 * time.Second)
	t.sim.SetOutage(true)
	h.sleep(h.sz.Outage)
	m, _ := t.metrics()
	depth, values := m["gatewayd_buffer_depth"], m["gatewayd_buffer_values"]
	t.sim.SetOutage(false)
	took, ok := t.drained(h.sz.RecoverBound)
	h.sleep(time.Second)
	if err := t.close(); err != nil {
		return err
	}
	tl := t.led.tally()
	faultRow(s, "platform outage of "+h.scaled(h.sz.Outage, "small run")+" while sampling (iotsim drops the link and refuses logins with CONNACK 3)",
		"1", tl, ok, fmt.Sprintf("%.0f samples (%.0f values) buffered at the end of the outage; backlog drained %v after the platform returned (reconnect backoff included)",
			depth, values, took.Round(100*time.Millisecond)))
	return nil
}

func (h *harness) fault429(s *section) error {
	t, err := h.newSimTrial("429", nil)
	if err != nil {
		return err
	}
	defer t.abort()
	if err := t.start(); err != nil {
		return err
	}
	h.sleep(2 * time.Second)
	// One post per 5 s: live rounds coalesce into about one message a
	// second, so a limit of 1/s would rarely bite.
	t.sim.SetRateLimit(0.2, 1)
	h.sleep(h.sz.FaultWindow)
	t.sim.SetRateLimit(0, 0)
	took, ok := t.drained(h.sz.RecoverBound)
	m, _ := t.metrics()
	h.sleep(time.Second)
	if err := t.close(); err != nil {
		return err
	}
	tl := t.led.tally()
	faultRow(s, fmt.Sprintf("platform answers 429 (iotsim rate limit 1 message per 5 s for %v)", h.sz.FaultWindow), "1", tl,
		ok && m["gatewayd_throttled_total"] > 0,
		fmt.Sprintf("%.0f 429 replies; samples released and resent; backlog drained %v after the limit was lifted",
			m["gatewayd_throttled_total"], took.Round(100*time.Millisecond)))
	return nil
}

func (h *harness) fault460(s *section) error {
	t, err := h.newSimTrial("460", nil)
	if err != nil {
		return err
	}
	defer t.abort()
	const refused = "s2_pressure"
	if err := t.start(); err != nil {
		return err
	}
	h.sleep(2 * time.Second)
	t.sim.SetReplyFunc(func(p iotsim.Post) (int, string) {
		for _, v := range p.Values {
			if v.Property == refused {
				return 460, "invalid parameter " + refused
			}
		}
		return 0, ""
	})
	h.sleep(h.sz.FaultWindow)
	t.sim.SetReplyFunc(nil)
	took, ok := t.drained(h.sz.RecoverBound)
	h.sleep(time.Second)
	if err := t.close(); err != nil {
		return err
	}
	tl := t.led.tally()
	// Only s2_pressure values may have been set aside.
	other := 0
	for k := range t.led.dead {
		if k.prop != refused {
			other++
		}
	}
	faultRow(s, fmt.Sprintf("platform answers 460 to every post holding %s for %v", refused, h.sz.FaultWindow), "1", tl,
		ok && other == 0,
		fmt.Sprintf("posts halved until the refused values stood alone: %d %s values set aside as dead letters (by design), "+
			"%d others set aside; drained %v after", tl.dead, refused, other, took.Round(100*time.Millisecond)))
	return nil
}

// faultBlackhole freezes mosquitto with SIGSTOP: no FIN, no RST, only
// keepalive can tell. The mqtt platform allows a 5 s keepalive (aliyun
// requires at least 30 s, which only makes detection slower).
func (h *harness) faultBlackhole(s *section) error {
	m, err := h.startMosquitto(0)
	if err != nil {
		return err
	}
	defer m.stop()
	t, err := h.newSimTrial("blackhole", func(c *gwConfig) {
		c.Platform, c.Endpoint, c.Keepalive = "mqtt", m.Addr, 5*time.Second
		// On "mqtt" a live reading travels alone; 45 readings/s need more
		// than the default 20 messages/s or the backlog never drains.
		c.Rate = 100
	})
	if err != nil {
		return err
	}
	defer t.abort()
	t.sim.Close() // this trial's far end is mosquitto
	t.sim = nil
	// The subscriber has no keepalive, so its own connection survives the
	// freeze and it sees everything the broker forwards afterwards.
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + m.Addr).SetClientID("blackhole-sub").
		SetProtocolVersion(4).SetKeepAlive(0).SetAutoReconnect(false))
	if err := tokenWait(sub.Connect(), 5*time.Second); err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	defer sub.Disconnect(100)
	if err := tokenWait(sub.Subscribe("sensors/#", 1, func(_ mqtt.Client, msg mqtt.Message) { t.led.fromMQTT(msg.Payload()) }), 5*time.Second); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if err := t.start(); err != nil {
		return err
	}
	h.sleep(3 * time.Second)
	_ = m.p.cmd.Process.Signal(syscall.SIGSTOP)
	frozen := time.Now()
	noticed := waitFor(h.sz.Blackhole, 100*time.Millisecond, func() bool {
		mm, err := t.metrics()
		return err == nil && mm["gatewayd_connected"] == 0
	})
	notice := time.Since(frozen)
	h.sleep(h.sz.Blackhole - notice)
	_ = m.p.cmd.Process.Signal(syscall.SIGCONT)
	took, ok := t.drained(h.sz.RecoverBound)
	h.sleep(2 * time.Second)
	if err := t.close(); err != nil {
		return err
	}
	tl := t.led.tally()
	how := fmt.Sprintf("keepalive 5 s: gatewayd noticed the dead link after %v; drained %v after SIGCONT", notice.Round(100*time.Millisecond), took.Round(100*time.Millisecond))
	if !noticed {
		how = "gatewayd still reported connected when the freeze ended"
	}
	faultRow(s, "network cut without FIN: mosquitto SIGSTOPped for "+h.scaled(h.sz.Blackhole, "small run")+" (`platform = \"mqtt\"`)", "1", tl, ok && noticed, how)
	return nil
}

// kill9Line is the test's summary; its counts other than samples are values
// (identified by property and time).
var kill9Line = regexp.MustCompile(`(\d+) kills; (\d+) samples, (\d+) values delivered; (\d+) committed at some kill, all delivered; (\d+) found in the file at a kill already delivered \(in flight\); (\d+) delivered more than once`)

// faultKill9 reuses e2e's TestKill9EndToEnd (the buffer engineer's): 29
// SIGKILLs of the real gatewayd per run at random points (ingesting with
// the link up, with the platform down, while draining), then every
// committed value must reach iotsim and every duplicate must have been
// in flight at a kill. The test fails if either does not hold.
func (h *harness) faultKill9(s *section) error {
	n := h.sz.Kill9Count
	if n == 0 {
		n = 1
	}
	out, err := h.goTest(time.Duration(n)*3*time.Minute, "-run", "^TestKill9EndToEnd$", "-count", strconv.Itoa(n), "-v", "./e2e/")
	ms := kill9Line.FindAllStringSubmatch(out, -1)
	if len(ms) == 0 {
		return fmt.Errorf("no result line from e2e's TestKill9EndToEnd (%v):\n%s", err, tail(out, 15))
	}
	var kills, delivered, committed, dups int
	for _, m := range ms {
		k, _ := strconv.Atoi(m[1])
		d, _ := strconv.Atoi(m[3])
		c, _ := strconv.Atoi(m[4])
		u, _ := strconv.Atoi(m[6])
		kills, delivered, committed, dups = kills+k, delivered+d, committed+c, dups+u
	}
	lost := "0"
	if err != nil {
		lost = "**some (the test failed)**"
	}
	s.row(fmt.Sprintf("SIGKILL of gatewayd at random points (e2e's TestKill9EndToEnd, %d run(s))", len(ms)), kills,
		fmt.Sprintf("%d committed at a kill", committed), delivered, dups, "0", "0", "0", lost, yesNo(err == nil),
		"loss is judged against what was committed in the file at each kill (values in the 200 ms commit window die with the process, by design); "+
			"each duplicate was in the file at a kill though already accepted (the ack not yet committed)")
	return nil
}

// mountTmpfs mounts a small tmpfs (root only) and unmounts it at cleanup.
func (h *harness) mountTmpfs(size string) (string, error) {
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("disk-full trial needs root to mount a small tmpfs")
	}
	dir, err := os.MkdirTemp(h.work, "tmpfs-")
	if err != nil {
		return "", fmt.Errorf("tmpfs dir: %w", err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mount tmpfs: %w: %s", err, out)
	}
	h.mu.Lock()
	h.undo = append(h.undo, func() {
		if err := exec.Command("umount", dir).Run(); err != nil {
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	h.mu.Unlock()
	return dir, nil
}

func (h *harness) faultDiskFull(s *section) error {
	mnt, err := h.mountTmpfs("4m")
	if err != nil {
		return err
	}
	t, err := h.newSimTrial("diskfull", func(c *gwConfig) {
		c.Buffer = filepath.Join(mnt, "buffer.db")
		// Compact records and a preallocated journal take minutes to
		// need a new block at 3 sensors / 100 ms: 24 sensors (the
		// shortest interval is 100 ms) fill the disk within the window.
		c.Sensors, c.Interval = 24, 100*time.Millisecond
	})
	if err != nil {
		return err
	}
	defer t.abort()
	t.sim.SetOutage(true) // nothing drains: the file must grow
	if err := t.start(); err != nil {
		return err
	}
	h.sleep(2 * time.Second)
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	filler := filepath.Join(mnt, "filler")
	// Leave 8 KiB: compact records fill it in seconds (32 KiB held 40 s
	// of samples, longer than a small run's window).
	if err := os.WriteFile(filler, make([]byte, max(free-8<<10, 0)), 0o600); err != nil {
		h.log.Debug("filler stopped short (the disk is full, as intended)", "err", err)
	}
	full := time.Now()
	dropped := waitFor(max(4*h.sz.FaultWindow, 30*time.Second), 200*time.Millisecond, func() bool {
		m, err := t.metrics()
		return err == nil && m["gatewayd_buffer_drops_total"] > 0
	})
	h.sleep(h.sz.FaultWindow)
	fullFor := time.Since(full)
	m, _ := t.metrics()
	dropped = dropped || m["gatewayd_buffer_drops_total"] > 0
	if err := os.Remove(filler); err != nil {
		return fmt.Errorf("remove filler: %w", err)
	}
	t.sim.SetOutage(false)
	took, ok := t.drained(h.sz.RecoverBound)
	h.sleep(time.Second)
	alive := !t.gw.exited()
	if err := t.close(); err != nil {
		return err
	}
	tl := t.led.tally()
	how := fmt.Sprintf("4 MiB tmpfs filled to the last 8 KiB with the platform down, full for %v: %.0f samples dropped by policy and counted "+
		"(drops seen: %v); gatewayd kept running: %v; space freed and platform back: drained in %v",
		fullFor.Round(time.Second), m["gatewayd_buffer_drops_total"], dropped, alive, took.Round(100*time.Millisecond))
	// Recovered only if the disk really filled (drops seen): a fault that
	// never bit proves nothing.
	faultRow(s, "disk full (small tmpfs under the buffer)", "1", tl, ok && alive && dropped && tl.lost <= tl.drops, how)
	return nil
}

// faultCorrupt stops gatewayd with a backlog in the file, damages the file
// and starts it again: the file must be set aside and the daemon keep going.
func (h *harness) faultCorrupt(s *section) error {
	for _, c := range []struct {
		name   string
		damage func(f *os.File, size int64) error
	}{
		{"first 8 KiB (both bbolt meta pages) overwritten with random bytes", func(f *os.File, _ int64) error {
			b := make([]byte, 8192)
			_, _ = rand.Read(b)
			_, err := f.WriteAt(b, 0)
			return err
		}},
		{"4 KiB of random bytes in the middle of the file", func(f *os.File, size int64) error {
			b := make([]byte, 4096)
			_, _ = rand.Read(b)
			_, err := f.WriteAt(b, (size/2)&^4095)
			return err
		}},
	} {
		if err := h.corruptOne(s, c.name, c.damage); err != nil {
			return err
		}
	}
	return nil
}

func (h *harness) corruptOne(s *section, name string, damage func(*os.File, int64) error) error {
	t, err := h.newSimTrial("corrupt", nil)
	if err != nil {
		return err
	}
	defer t.abort()
	t.sim.SetOutage(true)
	if err := t.start(); err != nil {
		return err
	}
	h.sleep(4 * time.Second)
	if err := t.stop(); err != nil {
		return err
	}
	pending, _, err := export(t.conf.Buffer)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(t.conf.Buffer, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open buffer file: %w", err)
	}
	fi, _ := f.Stat()
	err = damage(f, fi.Size())
	f.Close()
	if err != nil {
		return fmt.Errorf("damage buffer file: %w", err)
	}
	t.sim.SetOutage(false)
	if err := t.start(); err != nil {
		return fmt.Errorf("restart on a corrupt file: %w", err)
	}
	took, ok := t.drained(h.sz.RecoverBound)
	h.sleep(2 * time.Second)
	aside, _ := filepath.Glob(t.conf.Buffer + ".corrupt-*")
	if err := t.close(); err != nil {
		return err
	}
	tl := t.led.tally()
	before := 0
	for _, r := range pending {
		if t.led.delivered[recKey(r)] > 0 {
			before++
		}
	}
	// The salvage figures the daemon kept in the fresh file.
	st, err := buffer.Inspect(t.conf.Buffer)
	if err != nil {
		return fmt.Errorf("inspect the buffer after the corrupt trial: %w", err)
	}
	faultRow(s, "corrupt buffer file: "+name, "1", tl, ok,
		fmt.Sprintf("%d values were in the file when it was damaged, %d of them delivered after the restart; file set aside as %s: %v; "+
			"salvaged record by record: %d samples, unrecoverable (on damaged pages): %d samples; the restarted daemon ran on and drained in %v",
			len(pending), before, "`.corrupt-*`", len(aside) > 0, st.Salvaged, st.Unrecoverable, took.Round(100*time.Millisecond)),
		"(on damaged pages of the set-aside file: not salvageable)")
	return nil
}
