package uplink

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

func testClient(t testing.TB, mut func(o *Options)) *Client {
	t.Helper()
	o := Options{ProductKey: "pk", DeviceName: "dn", DeviceSecret: "s", Endpoint: "127.0.0.1:1", Logger: discardLogger(),
		Now: func() time.Time { return t0.Add(time.Second) }}
	if mut != nil {
		mut(&o)
	}
	c, err := New(o, nopSource{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// One sampling round of three BME280s is one message: a batch post when
// they share property names, a property post when every property is
// distinct; on a plain broker one message per topic.
func TestPackOneRoundOneMessage(t *testing.T) {
	now := t0.Add(time.Second)
	c := testClient(t, nil)
	msgs, bad := c.p.pack(itemsOf(threeBME280s(t0)), true, now)
	if len(msgs) != 1 || len(bad) != 0 || msgs[0].kind != kindBatch || len(msgs[0].items) != 9 {
		t.Fatalf("shared names: %d messages %v, %d refused", len(msgs), msgs, len(bad))
	}
	ss := threeBME280s(t0)
	for i := range ss {
		for j := range ss[i].Values {
			ss[i].Values[j].Property = ss[i].Sensor + "_" + ss[i].Values[j].Measurement
		}
	}
	msgs, _ = c.p.pack(itemsOf(ss), true, now)
	if len(msgs) != 1 || msgs[0].kind != kindPost {
		t.Fatalf("distinct names: %+v", msgs)
	}
	// The backlog never goes by property post, even with distinct names.
	if msgs, _ = c.p.pack(itemsOf(ss), false, now); len(msgs) != 1 || msgs[0].kind != kindBatch {
		t.Fatalf("backlog: %+v", msgs)
	}

	m := testClient(t, func(o *Options) { o.Platform, o.Broker, o.Topic = PlatformMQTT, "tcp://127.0.0.1:1", "gw/{device}" })
	msgs, _ = m.p.pack(itemsOf(threeBME280s(t0)), true, now)
	if len(msgs) != 1 || msgs[0].topic != "gw/dn" {
		t.Fatalf("mqtt, one topic: %+v", msgs)
	}
	var vs []map[string]any
	if err := json.Unmarshal(msgs[0].payload, &vs); err != nil || len(vs) != 9 {
		t.Fatalf("mqtt payload %s: %v", msgs[0].payload, err)
	}
	m = testClient(t, func(o *Options) { o.Platform, o.Broker = PlatformMQTT, "tcp://127.0.0.1:1" })
	if msgs, _ = m.p.pack(itemsOf(threeBME280s(t0)), true, now); len(msgs) != 3 {
		t.Fatalf("mqtt, a topic per sensor: %d messages", len(msgs))
	}
}

// A week offline with three BME280s at 10 s (544,320 values), taken the
// way the send loop takes it (Take(200): 66 whole samples, 198 values),
// packs into messages that use the 200-property limit nearly to the full:
// at 20 messages per sliding window of 1.1 s it drains in under 5 minutes.
// BenchmarkWeekBacklog measures the same drain end to end.
func TestPackWeekBacklog(t *testing.T) {
	const interval, week = 10 * time.Second, 7 * 24 * time.Hour
	now := t0
	start := now.Add(-week)
	c := testClient(t, func(o *Options) { o.Now = func() time.Time { return now } })
	var chunk []reading.Sample
	msgs, values, maxBytes, id := 0, 0, 0, reading.ID(0)
	flush := func() {
		ms, bad := c.p.pack(itemsOf(chunk), false, now)
		if len(bad) > 0 {
			t.Fatalf("refused %+v", bad)
		}
		for _, m := range ms {
			if len(m.items) > 200 || len(m.payload) > c.o.MaxMessageBytes {
				t.Fatalf("message of %d values, %d bytes", len(m.items), len(m.payload))
			}
			maxBytes = max(maxBytes, len(m.payload))
			values += len(m.items)
		}
		msgs += len(ms)
		chunk = chunk[:0]
	}
	for at := start; at.Before(now); at = at.Add(interval) {
		for _, s := range threeBME280s(at) {
			id++
			s.ID = id
			if reading.CountValues(chunk)+len(s.Values) > c.o.MaxValuesPerMsg {
				flush()
			}
			chunk = append(chunk, s)
		}
	}
	flush()
	if values != 544_320 {
		t.Fatalf("%d values packed, want 544320", values)
	}
	perMsg := float64(values) / float64(msgs)
	drain := time.Duration(float64(msgs) / DefaultMaxMessagesPerSecond * float64(time.Second+windowGuard))
	t.Logf("week backlog: %d values in %d messages (%.1f values per message, largest %d bytes): %v at %d messages per %v",
		values, msgs, perMsg, maxBytes, drain.Round(time.Second), DefaultMaxMessagesPerSecond, time.Second+windowGuard)
	if perMsg < 190 || drain > 5*time.Minute {
		t.Fatalf("%.1f values per message, drain %v: want >= 190 and <= 5m", perMsg, drain)
	}
}

// refs acks a sample whole when the message carries every value it had
// when taken, value by value otherwise (after a split, or when a sample
// spans two messages).
func TestRefsWholeOrPerValue(t *testing.T) {
	st := &sendState{held: map[reading.ID]*heldSample{1: {values: 3}, 2: {values: 3}}}
	its := itemsOf(threeBME280s(t0)[:2])
	m := &outMsg{items: its[:4]} // all of sample 1, one value of sample 2
	refs := st.refs(m)
	want := []reading.Ref{{ID: 1}, {ID: 2, Measurement: "temperature"}}
	if len(refs) != len(want) || refs[0] != want[0] || refs[1] != want[1] {
		t.Fatalf("refs %v, want %v", refs, want)
	}
}

// prepare sends a sample's sendable values and refuses the others, one by
// one (a NaN or an empty property name costs only that value), and leaves
// the caller's samples as they were.
func TestPrepareRefusesOnlyUnsendableValues(t *testing.T) {
	c := testClient(t, nil)
	ss := threeBME280s(t0)
	ss[1].Values[0].Value = math.NaN()
	ss[2].Values[2].Property = ""
	before := fmt.Sprint(ss)
	p := c.prepare(ss)
	if fmt.Sprint(ss) != before {
		t.Fatalf("prepare changed its input:\n%s\nwas\n%s", fmt.Sprint(ss), before)
	}
	if len(p.send) != 3 || len(p.send[0].Values) != 3 || len(p.send[1].Values) != 2 || len(p.send[2].Values) != 2 {
		t.Fatalf("sent %v, want 3 samples of 3, 2 and 2 values", p.send)
	}
	if p.taken[0] != 3 || p.taken[1] != 3 || p.taken[2] != 3 {
		t.Fatalf("taken %v, want 3 3 3", p.taken)
	}
	if p.send[1].Values[0].Measurement != ss[1].Values[1].Measurement || p.send[2].Values[1].Measurement != ss[2].Values[1].Measurement {
		t.Fatalf("the wrong values were kept: %v", p.send)
	}
	var refused []string
	for _, r := range p.refused {
		for _, it := range r.its {
			refused = append(refused, it.sensor+"/"+it.v.Measurement)
		}
	}
	if want := []string{ss[1].Sensor + "/" + ss[1].Values[0].Measurement, ss[2].Sensor + "/" + ss[2].Values[2].Measurement}; fmt.Sprint(refused) != fmt.Sprint(want) {
		t.Fatalf("refused %v, want %v", refused, want)
	}
}

// pack splits a round into a history post and a live one by age, and
// sends a round that is all live or all old whole.
func TestPackSplitsByAge(t *testing.T) {
	c := testClient(t, nil)
	now := t0.Add(time.Second)
	old := now.Add(-c.o.HistoryAge - time.Hour)
	kinds := func(msgs []*outMsg) (s []string) {
		for _, m := range msgs {
			s = append(s, fmt.Sprintf("%v:%d", m.kind, len(m.items)))
		}
		return s
	}
	live := itemsOf(threeBME280s(t0))
	hist := itemsOf(threeBME280s(old))
	for _, c2 := range []struct {
		name string
		its  []item
		want string
	}{
		{"live", live, fmt.Sprint([]string{fmt.Sprintf("%v:9", kindBatch)})},
		{"old", hist, fmt.Sprint([]string{fmt.Sprintf("%v:9", kindHistory)})},
		{"both", append(append([]item{}, hist[:3]...), live...), fmt.Sprint([]string{fmt.Sprintf("%v:3", kindHistory), fmt.Sprintf("%v:9", kindBatch)})},
	} {
		msgs, bad := c.p.pack(c2.its, true, now)
		if got := fmt.Sprint(kinds(msgs)); got != c2.want || len(bad) != 0 {
			t.Errorf("%s: %s (%d refused), want %s", c2.name, got, len(bad), c2.want)
		}
	}
}

// BenchmarkRoundPack is what the send loop does with one live round of
// three BME280s before it publishes: prepare, flatten, pack and encode.
// Its B/op is most of what a round allocates in the uplink (every byte
// allocated brings the next GC nearer).
func BenchmarkRoundPack(b *testing.B) {
	c := testClient(b, nil)
	now := t0.Add(time.Second)
	ss := threeBME280s(t0)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p := c.prepare(ss)
		msgs, bad := c.p.pack(itemsOf(p.send), true, now)
		if len(msgs) != 1 || len(bad) != 0 {
			b.Fatalf("%d messages, %d refused", len(msgs), len(bad))
		}
	}
}
