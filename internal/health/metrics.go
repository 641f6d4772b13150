package health

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Collector writes the daemon's metrics. It is called on every /metrics
// request and must be quick and must not block on the pipeline: read
// counters and cached values, do not query the buffer's disk every scrape.
type Collector func(w *MetricWriter)

// MetricWriter gathers samples and writes them in the Prometheus text
// exposition format (version 0.0.4). Samples of one name are grouped under
// one HELP and TYPE line in the order first written, so a collector may
// write them in any order. Invalid samples are dropped and reported by
// Err; they never break the rest of the page.
type MetricWriter struct {
	fams  []*family
	index map[string]*family
	errs  []error
}

type family struct {
	name, help, typ string
	samples         []sample
	seen            map[string]bool // rendered label sets, to refuse duplicates
}

type sample struct {
	labels string // rendered `{a="b",c="d"}` or ""
	value  float64
}

// Gauge writes a value that can go up and down. labels are name, value
// pairs: Gauge("gatewayd_buffer_depth", "...", 12) or
// Gauge("gatewayd_build_info", "...", 1, "version", "1.2.3").
func (w *MetricWriter) Gauge(name, help string, value float64, labels ...string) {
	w.add("gauge", name, help, value, labels)
}

// Counter writes a value that only goes up (resets at restart). By
// convention its name ends in _total.
func (w *MetricWriter) Counter(name, help string, value float64, labels ...string) {
	w.add("counter", name, help, value, labels)
}

// Err returns the problems of the samples written so far, or nil.
func (w *MetricWriter) Err() error { return errors.Join(w.errs...) }

func (w *MetricWriter) add(typ, name, help string, value float64, labels []string) {
	if !validName(name, true) {
		w.errs = append(w.errs, fmt.Errorf("metric %q: invalid name", name))
		return
	}
	if len(labels)%2 != 0 {
		w.errs = append(w.errs, fmt.Errorf("metric %s: odd number of label arguments %q", name, labels))
		return
	}
	var b strings.Builder
	for i := 0; i < len(labels); i += 2 {
		ln := labels[i]
		if !validName(ln, false) || strings.HasPrefix(ln, "__") {
			w.errs = append(w.errs, fmt.Errorf("metric %s: invalid label name %q", name, ln))
			return
		}
		if i == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(ln)
		b.WriteString(`="`)
		// Scrapers reject invalid UTF-8; a garbled name still shows.
		b.WriteString(labelEscaper.Replace(strings.ToValidUTF8(labels[i+1], "\uFFFD")))
		b.WriteByte('"')
	}
	if b.Len() > 0 {
		b.WriteByte('}')
	}
	if w.index == nil {
		w.index = map[string]*family{}
	}
	f, ok := w.index[name]
	if !ok {
		f = &family{name: name, help: help, typ: typ, seen: map[string]bool{}}
		w.index[name] = f
		w.fams = append(w.fams, f)
	}
	if f.typ != typ {
		w.errs = append(w.errs, fmt.Errorf("metric %s: written as %s and as %s", name, f.typ, typ))
		return
	}
	ls := b.String()
	if f.seen[ls] {
		w.errs = append(w.errs, fmt.Errorf("metric %s%s: written twice", name, ls))
		return
	}
	f.seen[ls] = true
	f.samples = append(f.samples, sample{labels: ls, value: value})
}

// validName reports whether s is a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)
// or, without colons, a label name.
func validName(s string, colon bool) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		ok := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(colon && c == ':') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return false
		}
	}
	return true
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	// Plain decimals read better (timestamps, byte counts) and parse the
	// same; exponents only where decimals would be absurdly long.
	if a := math.Abs(v); a == 0 || (a >= 1e-6 && a < 1e21) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// WriteTo writes the exposition.
func (w *MetricWriter) WriteTo(out io.Writer) (int64, error) {
	cw := &countWriter{w: bufio.NewWriter(out)}
	for _, f := range w.fams {
		if len(f.samples) == 0 {
			continue
		}
		fmt.Fprintf(cw, "# HELP %s %s\n# TYPE %s %s\n", f.name, helpEscaper.Replace(strings.ToValidUTF8(f.help, "\uFFFD")), f.name, f.typ)
		for _, s := range f.samples {
			fmt.Fprintf(cw, "%s%s %s\n", f.name, s.labels, formatValue(s.value))
		}
	}
	if err := cw.w.Flush(); err != nil && cw.err == nil {
		cw.err = err
	}
	return cw.n, cw.err
}

type countWriter struct {
	w   *bufio.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// clone returns a copy that can be written to without touching w.
func (w *MetricWriter) clone() *MetricWriter {
	c := &MetricWriter{errs: slices.Clone(w.errs)}
	if len(w.fams) > 0 {
		c.index = make(map[string]*family, len(w.fams))
	}
	for _, f := range w.fams {
		nf := &family{name: f.name, help: f.help, typ: f.typ, samples: slices.Clone(f.samples), seen: maps.Clone(f.seen)}
		c.fams = append(c.fams, nf)
		c.index[nf.name] = nf
	}
	return c
}
