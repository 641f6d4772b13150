package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatewayd/internal/config"
)

// TestBufferStartingTellsSystemd: while the buffer retries I/O errors at
// open, the daemon tells systemd through $NOTIFY_SOCKET that the start goes
// on and for how much longer (EXTEND_TIMEOUT_USEC), and why (STATUS).
func TestBufferStartingTellsSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	o := bufferOptions(&config.Config{}, newLogger(&strings.Builder{}, "error"))
	if o.Starting == nil {
		t.Fatal("buffer options carry no Starting callback")
	}
	o.Starting("buffer: open: I/O error, retry 1 in 250ms: input/output error", 30250*time.Millisecond)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := "EXTEND_TIMEOUT_USEC=30250000\nSTATUS=buffer: open: I/O error, retry 1 in 250ms: input/output error"
	if got := string(buf[:n]); got != want {
		t.Fatalf("sd_notify sent %q, want %q", got, want)
	}
}
