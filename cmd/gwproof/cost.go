package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"gatewayd/cmd/gwproof/internal/measure"
	"gatewayd/internal/iotsim"
)

// What issue 11 calls a reading, the harness calls a reading too: one
// sensor sample, i.e. one read of one sensor (a BME280 sample holds a
// temperature, a humidity and a pressure: three values). "Values" are the
// measurements inside samples.
const readingDef = "A *reading* is one sensor sample: one read of one BME280, holding three *values* (temperature, humidity, pressure). " +
	"The seed's client posts one message per sample, so there a reading is one post."

// The three side-by-side rates of the cost part, each with 3 emulated
// BME280s (the seed article's three sensors):
const (
	rate10Interval = 300 * time.Millisecond // 3 sensors / 0.3 s = 10 readings/s
	seedInterval   = 5 * time.Second        // the seed article's rate
	roundInterval  = 10 * time.Second       // issue 11's "three BME280s at 10 s"
	costSensors    = 3
)

// costSizes scales the cost part.
type costSizes struct {
	Warmup       time.Duration // before the 10 readings/s and 10 s windows: start-up excluded
	SeedWarmup   time.Duration // before the seed-rate window (node's JIT settles slowly at 0.6 calls/s)
	CPUWindow    time.Duration // CPU and RSS at 10 readings/s
	StraceWindow time.Duration // strace -c -f at 10 readings/s (the issue: 20 s)
	SeedWindow   time.Duration // CPU-seconds per day at the seed's rate
	RoundWindow  time.Duration // messages per reading, 3 BME280s at 10 s
	Outage       time.Duration // the sliding-window outage (the issue: 15 s)
	SlidingN     int           // max_messages_per_second in the outage trial; iotsim allows N+1
	BacklogDays  int           // the generated backlog (the issue: a week)
	DrainBound   time.Duration // give up on the backlog drain after this
}

// costSide is one client process posting to the shared iotsim.
type costSide struct {
	name   string
	device string
	p      *proc
	kind   sideKind
	health string // gatewayd's /metrics
}

// sideKind is what a costSide runs.
type sideKind int

const (
	sideGW    sideKind = iota // gatewayd
	sideNode                  // the seed's Node client
	sideFloor                 // cmd/gwproof/floor, the reference client
)

// windowResult is what one side did in one measuring window.
type windowResult struct {
	cpu       time.Duration
	cpuHow    string // schedstat or ticks
	delivered int    // readings (samples) that reached iotsim in the window
	rss       measure.Series
	end       measure.Proc      // /proc at the end of the window
	maps      []measure.Mapping // where its resident memory was then
	window    time.Duration
}

func (w windowResult) perReading() float64 {
	return measure.Ratio(float64(w.cpu), float64(w.delivered))
}

// perRound is CPU per sampling round of the seed's rate (3 sensors every
// seedInterval), in µs.
func perRound(w windowResult) float64 {
	return measure.Ratio(float64(w.cpu)/1e3, float64(w.window)/float64(seedInterval))
}

func (w windowResult) perDay() time.Duration {
	if w.window <= 0 {
		return 0
	}
	return time.Duration(float64(w.cpu) * float64(24*time.Hour) / float64(w.window))
}

// costSim is the platform emulator every client of the cost part posts to,
// over plain TCP as the seed's client does (securemode 3): one emulator,
// one device per client.
type costSim struct {
	sim *iotsim.Server
}

var costDevices = []string{"gw-10ps", "seed-10ps", "gw-seedrate", "seed-seedrate", "floor-seedrate", "gw-round"}

func (h *harness) startCostSim() (*costSim, error) {
	var devs []iotsim.Device
	for _, d := range costDevices {
		devs = append(devs, iotsim.Device{ProductKey: pk, DeviceName: d, DeviceSecret: secret})
	}
	sim, err := iotsim.Start(iotsim.Options{TCPAddr: "127.0.0.1:0", Devices: devs})
	if err != nil {
		return nil, fmt.Errorf("iotsim: %w", err)
	}
	return &costSim{sim: sim}, nil
}

// values converts what iotsim accepted for the measure package.
func simValues(acc []iotsim.Accepted) []measure.Value {
	vs := make([]measure.Value, len(acc))
	for i, a := range acc {
		vs[i] = measure.Value{Device: a.DeviceName, Property: a.Property, Time: a.Time, Received: a.Received}
	}
	return vs
}

// delivered counts side's readings that reached iotsim in [from, to):
// gatewayd's and the floor's as distinct samples among the accepted values,
// the seed's as posts (one sample each; iotsim refuses its integer values
// with 460, which the seed never reads, so arrival is what counts).
func (c *costSim) delivered(sd *costSide, from, to time.Time) int {
	if sd.kind != sideNode {
		return measure.SamplesIn(simValues(c.sim.Accepted()), sd.device, from, to)
	}
	return len(c.posts(sd.device, from, to))
}

// posts returns the upstream messages device sent in [from, to).
func (c *costSim) posts(device string, from, to time.Time) []iotsim.Message {
	var ms []iotsim.Message
	for _, m := range c.sim.Messages() {
		if m.DeviceName == device && !m.Received.Before(from) && m.Received.Before(to) {
			ms = append(ms, m)
		}
	}
	return ms
}

// startSide starts gatewayd (3 emulated BME280s at interval, aliyun over
// plain TCP, every other setting at its default), the seed's client or the
// reference client as device.
func (h *harness) startSide(c *costSim, kind sideKind, device string, interval time.Duration) (*costSide, error) {
	sd := &costSide{device: device, kind: kind}
	if kind == sideFloor {
		sd.name = "floor (reference client)"
		bin, err := h.floorBin()
		if err != nil {
			return nil, err
		}
		sd.p, err = h.startProc("floor-"+device, nil, bin, c.sim.TCPAddr(), pk, device, secret, interval.String())
		return sd, err
	}
	if kind == sideNode {
		sd.name = "node " + seedVersion
		nodeDir, err := h.nodeDir()
		if err != nil {
			return nil, err
		}
		sd.p, err = h.startProc("node-"+device, nil, nodeBin(), filepath.Join(nodeDir, "seed.js"), "tcp://"+c.sim.TCPAddr(),
			strconv.Itoa(costSensors), strconv.Itoa(int(interval.Milliseconds())), pk, device, secret)
		return sd, err
	}
	sd.name = "gatewayd"
	dir, err := mkdirTemp(h.work, "cost-"+device+"-")
	if err != nil {
		return nil, err
	}
	hp, err := freePort()
	if err != nil {
		return nil, err
	}
	sd.health = fmt.Sprintf("127.0.0.1:%d", hp)
	cfg, err := gwConfig{Platform: "aliyun", Plain: true, Device: device, Endpoint: c.sim.TCPAddr(),
		Buffer: filepath.Join(dir, "buffer.db"), Health: sd.health, Sensors: costSensors, Interval: interval}.write(dir)
	if err != nil {
		return nil, err
	}
	if sd.p, err = h.startProc("gatewayd-"+device, nil, h.gw, "run", "--config", cfg); err != nil {
		return nil, err
	}
	if err := waitPort(sd.health, 10*time.Second); err != nil {
		return nil, fmt.Errorf("gatewayd %s: %w: %s", device, err, sd.p.Stderr())
	}
	return sd, nil
}

// floorBin builds the reference client (cmd/gwproof/floor) into the work
// directory, as the gatewayd measured is built: static, stripped.
func (h *harness) floorBin() (string, error) {
	out := filepath.Join(h.work, "floor")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	return out, h.goBuild("./cmd/gwproof/floor", out)
}

// window measures sides side by side for d: CPU, readings delivered, RSS
// every second.
func (h *harness) window(c *costSim, d time.Duration, sides ...*costSide) ([]windowResult, error) {
	res := make([]windowResult, len(sides))
	before := make([]measure.Proc, len(sides))
	for i, sd := range sides {
		st, err := measure.ReadProc(sd.p.pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w (stderr: %s)", sd.name, err, tail(sd.p.Stderr(), 10))
		}
		before[i] = st
	}
	from := time.Now()
	for end := from.Add(d); time.Now().Before(end); {
		if !h.sleep(min(time.Second, time.Until(end))) {
			return nil, h.ctx.Err()
		}
		for i, sd := range sides {
			if st, err := measure.ReadProc(sd.p.pid()); err == nil {
				res[i].rss = append(res[i].rss, st.RSS)
			}
		}
	}
	to := time.Now()
	for i, sd := range sides {
		st, err := measure.ReadProc(sd.p.pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w (stderr: %s)", sd.name, err, tail(sd.p.Stderr(), 10))
		}
		res[i].cpu, res[i].cpuHow = measure.CPUBetween(before[i], st)
		res[i].end, res[i].window = st, to.Sub(from)
		res[i].maps, _ = measure.Mappings(sd.p.pid())
	}
	// Readings taken at the end of the window arrive up to max_delay (1 s)
	// later; they are counted by arrival time, so the window's edges cut
	// both ends alike.
	for i, sd := range sides {
		res[i].delivered = c.delivered(sd, from, to)
	}
	return res, nil
}

// cost measures issue 11's per-reading figures, side by side in one run:
// gatewayd and the seed's Node client posting to one iotsim at 10
// readings/s (CPU, syscalls, RSS) and at the seed's rate (CPU-seconds per
// day), gatewayd with three BME280s at 10 s (messages per reading, RSS),
// and gatewayd through an outage against a platform that counts a sliding
// second (429s). They run at the same time, each on its own device.
func (h *harness) cost() error {
	cz := h.sz.Cost
	if _, err := h.nodeDir(); err != nil {
		return err
	}
	c, err := h.startCostSim()
	if err != nil {
		return err
	}
	defer c.sim.Close()
	s := &section{
		title: "What a reading costs: gatewayd and the seed's Node.js client side by side (issue 11)",
		method: readingDef + " " + fmt.Sprintf("All clients run at the same time in this run, each as its own device on one iotsim (plain TCP, securemode 3, as the seed connects): "+
			"gatewayd (the static stripped binary the .deb ships, 3 emulated BME280s on the real periph driver, real buffer, every setting at its default: "+
			"`max_delay` 1 s, `max_messages_per_second` 20) and `node seed.js` (npm %s, the seed article's client minus its per-packet console.log, "+
			"3 sensors, one QoS 1 post per sensor per interval). Delivered = readings that reached iotsim in the window (gatewayd: distinct "+
			"samples among accepted values; seed: posts). CPU = on-CPU time of all threads from /proc/PID/task/*/schedstat (ns; "+
			"/proc/PID/stat ticks if a thread exited) over the window after a warm-up (%v; %v at the seed's rate, where node's JIT "+
			"settles slowly), so start-up is excluded. RSS: VmRSS every second (median / max), VmHWM = peak of the whole life.", seedVersion, cz.Warmup, cz.SeedWarmup),
		head: []string{"run", "client", "window", "readings delivered", "CPU in window", "CPU per reading", "CPU per day", "RSS median / max", "peak RSS (VmHWM)"},
	}
	h.report.add(s)

	var mu sync.Mutex
	row := func(run string, sd *costSide, w windowResult) {
		mu.Lock()
		defer mu.Unlock()
		s.row(run, sd.name, w.window.Round(time.Second), w.delivered, w.cpu.Round(time.Microsecond),
			fmt.Sprintf("%.0f µs", w.perReading()/1e3), w.perDay().Round(10*time.Millisecond),
			measure.MiB(w.rss.Median())+" / "+measure.MiB(w.rss.Max()), measure.MiB(w.end.HWM))
	}
	note := func(n string) {
		mu.Lock()
		s.notes = append(s.notes, n)
		mu.Unlock()
	}
	runs := []func() error{
		func() error { return h.costRate10(c, row, note) },
		func() error { return h.costSeedRate(c, row, note) },
		func() error { return h.costRound(c, row, note) },
		func() error { return h.costOutage(note) },
	}
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Go(func() { errs[i] = r() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

const cmdCost = "go run ./cmd/gwproof -only cost"

// costRate10: 10 readings/s, gatewayd and the seed side by side: CPU per
// delivered reading, peak RSS, then syscalls per reading under strace.
func (h *harness) costRate10(c *costSim, row func(string, *costSide, windowResult), note func(string)) error {
	cz := h.sz.Cost
	tCPU := h.report.target("CPU per delivered reading at 10 readings/s, gatewayd ÷ the seed's Node client (same run)", 1.0/3, "", cmdCost)
	tSys := h.report.target(fmt.Sprintf("syscalls per reading at 10 readings/s (`strace -c -f` over %v)", cz.StraceWindow), 12, "", cmdCost)
	tRSS := h.report.target("peak RSS (VmHWM) at 10 readings/s", 12, "MiB", cmdCost)
	gw, err := h.startSide(c, sideGW, "gw-10ps", rate10Interval)
	if err != nil {
		return err
	}
	defer gw.p.stop(syscall.SIGTERM, 15*time.Second)
	node, err := h.startSide(c, sideNode, "seed-10ps", rate10Interval)
	if err != nil {
		return err
	}
	defer node.p.stop(syscall.SIGTERM, 5*time.Second)
	if !h.sleep(cz.Warmup) {
		return h.ctx.Err()
	}
	ws, err := h.window(c, cz.CPUWindow, gw, node)
	if err != nil {
		tCPU.Fail(err.Error())
		return err
	}
	run := "10 readings/s"
	row(run, gw, ws[0])
	row(run, node, ws[1])
	g, n := ws[0], ws[1]
	due := int(cz.CPUWindow / rate10Interval * costSensors)
	if g.delivered < due*9/10 || n.delivered < due*9/10 {
		note(fmt.Sprintf("10 readings/s: about %d readings were due per client in the window; delivered gatewayd %d, node %d: "+
			"**a client fell behind**, so its CPU per reading is not comparable", due, g.delivered, n.delivered))
	}
	tCPU.Set(measure.Ratio(g.perReading(), n.perReading()),
		fmt.Sprintf("gatewayd %.0f µs (%v / %d), node %.0f µs (%v / %d); CPU by %s/%s", g.perReading()/1e3, g.cpu.Round(time.Microsecond), g.delivered,
			n.perReading()/1e3, n.cpu.Round(time.Microsecond), n.delivered, g.cpuHow, n.cpuHow))
	tRSS.Set(float64(g.end.HWM)/(1<<20), fmt.Sprintf("at the end of the window %s anonymous + %s file-backed (%s); node's peak %s",
		measure.MiB(g.end.Anon), measure.MiB(g.end.File), measure.MappingsString(g.maps, 3), measure.MiB(n.end.HWM)))

	// Syscalls: node is stopped first so the machine is quieter; strace
	// attaches to every gatewayd thread for the window.
	node.p.stop(syscall.SIGTERM, 5*time.Second)
	from := time.Now()
	sc, err := measure.StraceFor(h.ctx, gw.p.pid(), cz.StraceWindow, h.work)
	to := time.Now()
	if err != nil {
		tSys.Fail(err.Error())
		if errors.Is(err, measure.ErrNoStrace) && !h.strict {
			note("syscalls: " + err.Error() + "; not measured (`make proof-ci` fails on this)")
			return nil
		}
		return fmt.Errorf("syscalls: %w", err)
	}
	// Readings taken in the traced window, counted when iotsim has them
	// (they arrive up to max_delay later).
	h.sleep(3 * time.Second)
	taken := 0
	for k := range measure.Samples(simValues(c.sim.Accepted())) {
		at := time.UnixMilli(k.MS)
		if k.Device == gw.device && !at.Before(from) && at.Before(to) {
			taken++
		}
	}
	per := measure.Ratio(float64(sc.Total()), float64(taken))
	tSys.Set(per, fmt.Sprintf("%d calls for %d readings taken in %v; per reading: %s", sc.Total(), taken, to.Sub(from).Round(100*time.Millisecond),
		sc.PerUnit(float64(taken), 8)))
	note(fmt.Sprintf("10 readings/s, syscalls per reading (`strace -c -f -p PID` for %v, after the CPU window; the seed's client stopped first): %s per reading = %s",
		cz.StraceWindow, measure.Num(per), sc.PerUnit(float64(taken), 12)))
	return nil
}

// costSeedRate: the seed article's rate (3 sensors every 5 s), CPU-seconds
// per day, start-up excluded.
func (h *harness) costSeedRate(c *costSim, row func(string, *costSide, windowResult), note func(string)) error {
	cz := h.sz.Cost
	t := h.report.target("CPU-seconds per day at the seed's rate (3 sensors every 5 s), start-up excluded, gatewayd ÷ the seed's Node client", 1.0/5, "", cmdCost)
	gw, err := h.startSide(c, sideGW, "gw-seedrate", seedInterval)
	if err != nil {
		return err
	}
	defer gw.p.stop(syscall.SIGTERM, 15*time.Second)
	node, err := h.startSide(c, sideNode, "seed-seedrate", seedInterval)
	if err != nil {
		return err
	}
	defer node.p.stop(syscall.SIGTERM, 5*time.Second)
	floor, err := h.startSide(c, sideFloor, "floor-seedrate", seedInterval)
	if err != nil {
		return err
	}
	defer floor.p.stop(syscall.SIGTERM, 5*time.Second)
	if !h.sleep(cz.SeedWarmup) {
		return h.ctx.Err()
	}
	ws, err := h.window(c, cz.SeedWindow, gw, node, floor)
	if err != nil {
		t.Fail(err.Error())
		return err
	}
	run := "seed's rate (3 sensors / 5 s)"
	row(run, gw, ws[0])
	row(run, node, ws[1])
	row(run, floor, ws[2])
	g, n, f := ws[0], ws[1], ws[2]
	t.Set(measure.Ratio(float64(g.perDay()), float64(n.perDay())),
		fmt.Sprintf("gatewayd %.1f s/day, node %.1f s/day; the floor (reference client, two wake-ups a round and no work) %.1f s/day = %s of node's "+
			"(CPU in a %v window × 86,400 s / window; CPU by %s/%s/%s)",
			g.perDay().Seconds(), n.perDay().Seconds(), f.perDay().Seconds(), measure.Num(measure.Ratio(float64(f.perDay()), float64(n.perDay()))),
			g.window.Round(time.Second), g.cpuHow, n.cpuHow, f.cpuHow))
	if f.delivered == 0 {
		note("seed's rate: **the floor (reference client) delivered nothing in the window**, so its figure is not comparable")
	}
	note(fmt.Sprintf("seed's rate, the floor: `cmd/gwproof/floor` posts gatewayd's nine-property message for three BME280s on the same 5 s grid and reads its reply, "+
		"as gatewayd does (same timerfd Wake, same raw socket I/O, same GOMAXPROCS and GOGC), and nothing else: no sensors, no buffer, no JSON encoding or decoding. "+
		"What it spends is what this machine charges for the round's two wake-ups (the tick, the reply). Here: %.0f µs a round, %.1f s/day = %s of node's; "+
		"gatewayd %.0f µs a round = %s× the floor, so its own work (sensors, stamps, buffer, encoding, reply) is %.0f µs a round. "+
		"A round of gatewayd at %s of node's would have to cost %.0f µs.",
		perRound(f), f.perDay().Seconds(), measure.Num(measure.Ratio(float64(f.perDay()), float64(n.perDay()))),
		perRound(g), measure.Num(measure.Ratio(perRound(g), perRound(f))), perRound(g)-perRound(f),
		measure.Num(t.Limit), t.Limit*perRound(n)))
	if h.sz.Name != "full" {
		note(fmt.Sprintf("seed's rate: small run, %v window (full run: %v), so CPU per day is extrapolated from fewer readings", cz.SeedWindow, full.Cost.SeedWindow))
	}
	return nil
}

// costRound: three BME280s at 10 s, default max_delay: messages per reading
// counted at iotsim, and peak RSS.
func (h *harness) costRound(c *costSim, row func(string, *costSide, windowResult), note func(string)) error {
	cz := h.sz.Cost
	tMsg := h.report.target("messages per reading, three BME280s at 10 s, default `max_delay` (counted at iotsim)", 0.34, "", cmdCost)
	tRSS := h.report.target("peak RSS (VmHWM), three BME280s at 10 s", 10, "MiB", cmdCost)
	gw, err := h.startSide(c, sideGW, "gw-round", roundInterval)
	if err != nil {
		return err
	}
	defer gw.p.stop(syscall.SIGTERM, 15*time.Second)
	if !h.sleep(cz.Warmup) {
		return h.ctx.Err()
	}
	from := time.Now()
	ws, err := h.window(c, cz.RoundWindow, gw)
	if err != nil {
		tMsg.Fail(err.Error())
		return err
	}
	to := from.Add(ws[0].window)
	row("3 BME280s / 10 s", gw, ws[0])
	posts := c.posts(gw.device, from, to)
	kinds := map[string]int{}
	for _, m := range posts {
		kinds[m.Kind]++
	}
	tMsg.Set(measure.Ratio(float64(len(posts)), float64(ws[0].delivered)),
		fmt.Sprintf("%d messages (%v) for %d readings (%d values) in %v; one message per sampling round would be %s",
			len(posts), kinds, ws[0].delivered, ws[0].delivered*readingsPerSample, ws[0].window.Round(time.Second), measure.Num(1.0/costSensors)))
	tRSS.Set(float64(ws[0].end.HWM)/(1<<20), fmt.Sprintf("at the end %s anonymous + %s file-backed (%s); steady median %s",
		measure.MiB(ws[0].end.Anon), measure.MiB(ws[0].end.File), measure.MappingsString(ws[0].maps, 3), measure.MiB(ws[0].rss.Median())))
	if m, err := metrics(gw.health); err == nil {
		note(fmt.Sprintf("3 BME280s at 10 s: gatewayd's own metrics over its life: %s messages sent, %s samples taken, "+
			"`gatewayd_messages_per_reading` %s (data messages per acknowledged sample)",
			measure.Num(m["gatewayd_messages_sent_total"]), measure.Num(m["gatewayd_readings_taken_total"]), measure.Num(m["gatewayd_messages_per_reading"])))
	}
	return nil
}

// costOutage: 10 readings/s through a platform outage against an iotsim
// that answers 429 above N+1 messages in any sliding second, gatewayd
// configured with N: no 429, and every reading accounted for.
func (h *harness) costOutage(note func(string)) error {
	cz := h.sz.Cost
	n := cz.SlidingN
	t429 := h.report.target(fmt.Sprintf("429 answers over a %v outage at 10 readings/s (iotsim allows %d per sliding second, `max_messages_per_second = %d`)", cz.Outage, n+1, n), 0, "", cmdCost)
	t, err := h.newSimTrialOpts("sliding-outage", func(o *iotsim.Options) { o.RateWindow = n + 1 }, func(c *gwConfig) {
		c.Device, c.Interval, c.Rate = "gw-outage", rate10Interval, float64(n)
	})
	if err != nil {
		t429.Fail(err.Error())
		return err
	}
	defer t.abort()
	if err := t.start(); err != nil {
		t429.Fail(err.Error())
		return err
	}
	h.sleep(5 * time.Second)
	t.sim.SetOutage(true)
	h.sleep(cz.Outage)
	m, _ := t.metrics()
	depth := m["gatewayd_buffer_values"]
	t.sim.SetOutage(false)
	took, ok := t.drained(h.sz.RecoverBound)
	h.sleep(2 * time.Second)
	msgs := t.sim.Messages()
	counts := t.sim.Counts()
	if err := t.close(); err != nil {
		t429.Fail(err.Error())
		return err
	}
	tl := t.led.tally()
	throttled := 0
	var times []time.Time
	for _, m := range msgs {
		times = append(times, m.Received)
		if m.Code == 429 {
			throttled++
		}
	}
	busiest, from := measure.BusiestSecond(times, time.Second)
	if busiest > n {
		note(fmt.Sprintf("sliding-window outage: iotsim saw %d posts within one second (configured %d); arrivals (ms after the first): %s",
			busiest, n, measure.Millis(measure.Within(times, from, time.Second))))
	}
	t429.Set(float64(throttled), fmt.Sprintf("%d posts, %d publishes in all; busiest sliding second at iotsim: %d publishes (%d posts); %s values buffered at the end of the outage, drained %v after (recovered: %v); "+
		"values taken %d, delivered %d, still buffered %d, set aside %d, lost %d, duplicates %d",
		len(msgs), counts.Publishes, counts.PeakWindow, busiest, measure.Num(depth), took.Round(100*time.Millisecond), ok, tl.taken, tl.unique, tl.remaining, tl.dead, tl.lost, tl.dups))
	if tl.lost != 0 || !ok {
		note(fmt.Sprintf("sliding-window outage: **%d values lost, recovered %v**", tl.lost, ok))
	}
	return nil
}

// mkdirTemp is os.MkdirTemp with the error wrapped.
func mkdirTemp(dir, pattern string) (string, error) {
	d, err := os.MkdirTemp(dir, pattern)
	if err != nil {
		return "", fmt.Errorf("temp dir: %w", err)
	}
	return d, nil
}
