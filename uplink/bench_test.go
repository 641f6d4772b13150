package uplink_test

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"gatewayd/internal/iotsim"
	"gatewayd/internal/reading"
	"gatewayd/internal/testutil"
	"gatewayd/uplink"
)

// Backlog drain rate (values/s, acknowledged) next to plain synchronous
// one-value-per-message QoS 1 publishes, measured in the same run:
//
//	go test -run x -bench BacklogDrain ./uplink/
const benchReadings = 9999 // values: 3333 BME280 samples

// bmeSamples returns n samples of three values, interval apart from at.
func bmeSamples(n int, at time.Time, interval time.Duration, base float64) []reading.Sample {
	ss := make([]reading.Sample, n)
	for i := range ss {
		v := base + float64(3*i)
		ss[i] = reading.Sample{Sensor: []string{"air1", "air2", "air3"}[i%3], Stamp: reading.Stamp{Time: at.Add(time.Duration(i/3) * interval), Synced: true},
			Values: []reading.Value{
				{Measurement: "temperature", Property: "temperature", Unit: "°C", Value: v + 0.5, Resolution: 0.01},
				{Measurement: "humidity", Property: "humidity", Unit: "%RH", Value: v + 1.5, Resolution: 0.01},
				{Measurement: "pressure", Property: "pressure", Unit: "hPa", Value: v + 2.5, Resolution: 0.01},
			}}
	}
	return ss
}

func backlog(src *testutil.MemSource, n int, base float64) {
	src.Add(bmeSamples(n/3, time.Now().Add(-2*time.Hour), time.Millisecond, base)...) // under 24 h: batch posts
}

// drain adds n backlog values and returns how long the running client
// took to have them all acknowledged.
func drain(b *testing.B, src *testutil.MemSource, n int, base float64) time.Duration {
	start := time.Now()
	backlog(src, n, base)
	if !waitDrained(src, start.Add(60*time.Second)) {
		b.Fatalf("backlog not drained within 60s")
	}
	return time.Since(start)
}

func waitDrained(src *testutil.MemSource, deadline time.Time) bool {
	for {
		if left, _, _, _ := src.Counts(); left == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// syncPublish publishes n one-reading messages, each waiting for its
// PUBACK before the next: the naive uplink.
func syncPublish(b *testing.B, cl mqtt.Client, n int, topic func(i int) string, payload func(i int) []byte) time.Duration {
	start := time.Now()
	for i := 0; i < n; i++ {
		tok := cl.Publish(topic(i), 1, false, payload(i))
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				b.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			b.Fatal("no PUBACK within 5s")
		}
	}
	return time.Since(start)
}

func report(b *testing.B, drained, synced time.Duration, n int) {
	rate := float64(n) / drained.Seconds()
	base := float64(n) / synced.Seconds()
	b.ReportMetric(rate, "values/s")
	b.ReportMetric(base, "sync-values/s")
	b.ReportMetric(rate/base, "x-faster")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkBacklogDrain(b *testing.B) {
	// As fast as the uplink may be configured to go on the platform
	// (unlimited is for plain MQTT brokers only).
	b.Run("iotsim/max-rate", func(b *testing.B) { benchIotsim(b, uplink.MaxRate) })
	// At the platform's default pace the drain is bounded by 20 messages
	// per window x 198 values; a one-value-per-message sender held to the
	// same pace manages 20 values/s, so no baseline is run for it.
	b.Run("iotsim/20msg-per-s", func(b *testing.B) { benchIotsim(b, 20) })
	b.Run("mosquitto", benchMosquitto)
}

func benchIotsim(b *testing.B, perSecond float64) {
	s := startSim(b, func(o *iotsim.Options) {
		o.Out = nil
		o.Devices = append(o.Devices, iotsim.Device{ProductKey: pk, DeviceName: "naive", DeviceSecret: secret})
	})
	log, _ := newLogger(b)
	src := testutil.NewMemSource()
	o := simOptions(s, log)
	o.MaxMessagesPerSecond = perSecond
	// Paced runs measure the platform's pace; at the top rate the uplink's
	// own speed is compared with a synchronous one-per-message sender.
	paced := perSecond < uplink.MaxRate
	c := newClient(b, o, src)
	stop := run(b, c)
	defer stop()

	// The naive device: its own identity (one connection per device).
	pw, _ := uplink.Sign("hmacsha256", pk, "naive", secret, "naive", "1")
	tc := tlsTo(b, s.caFile)
	tc.ServerName = "127.0.0.1"
	naive := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + s.TLSAddr()).SetTLSConfig(tc).
		SetClientID(uplink.ClientIDField("naive", true, "hmacsha256", "1")).SetUsername("naive&" + pk).SetPassword(pw).
		SetKeepAlive(60 * time.Second).SetProtocolVersion(4).SetAutoReconnect(false))
	waitToken(b, naive.Connect())
	defer naive.Disconnect(100)
	topic := "/sys/" + pk + "/naive/thing/event/property/post"
	at := time.Now().UnixMilli()
	var drained, synced time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		drained += drain(b, src, benchReadings, float64(i*benchReadings))
		if paced {
			continue
		}
		synced += syncPublish(b, naive, benchReadings, func(int) string { return topic }, func(j int) []byte {
			return fmt.Appendf(nil, `{"id":"%d","version":"1.0","params":{"temperature":{"value":%d.5,"time":%d}},"method":"thing.event.property.post"}`, i*benchReadings+j, j, at)
		})
	}
	b.StopTimer()
	if paced {
		b.ReportMetric(float64(b.N*benchReadings)/drained.Seconds(), "values/s")
		b.ReportMetric(0, "ns/op")
	} else {
		report(b, drained, synced, b.N*benchReadings)
	}
	if st := c.Stats(); st.Acked < uint64(b.N*benchReadings) {
		b.Fatalf("acked %d", st.Acked)
	}
}

func benchMosquitto(b *testing.B) {
	ca := testutil.NewCA(b, "bench")
	cert, key := ca.Issue(b, "server", testutil.CertOpts{})
	m := testutil.StartMosquitto(b, testutil.MosquittoOpts{CAFile: ca.File, CertFile: cert, KeyFile: key})
	log, _ := newLogger(b)
	src := testutil.NewMemSource()
	c := newClient(b, uplink.Options{
		Platform: "mqtt", DeviceName: dn, Broker: "tls://" + m.Addr, CAFile: ca.File, Logger: log,
		MaxMessagesPerSecond: -1, MaxInflight: 64,
	}, src)
	stop := run(b, c)
	defer stop()
	naive := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + m.Addr).SetTLSConfig(tlsTo(b, ca.File)).
		SetClientID("naive").SetProtocolVersion(4).SetAutoReconnect(false))
	waitToken(b, naive.Connect())
	defer naive.Disconnect(100)
	at := time.Now().Format(time.RFC3339Nano)
	var drained, synced time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		drained += drain(b, src, benchReadings, float64(i*benchReadings))
		synced += syncPublish(b, naive, benchReadings, func(int) string { return "sensors/naive/air" }, func(j int) []byte {
			return fmt.Appendf(nil, `{"id":%d,"property":"temperature","value":%d.5,"time":%q}`, j, j, at)
		})
	}
	b.StopTimer()
	report(b, drained, synced, b.N*benchReadings)
}

// BenchmarkWeekBacklog drains a week offline with three BME280s at 10 s
// (181,440 samples, 544,320 values: history posts for all but the last
// 23 h, batch posts for those) at the default 20 messages per sliding
// window, against an emulator that answers 429 beyond 21 messages in any
// sliding second. It reports the drain time, messages, values per message
// and the 429 answers (must be 0):
//
//	go test -run x -bench WeekBacklog -benchtime 1x ./uplink/
func BenchmarkWeekBacklog(b *testing.B) {
	const perSecond = uplink.DefaultMaxMessagesPerSecond
	for i := 0; i < b.N; i++ {
		s := startSim(b, func(o *iotsim.Options) { o.Out, o.RateWindow = nil, perSecond+1 })
		log, _ := newLogger(b)
		src := testutil.NewMemSource()
		week := 7 * 24 * time.Hour
		src.Add(bmeSamples(3*int(week/(10*time.Second)), time.Now().Add(-week), 10*time.Second, 0)...)
		o := simOptions(s, log)
		o.MaxMessagesPerSecond = perSecond
		c := newClient(b, o, src)
		start := time.Now()
		stop := run(b, c)
		if !waitDrained(src, start.Add(10*time.Minute)) {
			b.Fatalf("not drained within 10 minutes: %+v", c.Stats())
		}
		took := time.Since(start)
		stop()
		cnt := s.Counts()
		st := c.Stats()
		b.ReportMetric(took.Minutes(), "drain-min")
		b.ReportMetric(float64(st.Sent), "messages")
		b.ReportMetric(float64(st.Acked)/float64(st.AckedMessages), "values/msg")
		b.ReportMetric(float64(cnt.Throttled), "429s")
		b.ReportMetric(float64(cnt.PeakWindow), "peak-msgs/s")
		b.ReportMetric(0, "ns/op")
		if st.Acked != 544_320 || cnt.Throttled != 0 {
			b.Fatalf("acked %d values, %d answers of 429; stats %+v", st.Acked, cnt.Throttled, st)
		}
	}
}
