package main

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// proxy is a TCP forwarder in front of the broker that records the time of
// every connection a client opens: an attempt counts whether or not the
// broker behind it is up (when it is down the client's connection is
// closed at once, as a refused connect would be).
type proxy struct {
	l        net.Listener
	upstream string
	mu       sync.Mutex
	attempts []time.Time
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
}

func startProxy(upstream string) (*proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p := &proxy{l: l, upstream: upstream, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *proxy) Addr() string { return p.l.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.attempts = append(p.attempts, time.Now())
		p.conns[c] = true
		p.mu.Unlock()
		p.wg.Add(1)
		go p.pipe(c)
	}
}

func (p *proxy) pipe(c net.Conn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		c.Close()
	}()
	u, err := net.DialTimeout("tcp", p.upstream, time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done // either side closing ends both
}

// since returns the attempt times at or after t.
func (p *proxy) since(t time.Time) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Time
	for _, a := range p.attempts {
		if !a.Before(t) {
			out = append(out, a)
		}
	}
	return out
}

func (p *proxy) close() {
	p.l.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// perSecond buckets attempts into whole seconds from t0 and returns the
// peak bucket and its index.
func perSecond(attempts []time.Time, t0 time.Time) (peak, at int, buckets []int) {
	for _, a := range attempts {
		i := int(a.Sub(t0) / time.Second)
		for len(buckets) <= i {
			buckets = append(buckets, 0)
		}
		buckets[i]++
	}
	for i, n := range buckets {
		if n > peak {
			peak, at = n, i
		}
	}
	return peak, at, buckets
}
