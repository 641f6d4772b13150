package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultListen is where the health server listens unless configured:
// loopback only, because /metrics is for the operator on the board or an
// SSH tunnel, not for the greenhouse Wi-Fi.
const DefaultListen = "127.0.0.1:9102"

// shutdownGrace bounds how long Serve waits for in-flight requests.
const shutdownGrace = 2 * time.Second

// Handler serves /healthz and /metrics.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", h.serveHealthz)
	mux.HandleFunc("GET /metrics", h.serveMetrics)
	mux.HandleFunc("GET /status", h.serveStatus)
	return mux
}

// serveStatus answers `gatewayd status`: the daemon's state as JSON.
func (h *Health) serveStatus(w http.ResponseWriter, r *http.Request) {
	if h.opts.Status == nil {
		http.NotFound(w, r)
		return
	}
	b, err := json.MarshalIndent(h.opts.Status(), "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(b, '\n'))
}

func (h *Health) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := h.Check(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, err)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (h *Health) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	mw := h.Metrics()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if _, err := mw.WriteTo(w); err != nil {
		h.log.Debug("writing /metrics", "err", err) // the scraper went away
	}
}

// Metrics runs the collector and appends the health package's own
// metrics. A collector that panics or writes bad samples costs its own
// samples (counted in gatewayd_metrics_errors), never the page.
func (h *Health) Metrics() *MetricWriter {
	mw := h.collected()
	errs := len(mw.errs)
	if err := mw.Err(); err != nil {
		h.mu.Lock()
		changed := h.lastErrs != err.Error()
		h.lastErrs = err.Error()
		h.mu.Unlock()
		if changed {
			h.log.Warn("metrics collector wrote bad samples", "err", err)
		}
	}
	mw.Gauge("gatewayd_metrics_errors", "Samples the collector failed to write in this scrape.", float64(errs))

	alive := 1.0
	if h.Check() != nil {
		alive = 0
	}
	mw.Gauge("gatewayd_pipeline_alive", "1 while every loop heartbeats within its bound (the watchdog is fed), else 0.", alive)
	now := h.opts.Now()
	h.mu.Lock()
	for _, name := range h.namesLocked() {
		ht := h.hearts[name]
		mw.Gauge("gatewayd_loop_heartbeat_age_seconds", "Seconds since the loop last beat.",
			now.Sub(ht.last).Seconds(), "loop", name)
		mw.Gauge("gatewayd_loop_heartbeat_bound_seconds", "Longest allowed silence of the loop.",
			ht.bound.Seconds(), "loop", name)
	}
	feeds, collects := h.feeds, h.collects
	h.mu.Unlock()
	mw.Counter("gatewayd_watchdog_feeds_total", "WATCHDOG=1 notifications sent to systemd.", float64(feeds))
	mw.Counter("gatewayd_metrics_collections_total", "Runs of the metrics collector (scrapes within CollectEvery share one).", float64(collects))
	mw.Counter("gatewayd_health_refused_connections_total", "Health server connections closed at once because MaxConns were open.", float64(h.refused.Load()))
	return mw
}

// collected returns a private copy of the collector's samples, running the
// collector only when the last run is older than CollectEvery. Scrapes that
// arrive together wait for one run instead of each taking the pipeline's
// locks: a flood of /metrics requests costs the pipeline one run a second.
func (h *Health) collected() *MetricWriter {
	if h.opts.Collect == nil {
		return &MetricWriter{}
	}
	h.cmu.Lock()
	defer h.cmu.Unlock()
	now := h.opts.Now()
	if h.cached == nil || h.opts.CollectEvery < 0 || now.Sub(h.cachedAt) >= h.opts.CollectEvery || now.Before(h.cachedAt) {
		mw := &MetricWriter{}
		h.collect(mw)
		h.cached, h.cachedAt = mw, now
		h.mu.Lock()
		h.collects++
		h.mu.Unlock()
	}
	return h.cached.clone()
}
func (h *Health) collect(mw *MetricWriter) {
	defer func() {
		if r := recover(); r != nil {
			mw.errs = append(mw.errs, fmt.Errorf("collector panicked: %v", r))
		}
	}()
	h.opts.Collect(mw)
}

// ListenAndServe listens on addr (DefaultListen when empty) and serves
// until ctx ends.
func (h *Health) ListenAndServe(ctx context.Context, addr string) error {
	if addr == "" {
		addr = DefaultListen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health listen: %w", err)
	}
	return h.Serve(ctx, ln)
}

// Serve serves Handler on ln until ctx ends, then shuts down within a
// couple of seconds. It closes ln.
func (h *Health) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           h.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
	ln = &limitListener{Listener: ln, sem: make(chan struct{}, h.opts.MaxConns), refused: &h.refused}
	h.log.Info("health server listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("health serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		<-errc
		return fmt.Errorf("health shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("health serve: %w", err)
	}
	return nil
}

// MaxHeaderBytes bounds a request's header block: /healthz and /metrics
// need a few hundred bytes, and net/http's default is 1 MiB per connection.
const MaxHeaderBytes = 8 << 10

// limitListener holds at most cap(sem) connections open; one more is closed
// as soon as it is accepted (not queued: a queued flood would hold the
// kernel's backlog and the scraper's connection behind it).
type limitListener struct {
	net.Listener
	sem     chan struct{}
	refused *atomic.Uint64
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
			l.refused.Add(1)
			_ = c.Close()
		}
	}
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
