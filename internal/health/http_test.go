package health

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// serve starts the real server on a loopback port and returns its URL.
func serve(t *testing.T, h *Health) string {
	t.Helper()
	return serveWrapped(t, h, func(ln net.Listener) net.Listener { return ln })
}

// serveWrapped is serve with the listener wrapped (faults of its own).
func serveWrapped(t *testing.T, h *Health, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = wrap(ln)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve() = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestHealthz(t *testing.T) {
	clk := &fakeNow{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	h := New(Options{Logger: quiet(), Now: clk.Now})
	h.Register("sensors", 30*time.Second)
	h.Register("uplink", time.Minute)
	url := serve(t, h)

	code, body, hdr := get(t, url+"/healthz")
	if code != 200 || body != "ok\n" {
		t.Errorf("alive: %d %q, want 200 ok", code, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q", ct)
	}

	clk.Advance(45 * time.Second)
	h.Beat("sensors")
	clk.Advance(20 * time.Second) // uplink quiet for 65 s
	code, body, _ = get(t, url+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "uplink: no heartbeat for 1m5s") ||
		strings.Contains(body, "sensors") {
		t.Errorf("stuck: %d %q, want 503 naming only the uplink", code, body)
	}

	h.Beat("uplink")
	if code, _, _ := get(t, url+"/healthz"); code != 200 {
		t.Errorf("recovered: %d, want 200", code)
	}
	if code, _, _ := get(t, url+"/nope"); code != 404 {
		t.Errorf("unknown path: %d, want 404", code)
	}
	// A body within what the server drains after its answer (linger:
	// 256 KiB): the client must get the 405, not a reset. A larger one
	// may be cut off mid-write (EPIPE), by design; 512 KB here failed
	// once in CI when the client was still writing at the close.
	resp, err := http.Post(url+"/healthz", "text/plain", strings.NewReader(strings.Repeat("body ", 20<<10)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
}

// collector writes every metric the daemon exposes, out of order and with
// hostile label values, as cmd/gatewayd would.
func collector(w *MetricWriter) {
	w.Counter("gatewayd_readings_taken_total", "Readings taken and committed, per sensor.", 1200, "sensor", "air")
	w.Gauge("gatewayd_buffer_depth", "Readings waiting in the buffer.", 37)
	w.Counter("gatewayd_readings_failed_total", "Failed reads, per sensor.", 3, "sensor", "air")
	w.Counter("gatewayd_readings_taken_total", "Readings taken and committed, per sensor.", 7, "sensor", `soil "north"\bed`+"\n2")
	w.Counter("gatewayd_readings_failed_total", "Failed reads, per sensor.", 0, "sensor", `soil "north"\bed`+"\n2")
	w.Gauge("gatewayd_buffer_bytes", "Bytes of the buffer file.", 65536)
	w.Gauge("gatewayd_buffer_oldest_age_seconds", "Age of the oldest unsent reading.", 12.5)
	w.Counter("gatewayd_buffer_drops_total", "Readings dropped by the buffer bounds, per reason.", 2, "reason", "max_age")
	w.Counter("gatewayd_buffer_drops_total", "Readings dropped by the buffer bounds, per reason.", 0, "reason", "full")
	w.Counter("gatewayd_messages_sent_total", "Messages published.", 410)
	w.Counter("gatewayd_messages_acked_total", "Messages the platform acknowledged.", 409)
	w.Counter("gatewayd_readings_dead_lettered_total", "Readings set aside as never acceptable.", 1)
	w.Gauge("gatewayd_connected", "1 while connected to the platform.", 1)
	w.Gauge("gatewayd_last_ack_timestamp_seconds", "Unix time of the last acknowledgement.", 1764072000.123)
	w.Gauge("gatewayd_build_info", "Build version\\tag, always 1.\nSecond line.", 1, "version", "v1.2.3")
	w.Gauge("gatewayd_test_special_values", "NaN and infinities.", math.NaN(), "v", "nan")
	w.Gauge("gatewayd_test_special_values", "NaN and infinities.", math.Inf(1), "v", "+inf")
	w.Gauge("gatewayd_test_special_values", "NaN and infinities.", math.Inf(-1), "v", "-inf")
}

func TestMetricsGolden(t *testing.T) {
	clk := &fakeNow{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	h := New(Options{Logger: quiet(), Now: clk.Now, Collect: collector})
	h.Register("uplink", time.Minute)
	h.Register("sensors", 30*time.Second)
	clk.Advance(1500 * time.Millisecond)
	h.Beat("sensors")
	clk.Advance(500 * time.Millisecond)
	url := serve(t, h)

	code, body, hdr := get(t, url+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if body != string(want) {
		t.Errorf("/metrics differs from %s:\n--- got\n%s\n--- want\n%s", golden, body, want)
	}

	fams, err := parseExposition(body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	checks := []struct {
		name, typ string
		labels    string
		value     float64
	}{
		{"gatewayd_readings_taken_total", "counter", `sensor=soil "north"\bed` + "\n2", 7},
		{"gatewayd_readings_taken_total", "counter", "sensor=air", 1200},
		{"gatewayd_buffer_depth", "gauge", "", 37},
		{"gatewayd_last_ack_timestamp_seconds", "gauge", "", 1764072000.123},
		{"gatewayd_build_info", "gauge", "version=v1.2.3", 1},
		{"gatewayd_test_special_values", "gauge", "v=+inf", math.Inf(1)},
		{"gatewayd_pipeline_alive", "gauge", "", 1},
		{"gatewayd_loop_heartbeat_age_seconds", "gauge", "loop=sensors", 0.5},
		{"gatewayd_loop_heartbeat_age_seconds", "gauge", "loop=uplink", 2},
		{"gatewayd_metrics_errors", "gauge", "", 0},
	}
	for _, c := range checks {
		f := fams[c.name]
		if f == nil {
			t.Errorf("%s missing", c.name)
			continue
		}
		if f.typ != c.typ {
			t.Errorf("%s TYPE %s, want %s", c.name, f.typ, c.typ)
		}
		if v, ok := f.samples[c.labels]; !ok || v != c.value {
			t.Errorf("%s{%s} = %v (present %v), want %v", c.name, c.labels, v, ok, c.value)
		}
	}
	if got := fams["gatewayd_build_info"].help; got != "Build version\\tag, always 1.\nSecond line." {
		t.Errorf("HELP round trip = %q", got)
	}
}

type parsedFamily struct {
	typ, help string
	samples   map[string]float64 // "k=v,k=v" -> value
}

// parseExposition is a strict reader of the text format (0.0.4): every
// sample's family has one HELP and one TYPE before its samples, the
// family's samples are contiguous, labels are well quoted and escaped,
// values are floats, no label set repeats.
func parseExposition(s string) (map[string]*parsedFamily, error) {
	fams := map[string]*parsedFamily{}
	var cur string
	if !strings.HasSuffix(s, "\n") {
		return nil, fmt.Errorf("does not end in a newline")
	}
	// Not bufio.Scanner: it would drop a \r that belongs to the text.
	for ln, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		ln++
		if !utf8.ValidString(line) {
			return nil, fmt.Errorf("line %d: invalid UTF-8", ln)
		}
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, help, _ := strings.Cut(rest, " ")
			if fams[name] != nil {
				return nil, fmt.Errorf("line %d: second HELP for %s", ln, name)
			}
			h, err := unescape(help, false)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", ln, err)
			}
			fams[name] = &parsedFamily{help: h, samples: map[string]float64{}}
			cur = name
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			f := fams[name]
			if f == nil || name != cur || f.typ != "" {
				return nil, fmt.Errorf("line %d: TYPE for %s out of place", ln, name)
			}
			if typ != "counter" && typ != "gauge" {
				return nil, fmt.Errorf("line %d: type %q", ln, typ)
			}
			f.typ = typ
			continue
		}
		if strings.HasPrefix(line, "#") || line == "" {
			return nil, fmt.Errorf("line %d: unexpected %q", ln, line)
		}
		i := strings.IndexAny(line, "{ ")
		if i <= 0 {
			return nil, fmt.Errorf("line %d: no metric name in %q", ln, line)
		}
		name, rest := line[:i], line[i:]
		if !validName(name, true) || name != cur || fams[name].typ == "" {
			return nil, fmt.Errorf("line %d: sample %s outside its family", ln, name)
		}
		var labels []string
		if strings.HasPrefix(rest, "{") {
			rest = rest[1:]
			for !strings.HasPrefix(rest, "}") {
				eq := strings.Index(rest, `="`)
				if eq <= 0 || !validName(rest[:eq], false) {
					return nil, fmt.Errorf("line %d: bad label in %q", ln, line)
				}
				lname := rest[:eq]
				rest = rest[eq+2:]
				end := -1
				for j := 0; j < len(rest); j++ {
					if rest[j] == '\\' {
						j++
						continue
					}
					if rest[j] == '"' {
						end = j
						break
					}
				}
				if end < 0 {
					return nil, fmt.Errorf("line %d: unterminated label value", ln)
				}
				v, err := unescape(rest[:end], true)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", ln, err)
				}
				labels = append(labels, lname+"="+v)
				rest = strings.TrimPrefix(rest[end+1:], ",")
			}
			rest = rest[1:]
		}
		val, ok := strings.CutPrefix(rest, " ")
		if !ok {
			return nil, fmt.Errorf("line %d: no value in %q", ln, line)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: value: %w", ln, err)
		}
		key := strings.Join(labels, ",")
		if _, dup := fams[name].samples[key]; dup {
			return nil, fmt.Errorf("line %d: duplicate sample %s{%s}", ln, name, key)
		}
		fams[name].samples[key] = v
	}
	return fams, nil
}

func unescape(s string, quote bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n':
			return "", fmt.Errorf("raw newline")
		case quote && c == '"':
			return "", fmt.Errorf("unescaped quote in %q", s)
		case c != '\\':
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(s) {
			return "", fmt.Errorf("trailing backslash in %q", s)
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case '"':
			if !quote {
				return "", fmt.Errorf(`\" in HELP`)
			}
			b.WriteByte('"')
		default:
			return "", fmt.Errorf("bad escape \\%c in %q", s[i], s)
		}
	}
	return b.String(), nil
}

func TestMetricWriterRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		write   func(w *MetricWriter)
		wantErr string
		wantOut string // exposition of what survived
	}{
		{name: "bad metric name", write: func(w *MetricWriter) { w.Gauge("9lives", "h", 1) },
			wantErr: `metric "9lives": invalid name`},
		{name: "dash in name", write: func(w *MetricWriter) { w.Gauge("a-b", "h", 1) },
			wantErr: `metric "a-b": invalid name`},
		{name: "odd labels", write: func(w *MetricWriter) { w.Gauge("a", "h", 1, "sensor") },
			wantErr: `metric a: odd number of label arguments ["sensor"]`},
		{name: "colon in label name", write: func(w *MetricWriter) { w.Gauge("a", "h", 1, "x:y", "v") },
			wantErr: `metric a: invalid label name "x:y"`},
		{name: "reserved label name", write: func(w *MetricWriter) { w.Gauge("a", "h", 1, "__name__", "v") },
			wantErr: `metric a: invalid label name "__name__"`},
		{name: "type conflict keeps the first", write: func(w *MetricWriter) {
			w.Counter("a_total", "h", 1)
			w.Gauge("a_total", "h", 2)
		}, wantErr: "metric a_total: written as counter and as gauge",
			wantOut: "# HELP a_total h\n# TYPE a_total counter\na_total 1\n"},
		{name: "duplicate label set keeps the first", write: func(w *MetricWriter) {
			w.Gauge("a", "h", 1, "s", "x")
			w.Gauge("a", "h", 2, "s", "x")
			w.Gauge("a", "h", 3, "s", "y")
		}, wantErr: `metric a{s="x"}: written twice`,
			wantOut: "# HELP a h\n# TYPE a gauge\na{s=\"x\"} 1\na{s=\"y\"} 3\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w MetricWriter
			tc.write(&w)
			if err := w.Err(); err == nil || err.Error() != tc.wantErr {
				t.Errorf("Err() = %v, want %q", err, tc.wantErr)
			}
			var b strings.Builder
			if _, err := w.WriteTo(&b); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.wantOut {
				t.Errorf("output %q, want %q", b.String(), tc.wantOut)
			}
		})
	}
}

// A collector that panics costs its samples, not the page or the daemon.
func TestMetricsCollectorPanics(t *testing.T) {
	h := New(Options{Logger: quiet(), Collect: func(w *MetricWriter) {
		w.Gauge("gatewayd_connected", "h", 1)
		w.Gauge("bad name", "h", 1)
		panic("buffer closed")
	}})
	url := serve(t, h)
	code, body, _ := get(t, url+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	fams, err := parseExposition(body)
	if err != nil {
		t.Fatalf("does not parse: %v\n%s", err, body)
	}
	if v := fams["gatewayd_metrics_errors"].samples[""]; v != 2 {
		t.Errorf("gatewayd_metrics_errors = %v, want 2\n%s", v, body)
	}
	if fams["gatewayd_pipeline_alive"] == nil {
		t.Errorf("health's own metrics missing:\n%s", body)
	}
}
