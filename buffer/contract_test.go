package buffer_test

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

// TestSourceContract runs the reading.Source contract suite against the
// real buffer, the reference every test double is held to. Three ways the
// buffer serves the same samples:
//   - memory: group commit that never fires during the test; Take, Ack and
//     Release are served from the ledger;
//   - file: CommitInterval 0, a bbolt transaction per Append, Ack and
//     DeadLetter; samples not in flight live only in the file, so Take
//     walks bbolt (forwards and, for NewestFirst, backwards);
//   - commit-each-change: CommitSize 1, so the commit loop writes journal
//     windows and folds while the suite takes, acks and releases.
func TestSourceContract(t *testing.T) {
	for _, v := range []struct {
		name string
		o    buffer.Options
	}{
		{"memory", buffer.Options{CommitInterval: time.Hour}},
		{"file", buffer.Options{CommitInterval: 0}},
		{"commit-each-change", buffer.Options{CommitInterval: time.Hour, CommitSize: 1}},
	} {
		t.Run(v.name, func(t *testing.T) {
			sourcetest.Run(t, func(t *testing.T) sourcetest.Harness {
				o := v.o
				o.Path = filepath.Join(t.TempDir(), "buffer.db")
				o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
				b, err := buffer.Open(o)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				t.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					if err := b.Close(ctx); err != nil {
						t.Errorf("Close: %v", err)
					}
				})
				return sourcetest.Harness{Source: b, Append: func(ss []reading.Sample) error {
					return b.Append(context.Background(), ss)
				}}
			})
		})
	}
}
