package buffer

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

// makeFile writes a committed buffer of n readings and returns its path and
// the highest ID it handed out.
func makeFile(t *testing.T, n int) (string, reading.ID) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	rs := mkReadings(0, n)
	mustAppend(t, b, rs)
	closeBuf(t, b)
	return path, rs[n-1].ID
}

func TestCorruptFilesSetAside(t *testing.T) {
	damage := map[string]func(t *testing.T, path string){
		"truncated to half": func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		},
		"truncated to 100 bytes": func(t *testing.T, path string) {
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		},
		"both meta pages zeroed": func(t *testing.T, path string) {
			overwrite(t, path, 0, make([]byte, 8192))
		},
		"garbage over the data pages": func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			junk := make([]byte, fi.Size()-8192)
			for i := range junk {
				junk[i] = byte(i*7 + 3)
			}
			overwrite(t, path, 8192, junk)
		},
		"not a bbolt file": func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("this is a text file, not a database\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			path, lastID := makeFile(t, 2000)
			f(t, path)
			b, err := Open(Options{Path: path, CommitInterval: time.Hour, Logger: testLogger(t)})
			if err != nil {
				t.Fatalf("Open on a damaged file: %v", err)
			}
			defer closeBuf(t, b)
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("want the damaged file set aside once, found %v", aside)
			}
			// What its intact pages held is salvaged (salvage_test.go),
			// every reading of it counted one way or the other when
			// its tree could be read at all.
			s := b.Stats()
			if s.CorruptFiles != 1 || s.Depth != int(s.Salvaged) || s.Salvaged+s.Unrecoverable > 2000 {
				t.Fatalf("stats after set-aside: %+v", s)
			}
			t.Logf("%s: %d salvaged, %d unrecoverable", name, s.Salvaged, s.Unrecoverable)
			// The fresh buffer works, and its IDs are above the old file's.
			rs := mkReadings(0, 2)
			mustAppend(t, b, rs)
			if rs[0].ID <= lastID {
				t.Fatalf("ID %d reused the lost file's range (last %d)", rs[0].ID, lastID)
			}
			if got := mustTake(t, b, 5000, reading.Filter{}); len(got) != int(s.Salvaged)+2 || got[len(got)-1].ID != rs[1].ID {
				t.Fatalf("take from fresh buffer: %d", len(got))
			}
		})
	}
}

// TestOneMetaPageDamaged: bbolt keeps two meta pages so that one torn write
// loses at most the last transaction; such a file is not corrupt.
func TestOneMetaPageDamaged(t *testing.T) {
	path, _ := makeFile(t, 100)
	overwrite(t, path, 16, make([]byte, 64)) // meta0's fields, keep the header
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	if s := b.Stats(); s.CorruptFiles != 0 {
		t.Fatalf("a file with one good meta page was set aside: %+v", s)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 0 {
		t.Fatalf("set aside: %v", aside)
	}
}

func TestCorruptFileInspectRefuses(t *testing.T) {
	path, _ := makeFile(t, 100)
	overwrite(t, path, 0, make([]byte, 8192))
	if _, err := Inspect(path); err == nil || errors.Is(err, ErrLocked) {
		t.Fatalf("Inspect on a corrupt file: %v", err)
	}
	// Read-only tools never move the file.
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestRandomDamageNeverCrashes flips bytes at random places of a real file:
// whatever bbolt makes of it, Open must either keep the file (damage in free
// space or a value, which then becomes a dead letter) or set it aside, and
// the buffer must work afterwards.
func TestRandomDamageNeverCrashes(t *testing.T) {
	path, _ := makeFile(t, 1500)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	kept, aside := 0, 0
	for i := 0; i < 40; i++ {
		dir := t.TempDir()
		p := filepath.Join(dir, "b.db")
		dam := append([]byte(nil), orig...)
		for j := 0; j < 1+rng.IntN(8); j++ {
			dam[rng.IntN(len(dam))] ^= byte(1 + rng.IntN(255))
		}
		if err := os.WriteFile(p, dam, 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := Open(Options{Path: p, CommitInterval: time.Hour, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("round %d: Open: %v", i, err)
		}
		if b.Stats().CorruptFiles > 0 {
			aside++
		} else {
			kept++
		}
		rs := mustTake(t, b, 5000, reading.Filter{})
		for _, r := range rs {
			if r.ID == 0 {
				t.Fatalf("round %d: reading without ID", i)
			}
		}
		if err := b.Ack(reading.IDs(rs)); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, b, mkReadings(0, 3))
		closeBuf(t, b)
	}
	t.Logf("random damage: %d files kept, %d set aside", kept, aside)
}
