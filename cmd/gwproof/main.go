package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// sizes scale every duration and count of the run. "full" is the issue's
// figures; "small" is the CI version (under ~3 minutes) with time scaled
// down, which the tables say.
type sizes struct {
	Name         string
	Cost         costSizes     // issue 11's figures (cost and backlog parts)
	DrainTimes   int           // -benchtime of uplink's 10,000-reading drain benchmark
	SDTimes      int           // -benchtime of buffer's 300-reading write benchmark
	StartTrials  int           // start-up trials
	Fleet        int           // uplink clients
	FleetDown    time.Duration // broker down time
	Outage       time.Duration // platform outage while sampling continues
	Blackhole    time.Duration // broker SIGSTOPped
	Kill9Count   int           // -count of e2e's TestKill9EndToEnd (29 kills each)
	FaultWindow  time.Duration // 429/460/sensor/clock fault length
	ClockJump    time.Duration // size of the injected clock step
	RecoverBound time.Duration // how long recovery may take before "no"
	SampleEvery  time.Duration // sensor interval in fault runs
	// ParallelFaults runs the fault trials concurrently (small: CI time).
	ParallelFaults bool
}

var full = sizes{
	Name: "full",
	Cost: costSizes{Warmup: 15 * time.Second, SeedWarmup: 60 * time.Second, CPUWindow: 60 * time.Second, StraceWindow: 20 * time.Second,
		SeedWindow: 300 * time.Second, RoundWindow: 180 * time.Second, Outage: 15 * time.Second, SlidingN: 4,
		BacklogDays: 7, DrainBound: 15 * time.Minute},
	DrainTimes: 10, SDTimes: 12, StartTrials: 10,
	Fleet: 500, FleetDown: 20 * time.Second,
	Outage: 3 * time.Minute, Blackhole: 60 * time.Second, Kill9Count: 2,
	FaultWindow: 20 * time.Second, ClockJump: time.Hour, RecoverBound: 200 * time.Second,
	SampleEvery: 200 * time.Millisecond,
}

var small = sizes{
	Name: "small",
	// The strace window and the outage are the 15-20 s, not
	// scaled; the other windows are shorter and the backlog is one day.
	Cost: costSizes{Warmup: 10 * time.Second, SeedWarmup: 30 * time.Second, CPUWindow: 20 * time.Second, StraceWindow: 20 * time.Second,
		SeedWindow: 60 * time.Second, RoundWindow: 60 * time.Second, Outage: 15 * time.Second, SlidingN: 4,
		BacklogDays: 1, DrainBound: 3 * time.Minute},
	DrainTimes: 1, SDTimes: 12, StartTrials: 3,
	Fleet: 500, FleetDown: 3 * time.Second,
	Outage: 10 * time.Second, Blackhole: 12 * time.Second, Kill9Count: 0,
	FaultWindow: 3 * time.Second, ClockJump: time.Hour, RecoverBound: 60 * time.Second,
	SampleEvery: 200 * time.Millisecond, ParallelFaults: true,
}

// harness holds what every part of a run shares.
type harness struct {
	sz     sizes
	root   string // module root
	work   string // throwaway directory for this run
	gw     string // built gatewayd
	log    *slog.Logger
	ctx    context.Context
	mu     sync.Mutex
	procs  []*proc
	undo   []func() // unmounts and the like, run last to first
	report *report
	// faultSet limits the fault trials (empty: all).
	faultSet map[string]bool
	// strict: a missing tool fails the run (CI).
	strict bool
}

func (h *harness) track(p *proc) {
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
}

// cleanup stops every process still running and undoes mounts.
func (h *harness) cleanup() {
	h.mu.Lock()
	procs := append([]*proc(nil), h.procs...)
	undo := h.undo
	h.mu.Unlock()
	for _, p := range procs {
		p.stop(syscall.SIGKILL, 5*time.Second)
	}
	for i := len(undo) - 1; i >= 0; i-- {
		undo[i]()
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gwproof:", err)
		os.Exit(1)
	}
}

// parts are the sections in run order; -only picks some.
var parts = []struct {
	name string
	fn   func(*harness) error
}{
	{"cost", (*harness).cost},
	{"backlog", (*harness).backlog},
	{"storage", (*harness).storage},
	{"drain", (*harness).drain},
	{"startup", (*harness).startup},
	{"fleet", (*harness).fleet},
	{"faults", (*harness).faults},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gwproof", flag.ContinueOnError)
	fs.SetOutput(stderr)
	size := fs.String("size", envOr("PROOF", "full"), "full (the issue's figures) or small (CI, under ~3 minutes)")
	out := fs.String("out", "", "also write the tables as markdown to this file")
	only := fs.String("only", "", "comma-separated parts to run (cost,backlog,storage,drain,startup,fleet,faults); empty = all")
	strict := fs.Bool("strict", false, "a missing tool (strace) fails the run instead of leaving its figure unmeasured (make proof-ci, CI)")
	gwBin := fs.String("gatewayd", "", "gatewayd binary to measure; empty = build ./cmd/gatewayd")
	verbose := fs.Bool("v", false, "log progress details")
	rev := fs.String("rev", "", "the gatewayd revision measured, for the stamp; empty = git describe of the module")
	onlyFaults := fs.String("faults", "", "comma-separated fault trials to run (outage,blackhole,kill9,diskfull,corrupt,clock,sensor,429,460); empty = all")
	if err := fs.Parse(args); err != nil {
		return err
	}
	h := &harness{ctx: ctx, report: &report{}, faultSet: map[string]bool{}, strict: *strict}
	for _, f := range strings.Split(*onlyFaults, ",") {
		if f != "" {
			h.faultSet[f] = true
		}
	}
	switch *size {
	case "full":
		h.sz = full
	case "small":
		h.sz = small
	default:
		return fmt.Errorf("-size %q: want full or small", *size)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	h.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	h.root = root
	if h.work, err = os.MkdirTemp("", "gwproof-"); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	defer os.RemoveAll(h.work)
	defer h.cleanup()
	h.gw = *gwBin
	if h.gw == "" {
		h.gw = filepath.Join(h.work, "gatewayd")
		if err := h.goBuild("./cmd/gatewayd", h.gw); err != nil {
			return err
		}
	}
	if plainKey, err = h.probePlainKey(); err != nil {
		return err
	}
	h.report.machine = machine(h.root, h.sz.Name, *rev)
	if h.sz.Name != "full" {
		h.report.scale = "**Small run (`make proof-ci`): time is scaled down.** " + scaleNote
	}
	want := map[string]bool{}
	for _, p := range strings.Split(*only, ",") {
		if p != "" {
			want[p] = true
		}
	}
	start := time.Now()
	var failed []string
	for _, p := range parts {
		if len(want) > 0 && !want[p.name] {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.log.Info("== " + p.name)
		t0 := time.Now()
		if err := p.fn(h); err != nil {
			// One part failing must not hide the others' figures.
			h.log.Error("part failed", "part", p.name, "err", err)
			h.report.note(fmt.Sprintf("**%s failed**: %v", p.name, err))
			failed = append(failed, p.name)
		}
		h.log.Info("== "+p.name+" done", "took", time.Since(t0).Round(time.Second))
	}
	h.report.took = time.Since(start)
	md := h.report.markdown()
	fmt.Fprint(stdout, md)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("parts failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run gwproof inside the gatewayd module")
	}
	return filepath.Dir(mod), nil
}

// goBuild builds the way the .deb's binary is built (deploy/deploy.mk:
// static, CGO_ENABLED=0, stripped, trimmed paths), so the binary measured
// is the one shipped. (A cgo build links libc dynamically, which alone adds
// about 1.5 MiB of resident memory.)
func (h *harness) goBuild(pkg, out string) error {
	cmd := exec.CommandContext(h.ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = h.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, b)
	}
	return nil
}

// goTest runs go test in the module with a bound and returns its output.
func (h *harness) goTest(bound time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(h.ctx, bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"test"}, args...)...)
	cmd.Dir = h.root
	cmd.WaitDelay = 5 * time.Second
	b, err := cmd.CombinedOutput()
	if err != nil {
		return string(b), fmt.Errorf("go test %s: %w", strings.Join(args, " "), err)
	}
	return string(b), nil
}
