package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"gatewayd/internal/reading"
)

var (
	bucketReadings = []byte("readings")
	bucketDead     = []byte("dead")
	bucketMeta     = []byte("meta")

	keyFormat = []byte("format")
	keyIDCeil = []byte("idceil")
)

// fileFormat is the layout of buckets and meta keys; records carry their own
// version byte.
const fileFormat = 1

// opened is what openStore learned about the file it opened.
type opened struct {
	db        *bolt.DB
	committed int
	dead      int
	maxID     reading.ID // highest ID stored in either bucket
	idCeil    reading.ID // persisted reservation: no ID at or above it was handed out
	bad       int        // undecodable records moved to the dead bucket
	// idFloor is set when a corrupt file was set aside: its IDs are
	// unknown, so new ones start above anything it could have held.
	idFloor uint64
	aside   string
	// salvageFrom names a set-aside file whose salvage has not finished
	// (meta keySalvageFrom): Open resumes it.
	salvageFrom string
	// salvaged and lost are the file's running totals of readings
	// salvaged from set-aside files and given up as unrecoverable (meta
	// keySalvage), shown by Stats and Inspect.
	salvaged, lost uint64
	// asideFiles and asideBytes are the set-aside files kept after
	// pruning; asidePruned how many this open deleted.
	asideFiles  int
	asideBytes  int64
	asidePruned int
}

// openStore opens or creates the buffer file. An I/O error (the card
// returned EIO, memory ran short, ...) says nothing about the file: the open
// is retried with backoff (rt bounds it) and the file is never set aside for
// it. Only a file proven damaged (ErrCorrupt: a checksum, the page structure,
// bbolt's own check) is renamed aside, a fresh one created, and the readings
// whose records still check out are salvaged from it into the fresh file
// (salvage.go): a gateway that refuses to start over a damaged buffer loses
// every reading from then on, and one that forgets the damaged file loses
// what it held. Set-aside files count against MaxSize; the oldest are pruned.
func openStore(o Options, log *slog.Logger, now time.Time, rt *retrier) (opened, error) {
	path := o.Path
	fi, statErr := os.Stat(path)
	existed := statErr == nil
	var op opened
	err := rt.do("open", func() (err error) {
		op, err = openChecked(path, o.LockTimeout, false)
		return err
	})
	if err == nil || !existed || !errors.Is(err, ErrCorrupt) {
		if err == nil {
			err = finishOpen(&op, o, log, rt)
		}
		return op, err
	}
	aside := fmt.Sprintf("%s.corrupt-%s", path, now.UTC().Format("20060102T150405.000000Z"))
	if rerr := os.Rename(path, aside); rerr != nil {
		return opened{}, fmt.Errorf("set aside corrupt buffer %s: %w (corruption: %v)", path, rerr, err)
	}
	syncDir(path)
	log.Error("BUFFER FILE CORRUPT: moved aside, starting a fresh buffer and salvaging the readings whose records check out",
		"err", err, "moved_to", aside)
	// The IDs in the damaged file are not all known. They were at most its
	// last write time in microseconds plus one reservation (see idBlock),
	// if the clock then was sane; start above both that and now (salvage
	// raises the floor further with what it reads).
	floor := uint64(max(now.UnixMicro(), fi.ModTime().UnixMicro(), 0)) + 2*idBlock
	err = rt.do("open fresh", func() (err error) {
		op, err = openChecked(path, o.LockTimeout, false)
		return err
	})
	op.idFloor = floor
	op.aside = aside
	if err != nil {
		return op, err
	}
	op.salvageFrom = filepath.Base(aside)
	return op, finishOpen(&op, o, log, rt)
}

// finishOpen salvages a set-aside file whose salvage has not finished (just
// set aside, or interrupted by a crash or an I/O error at an earlier start),
// then prunes set-aside files beyond their share of MaxSize.
func finishOpen(op *opened, o Options, log *slog.Logger, rt *retrier) error {
	if op.salvageFrom != "" {
		from := filepath.Join(filepath.Dir(o.Path), op.salvageFrom)
		var res salvageResult
		err := rt.do("salvage", func() (err error) {
			res, err = salvage(op.db, from, o.Path+journalSuffix)
			return err
		})
		if err != nil {
			// The marker stays: the next start resumes the salvage.
			closeQuietly(op.db)
			op.db = nil
			return fmt.Errorf("salvage %s: %w", from, err)
		}
		res.log(log, from)
		op.salvageFrom = ""
		op.salvaged, op.lost = res.totalSalvaged, res.totalLost
		op.maxID = max(op.maxID, res.maxID)
		op.idFloor = max(op.idFloor, uint64(res.idCeil), uint64(res.maxID)+1)
		// A resumed salvage wrote some records twice: count the file.
		if err := op.db.View(func(tx *bolt.Tx) error {
			op.committed, op.dead = countKeys(tx.Bucket(bucketReadings)), countKeys(tx.Bucket(bucketDead))
			return nil
		}); err != nil {
			closeQuietly(op.db)
			op.db = nil
			return fmt.Errorf("count salvaged records: %w", err)
		}
	}
	files, pruned := pruneAside(o.Path, o.MaxSize, log)
	op.asidePruned = pruned
	op.asideFiles = len(files)
	for _, f := range files {
		op.asideBytes += f.size
	}
	return nil
}

// retryable reports whether err from opening the buffer may pass: anything
// but proven damage (ErrCorrupt) and the errors that a retry cannot change
// (the lock, permissions, a missing directory, a read-only or full disk).
// EIO, EAGAIN, ENOMEM, EINTR, timeouts and errors we have no name for are
// retried: a transient fault of the card must not cost the file.
func retryable(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, ErrCorrupt),
		errors.Is(err, ErrLocked),
		errors.Is(err, ErrBadOptions),
		errors.Is(err, fs.ErrPermission),
		errors.Is(err, fs.ErrNotExist),
		isFull(err),
		errors.Is(err, syscall.EROFS),
		errors.Is(err, syscall.ENOTDIR),
		errors.Is(err, syscall.EISDIR):
		return false
	}
	return true
}

// Open's retry bounds. Each attempt reads the whole file (seconds on a Pi
// Zero with a large backlog), so systemd is told to wait that much longer
// each time (Options.Starting).
const (
	DefaultOpenRetry = time.Minute // Options.OpenRetry's default
	openAttempts     = 10          // per step (open, salvage, journal, ...)
	openBackoffMin   = 250 * time.Millisecond
	openBackoffMax   = 8 * time.Second
	openAttemptTime  = 30 * time.Second // what one more attempt may take, for systemd
)

// retrier bounds Open's retries of I/O errors in count (per step) and in
// time (all steps together), logs them rate-limited and keeps the service
// manager informed.
type retrier struct {
	log      *slog.Logger
	starting func(status string, extend time.Duration)
	budget   time.Duration
	start    time.Time
	retries  int // failed attempts that were retried
	lastLog  time.Time
	sleep    func(time.Duration)
}

func newRetrier(o Options, log *slog.Logger) *retrier {
	budget := o.OpenRetry
	if budget == 0 {
		budget = DefaultOpenRetry
	}
	return &retrier{log: log, starting: o.Starting, budget: max(budget, 0), start: time.Now(), sleep: time.Sleep}
}

// do runs step until it succeeds, fails for a reason a retry cannot change,
// or the bounds are spent; it returns step's last error.
func (r *retrier) do(what string, step func() error) error {
	backoff := openBackoffMin
	for n := 1; ; n++ {
		err := step()
		if !retryable(err) {
			if err == nil && n > 1 {
				r.log.Info("buffer: I/O error cleared; open goes on", "step", what, "attempts", n)
			}
			return err
		}
		elapsed := time.Since(r.start)
		if n >= openAttempts || elapsed+backoff > r.budget {
			r.log.Error("buffer: I/O errors persisted; giving up (the file was not set aside: an I/O error is not damage)",
				"step", what, "attempts", n, "elapsed", elapsed.Round(time.Millisecond), "err", err)
			return fmt.Errorf("%s: still failing after %d attempts in %v: %w", what, n, elapsed.Round(time.Millisecond), err)
		}
		r.retries++
		if n == 1 || time.Since(r.lastLog) >= 10*time.Second {
			r.lastLog = time.Now()
			r.log.Warn("buffer: I/O error while opening; retrying (not treated as damage)",
				"step", what, "attempt", n, "retry_in", backoff, "err", err)
		}
		if r.starting != nil {
			r.starting(fmt.Sprintf("buffer: %s: I/O error, retry %d in %v: %v", what, n, backoff, err), backoff+openAttemptTime)
		}
		r.sleep(backoff)
		backoff = min(backoff*2, openBackoffMax)
	}
}

// isFull reports whether err means there is no room to write: the disk is
// full or bbolt's own size cap (Options.MaxSize) was reached. bbolt formats
// some errors with %s, so the message is checked too.
func isFull(err error) bool {
	if err == nil {
		return false
	}
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, errMaxSize) ||
		strings.Contains(err.Error(), "no space left on device") ||
		strings.Contains(err.Error(), "maximum db size reached")
}

// openChecked opens the file and verifies it. bbolt trusts its file: on a
// damaged one it may panic or fault on a page outside the mapping, so the
// open and the first full read run with faults turned into panics and
// recovered here.
func openChecked(path string, timeout time.Duration, readOnly bool) (op opened, err error) {
	// Take the lock ourselves and check the raw file before bbolt sees it:
	// bbolt reads its meta and (rebuilding the freelist) walks every page
	// already inside Open, partly in goroutines of its own where a panic
	// or fault on a damaged page would kill the process.
	f, err := lockFile(path, readOnly, timeout)
	if err != nil {
		return op, fmt.Errorf("open %s: %w", path, err)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt panicked reading %s: %v", ErrCorrupt, path, r)
		}
		if err != nil {
			if op.db != nil {
				closeQuietly(op.db)
				op.db = nil
			}
			_ = f.Close()
		}
	}()
	if fi, serr := f.Stat(); serr == nil && fi.Size() > 0 {
		if err = rawCheck(f); err != nil {
			return op, err
		}
	}
	opts := boltOptions(f, timeout, readOnly)
	op.db, err = bolt.Open(path, 0o600, opts)
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return op, fmt.Errorf("open %s: %w (gave up after %v)", path, ErrLocked, timeout)
		}
		return op, fmt.Errorf("open %s: %w", path, err)
	}
	if !readOnly {
		err = op.db.Update(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bucketReadings, bucketDead, bucketMeta} {
				if tx.Bucket(name) == nil {
					if _, err := tx.CreateBucket(name); err != nil {
						return err
					}
				}
			}
			m := tx.Bucket(bucketMeta)
			if v := m.Get(keyFormat); v == nil {
				return m.Put(keyFormat, []byte{fileFormat})
			} else if len(v) != 1 || v[0] != fileFormat {
				return fmt.Errorf("%w: unknown file format %v", ErrCorrupt, v)
			}
			return nil
		})
		if err != nil {
			return op, fmt.Errorf("init %s: %w", path, err)
		}
	}
	err = op.db.View(func(tx *bolt.Tx) error { return checkAndScan(tx, &op) })
	if err != nil {
		return op, err
	}
	if !readOnly && op.bad > 0 {
		err = op.db.Update(moveUndecodable)
	}
	return op, err
}

// checkAndScan verifies the file in the order that keeps it safe: the file
// must hold every page bbolt thinks it has (a truncated file would fault),
// rawCheck (run before Open) proved every reachable key and value lies
// inside its page, our
// own walk decodes every record, and only then does bbolt's checker (which
// runs in a goroutine of its own, where a fault could not be recovered) look
// at the page structure and the freelist.
func checkAndScan(tx *bolt.Tx, op *opened) error {
	fi, err := os.Stat(tx.DB().Path())
	if err != nil {
		return fmt.Errorf("stat buffer: %w", err)
	}
	if fi.Size() < tx.Size() {
		return fmt.Errorf("%w: truncated: %d bytes on disk, %d in use", ErrCorrupt, fi.Size(), tx.Size())
	}
	rb, db, mb := tx.Bucket(bucketReadings), tx.Bucket(bucketDead), tx.Bucket(bucketMeta)
	if rb == nil || db == nil || mb == nil {
		return fmt.Errorf("%w: missing buckets", ErrCorrupt)
	}
	if v := mb.Get(keyIDCeil); len(v) == 8 {
		op.idCeil = reading.ID(binary.BigEndian.Uint64(v))
	}
	if v := mb.Get(keySalvage); len(v) == 16 {
		op.salvaged, op.lost = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
	}
	if v := mb.Get(keySalvageFrom); len(v) > 0 {
		op.salvageFrom = string(v)
	}
	err = rb.ForEach(func(k, v []byte) error {
		id, ok := keyID(k)
		if !ok {
			return fmt.Errorf("%w: bad key %x", ErrCorrupt, k)
		}
		op.maxID = max(op.maxID, id)
		if _, err := decodeRecord(v); err != nil {
			op.bad++
			return nil
		}
		op.committed++
		return nil
	})
	if err != nil {
		return err
	}
	err = db.ForEach(func(k, v []byte) error {
		id, ok := keyID(k)
		if !ok {
			return fmt.Errorf("%w: bad dead-letter key %x", ErrCorrupt, k)
		}
		op.maxID = max(op.maxID, id)
		op.dead++
		return nil
	})
	if err != nil {
		return err
	}
	var errs []string
	for err := range tx.Check() {
		if len(errs) < 5 {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(errs, "; "))
	}
	return nil
}

// moveUndecodable sets records that bbolt holds intact but we cannot decode
// (a bug, or a file from a newer release) aside as dead letters, raw, so they
// stay visible instead of blocking the queue.
func moveUndecodable(tx *bolt.Tx) error {
	rb, db := tx.Bucket(bucketReadings), tx.Bucket(bucketDead)
	var keys [][]byte
	err := rb.ForEach(func(k, v []byte) error {
		if _, err := decodeRecord(v); err != nil {
			keys = append(keys, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	now := time.Now()
	for _, k := range keys {
		v := append([]byte(nil), rb.Get(k)...)
		if err := db.Put(k, encodeDead(v, "undecodable record", now)); err != nil {
			return err
		}
		if err := rb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func closeQuietly(db *bolt.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}

// syncDir makes a rename in path's directory durable.
func syncDir(path string) {
	dir := path[:max(strings.LastIndexByte(path, '/'), 0)]
	if dir == "" {
		dir = "."
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// lockFile opens path and takes the same flock bbolt takes (exclusive, or
// shared for read-only), giving up with ErrLocked after timeout.
func lockFile(path string, readOnly bool, timeout time.Duration) (*os.File, error) {
	flag, how := os.O_RDWR|os.O_CREATE, syscall.LOCK_EX
	if readOnly {
		flag, how = os.O_RDONLY, syscall.LOCK_SH
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock: %w", err)
		}
		if time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("%w (gave up after %v)", ErrLocked, timeout)
		}
		time.Sleep(min(50*time.Millisecond, timeout/4+time.Millisecond))
	}
}

// boltOptions are the options every buffer file is opened with; f is the
// file lockFile locked.
func boltOptions(f *os.File, timeout time.Duration, readOnly bool) *bolt.Options {
	return &bolt.Options{
		Timeout:  timeout,
		ReadOnly: readOnly,
		// Hand bbolt the file we locked: its own flock on the same open
		// file description then succeeds at once.
		OpenFile:     func(string, int, os.FileMode) (*os.File, error) { return f, nil },
		FreelistType: bolt.FreelistMapType,
		// Write amplification is the SD card's enemy. Every commit
		// rewrites the path from the changed leaf to the root plus the
		// meta page: with 1 KiB pages that path shares the card's 4 KiB
		// pages far more often than with bbolt's default of the OS page
		// size (measured: about 2.3x fewer bytes per reading, see
		// README.md). Applies to new files only; old ones keep theirs.
		PageSize: 1024,
		// The freelist is rebuilt by a scan at open instead of being
		// rewritten by every commit (as etcd does): one page less per
		// commit, paid once per start in a read we do anyway.
		NoFreelistSync: true,
	}
}
