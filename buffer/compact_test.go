package buffer

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

func TestCompactionReclaimsSpace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	o := Options{Path: path, CommitInterval: time.Hour, CommitSize: 1 << 30, compactMin: 64 << 10, compactEvery: time.Nanosecond}
	b := mustOpen(t, o)
	var all []reading.Sample
	for i := 0; i < 20000; i += 1000 {
		rs := mkReadings(i, 1000)
		mustAppend(t, b, rs)
		all = append(all, rs...)
		if err := b.foldNow(); err != nil {
			t.Fatal(err)
		}
	}
	// The outage ends: all but the last 10 are delivered.
	got := mustTake(t, b, len(all)-10, reading.Filter{})
	if err := b.Ack(reading.Refs(got)); err != nil {
		t.Fatal(err)
	}
	if err := b.foldNow(); err != nil {
		t.Fatal(err)
	}
	before := b.fileSize()
	b.maybeCompact()
	after := b.fileSize()
	if s := b.Stats(); s.Compactions != 1 || after*4 > before {
		t.Fatalf("compactions %d, file %d -> %d bytes", s.Compactions, before, after)
	}
	if _, err := os.Stat(path + compactSuffix); !os.IsNotExist(err) {
		t.Fatalf("the copy was left behind: %v", err)
	}
	// Still the same buffer: the rest is there, appends and commits work.
	left := mustTake(t, b, 100, reading.Filter{})
	if len(left) != 10 || !sameReading(left[0], all[len(all)-10]) {
		t.Fatalf("after compaction took %d readings", len(left))
	}
	more := mkReadings(0, 5)
	mustAppend(t, b, more)
	closeBuf(t, b)

	b2 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	if s := b2.Stats(); s.Depth != 15 || s.CorruptFiles != 0 {
		t.Fatalf("after reopen: %+v", s)
	}
	rs := mkReadings(0, 1)
	mustAppend(t, b2, rs)
	if rs[0].ID <= more[4].ID {
		t.Fatalf("ID %d after compaction not above %d", rs[0].ID, more[4].ID)
	}
}

// TestCompactionCrashLeftover: a crash during compaction leaves the copy
// beside an intact original; Open deletes the copy and keeps the original.
func TestCompactionCrashLeftover(t *testing.T) {
	path, _ := makeFile(t, 50)
	if err := os.WriteFile(path+compactSuffix, []byte("half a copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	if s := b.Stats(); s.Depth != 50 || s.CorruptFiles != 0 {
		t.Fatalf("stats: %+v", s)
	}
	if _, err := os.Stat(path + compactSuffix); !os.IsNotExist(err) {
		t.Fatalf("leftover copy not removed: %v", err)
	}
}
