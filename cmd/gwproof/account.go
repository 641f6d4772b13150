package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"gatewayd/buffer"
	"gatewayd/internal/iotsim"
)

// key identifies a value across the wire and the buffer file: the property
// (distinct per sensor and measurement) and the time its sample was taken,
// in ms. An emulated sensor sampled every 200 ms never repeats the pair, so
// the key is exact: it names one (sample, measurement). In-process trials
// use (sample ID, measurement) itself (inproc.go).
type key struct {
	prop string
	ms   int64
}

// ledger accounts for every value of one fault trial.
type ledger struct {
	mu        sync.Mutex
	delivered map[key]int // times the far end accepted it
	remaining map[key]bool
	dead      map[key]bool
	taken     float64 // values: gatewayd_readings_taken_total (samples) × 3 at cutoff, summed over lifetimes
	drops     float64 // values: gatewayd_buffer_drops_total (samples) × 3 (the buffer's own bound/disk policy, counted)
	cutoff    time.Time
	known     map[key]bool // readings known to exist from a buffer export (corrupt-file trial)
}

func newLedger() *ledger {
	return &ledger{delivered: map[key]int{}, remaining: map[key]bool{}, dead: map[key]bool{}, known: map[key]bool{}}
}

func (l *ledger) deliver(k key) {
	l.mu.Lock()
	l.delivered[k]++
	l.mu.Unlock()
}

// fromSim records what iotsim accepted.
func (l *ledger) fromSim(acc []iotsim.Accepted) {
	for _, a := range acc {
		l.deliver(key{a.Property, a.Time.UnixMilli()})
	}
}

// fromMQTT records one gatewayd "mqtt" payload (an object or an array).
func (l *ledger) fromMQTT(p []byte) {
	type rec struct {
		Property string `json:"property"`
		TimeMS   int64  `json:"time_ms"`
	}
	var rs []rec
	p = bytes.TrimSpace(p)
	if len(p) > 0 && p[0] == '[' {
		_ = json.Unmarshal(p, &rs)
	} else {
		var r rec
		if json.Unmarshal(p, &r) == nil {
			rs = append(rs, r)
		}
	}
	for _, r := range rs {
		if r.Property != "" {
			l.deliver(key{r.Property, r.TimeMS})
		}
	}
}

// export reads a (closed) buffer file: what is still pending or set aside.
func export(path string) (pending, dead []buffer.ExportRecord, err error) {
	var out bytes.Buffer
	if err := buffer.Export(path, &out, true); err != nil {
		return nil, nil, fmt.Errorf("export %s: %w", path, err)
	}
	dec := json.NewDecoder(&out)
	for dec.More() {
		var r buffer.ExportRecord
		if err := dec.Decode(&r); err != nil {
			return nil, nil, fmt.Errorf("decode export: %w", err)
		}
		if r.State == "dead" {
			dead = append(dead, r)
		} else {
			pending = append(pending, r)
		}
	}
	return pending, dead, nil
}

func recKey(r buffer.ExportRecord) key { return key{r.Property, r.Time.UnixMilli()} }

// tally is one trial's outcome: taken = accounted for + lost.
type tally struct {
	taken, unique, dups, remaining, dead, lost int
	drops                                      int
	// lostDetail names lost values (in-process trials, where each is
	// known by its identity): what the evidence says about them.
	lostDetail string
}

// tally compares readings taken before the cutoff (gatewayd's own counter,
// scraped at the cutoff) with the readings stamped at or before it that
// were delivered, are still in the buffer file or were set aside. Readings
// taken after the cutoff (during the graceful stop) are not counted on
// either side.
func (l *ledger) tally() tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	cut := l.cutoff.UnixMilli()
	t := tally{taken: int(l.taken), drops: int(l.drops)}
	seen := map[key]bool{}
	for k, n := range l.delivered {
		if k.ms > cut {
			continue
		}
		seen[k] = true
		t.unique++
		t.dups += n - 1
	}
	for k := range l.remaining {
		if k.ms <= cut && !seen[k] {
			seen[k] = true
			t.remaining++
		}
	}
	for k := range l.dead {
		if k.ms <= cut && !seen[k] {
			seen[k] = true
			t.dead++
		}
	}
	t.lost = t.taken - len(seen)
	return t
}

func itoa(n int) string { return strconv.Itoa(n) }
