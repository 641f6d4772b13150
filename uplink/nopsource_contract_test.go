package uplink

import (
	"testing"

	"gatewayd/internal/testutil/sourcetest"
)

// TestNopSourceContract holds nopSource, the source the fuzz and packing
// tests give a client that must never send anything, to what an empty
// reading.Source does (the buffer's answers; see buffer.TestSourceContract
// and testutil.TestMemSourceContract for the full suite).
func TestNopSourceContract(t *testing.T) {
	sourcetest.RunEmpty(t, nopSource{})
}
