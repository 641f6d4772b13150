package clock

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gatewayd/internal/reading"
)

// kernel is a stand-in for the board's clocks: the wall clock (which may be
// far off), CLOCK_BOOTTIME and the NTP discipline state adjtimex reports.
type kernel struct {
	t        *testing.T
	mu       sync.Mutex
	wall     time.Time
	mono     time.Duration
	status   int32
	maxerr   time.Duration
	state    int
	err      error // adjtimex error
	monoErr  error
	adjCalls int
}

// A board without an RTC boots in 1970 with STA_UNSYNC set.
func newKernel(t *testing.T) *kernel {
	return &kernel{t: t, wall: time.Unix(3, 0), mono: 3 * time.Second,
		status: unix.STA_UNSYNC, maxerr: 16 * time.Second, state: unix.TIME_ERROR}
}

func (k *kernel) now() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.wall
}

func (k *kernel) boottime() (time.Duration, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.mono, k.monoErr
}

func (k *kernel) adjtimex(tx *unix.Timex) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.adjCalls++
	if !reflect.ValueOf(*tx).IsZero() {
		k.t.Errorf("adjtimex called with a non-zero Timex (modes %d): must be read-only", tx.Modes)
	}
	if k.err != nil {
		return -1, k.err
	}
	tx.Status = k.status
	// Maxerror is int32 on 32-bit ARM and int64 elsewhere.
	reflect.ValueOf(&tx.Maxerror).Elem().SetInt(int64(k.maxerr / time.Microsecond))
	return k.state, nil
}

func (k *kernel) advance(d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.wall = k.wall.Add(d)
	k.mono += d
}

// ntpSync is what timesyncd does: step the wall clock and clear STA_UNSYNC.
func (k *kernel) ntpSync(wall time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.wall = wall
	k.status = 0
	k.maxerr = 20 * time.Millisecond
	k.state = unix.TIME_OK
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func bootIDFile(t *testing.T, id string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "boot_id")
	if err := os.WriteFile(p, []byte(id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newClock(t *testing.T, k *kernel, bootID, stateDir string) *Clock {
	t.Helper()
	return New(Options{
		BootIDPath:       bootIDFile(t, bootID),
		TimesyncFlagPath: filepath.Join(t.TempDir(), "no-such-flag"),
		StateDir:         stateDir,
		Now:              k.now,
		Boottime:         k.boottime,
		Adjtimex:         k.adjtimex,
		Logger:           quiet(),
	})
}

var trueTime = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestSyncedFromAdjtimex(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "synchronized")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		status int32
		maxerr time.Duration
		state  int
		err    error
		flag   string
		want   bool
	}{
		{name: "fresh boot", status: unix.STA_UNSYNC, maxerr: 16 * time.Second, state: unix.TIME_ERROR},
		{name: "synced", status: unix.STA_PLL, maxerr: 30 * time.Millisecond, state: unix.TIME_OK, want: true},
		{name: "leap second pending is still synced", maxerr: time.Millisecond, state: unix.TIME_INS, want: true},
		{name: "unsync bit alone", status: unix.STA_UNSYNC | unix.STA_PLL, maxerr: time.Millisecond, state: unix.TIME_OK},
		{name: "time error alone", maxerr: time.Millisecond, state: unix.TIME_ERROR},
		{name: "maxerror above bound", maxerr: 6 * time.Second, state: unix.TIME_OK},
		{name: "maxerror at bound", maxerr: DefaultMaxError, state: unix.TIME_OK, want: true},
		{name: "adjtimex denied, timesyncd flag present", err: unix.EPERM, flag: flag, want: true},
		{name: "adjtimex denied, no flag", err: unix.EPERM, flag: flag + ".absent"},
		{name: "adjtimex denied, fallback off", err: unix.EPERM, flag: "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKernel(t)
			k.status, k.maxerr, k.state, k.err = tc.status, tc.maxerr, tc.state, tc.err
			c := New(Options{BootIDPath: bootIDFile(t, "b1"), TimesyncFlagPath: tc.flag,
				Now: k.now, Boottime: k.boottime, Adjtimex: k.adjtimex, Logger: quiet()})
			if got := c.Synced(); got != tc.want {
				t.Errorf("Synced() = %v, want %v", got, tc.want)
			}
			if got := c.Stamp().Synced; got != tc.want {
				t.Errorf("Stamp().Synced = %v, want %v", got, tc.want)
			}
			if k.adjCalls == 0 {
				t.Error("adjtimex never consulted")
			}
		})
	}
}

func TestStamp(t *testing.T) {
	k := newKernel(t)
	k.wall = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CST", 8*3600))
	k.mono = 42 * time.Second
	c := newClock(t, k, "0f9d8c7b-aaaa-bbbb-cccc-1234567890ab", "")
	s := c.Stamp()
	want := reading.Stamp{Time: k.wall.UTC(), Mono: 42 * time.Second,
		BootID: "0f9d8c7b-aaaa-bbbb-cccc-1234567890ab", Synced: false}
	if s != want {
		t.Errorf("Stamp() = %+v, want %+v", s, want)
	}
	if s.Time.Location() != time.UTC {
		t.Errorf("Stamp().Time location = %v, want UTC", s.Time.Location())
	}
}

// The acceptance case: a reading taken with an unsynchronised clock is sent
// with a corrected time after sync, whichever way the sync comes.
func TestUnsyncedReadingCorrectedAfterSync(t *testing.T) {
	for _, tc := range []struct {
		name string
		sync func(k *kernel, c *Clock)
	}{
		{name: "system ntp", sync: func(k *kernel, c *Clock) { k.ntpSync(trueTime) }},
		{name: "platform ntp over mqtt", sync: func(k *kernel, c *Clock) {
			c.ObserveServerTime(trueTime, 120*time.Millisecond)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKernel(t)
			c := newClock(t, k, "boot-1", "")
			k.advance(7 * time.Second)
			smp := reading.Sample{ID: 1, Sensor: "air", Stamp: c.Stamp(), Values: []reading.Value{
				{Measurement: "temperature", Value: 21.5}, {Measurement: "humidity", Value: 40}}}
			r := &smp.Stamp // one stamp dates every value of the sample
			if r.Synced || r.Time.Year() != 1970 {
				t.Fatalf("stamp before sync = %+v, want unsynced 1970", r)
			}
			before := *r
			if v := c.Check(r); v != Wait {
				t.Fatalf("Check before sync = %v, want wait", v)
			}
			if *r != before {
				t.Fatalf("Check before sync changed the stamp: %+v", r)
			}
			if c.Fix(r) {
				t.Fatal("Fix before sync = true")
			}

			k.advance(90 * time.Second) // the uplink connects 90 s later
			tc.sync(k, c)
			k.advance(5 * time.Second) // and sends 5 s after the sync

			if !c.Fix(r) {
				t.Fatal("Fix after sync = false")
			}
			want := trueTime.Add(5*time.Second - 95*time.Second)
			if !smp.Time.Equal(want) || !smp.Synced {
				t.Errorf("corrected sample = %v synced=%v, want %v synced", smp.Time, smp.Synced, want)
			}
			// A reading taken now is dated correctly from the start.
			s := c.Stamp()
			if !s.Synced || !s.Time.Equal(trueTime.Add(5*time.Second)) {
				t.Errorf("stamp after sync = %+v, want synced %v", s, trueTime.Add(5*time.Second))
			}
			// Fixing twice changes nothing.
			again := *r
			if c.Check(&again) != Trusted || again != *r {
				t.Errorf("second Check changed %+v to %+v", r, again)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	synced := reading.Stamp{Time: trueTime.Add(-time.Hour), Mono: 5 * time.Second, BootID: "boot-1", Synced: true}
	for _, tc := range []struct {
		name     string
		synced   bool // the clock knows the true time when Check runs
		r        reading.Stamp
		want     Verdict
		wantTime time.Time // zero: unchanged
	}{
		{name: "synced reading is left alone", r: synced, want: Trusted},
		{name: "synced reading, clock unsynced now", synced: false, r: synced, want: Trusted},
		{name: "this boot, clock unsynced", r: reading.Stamp{Time: time.Unix(5, 0), Mono: 5 * time.Second, BootID: "boot-1"}, want: Wait},
		{name: "this boot, synced", synced: true,
			r:    reading.Stamp{Time: time.Unix(5, 0), Mono: 5 * time.Second, BootID: "boot-1"},
			want: Trusted, wantTime: trueTime.Add(-(100*time.Second - 5*time.Second))},
		{name: "earlier boot, no anchor", synced: true,
			r: reading.Stamp{Time: time.Unix(5, 0), Mono: 5 * time.Second, BootID: "boot-0"}, want: Unknown},
		{name: "no boot id", synced: true,
			r: reading.Stamp{Time: time.Unix(5, 0), Mono: 5 * time.Second}, want: Unknown},
		{name: "mono from the future is corrupt", synced: true,
			r: reading.Stamp{Time: time.Unix(5, 0), Mono: time.Hour, BootID: "boot-1"}, want: Unknown},
		{name: "negative mono is corrupt", synced: true,
			r: reading.Stamp{Time: time.Unix(5, 0), Mono: -time.Second, BootID: "boot-1"}, want: Unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKernel(t)
			k.mono = 100 * time.Second
			if tc.synced {
				k.ntpSync(trueTime)
			}
			c := newClock(t, k, "boot-1", "")
			r := tc.r
			if got := c.Check(&r); got != tc.want {
				t.Errorf("Check = %v, want %v", got, tc.want)
			}
			want := tc.r
			if !tc.wantTime.IsZero() {
				want.Time, want.Synced = tc.wantTime, true
			}
			if r != want {
				t.Errorf("reading after Check = %+v, want %+v", r, want)
			}
		})
	}
}

func TestObserveServerTime(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server time.Time
		rtt    time.Duration
		synced bool
	}{
		{name: "good answer", server: trueTime, rtt: 300 * time.Millisecond, synced: true},
		{name: "round trip too long", server: trueTime, rtt: 11 * time.Second},
		{name: "negative round trip", server: trueTime, rtt: -time.Millisecond},
		{name: "implausible time", server: time.Unix(1000, 0), rtt: time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKernel(t)
			c := newClock(t, k, "boot-1", "")
			c.ObserveServerTime(tc.server, tc.rtt)
			k.advance(time.Minute)
			now, ok := c.Now()
			if ok != tc.synced {
				t.Fatalf("Now() ok = %v, want %v", ok, tc.synced)
			}
			if ok && !now.Equal(tc.server.Add(time.Minute)) {
				t.Errorf("Now() = %v, want %v", now, tc.server.Add(time.Minute))
			}
		})
	}

	t.Run("a much slower answer does not replace a recent good one", func(t *testing.T) {
		k := newKernel(t)
		c := newClock(t, k, "boot-1", "")
		c.ObserveServerTime(trueTime, 100*time.Millisecond)
		k.advance(time.Second)
		c.ObserveServerTime(trueTime.Add(time.Second+3*time.Second), 5*time.Second) // 3 s off, slow
		if now, _ := c.Now(); !now.Equal(trueTime.Add(time.Second)) {
			t.Errorf("Now() = %v, want %v", now, trueTime.Add(time.Second))
		}
		k.advance(2 * time.Second)
		c.ObserveServerTime(trueTime.Add(3*time.Second+50*time.Millisecond), 80*time.Millisecond)
		if now, _ := c.Now(); !now.Equal(trueTime.Add(3*time.Second + 50*time.Millisecond)) {
			t.Errorf("Now() after a better answer = %v", now)
		}
	})
}

// A reading taken unsynced in one boot, whose clock got synced later in that
// boot, is corrected after a reboot from the anchor kept in the state dir.
func TestAnchorAcrossReboot(t *testing.T) {
	state := t.TempDir()
	k := newKernel(t)
	c1 := newClock(t, k, "boot-1", state)
	k.advance(10 * time.Second)
	early := c1.Stamp()
	k.advance(50 * time.Second)
	c1.ObserveServerTime(trueTime, 50*time.Millisecond)
	if !c1.Synced() {
		t.Fatal("not synced after platform time")
	}
	if _, err := os.Stat(filepath.Join(state, anchorFile)); err != nil {
		t.Fatalf("anchor not saved: %v", err)
	}

	t.Run("daemon restart in the same boot keeps the time", func(t *testing.T) {
		k.advance(30 * time.Second)
		c := newClock(t, k, "boot-1", state)
		now, ok := c.Now()
		if !ok || !now.Equal(trueTime.Add(30*time.Second)) {
			t.Errorf("Now() after restart = %v, %v; want %v, true", now, ok, trueTime.Add(30*time.Second))
		}
	})

	t.Run("after a reboot", func(t *testing.T) {
		k2 := newKernel(t) // power cut: 1970 again, boottime restarts
		c2 := newClock(t, k2, "boot-2", state)
		r := early
		if v := c2.Check(&r); v != Trusted {
			t.Fatalf("Check = %v, want trusted", v)
		}
		want := trueTime.Add(-50 * time.Second)
		if !r.Time.Equal(want) {
			t.Errorf("corrected time = %v, want %v", r.Time, want)
		}
		// A reading from a boot that never synced stays unknown.
		lost := reading.Stamp{Time: time.Unix(20, 0), Mono: 20 * time.Second, BootID: "boot-x"}
		if v := c2.Check(&lost); v != Unknown || lost.Synced || lost.Time != time.Unix(20, 0) {
			t.Errorf("reading from an unsynced boot: %v %+v", v, lost)
		}
	})

	t.Run("corrupt anchor file", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(state, anchorFile), []byte(`[{"boot_id":`), 0o644); err != nil {
			t.Fatal(err)
		}
		c := newClock(t, newKernel(t), "boot-3", state)
		r := early
		if v := c.Check(&r); v != Unknown {
			t.Errorf("Check with corrupt anchors = %v, want unknown", v)
		}
	})
}

func TestMissingBootID(t *testing.T) {
	k := newKernel(t)
	c := New(Options{BootIDPath: filepath.Join(t.TempDir(), "absent"), TimesyncFlagPath: "-",
		Now: k.now, Boottime: k.boottime, Adjtimex: k.adjtimex, Logger: quiet()})
	if !strings.HasPrefix(c.BootID(), "proc-") {
		t.Fatalf("BootID() = %q, want a per-process id", c.BootID())
	}
	r := c.Stamp()
	k.ntpSync(trueTime)
	k.advance(SyncStateTTL) // the sync state read for the stamp has aged out
	if !c.Fix(&r) {
		t.Error("reading from this process not corrected")
	}
}

func TestBoottimeFailure(t *testing.T) {
	k := newKernel(t)
	k.monoErr = errors.New("no boottime")
	c := newClock(t, k, "boot-1", "")
	c.ObserveServerTime(trueTime, time.Millisecond)
	if c.Synced() {
		t.Error("synced from platform time without boottime to keep it")
	}
	k.ntpSync(trueTime)
	if s := c.Stamp(); !s.Synced || !s.Time.Equal(trueTime) {
		t.Errorf("Stamp with a synced system clock = %+v", s)
	}
	// An unsynced reading of this boot cannot be corrected without
	// boottime, but it is not lost either: it waits.
	r := reading.Stamp{Time: time.Unix(5, 0), Mono: 5 * time.Second, BootID: "boot-1"}
	if v := c.Check(&r); v != Wait || r.Synced {
		t.Errorf("Check without boottime = %v %+v, want wait, unchanged", v, r)
	}
}

// The real kernel of the machine running the tests.
func TestRealKernel(t *testing.T) {
	c := New(Options{Logger: quiet()})
	id, err := os.ReadFile(DefaultBootIDPath)
	if err != nil {
		t.Fatalf("this test needs Linux: %v", err)
	}
	before := time.Now()
	s := c.Stamp()
	if s.BootID != strings.TrimSpace(string(id)) {
		t.Errorf("BootID = %q, want %q", s.BootID, id)
	}
	if s.Mono <= 0 {
		t.Errorf("Mono = %v, want > 0", s.Mono)
	}
	if d := s.Time.Sub(before); d < 0 || d > time.Second {
		t.Errorf("Time = %v, system says %v", s.Time, before)
	}
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		t.Fatalf("adjtimex: %v", err)
	}
	kernelSynced := state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0 &&
		time.Duration(int64(tx.Maxerror))*time.Microsecond <= DefaultMaxError
	if s.Synced != kernelSynced {
		t.Errorf("Synced = %v, kernel says %v (state %d status %#x maxerror %dus)",
			s.Synced, kernelSynced, state, tx.Status, tx.Maxerror)
	}
}

// Every sample is stamped, and at 10 samples a second an adjtimex each is
// measurable (issue 11): the kernel's sync state is read at most once per
// SyncStateTTL of CLOCK_BOOTTIME, by Stamp, Synced, Now and Check alike, and
// a change of state is seen within that bound.
func TestSyncStateCachedForASecond(t *testing.T) {
	k := newKernel(t)
	c := newClock(t, k, "boot-1", "")
	// 10 s of 10 samples a second, every call the daemon makes per sample.
	var early reading.Stamp
	for i := 0; i < 100; i++ {
		s := c.Stamp()
		if i == 0 {
			early = s
		}
		c.Synced()
		c.Now()
		e := early
		c.Check(&e)
		k.advance(100 * time.Millisecond)
	}
	if k.adjCalls != 10 {
		t.Errorf("adjtimex called %d times for 100 samples over 10 s, want 10 (once per %v)", k.adjCalls, SyncStateTTL)
	}

	// NTP syncs the clock: samples stamped within the TTL may still say
	// unsynced (they are re-dated like any other), none after it.
	k.ntpSync(trueTime)
	for i := 0; i < 10; i++ {
		c.Stamp()
		k.advance(100 * time.Millisecond)
	}
	if st := c.Stamp(); !st.Synced {
		t.Fatalf("stamp %v after the kernel synced still unsynced", 10*100*time.Millisecond)
	}
	if e := early; c.Check(&e) != Trusted || !e.Synced {
		t.Errorf("early sample not re-dated after sync: %+v", e)
	}

	// Losing sync is seen within the TTL too.
	k.mu.Lock()
	k.status, k.state = unix.STA_UNSYNC, unix.TIME_ERROR
	k.mu.Unlock()
	k.advance(SyncStateTTL)
	if c.Synced() {
		t.Error("lost sync not seen after the TTL")
	}

	// Without CLOCK_BOOTTIME there is nothing to age the answer by: the
	// kernel is asked every time rather than trusted forever.
	k.monoErr = errors.New("no boottime")
	before := k.adjCalls
	for i := 0; i < 3; i++ {
		c.Synced()
	}
	if k.adjCalls != before+3 {
		t.Errorf("without boottime: %d adjtimex calls for 3 looks, want 3", k.adjCalls-before)
	}
}

// The raw system calls read what x/sys's wrappers read: CLOCK_BOOTTIME
// between two wrapper reads, and the same clock discipline state.
func TestRawSyscallsMatchWrappers(t *testing.T) {
	var a, b unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &a); err != nil {
		t.Fatal(err)
	}
	got, err := boottime()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &b); err != nil {
		t.Fatal(err)
	}
	if lo, hi := time.Duration(a.Nano()), time.Duration(b.Nano()); got < lo || got > hi {
		t.Fatalf("raw boottime %v outside the wrapper's reads [%v, %v]", got, lo, hi)
	}
	var want, raw unix.Timex
	ws, werr := unix.Adjtimex(&want)
	rs, rerr := adjtimex(&raw)
	if (werr == nil) != (rerr == nil) {
		t.Fatalf("wrapper err %v, raw err %v", werr, rerr)
	}
	if werr == nil && (ws != rs || want.Status != raw.Status) {
		t.Fatalf("wrapper state %d status %#x, raw state %d status %#x", ws, want.Status, rs, raw.Status)
	}
}
