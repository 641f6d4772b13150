package testutil

import (
	"testing"
	"time"

	"gatewayd/internal/reading"
)

func sample(sensor string, at time.Time, ms ...string) reading.Sample {
	s := reading.Sample{Sensor: sensor, Stamp: reading.Stamp{Time: at}}
	for i, m := range ms {
		s.Values = append(s.Values, reading.Value{Measurement: m, Property: m, Value: float64(i) + 0.5})
	}
	return s
}

func ids(ss []reading.Sample) []reading.ID { return reading.IDs(ss) }

// Take works like the buffer's: append order (reversed for NewestFirst),
// whole samples up to maxValues but at least one, in-flight samples
// skipped, the time filter applied per sample.
func TestMemSourceTake(t *testing.T) {
	m := NewMemSource()
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	// Appended out of time order (a clock correction): order stays append order.
	m.Add(sample("a", t0, "t", "h", "p"), sample("b", t0.Add(-time.Minute), "t", "h"), sample("c", t0.Add(time.Second), "co2"),
		sample("d", t0.Add(2*time.Second), "t", "h", "p"))
	got, _ := m.Take(5, reading.Filter{})
	if g := ids(got); len(g) != 2 || g[0] != 1 || g[1] != 2 {
		t.Fatalf("Take(5) = %v, want samples 1, 2 (3+2 values; the third would make 6)", g)
	}
	got, _ = m.Take(1, reading.Filter{})
	if g := ids(got); len(g) != 1 || g[0] != 3 {
		t.Fatalf("Take(1) = %v, want sample 3 (in-flight 1 and 2 skipped)", g)
	}
	got, _ = m.Take(1, reading.Filter{})
	if g := ids(got); len(g) != 1 || g[0] != 4 || len(got[0].Values) != 3 {
		t.Fatalf("Take(1) = %v: want sample 4 whole although it has 3 values (at least one sample)", g)
	}
	m.Release([]reading.ID{1, 2, 3, 4})
	got, _ = m.Take(100, reading.Filter{NewestFirst: true, NotBefore: t0})
	if g := ids(got); len(g) != 3 || g[0] != 4 || g[1] != 3 || g[2] != 1 {
		t.Fatalf("newest first from t0 = %v, want 4, 3, 1", g)
	}
	m.Release([]reading.ID{1, 3, 4})
	got, _ = m.Take(100, reading.Filter{Before: t0})
	if g := ids(got); len(g) != 1 || g[0] != 2 {
		t.Fatalf("before t0 = %v, want 2", g)
	}
	if v := m.Violations(); len(v) > 0 {
		t.Fatal(v)
	}
}

// Values are acked and dead-lettered one by one; a sample stays in flight
// until released or emptied, and a released sample comes back with only
// the values still left. Misuse is recorded.
func TestMemSourcePerValue(t *testing.T) {
	m := NewMemSource()
	s := m.Add(sample("air", time.Now(), "t", "h", "p"))[0]
	m.Take(10, reading.Filter{})
	m.Ack([]reading.Ref{{ID: s.ID, Measurement: "t"}})
	m.DeadLetter([]reading.Ref{{ID: s.ID, Measurement: "h"}}, "refused")
	if got, _ := m.Take(10, reading.Filter{}); len(got) != 0 {
		t.Fatalf("a partly acked sample was handed out again while in flight: %v", got)
	}
	m.Release([]reading.ID{s.ID})
	got, _ := m.Take(10, reading.Filter{})
	if len(got) != 1 || len(got[0].Values) != 1 || got[0].Values[0].Measurement != "p" {
		t.Fatalf("after release: %+v, want only p left", got)
	}
	m.Ack([]reading.Ref{{ID: s.ID}})
	if left, acked, dead, inflight := m.Counts(); left != 0 || acked != 2 || dead != 1 || inflight != 0 || m.Has(s.ID) || m.AckCalls() != 2 {
		t.Fatalf("counts %d %d %d %d, ack calls %d", left, acked, dead, inflight, m.AckCalls())
	}
	if len(m.Violations()) != 0 {
		t.Fatal(m.Violations())
	}
	m.Ack([]reading.Ref{{ID: s.ID}})
	m.Release([]reading.ID{99})
	if v := m.Violations(); len(v) != 2 {
		t.Fatalf("violations %v, want the double ack and the stray release", v)
	}
}
