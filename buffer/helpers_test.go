package buffer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

// testLogger keeps test output readable; set BUFFER_TEST_LOG=1 to see the
// buffer's log on stderr.
func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	if os.Getenv("BUFFER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// mustOpen opens a buffer in a fresh directory with the background loop's
// interval so long that only explicit triggers commit, unless o says
// otherwise.
func mustOpen(tb testing.TB, o Options) *Buffer {
	tb.Helper()
	if o.Path == "" {
		o.Path = filepath.Join(tb.TempDir(), "buffer.db")
	}
	if o.Logger == nil {
		o.Logger = testLogger(tb)
	}
	b, err := Open(o)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

func closeBuf(tb testing.TB, b *Buffer) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		tb.Fatalf("Close: %v", err)
	}
}

var baseTime = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// mkReadings returns n distinct readings, the i-th taken i seconds after
// baseTime plus start.
func mkReadings(start, n int) []reading.Reading {
	rs := make([]reading.Reading, n)
	for i := range rs {
		k := start + i
		rs[i] = reading.Reading{
			Sensor:      "air",
			Measurement: "temperature",
			Property:    "temperature",
			Value:       20 + float64(k)/100,
			Unit:        "°C",
			Time:        baseTime.Add(time.Duration(k) * time.Second),
			Mono:        time.Duration(k) * time.Second,
			BootID:      fmt.Sprintf("boot-%d", k%3),
			Synced:      k%2 == 0,
		}
	}
	return rs
}

func mustAppend(tb testing.TB, b *Buffer, rs []reading.Reading) {
	tb.Helper()
	if err := b.Append(context.Background(), rs); err != nil {
		tb.Fatalf("Append: %v", err)
	}
}

func mustTake(tb testing.TB, b *Buffer, max int, f reading.Filter) []reading.Reading {
	tb.Helper()
	rs, err := b.Take(max, f)
	if err != nil {
		tb.Fatalf("Take: %v", err)
	}
	return rs
}

// sameReading compares everything but the ID, which the caller checks.
func sameReading(a, b reading.Reading) bool {
	return a.ID == b.ID && a.Sensor == b.Sensor && a.Measurement == b.Measurement && a.Property == b.Property &&
		a.Value == b.Value && a.Unit == b.Unit && a.Time.Equal(b.Time) && a.Mono == b.Mono &&
		a.BootID == b.BootID && a.Synced == b.Synced
}

// foldNow writes everything into the bbolt file now, as the commit loop
// does every foldEvery windows: for tests of what happens in bbolt.
func (b *Buffer) foldNow() error {
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	return b.fold()
}
