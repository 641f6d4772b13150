package clock

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"gatewayd/internal/reading"
)

// Defaults used for zero Options fields.
const (
	DefaultBootIDPath = "/proc/sys/kernel/random/boot_id"
	// DefaultTimesyncFlagPath is the file systemd-timesyncd creates once it
	// has synchronised the clock. It is only consulted when adjtimex fails
	// (e.g. a seccomp filter denies it), so a hardened unit still works.
	DefaultTimesyncFlagPath = "/run/systemd/timesync/synchronized"
	// DefaultMaxError is the kernel's maximum clock error above which we do
	// not trust the clock even without STA_UNSYNC. The kernel grows maxerror
	// by 500 ppm between NTP updates; timesyncd polls at most every 2048 s,
	// which adds ~1 s, so 5 s leaves room while still catching a clock that
	// lost its time source hours ago.
	DefaultMaxError = 5 * time.Second
	// DefaultMaxRTT bounds the round trip of an NTP-over-MQTT exchange we
	// accept: the error of such a sample is up to half its round trip.
	DefaultMaxRTT = 10 * time.Second
	// SyncStateTTL is how long the kernel's sync state, once read, is
	// trusted before adjtimex is asked again. Every sample is stamped, and
	// at 10 samples a second one syscall each is measurable; the state
	// changes on NTP's scale of minutes, and a sample stamped unsynced
	// during the second after sync is re-dated like any other.
	SyncStateTTL = time.Second
	anchorFile   = "clock-anchors.json"
	maxAnchors   = 32
)

// notBefore is the earliest wall time a time source may claim: an NTP answer
// before it is broken, not the truth.
var notBefore = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Options configure a Clock. The zero value reads the real kernel.
type Options struct {
	// BootIDPath is the kernel boot id file. Zero: DefaultBootIDPath. When it
	// cannot be read a random per-process id is used, so readings can still
	// be corrected within this process's lifetime.
	BootIDPath string
	// TimesyncFlagPath is consulted only when Adjtimex fails. Zero:
	// DefaultTimesyncFlagPath; "-" disables the fallback.
	TimesyncFlagPath string
	// StateDir is where sync anchors are kept across reboots (the daemon's
	// StateDirectory). Zero: anchors are not persisted, so readings from an
	// earlier boot that were not synced when taken are always Unknown.
	StateDir string
	// MaxError: see DefaultMaxError. Zero: DefaultMaxError.
	MaxError time.Duration
	// MaxRTT: see DefaultMaxRTT. Zero: DefaultMaxRTT.
	MaxRTT time.Duration

	// Now reads the wall clock. Zero: time.Now.
	Now func() time.Time
	// Boottime reads CLOCK_BOOTTIME. Zero: clock_gettime(CLOCK_BOOTTIME).
	Boottime func() (time.Duration, error)
	// Adjtimex reads the kernel's clock discipline state; it is passed a
	// zeroed Timex (modes = 0, read-only). Zero: the adjtimex system call (raw, see boottime).
	Adjtimex func(*unix.Timex) (int, error)

	// Logger receives state changes. Zero: slog.Default().
	Logger *slog.Logger
}

// Verdict is what the uplink should do with a reading, see Check.
type Verdict int

const (
	// Trusted: r.Time is right; send it.
	Trusted Verdict = iota
	// Wait: taken in this boot before sync; keep it buffered until Synced.
	Wait
	// Unknown: its time can never be known; never send it as a dated value.
	Unknown
)

func (v Verdict) String() string {
	switch v {
	case Trusted:
		return "trusted"
	case Wait:
		return "wait"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// anchor ties a moment of CLOCK_BOOTTIME in one boot to the true wall time.
type anchor struct {
	BootID string        `json:"boot_id"`
	Mono   time.Duration `json:"mono_ns"`
	Wall   time.Time     `json:"wall"`
}

func (a anchor) at(mono time.Duration) time.Time { return a.Wall.Add(mono - a.Mono) }

// Clock stamps and corrects readings. It is safe for concurrent use.
type Clock struct {
	opts   Options
	log    *slog.Logger
	bootID string

	mu        sync.Mutex
	ntp       *anchor           // from ObserveServerTime, this boot
	ntpRTT    time.Duration     // round trip of ntp
	wasSynced bool              // for logging transitions
	told      bool              // "not synchronised yet" was logged
	saved     bool              // this boot's anchor is in StateDir
	anchors   map[string]anchor // earlier boots, from StateDir
	sysErr    bool              // adjtimex failed (logged once)
	monoErr   bool              // boottime failed (logged once)
	// The last answer of systemSynced and the CLOCK_BOOTTIME it was read
	// at (valid when sysRead); reused for SyncStateTTL.
	sysRead bool
	sysAt   time.Duration
	sysOK   bool
}

// New returns a Clock. It never fails: a clock that cannot tell whether it is
// synchronised says it is not, which only delays readings, never misdates them.
func New(opts Options) *Clock {
	if opts.BootIDPath == "" {
		opts.BootIDPath = DefaultBootIDPath
	}
	if opts.TimesyncFlagPath == "" {
		opts.TimesyncFlagPath = DefaultTimesyncFlagPath
	}
	if opts.MaxError == 0 {
		opts.MaxError = DefaultMaxError
	}
	if opts.MaxRTT == 0 {
		opts.MaxRTT = DefaultMaxRTT
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Boottime == nil {
		opts.Boottime = boottime
	}
	if opts.Adjtimex == nil {
		opts.Adjtimex = adjtimex
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Clock{opts: opts, log: opts.Logger.With("component", "clock")}
	id, err := readBootID(opts.BootIDPath)
	if err != nil {
		id = "proc-" + randomID()
		c.log.Warn("boot id unavailable; readings taken before sync can only be corrected until this process exits",
			"path", opts.BootIDPath, "err", err)
	}
	c.bootID = id
	c.anchors = c.loadAnchors()
	return c
}

// BootID returns the boot id stamped on readings.
func (c *Clock) BootID() string { return c.bootID }

func readBootID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("read boot id: %s is empty", path)
	}
	return id, nil
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

// boottime and adjtimex make their system calls raw (unix.RawSyscall, as
// unix.ClockGettime and unix.Adjtimex do, minus the scheduler's
// entersyscall/exitsyscall). Both return at once and never block, which is
// what RawSyscall requires. The point is what the scheduler does around a
// syscall: on an idle board the runtime's monitor thread sleeps until the
// next timer, and the first system call after it wakes it up with its
// polling reset to 20 µs; it then spins down over ~60 sleeps. Every sample
// is stamped, so that happened on every sampling round (strace -f: a train
// of nanosleep(20 µs) after each clock_gettime(CLOCK_BOOTTIME)).
func boottime() (time.Duration, error) {
	var ts unix.Timespec
	if _, _, e := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, unix.CLOCK_BOOTTIME, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, fmt.Errorf("clock_gettime(CLOCK_BOOTTIME): %w", e)
	}
	return time.Duration(ts.Nano()), nil
}

func adjtimex(tx *unix.Timex) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_ADJTIMEX, uintptr(unsafe.Pointer(tx)), 0, 0)
	if e != 0 {
		return int(r), e
	}
	return int(r), nil
}

// systemSynced reports whether an NTP client disciplines the clock, asking
// the kernel at most once per SyncStateTTL of CLOCK_BOOTTIME (mono, when
// monoOK; without boottime there is nothing to age the answer by, so the
// kernel is asked every time).
func (c *Clock) systemSynced(mono time.Duration, monoOK bool) bool {
	if monoOK {
		c.mu.Lock()
		fresh := c.sysRead && mono >= c.sysAt && mono-c.sysAt < SyncStateTTL
		ok := c.sysOK
		c.mu.Unlock()
		if fresh {
			return ok
		}
	}
	ok := c.askKernel()
	if monoOK {
		c.mu.Lock()
		c.sysRead, c.sysAt, c.sysOK = true, mono, ok
		c.mu.Unlock()
	}
	return ok
}

// askKernel reads the kernel's clock discipline state (adjtimex, read-only),
// or the timesyncd flag file when adjtimex is refused.
func (c *Clock) askKernel() bool {
	var tx unix.Timex // zeroed: modes = 0 only reads
	state, err := c.opts.Adjtimex(&tx)
	if err != nil {
		c.mu.Lock()
		first := !c.sysErr
		c.sysErr = true
		c.mu.Unlock()
		if first {
			c.log.Warn("adjtimex failed; falling back to the timesyncd flag file", "err", err,
				"flag", c.opts.TimesyncFlagPath)
		}
		if c.opts.TimesyncFlagPath == "-" {
			return false
		}
		_, err := os.Stat(c.opts.TimesyncFlagPath)
		return err == nil
	}
	if state == unix.TIME_ERROR || tx.Status&unix.STA_UNSYNC != 0 {
		return false
	}
	// maxerror is in microseconds (int32 on 32-bit ARM, int64 elsewhere).
	return time.Duration(int64(tx.Maxerror))*time.Microsecond <= c.opts.MaxError
}

// sample is one look at the clocks: the wall time (true if ok), the
// CLOCK_BOOTTIME it belongs to (meaningful if monoOK), and the source.
type sample struct {
	wall   time.Time
	mono   time.Duration
	monoOK bool
	ok     bool
	source string
}

// now reads the true wall time and CLOCK_BOOTTIME together, and whether
// that wall time can be trusted.
func (c *Clock) now() sample {
	mono, err := c.opts.Boottime()
	s := sample{wall: c.opts.Now().UTC(), mono: mono, monoOK: err == nil}
	if err != nil {
		// Without boottime nothing can be corrected; only a disciplined
		// system clock can still be trusted.
		s.mono = 0
		c.mu.Lock()
		first := !c.monoErr
		c.monoErr = true
		c.mu.Unlock()
		if first {
			c.log.Warn("boottime unavailable; readings cannot be corrected", "err", err)
		}
	}
	if c.systemSynced(s.mono, s.monoOK) {
		s.ok, s.source = true, "system"
	} else if s.monoOK {
		c.mu.Lock()
		if c.ntp != nil {
			s.wall, s.ok, s.source = c.ntp.at(mono), true, "platform-ntp"
		}
		c.mu.Unlock()
	}
	if s.ok {
		c.noteSynced(s)
	} else {
		c.noteUnsynced()
	}
	return s
}

func (c *Clock) noteSynced(s sample) {
	c.mu.Lock()
	first := !c.wasSynced
	c.wasSynced = true
	save := !c.saved && c.opts.StateDir != "" && s.monoOK
	c.saved = c.saved || save
	c.mu.Unlock()
	if first {
		c.log.Info("clock synchronised", "source", s.source, "time", s.wall)
	}
	if save {
		if err := c.saveAnchor(anchor{BootID: c.bootID, Mono: s.mono, Wall: s.wall}); err != nil {
			c.log.Warn("cannot save clock anchor; readings from this boot not yet corrected will be unknown after a reboot",
				"err", err)
		}
	}
}

func (c *Clock) noteUnsynced() {
	c.mu.Lock()
	was, told := c.wasSynced, c.told
	c.wasSynced, c.told = false, true
	c.mu.Unlock()
	if !told {
		c.log.Info("clock not synchronised yet; readings are stamped unsynced and corrected once it is",
			"boot_id", c.bootID)
	}
	if was {
		c.log.Warn("clock lost synchronisation; new readings are stamped unsynced until it returns")
	}
}

// Synced reports whether the clock knows the true time now (system clock
// disciplined, or a platform NTP answer received in this process).
func (c *Clock) Synced() bool {
	return c.now().ok
}

// Now returns the true time and true, or the untrusted system time and false.
func (c *Clock) Now() (time.Time, bool) {
	s := c.now()
	return s.wall, s.ok
}

// Stamp returns when "now" is, for a sample taken now. It reads the wall
// clock and CLOCK_BOOTTIME every time, the kernel's sync state at most once
// per SyncStateTTL.
func (c *Clock) Stamp() reading.Stamp {
	s := c.now()
	return reading.Stamp{Time: s.wall, Mono: s.mono, BootID: c.bootID, Synced: s.ok}
}

// ObserveServerTime records the platform's answer to an NTP-over-MQTT
// request: server is the true time at the moment of the call (the platform
// formula (serverRecv + serverSend + deviceRecv - deviceSend) / 2), rtt the
// exchange's round trip. Samples with a round trip above MaxRTT, or claiming
// a time before 2024, are ignored. A sample replaces the previous one unless
// its round trip is more than twice as long (a slow answer is less precise,
// but the newest still wins eventually because CLOCK_BOOTTIME drifts).
func (c *Clock) ObserveServerTime(server time.Time, rtt time.Duration) {
	if rtt < 0 || rtt > c.opts.MaxRTT {
		c.log.Warn("ignoring platform time: round trip too long", "rtt", rtt, "max", c.opts.MaxRTT)
		return
	}
	if server.Before(notBefore) {
		c.log.Warn("ignoring platform time: implausible", "server_time", server)
		return
	}
	mono, err := c.opts.Boottime()
	if err != nil {
		c.log.Warn("ignoring platform time: boottime unavailable", "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ntp != nil && rtt > 2*c.ntpRTT && mono-c.ntp.Mono < time.Hour {
		return
	}
	first := c.ntp == nil
	c.ntp = &anchor{BootID: c.bootID, Mono: mono, Wall: server.UTC()}
	c.ntpRTT = rtt
	if first {
		skew := c.opts.Now().Sub(server)
		c.log.Info("learnt the time from the platform", "server_time", server.UTC(), "rtt", rtt,
			"system_clock_skew", skew.Round(time.Millisecond))
	}
}

// Check decides whether a sample's stamp can be trusted, correcting it in
// place when the sample was taken unsynchronised and the true time is now
// known. One stamp dates every value of a sample. See the package
// documentation for what to do with each Verdict.
func (c *Clock) Check(st *reading.Stamp) Verdict {
	if st.Synced {
		return Trusted
	}
	if st.BootID == c.bootID && st.BootID != "" {
		s := c.now()
		if !s.ok || !s.monoOK {
			return Wait
		}
		if st.Mono < 0 || st.Mono > s.mono {
			return Unknown // impossible for this boot: a corrupt record
		}
		st.Time = s.wall.Add(-(s.mono - st.Mono))
		st.Synced = true
		return Trusted
	}
	c.mu.Lock()
	a, found := c.anchors[st.BootID]
	c.mu.Unlock()
	if found && st.BootID != "" && st.Mono >= 0 {
		st.Time = a.at(st.Mono)
		st.Synced = true
		return Trusted
	}
	return Unknown
}

// Fix is Check reduced to "may the sample go out with its Time now": it
// corrects the stamp when it can and reports whether its Time is
// trustworthy. On false, Check tells waiting (this boot) from never (an
// earlier boot).
func (c *Clock) Fix(st *reading.Stamp) bool {
	return c.Check(st) == Trusted
}

func (c *Clock) anchorPath() string { return filepath.Join(c.opts.StateDir, anchorFile) }

func (c *Clock) loadAnchors() map[string]anchor {
	m := map[string]anchor{}
	if c.opts.StateDir == "" {
		return m
	}
	b, err := os.ReadFile(c.anchorPath())
	if errors.Is(err, os.ErrNotExist) {
		return m
	}
	if err != nil {
		c.log.Warn("cannot read clock anchors", "err", err)
		return m
	}
	var list []anchor
	if err := json.Unmarshal(b, &list); err != nil {
		// A torn or corrupt file only costs corrections of old readings.
		c.log.Warn("ignoring corrupt clock anchors", "path", c.anchorPath(), "err", err)
		return m
	}
	for _, a := range list {
		if a.BootID != "" && !a.Wall.Before(notBefore) {
			m[a.BootID] = a
		}
	}
	if a, ok := m[c.bootID]; ok {
		// Same boot, daemon restarted (e.g. after a config change): the
		// anchor is as good as a platform NTP answer, and already saved.
		c.saved = true
		c.ntp, c.ntpRTT = &a, c.opts.MaxRTT
	}
	return m
}

// saveAnchor adds this boot's anchor to the file, keeping the newest
// maxAnchors, written to a temporary file and renamed so a power cut leaves
// either the old or the new list.
func (c *Clock) saveAnchor(a anchor) error {
	c.mu.Lock()
	c.anchors[a.BootID] = a
	list := make([]anchor, 0, len(c.anchors))
	for _, x := range c.anchors {
		list = append(list, x)
	}
	c.mu.Unlock()
	sortAnchors(list)
	if len(list) > maxAnchors {
		list = list[len(list)-maxAnchors:]
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return fmt.Errorf("encode clock anchors: %w", err)
	}
	tmp := c.anchorPath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write clock anchors: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync() // once per boot: cheap, and the rename must not outrun the data
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write clock anchors: %w", err)
	}
	if err := os.Rename(tmp, c.anchorPath()); err != nil {
		return fmt.Errorf("write clock anchors: %w", err)
	}
	return nil
}

func sortAnchors(list []anchor) {
	slices.SortFunc(list, func(a, b anchor) int { return a.Wall.Compare(b.Wall) })
}
