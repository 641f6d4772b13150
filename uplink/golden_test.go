package uplink_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/internal/iotsim"
)

// The golden payloads are what the emulator (and so, as far as its checks
// go, the platform) accepts, value for value.
func TestGoldenPayloadsAccepted(t *testing.T) {
	now := time.Date(2026, 11, 25, 18, 50, 1, 0, time.UTC)
	dev := iotsim.Device{ProductKey: "a1hQSwFledE", DeviceName: "greenhouse-7", DeviceSecret: "x"}
	for file, want := range map[string]struct {
		kind   string
		values int
	}{
		"property_post.json": {"post", 4}, "batch_post.json": {"batch", 9}, "history_post.json": {"history", 4},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		p, code, msg := iotsim.DecodePost(b, want.kind, dev, now)
		if code != 200 || len(p.Values) != want.values {
			t.Errorf("%s: code %d (%s), %d values; want 200, %d", file, code, msg, len(p.Values), want.values)
		}
	}
}
