package buffer

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestNotifyCoalesces(t *testing.T) {
	b := mustOpen(t, Options{CommitInterval: time.Hour})
	select {
	case <-b.Notify():
		t.Fatal("notified before any append")
	default:
	}
	for i := 0; i < 5; i++ {
		mustAppend(t, b, mkReadings(i, 1))
	}
	select {
	case <-b.Notify():
	case <-time.After(time.Second):
		t.Fatal("no notification after appends")
	}
	select {
	case <-b.Notify():
		t.Fatal("five appends gave more than one pending notification")
	default:
	}
}

// TestDropLogRateLimited: a full disk drops on every append; the log says
// so once per interval with the count, not once per reading.
func TestDropLogRateLimited(t *testing.T) {
	var out bytes.Buffer
	d := newDropLog(slog.New(slog.NewTextHandler(&out, nil)), time.Hour)
	for i := 0; i < 1000; i++ {
		d.add(ReasonDiskFull, 1)
		d.errorf("commit failed", "i", i)
	}
	if n := strings.Count(out.String(), "readings dropped"); n != 1 {
		t.Fatalf("%d drop lines for 1000 drops:\n%s", n, out.String())
	}
	if n := strings.Count(out.String(), "commit failed"); n != 1 {
		t.Fatalf("%d error lines for 1000 errors", n)
	}
	d.flush()
	if !strings.Contains(out.String(), "count=999") {
		t.Fatalf("the held-back drops were not reported at flush:\n%s", out.String())
	}
}
