package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	pk, dn, secret = "a1powercut", "pc-1", "pc-secret"
	sensorCount    = 3
	sampleEvery    = 200 * time.Millisecond
	commitEvery    = 200 * time.Millisecond
	scrapeEvery    = 150 * time.Millisecond
)

type options struct {
	gatewayd, iotsim, lazyfs string
	seed                     uint64
	cycles, folds, torn      int
	budget                   time.Duration
	keep                     bool
	dir                      string
	minMust                  int
}

func main() {
	var o options
	flag.StringVar(&o.gatewayd, "gatewayd", "bin/gatewayd", "gatewayd binary")
	flag.StringVar(&o.iotsim, "iotsim", "bin/iotsim", "iotsim binary")
	flag.StringVar(&o.lazyfs, "lazyfs", "", "LazyFS binary (build.sh's wrapper)")
	flag.Uint64Var(&o.seed, "seed", 0, "random seed (0: from the clock; printed)")
	flag.IntVar(&o.cycles, "cycles", 12, "offline/drain cycles (1-2 offline cuts, then a cut during the drain)")
	flag.IntVar(&o.folds, "folds", 10, "cuts around folds")
	flag.IntVar(&o.torn, "torn", 15, "torn-write trials (journal, bbolt torn-op, bbolt torn-seq in turn)")
	flag.DurationVar(&o.budget, "budget", 4*time.Minute, "no new trial starts after this; the final drain and report follow")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, buffer files)")
	flag.StringVar(&o.dir, "dir", "", "work directory (empty, short path: LazyFS reads its FIFO in 100-byte chunks); default a new one in /tmp")
	flag.IntVar(&o.minMust, "min-settled", 300, "fail unless at least this many readings were settled before a cut")
	flag.Parse()
	os.Exit(run(o))
}

func run(o options) int {
	if o.lazyfs == "" {
		fmt.Fprintln(os.Stderr, "powercut: -lazyfs is required (deploy/powercut.mk builds it)")
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "powercut: needs root (FUSE mounts with allow_other)")
		return 2
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	fmt.Printf("== powercut: seed %d (rerun with -seed %d)\n", o.seed, o.seed)
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("/tmp", "pc")
		if err != nil {
			fmt.Fprintln(os.Stderr, "powercut:", err)
			return 1
		}
		dir = d
	}
	h := &harness{o: o, dir: dir, rng: rand.New(rand.NewPCG(o.seed, 0x9e3779b97f4a7c15)), started: time.Now()}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	h.ctx = ctx
	err := h.run()
	h.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "powercut:", err)
		h.dumpLogs()
	}
	status := 0
	if h.sum != nil {
		if why := h.sum.OK(o.minMust); len(why) > 0 {
			fmt.Printf("FAIL powercut: %s\n", strings.Join(why, "; "))
			h.dumpLogs()
			status = 1
		} else {
			fmt.Printf("PASS powercut: %d cuts, %d readings, 0 lost beyond the commit window (%s)\n",
				h.sum.Total.trials, h.sum.Total.read, time.Since(h.started).Round(time.Second))
		}
	}
	if err != nil {
		fmt.Println("FAIL powercut: the run did not complete")
		status = 1
	}
	if o.keep {
		fmt.Println("work directory kept:", dir)
	} else {
		os.RemoveAll(dir)
	}
	return status
}

type harness struct {
	o       options
	ctx     context.Context
	dir     string
	rng     *rand.Rand
	started time.Time

	fs                  *lazyFS
	simAddr, healthAddr string
	certs, cfg          string
	sim                 *proc
	simN                int
	gw                  *proc
	mu                  sync.Mutex
	procs               []*proc
	accepts             []Accept
	acceptedN           int
	lives               []*Life
	sum                 *Summary
	cfgA                Cfg
	interesting         []int       // lives whose logs to show on failure
	backlogSince        int         // readings taken while offline since the last drain
	cutsNo              int         // buffer.db.corrupt-* files seen so far
	acceptLog           *os.File    // every accepted line with the time it was read
	unparsed            int         // iotsim lines with a value this harness could not read
	preStat             os.FileInfo // buffer.db on the "disk" before this lifetime started
}

func (h *harness) logf(format string, args ...any) {
	fmt.Printf("   [%6.1fs] %s\n", time.Since(h.started).Seconds(), fmt.Sprintf(format, args...))
}

func (h *harness) track(p *proc) {
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(h.dir, "pids"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err == nil {
		fmt.Fprintf(f, "%d %s\n", p.cmd.Process.Pid, p.name)
		f.Close()
	}
}

func (h *harness) overBudget() bool {
	return h.ctx.Err() != nil || time.Since(h.started) > h.o.budget
}

func (h *harness) run() error {
	var err error
	if h.acceptLog, err = os.Create(filepath.Join(h.dir, "accepted.log")); err != nil {
		return fmt.Errorf("accepted.log: %w", err)
	}
	if h.fs, err = newLazyFS(h, h.o.lazyfs, h.dir); err != nil {
		return err
	}
	if err := h.fs.mount(""); err != nil {
		return err
	}
	p, err := freePort()
	if err != nil {
		return err
	}
	h.simAddr = fmt.Sprintf("127.0.0.1:%d", p)
	if p, err = freePort(); err != nil {
		return err
	}
	h.healthAddr = fmt.Sprintf("127.0.0.1:%d", p)
	h.certs = filepath.Join(h.dir, "certs")
	if err := h.simUp(); err != nil {
		return err
	}
	if err := h.writeConfig(); err != nil {
		return err
	}

	// Offline and drain: 1-2 runs with the platform down, each cut at a
	// random point, then a run with it back, cut during the drain.
	for c := 0; c < h.o.cycles && !h.overBudget(); c++ {
		if err := h.simDown(); err != nil {
			return err
		}
		for i := 0; i < 1+h.rng.IntN(2) && !h.overBudget(); i++ {
			after := time.Duration(1200+h.rng.IntN(2300)) * time.Millisecond
			if err := h.life("offline", h.cutAfter(after)); err != nil {
				return err
			}
		}
		if err := h.simUp(); err != nil {
			return err
		}
		if err := h.life("drain", h.cutInDrain()); err != nil {
			return err
		}
	}
	// Around folds: the bbolt file is synced by a fold (at open, when a
	// crash left windows in the journal, and every 30 windows).
	for i := 0; i < h.o.folds && !h.overBudget(); i++ {
		if err := h.simDown(); err != nil {
			return err
		}
		skip := time.Duration(0)
		if i%2 == 1 {
			skip = time.Second // not the fold at open: the next one
		}
		if err := h.life("fold", h.cutAtFold(skip)); err != nil {
			return err
		}
	}
	// Torn writes: LazyFS is remounted with the fault armed; it tears the
	// chosen write, persists part of it and stops (the power is gone).
	for i := 0; i < h.o.torn && !h.overBudget(); i++ {
		kind := []string{"torn-journal", "torn-bbolt-op", "torn-bbolt-seq"}[i%3]
		if err := h.simDown(); err != nil {
			return err
		}
		// Every other trial arms the fault at mount (it may hit the
		// recovery at open); the others arm it through LazyFS's FIFO while
		// gatewayd runs (it hits the next write: an append, a fold).
		inj, cmd := h.injection(kind), ""
		if (i/3)%2 == 1 {
			inj, cmd = "", h.fifoFault(kind)
		}
		if err := h.remount(inj); err != nil {
			return err
		}
		// Half of the journal's FIFO faults wait for a fold to sync the
		// bbolt file: the journal's next write is then its reset.
		afterFold := kind == "torn-journal" && cmd != "" && (i/6)%2 == 1
		if err := h.life(kind, h.cutOnTorn(cmd, afterFold)); err != nil {
			return err
		}
		if h.fs.armed { // the fault did not fire: disarm it
			if err := h.remount(""); err != nil {
				return err
			}
		}
	}
	if h.ctx.Err() != nil {
		return h.ctx.Err()
	}
	if err := h.final(); err != nil {
		return err
	}
	if err := h.simDown(); err != nil {
		return err
	}
	h.mu.Lock()
	acc := append([]Accept(nil), h.accepts...)
	h.mu.Unlock()
	res := Account(h.cfgA, h.lives, acc)
	sm := Summarise(h.lives, res)
	sm.Unparsed = h.unparsed
	h.sum = &sm
	fmt.Println()
	fmt.Printf("== power cuts: real gatewayd, buffer on LazyFS, %d emulated BME280s every %v, commit_interval %v, seed %d\n",
		sensorCount, sampleEvery, commitEvery, h.o.seed)
	sm.Print(os.Stdout)
	for _, p := range sm.Losses {
		h.interesting = append(h.interesting, p.Life)
	}
	return nil
}

func (h *harness) remount(inj string) error {
	if err := h.fs.unmount(); err != nil {
		return err
	}
	return h.fs.mount(inj)
}

// injection picks a torn-write fault for kind.
func (h *harness) injection(kind string) string {
	r := h.rng
	persist := func(parts int) string {
		// A non-empty proper subset of the parts, in order.
		var keep []string
		for len(keep) == 0 || len(keep) == parts {
			keep = keep[:0]
			for p := 1; p <= parts; p++ {
				if r.IntN(2) == 0 {
					keep = append(keep, fmt.Sprint(p))
				}
			}
		}
		return "[" + strings.Join(keep, ",") + "]"
	}
	switch kind {
	case "torn-journal":
		parts := 2 + r.IntN(3)
		return fmt.Sprintf("[[injection]]\ntype=\"torn-op\"\nfile=%q\noccurrence=%d\nparts=%d\npersist=%s\n",
			filepath.Join(h.fs.root, "buffer.db.journal"), 1+r.IntN(12), parts, persist(parts))
	case "torn-bbolt-op":
		parts := 2 + r.IntN(3)
		return fmt.Sprintf("[[injection]]\ntype=\"torn-op\"\nfile=%q\noccurrence=%d\nparts=%d\npersist=%s\n",
			filepath.Join(h.fs.root, "buffer.db"), 1+r.IntN(8), parts, persist(parts))
	default:
		seq := []string{"[1]", "[2]", "[1,3]", "[2,3]", "[1,2]"}[r.IntN(5)]
		return fmt.Sprintf("[[injection]]\ntype=\"torn-seq\"\nop=\"write\"\nfile=%q\noccurrence=%d\npersist=%s\n",
			filepath.Join(h.fs.root, "buffer.db"), 1+r.IntN(2), seq)
	}
}

// fifoFault is the same fault as a FIFO command: it tears the next write.
func (h *harness) fifoFault(kind string) string {
	r := h.rng
	parts := 2 + r.IntN(3)
	var keep []string
	for len(keep) == 0 || len(keep) == parts {
		keep = keep[:0]
		for p := 1; p <= parts; p++ {
			if r.IntN(2) == 0 {
				keep = append(keep, fmt.Sprint(p))
			}
		}
	}
	switch kind {
	case "torn-journal":
		return fmt.Sprintf("lazyfs::torn-op::file=%s::parts=%d::persist=%s", filepath.Join(h.fs.root, "buffer.db.journal"), parts, strings.Join(keep, ","))
	case "torn-bbolt-op":
		return fmt.Sprintf("lazyfs::torn-op::file=%s::parts=%d::persist=%s", filepath.Join(h.fs.root, "buffer.db"), parts, strings.Join(keep, ","))
	default:
		seq := []string{"1", "2", "1,3", "2,3", "1,2"}[r.IntN(5)]
		return fmt.Sprintf("lazyfs::torn-seq::op=write::file=%s::persist=%s", filepath.Join(h.fs.root, "buffer.db"), seq)
	}
}

// simUp starts iotsim (the platform emulator) unless it runs; it prints a
// line per accepted value, read here into the ledger.
func (h *harness) simUp() error {
	if h.sim != nil && !h.sim.exited() {
		return nil
	}
	h.simN++
	p, err := h.startProc("iotsim", filepath.Join(h.dir, fmt.Sprintf("iotsim-%d.log", h.simN)), []string{"TZ=UTC"}, h.onSimLine,
		h.o.iotsim, "--tls", h.simAddr, "--tcp", "", "--certs", h.certs, "--device", pk+":"+dn+":"+secret)
	if err != nil {
		return err
	}
	h.sim = p
	if !waitFor(15*time.Second, 20*time.Millisecond, func() bool { return p.exited() || listening(h.simAddr) }) || p.exited() {
		return fmt.Errorf("iotsim did not listen on %s:\n%s", h.simAddr, tail(p.logf, 10))
	}
	return nil
}

func (h *harness) simDown() error {
	if h.sim == nil || h.sim.exited() {
		return nil
	}
	if !h.sim.stop(syscall.SIGTERM, 10*time.Second) {
		return errors.New("iotsim did not stop on SIGTERM within 10 s")
	}
	return nil
}

func (h *harness) onSimLine(line string, at time.Time) {
	a, ok := parseAccept(line, at)
	if !ok {
		if strings.Contains(line, "taken=") {
			h.mu.Lock()
			h.unparsed++
			if h.unparsed == 1 {
				h.logf("iotsim line not understood (its format changed?): %q", line)
			}
			h.mu.Unlock()
		}
		return
	}
	h.mu.Lock()
	h.accepts = append(h.accepts, a)
	h.acceptedN++
	if h.acceptLog != nil {
		fmt.Fprintf(h.acceptLog, "%s %s\n", at.UTC().Format("15:04:05.000"), line)
	}
	h.mu.Unlock()
}

// quiet waits (at most 3 s) until no iotsim line came for 300 ms, with
// gatewayd dead, and returns the number of lines read: every value accepted
// before the cut has been read by then.
func (h *harness) quiet() int {
	if h.sim == nil || h.sim.exited() {
		return h.accepted() // iotsim is down: its output was read to the end
	}
	n, since := h.accepted(), time.Now()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if m := h.accepted(); m != n {
			n, since = m, time.Now()
		} else if time.Since(since) >= 300*time.Millisecond {
			break
		}
	}
	return n
}

func (h *harness) accepted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.acceptedN
}

func (h *harness) writeConfig() error {
	ca := filepath.Join(h.certs, "iotsim-ca.pem")
	var b strings.Builder
	fmt.Fprintf(&b, "[device]\nproduct_key = %q\ndevice_name = %q\ndevice_secret = %q\n\n", pk, dn, secret)
	fmt.Fprintf(&b, "[uplink]\nplatform = \"aliyun\"\nendpoint = %q\ntls = true\nca_file = %q\nca_replace = true\nserver_name = \"localhost\"\n\n",
		h.simAddr, ca)
	fmt.Fprintf(&b, "[buffer]\npath = %q\ncommit_interval = %q\nmax_size = \"16MiB\"\n", filepath.Join(h.fs.mnt, "buffer.db"), commitEvery.String())
	h.cfgA = Cfg{Sensors: map[string][]string{}, Interval: sampleEvery, Commit: commitEvery}
	for i := 0; i < sensorCount; i++ {
		s := fmt.Sprintf("s%d", i)
		props := []string{s + "_temperature", s + "_humidity", s + "_pressure"}
		h.cfgA.Sensors[s] = props
		fmt.Fprintf(&b, "\n[[sensor]]\nname = %q\ndriver = \"bme280\"\nbus = \"emulated:b%d\"\naddress = 0x76\ninterval = %q\n"+
			"[sensor.properties]\ntemperature = %q\nhumidity = %q\npressure = %q\n", s, i, sampleEvery.String(), props[0], props[1], props[2])
	}
	fmt.Fprintf(&b, "\n[health]\nlisten = %q\n\n[log]\nlevel = \"info\"\n", h.healthAddr)
	h.cfg = filepath.Join(h.dir, "gatewayd.toml")
	if err := os.WriteFile(h.cfg, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// trigger waits, during a lifetime, for the moment to cut. It returns
// whether the scenario's event happened and a note; crashed reports that
// LazyFS stopped by itself (a torn write), at crashAt.
type trigger func(l *Life, sc *scraper) (event bool, note string, crashed bool, crashAt time.Time)

func (h *harness) cutAfter(d time.Duration) trigger {
	return func(l *Life, sc *scraper) (bool, string, bool, time.Time) {
		h.sleep(d)
		// Cut right after gatewayd collected its counters afresh (it
		// serves one collection for up to a second), so that the count
		// of readings taken before the cut is exact.
		prev, _ := sc.last()
		s := prev
		waitFor(2*time.Second, 30*time.Millisecond, func() bool {
			s, _ = sc.once(h.healthAddr)
			return !s.Has["collect"] || s.Collect > prev.Collect
		})
		return s.Conn == 0, fmt.Sprintf("cut %v after start, platform down", d), false, time.Time{}
	}
}

// cutInDrain cuts after a random number of backlog values were accepted.
func (h *harness) cutInDrain() trigger {
	return func(l *Life, sc *scraper) (bool, string, bool, time.Time) {
		base := h.accepted()
		k := 1 + h.rng.IntN(max(1, h.backlogSince))
		ok := waitFor(8*time.Second, 2*time.Millisecond, func() bool { return h.accepted()-base >= k })
		s, _ := sc.once(h.healthAddr)
		mid := ok && s.Depth > float64(3*sensorCount*3)
		return mid, fmt.Sprintf("cut after %d values accepted (aimed at %d of a ~%d backlog), depth %.0f at the cut",
			h.accepted()-base, k, h.backlogSince, s.Depth), false, time.Time{}
	}
}

// cutAtFold watches the bbolt file on the "disk" (LazyFS's root): it
// changes only when a fold's fsync persists it. The cut follows 0-40 ms
// later: between the fold's data and meta syncs, before the journal's reset,
// or just after.
func (h *harness) cutAtFold(skip time.Duration) trigger {
	return func(l *Life, sc *scraper) (bool, string, bool, time.Time) {
		path := filepath.Join(h.fs.root, "buffer.db")
		st0 := h.preStat
		if skip > 0 {
			h.sleep(skip)
			st0, _ = os.Stat(path)
		}
		var seen time.Time
		waitFor(9*time.Second, 3*time.Millisecond, func() bool {
			st, err := os.Stat(path)
			if err == nil && (st0 == nil || !st.ModTime().Equal(st0.ModTime()) || st.Size() != st0.Size()) {
				seen = time.Now()
				return true
			}
			return false
		})
		if seen.IsZero() {
			return false, "no fold seen within 9 s", false, time.Time{}
		}
		d := time.Duration(h.rng.IntN(41)) * time.Millisecond
		time.Sleep(d)
		what := "the next fold"
		if skip == 0 {
			what = "the first fold (at open when the journal held windows)"
		}
		return true, fmt.Sprintf("cut %v after %s synced buffer.db, %v after start", d, what, seen.Sub(l.Start).Round(time.Millisecond)), false, time.Time{}
	}
}

// cutOnTorn waits for LazyFS to tear the armed write and stop.
func (h *harness) cutOnTorn(cmd string, afterFold bool) trigger {
	return func(l *Life, sc *scraper) (bool, string, bool, time.Time) {
		armed := "armed at mount"
		if cmd != "" && afterFold {
			path := filepath.Join(h.fs.root, "buffer.db")
			h.sleep(300 * time.Millisecond) // past the fold at open
			st0, _ := os.Stat(path)
			waitFor(9*time.Second, time.Millisecond, func() bool {
				st, err := os.Stat(path)
				return err == nil && (st0 == nil || !st.ModTime().Equal(st0.ModTime()) || st.Size() != st0.Size())
			})
			if err := h.fs.send(cmd); err != nil {
				return false, fmt.Sprintf("fault not sent: %v (plain cut)", err), false, time.Time{}
			}
			armed = "armed through the FIFO as a fold synced buffer.db, aimed at the journal's reset"
		} else if cmd != "" {
			d := time.Duration(300+h.rng.IntN(1700)) * time.Millisecond
			h.sleep(d)
			if !h.fs.alive() {
				return true, "torn before the FIFO fault was sent: " + h.fs.tornInfo(), true, time.Now()
			}
			if err := h.fs.send(cmd); err != nil {
				return false, fmt.Sprintf("fault not sent: %v (plain cut)", err), false, time.Time{}
			}
			armed = fmt.Sprintf("armed through the FIFO %v after start", d)
		}
		if waitFor(12*time.Second, 2*time.Millisecond, func() bool { return !h.fs.alive() }) {
			at := time.Now()
			return true, "torn (" + armed + "): " + h.fs.tornInfo(), true, at
		}
		return false, "the armed torn write did not happen within 12 s (plain cut)", false, time.Time{}
	}
}

func (h *harness) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-h.ctx.Done():
	}
}

// life runs gatewayd once, from start to a power cut.
func (h *harness) life(scn string, trig trigger) error {
	l := &Life{N: len(h.lives) + 1, Scenario: scn}
	h.lives = append(h.lives, l)
	logf := filepath.Join(h.dir, fmt.Sprintf("gatewayd-%d.log", l.N))
	h.preStat, _ = os.Stat(filepath.Join(h.fs.root, "buffer.db"))
	l.AccLo = h.accepted()
	l.Start = time.Now()
	gw, err := h.startProc("gatewayd", logf, nil, nil, h.o.gatewayd, "run", "--config", h.cfg)
	if err != nil {
		return err
	}
	h.gw = gw
	up := waitFor(15*time.Second, 5*time.Millisecond, func() bool { return gw.exited() || !h.fs.alive() || listening(h.healthAddr) })
	if !h.fs.alive() && strings.HasPrefix(scn, "torn") {
		// The armed write was torn while gatewayd opened the buffer
		// (recovering the journal): the power went during recovery.
		crashAt := time.Now()
		gw.stop(syscall.SIGKILL, 5*time.Second)
		l.Cut, l.End, l.Event = crashAt, time.Now(), true
		l.Note = "torn during open: " + h.fs.tornInfo()
		h.logf("life %2d %-14s %s-%s %s", l.N, scn, clock(l.Start), clock(l.Cut), l.Note)
		return h.powerCycle(l, true)
	}
	if !up || gw.exited() {
		gw.stop(syscall.SIGKILL, 5*time.Second)
		l.Cut, l.End = time.Now(), time.Now()
		l.Failed = "did not start: " + tail(logf, 8)
		h.interesting = append(h.interesting, l.N)
		h.logf("life %d (%s): gatewayd did not start", l.N, scn)
		// Go on with the next trial after a clean power cycle.
		return h.powerCycle(l, true)
	}
	sc := startScraper(h.healthAddr, l, scrapeEvery)
	event, note, crashed, crashAt := trig(l, sc)
	cut := crashAt
	if crashed {
		// The power went with the torn write: the process goes too.
		_ = gw.cmd.Process.Signal(syscall.SIGKILL)
		sc.halt()
	} else {
		// No last scrape here: it would delay the cut by milliseconds
		// (a fold's cut is timed to them), and gatewayd would mostly
		// serve a cached page anyway.
		_ = gw.cmd.Process.Signal(syscall.SIGKILL)
		cut = time.Now()
		sc.halt()
	}
	if !gw.stop(syscall.SIGKILL, 5*time.Second) {
		return fmt.Errorf("gatewayd (life %d) did not die on SIGKILL", l.N)
	}
	l.Cut, l.End = cut, time.Now()
	sort.Slice(l.Scrapes, func(i, j int) bool { return l.Scrapes[i].R.Before(l.Scrapes[j].R) })
	l.Event, l.Note = event, note
	if scn == "offline" {
		if s, ok := lastScrape(l); ok {
			for _, v := range s.Taken {
				h.backlogSince += int(v) * 3
			}
		}
	}
	if scn == "drain" {
		h.backlogSince = 0
	}
	h.logf("life %2d %-14s %s-%s %s", l.N, scn, clock(l.Start), clock(l.Cut), note)
	return h.powerCycle(l, crashed)
}

func lastScrape(l *Life) (Scrape, bool) {
	if len(l.Scrapes) == 0 {
		return Scrape{}, false
	}
	return l.Scrapes[len(l.Scrapes)-1], true
}

// powerCycle finishes a power cut: drop LazyFS's unsynced writes (or, if a
// torn write stopped LazyFS, remount it on what reached the disk), then
// count files the buffer set aside.
func (h *harness) powerCycle(l *Life, remount bool) error {
	l.AccHi = h.quiet()
	if remount || !h.fs.alive() {
		if err := h.remount(""); err != nil {
			return err
		}
	} else if err := h.fs.clearCache(); err != nil {
		return err
	}
	aside, _ := filepath.Glob(filepath.Join(h.fs.root, "buffer.db.corrupt-*"))
	if n := len(aside) - h.cutsNo; n > 0 {
		l.SetAside = n
		h.interesting = append(h.interesting, l.N)
	}
	h.cutsNo = len(aside)
	time.Sleep(100 * time.Millisecond) // lifetimes never touch: readings place by time
	return nil
}

// final runs gatewayd with the platform up until every settled reading was
// delivered (bounded), then stops it gracefully.
func (h *harness) final() error {
	if err := h.simUp(); err != nil {
		return err
	}
	l := &Life{N: len(h.lives) + 1, Scenario: "final", Final: true, AccLo: h.accepted(), AccHi: math.MaxInt}
	h.lives = append(h.lives, l)
	logf := filepath.Join(h.dir, fmt.Sprintf("gatewayd-%d.log", l.N))
	l.Start = time.Now()
	gw, err := h.startProc("gatewayd", logf, nil, nil, h.o.gatewayd, "run", "--config", h.cfg)
	if err != nil {
		return err
	}
	if !waitFor(15*time.Second, 10*time.Millisecond, func() bool { return gw.exited() || listening(h.healthAddr) }) || gw.exited() {
		gw.stop(syscall.SIGKILL, 5*time.Second)
		return fmt.Errorf("the final gatewayd did not start:\n%s", tail(logf, 10))
	}
	start := time.Now()
	drained := waitFor(90*time.Second, 250*time.Millisecond, func() bool {
		h.mu.Lock()
		acc := append([]Accept(nil), h.accepts...)
		h.mu.Unlock()
		res := Account(h.cfgA, h.lives[:len(h.lives)-1], acc)
		for _, p := range res.Props {
			if p.Lost > 0 {
				return false
			}
		}
		s, err := scrape(h.healthAddr)
		return err == nil && s.Conn == 1 && s.Depth <= float64(2*sensorCount*3)
	})
	time.Sleep(time.Second)
	h.logf("final run: backlog drained: %v after %v", drained, time.Since(start).Round(100*time.Millisecond))
	l.Cut = time.Now()
	if !gw.stop(syscall.SIGTERM, 20*time.Second) {
		return errors.New("the final gatewayd did not stop on SIGTERM within 20 s")
	}
	l.End = time.Now()
	return nil
}

// cleanup stops every process this run started and unmounts LazyFS.
func (h *harness) cleanup() {
	if h.gw != nil {
		h.gw.stop(syscall.SIGKILL, 5*time.Second)
	}
	if h.sim != nil {
		h.sim.stop(syscall.SIGTERM, 5*time.Second)
	}
	if h.fs != nil {
		if err := h.fs.unmount(); err != nil {
			fmt.Fprintln(os.Stderr, "powercut: unmount:", err)
		}
		if h.fs.doneR != nil {
			h.fs.doneR.Close()
		}
	}
	h.mu.Lock()
	ps := append([]*proc(nil), h.procs...)
	h.mu.Unlock()
	for _, p := range ps {
		p.stop(syscall.SIGKILL, 5*time.Second)
	}
}

// dumpLogs prints the log tails of lifetimes that lost or failed.
func (h *harness) dumpLogs() {
	seen := map[int]bool{}
	for _, n := range h.interesting {
		if seen[n] || len(seen) >= 4 {
			continue
		}
		seen[n] = true
		for _, l := range h.lives {
			if l.N == n {
				fmt.Printf("-- life %d (%s): %s\n", l.N, l.Scenario, l.Note)
			}
		}
		fmt.Println(tail(filepath.Join(h.dir, fmt.Sprintf("gatewayd-%d.log", n)), 15))
	}
}
