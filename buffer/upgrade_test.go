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

// The fixture in testdata/ was written by the release before samples
// (commit 17fe87d, record v1, 1 KiB pages) and left as a kill -9 leaves it:
// 12 sampling rounds of three BME280s folded into bbolt (some acked, two
// dead-lettered), four more rounds in journal windows only, with acks and
// dead letters after them. testdata/gen_v1_fixture_test.go.txt is the
// generator (copy it into buffer/ of that commit and run it with
// V1_FIXTURE_DIR set); v1-export.jsonl is what that release's Export said.
// Each v1 record is read as a sample of one value under its own ID.

func readExpected(t *testing.T) (pending, dead []ExportRecord) {
	t.Helper()
	raw, err := os.ReadFile("testdata/v1-export.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	for dec.More() {
		var r ExportRecord
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		if r.State == "dead" {
			dead = append(dead, r)
		} else {
			pending = append(pending, r)
		}
	}
	if len(pending) != 127 || len(dead) != 4 {
		t.Fatalf("fixture: %d pending, %d dead", len(pending), len(dead))
	}
	return pending, dead
}

func copyFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range []string{"v1.db", "v1.db.journal"} {
		raw, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "buffer"+n[2:]), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "buffer.db")
}

func sameExport(a, b ExportRecord) bool {
	return a.ID == b.ID && a.State == b.State && a.Sensor == b.Sensor && a.Measurement == b.Measurement &&
		a.Property == b.Property && a.Value == b.Value && a.Unit == b.Unit && a.Time.Equal(b.Time) &&
		a.MonoNS == b.MonoNS && a.BootID == b.BootID && a.Synced == b.Synced && a.Reason == b.Reason
}

// TestUpgradeFromV1: the read-only tools read the old file as it is, and the
// new buffer opens it, folds its journal, hands out every waiting reading
// exactly as the old release stored it, acks them all, and keeps the dead
// letters.
func TestUpgradeFromV1(t *testing.T) {
	pending, dead := readExpected(t)
	path := copyFixture(t)

	// Before any upgrade: Inspect and Export read v1 as it is.
	if s, err := Inspect(path); err != nil || s.Depth != 127 || s.Values != 127 || s.DeadLetters != 4 {
		t.Fatalf("Inspect of the v1 file: %+v %v", s, err)
	}
	got := exportAll(t, path)
	if len(got["pending"]) != 127 || len(got["dead"]) != 4 {
		t.Fatalf("Export of the v1 file: %d pending, %d dead", len(got["pending"]), len(got["dead"]))
	}
	for i, r := range got["pending"] {
		if !sameExport(r, pending[i]) {
			t.Fatalf("export [%d] = %+v, want %+v", i, r, pending[i])
		}
	}

	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	if s := b.Stats(); s.Depth != 127 || s.DeadLetters != 4 || s.CorruptFiles != 0 {
		t.Fatalf("after upgrade: %+v", s)
	}
	want := map[reading.ID]ExportRecord{}
	for _, r := range pending {
		want[r.ID] = r
	}
	var all []reading.Sample
	for i := 0; i < 20; i++ {
		ss := mustTake(t, b, 40, reading.Filter{})
		if len(ss) == 0 {
			break
		}
		for _, s := range ss {
			w, ok := want[s.ID]
			if !ok || len(s.Values) != 1 {
				t.Fatalf("took %+v, not a waiting v1 reading", s)
			}
			v := s.Values[0]
			if s.Sensor != w.Sensor || v.Measurement != w.Measurement || v.Value != w.Value || v.Unit != w.Unit ||
				!s.Time.Equal(w.Time) || int64(s.Mono) != w.MonoNS || s.BootID != w.BootID || s.Synced != w.Synced {
				t.Fatalf("took %+v, want %+v", s, w)
			}
			delete(want, s.ID)
		}
		all = append(all, ss...)
		if err := b.Ack(reading.Refs(ss)); err != nil {
			t.Fatal(err)
		}
		if err := b.commit(); err != nil {
			t.Fatal(err)
		}
	}
	if len(want) != 0 {
		t.Fatalf("%d waiting readings never handed out", len(want))
	}
	// New samples go on from the old IDs.
	more := mkBME("air", 0, 2)
	mustAppend(t, b, more)
	if more[0].ID <= all[len(all)-1].ID {
		t.Fatalf("new ID %d not above the old file's %d", more[0].ID, all[len(all)-1].ID)
	}
	if err := b.Ack(reading.Refs(mustTake(t, b, 100, reading.Filter{}))); err != nil {
		t.Fatal(err)
	}
	closeBuf(t, b)
	b = mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	if s := b.Stats(); s.Depth != 0 || s.DeadLetters != 4 {
		t.Fatalf("after draining: %+v", s)
	}
	// The old file keeps its 1 KiB pages until a compaction rewrites it
	// with the OS page size.
	if b.pageSize != 1024 {
		t.Fatalf("the v1 file has %d-byte pages, want 1024", b.pageSize)
	}
	if err := b.compact(); err != nil {
		t.Fatal(err)
	}
	if b.pageSize != os.Getpagesize() {
		t.Fatalf("after compaction: %d-byte pages, want %d", b.pageSize, os.Getpagesize())
	}
	closeBuf(t, b)
	got = exportAll(t, path)
	if len(got["pending"]) != 0 || len(got["dead"]) != 4 {
		t.Fatalf("after draining: %d pending, %d dead", len(got["pending"]), len(got["dead"]))
	}
	for _, r := range got["dead"] {
		found := false
		for _, w := range dead {
			if r.ID == w.ID && r.Reason == w.Reason && r.Value == w.Value && r.Measurement == w.Measurement {
				found = true
			}
		}
		if !found {
			t.Fatalf("dead letter %+v is not one of the old file's", r)
		}
	}
}
