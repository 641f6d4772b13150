package testutil

import (
	"errors"
	"sort"
	"sync"
	"time"

	"gatewayd/internal/reading"
)

// MemSource is a tiny in-memory reading.Source for tests (the real buffer
// belongs to another package and must not be imported by uplink). It enforces
// the Source contract: only in-flight readings may be acked, released or
// dead-lettered.
type MemSource struct {
	mu       sync.Mutex
	next     reading.ID
	items    map[reading.ID]reading.Reading
	inflight map[reading.ID]bool
	acked    map[reading.ID]int
	dead     map[reading.ID]string
	released int
	bad      []string // contract violations
	notify   chan struct{}
}

func NewMemSource() *MemSource {
	return &MemSource{
		items: map[reading.ID]reading.Reading{}, inflight: map[reading.ID]bool{},
		acked: map[reading.ID]int{}, dead: map[reading.ID]string{}, notify: make(chan struct{}, 1),
	}
}

// Add appends readings and returns them with their ids.
func (m *MemSource) Add(rs ...reading.Reading) []reading.Reading {
	m.mu.Lock()
	for i := range rs {
		m.next++
		rs[i].ID = m.next
		m.items[rs[i].ID] = rs[i]
	}
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
	return rs
}

func (m *MemSource) Take(max int, f reading.Filter) ([]reading.Reading, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []reading.Reading
	for id, r := range m.items {
		if m.inflight[id] {
			continue
		}
		if !f.NotBefore.IsZero() && r.Time.Before(f.NotBefore) {
			continue
		}
		if !f.Before.IsZero() && !r.Time.Before(f.Before) {
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time) != f.NewestFirst
		}
		return (a.ID < b.ID) != f.NewestFirst
	})
	if len(out) > max {
		out = out[:max]
	}
	for _, r := range out {
		m.inflight[r.ID] = true
	}
	return out, nil
}

func (m *MemSource) Notify() <-chan struct{} { return m.notify }

func (m *MemSource) check(op string, ids []reading.ID) {
	for _, id := range ids {
		if !m.inflight[id] {
			m.bad = append(m.bad, op+" of a reading not in flight")
		}
	}
}

func (m *MemSource) Ack(ids []reading.ID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.check("ack", ids)
	for _, id := range ids {
		m.acked[id]++
		delete(m.items, id)
		delete(m.inflight, id)
	}
	return nil
}

func (m *MemSource) Release(ids []reading.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.check("release", ids)
	for _, id := range ids {
		delete(m.inflight, id)
	}
	m.released += len(ids)
}

func (m *MemSource) DeadLetter(ids []reading.ID, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.check("dead-letter", ids)
	if reason == "" {
		return errors.New("empty reason")
	}
	for _, id := range ids {
		m.dead[id] = reason
		delete(m.items, id)
		delete(m.inflight, id)
	}
	return nil
}

// Counts returns how many readings are left, acked (distinct) and dead.
func (m *MemSource) Counts() (left, acked, dead, inflight int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items), len(m.acked), len(m.dead), len(m.inflight)
}

func (m *MemSource) Violations() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.bad...)
}

// Eventually polls cond every 10ms until it holds or d passes.
func Eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// AckCounts returns, per reading id, how often it was acknowledged.
func (m *MemSource) AckCounts() map[reading.ID]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[reading.ID]int, len(m.acked))
	for k, v := range m.acked {
		out[k] = v
	}
	return out
}

// DeadLetters returns the dead-lettered readings' ids and reasons.
func (m *MemSource) DeadLetters() map[reading.ID]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[reading.ID]string, len(m.dead))
	for k, v := range m.dead {
		out[k] = v
	}
	return out
}

// Has reports whether a reading is still in the source (not acked, not
// dead-lettered).
func (m *MemSource) Has(id reading.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.items[id]
	return ok
}
