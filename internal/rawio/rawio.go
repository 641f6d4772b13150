// Package rawio gives a TCP connection reads and writes that do not wake
// the Go runtime's monitor thread: the uplink's connection and the proof
// harness's reference client use it.
package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// conn is a dialed TCP connection with its reads and writes made as
// raw system calls (syscall.RawSyscall) inside syscall.RawConn's Read and
// Write: the runtime's netpoller still does all the waiting (deadlines
// included), but a read or write that can proceed no longer passes through
// the scheduler's entersyscall/exitsyscall.
//
// That matters on an idle board. Between rounds every P is idle and the
// runtime's monitor thread (sysmon) sleeps until the next timer; the first
// system call made through entersyscall after that wakes it with its
// polling reset to 20 µs, and it then polls for as long as the round's work
// runs. A post, its reply and the PUBACK did that several times a round:
// sysmon was 46% of the daemon's CPU at the seed's rate (schedstat per
// thread, 26 wake-ups of that thread per 5 s round). The socket is
// non-blocking (Go sets O_NONBLOCK), so the raw calls return at once: data,
// EAGAIN (then the netpoller waits, as net.Conn would), or an error.
type conn struct {
	*net.TCPConn
	rc syscall.RawConn
}

// Wrap returns c with raw reads and writes when it is a TCP connection;
// anything else is returned as it is.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &conn{TCPConn: tc, rc: rc}
}

func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // nothing yet: the netpoller waits
			}
			n, errno = int(r), e
			return true
		}
	})
	switch {
	case err != nil: // closed, or the deadline passed (a net.Error with Timeout)
		return 0, err
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *conn) Write(p []byte) (int, error) {
	n := 0
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n))
			switch e {
			case 0:
				n += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // the socket buffer is full: the netpoller waits
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if err == nil && errno != 0 {
		err = c.opError("write", errno)
	}
	return n, err
}

func (c *conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
