package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"gatewayd/internal/reading"
)

// The journal makes a commit window durable with one small append instead of
// a bbolt transaction. A bbolt commit rewrites the meta page and the path from
// the changed leaf to the root (about four 4 KiB pages of the card); an append
// to a preallocated file dirties one. Every foldEvery windows, or when the
// journal is half full, its contents are folded into bbolt in one transaction
// and the journal starts a new epoch.
//
// Layout of buffer.db.journal, preallocated (journalSizeFor):
//
//	[0:8]     magic "GWJRNL01"
//	[8:16]    epoch, little endian
//	[16:20]   CRC-32C of [0:16]
//	[4096:]   records: u32 payload length | u32 CRC-32C of epoch and payload | payload
//
// A record's payload is 'B' and the window's sub-records, each a uvarint
// length and a type byte with its body:
//
//	'R' a reading record (record.go)
//	'A' uvarint count, then that many uvarint IDs: acked
//	'D' uvarint ID, uvarint reason length, reason: dead-lettered
//	'X' uvarint reason length, reason, a reading record: appended and
//	    dead-lettered before any window
//
// Records are read up to the first that does not check out: a torn append
// at a power cut, or a record of an older epoch after a reset. The bbolt file
// remembers the epoch it folded last (meta "jepoch"); a journal whose epoch
// is not above it has been folded and is ignored.
const (
	journalSuffix = ".journal"
	journalMagic  = "GWJRNL01"
	journalHeader = 4096
	journalMax    = 256 << 10
	foldEvery     = 30 // windows: 5 minutes at the default 10 s
)

var (
	castagnoli     = crc32.MakeTable(crc32.Castagnoli)
	keyJEpoch      = []byte("jepoch")
	errJournalFull = errors.New("journal full")
)

// jrec is one decoded journal record.
type jrec struct {
	typ    byte
	rec    []byte // 'R', 'X': the reading record as stored
	r      reading.Reading
	ids    []reading.ID // 'A'
	id     reading.ID   // 'D'
	reason string       // 'D', 'X'
}

type journal struct {
	f     *os.File
	size  int64
	epoch uint64
	off   int64
	// broken is set when a reset failed: the file may still hold records of
	// a folded epoch, so nothing may be appended until a reset succeeds.
	broken bool
}

// openJournal opens or creates the journal and returns the records of its
// current epoch. A missing, short or unreadable journal is started afresh:
// anything it held that was not folded is lost, which only a damaged card
// causes.
func openJournal(path string, size int64) (*journal, []jrec, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	j := &journal{f: f, size: size, off: journalHeader}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	if fi.Size() < size {
		if err := preallocate(f, size); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("journal: %w", err)
		}
	}
	// Read it all: it may be larger than now wanted (MaxSize lowered);
	// recoverJournal shrinks it once its records are folded.
	data := make([]byte, max(fi.Size(), size))
	if _, err := f.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	epoch, ok := parseJournalHeader(data)
	if !ok {
		j.broken = true // no valid header: write one before appending
		return j, nil, nil
	}
	j.epoch = epoch
	recs, end := decodeJournal(data[journalHeader:], epoch)
	j.off = journalHeader + int64(end)
	return j, recs, nil
}

// preallocate gives the file its blocks up front, so appends never need
// space (a full disk does not stop the journal) and never change the file's
// size (fdatasync then has no metadata to write).
func preallocate(f *os.File, size int64) error {
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err == nil {
		return f.Sync()
	}
	if _, err := f.WriteAt(make([]byte, size), 0); err != nil {
		return err
	}
	return f.Sync()
}

func parseJournalHeader(b []byte) (uint64, bool) {
	if len(b) < 20 || string(b[:8]) != journalMagic {
		return 0, false
	}
	if crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:20]) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[8:16]), true
}

// decodeJournal returns the records of epoch at the start of b and how many
// bytes they take. It never panics and stops at the first record that does
// not check out.
func decodeJournal(b []byte, epoch uint64) ([]jrec, int) {
	var recs []jrec
	off := 0
	var ep [8]byte
	binary.LittleEndian.PutUint64(ep[:], epoch)
	for off+8 <= len(b) {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		if n == 0 || n > len(b)-off-8 {
			break
		}
		payload := b[off+8 : off+8+n]
		crc := crc32.Update(crc32.Checksum(ep[:], castagnoli), castagnoli, payload)
		if crc != binary.LittleEndian.Uint32(b[off+4:]) {
			break
		}
		rs, err := decodeWindow(payload)
		if err != nil {
			break
		}
		recs = append(recs, rs...)
		off += 8 + n
	}
	return recs, off
}

// decodeWindow decodes one journal record: a 'B' window of sub-records.
func decodeWindow(p []byte) ([]jrec, error) {
	if len(p) == 0 || p[0] != 'B' {
		return nil, fmt.Errorf("%w: not a journal window", ErrBadRecord)
	}
	d := decoder{b: p[1:]}
	var out []jrec
	for len(d.b) > 0 {
		n := d.uvarint("sub-record length")
		if d.err == nil && n > uint64(len(d.b)) {
			d.fail("sub-record length")
		}
		if d.err != nil {
			return nil, d.err
		}
		r, err := decodeJrec(d.b[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
		d.b = d.b[n:]
	}
	return out, nil
}

func decodeJrec(p []byte) (jrec, error) {
	if len(p) == 0 {
		return jrec{}, fmt.Errorf("%w: empty journal record", ErrBadRecord)
	}
	j := jrec{typ: p[0]}
	d := decoder{b: p[1:]}
	switch p[0] {
	case 'R':
		j.rec = append([]byte(nil), d.b...)
	case 'A':
		n := d.uvarint("ack count")
		if n > uint64(len(d.b)) {
			d.fail("ack count")
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			j.ids = append(j.ids, reading.ID(d.uvarint("ack id")))
		}
		if d.err == nil && len(d.b) != 0 {
			d.fail("ack trailing bytes")
		}
	case 'D':
		j.id = reading.ID(d.uvarint("dead id"))
		j.reason = d.str("reason")
		if d.err == nil && len(d.b) != 0 {
			d.fail("dead trailing bytes")
		}
	case 'X':
		j.reason = d.str("reason")
		j.rec = append([]byte(nil), d.b...)
	default:
		return jrec{}, fmt.Errorf("%w: unknown journal record type %d", ErrBadRecord, p[0])
	}
	if d.err != nil {
		return jrec{}, d.err
	}
	if j.rec != nil {
		r, err := decodeRecord(j.rec)
		if err != nil {
			return jrec{}, err
		}
		j.r = r
	}
	return j, nil
}

// appendJrec encodes one record for epoch onto b.
func appendJrec(b []byte, epoch uint64, payload []byte) []byte {
	var ep [8]byte
	binary.LittleEndian.PutUint64(ep[:], epoch)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Update(crc32.Checksum(ep[:], castagnoli), castagnoli, payload))
	return append(b, payload...)
}

func jPayloadR(rec []byte) []byte { return append([]byte{'R'}, rec...) }

func jPayloadA(ids []reading.ID) []byte {
	b := binary.AppendUvarint([]byte{'A'}, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, uint64(id))
	}
	return b
}

func jPayloadD(id reading.ID, reason string) []byte {
	if len(reason) > maxField {
		reason = reason[:maxField]
	}
	b := binary.AppendUvarint([]byte{'D'}, uint64(id))
	b = binary.AppendUvarint(b, uint64(len(reason)))
	return append(b, reason...)
}

func jPayloadX(rec []byte, reason string) []byte {
	if len(reason) > maxField {
		reason = reason[:maxField]
	}
	b := binary.AppendUvarint([]byte{'X'}, uint64(len(reason)))
	b = append(b, reason...)
	return append(b, rec...)
}

// append writes encoded records (from appendJrec) and makes them durable.
func (j *journal) append(b []byte) error {
	if j.broken {
		return errJournalFull
	}
	if j.off+int64(len(b)) > j.size {
		return errJournalFull
	}
	if _, err := j.f.WriteAt(b, j.off); err != nil {
		return fmt.Errorf("journal append: %w", err)
	}
	if err := fdatasync(j.f); err != nil {
		return fmt.Errorf("journal sync: %w", err)
	}
	j.off += int64(len(b))
	return nil
}

// reset starts epoch: the records of the old one no longer check out.
func (j *journal) reset(epoch uint64) error {
	h := make([]byte, 20)
	copy(h, journalMagic)
	binary.LittleEndian.PutUint64(h[8:], epoch)
	binary.LittleEndian.PutUint32(h[16:], crc32.Checksum(h[:16], castagnoli))
	if _, err := j.f.WriteAt(h, 0); err != nil {
		j.broken = true
		return fmt.Errorf("journal reset: %w", err)
	}
	if err := fdatasync(j.f); err != nil {
		j.broken = true
		return fmt.Errorf("journal reset: %w", err)
	}
	j.epoch, j.off, j.broken = epoch, journalHeader, false
	return nil
}

// half reports whether the journal is half full: time to fold.
func (j *journal) half() bool { return j.off-journalHeader > (j.size-journalHeader)/2 }

// journalSizeFor is the journal's size for o: 256 KiB, or a sixteenth of
// MaxSize when that is less (at least 16 KiB), so both files together stay
// within MaxSize (the bbolt file gets the rest).
func journalSizeFor(o Options) int64 {
	if o.CommitInterval == 0 {
		return 0
	}
	if o.MaxSize == 0 {
		return journalMax
	}
	return min(journalMax, max(o.MaxSize/16/4096*4096, 16<<10))
}

func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// readJournal reads the journal at path without changing it (Export,
// Inspect); a missing or headerless journal has no records.
func readJournal(path string) (uint64, []jrec, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	epoch, ok := parseJournalHeader(data)
	if !ok || len(data) < journalHeader {
		return 0, nil, nil
	}
	recs, _ := decodeJournal(data[journalHeader:], epoch)
	return epoch, recs, nil
}

// overlay is what a journal adds to and takes from the bbolt file.
type overlay struct {
	readings []jrec                // 'R' not acked or dead-lettered later in the journal
	dead     []jrec                // 'X', and 'R' dead-lettered later ('D' on it)
	acked    map[reading.ID]bool   // 'A' IDs not among the journal's readings: delete from bbolt
	deadIDs  map[reading.ID]string // 'D' IDs not among the journal's readings: move in bbolt
}

func makeOverlay(recs []jrec) overlay {
	o := overlay{acked: map[reading.ID]bool{}, deadIDs: map[reading.ID]string{}}
	inJ := map[reading.ID]int{} // reading ID -> index in recs
	gone := map[reading.ID]bool{}
	deadR := map[reading.ID]string{}
	for i, r := range recs {
		switch r.typ {
		case 'R':
			inJ[r.r.ID] = i
		case 'A':
			for _, id := range r.ids {
				if _, ok := inJ[id]; ok {
					gone[id] = true
				} else {
					o.acked[id] = true
				}
			}
		case 'D':
			if _, ok := inJ[r.id]; ok {
				deadR[r.id] = r.reason
			} else {
				o.deadIDs[r.id] = r.reason
			}
		case 'X':
			o.dead = append(o.dead, r)
		}
	}
	for _, r := range recs {
		if r.typ != 'R' || gone[r.r.ID] {
			continue
		}
		if reason, ok := deadR[r.r.ID]; ok {
			r.reason = reason
			o.dead = append(o.dead, r)
			continue
		}
		o.readings = append(o.readings, r)
	}
	return o
}

// journalWindow makes the window durable in the journal: new readings,
// readings dead-lettered before any window, and the acks and dead letters of
// durable readings. Nothing to write, nothing written. Called with commitMu
// held.
func (b *Buffer) journalWindow() error {
	b.mu.Lock()
	if b.jr.broken {
		b.mu.Unlock()
		return errJournalFull
	}
	var batch []*entry
	var cutoff time.Time
	if b.o.MaxAge > 0 {
		cutoff = time.Now().Add(-b.o.MaxAge)
	}
	aged := 0
	for i := 0; i < len(b.pending); i++ {
		e := b.pending[i]
		if e.journaled || b.live[e.r.ID] != e {
			continue
		}
		if !cutoff.IsZero() && e.r.Synced && e.r.Time.Before(cutoff) {
			// Too old already: not worth a write (see MaxAge).
			b.pending = append(b.pending[:i], b.pending[i+1:]...)
			delete(b.live, e.r.ID)
			delete(b.inflight, e.r.ID)
			i--
			aged++
			continue
		}
		batch = append(batch, e)
	}
	b.dropped(ReasonMaxAge, aged)
	var dnew []int
	for i := range b.deadNew {
		if !b.deadNew[i].journaled {
			dnew = append(dnew, i)
		}
	}
	acks, deads := b.jAcks, b.jDeads
	if len(batch) == 0 && len(dnew) == 0 && len(acks) == 0 && len(deads) == 0 {
		b.mu.Unlock()
		return nil
	}
	ep := b.jr.epoch
	// One record per window: a reader (Inspect, recovery after a power
	// cut) sees all of a window or none of it.
	buf := []byte{'B'}
	sub := func(p []byte) {
		buf = binary.AppendUvarint(buf, uint64(len(p)))
		buf = append(buf, p...)
	}
	// Marked before the write, so an ack that arrives during it is
	// recorded in the journal too (an ack of a reading whose write then
	// failed is harmless).
	for _, e := range batch {
		sub(jPayloadR(e.enc))
		e.journaled = true
	}
	b.jcount += len(batch)
	for _, i := range dnew {
		d := &b.deadNew[i]
		sub(jPayloadX(d.e.enc, d.reason))
		d.journaled = true
	}
	if len(acks) > 0 {
		sub(jPayloadA(acks))
	}
	for _, d := range deads {
		sub(jPayloadD(d.id, d.reason))
	}
	b.jAcks, b.jDeads = nil, nil
	b.mu.Unlock()

	err := b.jr.append(appendJrec(nil, ep, buf))

	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		for _, e := range batch {
			if e.journaled && b.live[e.r.ID] == e {
				e.journaled = false
				b.jcount--
			}
		}
		for i := range b.deadNew {
			if slices.Contains(dnew, i) {
				b.deadNew[i].journaled = false
			}
		}
		b.jAcks, b.jDeads = append(acks, b.jAcks...), append(deads, b.jDeads...)
		return err
	}
	b.windows++
	b.st.Commits++
	b.st.LastCommit = time.Now()
	if b.o.onCommit != nil {
		b.o.onCommit(reading.IDs(entriesReadings(batch)), acks)
	}
	return nil
}

func entriesReadings(es []*entry) []reading.Reading {
	rs := make([]reading.Reading, len(es))
	for i, e := range es {
		rs[i] = e.r
	}
	return rs
}

// recoverJournal folds what the journal holds beyond the file's last fold
// into the file (a crash or power cut between folds) and starts a new
// journal epoch. In naive mode a journal left by an earlier run is folded
// and removed. A journal that cannot be opened (a full disk at boot) leaves
// the buffer committing to bbolt every window.
func (b *Buffer) recoverJournal(op *opened) error {
	path := b.o.Path + journalSuffix
	if b.naive {
		if _, err := os.Stat(path); err != nil {
			return nil
		}
	}
	j, recs, err := openJournal(path, journalSizeFor(b.o))
	if err != nil && retryable(err) {
		// A read the card failed: going on without the journal would
		// skip the windows it holds (and apply them, stale, at a later
		// start). Open retries.
		return err
	}
	if err != nil {
		b.log.Warn("no journal: committing every window to the buffer file", "err", err)
		return nil
	}
	var folded uint64
	if err := b.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyJEpoch); len(v) == 8 {
			folded = binary.BigEndian.Uint64(v)
		}
		return nil
	}); err != nil {
		j.f.Close()
		return err
	}
	for _, r := range recs {
		op.maxID = max(op.maxID, r.r.ID, r.id)
		for _, id := range r.ids {
			op.maxID = max(op.maxID, id)
		}
	}
	if !j.broken && j.epoch > folded && len(recs) > 0 {
		ov := makeOverlay(recs)
		now := time.Now()
		err := b.db.Update(func(tx *bolt.Tx) error {
			rb, db := tx.Bucket(bucketReadings), tx.Bucket(bucketDead)
			for _, r := range ov.readings {
				k := idKey(r.r.ID)
				if rb.Get(k) == nil && db.Get(k) == nil {
					if err := rb.Put(k, r.rec); err != nil {
						return err
					}
				}
			}
			for _, r := range ov.dead {
				k := idKey(r.r.ID)
				if err := db.Put(k, encodeDead(r.rec, r.reason, now)); err != nil {
					return err
				}
				if err := rb.Delete(k); err != nil {
					return err
				}
			}
			for id := range ov.acked {
				if err := rb.Delete(idKey(id)); err != nil {
					return err
				}
			}
			for id, reason := range ov.deadIDs {
				k := idKey(id)
				if v := rb.Get(k); v != nil {
					if err := db.Put(k, encodeDead(append([]byte(nil), v...), reason, now)); err != nil {
						return err
					}
					if err := rb.Delete(k); err != nil {
						return err
					}
				}
			}
			return tx.Bucket(bucketMeta).Put(keyJEpoch, binary.BigEndian.AppendUint64(nil, j.epoch))
		})
		if err != nil {
			j.f.Close()
			return fmt.Errorf("fold journal: %w", err)
		}
		_ = b.db.View(func(tx *bolt.Tx) error {
			b.committed, b.dead = countKeys(tx.Bucket(bucketReadings)), countKeys(tx.Bucket(bucketDead))
			return nil
		})
		b.log.Info("journal folded into the buffer file after an unclean stop",
			"readings", len(ov.readings), "acks", len(ov.acked), "dead_letters", len(ov.dead)+len(ov.deadIDs))
	}
	if b.naive {
		j.f.Close()
		if err := os.Remove(path); err != nil {
			b.log.Warn("remove journal", "err", err)
		}
		return nil
	}
	if fi, err := j.f.Stat(); err == nil && fi.Size() > j.size {
		_ = j.f.Truncate(j.size) // folded above: nothing in it is needed
	}
	if err := j.reset(max(j.epoch, folded) + 1); err != nil {
		b.log.Warn("journal reset failed; committing to the buffer file until it works", "err", err)
	}
	b.jr = j
	return nil
}

func countKeys(bk *bolt.Bucket) int {
	n := 0
	c := bk.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}
