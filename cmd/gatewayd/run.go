package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gatewayd/buffer"
	"gatewayd/internal/clock"
	"gatewayd/internal/config"
	"gatewayd/internal/health"
	"gatewayd/sensors"
	"gatewayd/uplink"
)

// shutdownBound is how long a graceful stop may take: sensors stop, the
// uplink disconnects cleanly, the buffer makes its final commit.
const shutdownBound = 10 * time.Second

// The shares of shutdownBound: the sensors get sensorsStopShare to stop
// (a read takes milliseconds; one still running after 3 s is wedged), and
// bufferStopShare is kept back for the buffer's final commit (an fsync).
const (
	sensorsStopShare = 3 * time.Second
	bufferStopShare  = 2 * time.Second
)

// taken is how many samples the sensors took, for the stop log line.
func (p *pipeline) taken() uint64 {
	var n uint64
	for _, st := range p.set.Stats() {
		n += st.Taken
	}
	return n
}

func cmdRun(ctx context.Context, a *app, args []string) error {
	fs := newFlags(a, "run")
	path := fs.String("config", "", "config file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(a, *path)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// The outcome of each SIGHUP, for `gatewayd reload` (see reload.go).
	status := reloadStatus{dir: os.Getenv("RUNTIME_DIRECTORY")}
	gen, outcome, detail := 0, "started", ""
	for {
		ready := func(logger *slog.Logger) {
			if err := status.write(gen, outcome, detail); err != nil {
				logger.Warn("cannot report the reload's outcome to `gatewayd reload`", "err", err)
			}
		}
		reload, err := runPipeline(ctx, a, cfg, hup, ready)
		if err != nil || !reload {
			return err
		}
		// SIGHUP: reread the file; keep the running config if the new one is
		// invalid (a typo must not take a working gateway down).
		gen++
		next, err := loadConfig(a, cfg.File)
		if err != nil {
			newLogger(a.stderr, cfg.Log.Level).Error("reload refused: config invalid; keeping the running config", "err", err)
			outcome, detail = "refused", err.Error()
			continue
		}
		cfg, outcome, detail = next, "applied", ""
	}
}

// pipeline is one running instance of sensors -> buffer -> uplink.
type pipeline struct {
	logger *slog.Logger
	clk    *clock.Clock
	health *health.Health
	buf    *buffer.Buffer
	set    *sensors.Set
	up     *uplink.Client
	last   *lastValues // the sensors' sink: remembers each one's last sample for /status

	// For /status.
	started                            time.Time
	cfgFile, platform, server, bufPath string

	// reloading is set when the pipeline stops for a SIGHUP; ready is
	// called once it told systemd READY=1 (see notify).
	reloading atomic.Bool
	ready     func()
}

// Heartbeat bounds: each loop beats at least once a second while alive; a
// loop silent this long is wedged, and the watchdog stops being fed.
const heartbeatBound = 30 * time.Second

// runPipeline runs until ctx is done (returns false) or SIGHUP (returns
// true). ready, if not nil, is called once the pipeline runs and systemd
// has been told READY=1.
func runPipeline(ctx context.Context, a *app, cfg *config.Config, hup <-chan os.Signal, ready func(*slog.Logger)) (reload bool, err error) {
	logger := newLogger(a.stderr, cfg.Log.Level)
	p, err := openPipeline(cfg, logger)
	if err != nil {
		return false, err
	}
	if ready != nil {
		p.ready = func() { ready(logger) }
	}
	logger.Info("gatewayd started", "version", version, "config", cfg.File,
		"sensors", len(cfg.Sensors), "platform", cfg.Uplink.Platform, "buffer", cfg.Path(cfg.Buffer.Path))

	var wg sync.WaitGroup // health and its server
	errs := make(chan error, 3)
	hctx, stopHealth := context.WithCancel(context.Background())
	defer stopHealth()
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.health.Run(hctx)
	}()
	if addr := cfg.Health.ListenAddr(); addr != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.health.ListenAndServe(hctx, addr); err != nil {
				// Health is a window, not the pipeline: log, keep running.
				logger.Error("health endpoint failed", "addr", addr, "err", err)
			}
		}()
	}
	if err := p.set.Open(p.last); err != nil {
		stopHealth()
		wg.Wait()
		p.close(context.Background())
		return false, fmt.Errorf("sensors: %w", err)
	}
	uctx, stopUplink := context.WithCancel(context.Background())
	defer stopUplink()
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		if err := p.up.Run(uctx); err != nil && !errors.Is(err, context.Canceled) {
			errs <- fmt.Errorf("uplink: %w", err)
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case <-hup:
		reload = true
		p.reloading.Store(true)
		logger.Info("SIGHUP: reloading the config")
	case runErr = <-errs:
		logger.Error("pipeline failed", "err", runErr)
	}

	// Graceful stop within the bound, in order: the sensors stop (no new
	// readings) and are waited for within a share of the bound; then the
	// uplink (clean disconnect, answers to messages in flight taken);
	// then the buffer's final commit, which always gets its share, even
	// when a sensor is wedged in its driver (that loop is abandoned).
	start := time.Now()
	deadline, cancel := context.WithTimeout(context.Background(), shutdownBound)
	defer cancel()
	stopHealth() // STOPPING=1 to systemd, or RELOADING=1 (see notify)
	sctx, cancelS := context.WithTimeout(deadline, sensorsStopShare)
	if err := p.set.Close(sctx); err != nil {
		logger.Error("sensors stopped with a wedged loop; the buffer's final commit goes ahead", "err", err)
	}
	cancelS()
	logger.Info("sensors stopped", "samples_taken", p.taken(), "after", time.Since(start).Round(time.Millisecond))
	stopUplink()
	uctx2, cancelU := context.WithTimeout(deadline, shutdownBound-bufferStopShare-time.Since(start))
	select {
	case <-upDone:
	case <-uctx2.Done():
		logger.Error("uplink did not stop within its share of the shutdown bound", "share", shutdownBound-bufferStopShare)
	}
	cancelU()
	if err := p.buf.Close(deadline); err != nil && runErr == nil {
		runErr = fmt.Errorf("close buffer: %w", err)
	}
	hdone := make(chan struct{})
	go func() { wg.Wait(); close(hdone) }()
	select {
	case <-hdone:
	case <-deadline.Done():
		logger.Error("health server did not stop within the shutdown bound")
	}
	logger.Info("gatewayd stopped", "took", time.Since(start).Round(time.Millisecond))
	return reload && runErr == nil, runErr
}

func openPipeline(cfg *config.Config, logger *slog.Logger) (*pipeline, error) {
	secret, err := cfg.Secret()
	if err != nil {
		return nil, err
	}
	p := &pipeline{logger: logger, started: time.Now(), cfgFile: cfg.File, platform: cfg.Uplink.Platform, bufPath: cfg.Path(cfg.Buffer.Path)}
	p.clk = clock.New(clock.Options{StateDir: clockStateDir(cfg), Logger: logger})
	p.health = health.New(health.Options{Logger: logger, Collect: p.collect, Status: p.status, Notify: p.notify})
	p.health.Register("sensors", heartbeatBound)
	p.health.Register("uplink", heartbeatBound)
	specs := sensorSpecs(cfg)
	var ivs []time.Duration
	for _, sp := range specs {
		ivs = append(ivs, cmp.Or(sp.Interval, sensors.DefaultInterval))
	}
	bo := bufferOptions(cfg, logger)
	beat := beatEvery(ivs, bo.CommitInterval, heartbeatBound)
	p.set, err = sensors.New(specs, sensors.Options{
		Logger:    logger,
		Stamp:     p.clk.Stamp,
		Beat:      func() { p.health.Beat("sensors") },
		BeatEvery: beat,
		// A complete round goes out at once instead of after max_delay
		// when nothing more could join it. p.up is set below, before Run
		// starts the sensors' loops.
		Quiet: func(d time.Duration) { p.up.Quiet(d) },
	})
	if err != nil {
		return nil, specError(cfg, err)
	}
	if w := estimateCapacity(cfg, p.set.Shapes()).warning(cfg); w != "" {
		logger.Warn("buffer.max_size cannot hold max_age of these sensors (gatewayd check says the same)", "detail", w)
	}
	p.buf, err = buffer.Open(bo)
	if err != nil {
		p.set.Close(context.Background())
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	p.last = newLastValues(p.buf)
	uo := uplinkOptions(cfg, secret, logger)
	uo.Beat = func() { p.health.Beat("uplink") }
	uo.BeatEvery = beat
	uo.FixTime = timePolicy(cfg.Uplink.Platform, cfg.Uplink.ClockWait.Duration, p.clk, logger)
	uo.OnServerTime = p.clk.ObserveServerTime
	uo.Control = openControl(cfg, p, logger)
	p.up, err = uplink.New(uo, p.buf)
	if err != nil {
		p.close(context.Background())
		return nil, fmt.Errorf("uplink: %w", err)
	}
	p.server = uo.Endpoint
	if uo.Platform == uplink.PlatformMQTT {
		p.server = uo.Broker
	}
	return p, nil
}

// notify passes the pipeline's sd_notify states to systemd, changed for a
// reload: the old pipeline's stop is announced as RELOADING=1, not
// STOPPING=1, which systemd takes for the whole service stopping (it would
// then kill the reloaded daemon TimeoutStopSec later); and after the new
// pipeline's READY=1 the reload's outcome is published (p.ready).
func (p *pipeline) notify(state string) (bool, error) {
	if p.reloading.Load() && strings.HasPrefix(state, "STOPPING=1") {
		state = "RELOADING=1\nSTATUS=reloading the config"
	}
	sent, err := sdNotify(state)
	if strings.HasPrefix(state, "READY=1") && p.ready != nil {
		p.ready()
	}
	return sent, err
}

// close releases what openPipeline opened, on its error paths: sensors
// first (bounded: a wedged chip is abandoned), then the buffer.
func (p *pipeline) close(ctx context.Context) error {
	var errs []error
	if p.set != nil {
		sctx, cancel := context.WithTimeout(ctx, sensorsStopShare)
		errs = append(errs, p.set.Close(sctx))
		cancel()
	}
	if p.buf != nil {
		if err := p.buf.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close buffer: %w", err))
		}
	}
	return errors.Join(errs...)
}

// clockStateDir keeps the clock's sync anchors beside the buffer (the
// service's StateDirectory), so readings from an earlier boot can be dated.
func clockStateDir(cfg *config.Config) string {
	return filepath.Dir(cfg.Path(cfg.Buffer.Path))
}

// openControl builds the downlink's control and applies the intervals the
// platform set before the restart (unless the config file changed them).
func openControl(cfg *config.Config, p *pipeline, logger *slog.Logger) control {
	c := control{set: p.set, configured: map[string]time.Duration{}, sink: p.buf, stamp: p.clk.Stamp, log: logger}
	for _, s := range cfg.Sensors {
		c.configured[s.Name], _ = p.set.Interval(s.Name)
	}
	st, err := loadIntervals(filepath.Join(clockStateDir(cfg), intervalsFile))
	if err != nil {
		logger.Warn("platform-set intervals", "err", err)
	}
	st.apply(p.set, c.configured, logger)
	c.saved = st
	return c
}
