package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/buffer"
	"gatewayd/internal/reading"
	"gatewayd/internal/testutil/sourcetest"
)

// TestRecSourceContract holds the in-process trials' recording wrapper
// (recSink and recSource around the real buffer) to the reading.Source
// contract suite: recording must not change what the uplink sees.
func TestRecSourceContract(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T) sourcetest.Harness {
		b, err := buffer.Open(buffer.Options{Path: filepath.Join(t.TempDir(), "buffer.db"), CommitInterval: time.Second,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatalf("open buffer: %v", err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := b.Close(ctx); err != nil {
				t.Errorf("close buffer: %v", err)
			}
		})
		p := &inproc{buf: b, taken: map[reading.Ref]bool{}, acked: map[reading.Ref]int{}, dead: map[reading.Ref]bool{},
			sampleVals: map[reading.ID][]string{}}
		sink := recSink{p}
		return sourcetest.Harness{Source: recSource{p}, Append: func(ss []reading.Sample) error {
			return sink.Append(context.Background(), ss)
		}}
	})
}
