package testutil

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"gatewayd/internal/reading"
)

// MemSource is a small in-memory reading.Source for tests (the real buffer
// belongs to another package and must not be imported by uplink). Its Take
// hands out samples like the buffer's: in append (ID) order, newest first
// with Filter.NewestFirst, skipping samples in flight or outside the time
// filter, stopping before the sample that would take the values past
// maxValues but always returning at least one matching sample (none for
// maxValues <= 0); a sample without values gets an ID and is never handed
// out. The contract suite (internal/testutil/sourcetest) holds it to the
// buffer's behaviour. It also records what the uplink should not do as
// violations: acking or dead-lettering values of samples not in flight,
// releasing samples not in flight, acking or dead-lettering a value twice.
// Recorded or not, every call does what the buffer does: an ack of a
// released sample still removes its values.
type MemSource struct {
	mu       sync.Mutex
	next     reading.ID
	order    []reading.ID // append order; may hold gone samples, compacted now and then
	items    map[reading.ID]*reading.Sample
	inflight map[reading.ID]bool
	acked    map[reading.Ref]int // per value (sample ID, measurement)
	ackedIDs map[reading.ID]bool // samples with at least one acked value
	dead     map[reading.Ref]string
	ackCalls int
	left     int // values not yet acked or dead-lettered
	released int
	bad      []string // contract violations
	notify   chan struct{}
}

func NewMemSource() *MemSource {
	return &MemSource{
		items: map[reading.ID]*reading.Sample{}, inflight: map[reading.ID]bool{},
		acked: map[reading.Ref]int{}, ackedIDs: map[reading.ID]bool{}, dead: map[reading.Ref]string{},
		notify: make(chan struct{}, 1),
	}
}

// Add appends samples (assigning IDs, like Sink.Append) and returns them.
func (m *MemSource) Add(ss ...reading.Sample) []reading.Sample {
	m.mu.Lock()
	for i := range ss {
		m.next++
		ss[i].ID = m.next
		if len(ss[i].Values) == 0 {
			continue // like the buffer: an ID, nothing stored
		}
		s := ss[i]
		s.Values = append([]reading.Value(nil), s.Values...)
		m.items[s.ID] = &s
		m.order = append(m.order, s.ID)
		m.left += len(s.Values)
	}
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
	return ss
}

func (m *MemSource) Take(maxValues int, f reading.Filter) ([]reading.Sample, error) {
	out := []reading.Sample{}
	if maxValues <= 0 {
		return out, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.order) > 64 && len(m.order) > 2*len(m.items) {
		live := m.order[:0]
		for _, id := range m.order {
			if _, ok := m.items[id]; ok {
				live = append(live, id)
			}
		}
		m.order = live
	}
	n := 0
	for k := range m.order {
		i := k
		if f.NewestFirst {
			i = len(m.order) - 1 - k
		}
		s, ok := m.items[m.order[i]]
		if !ok || m.inflight[s.ID] {
			continue
		}
		if !f.NotBefore.IsZero() && s.Time.Before(f.NotBefore) {
			continue
		}
		if !f.Before.IsZero() && !s.Time.Before(f.Before) {
			continue
		}
		if len(out) > 0 && n+len(s.Values) > maxValues {
			break
		}
		c := *s
		c.Values = append([]reading.Value(nil), s.Values...)
		out = append(out, c)
		n += len(s.Values)
	}
	for _, s := range out {
		m.inflight[s.ID] = true
	}
	return out, nil
}

func (m *MemSource) Notify() <-chan struct{} { return m.notify }

// remove deletes the value(s) ref addresses from its sample; it returns
// the refs of the values removed.
func (m *MemSource) remove(op string, ref reading.Ref) []reading.Ref {
	s, ok := m.items[ref.ID]
	if !ok || !m.inflight[ref.ID] {
		m.bad = append(m.bad, fmt.Sprintf("%s of sample %d, which is not in flight", op, ref.ID))
	}
	if !ok {
		return nil
	}
	var gone []reading.Ref
	keep := s.Values[:0]
	for _, v := range s.Values {
		if ref.Measurement == "" || v.Measurement == ref.Measurement {
			gone = append(gone, reading.Ref{ID: ref.ID, Measurement: v.Measurement})
			continue
		}
		keep = append(keep, v)
	}
	if len(gone) == 0 {
		m.bad = append(m.bad, fmt.Sprintf("%s of value %d/%s, which is gone", op, ref.ID, ref.Measurement))
	}
	s.Values = keep
	m.left -= len(gone)
	if len(keep) == 0 {
		delete(m.items, ref.ID)
		delete(m.inflight, ref.ID)
	}
	return gone
}

func (m *MemSource) Ack(refs []reading.Ref) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ackCalls++
	for _, ref := range refs {
		for _, r := range m.remove("ack", ref) {
			m.acked[r]++
			m.ackedIDs[r.ID] = true
		}
	}
	return nil
}

func (m *MemSource) Release(ids []reading.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		if !m.inflight[id] {
			m.bad = append(m.bad, fmt.Sprintf("release of sample %d, which is not in flight", id))
		}
		delete(m.inflight, id)
	}
	m.released += len(ids)
}

func (m *MemSource) DeadLetter(refs []reading.Ref, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if reason == "" {
		return errors.New("empty reason")
	}
	for _, ref := range refs {
		for _, r := range m.remove("dead-letter", ref) {
			m.dead[r] = reason
		}
	}
	return nil
}

// Counts returns how many values are left, acked (distinct) and dead, and
// how many samples are in flight.
func (m *MemSource) Counts() (left, acked, dead, inflight int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.left, len(m.acked), len(m.dead), len(m.inflight)
}

// Samples returns how many samples still have values.
func (m *MemSource) Samples() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}

// AckCalls returns how many times Ack was called: once per acknowledged
// platform message.
func (m *MemSource) AckCalls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ackCalls
}

// AckedSamples returns how many samples had at least one value acked.
func (m *MemSource) AckedSamples() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.ackedIDs)
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

// AckCounts returns, per value, how often it was acknowledged.
func (m *MemSource) AckCounts() map[reading.Ref]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[reading.Ref]int, len(m.acked))
	for k, v := range m.acked {
		out[k] = v
	}
	return out
}

// DeadLetters returns the dead-lettered values and their reasons.
func (m *MemSource) DeadLetters() map[reading.Ref]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[reading.Ref]string, len(m.dead))
	for k, v := range m.dead {
		out[k] = v
	}
	return out
}

// Has reports whether a sample still has values in the source.
func (m *MemSource) Has(id reading.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.items[id]
	return ok
}
