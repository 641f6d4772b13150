package health

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"gatewayd/internal/tick"
)

// DefaultBound is the heartbeat bound of a loop that beats without having
// been registered.
const DefaultBound = 2 * time.Minute

// Options configure a Health. The zero value talks to the systemd of the
// environment (NOTIFY_SOCKET, WATCHDOG_USEC) and writes only its own metrics.
type Options struct {
	// Logger: zero is slog.Default().
	Logger *slog.Logger
	// Now: zero is time.Now.
	Now func() time.Time
	// Notify sends one sd_notify state. Zero: go-systemd's daemon.SdNotify,
	// which writes to $NOTIFY_SOCKET and does nothing when it is unset.
	Notify func(state string) (sent bool, err error)
	// Watchdog is systemd's WatchdogSec. Zero: taken from WATCHDOG_USEC (and
	// WATCHDOG_PID) as systemd sets them; no watchdog there means none is
	// fed. Negative: never feed.
	Watchdog time.Duration
	// DefaultBound applies to loops that Beat without Register. Zero:
	// DefaultBound.
	DefaultBound time.Duration
	// Collect writes the daemon's metrics. Zero: only the health package's
	// own metrics are served.
	Collect Collector
	// CollectEvery is how long one run of Collect serves /metrics: scrapes
	// within it share one run (and one look at the buffer), however many
	// come. Zero: DefaultCollectEvery. Negative: every scrape collects.
	CollectEvery time.Duration
	// MaxConns bounds the health server's open connections; one more is
	// closed at once. Zero: DefaultMaxConns.
	MaxConns int
	// Status returns the daemon's state for GET /status (JSON), what
	// `gatewayd status` prints. Nil: /status is 404.
	Status func() any
}

// WatchdogState is the systemd watchdog as Health feeds it.
type WatchdogState struct {
	Interval time.Duration `json:"interval_ns"` // systemd's WatchdogSec; 0: no watchdog
	Feeds    uint64        `json:"feeds"`       // WATCHDOG=1 sent
	LastFeed time.Time     `json:"last_feed"`
	Alive    bool          `json:"alive"`             // every loop beats within its bound
	Problem  string        `json:"problem,omitempty"` // the wedged loop, when not alive
}

// DefaultCollectEvery is how long a collected /metrics page is served.
const DefaultCollectEvery = time.Second

// DefaultMaxConns is how many connections the health server holds at once:
// enough for a scraper, a technician and a systemd probe, too few for a
// flood to cost the pipeline memory or CPU.
const DefaultMaxConns = 8

type heart struct {
	bound time.Duration
	last  time.Time
	beats uint64
}

// Health tracks heartbeats, feeds the systemd watchdog and serves /healthz
// and /metrics. It is safe for concurrent use.
type Health struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	hearts    map[string]*heart
	feeds     uint64
	lastFeed  time.Time
	watchdog  time.Duration // the interval Run found (0: none)
	stuck     bool          // the last feed was withheld, to log each change once
	notifyErr bool          // the last sd_notify failed, to log each run of failures once
	lastErrs  string        // collector errors last logged, to log each change once

	cmu      sync.Mutex    // serialises collector runs
	cached   *MetricWriter // the last collector run, never written to again
	cachedAt time.Time     // when it ran
	collects uint64        // collector runs, for gatewayd_metrics_collections_total
	refused  atomic.Uint64 // connections closed at once for MaxConns
}

// New returns a Health with no registered loops.
func New(opts Options) *Health {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Notify == nil {
		opts.Notify = func(state string) (bool, error) { return daemon.SdNotify(false, state) }
	}
	if opts.DefaultBound <= 0 {
		opts.DefaultBound = DefaultBound
	}
	if opts.CollectEvery == 0 {
		opts.CollectEvery = DefaultCollectEvery
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	return &Health{opts: opts, log: opts.Logger.With("component", "health"), hearts: map[string]*heart{}}
}

// Register declares a loop that must Beat at least once per bound. Its
// first bound starts now, so a loop that never starts is caught too.
// Registering again changes the bound and counts as a beat.
func (h *Health) Register(name string, bound time.Duration) {
	if bound <= 0 {
		bound = h.opts.DefaultBound
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hearts[name] = &heart{bound: bound, last: h.opts.Now()}
}

// Beat records that the named loop made progress. An unregistered name is
// registered with Options.DefaultBound.
func (h *Health) Beat(name string) {
	now := h.opts.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	ht, ok := h.hearts[name]
	if !ok {
		ht = &heart{bound: h.opts.DefaultBound}
		h.hearts[name] = ht
	}
	ht.last = now
	ht.beats++
}

// Check returns nil while every registered loop beat within its bound, and
// otherwise an error naming each stuck loop and how long it has been quiet.
func (h *Health) Check() error {
	now := h.opts.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	var stuck []string
	for _, name := range h.namesLocked() {
		ht := h.hearts[name]
		if age := now.Sub(ht.last); age > ht.bound {
			stuck = append(stuck, fmt.Sprintf("%s: no heartbeat for %s (bound %s)",
				name, age.Round(time.Millisecond), ht.bound))
		}
	}
	if len(stuck) > 0 {
		return fmt.Errorf("pipeline stuck: %s", strings.Join(stuck, "; "))
	}
	return nil
}

func (h *Health) namesLocked() []string {
	names := make([]string, 0, len(h.hearts))
	for n := range h.hearts {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Run tells systemd the daemon is ready, feeds its watchdog while the
// pipeline is alive, and says STOPPING=1 when ctx ends (the start of the
// drain). Call it once, after everything is opened. It returns nil when ctx
// ends; failing to reach systemd is logged, never fatal.
func (h *Health) Run(ctx context.Context) error {
	h.notify("READY=1\nSTATUS=running")
	wd := h.opts.Watchdog
	if wd == 0 {
		d, err := daemon.SdWatchdogEnabled(false)
		if err != nil {
			h.log.Warn("ignoring malformed watchdog environment", "err", err)
		}
		wd = d
	}
	var ticker *tick.Timer
	var tickC <-chan time.Time
	h.mu.Lock()
	h.watchdog = max(wd, 0)
	h.mu.Unlock()
	if wd > 0 {
		// Half the interval, as systemd recommends, so one late tick is
		// not a restart.
		// On the ticks of the clock (see package tick): with the unit's
		// 90 s that is every 45 s, a multiple of the sampling rounds'
		// usual intervals, so feeding the watchdog costs no wake-up of
		// its own.
		t := tick.New(wd / 2)
		defer t.Stop()
		ticker, tickC = t, t.C
		h.log.Info("feeding the systemd watchdog while the pipeline is alive", "watchdog", wd)
		h.feed()
	}
	for {
		select {
		case <-ctx.Done():
			h.notify("STOPPING=1\nSTATUS=stopping")
			return nil
		case <-tickC:
			ticker.Next()
			h.feed()
		}
	}
}

// feed sends WATCHDOG=1 only while alive: when a loop is wedged systemd's
// watchdog fires and restarts the daemon, which is the point.
func (h *Health) feed() {
	err := h.Check()
	h.mu.Lock()
	wasStuck := h.stuck
	h.stuck = err != nil
	h.mu.Unlock()
	if err != nil {
		if !wasStuck {
			h.log.Error("not feeding the watchdog", "err", err)
		}
		h.notify("STATUS=" + err.Error())
		return
	}
	if wasStuck {
		h.log.Info("pipeline alive again; feeding the watchdog")
		h.notify("STATUS=running")
	}
	h.mu.Lock()
	h.feeds++
	h.lastFeed = h.opts.Now()
	h.mu.Unlock()
	h.notify("WATCHDOG=1")
}

// notify logs the first failure of a run of failures, not every tick.
func (h *Health) notify(state string) {
	_, err := h.opts.Notify(state)
	h.mu.Lock()
	first := err != nil && !h.notifyErr
	h.notifyErr = err != nil
	h.mu.Unlock()
	if first {
		h.log.Warn("sd_notify failed", "state", strings.SplitN(state, "\n", 2)[0], "err", err)
	}
}

// Watchdog reports the watchdog's state and whether the pipeline is alive.
func (h *Health) Watchdog() WatchdogState {
	err := h.Check()
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := WatchdogState{Interval: h.watchdog, Feeds: h.feeds, LastFeed: h.lastFeed, Alive: err == nil}
	if err != nil {
		ws.Problem = err.Error()
	}
	return ws
}
