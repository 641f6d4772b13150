package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The unit's ExecReload= is `gatewayd reload`: it sends SIGHUP to the
// daemon ($MAINPID) and waits until the daemon says how the reload ended,
// so `systemctl reload gatewayd` returns once the new config runs, and
// fails (the journal says why) when the edit was refused and the running
// config stays. It needs nothing but the binary: a minimal Debian or
// Raspberry Pi OS has no /bin/kill (procps), which the unit used before.
//
// The daemon's side: under systemd (RUNTIME_DIRECTORY set, from the unit's
// RuntimeDirectory=) it writes the outcome of every start and SIGHUP to
// reloadStatusFile there, as "<generation> <started|applied|refused>" on
// the first line and the reason on the next ones; generation counts the
// SIGHUPs handled. The file lives on /run (tmpfs): no SD-card writes.

const reloadStatusFile = "reload"

// reloadStatus is the daemon's side; the zero value (no directory) does
// nothing.
type reloadStatus struct{ dir string }

func (r reloadStatus) write(gen int, outcome, detail string) error {
	if r.dir == "" {
		return nil
	}
	body := fmt.Sprintf("%d %s\n", gen, outcome)
	if detail != "" {
		body += strings.TrimRight(detail, "\n") + "\n"
	}
	tmp := filepath.Join(r.dir, "."+reloadStatusFile+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o640); err != nil {
		return fmt.Errorf("reload status: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(r.dir, reloadStatusFile)); err != nil {
		return fmt.Errorf("reload status: %w", err)
	}
	return nil
}

// readReloadStatus returns the generation and outcome in dir's status
// file; gen is -1 when there is none (yet).
func readReloadStatus(dir string) (gen int, outcome, detail string) {
	b, err := os.ReadFile(filepath.Join(dir, reloadStatusFile))
	if err != nil {
		return -1, "", ""
	}
	first, rest, _ := strings.Cut(string(b), "\n")
	g, o, ok := strings.Cut(first, " ")
	n, err := strconv.Atoi(g)
	if !ok || err != nil {
		return -1, "", ""
	}
	return n, o, strings.TrimSpace(rest)
}

func cmdReload(_ context.Context, a *app, args []string) error {
	fs := newFlags(a, "reload")
	pidFlag := fs.Int("pid", 0, "the daemon's process id (default: $MAINPID, which systemd sets for ExecReload=)")
	dir := fs.String("status-dir", os.Getenv("RUNTIME_DIRECTORY"), "where the daemon reports the outcome (default: $RUNTIME_DIRECTORY)")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the daemon to apply or refuse the config")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pid := *pidFlag
	if pid == 0 {
		pid, _ = strconv.Atoi(os.Getenv("MAINPID"))
	}
	if pid <= 0 {
		return &exitError{2, errors.New("no daemon to reload: give --pid, or run it as the unit's ExecReload= (which sets $MAINPID)")}
	}
	before, _, _ := readReloadStatus(*dir)
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("SIGHUP to pid %d: %w", pid, err)
	}
	if *dir == "" {
		fmt.Fprintf(a.stderr, "gatewayd reload: sent SIGHUP to pid %d; not waiting for the outcome (no --status-dir or $RUNTIME_DIRECTORY)\n", pid)
		return nil
	}
	deadline := time.Now().Add(*timeout)
	for {
		gen, outcome, detail := readReloadStatus(*dir)
		if gen > before && gen > 0 {
			switch outcome {
			case "applied":
				fmt.Fprintf(a.stderr, "gatewayd reload: pid %d runs the new config\n", pid)
				return nil
			case "refused":
				fmt.Fprintf(a.stderr, "gatewayd reload: pid %d refused the new config and keeps the running one: %s\n", pid, detail)
				return &exitError{1, errReported}
			}
			return fmt.Errorf("pid %d reported %q", pid, outcome)
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("pid %d exited during the reload", pid)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d did not report the reload's outcome within %v", pid, *timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
