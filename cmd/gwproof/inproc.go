package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"periph.io/x/conn/v3/i2c"

	"gatewayd/buffer"
	"gatewayd/internal/clock"
	"gatewayd/internal/iotsim"
	"gatewayd/internal/reading"
	"gatewayd/sensors"
	"gatewayd/sensors/emul"
	"gatewayd/uplink"
)

// inproc is the pipeline wired in this process the way cmd/gatewayd wires
// it (clock -> sensors -> buffer -> uplink -> iotsim over TLS), for faults
// that need hooks a separate process does not offer: the clock's time
// sources and the emulated bus's fault injection. Its sink and source
// wrappers record every value appended, acknowledged and set aside, by its
// identity (sample ID, measurement).
type inproc struct {
	sim   *iotsim.Server
	clk   *clock.Clock
	set   *sensors.Set
	buf   *buffer.Buffer
	up    *uplink.Client
	path  string
	buses sync.Map // name -> *emul.Bus

	offset atomic.Int64 // added to the wall clock the clock package sees
	synced bool         // what the stubbed adjtimex says

	mu    sync.Mutex
	taken map[reading.Ref]bool // every value appended
	acked map[reading.Ref]int
	dead  map[reading.Ref]bool
	// sampleVals remembers each sample's measurements, so that a
	// whole-sample Ref (empty Measurement) can be resolved to its values.
	sampleVals map[reading.ID][]string
	// props and stamps say, for a lost value, what to look for at iotsim:
	// its property and its sample's time when appended.
	props  map[reading.Ref]string
	stamps map[reading.ID]time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type recSink struct{ p *inproc }

func (s recSink) Append(ctx context.Context, ss []reading.Sample) error {
	// Held across the Append, so an Ack of these samples (recSource.Ack
	// takes mu after the buffer's Ack) is recorded after them, however
	// this goroutine is scheduled.
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if err := s.p.buf.Append(ctx, ss); err != nil {
		return err
	}
	for _, sm := range ss {
		for _, v := range sm.Values {
			ref := reading.Ref{ID: sm.ID, Measurement: v.Measurement}
			s.p.taken[ref] = true
			s.p.sampleVals[sm.ID] = append(s.p.sampleVals[sm.ID], v.Measurement)
			if s.p.props != nil {
				s.p.props[ref] = v.Property
			}
		}
		if s.p.stamps != nil {
			s.p.stamps[sm.ID] = sm.Time
		}
	}
	return nil
}

type recSource struct{ p *inproc }

func (s recSource) Take(max int, f reading.Filter) ([]reading.Sample, error) {
	return s.p.buf.Take(max, f)
}
func (s recSource) Notify() <-chan struct{}  { return s.p.buf.Notify() }
func (s recSource) Release(ids []reading.ID) { s.p.buf.Release(ids) }

// values resolves refs to value refs (a whole-sample ref stands for every
// value of the sample that is not yet acked or set aside). Called with mu
// held.
func (p *inproc) values(refs []reading.Ref) []reading.Ref {
	var out []reading.Ref
	for _, r := range refs {
		if r.Measurement != "" {
			out = append(out, r)
			continue
		}
		for _, m := range p.sampleVals[r.ID] {
			v := reading.Ref{ID: r.ID, Measurement: m}
			if p.acked[v] == 0 && !p.dead[v] {
				out = append(out, v)
			}
		}
	}
	return out
}

func (s recSource) Ack(refs []reading.Ref) error {
	if err := s.p.buf.Ack(refs); err != nil {
		return err
	}
	s.p.mu.Lock()
	for _, r := range s.p.values(refs) {
		s.p.acked[r]++
	}
	s.p.mu.Unlock()
	return nil
}
func (s recSource) DeadLetter(refs []reading.Ref, reason string) error {
	if err := s.p.buf.DeadLetter(refs, reason); err != nil {
		return err
	}
	s.p.mu.Lock()
	for _, r := range s.p.values(refs) {
		s.p.dead[r] = true
	}
	s.p.mu.Unlock()
	return nil
}

// startInproc starts iotsim and the pipeline; synced says whether the
// stubbed kernel clock discipline reports the system clock as NTP-synced.
func (h *harness) startInproc(synced bool) (*inproc, error) {
	dir, err := os.MkdirTemp(h.work, "inproc-")
	if err != nil {
		return nil, fmt.Errorf("inproc dir: %w", err)
	}
	_, cert, key, err := iotsim.GenerateCerts(filepath.Join(dir, "certs"))
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	p := &inproc{path: filepath.Join(dir, "buffer.db"), synced: synced,
		taken: map[reading.Ref]bool{}, acked: map[reading.Ref]int{}, dead: map[reading.Ref]bool{}, sampleVals: map[reading.ID][]string{},
		props: map[reading.Ref]string{}, stamps: map[reading.ID]time.Time{}}
	if p.sim, err = iotsim.Start(iotsim.Options{TLSAddr: "127.0.0.1:0", CertFile: cert, KeyFile: key,
		Devices: []iotsim.Device{{ProductKey: pk, DeviceName: dn, DeviceSecret: secret}}}); err != nil {
		return nil, fmt.Errorf("iotsim: %w", err)
	}
	log := slog.New(slog.DiscardHandler)
	p.clk = clock.New(clock.Options{
		StateDir: dir, Logger: log,
		Now: func() time.Time { return time.Now().Add(time.Duration(p.offset.Load())) },
		Adjtimex: func(tx *unix.Timex) (int, error) {
			if p.synced {
				tx.Maxerror = 1000 // µs
				return unix.TIME_OK, nil
			}
			tx.Status = unix.STA_UNSYNC
			return unix.TIME_ERROR, nil
		},
	})
	var specs []sensors.Spec
	for i := 0; i < simSensors; i++ {
		pr := sensorProps(i)
		specs = append(specs, sensors.Spec{Name: fmt.Sprintf("s%d", i), Driver: "bme280", Bus: fmt.Sprintf("emulated:b%d", i),
			Address: 0x76, Interval: h.sz.SampleEvery,
			Properties: map[string]string{"temperature": pr[0], "humidity": pr[1], "pressure": pr[2]}})
	}
	// Sensor backoff at its defaults (1 s … 2 min), as cmd/gatewayd runs it.
	p.set, err = sensors.New(specs, sensors.Options{Logger: log, Stamp: p.clk.Stamp,
		OpenBus: func(name string) (i2c.Bus, error) {
			if b, ok := p.buses.Load(name); ok {
				return b.(*emul.Bus), nil
			}
			var on []sensors.Spec
			for _, sp := range specs {
				if sp.Bus == name {
					on = append(on, sp)
				}
			}
			b, err := sensors.EmulatedBus(on)
			if err != nil {
				return nil, err
			}
			p.buses.Store(name, b)
			return b, nil
		}})
	if err != nil {
		p.sim.Close()
		return nil, fmt.Errorf("sensors: %w", err)
	}
	if p.buf, err = buffer.Open(buffer.Options{Path: p.path, CommitInterval: time.Second, Logger: log}); err != nil {
		p.sim.Close()
		return nil, fmt.Errorf("buffer: %w", err)
	}
	ca := filepath.Join(dir, "certs", "iotsim-ca.pem")
	p.up, err = uplink.New(uplink.Options{ProductKey: pk, DeviceName: dn, DeviceSecret: secret, Endpoint: p.sim.TLSAddr(),
		TLS: true, CAFile: ca, CAReplace: true, ServerName: "localhost", Logger: log,
		// cmd/gatewayd's aliyun time policy (timepolicy.go), restated: send
		// trusted times, hold samples waiting for the clock, have the
		// uplink set aside samples whose time can never be known.
		FixTime: func(s *reading.Sample) uplink.TimeVerdict {
			switch p.clk.Check(&s.Stamp) {
			case clock.Trusted:
				return uplink.TimeOK
			case clock.Wait:
				return uplink.TimeHold
			}
			return uplink.TimeUnknown
		},
		OnServerTime: p.clk.ObserveServerTime,
	}, recSource{p})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("uplink: %w", err)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	p.cancel = cancel
	p.wg.Go(func() { _ = p.set.Run(ctx, recSink{p}) })
	p.wg.Go(func() { _ = p.up.Run(ctx) })
	return p, nil
}

func (p *inproc) bus(name string) *emul.Bus {
	if b, ok := p.buses.Load(name); ok {
		return b.(*emul.Bus)
	}
	return nil
}

// close stops the loops (bounded), closes the buffer and iotsim.
func (p *inproc) close() {
	if p.cancel != nil {
		p.cancel()
		done := make(chan struct{})
		go func() { p.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
		}
	}
	if p.set != nil {
		p.set.Close(context.Background())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.buf.Close(ctx)
	p.sim.Close()
}

// tally accounts for every value appended, by (sample ID, measurement):
// acknowledged, still in the file, or set aside. Platform duplicates are
// extra acceptances of one (property, time).
func (p *inproc) tally() (tally, error) {
	acc := p.sim.Accepted()
	p.close()
	pending, dead, err := export(p.path)
	if err != nil {
		return tally{}, err
	}
	still := map[reading.Ref]bool{}
	for _, r := range pending {
		still[reading.Ref{ID: r.ID, Measurement: r.Measurement}] = true
	}
	for _, r := range dead {
		still[reading.Ref{ID: r.ID, Measurement: r.Measurement}] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := tally{taken: len(p.taken)}
	var lost []reading.Ref
	for ref := range p.taken {
		switch {
		case p.acked[ref] > 0:
			t.unique++
		case p.dead[ref]:
			t.dead++
		case still[ref]:
			t.remaining++
		default:
			t.lost++
			lost = append(lost, ref)
		}
	}
	seen := map[key]int{}
	for _, a := range acc {
		seen[key{a.Property, a.Time.UnixMilli()}]++
	}
	for _, n := range seen {
		t.dups += n - 1
	}
	// Name the lost values: their identity, when they were taken, and
	// whether iotsim accepted them (then only the acknowledgement went
	// missing) or never saw them.
	slices.SortFunc(lost, func(a, b reading.Ref) int { return cmp.Compare(a.ID, b.ID) })
	var names []string
	for i, ref := range lost {
		if i == 5 {
			names = append(names, fmt.Sprintf("and %d more", len(lost)-5))
			break
		}
		at := p.stamps[ref.ID]
		accepted := 0
		for k, n := range seen {
			if k.prop == p.props[ref] && k.ms == at.UnixMilli() {
				accepted = n
			}
		}
		names = append(names, fmt.Sprintf("sample %d %s (%s, taken %s, accepted by iotsim %d times)",
			ref.ID, ref.Measurement, p.props[ref], at.UTC().Format("15:04:05.000"), accepted))
	}
	t.lostDetail = strings.Join(names, "; ")
	return t, nil
}

// drained waits until nothing older than a few intervals is unsent.
func (p *inproc) drained(bound time.Duration) (time.Duration, bool) {
	start := time.Now()
	ok := waitFor(bound, 100*time.Millisecond, func() bool {
		st := p.buf.Stats()
		return p.up.Stats().Connected && (st.OldestUnsent.IsZero() || time.Since(st.OldestUnsent) < 3*time.Second)
	})
	return time.Since(start), ok
}

// faultClock steps the wall clock the clock package reads (its injectable
// Now source) forwards and then backwards, in-process: the machine's clock
// is shared and is not touched. The uplink's and buffer's own time.Now are
// the machine's, unstepped.
func (h *harness) faultClock(s *section) error {
	for _, synced := range []bool{true, false} {
		p, err := h.startInproc(synced)
		if err != nil {
			return err
		}
		h.sleep(2 * time.Second)
		jump := h.sz.ClockJump
		p.offset.Store(int64(jump))
		h.sleep(h.sz.FaultWindow)
		p.offset.Store(int64(-jump))
		h.sleep(h.sz.FaultWindow)
		p.offset.Store(0)
		took, ok := p.drained(h.sz.RecoverBound)
		h.sleep(time.Second)
		acc := p.sim.Accepted()
		// How far the delivered times strayed from when they arrived.
		var worst time.Duration
		for _, a := range acc {
			d := a.Received.Sub(a.Time)
			if d < 0 {
				d = -d
			}
			worst = max(worst, d)
		}
		tl, err := p.tally()
		if err != nil {
			return err
		}
		var what, how string
		if synced {
			what = fmt.Sprintf("clock jump +%v then −%v (%v each) with the system clock NTP-disciplined (in-process: clock.Options.Now stepped, adjtimex stubbed synced)", jump, jump, h.sz.FaultWindow)
			how = fmt.Sprintf("a disciplined clock is trusted: readings carry the stepped times (largest gap between a reading's time and its arrival: %v); "+
				"drained %v after the clock came back", worst.Round(time.Second), took.Round(100*time.Millisecond))
		} else {
			what = fmt.Sprintf("clock jump +%v then −%v (%v each) with the system clock unsynchronised, time from the platform's NTP (in-process: clock.Options.Now stepped, adjtimex stubbed unsynced)", jump, jump, h.sz.FaultWindow)
			how = fmt.Sprintf("readings dated from CLOCK_BOOTTIME and the platform's time, so the step does not reach them: largest gap between a reading's time and its arrival %v; drained %v after",
				worst.Round(time.Millisecond), took.Round(100*time.Millisecond))
		}
		faultRow(s, what, "1", tl, ok, how)
	}
	return nil
}

// faultSensor makes one of three emulated chips stop answering (NACK, as a
// chip that lost power) and come back, in-process through emul.Bus.Inject.
func (h *harness) faultSensor(s *section) error {
	p, err := h.startInproc(false)
	if err != nil {
		return err
	}
	h.sleep(2 * time.Second)
	b := p.bus("emulated:b1")
	if b == nil {
		p.close()
		return fmt.Errorf("bus emulated:b1 was never opened")
	}
	stats := func() map[string]sensors.SensorStats {
		m := map[string]sensors.SensorStats{}
		for _, st := range p.set.Stats() {
			m[st.Name] = st
		}
		return m
	}
	before := stats()
	if err := b.Inject(0x76, emul.NACK); err != nil {
		p.close()
		return fmt.Errorf("inject: %w", err)
	}
	h.sleep(h.sz.FaultWindow)
	during := stats()
	if err := b.Inject(0x76, 0); err != nil {
		p.close()
		return fmt.Errorf("clear fault: %w", err)
	}
	cleared := time.Now()
	back := waitFor(h.sz.RecoverBound, 50*time.Millisecond, func() bool { return stats()["s1"].LastOK.After(cleared) })
	backAfter := time.Since(cleared)
	took, ok := p.drained(h.sz.RecoverBound)
	h.sleep(time.Second)
	tl, err := p.tally()
	if err != nil {
		return err
	}
	faultRow(s, fmt.Sprintf("sensor vanishing for %v and returning (in-process: emul.Bus.Inject NACK on one of three BME280s)", h.sz.FaultWindow), "1", tl,
		back && ok && during["s0"].Taken > before["s0"].Taken,
		fmt.Sprintf("s1 took %d samples while gone (%d failed attempts counted, %d re-inits), s0 and s2 kept sampling (+%d, +%d); s1 sampled again %v after it returned; drained %v after",
			during["s1"].Taken-before["s1"].Taken, during["s1"].Failed-before["s1"].Failed, during["s1"].Reinits,
			during["s0"].Taken-before["s0"].Taken, during["s2"].Taken-before["s2"].Taken, backAfter.Round(10*time.Millisecond), took.Round(100*time.Millisecond)))
	return nil
}
