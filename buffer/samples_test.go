package buffer

import (
	"path/filepath"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

// TestTakeMaxValues: Take counts values, hands out whole samples, stops
// before the sample that would pass the limit, and always hands out one.
func TestTakeMaxValues(t *testing.T) {
	b := mustOpen(t, Options{CommitInterval: time.Hour})
	ss := mkBME("air", 0, 4)
	mustAppend(t, b, ss)
	if got := mustTake(t, b, 7, reading.Filter{}); len(got) != 2 || reading.CountValues(got) != 6 {
		t.Fatalf("7 values: took %d samples, %d values", len(got), reading.CountValues(got))
	}
	if got := mustTake(t, b, 1, reading.Filter{}); len(got) != 1 || len(got[0].Values) != 3 || got[0].ID != ss[2].ID {
		t.Fatalf("1 value: took %+v, want the whole next sample", got)
	}
}

// TestValueExactAckAndDeadLetter: acks and dead letters remove single
// values; the rest stays, is handed out again after Release, survives a
// crash (journal) and a fold, and the sample leaves with its last value.
func TestValueExactAckAndDeadLetter(t *testing.T) {
	for _, fold := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "b.db")
		b, err := Open(Options{Path: path, CommitInterval: time.Hour, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ss := mkBME("air", 0, 3)
		mustAppend(t, b, ss)
		if err := b.commit(); err != nil { // journaled
			t.Fatal(err)
		}
		got := mustTake(t, b, 100, reading.Filter{})
		// Sample 0: temperature acked. Sample 1: pressure dead-lettered.
		// Sample 2: everything acked in two messages.
		if err := b.Ack([]reading.Ref{{ID: ss[0].ID, Measurement: "temperature"}, {ID: ss[2].ID, Measurement: "humidity"}}); err != nil {
			t.Fatal(err)
		}
		if err := b.DeadLetter([]reading.Ref{{ID: ss[1].ID, Measurement: "pressure"}}, "26002 pressure unknown"); err != nil {
			t.Fatal(err)
		}
		if err := b.Ack([]reading.Ref{{ID: ss[2].ID}}); err != nil {
			t.Fatal(err)
		}
		// Still in flight until released.
		if again := mustTake(t, b, 100, reading.Filter{}); len(again) != 0 {
			t.Fatalf("partly acked samples handed out while in flight: %+v", again)
		}
		b.Release(reading.IDs(got))
		check := func(where string, bb *Buffer) {
			t.Helper()
			left := mustTake(t, bb, 100, reading.Filter{})
			if len(left) != 2 || left[0].ID != ss[0].ID || left[1].ID != ss[1].ID ||
				len(left[0].Values) != 2 || left[0].Values[0].Measurement != "humidity" ||
				len(left[1].Values) != 2 || left[1].Values[1].Measurement != "humidity" {
				t.Fatalf("%s: left %+v", where, left)
			}
			bb.Release(reading.IDs(left))
			if s := bb.Stats(); s.Depth != 2 || s.Values != 4 || s.DeadLetters != 1 {
				t.Fatalf("%s: stats %+v", where, s)
			}
		}
		check("in memory", b)
		if fold {
			if err := b.foldNow(); err != nil {
				t.Fatal(err)
			}
			check("after a fold", b)
		} else if err := b.commit(); err != nil {
			t.Fatal(err)
		}
		if s := b.Stats(); s.AckedMessages != 2 || s.AckedReadings != 1 || s.AckedValues != 4 || s.MessagesPerReading != 2 {
			t.Fatalf("ack counters: %+v", s)
		}
		crash(t, b)
		if s, err := Inspect(path); err != nil || s.Depth != 2 || s.Values != 4 || s.DeadLetters != 1 || s.AckedMessages != 2 {
			t.Fatalf("Inspect after crash (fold %v): %+v %v", fold, s, err)
		}
		exp := exportAll(t, path)
		if len(exp["pending"]) != 4 || len(exp["dead"]) != 1 || exp["dead"][0].Measurement != "pressure" ||
			exp["dead"][0].Reason != "26002 pressure unknown" || exp["dead"][0].ID != ss[1].ID {
			t.Fatalf("export after crash: %+v", exp)
		}
		b2 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
		check("after reopen", b2)
		if s := b2.Stats(); s.AckedMessages != 2 || s.AckedValues != 4 {
			t.Fatalf("ack counters after reopen: %+v", s)
		}
		// The last values leave; so does the sample.
		if err := b2.Ack([]reading.Ref{{ID: ss[0].ID, Measurement: "humidity"}, {ID: ss[0].ID, Measurement: "pressure"}, {ID: ss[1].ID}}); err != nil {
			t.Fatal(err)
		}
		if s := b2.Stats(); s.Depth != 0 || s.Values != 0 || s.AckedReadings != 3 {
			t.Fatalf("after the last values: %+v", s)
		}
		closeBuf(t, b2)
		if s, err := Inspect(path); err != nil || s.Depth != 0 || s.DeadLetters != 1 {
			t.Fatalf("Inspect after close: %+v %v", s, err)
		}
	}
}

// TestTakeFromMemoryOpensNoTransaction: while the link keeps up, Take,
// Ack and Stats are served by the ledger: no bbolt read transaction.
func TestTakeFromMemoryOpensNoTransaction(t *testing.T) {
	b := mustOpen(t, Options{CommitInterval: time.Hour})
	mustAppend(t, b, mkBME("air", 0, 2))
	if err := b.commit(); err != nil {
		t.Fatal(err)
	}
	before := b.db.Stats().TxN
	for i := 0; i < 50; i++ {
		ss := mkBME("air", i+2, 1)
		mustAppend(t, b, ss)
		live := mustTake(t, b, 200, reading.Filter{NewestFirst: true})
		backlog := mustTake(t, b, 200, reading.Filter{})
		if err := b.Ack(reading.Refs(append(live, backlog...))); err != nil {
			t.Fatal(err)
		}
		_ = b.Stats()
		if i%10 == 0 {
			if err := b.commit(); err != nil { // journal windows: no bbolt either
				t.Fatal(err)
			}
		}
	}
	if n := b.db.Stats().TxN - before; n != 0 {
		t.Fatalf("%d bbolt read transactions while serving from memory", n)
	}
	// With a backlog in the file, Take reads it.
	mustAppend(t, b, mkBME("air", 100, 3))
	if err := b.foldNow(); err != nil {
		t.Fatal(err)
	}
	before = b.db.Stats().TxN
	if got := mustTake(t, b, 200, reading.Filter{}); len(got) != 3 {
		t.Fatalf("took %d from the file", len(got))
	}
	if b.db.Stats().TxN == before {
		t.Fatal("a backlog in the file was served without reading it")
	}
}

// TestAppendRejectsBadSamples: too many values or a measurement twice.
func TestAppendRejectsBadSamples(t *testing.T) {
	b := mustOpen(t, Options{CommitInterval: time.Hour})
	dup := mkBME("air", 0, 1)
	dup[0].Values[1].Measurement = "temperature"
	if err := b.Append(t.Context(), dup); err == nil {
		t.Fatal("a sample with a measurement twice was accepted")
	}
	many := mkReadings(0, 1)
	for i := 0; i < maxValues; i++ {
		many[0].Values = append(many[0].Values, reading.Value{Measurement: string(rune('A' + i))})
	}
	if err := b.Append(t.Context(), many); err == nil {
		t.Fatal("a sample of 65 values was accepted")
	}
	// A sample without values gets an ID and is not stored.
	empty := []reading.Sample{{Sensor: "air"}}
	mustAppend(t, b, empty)
	if empty[0].ID == 0 || b.Stats().Depth != 0 {
		t.Fatalf("empty sample: %+v, depth %d", empty[0], b.Stats().Depth)
	}
}

// TestMemoryBoundedWhileFoldsFail: samples acked before their commit leave
// nothing behind in memory, also while no fold succeeds.
func TestMemoryBoundedWhileFoldsFail(t *testing.T) {
	b := mustOpen(t, Options{CommitInterval: time.Hour})
	for i := 0; i < 5000; i++ {
		ss := mkBME("air", i, 1)
		mustAppend(t, b, ss)
		if err := b.Ack(reading.Refs(mustTake(t, b, 10, reading.Filter{NewestFirst: true}))); err != nil {
			t.Fatal(err)
		}
	}
	b.mu.Lock()
	n, ids := len(b.l.mem), len(b.l.byID)
	b.mu.Unlock()
	if n > 100 || ids > 10 { // a few may wait for the window that records their ack
		t.Fatalf("%d entries in mem, %d in the ledger after 5000 samples acked before any commit", n, ids)
	}
}
