package buffer

import (
	"math/bits"
	"slices"
	"time"

	"gatewayd/internal/reading"
)

// The ledger is the buffer's one account of the samples it holds in memory:
// one entry per sample, with an explicit state per value and per copy.
//
//	live     values not acked and not dead-lettered: what Take hands out
//	durable  values a restart would bring back (journal over the file);
//	         0 = nothing durable: a crash forgets the sample
//	filed    values the bbolt record holds; 0 = no record
//	inflight handed out by Take, not yet acked, released or dead-lettered
//	busy     carried by the running commit (window or fold)
//
// Every bit is a value of the entry's sample (Values[i] is bit i). A sample
// moves pending (durable 0, filed 0) -> journaled (durable != 0) -> stored
// (filed != 0) and leaves when live, durable and filed are all 0. A stored
// sample with nothing to write and not in flight lives only in the file: its
// entry is dropped and made again from the file by Take.
//
// A commit is a diff between what a copy holds and what is live: a journal
// window writes, per entry, the sample (durable 0) or the removal of
// durable&^live; a fold writes the record of live (or deletes it) where
// filed != live. The batch records the masks it wrote; success sets durable
// (and filed) to them, failure sets nothing, so a failed commit has nothing
// to undo beyond clearing busy. Dead-lettered values become dead items,
// written by the same commits (journal 'Y', then the dead bucket). bbolt and
// the journal are two appliers of the same kind of batch.
type entry struct {
	s        reading.Sample // as appended or read; Values never shrink
	live     uint64
	durable  uint64
	filed    uint64
	inflight bool
	busy     bool
	mem      bool // appended here and not yet in bbolt: listed in ledger.mem
	gone     bool // left the ledger (ledger.mem skips it)
	// at is when the sample was appended (monotonic, since the buffer
	// opened): a commit on the clock's tick leaves samples appended at or
	// after that tick to the next window (see Buffer.run).
	at time.Duration
	// enc caches the record of encMask.
	enc     []byte
	encMask uint64
}

// deadItem is a dead letter not yet in the bbolt file.
type deadItem struct {
	s         reading.Sample // only the dead values
	reason    string
	at        time.Time
	journaled bool
	enc       []byte
}

// ackCounts are the acknowledgement counters (Stats, messages per reading).
type ackCounts struct{ msgs, samples, values uint64 }

type ledger struct {
	byID    map[reading.ID]*entry
	mem     []*entry // appended, not yet in bbolt, ID order; may hold gone entries
	memGone int
	deads   []*deadItem
	dict    *Dict
	// What the bbolt file holds, as of the last commit.
	stored, storedValues int
	deadRecs             int
	deadBytes            int64 // their size in pages (deadSize)
	acks                 ackCounts
	acksJournaled        ackCounts // as the journal (or file) last recorded them
	// changes counts appends, removals and dead letters since the last
	// commit (the CommitSize trigger); changesAt is its value when the
	// running commit took its batch.
	changes, changesAt int
}

func newLedger(d *Dict) *ledger {
	return &ledger{byID: map[reading.ID]*entry{}, dict: d}
}

func allBits(n int) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}

// mask returns the bits of measurement m (all when m is empty).
func (e *entry) mask(m string) uint64 {
	if m == "" {
		return allBits(len(e.s.Values))
	}
	for i := range e.s.Values {
		if e.s.Values[i].Measurement == m {
			return 1 << i
		}
	}
	return 0
}

// sample returns a copy of e's sample with only the values in mask.
func (e *entry) sample(mask uint64) reading.Sample {
	s := e.s
	s.Values = make([]reading.Value, 0, bits.OnesCount64(mask))
	for i := range e.s.Values {
		if mask&(1<<i) != 0 {
			s.Values = append(s.Values, e.s.Values[i])
		}
	}
	return s
}

func (l *ledger) encode(e *entry, mask uint64) []byte {
	if e.enc == nil || e.encMask != mask {
		e.enc, e.encMask = encodeSample(&e.s, mask, l.dict), mask
	}
	return e.enc
}

// add records a sample appended now.
func (l *ledger) add(s reading.Sample, at time.Duration) *entry {
	// Entries acked before their commit leave gone ones behind in mem;
	// while folds fail (a full disk) nothing else would compact it.
	if l.memGone > 32 && l.memGone*2 > len(l.mem) {
		l.compactMem()
	}
	e := &entry{s: s, live: allBits(len(s.Values)), mem: true, at: at}
	l.changes++
	l.byID[s.ID] = e
	l.mem = append(l.mem, e)
	// Names are interned when a record is first encoded: a sample acked
	// before its commit leaves no trace on the card, not even its names.
	return e
}

// load records a sample read from the bbolt file.
func (l *ledger) load(s reading.Sample) *entry {
	m := allBits(len(s.Values))
	e := &entry{s: s, live: m, durable: m, filed: m}
	l.byID[s.ID] = e
	return e
}

// fresh reports whether a commit on a clock tick at fresh (> 0) leaves e to
// the next commit: a sample appended at or after the tick, in neither the
// journal nor the file. The round sampled on the same tick is usually
// acknowledged a few milliseconds later, and then never touches the card;
// written now, it would cost a journal write (and an entry to delete at the
// next fold) on every tick the sampling and commit intervals share. No
// sample waits longer than one commit interval for its window, as before.
func (l *ledger) fresh(e *entry, fresh time.Duration) bool {
	return fresh > 0 && e.at >= fresh && e.durable == 0 && e.filed == 0
}

// settle drops e from the ledger when nothing about it is left to do.
func (l *ledger) settle(e *entry) {
	if e.busy || e.inflight || e.gone {
		return
	}
	if e.live == 0 && e.durable == 0 && e.filed == 0 || !e.mem && e.live == e.filed && e.durable == e.filed {
		l.forget(e)
	}
}

func (l *ledger) forget(e *entry) {
	delete(l.byID, e.s.ID)
	e.gone = true
	if e.mem {
		l.memGone++
	}
}

// compactMem drops gone and filed entries from mem.
func (l *ledger) compactMem() {
	if l.memGone == 0 {
		return
	}
	l.mem = slices.DeleteFunc(l.mem, func(e *entry) bool { return e.gone || !e.mem })
	l.memGone = 0
}

// remove takes the values of ref out of live, reporting the bits removed.
func (l *ledger) remove(e *entry, m string) uint64 {
	bits := e.mask(m) & e.live
	e.live &^= bits
	if bits != 0 {
		l.changes++
	}
	if e.live == 0 {
		e.inflight = false
	}
	return bits
}

// dropped records a sample dropped by a bound: it is gone from every copy
// (the commit that dropped it wrote that).
func (l *ledger) dropped(e *entry) {
	e.live, e.durable, e.filed, e.inflight = 0, 0, 0, false
	if e.mem {
		e.mem = false
		l.memGone++
	}
	l.forget(e)
}

// counts derives the depth from the ledger and the file's counts.
type depth struct {
	samples, values, pending, inflight int
}

func (l *ledger) depth() depth {
	d := depth{samples: l.stored, values: l.storedValues}
	for _, e := range l.byID {
		if e.inflight {
			d.inflight++
		}
		if e.filed != 0 {
			if e.live == 0 {
				d.samples--
			}
			d.values -= bits.OnesCount64(e.filed &^ e.live)
			continue
		}
		if e.live != 0 {
			d.samples++
			d.values += bits.OnesCount64(e.live)
			if e.durable == 0 {
				d.pending++
			}
		}
	}
	return d
}

// fileAvail is how many records of the file Take could hand out.
func (l *ledger) fileAvail() int {
	n := l.stored
	for _, e := range l.byID {
		if e.filed != 0 && (e.inflight || e.live == 0) {
			n--
		}
	}
	return n
}

// A window is what one journal record writes.
type window struct {
	fresh   int // samples left to the next window
	items   []witem
	deads   []*deadItem
	dicts   []uint32
	acks    ackCounts
	payload []byte
}

type witem struct {
	e    *entry
	mask uint64 // durable after the write
	kind byte   // 'S' the sample, 'A' all removed, 'a' some removed
}

// window builds the next journal window: new samples, removals of durable
// values, dead items and dictionary entries not yet in the journal or the
// file, and the ack counters when they moved. Samples already past cutoff
// (MaxAge) are dropped instead and counted in aged. Samples appended at or
// after fresh (when fresh > 0) wait for the next window. Called with mu
// held.
func (l *ledger) window(cutoff time.Time, fresh time.Duration) (w *window, aged int) {
	w = &window{}
	var subs [][]byte
	for _, e := range l.mem {
		if e.gone || e.durable != 0 || e.live == 0 {
			continue
		}
		if l.fresh(e, fresh) {
			w.fresh++
			continue
		}
		if !cutoff.IsZero() && e.s.Synced && e.s.Time.Before(cutoff) {
			l.dropped(e)
			aged++
			continue
		}
		subs = append(subs, jPayloadS(e.s.ID, l.encode(e, e.live)))
		w.items = append(w.items, witem{e, e.live, 'S'})
	}
	var all []reading.ID
	for _, e := range l.byID {
		if e.durable == 0 || e.durable == e.live {
			continue
		}
		if e.live == 0 {
			all = append(all, e.s.ID)
			w.items = append(w.items, witem{e, 0, 'A'})
			continue
		}
		var names []string
		for i := range e.s.Values {
			if (e.durable&^e.live)&(1<<i) != 0 {
				names = append(names, e.s.Values[i].Measurement)
			}
		}
		subs = append(subs, jPayloada(e.s.ID, names))
		w.items = append(w.items, witem{e, e.live, 'a'})
	}
	if len(all) > 0 {
		slices.Sort(all)
		subs = append(subs, jPayloadA(all))
	}
	for _, d := range l.deads {
		if !d.journaled {
			if d.enc == nil {
				d.enc = encodeSample(&d.s, allBits(len(d.s.Values)), l.dict)
			}
			subs = append(subs, jPayloadY(d.s.ID, encodeDead(d.enc, d.reason, d.at)))
			w.deads = append(w.deads, d)
		}
	}
	if len(subs) == 0 {
		// The ack counters alone are not worth a write: they ride
		// along with the next window that writes something.
		return w, aged
	}
	if l.acks != l.acksJournaled {
		subs = append(subs, jPayloadC(l.acks))
	}
	w.acks = l.acks
	// Dictionary entries first: the records after them refer to them.
	buf := []byte{'B'}
	sub := func(p []byte) {
		buf = appendUvarintLen(buf, p)
	}
	for i := range l.dict.ents {
		de := &l.dict.ents[i]
		if !de.filed && !de.journaled && de.kind != 0 {
			sub(jPayloadN(uint32(i+1), encodeDictEnt(de)))
			w.dicts = append(w.dicts, uint32(i+1))
		}
	}
	for _, p := range subs {
		sub(p)
	}
	w.payload = buf
	// The samples left for the next window still count towards its
	// CommitSize trigger.
	l.changesAt = max(l.changes-w.fresh, 0)
	for _, it := range w.items {
		it.e.busy = true
	}
	return w, aged
}

func (w *window) empty() bool { return w.payload == nil }

// windowDone applies a window's outcome. Called with mu held.
func (l *ledger) windowDone(w *window, ok bool) {
	for _, it := range w.items {
		it.e.busy = false
		if ok {
			it.e.durable = it.mask
		}
		l.settle(it.e)
	}
	if !ok {
		return
	}
	l.committed()
	for _, d := range w.deads {
		d.journaled = true
	}
	for _, i := range w.dicts {
		l.dict.ents[i-1].journaled = true
	}
	l.acksJournaled = w.acks
}

// A fold is what one bbolt transaction writes.
type fold struct {
	items []fitem // ID order
	deads []*deadItem
	dicts []uint32
	acks  ackCounts
}

type fitem struct {
	e    *entry
	mask uint64 // the record's values after the write; 0 = delete
	enc  []byte // the record (mask != 0)
	// Set by the transaction:
	dropped bool // not written: a bound dropped it
}

// fold builds the next bbolt batch: every entry whose record differs from
// live, every dead item and dictionary entry not yet in the file. Called
// with mu held.
func (l *ledger) fold(fresh time.Duration) *fold {
	f := &fold{acks: l.acks}
	left := 0
	for _, e := range l.byID {
		if e.live == e.filed || e.live == 0 && e.filed == 0 {
			continue
		}
		if l.fresh(e, fresh) {
			left++
			continue
		}
		it := fitem{e: e, mask: e.live}
		if e.live != 0 {
			it.enc = l.encode(e, e.live)
		}
		f.items = append(f.items, it)
		e.busy = true
	}
	l.changesAt = max(l.changes-left, 0)
	slices.SortFunc(f.items, func(a, b fitem) int {
		if a.e.s.ID < b.e.s.ID {
			return -1
		}
		return 1
	})
	for _, d := range l.deads {
		if d.enc == nil {
			d.enc = encodeSample(&d.s, allBits(len(d.s.Values)), l.dict)
		}
		f.deads = append(f.deads, d)
	}
	for i := range l.dict.ents {
		if !l.dict.ents[i].filed && l.dict.ents[i].kind != 0 {
			f.dicts = append(f.dicts, uint32(i+1))
		}
	}
	return f
}

func (f *fold) empty() bool { return len(f.items) == 0 && len(f.deads) == 0 && len(f.dicts) == 0 }

// foldDone applies a fold's outcome: dropped lists the IDs the transaction
// deleted for MaxAge or MaxSize beyond the batch. After a fold the journal
// starts a new epoch, so what is durable is what is filed. Called with mu
// held.
func (l *ledger) foldDone(f *fold, ok bool, dropped []reading.ID) {
	for i := range f.items {
		it := &f.items[i]
		it.e.busy = false
		if !ok {
			continue
		}
		if it.dropped {
			l.dropped(it.e)
			continue
		}
		it.e.filed = it.mask
		if it.e.mem {
			it.e.mem = false
			l.memGone++
		}
	}
	if ok {
		l.committed()
		for _, id := range dropped {
			if e := l.byID[id]; e != nil {
				l.dropped(e)
			}
		}
		for _, e := range l.byID {
			e.durable = e.filed
			if e.filed == 0 && e.live == 0 {
				l.settle(e)
			}
		}
		l.deads = slices.DeleteFunc(l.deads, func(d *deadItem) bool { return slices.Contains(f.deads, d) })
		for _, i := range f.dicts {
			l.dict.ents[i-1].filed = true
		}
		l.acksJournaled = f.acks
	}
	for i := range f.items {
		l.settle(f.items[i].e)
	}
	l.compactMem()
}

// committed forgets the changes a successful commit took.
func (l *ledger) committed() {
	l.changes = max(l.changes-l.changesAt, 0)
	l.changesAt = 0
}

// memLive returns memory-resident entries with live values, newest last.
func (l *ledger) memLive() []*entry {
	var out []*entry
	for _, e := range l.mem {
		if !e.gone && e.mem && e.live != 0 {
			out = append(out, e)
		}
	}
	return out
}
