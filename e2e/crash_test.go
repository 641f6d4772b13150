// Package e2e holds tests that run the real binaries together.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gatewayd/buffer"
	"gatewayd/internal/iotsim"
	"gatewayd/internal/testutil"
)

const (
	pk, dn, secret = "a1crashTest", "crash-1", "crash-secret"
)

// delivered counts what iotsim accepted, by value identity. In the Alink
// format a value travels as property + time taken (ms); all values of one
// sample share that time, and an emulated chip sampled every 100 ms never
// repeats it, so property@time identifies a value and the time a sample.
type delivered struct {
	mu sync.Mutex
	n  map[string]int
}

var acceptedLine = regexp.MustCompile(`^\S+ \S+ (\S+)=\S+ taken=(\S+) id=`)

func (d *delivered) read(r *bufio.Scanner) {
	for r.Scan() {
		if m := acceptedLine.FindStringSubmatch(r.Text()); m != nil {
			d.mu.Lock()
			d.n[m[1]+"@"+m[2]]++
			d.mu.Unlock()
		}
	}
}

func (d *delivered) count(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[id]
}

func identity(r buffer.ExportRecord) string {
	return r.Property + "@" + r.Time.Local().Format("15:04:05.000")
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	logs *bytes.Buffer
}

func start(t *testing.T, stdout func(*bufio.Scanner), bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{}), logs: &bytes.Buffer{}}
	p.cmd.Stderr = p.logs
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		if stdout != nil {
			stdout(sc)
		}
		for sc.Scan() {
		}
		_ = p.cmd.Wait()
	}()
	t.Cleanup(func() { p.stop(t, syscall.SIGKILL) })
	return p
}

// stop signals the process and waits for it, at most 10 s.
func (p *proc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop on %v", p.cmd.Path, sig)
	}
}

func waitPort(t *testing.T, port int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on port %d", port)
}

// TestKill9EndToEnd runs the real gatewayd with an emulated BME280 against
// the real iotsim and kills gatewayd with SIGKILL 29 times: while it ingests
// with the link up, while it ingests with the platform down, and right after
// a restart while it drains the backlog. After every kill it reads the buffer
// file with `gatewayd buffer export --json`: those are the readings that were
// committed. In the end every committed reading must have reached iotsim,
// and any reading iotsim accepted twice must have been in the buffer file at
// a kill (a send the dead process never saw acknowledged).
func TestKill9EndToEnd(t *testing.T) {
	gw := testutil.Build(t, "./cmd/gatewayd")
	sim := testutil.Build(t, "./cmd/iotsim")
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	ca, _, _, err := iotsim.GenerateCerts(certs)
	if err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePort(t)
	bufPath := filepath.Join(dir, "buffer.db")
	cfg := filepath.Join(dir, "gatewayd.toml")
	err = os.WriteFile(cfg, []byte(fmt.Sprintf(`[device]
product_key   = %q
device_name   = %q
device_secret = %q

[uplink]
endpoint    = "127.0.0.1:%d"
ca_file     = %q
ca_replace  = true
server_name = "localhost"
max_messages_per_second = 50

[buffer]
path            = %q
commit_interval = "200ms"

[[sensor]]
name     = "air"
driver   = "bme280"
bus      = "emulated"
interval = "100ms"
[sensor.properties]
temperature = "temperature"
humidity    = "humidity"
pressure    = "pressure"

[health]
listen = ""
`, pk, dn, secret, port, ca, bufPath)), 0o600)
	if err != nil {
		t.Fatal(err)
	}

	got := &delivered{n: map[string]int{}}
	startSim := func() *proc {
		p := start(t, got.read, sim, "--tls", fmt.Sprintf("127.0.0.1:%d", port), "--tcp", "", "--certs", certs,
			"--device", pk+":"+dn+":"+secret)
		waitPort(t, port)
		return p
	}
	committed := map[string]bool{} // in the buffer file after some kill
	inFlight := map[string]bool{}  // in the file at a kill though iotsim had already accepted them
	export := func(when string) (pending int) {
		t.Helper()
		out, err := exec.Command(gw, "buffer", "export", "--json", "--path", bufPath).Output()
		if err != nil {
			if _, serr := os.Stat(bufPath); os.IsNotExist(serr) {
				return 0 // killed before it created the file
			}
			t.Fatalf("%s: buffer export: %v", when, err)
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		for dec.More() {
			var r buffer.ExportRecord
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("%s: export output: %v", when, err)
			}
			if r.State != "pending" {
				t.Fatalf("%s: unexpected %s record %+v", when, r.State, r)
			}
			committed[identity(r)] = true
			if got.count(identity(r)) > 0 {
				inFlight[identity(r)] = true // sent and accepted, the ack not yet committed
			}
			pending++
		}
		if m, _ := filepath.Glob(bufPath + ".corrupt-*"); len(m) != 0 {
			t.Fatalf("%s: buffer file set aside as corrupt", when)
		}
		return pending
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	kills := 0
	kill := func(after time.Duration, when string) int {
		t.Helper()
		p := start(t, nil, gw, "run", "--config", cfg)
		time.Sleep(after)
		p.stop(t, syscall.SIGKILL)
		kills++
		n := export(when)
		t.Logf("kill %2d %-22s after %4dms: %3d readings in the buffer file", kills, when, after.Milliseconds(), n)
		return n
	}

	simProc := startSim()
	for i := 0; i < 8; i++ {
		kill(time.Duration(300+rng.IntN(1200))*time.Millisecond, "ingest, link up")
	}
	for i := 0; i < 7; i++ {
		// Two runs with the platform down build a backlog; then a run
		// with it back is killed early, while the backlog goes out.
		simProc.stop(t, syscall.SIGTERM)
		kill(time.Duration(500+rng.IntN(1000))*time.Millisecond, "ingest, platform down")
		kill(time.Duration(500+rng.IntN(1000))*time.Millisecond, "ingest, platform down")
		simProc = startSim()
		kill(time.Duration(30+rng.IntN(400))*time.Millisecond, "drain")
	}
	if kills < 20 {
		t.Fatalf("only %d kills", kills)
	}

	// A last run with the link up delivers the backlog.
	final := start(t, nil, gw, "run", "--config", cfg)
	deadline := time.Now().Add(20 * time.Second)
	for {
		missing := 0
		for id := range committed {
			if got.count(id) == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d committed readings never reached the platform\ngatewayd log:\n%s", missing, len(committed), final.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	final.stop(t, syscall.SIGTERM)
	simProc.stop(t, syscall.SIGTERM)

	got.mu.Lock()
	defer got.mu.Unlock()
	dups := 0
	for id, n := range got.n {
		if n > 1 {
			dups++
			if !committed[id] {
				t.Errorf("reading %s delivered %d times but never in the buffer at a kill: a duplicate without a crash", id, n)
			}
		}
	}
	// A sample travels whole: every time iotsim saw, it saw with all three
	// of the sample's values.
	perSample := map[string]int{}
	for id := range got.n {
		perSample[id[strings.IndexByte(id, '@')+1:]]++
	}
	partial := 0
	for ts, n := range perSample {
		if n != 3 {
			partial++
			if partial <= 3 {
				t.Errorf("sample taken at %s delivered with %d of its 3 values", ts, n)
			}
		}
	}
	t.Logf("%d kills; %d samples, %d values delivered; %d committed at some kill, all delivered; "+
		"%d found in the file at a kill already delivered (in flight); %d delivered more than once",
		kills, len(perSample), len(got.n), len(committed), len(inFlight), dups)
}
