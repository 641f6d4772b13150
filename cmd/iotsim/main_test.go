package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestRunStartsAndStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	var out, errs syncBuf
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--tls", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--certs", dir, "--device", "pk:dn:secret"}, &out, &errs)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(errs.String(), "listening") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(errs.String(), "listening tls=127.0.0.1:") {
		t.Fatalf("not listening: %s", errs.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not stop within 5s")
	}
	for _, f := range []string{"iotsim-ca.pem", "iotsim-server.pem", "iotsim-server-key.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

func TestRunNeedsADevice(t *testing.T) {
	var b syncBuf
	if err := run(context.Background(), []string{"--tcp", "127.0.0.1:0"}, &b, &b); err == nil || !strings.Contains(err.Error(), "--device") {
		t.Fatalf("err = %v", err)
	}
	if err := run(context.Background(), []string{"--device", "pk:dn"}, &b, &b); err == nil {
		t.Fatal("a device without a secret was accepted")
	}
}
