package testutil

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// CPUTime is the CPU the process has used so far, all threads
// (CLOCK_PROCESS_CPUTIME_ID): what benchmarks of idle work report as
// cpu-ns/op, since wall time there is mostly sleep.
func CPUTime(tb testing.TB) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ts.Nano())
}
