// Package sourcetest is the one contract test of reading.Source. It runs
// against the real buffer (buffer/contract_test.go) and against every test
// double that stands in for it (testutil.MemSource, the uplink's empty
// source, gwproof's recording wrapper), so a double cannot drift from what
// it stands for: when the buffer changes how it hands out samples, the
// doubles fail here instead of letting the uplink's tests pass against
// behaviour the daemon no longer has.
//
// The buffer is the reference. Where reading.Source leaves a case open
// (Take with maxValues <= 0, an Ack of an unknown ID, an Ack of a sample
// that is not in flight) the suite checks what buffer.Buffer does.
//
// Run checks, each on a fresh source:
//
//   - Append assigns non-zero IDs that increase in append order; a sample
//     comes back exactly as appended (sensor, stamp, values in order);
//     a sample without values is never handed out.
//   - Take hands out oldest first in append (ID) order, not Time order;
//     NewestFirst reverses it; it returns a non-nil empty slice when nothing
//     matches and nothing for maxValues <= 0.
//   - The maxValues window: whole samples, at least one when one matches,
//     and otherwise it stops before the sample that would pass maxValues
//     (it does not skip ahead to a smaller one); the window counts only the
//     values a sample still has.
//   - Filter: NotBefore is inclusive, Before exclusive, on the sample's
//     Time; samples outside stay available.
//   - In flight: a taken sample is not handed out again until Released,
//     also after some of its values were acked or dead-lettered; Release
//     brings back only the values left, at the sample's place in the order;
//     Release of unknown or not-in-flight IDs changes nothing.
//   - Ack and DeadLetter are exact to the value through Ref.Measurement; an
//     empty Measurement means every value left; a sample leaves when no
//     values remain; refs of unknown IDs, unknown measurements and values
//     already gone are ignored without an error; they work on samples that
//     are not in flight too (an answer that comes after a Release).
//   - Notify: the channel receives after Append; Append never blocks on it;
//     many appends coalesce.
//   - Returned samples are copies; concurrent Takes never share a sample.
//
// Not checked, on purpose:
//   - nil versus empty: an empty Take may be nil or an empty slice (the
//     buffer returns an empty one; the uplink tests len).
//   - Append rounding values to their Resolution (a Sink matter: the suite's
//     values lie on their grid), and the buffer's message counters.
//   - DeadLetter with an empty reason (the buffer accepts it, MemSource
//     refuses it: stricter, and no caller passes one).
//   - A time-filtered Take of a sample stored far out of Time order: the
//     buffer's file walk gives up after 256 samples in a row outside the
//     window (documented at buffer.Take), which a small suite cannot reach
//     and a double need not copy.
//
// This package imports only reading and testing: anything may use it.
package sourcetest
