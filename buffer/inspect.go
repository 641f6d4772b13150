package buffer

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"gatewayd/internal/reading"
)

// inspectTimeout is how long Export waits for the file lock. The running
// daemon holds it for as long as it runs, so waiting longer only delays the
// clear answer.
const inspectTimeout = 200 * time.Millisecond

// Inspect reads the buffer file at path and returns its Stats: Depth, Bytes,
// OldestUnsent, DeadLetters and NextID (the counters that live only in the
// running process are zero; the daemon's health endpoint has those). It
// takes no lock and writes nothing, so it works while the daemon runs and
// can never delay it: it walks bbolt's page tree from the newest meta page
// straight from the file and accepts the result only if that meta page was
// still the newest afterwards (bbolt never overwrites a page the newest meta
// page can reach, so the walk saw one consistent transaction). If the file
// changes under every attempt for about a second it gives up with ErrBusy.
func Inspect(path string) (Stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return Stats{}, fmt.Errorf("inspect buffer: %w", err)
	}
	defer f.Close()
	for attempt := 0; attempt < 30; attempt++ {
		s, txid, err := inspectOnce(f, path+journalSuffix)
		if txid == 0 && err != nil {
			// No valid meta page: bbolt writes one meta page at a
			// time and leaves the other whole, so this is no race.
			return Stats{}, fmt.Errorf("inspect buffer: %w", err)
		}
		w := &walker{f: f}
		if m, merr := w.currentMeta(); merr == nil && m.txid == txid {
			if err != nil {
				return Stats{}, fmt.Errorf("inspect buffer: %w", err)
			}
			if files, err := listAside(path); err == nil {
				s.AsideFiles = len(files)
				for _, f := range files {
					s.AsideBytes += f.size
				}
			}
			return s, nil
		}
		time.Sleep(time.Duration(attempt+1) * 2 * time.Millisecond)
	}
	return Stats{}, fmt.Errorf("inspect buffer %s: %w", path, ErrBusy)
}

// inspectOnce walks the tree of the newest meta page it finds and returns
// what it counted with that meta page's transaction id.
func inspectOnce(f *os.File, journalPath string) (Stats, uint64, error) {
	s := Stats{Drops: map[string]uint64{}}
	// The journal first: a fold between this read and the walk shows as
	// a folded epoch in the walk, and the journal is then left out.
	jepoch, subs, jerr := readJournal(journalPath)
	if jerr != nil {
		return s, 0, jerr
	}
	// Removals need no dictionary: known before the walk.
	rmRecs, _ := decodeSubs(subs, NewDict())
	rm := makeOverlay(rmRecs)
	var folded uint64
	fi, err := f.Stat()
	if err != nil {
		return s, 0, err
	}
	w := &walker{f: f, size: fi.Size(), seen: map[uint64]bool{}}
	m, err := w.currentMeta()
	if err != nil {
		return s, 0, err
	}
	w.ps, w.hwm = int64(m.pageSize), m.hwm
	if int64(m.hwm)*w.ps > w.size {
		return s, m.txid, fmt.Errorf("%w: truncated", ErrCorrupt)
	}
	var maxID, ceil reading.ID
	dict := NewDict()
	var acks ackCounts
	var firstK, firstV []byte // the oldest record the journal leaves
	removedS, removedV, moved := 0, 0, 0
	w.visit = func(bucket string, k, v []byte) {
		id, ok := keyID(k)
		switch {
		case bucket == string(bucketDict):
			_ = dict.Load(k, v)
		case bucket == string(bucketMeta) && string(k) == string(keyIDCeil) && len(v) == 8:
			ceil = reading.ID(binary.BigEndian.Uint64(v))
		case bucket == string(bucketMeta) && string(k) == string(keyJEpoch) && len(v) == 8:
			folded = binary.BigEndian.Uint64(v)
		case bucket == string(bucketMeta) && string(k) == string(keyAcks):
			acks, _ = decodeAcks(v)
		case bucket == string(bucketMeta) && string(k) == string(keySalvage) && len(v) == 16:
			s.Salvaged, s.Unrecoverable = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
		case !ok:
		case bucket == string(bucketReadings):
			maxID = max(maxID, id)
			n := max(countValues(v), 0)
			s.Depth++
			s.Values += n
			gone := false
			if op := rm.fileRm[id]; op != nil {
				if op.all || len(op.names) >= n {
					removedS++
					removedV += n
					gone = true
				} else {
					removedV += len(op.names)
				}
			} else if _, ok := rm.fileDead[id]; ok {
				removedS++
				removedV += n
				moved++
				gone = true
			}
			if firstK == nil && !gone {
				firstK, firstV = append([]byte(nil), k...), append([]byte(nil), v...)
			}
		case bucket == string(bucketDead):
			maxID = max(maxID, id)
			s.DeadLetters++
		}
	}
	if _, err := w.tree(m.root, 0, nil, nil, ""); err != nil {
		return s, m.txid, err
	}
	s.Bytes = fi.Size()
	if firstK != nil {
		id, _ := keyID(firstK)
		if smp, err := decodeSample(id, firstV, dict); err == nil {
			s.OldestUnsent = smp.Time
		}
	}
	if jepoch > folded {
		// What the journal holds but the file does not yet.
		s.Depth -= removedS
		s.Values -= removedV
		recs, _ := decodeSubs(subs, dict)
		ov := makeOverlay(recs)
		s.Depth += len(ov.samples)
		s.Values += reading.CountValues(ov.samples)
		s.DeadLetters += len(ov.dead) + moved
		if firstK == nil && len(ov.samples) > 0 {
			s.OldestUnsent = ov.samples[0].Time
		}
		if ov.hasAcks {
			acks = ov.acks
		}
		for id := range ov.ids {
			maxID = max(maxID, id)
		}
	}
	if jfi, err := os.Stat(journalPath); err == nil {
		s.Bytes += jfi.Size()
	}
	s.NextID = max(ceil, maxID+1)
	s.AckedMessages, s.AckedReadings, s.AckedValues = acks.msgs, acks.samples, acks.values
	if acks.samples > 0 {
		s.MessagesPerReading = float64(acks.msgs) / float64(acks.samples)
	}
	return s, m.txid, nil
}

// ExportRecord is one line of Export's JSON output (JSON Lines: one object
// per line, so a large backlog streams and tools like jq read it directly):
// one value, with its sample's ID (shared by the sample's values).
type ExportRecord struct {
	ID          reading.ID `json:"id,string"` // the sample's ID; string: IDs exceed 2^53, which JSON numbers lose in many tools
	State       string     `json:"state"`     // "pending" or "dead"
	Sensor      string     `json:"sensor"`
	Measurement string     `json:"measurement"`
	Property    string     `json:"property"`
	Value       float64    `json:"value"`                // 0 when not finite, see ValueText
	ValueText   string     `json:"value_text,omitempty"` // "NaN", "+Inf", "-Inf": JSON has no such numbers
	Unit        string     `json:"unit"`
	Resolution  float64    `json:"resolution,omitempty"` // the step the value is kept at; 0 = full precision
	Time        time.Time  `json:"time"`
	MonoNS      int64      `json:"mono_ns"`
	BootID      string     `json:"boot_id,omitempty"`
	Synced      bool       `json:"synced"`
	Reason      string     `json:"reason,omitempty"`     // dead letters: why
	DeadAt      *time.Time `json:"dead_at,omitempty"`    // dead letters: when
	RawHex      string     `json:"raw_hex,omitempty"`    // undecodable records, as stored
	DecodeError string     `json:"decode_err,omitempty"` // why RawHex could not be decoded
}

// Export writes every value waiting (state "pending", oldest sample first)
// and then every dead-lettered value to w, read-only: one line per value,
// with its sample's ID. asJSON selects JSON Lines (see ExportRecord);
// otherwise one tab-separated line per value with a header. It takes the
// file's lock (shared) so it sees the file whole, and so fails within a
// fraction of a second with ErrLocked while the daemon runs.
func Export(path string, w io.Writer, asJSON bool) error {
	return export(path, w, asJSON, true, true)
}

func export(path string, w io.Writer, asJSON, pending, dead bool) error {
	op, err := openChecked(path, inspectTimeout, true)
	if err != nil {
		return fmt.Errorf("export buffer: %w", err)
	}
	defer closeQuietly(op.db)
	// Samples durable in the journal but not yet folded (after a crash,
	// until the next Open folds them) belong to the file's contents.
	var folded uint64
	_ = op.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyJEpoch); len(v) == 8 {
			folded = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	jepoch, subs, err := readJournal(path + journalSuffix)
	if err != nil {
		return fmt.Errorf("export buffer: %w", err)
	}
	ov := makeOverlay(nil)
	if jepoch > folded {
		recs, _ := decodeSubs(subs, op.dict)
		ov = makeOverlay(recs)
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	write := func(rec ExportRecord) error {
		if rec.State == "pending" && !pending || rec.State == "dead" && !dead {
			return nil
		}
		if asJSON {
			return enc.Encode(rec)
		}
		reason := rec.Reason
		if rec.DecodeError != "" {
			reason = rec.DecodeError + " raw=" + rec.RawHex
		}
		_, err := fmt.Fprintf(bw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%t\t%s\n", rec.ID, rec.State,
			rec.Time.Format(time.RFC3339Nano), rec.Sensor, rec.Measurement, rec.Property,
			strconv.FormatFloat(rec.Value, 'g', -1, 64), rec.Unit, rec.Synced, reason)
		return err
	}
	writeSample := func(smp *reading.Sample, state, reason string, at *time.Time) error {
		for i := range smp.Values {
			rec := ExportRecord{ID: smp.ID, State: state, Reason: reason, DeadAt: at}
			fillExport(&rec, smp, &smp.Values[i])
			if err := write(rec); err != nil {
				return err
			}
		}
		return nil
	}
	if !asJSON {
		if _, err := fmt.Fprintln(bw, "id\tstate\ttime\tsensor\tmeasurement\tproperty\tvalue\tunit\tsynced\treason"); err != nil {
			return fmt.Errorf("export buffer: %w", err)
		}
	}
	err = op.db.View(func(tx *bolt.Tx) error {
		var deadInFile []reading.Sample
		var deadWhy []string
		err := tx.Bucket(bucketReadings).ForEach(func(k, v []byte) error {
			id, _ := keyID(k)
			smp, err := decodeSample(id, v, op.dict)
			if err != nil {
				if ov.fileRm[id] != nil && ov.fileRm[id].all {
					return nil
				}
				return write(ExportRecord{ID: id, State: "pending", RawHex: hex.EncodeToString(v), DecodeError: err.Error()})
			}
			if reason, ok := ov.fileDead[id]; ok {
				deadInFile = append(deadInFile, smp)
				deadWhy = append(deadWhy, reason)
				return nil
			}
			if op := ov.fileRm[id]; op != nil {
				op.apply(&smp)
			}
			return writeSample(&smp, "pending", "", nil)
		})
		if err != nil {
			return err
		}
		for i := range ov.samples {
			if err := writeSample(&ov.samples[i], "pending", "", nil); err != nil {
				return err
			}
		}
		for i := range deadInFile {
			if err := writeSample(&deadInFile[i], "dead", deadWhy[i], nil); err != nil {
				return err
			}
		}
		for i := range ov.dead {
			var at *time.Time
			if !ov.dead[i].DeadAt.IsZero() {
				at = &ov.dead[i].DeadAt
			}
			if err := writeSample(&ov.dead[i].Sample, "dead", ov.dead[i].Reason, at); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketDead).ForEach(func(k, v []byte) error {
			id, _ := keyID(k)
			r, err := DecodeRecord(string(bucketDead), k, v, op.dict)
			if err != nil {
				return write(ExportRecord{ID: id, State: "dead", RawHex: hex.EncodeToString(v), DecodeError: err.Error()})
			}
			at := r.DeadAt
			return writeSample(&r.Sample, "dead", r.Reason, &at)
		})
	})
	if err != nil {
		return fmt.Errorf("export buffer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export buffer: %w", err)
	}
	return nil
}

func fillExport(rec *ExportRecord, s *reading.Sample, v *reading.Value) {
	rec.Sensor, rec.Measurement, rec.Property = s.Sensor, v.Measurement, v.Property
	rec.Value, rec.Unit, rec.Time, rec.Resolution = v.Value, v.Unit, s.Time, v.Resolution
	if math.IsNaN(v.Value) || math.IsInf(v.Value, 0) {
		rec.Value, rec.ValueText = 0, strconv.FormatFloat(v.Value, 'g', -1, 64)
	}
	rec.MonoNS, rec.BootID, rec.Synced = int64(s.Mono), s.BootID, s.Synced
}
