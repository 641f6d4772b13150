package uplink

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"gatewayd/internal/mqttwire"
)

func mqttVarint(n int) []byte { return mqttwire.AppendLength(nil, n) }

func packet(typ byte, n int) []byte {
	return append(append([]byte{typ}, mqttVarint(n)...), make([]byte, n)...)
}

// refFrames parses a whole stream at once: the offset of the first packet
// whose header is over limit or malformed, or -1.
func refFrames(b []byte, limit int) (bad int, err error) {
	for i := 0; i < len(b); {
		start := i
		i++
		n, mult := 0, 1
		for k := 0; ; k++ {
			if i >= len(b) {
				return -1, nil // header not complete yet
			}
			if k == 4 {
				return start, errMalformed
			}
			c := b[i]
			i++
			n += int(c&0x7f) * mult
			mult *= 128
			if n > limit {
				return start, ErrOversize
			}
			if c&0x80 == 0 {
				break
			}
		}
		i += n
	}
	return -1, nil
}

func TestFrameGuard(t *testing.T) {
	limit := MaxInboundPacket
	ok := bytes.Join([][]byte{packet(0x20, 2), packet(0x30, 1000), packet(0xd0, 0), packet(0x30, limit)}, nil)
	over := append(append([]byte(nil), ok...), append([]byte{0x30}, mqttVarint(200<<20)...)...)
	bad5 := append(append([]byte(nil), ok...), 0x30, 0x80, 0x80, 0x80, 0x80, 0x01)
	for _, tc := range []struct {
		name   string
		stream []byte
		want   error
	}{{"limit-sized packets pass", ok, nil}, {"200 MiB refused", over, ErrOversize}, {"5-byte length refused", bad5, errMalformed}} {
		for _, chunk := range []int{1, 2, 3, 7, 4096, len(tc.stream)} {
			g := frameGuard{limit: limit}
			passed := 0
			var err error
			for i := 0; i < len(tc.stream) && err == nil; i += chunk {
				var n int
				n, err = g.scan(tc.stream[i:min(i+chunk, len(tc.stream))])
				passed += n
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("%s, chunks of %d: err %v, want %v", tc.name, chunk, err, tc.want)
			}
			// The bytes of the refused header that were handed over never
			// include its last length byte: paho cannot allocate.
			if tc.want != nil && passed >= len(tc.stream) {
				t.Fatalf("%s, chunks of %d: %d of %d bytes passed", tc.name, chunk, passed, len(tc.stream))
			}
		}
	}
}

// A refused read closes the connection and stays refused.
func TestGuardConnSticky(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c, _ := New(Options{ProductKey: "pk", DeviceName: "dn", DeviceSecret: "s", Endpoint: "127.0.0.1:1", Logger: discardLogger()}, nopSource{})
	g := c.guard(a)
	go b.Write(append(packet(0x20, 2), append([]byte{0x30}, mqttVarint(400<<10)...)...))
	buf := make([]byte, 64)
	n, err := g.Read(buf)
	if err != nil || n != 4 {
		t.Fatalf("first read: %d %v (want the CONNACK's 4 bytes)", n, err)
	}
	if _, err := g.Read(buf); !errors.Is(err, ErrOversize) {
		t.Fatalf("second read: %v", err)
	}
	if _, err := g.Read(buf); !errors.Is(err, ErrOversize) {
		t.Fatalf("third read: %v", err)
	}
	b.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := b.Write([]byte{1}); err == nil {
		t.Fatal("connection still open after the refusal")
	}
	if c.Stats().Oversize != 1 {
		t.Fatalf("stats %+v", c.Stats())
	}
}

// Raw MQTT framing through the size guard: however the stream is cut into
// reads, the guard refuses exactly at the first oversize or malformed
// header (as a whole-stream parse finds it), and never hands over that
// header's last length byte.
func FuzzGuardFraming(f *testing.F) {
	f.Add(packet(0x20, 2), uint8(1), uint16(64))
	f.Add(append(packet(0x30, 5), 0x30, 0x80, 0x80, 0x80, 0x64), uint8(3), uint16(300))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f}, uint8(2), uint16(1000))
	f.Add(append(packet(0x90, 3), packet(0x30, 127)...), uint8(5), uint16(127))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8, limit uint16) {
		lim := int(limit)
		c := max(int(chunk), 1)
		wantAt, wantErr := refFrames(stream, lim)
		g := frameGuard{limit: lim}
		passed := 0
		for i := 0; i < len(stream); i += c {
			end := min(i+c, len(stream))
			n, err := g.scan(stream[i:end])
			if err != nil {
				if !errors.Is(err, wantErr) || wantErr == nil {
					t.Fatalf("refused with %v, whole-stream parse says %v at %d", err, wantErr, wantAt)
				}
				// what was handed over ends before the bad header's end
				passed += n
				if passed > wantAt+5 || (n > 0 && i+n > wantAt) {
					t.Fatalf("passed %d bytes (chunk at %d handed %d), bad header at %d", passed, i, n, wantAt)
				}
				return
			}
			if n != end-i {
				t.Fatalf("accepted chunk but passed %d of %d", n, end-i)
			}
			passed += n
		}
		if wantErr != nil {
			t.Fatalf("accepted the stream; whole-stream parse: %v at %d", wantErr, wantAt)
		}
	})
}

// countConn hands out a fixed stream in one go per Read and counts the
// Reads; at the end of the stream it returns its data with io.EOF.
type countConn struct {
	net.Conn
	data  []byte
	reads int
}

func (c *countConn) Read(p []byte) (int, error) {
	c.reads++
	n := copy(p, c.data)
	c.data = c.data[n:]
	if len(c.data) == 0 {
		return n, io.EOF
	}
	return n, nil
}

func (c *countConn) Close() error { return nil }

// Paho reads a packet a byte or two at a time; through the guard, three
// pipelined replies cost one read of the connection, every byte arrives in
// order, and the end of the stream comes after the last byte.
func TestGuardConnReadsAhead(t *testing.T) {
	var stream []byte
	for i := 0; i < 3; i++ {
		stream = append(stream, packet(0x32, 150+i)...)
	}
	cc := &countConn{data: append([]byte(nil), stream...)}
	c, _ := New(Options{ProductKey: "pk", DeviceName: "dn", DeviceSecret: "s", Endpoint: "127.0.0.1:1", Logger: discardLogger()}, nopSource{})
	g := c.guard(cc)
	var got []byte
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		b := make([]byte, 1+i%3) // like paho: 1, 2, ... bytes at a time
		var n int
		n, err = g.Read(b)
		got = append(got, b[:n]...)
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("ended with %v, want io.EOF", err)
	}
	if !bytes.Equal(got, stream) {
		t.Fatalf("got %d bytes, want the %d sent, in order", len(got), len(stream))
	}
	if cc.reads != 1 {
		t.Fatalf("%d reads of the connection for %d bytes, want 1", cc.reads, len(stream))
	}
}

// The CONNECT paho writes (keepalive 0: its pinger is off) leaves the
// guard with our keepalive, as paho's own parser reads it back; other
// packets and a malformed header pass unchanged.
func TestWithKeepalive(t *testing.T) {
	for _, proto := range []struct {
		name string
		ver  byte
	}{{"MQTT", 4}, {"MQIsdp", 3}} {
		cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
		cp.ProtocolName, cp.ProtocolVersion = proto.name, proto.ver
		cp.ClientIdentifier = strings.Repeat("c", 200) // a two-byte remaining length
		cp.UsernameFlag, cp.Username = true, "dn&pk"
		cp.PasswordFlag, cp.Password = true, []byte("secret")
		var b bytes.Buffer
		if err := cp.Write(&b); err != nil {
			t.Fatal(err)
		}
		orig := append([]byte(nil), b.Bytes()...)
		out := withKeepalive(b.Bytes(), 1200)
		if !bytes.Equal(b.Bytes(), orig) {
			t.Fatal("withKeepalive changed paho's buffer")
		}
		got, err := packets.ReadPacket(bytes.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		g := got.(*packets.ConnectPacket)
		if g.Keepalive != 1200 || g.ClientIdentifier != cp.ClientIdentifier || g.Username != cp.Username || string(g.Password) != "secret" {
			t.Fatalf("%s: read back keepalive %d, client id %q..., user %q", proto.name, g.Keepalive, g.ClientIdentifier[:5], g.Username)
		}
	}
	for _, p := range [][]byte{pingreq, {0x10}, {0x10, 0xff, 0xff, 0xff, 0xff, 0x01}, {0x10, 0x05, 0x00}} {
		if out := withKeepalive(p, 60); !bytes.Equal(out, p) {
			t.Fatalf("%x changed to %x", p, out)
		}
	}
}
