package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatewayd/buffer"
	"gatewayd/internal/reading"
)

// gatewayd buffer stats shows messages per reading; export --dead shows only
// the dead letters; requeue puts them back (by reason) for the next run.
func TestBufferCommands(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	b, err := buffer.Open(buffer.Options{Path: path, CommitInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC()
	var ss []reading.Sample
	for i, sensor := range []string{"air", "room", "attic", "cellar"} {
		ss = append(ss, reading.Sample{Sensor: sensor, Stamp: reading.Stamp{Time: now.Add(time.Duration(i) * time.Second), Synced: true},
			Values: []reading.Value{{Measurement: "temperature", Property: "temperature", Unit: "°C", Value: 21.5, Resolution: 0.01},
				{Measurement: "pressure", Property: "pressure", Unit: "hPa", Value: 1009.25, Resolution: 0.01}}})
	}
	if err := b.Append(ctx, ss); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Take(100, reading.Filter{}); err != nil {
		t.Fatal(err)
	}
	// One message acks two whole samples; the platform's script refuses
	// the other two (one of them only its pressure).
	if err := b.Ack(reading.Refs(ss[:2])); err != nil {
		t.Fatal(err)
	}
	if err := b.DeadLetter([]reading.Ref{{ID: ss[2].ID}}, "26010 script error"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeadLetter([]reading.Ref{{ID: ss[3].ID, Measurement: "pressure"}}, "26002 pressure unknown"); err != nil {
		t.Fatal(err)
	}
	b.Release(reading.IDs(ss))
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := Run(ctx, append([]string{"buffer"}, args...), &out, &errb); err != nil {
			t.Fatalf("buffer %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	st := run("stats", "--path", path)
	for _, want := range []string{"1 samples, 1 values", "dead letters          2", "messages per reading  0.500 (1 messages acked 2 readings, 4 values)"} {
		if !strings.Contains(st, want) {
			t.Fatalf("stats lacks %q:\n%s", want, st)
		}
	}
	dead := run("export", "--dead", "--json", "--path", path)
	if n := strings.Count(dead, "\n"); n != 3 || strings.Contains(dead, `"pending"`) || !strings.Contains(dead, "26002") {
		t.Fatalf("export --dead:\n%s", dead)
	}
	if out := run("requeue", "--reason", "26010", "--path", path); !strings.Contains(out, "requeued 1 dead letters (1 left)") {
		t.Fatalf("requeue: %s", out)
	}
	if st := run("stats", "--path", path); !strings.Contains(st, "2 samples, 3 values") || !strings.Contains(st, "dead letters          1") {
		t.Fatalf("stats after requeue:\n%s", st)
	}
	var errb bytes.Buffer
	if err := Run(ctx, []string{"buffer", "resend", "--path", path}, &bytes.Buffer{}, &errb); exitCode(err) != 2 || !strings.Contains(errb.String(), "requeue") {
		t.Fatalf("unknown subcommand: %v %s", err, errb.String())
	}
}
