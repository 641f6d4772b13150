package iotsim

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// gateListener counts accepted connections that mochi has not started
// reading yet. mochi registers a connection in a WaitGroup only when its
// goroutine starts, while Server.Close already waits on that group; closing
// in that window is a data race inside mochi. Close stops accepting first and
// lets those goroutines start before it hands over to mochi.
type gateListener struct {
	net.Listener
	pending atomic.Int64
}

func (l *gateListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.pending.Add(1)
	return &gateConn{Conn: c, l: l}, nil
}

// settle waits (bounded) until every accepted connection was read from.
func (l *gateListener) settle(d time.Duration) {
	deadline := time.Now().Add(d)
	for l.pending.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

type gateConn struct {
	net.Conn
	l    *gateListener
	once sync.Once
}

func (c *gateConn) Read(p []byte) (int, error) {
	c.once.Do(func() { c.l.pending.Add(-1) })
	return c.Conn.Read(p)
}

func (c *gateConn) Close() error {
	c.once.Do(func() { c.l.pending.Add(-1) })
	return c.Conn.Close()
}
