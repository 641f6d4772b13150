package measure

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Syscalls is the summary `strace -c` prints: calls and errors per system
// call.
type Syscalls struct {
	Calls  map[string]int
	Errors map[string]int
}

// Total is the number of calls of every kind.
func (s Syscalls) Total() int {
	n := 0
	for _, c := range s.Calls {
		n += c
	}
	return n
}

// Top returns the n most frequent calls, most frequent first (ties by
// name).
func (s Syscalls) Top(n int) []string {
	names := make([]string, 0, len(s.Calls))
	for k := range s.Calls {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int {
		if s.Calls[a] != s.Calls[b] {
			return s.Calls[b] - s.Calls[a]
		}
		return strings.Compare(a, b)
	})
	if len(names) > n {
		names = names[:n]
	}
	return names
}

// PerUnit formats the top n calls divided by units ("12 futex, 8.5
// nanosleep, ...").
func (s Syscalls) PerUnit(units float64, n int) string {
	if units <= 0 {
		return "n/a"
	}
	var parts []string
	for _, k := range s.Top(n) {
		parts = append(parts, fmt.Sprintf("%s %s", Num(float64(s.Calls[k])/units), k))
	}
	return strings.Join(parts, ", ")
}

// ParseStraceC reads the table `strace -c` writes:
//
//	% time     seconds  usecs/call     calls    errors syscall
//	------ ----------- ----------- --------- --------- ----------------
//	 45.00    0.000123          12        10           futex
//	  0.00    0.000000           0         4         4 access
//	------ ----------- ----------- --------- --------- ----------------
//	100.00    0.000273                    14         4 total
//
// The columns are found from the header line, so the parser does not
// depend on which optional columns a strace version prints. The total line
// is checked against the sum of the rows.
func ParseStraceC(out string) (Syscalls, error) {
	s := Syscalls{Calls: map[string]int{}, Errors: map[string]int{}}
	calls, errs, name := -1, -1, -1
	total := -1
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "---") || strings.HasPrefix(line, "strace:") {
			continue
		}
		if f[0] == "%" {
			// Header: "% time seconds usecs/call calls errors syscall";
			// "% time" is two words, so shift by one.
			for i, h := range f[1:] {
				switch h {
				case "calls":
					calls = i
				case "errors":
					errs = i
				case "syscall":
					name = i
				}
			}
			continue
		}
		if calls < 0 || name < 0 {
			continue // noise before the table
		}
		sys := f[len(f)-1]
		full := len(f) == name+1 // every column printed
		if sys == "total" {
			// Old versions leave usecs/call blank in the total row; the
			// total is then not read (it only cross-checks the rows).
			if full {
				total, _ = strconv.Atoi(f[calls])
			}
			continue
		}
		// A row has every column, or every column but errors (blank for a
		// call that never failed): values count from the left.
		if len(f) < name || calls >= len(f)-1 {
			return s, fmt.Errorf("strace -c: short row %q", line)
		}
		n, err := strconv.Atoi(f[calls])
		if err != nil {
			return s, fmt.Errorf("strace -c: calls in %q: %w", line, err)
		}
		e := 0
		if errs >= 0 && full {
			if e, err = strconv.Atoi(f[errs]); err != nil {
				return s, fmt.Errorf("strace -c: errors in %q: %w", line, err)
			}
		}
		s.Calls[sys] += n
		if e > 0 {
			s.Errors[sys] += e
		}
	}
	if calls < 0 {
		return s, errors.New("strace -c: no summary table in the output")
	}
	if total >= 0 && total != s.Total() {
		return s, fmt.Errorf("strace -c: rows add up to %d calls, the total line says %d", s.Total(), total)
	}
	return s, nil
}

// ErrNoStrace is returned when strace is not installed.
var ErrNoStrace = errors.New("strace is not installed (apt-get install strace)")

// StraceFor attaches `strace -c -f` to every thread of pid (and any thread
// it starts) for d, detaches, and returns the counts. dir receives the
// summary file. The traced process runs on after.
func StraceFor(ctx context.Context, pid int, d time.Duration, dir string) (Syscalls, error) {
	bin, err := exec.LookPath("strace")
	if err != nil {
		return Syscalls{}, ErrNoStrace
	}
	out := filepath.Join(dir, fmt.Sprintf("strace-%d.txt", pid))
	cmd := exec.Command(bin, "-c", "-f", "-p", strconv.Itoa(pid), "-o", out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return Syscalls{}, fmt.Errorf("start strace: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGINT)
	case err := <-done:
		return Syscalls{}, fmt.Errorf("strace ended early: %v: %s", err, stderr.String())
	case <-time.After(d):
		// SIGINT makes strace detach and print its summary.
		_ = cmd.Process.Signal(syscall.SIGINT)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return Syscalls{}, errors.New("strace did not detach within 10s of SIGINT")
	}
	if ctx.Err() != nil {
		return Syscalls{}, ctx.Err()
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return Syscalls{}, fmt.Errorf("strace summary: %w (%s)", err, stderr.String())
	}
	s, err := ParseStraceC(string(b))
	if err != nil {
		return s, fmt.Errorf("%w (strace said: %s)", err, strings.TrimSpace(stderr.String()))
	}
	return s, nil
}
