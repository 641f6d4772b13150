package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gatewayd/buffer"
	"gatewayd/internal/reading"
	"gatewayd/internal/testutil"
)

// SIGTERM in the middle of draining a large backlog: the real gatewayd
// process exits cleanly within the shutdown bound, and every reading is
// either acknowledged by the platform or still in the buffer — none lost.
func TestSIGTERMDuringHeavyDrainLosesNothing(t *testing.T) {
	bin := testutil.Build(t, "./cmd/gatewayd")
	e := newE2E(t)
	cfgPath := e.config(t, e2eSecret)
	bufPath := filepath.Join(e.dir, "buffer.db")

	// A backlog of readings taken over the last few hours, one every ms
	// apart so each one's time identifies it.
	const backlog = 20000
	b, err := buffer.Open(buffer.Options{Path: bufPath, CommitInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Millisecond)
	want := map[int64]bool{}
	ss := make([]reading.Sample, backlog)
	for i := range ss {
		ts := base.Add(time.Duration(i) * time.Millisecond)
		ss[i] = reading.Sample{Sensor: "old", Stamp: reading.Stamp{Time: ts, Synced: true}, Values: []reading.Value{
			{Measurement: "temperature", Property: "backlog_temperature", Value: 20 + float64(i%100)/10, Unit: "°C", Resolution: 0.01}}}
		want[ts.UnixMilli()] = true
	}
	if err := b.Append(context.Background(), ss); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	sim := e.startSim(t)
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() { done <- cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	countBacklog := func() int {
		n := 0
		for _, a := range sim.Accepted() {
			if a.Property == "backlog_temperature" {
				n++
			}
		}
		return n
	}
	waitFor(t, 30*time.Second, "the drain to be under way", func() bool { return countBacklog() >= 1000 })
	if n := countBacklog(); n >= backlog {
		t.Fatalf("the whole backlog (%d) drained before SIGTERM; make it larger", n)
	}

	termAt := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		took := time.Since(termAt)
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, tail(stderr.String()))
		}
		t.Logf("exited %v after SIGTERM (bound %v)", took.Round(time.Millisecond), shutdownBound)
		if took > shutdownBound {
			t.Errorf("took %v to stop, bound is %v", took, shutdownBound)
		}
	case <-time.After(shutdownBound + 5*time.Second):
		t.Fatalf("still running %v after SIGTERM\n%s", shutdownBound+5*time.Second, tail(stderr.String()))
	}

	// Every backlog reading was delivered or is still buffered.
	delivered := map[int64]int{}
	for _, a := range sim.Accepted() {
		if a.Property == "backlog_temperature" {
			delivered[a.Time.UnixMilli()]++
		}
	}
	var out bytes.Buffer
	if err := buffer.Export(bufPath, &out, true); err != nil {
		t.Fatal(err)
	}
	kept := map[int64]bool{}
	dec := json.NewDecoder(&out)
	for dec.More() {
		var r buffer.ExportRecord
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		if r.Property == "backlog_temperature" {
			kept[r.Time.UnixMilli()] = true
		}
	}
	lost, dups, both := 0, 0, 0
	for ms := range want {
		if delivered[ms] > 0 && kept[ms] {
			both++ // in flight at SIGTERM: acknowledged too late, will be resent with its identity
		}
		if delivered[ms] == 0 && !kept[ms] {
			lost++
		}
		if delivered[ms] > 1 {
			dups++
		}
	}
	t.Logf("backlog %d: delivered %d, still buffered %d (of which in flight at SIGTERM %d), lost %d, delivered twice %d",
		backlog, len(delivered), len(kept), both, lost, dups)
	if lost > 0 {
		t.Errorf("%d readings lost", lost)
	}
	// The uplink waits (up to its 2 s grace) for the answers to what is in
	// flight, so nothing delivered stays buffered to be sent again.
	if both > 0 {
		t.Errorf("%d readings were delivered but not acknowledged before exit (will be duplicated)", both)
	}
	if dups > 0 {
		t.Errorf("%d readings delivered twice without a crash", dups)
	}
	if !strings.Contains(stderr.String(), "gatewayd stopped") {
		t.Errorf("no clean-stop log line:\n%s", tail(stderr.String()))
	}
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}
