package uplink_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"gatewayd/internal/iotsim"
	"gatewayd/internal/testutil"
)

// An NTP "answer" nobody asked for (anyone who can publish to the response
// topic, or a replay) does not move the clock.
func TestNTPUnsolicitedAnswerIgnored(t *testing.T) {
	s := startSim(t, func(o *iotsim.Options) { o.ClockOffset = time.Hour })
	log, _ := newLogger(t)
	var calls atomic.Int32
	var last atomic.Int64
	o := simOptions(s, log)
	o.OnServerTime = func(server time.Time, _ time.Duration) { calls.Add(1); last.Store(server.UnixMilli()) }
	c := newClient(t, o, testutil.NewMemSource())
	run(t, c)
	if !testutil.Eventually(5*time.Second, func() bool { return calls.Load() == 1 }) {
		t.Fatal("no NTP result")
	}
	refused := c.Stats().DownlinkRefused
	now := time.Now().UnixMilli()
	for _, p := range []string{
		// a claimed time of 2001, for a request never sent
		`{"deviceSendTime":"978307200000","serverRecvTime":"978307200000","serverSendTime":"978307200000"}`,
		// a plausible time, for a request never sent
		`{"deviceSendTime":"` + itoa(now-10) + `","serverRecvTime":"` + itoa(now) + `","serverSendTime":"` + itoa(now) + `"}`,
	} {
		if err := s.Publish("/ext/ntp/"+pk+"/"+dn+"/response", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if !testutil.Eventually(3*time.Second, func() bool { return c.Stats().DownlinkRefused >= refused+2 }) {
		t.Fatalf("unsolicited answers not refused: stats %+v", c.Stats())
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("OnServerTime called %d times; last server time %v", n, time.UnixMilli(last.Load()).UTC())
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
