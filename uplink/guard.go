package uplink

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// MaxInboundPacket is the largest MQTT remaining length (everything after
// the fixed header) accepted from the far end: the platform's 256 KB message
// limit plus the largest PUBLISH variable header (2-byte topic length, a
// topic of up to 65535 bytes, 2-byte packet id). Anything larger is refused
// before paho allocates a buffer for it (paho's packets.ReadPacket makes a
// []byte of the announced length, up to 256 MiB, before reading a byte of
// it).
const MaxInboundPacket = platformPacketLimit + 2 + 0xFFFF + 2

// ErrOversize marks a connection dropped because the far end announced an
// MQTT packet larger than MaxInboundPacket.
var ErrOversize = errors.New("inbound MQTT packet over the size limit")

// errMalformed: a remaining-length varint longer than MQTT allows.
var errMalformed = errors.New("malformed MQTT fixed header: remaining length longer than 4 bytes")

// frameGuard follows the MQTT framing of a byte stream (fixed header byte,
// remaining-length varint, body) and refuses a packet as soon as its
// announced length exceeds limit. It never buffers: it only counts.
type frameGuard struct {
	limit  int
	state  uint8 // 0 first header byte, 1 in the varint, 2 in the body
	nvar   int   // varint bytes seen
	mult   int
	length int // remaining length decoded so far
	left   int // body bytes still to pass
}

const (
	fgHeader = iota
	fgLength
	fgBody
)

// scan follows p. It returns how many leading bytes of p belong to packets
// whose header was acceptable, and a non-nil error (ErrOversize or
// errMalformed, wrapped with the announced size) at the first bad header;
// then ok is the offset where that packet began in p (0 if it began in an
// earlier chunk).
func (g *frameGuard) scan(p []byte) (ok int, err error) {
	start := 0 // where the current packet began in p
	for i := 0; i < len(p); {
		switch g.state {
		case fgHeader:
			start = i
			g.state, g.nvar, g.mult, g.length = fgLength, 0, 1, 0
			i++
		case fgLength:
			b := p[i]
			i++
			g.nvar++
			if g.nvar > 4 {
				return start, errMalformed
			}
			g.length += int(b&0x7f) * g.mult
			g.mult *= 128
			// The partial sum only grows: refuse as soon as it is too big,
			// even before the last varint byte is handed over.
			if g.length > g.limit {
				return start, fmt.Errorf("%w: the far end announced %d bytes, the limit is %d", ErrOversize, g.length, g.limit)
			}
			if b&0x80 == 0 {
				g.left = g.length
				g.state = fgBody
				if g.left == 0 {
					g.state = fgHeader
				}
			}
		case fgBody:
			n := min(g.left, len(p)-i)
			g.left -= n
			i += n
			if g.left == 0 {
				g.state = fgHeader
			}
		}
	}
	return len(p), nil
}

// guardConn is the dialed connection as paho sees it: reads pass through a
// frameGuard, and an oversize packet closes the connection (paho then
// reports it lost and Run reconnects).
//
// It also reads ahead: paho's packets.ReadPacket asks the connection for a
// packet's first byte, then its length byte by byte, then its body, so every
// inbound packet cost about seven read(2) calls (a post_reply: 7). Through a
// readAhead-byte buffer it costs one. The guard scans what the buffer is
// filled with, so an oversize announcement is still refused before paho
// sees its last length byte, and at most readAhead bytes sit in memory.
type guardConn struct {
	net.Conn
	onBad func(error)

	mu   sync.Mutex
	g    frameGuard
	err  error  // sticky: every Read after a refusal fails
	buf  []byte // read-ahead; buf[r:w] not yet handed to paho
	r, w int
	rerr error // the underlying read's error, returned once buf is drained

	// The keepalive is ours, not paho's (see Client.keepalive): paho
	// connects with keepalive 0, the first packet written (the CONNECT)
	// gets ka instead, and the times of the last bytes each way tell when
	// to ping and whether the far end answered.
	ka          uint16
	wmu         sync.Mutex
	sentConnect bool
	lastRead    atomic.Int64 // time.Now().UnixNano()
	lastWrite   atomic.Int64
	killed      atomic.Pointer[error] // why we closed it (kill)
}

// ErrPingTimeout marks a connection closed because the far end did not
// answer a keepalive ping in time.
var ErrPingTimeout = errors.New("keepalive: no answer to a ping in time")

// kill closes the connection for reason. Reads and writes then fail with
// reason, not with the "use of closed network connection" of a plain
// Close, which paho takes for a close of its own and does not report as a
// lost connection.
func (g *guardConn) kill(reason error) {
	g.killed.CompareAndSwap(nil, &reason)
	g.Conn.Close()
}

// killedErr is kill's reason, or err.
func (g *guardConn) killedErr(err error) error {
	if k := g.killed.Load(); k != nil && err != nil {
		return *k
	}
	return err
}

const readAhead = 4096

func (c *Client) guard(conn net.Conn) net.Conn {
	now := time.Now().UnixNano()
	g := &guardConn{Conn: conn, g: frameGuard{limit: MaxInboundPacket}, onBad: c.oversize,
		ka: uint16(min(c.o.Keepalive/time.Second, 0xFFFF))}
	g.lastRead.Store(now)
	g.lastWrite.Store(now)
	c.gconn.Store(g)
	return g
}

// Write passes paho's packets on (each in one Write), the CONNECT with our
// keepalive, and our PINGREQs between them.
func (g *guardConn) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if !g.sentConnect {
		g.sentConnect = true
		if g.ka > 0 {
			p = withKeepalive(p, g.ka)
		}
	}
	n, err := g.Conn.Write(p)
	if n > 0 {
		g.lastWrite.Store(time.Now().UnixNano())
	}
	return n, g.killedErr(err)
}

// quietSince is the older of the last byte read and the last written: the
// connection has been silent in one direction at least since then.
func (g *guardConn) quietSince() time.Time {
	return time.Unix(0, min(g.lastRead.Load(), g.lastWrite.Load()))
}

var pingreq = []byte{0xC0, 0x00}

// ping writes an MQTT PINGREQ.
func (g *guardConn) ping() error {
	_, err := g.Write(pingreq)
	return err
}

// withKeepalive returns p, a CONNECT packet, with its keepalive field set
// to ka (a copy; p itself is paho's). Anything else comes back unchanged.
func withKeepalive(p []byte, ka uint16) []byte {
	if len(p) < 2 || p[0] != 0x10 {
		return p
	}
	i := 1 // the remaining length: 1 to 4 bytes, the last without 0x80
	for i < len(p) && i < 5 && p[i]&0x80 != 0 {
		i++
	}
	if i >= 5 || i+3 > len(p) {
		return p
	}
	i++ // the variable header: protocol name (2-byte length), level, flags, keepalive
	off := i + 2 + (int(p[i])<<8 | int(p[i+1])) + 2
	if off+2 > len(p) {
		return p
	}
	q := append([]byte(nil), p...)
	q[off], q[off+1] = byte(ka>>8), byte(ka)
	return q
}

func (g *guardConn) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.r < g.w {
		n := copy(p, g.buf[g.r:g.w])
		g.r += n
		return n, nil
	}
	if err := g.rerr; err != nil {
		g.rerr = nil
		return 0, err
	}
	if g.err != nil {
		return 0, g.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	dst := p // a large read (a big packet's body) goes straight to paho
	if len(p) < readAhead {
		if g.buf == nil {
			g.buf = make([]byte, readAhead)
		}
		dst = g.buf
	}
	n, err := g.Conn.Read(dst)
	if n > 0 {
		g.lastRead.Store(time.Now().UnixNano())
	}
	err = g.killedErr(err)
	ok, bad := g.g.scan(dst[:n])
	if bad != nil {
		g.err = bad
		g.Conn.Close()
		g.onBad(bad)
		n, err = ok, nil // the complete packets before the bad one
		if ok == 0 {
			return 0, bad
		}
	}
	if len(p) >= readAhead {
		return n, err
	}
	m := copy(p, g.buf[:n])
	g.r, g.w = m, n
	if m < n && err != nil {
		g.rerr, err = err, nil // hand over the buffered bytes first
	}
	return m, err
}

// oversize counts and logs (rate-limited) a refused packet.
func (c *Client) oversize(err error) {
	c.stats.update(func(s *Stats) { s.Oversize++ })
	if ok, n := c.gate.allow("oversize", c.o.Now()); ok {
		c.log.Error("connection dropped: the far end sent a packet over the size limit; it was not read into memory",
			"err", err, "server", c.serverDesc(), "suppressed", n)
	}
}

// warnPlaintext says, on every plain-TCP connection (rate-limited), what
// plaintext costs.
func (c *Client) warnPlaintext() {
	if ok, n := c.gate.allow("plaintext", c.o.Now()); ok {
		c.log.Warn(PlaintextWarning, "server", c.serverDesc(), "suppressed", n)
	}
}

// PlaintextWarning is what the log and `gatewayd check` say about tls = false.
const PlaintextWarning = "plaintext MQTT: the device password and every reading travel in clear; " +
	"the password never changes, so anyone who captures it once can impersonate this device for good"
