package buffer

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

// mountTmpfs mounts a tmpfs of size bytes for the test and unmounts it in
// cleanup. CI runs as root; elsewhere the test cannot build its disk.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (CI runs as root)")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// TestDiskFull fills a real (tmpfs) filesystem under the buffer: commits
// fail with ENOSPC, readings are dropped by policy and counted, Append and
// Take keep working, and when space returns commits resume and the file is
// intact.
func TestDiskFull(t *testing.T) {
	for _, policy := range []string{DropOldest, DropNewest} {
		t.Run(policy, func(t *testing.T) {
			dir := mountTmpfs(t, "1m")
			filler := filepath.Join(dir, "filler")
			if err := os.WriteFile(filler, make([]byte, 600<<10), 0o600); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "b.db")
			b := mustOpen(t, Options{Path: path, WhenFull: policy, CommitInterval: time.Hour, CommitSize: 100})

			// Until the policy is at work (a failed commit, or
			// drop-oldest making room), then 20 rounds more.
			var fullAt = -1
			next := 0
			for round := 0; round < 300 && (fullAt < 0 || round < fullAt+20); round++ {
				mustAppend(t, b, mkReadings(next, 100))
				next += 100
				err := b.commit()
				if err != nil && !isFull(err) {
					t.Fatalf("commit failed, but not for space: %v", err)
				}
				if fullAt < 0 && (err != nil || b.Stats().Drops[ReasonDiskFull] > 0) {
					fullAt = round
				}
			}
			if fullAt < 0 {
				t.Fatal("the disk never filled")
			}
			s := b.Stats()
			if s.CommitErrors == 0 || s.Drops[ReasonDiskFull] == 0 {
				t.Fatalf("full disk: stats %+v", s)
			}
			if s.Pending > b.maxPending() {
				t.Fatalf("%d readings held in memory, bound %d", s.Pending, b.maxPending())
			}
			// Still serving: the uplink can take what is buffered.
			if got := mustTake(t, b, 10, reading.Filter{}); len(got) != 10 {
				t.Fatalf("take on a full disk: %d", len(got))
			}
			b.Release(nil)

			// Space returns: the next commit (the loop's next tick)
			// succeeds, and new readings are stored.
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			if err := b.commit(); err != nil {
				t.Fatalf("commit after space returned: %v", err)
			}
			last := mkReadings(next, 50)
			mustAppend(t, b, last)
			if err := b.commit(); err != nil {
				t.Fatalf("commit after space returned: %v", err)
			}
			depth := b.Stats().Depth
			closeBuf(t, b)

			b2 := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
			if s := b2.Stats(); s.CorruptFiles != 0 || s.Depth != depth {
				t.Fatalf("after reopen: %+v, want depth %d and no corruption", s, depth)
			}
			all := mustTake(t, b2, 100000, reading.Filter{})
			if all[len(all)-1].ID != last[len(last)-1].ID {
				t.Fatalf("the readings appended after space returned are missing")
			}
		})
	}
}
