package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"gatewayd/internal/freeport"
)

// proc is one child process the harness started; stop always reaps it.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	mu      sync.Mutex
	stderr  bytes.Buffer
}

// lineFunc receives each stdout line of a child with the time it was read.
type lineFunc func(at time.Time, line string)

// startProc starts bin; onLine (may be nil) sees its stdout line by line.
// The harness registers it so that a failing run still stops it.
func (h *harness) startProc(name string, onLine lineFunc, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	h.track(p)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if onLine != nil {
				onLine(time.Now(), sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = p.cmd.Wait()
	}()
	return p, nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Stderr returns what the child wrote to stderr so far (its log).
func (p *proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to bound, then kills. It reports whether the
// process stopped on sig by itself.
func (p *proc) stop(sig syscall.Signal, bound time.Duration) bool {
	if p.exited() {
		return true
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a SIGSTOPped child cannot act on sig
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true
	case <-time.After(bound):
		_ = p.cmd.Process.Kill()
		<-p.done
		return false
	}
}

// freePort is a loopback port for a child process to bind (see freeport:
// never from the ephemeral range that concurrent trials' sockets draw from).
func freePort() (int, error) { return freeport.Get() }

// waitPort waits (bounded) until something accepts on addr.
func waitPort(addr string, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s after %v", addr, bound)
}

// waitFor polls cond every step until it holds or bound passes.
func waitFor(bound, step time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(bound)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(step)
	}
}

// mosquitto is a broker on a loopback port, plain TCP, anonymous.
type mosquitto struct {
	h    *harness
	Addr string
	conf string
	p    *proc
}

func (h *harness) startMosquitto(port int) (*mosquitto, error) {
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(h.work, "mosquitto-")
	if err != nil {
		return nil, fmt.Errorf("mosquitto dir: %w", err)
	}
	conf := "per_listener_settings false\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n" +
		"max_queued_messages 100000\n"
	if os.Geteuid() == 0 {
		conf += "user root\n"
	}
	conf += fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\n", port)
	m := &mosquitto{h: h, Addr: fmt.Sprintf("127.0.0.1:%d", port), conf: filepath.Join(dir, "mosquitto.conf")}
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("mosquitto conf: %w", err)
	}
	return m, m.start()
}

func (m *mosquitto) start() error {
	bin := "mosquitto"
	if _, err := exec.LookPath(bin); err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	p, err := m.h.startProc("mosquitto", nil, bin, "-c", m.conf)
	if err != nil {
		return err
	}
	m.p = p
	if err := waitPort(m.Addr, 10*time.Second); err != nil {
		p.stop(syscall.SIGKILL, time.Second)
		return fmt.Errorf("mosquitto: %w: %s", err, p.Stderr())
	}
	return nil
}

func (m *mosquitto) stop() { m.p.stop(syscall.SIGTERM, 5*time.Second) }

// metrics scrapes gatewayd's /metrics and sums each metric over its labels.
func metrics(addr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("metrics request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[name] += v
		}
	}
	return m, sc.Err()
}

func tokenWait(t mqtt.Token, bound time.Duration) error {
	if !t.WaitTimeout(bound) {
		return fmt.Errorf("no answer within %v", bound)
	}
	return t.Error()
}

// sleep waits d unless the run is cancelled.
func (h *harness) sleep(d time.Duration) bool {
	select {
	case <-h.ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// probePlainKey asks the binary measured whether `tls = false` needs a
// companion key (issue 10's allow_plaintext, landing on main while this
// branch moves to samples): `gatewayd check` on a config that sets it says
// "unknown key" when the binary does not know it.
func (h *harness) probePlainKey() (string, error) {
	const k = "allow_plaintext"
	dir, err := mkdirTemp(h.work, "probe-")
	if err != nil {
		return "", err
	}
	plainKey = k
	defer func() { plainKey = "" }()
	cfg, err := gwConfig{Platform: "aliyun", Plain: true, Endpoint: "127.0.0.1:1883", Buffer: filepath.Join(dir, "buffer.db"),
		Health: "127.0.0.1:0", Sensors: 1, Interval: time.Second}.write(dir)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, h.gw, "check", "--config", cfg).CombinedOutput()
	switch {
	case strings.Contains(string(out), k) && strings.Contains(string(out), "unknown key"):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("gatewayd check on the harness's config: %w: %s", err, out)
	}
	return k, nil
}
