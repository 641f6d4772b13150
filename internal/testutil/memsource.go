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
	order    []reading.Reading // by (Time, ID); may hold gone readings, skipped and compacted
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
		// Keep order sorted; appends in time order (the usual case) are O(1).
		n := len(m.order)
		j := sort.Search(n, func(k int) bool { return rs[i].Time.Before(m.order[k].Time) })
		m.order = append(m.order, reading.Reading{})
		copy(m.order[j+1:], m.order[j:n])
		m.order[j] = rs[i]
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
	if len(m.order) > 64 && len(m.order) > 2*len(m.items) {
		live := m.order[:0]
		for _, r := range m.order {
			if _, ok := m.items[r.ID]; ok {
				live = append(live, r)
			}
		}
		m.order = live
	}
	var out []reading.Reading
	for k := range m.order {
		i := k
		if f.NewestFirst {
			i = len(m.order) - 1 - k
		}
		r := m.order[i]
		if _, ok := m.items[r.ID]; !ok || m.inflight[r.ID] {
			continue
		}
		if !f.NotBefore.IsZero() && r.Time.Before(f.NotBefore) {
			if f.NewestFirst {
				break
			}
			continue
		}
		if !f.Before.IsZero() && !r.Time.Before(f.Before) {
			if !f.NewestFirst {
				break
			}
			continue
		}
		out = append(out, r)
		if len(out) == max {
			break
		}
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
