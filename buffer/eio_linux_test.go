package buffer

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"gatewayd/internal/reading"
)

// Transient I/O errors, injected by the kernel. A seccomp filter sends every
// pread64, pwrite64, fdatasync and fsync of the process to a supervisor
// goroutine (SECCOMP_RET_USER_NOTIF), which looks up the file behind the fd
// and either lets the call run (SECCOMP_USER_NOTIF_FLAG_CONTINUE) or makes
// the kernel fail it with EIO without running it. The buffer, bbolt and the
// os package see exactly what an EIO from a failing SD card looks like, on
// the same code path: no wrapper, no mock. A seccomp filter cannot be
// removed, so each scenario runs in a child process (this test binary
// again, TestEIOChild).

// seccompNotif and seccompNotifResp are struct seccomp_notif and struct
// seccomp_notif_resp of linux/seccomp.h.
type seccompNotif struct {
	id    uint64
	pid   uint32
	flags uint32
	nr    int32
	arch  uint32
	ip    uint64
	args  [6]uint64
}

type seccompNotifResp struct {
	id    uint64
	val   int64
	error int32
	flags uint32
}

// eioRule fails calls of syscall nr on the file whose path ends with suffix:
// after skip matching calls, the next fail ones.
type eioRule struct {
	suffix     string
	nr         int32
	skip, fail int
	seen, hit  int
}

type injector struct {
	mu    sync.Mutex
	rules []*eioRule
}

func (in *injector) add(r *eioRule) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.rules = append(in.rules, r)
}

func (in *injector) injected() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for _, r := range in.rules {
		n += r.hit
	}
	return n
}

func (in *injector) decide(nr int32, fd uint64) bool {
	path, err := os.Readlink("/proc/self/fd/" + strconv.FormatUint(fd&0xffffffff, 10))
	if err != nil {
		return false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, r := range in.rules {
		if r.nr != nr || !strings.HasSuffix(path, r.suffix) {
			continue
		}
		r.seen++
		if r.seen > r.skip && r.hit < r.fail {
			r.hit++
			return true
		}
	}
	return false
}

func auditArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, nil
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, nil
	}
	return 0, fmt.Errorf("no audit arch for %s", runtime.GOARCH)
}

// installInjector filters this whole process (every thread) and starts the
// supervisor.
func installInjector() (*injector, error) {
	arch, err := auditArch()
	if err != nil {
		return nil, err
	}
	const (
		ld   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
		allw = 0x7fff0000 // SECCOMP_RET_ALLOW
	)
	prog := []unix.SockFilter{
		{Code: ld, K: 4}, // seccomp_data.arch
		{Code: jeq, Jt: 1, K: arch},
		{Code: ret, K: allw},
		{Code: ld, K: 0}, // seccomp_data.nr
		{Code: jeq, Jt: 4, K: unix.SYS_PREAD64},
		{Code: jeq, Jt: 3, K: unix.SYS_PWRITE64},
		{Code: jeq, Jt: 2, K: unix.SYS_FDATASYNC},
		{Code: jeq, Jt: 1, K: unix.SYS_FSYNC},
		{Code: ret, K: allw},
		{Code: ret, K: unix.SECCOMP_RET_USER_NOTIF},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("no_new_privs: %w", err)
	}
	fd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER|unix.SECCOMP_FILTER_FLAG_TSYNC|unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH,
		uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return nil, fmt.Errorf("seccomp: %w", errno)
	}
	in := &injector{}
	go in.serve(int(fd))
	return in, nil
}

func (in *injector) serve(fd int) {
	// The supervisor makes none of the filtered calls itself.
	runtime.LockOSThread()
	for {
		var req seccompNotif
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&req))); errno != 0 {
			if errno == unix.EINTR || errno == unix.ENOENT {
				continue
			}
			fmt.Fprintf(os.Stderr, "seccomp supervisor: recv: %v\n", errno)
			os.Exit(3)
		}
		resp := seccompNotifResp{id: req.id, flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
		if in.decide(req.nr, req.args[0]) {
			resp = seccompNotifResp{id: req.id, error: -int32(unix.EIO)}
		}
		// ENOENT: the caller went away (a signal); nothing to answer.
		_, _, _ = unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
	}
}

// eioReport is what a child tells the parent.
type eioReport struct {
	Injected int          `json:"injected"`
	Retries  uint64       `json:"retries"`
	Starting []string     `json:"starting"`
	Extend   []int64      `json:"extend_ms"`
	Errs     []string     `json:"errs"` // errors the scenario saw, each wrapping EIO
	Appended []reading.ID `json:"appended"`
	Depth    int          `json:"depth"`
	Corrupt  uint64       `json:"corrupt"`
}

// TestEIOChild runs one scenario under the injector when the parent
// (TestTransientEIO) starts it; run directly it has nothing to do.
func TestEIOChild(t *testing.T) {
	scenario, path := os.Getenv("BUFFER_EIO_CHILD"), os.Getenv("BUFFER_EIO_PATH")
	if scenario == "" {
		return
	}
	in, err := installInjector()
	if err != nil {
		t.Fatalf("install the EIO injector: %v", err)
	}
	var rep eioReport
	o := Options{Path: path, CommitInterval: time.Hour, Logger: testLogger(t),
		Starting: func(status string, extend time.Duration) {
			rep.Starting = append(rep.Starting, status)
			rep.Extend = append(rep.Extend, extend.Milliseconds())
		}}
	db, journal := filepath.Base(path), filepath.Base(path)+journalSuffix
	isEIO := func(err error) {
		t.Helper()
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("%s: want an error wrapping EIO, got %v", scenario, err)
		}
		rep.Errs = append(rep.Errs, err.Error())
	}
	// appendCommit appends n readings and makes them durable with one
	// commit (a journal window, or a fold when the journal fails).
	appendCommit := func(b *Buffer, start, n int) {
		rs := mkReadings(start, n)
		mustAppend(t, b, rs)
		rep.Appended = append(rep.Appended, reading.IDs(rs)...)
		if err := b.commit(); err != nil {
			t.Fatalf("%s: commit: %v", scenario, err)
		}
	}
	var b *Buffer
	switch scenario {
	case "open-read", "open-write", "open-sync", "open-journal":
		nr := map[string]int32{"open-read": unix.SYS_PREAD64, "open-write": unix.SYS_PWRITE64, "open-sync": unix.SYS_FDATASYNC,
			"open-journal": unix.SYS_PREAD64}[scenario]
		file := db
		if scenario == "open-journal" {
			file = journal // its windows, not yet folded, must not be skipped
		}
		in.add(&eioRule{suffix: "/" + file, nr: nr, fail: 3})
		b, err = Open(o)
		if err != nil {
			t.Fatalf("%s: Open: %v", scenario, err)
		}
	case "open-persistent":
		// The card keeps failing: Open gives up within its bound with
		// the I/O error, and leaves the file as it was.
		in.add(&eioRule{suffix: "/" + db, nr: unix.SYS_PREAD64, fail: 1 << 30})
		o.OpenRetry = 2 * time.Second
		start := time.Now()
		_, err := Open(o)
		isEIO(err)
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("Open kept retrying for %v (bound 2 s)", d)
		}
		rep.Injected = in.injected()
		rep.Retries = uint64(len(rep.Starting))
		out, _ := json.Marshal(rep)
		fmt.Printf("EIO-REPORT %s\n", out)
		os.Exit(0)
	case "fold-write", "fold-sync":
		b = mustOpen(t, o)
		appendCommit(b, 0, 40)
		nr := map[string]int32{"fold-write": unix.SYS_PWRITE64, "fold-sync": unix.SYS_FDATASYNC}[scenario]
		in.add(&eioRule{suffix: "/" + db, nr: nr, fail: 2})
		isEIO(b.foldNow())
		isEIO(b.foldNow())
		if err := b.foldNow(); err != nil {
			t.Fatalf("%s: fold after the errors: %v", scenario, err)
		}
		appendCommit(b, 40, 20)
	case "journal-write", "journal-sync":
		b = mustOpen(t, o)
		appendCommit(b, 0, 40)
		nr := map[string]int32{"journal-write": unix.SYS_PWRITE64, "journal-sync": unix.SYS_FDATASYNC}[scenario]
		in.add(&eioRule{suffix: "/" + journal, nr: nr, fail: 1})
		// The window cannot go to the journal: it is folded into
		// bbolt instead, and the commit succeeds.
		appendCommit(b, 40, 20)
		if s := b.Stats(); s.Folds != 1 {
			t.Fatalf("%s: want the failed window folded into bbolt: %+v", scenario, s)
		}
		appendCommit(b, 60, 20) // the journal works again
	default:
		t.Fatalf("unknown scenario %q", scenario)
	}
	s := b.Stats()
	rep.Injected, rep.Retries, rep.Depth, rep.Corrupt = in.injected(), s.OpenRetries, s.Depth, s.CorruptFiles
	out, _ := json.Marshal(rep)
	fmt.Printf("EIO-REPORT %s\n", out)
	// A crash, not a Close: what is durable must be enough.
	os.Exit(0)
}

func TestTransientEIO(t *testing.T) {
	for _, scenario := range []string{"open-read", "open-write", "open-sync", "open-journal", "open-persistent", "fold-write", "fold-sync", "journal-write", "journal-sync"} {
		t.Run(scenario, func(t *testing.T) {
			var path string
			var want []reading.ID
			switch {
			case scenario == "open-journal":
				// Readings durable only in the journal: a crash
				// after one window.
				path = filepath.Join(t.TempDir(), "b.db")
				b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
				rs := mkReadings(0, 50)
				mustAppend(t, b, rs)
				if err := b.commit(); err != nil {
					t.Fatal(err)
				}
				if s := b.Stats(); s.Folds != 0 || s.Commits != 1 {
					t.Fatalf("want one journal window: %+v", s)
				}
				crash(t, b)
				want = reading.IDs(rs)
			case strings.HasPrefix(scenario, "open"):
				const n = 500
				p, last := makeFile(t, n)
				path = p
				for i := range n {
					want = append(want, last-reading.ID(n-1-i))
				}
			default:
				path = filepath.Join(t.TempDir(), "b.db")
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestEIOChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "BUFFER_EIO_CHILD="+scenario, "BUFFER_EIO_PATH="+path)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("child: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
			}
			var rep eioReport
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			found := false
			for sc.Scan() {
				if line, ok := strings.CutPrefix(sc.Text(), "EIO-REPORT "); ok {
					if err := json.Unmarshal([]byte(line), &rep); err != nil {
						t.Fatal(err)
					}
					found = true
				}
			}
			if !found {
				t.Fatalf("child reported nothing:\n%s\n%s", out, stderr.String())
			}
			if rep.Injected == 0 {
				t.Fatalf("no EIO was injected: %+v", rep)
			}
			if strings.HasPrefix(scenario, "open") {
				if rep.Retries == 0 || len(rep.Starting) == 0 || rep.Extend[0] <= 0 ||
					!strings.Contains(rep.Starting[0], "input/output error") {
					t.Fatalf("open retried without telling the service manager: %+v", rep)
				}
			} else {
				want = rep.Appended
			}
			if rep.Corrupt != 0 {
				t.Fatalf("the child set the file aside: %+v", rep)
			}
			t.Logf("%s: %d EIO injected, %d open retries, errors seen: %q", scenario, rep.Injected, rep.Retries, rep.Errs)

			// After the child's crash: the file was not set aside and
			// every reading is there.
			b := mustOpen(t, Options{Path: path, CommitInterval: time.Hour})
			if s := b.Stats(); s.CorruptFiles != 0 || s.AsideFiles != 0 || s.Depth != len(want) {
				t.Fatalf("after recovery: %+v, want depth %d and nothing set aside", s, len(want))
			}
			if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
				t.Fatalf("set aside: %v", m)
			}
			got := mustTake(t, b, 10000, reading.Filter{})
			if len(got) != len(want) {
				t.Fatalf("took %d readings, want %d", len(got), len(want))
			}
			for i, r := range got {
				w := mkReadings(i, 1)[0]
				w.ID = want[i]
				if !sameReading(r, w) {
					t.Fatalf("reading %d: got %+v, want %+v", i, r, w)
				}
			}
		})
	}
}
