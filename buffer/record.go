package buffer

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"time"

	"gatewayd/internal/reading"
)

// Record formats. Every stored value starts with a version byte so a later
// release can still read files written by this one: when the layout changes,
// add a new version constant and decoder, and keep the old decoder.
//
// Version 2, one record per sample (readings bucket, key = 8-byte big-endian
// sample ID); names are indices into the file's dictionary (dict.go):
//
//	[1] version = 2
//	uvarint  sensor<<2 | wide<<1 | synced
//	uvarint  boot (dictionary index)
//	varint   Mono in nanoseconds
//	wide=0:  varint Time as Unix ns minus Mono minus the boot's base: the
//	         clock's drift since the boot was first seen, ~0 when steady
//	wide=1:  varint Unix seconds, uvarint nanoseconds (times outside 1679-2261)
//	then, until the end, one entry per value:
//	uvarint  schema<<1 | raw   (schema: dictionary index)
//	raw=0:   varint the value in steps of the schema's resolution
//	raw=1:   [8] the value, IEEE 754 bits, big endian (resolution 0, NaN, Inf,
//	         or too large to scale)
//
// A BME280 sample (three values at 0.01) takes about 26 bytes; bbolt adds
// its 16-byte element header and the 8-byte key.
//
// Version 1 (today's release before samples; read, never written), one
// value per record, read as a sample of one value:
//
//	[1] version = 1
//	uvarint  ID (repeated from the key so an exported record stands alone)
//	varint   Time: Unix seconds
//	uvarint  Time: nanoseconds within the second (< 1e9)
//	varint   Mono in nanoseconds
//	[1] flags: bit 0 = Synced; other bits must be zero
//	[8] Value, IEEE 754 bits, big endian
//	5 x (uvarint length, bytes): Sensor, Measurement, Property, Unit, BootID
//
// Dead letters (dead bucket, key = 8-byte ID, plus a uvarint sequence number
// when the same sample has more than one) wrap a sample record:
//
//	[1] version: 2 wraps a version 2 record, 1 a version 1 record
//	varint   dead-lettered at, Unix microseconds
//	uvarint  reason length, reason bytes
//	rest     the sample record (only the values dead-lettered)
const (
	recordV1 = 1
	recordV2 = 2
	deadV1   = 1
	deadV2   = 2

	// maxField bounds every string field: samples carry short names, and
	// a decoder that trusts a length prefix from a damaged file must not
	// allocate gigabytes.
	maxField = 4096
	// maxValues is the most values one sample may have (the ledger keeps
	// a bit per value).
	maxValues = 64
)

// Record is one stored record decoded: a sample with the values the record
// holds, and for a dead letter why and when it was set aside.
type Record struct {
	reading.Sample
	Dead   bool
	Reason string
	DeadAt time.Time
}

// DecodeRecord decodes one record of a buffer file as stored, of any version:
// bucket is "readings" or "dead", key and value as bbolt holds them, d the
// file's dictionary (loaded from its "dict" bucket; only version 2 needs it,
// nil is fine for version 1). It never panics; the result shares no memory
// with key or value.
func DecodeRecord(bucket string, key, value []byte, d *Dict) (Record, error) {
	if len(key) < 8 {
		return Record{}, fmt.Errorf("%w: key %x", ErrBadRecord, key)
	}
	id := reading.ID(binary.BigEndian.Uint64(key))
	if d == nil {
		d = NewDict()
	}
	switch bucket {
	case string(bucketReadings):
		s, err := decodeSample(id, value, d)
		return Record{Sample: s}, err
	case string(bucketDead):
		r, err := decodeDead(id, value, d)
		return r, err
	}
	return Record{}, fmt.Errorf("%w: unknown bucket %q", ErrBadRecord, bucket)
}

// quantize returns v in steps of res, when it can be stored that way.
func quantize(v, res float64) (int64, bool) {
	if !(res > 0) || math.IsNaN(v) || math.IsInf(v, 0) || math.IsInf(res, 0) {
		return 0, false
	}
	q := math.Round(v / res)
	if math.Abs(q) > 1<<53 {
		return 0, false
	}
	return int64(q), true
}

// dequantize is the value q steps of res stand for, as the nearest float64
// to the decimal (100925 steps of 0.01 are 1009.25, not 1009.2500000000001).
func dequantize(q int64, res float64) float64 {
	if d := reading.Digits(res); d > 0 {
		p := math.Pow10(d)
		if k := math.Round(res * p); k != 0 && math.Abs(res*p-k) < 1e-6 {
			if prod := float64(q) * k; math.Abs(prod) < 1<<53 {
				return prod / p
			}
		}
	}
	return float64(q) * res
}

// normalize returns v as the buffer stores it: at res.
func normalize(v, res float64) float64 {
	if q, ok := quantize(v, res); ok {
		return dequantize(q, res)
	}
	return v
}

// encodeSample returns the version 2 record of the values of s selected by
// mask, interning names in d.
func encodeSample(s *reading.Sample, mask uint64, d *Dict) []byte {
	b := make([]byte, 0, 16+12*bits.OnesCount64(mask))
	b = append(b, recordV2)
	head := uint64(d.sensor(s.Sensor)) << 2
	if s.Synced {
		head |= 1
	}
	bi := d.boot(&s.Stamp)
	ns, ok := unixNano(s.Time)
	if !ok {
		head |= 2
	}
	b = binary.AppendUvarint(b, head)
	b = binary.AppendUvarint(b, uint64(bi))
	b = binary.AppendVarint(b, int64(s.Mono))
	if ok {
		b = binary.AppendVarint(b, ns-int64(s.Mono)-d.ents[bi-1].base)
	} else {
		b = binary.AppendVarint(b, s.Time.Unix())
		b = binary.AppendUvarint(b, uint64(s.Time.Nanosecond()))
	}
	for i := range s.Values {
		if mask&(1<<i) == 0 {
			continue
		}
		v := &s.Values[i]
		tag := uint64(d.schema(v)) << 1
		if q, ok := quantize(v.Value, v.Resolution); ok {
			b = binary.AppendUvarint(b, tag)
			b = binary.AppendVarint(b, q)
		} else {
			b = binary.AppendUvarint(b, tag|1)
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(v.Value))
		}
	}
	return b
}

// decodeSample decodes a stored sample of any known version. It never
// panics and never allocates more than the input's size for strings; the
// strings it returns are copies (bbolt values are only valid inside their
// transaction).
func decodeSample(id reading.ID, b []byte, d *Dict) (reading.Sample, error) {
	if len(b) == 0 {
		return reading.Sample{}, fmt.Errorf("%w: empty record", ErrBadRecord)
	}
	switch b[0] {
	case recordV1:
		s, err := decodeV1(b[1:])
		if err == nil && s.ID != id {
			// The key is the ID; a v1 record repeats it.
			s.ID = id
		}
		return s, err
	case recordV2:
		return decodeV2(id, b[1:], d)
	default:
		return reading.Sample{}, fmt.Errorf("%w: unknown record version %d", ErrBadRecord, b[0])
	}
}

func decodeV2(id reading.ID, b []byte, dict *Dict) (reading.Sample, error) {
	d := decoder{b: b}
	s := reading.Sample{ID: id}
	head := d.uvarint("head")
	bi := d.uvarint("boot")
	mono := d.varint("mono")
	if d.err != nil {
		return reading.Sample{}, d.err
	}
	se, err := dict.get(head>>2, kindSensor)
	if err != nil {
		return reading.Sample{}, err
	}
	be, err := dict.get(bi, kindBoot)
	if err != nil {
		return reading.Sample{}, err
	}
	s.Sensor, s.BootID, s.Mono, s.Synced = se.name, be.name, time.Duration(mono), head&1 != 0
	if head&2 == 0 {
		off := d.varint("time")
		ns := off + mono + be.base
		s.Time = time.Unix(0, ns).UTC()
	} else {
		sec := d.varint("time")
		nsec := d.uvarint("time")
		const minSec, maxSec = -62135596800, 1 << 40
		if d.err == nil && (nsec >= 1e9 || sec < minSec || sec > maxSec) {
			d.fail("time")
		}
		s.Time = time.Unix(sec, int64(nsec)).UTC()
	}
	for d.err == nil && len(d.b) > 0 {
		tag := d.uvarint("value tag")
		if d.err != nil {
			break
		}
		me, err := dict.get(tag>>1, kindSchema)
		if err != nil {
			return reading.Sample{}, err
		}
		v := reading.Value{Measurement: me.meas, Property: me.prop, Unit: me.unit, Resolution: me.res}
		if tag&1 == 0 {
			v.Value = dequantize(d.varint("value"), me.res)
		} else if raw := d.bytes(8, "value"); d.err == nil {
			v.Value = math.Float64frombits(binary.BigEndian.Uint64(raw))
			// The encoder writes a raw float only for a value it cannot
			// store at its resolution; one it could is not a record of ours.
			if _, ok := quantize(v.Value, me.res); ok {
				d.fail("raw value that fits its resolution")
			}
		}
		if len(s.Values) >= maxValues {
			d.fail("value count")
		}
		for _, o := range s.Values {
			if o.Measurement == v.Measurement {
				d.fail("duplicate measurement")
			}
		}
		s.Values = append(s.Values, v)
	}
	if d.err == nil && len(s.Values) == 0 {
		d.fail("values")
	}
	if d.err != nil {
		return reading.Sample{}, d.err
	}
	return s, nil
}

// countValues returns how many values a stored record holds without the
// dictionary (Inspect's lock-free walk); -1 when it does not parse.
func countValues(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	switch b[0] {
	case recordV1:
		return 1
	case recordV2:
	default:
		return -1
	}
	d := decoder{b: b[1:]}
	head := d.uvarint("head")
	d.uvarint("boot")
	d.varint("mono")
	if head&2 == 0 {
		d.varint("time")
	} else {
		d.varint("time")
		d.uvarint("time")
	}
	n := 0
	for d.err == nil && len(d.b) > 0 {
		if d.uvarint("tag")&1 == 0 {
			d.varint("value")
		} else {
			d.bytes(8, "value")
		}
		n++
	}
	if d.err != nil {
		return -1
	}
	return n
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or invalid %s", ErrBadRecord, what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.fail(what)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(what string) string {
	n := d.uvarint(what)
	if d.err != nil {
		return ""
	}
	if n > maxField {
		d.fail(what)
		return ""
	}
	return string(d.bytes(int(n), what))
}

// decodeV1 decodes a version 1 record (one value) as a sample of one value.
func decodeV1(b []byte) (reading.Sample, error) {
	d := decoder{b: b}
	var s reading.Sample
	s.ID = reading.ID(d.uvarint("id"))
	sec := d.varint("time")
	nsec := d.uvarint("time")
	if d.err == nil && nsec >= 1e9 {
		d.fail("time")
	}
	// Unix seconds outside what time.Time can hold would wrap silently.
	const minSec, maxSec = -62135596800, 1 << 40
	if d.err == nil && (sec < minSec || sec > maxSec) {
		d.fail("time")
	}
	mono := d.varint("mono")
	fl := d.bytes(1, "flags")
	if d.err == nil && fl[0]&^1 != 0 {
		d.fail("flags")
	}
	v := d.bytes(8, "value")
	var val reading.Value
	s.Sensor = d.str("sensor")
	val.Measurement = d.str("measurement")
	val.Property = d.str("property")
	val.Unit = d.str("unit")
	s.BootID = d.str("boot id")
	if d.err != nil {
		return reading.Sample{}, d.err
	}
	if len(d.b) != 0 {
		return reading.Sample{}, fmt.Errorf("%w: %d trailing bytes", ErrBadRecord, len(d.b))
	}
	s.Time = time.Unix(sec, int64(nsec)).UTC()
	s.Mono = time.Duration(mono)
	s.Synced = fl[0]&1 != 0
	val.Value = math.Float64frombits(binary.BigEndian.Uint64(v))
	s.Values = []reading.Value{val}
	return s, nil
}

// encodeV1 is the version 1 encoding of a one-value sample; only tests use
// it (to pin the format the upgrade path reads).
func encodeV1(s *reading.Sample) []byte {
	v := s.Values[0]
	b := []byte{recordV1}
	b = binary.AppendUvarint(b, uint64(s.ID))
	b = binary.AppendVarint(b, s.Time.Unix())
	b = binary.AppendUvarint(b, uint64(s.Time.Nanosecond()))
	b = binary.AppendVarint(b, int64(s.Mono))
	var flags byte
	if s.Synced {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(v.Value))
	for _, f := range [...]string{s.Sensor, v.Measurement, v.Property, v.Unit, s.BootID} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// encodeDead wraps a sample record as a dead letter.
func encodeDead(rec []byte, reason string, at time.Time) []byte {
	ver := byte(deadV2)
	if len(rec) > 0 && rec[0] == recordV1 {
		ver = deadV1
	}
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(reason)+len(rec))
	b = append(b, ver)
	b = binary.AppendVarint(b, at.UnixMicro())
	b = appendStr(b, reason)
	return append(b, rec...)
}

// decodeDead decodes a stored dead letter of any known version.
func decodeDead(id reading.ID, b []byte, dict *Dict) (Record, error) {
	if len(b) == 0 {
		return Record{}, fmt.Errorf("%w: empty dead letter", ErrBadRecord)
	}
	want := byte(recordV1)
	switch b[0] {
	case deadV1:
	case deadV2:
		want = recordV2
	default:
		return Record{}, fmt.Errorf("%w: unknown dead letter version %d", ErrBadRecord, b[0])
	}
	d := decoder{b: b[1:]}
	at := d.varint("dead time")
	reason := d.str("reason")
	if d.err != nil {
		return Record{}, d.err
	}
	if len(d.b) == 0 || d.b[0] != want {
		return Record{}, fmt.Errorf("%w: dead letter wraps the wrong record version", ErrBadRecord)
	}
	s, err := decodeSample(id, d.b, dict)
	if err != nil {
		return Record{}, err
	}
	return Record{Sample: s, Dead: true, Reason: reason, DeadAt: time.UnixMicro(at).UTC()}, nil
}

func idKey(id reading.ID) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(id))
}

// keyID returns the sample ID of a readings or dead key (8 bytes, or 8 and
// a dead letter's sequence number).
func keyID(k []byte) (reading.ID, bool) {
	if len(k) < 8 || len(k) > 8+binary.MaxVarintLen64 {
		return 0, false
	}
	return reading.ID(binary.BigEndian.Uint64(k)), true
}
