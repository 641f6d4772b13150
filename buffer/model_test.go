package buffer

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

// TestConcurrentModel runs a sensor loop and an uplink loop against one
// buffer with fast group commits, checking against a model: no reading is
// handed out while it is in flight, every appended reading ends acked or
// dead-lettered exactly as the uplink decided, and the file agrees.
func TestConcurrentModel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: 3 * time.Millisecond, CommitSize: 40})
	const total = 3000
	rng := rand.New(rand.NewPCG(3, 4))
	var (
		mu       sync.Mutex
		appended = map[reading.ID]float64{}
		inflight = map[reading.ID]bool{}
		acked    = map[reading.ID]bool{}
		dead     = map[reading.ID]bool{}
	)
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < total; {
			n := min(1+i%5, total-i)
			rs := mkReadings(i, n)
			if err := b.Append(ctx, rs); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			for _, r := range rs {
				appended[r.ID] = r.Values[0].Value
			}
			mu.Unlock()
			i += n
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("model test did not finish in time")
		}
		rs, err := b.Take(1+rng.IntN(60), reading.Filter{NewestFirst: rng.IntN(3) == 0})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		for _, r := range rs {
			v, ok := appended[r.ID]
			for wait := 0; !ok && r.ID != 0 && wait < 2000; wait++ {
				// Appended but the appender has not recorded it yet.
				mu.Unlock()
				time.Sleep(time.Millisecond)
				mu.Lock()
				v, ok = appended[r.ID]
			}
			if !ok || v != r.Values[0].Value {
				t.Fatalf("took %d (value %v) that was not appended as such", r.ID, r.Values)
			}
			if inflight[r.ID] || acked[r.ID] || dead[r.ID] {
				t.Fatalf("took %d twice (in flight %v, acked %v, dead %v)", r.ID, inflight[r.ID], acked[r.ID], dead[r.ID])
			}
			inflight[r.ID] = true
		}
		mu.Unlock()
		ids := reading.IDs(rs)
		switch k := rng.IntN(10); {
		case k < 7:
			if err := b.Ack(refs(ids...)); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			for _, id := range ids {
				acked[id] = true
				delete(inflight, id)
			}
			mu.Unlock()
		case k < 9:
			mu.Lock()
			for _, id := range ids {
				delete(inflight, id)
			}
			mu.Unlock()
			b.Release(ids)
		default:
			if err := b.DeadLetter(refs(ids...), "model"); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			for _, id := range ids {
				dead[id] = true
				delete(inflight, id)
			}
			mu.Unlock()
		}
		select {
		case <-done:
			mu.Lock()
			finished := len(acked)+len(dead) == total
			mu.Unlock()
			if finished {
				goto check
			}
		default:
		}
	}
check:
	if s := b.Stats(); s.Depth != 0 || s.DeadLetters != len(dead) {
		t.Fatalf("stats: depth %d dead %d, want 0 and %d", s.Depth, s.DeadLetters, len(dead))
	}
	closeBuf(t, b)
	var out bytes.Buffer
	if err := Export(path, &out, true); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&out)
	n := 0
	for dec.More() {
		var r ExportRecord
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		if r.State != "dead" || !dead[r.ID] {
			t.Fatalf("file holds %d as %q", r.ID, r.State)
		}
		n++
	}
	if n != len(dead) {
		t.Fatalf("file holds %d dead letters, want %d", n, len(dead))
	}
}
