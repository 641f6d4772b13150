package measure

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// strace 6.1's output, as `strace -c -f -o FILE` writes it.
const strace61 = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 61.47    0.001234           5       240           futex
 20.00    0.000400           2       170           nanosleep
 10.00    0.000200           1       150        12 epoll_pwait
  8.53    0.000171          17        10         3 read
------ ----------- ----------- --------- --------- ----------------
100.00    0.002005           3       570        15 total
`

// Older strace leaves usecs/call blank in the total row.
const straceOld = `strace: Process 4242 attached with 6 threads
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 90.00    0.000900          90        10           write
 10.00    0.000100          50         2         2 openat
------ ----------- ----------- --------- --------- ----------------
100.00    0.001000                    12         2 total
strace: Process 4242 detached
`

func TestParseStraceC(t *testing.T) {
	s, err := ParseStraceC(strace61)
	if err != nil {
		t.Fatal(err)
	}
	if s.Total() != 570 || s.Calls["futex"] != 240 || s.Calls["read"] != 10 || s.Errors["read"] != 3 || s.Errors["epoll_pwait"] != 12 || s.Errors["futex"] != 0 {
		t.Errorf("parsed %+v", s)
	}
	if got := s.Top(2); len(got) != 2 || got[0] != "futex" || got[1] != "nanosleep" {
		t.Errorf("Top(2) = %v", got)
	}
	if got := s.PerUnit(20, 2); got != "12 futex, 8.5 nanosleep" {
		t.Errorf("PerUnit = %q", got)
	}
	o, err := ParseStraceC(straceOld)
	if err != nil {
		t.Fatal(err)
	}
	if o.Total() != 12 || o.Errors["openat"] != 2 {
		t.Errorf("old format parsed %+v", o)
	}
	// A total that the rows do not add up to means a row was misread.
	if _, err := ParseStraceC(strings.Replace(strace61, "       570 ", "       571 ", 1)); err == nil {
		t.Error("a total line that disagrees with the rows was accepted")
	}
	if _, err := ParseStraceC("strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n"); err == nil {
		t.Error("output without a summary table was accepted")
	}
	if _, err := ParseStraceC("% time     seconds  usecs/call     calls    errors syscall\n 1.0 0.1 x futex\n"); err == nil {
		t.Error("a row with a non-numeric calls column was accepted")
	}
}

// StraceFor attaches to a real process that makes known system calls and
// counts them; the process keeps running after strace detaches.
func TestStraceFor(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Fatalf("%v: the harness's syscall figure needs it (CI installs it)", ErrNoStrace)
	}
	// A shell loop that runs sleep 20 times a second.
	cmd := exec.Command("sh", "-c", "while :; do sleep 0.05; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(100 * time.Millisecond)
	s, err := StraceFor(context.Background(), cmd.Process.Pid, time.Second, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// About 20 rounds in a second, each one exec of sleep in a forked
	// child (which -f must follow); allow a slow machine a wide margin.
	if n := s.Calls["execve"]; n < 5 || n > 40 {
		t.Errorf("execve counted %d times in 1 s, want about 20: %v", n, s.Calls)
	}
	if s.Calls["openat"] < s.Calls["execve"] || s.Total() < 10*s.Calls["execve"] {
		t.Errorf("implausible counts: %v", s.Calls)
	}
	// Detached: the process runs on, not stopped under a tracer.
	time.Sleep(200 * time.Millisecond)
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "status"))
	if err != nil {
		t.Fatalf("the traced process did not survive the detach: %v", err)
	}
	if strings.Contains(string(b), "TracerPid:\t0\n") == false {
		t.Errorf("still traced after the detach:\n%s", b)
	}
}

// Burn CPU until the kernel's tick count says 300 ms were used (bounded in
// wall time: the machine may be busy), then the schedstat sum must agree
// with the ticks.
func TestReadProcSelf(t *testing.T) {
	a, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var b Proc
	x := 0.0
	for start := time.Now(); b.CPU-a.CPU < 300*time.Millisecond; {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("300 ms of CPU not reached in 20 s: %v", b.CPU-a.CPU)
		}
		for i := 0; i < 100000; i++ {
			x += math.Sqrt(float64(i))
		}
		if b, err = ReadProc(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	_ = x
	d, how := CPUBetween(a, b)
	ticks := b.CPU - a.CPU
	// Ticks are 10 ms and charged to whoever runs at the tick: allow 30%
	// and a few ticks either way.
	if how != "schedstat" || d < ticks*7/10-30*time.Millisecond || d > ticks*13/10+30*time.Millisecond {
		t.Errorf("CPU by %s: %v; by ticks %v", how, d, ticks)
	}
	if b.RSS <= 0 || b.HWM < b.RSS || b.Anon <= 0 || b.Threads < 1 {
		t.Errorf("memory: %+v", b)
	}
}

// A fake /proc: two threads' schedstat add up; a thread that vanished
// between two readings sends CPUBetween to the tick count.
func TestReadProcFake(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// utime 7, stime 3 ticks; the command name holds ") (" to trip a
	// naive parser.
	write("9/stat", "9 (a) (b) S 1 9 9 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 2 0 100 1000 50\n")
	write("9/status", "Name:\ta\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\nRssAnon:\t     512 kB\nRssFile:\t     512 kB\n")
	write("9/io", "rchar: 1\nwrite_bytes: 4096\n")
	write("9/task/9/schedstat", "30000000 1 2\n")
	write("9/task/10/schedstat", "70000000 1 2\n")
	p, err := readProcAt(root, 9)
	if err != nil {
		t.Fatal(err)
	}
	if p.CPU != 100*time.Millisecond || p.RunNS != 100*time.Millisecond || p.Threads != 2 ||
		p.RSS != 1<<20 || p.HWM != 2<<20 || p.Anon != 512<<10 || p.WriteBytes != 4096 {
		t.Errorf("parsed %+v", p)
	}
	later := p
	later.CPU, later.RunNS, later.Threads = 200*time.Millisecond, 80*time.Millisecond, 1
	if d, how := CPUBetween(p, later); how != "ticks" || d != 100*time.Millisecond {
		t.Errorf("a vanished thread: %v by %s, want 100ms by ticks", d, how)
	}
	later.RunNS, later.Threads = 150*time.Millisecond, 2
	if d, how := CPUBetween(p, later); how != "schedstat" || d != 50*time.Millisecond {
		t.Errorf("CPUBetween = %v by %s, want 50ms by schedstat", d, how)
	}
}

func TestTarget(t *testing.T) {
	tg := Target{What: "syscalls per reading", Limit: 12}
	if tg.Met() || tg.Verdict() != "**not measured**" {
		t.Errorf("an unmeasured figure passed: %s", tg.Verdict())
	}
	tg.Set(11.96, "")
	if !tg.Met() || tg.Verdict() != "met" || tg.Bound() != "≤ 12" || tg.Figure() != "12" {
		t.Errorf("11.96 vs ≤ 12: %s, %s, %s", tg.Verdict(), tg.Bound(), tg.Figure())
	}
	tg.Set(12.01, "")
	if tg.Met() {
		t.Error("12.01 met ≤ 12")
	}
	tg.Set(Ratio(1, 0), "")
	if tg.Met() {
		t.Error("a ratio over zero met its target")
	}
	at := Target{Limit: 3, AtLeast: true, Unit: "×"}
	at.Set(3, "")
	if !at.Met() || at.Bound() != "≥ 3 ×" {
		t.Errorf("≥: %v %s", at.Met(), at.Bound())
	}
	for v, want := range map[float64]string{0: "0", 0.3333: "0.33", 0.034: "0.034", 27.96: "28", 12.05: "12.1", 567.4: "567", 1.5: "1.5", 2: "2"} {
		if got := Num(v); got != want {
			t.Errorf("Num(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestSamplesAndBusiestSecond(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	vs := []Value{
		{"gw", "s0_temperature", at(0), at(500)},
		{"gw", "s0_humidity", at(0), at(500)},
		{"gw", "s1_temperature", at(0), at(500)},
		{"gw", "s0_temperature", at(0), at(900)}, // resent
		{"gw", "s0_temperature", at(300), at(1500)},
		{"seed", "s0_temperature", at(0), at(500)},
	}
	m := Samples(vs)
	if len(m) != 4 || m[SampleKey{"gw", "s0", t0.UnixMilli()}] != 3 {
		t.Errorf("Samples = %v", m)
	}
	if n := SamplesIn(vs, "gw", at(0), at(1000)); n != 2 {
		t.Errorf("SamplesIn the first second = %d, want 2", n)
	}
	// Four messages within 999 ms straddling a clock second: a window
	// aligned to seconds would see at most 2.
	times := []time.Time{at(0), at(900), at(1100), at(1500), at(1800), at(3000)}
	n, from := BusiestSecond(times, time.Second)
	if n != 4 || !from.Equal(at(900)) {
		t.Errorf("BusiestSecond = %d from %v, want 4 from +900ms", n, from.Sub(t0))
	}
	if got := Millis(Within(times, from, time.Second)); got != "0 200 600 900" {
		t.Errorf("Within the busiest second: %s", got)
	}
	if n, _ := BusiestSecond(nil, time.Second); n != 0 {
		t.Errorf("no times: %d", n)
	}
}

func TestParseSmaps(t *testing.T) {
	const smaps = `00400000-00c00000 r-xp 00000000 08:01 123 /usr/bin/gatewayd
Size:               8192 kB
Rss:                6000 kB
00c00000-00d00000 r--p 00800000 08:01 123 /usr/bin/gatewayd
Rss:                1000 kB
7f0000000000-7f0000100000 r--s 00000000 08:01 456 /var/lib/gatewayd/buffer.db
Rss:                  64 kB
c000000000-c000400000 rw-p 00000000 00:00 0
Rss:                2048 kB
7ffd0000-7ffd2000 rw-p 00000000 00:00 0                                  [stack]
Rss:                   8 kB
7ffe0000-7ffe1000 r--p 00000000 00:00 0                                  [vvar]
Rss:                   0 kB
`
	ms := parseSmaps(smaps)
	want := []Mapping{{"/usr/bin/gatewayd", 7000 << 10}, {"[anon]", 2048 << 10}, {"/var/lib/gatewayd/buffer.db", 64 << 10}, {"[stack]", 8 << 10}}
	if len(ms) != len(want) {
		t.Fatalf("parsed %v", ms)
	}
	for i := range want {
		if ms[i] != want[i] {
			t.Errorf("mapping %d = %v, want %v", i, ms[i], want[i])
		}
	}
	if got := MappingsString(ms, 3); got != "gatewayd 6.8 MiB, [anon] 2.0 MiB, buffer.db 64 KiB" {
		t.Errorf("MappingsString = %q", got)
	}
	self, err := Mappings(os.Getpid())
	if err != nil || len(self) == 0 {
		t.Fatalf("own smaps: %v %v", self, err)
	}
}

// Without strace the harness must be told so (and says so), not get a
// count of zero.
func TestStraceMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := StraceFor(context.Background(), os.Getpid(), time.Millisecond, t.TempDir()); err != ErrNoStrace {
		t.Fatalf("without strace on PATH: %v, want ErrNoStrace", err)
	}
}
