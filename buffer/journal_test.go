package buffer

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

// crash stops b as kill -9 would: no final commit, no fold; the files are
// left as the last window made them.
func crash(t *testing.T, b *Buffer) {
	t.Helper()
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	if b.jr != nil {
		_ = b.jr.f.Close()
	}
	closeQuietly(b.db)
}

func exportAll(t *testing.T, path string) map[string][]ExportRecord {
	t.Helper()
	var out bytes.Buffer
	if err := Export(path, &out, true); err != nil {
		t.Fatal(err)
	}
	got := map[string][]ExportRecord{}
	dec := json.NewDecoder(&out)
	for dec.More() {
		var r ExportRecord
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		got[r.State] = append(got[r.State], r)
	}
	return got
}

// TestJournalRecovery: readings, acks and dead letters made durable by
// journal windows only (no fold) survive a crash exactly as decided, in
// Export, Inspect and after reopening.
func TestJournalRecovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b, err := Open(Options{Path: path, CommitInterval: time.Hour, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	old := mkReadings(0, 3) // folded into bbolt
	mustAppend(t, b, old)
	if err := b.foldNow(); err != nil {
		t.Fatal(err)
	}
	rs := mkReadings(3, 10)
	mustAppend(t, b, rs)
	if err := b.commit(); err != nil { // a journal window
		t.Fatal(err)
	}
	if b.Stats().Folds != 1 {
		t.Fatalf("the window folded: %+v", b.Stats())
	}
	got := mustTake(t, b, 5, reading.Filter{})                // old[0..2], rs[0..1]
	if err := b.Ack(refs(got[0].ID, got[3].ID)); err != nil { // one in bbolt, one journaled
		t.Fatal(err)
	}
	if err := b.DeadLetter(refs(got[1].ID, got[4].ID), "refused"); err != nil {
		t.Fatal(err)
	}
	b.Release([]reading.ID{got[2].ID})
	if err := b.commit(); err != nil { // the acks and dead letters, journaled
		t.Fatal(err)
	}
	mustAppend(t, b, mkReadings(13, 2)) // never committed: lost with the crash
	crash(t, b)

	exp := exportAll(t, path)
	if len(exp["pending"]) != 13-4 || len(exp["dead"]) != 2 {
		t.Fatalf("export after crash: %d pending, %d dead, want 9 and 2", len(exp["pending"]), len(exp["dead"]))
	}
	for _, r := range exp["dead"] {
		if r.Reason != "refused" {
			t.Fatalf("dead letter %+v", r)
		}
	}
	if s, err := Inspect(path); err != nil || s.Depth != 9 || s.DeadLetters != 2 {
		t.Fatalf("Inspect after crash: %+v %v", s, err)
	}

	b2 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	if s := b2.Stats(); s.Depth != 9 || s.DeadLetters != 2 {
		t.Fatalf("after reopen: %+v", s)
	}
	left := mustTake(t, b2, 100, reading.Filter{})
	want := []reading.ID{old[2].ID}
	for _, r := range rs[2:] {
		want = append(want, r.ID)
	}
	if len(left) != len(want) {
		t.Fatalf("after reopen took %v, want %v", reading.IDs(left), want)
	}
	for i := range want {
		if left[i].ID != want[i] {
			t.Fatalf("after reopen took %v, want %v", reading.IDs(left), want)
		}
	}
	more := mkReadings(20, 1)
	mustAppend(t, b2, more)
	if more[0].ID <= rs[9].ID+2 { // the two lost ones had IDs too
		t.Fatalf("ID %d reuses one handed out before the crash", more[0].ID)
	}
	// Reopening again folds nothing twice.
	closeBuf(t, b2)
	b3 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	if s := b3.Stats(); s.Depth != 10 || s.DeadLetters != 2 {
		t.Fatalf("second reopen: %+v", s)
	}
}

// TestJournalTornWindow: a window cut short by a power cut is not there,
// and neither is anything after it; the windows before it are.
func TestJournalTornWindow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b, err := Open(Options{Path: path, CommitInterval: time.Hour, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, b, mkReadings(0, 5))
	if err := b.commit(); err != nil {
		t.Fatal(err)
	}
	firstEnd := b.jr.off
	mustAppend(t, b, mkReadings(5, 5))
	if err := b.commit(); err != nil {
		t.Fatal(err)
	}
	end := b.jr.off
	crash(t, b)
	// Tear the second window: its last bytes never reached the card.
	jp := path + journalSuffix
	f, err := os.OpenFile(jp, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 3), end-3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b2 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	if s := b2.Stats(); s.Depth != 5 {
		t.Fatalf("after a torn window: depth %d, want the 5 of the whole window (first ended at %d)", s.Depth, firstEnd)
	}
}

// TestJournalIgnoredAfterFold: a journal whose epoch was folded (the reset
// after the fold never happened) is not applied twice.
func TestJournalIgnoredAfterFold(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b, err := Open(Options{Path: path, CommitInterval: time.Hour, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rs := mkReadings(0, 5)
	mustAppend(t, b, rs)
	if err := b.commit(); err != nil {
		t.Fatal(err)
	}
	saved, err := os.ReadFile(path + journalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	got := mustTake(t, b, 10, reading.Filter{})
	if err := b.Ack(reading.Refs(got[:2])); err != nil {
		t.Fatal(err)
	}
	if err := b.foldNow(); err != nil {
		t.Fatal(err)
	}
	crash(t, b)
	// Put back the journal as it was before the fold's reset.
	if err := os.WriteFile(path+journalSuffix, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	b2 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	if s := b2.Stats(); s.Depth != 3 {
		t.Fatalf("a folded journal was applied again: depth %d, want 3", s.Depth)
	}
}

// FuzzJournal: the journal decoder never panics on garbage.
func FuzzJournal(f *testing.F) {
	d := NewDict()
	smp := mkBME("air", 0, 1)[0]
	rec := encodeSample(&smp, allBits(3), d)
	win := func(subs ...[]byte) []byte {
		b := []byte{'B'}
		for _, s := range subs {
			b = appendUvarintLen(b, s)
		}
		return b
	}
	var ns [][]byte
	for i := range d.ents {
		ns = append(ns, jPayloadN(uint32(i+1), encodeDictEnt(&d.ents[i])))
	}
	f.Add(appendJrec(nil, 7, win(append(ns, jPayloadS(5, rec))...)), uint64(7))
	f.Add(appendJrec(nil, 7, win(jPayloadA([]reading.ID{1, 2, 300}), jPayloada(5, []string{"humidity"}), jPayloadC(ackCounts{1, 2, 3}))), uint64(7))
	f.Add(appendJrec(nil, 7, win(append(ns, jPayloadY(5, encodeDead(rec, "no", baseTime)))...)), uint64(8))
	v1 := mkReadings(0, 1)[0]
	v1.ID = 9
	f.Add(appendJrec(nil, 3, win(append([]byte{'R'}, encodeV1(&v1)...))), uint64(3))
	f.Add([]byte{}, uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, epoch uint64) {
		subs, n := decodeJournal(b, epoch)
		if n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		recs, _ := decodeSubs(subs, NewDict())
		_ = makeOverlay(recs)
		if len(b) > 0 {
			_, _ = decodeWindow(b)
		}
	})
}

// TestAckedAfterWindowThenClose: readings journaled, then all acked before
// any fold, then Close: nothing may come back (the acks were only in memory
// when Close folded).
func TestAckedAfterWindowThenClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	mustAppend(t, b, mkReadings(0, 20))
	if err := b.commit(); err != nil {
		t.Fatal(err)
	}
	if err := b.Ack(reading.Refs(mustTake(t, b, 100, reading.Filter{}))); err != nil {
		t.Fatal(err)
	}
	closeBuf(t, b)
	if s, err := Inspect(path); err != nil || s.Depth != 0 {
		t.Fatalf("Inspect after close: %+v %v", s, err)
	}
	b2 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	if s := b2.Stats(); s.Depth != 0 {
		t.Fatalf("acked readings came back: %+v", s)
	}
}
