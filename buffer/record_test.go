package buffer

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

func TestRecordRoundTrip(t *testing.T) {
	cases := mkReadings(0, 4)
	cases = append(cases,
		reading.Reading{}, // zero time, empty strings
		reading.Reading{ID: math.MaxUint64, Value: math.NaN(), Time: time.Unix(-1, 5).UTC(), Mono: -1},
		reading.Reading{ID: 1, Value: math.Inf(-1), Unit: "µg/m³", Time: time.Date(2300, 1, 1, 0, 0, 0, 999999999, time.UTC)},
	)
	for _, r := range cases {
		got, err := decodeRecord(encodeRecord(&r))
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", r, err)
		}
		if !sameReading(got, r) && !(math.IsNaN(r.Value) && math.IsNaN(got.Value)) {
			t.Fatalf("round trip: got %+v, want %+v", got, r)
		}
		d, err := decodeDead(encodeDead(encodeRecord(&r), "why", baseTime))
		if err != nil || d.Reason != "why" || !d.At.Equal(baseTime) || d.Reading.ID != r.ID {
			t.Fatalf("dead round trip: %+v %v", d, err)
		}
	}
}

// TestRecordV1Golden pins version 1's bytes: files written by this release
// must stay readable by every later one.
func TestRecordV1Golden(t *testing.T) {
	r := reading.Reading{ID: 300, Sensor: "a", Measurement: "t", Property: "p", Value: 1.5, Unit: "C",
		Time: time.Unix(2, 3).UTC(), Mono: 4, BootID: "b", Synced: true}
	want := []byte{1, 0xac, 0x02, 0x04, 0x03, 0x08, 1, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,
		1, 'a', 1, 't', 1, 'p', 1, 'C', 1, 'b'}
	if got := encodeRecord(&r); !bytes.Equal(got, want) {
		t.Fatalf("v1 encoding changed:\n got %x\nwant %x", got, want)
	}
	got, err := decodeRecord(want)
	if err != nil || !sameReading(got, r) {
		t.Fatalf("v1 decode: %+v %v", got, err)
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	good := encodeRecord(&reading.Reading{ID: 1, Sensor: "s", Time: baseTime})
	for name, b := range map[string][]byte{
		"empty":     nil,
		"version":   append([]byte{99}, good[1:]...),
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte(nil), good...), 0),
		"flags":     {1, 1, 0, 0, 0, 0xfe},
		"huge len":  append(append([]byte(nil), good[:15]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"nanos":     {1, 1, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03},
	} {
		if _, err := decodeRecord(b); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: err %v, want ErrBadRecord", name, err)
		}
	}
}

// FuzzDecode feeds garbage to both stored-record decoders: they must never
// panic, and whatever decodes must re-encode to a record that decodes the
// same way.
func FuzzDecode(f *testing.F) {
	for _, r := range mkReadings(0, 3) {
		enc := encodeRecord(&r)
		f.Add(enc)
		f.Add(encodeDead(enc, "reason", baseTime))
		f.Add(enc[:len(enc)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeRecord(b); err == nil {
			again, err := decodeRecord(encodeRecord(&r))
			if err != nil {
				t.Fatalf("re-decode: %v", err)
			}
			if !sameReading(again, r) && !(math.IsNaN(r.Value) && math.IsNaN(again.Value)) {
				t.Fatalf("re-decode differs: %+v vs %+v", again, r)
			}
		} else if !errors.Is(err, ErrBadRecord) {
			t.Fatalf("error not ErrBadRecord: %v", err)
		}
		if d, err := decodeDead(b); err == nil {
			if _, err := decodeRecord(encodeRecord(&d.Reading)); err != nil {
				t.Fatalf("dead re-decode: %v", err)
			}
		}
	})
}
