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
	const lo, hi = 24000, 24039
	mu.Lock()
	for p := lo; p <= hi; p++ {
		delete(issued, p) // a rerun (-count) starts afresh
	}
	mu.Unlock()
	holds := map[int]bool{}
	for p := lo; p <= hi; p++ {
		if p%4 == 0 {
			continue // leave 10 free
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Skipf("port %d busy on this machine; the band is not ours", p)
		}
		defer l.Close()
		holds[p] = true
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
