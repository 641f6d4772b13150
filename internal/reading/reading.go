// Package reading holds the one value that flows through gatewayd — a
// Reading — and the small interfaces between the layers. sensors/ produces
// readings into a Sink, buffer/ is the Sink and the Source, uplink/ drains a
// Source. Those packages never import each other; they meet here.
//
// This package must stay tiny and dependency-free: everything imports it.
package reading

import (
	"context"
	"time"
)

// ID is a reading's stable identity. The buffer assigns it when the reading
// is appended; it is stored with the reading and goes out with it, so a
// resend after a crash or reconnect can be recognised as one. IDs increase in
// append order. Zero means "not yet assigned".
type ID uint64

// Reading is one measured value of one sensor.
type Reading struct {
	ID          ID        // assigned by the buffer on Append
	Sensor      string    // configured sensor name, e.g. "air"
	Measurement string    // "temperature", "humidity", "pressure", "co2", ...
	Property    string    // thing-model property identifier it is sent as
	Value       float64   // in Unit
	Unit        string    // "°C", "%RH", "hPa", "ppm", ...
	Time        time.Time // wall clock when taken (UTC); may be untrusted, see Synced
	// Mono is the time since boot (CLOCK_BOOTTIME) when taken. With BootID it
	// lets a reading taken before the clock was synchronised be re-dated once
	// it is.
	Mono   time.Duration
	BootID string
	// Synced reports whether the wall clock was known to be synchronised when
	// the reading was taken. An unsynced reading's Time must not be trusted.
	Synced bool
}

// Stamp is when a reading was taken, as the clock saw it then.
type Stamp struct {
	Time   time.Time
	Mono   time.Duration
	BootID string
	Synced bool
}

// SetStamp records when the reading was taken.
func (r *Reading) SetStamp(s Stamp) {
	r.Time, r.Mono, r.BootID, r.Synced = s.Time, s.Mono, s.BootID, s.Synced
}

// Sink takes readings. The buffer is the Sink the sensor loops write to.
// Append assigns IDs to the readings (it may write them into rs).
type Sink interface {
	Append(ctx context.Context, rs []Reading) error
}

// Filter narrows what Source.Take hands out.
type Filter struct {
	// NewestFirst hands out the newest readings first (live data); the
	// default is oldest first (backlog).
	NewestFirst bool
	// NotBefore and Before bound the reading's Time (zero: unbounded).
	NotBefore time.Time
	Before    time.Time
}

// Source hands out buffered readings to the uplink. A reading handed out by
// Take is "in flight": it is not handed out again until Released (or the
// process restarts), and it leaves the buffer only by Ack or DeadLetter.
type Source interface {
	// Take returns up to max readings that are not in flight, in the
	// filter's order. It never blocks; it returns an empty slice when
	// nothing matches.
	Take(max int, f Filter) ([]Reading, error)
	// Notify returns a channel that receives a value after readings were
	// appended (coalesced: one value may stand for many appends).
	Notify() <-chan struct{}
	// Ack deletes readings the platform acknowledged.
	Ack(ids []ID) error
	// Release makes in-flight readings available to Take again (the send
	// failed or timed out; they will be retried).
	Release(ids []ID)
	// DeadLetter moves readings that can never be accepted aside, with the
	// reason, so they stop blocking the queue but stay visible.
	DeadLetter(ids []ID, reason string) error
}

// IDs returns the IDs of rs.
func IDs(rs []Reading) []ID {
	ids := make([]ID, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids
}
