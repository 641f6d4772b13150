package uplink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"gatewayd/internal/iotsim"
	"gatewayd/internal/reading"
	"gatewayd/internal/testutil"
	"gatewayd/uplink"
)

type key struct {
	prop  string
	value float64
	ms    int64
}

func keyOf(s reading.Sample) key {
	return key{s.Values[0].Property, s.Values[0].Value, s.Time.UnixMilli()}
}

// An outage while readings keep coming, then recovery: every reading
// arrives, with its original time, by the message kind its age calls for;
// duplicates only for readings that were in flight.
func TestOutageAndRecovery(t *testing.T) {
	s := startSim(t, nil)
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	now := time.Now()
	var all []reading.Sample
	n := 0
	mk := func(at time.Time) reading.Sample {
		n++
		p := []string{"temperature", "humidity", "pressure"}[n%3]
		return one("air", p, float64(n)+0.5, at)
	}
	// Backlog from before: a day and more old (history) and hours old (batch).
	for i := 0; i < 30; i++ {
		all = append(all, src.Add(mk(now.Add(-25*time.Hour+time.Duration(i)*time.Minute)))...)
		all = append(all, src.Add(mk(now.Add(-2*time.Hour+time.Duration(i)*time.Minute)))...)
	}
	o := simOptions(s, log)
	o.LiveWindow = 500 * time.Millisecond
	o.MaxDelay = 100 * time.Millisecond
	o.MaxValuesPerMsg = 20
	c := newClient(t, o, src)
	stop := run(t, c)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Go(func() { // the sampling loop keeps going throughout
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 500; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			r := src.Add(mk(time.Now()))
			mu.Lock()
			all = append(all, r...)
			mu.Unlock()
		}
	})
	time.Sleep(500 * time.Millisecond)
	s.SetOutage(true)
	time.Sleep(1500 * time.Millisecond)
	if c.Stats().Connected {
		t.Error("still connected during the outage")
	}
	s.SetOutage(false)
	time.Sleep(700 * time.Millisecond)
	cancel()
	wg.Wait()
	if !testutil.Eventually(15*time.Second, func() bool { left, _, _, _ := src.Counts(); return left == 0 }) {
		left, acked, dead, inflight := src.Counts()
		t.Fatalf("not drained: %d left (%d in flight), %d acked, %d dead; stats %+v", left, inflight, acked, dead, c.Stats())
	}
	stop()

	seen := map[key]int{}
	kinds := map[key]iotsim.Accepted{}
	for _, a := range s.Accepted() {
		k := key{a.Property, a.Value, a.Time.UnixMilli()}
		seen[k]++
		kinds[k] = a
	}
	dups := 0
	for _, r := range all {
		k := keyOf(r)
		if seen[k] == 0 {
			t.Fatalf("reading %+v never arrived", r)
		}
		dups += seen[k] - 1
		a := kinds[k]
		age := a.Received.Sub(r.Time)
		switch {
		case age > 24*time.Hour && a.Kind != "history":
			t.Errorf("%v old reading sent as %s", age, a.Kind)
		case age > time.Hour && age < 23*time.Hour && a.Kind != "batch":
			t.Errorf("%v old reading sent as %s", age, a.Kind)
		case a.Kind == "post" && age > o.LiveWindow+time.Second:
			t.Errorf("%v old reading sent as a live post", age)
		}
	}
	if len(seen) != len(all) {
		t.Errorf("%d distinct values arrived, %d readings taken", len(seen), len(all))
	}
	st := c.Stats()
	if uint64(dups) > st.Retried {
		t.Errorf("%d duplicates but only %d values were ever released for a resend", dups, st.Retried)
	}
	// Live samples of one sensor coalesced over max_delay repeat their
	// properties: they go by batch post too.
	if st.Connects < 2 || st.SentByKind["history"] == 0 || st.SentByKind["batch"] == 0 || st.AckedMessages >= st.AckedSamples/2 {
		t.Errorf("stats %+v", st)
	}
	if v := src.Violations(); len(v) > 0 {
		t.Fatal(v)
	}
	t.Logf("%d readings, %d duplicates, stats %+v", len(all), dups, st)
}

// A 460 refuses a message; the uplink splits it down to the values that
// cause it and dead-letters exactly those values, not their samples: the
// other values of the same samples are acked, and everything else flows on.
func TestCode460DeadLettersOnlyTheBadValues(t *testing.T) {
	s := startSim(t, nil)
	s.SetReplyFunc(func(p iotsim.Post) (int, string) {
		for _, v := range p.Values {
			if v.Property == "bad" {
				return 460, "request parameter error"
			}
		}
		return 0, ""
	})
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	bad := map[reading.Ref]bool{}
	total := 0
	at := time.Now().Add(-time.Hour)
	for i := 0; i < 120; i++ {
		smp := one("air", "temperature", float64(i)+0.25, at.Add(time.Duration(i)*time.Second))
		smp.Values = append(smp.Values, reading.Value{Measurement: "humidity", Property: "humidity", Value: 40.5})
		if i%37 == 5 {
			smp.Values = append(smp.Values, reading.Value{Measurement: "odd", Property: "bad", Value: 1.5})
		}
		r := src.Add(smp)[0]
		total += len(r.Values)
		if i%37 == 5 {
			bad[reading.Ref{ID: r.ID, Measurement: "odd"}] = true
		}
	}
	c := newClient(t, simOptions(s, log), src)
	stop := run(t, c)
	if !testutil.Eventually(10*time.Second, func() bool { left, _, _, _ := src.Counts(); return left == 0 }) {
		t.Fatalf("not drained: stats %+v", c.Stats())
	}
	stop()
	dead := src.DeadLetters()
	if len(dead) != len(bad) {
		t.Fatalf("dead-lettered %d values, want exactly the %d bad ones: %v", len(dead), len(bad), dead)
	}
	for ref, reason := range dead {
		if !bad[ref] || !strings.Contains(reason, "460") {
			t.Errorf("value %v dead-lettered (%q)", ref, reason)
		}
	}
	acks := src.AckCounts()
	for ref := range bad {
		for _, m := range []string{"temperature", "humidity"} {
			if acks[reading.Ref{ID: ref.ID, Measurement: m}] != 1 {
				t.Errorf("sample %d: %s not acked once beside its refused value", ref.ID, m)
			}
		}
	}
	if _, acked, _, _ := src.Counts(); acked != total-len(bad) {
		t.Errorf("acked %d, want %d", acked, total-len(bad))
	}
	if st := c.Stats(); st.DeadLettered != uint64(len(bad)) || st.Acked != uint64(total-len(bad)) {
		t.Errorf("stats %+v", st)
	}
	if st := c.Stats(); uint64(src.AckCalls()) != st.AckedMessages {
		t.Errorf("%d Ack calls for %d acknowledged messages: want one per message", src.AckCalls(), st.AckedMessages)
	}
	if v := src.Violations(); len(v) > 0 {
		t.Fatal(v)
	}
}

// A 429 storm slows the sender down (it does not keep firing at its own
// rate) and loses nothing.
func TestThrottleStormSlowsDownWithoutLoss(t *testing.T) {
	s := startSim(t, func(o *iotsim.Options) { o.RateLimit, o.RateBurst = 10, 2 })
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	at := time.Now().Add(-time.Hour)
	for i := 0; i < 150; i++ {
		src.Add(one("air", "temperature", float64(i)+0.5, at.Add(time.Duration(i)*time.Second)))
	}
	o := simOptions(s, log)
	o.MaxMessagesPerSecond = 200
	o.MaxValuesPerMsg = 10
	o.BackoffMin, o.BackoffMax = 50*time.Millisecond, 300*time.Millisecond
	c := newClient(t, o, src)
	start := time.Now()
	stop := run(t, c)
	if !testutil.Eventually(15*time.Second, func() bool { left, _, _, _ := src.Counts(); return left == 0 }) {
		t.Fatalf("not drained: stats %+v", c.Stats())
	}
	took := time.Since(start)
	stop()
	var ok, throttled, late int
	for _, m := range s.Messages() {
		switch m.Code {
		case 200:
			ok++
		case 429:
			throttled++
			if m.Received.Sub(start) > time.Second {
				late++
			}
		}
	}
	st := c.Stats()
	// The first window of 16 messages meets a limit with a burst of 2, so
	// an early storm of 429s is expected. A sender that did not slow down
	// would keep meeting it (16 messages after each pause); one that adapts
	// its rate and window gets few refusals after the first second.
	if throttled == 0 || late > ok {
		t.Errorf("%d throttled (%d after the first second), %d accepted messages in %v: the sender did not slow down", throttled, late, ok, took)
	}
	if _, acked, dead, _ := src.Counts(); acked != 150 || dead != 0 || len(s.Accepted()) < 150 || st.Throttled != uint64(throttled) {
		t.Errorf("acked %d dead %d accepted %d; stats %+v", acked, dead, len(s.Accepted()), st)
	}
	t.Logf("%d accepted, %d throttled messages in %v", ok, throttled, took)
	if testing.Verbose() {
		var seq []string
		for _, m := range s.Messages() {
			seq = append(seq, fmt.Sprintf("%d@%dms", m.Code, m.Received.Sub(start).Milliseconds()))
		}
		t.Log(strings.Join(seq, " "))
	}
}

// Live readings go out promptly while a large backlog drains at the
// remaining rate.
func TestLiveNotStarvedByBacklog(t *testing.T) {
	s := startSim(t, nil)
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	at := time.Now().Add(-3 * time.Hour)
	for i := 0; i < 400; i++ {
		src.Add(one("air", "humidity", float64(i)+0.5, at.Add(time.Duration(i)*time.Second)))
	}
	o := simOptions(s, log)
	o.MaxMessagesPerSecond = 10
	o.MaxDelay = 100 * time.Millisecond
	o.MaxValuesPerMsg = 5 // the backlog needs 80 messages: 8.8 s
	c := newClient(t, o, src)
	stop := run(t, c)
	defer stop()
	time.Sleep(700 * time.Millisecond)
	for i := 0; i < 3; i++ {
		sent := time.Now()
		live := src.Add(one("air", "temperature", 1000.5+float64(i), sent))
		if !testutil.Eventually(3*time.Second, func() bool { return !src.Has(live[0].ID) }) {
			t.Fatalf("live reading %d not acked within 3s", i)
		}
		if d := time.Since(sent); d > 600*time.Millisecond+o.MaxDelay {
			t.Errorf("live reading took %v behind the backlog", d)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if left, _, _, _ := src.Counts(); left < 200 {
		t.Fatalf("backlog drained too fast (%d left): the rate limit was not applied", left)
	}
	var posts int
	for _, a := range s.Accepted() {
		if a.Value > 1000 && a.Kind == "post" {
			posts++
		}
	}
	if posts != 3 {
		t.Errorf("%d live readings went by property post, want 3", posts)
	}
}

type control struct {
	mu sync.Mutex
	iv map[string]time.Duration
}

func (c *control) SetInterval(sensor string, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.iv[sensor]; !ok {
		return fmt.Errorf("no sensor %q", sensor)
	}
	if d < time.Second {
		return errors.New("the driver needs at least 1s between samples")
	}
	c.iv[sensor] = d
	return nil
}

func (c *control) Interval(sensor string) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.iv[sensor]
	return d, ok
}

func (c *control) ReadNow(ctx context.Context) ([]reading.Sample, error) {
	return []reading.Sample{one("air", "temperature", 21.5, time.Now())}, nil
}

func (c *control) Status() map[string]any { return map[string]any{"sensors": len(c.iv)} }

// A property set of "<sensor>_interval" changes the interval through
// Control and is answered with the real outcome; unknown properties and
// failures are answered with errors.
func TestPropertySetInterval(t *testing.T) {
	s := startSim(t, nil)
	log, _ := newLogger(t)
	ctl := &control{iv: map[string]time.Duration{"air": 10 * time.Second, "soil": time.Minute}}
	o := simOptions(s, log)
	o.Control = ctl
	c := newClient(t, o, testutil.NewMemSource())
	run(t, c)
	if !testutil.Eventually(5*time.Second, func() bool { return c.Stats().Connected }) {
		t.Fatal("not connected")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := s.SetProperty(ctx, pk, dn, map[string]any{"air_interval": 30})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := ctl.Interval("air"); r.Code != 200 || d != 30*time.Second || !strings.Contains(string(r.Data), `"air_interval":30`) {
		t.Fatalf("set_reply %+v, interval now %v", r, d)
	}
	for params, want := range map[string]string{
		`{"colour":"red"}`:                                           "cannot be set",
		`{"nosuch_interval":5}`:                                      `no sensor "nosuch"`,
		`{"soil_interval":0.5}`:                                      "at least 1s",
		`{"soil_interval":"fast"}`:                                   "invalid duration",
		`{"air_interval":20,"pump_interval":5}`:                      `no sensor "pump"`,
		`{"soil_interval":-3}`:                                       "out of range",
		`{"soil_interval":{"value":3}}`:                              "want seconds",
		`{"soil_interval":1e309}`:                                    "want seconds",
		`{"soil_interval":` + fmt.Sprint(int64(math.MaxInt64)) + `}`: "out of range",
	} {
		var p map[string]any
		if err := json.Unmarshal([]byte(params), &p); err != nil && !strings.Contains(params, "1e309") {
			t.Fatal(err)
		}
		if strings.Contains(params, "1e309") {
			p = map[string]any{"soil_interval": json.RawMessage("1e309")}
		}
		r, err := s.SetProperty(ctx, pk, dn, p)
		if err != nil {
			t.Fatal(err)
		}
		if r.Code == 200 || !strings.Contains(r.Message, want) {
			t.Errorf("%s: reply %+v, want an error mentioning %q", params, r, want)
		}
	}
	if d, _ := ctl.Interval("air"); d != 30*time.Second {
		t.Errorf("a refused request changed air to %v", d)
	}
	if d, _ := ctl.Interval("soil"); d != time.Minute {
		t.Errorf("a refused request changed soil to %v", d)
	}
}

// The control topic answers the documented commands and refuses the rest.
func TestControlTopic(t *testing.T) {
	s := startSim(t, nil)
	log, lines := newLogger(t)
	ctl := &control{iv: map[string]time.Duration{"air": 10 * time.Second}}
	o := simOptions(s, log)
	o.Control = ctl
	c := newClient(t, o, testutil.NewMemSource())
	run(t, c)
	if !testutil.Eventually(5*time.Second, func() bool { return c.Stats().Connected }) {
		t.Fatal("not connected")
	}
	topic := "/" + pk + "/" + dn + "/control"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ask := func(body string) map[string]any {
		t.Helper()
		b, err := s.Request(ctx, topic, []byte(body), topic+"/reply")
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("reply %s: %v", b, err)
		}
		return m
	}
	if m := ask(`{"id":"1","cmd":"set_interval","sensor":"air","interval":"15s"}`); m["code"] != 200.0 || m["id"] != "1" {
		t.Fatalf("set_interval: %v", m)
	}
	if d, _ := ctl.Interval("air"); d != 15*time.Second {
		t.Fatalf("interval %v", d)
	}
	if m := ask(`{"id":"2","cmd":"get_interval","sensor":"air"}`); m["code"] != 200.0 || m["data"].(map[string]any)["interval"] != "15s" {
		t.Fatalf("get_interval: %v", m)
	}
	if m := ask(`{"id":"3","cmd":"read_now"}`); m["code"] != 200.0 || len(m["data"].(map[string]any)["readings"].([]any)) != 1 {
		t.Fatalf("read_now: %v", m)
	}
	if m := ask(`{"id":"4","cmd":"status"}`); m["code"] != 200.0 || m["data"].(map[string]any)["sensors"] != 1.0 || m["data"].(map[string]any)["uplink"] == nil {
		t.Fatalf("status: %v", m)
	}
	if m := ask(`{"id":"5","cmd":"exec","args":"rm -rf /"}`); m["code"] != 400.0 {
		t.Fatalf("unknown command answered %v", m)
	}
	if m := ask(`{"id":"6","cmd":"set_interval","sensor":"pump","interval":"5s"}`); m["code"] != 404.0 {
		t.Fatalf("unknown sensor answered %v", m)
	}
	if st := c.Stats(); st.DownlinkRefused != 2 || st.Downlink != 4 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(lines.String(), "downlink message refused") {
		t.Error("refusal not logged")
	}
}

// NTP over MQTT feeds OnServerTime with the platform's clock.
func TestNTPOverMQTT(t *testing.T) {
	s := startSim(t, func(o *iotsim.Options) { o.ClockOffset = time.Hour })
	log, _ := newLogger(t)
	got := make(chan [2]time.Duration, 1)
	o := simOptions(s, log)
	o.OnServerTime = func(server time.Time, rtt time.Duration) {
		select {
		case got <- [2]time.Duration{time.Until(server), rtt}:
		default:
		}
	}
	c := newClient(t, o, testutil.NewMemSource())
	run(t, c)
	select {
	case r := <-got:
		if r[0] < time.Hour-time.Second || r[0] > time.Hour+time.Second || r[1] < 0 || r[1] > time.Second {
			t.Fatalf("server clock ahead by %v (want ~1h), rtt %v", r[0], r[1])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no NTP result")
	}
	if off := c.Stats().ServerTimeOffset; off < 59*time.Minute {
		t.Errorf("stats offset %v", off)
	}
}

// A board whose clock is far in the past gets a certificate error that
// names the clock.
func TestClockErrorNamed(t *testing.T) {
	s := startSim(t, nil)
	log, _ := newLogger(t)
	o := simOptions(s, log)
	o.Now = func() time.Time { return time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) }
	c := newClient(t, o, testutil.NewMemSource())
	stop := run(t, c)
	if !testutil.Eventually(5*time.Second, func() bool { return c.Stats().ConnectFailures > 0 }) {
		t.Fatal("no failure")
	}
	stop()
	if e := c.Stats().LastErr; !strings.Contains(e, "system clock looks wrong") || !strings.Contains(e, "2001-01-01") {
		t.Fatalf("LastErr %q does not name the clock", e)
	}
}

// Trust anchors: the embedded root alone does not trust the emulator's
// throwaway CA; CAFile adds to it (or replaces it).
func TestCAFileAddsOrReplaces(t *testing.T) {
	s := startSim(t, nil)
	for _, tc := range []struct {
		name    string
		ca      string
		replace bool
		ok      bool
	}{{"embedded only", "", false, false}, {"added", s.caFile, false, true}, {"replaced", s.caFile, true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			log, _ := newLogger(t)
			src := testutil.NewMemSource()
			src.Add(liveSamples(1, time.Now())...)
			o := simOptions(s, log)
			o.CAFile, o.CAReplace = tc.ca, tc.replace
			c := newClient(t, o, src)
			stop := run(t, c)
			testutil.Eventually(3*time.Second, func() bool {
				left, _, _, _ := src.Counts()
				return left == 0 || c.Stats().ConnectFailures > 0
			})
			stop()
			left, _, _, _ := src.Counts()
			drained := left == 0 && c.Stats().ConnectFailures == 0
			if drained != tc.ok {
				t.Fatalf("drained=%v, want %v; stats %+v", drained, tc.ok, c.Stats())
			}
			if !tc.ok && !strings.Contains(c.Stats().LastErr, "certificate signed by unknown authority") {
				t.Fatalf("LastErr %q", c.Stats().LastErr)
			}
		})
	}
}

// Messages stay under MaxMessageBytes: a backlog is split into several
// batch posts that the emulator accepts.
func TestMessageSizeBound(t *testing.T) {
	s := startSim(t, nil)
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	at := time.Now().Add(-time.Hour)
	for i := 0; i < 200; i++ {
		src.Add(one("air", fmt.Sprintf("p%03d_%s", i, strings.Repeat("x", 40)), 1.5, at))
	}
	o := simOptions(s, log)
	o.MaxMessageBytes = 2048
	c := newClient(t, o, src)
	stop := run(t, c)
	if !testutil.Eventually(10*time.Second, func() bool { left, _, _, _ := src.Counts(); return left == 0 }) {
		t.Fatalf("not drained: %+v", c.Stats())
	}
	stop()
	for _, m := range s.Messages() {
		if m.Bytes > 2048 || m.Code != 200 {
			t.Errorf("message %+v", m)
		}
	}
	if len(s.Messages()) < 200*60/2048 {
		t.Errorf("only %d messages", len(s.Messages()))
	}
}

// Readings whose time cannot be trusted yet wait; once FixTime can date
// them they go out with the corrected time. Beat keeps coming meanwhile.
func TestFixTimeHoldsAndRedates(t *testing.T) {
	s := startSim(t, nil)
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	bogus := time.Date(1970, 1, 1, 0, 0, 5, 0, time.UTC) // a board without an RTC
	smp := one("air", "temperature", 21.5, bogus)
	smp.Mono, smp.Synced = 5*time.Second, false
	r := src.Add(smp)
	var mu sync.Mutex
	synced := false
	boot := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	var beats int
	o := simOptions(s, log)
	o.FixTime = func(s *reading.Sample) uplink.TimeVerdict {
		mu.Lock()
		defer mu.Unlock()
		if !synced {
			return uplink.TimeHold
		}
		s.Time = boot.Add(s.Mono)
		return uplink.TimeOK
	}
	o.Beat = func() { mu.Lock(); beats++; mu.Unlock() }
	c := newClient(t, o, src)
	stop := run(t, c)
	time.Sleep(2200 * time.Millisecond)
	mu.Lock()
	b := beats
	mu.Unlock()
	if len(s.Messages()) != 0 || !src.Has(r[0].ID) {
		t.Fatalf("sent before the time could be trusted: %+v", s.Messages())
	}
	if b < 3 {
		t.Fatalf("%d beats in 2.2s", b)
	}
	mu.Lock()
	synced = true
	mu.Unlock()
	if !testutil.Eventually(5*time.Second, func() bool { return !src.Has(r[0].ID) }) {
		t.Fatalf("not sent after sync: %+v", c.Stats())
	}
	stop()
	acc := s.Accepted()
	if len(acc) != 1 || !acc[0].Time.Equal(boot.Add(5*time.Second)) {
		t.Fatalf("accepted %+v, want time %v", acc, boot.Add(5*time.Second))
	}
}

// A broken link does not flood the log: many attempts, few lines.
func TestConnectErrorLogsRateLimited(t *testing.T) {
	s := startSim(t, nil)
	log, lines := newLogger(t)
	o := simOptions(s, log)
	o.CAFile, o.CAReplace = "", false // the embedded root does not trust the emulator
	o.BackoffMin, o.BackoffMax = 5*time.Millisecond, 20*time.Millisecond
	c := newClient(t, o, testutil.NewMemSource())
	stop := run(t, c)
	time.Sleep(time.Second)
	stop()
	n := strings.Count(lines.String(), "connect failed")
	if f := c.Stats().ConnectFailures; f < 8 || n > 2 {
		t.Fatalf("%d attempts logged in %d lines", f, n)
	}
}

// securemode 3: plain TCP to the emulator's TCP listener.
func TestPlainTCPSecuremode3(t *testing.T) {
	s := startSim(t, nil)
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	src.Add(liveSamples(1, time.Now())...)
	o := simOptions(s, log)
	o.Endpoint, o.TLS, o.SignMethod = s.TCPAddr(), false, "hmacmd5"
	c := newClient(t, o, src)
	stop := run(t, c)
	if !testutil.Eventually(5*time.Second, func() bool { left, _, _, _ := src.Counts(); return left == 0 }) {
		t.Fatalf("not drained: %+v", c.Stats())
	}
	stop()
	if cs := s.Connects(); len(cs) != 1 || !strings.Contains(cs[0].ClientID, "securemode=3,signmethod=hmacmd5") {
		t.Fatalf("connects %+v", cs)
	}
}
