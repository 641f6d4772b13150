package health

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
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

// A response: status code, content type and body. Every answer closes
// the connection (one request per connection: a scrape every few seconds
// gains nothing from keep-alive, and the server stays small).
type response struct {
	code  int
	ctype string
	body  []byte
	allow bool // 405: say which methods are allowed
}

const textPlain = "text/plain; charset=utf-8"

// route answers one request for path.
func (h *Health) route(method, path string) response {
	var serve func() response
	switch path {
	case "/healthz":
		serve = h.serveHealthz
	case "/metrics":
		serve = h.serveMetrics
	case "/status":
		if h.opts.Status != nil {
			serve = h.serveStatus
		}
	}
	switch {
	case serve == nil:
		return response{code: 404, ctype: textPlain, body: []byte("404 page not found\n")}
	case method != "GET" && method != "HEAD":
		return response{code: 405, ctype: textPlain, body: []byte("Method Not Allowed\n"), allow: true}
	}
	return serve()
}

// serveStatus answers `gatewayd status`: the daemon's state as JSON.
func (h *Health) serveStatus() response {
	b, err := json.MarshalIndent(h.opts.Status(), "", "  ")
	if err != nil {
		return response{code: 500, ctype: textPlain, body: []byte(err.Error() + "\n")}
	}
	return response{code: 200, ctype: "application/json", body: append(b, '\n')}
}

func (h *Health) serveHealthz() response {
	if err := h.Check(); err != nil {
		return response{code: 503, ctype: textPlain, body: []byte(err.Error() + "\n")}
	}
	return response{code: 200, ctype: textPlain, body: []byte("ok\n")}
}

func (h *Health) serveMetrics() response {
	var b bytes.Buffer
	_, _ = h.Metrics().WriteTo(&b)
	return response{code: 200, ctype: "text/plain; version=0.0.4; charset=utf-8", body: b.Bytes()}
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

// Serve serves /healthz, /metrics and /status on ln until ctx ends, then
// gives requests in flight a couple of seconds. It closes ln.
//
// A small HTTP/1.x server of its own, not net/http's: three GET pages need
// none of its machinery, and its server side was 0.58 MB of a binary whose
// pages are most of the daemon's memory. Bounds: the request head is read
// within readHeaderTimeout and at most MaxHeaderBytes (431 beyond), the
// answer written within writeTimeout, MaxConns connections at a time.
func (h *Health) Serve(ctx context.Context, ln net.Listener) error {
	ll := &limitListener{Listener: ln, sem: make(chan struct{}, h.opts.MaxConns), refused: &h.refused}
	h.log.Info("health server listening", "addr", ln.Addr().String())
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	errc := make(chan error, 1)
	go func() {
		var pause time.Duration
		for {
			c, err := ll.Accept()
			if err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				// Out of file descriptors or the like: wait and go on
				// accepting, as net/http does (5 ms doubling to 1 s),
				// rather than lose the health endpoint for good.
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				h.log.Warn("health server accept failed; retrying", "err", err, "in", pause)
				select {
				case <-time.After(pause):
					continue
				case <-ctx.Done():
				}
			}
			if err != nil {
				errc <- err
				return
			}
			pause = 0
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				h.serveConn(c)
				_ = c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	}()
	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("health serve: %w", err)
	case <-ctx.Done():
	}
	_ = ln.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		<-done
	}
	if serveErr == nil {
		<-errc // the accept loop ended with the listener
	}
	return serveErr
}

const (
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = 10 * time.Second
)

// serveConn reads one request head and answers it.
func (h *Health) serveConn(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(readHeaderTimeout))
	br := bufio.NewReaderSize(c, 4096)
	var method, target string
	n := 0
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		n += len(line)
		if n > MaxHeaderBytes || errors.Is(err, bufio.ErrBufferFull) {
			h.answer(c, "", response{code: 431, ctype: textPlain, body: []byte("431 Request Header Fields Too Large\n")})
			linger(c)
			return
		}
		if err != nil {
			return // closed, timed out or cut short: nothing to answer
		}
		l := strings.TrimRight(string(line), "\r\n")
		if first {
			var proto string
			var ok1, ok2 bool
			method, l, ok1 = strings.Cut(l, " ")
			target, proto, ok2 = strings.Cut(l, " ")
			if !ok1 || !ok2 || !strings.HasPrefix(proto, "HTTP/1.") || !strings.HasPrefix(target, "/") {
				h.answer(c, "", response{code: 400, ctype: textPlain, body: []byte("400 Bad Request\n")})
				linger(c)
				return
			}
			continue
		}
		if l == "" {
			break
		}
	}
	path, _, _ := strings.Cut(target, "?")
	h.answer(c, method, h.route(method, path))
	if method != "GET" && method != "HEAD" {
		linger(c) // a body may follow, unread: no reset before the 405 is read
	}
}

// answer writes r and leaves the connection to be closed.
func (h *Health) answer(c net.Conn, method string, r response) {
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n",
		r.code, statusText[r.code], r.ctype, len(r.body))
	if r.allow {
		b.WriteString("Allow: GET, HEAD\r\n")
	}
	b.WriteString("\r\n")
	if method != "HEAD" {
		b.Write(r.body)
	}
	if _, err := c.Write(b.Bytes()); err != nil {
		h.log.Debug("writing a health answer", "err", err) // the scraper went away
	}
}

// linger ends a connection whose request was not read to its end: closing
// with unread data would reset it, and the client would see the reset
// instead of the answer. The write side is closed and what the client
// still sends is read and dropped, for at most half a second and 256 KiB.
func linger(c net.Conn) {
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.CopyN(io.Discard, c, 256<<10)
}

var statusText = map[int]string{
	200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
	431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
}

// MaxHeaderBytes bounds a request's head (request line and headers):
// /healthz and /metrics need a few hundred bytes.
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

// CloseWrite half-closes the connection (see linger).
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
