package buffer

import (
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// compactSuffix names the copy a compaction writes before renaming it over
// the buffer file.
const compactSuffix = ".compact"

// Compaction thresholds (Options.compactMin and compactEvery override them
// in tests). bbolt reuses freed pages but never shrinks its file: after a
// long outage has drained, the file keeps its peak size. Rewriting it costs
// one write of what is still in it, so it is done only when it reclaims most
// of the file and not more often than compactEvery.
const (
	defaultCompactMin   = 4 << 20 // bytes; smaller files are not worth a rewrite
	defaultCompactEvery = 10 * time.Minute
)

// maybeCompact is called by the commit loop after each commit.
func (b *Buffer) maybeCompact() {
	minSize, every := b.o.compactMin, b.o.compactEvery
	if minSize == 0 {
		minSize = defaultCompactMin
	}
	if every == 0 {
		every = defaultCompactEvery
	}
	// The cheap tests first, and the file's size (a stat(2), a wake-up of
	// the runtime's monitor thread on an idle board) at most once per
	// every, not on every commit tick.
	b.mu.Lock()
	inuse, last, checked, closed := b.inuse, b.lastCompact, b.compactChecked, b.closed
	b.mu.Unlock()
	if closed || time.Since(last) < every || time.Since(checked) < every {
		return
	}
	size := b.fileSize()
	if size < minSize || inuse*4 > size {
		b.mu.Lock()
		b.compactChecked = time.Now()
		b.mu.Unlock()
		return
	}
	if err := b.compact(); err != nil {
		b.drops.errorf("compaction failed; keeping the file as it is", "err", err)
	}
}

// compact rewrites the buffer into a new file and swaps it in. Crash safety
// rests on the rename: until it the original file is untouched (a leftover
// copy is deleted at the next Open); the copy is fsynced before it and is
// complete after it. The copy is opened, and so locked, before the rename and
// becomes the live database without being reopened, so no second instance
// can slip in between. Commits wait (commitMu); Take, Ack and Append do not.
func (b *Buffer) compact() (err error) {
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	b.mu.Lock()
	b.lastCompact = time.Now()
	src := b.db
	b.mu.Unlock()

	start := time.Now()
	before := b.fileSize()
	tmp := b.o.Path + compactSuffix
	_ = os.Remove(tmp)
	f, err := lockFile(tmp, false, time.Second)
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	dst, err := bolt.Open(tmp, 0o600, boltOptions(f, time.Second, false))
	if err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	defer func() {
		if err != nil {
			closeQuietly(dst)
			_ = os.Remove(tmp)
		}
	}()
	// One fsync at the end instead of one per copy transaction.
	dst.NoSync = true
	if err := bolt.Compact(dst, src, 1<<20); err != nil {
		return fmt.Errorf("compact: copy: %w", err)
	}
	if err := dst.Sync(); err != nil {
		return fmt.Errorf("compact: sync: %w", err)
	}
	dst.NoSync = false
	if err := os.Rename(tmp, b.o.Path); err != nil {
		return fmt.Errorf("compact: swap: %w", err)
	}
	syncDir(b.o.Path)

	b.mu.Lock()
	b.db = dst
	b.applyLimits()
	b.st.Compactions++
	// An ID reservation written to the old file during the copy may have
	// missed it; write the current one again.
	rerr := b.reserveIDs()
	merr := b.measureLocked()
	b.mu.Unlock()
	if rerr != nil {
		b.log.Warn("re-reserve ids after compaction", "err", rerr)
	}
	if merr != nil {
		b.log.Warn("measure space in use", "err", merr)
	}
	// Take and Stats hold mu around their read transactions, so none is
	// still open on src here.
	if err := src.Close(); err != nil {
		b.log.Warn("close the old file after compaction", "err", err)
	}
	b.log.Info("buffer compacted", "bytes_before", before, "bytes_after", b.fileSize(), "took", time.Since(start))
	return nil
}
