package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatewayd/buffer"
)

func TestParseBench(t *testing.T) {
	out := `goos: linux
BenchmarkBacklogDrain/iotsim/unlimited-2         	       1	     15324 sync-values/s	    105904 values/s	         6.911 x-faster
BenchmarkBytesPerReading 	      12	         0 ns/op	     34065 stock-bbolt-naive-offline-B/reading
PASS`
	bs := parseBench(out)
	if len(bs) != 2 {
		t.Fatalf("parsed %d lines, want 2: %+v", len(bs), bs)
	}
	if bs[0].name != "BenchmarkBacklogDrain/iotsim/unlimited" || bs[0].n != 1 || bs[0].metrics["sync-values/s"] != 15324 || bs[0].metrics["values/s"] != 105904 {
		t.Errorf("first line parsed as %+v", bs[0])
	}
	if bs[1].name != "BenchmarkBytesPerReading" || bs[1].metrics["stock-bbolt-naive-offline-B/reading"] != 34065 {
		t.Errorf("second line parsed as %+v", bs[1])
	}
}

func TestPerSecond(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	peak, idx, b := perSecond([]time.Time{at(10), at(1100), at(1200), at(1300), at(2500)}, t0)
	if peak != 3 || idx != 1 || len(b) != 3 || b[0] != 1 || b[2] != 1 {
		t.Errorf("perSecond = %d at %d, %v", peak, idx, b)
	}
}

// A reading that was taken but neither delivered, buffered nor set aside
// must show up as lost; a second acceptance as a duplicate; readings
// stamped after the cutoff are outside the count.
func TestLedgerTally(t *testing.T) {
	l := newLedger()
	l.cutoff = time.UnixMilli(10_000)
	l.taken = 5
	l.deliver(key{"a", 1000})
	l.deliver(key{"a", 1000}) // resent
	l.deliver(key{"b", 1000})
	l.deliver(key{"c", 20_000}) // after the cutoff
	l.remaining[key{"a", 2000}] = true
	l.dead[key{"b", 2000}] = true
	tl := l.tally()
	if tl.unique != 2 || tl.dups != 1 || tl.remaining != 1 || tl.dead != 1 || tl.lost != 1 {
		t.Errorf("tally = %+v, want 2 delivered, 1 duplicate, 1 buffered, 1 set aside, 1 lost", tl)
	}
	l.remaining[key{"c", 3000}] = true
	if tl := l.tally(); tl.lost != 0 {
		t.Errorf("all accounted for, yet lost = %d", tl.lost)
	}
}

func TestFromMQTT(t *testing.T) {
	l := newLedger()
	l.fromMQTT([]byte(`[{"property":"p","time_ms":5},{"property":"q","time_ms":5}]`))
	if len(l.delivered) != 2 {
		t.Errorf("fromMQTT recorded %v", l.delivered)
	}
}

// The proxy counts an attempt whether or not the broker behind it is up,
// and forwards bytes when it is.
func TestProxyCountsAttempts(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	px, err := startProxy(up.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer px.close()
	t0 := time.Now()
	c, err := net.Dial("tcp", px.Addr())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the proxy: %q, %v", buf, err)
	}
	c.Close()
	up.Close() // the broker goes away: attempts still count
	for i := 0; i < 3; i++ {
		if c, err := net.Dial("tcp", px.Addr()); err == nil {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if n, _ := c.Read(buf); n != 0 {
				t.Errorf("read %d bytes from a proxy with no upstream", n)
			}
			c.Close()
		}
	}
	if n := len(px.since(t0)); n != 4 {
		t.Errorf("proxy counted %d attempts, want 4", n)
	}
}

// The harness's smallest real trial: the in-process pipeline with one of
// three emulated sensors vanishing for a second. Every reading taken must
// be accounted for, and the sensor must come back.
func TestSensorFaultTrial(t *testing.T) {
	if testing.Short() {
		t.Skip("real pipeline trial (about 5 s)")
	}
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sz := small
	sz.FaultWindow, sz.RecoverBound, sz.SampleEvery = time.Second, 20*time.Second, 100*time.Millisecond
	h := &harness{ctx: ctx, sz: sz, work: work, log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), report: &report{}}
	defer h.cleanup()
	s := &section{head: make([]string, 11)}
	if err := h.faultSensor(s); err != nil {
		t.Fatal(err)
	}
	if len(s.rows) != 1 {
		t.Fatalf("rows: %v", s.rows)
	}
	row := s.rows[0]
	taken, lost, recovered := row[2], row[8], row[9]
	if taken == "0" || lost != "0" || recovered != "yes" {
		t.Errorf("sensor trial: taken %s, lost %s, recovered %s (%s)", taken, lost, recovered, row[10])
	}
	if !strings.Contains(row[10], "s1 took 0 samples while gone") {
		t.Errorf("the vanished sensor kept sampling: %s", row[10])
	}
}

// The SIGKILL row reads e2e's summary line; a change of its wording must
// fail here, not silently drop the row.
func TestKill9Line(t *testing.T) {
	line := "crash_test.go:291: 29 kills; 1225 samples, 3675 values delivered; 720 committed at some kill, all delivered; " +
		"12 found in the file at a kill already delivered (in flight); 9 delivered more than once"
	m := kill9Line.FindStringSubmatch(line)
	if m == nil || m[1] != "29" || m[3] != "3675" || m[4] != "720" || m[6] != "9" {
		t.Errorf("kill9Line on %q: %q", line, m)
	}
	src, err := os.ReadFile("../../e2e/crash_test.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), `"%d kills; %d samples, %d values delivered; %d committed at some kill, all delivered; "+`) {
		t.Error("e2e's TestKill9EndToEnd no longer prints the line kill9Line reads")
	}
}

// The generated backlog holds exactly the week: 3 BME280s every
// 10 s for 7 days = 181,440 samples, 544,320 values, every one with its own
// identity, all stored in the file.
func TestGenBacklog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	end := time.Now()
	keys, err := genBacklog(context.Background(), path, 1, end)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 8640*3*3 {
		t.Errorf("a day: %d distinct values, want %d", len(keys), 8640*3*3)
	}
	st, err := buffer.Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Depth != 8640*3 || st.Values != 8640*3*3 {
		t.Errorf("file holds %d samples, %d values; want %d, %d", st.Depth, st.Values, 8640*3, 8640*3*3)
	}
	if !keys[key{"s2_pressure", end.Add(-10 * time.Second).UnixMilli()}] || keys[key{"s2_pressure", end.UnixMilli()}] {
		t.Error("the backlog should end one round before end")
	}
}

// The targets table counts what was met, and a figure that was never
// measured is never "met".
func TestTargetTable(t *testing.T) {
	r := &report{}
	a := r.target("syscalls per reading at 10 readings/s", 12, "", "cmd a")
	b := r.target("CPU per delivered reading at 10 readings/s", 1.0/3, "", "cmd b")
	r.target("peak RSS (VmHWM) at 10 readings/s", 12, "MiB", "cmd c") // never measured
	a.Set(13, "13 calls")
	b.Set(0.3, "ratio")
	md := r.markdown()
	for _, want := range []string{"(1 of 3 met)", "| 13 | **not met** | 13 calls | `cmd a` |", "**not measured**"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if i, j := strings.Index(md, "CPU per delivered"), strings.Index(md, "syscalls per reading"); i < 0 || j < 0 || i > j {
		t.Error("targets are not in the issue's order")
	}
}
