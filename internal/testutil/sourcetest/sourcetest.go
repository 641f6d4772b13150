package sourcetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

// Harness is one fresh source under test and the way to put samples into it.
type Harness struct {
	// Source is what is tested.
	Source reading.Source
	// Append appends ss as the source's Sink does: it writes the assigned
	// IDs into ss.
	Append func(ss []reading.Sample) error
}

// t0 is the time of the first sample; every test's samples are near it.
var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// Run runs the contract suite. open is called once per subtest and must
// return a fresh, empty source (clean it up with t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) Harness) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := open(t)
			c.fn(t, &suite{h: h, src: h.Source})
		})
	}
}

// RunEmpty checks a source that never holds anything (a stand-in for a
// caller that only needs a Source to exist): every Take comes back empty
// without an error and leaves nothing in flight, acks, dead letters and
// releases of IDs it never handed out are ignored without an error, and
// Notify has nothing to say.
func RunEmpty(t *testing.T, src reading.Source) {
	s := &suite{src: src}
	for _, f := range filters() {
		for _, max := range []int{-1, 0, 1, 100} {
			if got := s.take(t, max, f); len(got) != 0 {
				t.Fatalf("Take(%d, %+v) of an empty source = %v", max, f, reading.IDs(got))
			}
		}
	}
	refs := []reading.Ref{{ID: 1}, {ID: 2, Measurement: "temperature"}}
	if err := src.Ack(refs); err != nil {
		t.Fatalf("Ack of unknown IDs: %v", err)
	}
	if err := src.DeadLetter(refs, "refused"); err != nil {
		t.Fatalf("DeadLetter of unknown IDs: %v", err)
	}
	src.Release([]reading.ID{1, 2})
	select {
	case <-src.Notify():
		t.Fatal("Notify fired although nothing was appended")
	default:
	}
}

func filters() []reading.Filter {
	return []reading.Filter{{}, {NewestFirst: true}, {NotBefore: t0}, {Before: t0}, {NewestFirst: true, NotBefore: t0.Add(-time.Hour), Before: t0.Add(time.Hour)}}
}

type suite struct {
	h   Harness
	src reading.Source
}

var cases = []struct {
	name string
	fn   func(t *testing.T, s *suite)
}{
	{"IDsIncreaseInAppendOrder", testIDs},
	{"SampleComesBackAsAppended", testRoundTrip},
	{"SampleWithoutValuesNeverHandedOut", testEmptySample},
	{"NothingToTake", testNothing},
	{"MaxValuesZeroTakesNothing", testMaxZero},
	{"OldestFirstInAppendOrder", testOldestFirst},
	{"NewestFirst", testNewestFirst},
	{"MaxValuesWindow", testWindow},
	{"WindowCountsValuesLeft", testWindowValuesLeft},
	{"FilterTimeBounds", testFilter},
	{"InFlightNotHandedOutAgain", testInFlight},
	{"ReleaseBringsBackInOrder", testRelease},
	{"ReleaseUnknownOrNotInFlight", testReleaseOdd},
	{"AckWholeSample", testAckWhole},
	{"AckValueExact", testAckValue},
	{"DeadLetterValueExact", testDeadLetterValue},
	{"SampleLeavesWhenNoValuesRemain", testLeaves},
	{"AckAndDeadLetterOfUnknownOrGone", testAckOdd},
	{"AckAndDeadLetterNotInFlight", testAckNotInFlight},
	{"NotifyAfterAppend", testNotify},
	{"NotifyCoalesces", testNotifyCoalesce},
	{"ReturnedSamplesAreCopies", testCopies},
	{"ConcurrentTakesNeverShare", testConcurrent},
}

// mk returns a sample of sensor at t with the named measurements. Values
// are multiples of their resolution (0.25, exact in binary) so a source
// that stores values at their resolution gives them back unchanged.
func mk(sensor string, at time.Time, ms ...string) reading.Sample {
	s := reading.Sample{Sensor: sensor, Stamp: reading.Stamp{Time: at, Mono: at.Sub(t0) + time.Hour, BootID: "boot-1", Synced: true}}
	for i, m := range ms {
		s.Values = append(s.Values, reading.Value{Measurement: m, Property: "P_" + m, Unit: "u_" + m,
			Value: 20 + float64(i)*1.25, Resolution: 0.25})
	}
	return s
}

// n returns a sample at t0+i seconds with k values m0..m(k-1).
func n(i, k int) reading.Sample {
	ms := make([]string, k)
	for j := range ms {
		ms[j] = fmt.Sprintf("m%d", j)
	}
	return mk(fmt.Sprintf("s%d", i), t0.Add(time.Duration(i)*time.Second), ms...)
}

func (s *suite) append(t *testing.T, ss ...reading.Sample) []reading.Sample {
	t.Helper()
	if err := s.h.Append(ss); err != nil {
		t.Fatalf("Append: %v", err)
	}
	return ss
}

func (s *suite) take(t *testing.T, max int, f reading.Filter) []reading.Sample {
	t.Helper()
	got, err := s.src.Take(max, f)
	if err != nil {
		t.Fatalf("Take(%d, %+v): %v", max, f, err)
	}
	return got
}

// want checks that got holds the samples with the IDs of want, in order.
func want(t *testing.T, what string, got []reading.Sample, want ...reading.ID) {
	t.Helper()
	if g := reading.IDs(got); !slices.Equal(g, want) {
		t.Fatalf("%s: got samples %v, want %v", what, g, want)
	}
}

func measurements(s reading.Sample) []string {
	out := make([]string, len(s.Values))
	for i, v := range s.Values {
		out[i] = v.Measurement
	}
	return out
}

func (s *suite) ack(t *testing.T, refs ...reading.Ref) {
	t.Helper()
	if err := s.src.Ack(refs); err != nil {
		t.Fatalf("Ack(%v): %v", refs, err)
	}
}

func (s *suite) dead(t *testing.T, refs ...reading.Ref) {
	t.Helper()
	if err := s.src.DeadLetter(refs, "26002 refused"); err != nil {
		t.Fatalf("DeadLetter(%v): %v", refs, err)
	}
}

func testIDs(t *testing.T, s *suite) {
	a := s.append(t, n(0, 1), n(1, 2))
	b := s.append(t, n(2, 3))
	all := append(reading.IDs(a), reading.IDs(b)...)
	for i, id := range all {
		if id == 0 {
			t.Fatalf("Append left sample %d without an ID: %v", i, all)
		}
		if i > 0 && id <= all[i-1] {
			t.Fatalf("IDs do not increase in append order: %v", all)
		}
	}
	want(t, "Take(100)", s.take(t, 100, reading.Filter{}), all...)
}

func testRoundTrip(t *testing.T, s *suite) {
	in := mk("air", t0.Add(1500*time.Millisecond), "temperature", "humidity", "pressure")
	in.Stamp = reading.Stamp{Time: in.Time, Mono: 36*time.Hour + 123456789, BootID: "5f0c-boot", Synced: false}
	in.Values[2].Resolution = 0 // full precision kept
	in.Values[2].Value = 1013.2512345678
	other := mk("soil", t0, "moisture")
	orig := []reading.Sample{in, other}
	ss := s.append(t, in, other)
	got := s.take(t, 100, reading.Filter{})
	want(t, "Take(100)", got, reading.IDs(ss)...)
	for i, g := range got {
		w := orig[i]
		if g.Sensor != w.Sensor || !g.Time.Equal(w.Time) || g.Mono != w.Mono || g.BootID != w.BootID || g.Synced != w.Synced {
			t.Errorf("sample %d came back as %+v, appended %+v", i, g, w)
		}
		if !slices.Equal(g.Values, w.Values) {
			t.Errorf("sample %d: values came back as %+v, appended %+v", i, g.Values, w.Values)
		}
	}
}

func testEmptySample(t *testing.T, s *suite) {
	ss := s.append(t, n(0, 1), reading.Sample{Sensor: "none", Stamp: reading.Stamp{Time: t0}}, n(2, 1))
	if ss[1].ID == 0 {
		t.Fatal("a sample without values got no ID")
	}
	want(t, "Take(100)", s.take(t, 100, reading.Filter{}), ss[0].ID, ss[2].ID)
	s.src.Release(reading.IDs(ss))
	want(t, "Take(100, newest first)", s.take(t, 100, reading.Filter{NewestFirst: true}), ss[2].ID, ss[0].ID)
}

func testNothing(t *testing.T, s *suite) {
	for _, f := range filters() {
		if got := s.take(t, 10, f); len(got) != 0 {
			t.Fatalf("Take(10, %+v) of an empty source = %v", f, reading.IDs(got))
		}
	}
	ss := s.append(t, n(0, 1))
	if got := s.take(t, 10, reading.Filter{NotBefore: t0.Add(time.Second)}); len(got) != 0 {
		t.Fatalf("Take with a filter nothing matches = %v", reading.IDs(got))
	}
	want(t, "Take(10) after a Take that matched nothing", s.take(t, 10, reading.Filter{}), ss[0].ID)
}

// Take(0) and Take(-1) hand out nothing (the buffer's answer; "at least
// one" applies to a positive window) and put nothing in flight.
func testMaxZero(t *testing.T, s *suite) {
	ss := s.append(t, n(0, 1), n(1, 3))
	for _, max := range []int{0, -1} {
		for _, f := range []reading.Filter{{}, {NewestFirst: true}} {
			if got := s.take(t, max, f); len(got) != 0 {
				t.Fatalf("Take(%d, %+v) = %v, want nothing", max, f, reading.IDs(got))
			}
		}
	}
	want(t, "Take(100) after Take(0)", s.take(t, 100, reading.Filter{}), reading.IDs(ss)...)
}

// Oldest first is append order, not Time order: a clock correction between
// two samples does not reorder the queue.
func testOldestFirst(t *testing.T, s *suite) {
	ss := s.append(t, mk("a", t0, "x"), mk("b", t0.Add(-time.Hour), "x"), mk("c", t0.Add(time.Second), "x"))
	ss = append(ss, s.append(t, mk("d", t0.Add(-2*time.Hour), "x"))...)
	ids := reading.IDs(ss)
	want(t, "Take(2)", s.take(t, 2, reading.Filter{}), ids[0], ids[1])
	want(t, "Take(2) next", s.take(t, 2, reading.Filter{}), ids[2], ids[3])
}

func testNewestFirst(t *testing.T, s *suite) {
	ss := s.append(t, mk("a", t0, "x"), mk("b", t0.Add(-time.Hour), "x"), mk("c", t0.Add(time.Second), "x"))
	ss = append(ss, s.append(t, mk("d", t0.Add(-2*time.Hour), "x"))...)
	ids := reading.IDs(ss)
	nf := reading.Filter{NewestFirst: true}
	want(t, "Take(3, newest first)", s.take(t, 3, nf), ids[3], ids[2], ids[1])
	want(t, "Take(3, newest first) next", s.take(t, 3, nf), ids[0])
	s.src.Release(ids[1:3])
	want(t, "Take(3, newest first) after Release", s.take(t, 3, nf), ids[2], ids[1])
}

func testWindow(t *testing.T, s *suite) {
	// Values per sample: 3, 2, 1, 3.
	ss := s.append(t, n(0, 3), n(1, 2), n(2, 1), n(3, 3))
	id := reading.IDs(ss)
	nf := reading.Filter{NewestFirst: true}
	for _, c := range []struct {
		max  int
		f    reading.Filter
		want []reading.ID
		why  string
	}{
		{5, reading.Filter{}, id[:2], "3+2 fills the window exactly"},
		{4, reading.Filter{}, id[:1], "3+2 would pass 4; the 1-value sample behind it is not taken ahead"},
		{1, reading.Filter{}, id[:1], "at least one whole sample, although it has 3 values"},
		{2, reading.Filter{}, id[:1], "at least one whole sample"},
		{6, reading.Filter{}, id[:3], "3+2+1"},
		{8, reading.Filter{}, id[:3], "3+2+1+3 would pass 8"},
		{9, reading.Filter{}, id, "all 9 values"},
		{100, reading.Filter{}, id, "all"},
		{4, nf, []reading.ID{id[3], id[2]}, "newest first: 3+1"},
		{5, nf, []reading.ID{id[3], id[2]}, "newest first: 3+1+2 would pass 5"},
		{1, nf, []reading.ID{id[3]}, "newest first: at least one"},
	} {
		got := s.take(t, c.max, c.f)
		want(t, fmt.Sprintf("Take(%d, %+v) (%s)", c.max, c.f, c.why), got, c.want...)
		for _, g := range got {
			if len(g.Values) != len(ss[slices.Index(id, g.ID)].Values) {
				t.Fatalf("Take(%d) split sample %d: %d values", c.max, g.ID, len(g.Values))
			}
		}
		s.src.Release(reading.IDs(got))
	}
}

func testWindowValuesLeft(t *testing.T, s *suite) {
	ss := s.append(t, n(0, 3), n(1, 2), n(2, 1))
	id := reading.IDs(ss)
	want(t, "Take(1)", s.take(t, 1, reading.Filter{}), id[0])
	s.ack(t, reading.Ref{ID: id[0], Measurement: "m0"}, reading.Ref{ID: id[0], Measurement: "m2"})
	s.src.Release(id[:1])
	got := s.take(t, 3, reading.Filter{})
	want(t, "Take(3) with one value left in the first sample (1+2)", got, id[0], id[1])
	if m := measurements(got[0]); !slices.Equal(m, []string{"m1"}) {
		t.Fatalf("first sample came back with %v, want [m1]", m)
	}
}

func testFilter(t *testing.T, s *suite) {
	// Times: t0-2s, t0-1s, t0, t0+1s, t0+2s.
	var in []reading.Sample
	for i := -2; i <= 2; i++ {
		in = append(in, mk(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second), "x"))
	}
	id := reading.IDs(s.append(t, in...))
	for _, c := range []struct {
		f    reading.Filter
		want []reading.ID
	}{
		{reading.Filter{NotBefore: t0}, id[2:]},
		{reading.Filter{Before: t0}, id[:2]},
		{reading.Filter{NotBefore: t0.Add(-time.Second), Before: t0.Add(time.Second)}, id[1:3]},
		{reading.Filter{NotBefore: t0.Add(-time.Second), Before: t0.Add(time.Second), NewestFirst: true}, []reading.ID{id[2], id[1]}},
		{reading.Filter{NotBefore: t0.Add(-500 * time.Millisecond), NewestFirst: true}, []reading.ID{id[4], id[3], id[2]}},
		{reading.Filter{NotBefore: t0.Add(time.Hour)}, nil},
		{reading.Filter{Before: t0.Add(-time.Hour)}, nil},
		{reading.Filter{NotBefore: t0, Before: t0}, nil},
	} {
		got := s.take(t, 100, c.f)
		want(t, fmt.Sprintf("Take(100, %+v)", c.f), got, c.want...)
		s.src.Release(reading.IDs(got))
	}
	// What a filter leaves out stays available.
	got := s.take(t, 100, reading.Filter{NotBefore: t0})
	want(t, "Take(NotBefore t0)", got, id[2:]...)
	want(t, "Take(100) after", s.take(t, 100, reading.Filter{}), id[:2]...)
}

func testInFlight(t *testing.T, s *suite) {
	id := reading.IDs(s.append(t, n(0, 1), n(1, 1), n(2, 1), n(3, 1)))
	want(t, "Take(2)", s.take(t, 2, reading.Filter{}), id[0], id[1])
	want(t, "Take(1, newest first)", s.take(t, 1, reading.Filter{NewestFirst: true}), id[3])
	want(t, "Take(100)", s.take(t, 100, reading.Filter{}), id[2])
	for _, f := range filters() {
		if got := s.take(t, 100, f); len(got) != 0 {
			t.Fatalf("Take(100, %+v) with everything in flight = %v", f, reading.IDs(got))
		}
	}
	// Partly acked and partly dead-lettered, still in flight.
	ss := s.append(t, n(4, 3))
	want(t, "Take(100) of the new sample", s.take(t, 100, reading.Filter{}), ss[0].ID)
	s.ack(t, reading.Ref{ID: ss[0].ID, Measurement: "m0"})
	s.dead(t, reading.Ref{ID: ss[0].ID, Measurement: "m1"})
	if got := s.take(t, 100, reading.Filter{}); len(got) != 0 {
		t.Fatalf("a partly acked sample was handed out again while in flight: %v", reading.IDs(got))
	}
}

func testRelease(t *testing.T, s *suite) {
	id := reading.IDs(s.append(t, n(0, 1), n(1, 1), n(2, 1), n(3, 1), n(4, 1)))
	want(t, "Take(5)", s.take(t, 5, reading.Filter{}), id...)
	s.src.Release([]reading.ID{id[3], id[1]})
	want(t, "Take(100) after releasing 3 and 1", s.take(t, 100, reading.Filter{}), id[1], id[3])
	s.src.Release([]reading.ID{id[4], id[0], id[1]})
	want(t, "Take(2) after releasing 4, 0, 1", s.take(t, 2, reading.Filter{}), id[0], id[1])
	want(t, "Take(2) next", s.take(t, 2, reading.Filter{}), id[4])
}

func testReleaseOdd(t *testing.T, s *suite) {
	id := reading.IDs(s.append(t, n(0, 1), n(1, 1)))
	// Released without being taken, released twice, never appended.
	s.src.Release([]reading.ID{id[1], id[1], id[1] + 1000, 0})
	want(t, "Take(100)", s.take(t, 100, reading.Filter{}), id...)
	s.src.Release(id[:1])
	s.src.Release(id[:1])
	want(t, "Take(100) after a double Release", s.take(t, 100, reading.Filter{}), id[0])
	s.src.Release(nil)
	if got := s.take(t, 100, reading.Filter{}); len(got) != 0 {
		t.Fatalf("Release(nil) brought back %v", reading.IDs(got))
	}
}

func testAckWhole(t *testing.T, s *suite) {
	id := reading.IDs(s.append(t, n(0, 3), n(1, 2), n(2, 1)))
	want(t, "Take(100)", s.take(t, 100, reading.Filter{}), id...)
	s.ack(t, reading.Ref{ID: id[0]}, reading.Ref{ID: id[2]})
	s.src.Release(id)
	want(t, "Take(100) after acking 0 and 2", s.take(t, 100, reading.Filter{}), id[1])
	s.ack(t, reading.Refs([]reading.Sample{{ID: id[1]}})...)
	s.src.Release(id)
	for _, f := range filters() {
		if got := s.take(t, 100, f); len(got) != 0 {
			t.Fatalf("Take(100, %+v) after acking everything = %v", f, reading.IDs(got))
		}
	}
}

func testAckValue(t *testing.T, s *suite) {
	ss := s.append(t, mk("air", t0, "temperature", "humidity", "pressure"), mk("air", t0.Add(time.Second), "temperature"))
	id := reading.IDs(ss)
	want(t, "Take(100)", s.take(t, 100, reading.Filter{}), id...)
	s.ack(t, reading.Ref{ID: id[0], Measurement: "humidity"})
	if got := s.take(t, 100, reading.Filter{}); len(got) != 0 {
		t.Fatalf("Take after a value ack, before Release = %v", reading.IDs(got))
	}
	s.src.Release(id)
	got := s.take(t, 100, reading.Filter{})
	want(t, "Take(100) after Release", got, id...)
	if !slices.Equal(got[0].Values, []reading.Value{ss[0].Values[0], ss[0].Values[2]}) {
		t.Fatalf("after acking humidity: %+v, want temperature and pressure as appended", got[0].Values)
	}
	if !slices.Equal(got[1].Values, ss[1].Values) {
		t.Fatalf("the other sample changed: %+v", got[1].Values)
	}
	// A whole-sample ref takes what is left.
	s.ack(t, reading.Ref{ID: id[0]})
	s.src.Release(id)
	want(t, "Take(100) after acking the rest", s.take(t, 100, reading.Filter{}), id[1])
}

func testDeadLetterValue(t *testing.T, s *suite) {
	ss := s.append(t, mk("air", t0, "temperature", "humidity", "pressure"), mk("soil", t0, "moisture", "temperature"))
	id := reading.IDs(ss)
	want(t, "Take(100)", s.take(t, 100, reading.Filter{}), id...)
	s.dead(t, reading.Ref{ID: id[0], Measurement: "pressure"}, reading.Ref{ID: id[1], Measurement: "moisture"})
	if got := s.take(t, 100, reading.Filter{}); len(got) != 0 {
		t.Fatalf("Take after a value dead letter, before Release = %v", reading.IDs(got))
	}
	s.src.Release(id)
	got := s.take(t, 100, reading.Filter{})
	want(t, "Take(100) after Release", got, id...)
	if m := measurements(got[0]); !slices.Equal(m, []string{"temperature", "humidity"}) {
		t.Fatalf("sample 0 after dead-lettering pressure: %v", m)
	}
	if m := measurements(got[1]); !slices.Equal(m, []string{"temperature"}) {
		t.Fatalf("sample 1 after dead-lettering moisture: %v", m)
	}
	s.dead(t, reading.Ref{ID: id[1]})
	s.src.Release(id)
	got = s.take(t, 100, reading.Filter{})
	want(t, "Take(100) after dead-lettering sample 1", got, id[0])
	if m := measurements(got[0]); !slices.Equal(m, []string{"temperature", "humidity"}) {
		t.Fatalf("sample 0 changed: %v", m)
	}
}

func testLeaves(t *testing.T, s *suite) {
	id := reading.IDs(s.append(t, n(0, 3), n(1, 1)))
	want(t, "Take(1)", s.take(t, 1, reading.Filter{}), id[0])
	s.ack(t, reading.Ref{ID: id[0], Measurement: "m1"})
	s.dead(t, reading.Ref{ID: id[0], Measurement: "m0"})
	s.ack(t, reading.Ref{ID: id[0], Measurement: "m2"})
	// No Release: a sample with no values left is gone, not in flight.
	want(t, "Take(1) after the first sample's last value was acked", s.take(t, 1, reading.Filter{}), id[1])
	s.src.Release(id)
	want(t, "Take(100) after Release", s.take(t, 100, reading.Filter{}), id[1])
}

// The buffer ignores refs it cannot apply, without an error: an ack that
// arrives twice (a duplicate platform answer) or for a sample that left
// must not fail the uplink.
func testAckOdd(t *testing.T, s *suite) {
	ss := s.append(t, mk("air", t0, "temperature", "humidity"), mk("air", t0.Add(time.Second), "temperature", "humidity"))
	id := reading.IDs(ss)
	want(t, "Take(100)", s.take(t, 100, reading.Filter{}), id...)
	unknown := id[1] + 1000
	s.ack(t, reading.Ref{ID: unknown}, reading.Ref{ID: unknown, Measurement: "temperature"}, reading.Ref{ID: 0},
		reading.Ref{ID: id[0], Measurement: "co2"}, reading.Ref{ID: id[0], Measurement: "humidity"})
	s.ack(t, reading.Ref{ID: id[0], Measurement: "humidity"}) // duplicate
	s.dead(t, reading.Ref{ID: unknown}, reading.Ref{ID: id[0], Measurement: "co2"}, reading.Ref{ID: id[0], Measurement: "humidity"})
	s.ack(t) // an empty ack
	s.dead(t)
	s.src.Release(id)
	got := s.take(t, 100, reading.Filter{})
	want(t, "Take(100) after unknown and duplicate refs", got, id...)
	if !slices.Equal(got[0].Values, ss[0].Values[:1]) || !slices.Equal(got[1].Values, ss[1].Values) {
		t.Fatalf("values after unknown and duplicate refs: %+v, %+v", got[0].Values, got[1].Values)
	}
	// A sample that left: acked and dead-lettered again, whole and by value.
	s.ack(t, reading.Ref{ID: id[0]})
	s.ack(t, reading.Ref{ID: id[0]}, reading.Ref{ID: id[0], Measurement: "temperature"})
	s.dead(t, reading.Ref{ID: id[0]})
	s.src.Release(id)
	want(t, "Take(100) after acking a sample that left", s.take(t, 100, reading.Filter{}), id[1])
}

// An answer may come after the uplink gave up and released the sample, or
// name a sample it never took: the values still leave (a value leaves only
// by Ack or DeadLetter, and an acked value must not be sent again).
func testAckNotInFlight(t *testing.T, s *suite) {
	id := reading.IDs(s.append(t, n(0, 2), n(1, 2), n(2, 2), n(3, 2)))
	want(t, "Take(1)", s.take(t, 1, reading.Filter{}), id[0])
	s.src.Release(id[:1])
	s.ack(t, reading.Ref{ID: id[0], Measurement: "m0"})  // after Release
	s.ack(t, reading.Ref{ID: id[1]})                     // never taken
	s.dead(t, reading.Ref{ID: id[2], Measurement: "m1"}) // never taken
	got := s.take(t, 100, reading.Filter{})
	want(t, "Take(100)", got, id[0], id[2], id[3])
	if m := measurements(got[0]); !slices.Equal(m, []string{"m1"}) {
		t.Fatalf("sample acked after Release came back with %v, want [m1]", m)
	}
	if m := measurements(got[1]); !slices.Equal(m, []string{"m0"}) {
		t.Fatalf("sample dead-lettered before Take came back with %v, want [m0]", m)
	}
}

const notifyWait = 5 * time.Second

func drain(ch <-chan struct{}) int {
	k := 0
	for range 1000 {
		select {
		case <-ch:
			k++
		default:
			return k
		}
	}
	return k
}

func testNotify(t *testing.T, s *suite) {
	ch := s.src.Notify()
	if ch == nil {
		t.Fatal("Notify returned a nil channel")
	}
	drain(ch)
	for round := range 3 {
		s.append(t, n(round, 1))
		select {
		case <-ch:
		case <-time.After(notifyWait):
			t.Fatalf("round %d: no Notify within %v of Append", round, notifyWait)
		}
		// Take, Ack and Release are not appends; whether they notify is
		// not promised, so only the next Append is checked.
		got := s.take(t, 100, reading.Filter{})
		s.ack(t, reading.Refs(got)...)
		drain(ch)
	}
}

func testNotifyCoalesce(t *testing.T, s *suite) {
	ch := s.src.Notify()
	drain(ch)
	const appends = 50
	done := make(chan error, 1)
	go func() {
		for i := range appends {
			if err := s.h.Append([]reading.Sample{n(i, 1)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%d appends with nobody reading Notify did not finish within 10s: Append blocks on Notify", appends)
	}
	select {
	case <-ch:
	case <-time.After(notifyWait):
		t.Fatalf("no Notify within %v of %d appends", notifyWait, appends)
	}
	if k := 1 + drain(ch); k >= appends {
		t.Fatalf("%d notifications for %d appends nobody read: not coalesced", k, appends)
	}
	if got := s.take(t, 1000, reading.Filter{}); len(got) != appends {
		t.Fatalf("Take(1000) after %d appends: %d samples", appends, len(got))
	}
}

func testCopies(t *testing.T, s *suite) {
	in := mk("air", t0, "temperature", "humidity")
	orig := slices.Clone(in.Values)
	ss := s.append(t, in)
	// The caller's slice is the caller's: changing it after Append changes
	// nothing stored.
	ss[0].Values[0].Value, ss[0].Values[1].Measurement = -1, "changed"
	got := s.take(t, 100, reading.Filter{})
	want(t, "Take(100)", got, ss[0].ID)
	if !slices.Equal(got[0].Values, orig) {
		t.Fatalf("changing the appended slice changed the stored sample: %+v", got[0].Values)
	}
	got[0].Values[0].Value, got[0].Values[0].Measurement, got[0].Sensor = 999, "changed", "changed"
	s.src.Release([]reading.ID{ss[0].ID})
	again := s.take(t, 100, reading.Filter{})
	want(t, "Take(100) after Release", again, ss[0].ID)
	if again[0].Sensor != "air" || !slices.Equal(again[0].Values, orig) {
		t.Fatalf("changing a taken sample changed the stored one: %+v", again[0])
	}
}

// Concurrent Takes never hand out the same sample twice, and a drain by
// Take and Ack hands out every value once.
func testConcurrent(t *testing.T, s *suite) {
	const samples, workers = 60, 4
	var in []reading.Sample
	for i := range samples {
		in = append(in, n(i, 1+i%3))
	}
	id := reading.IDs(s.append(t, in...))
	var mu sync.Mutex
	seen := map[reading.ID]int{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := reading.Filter{NewestFirst: w%2 == 1}
			for range 2 * samples {
				got, err := s.src.Take(4, f)
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, g := range got {
					seen[g.ID]++
				}
				mu.Unlock()
				if err := s.src.Ack(reading.Refs(got)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, x := range id {
		if seen[x] != 1 {
			t.Errorf("sample %d handed out %d times", x, seen[x])
		}
	}
	if len(seen) != samples {
		t.Errorf("%d distinct samples handed out, appended %d", len(seen), samples)
	}
	if got := s.take(t, 100, reading.Filter{}); len(got) != 0 {
		t.Fatalf("after the drain: %v", reading.IDs(got))
	}
}
