package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"gatewayd/internal/reading"
)

var errMaxSize = berrors.ErrMaxSizeReached

// Drop policies for Options.WhenFull.
const (
	DropOldest = "drop-oldest"
	DropNewest = "drop-newest"
)

// Drop reasons, the keys of Stats.Drops.
const (
	ReasonMaxSize  = "max_size"  // over Options.MaxSize
	ReasonMaxAge   = "max_age"   // older than Options.MaxAge
	ReasonDiskFull = "disk_full" // the disk is full and commits kept failing
	// ReasonWriteError: commits kept failing for another reason (an I/O
	// error) and the readings held in memory meanwhile hit their bound.
	ReasonWriteError = "write_error"
)

// Defaults for zero Options fields.
const (
	DefaultCommitSize  = 1000
	DefaultLockTimeout = time.Second
)

// idBlock is how many IDs one durable reservation covers. A reservation is
// written before an ID from it is handed out, so IDs are never reused even
// when the clock jumps back (boards without an RTC boot in the past) and
// readings that were acked before their commit never reached the file.
const idBlock = 1 << 20

// Options configure a Buffer. The zero value of each field is usable except
// Path.
type Options struct {
	Path    string        // bbolt file; its directory is created if missing
	MaxSize int64         // bytes on disk; 0 = unbounded
	MaxAge  time.Duration // readings with a synced Time older than this are dropped; 0 = unbounded
	// WhenFull is what MaxSize (and a full disk) drops: "drop-oldest"
	// (default, "" means it) or "drop-newest".
	WhenFull string
	// CommitInterval is the group commit window: appends, acks and dead
	// letters are written together at most this long after they happen, so
	// a power cut loses at most this window. 0 = commit on every Append, Ack
	// and DeadLetter (one transaction each: the naive mode, for comparison).
	CommitInterval time.Duration
	// CommitSize commits early when this many changes are pending; 0 =
	// DefaultCommitSize.
	CommitSize int
	// LockTimeout bounds the wait for the file lock, so a second instance
	// fails fast with ErrLocked; 0 = DefaultLockTimeout.
	LockTimeout time.Duration
	Logger      *slog.Logger // nil = slog.Default()
	// OpenRetry bounds how long Open retries I/O errors (EIO from the
	// card, ...) before it gives up with the error; such a file is never
	// set aside. 0 = DefaultOpenRetry; negative = no retries.
	OpenRetry time.Duration
	// Starting, if set, is called before each retry while Open waits out
	// an I/O error: status says what failed, extend how much longer Open
	// may take from now. gatewayd passes both on to systemd
	// (STATUS=, EXTEND_TIMEOUT_USEC=) so a slow start is not killed.
	Starting func(status string, extend time.Duration)

	// onCommit, if set (by tests only), is called after each successful
	// commit with the IDs it wrote and the acked IDs it deleted.
	onCommit func(written, deleted []reading.ID)
	// compactMin and compactEvery override the compaction thresholds
	// (tests only; zero means the defaults in compact.go).
	compactMin   int64
	compactEvery time.Duration
}

// Stats describe the buffer. Between commits Depth is exact for readings
// appended and acked in this process; readings dropped by policy leave it at
// the commit that drops them.
type Stats struct {
	Depth        int               `json:"depth"`          // readings waiting to be acked (committed or not)
	Bytes        int64             `json:"bytes"`          // size of the file on disk
	Pending      int               `json:"pending"`        // appended but not yet committed
	InFlight     int               `json:"in_flight"`      // handed out by Take, not yet acked or released
	OldestUnsent time.Time         `json:"oldest_unsent"`  // Time of the oldest waiting reading; zero if none
	DeadLetters  int               `json:"dead_letters"`   // readings set aside by DeadLetter
	Drops        map[string]uint64 `json:"drops"`          // readings dropped, by reason (this process)
	Commits      uint64            `json:"commits"`        // commit windows made durable (journal or bbolt)
	CommitErrors uint64            `json:"commit_errors"`  // failed commits (retried)
	LastCommit   time.Time         `json:"last_commit"`    // zero if none yet
	Folds        uint64            `json:"folds"`          // journal contents written into the bbolt file
	Compactions  uint64            `json:"compactions"`    // files rewritten to reclaim space
	CorruptFiles uint64            `json:"corrupt_files"`  // corrupt files set aside at open
	NextID       reading.ID        `json:"next_id,string"` // the ID the next Append assigns

	// Salvaged and Unrecoverable: readings copied from set-aside (damaged)
	// files into this one, and readings of theirs given up (undecodable,
	// or under pages that could not be read); totals kept in the file
	// (see salvage.go).
	Salvaged      uint64 `json:"salvaged"`
	Unrecoverable uint64 `json:"unrecoverable"`
	AsideFiles    int    `json:"aside_files"`  // set-aside files kept beside the buffer
	AsideBytes    int64  `json:"aside_bytes"`  // their size; counts against MaxSize
	AsidePruned   uint64 `json:"aside_pruned"` // set-aside files deleted to stay within MaxSize (this process)
	OpenRetries   uint64 `json:"open_retries"` // I/O errors retried while opening (this process)
}

type entry struct {
	r   reading.Reading
	enc []byte
	// journaled: durable in the journal, not yet folded into bbolt.
	journaled bool
}

type deadEntry struct {
	e      *entry
	reason string
	// journaled: the dead letter is durable in the journal.
	journaled bool
}

// jdead is a dead letter to be written to the journal.
type jdead struct {
	id     reading.ID
	reason string
}

// Buffer is the store-and-forward queue between the sensor loops and the
// uplink. It implements reading.Sink and reading.Source. All methods are safe
// for concurrent use.
type Buffer struct {
	o        Options
	log      *slog.Logger
	naive    bool
	soft     int64 // bytes in use above which MaxSize drops start
	pageSize int

	// commitMu serialises commits, compaction and Close; it is taken
	// before mu, never while holding it.
	commitMu sync.Mutex

	mu         sync.Mutex
	db         *bolt.DB
	closed     bool
	nextID     reading.ID
	idCeil     reading.ID
	pending    []*entry                // appended, not yet in bbolt (maybe journaled), ID order
	committing []*entry                // being written by the running commit
	live       map[reading.ID]*entry   // pending + committing, minus acked/dead-lettered
	inflight   map[reading.ID]struct{} // handed out by Take
	toDelete   map[reading.ID]struct{} // acked, stored in the file (or being written)
	toDead     map[reading.ID]string   // dead-lettered, stored in the file (or being written)
	deadNew    []deadEntry             // dead-lettered before their commit
	delInTx    map[reading.ID]struct{} // toDelete as taken by the running commit
	deadInTx   map[reading.ID]string   // toDead as taken by the running commit
	deadNewTx  int                     // len(deadNew) as taken by the running commit
	committed  int                     // records in the readings bucket
	dead       int
	inuse      int64 // bytes of pages in use after the last commit
	// The journal (nil in naive mode) and what the next window writes to
	// it besides new readings: acks and dead letters of durable readings.
	jr        *journal
	jAcks     []reading.ID
	jDeads    []jdead
	jcount    int  // entries in pending with journaled set
	resetDue  bool // a fold succeeded: start a new journal epoch
	windows   int  // journal windows since the last fold
	lastFold  time.Time
	lastFull  bool // the last commit failed for lack of space
	failing   bool // the last commit failed
	lastPrune time.Time
	// lastCompact starts at Open, so a restart loop cannot turn into a
	// compaction loop.
	lastCompact time.Time
	st          Stats
	drops       *dropLog

	notify chan struct{}
	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ reading.Sink   = (*Buffer)(nil)
	_ reading.Source = (*Buffer)(nil)
)

// Open opens or creates the buffer file and starts the commit loop.
func Open(o Options) (*Buffer, error) {
	if o.Path == "" {
		return nil, fmt.Errorf("%w: Path is empty", ErrBadOptions)
	}
	switch o.WhenFull {
	case "":
		o.WhenFull = DropOldest
	case DropOldest, DropNewest:
	default:
		return nil, fmt.Errorf("%w: WhenFull %q: want %q or %q", ErrBadOptions, o.WhenFull, DropOldest, DropNewest)
	}
	if o.MaxSize < 0 || o.MaxAge < 0 || o.CommitInterval < 0 || o.CommitSize < 0 || o.LockTimeout < 0 {
		return nil, fmt.Errorf("%w: negative size, age, interval or timeout", ErrBadOptions)
	}
	if o.MaxSize > 0 && o.MaxSize < minMaxSize {
		return nil, fmt.Errorf("%w: MaxSize %d is below the minimum %d", ErrBadOptions, o.MaxSize, minMaxSize)
	}
	if o.CommitSize == 0 {
		o.CommitSize = DefaultCommitSize
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	log := o.Logger.With("component", "buffer", "path", o.Path)
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o750); err != nil {
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	// A compaction interrupted by a crash leaves its half-written copy;
	// the original is intact because the rename is the commit point.
	_ = os.Remove(o.Path + compactSuffix)

	b := &Buffer{
		o:        o,
		log:      log,
		naive:    o.CommitInterval == 0,
		live:     map[reading.ID]*entry{},
		inflight: map[reading.ID]struct{}{},
		toDelete: map[reading.ID]struct{}{},
		toDead:   map[reading.ID]string{},
		notify:   make(chan struct{}, 1),
		kick:     make(chan struct{}, 1),
		drops:    newDropLog(log, 10*time.Second),
		// Not right after a start: see lastCompact.
		lastCompact: time.Now(),
	}
	b.st.Drops = map[string]uint64{}
	now := time.Now()
	rt := newRetrier(o, log)
	op, err := openStore(o, log, now, rt)
	if err != nil {
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	if op.aside != "" {
		b.st.CorruptFiles++
	}
	b.st.Salvaged, b.st.Unrecoverable = op.salvaged, op.lost
	b.st.AsideFiles, b.st.AsideBytes, b.st.AsidePruned = op.asideFiles, op.asideBytes, uint64(op.asidePruned)
	b.adopt(op)
	if op.bad > 0 {
		log.Warn("undecodable records moved to dead letters", "count", op.bad)
	}
	// The steps below write (a journal fold, the ID reservation): an I/O
	// error there is retried like one while opening.
	if err := rt.do("journal", func() error { return b.recoverJournal(&op) }); err != nil {
		closeQuietly(b.db)
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	// IDs go on from the highest of: the reservation, the highest stored
	// ID, the wall clock in microseconds (so a lost or fresh file does not
	// restart at 1) and the floor above a file set aside as corrupt.
	next := max(uint64(op.idCeil), uint64(op.maxID)+1, uint64(max(now.UnixMicro(), 1)), op.idFloor)
	b.nextID = reading.ID(next)
	if err := rt.do("reserve ids", b.reserveIDs); err != nil {
		closeQuietly(b.db)
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	if err := b.measure(); err != nil {
		closeQuietly(b.db)
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	b.lastFold = now
	b.st.OpenRetries = uint64(rt.retries)
	log.Info("buffer open", "depth", b.committed, "dead_letters", b.dead, "bytes", b.fileSize(),
		"commit_interval", o.CommitInterval, "journal", b.jr != nil,
		"max_size", o.MaxSize, "max_age", o.MaxAge, "when_full", o.WhenFull)

	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.wg.Add(1)
	go b.run(ctx)
	return b, nil
}

// minMaxSize keeps MaxSize above what bbolt needs for its own pages plus a
// few batches.
const minMaxSize = 256 << 10

// adopt installs a freshly opened store.
func (b *Buffer) adopt(op opened) {
	b.db = op.db
	b.committed = op.committed
	b.dead = op.dead + op.bad
	b.applyLimits()
	if op.idCeil > b.idCeil {
		b.idCeil = op.idCeil
	}
}

// applyLimits sets the size limits on b.db (after Open and after a
// compaction swapped the file).
func (b *Buffer) applyLimits() {
	b.pageSize = b.db.Info().PageSize
	if b.o.MaxSize > 0 {
		// Grow in steps of a sixteenth of the bound rather than bbolt's
		// 16 MiB, so the file stays close to what it holds; bbolt's own
		// cap then guarantees the file never exceeds MaxSize.
		// The journal takes its share of MaxSize first.
		// So do set-aside files (at most a quarter, see pruneAside).
		limit := b.o.MaxSize - journalSizeFor(b.o) - b.st.AsideBytes
		step := max(limit/16/65536*65536, 65536)
		b.db.AllocSize = int(min(step, 16<<20))
		b.db.MaxSize = int(limit)
		b.soft = limit*8/10 - int64(b.db.AllocSize)
	}
}

// reserveIDs makes the next block of IDs durable before any is handed out.
// Called with mu held (or before the Buffer is shared).
func (b *Buffer) reserveIDs() error {
	ceil := b.nextID + idBlock
	err := b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyIDCeil, binary.BigEndian.AppendUint64(nil, uint64(ceil)))
	})
	if err != nil {
		return fmt.Errorf("reserve ids: %w", err)
	}
	b.idCeil = ceil
	return nil
}

// Append stores rs and writes their assigned IDs into rs. In group-commit
// mode it does not wait for the disk (but for one small write per million
// IDs, the ID reservation); the readings are committed within
// CommitInterval. A reading that the disk has no room for is dropped by the
// WhenFull policy and counted, not returned as an error: the sensors must
// keep sampling.
func (b *Buffer) Append(ctx context.Context, rs []reading.Reading) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(rs) == 0 {
		return nil
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	for i := range rs {
		if b.nextID >= b.idCeil {
			if err := b.reserveIDs(); err != nil {
				b.mu.Unlock()
				return fmt.Errorf("append: %w", err)
			}
		}
		rs[i].ID = b.nextID
		b.nextID++
		e := &entry{r: rs[i], enc: encodeRecord(&rs[i])}
		b.pending = append(b.pending, e)
		b.live[e.r.ID] = e
	}
	b.capPending()
	n := b.changesLocked()
	b.mu.Unlock()

	select {
	case b.notify <- struct{}{}:
	default:
	}
	b.changed(n)
	return nil
}

// goneLocked reports whether a stored reading was acked or dead-lettered
// and only waits for a commit to leave the file.
func (b *Buffer) goneLocked(id reading.ID) bool {
	if _, ok := b.toDelete[id]; ok {
		return true
	}
	if _, ok := b.toDead[id]; ok {
		return true
	}
	if _, ok := b.delInTx[id]; ok {
		return true
	}
	_, ok := b.deadInTx[id]
	return ok
}

// changesLocked counts what the next commit would write: with a journal,
// what is not yet in it; without, what is not yet in bbolt.
func (b *Buffer) changesLocked() int {
	if b.jr != nil {
		return len(b.pending) - b.jcount + len(b.jAcks) + len(b.jDeads) + len(b.deadNew)
	}
	return len(b.pending) + len(b.toDelete) + len(b.toDead) + len(b.deadNew)
}

func (b *Buffer) kickCommit() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// maxPending bounds the readings held in memory while commits fail.
func (b *Buffer) maxPending() int { return max(4*b.o.CommitSize, 1024) }

// capPending drops readings held in memory beyond maxPending while commits
// keep failing (a full disk): memory is the one thing a Pi Zero has less of
// than disk. A commit loop that is merely behind drops nothing. Called with
// mu held.
func (b *Buffer) capPending() {
	over := len(b.pending) - b.maxPending()
	if over <= 0 || !b.failing {
		return
	}
	var gone []*entry
	if b.o.WhenFull == DropNewest {
		gone = b.pending[len(b.pending)-over:]
		b.pending = b.pending[:len(b.pending)-over]
	} else {
		gone = b.pending[:over]
		b.pending = append([]*entry(nil), b.pending[over:]...)
	}
	for _, e := range gone {
		delete(b.live, e.r.ID)
		delete(b.inflight, e.r.ID)
		if e.journaled {
			// Recorded like an ack, so a restart does not bring it back.
			b.jcount--
			b.jAcks = append(b.jAcks, e.r.ID)
		}
	}
	reason := ReasonWriteError
	if b.lastFull {
		reason = ReasonDiskFull
	}
	b.dropped(reason, len(gone))
}

func (b *Buffer) dropped(reason string, n int) {
	if n <= 0 {
		return
	}
	b.st.Drops[reason] += uint64(n)
	b.drops.add(reason, n)
}

// Notify returns a channel that receives a value after readings were
// appended (coalesced).
func (b *Buffer) Notify() <-chan struct{} { return b.notify }

// maxMisses is how many consecutive readings outside a Take's time window
// end the search of the file.
const maxMisses = 256

// Take hands out up to max readings that are not in flight, committed or not,
// in the filter's order, and marks them in flight. With a time window it
// searches the file until maxMisses readings in a row fall outside it: a
// reading whose time is far out of its append order (a clock correction) may
// be found only by a Take without a window or once its neighbours are gone.
func (b *Buffer) Take(max int, f reading.Filter) ([]reading.Reading, error) {
	if max <= 0 {
		return []reading.Reading{}, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	// Grown as needed: the uplink asks for up to 200 readings many times a
	// second and usually gets none or a few; preallocating for max made
	// every idle call a 30 KB allocation.
	var out []reading.Reading
	match := func(r *reading.Reading) bool {
		if !f.NotBefore.IsZero() && r.Time.Before(f.NotBefore) {
			return false
		}
		if !f.Before.IsZero() && !r.Time.Before(f.Before) {
			return false
		}
		return true
	}
	takeMem := func(es []*entry, reverse bool) {
		for i := range es {
			if len(out) >= max {
				return
			}
			e := es[i]
			if reverse {
				e = es[len(es)-1-i]
			}
			if b.live[e.r.ID] != e {
				continue // acked or dead-lettered
			}
			if _, busy := b.inflight[e.r.ID]; busy || !match(&e.r) {
				continue
			}
			b.inflight[e.r.ID] = struct{}{}
			out = append(out, e.r)
		}
	}
	takeFile := func() error {
		return b.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketReadings).Cursor()
			k, v := c.First()
			next := c.Next
			if f.NewestFirst {
				k, v = c.Last()
				next = c.Prev
			}
			// Readings are stored in append order, which is time order
			// but for clock corrections: a time-filtered Take stops
			// after a run of readings outside the window instead of
			// decoding a whole backlog on every call.
			misses := 0
			for ; k != nil && len(out) < max && misses < maxMisses; k, v = next() {
				id, ok := keyID(k)
				if !ok {
					continue
				}
				if _, busy := b.inflight[id]; busy {
					continue
				}
				if b.goneLocked(id) {
					continue
				}
				if _, mem := b.live[id]; mem {
					continue // being committed: handed out from memory
				}
				r, err := decodeRecord(v)
				if err != nil {
					b.log.Warn("skipping undecodable record", "id", id, "err", err)
					continue
				}
				if !match(&r) {
					misses++
					continue
				}
				misses = 0
				b.inflight[id] = struct{}{}
				out = append(out, r)
			}
			return nil
		})
	}
	// Committed readings are older than the ones being committed, which
	// are older than the pending ones.
	if f.NewestFirst {
		takeMem(b.pending, true)
		takeMem(b.committing, true)
		if err := takeFile(); err != nil {
			return out, fmt.Errorf("take: %w", err)
		}
	} else {
		if err := takeFile(); err != nil {
			return out, fmt.Errorf("take: %w", err)
		}
		takeMem(b.committing, false)
		takeMem(b.pending, false)
	}
	if out == nil {
		out = []reading.Reading{} // empty, not nil, as Source promises; no allocation
	}
	return out, nil
}

// Ack removes readings the platform acknowledged. A reading acked before its
// commit is never written to the file; otherwise its deletion is committed
// with the next group commit (a crash before then re-delivers it, with the
// same ID).
func (b *Buffer) Ack(ids []reading.ID) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	for _, id := range ids {
		delete(b.inflight, id)
		e := b.live[id]
		if b.forgetPendingLocked(id) {
			if e.journaled {
				b.jAcks = append(b.jAcks, id)
			}
			continue
		}
		b.toDelete[id] = struct{}{}
		if b.jr != nil {
			b.jAcks = append(b.jAcks, id)
		}
	}
	n := b.changesLocked()
	b.mu.Unlock()
	b.changed(n)
	return nil
}

// forgetPendingLocked drops id from memory if it has not been handed to a
// commit yet, reporting whether it did. A reading that is being committed is
// dropped from memory too but reported false: the file will hold it.
func (b *Buffer) forgetPendingLocked(id reading.ID) bool {
	e, ok := b.live[id]
	if !ok {
		return false
	}
	delete(b.live, id)
	for i, p := range b.pending {
		if p == e {
			b.pending = append(b.pending[:i], b.pending[i+1:]...)
			if e.journaled {
				b.jcount--
			}
			return true
		}
	}
	return false
}

// Release makes in-flight readings available to Take again.
func (b *Buffer) Release(ids []reading.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range ids {
		delete(b.inflight, id)
	}
}

// DeadLetter moves readings aside with reason; they stay in the file (see
// Export) but are never handed out again.
func (b *Buffer) DeadLetter(ids []reading.ID, reason string) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	for _, id := range ids {
		delete(b.inflight, id)
		e := b.live[id]
		if e != nil && b.forgetPendingLocked(id) {
			// A journaled reading is made dead by a 'D' record; one
			// that is not gets an 'X' record with the next window.
			b.deadNew = append(b.deadNew, deadEntry{e: e, reason: reason, journaled: e.journaled})
			if e.journaled {
				b.jDeads = append(b.jDeads, jdead{id, reason})
			}
			continue
		}
		b.toDead[id] = reason
		if b.jr != nil {
			b.jDeads = append(b.jDeads, jdead{id, reason})
		}
	}
	n := b.changesLocked()
	b.mu.Unlock()
	b.changed(n)
	return nil
}

// Stats returns a snapshot of the buffer's state.
func (b *Buffer) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.st
	s.Drops = make(map[string]uint64, len(b.st.Drops))
	for k, v := range b.st.Drops {
		s.Drops[k] = v
	}
	s.Pending = max(len(b.live)-b.jcount, 0)
	s.Depth = max(b.committed-len(b.toDelete)-len(b.toDead)-len(b.delInTx)-len(b.deadInTx), 0) + len(b.live)
	s.InFlight = len(b.inflight)
	s.DeadLetters = b.dead + len(b.deadNew) + len(b.toDead) + len(b.deadInTx) + b.deadNewTx
	s.NextID = b.nextID
	s.Bytes = b.fileSize()
	if b.jr != nil {
		s.Bytes += b.jr.size
	}
	if !b.closed {
		_ = b.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketReadings).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				id, _ := keyID(k)
				if b.goneLocked(id) {
					continue
				}
				if r, err := decodeRecord(v); err == nil {
					s.OldestUnsent = r.Time
				}
				break
			}
			return nil
		})
	}
	if s.OldestUnsent.IsZero() {
		for _, es := range [][]*entry{b.committing, b.pending} {
			for _, e := range es {
				if b.live[e.r.ID] == e {
					s.OldestUnsent = e.r.Time
					break
				}
			}
			if !s.OldestUnsent.IsZero() {
				break
			}
		}
	}
	return s
}

func (b *Buffer) fileSize() int64 {
	fi, err := os.Stat(b.o.Path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Close commits everything pending, stops the commit loop and closes the
// file. It retries a failing final commit until ctx is done and then
// reports ErrUncommitted.
func (b *Buffer) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	// The loop may be inside a commit; bbolt cannot interrupt one, and
	// closing the file under it would be worse than waiting.
	b.wg.Wait()
	for attempt := 0; ; attempt++ {
		if err := b.commit(); err == nil {
			break
		}
		if ctx.Err() != nil || attempt >= 50 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	b.mu.Lock()
	left := len(b.pending) - b.jcount // journaled ones are durable: the next Open folds them
	db := b.db
	b.mu.Unlock()
	b.drops.flush()
	if b.jr != nil {
		_ = b.jr.f.Close()
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("close buffer: %w", err)
	}
	if left > 0 {
		b.log.Error("readings lost at close: could not commit", "count", left)
		return fmt.Errorf("close buffer: %d %w", left, ErrUncommitted)
	}
	return nil
}

// run is the commit loop: it commits every CommitInterval, early on the size
// trigger, and in the naive mode retries commits that failed.
// changed is called after Append, Ack or DeadLetter left n changes waiting:
// the naive mode commits each at once, group commit only when the size
// trigger is reached (the ticker does the rest).
func (b *Buffer) changed(n int) {
	if b.naive {
		b.commit()
	} else if n >= b.o.CommitSize {
		b.kickCommit()
	}
}

func (b *Buffer) run(ctx context.Context) {
	defer b.wg.Done()
	every := b.o.CommitInterval
	if b.naive {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.kick:
		}
		_ = b.commit()
		b.maybeCompact()
	}
}

// commit writes pending readings, acks and dead letters in one transaction
// and applies MaxAge and MaxSize. On failure everything goes back to be
// retried; readings are dropped only by the policies.
func (b *Buffer) commit() error {
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	if b.jr != nil {
		if !b.foldDue() {
			err := b.journalWindow()
			if err == nil {
				return nil
			}
			if !errors.Is(err, errJournalFull) {
				b.drops.errorf("journal write failed; committing to the buffer file instead", "err", err)
			}
		} else if err := b.fold(); err == nil {
			return nil
		} else {
			// The fold failed (a full disk?): keep the window durable
			// in the preallocated journal meanwhile, while it has room.
			_ = b.journalWindow()
			return err
		}
	}
	return b.fold()
}

// resetJournal starts a new journal epoch after a fold. A failed reset
// leaves the journal broken: commits then go to bbolt until one succeeds.
// Called with commitMu held.
func (b *Buffer) resetJournal() {
	b.mu.Lock()
	due := b.resetDue
	b.resetDue = false
	b.mu.Unlock()
	if b.jr == nil || (!due && !b.jr.broken) {
		return
	}
	if err := b.jr.reset(b.jr.epoch + 1); err != nil {
		b.drops.errorf("journal reset failed; committing to the buffer file until it works", "err", err)
	}
}

// foldDue reports whether the journal's contents should go into bbolt now.
func (b *Buffer) foldDue() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	// With a size bound the fold's batch must fit the headroom above the
	// point where MaxSize drops start.
	big := b.o.MaxSize > 0 && b.jr.off-journalHeader > b.o.MaxSize/32
	// Acked readings stay in bbolt until a fold, and Take steps over them:
	// a drain folds every CommitSize acks, as it committed before.
	acked := len(b.toDelete)+len(b.toDead) >= b.o.CommitSize
	return b.closed || b.jr.broken || b.jr.half() || big || acked || b.windows >= foldEvery ||
		time.Since(b.lastFold) >= foldEvery*b.o.CommitInterval
}

// fold commits everything not yet in bbolt in one transaction (and, on a
// full disk with drop-oldest, makes room and retries once), then starts a new
// journal epoch. Called with commitMu held.
func (b *Buffer) fold() error {
	defer b.resetJournal()
	err := b.commitOnce()
	if err != nil && isFull(err) && b.o.WhenFull == DropOldest {
		// Make room by dropping the oldest committed readings in a
		// transaction of their own (it may fit in pages freed earlier),
		// then try once more.
		b.mu.Lock()
		n := max(256, len(b.pending))
		b.mu.Unlock()
		reason := ReasonDiskFull
		if errors.Is(err, errMaxSize) {
			reason = ReasonMaxSize // bbolt's cap is MaxSize itself
		}
		if n, derr := b.dropOldestCommitted(n, reason); derr == nil && n > 0 {
			err = b.commitOnce()
		}
	}
	return err
}

func (b *Buffer) commitOnce() error {
	b.mu.Lock()
	batch := b.pending
	b.pending = nil
	b.committing = batch
	dels, deads, deadNew := b.toDelete, b.toDead, b.deadNew
	// A journal with records must be folded even with nothing else to
	// write: acks in memory have overtaken readings it still holds.
	journalEmpty := b.jr == nil || b.jr.off == journalHeader
	if len(batch) == 0 && len(dels) == 0 && len(deads) == 0 && len(deadNew) == 0 && journalEmpty && !b.ageDueLocked() {
		// Nothing to write: no transaction, so an idle or fully acked
		// buffer costs the card nothing.
		b.committing = nil
		b.mu.Unlock()
		return nil
	}
	b.toDelete, b.toDead, b.deadNew = map[reading.ID]struct{}{}, map[reading.ID]string{}, nil
	// Whatever the journal was still to record goes into bbolt now.
	jAcks, jDeads, jcount := b.jAcks, b.jDeads, b.jcount
	b.jAcks, b.jDeads, b.jcount = nil, nil, 0
	var jepoch uint64
	if b.jr != nil {
		jepoch = b.jr.epoch
	}
	// Still gone for Take while the transaction runs.
	b.delInTx, b.deadInTx, b.deadNewTx = dels, deads, len(deadNew)
	inuse, soft := b.inuse, b.soft
	b.mu.Unlock()

	var (
		written, deleted, deadMoved int
		ageDrops, sizeDrops         int
		trimmed, aged               []*entry
		delIDs                      []reading.ID
	)
	now := time.Now()
	err := b.db.Update(func(tx *bolt.Tx) error {
		written, deleted, deadMoved, ageDrops, sizeDrops, trimmed, aged, delIDs = 0, 0, 0, 0, 0, nil, nil, nil
		var freed int64
		rb, db := tx.Bucket(bucketReadings), tx.Bucket(bucketDead)
		// Keys arrive in increasing order: pack leaves full instead of
		// bbolt's default half-full splits.
		rb.FillPercent = 0.95
		db.FillPercent = 0.95
		for id := range dels {
			k := idKey(id)
			if v := rb.Get(k); v != nil {
				freed += int64(len(k)+len(v)) + 16
				if err := rb.Delete(k); err != nil {
					return err
				}
				deleted++
				if b.o.onCommit != nil {
					delIDs = append(delIDs, id)
				}
			}
		}
		for id, reason := range deads {
			k := idKey(id)
			v := rb.Get(k)
			if v == nil {
				continue
			}
			if err := db.Put(k, encodeDead(append([]byte(nil), v...), reason, now)); err != nil {
				return err
			}
			if err := rb.Delete(k); err != nil {
				return err
			}
			deadMoved++
		}
		for _, d := range deadNew {
			if err := db.Put(idKey(d.e.r.ID), encodeDead(d.e.enc, d.reason, now)); err != nil {
				return err
			}
		}
		if b.o.MaxAge > 0 {
			n, err := pruneAge(rb, now.Add(-b.o.MaxAge))
			if err != nil {
				return err
			}
			ageDrops = n
		}
		toWrite := batch
		if b.o.MaxAge > 0 {
			// Readings already too old when committed (an unsynced
			// clock that jumped, a sensor replaying) are not written.
			cutoff := now.Add(-b.o.MaxAge)
			toWrite = nil
			for _, e := range batch {
				if e.r.Synced && e.r.Time.Before(cutoff) {
					aged = append(aged, e)
					continue
				}
				toWrite = append(toWrite, e)
			}
			ageDrops += len(aged)
		}
		if soft > 0 {
			// Pages freed in this transaction are reused from the
			// next one on; count them, or a fold that applies a
			// drain's acks would drop the readings that came with it.
			need := inuse + estimate(toWrite) - freed - soft
			if need > 0 && b.o.WhenFull == DropNewest {
				// Keep the oldest of the batch that fit.
				all := toWrite
				for len(toWrite) > 0 && need > 0 {
					need -= estimate(toWrite[len(toWrite)-1:])
					toWrite = toWrite[:len(toWrite)-1]
				}
				trimmed = all[len(toWrite):]
				sizeDrops = len(trimmed)
			} else if need > 0 {
				n, err := dropOldest(rb, need, -1)
				if err != nil {
					return err
				}
				sizeDrops = n
			}
		}
		for _, e := range toWrite {
			if err := rb.Put(idKey(e.r.ID), e.enc); err != nil {
				return err
			}
			written++
		}
		if b.jr != nil {
			// The journal's epoch is folded: at the next Open it is
			// ignored, also if resetting it below fails.
			return tx.Bucket(bucketMeta).Put(keyJEpoch, binary.BigEndian.AppendUint64(nil, jepoch))
		}
		return nil
	})

	if err == nil && b.o.onCommit != nil {
		var w []reading.ID
		for _, e := range batch {
			w = append(w, e.r.ID)
		}
		for _, e := range append(trimmed, aged...) {
			w = slices.DeleteFunc(w, func(id reading.ID) bool { return id == e.r.ID })
		}
		b.o.onCommit(w, delIDs)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.committing = nil
	b.delInTx, b.deadInTx, b.deadNewTx = nil, nil, 0
	if err != nil {
		b.st.CommitErrors++
		b.failing, b.lastFull = true, isFull(err)
		// Put everything back for the next attempt, in order.
		var back []*entry
		for _, e := range batch {
			if b.live[e.r.ID] == e {
				back = append(back, e)
			} else {
				// Acked or dead-lettered while we tried: it never
				// reached the file, so forget the delete.
				delete(b.toDelete, e.r.ID)
				if reason, ok := b.toDead[e.r.ID]; ok {
					delete(b.toDead, e.r.ID)
					b.deadNew = append(b.deadNew, deadEntry{e: e, reason: reason})
				}
			}
		}
		b.pending = append(back, b.pending...)
		for id := range dels {
			b.toDelete[id] = struct{}{}
		}
		for id, r := range deads {
			b.toDead[id] = r
		}
		b.deadNew = append(deadNew, b.deadNew...)
		b.jAcks, b.jDeads = append(jAcks, b.jAcks...), append(jDeads, b.jDeads...)
		for _, e := range back {
			if e.journaled {
				b.jcount++
			}
		}
		_ = jcount
		b.capPending()
		b.drops.errorf("commit failed; will retry", "err", err, "pending", len(b.pending))
		return fmt.Errorf("commit: %w", err)
	}
	b.failing, b.lastFull = false, false
	if b.o.MaxAge > 0 {
		b.lastPrune = now
	}
	if b.jr != nil {
		b.windows, b.lastFold, b.resetDue = 0, now, true
		b.st.Folds++
	}
	for _, e := range batch {
		if b.live[e.r.ID] == e {
			delete(b.live, e.r.ID)
		}
	}
	for _, e := range append(trimmed, aged...) {
		delete(b.inflight, e.r.ID)
		delete(b.toDelete, e.r.ID)
		delete(b.toDead, e.r.ID)
	}
	b.committed += written - deleted - deadMoved - (ageDrops - len(aged)) - sizeDrops*boolInt(b.o.WhenFull == DropOldest)
	b.dead += deadMoved + len(deadNew)
	b.dropped(ReasonMaxAge, ageDrops)
	b.dropped(ReasonMaxSize, sizeDrops)
	b.st.Commits++
	b.st.LastCommit = now
	if err := b.measureLocked(); err != nil {
		b.log.Warn("measure space in use", "err", err)
	}
	return nil
}

// ageDueLocked reports whether an otherwise empty commit should run to drop
// readings past MaxAge: at most once a minute, and only when the oldest
// stored reading is in fact too old.
func (b *Buffer) ageDueLocked() bool {
	if b.o.MaxAge == 0 || time.Since(b.lastPrune) < time.Minute {
		return false
	}
	b.lastPrune = time.Now()
	due := false
	cutoff := time.Now().Add(-b.o.MaxAge)
	_ = b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketReadings).Cursor()
		n := 0
		for k, v := c.First(); k != nil && n < 4096; k, v = c.Next() {
			n++
			if r, err := decodeRecord(v); err == nil && r.Synced {
				due = r.Time.Before(cutoff)
				return nil
			}
		}
		return nil
	})
	return due
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// estimate is a generous guess of the page bytes es take once written:
// bbolt stores a 16-byte element header per key and leaves some slack.
func estimate(es []*entry) int64 {
	var n int64
	for _, e := range es {
		n += int64(len(e.enc)) + 8 + 16
	}
	return n * 5 / 4
}

// pruneAge deletes readings whose synced Time is before cutoff, walking from
// the oldest and stopping at the first young synced one: append order follows
// time closely enough, and a full scan every commit would cost a slow board
// dearly. Readings taken before the clock was synchronised have no trusted
// age and are left to MaxSize.
func pruneAge(rb *bolt.Bucket, cutoff time.Time) (int, error) {
	var keys [][]byte
	c := rb.Cursor()
	scanned := 0
	for k, v := c.First(); k != nil && scanned < 4096; k, v = c.Next() {
		scanned++
		r, err := decodeRecord(v)
		if err != nil || !r.Synced {
			continue
		}
		if !r.Time.Before(cutoff) {
			break
		}
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := rb.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// dropOldest deletes the oldest readings until about need bytes are freed,
// or at most limit readings when limit >= 0.
func dropOldest(rb *bolt.Bucket, need int64, limit int) (int, error) {
	var keys [][]byte
	c := rb.Cursor()
	for k, v := c.First(); k != nil && need > 0 && (limit < 0 || len(keys) < limit); k, v = c.Next() {
		need -= int64(len(k)+len(v)+16) * 5 / 4
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := rb.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// dropOldestCommitted frees room on a full disk. Called with commitMu held.
func (b *Buffer) dropOldestCommitted(limit int, reason string) (int, error) {
	var n int
	err := b.db.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = dropOldest(tx.Bucket(bucketReadings), 1<<62, limit)
		return err
	})
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	b.committed -= n
	b.dropped(reason, n)
	b.mu.Unlock()
	return n, nil
}

// measure records the bytes of pages in use: the high-water mark minus
// free pages. MaxSize drops keep this under the soft limit so freed pages
// are reused and the file stops growing.
func (b *Buffer) measure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.measureLocked()
}

func (b *Buffer) measureLocked() error {
	var hwm int64
	if err := b.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil }); err != nil {
		return err
	}
	s := b.db.Stats()
	b.inuse = hwm - int64(s.FreePageN+s.PendingPageN)*int64(b.pageSize)
	return nil
}
