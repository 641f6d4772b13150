package buffer

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"gatewayd/internal/reading"
)

// Record format. Every stored value starts with a version byte so a later
// release can still read files written by this one: when the layout changes,
// add a new version constant and a new decodeVN, and keep the old decoder.
//
// Version 1 (readings bucket, key = 8-byte big-endian ID):
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
// Dead letters (dead bucket, same key) wrap a reading record:
//
//	[1] version = 1
//	varint   dead-lettered at, Unix microseconds
//	uvarint  reason length, reason bytes
//	rest     the reading record, as above
const (
	recordV1 = 1
	deadV1   = 1

	// maxField bounds every string field: readings carry short names, and
	// a decoder that trusts a length prefix from a damaged file must not
	// allocate gigabytes.
	maxField = 4096
)

// encodeRecord returns the current-version encoding of r.
func encodeRecord(r *reading.Reading) []byte {
	n := 1 + 3*binary.MaxVarintLen64 + binary.MaxVarintLen64 + 1 + 8 +
		5*binary.MaxVarintLen64 + len(r.Sensor) + len(r.Measurement) + len(r.Property) + len(r.Unit) + len(r.BootID)
	b := make([]byte, 0, n)
	b = append(b, recordV1)
	b = binary.AppendUvarint(b, uint64(r.ID))
	b = binary.AppendVarint(b, r.Time.Unix())
	b = binary.AppendUvarint(b, uint64(r.Time.Nanosecond()))
	b = binary.AppendVarint(b, int64(r.Mono))
	var flags byte
	if r.Synced {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(r.Value))
	for _, s := range [...]string{r.Sensor, r.Measurement, r.Property, r.Unit, r.BootID} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// decodeRecord decodes a stored reading of any known version. It never
// panics and never allocates more than the input's size for strings; the
// strings it returns are copies (bbolt values are only valid inside their
// transaction).
func decodeRecord(b []byte) (reading.Reading, error) {
	if len(b) == 0 {
		return reading.Reading{}, fmt.Errorf("%w: empty record", ErrBadRecord)
	}
	switch b[0] {
	case recordV1:
		return decodeV1(b[1:])
	default:
		return reading.Reading{}, fmt.Errorf("%w: unknown record version %d", ErrBadRecord, b[0])
	}
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

func decodeV1(b []byte) (reading.Reading, error) {
	d := decoder{b: b}
	var r reading.Reading
	r.ID = reading.ID(d.uvarint("id"))
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
	r.Sensor = d.str("sensor")
	r.Measurement = d.str("measurement")
	r.Property = d.str("property")
	r.Unit = d.str("unit")
	r.BootID = d.str("boot id")
	if d.err != nil {
		return reading.Reading{}, d.err
	}
	if len(d.b) != 0 {
		return reading.Reading{}, fmt.Errorf("%w: %d trailing bytes", ErrBadRecord, len(d.b))
	}
	r.Time = time.Unix(sec, int64(nsec)).UTC()
	r.Mono = time.Duration(mono)
	r.Synced = fl[0]&1 != 0
	r.Value = math.Float64frombits(binary.BigEndian.Uint64(v))
	return r, nil
}

// deadRecord is a dead-lettered reading as stored.
type deadRecord struct {
	Reading reading.Reading
	Reason  string
	At      time.Time
}

func encodeDead(rec []byte, reason string, at time.Time) []byte {
	if len(reason) > maxField {
		reason = reason[:maxField]
	}
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(reason)+len(rec))
	b = append(b, deadV1)
	b = binary.AppendVarint(b, at.UnixMicro())
	b = binary.AppendUvarint(b, uint64(len(reason)))
	b = append(b, reason...)
	return append(b, rec...)
}

// decodeDead decodes a stored dead letter of any known version.
func decodeDead(b []byte) (deadRecord, error) {
	if len(b) == 0 {
		return deadRecord{}, fmt.Errorf("%w: empty dead letter", ErrBadRecord)
	}
	if b[0] != deadV1 {
		return deadRecord{}, fmt.Errorf("%w: unknown dead letter version %d", ErrBadRecord, b[0])
	}
	d := decoder{b: b[1:]}
	at := d.varint("dead time")
	reason := d.str("reason")
	if d.err != nil {
		return deadRecord{}, d.err
	}
	r, err := decodeRecord(d.b)
	if err != nil {
		return deadRecord{}, err
	}
	return deadRecord{Reading: r, Reason: reason, At: time.UnixMicro(at).UTC()}, nil
}

func idKey(id reading.ID) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(id))
}

func keyID(k []byte) (reading.ID, bool) {
	if len(k) != 8 {
		return 0, false
	}
	return reading.ID(binary.BigEndian.Uint64(k)), true
}
