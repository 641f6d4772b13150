package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"gatewayd/internal/freeport"
)

// proc is one child process; its stderr (and stdout, unless read line by
// line) goes to a log file in the work directory.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	logf string
}

// startProc starts bin and registers its pid in the work directory's pid
// file, so that the wrapper's trap can stop it even if this program dies.
func (h *harness) startProc(name, logf string, env []string, onLine func(string, time.Time), bin string, args ...string) (*proc, error) {
	lf, err := os.OpenFile(logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{}), logf: logf}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = lf
	var out io.ReadCloser
	if onLine != nil {
		if out, err = p.cmd.StdoutPipe(); err != nil {
			lf.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	} else {
		p.cmd.Stdout = lf
	}
	if err := p.cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	h.track(p)
	go func() {
		defer close(p.done)
		defer lf.Close()
		if out != nil {
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				onLine(sc.Text(), time.Now())
			}
			_, _ = io.Copy(io.Discard, out)
		}
		_ = p.cmd.Wait()
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits at most d, then SIGKILLs. It reports whether the
// process ended within d.
func (p *proc) stop(sig syscall.Signal, d time.Duration) bool {
	if p == nil || p.exited() {
		return true
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		return false
	}
}

// tail returns the last n lines of a log file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort is a loopback port for a child process to bind (see freeport:
// never from the ephemeral range that concurrent trials' sockets draw from).
func freePort() (int, error) { return freeport.Get() }

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitFor polls cond every step until it holds or d has passed.
func waitFor(d, step time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(step) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

var httpc = &http.Client{Timeout: time.Second}

// scrape reads gatewayd's /metrics once.
func scrape(addr string) (Scrape, error) {
	q := time.Now()
	resp, err := httpc.Get("http://" + addr + "/metrics")
	if err != nil {
		return Scrape{}, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Scrape{}, fmt.Errorf("scrape: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return Scrape{}, fmt.Errorf("scrape: status %d", resp.StatusCode)
	}
	return parseMetrics(string(b), q, time.Now()), nil
}

// scraper reads /metrics every period into a lifetime until stopped.
type scraper struct {
	one  sync.Mutex // one scrape at a time: their order is the collector's
	mu   sync.Mutex
	l    *Life
	stop chan struct{}
	done chan struct{}
}

func startScraper(addr string, l *Life, period time.Duration) *scraper {
	s := &scraper{l: l, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			s.once(addr)
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// once scrapes now and records the result.
func (s *scraper) once(addr string) (Scrape, bool) {
	s.one.Lock()
	defer s.one.Unlock()
	sc, err := scrape(addr)
	if err != nil {
		return Scrape{}, false
	}
	s.mu.Lock()
	s.l.Scrapes = append(s.l.Scrapes, sc)
	s.mu.Unlock()
	return sc, true
}

func (s *scraper) last() (Scrape, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.l.Scrapes) == 0 {
		return Scrape{}, false
	}
	return s.l.Scrapes[len(s.l.Scrapes)-1], true
}

func (s *scraper) halt() {
	close(s.stop)
	<-s.done
}
