// Command notifylisten stands in for systemd's notify socket in the deploy
// checks: it listens on a unixgram socket (what NOTIFY_SOCKET names) and
// prints every assignment it receives, one per line, prefixed with the
// milliseconds since it started. It exits on SIGTERM/SIGINT or after -max.
//
//	notifylisten -socket /tmp/x/notify.sock -max 2m >notify.log
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "notifylisten:", err)
		os.Exit(1)
	}
}

func run() error {
	path := flag.String("socket", "", "unixgram socket path to create")
	max := flag.Duration("max", 5*time.Minute, "exit after this long in any case")
	flag.Parse()
	if *path == "" {
		return errors.New("-socket is required")
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: *path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer os.Remove(*path)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *max)
	defer cancel()
	go func() { <-ctx.Done(); conn.Close() }()

	start := time.Now()
	buf := make([]byte, 64<<10)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
		ms := time.Since(start).Milliseconds()
		for _, line := range strings.Split(strings.TrimRight(string(buf[:n]), "\n"), "\n") {
			fmt.Printf("%d %s\n", ms, line)
		}
	}
}
