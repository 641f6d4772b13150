package buffer

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"gatewayd/internal/reading"
)

// The dictionary interns the names a sample record would otherwise repeat:
// sensor names, boot ids and measurement schemas (measurement, property,
// unit, resolution). It lives in the file's "dict" bucket, one entry per
// key, and grows only (a few entries per sensor, one per boot). Entries not
// yet in the bbolt file travel in the journal ('N' sub-records) with the
// first window that needs them.
//
// Entry (dict bucket, key = 4-byte big-endian index, from 1):
//
//	[1] version = 1
//	[1] kind: 's' sensor | 'b' boot | 'm' measurement schema
//	's': str name
//	'b': str boot id, varint base (Unix ns of the boot's first sample minus
//	     its Mono: the wall clock at boot as first seen)
//	'm': str measurement, str property, str unit, [8] resolution (float64 bits, big endian)
//
// where str is a uvarint length and the bytes.
const (
	dictV1     = 1
	kindSensor = 's'
	kindBoot   = 'b'
	kindSchema = 'm'
	// maxDict bounds the dictionary a damaged file can make us hold.
	maxDict = 1 << 20
)

type dictEnt struct {
	kind             byte
	name             string // sensor name or boot id
	base             int64  // boot
	meas, prop, unit string // schema
	res              float64
	// Where the entry is durable; see ledger.go.
	filed     bool // in the bbolt file
	journaled bool // in the current journal epoch
}

// Dict is a buffer file's dictionary of interned names. Build one with
// NewDict and Load for DecodeRecord (salvage reads damaged files this way).
type Dict struct {
	ents  []dictEnt         // index i+1
	byKey map[string]uint32 // kind and fields -> index
}

// NewDict returns an empty dictionary.
func NewDict() *Dict { return &Dict{byKey: map[string]uint32{}} }

func (e *dictEnt) key() string {
	switch e.kind {
	case kindSensor:
		return "s" + e.name
	case kindBoot:
		return "b" + e.name
	default:
		return "m" + e.meas + "\x00" + e.prop + "\x00" + e.unit + "\x00" + string(binary.BigEndian.AppendUint64(nil, math.Float64bits(e.res)))
	}
}

// Len returns the number of entries.
func (d *Dict) Len() int { return len(d.ents) }

// Load adds one entry of a file's "dict" bucket as stored (key and value).
// Entries may come in any order; a later entry for an index replaces it.
func (d *Dict) Load(key, value []byte) error {
	if len(key) != 4 {
		return fmt.Errorf("%w: dict key %x", ErrBadRecord, key)
	}
	idx := binary.BigEndian.Uint32(key)
	e, err := decodeDictEnt(value)
	if err != nil {
		return err
	}
	return d.set(idx, e)
}

func (d *Dict) set(idx uint32, e dictEnt) error {
	if idx == 0 || idx > maxDict {
		return fmt.Errorf("%w: dict index %d", ErrBadRecord, idx)
	}
	for uint32(len(d.ents)) < idx {
		d.ents = append(d.ents, dictEnt{})
	}
	d.ents[idx-1] = e
	d.byKey[e.key()] = idx
	return nil
}

func (d *Dict) get(idx uint64, kind byte) (*dictEnt, error) {
	if idx == 0 || idx > uint64(len(d.ents)) || d.ents[idx-1].kind != kind {
		return nil, fmt.Errorf("%w: no dictionary entry %d of kind %q", ErrBadRecord, idx, kind)
	}
	return &d.ents[idx-1], nil
}

// intern returns e's index, adding it (not yet durable) when new.
func (d *Dict) intern(e dictEnt) uint32 {
	if idx, ok := d.byKey[e.key()]; ok {
		return idx
	}
	d.ents = append(d.ents, e)
	idx := uint32(len(d.ents))
	d.byKey[e.key()] = idx
	return idx
}

func (d *Dict) sensor(name string) uint32 { return d.intern(dictEnt{kind: kindSensor, name: name}) }

// boot interns a boot id; its base is taken from the first stamp seen.
func (d *Dict) boot(st *reading.Stamp) uint32 {
	if idx, ok := d.byKey["b"+st.BootID]; ok {
		return idx
	}
	var base int64
	if ns, ok := unixNano(st.Time); ok {
		base = ns - int64(st.Mono)
	}
	return d.intern(dictEnt{kind: kindBoot, name: st.BootID, base: base})
}

func (d *Dict) schema(v *reading.Value) uint32 {
	return d.intern(dictEnt{kind: kindSchema, meas: v.Measurement, prop: v.Property, unit: v.Unit, res: v.Resolution})
}

func encodeDictEnt(e *dictEnt) []byte {
	b := []byte{dictV1, e.kind}
	switch e.kind {
	case kindSensor:
		b = appendStr(b, e.name)
	case kindBoot:
		b = appendStr(b, e.name)
		b = binary.AppendVarint(b, e.base)
	default:
		b = appendStr(b, e.meas)
		b = appendStr(b, e.prop)
		b = appendStr(b, e.unit)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(e.res))
	}
	return b
}

func decodeDictEnt(b []byte) (dictEnt, error) {
	if len(b) < 2 || b[0] != dictV1 {
		return dictEnt{}, fmt.Errorf("%w: dict entry version", ErrBadRecord)
	}
	e := dictEnt{kind: b[1]}
	d := decoder{b: b[2:]}
	switch e.kind {
	case kindSensor:
		e.name = d.str("sensor")
	case kindBoot:
		e.name = d.str("boot id")
		e.base = d.varint("boot base")
	case kindSchema:
		e.meas = d.str("measurement")
		e.prop = d.str("property")
		e.unit = d.str("unit")
		r := d.bytes(8, "resolution")
		if d.err == nil {
			e.res = math.Float64frombits(binary.BigEndian.Uint64(r))
			if !(e.res >= 0) || math.IsInf(e.res, 0) {
				d.fail("resolution")
			}
		}
	default:
		return dictEnt{}, fmt.Errorf("%w: dict entry kind %d", ErrBadRecord, e.kind)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("dict trailing bytes")
	}
	return e, d.err
}

func dictKey(idx uint32) []byte { return binary.BigEndian.AppendUint32(nil, idx) }

func appendStr(b []byte, s string) []byte {
	if len(s) > maxField {
		s = s[:maxField]
	}
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// unixNano is t in Unix nanoseconds when it fits (years 1678 to 2262).
func unixNano(t time.Time) (int64, bool) {
	if t.IsZero() || t.Year() < 1679 || t.Year() > 2261 {
		return 0, false
	}
	return t.UnixNano(), true
}

// snapshot is a copy for decoding outside the buffer's lock.
func (d *Dict) snapshot() *Dict {
	return &Dict{ents: append([]dictEnt(nil), d.ents...)}
}
