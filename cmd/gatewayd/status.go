package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"gatewayd/internal/health"
	"gatewayd/internal/reading"
)

// `gatewayd status`: one look at "is it working?" for the technician on
// site, from the running daemon's health endpoint (GET /status).

// statusDoc is what /status serves and `status --json` prints.
type statusDoc struct {
	Version  string               `json:"version"`
	Config   string               `json:"config"`
	Started  time.Time            `json:"started"`
	Now      time.Time            `json:"now"`
	Sensors  []sensorStatus       `json:"sensors"`
	Uplink   uplinkStatus         `json:"uplink"`
	Buffer   bufferStatus         `json:"buffer"`
	Clock    clockStatus          `json:"clock"`
	Watchdog health.WatchdogState `json:"watchdog"`
	// Problems are what makes the daemon unhealthy (status exits 1);
	// Warnings deserve a look but are not failures.
	Problems []string `json:"problems"`
	Warnings []string `json:"warnings"`
}

type sensorStatus struct {
	Name     string        `json:"name"`
	Driver   string        `json:"driver"`
	Interval time.Duration `json:"interval_ns"`
	Last     []lastValue   `json:"last"`    // the last sample's values
	LastOK   time.Time     `json:"last_ok"` // when it was taken
	Taken    uint64        `json:"taken"`
	Failed   uint64        `json:"failed"`
	Rejected uint64        `json:"rejected"`
	Stuck    bool          `json:"stuck"`
	LastErr  string        `json:"last_error,omitempty"`
}

type lastValue struct {
	Measurement string  `json:"measurement"`
	Value       float64 `json:"value"`
	Unit        string  `json:"unit"`
	Resolution  float64 `json:"resolution,omitempty"` // the chip's step; the value is printed at it
}

type uplinkStatus struct {
	Platform        string    `json:"platform"`
	Server          string    `json:"server"`
	Connected       bool      `json:"connected"`
	Since           time.Time `json:"since"` // connected since, or disconnected since
	LastAck         time.Time `json:"last_ack"`
	ConnectFailures uint64    `json:"connect_failures"`
	LastErr         string    `json:"last_error,omitempty"`
}

type bufferStatus struct {
	Path         string    `json:"path"`
	Depth        int       `json:"depth"`  // samples waiting
	Values       int       `json:"values"` // their values
	Pending      int       `json:"pending"`
	OldestUnsent time.Time `json:"oldest_unsent"`
	DeadLetters  int       `json:"dead_letters"`
	Bytes        int64     `json:"bytes"`
}

type clockStatus struct {
	Synced bool `json:"synced"`
}

// Thresholds of what status calls unhealthy.
const (
	// A sensor is failing when its last good sample is older than this many
	// intervals (and at least statusMinSilence).
	statusMissedIntervals = 3
	statusMinSilence      = 30 * time.Second
	// The uplink is failing when not connected for this long: a reconnect
	// after a lost link takes at most the backoff cap (20 s).
	statusDisconnected = time.Minute
	// A sensor that never read, or an uplink that never connected, is
	// failing after this many failed attempts: no need to wait a minute to
	// tell a technician the chip is not answering or the login is refused.
	statusFailedAttempts = 3
)

// lastValues is the sensors' Sink in the daemon: it remembers each
// sensor's last sample for /status and hands everything on unchanged.
type lastValues struct {
	next reading.Sink
	mu   sync.Mutex
	m    map[string][]lastValue
}

func newLastValues(next reading.Sink) *lastValues {
	return &lastValues{next: next, m: map[string][]lastValue{}}
}

func (l *lastValues) Append(ctx context.Context, ss []reading.Sample) error {
	l.mu.Lock()
	for _, s := range ss {
		// A sensor's latest sample holds all it measures.
		last := l.m[s.Sensor][:0]
		for _, v := range s.Values {
			last = append(last, lastValue{v.Measurement, v.Value, v.Unit, v.Resolution})
		}
		l.m[s.Sensor] = last
	}
	l.mu.Unlock()
	return l.next.Append(ctx, ss)
}

func (l *lastValues) of(sensor string) []lastValue {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]lastValue(nil), l.m[sensor]...)
}

// status builds the document /status serves, with its verdict.
func (p *pipeline) status() any {
	now := time.Now()
	d := statusDoc{Version: version, Config: p.cfgFile, Started: p.started, Now: now}
	for _, s := range p.set.Stats() {
		iv, _ := p.set.Interval(s.Name)
		ss := sensorStatus{Name: s.Name, Driver: s.Driver, Interval: iv, LastOK: s.LastOK, Taken: s.Taken,
			Failed: s.Failed, Rejected: s.Rejected, Stuck: s.Stuck, LastErr: s.LastErr}
		if p.last != nil {
			ss.Last = p.last.of(s.Name)
		}
		d.Sensors = append(d.Sensors, ss)
	}
	if p.up != nil {
		st := p.up.Stats()
		d.Uplink = uplinkStatus{Platform: p.platform, Server: p.server, Connected: st.Connected,
			LastAck: st.LastAck, ConnectFailures: st.ConnectFailures, LastErr: st.LastErr}
		switch {
		case st.Connected:
			d.Uplink.Since = st.LastConnect
		case !st.LastDisconnect.IsZero():
			d.Uplink.Since = st.LastDisconnect
		default:
			d.Uplink.Since = p.started // never connected
		}
	}
	if p.buf != nil {
		st := p.buf.Stats()
		d.Buffer = bufferStatus{Path: p.bufPath, Depth: st.Depth, Values: st.Values, Pending: st.Pending, OldestUnsent: st.OldestUnsent,
			DeadLetters: st.DeadLetters, Bytes: st.Bytes}
	}
	d.Clock.Synced = p.clk.Synced()
	d.Watchdog = p.health.Watchdog()
	d.Problems, d.Warnings = judge(d)
	return d
}

// judge says what is wrong, in the words the technician needs.
func judge(d statusDoc) (problems, warnings []string) {
	problems, warnings = []string{}, []string{}
	for _, s := range d.Sensors {
		bound := max(statusMissedIntervals*s.Interval, statusMinSilence)
		since := d.Started
		if !s.LastOK.IsZero() {
			since = s.LastOK
		}
		switch {
		case s.LastOK.IsZero() && s.Failed >= statusFailedAttempts:
			problems = append(problems, fmt.Sprintf("sensor %s: no good reading yet, %d failed attempts: %s", s.Name, s.Failed, s.LastErr))
		case s.Stuck:
			problems = append(problems, fmt.Sprintf("sensor %s: values stuck (unchanged too long; withheld)", s.Name))
		case d.Now.Sub(since) > bound:
			what := "no good reading yet"
			if !s.LastOK.IsZero() {
				what = "no good reading for " + ago(d.Now, s.LastOK)
			}
			if s.LastErr != "" {
				what += ": " + s.LastErr
			}
			problems = append(problems, fmt.Sprintf("sensor %s: %s", s.Name, what))
		}
	}
	neverUp := d.Uplink.LastAck.IsZero() && d.Uplink.Since.Equal(d.Started)
	if !d.Uplink.Connected && (d.Now.Sub(d.Uplink.Since) > statusDisconnected ||
		neverUp && d.Uplink.ConnectFailures >= statusFailedAttempts) {
		what := "not connected since " + ago(d.Now, d.Uplink.Since)
		if d.Uplink.LastErr != "" {
			what += ": " + d.Uplink.LastErr
		}
		problems = append(problems, "uplink: "+what)
	}
	if !d.Watchdog.Alive {
		problems = append(problems, "watchdog: "+d.Watchdog.Problem)
	}
	if d.Buffer.DeadLetters > 0 {
		warnings = append(warnings, fmt.Sprintf("buffer: %d dead letters (the platform refused them; `gatewayd buffer export --dead`)", d.Buffer.DeadLetters))
	}
	if !d.Clock.Synced {
		warnings = append(warnings, "clock: not synchronised yet (readings wait and are re-dated once it is)")
	}
	return problems, warnings
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return dur(now.Sub(t)) + " ago"
}

// dur is a duration as a person reads it: 45s, 3m, 2h5m, 3d4h.
func dur(d time.Duration) string {
	switch {
	case d < time.Second:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

func cmdStatus(ctx context.Context, a *app, args []string) error {
	fs := newFlags(a, "status")
	path := fs.String("config", "", "config file (for the health endpoint's address)")
	addr := fs.String("addr", "", "health endpoint host:port (default: [health] listen of the config)")
	asJSON := fs.Bool("json", false, "print the daemon's status as JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" {
		cfg, err := loadConfig(a, *path)
		if err != nil {
			return err
		}
		if *addr = cfg.Health.ListenAddr(); *addr == "" {
			return errors.New("the health endpoint is off in the config ([health] listen = \"\"): status has nothing to ask")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, body, err := getStatus(ctx, *addr)
	if err != nil {
		fmt.Fprintf(a.stderr, "gatewayd is not answering at %s (is it running? `systemctl status gatewayd`): %v\n", *addr, err)
		return &exitError{3, errReported}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status from %s: %s", *addr, resp.Status)
	}
	var d statusDoc
	if err := json.Unmarshal(body, &d); err != nil {
		return fmt.Errorf("status from %s: %w", *addr, err)
	}
	if *asJSON {
		a.stdout.Write(body)
	} else {
		printStatus(a.stdout, d)
	}
	if len(d.Problems) > 0 {
		if *asJSON {
			fmt.Fprintf(a.stderr, "unhealthy: %s\n", strings.Join(d.Problems, "; "))
		}
		return &exitError{1, errReported}
	}
	return nil
}

// getStatus asks the health endpoint for /status with one HTTP/1.0 GET on
// a plain connection. Not http.Client: its transport (connection pool,
// HTTP/2, proxies) would be linked into the daemon's binary for this one
// request, ~0.7 MB whose pages count in the running daemon's RSS.
func getStatus(ctx context.Context, addr string) (*http.Response, []byte, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(conn, "GET /status HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("read status: %w", err)
	}
	return resp, body, nil
}

func printStatus(w io.Writer, d statusDoc) {
	fmt.Fprintf(w, "gatewayd %s, up %s, config %s\n\n", d.Version, dur(d.Now.Sub(d.Started)), d.Config)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SENSOR\tDRIVER\tLAST VALUES\tTAKEN\tAGE\tFAILED\tSTATE")
	bad := map[string]string{}
	for _, p := range d.Problems {
		if name, rest, ok := strings.Cut(strings.TrimPrefix(p, "sensor "), ": "); ok && strings.HasPrefix(p, "sensor ") {
			bad[name] = rest
		}
	}
	for _, s := range d.Sensors {
		var vals []string
		for _, v := range s.Last {
			vals = append(vals, fmt.Sprintf("%s %s %s", v.Measurement, formatValue(v.Value, v.Resolution), v.Unit))
		}
		last := strings.Join(vals, ", ")
		if last == "" {
			last = "-"
		}
		state := "ok"
		if why, ok := bad[s.Name]; ok {
			state = "FAILING: " + why
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", s.Name, s.Driver, last, s.Taken, ago(d.Now, s.LastOK), s.Failed, state)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	u := d.Uplink
	conn := "connected to " + u.Server + " since " + ago(d.Now, u.Since)
	if !u.Connected {
		conn = "NOT connected (" + u.Server + ") since " + ago(d.Now, u.Since)
		if u.LastErr != "" {
			conn += ": " + u.LastErr
		}
	}
	fmt.Fprintf(tw, "uplink\t%s (%s); last ack %s; %d failed connects\n", conn, u.Platform, ago(d.Now, u.LastAck), u.ConnectFailures)
	oldest := "none waiting"
	if !d.Buffer.OldestUnsent.IsZero() {
		oldest = "oldest " + ago(d.Now, d.Buffer.OldestUnsent)
	}
	fmt.Fprintf(tw, "buffer\t%d samples (%d values) waiting (%s), %d not yet on disk, %d dead letters, %d KiB\n",
		d.Buffer.Depth, d.Buffer.Values, oldest, d.Buffer.Pending, d.Buffer.DeadLetters, d.Buffer.Bytes>>10)
	clk := "synchronised"
	if !d.Clock.Synced {
		clk = "NOT synchronised (readings are re-dated once it is)"
	}
	fmt.Fprintf(tw, "clock\t%s\n", clk)
	wd := "no systemd watchdog"
	if d.Watchdog.Interval > 0 {
		wd = fmt.Sprintf("fed every %s (%d feeds, last %s)", d.Watchdog.Interval/2, d.Watchdog.Feeds, ago(d.Now, d.Watchdog.LastFeed))
	}
	if d.Watchdog.Alive {
		wd += "; every loop alive"
	} else {
		wd += "; WEDGED: " + d.Watchdog.Problem
	}
	fmt.Fprintf(tw, "watchdog\t%s\n", wd)
	tw.Flush()
	fmt.Fprintln(w)
	for _, x := range d.Warnings {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
	if len(d.Problems) == 0 {
		fmt.Fprintln(w, "HEALTHY")
		return
	}
	sort.Strings(d.Problems)
	fmt.Fprintf(w, "UNHEALTHY (%d):\n", len(d.Problems))
	for _, p := range d.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

// formatValue prints v at the chip's resolution (23.46, not 23.4612), as
// the platform gets it.
func formatValue(v, res float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprint(v)
	}
	return string(reading.Format(nil, v, res))
}
