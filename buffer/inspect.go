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
	jepoch, jrecs, jerr := readJournal(journalPath)
	if jerr != nil {
		return s, 0, jerr
	}
	ov := makeOverlay(jrecs)
	var folded uint64
	inFile := 0 // journal acks and dead letters that hit a reading in the file
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
	w.visit = func(bucket string, k, v []byte) {
		id, ok := keyID(k)
		switch {
		case bucket == string(bucketMeta) && string(k) == string(keyIDCeil) && len(v) == 8:
			ceil = reading.ID(binary.BigEndian.Uint64(v))
		case bucket == string(bucketMeta) && string(k) == string(keyJEpoch) && len(v) == 8:
			folded = binary.BigEndian.Uint64(v)
		case bucket == string(bucketMeta) && string(k) == string(keySalvage) && len(v) == 16:
			s.Salvaged, s.Unrecoverable = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
		case !ok:
		case bucket == string(bucketReadings):
			maxID = max(maxID, id)
			if ov.acked[id] || ov.deadIDs[id] != "" {
				inFile++
			}
			s.Depth++
			// Decode only until the oldest readable one: the walk must
			// be quick to see one transaction on a busy file.
			if s.OldestUnsent.IsZero() {
				if r, err := decodeRecord(v); err == nil {
					s.OldestUnsent = r.Time
				}
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
	if jepoch > folded {
		// Readings durable in the journal but not yet folded.
		s.Depth += len(ov.readings) - inFile
		s.DeadLetters += len(ov.dead) + len(ov.deadIDs)
		if s.OldestUnsent.IsZero() && len(ov.readings) > 0 {
			s.OldestUnsent = ov.readings[0].r.Time
		}
		for _, r := range jrecs {
			maxID = max(maxID, r.r.ID, r.id)
		}
	}
	if jfi, err := os.Stat(journalPath); err == nil {
		s.Bytes += jfi.Size()
	}
	s.NextID = max(ceil, maxID+1)
	return s, m.txid, nil
}

// ExportRecord is one line of Export's JSON output (JSON Lines: one object
// per line, so a large backlog streams and tools like jq read it directly).
type ExportRecord struct {
	ID          reading.ID `json:"id,string"` // string: IDs exceed 2^53, which JSON numbers lose in many tools
	State       string     `json:"state"`     // "pending" or "dead"
	Sensor      string     `json:"sensor"`
	Measurement string     `json:"measurement"`
	Property    string     `json:"property"`
	Value       float64    `json:"value"`                // 0 when not finite, see ValueText
	ValueText   string     `json:"value_text,omitempty"` // "NaN", "+Inf", "-Inf": JSON has no such numbers
	Unit        string     `json:"unit"`
	Time        time.Time  `json:"time"`
	MonoNS      int64      `json:"mono_ns"`
	BootID      string     `json:"boot_id,omitempty"`
	Synced      bool       `json:"synced"`
	Reason      string     `json:"reason,omitempty"`     // dead letters: why
	DeadAt      *time.Time `json:"dead_at,omitempty"`    // dead letters: when
	RawHex      string     `json:"raw_hex,omitempty"`    // undecodable records, as stored
	DecodeError string     `json:"decode_err,omitempty"` // why RawHex could not be decoded
}

// Export writes every committed reading (state "pending", oldest first) and
// then every dead letter to w, read-only. asJSON selects JSON Lines (see
// ExportRecord); otherwise one tab-separated line per reading with a header.
// It takes the file's lock (shared) so it sees the file whole, and so fails
// within a fraction of a second with ErrLocked while the daemon runs.
func Export(path string, w io.Writer, asJSON bool) error {
	op, err := openChecked(path, inspectTimeout, true)
	if err != nil {
		return fmt.Errorf("export buffer: %w", err)
	}
	defer closeQuietly(op.db)
	// Readings durable in the journal but not yet folded (after a crash,
	// until the next Open folds them) belong to the file's contents.
	var folded uint64
	_ = op.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyJEpoch); len(v) == 8 {
			folded = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	jepoch, jrecs, err := readJournal(path + journalSuffix)
	if err != nil {
		return fmt.Errorf("export buffer: %w", err)
	}
	ov := makeOverlay(nil)
	if jepoch > folded {
		ov = makeOverlay(jrecs)
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	write := func(rec ExportRecord) error {
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
	if !asJSON {
		if _, err := fmt.Fprintln(bw, "id\tstate\ttime\tsensor\tmeasurement\tproperty\tvalue\tunit\tsynced\treason"); err != nil {
			return fmt.Errorf("export buffer: %w", err)
		}
	}
	err = op.db.View(func(tx *bolt.Tx) error {
		var deadInFile []ExportRecord
		err := tx.Bucket(bucketReadings).ForEach(func(k, v []byte) error {
			id, _ := keyID(k)
			if ov.acked[id] {
				return nil
			}
			rec := ExportRecord{ID: id, State: "pending"}
			if reason, ok := ov.deadIDs[id]; ok {
				if r, err := decodeRecord(v); err == nil {
					rec.State, rec.Reason = "dead", reason
					fillExport(&rec, r)
					deadInFile = append(deadInFile, rec)
				}
				return nil
			}
			if r, err := decodeRecord(v); err != nil {
				rec.RawHex, rec.DecodeError = hex.EncodeToString(v), err.Error()
			} else {
				fillExport(&rec, r)
			}
			return write(rec)
		})
		if err != nil {
			return err
		}
		for _, r := range ov.readings {
			rec := ExportRecord{ID: r.r.ID, State: "pending"}
			fillExport(&rec, r.r)
			if err := write(rec); err != nil {
				return err
			}
		}
		for _, rec := range deadInFile {
			if err := write(rec); err != nil {
				return err
			}
		}
		for _, r := range ov.dead {
			rec := ExportRecord{ID: r.r.ID, State: "dead", Reason: r.reason}
			fillExport(&rec, r.r)
			if err := write(rec); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketDead).ForEach(func(k, v []byte) error {
			id, _ := keyID(k)
			rec := ExportRecord{ID: id, State: "dead"}
			if d, err := decodeDead(v); err != nil {
				rec.RawHex, rec.DecodeError = hex.EncodeToString(v), err.Error()
			} else {
				fillExport(&rec, d.Reading)
				rec.Reason = d.Reason
				at := d.At
				rec.DeadAt = &at
			}
			return write(rec)
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

func fillExport(rec *ExportRecord, r reading.Reading) {
	rec.Sensor, rec.Measurement, rec.Property = r.Sensor, r.Measurement, r.Property
	rec.Value, rec.Unit, rec.Time = r.Value, r.Unit, r.Time
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
		rec.Value, rec.ValueText = 0, strconv.FormatFloat(r.Value, 'g', -1, 64)
	}
	rec.MonoNS, rec.BootID, rec.Synced = int64(r.Mono), r.BootID, r.Synced
}
