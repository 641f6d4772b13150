package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gatewayd/internal/testutil"
	"gatewayd/uplink"
)

// fleetSide is one population of clients: it starts them and says how many
// are connected.
type fleetSide struct {
	name      string
	start     func(addr string) error
	connected func() int
	stop      func()
}

// fleet restarts one mosquitto under N clients and counts, at a proxy in
// front of it, the connection attempts per second: gatewayd's uplink
// (capped exponential backoff, full jitter) vs the seed's mqtt.js client
// (reconnectPeriod 1000 ms: a fixed 1 s retry).
func (h *harness) fleet() error {
	n := h.sz.Fleet
	s := &section{
		title: fmt.Sprintf("Fleet: %d clients, one Mosquitto restarted (down %v)", n, h.sz.FleetDown),
		method: fmt.Sprintf("%d real `uplink` clients (`platform = \"mqtt\"`, default backoff: first retry after a lost link spread over 16 s, then up to 20 s with full jitter) in this one "+
			"process, then %d mqtt.js %s clients (its default reconnectPeriod, 1000 ms fixed, the Node SDK's behaviour) in one node "+
			"process, each population against its own fresh mosquitto behind a TCP proxy that timestamps every TCP connection "+
			"a client opens. With all connected, the broker is stopped (SIGTERM), kept down %v, and started again on the same port. "+
			"Attempts are counted from the stop until every client is connected again (bounded by %v); a connection the proxy "+
			"cannot forward because the broker is down is closed at once and still counts as an attempt.",
			n, n, seedVersion, h.sz.FleetDown, h.sz.RecoverBound),
		head: []string{"clients", "peak attempts/s (whole run)", "peak attempts/s after the restart", "attempts while down", "attempts in all", "all reconnected after restart", "attempts per client"},
	}
	h.report.add(s)
	var peaks, afters []float64
	for _, side := range []*fleetSide{h.goFleet(n), h.nodeFleet(n)} {
		peak, after, err := h.fleetOne(s, side, n)
		if err != nil {
			return fmt.Errorf("%s: %w", side.name, err)
		}
		peaks, afters = append(peaks, float64(peak)), append(afters, float64(after))
	}
	s.notes = append(s.notes, fmt.Sprintf("peak connection attempts per second over the whole run: the fixed 1 s retry reaches %s gatewayd's; "+
		"at the restarted broker: %s", ratio(peaks[1], peaks[0]), ratio(afters[1], afters[0])))
	return nil
}

func head(b []int, n int) []int {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func (h *harness) fleetOne(s *section, side *fleetSide, n int) (peak, peakAfter int, err error) {
	m, err := h.startMosquitto(0)
	if err != nil {
		return 0, 0, err
	}
	defer m.stop()
	px, err := startProxy(m.Addr)
	if err != nil {
		return 0, 0, err
	}
	defer px.close()
	if err := side.start(px.Addr()); err != nil {
		return 0, 0, err
	}
	defer side.stop()
	if !waitFor(60*time.Second, 100*time.Millisecond, func() bool { return side.connected() == n }) {
		return 0, 0, fmt.Errorf("only %d of %d connected within 60 s", side.connected(), n)
	}
	t0 := time.Now()
	m.stop()
	h.sleep(h.sz.FleetDown)
	up := time.Now()
	if err := m.start(); err != nil {
		return 0, 0, err
	}
	all := waitFor(h.sz.RecoverBound, 50*time.Millisecond, func() bool { return side.connected() == n })
	back := time.Since(up)
	att := px.since(t0)
	var buckets []int
	peak, _, buckets = perSecond(att, t0)
	down := 0
	var after []time.Time
	for _, a := range att {
		if a.Before(up) {
			down++
		} else {
			after = append(after, a)
		}
	}
	var afterBuckets []int
	peakAfter, _, afterBuckets = perSecond(after, up)
	s.notes = append(s.notes, fmt.Sprintf("%s: attempts per second from the stop: %v; from the restart: %v", side.name, head(buckets, 30), head(afterBuckets, 30)))
	backS := back.Round(100 * time.Millisecond).String()
	if !all {
		backS = fmt.Sprintf("**no**: %d of %d after %v", side.connected(), n, h.sz.RecoverBound)
	}
	s.row(side.name, peak, peakAfter, down, len(att), backS, fmt.Sprintf("%.1f", float64(len(att))/float64(n)))
	return peak, peakAfter, nil
}

func (h *harness) goFleet(n int) *fleetSide {
	ctx, cancel := context.WithCancel(h.ctx)
	var wg sync.WaitGroup
	clients := make([]*uplink.Client, n)
	discard := slog.New(slog.DiscardHandler)
	return &fleetSide{
		name: fmt.Sprintf("%d gatewayd uplinks (jittered backoff)", n),
		start: func(addr string) error {
			for i := range clients {
				c, err := uplink.New(uplink.Options{Platform: "mqtt", DeviceName: "fleet-" + strconv.Itoa(i),
					Broker: "tcp://" + addr, Logger: discard}, testutil.NewMemSource())
				if err != nil {
					return fmt.Errorf("uplink.New: %w", err)
				}
				clients[i] = c
				wg.Go(func() { _ = c.Run(ctx) })
			}
			return nil
		},
		connected: func() int {
			k := 0
			for _, c := range clients {
				if c != nil && c.Stats().Connected {
					k++
				}
			}
			return k
		},
		stop: func() {
			cancel()
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				h.log.Error("fleet clients did not stop within 30 s")
			}
		},
	}
}

func (h *harness) nodeFleet(n int) *fleetSide {
	var mu sync.Mutex
	up := map[string]bool{}
	var p *proc
	return &fleetSide{
		name: fmt.Sprintf("%d mqtt.js %s (fixed 1 s retry)", n, seedVersion),
		start: func(addr string) error {
			dir, err := h.nodeDir()
			if err != nil {
				return err
			}
			p, err = h.startProc("node-fleet", func(_ time.Time, line string) {
				st, id, ok := strings.Cut(line, " ")
				if !ok {
					return
				}
				mu.Lock()
				up[id] = st == "up"
				mu.Unlock()
			}, nodeBin(), filepath.Join(dir, "fleet.js"), "tcp://"+addr, strconv.Itoa(n))
			return err
		},
		connected: func() int {
			mu.Lock()
			defer mu.Unlock()
			k := 0
			for _, u := range up {
				if u {
					k++
				}
			}
			return k
		},
		stop: func() {
			if p != nil {
				p.stop(syscall.SIGTERM, 5*time.Second)
			}
		},
	}
}
