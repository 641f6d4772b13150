package measure

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Proc is what /proc says about one process at one moment.
type Proc struct {
	// CPU is utime+stime from /proc/PID/stat, in whole clock ticks (10 ms).
	CPU time.Duration
	// RunNS is the sum over the process's threads of the time each has
	// spent on a CPU (/proc/PID/task/TID/schedstat, nanoseconds). Threads
	// that exited are not in it; compare with CPU. 0 when the kernel has
	// no schedstat.
	RunNS time.Duration
	// Threads is how many threads RunNS summed.
	Threads int
	// RSS, HWM, Anon, File: VmRSS, VmHWM (peak RSS), RssAnon, RssFile, bytes.
	RSS, HWM, Anon, File int64
	// WriteBytes is /proc/PID/io write_bytes: what reached the block layer.
	WriteBytes int64
}

// clkTck is USER_HZ, fixed at 100 on every architecture Linux runs
// gatewayd on; /proc/PID/stat counts utime and stime in it.
const clkTck = 100

// ReadProc reads pid's CPU time, memory and write volume.
func ReadProc(pid int) (Proc, error) {
	return readProcAt("/proc", pid)
}

func readProcAt(root string, pid int) (Proc, error) {
	var p Proc
	dir := filepath.Join(root, strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return p, fmt.Errorf("read stat: %w", err)
	}
	if p.CPU, err = parseStatCPU(b); err != nil {
		return p, err
	}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return p, fmt.Errorf("read status: %w", err)
	}
	p.RSS, p.HWM, p.Anon, p.File = parseStatus(status)
	if b, err := os.ReadFile(filepath.Join(dir, "io")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
				p.WriteBytes, _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	tasks, _ := os.ReadDir(filepath.Join(dir, "task"))
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, "task", t.Name(), "schedstat"))
		if err != nil {
			continue // the thread exited between the listing and the read
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		p.RunNS += time.Duration(ns)
		p.Threads++
	}
	return p, nil
}

// parseStatCPU returns utime+stime of a /proc/PID/stat line.
func parseStatCPU(b []byte) (time.Duration, error) {
	// The command name (field 2) may hold spaces and parentheses; fields
	// count from after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat times: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// parseStatus returns VmRSS, VmHWM, RssAnon and RssFile in bytes.
func parseStatus(b []byte) (rss, hwm, anon, file int64) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		case "RssAnon":
			anon = n << 10
		case "RssFile":
			file = n << 10
		}
	}
	return rss, hwm, anon, file
}

// CPUBetween is the CPU a process used between two readings: the
// schedstat sum when the kernel has it and no thread vanished in between
// (a vanished thread's time would be missing), else the tick count. It
// says which it used.
func CPUBetween(a, b Proc) (time.Duration, string) {
	if a.RunNS > 0 && b.RunNS >= a.RunNS && b.Threads >= a.Threads {
		return b.RunNS - a.RunNS, "schedstat"
	}
	return b.CPU - a.CPU, "ticks"
}

// Series is RSS sampled over a window.
type Series []int64

// Median and Max of the samples (0 when empty).
func (s Series) Median() int64 {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	return c[len(c)/2]
}

func (s Series) Max() int64 {
	if len(s) == 0 {
		return 0
	}
	return slices.Max(s)
}

// MiB formats bytes as MiB with one decimal.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// Mapping is the resident memory of one mapped file (or "[anon]" for
// anonymous memory, "[heap]", "[stack]", ...), summed over its mappings.
type Mapping struct {
	Name string
	RSS  int64 // bytes
}

// Mappings reads /proc/PID/smaps and returns resident memory per mapped
// file or kind, largest first: where a process's RSS lives (the binary's
// pages, bbolt's mmap of the buffer file, heap).
func Mappings(pid int) ([]Mapping, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps"))
	if err != nil {
		return nil, fmt.Errorf("read smaps: %w", err)
	}
	return parseSmaps(string(b)), nil
}

func parseSmaps(s string) []Mapping {
	by := map[string]int64{}
	name := ""
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") {
			// A mapping header: "addr perms offset dev inode [path]".
			name = "[anon]"
			if len(f) >= 6 {
				name = strings.Join(f[5:], " ")
			}
			continue
		}
		if f[0] == "Rss:" && len(f) >= 2 {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil {
				by[name] += n << 10
			}
		}
	}
	ms := make([]Mapping, 0, len(by))
	for k, v := range by {
		if v > 0 {
			ms = append(ms, Mapping{k, v})
		}
	}
	slices.SortFunc(ms, func(a, b Mapping) int {
		if a.RSS != b.RSS {
			if a.RSS > b.RSS {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return ms
}

// MappingsString prints the n largest as "name 1.2 MiB, ..." with paths
// shortened to their base name.
func MappingsString(ms []Mapping, n int) string {
	var parts []string
	for i, m := range ms {
		if i == n {
			break
		}
		name := m.Name
		if strings.HasPrefix(name, "/") {
			name = filepath.Base(name)
		}
		size := MiB(m.RSS)
		if m.RSS < 1<<20 {
			size = fmt.Sprintf("%d KiB", m.RSS>>10)
		}
		parts = append(parts, name+" "+size)
	}
	return strings.Join(parts, ", ")
}
