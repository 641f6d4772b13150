package buffer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

// TestCrashChild is the process TestKill9 kills: it is a no-op unless
// started by it (BUFFER_CRASH_CHILD names the file). It appends readings
// whose Value is a running sequence number, takes and acks some as an uplink
// would, and reports on stdout, unbuffered, each reading it appended ("A id
// seq"), each it is about to ack ("K id"), and after each commit the IDs it
// wrote ("W id") and deleted ("D id").
func TestCrashChild(t *testing.T) {
	path := os.Getenv("BUFFER_CRASH_CHILD")
	if path == "" {
		return
	}
	seq, _ := strconv.Atoi(os.Getenv("BUFFER_CRASH_SEQ"))
	ackEvery, _ := strconv.Atoi(os.Getenv("BUFFER_CRASH_ACK_EVERY"))
	var outMu sync.Mutex
	say := func(s string) {
		outMu.Lock()
		defer outMu.Unlock()
		_, _ = os.Stdout.WriteString(s)
	}
	b, err := Open(Options{
		Path: path, CommitInterval: 4 * time.Millisecond, CommitSize: 64, Logger: testLogger(t),
		// Compact whenever a drain leaves the file mostly empty, so kills
		// land inside compactions too.
		compactMin: 8 << 10, compactEvery: 10 * time.Millisecond,
		onCommit: func(w, d []reading.ID) {
			var sb strings.Builder
			for _, id := range w {
				fmt.Fprintf(&sb, "W %d\n", id)
			}
			for _, id := range d {
				fmt.Fprintf(&sb, "D %d\n", id)
			}
			say(sb.String())
		},
	})
	if err != nil {
		say("E " + err.Error() + "\n")
		os.Exit(3)
	}
	say("O\n")
	go func() {
		// Report compactions, for the parent's log.
		var n uint64
		for {
			time.Sleep(5 * time.Millisecond)
			if c := b.Stats().Compactions; c > n {
				n = c
				say("C\n")
			}
		}
	}()
	go func() {
		for i := 0; ; i++ {
			// A slow link: the backlog grows, and acks hit readings
			// both before and after their commit.
			rs, err := b.Take(16, reading.Filter{NewestFirst: i%4 == 0})
			if err != nil {
				return
			}
			if i%ackEvery == 0 && len(rs) > 0 {
				// Said before acking: a kill right after the
				// commit that deletes them must not look like a loss.
				var sb strings.Builder
				for _, r := range rs {
					fmt.Fprintf(&sb, "K %d\n", r.ID)
				}
				say(sb.String())
				_ = b.Ack(reading.Refs(rs))
			} else {
				b.Release(reading.IDs(rs))
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); seq++ {
		rs := []reading.Sample{{Sensor: "crash", Stamp: reading.Stamp{Time: time.Unix(int64(seq), 0).UTC(), Synced: true},
			Values: []reading.Value{{Measurement: "seq", Value: float64(seq)}}}}
		if err := b.Append(ctx, rs); err != nil {
			say("E " + err.Error() + "\n")
			os.Exit(3)
		}
		say(fmt.Sprintf("A %d %d\n", rs[0].ID, seq))
		time.Sleep(50 * time.Microsecond)
	}
	os.Exit(4) // never reached in the test: the parent kills it first
}

// TestKill9 kills a process using the buffer with SIGKILL at random moments,
// 15 times on the same file, and checks after each: the file opens without
// being set aside, holds every reading whose commit was reported and whose
// deletion was not, holds each reading at most once under one ID, and IDs
// keep increasing across restarts.
func TestKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	rng := rand.New(rand.NewPCG(5, 6))
	committed := map[reading.ID]bool{} // reported written and not deleted
	acked := map[reading.ID]bool{}     // Ack was called (it may have been deleted unreported)
	var maxID reading.ID
	seq, compactions := 0, 0
	for round := 0; round < 15; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		// Even rounds build a backlog (the link is slow), odd ones drain
		// it, which makes the file mostly free and triggers compactions.
		ackEvery := 8
		if round%2 == 1 {
			ackEvery = 1
		}
		cmd.Env = append(os.Environ(), "BUFFER_CRASH_CHILD="+path, "BUFFER_CRASH_SEQ="+strconv.Itoa(seq),
			"BUFFER_CRASH_ACK_EVERY="+strconv.Itoa(ackEvery))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan []string)
		go func() {
			var ls []string
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				ls = append(ls, sc.Text())
			}
			lines <- ls
		}()
		time.Sleep(time.Duration(30+rng.IntN(250)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		ls := <-lines
		_ = cmd.Wait()

		roundMin := reading.ID(0)
		appended := 0
		for _, l := range ls {
			f := strings.Fields(l)
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case "C":
				compactions++
			case "E":
				t.Fatalf("round %d: child failed: %s", round, l)
			case "A", "W", "D", "K":
				if len(f) < 2 {
					continue // cut off by the kill
				}
				v, err := strconv.ParseUint(f[1], 10, 64)
				if err != nil {
					continue
				}
				id := reading.ID(v)
				switch f[0] {
				case "A":
					appended++
					if roundMin == 0 {
						roundMin = id
					}
				case "W":
					committed[id] = true
				case "D":
					delete(committed, id)
				case "K":
					acked[id] = true
				}
			}
		}
		if roundMin != 0 && roundMin <= maxID {
			t.Fatalf("round %d: ID %d reuses the range up to %d", round, roundMin, maxID)
		}

		// What survived.
		var buf bytes.Buffer
		if _, err := os.Stat(path); os.IsNotExist(err) && len(committed) == 0 {
			continue // killed before it created the file
		}
		if err := Export(path, &buf, true); err != nil {
			if os.Getenv("BUFFER_KEEP") != "" {
				raw, _ := os.ReadFile(path)
				_ = os.WriteFile(os.Getenv("BUFFER_KEEP"), raw, 0o600)
			}
			t.Fatalf("round %d: export after kill: %v", round, err)
		}
		file := map[reading.ID]bool{}
		seqs := map[float64]reading.ID{}
		dec := json.NewDecoder(&buf)
		for dec.More() {
			var r ExportRecord
			if err := dec.Decode(&r); err != nil {
				t.Fatal(err)
			}
			if r.DecodeError != "" || r.Sensor != "crash" || r.Time.Unix() != int64(r.Value) {
				t.Fatalf("round %d: damaged record %+v", round, r)
			}
			if other, dup := seqs[r.Value]; dup {
				t.Fatalf("round %d: reading %v stored twice, as %d and %d", round, r.Value, other, r.ID)
			}
			seqs[r.Value] = r.ID
			file[r.ID] = true
			maxID = max(maxID, r.ID)
			seq = max(seq, int(r.Value)+1)
		}
		for id := range committed {
			if !file[id] {
				if !acked[id] {
					t.Fatalf("round %d: committed reading %d lost", round, id)
				}
				delete(committed, id) // acked, deleted, killed before it said so
			}
		}
		for _, l := range ls {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "A" {
				v, _ := strconv.ParseUint(f[1], 10, 64)
				s, _ := strconv.Atoi(f[2])
				maxID = max(maxID, reading.ID(v))
				seq = max(seq, s+1)
			}
		}
		if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
			t.Fatalf("round %d: file set aside as corrupt after kill -9", round)
		}
		t.Logf("round %d: %d appended, %d committed and not acked, %d in the file, %d compactions so far",
			round, appended, len(committed), len(file), compactions)
	}
}
