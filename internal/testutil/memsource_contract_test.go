package testutil_test

import (
	"testing"

	"gatewayd/internal/reading"
	"gatewayd/internal/testutil"
	"gatewayd/internal/testutil/sourcetest"
)

// TestMemSourceContract holds MemSource, the uplink's stand-in for the
// buffer, to the contract suite the real buffer passes
// (buffer.TestSourceContract). MemSource also records misuse (acks of
// samples not in flight, duplicate acks, releases of samples not in flight)
// for the uplink's tests; the suite makes such calls on purpose, so its
// violations are not checked here, only that it behaves like the buffer
// while recording them.
func TestMemSourceContract(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T) sourcetest.Harness {
		m := testutil.NewMemSource()
		return sourcetest.Harness{Source: m, Append: func(ss []reading.Sample) error {
			m.Add(ss...)
			return nil
		}}
	})
}
