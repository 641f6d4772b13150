package buffer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzOpenFile feeds damaged buffer files to what reads them before trusting
// them: Inspect's lock-free walk and a read-only open (raw page walk, then
// bbolt with its own checker). None may crash the process; a file the raw
// walk accepts must be one bbolt can read. Seeds are real buffer files.
func FuzzOpenFile(f *testing.F) {
	dir := f.TempDir()
	for i, n := range []int{0, 5, 300} {
		path := filepath.Join(dir, "seed"+string(rune('a'+i)))
		b, err := Open(Options{Path: path, CommitInterval: time.Hour, Logger: testLogger(f)})
		if err != nil {
			f.Fatal(err)
		}
		if n > 0 {
			if err := b.Append(context.Background(), mkReadings(0, n)); err != nil {
				f.Fatal(err)
			}
		}
		if err := b.Close(context.Background()); err != nil {
			f.Fatal(err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		path := filepath.Join(t.TempDir(), "b.db")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = Inspect(path)
		op, err := openChecked(path, time.Second, true)
		if err == nil {
			closeQuietly(op.db)
		}
		// Salvage walks whatever it is given without trusting it:
		// it never panics, and never fails on damage (only on I/O).
		fresh, err := openChecked(filepath.Join(t.TempDir(), "fresh.db"), time.Second, false)
		if err != nil {
			t.Fatal(err)
		}
		defer closeQuietly(fresh.db)
		fresh.db.NoSync = true // fsyncs would make the fuzzer crawl
		if _, err := salvage(fresh.db, path, path+journalSuffix); err != nil {
			t.Fatalf("salvage of a damaged file failed: %v", err)
		}
	})
}
