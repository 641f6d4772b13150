package uplink_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"gatewayd/internal/iotsim"
	"gatewayd/internal/reading"
	"gatewayd/internal/testutil"
	"gatewayd/uplink"
)

// bme returns a BME280 sample of sensor at the chip's resolutions.
func bme(sensor string, at time.Time, base float64) reading.Sample {
	return reading.Sample{Sensor: sensor, Stamp: reading.Stamp{Time: at.Truncate(time.Millisecond), Synced: true}, Values: []reading.Value{
		{Measurement: "temperature", Property: "temperature", Unit: "°C", Value: base + 0.004, Resolution: 0.01},
		{Measurement: "humidity", Property: "humidity", Unit: "%RH", Value: base + 20.0049, Resolution: 0.01},
		{Measurement: "pressure", Property: "pressure", Unit: "hPa", Value: base + 989.2492578125, Resolution: 0.01},
	}}
}

// Three BME280s sampled together go out as one message per round within
// max_delay: at most 0.34 messages per sample (reading), counted by the
// uplink, the source and the emulator alike. Values go at their
// resolution.
func TestCoalescedRounds(t *testing.T) {
	s := startSim(t, nil)
	c, src, stop := connectedToSim(t, s, func(o *uplink.Options) { o.MaxDelay = 150 * time.Millisecond })
	const rounds = 6
	for r := 0; r < rounds; r++ {
		at := time.Now()
		for i, sensor := range []string{"air1", "air2", "air3"} {
			src.Add(bme(sensor, at.Add(time.Duration(i)*3*time.Millisecond), float64(10*r+i)))
			time.Sleep(3 * time.Millisecond) // the three sensor loops append one by one
		}
		time.Sleep(400 * time.Millisecond)
	}
	if !testutil.Eventually(5*time.Second, func() bool { left, _, _, _ := src.Counts(); return left == 0 }) {
		t.Fatalf("not drained: %+v", c.Stats())
	}
	stop()
	st := c.Stats()
	if st.AckedMessages != rounds || st.AckedSamples != 3*rounds || st.Acked != 9*rounds || src.AckCalls() != rounds {
		t.Fatalf("%d Ack calls; stats %+v: want one message per round", src.AckCalls(), st)
	}
	if mps := st.MessagesPerSample(); mps > 0.34 {
		t.Fatalf("%.2f messages per reading", mps)
	}
	msgs := s.Messages()
	if len(msgs) != rounds {
		t.Fatalf("emulator saw %d messages: %+v", len(msgs), msgs)
	}
	for _, m := range msgs {
		if m.Code != 200 || m.Kind != "batch" || m.Values != 9 || m.Samples != 3 {
			t.Errorf("message %+v: want a batch post of 3 samples, 9 values", m)
		}
	}
	if c := s.Counts(); c.Posts != rounds || c.Values != 9*rounds {
		t.Errorf("emulator counts %+v", c)
	}
	out := s.out.String()
	if !strings.Contains(out, " pressure=989.25 ") || strings.Contains(out, "989.249") || !strings.Contains(out, " humidity=20.0 ") {
		t.Errorf("values not at their resolution:\n%s", out)
	}
}

// A live sample waits up to max_delay for company; with NoDelay it goes
// at once.
func TestMaxDelay(t *testing.T) {
	s := startSim(t, nil)
	for _, tc := range []struct {
		delay    time.Duration
		min, max time.Duration
	}{{time.Second, 900 * time.Millisecond, 3 * time.Second}, {uplink.NoDelay, 0, 700 * time.Millisecond}} {
		log, _ := newLogger(t)
		src := testutil.NewMemSource()
		o := simOptions(s, log)
		o.MaxDelay = tc.delay
		c := newClient(t, o, src)
		stop := run(t, c)
		if !testutil.Eventually(5*time.Second, func() bool { return c.Stats().Connected }) {
			t.Fatal("not connected")
		}
		time.Sleep(50 * time.Millisecond) // past the Take at connect
		added := time.Now()
		smp := src.Add(bme("air", added, 1))[0]
		if !testutil.Eventually(5*time.Second, func() bool { return !src.Has(smp.ID) }) {
			t.Fatalf("delay %v: not acked", tc.delay)
		}
		var got time.Duration
		for _, a := range s.Accepted() {
			if a.Time.Equal(smp.Time) {
				got = a.Received.Sub(added)
			}
		}
		stop()
		if got < tc.min || got > tc.max {
			t.Errorf("max_delay %v: the sample reached the platform after %v, want %v..%v", tc.delay, got, tc.min, tc.max)
		}
	}
}

// max_messages_per_second = N against an emulator that answers 429 beyond
// N+1 messages in any sliding second: no 429 while a backlog drains, while
// NTP requests and downlink replies go out too, and over an outage and the
// reconnect with its backlog, live samples arriving at 10 per second all
// along.
func TestSlidingWindowNo429(t *testing.T) {
	const n = 4
	s := startSim(t, func(o *iotsim.Options) { o.RateWindow = n + 1 })
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	old := time.Now().Add(-2 * time.Hour)
	for i := 0; i < 60; i++ {
		src.Add(one("soil", "moisture", float64(i)+0.5, old.Add(time.Duration(i)*time.Second)))
	}
	o := simOptions(s, log)
	o.MaxMessagesPerSecond = n
	o.MaxValuesPerMsg = 6 // the backlog is 10 messages, and so is the one the outage leaves
	o.OnServerTime = func(time.Time, time.Duration) {}
	o.NTPInterval = 500 * time.Millisecond
	o.Control = &control{iv: map[string]time.Duration{"air": 10 * time.Second}}
	c := newClient(t, o, src)
	stop := run(t, c)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { // live samples at 10 per second throughout
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 200; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			src.Add(bme("air", time.Now(), float64(i)))
		}
	})
	wg.Go(func() { // downlink requests whose replies count too
		for i := 0; i < 3 && ctx.Err() == nil; i++ {
			time.Sleep(700 * time.Millisecond)
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			s.SetProperty(rctx, pk, dn, map[string]any{"air_interval": 20 + i})
			rcancel()
		}
	})
	time.Sleep(2500 * time.Millisecond)
	s.SetOutage(true)
	time.Sleep(1500 * time.Millisecond)
	s.SetOutage(false)
	if !testutil.Eventually(10*time.Second, func() bool { return c.Stats().Connected }) {
		t.Fatalf("no reconnect: %+v", c.Stats())
	}
	time.Sleep(2 * time.Second) // the backlog of the outage drains beside live data
	cancel()
	wg.Wait()
	if !testutil.Eventually(20*time.Second, func() bool { left, _, _, _ := src.Counts(); return left == 0 }) {
		t.Fatalf("not drained: %+v", c.Stats())
	}
	stop()
	cnt := s.Counts()
	st := c.Stats()
	t.Logf("emulator %+v; uplink sent %d posts and %d other messages", cnt, st.Sent, st.SentOther)
	if cnt.Throttled != 0 || st.Throttled != 0 || cnt.OverWindow != 0 {
		t.Fatalf("%d answers of 429 (%d publishes over the window); peak %d in a second", cnt.Throttled, cnt.OverWindow, cnt.PeakWindow)
	}
	if st.Connects < 2 || st.SentOther < 3 || cnt.Publishes < 20 {
		t.Fatalf("the test did not exercise the window: %+v, %+v", st, cnt)
	}
	if v := src.Violations(); len(v) > 0 {
		t.Fatal(v)
	}
}

// A sample whose time can never be known is dead-lettered by the send loop
// itself (FixTime only says so); the others go.
func TestFixTimeUnknownDeadLettered(t *testing.T) {
	s := startSim(t, nil)
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	lost := bme("air", time.Date(1970, 1, 1, 0, 0, 9, 0, time.UTC), 1)
	lost.Synced, lost.BootID = false, "earlier-boot"
	ss := src.Add(lost, bme("air", time.Now(), 2))
	o := simOptions(s, log)
	o.FixTime = func(s *reading.Sample) uplink.TimeVerdict {
		if s.BootID == "earlier-boot" {
			return uplink.TimeUnknown
		}
		return uplink.TimeOK
	}
	c := newClient(t, o, src)
	stop := run(t, c)
	if !testutil.Eventually(5*time.Second, func() bool { return src.Samples() == 0 }) {
		t.Fatalf("not done: %+v", c.Stats())
	}
	stop()
	dead := src.DeadLetters()
	if len(dead) != 3 || dead[reading.Ref{ID: ss[0].ID, Measurement: "pressure"}] != uplink.TimeUnknownReason {
		t.Fatalf("dead letters %v", dead)
	}
	if st := c.Stats(); st.Acked != 3 || st.DeadLettered != 3 {
		t.Fatalf("stats %+v", st)
	}
	if v := src.Violations(); len(v) > 0 {
		t.Fatal(v)
	}
}

// When the sensors say their round is complete (Quiet) and their next
// sample comes after the round's max_delay, the round goes out at once, as
// the one message waiting would have sent. A promise shorter than
// max_delay (more samples could still join) changes nothing: the round
// waits for max_delay and the next round's sample joins its message.
func TestQuietSendsTheRoundAtOnce(t *testing.T) {
	s := startSim(t, nil)
	const maxDelay = time.Second
	c, src, stop := connectedToSim(t, s, func(o *uplink.Options) { o.MaxDelay = maxDelay })
	defer stop()
	time.Sleep(50 * time.Millisecond) // past the Take at connect
	arrived := func(smp reading.Sample) time.Time {
		for _, a := range s.Accepted() {
			if a.Time.Equal(smp.Time) {
				return a.Received
			}
		}
		return time.Time{}
	}

	// A complete round (appended, then Quiet, as the sensors do), the next
	// one due in 1.2 s, after max_delay: sent at once.
	const next = 1200 * time.Millisecond
	added := time.Now()
	a := src.Add(bme("air1", added, 1), bme("air2", added, 2))
	c.Quiet(next)
	if !testutil.Eventually(5*time.Second, func() bool { return !src.Has(a[1].ID) }) {
		t.Fatal("round not acked")
	}
	if got := arrived(a[0]).Sub(added); got <= 0 || got > maxDelay/2 {
		t.Fatalf("a complete round reached the platform after %v; want at once (max_delay is %v)", got, maxDelay)
	}
	// The next round comes when the promise runs out, as on a board.
	time.Sleep(time.Until(added.Add(next)) + 20*time.Millisecond)

	// This round's next sample is due in 200 ms, within max_delay: the
	// round waits, and the next round's sample shares its message.
	added = time.Now()
	b := src.Add(bme("air1", added, 3))
	c.Quiet(200 * time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	b2 := src.Add(bme("air1", time.Now(), 4))
	c.Quiet(10 * time.Second) // now complete: goes at once
	if !testutil.Eventually(5*time.Second, func() bool { return !src.Has(b[0].ID) && !src.Has(b2[0].ID) }) {
		t.Fatal("second round not acked")
	}
	if got := arrived(b[0]).Sub(added); got < 150*time.Millisecond || got > maxDelay {
		t.Fatalf("the sample promised company reached the platform after %v", got)
	}
	if n := len(s.Messages()); n != 2 {
		t.Fatalf("emulator saw %d messages, want 2 (one per complete round): %+v", n, s.Messages())
	}
}

// TestRepliesCostNoPuback: on the Alibaba platform posts go at QoS 0 by
// default (the platform's reply acknowledges them: no PUBACK to wait for)
// and the reply topics are subscribed at QoS 0 (no PUBACK to send), so a
// post and its reply are two packets, not four; a property set from the
// cloud still comes at QoS 1 and is acknowledged. PostQoS 1 brings the
// broker's PUBACK back.
func TestRepliesCostNoPuback(t *testing.T) {
	for _, qos := range []int{0, 1} {
		s := startSim(t, nil)
		_, src, stop := connectedToSim(t, s, func(o *uplink.Options) { o.MaxDelay, o.PostQoS = 0, qos })
		before := s.PubacksReceived()
		var last []reading.Sample
		for i := 0; i < 5; i++ {
			last = src.Add(bme("air", time.Now(), float64(i)))
			if !testutil.Eventually(5*time.Second, func() bool { return !src.Has(last[0].ID) }) {
				t.Fatalf("qos %d: post %d not acknowledged", qos, i)
			}
		}
		posts := 0
		for _, m := range s.Messages() {
			if m.Kind == "post" {
				posts++
				if int(m.QoS) != qos {
					t.Errorf("a post at QoS %d, want %d", m.QoS, qos)
				}
			}
		}
		if posts < 5 {
			t.Errorf("qos %d: %d posts at iotsim, want 5", qos, posts)
		}
		if n := s.PubacksReceived() - before; n != 0 {
			t.Errorf("qos %d: %d PUBACKs for 5 replies; want none (replies at QoS 0)", qos, n)
		}
		if qos == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if _, err := s.SetProperty(ctx, pk, dn, map[string]any{"interval": 30}); err != nil {
				t.Logf("property set: %v (its reply does not matter here)", err)
			}
			cancel()
			if !testutil.Eventually(5*time.Second, func() bool { return s.PubacksReceived()-before == 1 }) {
				t.Errorf("%d PUBACKs after a property set; want 1 (sets stay at QoS 1)", s.PubacksReceived()-before)
			}
		}
		stop()
	}
}
