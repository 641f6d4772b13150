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

// mkReadings returns n distinct samples of one value each (what the release
// before samples called a reading), the i-th taken i seconds after baseTime
// plus start.
func mkReadings(start, n int) []reading.Sample {
	rs := make([]reading.Sample, n)
	for i := range rs {
		k := start + i
		rs[i] = reading.Sample{
			Sensor: "air",
			Stamp: reading.Stamp{
				Time:   baseTime.Add(time.Duration(k) * time.Second),
				Mono:   time.Duration(k) * time.Second,
				BootID: fmt.Sprintf("boot-%d", k%3),
				Synced: k%2 == 0,
			},
			Values: []reading.Value{{Measurement: "temperature", Property: "temperature",
				Value: 20 + float64(k)/100, Unit: "°C"}},
		}
	}
	return rs
}

// mkBME returns n samples of a BME280 (temperature, humidity, pressure at
// 0.01), the i-th taken 10*i seconds after baseTime plus start.
func mkBME(sensor string, start, n int) []reading.Sample {
	ss := make([]reading.Sample, n)
	for i := range ss {
		k := start + i
		t := baseTime.Add(time.Duration(k) * 10 * time.Second)
		ss[i] = reading.Sample{
			Sensor: sensor,
			Stamp: reading.Stamp{Time: t.Add(time.Duration(k%7) * 1234567), Mono: time.Duration(k)*10*time.Second + 987654321,
				BootID: "8c5f3b2e-6a1d-4f7e-9b0a-2d4c6e8f1a3b", Synced: true},
			Values: []reading.Value{
				{Measurement: "temperature", Property: "temperature", Unit: "°C", Resolution: 0.01, Value: 21.5 + float64(k%300)/97},
				{Measurement: "humidity", Property: "humidity", Unit: "%RH", Resolution: 0.01, Value: 45 + float64(k%500)/31},
				{Measurement: "pressure", Property: "pressure", Unit: "hPa", Resolution: 0.01, Value: 1009.2492578125 + float64(k%900)/53},
			},
		}
	}
	return ss
}

// refs returns whole-sample refs of ids.
func refs(ids ...reading.ID) []reading.Ref {
	out := make([]reading.Ref, len(ids))
	for i, id := range ids {
		out[i] = reading.Ref{ID: id}
	}
	return out
}

func mustAppend(tb testing.TB, b *Buffer, rs []reading.Sample) {
	tb.Helper()
	if err := b.Append(context.Background(), rs); err != nil {
		tb.Fatalf("Append: %v", err)
	}
}

func mustTake(tb testing.TB, b *Buffer, max int, f reading.Filter) []reading.Sample {
	tb.Helper()
	rs, err := b.Take(max, f)
	if err != nil {
		tb.Fatalf("Take: %v", err)
	}
	return rs
}

// sameReading compares two samples, values in order (NaN equals NaN).
func sameReading(a, b reading.Sample) bool {
	if a.ID != b.ID || a.Sensor != b.Sensor || !a.Time.Equal(b.Time) || a.Mono != b.Mono ||
		a.BootID != b.BootID || a.Synced != b.Synced || len(a.Values) != len(b.Values) {
		return false
	}
	for i, v := range a.Values {
		w := b.Values[i]
		if v.Measurement != w.Measurement || v.Property != w.Property || v.Unit != w.Unit ||
			v.Resolution != w.Resolution || v.Value != w.Value && !(v.Value != v.Value && w.Value != w.Value) {
			return false
		}
	}
	return true
}

// foldNow writes everything into the bbolt file now, as the commit loop
// does every foldEvery windows: for tests of what happens in bbolt.
func (b *Buffer) foldNow() error {
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	return b.fold(0)
}
