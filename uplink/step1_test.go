package uplink_test

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatewayd/internal/iotsim"
	"gatewayd/internal/testutil"
	"gatewayd/uplink"
)

// Readings from a Source reach the emulator over TLS with their values and
// times, and are acknowledged only after a post_reply with code 200.
func TestUplinkToIotsimOverTLS(t *testing.T) {
	s := startSim(t, nil)
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	rs := src.Add(liveReadings(3, time.Now().Add(-time.Second))...)

	// First the platform answers 500: nothing may be acked.
	s.SetReplyFunc(func(iotsim.Post) (int, string) { return 500, "server error" })
	c := newClient(t, simOptions(s, log), src)
	stop := run(t, c)
	if !testutil.Eventually(10*time.Second, func() bool {
		n := 0
		for _, m := range s.Messages() {
			if m.Code == 500 {
				n++
			}
		}
		return n >= 2
	}) {
		t.Fatalf("emulator saw no retried posts: %+v", s.Messages())
	}
	if left, acked, _, _ := src.Counts(); acked != 0 || left != 3 {
		t.Fatalf("after 500 replies: %d left, %d acked; want 3 left, 0 acked", left, acked)
	}

	s.SetReplyFunc(nil)
	if !testutil.Eventually(10*time.Second, func() bool { left, _, _, _ := src.Counts(); return left == 0 }) {
		t.Fatalf("readings not acked: stats %+v", c.Stats())
	}
	stop()
	acc := s.Accepted()
	if len(acc) != 3 {
		t.Fatalf("accepted %d values, want 3: %+v", len(acc), acc)
	}
	for i, r := range rs {
		a := acc[0]
		for _, x := range acc {
			if x.Property == r.Property {
				a = x
			}
		}
		if a.Property != r.Property || a.Value != r.Value || !a.Time.Equal(r.Time) || a.Kind != "post" || a.DeviceName != dn {
			t.Errorf("reading %d: accepted %+v, sent %+v", i, a, r)
		}
		if !strings.Contains(a.Raw, ".") {
			t.Errorf("float %s without a decimal point", a.Raw)
		}
	}
	if v := src.Violations(); len(v) > 0 {
		t.Fatalf("source contract violated: %v", v)
	}
	st := c.Stats()
	if st.Acked != 3 || st.Retried < 3 || st.LastAck.IsZero() || st.Connects < 1 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(s.out.String(), dn+" temperature=20.0 taken=") {
		t.Fatalf("emulator output lacks the value line:\n%s", s.out.String())
	}
}

// A wrong device secret is refused with CONNACK 4, logged clearly, and the
// readings stay in the source.
func TestWrongSecretRefused(t *testing.T) {
	s := startSim(t, nil)
	log, lines := newLogger(t)
	src := testutil.NewMemSource()
	src.Add(liveReadings(3, time.Now())...)
	o := simOptions(s, log)
	o.DeviceSecret = "not-the-secret"
	o.BackoffMin, o.BackoffMax, o.AuthBackoff = time.Second, 20*time.Second, 2*time.Minute // the defaults
	var beats atomic.Int64
	o.Beat = func() { beats.Add(1) }
	c := newClient(t, o, src)
	stop := run(t, c)
	if !testutil.Eventually(5*time.Second, func() bool { return c.Stats().ConnectFailures >= 1 }) {
		t.Fatal("no connect failure")
	}
	time.Sleep(1500 * time.Millisecond) // would see retries if it hammered
	stop()
	if n := beats.Load(); n < 2 {
		t.Errorf("%d watchdog beats while backing off for 1.5s", n)
	}
	conns := s.Connects()
	if len(conns) != 1 || conns[0].Code != 4 {
		t.Fatalf("connect attempts %+v: want exactly one, refused with 4 (the next waits for ~1-2 min)", conns)
	}
	st := c.Stats()
	if !strings.Contains(st.LastErr, "CONNACK 4 bad user name or password") || !strings.Contains(lines.String(), "check product key, device name, device secret") {
		t.Fatalf("unclear error: %q\nlog:\n%s", st.LastErr, lines.String())
	}
	if left, acked, _, inflight := src.Counts(); left != 3 || acked != 0 || inflight != 0 {
		t.Fatalf("source: %d left, %d acked, %d in flight; want 3, 0, 0", left, acked, inflight)
	}
	if !strings.Contains(s.out.String(), dn+" login refused: CONNACK 4 bad user name or password") {
		t.Fatalf("emulator output does not show the refusal:\n%s", s.out.String())
	}
}

// Platform "mqtt" publishes through a real Mosquitto over TLS; PUBACK is
// the acknowledgement.
func TestMQTTThroughMosquittoTLS(t *testing.T) {
	ca := testutil.NewCA(t, "mosq")
	cert, key := ca.Issue(t, "mosq-server", testutil.CertOpts{})
	m := testutil.StartMosquitto(t, testutil.MosquittoOpts{CAFile: ca.File, CertFile: cert, KeyFile: key})
	sub := subscribe(t, "ssl://"+m.Addr, tlsTo(t, ca.File), "sensors/#", nil)
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	rs := src.Add(liveReadings(6, time.Now().Add(-2*time.Second))...)
	c := newClient(t, uplink.Options{
		Platform: "mqtt", DeviceName: dn, Broker: "tls://" + m.Addr, CAFile: ca.File,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 400 * time.Millisecond, Logger: log,
	}, src)
	stop := run(t, c)
	if !testutil.Eventually(10*time.Second, func() bool { left, _, _, _ := src.Counts(); return left == 0 }) {
		t.Fatalf("not all acked: %+v\n%s", c.Stats(), m.Log())
	}
	byID := map[uint64]map[string]any{}
	decode := func() {
		for _, msg := range sub.messages() {
			if msg.Topic() != "sensors/"+dn+"/air" {
				t.Errorf("topic %q", msg.Topic())
			}
			// One message per topic: an object for a reading alone, an
			// array for the readings that share the topic.
			var ps []map[string]any
			if err := json.Unmarshal(msg.Payload(), &ps); err != nil {
				var p map[string]any
				if err := json.Unmarshal(msg.Payload(), &p); err != nil {
					t.Fatalf("payload %s: %v", msg.Payload(), err)
				}
				ps = []map[string]any{p}
			}
			for _, p := range ps {
				byID[uint64(p["id"].(float64))] = p
			}
		}
	}
	if !testutil.Eventually(5*time.Second, func() bool { decode(); return len(byID) >= len(rs) }) {
		t.Fatalf("subscriber got %d readings", len(byID))
	}
	stop()
	for _, r := range rs {
		p := byID[uint64(r.ID)]
		if p == nil || p["value"] != r.Value || int64(p["time_ms"].(float64)) != r.Time.UnixMilli() || p["property"] != r.Property {
			t.Errorf("reading %d: got %v", r.ID, p)
		}
	}
	if st := c.Stats(); st.Acked != uint64(len(rs)) {
		t.Errorf("stats %+v", st)
	}
}
