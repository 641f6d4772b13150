package buffer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	berrors "go.etcd.io/bbolt/errors"
)

// TestRetryable: only proven damage sets a file aside, and only what a retry
// can change is retried.
func TestRetryable(t *testing.T) {
	pathErr := func(e error) error { return &fs.PathError{Op: "read", Path: "b.db", Err: e} }
	for _, c := range []struct {
		err   error
		retry bool
	}{
		{pathErr(syscall.EIO), true},
		{fmt.Errorf("init b.db: %w", pathErr(syscall.EIO)), true},
		{pathErr(syscall.ENOMEM), true},
		{pathErr(syscall.EAGAIN), true},
		{pathErr(syscall.EINTR), true},
		{os.ErrDeadlineExceeded, true},
		{berrors.ErrInvalid, true}, // bbolt says so when its meta read fails, after rawCheck read it fine
		{errors.New("something without a name"), true},
		{fmt.Errorf("%w: page 7 claims id 9", ErrCorrupt), false},
		{readFailed(7, io.ErrUnexpectedEOF), false}, // truncated: damage
		{ErrLocked, false},
		{pathErr(syscall.EACCES), false},
		{pathErr(syscall.ENOSPC), false},
		{pathErr(syscall.EROFS), false},
		{pathErr(syscall.ENOENT), false},
		{nil, false},
	} {
		if got := retryable(c.err); got != c.retry {
			t.Errorf("retryable(%v) = %v, want %v", c.err, got, c.retry)
		}
	}
	if err := readFailed(7, syscall.EIO); errors.Is(err, ErrCorrupt) || !errors.Is(err, syscall.EIO) {
		t.Errorf("a page read failing with EIO: %v", err)
	}
}

// TestRetrierBounds: backoff doubles up to its cap, attempts are bounded per
// step, the service manager hears of every retry, and a step that stops
// failing goes on at once.
func TestRetrierBounds(t *testing.T) {
	var slept []time.Duration
	var told []time.Duration
	r := &retrier{log: slog.New(slog.NewTextHandler(io.Discard, nil)), budget: time.Hour, start: time.Now(),
		starting: func(_ string, extend time.Duration) { told = append(told, extend) },
		sleep:    func(d time.Duration) { slept = append(slept, d) }}
	calls := 0
	err := r.do("open", func() error { calls++; return pathErrEIO() })
	if !errors.Is(err, syscall.EIO) || calls != openAttempts || r.retries != openAttempts-1 {
		t.Fatalf("persistent EIO: err %v after %d calls, %d retries", err, calls, r.retries)
	}
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
		8 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	if fmt.Sprint(slept) != fmt.Sprint(want) || len(told) != len(want) || told[0] != want[0]+openAttemptTime {
		t.Fatalf("slept %v, told %v", slept, told)
	}
	calls = 0
	if err := r.do("reserve ids", func() error {
		calls++
		if calls < 3 {
			return pathErrEIO()
		}
		return nil
	}); err != nil || calls != 3 {
		t.Fatalf("transient EIO: %v after %d calls", err, calls)
	}
	// The time bound: a budget spent gives up before the attempts are.
	r2 := &retrier{log: r.log, budget: time.Second, start: time.Now(), sleep: func(time.Duration) {}}
	r2.start = r2.start.Add(-900 * time.Millisecond)
	calls = 0
	if err := r2.do("open", func() error { calls++; return pathErrEIO() }); !errors.Is(err, syscall.EIO) || calls != 1 {
		t.Fatalf("spent budget: %v after %d calls", err, calls)
	}
	// Damage is not retried.
	calls = 0
	if err := r.do("open", func() error { calls++; return ErrCorrupt }); !errors.Is(err, ErrCorrupt) || calls != 1 {
		t.Fatalf("damage retried: %d calls", calls)
	}
}

func pathErrEIO() error { return &fs.PathError{Op: "write", Path: "b.db", Err: syscall.EIO} }
