package buffer

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

// deadLetterAll takes everything and dead-letters it with reason.
func deadLetterAll(t *testing.T, b *Buffer, reason string) int {
	t.Helper()
	ss := mustTake(t, b, 1<<20, reading.Filter{})
	if err := b.DeadLetter(reading.Refs(ss), reason); err != nil {
		t.Fatal(err)
	}
	return len(ss)
}

// TestDeadLettersBoundedByCount: a platform script that refuses everything
// dead-letters everything; the dead bucket keeps the newest DeadLetterMaxCount,
// drops the oldest, counts and keeps storing new samples.
func TestDeadLettersBoundedByCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour, DeadLetterMaxCount: 50})
	var all []reading.Sample
	for round := 0; round < 4; round++ {
		ss := mkBME("air", round*40, 40)
		mustAppend(t, b, ss)
		all = append(all, ss...)
		deadLetterAll(t, b, "26010 script error")
		if err := b.foldNow(); err != nil {
			t.Fatal(err)
		}
		if s := b.Stats(); s.DeadLetters > 50 {
			t.Fatalf("round %d: %d dead letters, bound 50", round, s.DeadLetters)
		}
	}
	s := b.Stats()
	if s.DeadLetters != 50 || s.Drops[ReasonDeadCount] != 110 {
		t.Fatalf("stats: %d dead, drops %v", s.DeadLetters, s.Drops)
	}
	closeBuf(t, b)
	var out bytes.Buffer
	if err := ExportDead(path, &out, true); err != nil {
		t.Fatal(err)
	}
	exp := exportAll(t, path)
	if len(exp["dead"]) != 150 || len(exp["pending"]) != 0 || exp["dead"][0].ID != all[110].ID {
		t.Fatalf("kept %d dead values from %v, want the newest 50 samples from %d", len(exp["dead"]), exp["dead"][0].ID, all[110].ID)
	}
	if n := strings.Count(out.String(), "\n"); n != 150 || strings.Contains(out.String(), `"pending"`) {
		t.Fatalf("export --dead: %d lines", n)
	}
}

// TestDeadLettersBoundedByBytesAndAge: the bytes bound keeps the dead
// bucket small against MaxSize; the age bound drops those dead-lettered long
// ago, also in a buffer that does nothing else.
func TestDeadLettersBoundedByBytesAndAge(t *testing.T) {
	b := mustOpen(t, Options{CommitInterval: time.Hour, DeadLetterMaxBytes: 4096, DeadLetterMaxCount: -1})
	mustAppend(t, b, mkBME("air", 0, 200))
	deadLetterAll(t, b, "refused")
	if err := b.foldNow(); err != nil {
		t.Fatal(err)
	}
	s := b.Stats()
	if s.Drops[ReasonDeadBytes] == 0 || b.l.deadBytes > 4096 || s.DeadLetters == 0 {
		t.Fatalf("bytes bound: %d dead letters in %d bytes, drops %v", s.DeadLetters, b.l.deadBytes, s.Drops)
	}

	path := filepath.Join(t.TempDir(), "a.db")
	a := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	mustAppend(t, a, mkBME("air", 0, 10))
	deadLetterAll(t, a, "refused")
	closeBuf(t, a)
	// Reopen with a bound they are already past: the first commit drops
	// them though nothing else is written.
	a = mustOpen(t, Options{Path: path, CommitInterval: time.Hour, DeadLetterMaxAge: time.Nanosecond})
	time.Sleep(time.Millisecond)
	if err := a.commit(); err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.DeadLetters != 0 || s.Drops[ReasonDeadAge] != 10 {
		t.Fatalf("age bound: %+v", s)
	}
}

// TestRequeue: dead letters go back into the queue under their sample's
// ID, merged with the values still waiting; a reason filter picks some.
func TestRequeue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	ss := mkBME("air", 0, 3)
	mustAppend(t, b, ss)
	mustTake(t, b, 100, reading.Filter{})
	if err := b.DeadLetter([]reading.Ref{{ID: ss[0].ID, Measurement: "pressure"}}, "26002 pressure unknown"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeadLetter([]reading.Ref{{ID: ss[1].ID}}, "26010 script error"); err != nil {
		t.Fatal(err)
	}
	if err := b.Ack([]reading.Ref{{ID: ss[2].ID}}); err != nil {
		t.Fatal(err)
	}
	b.Release(reading.IDs(ss))
	if _, _, err := Requeue(path, "", nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("requeue while open: %v, want ErrLocked", err)
	}
	closeBuf(t, b)

	n, left, err := Requeue(path, "26010", nil)
	if err != nil || n != 1 || left != 1 {
		t.Fatalf("requeue 26010: %d requeued, %d left, %v", n, left, err)
	}
	n, left, err = Requeue(path, "", nil)
	if err != nil || n != 1 || left != 0 {
		t.Fatalf("requeue all: %d requeued, %d left, %v", n, left, err)
	}
	b = mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	got := mustTake(t, b, 100, reading.Filter{})
	if len(got) != 2 || got[0].ID != ss[0].ID || got[1].ID != ss[1].ID || len(got[0].Values) != 3 || len(got[1].Values) != 3 {
		t.Fatalf("after requeue took %+v", got)
	}
	for i := range got {
		if !sameReading(got[i], mustNormal(ss[i])) {
			t.Fatalf("requeued %+v, want %+v", got[i], ss[i])
		}
	}
}

// mustNormal is s with its values as the buffer stores them.
func mustNormal(s reading.Sample) reading.Sample {
	s.Values = append([]reading.Value(nil), s.Values...)
	for i := range s.Values {
		s.Values[i].Value = normalize(s.Values[i].Value, s.Values[i].Resolution)
	}
	return s
}
