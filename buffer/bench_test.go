package buffer

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"gatewayd/internal/reading"
)

// writeBytes returns this process's write_bytes from /proc/self/io: bytes of
// page cache it dirtied, counted when a page is first dirtied, which fsync
// (bbolt syncs every commit) then forces to the device. It does not include
// the filesystem journal the kernel writes on our behalf (jbd2 on ext4), so
// the card sees somewhat more than this.
func writeBytes(tb testing.TB) int64 {
	tb.Helper()
	f, err := os.Open("/proc/self/io")
	if err != nil {
		tb.Fatalf("write_bytes: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "write_bytes: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatal("write_bytes: not in /proc/self/io")
	return 0
}

// scenario simulates readings at 1 reading/s: in group mode the commit loop's
// ticker is replaced by explicit commits every perWindow readings (a 10 s
// window at 1 reading/s), which is exactly what the ticker does, without
// waiting for real time. Online, every reading is taken and acked at once
// (the platform answers within a second, long before the window closes);
// offline nothing is acked. It returns bytes written per reading, measured
// from after Open and the backlog (one-offs) to the last window (Close's
// final fold happens once per run, not per window).
func scenario(tb testing.TB, dir string, group, online bool, n, perWindow, backlog int) float64 {
	tb.Helper()
	o := Options{Path: filepath.Join(dir, fmt.Sprintf("g%t-o%t.db", group, online)), Logger: testLogger(tb)}
	if group {
		o.CommitInterval = time.Hour // never fires: the loop below drives commits
		o.CommitSize = 1 << 30
	}
	_ = os.Remove(o.Path)
	b, err := Open(o)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	if !online && backlog > 0 {
		// An outage that has been going on for a while: the tree is
		// as deep as it will usually be, and that costs pages per commit.
		for i := 0; i < backlog; i += 1000 {
			if err := b.Append(ctx, mkReadings(i, 1000)); err != nil {
				tb.Fatal(err)
			}
			if err := b.commit(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	// Start from a quiet file: the backlog folded into bbolt.
	if err := b.foldNow(); err != nil {
		tb.Fatal(err)
	}
	rs := mkReadings(backlog, n)
	before := writeBytes(tb)
	for i := range rs {
		if err := b.Append(ctx, rs[i:i+1]); err != nil {
			tb.Fatal(err)
		}
		if online {
			got, err := b.Take(10, reading.Filter{})
			if err != nil || len(got) != 1 {
				tb.Fatalf("take: %v %d", err, len(got))
			}
			if err := b.Ack(reading.Refs(got)); err != nil {
				tb.Fatal(err)
			}
		}
		if group && (i+1)%perWindow == 0 {
			if err := b.commit(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	// Every reading is durable now (journal or bbolt); what Close writes
	// on top (a last fold) happens once per run of the daemon, not per
	// window, so it is left out.
	after := writeBytes(tb)
	if err := b.Close(ctx); err != nil {
		tb.Fatal(err)
	}
	if !online {
		if s, err := Inspect(o.Path); err != nil || s.Depth != n+backlog {
			tb.Fatalf("offline: %d readings stored, want %d (%v)", s.Depth, n+backlog, err)
		}
	}
	return float64(after-before) / float64(n)
}

// stockNaive is the baseline the issue quotes: a plain bbolt file with
// default options, one transaction per reading appended and, online, one
// per reading acked.
func stockNaive(tb testing.TB, dir string, online bool, n int) float64 {
	tb.Helper()
	path := filepath.Join(dir, fmt.Sprintf("stock-%t.db", online))
	_ = os.Remove(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucketReadings); return err }); err != nil {
		tb.Fatal(err)
	}
	rs := mkReadings(0, n)
	before := writeBytes(tb)
	for i := range rs {
		rs[i].ID = reading.ID(i + 1)
		k := idKey(rs[i].ID)
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketReadings).Put(k, encodeV1(&rs[i])) }); err != nil {
			tb.Fatal(err)
		}
		if online {
			if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketReadings).Delete(k) }); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return float64(writeBytes(tb)-before) / float64(n)
}

// BenchmarkBytesPerReading prints bytes written to storage per reading for
// stock bbolt used naively (the baseline), for this buffer in its
// naive mode (one transaction per Append and per Ack, in our file format) and
// for group commit with a 10 s window, online and offline, all in one run.
func BenchmarkBytesPerReading(b *testing.B) {
	// 600 readings at 1 reading/s = 60 windows of 10 s (two journal folds);
	// offline on top of a 20,000-reading backlog (5.5 hours at 1/s).
	const n, perWindow, backlog = 600, 10, 20000
	dir := b.TempDir()
	var stockOff, stockOn, naiveOff, naiveOn, groupOff, groupOn, group3 float64
	for i := 0; i < b.N; i++ {
		// Three readings a second (one BME280 sampled every second):
		// 30 readings per 10 s window.
		group3 += scenario(b, dir, true, false, 3*n, 3*perWindow, backlog)
		stockOff += stockNaive(b, dir, false, n)
		stockOn += stockNaive(b, dir, true, n)
		naiveOff += scenario(b, dir, false, false, n, perWindow, backlog)
		naiveOn += scenario(b, dir, false, true, n, perWindow, backlog)
		groupOff += scenario(b, dir, true, false, n, perWindow, backlog)
		groupOn += scenario(b, dir, true, true, n, perWindow, backlog)
	}
	N := float64(b.N)
	stockOff, stockOn, naiveOff, naiveOn, groupOff, groupOn = stockOff/N, stockOn/N, naiveOff/N, naiveOn/N, groupOff/N, groupOn/N
	b.ReportMetric(group3/N, "group10s-offline-3perS-B/reading")
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(stockOff, "stock-bbolt-naive-offline-B/reading")
	b.ReportMetric(stockOn, "stock-bbolt-naive-online-B/reading")
	b.ReportMetric(naiveOff, "naive-offline-B/reading")
	b.ReportMetric(naiveOn, "naive-online-B/reading")
	b.ReportMetric(groupOff, "group10s-offline-B/reading")
	b.ReportMetric(groupOn, "group10s-online-B/reading")
	b.ReportMetric(stockOff/max(groupOff, 1), "offline-stock/group")
	b.ReportMetric(naiveOff/max(groupOff, 1), "offline-naive/group")
	// Online, group commit normally writes nothing at all; the ratio is
	// then taken against 1 byte to stay finite.
	b.ReportMetric(naiveOn/max(groupOn, 1), "online-naive/group")
}

// appendRun appends n readings one per call, as a sensor loop does, and
// returns durable readings per second: the clock stops after Close, so the
// group-commit figure includes writing everything.
func appendRun(tb testing.TB, dir string, interval time.Duration, n int) float64 {
	tb.Helper()
	o := Options{Path: filepath.Join(dir, fmt.Sprintf("append-%v.db", interval)), CommitInterval: interval, Logger: testLogger(tb)}
	_ = os.Remove(o.Path)
	b, err := Open(o)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	rs := mkReadings(0, n)
	start := time.Now()
	for i := range rs {
		if err := b.Append(ctx, rs[i:i+1]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := b.Close(ctx); err != nil {
		tb.Fatal(err)
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkAppend prints append throughput with group commit and with one
// transaction per reading, measured in the same run.
func BenchmarkAppend(b *testing.B) {
	dir := b.TempDir()
	var naive, group float64
	for i := 0; i < b.N; i++ {
		naive += appendRun(b, dir, 0, 500)
		group += appendRun(b, dir, 10*time.Second, 50000)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(naive/float64(b.N), "naive-readings/s")
	b.ReportMetric(group/float64(b.N), "group-readings/s")
	b.ReportMetric(group/naive, "group/naive")
}

// drainRun fills a buffer with n committed readings (an outage's backlog),
// then takes and acks them in batches of 100 as the uplink does, until empty
// and committed; it returns readings drained per second.
func drainRun(tb testing.TB, dir string, interval time.Duration, n int) float64 {
	tb.Helper()
	o := Options{Path: filepath.Join(dir, fmt.Sprintf("drain-%v.db", interval)), CommitInterval: time.Hour, Logger: testLogger(tb)}
	_ = os.Remove(o.Path)
	b, err := Open(o)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < n; i += 1000 {
		if err := b.Append(ctx, mkReadings(i, min(1000, n-i))); err != nil {
			tb.Fatal(err)
		}
	}
	if err := b.Close(ctx); err != nil {
		tb.Fatal(err)
	}
	o.CommitInterval = interval
	if b, err = Open(o); err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	got := 0
	for got < n {
		rs, err := b.Take(100, reading.Filter{})
		if err != nil || len(rs) == 0 {
			tb.Fatalf("take after %d: %v", got, err)
		}
		if err := b.Ack(reading.Refs(rs)); err != nil {
			tb.Fatal(err)
		}
		got += len(rs)
	}
	if err := b.Close(ctx); err != nil {
		tb.Fatal(err)
	}
	el := time.Since(start)
	if s, err := Inspect(o.Path); err != nil || s.Depth != 0 {
		tb.Fatalf("after drain: depth %d (%v)", s.Depth, err)
	}
	return float64(n) / el.Seconds()
}

// BenchmarkDrain prints drain (take + ack) throughput of a 20,000-reading
// backlog, group commit vs a transaction per ack batch.
func BenchmarkDrain(b *testing.B) {
	dir := b.TempDir()
	var naive, group float64
	for i := 0; i < b.N; i++ {
		naive += drainRun(b, dir, 0, 20000)
		group += drainRun(b, dir, 10*time.Second, 20000)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(naive/float64(b.N), "naive-readings/s")
	b.ReportMetric(group/float64(b.N), "group-readings/s")
}

// BenchmarkOpen prints how long Open takes on a file holding 100,000
// readings (about 28 hours at 1 reading/s): the raw page walk, bbolt's
// freelist rebuild, decoding every record and bbolt's consistency check
// all read the whole file once each.
func BenchmarkOpen(b *testing.B) {
	o := Options{Path: filepath.Join(b.TempDir(), "open.db"), CommitInterval: time.Hour, Logger: testLogger(b)}
	buf, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 100000; i += 10000 {
		if err := buf.Append(ctx, mkReadings(i, 10000)); err != nil {
			b.Fatal(err)
		}
		if err := buf.commit(); err != nil {
			b.Fatal(err)
		}
	}
	if err := buf.Close(ctx); err != nil {
		b.Fatal(err)
	}
	fi, _ := os.Stat(o.Path)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf, err := Open(o)
		if err != nil {
			b.Fatal(err)
		}
		if err := buf.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(fi.Size())/(1<<20), "file-MiB")
}
