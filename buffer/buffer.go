package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"gatewayd/internal/reading"
	"gatewayd/internal/tick"
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
	// error) and the samples held in memory meanwhile hit their bound.
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
// samples that were acked before their commit never reached the file.
const idBlock = 1 << 20

// Options configure a Buffer. The zero value of each field is usable except
// Path.
type Options struct {
	Path    string        // bbolt file; its directory is created if missing
	MaxSize int64         // bytes on disk; 0 = unbounded
	MaxAge  time.Duration // samples with a synced Time older than this are dropped; 0 = unbounded
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
	// Dead letters are bounded by count, bytes of records and age (since
	// they were dead-lettered); the oldest go first and every drop is
	// counted in Stats.Drops and logged. 0 = the default
	// (DefaultDeadLetterMaxCount, DefaultDeadLetterMaxBytes but at most
	// MaxSize/8, DefaultDeadLetterMaxAge); negative = unbounded.
	DeadLetterMaxCount int
	DeadLetterMaxBytes int64
	DeadLetterMaxAge   time.Duration
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
	// commit with the IDs it wrote and the IDs it deleted.
	onCommit func(written, deleted []reading.ID)
	// compactMin and compactEvery override the compaction thresholds
	// (tests only; zero means the defaults in compact.go).
	compactMin   int64
	compactEvery time.Duration
}

// Stats describe the buffer. A "reading" is a sample: one sensor read with
// its values. Between commits Depth is exact for samples appended and acked
// in this process; samples dropped by policy leave it at the commit that
// drops them.
type Stats struct {
	Depth        int               `json:"depth"`          // samples waiting to be acked (committed or not)
	Values       int               `json:"values"`         // their values not yet acked or dead-lettered
	Bytes        int64             `json:"bytes"`          // size of the files on disk (bbolt and journal)
	Pending      int               `json:"pending"`        // appended but not yet committed
	InFlight     int               `json:"in_flight"`      // samples handed out by Take, not yet acked or released
	OldestUnsent time.Time         `json:"oldest_unsent"`  // Time of the oldest waiting sample; zero if none
	DeadLetters  int               `json:"dead_letters"`   // dead letters (a sample's values set aside together)
	Drops        map[string]uint64 `json:"drops"`          // samples dropped, by reason (this process)
	Commits      uint64            `json:"commits"`        // commit windows made durable (journal or bbolt)
	CommitErrors uint64            `json:"commit_errors"`  // failed commits (retried)
	LastCommit   time.Time         `json:"last_commit"`    // zero if none yet
	Folds        uint64            `json:"folds"`          // journal contents written into the bbolt file
	Compactions  uint64            `json:"compactions"`    // files rewritten to reclaim space
	CorruptFiles uint64            `json:"corrupt_files"`  // corrupt files set aside at open
	NextID       reading.ID        `json:"next_id,string"` // the ID the next Append assigns
	// Acknowledgements over the file's life. They are kept in the file
	// with the next commit that writes anything (and at Close), so they
	// survive restarts; a crash loses those since.
	AckedMessages uint64 `json:"acked_messages"` // platform messages acknowledged (Ack calls)
	AckedReadings uint64 `json:"acked_readings"` // samples whose last value left by Ack
	AckedValues   uint64 `json:"acked_values"`   // values acked
	// MessagesPerReading is AckedMessages / AckedReadings (0 before any).
	MessagesPerReading float64 `json:"messages_per_reading"`

	// Salvaged and Unrecoverable: samples copied from set-aside (damaged)
	// files into this one, and samples of theirs given up (undecodable, or
	// under pages that could not be read); totals kept in the file (see
	// salvage.go).
	Salvaged      uint64 `json:"salvaged"`
	Unrecoverable uint64 `json:"unrecoverable"`
	AsideFiles    int    `json:"aside_files"`  // set-aside files kept beside the buffer
	AsideBytes    int64  `json:"aside_bytes"`  // their size; counts against MaxSize
	AsidePruned   uint64 `json:"aside_pruned"` // set-aside files deleted to stay within MaxSize (this process)
	OpenRetries   uint64 `json:"open_retries"` // I/O errors retried while opening (this process)
}

// Buffer is the store-and-forward queue between the sensor loops and the
// uplink. It implements reading.Sink and reading.Source. All methods are safe
// for concurrent use.
type Buffer struct {
	o        Options
	log      *slog.Logger
	naive    bool
	opened   time.Time // the entries' append times count from here
	soft     int64     // bytes in use above which MaxSize drops start
	pageSize int

	// commitMu serialises commits, compaction and Close; it is taken
	// before mu, never while holding it.
	commitMu sync.Mutex

	mu     sync.Mutex
	db     *bolt.DB
	closed bool
	nextID reading.ID
	idCeil reading.ID
	l      *ledger
	inuse  int64 // bytes of pages in use after the last commit
	// oldest is the first record of the file after the last fold.
	oldestID   reading.ID
	oldestTime time.Time
	// The journal (nil in naive mode).
	jr        *journal
	resetDue  bool // a fold succeeded: start a new journal epoch
	windows   int  // journal windows since the last fold
	lastFold  time.Time
	lastFull  bool // the last commit failed for lack of space
	failing   bool // the last commit failed
	lastPrune time.Time
	// lastDeadPrune is when dead letters were last checked for age;
	// deadAgeDue says the next fold must drop some.
	lastDeadPrune time.Time
	deadAgeDue    bool
	// lastCompact starts at Open, so a restart loop cannot turn into a
	// compaction loop.
	lastCompact time.Time
	// compactChecked is when maybeCompact last found no need (see there).
	compactChecked time.Time
	st             Stats
	drops          *dropLog

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
		o:      o,
		log:    log,
		naive:  o.CommitInterval == 0,
		opened: time.Now(),
		notify: make(chan struct{}, 1),
		kick:   make(chan struct{}, 1),
		drops:  newDropLog(log, 10*time.Second),
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
	b.mu.Lock()
	b.findOldestLocked()
	b.mu.Unlock()
	b.lastFold = now
	b.st.OpenRetries = uint64(rt.retries)
	log.Info("buffer open", "depth", b.l.stored, "values", b.l.storedValues, "dead_letters", b.l.deadRecs,
		"bytes", b.fileSize(), "page_size", b.pageSize,
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
	b.l = newLedger(op.dict)
	b.l.stored, b.l.storedValues, b.l.deadRecs, b.l.deadBytes = op.committed, op.values, op.dead+op.bad, op.deadBytes
	b.l.acks, b.l.acksJournaled = op.acks, op.acks
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
		// Grow in steps of a 64th of the bound (at most 1 MiB) rather
		// than bbolt's 16 MiB, so the file stays close to what it holds;
		// bbolt's own cap then guarantees the file never exceeds MaxSize.
		// The journal takes its share of MaxSize first.
		// So do set-aside files (at most a quarter, see pruneAside).
		limit := b.o.MaxSize - journalSizeFor(b.o) - b.st.AsideBytes
		step := max(limit/64/65536*65536, 65536)
		b.db.AllocSize = int(min(step, 1<<20))
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

// checkSample validates a sample before it is stored.
func checkSample(s *reading.Sample) error {
	if len(s.Values) > maxValues {
		return fmt.Errorf("%w: sample of %q has %d values, at most %d", ErrBadSample, s.Sensor, len(s.Values), maxValues)
	}
	for i := range s.Values {
		for j := range i {
			if s.Values[i].Measurement == s.Values[j].Measurement {
				return fmt.Errorf("%w: sample of %q has measurement %q twice", ErrBadSample, s.Sensor, s.Values[i].Measurement)
			}
		}
		if r := s.Values[i].Resolution; !(r >= 0) {
			return fmt.Errorf("%w: sample of %q: resolution %v", ErrBadSample, s.Sensor, r)
		}
	}
	return nil
}

// Append stores ss and writes their assigned IDs into ss. Values are kept
// at their Resolution (rounded, as they are stored). In group-commit mode it
// does not wait for the disk (but for one small write per million IDs, the
// ID reservation); the samples are committed within CommitInterval. A
// sample the disk has no room for is dropped by the WhenFull policy and
// counted, not returned as an error: the sensors must keep sampling. A
// sample without values gets an ID and is not stored.
func (b *Buffer) Append(ctx context.Context, ss []reading.Sample) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ss) == 0 {
		return nil
	}
	for i := range ss {
		if err := checkSample(&ss[i]); err != nil {
			return fmt.Errorf("append: %w", err)
		}
	}
	at := time.Since(b.opened)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	for i := range ss {
		if b.nextID >= b.idCeil {
			if err := b.reserveIDs(); err != nil {
				b.mu.Unlock()
				return fmt.Errorf("append: %w", err)
			}
		}
		ss[i].ID = b.nextID
		b.nextID++
		if len(ss[i].Values) == 0 {
			continue
		}
		s := ss[i]
		s.Values = make([]reading.Value, len(ss[i].Values))
		for j, v := range ss[i].Values {
			v.Value = normalize(v.Value, v.Resolution)
			s.Values[j] = v
		}
		b.l.add(s, at)
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

// changesLocked counts the changes since the last commit: appends, removed
// values and dead letters (the CommitSize trigger).
func (b *Buffer) changesLocked() int { return b.l.changes }

func (b *Buffer) kickCommit() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// maxPending bounds the samples held in memory while commits fail.
func (b *Buffer) maxPending() int { return max(4*b.o.CommitSize, 1024) }

// capPending drops samples held in memory beyond maxPending while commits
// keep failing (a full disk): memory is the one thing a Pi Zero has less of
// than disk. A commit loop that is merely behind drops nothing. Called with
// mu held.
func (b *Buffer) capPending() {
	if !b.failing {
		return
	}
	live := b.l.memLive()
	over := len(live) - b.maxPending()
	if over <= 0 {
		return
	}
	gone := live[:over]
	if b.o.WhenFull == DropNewest {
		gone = live[len(live)-over:]
	}
	for _, e := range gone {
		// A journaled one is removed like an ack by the next window,
		// so a restart does not bring it back.
		e.live, e.inflight = 0, false
		b.l.settle(e)
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

// Notify returns a channel that receives a value after samples were
// appended (coalesced).
func (b *Buffer) Notify() <-chan struct{} { return b.notify }

// maxMisses is how many consecutive samples outside a Take's time window
// end the search of the file.
const maxMisses = 256

// Take hands out whole samples that are not in flight, committed or not, in
// the filter's order, with only their values not yet acked or dead-lettered,
// and marks them in flight. It stops before the sample that would take the
// total past maxValues, but returns at least one when one matches. The file
// is read only when it holds samples the ledger does not account for (a
// backlog): served from memory, Take opens no bbolt transaction. With a
// time window it searches the file until maxMisses samples in a row fall
// outside it: a sample whose time is far out of its append order (a clock
// correction) may be found only by a Take without a window or once its
// neighbours are gone.
func (b *Buffer) Take(maxValues int, f reading.Filter) ([]reading.Sample, error) {
	if maxValues <= 0 {
		return []reading.Sample{}, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	// Grown as needed: the uplink asks often and usually gets none or a
	// few; preallocating for maxValues made every idle call an allocation.
	var out []reading.Sample
	n, stop := 0, false
	give := func(e *entry) {
		k := bits.OnesCount64(e.live)
		if len(out) > 0 && n+k > maxValues {
			stop = true
			return
		}
		e.inflight = true
		out = append(out, e.sample(e.live))
		n += k
		if n >= maxValues {
			stop = true
		}
	}
	match := func(s *reading.Sample) bool {
		if !f.NotBefore.IsZero() && s.Time.Before(f.NotBefore) {
			return false
		}
		if !f.Before.IsZero() && !s.Time.Before(f.Before) {
			return false
		}
		return true
	}
	takeMem := func(reverse bool) {
		mem := b.l.mem
		for i := range mem {
			if stop {
				return
			}
			e := mem[i]
			if reverse {
				e = mem[len(mem)-1-i]
			}
			if e.gone || !e.mem || e.live == 0 || e.inflight || !match(&e.s) {
				continue
			}
			give(e)
		}
	}
	takeFile := func() error {
		if stop || b.l.fileAvail() <= 0 {
			return nil // nothing there the ledger does not already hold
		}
		return b.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketReadings).Cursor()
			k, v := c.First()
			next := c.Next
			if f.NewestFirst {
				k, v = c.Last()
				next = c.Prev
			}
			// Samples are stored in append order, which is time order
			// but for clock corrections: a time-filtered Take stops
			// after a run of samples outside the window instead of
			// decoding a whole backlog on every call.
			misses := 0
			for ; k != nil && !stop && misses < maxMisses; k, v = next() {
				id, ok := keyID(k)
				if !ok {
					continue
				}
				if e := b.l.byID[id]; e != nil {
					if e.mem || e.live == 0 || e.inflight {
						continue // handed out from memory, gone or busy
					}
					if !match(&e.s) {
						misses++
						continue
					}
					misses = 0
					give(e)
					continue
				}
				s, err := decodeSample(id, v, b.l.dict)
				if err != nil {
					b.log.Warn("skipping undecodable record", "id", id, "err", err)
					continue
				}
				if !match(&s) {
					misses++
					continue
				}
				misses = 0
				if len(out) > 0 && n+len(s.Values) > maxValues {
					stop = true
					break
				}
				give(b.l.load(s))
			}
			return nil
		})
	}
	// Samples in the file are older than the ones in memory.
	if f.NewestFirst {
		takeMem(true)
		if err := takeFile(); err != nil {
			return out, fmt.Errorf("take: %w", err)
		}
	} else {
		if err := takeFile(); err != nil {
			return out, fmt.Errorf("take: %w", err)
		}
		takeMem(false)
	}
	if out == nil {
		out = []reading.Sample{} // empty, not nil, as Source promises; no allocation
	}
	return out, nil
}

// lookupLocked returns the ledger's entry for id, reading it from the file
// when the ledger does not hold it (an ack after it was settled); nil when
// the buffer does not hold it.
func (b *Buffer) lookupLocked(id reading.ID) *entry {
	if e := b.l.byID[id]; e != nil {
		return e
	}
	if b.l.stored == 0 {
		return nil
	}
	var e *entry
	_ = b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketReadings).Get(idKey(id))
		if v == nil {
			return nil
		}
		if s, err := decodeSample(id, v, b.l.dict); err == nil {
			e = b.l.load(s)
		}
		return nil
	})
	return e
}

// Ack removes values the platform acknowledged: a Ref without Measurement
// removes the sample's every remaining value. The uplink calls it once per
// acknowledged message; that is counted (Stats.AckedMessages). A value acked
// before its commit is never written to the file; otherwise its removal is
// committed with the next group commit (a crash before then re-delivers it,
// with the same ID).
func (b *Buffer) Ack(refs []reading.Ref) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if len(refs) > 0 {
		b.l.acks.msgs++
	}
	for _, r := range refs {
		e := b.lookupLocked(r.ID)
		if e == nil {
			continue
		}
		if m := b.l.remove(e, r.Measurement); m != 0 {
			b.l.acks.values += uint64(bits.OnesCount64(m))
			if e.live == 0 {
				b.l.acks.samples++
			}
		}
		b.l.settle(e)
	}
	n := b.changesLocked()
	b.mu.Unlock()
	b.changed(n)
	return nil
}

// Release makes in-flight samples available to Take again, with the values
// they still have.
func (b *Buffer) Release(ids []reading.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range ids {
		if e := b.l.byID[id]; e != nil {
			e.inflight = false
			b.l.settle(e)
		}
	}
}

// DeadLetter moves values (a Ref without Measurement: all the sample still
// has) aside with reason; they stay in the file (see Export) but are never
// handed out again. A sample whose values are all gone leaves the queue.
func (b *Buffer) DeadLetter(refs []reading.Ref, reason string) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	now := time.Now()
	// One dead letter per sample per call, with every value named.
	masks := map[*entry]uint64{}
	var order []*entry
	for _, r := range refs {
		e := b.lookupLocked(r.ID)
		if e == nil {
			continue
		}
		m := b.l.remove(e, r.Measurement)
		if m == 0 {
			continue
		}
		if _, ok := masks[e]; !ok {
			order = append(order, e)
		}
		masks[e] |= m
	}
	for _, e := range order {
		b.l.deads = append(b.l.deads, &deadItem{s: e.sample(masks[e]), reason: reason, at: now})
		b.l.settle(e)
	}
	n := b.changesLocked()
	b.mu.Unlock()
	b.changed(n)
	return nil
}

// Stats returns a snapshot of the buffer's state, derived from the ledger.
func (b *Buffer) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.st
	s.Drops = make(map[string]uint64, len(b.st.Drops))
	for k, v := range b.st.Drops {
		s.Drops[k] = v
	}
	d := b.l.depth()
	s.Depth, s.Values, s.Pending, s.InFlight = d.samples, d.values, d.pending, d.inflight
	s.DeadLetters = b.l.deadRecs + len(b.l.deads)
	s.NextID = b.nextID
	s.Bytes = b.fileSize()
	if b.jr != nil {
		s.Bytes += b.jr.size
	}
	s.AckedMessages, s.AckedReadings, s.AckedValues = b.l.acks.msgs, b.l.acks.samples, b.l.acks.values
	if s.AckedReadings > 0 {
		s.MessagesPerReading = float64(s.AckedMessages) / float64(s.AckedReadings)
	}
	s.OldestUnsent = b.oldestLocked()
	return s
}

// oldestLocked is the Time of the oldest waiting sample: the file's first
// record (known since the last fold) unless it was acked since, else the
// oldest in memory.
func (b *Buffer) oldestLocked() time.Time {
	inFile := b.l.stored
	for _, e := range b.l.byID {
		if e.filed != 0 && e.live == 0 {
			inFile--
		}
	}
	if inFile > 0 && !b.closed {
		if e := b.l.byID[b.oldestID]; (e == nil || e.live != 0) && !b.oldestTime.IsZero() {
			return b.oldestTime
		}
		// The first records were acked since the last fold (a drain):
		// skip them.
		var t time.Time
		_ = b.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketReadings).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				id, _ := keyID(k)
				if e := b.l.byID[id]; e != nil && e.live == 0 {
					continue
				}
				if s, err := decodeSample(id, v, b.l.dict); err == nil {
					t = s.Time
				}
				break
			}
			return nil
		})
		if !t.IsZero() {
			return t
		}
	}
	for _, e := range b.l.mem {
		if !e.gone && e.live != 0 {
			return e.s.Time
		}
	}
	return time.Time{}
}

// findOldestLocked caches the file's first record (after Open and folds).
func (b *Buffer) findOldestLocked() {
	b.oldestID, b.oldestTime = 0, time.Time{}
	_ = b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketReadings).Cursor()
		if k, v := c.First(); k != nil {
			id, _ := keyID(k)
			if s, err := decodeSample(id, v, b.l.dict); err == nil {
				b.oldestID, b.oldestTime = id, s.Time
			}
		}
		return nil
	})
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
	left := 0 // journaled ones are durable: the next Open folds them
	for _, e := range b.l.mem {
		if !e.gone && e.mem && e.live != 0 && e.durable == 0 {
			left++
		}
	}
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
		b.log.Error("samples lost at close: could not commit", "count", left)
		return fmt.Errorf("close buffer: %d %w", left, ErrUncommitted)
	}
	return nil
}

// changed is called after Append, Ack or DeadLetter left n changes waiting:
// the naive mode commits each at once, group commit only when the size
// trigger is reached (the ticker does the rest).
func (b *Buffer) changed(n int) {
	if b.naive {
		_ = b.commit()
	} else if n >= b.o.CommitSize {
		b.kickCommit()
	}
}

// run is the commit loop: it commits every CommitInterval, early on the size
// trigger, and in the naive mode retries commits that failed.
func (b *Buffer) run(ctx context.Context) {
	defer b.wg.Done()
	every := b.o.CommitInterval
	if b.naive {
		every = time.Second
	}
	// On the ticks of the clock, shared with the sampling rounds (see
	// tick): a commit due at the same moment as a round costs no wake-up
	// of its own.
	t := tick.New(every)
	defer t.Stop()
	for {
		var fresh time.Duration
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			t.Next()
			// The tick this commit is for, however late it runs: what
			// was appended since (the round sampled on this same tick)
			// waits for the next window.
			if !b.naive {
				fresh = max(now.Sub(b.opened)-tick.Since(now, every), 1)
			}
		case <-b.kick:
		}
		_ = b.commitBefore(fresh)
		b.maybeCompact()
	}
}

// commit makes every pending change durable.
func (b *Buffer) commit() error { return b.commitBefore(0) }

// commitBefore makes the pending changes durable: a journal window, or a
// fold into bbolt when one is due (or the journal cannot take the window).
// Samples appended at or after fresh (> 0) are left to the next commit.
func (b *Buffer) commitBefore(fresh time.Duration) error {
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	if b.jr != nil {
		if !b.foldDue() {
			err := b.journalWindow(fresh)
			if err == nil {
				return nil
			}
			if !errors.Is(err, errJournalFull) {
				b.drops.errorf("journal write failed; committing to the buffer file instead", "err", err)
			}
		} else if err := b.fold(fresh); err == nil {
			return nil
		} else {
			// The fold failed (a full disk?): keep the window durable
			// in the preallocated journal meanwhile, while it has room.
			_ = b.journalWindow(fresh)
			return err
		}
	}
	return b.fold(fresh)
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
	// Acked samples stay in bbolt until a fold, and Take steps over them:
	// a drain folds every CommitSize acks, as it committed before.
	changed := 0
	for _, e := range b.l.byID {
		if e.filed != 0 && e.live != e.filed {
			changed++
		}
	}
	acked := changed+len(b.l.deads) >= b.o.CommitSize
	return b.closed || b.deadAgeDue || b.deadDueLocked() || b.jr.broken || b.jr.half() || big || acked || b.windows >= foldEvery ||
		time.Since(b.lastFold) >= foldEvery*b.o.CommitInterval
}

// fold commits everything not yet in bbolt in one transaction (and, on a
// full disk with drop-oldest, makes room and retries once), then starts a new
// journal epoch. Called with commitMu held.
func (b *Buffer) fold(fresh time.Duration) error {
	defer b.resetJournal()
	err := b.commitOnce(fresh)
	if err != nil && isFull(err) && b.o.WhenFull == DropOldest {
		// Make room by dropping the oldest committed samples in a
		// transaction of their own (it may fit in pages freed earlier),
		// then try once more.
		// Room for the batch and the transaction's copied pages: at
		// least 16 pages.
		b.mu.Lock()
		need := int64(16*b.pageSize) + int64(len(b.l.mem))*64
		b.mu.Unlock()
		reason := ReasonDiskFull
		if errors.Is(err, errMaxSize) {
			reason = ReasonMaxSize // bbolt's cap is MaxSize itself
		}
		if n, derr := b.dropOldestCommitted(need, reason); derr == nil && n > 0 {
			err = b.commitOnce(fresh)
		}
	}
	return err
}

// foldTx is what one fold transaction did beyond its batch.
type foldTx struct {
	stored, values, deadRecs int // changes to the file's counts
	deadBytes                int64
	dead                     deadDrops    // dead letters dropped by their bounds
	dropped                  []reading.ID // deleted by MaxAge or MaxSize
	ageDrops, sizeDrops      int
	written, deleted         []reading.ID // for onCommit
	oldestID                 reading.ID
	oldestTime               time.Time
}

// commitOnce writes one fold: the ledger's batch, the dead items and
// dictionary entries, MaxAge and MaxSize, and the journal epoch it folds.
func (b *Buffer) commitOnce(fresh time.Duration) error {
	b.mu.Lock()
	// A journal with records must be folded even with nothing else to
	// write: acks in memory have overtaken samples it still holds.
	journalEmpty := b.jr == nil || b.jr.off == journalHeader
	f := b.l.fold(fresh)
	// The ack counters alone are worth a write only at Close.
	acksOnly := b.closed && b.l.acks != b.l.acksJournaled
	deadDue := b.deadAgeDue || b.deadDueLocked()
	if f.empty() && journalEmpty && !acksOnly && !deadDue && !b.ageDueLocked() {
		// Nothing to write: no transaction, so an idle or fully acked
		// buffer costs the card nothing.
		b.l.foldDone(f, false, nil)
		b.mu.Unlock()
		return nil
	}
	var jepoch uint64
	if b.jr != nil {
		jepoch = b.jr.epoch
	}
	dict := b.l.dict.snapshot()
	dictEncs := make([][]byte, len(f.dicts))
	for i, idx := range f.dicts {
		dictEncs[i] = encodeDictEnt(&dict.ents[idx-1])
	}
	was := make([]uint64, len(f.items))
	for i := range f.items {
		was[i] = f.items[i].e.filed
	}
	deadEncs := make([][]byte, len(f.deads))
	for i, d := range f.deads {
		deadEncs[i] = encodeDead(d.enc, d.reason, d.at)
	}
	inuse, soft := b.inuse, b.soft
	deadRecs, deadBytes, deadAge := b.l.deadRecs, b.l.deadBytes, b.deadAgeDue
	b.mu.Unlock()

	now := time.Now()
	var r foldTx
	err := b.db.Update(func(tx *bolt.Tx) error {
		r = foldTx{}
		for i := range f.items {
			f.items[i].dropped = false
		}
		var freed int64
		rb, db, mb, xb := tx.Bucket(bucketReadings), tx.Bucket(bucketDead), tx.Bucket(bucketMeta), tx.Bucket(bucketDict)
		// Keys arrive in increasing order: pack leaves full instead of
		// bbolt's default half-full splits.
		rb.FillPercent = 0.95
		db.FillPercent = 0.95
		for i, idx := range f.dicts {
			if err := xb.Put(dictKey(idx), dictEncs[i]); err != nil {
				return err
			}
		}
		// Records already in the file: rewrite or delete.
		var fresh []int
		for i := range f.items {
			it := &f.items[i]
			if was[i] == 0 {
				fresh = append(fresh, i)
				continue
			}
			k := idKey(it.e.s.ID)
			if it.mask == 0 {
				if v := rb.Get(k); v != nil {
					freed += int64(len(k)+len(v)) + 16
					if err := rb.Delete(k); err != nil {
						return err
					}
					r.stored--
				}
				r.values -= bits.OnesCount64(was[i])
				if b.o.onCommit != nil {
					r.deleted = append(r.deleted, it.e.s.ID)
				}
				continue
			}
			if err := rb.Put(k, it.enc); err != nil {
				return err
			}
			r.values += bits.OnesCount64(it.mask) - bits.OnesCount64(was[i])
		}
		for i, d := range f.deads {
			k, err := freeDeadKey(db, d.s.ID)
			if err != nil {
				return err
			}
			if err := db.Put(k, deadEncs[i]); err != nil {
				return err
			}
			r.deadRecs++
			r.deadBytes += deadSize(k, deadEncs[i])
		}
		if len(f.deads) > 0 || deadDue {
			dd, err := pruneDead(db, deadRecs+r.deadRecs, deadBytes+r.deadBytes, b.o, now, deadAge)
			if err != nil {
				return err
			}
			r.dead = dd
			r.deadRecs -= dd.recs
			r.deadBytes -= dd.size
		}
		var cutoff time.Time
		if b.o.MaxAge > 0 {
			cutoff = now.Add(-b.o.MaxAge)
			ids, vals, err := pruneAge(rb, cutoff, dict)
			if err != nil {
				return err
			}
			r.dropped = append(r.dropped, ids...)
			r.ageDrops += len(ids)
			r.stored -= len(ids)
			r.values -= vals
		}
		// New records: samples already too old when committed (an
		// unsynced clock that jumped, a sensor replaying) are not
		// written.
		var toWrite []int
		for _, i := range fresh {
			it := &f.items[i]
			if !cutoff.IsZero() && it.e.s.Synced && it.e.s.Time.Before(cutoff) {
				it.dropped = true
				r.ageDrops++
				continue
			}
			toWrite = append(toWrite, i)
		}
		if soft > 0 {
			// Pages freed in this transaction are reused from the
			// next one on; count them, or a fold that applies a
			// drain's acks would drop the samples that came with it.
			est := func(is []int) int64 {
				var n int64
				for _, i := range is {
					n += int64(len(f.items[i].enc)) + 8 + 16
				}
				return n * 5 / 4
			}
			need := inuse + est(toWrite) - freed - soft
			if need > 0 && b.o.WhenFull == DropNewest {
				// Keep the oldest of the batch that fit.
				for len(toWrite) > 0 && need > 0 {
					last := toWrite[len(toWrite)-1]
					need -= est(toWrite[len(toWrite)-1:])
					f.items[last].dropped = true
					r.sizeDrops++
					toWrite = toWrite[:len(toWrite)-1]
				}
			} else if need > 0 {
				ids, vals, err := dropOldest(rb, need, -1)
				if err != nil {
					return err
				}
				r.dropped = append(r.dropped, ids...)
				r.sizeDrops += len(ids)
				r.stored -= len(ids)
				r.values -= vals
			}
		}
		for _, i := range toWrite {
			it := &f.items[i]
			if err := rb.Put(idKey(it.e.s.ID), it.enc); err != nil {
				return err
			}
			r.stored++
			r.values += bits.OnesCount64(it.mask)
			if b.o.onCommit != nil {
				r.written = append(r.written, it.e.s.ID)
			}
		}
		if err := mb.Put(keyAcks, encodeAcks(f.acks)); err != nil {
			return err
		}
		if k, v := rb.Cursor().First(); k != nil {
			r.oldestID, _ = keyID(k)
			if s, err := decodeSample(r.oldestID, v, dict); err == nil {
				r.oldestTime = s.Time
			}
		}
		if b.jr != nil {
			// The journal's epoch is folded: at the next Open it is
			// ignored, also if resetting it below fails.
			return mb.Put(keyJEpoch, binary.BigEndian.AppendUint64(nil, jepoch))
		}
		return nil
	})

	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.l.foldDone(f, false, nil)
		b.st.CommitErrors++
		b.failing, b.lastFull = true, isFull(err)
		b.capPending()
		b.drops.errorf("commit failed; will retry", "err", err, "in_memory", len(b.l.mem))
		return fmt.Errorf("commit: %w", err)
	}
	b.l.stored += r.stored
	b.l.storedValues += r.values
	b.l.deadRecs += r.deadRecs
	b.l.deadBytes += r.deadBytes
	if deadAge {
		b.deadAgeDue = false
	}
	b.dropped(ReasonDeadCount, r.dead.count)
	b.dropped(ReasonDeadBytes, r.dead.bytes)
	b.dropped(ReasonDeadAge, r.dead.age)
	b.l.foldDone(f, true, r.dropped)
	b.oldestID, b.oldestTime = r.oldestID, r.oldestTime
	b.failing, b.lastFull = false, false
	if b.o.MaxAge > 0 {
		b.lastPrune = now
	}
	if b.jr != nil {
		b.windows, b.lastFold, b.resetDue = 0, now, true
		b.st.Folds++
	}
	b.dropped(ReasonMaxAge, r.ageDrops)
	b.dropped(ReasonMaxSize, r.sizeDrops)
	b.st.Commits++
	b.st.LastCommit = now
	if b.o.onCommit != nil {
		b.o.onCommit(r.written, r.deleted)
	}
	if err := b.measureLocked(); err != nil {
		b.log.Warn("measure space in use", "err", err)
	}
	return nil
}

// freeDeadKey returns the dead bucket's key for another dead letter of id:
// the ID, then a sequence number when the sample has one already.
func freeDeadKey(db *bolt.Bucket, id reading.ID) ([]byte, error) {
	k := idKey(id)
	if db.Get(k) == nil {
		return k, nil
	}
	for seq := uint64(1); seq < 1<<16; seq++ {
		ks := binary.AppendUvarint(idKey(id), seq)
		if db.Get(ks) == nil {
			return ks, nil
		}
	}
	return nil, fmt.Errorf("%w: too many dead letters for sample %d", ErrCorrupt, id)
}

// ageDueLocked reports whether an otherwise empty commit should run to drop
// samples past MaxAge: at most once a minute, and only when the oldest
// stored sample is in fact too old.
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
			id, _ := keyID(k)
			if s, err := decodeSample(id, v, b.l.dict); err == nil && s.Synced {
				due = s.Time.Before(cutoff)
				return nil
			}
		}
		return nil
	})
	return due
}

// pruneAge deletes samples whose synced Time is before cutoff, walking from
// the oldest and stopping at the first young synced one: append order follows
// time closely enough, and a full scan every commit would cost a slow board
// dearly. Samples taken before the clock was synchronised have no trusted
// age and are left to MaxSize. It returns the IDs and how many values they
// held.
func pruneAge(rb *bolt.Bucket, cutoff time.Time, d *Dict) ([]reading.ID, int, error) {
	var keys [][]byte
	var ids []reading.ID
	vals := 0
	c := rb.Cursor()
	scanned := 0
	for k, v := c.First(); k != nil && scanned < 4096; k, v = c.Next() {
		scanned++
		id, _ := keyID(k)
		s, err := decodeSample(id, v, d)
		if err != nil || !s.Synced {
			continue
		}
		if !s.Time.Before(cutoff) {
			break
		}
		keys = append(keys, append([]byte(nil), k...))
		ids = append(ids, id)
		vals += len(s.Values)
	}
	for _, k := range keys {
		if err := rb.Delete(k); err != nil {
			return nil, 0, err
		}
	}
	return ids, vals, nil
}

// dropOldest deletes the oldest samples until about need bytes are freed,
// or at most limit samples when limit >= 0.
func dropOldest(rb *bolt.Bucket, need int64, limit int) ([]reading.ID, int, error) {
	var keys [][]byte
	var ids []reading.ID
	vals := 0
	c := rb.Cursor()
	for k, v := c.First(); k != nil && need > 0 && (limit < 0 || len(keys) < limit); k, v = c.Next() {
		need -= int64(len(k)+len(v)+16) * 5 / 4
		keys = append(keys, append([]byte(nil), k...))
		id, _ := keyID(k)
		ids = append(ids, id)
		vals += max(countValues(v), 0)
	}
	for _, k := range keys {
		if err := rb.Delete(k); err != nil {
			return nil, 0, err
		}
	}
	return ids, vals, nil
}

// dropOldestCommitted frees about need bytes on a full disk. Called with
// commitMu held.
func (b *Buffer) dropOldestCommitted(need int64, reason string) (int, error) {
	var ids []reading.ID
	var vals int
	err := b.db.Update(func(tx *bolt.Tx) error {
		var err error
		ids, vals, err = dropOldest(tx.Bucket(bucketReadings), need, -1)
		return err
	})
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	b.l.stored -= len(ids)
	b.l.storedValues -= vals
	for _, id := range ids {
		if e := b.l.byID[id]; e != nil {
			b.l.dropped(e)
		}
	}
	b.dropped(reason, len(ids))
	b.findOldestLocked()
	b.mu.Unlock()
	return len(ids), nil
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
