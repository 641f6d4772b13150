// Package mqttwire writes and reads raw MQTT 3.1.1 framing: the few packets
// the proof harness's reference client (cmd/gwproof/floor) and the uplink's
// broker-side tests put on the wire by hand. The daemon itself speaks MQTT
// through paho.
package mqttwire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
)

// MaxLength is the largest remaining length MQTT can express (four bytes).
const MaxLength = 268435455

// ErrLength is a remaining length longer than four bytes.
var ErrLength = errors.New("mqttwire: remaining length longer than 4 bytes")

// AppendLength appends n (0..MaxLength) as MQTT's variable-length remaining
// length: seven bits a byte, least significant first, the top bit set on
// every byte but the last.
func AppendLength(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// Frame returns a whole packet: the fixed header's first byte (type and
// flags), the remaining length, then body.
func Frame(head byte, body []byte) []byte {
	b := AppendLength([]byte{head}, len(body))
	return append(b, body...)
}

// AppendString appends s as an MQTT string: a two-byte big-endian length,
// then its bytes.
func AppendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// Read reads one packet from r and returns the fixed header's first byte
// and the body. The body is read into buf when it fits (and then aliases
// it), into a new slice otherwise.
func Read(r *bufio.Reader, buf []byte) (byte, []byte, error) {
	head, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, nil, ErrLength
		}
		d, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
	}
	body := buf[:0]
	if n > cap(buf) {
		body = make([]byte, n)
	}
	body = body[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return head, body, nil
}
