package buffer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// storedWeek appends rounds of three BME280s sampled together every 10 s
// (three values at 0.01 each) into a buffer with the default bounds
// (max_size 64 MiB), folding every 30 rounds (5 minutes) as the commit loop
// does while the link is down, and returns the bbolt file's size and the
// values it holds.
func storedWeek(tb testing.TB, dir string, rounds int) (int64, int) {
	tb.Helper()
	path := filepath.Join(dir, fmt.Sprintf("week-%d.db", rounds))
	_ = os.Remove(path)
	_ = os.Remove(path + journalSuffix)
	b, err := Open(Options{Path: path, MaxSize: 64 << 20, CommitInterval: time.Hour, Logger: testLogger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	b.db.NoSync = true // the layout does not depend on fsync; the run takes seconds, not minutes
	ctx := context.Background()
	for r := 0; r < rounds; r++ {
		for _, sensor := range []string{"air", "room", "attic"} {
			if err := b.Append(ctx, mkBME(sensor, r, 1)); err != nil {
				tb.Fatal(err)
			}
		}
		if (r+1)%30 == 0 {
			if err := b.foldNow(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := b.Close(ctx); err != nil {
		tb.Fatal(err)
	}
	s, err := Inspect(path)
	if err != nil || s.Depth != 3*rounds || s.Values != 9*rounds {
		tb.Fatalf("stored %d samples, %d values, want %d and %d (%v)", s.Depth, s.Values, 3*rounds, 9*rounds, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Size(), s.Values
}

// TestBytesPerStoredValue: a day of three BME280s at 10 s stays within the
// target of 28 bytes per stored value, and EstimateFileBytes is within 15%.
// BenchmarkStorage measures the whole week.
func TestBytesPerStoredValue(t *testing.T) {
	const rounds = 8640 // one day
	size, values := storedWeek(t, t.TempDir(), rounds)
	per := float64(size) / float64(values)
	est := EstimateFileBytes(3*rounds, 3)
	t.Logf("a day: %d values in %d bytes: %.1f B/value; estimate %d bytes", values, size, per, est)
	if per > 28 {
		t.Fatalf("%.1f bytes per stored value, target 28", per)
	}
	// The file grows in steps of up to 1 MiB: compare within one step.
	if d := size - est; d < -est*15/100 || d > est*15/100+1<<20 {
		t.Fatalf("estimate %d bytes, file %d", est, size)
	}
}

// BenchmarkStorage prints the bytes per stored value of a generated week of
// three BME280s (temperature, humidity, pressure at 0.01) sampled every 10 s:
// 544,320 values, the bbolt file's size divided by them.
func BenchmarkStorage(b *testing.B) {
	const rounds = 7 * 8640
	dir := b.TempDir()
	var size int64
	var values int
	for i := 0; i < b.N; i++ {
		size, values = storedWeek(b, dir, rounds)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(values), "values")
	b.ReportMetric(float64(size)/(1<<20), "file-MiB")
	b.ReportMetric(float64(size)/float64(values), "B/value")
	b.ReportMetric(float64(EstimateFileBytes(3*rounds, 3))/(1<<20), "estimate-MiB")
	// 30 days of the same in the default max_size, by the estimate.
	b.ReportMetric(float64(EstimateFileBytes(30*3*8640, 3))/float64(UsableBytes(64<<20)), "30d/usable-64MiB")
}
