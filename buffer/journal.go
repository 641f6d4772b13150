package buffer

import (
	"bytes"
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
// length and a type byte with its body (v2 records, see record.go):
//
//	'N' uvarint index, a dictionary entry (dict.go) not yet in the file
//	'S' uvarint ID, a sample record: appended
//	'A' uvarint count, then that many uvarint IDs: every value removed
//	    (acked, dead-lettered or dropped)
//	'a' uvarint ID, uvarint count, that many measurement names: those
//	    values removed
//	'Y' uvarint ID, a dead letter record (the dead values)
//	'C' uvarint messages, samples, values: the ack counters' totals
//
// A journal left by the release before samples may also hold 'R' (a v1
// record: appended), 'D' (uvarint ID, reason: dead-lettered whole) and 'X'
// (reason, a v1 record: appended and dead-lettered before any window); they
// are read, never written.
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

type journal struct {
	f     *os.File
	size  int64
	epoch uint64
	off   int64
	// broken is set when a reset failed: the file may still hold records of
	// a folded epoch, so nothing may be appended until a reset succeeds.
	broken bool
}

// openJournal opens or creates the journal and returns the raw sub-records
// of its current epoch (decodeSubs decodes them with the file's dictionary). A missing, short or unreadable journal is started afresh:
// anything it held that was not folded is lost, which only a damaged card
// causes.
func openJournal(path string, size int64) (*journal, []jsub, error) {
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

// jsub is one sub-record of a window, not yet decoded.
type jsub struct {
	typ  byte
	body []byte
}

// decodeJournal returns the sub-records of the windows of epoch at the start
// of b and how many bytes those windows take. It never panics and stops at
// the first window that does not check out.
func decodeJournal(b []byte, epoch uint64) ([]jsub, int) {
	var subs []jsub
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
		ss, err := decodeWindow(payload)
		if err != nil {
			break
		}
		subs = append(subs, ss...)
		off += 8 + n
	}
	return subs, off
}

// decodeWindow splits one journal record, a 'B' window, into its
// sub-records (copies).
func decodeWindow(p []byte) ([]jsub, error) {
	if len(p) == 0 || p[0] != 'B' {
		return nil, fmt.Errorf("%w: not a journal window", ErrBadRecord)
	}
	d := decoder{b: p[1:]}
	var out []jsub
	for len(d.b) > 0 {
		n := d.uvarint("sub-record length")
		if d.err == nil && (n == 0 || n > uint64(len(d.b))) {
			d.fail("sub-record length")
		}
		if d.err != nil {
			return nil, d.err
		}
		typ := d.b[0]
		if !bytes.ContainsRune([]byte("NSAaYCRDX"), rune(typ)) {
			return nil, fmt.Errorf("%w: unknown journal record type %d", ErrBadRecord, typ)
		}
		out = append(out, jsub{typ: typ, body: append([]byte(nil), d.b[1:n]...)})
		d.b = d.b[n:]
	}
	return out, nil
}

// jrec is one decoded journal sub-record.
type jrec struct {
	typ    byte
	id     reading.ID
	s      reading.Sample // 'S', 'R': the sample; 'Y', 'X': the dead values
	ids    []reading.ID   // 'A'
	names  []string       // 'a'
	reason string         // 'D', 'X', 'Y'
	at     time.Time      // 'Y'
	acks   ackCounts      // 'C'
}

// decodeSubs decodes sub-records in order, adding 'N' entries to d as they
// come. A sub-record that does not decode (its window checked out, so only
// a bug writes one) is skipped and counted.
func decodeSubs(subs []jsub, d *Dict) (recs []jrec, bad int) {
	for _, sb := range subs {
		r, err := decodeJrec(sb, d)
		if err != nil {
			bad++
			continue
		}
		if r.typ != 'N' {
			recs = append(recs, r)
		}
	}
	return recs, bad
}

func decodeJrec(sb jsub, dict *Dict) (jrec, error) {
	j := jrec{typ: sb.typ}
	d := decoder{b: sb.body}
	var err error
	switch sb.typ {
	case 'N':
		idx := d.uvarint("dict index")
		if d.err != nil || idx > maxDict {
			return j, fmt.Errorf("%w: journal dict entry", ErrBadRecord)
		}
		e, err := decodeDictEnt(d.b)
		if err != nil {
			return j, err
		}
		return j, dict.set(uint32(idx), e)
	case 'S':
		j.id = reading.ID(d.uvarint("id"))
		if d.err != nil {
			return j, d.err
		}
		j.s, err = decodeSample(j.id, d.b, dict)
		return j, err
	case 'R':
		j.s, err = decodeSample(0, d.b, dict)
		if err == nil && len(d.b) > 0 && d.b[0] != recordV1 {
			err = fmt.Errorf("%w: 'R' holds a v%d record", ErrBadRecord, d.b[0])
		}
		if err == nil {
			// A v1 record names its ID.
			j.s.ID, _ = v1ID(d.b)
			j.id = j.s.ID
		}
		return j, err
	case 'A':
		n := d.uvarint("ack count")
		if n > uint64(len(d.b)) {
			d.fail("ack count")
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			j.ids = append(j.ids, reading.ID(d.uvarint("ack id")))
		}
	case 'a':
		j.id = reading.ID(d.uvarint("id"))
		n := d.uvarint("count")
		if n > uint64(len(d.b)) {
			d.fail("count")
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			j.names = append(j.names, d.str("measurement"))
		}
	case 'D':
		j.id = reading.ID(d.uvarint("dead id"))
		j.reason = d.str("reason")
	case 'X':
		j.reason = d.str("reason")
		if d.err == nil {
			j.s, err = decodeSample(0, d.b, dict)
			if err == nil {
				j.s.ID, _ = v1ID(d.b)
				j.id = j.s.ID
			}
			d.b = nil
		}
	case 'Y':
		j.id = reading.ID(d.uvarint("id"))
		if d.err == nil {
			var r Record
			r, err = decodeDead(j.id, d.b, dict)
			j.s, j.reason, j.at = r.Sample, r.Reason, r.DeadAt
			d.b = nil
		}
	case 'C':
		j.acks.msgs = d.uvarint("messages")
		j.acks.samples = d.uvarint("samples")
		j.acks.values = d.uvarint("values")
	}
	if err != nil {
		return j, err
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return j, d.err
}

// v1ID reads the ID a version 1 record repeats.
func v1ID(rec []byte) (reading.ID, bool) {
	if len(rec) < 2 || rec[0] != recordV1 {
		return 0, false
	}
	v, n := binary.Uvarint(rec[1:])
	return reading.ID(v), n > 0
}

// appendJrec encodes one record for epoch onto b.
func appendJrec(b []byte, epoch uint64, payload []byte) []byte {
	var ep [8]byte
	binary.LittleEndian.PutUint64(ep[:], epoch)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Update(crc32.Checksum(ep[:], castagnoli), castagnoli, payload))
	return append(b, payload...)
}

func appendUvarintLen(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func jPayloadN(idx uint32, ent []byte) []byte {
	return append(binary.AppendUvarint([]byte{'N'}, uint64(idx)), ent...)
}

func jPayloadS(id reading.ID, rec []byte) []byte {
	return append(binary.AppendUvarint([]byte{'S'}, uint64(id)), rec...)
}

func jPayloadA(ids []reading.ID) []byte {
	b := binary.AppendUvarint([]byte{'A'}, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, uint64(id))
	}
	return b
}

func jPayloada(id reading.ID, names []string) []byte {
	b := binary.AppendUvarint([]byte{'a'}, uint64(id))
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		b = appendStr(b, n)
	}
	return b
}

func jPayloadY(id reading.ID, dead []byte) []byte {
	return append(binary.AppendUvarint([]byte{'Y'}, uint64(id)), dead...)
}

func jPayloadC(a ackCounts) []byte {
	b := binary.AppendUvarint([]byte{'C'}, a.msgs)
	b = binary.AppendUvarint(b, a.samples)
	return binary.AppendUvarint(b, a.values)
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
func readJournal(path string) (uint64, []jsub, error) {
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
	subs, _ := decodeJournal(data[journalHeader:], epoch)
	return epoch, subs, nil
}

// overlay is what a journal adds to and takes from the bbolt file.
type overlay struct {
	samples  []reading.Sample      // appended, with the values not removed later in the journal
	dead     []Record              // dead letters
	fileRm   map[reading.ID]*rmOp  // removals of values of records in the file
	fileDead map[reading.ID]string // v1 'D' of records in the file: move whole
	acks     ackCounts             // the last 'C'
	hasAcks  bool
	ids      map[reading.ID]struct{} // every ID the journal names
}

type rmOp struct {
	all   bool
	names []string
}

func (r *rmOp) apply(s *reading.Sample) {
	if r.all {
		s.Values = nil
		return
	}
	s.Values = slices.DeleteFunc(slices.Clone(s.Values), func(v reading.Value) bool { return slices.Contains(r.names, v.Measurement) })
}

func makeOverlay(recs []jrec) overlay {
	o := overlay{fileRm: map[reading.ID]*rmOp{}, fileDead: map[reading.ID]string{}, ids: map[reading.ID]struct{}{}}
	at := map[reading.ID]int{} // sample ID -> index in o.samples
	rm := func(id reading.ID, op rmOp) {
		if i, ok := at[id]; ok {
			op.apply(&o.samples[i])
			return
		}
		if f := o.fileRm[id]; f != nil {
			f.all = f.all || op.all
			f.names = append(f.names, op.names...)
			return
		}
		o.fileRm[id] = &op
	}
	for _, r := range recs {
		o.ids[r.id] = struct{}{}
		switch r.typ {
		case 'S', 'R':
			at[r.s.ID] = len(o.samples)
			o.samples = append(o.samples, r.s)
		case 'A':
			for _, id := range r.ids {
				o.ids[id] = struct{}{}
				rm(id, rmOp{all: true})
			}
		case 'a':
			rm(r.id, rmOp{names: r.names})
		case 'D':
			if i, ok := at[r.id]; ok {
				if len(o.samples[i].Values) > 0 {
					o.dead = append(o.dead, Record{Sample: o.samples[i], Dead: true, Reason: r.reason})
				}
				o.samples[i].Values = nil
			} else {
				o.fileDead[r.id] = r.reason
			}
		case 'X', 'Y':
			o.dead = append(o.dead, Record{Sample: r.s, Dead: true, Reason: r.reason, DeadAt: r.at})
		case 'C':
			o.acks, o.hasAcks = r.acks, true
		}
	}
	o.samples = slices.DeleteFunc(o.samples, func(s reading.Sample) bool { return len(s.Values) == 0 })
	return o
}

// journalWindow makes the ledger's next window durable in the journal.
// Nothing to write, nothing written. Called with commitMu held.
func (b *Buffer) journalWindow(fresh time.Duration) error {
	b.mu.Lock()
	if b.jr.broken {
		b.mu.Unlock()
		return errJournalFull
	}
	var cutoff time.Time
	if b.o.MaxAge > 0 {
		// Too old already: not worth a write (see MaxAge).
		cutoff = time.Now().Add(-b.o.MaxAge)
	}
	w, aged := b.l.window(cutoff, fresh)
	b.dropped(ReasonMaxAge, aged)
	if w.empty() {
		b.mu.Unlock()
		return nil
	}
	ep := b.jr.epoch
	b.mu.Unlock()

	// One record per window: a reader (Inspect, recovery after a power
	// cut) sees all of a window or none of it.
	err := b.jr.append(appendJrec(nil, ep, w.payload))

	b.mu.Lock()
	defer b.mu.Unlock()
	b.l.windowDone(w, err == nil)
	if err != nil {
		return err
	}
	b.windows++
	b.st.Commits++
	b.st.LastCommit = time.Now()
	if b.o.onCommit != nil {
		var written, deleted []reading.ID
		for _, it := range w.items {
			switch it.kind {
			case 'S':
				written = append(written, it.e.s.ID)
			case 'A':
				deleted = append(deleted, it.e.s.ID)
			}
		}
		b.o.onCommit(written, deleted)
	}
	return nil
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
	j, subs, err := openJournal(path, journalSizeFor(b.o))
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
	if !j.broken && j.epoch > folded && len(subs) > 0 {
		recs, bad := decodeSubs(subs, b.l.dict)
		if bad > 0 {
			b.log.Warn("journal records that do not decode were skipped", "count", bad)
		}
		ov := makeOverlay(recs)
		for id := range ov.ids {
			op.maxID = max(op.maxID, id)
		}
		if err := b.applyOverlay(&ov, j.epoch); err != nil {
			j.f.Close()
			return fmt.Errorf("fold journal: %w", err)
		}
		b.log.Info("journal folded into the buffer file after an unclean stop",
			"samples", len(ov.samples), "removals", len(ov.fileRm), "dead_letters", len(ov.dead)+len(ov.fileDead))
	} else {
		// Its IDs were handed out all the same.
		recs, _ := decodeSubs(subs, NewDict())
		for _, r := range recs {
			op.maxID = max(op.maxID, r.id, r.s.ID)
			for _, id := range r.ids {
				op.maxID = max(op.maxID, id)
			}
		}
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

// applyOverlay writes a journal's overlay into bbolt in one transaction,
// marks the journal's epoch folded and recounts the file.
func (b *Buffer) applyOverlay(ov *overlay, epoch uint64) error {
	d := b.l.dict
	now := time.Now()
	err := b.db.Update(func(tx *bolt.Tx) error {
		rb, db, mb, xb := tx.Bucket(bucketReadings), tx.Bucket(bucketDead), tx.Bucket(bucketMeta), tx.Bucket(bucketDict)
		for i := range ov.samples {
			s := &ov.samples[i]
			k := idKey(s.ID)
			if rb.Get(k) == nil {
				if err := rb.Put(k, encodeSample(s, allBits(len(s.Values)), d)); err != nil {
					return err
				}
			}
		}
		for i := range ov.dead {
			r := &ov.dead[i]
			if len(r.Values) == 0 {
				continue
			}
			at := r.DeadAt
			if at.IsZero() {
				at = now
			}
			k, err := freeDeadKey(db, r.ID)
			if err != nil {
				return err
			}
			if err := db.Put(k, encodeDead(encodeSample(&r.Sample, allBits(len(r.Values)), d), r.Reason, at)); err != nil {
				return err
			}
		}
		for id, op := range ov.fileRm {
			k := idKey(id)
			v := rb.Get(k)
			if v == nil {
				continue
			}
			s, err := decodeSample(id, v, d)
			if err != nil {
				continue // left for moveUndecodable at the next Open
			}
			op.apply(&s)
			if len(s.Values) == 0 {
				err = rb.Delete(k)
			} else {
				err = rb.Put(k, encodeSample(&s, allBits(len(s.Values)), d))
			}
			if err != nil {
				return err
			}
		}
		for id, reason := range ov.fileDead {
			k := idKey(id)
			v := rb.Get(k)
			if v == nil {
				continue
			}
			dk, err := freeDeadKey(db, id)
			if err != nil {
				return err
			}
			if err := db.Put(dk, encodeDead(append([]byte(nil), v...), reason, now)); err != nil {
				return err
			}
			if err := rb.Delete(k); err != nil {
				return err
			}
		}
		for i := range d.ents {
			if !d.ents[i].filed && d.ents[i].kind != 0 {
				if err := xb.Put(dictKey(uint32(i+1)), encodeDictEnt(&d.ents[i])); err != nil {
					return err
				}
			}
		}
		if ov.hasAcks {
			if err := mb.Put(keyAcks, encodeAcks(ov.acks)); err != nil {
				return err
			}
		}
		// The journal's epoch is folded: at the next Open it is ignored.
		return mb.Put(keyJEpoch, binary.BigEndian.AppendUint64(nil, epoch))
	})
	if err != nil {
		return err
	}
	for i := range d.ents {
		d.ents[i].filed = true
	}
	if ov.hasAcks {
		b.l.acks, b.l.acksJournaled = ov.acks, ov.acks
	}
	return b.recountLocked()
}
