package tick

import (
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tfdSource is a timerfd (CLOCK_MONOTONIC, the runtime's own clock) that
// the netpoller waits on. Arming and reading are raw system calls: the
// runtime's entersyscall would wake sysmon from its deep sleep, which is
// what the timerfd is there to avoid.
type tfdSource struct {
	fd   uintptr
	rc   syscall.RawConn
	buf  [8]byte
	read func(fd uintptr) bool // made once: a closure per wait would be an allocation per tick
	f    *os.File              // keeps fd open (and in the poller) for the process's life
}

func newSource() source {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return newTimerSource()
	}
	f := os.NewFile(uintptr(fd), "tick-timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return newTimerSource()
	}
	s := &tfdSource{fd: uintptr(fd), rc: rc, f: f}
	s.read = func(fd uintptr) bool {
		_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&s.buf[0])), uintptr(len(s.buf)))
		return e != unix.EAGAIN
	}
	return s
}

func (s *tfdSource) arm(d time.Duration) {
	var its unix.ItimerSpec // zero: disarm
	if d > 0 {
		its.Value = unix.NsecToTimespec(int64(d))
	}
	// Cannot fail for a valid fd and a normalised value.
	_, _, _ = unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, s.fd, 0, uintptr(unsafe.Pointer(&its)), 0, 0, 0)
}

func (s *tfdSource) wait() {
	// The callback runs on this goroutine; the poller parks it until the
	// timerfd is readable.
	_ = s.rc.Read(s.read)
}

func (s *tfdSource) kind() string { return "timerfd" }
