package main

import (
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gatewayd/internal/clock"
	"gatewayd/internal/reading"
	"gatewayd/uplink"
)

// fakeKernel is the board's clocks as the clock package reads them: a wall
// clock, CLOCK_BOOTTIME and the NTP state adjtimex reports.
type fakeKernel struct {
	mu     sync.Mutex
	wall   time.Time
	mono   time.Duration
	synced bool
}

func (k *fakeKernel) now() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.wall
}

func (k *fakeKernel) boottime() (time.Duration, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.mono, nil
}

func (k *fakeKernel) adjtimex(tx *unix.Timex) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.synced {
		tx.Status = unix.STA_UNSYNC
		return unix.TIME_ERROR, nil
	}
	return unix.TIME_OK, nil
}

func (k *fakeKernel) sync(wall time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.wall, k.synced = wall, true
	k.mono += 2 * clock.SyncStateTTL // past the clock's cached sync state
}

// The time policy judges each sample by its one stamp and never calls the
// Source itself: the uplink releases (TimeHold) or dead-letters
// (TimeUnknown) on its verdict.
func TestTimePolicy(t *testing.T) {
	trueTime := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	sample := func(st reading.Stamp) *reading.Sample {
		return &reading.Sample{ID: 7, Sensor: "air", Stamp: st, Values: []reading.Value{
			{Measurement: "temperature", Property: "temperature", Unit: "°C", Value: 21.5, Resolution: 0.01},
			{Measurement: "humidity", Property: "humidity", Unit: "%RH", Value: 40, Resolution: 0.01}}}
	}
	for _, platform := range []string{"aliyun", "mqtt"} {
		t.Run(platform, func(t *testing.T) {
			k := &fakeKernel{wall: time.Unix(100, 0), mono: 100 * time.Second}
			clk := clock.New(clock.Options{BootIDPath: writeBootID(t, "boot-2"), TimesyncFlagPath: "-",
				Now: k.now, Boottime: k.boottime, Adjtimex: k.adjtimex, Logger: newLogger(io.Discard, "error")})
			policy := timePolicy(platform, time.Hour, clk, newLogger(io.Discard, "error"))

			synced := sample(reading.Stamp{Time: trueTime.Add(-time.Hour), Mono: 5 * time.Second, BootID: "boot-2", Synced: true})
			if v := policy(synced); v != uplink.TimeOK {
				t.Errorf("synced sample: %v, want TimeOK", v)
			}
			// Taken unsynced in this boot, clock still unsynced: held (mqtt
			// too, within its clock wait).
			early := sample(clk.Stamp())
			if v := policy(early); v != uplink.TimeHold || early.Synced {
				t.Errorf("unsynced sample of this boot: %v %+v, want TimeHold, unchanged", v, early.Stamp)
			}
			// From an earlier boot that never synced: never datable.
			lost := sample(reading.Stamp{Time: time.Unix(50, 0), Mono: 50 * time.Second, BootID: "boot-1"})
			want := uplink.TimeUnknown
			if platform == "mqtt" {
				want = uplink.TimeOK // sent marked "synced": false; a broker has no time service
			}
			if v := policy(lost); v != want {
				t.Errorf("sample of an earlier boot: %v, want %v", v, want)
			}
			// The clock syncs 30 s later: the early sample's one stamp is
			// re-dated, for all its values.
			k.mu.Lock()
			k.mono += 30 * time.Second
			k.mu.Unlock()
			k.sync(trueTime)
			if v := policy(early); v != uplink.TimeOK || !early.Synced || !early.Time.Equal(trueTime.Add(-30*time.Second-2*clock.SyncStateTTL)) {
				t.Errorf("after sync: %v %+v, want TimeOK re-dated to %v", v, early.Stamp, trueTime.Add(-30*time.Second-2*clock.SyncStateTTL))
			}
		})
	}
	// mqtt: past the clock wait an unsynced sample goes out as it is.
	k := &fakeKernel{wall: time.Unix(100, 0), mono: 100 * time.Second}
	clk := clock.New(clock.Options{BootIDPath: writeBootID(t, "boot-2"), TimesyncFlagPath: "-",
		Now: k.now, Boottime: k.boottime, Adjtimex: k.adjtimex, Logger: newLogger(io.Discard, "error")})
	policy := timePolicy("mqtt", 0, clk, newLogger(io.Discard, "error"))
	time.Sleep(time.Millisecond)
	if s := sample(clk.Stamp()); policy(s) != uplink.TimeOK || s.Synced {
		t.Errorf("mqtt past the clock wait: %+v, want TimeOK marked unsynced", s.Stamp)
	}
}

func writeBootID(t *testing.T, id string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "boot_id")
	if err := os.WriteFile(p, []byte(id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
