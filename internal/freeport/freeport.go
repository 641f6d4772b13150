// Package freeport hands out loopback TCP ports for a process that another
// process (a daemon, a broker) will bind a moment later.
//
// Asking the kernel for one (listen on 127.0.0.1:0, close, pass the number on)
// races: that port comes from the ephemeral range, the same range every
// outgoing connect() and every other listen(:0) draws from, so in the gap
// before the daemon binds it, a concurrent trial's client socket or listener
// can take it ("bind: address already in use" in CI). Ports here are drawn at
// random from below the ephemeral range (read from
// /proc/sys/net/ipv4/ip_local_port_range), where the kernel never allocates on
// its own, are never handed out twice by one process, and are checked bindable
// on TCP before they are returned.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

const (
	floor      = 20000 // below: well-known and registered services people run
	defaultLow = 32768 // Linux's default ephemeral floor
)

var (
	mu     sync.Mutex
	issued = map[int]bool{}
)

// Get returns a loopback TCP port that nothing holds, outside the kernel's
// ephemeral range, and that this process has not handed out before.
func Get() (int, error) {
	hi := ephemeralLow() - 1
	if hi <= floor {
		hi = floor + 10000 // unusual sysctl: fall back to a fixed band
	}
	return pick(floor, hi)
}

// pick draws from [lo, hi].
func pick(lo, hi int) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	n := hi - lo + 1
	start := rand.IntN(n)
	for i := 0; i < n; i++ { // from a random start, every port of the band once
		p := lo + (start+i)%n
		if issued[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		issued[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("freeport: no free loopback port in %d-%d", lo, hi)
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultLow
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return defaultLow
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 1024 {
		return defaultLow
	}
	return n
}
