package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

type perfRun struct {
	Interval, Warmup, Measure time.Duration
}

const perfSensors = 3

// perfRate lifts gatewayd's pacing (default 20 messages/s, one live reading
// per message on "mqtt") above the fastest perf interval's 36 readings/s,
// so that both clients deliver everything that is due.
const perfRate = 100

// counter subscribes to everything on a broker and counts readings per
// publisher: gatewayd's JSON arrays on sensors/..., the seed's Alink posts
// on /sys/... (one reading per params key).
type counter struct {
	cl       mqtt.Client
	gw, seed atomic.Int64
}

func subscribe(addr, id string) (*counter, error) {
	c := &counter{}
	c.cl = mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false))
	if err := tokenWait(c.cl.Connect(), 5*time.Second); err != nil {
		return nil, fmt.Errorf("subscriber connect: %w", err)
	}
	err := tokenWait(c.cl.Subscribe("#", 1, func(_ mqtt.Client, m mqtt.Message) {
		p := m.Payload()
		if strings.HasPrefix(m.Topic(), "sensors/") {
			// gatewayd: one reading object, or an array of readings
			// sharing a topic (the backlog).
			if n := mqttReadings(p); n > 0 {
				c.gw.Add(int64(n))
			}
			return
		}
		var post struct{ Params map[string]json.RawMessage }
		if json.Unmarshal(p, &post) == nil {
			c.seed.Add(int64(len(post.Params)))
		}
	}), 5*time.Second)
	if err != nil {
		c.cl.Disconnect(0)
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return c, nil
}

func tokenWait(t mqtt.Token, bound time.Duration) error {
	if !t.WaitTimeout(bound) {
		return fmt.Errorf("no answer within %v", bound)
	}
	return t.Error()
}

// mqttReadings counts the readings in one gatewayd "mqtt" payload.
func mqttReadings(p []byte) int {
	p = bytes.TrimSpace(p)
	if len(p) > 0 && p[0] == '[' {
		var arr []json.RawMessage
		if json.Unmarshal(p, &arr) != nil {
			return 0
		}
		return len(arr)
	}
	var one map[string]json.RawMessage
	if json.Unmarshal(p, &one) != nil || one["id"] == nil {
		return 0
	}
	return 1
}

// perf runs the seed's Node client and gatewayd side by side against one
// mosquitto, at the same rate, and compares CPU per delivered reading and
// memory.
func (h *harness) perf() error {
	nodeDir, err := h.nodeDir()
	if err != nil {
		return err
	}
	s := &section{
		title: "Performance: gatewayd vs the seed's Node.js client (same broker, same rate, same run)",
		method: fmt.Sprintf("Both publish %d sensors × 3 values per interval at QoS 1 to one local mosquitto (plain TCP) at the same time: "+
			"gatewayd `platform = \"mqtt\"` with %d emulated BME280s (real periph driver, real bbolt buffer, group commit 10 s, `max_messages_per_second = %d`), "+
			"and `node seed.js` (npm %s, the seed article's client, minus its per-packet console.log). "+
			"A subscriber on the broker counts the readings that arrived (delivered). CPU = utime+stime from /proc/PID/stat "+
			"(10 ms ticks) over the measuring window after the warm-up, divided by the readings delivered in that window; "+
			"the \"incl. start\" column divides all CPU since exec by all readings delivered. RSS: VmRSS sampled every second "+
			"in the window (median / max); VmHWM = peak RSS of the whole life.", perfSensors, perfSensors, perfRate, seedVersion),
		head: []string{"interval", "client", "window", "readings delivered", "CPU in window", "CPU per reading", "CPU per reading incl. start", "RSS steady (median / max)", "peak RSS (VmHWM)"},
	}
	h.report.add(s)
	for _, r := range h.sz.PerfRuns {
		if err := h.perfOne(s, nodeDir, r); err != nil {
			return err
		}
	}
	return nil
}

type sideResult struct {
	name             string
	delivered, total int64
	cpu, cpuTotal    time.Duration
	rssMed, rssMax   int64
	hwm              int64
	writes           int64
	anon, file       int64
}

func (h *harness) perfOne(s *section, nodeDir string, r perfRun) error {
	m, err := h.startMosquitto(0)
	if err != nil {
		return err
	}
	defer m.stop()
	cnt, err := subscribe(m.Addr, "perf-counter")
	if err != nil {
		return err
	}
	defer cnt.cl.Disconnect(100)
	dir, err := os.MkdirTemp(h.work, "perf-")
	if err != nil {
		return fmt.Errorf("perf dir: %w", err)
	}
	hp, err := freePort()
	if err != nil {
		return err
	}
	cfg, err := gwConfig{Platform: "mqtt", Endpoint: m.Addr, Buffer: filepath.Join(dir, "buffer.db"),
		Health: fmt.Sprintf("127.0.0.1:%d", hp), Sensors: perfSensors, Interval: r.Interval, Rate: perfRate}.write(dir)
	if err != nil {
		return err
	}
	gw, err := h.startProc("gatewayd", nil, h.gw, "run", "--config", cfg)
	if err != nil {
		return err
	}
	defer gw.stop(syscall.SIGTERM, 15*time.Second)
	node, err := h.startProc("node", nil, nodeBin(), filepath.Join(nodeDir, "seed.js"), "tcp://"+m.Addr,
		strconv.Itoa(perfSensors), strconv.Itoa(int(r.Interval.Milliseconds())))
	if err != nil {
		return err
	}
	defer node.stop(syscall.SIGTERM, 5*time.Second)

	sides := []struct {
		p   *proc
		res *sideResult
		n   *atomic.Int64
	}{{gw, &sideResult{name: "gatewayd"}, &cnt.gw}, {node, &sideResult{name: "node " + seedVersion}, &cnt.seed}}
	if !h.sleep(r.Warmup) {
		return h.ctx.Err()
	}
	type snap struct {
		st procStat
		n  int64
	}
	before := make([]snap, len(sides))
	for i, sd := range sides {
		st, err := readProc(sd.p.pid())
		if err != nil {
			return fmt.Errorf("%s: %w (stderr: %s)", sd.res.name, err, sd.p.Stderr())
		}
		before[i] = snap{st, sd.n.Load()}
	}
	rss := make([][]int64, len(sides))
	end := time.Now().Add(r.Measure)
	for time.Now().Before(end) {
		if !h.sleep(time.Second) {
			return h.ctx.Err()
		}
		for i, sd := range sides {
			if st, err := readProc(sd.p.pid()); err == nil {
				rss[i] = append(rss[i], st.RSS)
			}
		}
	}
	for i, sd := range sides {
		st, err := readProc(sd.p.pid())
		if err != nil {
			return fmt.Errorf("%s: %w (stderr: %s)", sd.res.name, err, sd.p.Stderr())
		}
		res := sd.res
		res.delivered = sd.n.Load() - before[i].n
		res.total = sd.n.Load()
		res.cpu = st.CPU - before[i].st.CPU
		res.cpuTotal = st.CPU
		res.hwm = st.HWM
		res.writes = st.WriteBytes - before[i].st.WriteBytes
		res.anon, res.file = st.Anon, st.File
		slices.Sort(rss[i])
		if len(rss[i]) > 0 {
			res.rssMed, res.rssMax = rss[i][len(rss[i])/2], rss[i][len(rss[i])-1]
		}
		per, perTotal := "n/a", "n/a"
		if res.delivered > 0 {
			per = fmt.Sprintf("%.0f µs", float64(res.cpu.Microseconds())/float64(res.delivered))
		}
		if res.total > 0 {
			perTotal = fmt.Sprintf("%.0f µs", float64(res.cpuTotal.Microseconds())/float64(res.total))
		}
		s.row(r.Interval, res.name, r.Measure, res.delivered, res.cpu, per, perTotal,
			mib(res.rssMed)+" / "+mib(res.rssMax), mib(res.hwm))
	}
	g, n := sides[0].res, sides[1].res
	expect := int64(perfSensors*3) * int64(r.Measure/r.Interval)
	perG := float64(g.cpu) / float64(max(g.delivered, 1))
	perN := float64(n.cpu) / float64(max(n.delivered, 1))
	cpuNote := fmt.Sprintf("interval %v: node uses %s the CPU per delivered reading of gatewayd (target ≥ 10×: %s)",
		r.Interval, ratio(perN, perG), met(perN >= 10*perG && g.delivered > 0))
	if g.cpu == 0 {
		cpuNote = fmt.Sprintf("interval %v: gatewayd used less than one 10 ms tick in the window (node: %v), so the ratio is > %.0f× (target ≥ 10×: met)",
			r.Interval, n.cpu, float64(n.cpu)/float64(10*time.Millisecond))
	}
	s.notes = append(s.notes, cpuNote,
		fmt.Sprintf("interval %v: gatewayd steady RSS median %s, max %s (target < 15 MiB: %s), peak %s; at the end %s anonymous + %s file-backed "+
			"(the binary's pages and bbolt's mmap); node %s steady, peak %s (%s anonymous + %s file-backed)",
			r.Interval, mib(g.rssMed), mib(g.rssMax), met(g.rssMax < 15<<20 && g.rssMed > 0), mib(g.hwm), mib(g.anon), mib(g.file),
			mib(n.rssMed), mib(n.hwm), mib(n.anon), mib(n.file)),
		fmt.Sprintf("interval %v: about %d readings were due per client in the window; delivered gatewayd %d, node %d; "+
			"gatewayd wrote %d bytes to storage in the window (/proc/PID/io write_bytes: %.0f B per delivered reading)",
			r.Interval, expect, g.delivered, n.delivered, g.writes, float64(g.writes)/float64(max(g.delivered, 1))))
	return nil
}

// sleep waits d unless the run is cancelled.
func (h *harness) sleep(d time.Duration) bool {
	select {
	case <-h.ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
