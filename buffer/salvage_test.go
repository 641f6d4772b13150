package buffer

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"gatewayd/internal/reading"
)

// leafPage is a leaf of the readings bucket and the IDs on it.
type leafPage struct {
	id  uint64
	ids []reading.ID
}

// readingsLeaves lists the leaves of the readings bucket of an intact file,
// in key order, by walking it as rawCheck does.
func readingsLeaves(t *testing.T, path string) ([]leafPage, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	w := &walker{f: f, size: fi.Size(), seen: map[uint64]bool{}}
	m, err := w.currentMeta()
	if err != nil {
		t.Fatal(err)
	}
	w.ps, w.hwm = int64(m.pageSize), m.hwm
	if _, err := w.tree(m.root, 0, nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	d := fileDict(t, path)
	var out []leafPage
	for id := uint64(2); id < m.hwm; id++ {
		if !w.seen[id] {
			continue
		}
		p := make([]byte, w.ps)
		if _, err := f.ReadAt(p, int64(id)*w.ps); err != nil {
			t.Fatal(err)
		}
		if le.Uint16(p[8:]) != flagLeaf {
			continue
		}
		var lp leafPage
		for i := 0; i < int(le.Uint16(p[10:])); i++ {
			k, v, _, fl, ok := elem(p, i, false)
			if !ok || fl&bucketLeaf != 0 {
				continue
			}
			if n, err := decodeAny(string(bucketReadings), k, v, d); err == nil && n == 1 {
				id, _ := keyID(k)
				lp.ids = append(lp.ids, id)
			}
		}
		if len(lp.ids) > 0 {
			lp.id = id
			out = append(out, lp)
		}
	}
	slices.SortFunc(out, func(a, b leafPage) int { return int(a.ids[0] - b.ids[0]) })
	return out, w.ps
}

// fileDict loads the dictionary of an intact file that no one holds open.
func fileDict(t *testing.T, path string) *Dict {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var d *Dict
	if err := db.View(func(tx *bolt.Tx) (err error) { d, err = loadDict(tx); return err }); err != nil {
		t.Fatal(err)
	}
	return d
}

func garbage(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TestSalvageOneBadPage: a page of garbage in the middle of the readings
// costs the samples on that page and no others. The figure was 180
// of 180 readings lost to one bad page; with 4 KiB pages and record v2 a
// leaf holds about 90 one-value samples, so the file here holds 720 (8
// leaves).
func TestSalvageOneBadPage(t *testing.T) {
	const m = 720
	path, _ := makeFile(t, m)
	want := mkReadings(0, m)
	leaves, ps := readingsLeaves(t, path)
	if len(leaves) < 3 {
		t.Fatalf("want a tree of several leaves, got %d", len(leaves))
	}
	victim := leaves[len(leaves)/2]
	overwrite(t, path, int64(victim.id)*ps, garbage(int(ps), 7))

	b, err := Open(Options{Path: path, CommitInterval: time.Hour, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s := b.Stats()
	lost := len(victim.ids)
	t.Logf("one bad page (page %d, %d samples): %d of %d samples salvaged, %d unrecoverable (before: 0 of %d)",
		victim.id, lost, s.Salvaged, m, s.Unrecoverable, m)
	if s.CorruptFiles != 1 || s.AsideFiles != 1 {
		t.Fatalf("want the file set aside and kept: %+v", s)
	}
	if s.Salvaged != uint64(m-lost) || s.Unrecoverable != uint64(lost) || s.Depth != m-lost {
		t.Fatalf("salvage: %d salvaged, %d unrecoverable, depth %d; want %d, %d, %d",
			s.Salvaged, s.Unrecoverable, s.Depth, m-lost, lost, m-lost)
	}
	got := mustTake(t, b, 1000, reading.Filter{})
	if len(got) != m-lost {
		t.Fatalf("took %d readings, want %d", len(got), m-lost)
	}
	// Every salvaged reading is the one appended, under its own ID, and
	// none from the bad page came back.
	byID := map[reading.ID]reading.Sample{}
	for _, r := range got {
		byID[r.ID] = r
	}
	first := got[0].ID
	if slices.Contains(victim.ids, first) {
		t.Fatal("a reading of the bad page came back")
	}
	base := leaves[0].ids[0]
	for i, w := range want {
		w.ID = base + reading.ID(i)
		r, ok := byID[w.ID]
		if slices.Contains(victim.ids, w.ID) {
			if ok {
				t.Fatalf("reading %d from the bad page salvaged", w.ID)
			}
			continue
		}
		if !ok || !sameReading(r, w) {
			t.Fatalf("reading %d: got %+v (present %v), want %+v", w.ID, r, ok, w)
		}
	}
	// New IDs stay above everything the damaged file held.
	rs := mkReadings(m, 1)
	mustAppend(t, b, rs)
	if rs[0].ID <= leaves[len(leaves)-1].ids[len(leaves[len(leaves)-1].ids)-1] {
		t.Fatalf("new ID %d not above the salvaged ones", rs[0].ID)
	}
	closeBuf(t, b)

	// The figures are kept in the file: buffer stats shows them, and a
	// restart neither salvages again nor forgets.
	st, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Salvaged != uint64(m-lost) || st.Unrecoverable != uint64(lost) || st.AsideFiles != 1 || st.AsideBytes == 0 {
		t.Fatalf("Inspect: %+v", st)
	}
	b2 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	if s := b2.Stats(); s.Salvaged != uint64(m-lost) || s.CorruptFiles != 0 || s.Depth != m-lost+1 {
		t.Fatalf("after restart: %+v", s)
	}
}

// TestSalvageFourKiBMidFile is the proof harness's damage (4 KiB of random
// bytes at the middle of the file, rounded down to 4 KiB) on a file of 720
// samples: every sample is accounted for as salvaged or unrecoverable.
func TestSalvageFourKiBMidFile(t *testing.T) {
	const m = 720
	path, _ := makeFile(t, m)
	fi, _ := os.Stat(path)
	overwrite(t, path, (fi.Size()/2)&^4095, garbage(4096, 11))
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	s := b.Stats()
	t.Logf("4 KiB of random bytes mid-file: %d of %d samples salvaged, %d unrecoverable (before: 0 of %d)",
		s.Salvaged, m, s.Unrecoverable, m)
	if s.CorruptFiles != 1 || s.Salvaged+s.Unrecoverable != m || s.Salvaged == 0 || s.Depth != int(s.Salvaged) {
		t.Fatalf("salvage: %+v", s)
	}
}

// TestSalvageWithJournal: readings only in the journal (not yet folded)
// survive a damaged file, and acks the journal holds for readings of the
// damaged file are applied to the salvaged ones.
func TestSalvageWithJournal(t *testing.T) {
	const folded, journaled, acked = 600, 30, 20
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	mustAppend(t, b, mkReadings(0, folded))
	if err := b.foldNow(); err != nil {
		t.Fatal(err)
	}
	rs := mustTake(t, b, acked, reading.Filter{})
	if err := b.Ack(refs(reading.IDs(rs)...)); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, b, mkReadings(folded, journaled))
	if err := b.commit(); err != nil { // one journal window: new readings and the acks
		t.Fatal(err)
	}
	if s := b.Stats(); s.Folds != 1 {
		t.Fatalf("want the window in the journal, not folded: %+v", s)
	}
	crash(t, b) // the journal holds the window, the file the fold

	leaves, ps := readingsLeaves(t, path)
	victim := leaves[len(leaves)-2]
	overwrite(t, path, int64(victim.id)*ps, garbage(int(ps), 3))
	b2 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	s := b2.Stats()
	wantDepth := folded - len(victim.ids) - acked + journaled
	if s.CorruptFiles != 1 || s.Depth != wantDepth || s.Unrecoverable != uint64(len(victim.ids)) {
		t.Fatalf("after salvage with a journal: %+v; want depth %d, %d unrecoverable", s, wantDepth, len(victim.ids))
	}
	got := mustTake(t, b2, 1000, reading.Filter{})
	ids := map[reading.ID]bool{}
	for _, r := range got {
		ids[r.ID] = true
	}
	for _, r := range rs {
		if ids[r.ID] {
			t.Fatalf("acked reading %d came back", r.ID)
		}
	}
	if len(got) != wantDepth {
		t.Fatalf("took %d, want %d", len(got), wantDepth)
	}
}

// TestSalvageResumes: a salvage that did not finish (a crash or an I/O error
// part-way) is resumed at the next start, and counted once.
func TestSalvageResumes(t *testing.T) {
	const m = 400
	path, _ := makeFile(t, m)
	leaves, ps := readingsLeaves(t, path)
	overwrite(t, path, int64(leaves[1].id)*ps, garbage(int(ps), 5))
	lost := len(leaves[1].ids)
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	closeBuf(t, b)
	// Put the marker back, as a salvage interrupted after it was written.
	aside, _ := listAside(path)
	b3 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	if err := b3.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySalvageFrom, []byte(filepath.Base(aside[0].name)))
	}); err != nil {
		t.Fatal(err)
	}
	// ... and the counters as they were before it finished.
	if err := b3.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keySalvage) }); err != nil {
		t.Fatal(err)
	}
	closeBuf(t, b3)
	b4 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	s := b4.Stats()
	if s.Depth != m-lost || s.Salvaged != uint64(m-lost) || s.Unrecoverable != uint64(lost) || s.CorruptFiles != 0 {
		t.Fatalf("resumed salvage: %+v; want depth %d", s, m-lost)
	}
}

// TestAsidePruned: set-aside files count against MaxSize. The oldest go
// first, each deletion counted, and the buffer file's own cap shrinks by
// what is kept.
func TestAsidePruned(t *testing.T) {
	const maxSize = 4 << 20
	dir := t.TempDir()
	path := filepath.Join(dir, "b.db")
	// Five set-aside files of 340 KiB, a minute apart: a quarter of
	// MaxSize (1 MiB) keeps three of them.
	var names []string
	for i := 0; i < 5; i++ {
		n := fmt.Sprintf("%s.corrupt-%s", path, baseTime.Add(time.Duration(i)*time.Minute).Format("20060102T150405.000000Z"))
		if err := os.WriteFile(n, make([]byte, 340<<10), 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour, MaxSize: maxSize})
	s := b.Stats()
	if s.AsidePruned != 2 || s.AsideFiles != 3 || s.AsideBytes != 3*340<<10 {
		t.Fatalf("pruning: %+v", s)
	}
	for i, n := range names {
		_, err := os.Stat(n)
		if gone := err != nil; gone != (i < 2) {
			t.Fatalf("file %d (%s): gone=%v, want the two oldest gone", i, n, gone)
		}
	}
	if got, want := b.db.MaxSize, maxSize-int(journalSizeFor(b.o))-3*340<<10; got != want {
		t.Fatalf("bbolt cap %d, want %d (MaxSize minus journal minus set-aside files)", got, want)
	}
	// A damaged file set aside now is the newest: the oldest kept goes.
	closeBuf(t, b)
	overwrite(t, path, 0, make([]byte, 8192)) // both meta pages (4 KiB each)
	b2, err := Open(Options{Path: path, CommitInterval: time.Hour, MaxSize: maxSize, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer closeBuf(t, b2)
	s = b2.Stats()
	left, _ := listAside(path)
	if s.CorruptFiles != 1 || s.AsidePruned != 1 || len(left) != 3 || left[0].name != names[3] {
		t.Fatalf("after a new set-aside: %+v, left %v", s, left)
	}
	// Without MaxSize, at most maxAsideFiles are kept.
	dir2 := t.TempDir()
	path2 := filepath.Join(dir2, "b.db")
	for i := 0; i < maxAsideFiles+2; i++ {
		n := fmt.Sprintf("%s.corrupt-%s", path2, baseTime.Add(time.Duration(i)*time.Minute).Format("20060102T150405.000000Z"))
		if err := os.WriteFile(n, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b3 := mustOpen(t, Options{Path: path2, CommitInterval: time.Hour})
	if s := b3.Stats(); s.AsidePruned != 2 || s.AsideFiles != maxAsideFiles {
		t.Fatalf("unbounded: %+v", s)
	}
}

// metaRoot returns the page size and root page of an intact file.
func metaRoot(t *testing.T, path string) (int64, uint64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := (&walker{f: f}).currentMeta()
	if err != nil {
		t.Fatal(err)
	}
	return int64(m.pageSize), m.root
}

// TestSalvageWithoutMeta: both meta pages destroyed. The last fold's root
// page, found by a scan and vouched for by the journal's epoch, still leads
// to every reading; without that proof nothing is salvaged, because an
// older root page would bring back readings acked since.
func TestSalvageWithoutMeta(t *testing.T) {
	const m = 180
	t.Run("root found", func(t *testing.T) {
		path, _ := makeFile(t, m)
		ps, _ := metaRoot(t, path)
		overwrite(t, path, 0, garbage(int(2*ps), 1))
		b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
		s := b.Stats()
		t.Logf("both meta pages destroyed: %d of %d samples salvaged", s.Salvaged, m)
		if s.CorruptFiles != 1 || s.Salvaged != m || s.Unrecoverable != 0 || s.Depth != m {
			t.Fatalf("%+v", s)
		}
		want := mkReadings(0, m)
		got := mustTake(t, b, 1000, reading.Filter{})
		for i := range got {
			want[i].ID = got[i].ID
			if !sameReading(got[i], want[i]) {
				t.Fatalf("reading %d: %+v, want %+v", i, got[i], want[i])
			}
		}
	})
	t.Run("no journal to vouch", func(t *testing.T) {
		path, _ := makeFile(t, m)
		ps, _ := metaRoot(t, path)
		overwrite(t, path, 0, garbage(int(2*ps), 1))
		if err := os.Remove(path + journalSuffix); err != nil {
			t.Fatal(err)
		}
		b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
		if s := b.Stats(); s.CorruptFiles != 1 || s.Salvaged != 0 || s.Depth != 0 {
			t.Fatalf("%+v", s)
		}
	})
	t.Run("newest root lost too", func(t *testing.T) {
		// Two folds: the second acks half the readings. With its root
		// page gone as well, the first fold's root would bring the
		// acked half back: nothing is salvaged.
		path := filepath.Join(t.TempDir(), "b.db")
		b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
		mustAppend(t, b, mkReadings(0, m))
		if err := b.foldNow(); err != nil {
			t.Fatal(err)
		}
		rs := mustTake(t, b, m/2, reading.Filter{})
		if err := b.Ack(refs(reading.IDs(rs)...)); err != nil {
			t.Fatal(err)
		}
		closeBuf(t, b) // the second fold
		ps, root := metaRoot(t, path)
		overwrite(t, path, 0, garbage(int(2*ps), 1))
		overwrite(t, path, int64(root)*ps, garbage(int(ps), 2))
		b2 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
		if s := b2.Stats(); s.CorruptFiles != 1 || s.Salvaged != 0 || s.Depth != 0 {
			t.Fatalf("an older root was salvaged: %+v", s)
		}
	})
	t.Run("the harness's 8 KiB", func(t *testing.T) {
		// The proof harness's damage: the first 8 KiB random (both
		// meta pages at 4 KiB; pages 0-7 of a file of the release
		// before, at 1 KiB).
		path, _ := makeFile(t, m)
		overwrite(t, path, 0, garbage(8192, 4))
		b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
		s := b.Stats()
		t.Logf("first 8 KiB random: %d of %d samples salvaged, %d unrecoverable", s.Salvaged, m, s.Unrecoverable)
		if s.CorruptFiles != 1 || s.Salvaged+s.Unrecoverable != m || s.Salvaged == 0 {
			t.Fatalf("%+v", s)
		}
	})
}

// TestSalvageV1File: a file written by the release before samples (record
// v1, 1 KiB pages, no dictionary; the upgrade fixture, with windows left in
// its journal) that is damaged before the new release ever opened it cleanly
// is salvaged too: every v1 record off the bad page comes back as it was
// stored, the journal's windows are applied on top, and only the bad page's
// records are lost.
func TestSalvageV1File(t *testing.T) {
	pending, dead := readExpected(t)
	path := copyFixture(t)
	leaves, ps := readingsLeaves(t, path)
	if len(leaves) < 3 || ps != 1024 {
		t.Fatalf("want a v1 tree of several 1 KiB leaves, got %d of %d bytes", len(leaves), ps)
	}
	inFile := 0
	for _, l := range leaves {
		inFile += len(l.ids)
	}
	victim := leaves[len(leaves)/2]
	overwrite(t, path, int64(victim.id)*ps, garbage(int(ps), 9))

	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	s := b.Stats()
	t.Logf("v1 file, one bad page (%d records): %d of %d records salvaged, %d unrecoverable", len(victim.ids), s.Salvaged, inFile, s.Unrecoverable)
	if s.CorruptFiles != 1 || s.Salvaged != uint64(inFile-len(victim.ids)) || s.Unrecoverable < uint64(len(victim.ids)) {
		t.Fatalf("salvage of a v1 file: %+v; want %d salvaged", s, inFile-len(victim.ids))
	}
	closeBuf(t, b)

	lost := map[reading.ID]bool{}
	for _, id := range victim.ids {
		lost[id] = true
	}
	want := map[reading.ID]ExportRecord{}
	for _, r := range pending {
		if !lost[r.ID] {
			want[r.ID] = r
		}
	}
	got := exportAll(t, path)
	if len(got["pending"]) != len(want) {
		t.Fatalf("after salvage: %d pending, want %d (%d of the fixture's %d were on the bad page)",
			len(got["pending"]), len(want), len(pending)-len(want), len(pending))
	}
	for _, r := range got["pending"] {
		w, ok := want[r.ID]
		if !ok || !sameExport(r, w) {
			t.Fatalf("salvaged %+v, want %+v (present %v)", r, w, ok)
		}
	}
	if len(got["dead"]) != len(dead) {
		t.Fatalf("dead letters after salvage: %d, want %d", len(got["dead"]), len(dead))
	}
}

// TestSalvageSamplesAndDictionary: record v2 samples of several values,
// sensors and boots are salvaged value-exact through the damaged file's
// dictionary, and names interned after the salvage (a new sensor, a new
// boot) get indices of their own: after a restart every sample still reads
// back with its own names.
func TestSalvageSamplesAndDictionary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	var want []reading.Sample
	for i, sensor := range []string{"attic", "cellar", "porch"} {
		ss := mkBME(sensor, i*1000, 300)
		if i == 2 {
			for k := range ss {
				ss[k].BootID = "second-boot"
			}
		}
		mustAppend(t, b, ss)
		want = append(want, ss...)
	}
	closeBuf(t, b)
	for i := range want { // as stored: at their resolution
		for k, v := range want[i].Values {
			want[i].Values[k].Value = normalize(v.Value, v.Resolution)
		}
	}
	leaves, ps := readingsLeaves(t, path)
	if len(leaves) < 4 {
		t.Fatalf("want several leaves, got %d", len(leaves))
	}
	victim := leaves[len(leaves)/2]
	overwrite(t, path, int64(victim.id)*ps, garbage(int(ps), 13))
	lost := map[reading.ID]bool{}
	for _, id := range victim.ids {
		lost[id] = true
	}

	b = mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	s := b.Stats()
	if s.CorruptFiles != 1 || s.Salvaged != uint64(len(want)-len(victim.ids)) || s.Values != 3*int(s.Salvaged) {
		t.Fatalf("salvage: %+v; want %d samples of 3 values", s, len(want)-len(victim.ids))
	}
	// A new sensor on a new boot, interned after the salvage.
	fresh := mkReadings(0, 2)
	fresh[0].Sensor, fresh[0].BootID = "shed", "third-boot"
	fresh[1].Sensor, fresh[1].BootID = "shed", "third-boot"
	mustAppend(t, b, fresh)
	closeBuf(t, b)

	b = mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	got := mustTake(t, b, 100000, reading.Filter{})
	byID := map[reading.ID]reading.Sample{}
	for _, g := range got {
		byID[g.ID] = g
	}
	n := 0
	for _, w := range append(want, fresh...) {
		g, ok := byID[w.ID]
		if lost[w.ID] {
			if ok {
				t.Fatalf("sample %d of the bad page came back", w.ID)
			}
			continue
		}
		if !ok || !sameReading(g, w) {
			t.Fatalf("sample %d: got %+v (present %v), want %+v", w.ID, g, ok, w)
		}
		n++
	}
	if n != len(got) {
		t.Fatalf("took %d samples, matched %d", len(got), n)
	}
}
