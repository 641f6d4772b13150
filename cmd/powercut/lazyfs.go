package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// lazyFS is one LazyFS file system: root holds what is on the "disk", mnt
// is where gatewayd writes. Writes not fsynced live in LazyFS's cache until
// clear-cache drops them (a power cut) or a torn-write fault stops LazyFS.
type lazyFS struct {
	h                   *harness
	bin, dir, root, mnt string
	fifo, fifoDone      string
	p                   *proc
	logf                string
	mounts              int
	doneR               *os.File
	doneLines           chan string
	mounted             bool
	armed               bool // a torn-write fault waits for its write
}

func newLazyFS(h *harness, bin, dir string) (*lazyFS, error) {
	f := &lazyFS{h: h, bin: bin, dir: dir, root: filepath.Join(dir, "r"), mnt: filepath.Join(dir, "m"),
		fifo: filepath.Join(dir, "f"), fifoDone: filepath.Join(dir, "fc"), doneLines: make(chan string, 16)}
	for _, d := range []string{f.root, f.mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("lazyfs dirs: %w", err)
		}
	}
	for _, p := range []string{f.fifo, f.fifoDone} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			return nil, fmt.Errorf("mkfifo %s: %w", p, err)
		}
	}
	// The completion FIFO must have a reader before LazyFS opens it, or
	// LazyFS blocks at start: hold it open read-write for the whole run.
	r, err := os.OpenFile(f.fifoDone, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", f.fifoDone, err)
	}
	f.doneR = r
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case f.doneLines <- sc.Text():
			default:
			}
		}
	}()
	return f, nil
}

// mount starts LazyFS over root at mnt; injection (TOML, may be empty) adds
// torn-write faults armed from the start.
func (f *lazyFS) mount(injection string) error {
	f.mounts++
	f.logf = filepath.Join(f.dir, fmt.Sprintf("lazyfs-%d.log", f.mounts))
	conf := filepath.Join(f.dir, fmt.Sprintf("lazyfs-%d.toml", f.mounts))
	toml := fmt.Sprintf(`[faults]
fifo_path=%q
fifo_path_completed=%q
[cache]
apply_eviction=false
[cache.simple]
custom_size="96mb"
blocks_per_page=1
[filesystem]
log_all_operations=false
logfile=%q
%s`, f.fifo, f.fifoDone, f.logf, injection)
	if err := os.WriteFile(conf, []byte(toml), 0o644); err != nil {
		return fmt.Errorf("lazyfs config: %w", err)
	}
	f.armed = injection != ""
	p, err := f.h.startProc("lazyfs", filepath.Join(f.dir, fmt.Sprintf("lazyfs-%d.out", f.mounts)), nil, nil,
		f.bin, f.mnt, "--config-path", conf, "-o", "allow_other", "-o", "modules=subdir", "-o", "subdir="+f.root, "-f")
	if err != nil {
		return err
	}
	f.p = p
	ready := waitFor(15*time.Second, 20*time.Millisecond, func() bool {
		b, _ := os.ReadFile(f.logf)
		return p.exited() || strings.Contains(string(b), "waiting for fault commands") && isMounted(f.mnt)
	})
	if !ready || p.exited() {
		f.p.stop(syscall.SIGKILL, 2*time.Second)
		return fmt.Errorf("lazyfs did not come up (ready %v, exited %v):\n%s\n%s", ready, p.exited(), tail(f.logf, 10), tail(p.logf, 10))
	}
	f.mounted = true
	return nil
}

// send writes one command to LazyFS's fault FIFO (read in 100-byte chunks).
func (f *lazyFS) send(cmd string) error {
	if len(cmd)+1 > 100 {
		return fmt.Errorf("lazyfs command longer than 99 bytes: %q", cmd)
	}
	w, err := os.OpenFile(f.fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("lazyfs fifo: %w", err)
	}
	defer w.Close()
	if _, err := w.WriteString(cmd + "\n"); err != nil {
		return fmt.Errorf("lazyfs fifo: %w", err)
	}
	if strings.Contains(cmd, "::torn-") {
		f.armed = true
	}
	return nil
}

// alive reports whether LazyFS still runs (a torn-write fault stops it).
func (f *lazyFS) alive() bool { return f.p != nil && !f.p.exited() }

// clearCache drops every write not yet fsynced: with the writer already
// killed, the files now hold what a power cut would have left.
func (f *lazyFS) clearCache() error {
	for {
		select {
		case <-f.doneLines: // stale
			continue
		default:
		}
		break
	}
	if err := f.send("lazyfs::clear-cache"); err != nil {
		return err
	}
	select {
	case l := <-f.doneLines:
		if !strings.Contains(l, "clear-cache") {
			return fmt.Errorf("lazyfs answered %q to clear-cache", l)
		}
		return nil
	case <-time.After(15 * time.Second):
		return errors.New("lazyfs: clear-cache not finished within 15 s")
	}
}

// unmount takes the file system down (also after LazyFS stopped itself).
func (f *lazyFS) unmount() error {
	if !f.mounted {
		return nil
	}
	var err error
	if out, e := exec.Command("fusermount3", "-u", f.mnt).CombinedOutput(); e != nil {
		if out2, e2 := exec.Command("fusermount3", "-u", "-z", f.mnt).CombinedOutput(); e2 != nil && isMounted(f.mnt) {
			err = fmt.Errorf("fusermount3 -u %s: %v: %s %s", f.mnt, e, out, out2)
		}
	}
	if f.p != nil && !f.p.stop(syscall.SIGTERM, 5*time.Second) {
		f.h.logf("lazyfs did not stop on SIGTERM within 5 s; killed")
	}
	if err == nil && isMounted(f.mnt) {
		err = fmt.Errorf("%s still mounted", f.mnt)
	}
	f.mounted = false
	return err
}

// tornInfo is what LazyFS logged about the torn write it made.
func (f *lazyFS) tornInfo() string {
	b, _ := os.ReadFile(f.logf)
	var parts []string
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.Index(l, "[lazyfs.faults]: "); i >= 0 && !strings.Contains(l, "Added crash fault") {
			s := l[i+len("[lazyfs.faults]: "):]
			s = strings.ReplaceAll(s, f.root+"/", "")
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		fs := strings.Fields(l)
		if len(fs) > 4 && fs[4] == dir {
			return true
		}
	}
	return false
}
