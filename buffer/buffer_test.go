package buffer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

func TestAppendAssignsIncreasingIDs(t *testing.T) {
	for _, interval := range []time.Duration{0, time.Hour} {
		b := mustOpen(t, Options{CommitInterval: interval})
		rs := mkReadings(0, 5)
		mustAppend(t, b, rs[:2])
		mustAppend(t, b, rs[2:])
		for i := 1; i < len(rs); i++ {
			if rs[i].ID <= rs[i-1].ID || rs[i-1].ID == 0 {
				t.Fatalf("interval %v: IDs not increasing: %d then %d", interval, rs[i-1].ID, rs[i].ID)
			}
		}
	}
}

func TestTakeAckReleaseRoundTrip(t *testing.T) {
	for _, interval := range []time.Duration{0, time.Hour} {
		t.Run(interval.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "b.db")
			b := mustOpen(t, Options{Path: path, CommitInterval: interval})
			rs := mkReadings(0, 10)
			mustAppend(t, b, rs)

			got := mustTake(t, b, 4, reading.Filter{})
			if len(got) != 4 {
				t.Fatalf("took %d, want 4", len(got))
			}
			for i := range got {
				if !sameReading(got[i], rs[i]) {
					t.Fatalf("take[%d] = %+v, want %+v", i, got[i], rs[i])
				}
			}
			// In flight: not handed out again.
			more := mustTake(t, b, 100, reading.Filter{})
			if len(more) != 6 || more[0].ID != rs[4].ID {
				t.Fatalf("second take: %d readings starting %v, want 6 starting %d", len(more), more, rs[4].ID)
			}
			if n := len(mustTake(t, b, 100, reading.Filter{})); n != 0 {
				t.Fatalf("everything in flight, yet take returned %d", n)
			}
			b.Release(reading.IDs(more))
			if err := b.Ack(reading.Refs(got)); err != nil {
				t.Fatal(err)
			}
			if s := b.Stats(); s.Depth != 6 || s.InFlight != 0 {
				t.Fatalf("stats after ack: depth %d in flight %d, want 6 and 0", s.Depth, s.InFlight)
			}
			again := mustTake(t, b, 100, reading.Filter{})
			if len(again) != 6 || again[0].ID != rs[4].ID {
				t.Fatalf("after release: %d readings", len(again))
			}
			closeBuf(t, b)

			// Reopen: the acked ones are gone, the rest are there once, unchanged.
			b2 := mustOpen(t, Options{Path: path, CommitInterval: interval})
			left := mustTake(t, b2, 100, reading.Filter{})
			if len(left) != 6 {
				t.Fatalf("after reopen: %d readings, want 6", len(left))
			}
			for i := range left {
				if !sameReading(left[i], rs[4+i]) {
					t.Fatalf("after reopen [%d] = %+v, want %+v", i, left[i], rs[4+i])
				}
			}
		})
	}
}

func TestTakeOrderAndFilter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	rs := mkReadings(0, 6)
	mustAppend(t, b, rs[:3])
	closeBuf(t, b) // commits the first three
	b = mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	mustAppend(t, b, rs[3:]) // the rest stay pending in memory

	newest := mustTake(t, b, 4, reading.Filter{NewestFirst: true})
	want := []reading.ID{rs[5].ID, rs[4].ID, rs[3].ID, rs[2].ID}
	if len(newest) != 4 {
		t.Fatalf("newest first: %d readings", len(newest))
	}
	for i := range want {
		if newest[i].ID != want[i] {
			t.Fatalf("newest first [%d] = %d, want %d", i, newest[i].ID, want[i])
		}
	}
	b.Release(reading.IDs(newest))

	f := reading.Filter{NotBefore: rs[1].Time, Before: rs[4].Time}
	mid := mustTake(t, b, 10, f)
	if len(mid) != 3 || mid[0].ID != rs[1].ID || mid[2].ID != rs[3].ID {
		t.Fatalf("time filter: got %v", reading.IDs(mid))
	}
}

func TestAckedBeforeCommitNeverWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	rs := mkReadings(0, 50)
	for i := range rs {
		rs[i].Sensor = "never-on-disk-marker"
	}
	mustAppend(t, b, rs)
	got := mustTake(t, b, 100, reading.Filter{})
	if len(got) != 50 {
		t.Fatalf("took %d", len(got))
	}
	if err := b.Ack(reading.Refs(got)); err != nil {
		t.Fatal(err)
	}
	closeBuf(t, b)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("never-on-disk-marker")) {
		t.Fatal("readings acked before their commit reached the file")
	}
	if s, err := Inspect(path); err != nil || s.Depth != 0 {
		t.Fatalf("Inspect: depth %d, err %v", s.Depth, err)
	}
}

func TestIDsNeverReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	var last reading.ID
	for round := 0; round < 3; round++ {
		b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
		rs := mkReadings(0, 3)
		mustAppend(t, b, rs)
		if rs[0].ID <= last {
			t.Fatalf("round %d: ID %d not above previous %d", round, rs[0].ID, last)
		}
		last = rs[2].ID
		// Ack everything, so the file holds no reading to seed from.
		if err := b.Ack(reading.Refs(mustTake(t, b, 10, reading.Filter{}))); err != nil {
			t.Fatal(err)
		}
		closeBuf(t, b)
	}
}

func TestSecondInstanceFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	mustAppend(t, b, mkReadings(0, 5))
	if err := b.commit(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := Open(Options{Path: path, LockTimeout: 100 * time.Millisecond, Logger: testLogger(t)})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("second Open took %v", d)
	}
	// Export needs the lock: it refuses clearly and quickly.
	start = time.Now()
	if err := Export(path, &bytes.Buffer{}, true); !errors.Is(err, ErrLocked) {
		t.Fatalf("Export while open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Export took %v", d)
	}
	// Inspect takes no lock: it works while the buffer is open.
	if s, err := Inspect(path); err != nil || s.Depth != 5 {
		t.Fatalf("Inspect while open: %+v, %v", s, err)
	}
	// The file was not set aside as corrupt by the failed attempts.
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Fatalf("lock contention set the file aside: %v", m)
	}
}

// TestInspectWhileCommitting reads the file without a lock while commits
// rewrite it as fast as they can: every Inspect must succeed with a depth
// that one transaction had, never a torn mixture.
func TestInspectWhileCommitting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	var mu sync.Mutex
	depths := map[int]bool{0: true}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		n := 0
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Append 7 and ack 3 per commit: depths go up by 4.
			mustAppend(t, b, mkReadings(i*7, 7))
			rs := mustTake(t, b, 3, reading.Filter{})
			if err := b.Ack(reading.Refs(rs)); err != nil {
				t.Error(err)
				return
			}
			if err := b.commit(); err != nil {
				t.Error(err)
				return
			}
			n += 4
			mu.Lock()
			depths[n] = true
			mu.Unlock()
			// Busier than a drain that commits on the size trigger,
			// with the quiet moments a real disk gives a reader (under
			// heavy load a reader can starve, and says so: ErrBusy).
			time.Sleep(3 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(500 * time.Millisecond)
	reads, seen := 0, map[int]bool{}
	for ; time.Now().Before(deadline); reads++ {
		s, err := Inspect(path)
		if err != nil {
			t.Fatalf("Inspect %d: %v", reads, err)
		}
		mu.Lock()
		// A commit's depth may be read before the writer records it.
		ok := depths[s.Depth] || (s.Depth%4 == 0 && depths[s.Depth-4])
		mu.Unlock()
		if !ok {
			t.Fatalf("Inspect saw depth %d, which no commit produced", s.Depth)
		}
		seen[s.Depth] = true
	}
	close(stop)
	<-done
	if len(seen) < 3 {
		t.Fatalf("only %d distinct depths seen in %d Inspects: the commits did not run alongside", len(seen), reads)
	}
	t.Logf("%d consistent Inspects during commits, %d distinct depths", reads, len(seen))
}

func TestDeadLetterAndExport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	rs := mkReadings(0, 4)
	mustAppend(t, b, rs[:2])
	closeBuf(t, b)
	b = mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	mustAppend(t, b, rs[2:])
	got := mustTake(t, b, 10, reading.Filter{})
	if len(got) != 4 {
		t.Fatalf("took %d", len(got))
	}
	// One committed and one pending reading are dead-lettered.
	if err := b.DeadLetter(refs(rs[0].ID, rs[3].ID), "property unknown to the platform"); err != nil {
		t.Fatal(err)
	}
	b.Release([]reading.ID{rs[1].ID, rs[2].ID})
	left := mustTake(t, b, 10, reading.Filter{})
	if len(left) != 2 || left[0].ID != rs[1].ID || left[1].ID != rs[2].ID {
		t.Fatalf("after dead letter: %v", reading.IDs(left))
	}
	if s := b.Stats(); s.DeadLetters != 2 || s.Depth != 2 {
		t.Fatalf("stats: %+v", s)
	}
	closeBuf(t, b)

	var out bytes.Buffer
	if err := Export(path, &out, true); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&out)
	var recs []ExportRecord
	for dec.More() {
		var r ExportRecord
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if len(recs) != 4 {
		t.Fatalf("export: %d records: %+v", len(recs), recs)
	}
	wantState := map[reading.ID]string{rs[0].ID: "dead", rs[1].ID: "pending", rs[2].ID: "pending", rs[3].ID: "dead"}
	for _, r := range recs {
		if wantState[r.ID] != r.State {
			t.Fatalf("export: %d is %q, want %q", r.ID, r.State, wantState[r.ID])
		}
		if r.State == "dead" && r.Reason != "property unknown to the platform" {
			t.Fatalf("export: reason %q", r.Reason)
		}
		if r.Sensor != "air" || r.Time.IsZero() {
			t.Fatalf("export: incomplete record %+v", r)
		}
	}
	s, err := Inspect(path)
	if err != nil || s.Depth != 2 || s.DeadLetters != 2 || !s.OldestUnsent.Equal(rs[1].Time) {
		t.Fatalf("Inspect: %+v, %v", s, err)
	}
	var text bytes.Buffer
	if err := Export(path, &text, false); err != nil || bytes.Count(text.Bytes(), []byte("\n")) != 5 {
		t.Fatalf("text export (%v):\n%s", err, text.String())
	}
}

func TestCloseCommitsPending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	mustAppend(t, b, mkReadings(0, 7))
	if s := b.Stats(); s.Pending != 7 || s.Commits != 0 {
		t.Fatalf("before close: %+v", s)
	}
	closeBuf(t, b)
	if err := b.Append(context.Background(), mkReadings(0, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	s, err := Inspect(path)
	if err != nil || s.Depth != 7 {
		t.Fatalf("after close: %+v %v", s, err)
	}
}

func TestGroupCommitTriggers(t *testing.T) {
	b := mustOpen(t, Options{CommitInterval: 50 * time.Millisecond, CommitSize: 10})
	mustAppend(t, b, mkReadings(0, 3))
	waitFor(t, 5*time.Second, func() bool { s := b.Stats(); return s.Pending == 0 && s.Commits > 0 })

	b2 := mustOpen(t, Options{CommitInterval: time.Hour, CommitSize: 10})
	mustAppend(t, b2, mkReadings(0, 10))
	waitFor(t, 5*time.Second, func() bool { s := b2.Stats(); return s.Pending == 0 && s.Commits > 0 })
}

func TestOptionsValidated(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{},
		{Path: filepath.Join(dir, "a"), WhenFull: "drop-random"},
		{Path: filepath.Join(dir, "b"), MaxSize: -1},
		{Path: filepath.Join(dir, "c"), MaxSize: 1000},
	} {
		if _, err := Open(o); !errors.Is(err, ErrBadOptions) {
			t.Errorf("Open(%+v) = %v, want ErrBadOptions", o, err)
		}
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(tb testing.TB, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTickCommitLeavesTheTicksOwnSamples: a commit on a clock tick leaves
// samples appended at or after that tick to the next window. The sensors
// sample on the same ticks (internal/tick), so otherwise the round taken at
// a commit tick went to the card every time although it was acknowledged
// a few milliseconds later.
func TestTickCommitLeavesTheTicksOwnSamples(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
	written := func() int64 {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.jr.off - journalHeader
	}
	old := mkReadings(0, 1)
	mustAppend(t, b, old)
	tickAt := time.Since(b.opened)
	fresh := mkReadings(1, 3)
	mustAppend(t, b, fresh)
	if err := b.commitBefore(tickAt); err != nil {
		t.Fatal(err)
	}
	if n := written(); n <= 0 {
		t.Fatalf("the sample appended before the tick was not journaled (%d bytes)", n)
	}
	if s, err := Inspect(path); err != nil || s.Depth != 1 {
		t.Fatalf("Inspect: depth %d, %v; want only the sample of before the tick", s.Depth, err)
	}
	before := written()
	// The fresh round is acknowledged before the next tick: it never
	// reaches the card.
	got := mustTake(t, b, 10, reading.Filter{NotBefore: fresh[0].Time})
	if len(got) != 3 {
		t.Fatalf("took %d", len(got))
	}
	if err := b.Ack(reading.Refs(got)); err != nil {
		t.Fatal(err)
	}
	if err := b.commitBefore(time.Since(b.opened)); err != nil {
		t.Fatal(err)
	}
	if n := written(); n != before {
		t.Fatalf("the journal grew by %d bytes for samples acked within their window", n-before)
	}
	// A fresh sample still unacknowledged at the next tick is journaled
	// there, and one fold on a tick leaves the tick's own samples out too.
	late := mkReadings(4, 1)
	mustAppend(t, b, late)
	if err := b.commitBefore(time.Since(b.opened)); err != nil {
		t.Fatal(err)
	}
	if n := written(); n <= before {
		t.Fatal("a sample left over from the last tick was not journaled at the next")
	}
	b.commitMu.Lock()
	tickAt = time.Since(b.opened)
	mustAppend(t, b, mkReadings(5, 1))
	err := b.fold(tickAt)
	b.commitMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := Inspect(path); err != nil || s.Depth != 2 {
		t.Fatalf("after the fold: depth %d, %v; want the two samples of earlier ticks", s.Depth, err)
	}
	closeBuf(t, b)
	if s, err := Inspect(path); err != nil || s.Depth != 3 {
		t.Fatalf("after Close: depth %d, %v; Close commits everything", s.Depth, err)
	}
}
