package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"gatewayd/internal/reading"
)

// Salvage: a file proven damaged is set aside whole, but the readings on its
// intact pages are not given up with it. salvage walks the set-aside file's
// raw pages (as rawCheck does, from its newest valid meta page) without
// trusting them: a page that cannot be read, is not a tree page, or breaks
// the tree's key order costs only the records under it; every record of
// every other leaf that still decodes (decodeAny, with the damaged file's
// dictionary) is copied as stored, under its own ID, into the fresh file.
// Records of both versions are salvaged: version 1 (the release before
// samples) stands alone, version 2 names its sensor, boot and measurements
// by index into the file's dictionary. The dictionary entries that could be
// read are copied under their own indices first, so the copied records (and
// the journal's windows, which name the same indices) mean in the fresh
// file what they meant in the damaged one; a record naming an entry that
// was lost is lost with it, counted. Pages that the newest meta page does
// not reach are never read: they hold older versions of records, some long
// acked, and bringing those back would be duplicates no one asked for.
//
// Meta keys in the fresh file:
//
//	salvage_from  the set-aside file's name while its salvage runs: a start
//	              that finds it resumes the salvage (a crash or an I/O
//	              error in the middle loses nothing)
//	salvage       16 bytes: readings salvaged and readings given up as
//	              unrecoverable, running totals over the file's set-aside
//	              predecessors (Stats.Salvaged, Stats.Unrecoverable)
var (
	keySalvage     = []byte("salvage")
	keySalvageFrom = []byte("salvage_from")
)

// decodeAny is the one place salvage learns whether a stored record is
// intact. bucket is the bucket it was found in (readings or dead), key its
// key, value the record as stored, d the damaged file's dictionary (as far
// as it could be read; version 2 records name their sensor, boot and
// measurements by index into it). It returns how many samples the record
// holds (what salvage counts) or an error when the record does not decode,
// names a dictionary entry that was lost, or does not belong under key. A
// new record version only needs to be known to DecodeRecord to be salvaged.
func decodeAny(bucket string, key, value []byte, d *Dict) (int, error) {
	id, ok := keyID(key)
	if !ok || bucket == string(bucketReadings) && len(key) != 8 {
		return 0, fmt.Errorf("%w: key %x is not an ID", ErrBadRecord, key)
	}
	if bucket != string(bucketReadings) && bucket != string(bucketDead) {
		return 0, fmt.Errorf("%w: bucket %q holds no samples", ErrBadRecord, bucket)
	}
	if _, err := DecodeRecord(bucket, key, value, d); err != nil {
		return 0, err
	}
	// A version 1 record stores its ID twice (key and record): one that
	// landed under another key is not trusted. (Version 2 keeps the ID in
	// the key alone.)
	rec := value
	if bucket == string(bucketDead) && len(value) > 0 && value[0] == deadV1 {
		dd := decoder{b: value[1:]}
		dd.varint("dead time")
		dd.str("reason")
		rec = dd.b
	}
	if v1, ok := v1ID(rec); ok && v1 != id {
		return 0, fmt.Errorf("%w: record for ID %d under key %d", ErrBadRecord, v1, id)
	}
	return 1, nil
}

// salvageResult is what one salvage found.
type salvageResult struct {
	readings     int // samples copied into the fresh file
	dead         int // dead letters copied
	lostReadings int // samples given up: undecodable, or under unreadable pages
	lostDead     int
	dictEntries  int      // dictionary entries copied
	lostDict     int      // dictionary entries that could not be read or did not fit
	estimated    bool     // some lost counts stand for unreadable pages (see lose)
	lostIDs      []string // ID ranges under unreadable pages, for the log (at most 8)
	noTree       string   // why nothing could be walked, if so
	rootFound    uint64   // the root page findRoot found, when both meta pages were gone
	maxID        reading.ID
	idCeil       reading.ID
	// totals after this salvage (meta keySalvage of the fresh file)
	totalSalvaged, totalLost uint64
	// acks are the damaged file's ack counters (meta keyAcks), carried
	// over when the fresh file has none.
	acks []byte
}

func (r salvageResult) log(log *slog.Logger, from string) {
	args := []any{"from", from, "salvaged", r.readings, "unrecoverable", r.lostReadings,
		"of", r.readings + r.lostReadings, "dead_letters_salvaged", r.dead, "dead_letters_unrecoverable", r.lostDead,
		"dictionary_entries", r.dictEntries, "dictionary_entries_lost", r.lostDict}
	if r.estimated {
		args = append(args, "unrecoverable_estimated", true, "lost_id_ranges", strings.Join(r.lostIDs, " "))
	}
	if r.rootFound != 0 {
		args = append(args, "meta_pages", "both damaged; root page found by a scan and confirmed by the journal", "root_page", r.rootFound)
	}
	if r.noTree != "" {
		log.Error("BUFFER SALVAGE: nothing could be read from the set-aside file; its samples are lost",
			append(args, "why", r.noTree)...)
		return
	}
	if r.lostReadings > 0 || r.lostDead > 0 {
		log.Error("BUFFER SALVAGE: samples recovered from the set-aside file; some were on damaged pages and are lost", args...)
		return
	}
	log.Warn("BUFFER SALVAGE: every sample recovered from the set-aside file", args...)
}

// salvageBatch bounds the records held in memory and written per
// transaction while salvaging.
const salvageBatch = 4096

// salvage copies the intact records of the set-aside file from into db (the
// fresh file). journalPath is the buffer's journal, which vouches for a root
// page found without a meta page (findRoot). It is idempotent: records go in under their own keys, so a
// resumed salvage writes some twice and loses none. An I/O error reading
// from or writing db is returned as it is (Open retries); damage in from is
// never an error, only records lost.
func salvage(db *bolt.DB, from, journalPath string) (salvageResult, error) {
	var res salvageResult
	// The marker first: from now on a start resumes this salvage.
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySalvageFrom, []byte(filepath.Base(from)))
	}); err != nil {
		return res, fmt.Errorf("mark salvage: %w", err)
	}
	f, err := os.Open(from)
	if errors.Is(err, fs.ErrNotExist) {
		res.noTree = "the set-aside file is gone"
		return res, finishSalvage(db, &res, 0, 0, 0, false)
	}
	if err != nil {
		return res, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return res, err
	}
	w := &walker{f: f, size: fi.Size(), seen: map[uint64]bool{}}
	m, err := w.currentMeta()
	rootID := m.root
	switch {
	case errors.Is(err, ErrCorrupt):
		// Both meta pages are gone: look for the root page itself.
		fr, ferr := findRoot(f, fi.Size(), journalPath)
		if ferr != nil {
			return res, ferr
		}
		if fr.why != "" {
			res.noTree = err.Error() + "; " + fr.why
			return res, finishSalvage(db, &res, 0, 0, 0, false)
		}
		w.ps, w.hwm, rootID = fr.ps, fr.hwm, fr.root
		res.rootFound = fr.root
	case err != nil:
		return res, err
	default:
		w.ps, w.hwm = int64(m.pageSize), m.hwm
	}

	s := &swalk{w: w}
	// The root tree's leaves name the buckets.
	roots := map[string][]byte{}
	s.tree(rootID, 0, nil, nil, func(k, v []byte, isBucket bool) {
		if isBucket && len(v) >= 16 {
			roots[string(k)] = v
		}
	})
	if s.ioErr != nil {
		return res, s.ioErr
	}
	var oldSalvaged, oldLost, jepoch uint64
	haveJepoch := false
	if v := roots[string(bucketMeta)]; v != nil {
		s.bucket(v, func(k, v []byte, isBucket bool) {
			switch {
			case isBucket:
			case bytes.Equal(k, keyIDCeil) && len(v) == 8:
				res.idCeil = reading.ID(binary.BigEndian.Uint64(v))
			case bytes.Equal(k, keyJEpoch) && len(v) == 8:
				jepoch, haveJepoch = binary.BigEndian.Uint64(v), true
			case bytes.Equal(k, keySalvage) && len(v) == 16:
				oldSalvaged, oldLost = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
			case bytes.Equal(k, keyAcks):
				if _, ok := decodeAcks(v); ok {
					res.acks = slices.Clone(v)
				}
			}
		})
	}
	dict, err := salvageDict(db, s, roots[string(bucketDict)], &res)
	if err != nil {
		return res, err
	}
	for _, name := range []string{string(bucketReadings), string(bucketDead)} {
		v := roots[name]
		if v == nil {
			// The whole bucket is unreachable (the root page is bad):
			// its records cannot be counted either.
			if res.noTree == "" {
				res.noTree = "the root page is damaged: no " + name + " bucket (how many readings it held is unknown)"
			}
			continue
		}
		var batch [][2][]byte
		var werr error
		flush := func() {
			if len(batch) == 0 || werr != nil {
				return
			}
			werr = db.Update(func(tx *bolt.Tx) error {
				bk := tx.Bucket([]byte(name))
				bk.FillPercent = 0.95 // keys arrive in order
				for _, kv := range batch {
					if err := bk.Put(kv[0], kv[1]); err != nil {
						return err
					}
				}
				return nil
			})
			batch = batch[:0]
		}
		s.lost, s.perPage, s.decoded, s.broken = nil, 0, 0, 0
		got, bad := 0, 0
		s.bucket(v, func(k, v []byte, isBucket bool) {
			if isBucket {
				return
			}
			n, err := decodeAny(name, k, v, dict)
			if err != nil {
				bad++
				return
			}
			got += n
			id, _ := keyID(k)
			res.maxID = max(res.maxID, id)
			batch = append(batch, [2][]byte{slices.Clone(k), slices.Clone(v)})
			if len(batch) >= salvageBatch {
				flush()
			}
		})
		flush()
		if s.ioErr != nil {
			return res, s.ioErr
		}
		if werr != nil {
			return res, fmt.Errorf("write salvaged records: %w", werr)
		}
		lost, ranges := s.lostCount()
		bad += s.broken
		if name == string(bucketReadings) {
			res.readings, res.lostReadings = got, bad+lost
		} else {
			res.dead, res.lostDead = got, bad+lost
		}
		if lost > 0 {
			res.estimated = true
			for _, r := range ranges {
				if len(res.lostIDs) < 8 {
					res.lostIDs = append(res.lostIDs, name+":"+r)
				}
			}
		}
	}
	return res, finishSalvage(db, &res, oldSalvaged, oldLost, jepoch, haveJepoch)
}

// salvageDict reads the damaged file's dictionary (bucket header v, nil when
// the root page did not name one: a format 1 file, or a damaged root) and
// copies every entry that decodes into the fresh file's dictionary under its
// own index, in one transaction. It returns the dictionary the damaged
// file's records are decoded with. The fresh file's dictionary is empty, or
// holds the entries an interrupted run of this salvage copied: an entry
// there that says something else (which no run of salvage writes) wins, and
// the damaged file's records naming that index are lost rather than
// renamed.
func salvageDict(db *bolt.DB, s *swalk, v []byte, res *salvageResult) (*Dict, error) {
	dict := NewDict()
	if v == nil {
		return dict, nil
	}
	var ents [][2][]byte
	s.lost, s.perPage, s.decoded, s.broken = nil, 0, 0, 0
	s.bucket(v, func(k, v []byte, isBucket bool) {
		if isBucket {
			return
		}
		if err := dict.Load(k, v); err != nil {
			res.lostDict++
			return
		}
		ents = append(ents, [2][]byte{slices.Clone(k), slices.Clone(v)})
	})
	if s.ioErr != nil {
		return nil, s.ioErr
	}
	lost, _ := s.lostCount()
	res.lostDict += s.broken + lost
	err := db.Update(func(tx *bolt.Tx) error {
		xb := tx.Bucket(bucketDict)
		for _, kv := range ents {
			if old := xb.Get(kv[0]); old != nil {
				if !bytes.Equal(old, kv[1]) {
					// Not ours: forget the damaged file's entry.
					dict.ents[binary.BigEndian.Uint32(kv[0])-1] = dictEnt{}
					res.lostDict++
				}
				continue
			}
			if err := xb.Put(kv[0], kv[1]); err != nil {
				return err
			}
			res.dictEntries++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("write salvaged dictionary: %w", err)
	}
	return dict, nil
}

// finishSalvage records the totals and, when the damaged file had folded a
// journal epoch, that epoch (so Open does not apply a journal the damaged
// file had already taken in), and removes the marker, in one transaction.
func finishSalvage(db *bolt.DB, res *salvageResult, oldSalvaged, oldLost, jepoch uint64, haveJepoch bool) error {
	err := db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		var cur [16]byte
		copy(cur[:], m.Get(keySalvage))
		res.totalSalvaged = binary.BigEndian.Uint64(cur[:]) + oldSalvaged + uint64(res.readings)
		res.totalLost = binary.BigEndian.Uint64(cur[8:]) + oldLost + uint64(res.lostReadings)
		v := binary.BigEndian.AppendUint64(nil, res.totalSalvaged)
		if err := m.Put(keySalvage, binary.BigEndian.AppendUint64(v, res.totalLost)); err != nil {
			return err
		}
		if res.acks != nil && m.Get(keyAcks) == nil {
			if err := m.Put(keyAcks, res.acks); err != nil {
				return err
			}
		}
		if haveJepoch {
			var folded uint64
			if v := m.Get(keyJEpoch); len(v) == 8 {
				folded = binary.BigEndian.Uint64(v)
			}
			if jepoch > folded {
				if err := m.Put(keyJEpoch, binary.BigEndian.AppendUint64(nil, jepoch)); err != nil {
					return err
				}
			}
		}
		return m.Delete(keySalvageFrom)
	})
	if err != nil {
		return fmt.Errorf("finish salvage: %w", err)
	}
	return nil
}

// foundRoot is what findRoot found.
type foundRoot struct {
	root uint64
	ps   int64
	hwm  uint64
	why  string // why no root page can be trusted, if so
}

// findRoot finds the root page of a file whose meta pages are both damaged.
// Every transaction writes a new root page (a leaf naming the buckets:
// readings, dead, meta and, from format 2 on, dict) and older ones stay in
// the file until their pages are reused, so a scan finds several. Each fold
// writes the journal's epoch into the meta bucket (inline in the root page)
// and then starts the journal's next epoch, and epochs only grow: the root page whose folded epoch is the
// journal's, or one below it, is the root of the last fold. Any other
// choice could be an older root whose readings were acked since (duplicates)
// or whose pages were reused, so without that proof nothing is salvaged.
// Among roots of the same fold the one with the higher ID reservation is
// later; if still tied (a transaction that only dropped readings), the one
// with the fewest readings. I/O errors are returned; damage is only a reason.
func findRoot(f *os.File, size int64, journalPath string) (foundRoot, error) {
	var fr foundRoot
	jepoch, ok, err := journalEpoch(journalPath)
	if err != nil {
		return fr, err
	}
	if !ok {
		fr.why = "no journal header to tell the newest root page from older ones: not salvaged"
		return fr, nil
	}
	fr.ps, err = guessPageSize(f, size)
	if err != nil {
		return fr, err
	}
	if fr.ps == 0 {
		fr.why = "no page structure found"
		return fr, nil
	}
	fr.hwm = uint64(size / fr.ps)
	type cand struct {
		id, folded, ceil uint64
		readings         []byte
	}
	var best []cand
	p := make([]byte, fr.ps)
	for id := uint64(2); id < fr.hwm; id++ {
		if _, err := f.ReadAt(p, int64(id)*fr.ps); err != nil {
			if isShortRead(err) {
				break
			}
			return fr, err
		}
		n := int(le.Uint16(p[10:]))
		if le.Uint64(p) != id || le.Uint16(p[8:]) != flagLeaf || n != 3 && n != 4 {
			continue
		}
		bk := map[string][]byte{}
		for i := 0; i < n; i++ {
			k, v, _, fl, ok := elem(p, i, false)
			if ok && fl&bucketLeaf != 0 && len(v) >= 16 {
				bk[string(k)] = slices.Clone(v)
			}
		}
		if bk[string(bucketReadings)] == nil || bk[string(bucketDead)] == nil || bk[string(bucketMeta)] == nil {
			continue
		}
		c := cand{id: id, readings: bk[string(bucketReadings)]}
		ms := &swalk{w: &walker{f: f, size: size, ps: fr.ps, hwm: fr.hwm, seen: map[uint64]bool{}}}
		have := false
		ms.bucket(bk[string(bucketMeta)], func(k, v []byte, isBucket bool) {
			switch {
			case isBucket:
			case bytes.Equal(k, keyJEpoch) && len(v) == 8:
				c.folded, have = binary.BigEndian.Uint64(v), true
			case bytes.Equal(k, keyIDCeil) && len(v) == 8:
				c.ceil = binary.BigEndian.Uint64(v)
			}
		})
		if ms.ioErr != nil {
			return fr, ms.ioErr
		}
		if !have {
			continue
		}
		switch {
		case len(best) == 0 || c.folded > best[0].folded || (c.folded == best[0].folded && c.ceil > best[0].ceil):
			best = []cand{c}
		case c.folded == best[0].folded && c.ceil == best[0].ceil:
			best = append(best, c)
		}
	}
	if len(best) == 0 {
		fr.why = "no root page found"
		return fr, nil
	}
	if best[0].folded != jepoch && best[0].folded+1 != jepoch {
		fr.why = fmt.Sprintf("the newest root page found (page %d) folded journal epoch %d but the journal is at epoch %d: "+
			"the last fold's root page is damaged too; older roots are not salvaged (their readings may have been acked since)",
			best[0].id, best[0].folded, jepoch)
		return fr, nil
	}
	fewest := -1
	for _, c := range best {
		n := 0
		cs := &swalk{w: &walker{f: f, size: size, ps: fr.ps, hwm: fr.hwm, seen: map[uint64]bool{}}}
		cs.bucket(c.readings, func(_, _ []byte, isBucket bool) {
			if !isBucket {
				n++
			}
		})
		if cs.ioErr != nil {
			return fr, cs.ioErr
		}
		if fewest < 0 || n < fewest {
			fewest, fr.root = n, c.id
		}
	}
	return fr, nil
}

// journalEpoch reads the epoch in the journal's header; ok is false when
// there is no journal or no valid header.
func journalEpoch(path string) (uint64, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	h := make([]byte, 20)
	if _, err := f.ReadAt(h, 0); err != nil {
		if isShortRead(err) {
			return 0, false, nil
		}
		return 0, false, err
	}
	e, ok := parseJournalHeader(h)
	return e, ok, nil
}

// guessPageSize finds the page size of a file without meta pages: the size
// at which the most pages carry their own index as their id. 0 if none.
func guessPageSize(f *os.File, size int64) (int64, error) {
	best, bestN := int64(0), 0
	hdr := make([]byte, pageHeader)
	for ps := int64(512); ps <= 65536; ps *= 2 {
		n := 0
		for id := int64(2); id < size/ps && id < 4096; id++ {
			if _, err := f.ReadAt(hdr, id*ps); err != nil {
				if isShortRead(err) {
					break
				}
				return 0, err
			}
			if le.Uint64(hdr) == uint64(id) {
				n++
			}
		}
		if n > bestN {
			best, bestN = ps, n
		}
	}
	return best, nil
}

// swalk walks a damaged file's trees without trusting them. Unlike rawCheck
// it does not stop at the first fault: an unreadable page is recorded as a
// lost key range and the walk goes on with its siblings.
type swalk struct {
	w     *walker
	ioErr error // a read the disk failed: the salvage is retried whole
	lost  []lostRange
	// perPage is the most records seen on one intact leaf, decoded the
	// records seen in all: for the estimate of what a lost page held.
	perPage, decoded int
	// broken counts elements of readable leaves whose bounds or key
	// order are damaged.
	broken int
}

// lostRange is the key range [lo, hi) under a page that could not be read;
// nil means unbounded.
type lostRange struct{ lo, hi []byte }

// bucket walks the bucket whose header (and, inline, its page) is v.
func (s *swalk) bucket(v []byte, leaf func(k, v []byte, isBucket bool)) {
	if root := le.Uint64(v); root != 0 {
		s.tree(root, 1, nil, nil, leaf)
		return
	}
	s.node(v[16:], 1, nil, nil, leaf)
}

func (s *swalk) tree(id uint64, depth int, lo, hi []byte, leaf func(k, v []byte, isBucket bool)) {
	if s.ioErr != nil {
		return
	}
	if depth > maxDepth {
		s.lost = append(s.lost, lostRange{lo, hi})
		return
	}
	p, err := s.w.page(id)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			s.ioErr = err
			return
		}
		s.lost = append(s.lost, lostRange{lo, hi})
		return
	}
	s.node(p, depth, lo, hi, leaf)
}

// elem returns element i of page p: key, value (leaf) or child page id
// (branch), and whether it lies inside the page.
func elem(p []byte, i int, branch bool) (k, v []byte, child uint64, flags uint32, ok bool) {
	e := pageHeader + i*elemSize
	if branch {
		pos, ksize := uint64(le.Uint32(p[e:])), uint64(le.Uint32(p[e+4:]))
		if uint64(e)+pos+ksize > uint64(len(p)) {
			return nil, nil, 0, 0, false
		}
		return p[uint64(e)+pos : uint64(e)+pos+ksize], nil, le.Uint64(p[e+8:]), 0, true
	}
	flags = le.Uint32(p[e:])
	pos, ksize, vsize := uint64(le.Uint32(p[e+4:])), uint64(le.Uint32(p[e+8:])), uint64(le.Uint32(p[e+12:]))
	start := uint64(e) + pos
	if start+ksize+vsize > uint64(len(p)) {
		return nil, nil, 0, 0, false
	}
	return p[start : start+ksize], p[start+ksize : start+ksize+vsize], 0, flags, true
}

func inRange(k, lo, hi []byte) bool {
	return (lo == nil || bytes.Compare(k, lo) >= 0) && (hi == nil || bytes.Compare(k, hi) < 0)
}

func (s *swalk) node(p []byte, depth int, lo, hi []byte, leaf func(k, v []byte, isBucket bool)) {
	if len(p) < pageHeader {
		s.lost = append(s.lost, lostRange{lo, hi})
		return
	}
	flags, count := le.Uint16(p[8:]), int(le.Uint16(p[10:]))
	if flags != flagBranch && flags != flagLeaf {
		s.lost = append(s.lost, lostRange{lo, hi})
		return
	}
	// A count past the page's end is damage: walk what fits.
	count = min(count, (len(p)-pageHeader)/elemSize)
	if flags == flagBranch {
		// A child's range is from its key to its right sibling's key;
		// a key that is unreadable or out of order narrows nothing.
		keys := make([][]byte, count)
		prev := lo
		for i := range keys {
			k, _, _, _, ok := elem(p, i, true)
			if ok && inRange(k, prev, hi) {
				keys[i], prev = k, k
			}
		}
		for i := 0; i < count; i++ {
			_, _, child, _, _ := elem(p, i, true)
			clo, chi := lo, hi
			if keys[i] != nil {
				clo = keys[i]
			}
			for j := i + 1; j < count; j++ {
				if keys[j] != nil {
					chi = keys[j]
					break
				}
			}
			s.tree(child, depth+1, clo, chi, leaf)
		}
		return
	}
	n := 0
	for i := 0; i < count; i++ {
		k, v, _, fl, ok := elem(p, i, false)
		if !ok || !inRange(k, lo, hi) {
			// Its bounds or its place in the tree are damaged: a
			// record lost, counted.
			s.broken++
			continue
		}
		if fl&bucketLeaf != 0 {
			leaf(k, v, true)
			continue
		}
		n++
		leaf(k, v, false)
	}
	s.perPage = max(s.perPage, n)
	s.decoded += n
}

// lostCount estimates the records under the pages that could not be read,
// and names their ID ranges. A page's parent gives it the IDs from its key
// to its right sibling's: IDs are handed out consecutively, so for a backlog
// (nothing acked in between) that is exactly what the page held. It is
// capped at what the fullest intact leaf held, and that is also the
// estimate when the range is open (the last page of the tree) or not made of
// IDs.
func (s *swalk) lostCount() (int, []string) {
	per := s.perPage
	if per == 0 {
		// No intact leaf to go by: a page's worth of the smallest
		// records (an 8-byte key, ~30-byte record, 16-byte element).
		per = int(s.w.ps-pageHeader) / (16 + 8 + 30)
	}
	total := 0
	var ranges []string
	for _, r := range s.lost {
		n := per
		lo, lok := keyID(r.lo)
		hi, hok := keyID(r.hi)
		if lok && hok && hi > lo && uint64(hi-lo) < uint64(per) {
			n = int(hi - lo)
		}
		total += n
		switch {
		case lok && hok:
			ranges = append(ranges, fmt.Sprintf("[%d,%d)", lo, hi))
		case lok:
			ranges = append(ranges, fmt.Sprintf("[%d,...)", lo))
		case hok:
			ranges = append(ranges, fmt.Sprintf("[...,%d)", hi))
		default:
			ranges = append(ranges, "[all]")
		}
	}
	return total, ranges
}

// asideFile is a set-aside file beside the buffer.
type asideFile struct {
	name string
	size int64
}

// maxAsideFiles caps the set-aside files kept, also without a MaxSize.
const maxAsideFiles = 4

// listAside returns path's set-aside files, oldest first (their names carry
// the UTC time they were set aside, which sorts).
func listAside(path string) ([]asideFile, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)+".corrupt-"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []asideFile
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), base) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, asideFile{filepath.Join(dir, e.Name()), fi.Size()})
	}
	slices.SortFunc(out, func(a, b asideFile) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// pruneAside deletes the oldest set-aside files until those left take at
// most a quarter of maxSize (the buffer file's cap shrinks by what they
// take, see applyLimits) and number at most maxAsideFiles. It returns the
// files kept and how many it deleted; each deletion is logged.
func pruneAside(path string, maxSize int64, log *slog.Logger) ([]asideFile, int) {
	files, err := listAside(path)
	if err != nil {
		log.Warn("list set-aside buffer files", "err", err)
		return nil, 0
	}
	var total int64
	keep := len(files)
	// Newest first: keep while they fit.
	for i := len(files) - 1; i >= 0; i-- {
		if len(files)-i > maxAsideFiles || (maxSize > 0 && total+files[i].size > maxSize/4) {
			keep = len(files) - 1 - i
			break
		}
		total += files[i].size
		keep = len(files) - i
	}
	pruned := 0
	for _, f := range files[:len(files)-keep] {
		if err := os.Remove(f.name); err != nil {
			log.Warn("prune set-aside buffer file", "file", f.name, "err", err)
			continue
		}
		pruned++
		log.Warn("set-aside buffer file deleted: set-aside files count against max_size",
			"file", f.name, "bytes", f.size, "max_size", maxSize, "kept", keep)
	}
	if pruned > 0 {
		syncDir(path)
	}
	return files[len(files)-keep:], pruned
}
