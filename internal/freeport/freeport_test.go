package freeport

import (
	"net"
	"strconv"
	"testing"
)

// Ports come from below the ephemeral range, are bindable, and one process
// never gets the same port twice.
func TestGet(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		p, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if p < floor || p >= low {
			t.Fatalf("port %d outside [%d, %d)", p, floor, low)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	p, err := Get()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("port %d from Get is not bindable: %v", p, err)
	}
	l.Close()
}

// A port something already holds is never handed out: in a band of 40 with
// 30 held, the 10 free ones come out, then the band is exhausted.
func TestPickSkipsHeld(t *testing.T) {
	lo, held := heldBand(t)
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	hi := lo + 39
	mu.Lock()
	for p := lo; p <= hi; p++ {
		delete(issued, p) // a rerun (-count) starts afresh
	}
	mu.Unlock()
	holds := map[int]bool{}
	for _, l := range held {
		holds[l.Addr().(*net.TCPAddr).Port] = true
	}
	got := map[int]bool{}
	for len(got) < 10 {
		p, err := pick(lo, hi)
		if err != nil {
			t.Fatalf("after %d free ports: %v", len(got), err)
		}
		if holds[p] || got[p] || p < lo || p > hi {
			t.Fatalf("pick returned %d (held %v, again %v)", p, holds[p], got[p])
		}
		got[p] = true
	}
	if p, err := pick(lo, hi); err == nil {
		t.Fatalf("band exhausted, yet pick returned %d", p)
	}
}

// heldBand finds a band of 40 ports from 24000 up in which this test can
// hold the 30 that are not multiples of 4, and holds them.
func heldBand(t *testing.T) (lo int, held []net.Listener) {
	t.Helper()
	for lo = 24000; lo < 31000; lo += 40 {
		held = held[:0]
		ok := true
		for p := lo; p < lo+40 && ok; p++ {
			if p%4 == 0 {
				continue // leave 10 free
			}
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		if ok {
			return lo, held
		}
		for _, l := range held {
			l.Close()
		}
	}
	t.Fatal("no band of 40 ports between 24000 and 31000 to hold 30 of")
	return 0, nil
}
