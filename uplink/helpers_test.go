package uplink_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"gatewayd/internal/iotsim"
	"gatewayd/internal/reading"
	"gatewayd/internal/testutil"
	"gatewayd/uplink"
)

const (
	pk     = "a1hQSwFledE"
	dn     = "greenhouse-7"
	secret = "s3cr3t-device-secret"
)

// logBuf collects log output for assertions and shows it on failure.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger(t testing.TB) (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", lb.String())
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

type sim struct {
	*iotsim.Server
	caFile string
	out    *logBuf
}

func startSim(t testing.TB, mut func(o *iotsim.Options)) *sim {
	t.Helper()
	ca := testutil.NewCA(t, "iotsim")
	cert, key := ca.Issue(t, "iotsim-server", testutil.CertOpts{})
	out := &logBuf{}
	o := iotsim.Options{
		TLSAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", CertFile: cert, KeyFile: key,
		Devices: []iotsim.Device{{ProductKey: pk, DeviceName: dn, DeviceSecret: secret}},
		Out:     out,
	}
	if mut != nil {
		mut(&o)
	}
	s, err := iotsim.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &sim{Server: s, caFile: ca.File, out: out}
}

// simOptions are uplink options for the emulator with test-sized timings.
func simOptions(s *sim, log *slog.Logger) uplink.Options {
	return uplink.Options{
		ProductKey: pk, DeviceName: dn, DeviceSecret: secret,
		Endpoint: s.TLSAddr(), TLS: true, CAFile: s.caFile, CAReplace: true,
		Keepalive: 30 * time.Second, MaxMessagesPerSecond: 500,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 400 * time.Millisecond,
		ReplyTimeout: 2 * time.Second, ConnectTimeout: 3 * time.Second,
		BeatEvery: 200 * time.Millisecond,
		Logger:    log,
	}
}

// run starts c.Run and returns a stop function that waits for it (bounded).
func run(t testing.TB, c *uplink.Client) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("Run did not return within 5s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newClient(t testing.TB, o uplink.Options, src reading.Source) *uplink.Client {
	t.Helper()
	c, err := uplink.New(o, src)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// liveSamples returns n samples of sensor "air" (temperature, humidity,
// pressure) taken just now, a millisecond apart.
func liveSamples(n int, at time.Time) []reading.Sample {
	var ss []reading.Sample
	for i := 0; i < n; i++ {
		base := 20 + float64(i)/8
		ss = append(ss, reading.Sample{Sensor: "air", Stamp: reading.Stamp{Time: at.Add(time.Duration(i) * time.Millisecond).Truncate(time.Millisecond), Synced: true},
			Values: []reading.Value{
				{Measurement: "temperature", Property: "temperature", Unit: "°C", Value: base, Resolution: 0.01},
				{Measurement: "humidity", Property: "humidity", Unit: "%RH", Value: base + 20, Resolution: 0.01},
				{Measurement: "pressure", Property: "pressure", Unit: "hPa", Value: base + 990, Resolution: 0.01},
			}})
	}
	return ss
}

// one returns a sample with a single value (measurement = property).
func one(sensor, prop string, v float64, at time.Time) reading.Sample {
	return reading.Sample{Sensor: sensor, Stamp: reading.Stamp{Time: at.Truncate(time.Millisecond), Synced: true},
		Values: []reading.Value{{Measurement: prop, Property: prop, Value: v}}}
}

func waitToken(t testing.TB, tok mqtt.Token) {
	t.Helper()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("paho token timed out")
	}
}

func tlsTo(t testing.TB, caFile string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// subscriber is a plain paho client collecting what a broker delivers.
type subscriber struct {
	mu   sync.Mutex
	msgs []mqtt.Message
	cl   mqtt.Client
}

func subscribe(t testing.TB, broker string, tc *tls.Config, topic string, mut func(*mqtt.ClientOptions)) *subscriber {
	t.Helper()
	s := &subscriber{}
	o := mqtt.NewClientOptions().AddBroker(broker).SetClientID("test-sub").SetTLSConfig(tc).SetAutoReconnect(false)
	if mut != nil {
		mut(o)
	}
	s.cl = mqtt.NewClient(o)
	waitToken(t, s.cl.Connect())
	waitToken(t, s.cl.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
	}))
	t.Cleanup(func() { s.cl.Disconnect(100) })
	return s
}

func (s *subscriber) messages() []mqtt.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mqtt.Message(nil), s.msgs...)
}

// connectedToSim starts a client on a MemSource against the emulator s with
// simOptions changed by mod, and waits until it is connected. stop waits
// for Run to return (bounded); it is safe to call twice.
func connectedToSim(t testing.TB, s *sim, mod func(*uplink.Options)) (c *uplink.Client, src *testutil.MemSource, stop func()) {
	t.Helper()
	log, _ := newLogger(t)
	src = testutil.NewMemSource()
	o := simOptions(s, log)
	if mod != nil {
		mod(&o)
	}
	c = newClient(t, o, src)
	stop = run(t, c)
	if !testutil.Eventually(5*time.Second, func() bool { return c.Stats().Connected }) {
		stop()
		t.Fatal("not connected")
	}
	return c, src, stop
}
