package health

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A request whose headers exceed MaxHeaderBytes is refused with 431, not
// read into memory (net/http's default would take 1 MiB per connection).
func TestHealthMaxHeaderBytes(t *testing.T) {
	h := New(Options{Logger: quiet()})
	url := serve(t, h)
	req, _ := http.NewRequest("GET", url+"/healthz", nil)
	req.Header.Set("X-Junk", strings.Repeat("a", 64<<10))
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB of headers: status %d, want 431", resp.StatusCode)
	}
	if code, _, _ := get(t, url+"/healthz"); code != 200 {
		t.Errorf("a normal request after it: %d", code)
	}
}

// The server's own HTTP/1.x: what real clients send is answered, what is
// not HTTP is refused with 400, HEAD has no body, headers as long as real
// clients send (a 3 KiB line) are read.
func TestHealthHTTPRequests(t *testing.T) {
	h := New(Options{Logger: quiet()})
	url := serve(t, h)
	addr := strings.TrimPrefix(url, "http://")
	raw := func(req string) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		return string(b)
	}
	for _, tc := range []struct{ req, status, body string }{
		{"GET /healthz HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK\r\n", "\r\n\r\nok\n"},
		{"GET /healthz?x=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: " + strings.Repeat("u", 3<<10) + "\r\n\r\n", "HTTP/1.1 200 OK\r\n", "\r\n\r\nok\n"},
		{"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK\r\n", "Content-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"},
		{"BOGUS\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n", ""},
		{"GET http://x/healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n", ""},
		{"DELETE /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed\r\n", "Allow: GET, HEAD\r\n"},
	} {
		got := raw(tc.req)
		if !strings.HasPrefix(got, tc.status) || !strings.Contains(got, tc.body) {
			t.Errorf("%.40q: got %q, want %q ... %q", tc.req, got, tc.status, tc.body)
		}
		if strings.HasPrefix(tc.req, "HEAD") && !strings.HasSuffix(got, "\r\n\r\n") {
			t.Errorf("HEAD answered with a body: %q", got)
		}
	}
}

// MaxConns idle connections (a slow-loris) hold every slot: one more is
// closed at once and counted, and a slot freed serves the next scrape.
func TestHealthConnectionLimit(t *testing.T) {
	h := New(Options{Logger: quiet(), MaxConns: 3})
	url := serve(t, h)
	addr := strings.TrimPrefix(url, "http://")
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET /healthz HTTP/1.1\r\n")) // never finished
		idle = append(idle, c)
	}
	// The server accepts the 4th connection and closes it at once.
	deadline := time.Now().Add(5 * time.Second)
	refused := false
	for try := 0; try < 50 && time.Now().Before(deadline) && !refused; try++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		_, err = bufio.NewReader(c).ReadString('\n')
		c.Close()
		refused = err == io.EOF || (err != nil && !isTimeout(err))
		if !refused {
			time.Sleep(50 * time.Millisecond) // the idle ones may not be accepted yet
		}
	}
	if !refused {
		t.Fatal("a connection beyond MaxConns was served or left hanging, not closed")
	}
	if n := h.refused.Load(); n == 0 {
		t.Error("refused connection not counted")
	}
	// Free one slot: scrapes work again.
	idle[0].Close()
	idle = idle[1:]
	ok := false
	for try := 0; try < 50 && !ok; try++ {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ok = resp.StatusCode == 200 && strings.Contains(string(b), "gatewayd_health_refused_connections_total")
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !ok {
		t.Error("no scrape served after a slot was freed")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// Scrapes within CollectEvery share one collector run, however many come at
// once; the next period collects again.
func TestMetricsCollectedOncePerPeriod(t *testing.T) {
	clk := &fakeNow{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	var runs atomic.Int64
	h := New(Options{Logger: quiet(), Now: clk.Now, MaxConns: 64, Collect: func(w *MetricWriter) {
		n := runs.Add(1)
		time.Sleep(20 * time.Millisecond) // a collector that takes the buffer's lock
		w.Gauge("gatewayd_buffer_depth", "Readings waiting.", float64(n))
	}})
	url := serve(t, h)
	var wg sync.WaitGroup
	bodies := make([]string, 40)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, bodies[i], _ = get(t, url+"/metrics")
		}()
	}
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Errorf("40 concurrent scrapes ran the collector %d times, want 1", n)
	}
	for _, b := range bodies {
		if !strings.Contains(b, "gatewayd_buffer_depth 1\n") {
			t.Fatalf("a scrape did not get the shared run:\n%s", b)
		}
	}
	clk.Advance(DefaultCollectEvery)
	if _, b, _ := get(t, url+"/metrics"); !strings.Contains(b, "gatewayd_buffer_depth 2\n") || runs.Load() != 2 {
		t.Errorf("after CollectEvery the collector did not run again (runs %d):\n%s", runs.Load(), b)
	}
	// A shared run is never written to: the health metrics appended to one
	// page do not pile up in the next.
	if _, b, _ := get(t, url+"/metrics"); strings.Count(b, "\ngatewayd_pipeline_alive ") != 1 {
		t.Errorf("cached page grew:\n%s", b)
	}
}

// flakyListener fails its first n Accepts, as a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	n atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		return nil, fmt.Errorf("accept tcp: %w", syscall.EMFILE)
	}
	return l.Listener.Accept()
}

// A failing Accept (EMFILE) is retried with a growing pause, as net/http's
// server does, instead of ending the health endpoint for good.
func TestHealthAcceptRetries(t *testing.T) {
	h := New(Options{Logger: quiet()})
	url := serveWrapped(t, h, func(ln net.Listener) net.Listener {
		fl := &flakyListener{Listener: ln}
		fl.n.Store(3)
		return fl
	})
	if code, body, _ := get(t, url+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("after 3 failed accepts: %d %q", code, body)
	}
}
