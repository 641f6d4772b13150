package mqttwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// The remaining length's encoding at every byte-count boundary (MQTT 3.1.1,
// 2.2.3), and back through Read.
func TestLengthRoundTrip(t *testing.T) {
	for n, want := range map[int][]byte{
		0: {0x00}, 127: {0x7f}, 128: {0x80, 0x01}, 16383: {0xff, 0x7f}, 16384: {0x80, 0x80, 0x01},
		2097151: {0xff, 0xff, 0x7f}, 2097152: {0x80, 0x80, 0x80, 0x01}, MaxLength: {0xff, 0xff, 0xff, 0x7f},
	} {
		if got := AppendLength(nil, n); !bytes.Equal(got, want) {
			t.Errorf("AppendLength(%d) = % x, want % x", n, got, want)
		}
	}
	for _, n := range []int{0, 1, 127, 128, 16384} {
		body := bytes.Repeat([]byte{'x'}, n)
		head, got, err := Read(bufio.NewReader(bytes.NewReader(Frame(0x32, body))), make([]byte, 0, 200))
		if err != nil || head != 0x32 || !bytes.Equal(got, body) {
			t.Fatalf("%d bytes: Read = %#x, %d bytes, %v", n, head, len(got), err)
		}
	}
}

// A body that fits the caller's buffer is read into it; a larger one into a
// slice of its own; a fifth length byte and a short body are errors.
func TestRead(t *testing.T) {
	buf := make([]byte, 0, 8)
	_, got, err := Read(bufio.NewReader(bytes.NewReader(Frame(0x30, []byte("abc")))), buf)
	if err != nil || &got[0] != &buf[:1][0] {
		t.Fatalf("a 3-byte body was not read into the 8-byte buffer (%v)", err)
	}
	_, got, err = Read(bufio.NewReader(bytes.NewReader(Frame(0x30, []byte("0123456789")))), buf)
	if err != nil || string(got) != "0123456789" {
		t.Fatalf("a 10-byte body with an 8-byte buffer: %q, %v", got, err)
	}
	if _, _, err := Read(bufio.NewReader(bytes.NewReader([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01})), nil); !errors.Is(err, ErrLength) {
		t.Fatalf("five length bytes: %v, want ErrLength", err)
	}
	if _, _, err := Read(bufio.NewReader(bytes.NewReader([]byte{0x30, 0x05, 'a'})), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a short body: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestAppendString(t *testing.T) {
	if got := AppendString([]byte{1}, "MQTT"); !bytes.Equal(got, []byte{1, 0, 4, 'M', 'Q', 'T', 'T'}) {
		t.Fatalf("AppendString = % x", got)
	}
}
