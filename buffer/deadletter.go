package buffer

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"gatewayd/internal/reading"
)

// Dead letters are bounded: a broken data-parsing script on the platform
// dead-letters everything, and an unbounded dead bucket would fill MaxSize
// until every fold fails and every new sample is dropped. They are bounded
// by count, bytes and age (Options.DeadLetterMax*), counted in MaxSize like
// everything in the file, and the oldest (by sample) go first; every drop is
// counted in Stats.Drops and logged.
const (
	DefaultDeadLetterMaxCount = 10000
	DefaultDeadLetterMaxBytes = 4 << 20 // and at most MaxSize/8
	DefaultDeadLetterMaxAge   = 30 * 24 * time.Hour
)

// Drop reasons for dead letters (Stats.Drops; counted in dead letters).
const (
	ReasonDeadCount = "dead_letter_max_count"
	ReasonDeadBytes = "dead_letter_max_bytes"
	ReasonDeadAge   = "dead_letter_max_age"
)

// deadPruneEvery is how often an idle buffer looks for dead letters past
// their age.
const deadPruneEvery = time.Hour

// deadLimits resolves the Options' dead-letter bounds (0 = unbounded).
func deadLimits(o Options) (count int, bytes int64, age time.Duration) {
	count, bytes, age = o.DeadLetterMaxCount, o.DeadLetterMaxBytes, o.DeadLetterMaxAge
	if count == 0 {
		count = DefaultDeadLetterMaxCount
	}
	if bytes == 0 {
		bytes = DefaultDeadLetterMaxBytes
		if o.MaxSize > 0 {
			bytes = min(bytes, o.MaxSize/8)
		}
	}
	if age == 0 {
		age = DefaultDeadLetterMaxAge
	}
	return max(count, 0), max(bytes, 0), max(age, 0)
}

// deadSize is what a dead letter takes in its page: element header, key,
// value.
func deadSize(k, v []byte) int64 { return int64(16 + len(k) + len(v)) }

// deadAt reads when a stored dead letter was made, without decoding it.
func deadAt(v []byte) (time.Time, bool) {
	if len(v) < 2 || (v[0] != deadV1 && v[0] != deadV2) {
		return time.Time{}, false
	}
	us, n := binary.Varint(v[1:])
	if n <= 0 {
		return time.Time{}, false
	}
	return time.UnixMicro(us), true
}

// deadDrops is what pruneDead deleted.
type deadDrops struct {
	count, age, bytes int
	recs              int
	size              int64
}

// pruneDead applies the dead-letter bounds to the dead bucket, which holds
// recs records of size bytes: past their age first (when ageToo), then the
// oldest beyond the count and the bytes.
func pruneDead(db *bolt.Bucket, recs int, size int64, o Options, now time.Time, ageToo bool) (deadDrops, error) {
	maxCount, maxBytes, maxAge := deadLimits(o)
	var d deadDrops
	var keys [][]byte
	if ageToo && maxAge > 0 {
		cutoff := now.Add(-maxAge)
		c := db.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if at, ok := deadAt(v); ok && at.Before(cutoff) {
				keys = append(keys, append([]byte(nil), k...))
				d.age++
				d.size += deadSize(k, v)
			}
		}
	}
	aged := map[string]bool{}
	for _, k := range keys {
		aged[string(k)] = true
	}
	c := db.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		left, leftBytes := recs-len(keys), size-d.size
		overCount := maxCount > 0 && left > maxCount
		overBytes := maxBytes > 0 && leftBytes > maxBytes
		if !overCount && !overBytes {
			break
		}
		if aged[string(k)] {
			continue
		}
		keys = append(keys, append([]byte(nil), k...))
		d.size += deadSize(k, v)
		if overCount {
			d.count++
		} else {
			d.bytes++
		}
	}
	for _, k := range keys {
		if err := db.Delete(k); err != nil {
			return deadDrops{}, err
		}
	}
	d.recs = len(keys)
	return d, nil
}

// deadDueLocked reports whether the next commit must apply the dead-letter
// bounds with nothing else to write: over count or bytes (bounds lowered),
// or, at most once per deadPruneEvery, one past its age.
func (b *Buffer) deadDueLocked() bool {
	maxCount, maxBytes, maxAge := deadLimits(b.o)
	if maxCount > 0 && b.l.deadRecs > maxCount || maxBytes > 0 && b.l.deadBytes > maxBytes {
		return true
	}
	if maxAge == 0 || b.l.deadRecs == 0 || time.Since(b.lastDeadPrune) < deadPruneEvery {
		return false
	}
	b.lastDeadPrune = time.Now()
	due := false
	cutoff := time.Now().Add(-maxAge)
	_ = b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDead).ForEach(func(_, v []byte) error {
			if at, ok := deadAt(v); ok && at.Before(cutoff) {
				due = true
			}
			return nil
		})
	})
	b.deadAgeDue = due
	return due
}

// ExportDead writes only the dead letters of the file at path, as Export
// does (one line per value, with reason and when).
func ExportDead(path string, w io.Writer, asJSON bool) error {
	return export(path, w, asJSON, false, true)
}

// Requeue moves dead letters of the buffer file at path back into the queue
// (the platform's script was fixed): each goes back under its sample's ID,
// merged with the values of that sample still waiting. With reason set,
// only dead letters whose reason contains it. It opens the buffer (folding
// a journal a crash left) and so needs the file to itself: while the daemon
// runs it fails with ErrLocked. Undecodable dead letters stay. It returns
// how many dead letters it requeued and how many are left.
func Requeue(path, reason string, log *slog.Logger) (requeued, left int, err error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b, err := Open(Options{Path: path, CommitInterval: time.Hour, LockTimeout: inspectTimeout, Logger: log,
		DeadLetterMaxCount: -1, DeadLetterMaxBytes: -1, DeadLetterMaxAge: -1})
	if err != nil {
		return 0, 0, fmt.Errorf("requeue: %w", err)
	}
	requeued, err = b.requeue(reason)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	left = b.Stats().DeadLetters
	if cerr := b.Close(ctx); err == nil && cerr != nil {
		err = fmt.Errorf("requeue: %w", cerr)
	}
	return requeued, left, err
}

func (b *Buffer) requeue(reason string) (int, error) {
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	if err := b.fold(0); err != nil {
		return 0, fmt.Errorf("requeue: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.l.dict
	n := 0
	err := b.db.Update(func(tx *bolt.Tx) error {
		n = 0
		rb, db, xb := tx.Bucket(bucketReadings), tx.Bucket(bucketDead), tx.Bucket(bucketDict)
		var keys [][]byte
		var back []reading.Sample
		err := db.ForEach(func(k, v []byte) error {
			r, err := DecodeRecord(string(bucketDead), k, v, d)
			if err != nil || reason != "" && !strings.Contains(r.Reason, reason) {
				return nil
			}
			keys = append(keys, append([]byte(nil), k...))
			back = append(back, r.Sample)
			return nil
		})
		if err != nil {
			return err
		}
		for i := range back {
			s := back[i]
			k := idKey(s.ID)
			if v := rb.Get(k); v != nil {
				if cur, err := decodeSample(s.ID, v, d); err == nil {
					for _, dv := range s.Values {
						if cur.Values = append(cur.Values, dv); len(cur.Values) > maxValues || checkSample(&cur) != nil {
							cur.Values = cur.Values[:len(cur.Values)-1]
						}
					}
					s = cur
				}
			}
			if err := rb.Put(k, encodeSample(&s, allBits(len(s.Values)), d)); err != nil {
				return err
			}
			if err := db.Delete(keys[i]); err != nil {
				return err
			}
			n++
		}
		for i := range d.ents {
			if !d.ents[i].filed && d.ents[i].kind != 0 {
				if err := xb.Put(dictKey(uint32(i+1)), encodeDictEnt(&d.ents[i])); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("requeue: %w", err)
	}
	for i := range d.ents {
		d.ents[i].filed = true
	}
	if err := b.recountLocked(); err != nil {
		return n, err
	}
	b.log.Info("dead letters requeued", "count", n, "reason_filter", reason)
	return n, nil
}

// recountLocked counts the file's records again (after a journal fold at
// Open or a requeue).
func (b *Buffer) recountLocked() error {
	return b.db.View(func(tx *bolt.Tx) error {
		b.l.stored, b.l.storedValues, b.l.deadRecs, b.l.deadBytes = 0, 0, 0, 0
		_ = tx.Bucket(bucketReadings).ForEach(func(_, v []byte) error {
			b.l.stored++
			b.l.storedValues += max(countValues(v), 0)
			return nil
		})
		return tx.Bucket(bucketDead).ForEach(func(k, v []byte) error {
			b.l.deadRecs++
			b.l.deadBytes += deadSize(k, v)
			return nil
		})
	})
}
