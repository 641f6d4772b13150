// Package reading holds the one unit that flows through gatewayd — a
// Sample: one sensor read at one instant, with one stamp and several
// measured values — and the small interfaces between the layers. sensors/
// produces samples into a Sink, buffer/ is the Sink and the Source, uplink/
// drains a Source. Those packages never import each other; they meet here.
//
// A value is addressed as (sample ID, measurement): acks and dead letters can
// be exact to the value when the platform refuses single properties, while
// everything else (storage, stamps, IDs, in-flight state) is per sample.
//
// This package must stay tiny and dependency-free: everything imports it.
package reading

import (
	"context"
	"math"
	"strconv"
	"time"
)

// ID is a sample's stable identity. The buffer assigns it when the sample is
// appended; it is stored with the sample and goes out with it, so a resend
// after a crash or reconnect can be recognised as one. IDs increase in append
// order. Zero means "not yet assigned".
type ID uint64

// Stamp is when a sample was taken, as the clock saw it then.
type Stamp struct {
	// Time is the wall clock when taken (UTC); may be untrusted, see Synced.
	Time time.Time
	// Mono is the time since boot (CLOCK_BOOTTIME) when taken. With BootID it
	// lets a sample taken before the clock was synchronised be re-dated once
	// it is.
	Mono   time.Duration
	BootID string
	// Synced reports whether the wall clock was known to be synchronised when
	// the sample was taken. An unsynced sample's Time must not be trusted.
	Synced bool
}

// Value is one measured quantity of a sample.
type Value struct {
	Measurement string  // "temperature", "humidity", "pressure", "co2", ...; unique within a sample
	Property    string  // thing-model property identifier it is sent as
	Unit        string  // "°C", "%RH", "hPa", "ppm", ...
	Value       float64 // in Unit
	// Resolution is the step the measurement is kept and sent at, in Unit
	// (0.01 for a BME280's temperature): storage rounds to it and encoders
	// print no more digits than it has. 0 means full precision.
	Resolution float64
}

// Sample is one read of one sensor: one stamp, one ID, several values.
type Sample struct {
	ID     ID     // assigned by the buffer on Append
	Sensor string // configured sensor name, e.g. "air"
	Stamp
	Values []Value
}

// Ref addresses one value of a sample: (sample ID, measurement). An empty
// Measurement addresses every value the sample still has.
type Ref struct {
	ID          ID
	Measurement string
}

// Refs returns one whole-sample Ref per sample.
func Refs(ss []Sample) []Ref {
	refs := make([]Ref, len(ss))
	for i, s := range ss {
		refs[i] = Ref{ID: s.ID}
	}
	return refs
}

// IDs returns the IDs of ss.
func IDs(ss []Sample) []ID {
	ids := make([]ID, len(ss))
	for i, s := range ss {
		ids[i] = s.ID
	}
	return ids
}

// CountValues returns the number of values in ss.
func CountValues(ss []Sample) int {
	n := 0
	for _, s := range ss {
		n += len(s.Values)
	}
	return n
}

// Sink takes samples. The buffer is the Sink the sensor loops write to.
// Append assigns IDs to the samples (it writes them into ss).
type Sink interface {
	Append(ctx context.Context, ss []Sample) error
}

// Filter narrows what Source.Take hands out.
type Filter struct {
	// NewestFirst hands out the newest samples first (live data); the default
	// is oldest first (backlog).
	NewestFirst bool
	// NotBefore and Before bound the sample's Time (zero: unbounded).
	NotBefore time.Time
	Before    time.Time
}

// Source hands out buffered samples to the uplink. A sample handed out by
// Take is "in flight" as a whole: it is not handed out again until Released
// (or the process restarts). A value leaves the buffer only by Ack or
// DeadLetter; a sample leaves when it has no values left.
type Source interface {
	// Take returns whole samples that are not in flight, in the filter's
	// order, with only the values not yet acked or dead-lettered. It stops
	// before the sample that would take the total number of values past
	// maxValues, but always returns at least one sample when one matches.
	// It never blocks; it returns an empty slice when nothing matches.
	Take(maxValues int, f Filter) ([]Sample, error)
	// Notify returns a channel that receives a value after samples were
	// appended (coalesced: one value may stand for many appends).
	Notify() <-chan struct{}
	// Ack deletes values (or whole samples) the platform acknowledged. The
	// uplink calls it once per acknowledged platform message, so the buffer
	// can count messages per reading.
	Ack(refs []Ref) error
	// Release makes in-flight samples available to Take again (the send
	// failed or timed out; their remaining values will be retried).
	Release(ids []ID)
	// DeadLetter moves values (or whole samples) that can never be accepted
	// aside, with the reason, so they stop blocking the queue but stay
	// visible.
	DeadLetter(refs []Ref, reason string) error
}

// Round returns v rounded to the nearest multiple of res (v itself when res
// is 0 or v is not finite).
func Round(v, res float64) float64 {
	if res <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	r := math.Round(v/res) * res
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return v // v/res overflowed: a resolution too fine to round at
	}
	return r
}

// Digits returns how many decimal places res has (2 for 0.01, 0 for 1 or 0).
func Digits(res float64) int {
	if res <= 0 || res >= 1 {
		return 0
	}
	d := 0
	for r := res; d < 9 && math.Abs(r-math.Round(r)) > 1e-9; r *= 10 {
		d++
	}
	return d
}

// Format appends v as JSON number text at res's precision: at most Digits(res)
// decimals with trailing zeros trimmed, shortest form when res is 0, and
// always a decimal point (thing-model float/double properties want one).
// v must be finite.
func Format(dst []byte, v, res float64) []byte {
	start := len(dst)
	if res > 0 {
		dst = strconv.AppendFloat(dst, Round(v, res), 'f', Digits(res), 64)
	} else {
		dst = strconv.AppendFloat(dst, v, 'f', -1, 64)
	}
	dot := -1
	for i := start; i < len(dst); i++ {
		if dst[i] == '.' {
			dot = i
			break
		}
	}
	if dot < 0 {
		return append(dst, '.', '0')
	}
	for len(dst) > dot+2 && dst[len(dst)-1] == '0' {
		dst = dst[:len(dst)-1]
	}
	return dst
}
