package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// conn behaves as the net.Conn it wraps: a write larger than the socket
// buffers (EAGAIN, the netpoller waits) arrives whole and in order, the
// peer's close is io.EOF, a read deadline is a net.Error with Timeout, and a
// closed connection reports net.ErrClosed (paho tells its own close by it).
func TestRawConn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peerc := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			peerc <- nil
			return
		}
		peerc <- c
	}()
	d, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := Wrap(d)
	if _, ok := c.(*conn); !ok {
		t.Fatalf("Wrap returned %T", c)
	}
	peer := <-peerc
	if peer == nil {
		t.Fatal("accept failed")
	}
	defer peer.Close()

	// 8 MiB one way, read slowly at first: the writer meets a full socket.
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	werr := make(chan error, 1)
	go func() {
		n, err := c.Write(big)
		if err == nil && n != len(big) {
			err = io.ErrShortWrite
		}
		werr <- err
	}()
	time.Sleep(100 * time.Millisecond)
	got := make([]byte, 0, len(big))
	buf := make([]byte, 64<<10)
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(got) < len(big) {
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatalf("peer read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("the bytes written through Wrap differ from what arrived")
	}

	// The other way, in small reads.
	if _, err := peer.Write([]byte("hello, gateway")); err != nil {
		t.Fatal(err)
	}
	var back []byte
	small := make([]byte, 5)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(back) < 14 {
		n, err := c.Read(small)
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, small[:n]...)
	}
	if string(back) != "hello, gateway" {
		t.Fatalf("read %q", back)
	}

	// A deadline with nothing to read.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = c.Read(small)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})

	// The peer closes: EOF.
	peer.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(small); err != io.EOF {
		t.Fatalf("after the peer's close: %v, want io.EOF", err)
	}

	// Our close: net.ErrClosed, with the text paho looks for.
	c.Close()
	if _, err := c.Read(small); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}
