package buffer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

// fillPast appends readings well past what maxSize holds, committing as the
// loop would, and checks the file never outgrows the bound.
func fillPast(t *testing.T, b *Buffer, path string, maxSize int64, n int) []reading.Sample {
	t.Helper()
	var all []reading.Sample
	for i := 0; i < n; i += 200 {
		rs := mkReadings(i, 200)
		mustAppend(t, b, rs)
		all = append(all, rs...)
		if err := b.commit(); err != nil {
			t.Fatalf("commit at %d: %v", i, err)
		}
		// The bbolt file and the journal together.
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		var jsize int64
		if jfi, err := os.Stat(path + journalSuffix); err == nil {
			jsize = jfi.Size()
		}
		if fi.Size()+jsize > maxSize || b.Stats().Bytes != fi.Size()+jsize {
			t.Fatalf("after %d readings the files are %d+%d bytes (stats %d), bound %d", i+200, fi.Size(), jsize, b.Stats().Bytes, maxSize)
		}
	}
	return all
}

func TestMaxSizeDropOldest(t *testing.T) {
	const maxSize = 256 << 10
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, MaxSize: maxSize, CommitInterval: time.Hour})
	// ~100 bytes a reading on disk: 12,000 readings are ~4x the bound.
	all := fillPast(t, b, path, maxSize, 12000)
	s := b.Stats()
	if s.Drops[ReasonMaxSize] == 0 || s.Depth == 0 || s.Depth+int(s.Drops[ReasonMaxSize]) != len(all) {
		t.Fatalf("stats: depth %d drops %v, appended %d", s.Depth, s.Drops, len(all))
	}
	got := mustTake(t, b, len(all), reading.Filter{})
	if len(got) != s.Depth {
		t.Fatalf("took %d, depth %d", len(got), s.Depth)
	}
	// The newest are kept, contiguously, up to the last one appended.
	if got[len(got)-1].ID != all[len(all)-1].ID || got[0].ID == all[0].ID {
		t.Fatalf("drop-oldest kept %d..%d of %d..%d", got[0].ID, got[len(got)-1].ID, all[0].ID, all[len(all)-1].ID)
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID != got[i-1].ID+1 {
			t.Fatalf("hole in what was kept at %d", got[i].ID)
		}
	}
	// The file is used, not left mostly empty: at least a third of the
	// bound holds readings.
	if s.Depth*100 < maxSize/3 {
		t.Fatalf("only %d readings kept under a %d-byte bound", s.Depth, maxSize)
	}
}

func TestMaxSizeDropNewest(t *testing.T) {
	const maxSize = 256 << 10
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, MaxSize: maxSize, WhenFull: DropNewest, CommitInterval: time.Hour})
	all := fillPast(t, b, path, maxSize, 12000)
	s := b.Stats()
	if s.Drops[ReasonMaxSize] == 0 || s.Depth+int(s.Drops[ReasonMaxSize]) != len(all) {
		t.Fatalf("stats: depth %d drops %v, appended %d", s.Depth, s.Drops, len(all))
	}
	got := mustTake(t, b, len(all), reading.Filter{})
	if got[0].ID != all[0].ID || got[len(got)-1].ID == all[len(all)-1].ID {
		t.Fatalf("drop-newest kept %d..%d of %d..%d", got[0].ID, got[len(got)-1].ID, all[0].ID, all[len(all)-1].ID)
	}
	// Draining makes room again: new readings are kept.
	if err := b.Ack(reading.Refs(got)); err != nil {
		t.Fatal(err)
	}
	if err := b.commit(); err != nil {
		t.Fatal(err)
	}
	rs := mkReadings(0, 100)
	mustAppend(t, b, rs)
	if err := b.commit(); err != nil {
		t.Fatal(err)
	}
	if again := mustTake(t, b, 1000, reading.Filter{}); len(again) != 100 {
		t.Fatalf("after draining, %d of 100 new readings kept", len(again))
	}
}

func TestMaxAge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, MaxAge: time.Hour, CommitInterval: time.Hour})
	now := time.Now().UTC()
	rs := mkReadings(0, 4)
	rs[0].Time, rs[0].Synced = now.Add(-3*time.Hour), true  // too old: dropped
	rs[1].Time, rs[1].Synced = now.Add(-2*time.Hour), false // unsynced: no trusted age, kept
	rs[2].Time, rs[2].Synced = now.Add(-2*time.Hour), true  // too old: dropped
	rs[3].Time, rs[3].Synced = now.Add(-time.Minute), true  // young: kept
	mustAppend(t, b, rs)
	if err := b.commit(); err != nil {
		t.Fatal(err)
	}
	got := mustTake(t, b, 10, reading.Filter{})
	if len(got) != 2 || got[0].ID != rs[1].ID || got[1].ID != rs[3].ID {
		t.Fatalf("kept %v, want %d and %d", reading.IDs(got), rs[1].ID, rs[3].ID)
	}
	if d := b.Stats().Drops[ReasonMaxAge]; d != 2 {
		t.Fatalf("max_age drops %d, want 2", d)
	}
	b.Release(reading.IDs(got))
	closeBuf(t, b)

	// Ageing also happens with nothing else to write, at open's first
	// check (readings may have aged while the daemon was stopped).
	b2 := mustOpen(t, Options{Path: path, MaxAge: 30 * time.Second, CommitInterval: time.Hour})
	if err := b2.foldNow(); err != nil {
		t.Fatal(err)
	}
	if got := mustTake(t, b2, 10, reading.Filter{}); len(got) != 1 || got[0].ID != rs[1].ID {
		t.Fatalf("after reopen kept %v, want only the unsynced %d", reading.IDs(got), rs[1].ID)
	}
	_ = context.Background
}

// TestMaxSizeLowered: the technician lowers max_size below what the file
// already holds. The buffer opens, drops the oldest to make room and keeps
// storing new readings.
func TestMaxSizeLowered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	fillPast(t, b, path, 1<<30, 60000)
	closeBuf(t, b)
	fi, _ := os.Stat(path)
	const maxSize = 1 << 20
	if fi.Size() <= maxSize {
		t.Fatalf("setup: file %d bytes, want more than %d", fi.Size(), maxSize)
	}
	b = mustOpen(t, Options{Path: path, MaxSize: maxSize, CommitInterval: time.Hour})
	last := mkReadings(50000, 200)
	for i := 0; i < 5; i++ {
		mustAppend(t, b, last[i*40:(i+1)*40])
		if err := b.foldNow(); err != nil {
			t.Fatalf("commit %d over a lowered bound: %v", i, err)
		}
	}
	s := b.Stats()
	if s.Drops[ReasonMaxSize] == 0 {
		t.Fatalf("nothing dropped: %+v", s)
	}
	got := mustTake(t, b, 100000, reading.Filter{})
	if got[len(got)-1].ID != last[len(last)-1].ID {
		t.Fatal("the newest readings were not kept")
	}
	t.Logf("file %d bytes -> %d, %d readings kept, %d dropped", fi.Size(), s.Bytes, s.Depth, s.Drops[ReasonMaxSize])
}
