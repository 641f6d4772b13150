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

// Backlog drain rate (readings/s, acknowledged) next to plain synchronous
// one-reading-per-message QoS 1 publishes, measured in the same run:
//
//	go test -run x -bench . ./uplink/
const benchReadings = 10000

func backlog(src *testutil.MemSource, n int, base float64) {
	at := time.Now().Add(-2 * time.Hour) // backlog, under 24 h: batch posts
	rs := make([]reading.Reading, n)
	for i := range rs {
		p := []string{"temperature", "humidity", "pressure"}[i%3]
		rs[i] = reading.Reading{Sensor: "air", Measurement: p, Property: p, Value: base + float64(i) + 0.5, Time: at.Add(time.Duration(i) * time.Millisecond)}
	}
	src.Add(rs...)
}

// drain adds n backlog readings and returns how long the running client
// took to have them all acknowledged.
func drain(b *testing.B, src *testutil.MemSource, n int, base float64) time.Duration {
	start := time.Now()
	backlog(src, n, base)
	deadline := start.Add(60 * time.Second)
	for {
		if left, _, _, _ := src.Counts(); left == 0 {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			b.Fatalf("backlog not drained within 60s")
		}
		time.Sleep(200 * time.Microsecond)
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
	b.ReportMetric(rate, "readings/s")
	b.ReportMetric(base, "sync-readings/s")
	b.ReportMetric(rate/base, "x-faster")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkBacklogDrain(b *testing.B) {
	b.Run("iotsim/unlimited", func(b *testing.B) { benchIotsim(b, -1) })
	// At the platform's default pace the drain is bounded by 20 messages/s
	// x 200 readings; a one-reading-per-message sender held to the same
	// pace manages 20 readings/s, so no baseline is run for it.
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
		if perSecond > 0 {
			continue
		}
		synced += syncPublish(b, naive, benchReadings, func(int) string { return topic }, func(j int) []byte {
			return fmt.Appendf(nil, `{"id":"%d","version":"1.0","params":{"temperature":{"value":%d.5,"time":%d}},"method":"thing.event.property.post"}`, i*benchReadings+j, j, at)
		})
	}
	b.StopTimer()
	if perSecond > 0 {
		b.ReportMetric(float64(b.N*benchReadings)/drained.Seconds(), "readings/s")
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
