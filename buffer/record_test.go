package buffer

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

// roundTrip encodes s as version 2 and decodes it with the same dictionary.
func roundTrip(t *testing.T, d *Dict, s reading.Sample) reading.Sample {
	t.Helper()
	got, err := decodeSample(s.ID, encodeSample(&s, allBits(len(s.Values)), d), d)
	if err != nil {
		t.Fatalf("decode(encode(%+v)): %v", s, err)
	}
	return got
}

func TestRecordRoundTrip(t *testing.T) {
	d := NewDict()
	cases := append(mkReadings(0, 4), mkBME("air", 0, 3)...)
	cases = append(cases,
		reading.Sample{ID: 3, Values: []reading.Value{{}}}, // zero time, empty strings
		reading.Sample{ID: math.MaxUint64, Stamp: reading.Stamp{Time: time.Unix(-1, 5).UTC(), Mono: -1},
			Values: []reading.Value{{Value: math.NaN(), Resolution: 0.01}, {Measurement: "x", Value: math.Inf(1), Resolution: 0.1}}},
		reading.Sample{ID: 1, Stamp: reading.Stamp{Time: time.Date(2300, 1, 1, 0, 0, 0, 999999999, time.UTC)},
			Values: []reading.Value{{Value: math.Inf(-1), Unit: "µg/m³"}, {Measurement: "big", Value: 1e300, Resolution: 0.01}}},
	)
	for _, s := range cases {
		for i := range s.Values {
			s.Values[i].Value = normalize(s.Values[i].Value, s.Values[i].Resolution)
		}
		if got := roundTrip(t, d, s); !sameReading(got, s) {
			t.Fatalf("round trip: got %+v, want %+v", got, s)
		}
		rec := encodeSample(&s, allBits(len(s.Values)), d)
		r, err := decodeDead(s.ID, encodeDead(rec, "why", baseTime), d)
		if err != nil || r.Reason != "why" || !r.DeadAt.Equal(baseTime) || !sameReading(r.Sample, s) {
			t.Fatalf("dead round trip: %+v %v", r, err)
		}
	}
}

// TestValuesAtResolution: values are stored in steps of their resolution and
// come back as the nearest float64 to the decimal, not with binary noise.
func TestValuesAtResolution(t *testing.T) {
	d := NewDict()
	s := reading.Sample{ID: 7, Sensor: "air", Values: []reading.Value{
		{Measurement: "pressure", Resolution: 0.01, Value: 1009.2492578125},
		{Measurement: "temperature", Resolution: 0.01, Value: -3.14159},
		{Measurement: "co2", Resolution: 1, Value: 415.4},
		{Measurement: "raw", Value: 0.1 + 0.2},
	}}
	got := roundTrip(t, d, s)
	for i, want := range []float64{1009.25, -3.14, 415, 0.1 + 0.2} {
		if got.Values[i].Value != want {
			t.Fatalf("%s: stored %v, want %v", s.Values[i].Measurement, got.Values[i].Value, want)
		}
	}
}

// TestRecordV2Golden pins version 2's bytes: files written by this release
// must stay readable by every later one.
func TestRecordV2Golden(t *testing.T) {
	d := NewDict()
	s := reading.Sample{ID: 300, Sensor: "a", Stamp: reading.Stamp{Time: time.Unix(2, 3).UTC(), Mono: 4, BootID: "b", Synced: true},
		Values: []reading.Value{{Measurement: "t", Property: "p", Unit: "C", Value: 1.5, Resolution: 0.5}, {Measurement: "u", Value: 2}}}
	// sensor 1, boot 2 (base 2e9+3-4), schemas 3 and 4.
	want := []byte{2, 0x05, 0x02, 0x08, 0x00, 0x06, 0x06, 0x09, 0x40, 0, 0, 0, 0, 0, 0, 0}
	if got := encodeSample(&s, 3, d); !bytes.Equal(got, want) {
		t.Fatalf("v2 encoding changed:\n got %x\nwant %x", got, want)
	}
	wantDict := [][]byte{{1, 's', 1, 'a'}, {1, 'b', 1, 'b', 0xfe, 0xcf, 0xac, 0xf3, 0x0e},
		{1, 'm', 1, 't', 1, 'p', 1, 'C', 0x3f, 0xe0, 0, 0, 0, 0, 0, 0}, {1, 'm', 1, 'u', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}
	for i, w := range wantDict {
		if got := encodeDictEnt(&d.ents[i]); !bytes.Equal(got, w) {
			t.Fatalf("dict entry %d changed:\n got %x\nwant %x", i+1, got, w)
		}
	}
	d2 := NewDict()
	for i, w := range wantDict {
		if err := d2.Load(dictKey(uint32(i+1)), w); err != nil {
			t.Fatal(err)
		}
	}
	got, err := decodeSample(300, want, d2)
	if err != nil || !sameReading(got, s) {
		t.Fatalf("v2 decode: %+v %v", got, err)
	}
}

// TestRecordV1Golden pins version 1's bytes, as the release before samples
// wrote them: they are read as a sample of one value.
func TestRecordV1Golden(t *testing.T) {
	s := reading.Sample{ID: 300, Sensor: "a", Stamp: reading.Stamp{Time: time.Unix(2, 3).UTC(), Mono: 4, BootID: "b", Synced: true},
		Values: []reading.Value{{Measurement: "t", Property: "p", Value: 1.5, Unit: "C"}}}
	want := []byte{1, 0xac, 0x02, 0x04, 0x03, 0x08, 1, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,
		1, 'a', 1, 't', 1, 'p', 1, 'C', 1, 'b'}
	if got := encodeV1(&s); !bytes.Equal(got, want) {
		t.Fatalf("v1 encoding changed:\n got %x\nwant %x", got, want)
	}
	r, err := DecodeRecord("readings", idKey(300), want, nil)
	if err != nil || !sameReading(r.Sample, s) {
		t.Fatalf("v1 decode: %+v %v", r, err)
	}
	r, err = DecodeRecord("dead", idKey(300), encodeDead(want, "why", baseTime), nil)
	if err != nil || !r.Dead || r.Reason != "why" || !sameReading(r.Sample, s) {
		t.Fatalf("v1 dead decode: %+v %v", r, err)
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	v1 := mkReadings(0, 1)[0]
	good := encodeV1(&v1)
	d := NewDict()
	smp := mkBME("air", 0, 1)[0]
	good2 := encodeSample(&smp, 7, d)
	for name, b := range map[string][]byte{
		"empty":        nil,
		"version":      append([]byte{99}, good[1:]...),
		"truncated":    good[:len(good)-1],
		"trailing":     append(append([]byte(nil), good...), 0),
		"flags":        {1, 1, 0, 0, 0, 0xfe},
		"huge len":     append(append([]byte(nil), good[:15]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"nanos":        {1, 1, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03},
		"v2 truncated": good2[:len(good2)-1],
		"v2 no values": good2[:5],
		"v2 no dict":   {2, 0x7c, 0x01, 0, 0, 0x02, 0},
		"v2 dup value": append(append([]byte(nil), good2...), good2[5:7]...),
	} {
		if _, err := decodeSample(1, b, d); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: err %v, want ErrBadRecord", name, err)
		}
	}
}

// FuzzDecode feeds garbage to the stored-record decoders: they must never
// panic, and whatever decodes must re-encode to a record that decodes the
// same way.
func FuzzDecode(f *testing.F) {
	d := NewDict()
	for _, s := range append(mkReadings(0, 2), mkBME("air", 0, 2)...) {
		enc := encodeSample(&s, allBits(len(s.Values)), d)
		f.Add(enc)
		f.Add(encodeDead(enc, "reason", baseTime))
		f.Add(enc[:len(enc)/2])
		f.Add(encodeV1(&mkReadings(0, 1)[0]))
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		dd := d.snapshot()
		dd.byKey = map[string]uint32{}
		for i := range dd.ents {
			dd.byKey[dd.ents[i].key()] = uint32(i + 1)
		}
		if s, err := decodeSample(1, b, dd); err == nil {
			again := roundTrip(t, dd, s)
			if !sameReading(again, s) {
				t.Fatalf("re-decode differs: %+v vs %+v", again, s)
			}
		} else if !errors.Is(err, ErrBadRecord) {
			t.Fatalf("error not ErrBadRecord: %v", err)
		}
		if r, err := decodeDead(1, b, dd); err == nil && len(r.Values) > 0 {
			_ = roundTrip(t, dd, r.Sample)
		}
		_ = countValues(b)
	})
}
