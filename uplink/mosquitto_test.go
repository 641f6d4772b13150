package uplink_test

import (
	"crypto/tls"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"gatewayd/internal/testutil"
	"gatewayd/uplink"
)

// mqttTry runs the "mqtt" uplink against a broker with one sample and
// reports whether it was acknowledged within d, with the client's stats.
func mqttTry(t *testing.T, o uplink.Options, d time.Duration) (bool, uplink.Stats) {
	t.Helper()
	log, _ := newLogger(t)
	o.Platform, o.DeviceName, o.Logger = "mqtt", dn, log
	o.BackoffMin, o.BackoffMax, o.ConnectTimeout = 50*time.Millisecond, 300*time.Millisecond, 2*time.Second
	src := testutil.NewMemSource()
	src.Add(liveSamples(1, time.Now())...)
	c := newClient(t, o, src)
	stop := run(t, c)
	// Stop at the first connect failure: a refusal is final, no need to
	// sit out the whole wait.
	ok := testutil.Eventually(d, func() bool {
		left, _, _, _ := src.Counts()
		return left == 0 || c.Stats().ConnectFailures > 0
	})
	ok = ok && c.Stats().ConnectFailures == 0
	stop()
	if left, acked, _, inflight := src.Counts(); !ok && (left != 3 || acked != 0 || inflight != 0) {
		t.Errorf("refused run changed the source: %d left %d acked %d in flight", left, acked, inflight)
	}
	return ok, c.Stats()
}

func TestMosquittoTLSRefusals(t *testing.T) {
	ca := testutil.NewCA(t, "right")
	other := testutil.NewCA(t, "other")
	good, goodKey := ca.Issue(t, "good", testutil.CertOpts{})
	m := testutil.StartMosquitto(t, testutil.MosquittoOpts{CAFile: ca.File, CertFile: good, KeyFile: goodKey})

	t.Run("right CA accepted", func(t *testing.T) {
		if ok, st := mqttTry(t, uplink.Options{Broker: "tls://" + m.Addr, CAFile: ca.File}, 5*time.Second); !ok {
			t.Fatalf("not delivered: %+v\n%s", st, m.Log())
		}
	})
	t.Run("wrong CA refused", func(t *testing.T) {
		ok, st := mqttTry(t, uplink.Options{Broker: "tls://" + m.Addr, CAFile: other.File, CAReplace: true}, time.Second)
		if ok || !strings.Contains(st.LastErr, "certificate signed by unknown authority") {
			t.Fatalf("ok=%v LastErr=%q", ok, st.LastErr)
		}
	})
	t.Run("wrong host name refused", func(t *testing.T) {
		ok, st := mqttTry(t, uplink.Options{Broker: "tls://" + m.Addr, CAFile: ca.File, ServerName: "broker.example.com"}, time.Second)
		if ok || !strings.Contains(st.LastErr, "not broker.example.com") {
			t.Fatalf("ok=%v LastErr=%q", ok, st.LastErr)
		}
	})
	t.Run("expired server certificate refused", func(t *testing.T) {
		old, oldKey := ca.Issue(t, "expired", testutil.CertOpts{NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
		em := testutil.StartMosquitto(t, testutil.MosquittoOpts{CAFile: ca.File, CertFile: old, KeyFile: oldKey})
		ok, st := mqttTry(t, uplink.Options{Broker: "tls://" + em.Addr, CAFile: ca.File}, time.Second)
		if ok || !strings.Contains(st.LastErr, "server certificate expired on") || strings.Contains(st.LastErr, "clock") {
			t.Fatalf("ok=%v LastErr=%q", ok, st.LastErr)
		}
	})
}

func TestMosquittoClientCertificate(t *testing.T) {
	ca := testutil.NewCA(t, "mtls")
	cert, key := ca.Issue(t, "server", testutil.CertOpts{})
	clientCert, clientKey := ca.Issue(t, "gateway", testutil.CertOpts{Client: true})
	m := testutil.StartMosquitto(t, testutil.MosquittoOpts{CAFile: ca.File, CertFile: cert, KeyFile: key, RequireClientCert: true})

	t.Run("required", func(t *testing.T) {
		if ok, st := mqttTry(t, uplink.Options{Broker: "tls://" + m.Addr, CAFile: ca.File}, time.Second); ok || st.Connects != 0 {
			t.Fatalf("connected without a client certificate: %+v", st)
		}
	})
	t.Run("used", func(t *testing.T) {
		cc, err := tls.LoadX509KeyPair(clientCert, clientKey)
		if err != nil {
			t.Fatal(err)
		}
		tc := tlsTo(t, ca.File)
		tc.Certificates = []tls.Certificate{cc}
		sub := subscribe(t, "ssl://"+m.Addr, tc, "sensors/#", nil)
		ok, st := mqttTry(t, uplink.Options{Broker: "tls://" + m.Addr, CAFile: ca.File, ClientCert: clientCert, ClientKey: clientKey}, 5*time.Second)
		if !ok {
			t.Fatalf("not delivered with a client certificate: %+v\n%s", st, m.Log())
		}
		if !testutil.Eventually(2*time.Second, func() bool { return len(sub.messages()) == 1 }) {
			t.Fatalf("subscriber got %d messages", len(sub.messages()))
		}
	})
}

func TestMosquittoUsernamePassword(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	if out, err := exec.Command("mosquitto_passwd", "-b", "-c", pw, "gw", "pa55").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	os.Chmod(pw, 0o600)
	m := testutil.StartMosquitto(t, testutil.MosquittoOpts{PasswordFile: pw})
	if ok, st := mqttTry(t, uplink.Options{Broker: "tcp://" + m.Addr, Username: "gw", Password: "nope"}, time.Second); ok || !strings.Contains(st.LastErr, "CONNACK 5") {
		t.Fatalf("wrong password: ok=%v %+v", ok, st)
	}
	sub := subscribe(t, "tcp://"+m.Addr, nil, "sensors/#", func(o *mqtt.ClientOptions) { o.SetUsername("gw").SetPassword("pa55") })
	if ok, st := mqttTry(t, uplink.Options{Broker: "tcp://" + m.Addr, Username: "gw", Password: "pa55"}, 5*time.Second); !ok {
		t.Fatalf("right password: %+v\n%s", st, m.Log())
	}
	if !testutil.Eventually(2*time.Second, func() bool { return len(sub.messages()) == 1 }) {
		t.Fatalf("subscriber got %d messages", len(sub.messages()))
	}
}

// A backlog travels as JSON arrays of up to 200 readings per topic; every
// reading arrives once, on its sensor's topic.
func TestMQTTBacklogArrays(t *testing.T) {
	m := testutil.StartMosquitto(t, testutil.MosquittoOpts{})
	sub := subscribe(t, "tcp://"+m.Addr, nil, "sensors/#", nil)
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	at := time.Now().Add(-2 * time.Hour)
	for i := 0; i < 450; i++ {
		sensor := []string{"air", "soil"}[i%2]
		src.Add(one(sensor, "temperature", float64(i)+0.5, at.Add(time.Duration(i)*time.Second)))
	}
	c := newClient(t, uplink.Options{Platform: "mqtt", DeviceName: dn, Broker: "tcp://" + m.Addr, Logger: log}, src)
	stop := run(t, c)
	if !testutil.Eventually(10*time.Second, func() bool { left, _, _, _ := src.Counts(); return left == 0 }) {
		t.Fatalf("not drained: %+v", c.Stats())
	}
	seen := map[float64]int{}
	if !testutil.Eventually(3*time.Second, func() bool {
		clear(seen)
		for _, msg := range sub.messages() {
			var ps []map[string]any
			if err := json.Unmarshal(msg.Payload(), &ps); err != nil {
				t.Fatalf("backlog payload is not an array: %s", msg.Payload())
			}
			if len(ps) > 200 {
				t.Fatalf("%d readings in one message", len(ps))
			}
			for _, p := range ps {
				if !strings.HasSuffix(msg.Topic(), "/"+p["sensor"].(string)) {
					t.Fatalf("reading of %v on %s", p["sensor"], msg.Topic())
				}
				seen[p["value"].(float64)]++
			}
		}
		return len(seen) == 450
	}) {
		t.Fatalf("%d distinct readings arrived", len(seen))
	}
	stop()
	for v, n := range seen {
		if n != 1 {
			t.Errorf("value %v arrived %d times", v, n)
		}
	}
	if st := c.Stats(); st.Sent > 10 {
		t.Errorf("%d messages for 450 readings: not batched", st.Sent)
	}
}

// A broker that stops answering (SIGSTOP: the connection stays open, like a
// blackholed network) and a broker restart: the keepalive notices, the
// client reconnects, and every reading is acknowledged in the end.
func TestMQTTStalledAndRestartedBroker(t *testing.T) {
	m := testutil.StartMosquitto(t, testutil.MosquittoOpts{})
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	c := newClient(t, uplink.Options{Platform: "mqtt", DeviceName: dn, Broker: "tcp://" + m.Addr, Logger: log,
		Keepalive: time.Second, ReplyTimeout: time.Second, BackoffMin: 50 * time.Millisecond, BackoffMax: 300 * time.Millisecond}, src)
	stop := run(t, c)
	src.Add(liveSamples(1, time.Now())...)
	if !testutil.Eventually(5*time.Second, func() bool { _, acked, _, _ := src.Counts(); return acked == 3 }) {
		t.Fatalf("not acked: %+v", c.Stats())
	}
	m.Pause()
	src.Add(liveSamples(1, time.Now())...)
	time.Sleep(2500 * time.Millisecond)
	m.Resume()
	m.Restart(t)
	src.Add(liveSamples(1, time.Now())...)
	if !testutil.Eventually(10*time.Second, func() bool { left, _, _, _ := src.Counts(); return left == 0 }) {
		left, acked, _, inflight := src.Counts()
		t.Fatalf("%d left (%d in flight), %d acked: %+v", left, inflight, acked, c.Stats())
	}
	stop()
	if st := c.Stats(); st.Connects < 2 {
		t.Errorf("no reconnect: %+v", st)
	}
	if v := src.Violations(); len(v) > 0 {
		t.Fatal(v)
	}
}

// The plain-MQTT path coalesces a round like the platform path: with a
// topic without {sensor}, three sensors sampled together are one message
// (a JSON array of their nine values) per round.
func TestMQTTCoalescedRounds(t *testing.T) {
	m := testutil.StartMosquitto(t, testutil.MosquittoOpts{})
	sub := subscribe(t, "tcp://"+m.Addr, nil, "gw/#", nil)
	log, _ := newLogger(t)
	src := testutil.NewMemSource()
	c := newClient(t, uplink.Options{Platform: "mqtt", DeviceName: dn, Broker: "tcp://" + m.Addr, Topic: "gw/{device}",
		MaxDelay: 150 * time.Millisecond, Logger: log}, src)
	stop := run(t, c)
	if !testutil.Eventually(5*time.Second, func() bool { return c.Stats().Connected }) {
		t.Fatal("not connected")
	}
	const rounds = 3
	for r := 0; r < rounds; r++ {
		at := time.Now()
		for i, sensor := range []string{"air1", "air2", "air3"} {
			src.Add(bme(sensor, at.Add(time.Duration(i)*time.Millisecond), float64(r)))
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(400 * time.Millisecond)
	}
	if !testutil.Eventually(5*time.Second, func() bool { left, _, _, _ := src.Counts(); return left == 0 && len(sub.messages()) >= rounds }) {
		t.Fatalf("not drained: %+v", c.Stats())
	}
	stop()
	msgs := sub.messages()
	if len(msgs) != rounds {
		t.Fatalf("%d messages for %d rounds", len(msgs), rounds)
	}
	for _, msg := range msgs {
		var vs []map[string]any
		if err := json.Unmarshal(msg.Payload(), &vs); err != nil || len(vs) != 9 || msg.Topic() != "gw/"+dn {
			t.Fatalf("message on %s: %s (%v)", msg.Topic(), msg.Payload(), err)
		}
	}
	if st := c.Stats(); st.AckedMessages != rounds || st.MessagesPerSample() > 0.34 {
		t.Fatalf("stats %+v", st)
	}
}

// The keepalive is the client's own (paho's 5 s pinger is off): the broker
// is told the configured keepalive in the CONNECT, an idle client pings so
// the broker keeps it for several keepalives, and a broker that stops
// answering while nothing is sent is noticed by the ping alone and the
// client reconnects once it is back.
func TestMQTTKeepaliveIdle(t *testing.T) {
	m := testutil.StartMosquitto(t, testutil.MosquittoOpts{})
	log, lb := newLogger(t)
	src := testutil.NewMemSource()
	const ka = 2 * time.Second
	c := newClient(t, uplink.Options{Platform: "mqtt", DeviceName: dn, Broker: "tcp://" + m.Addr, Logger: log,
		Keepalive: ka, BeatEvery: 500 * time.Millisecond, BackoffMin: 50 * time.Millisecond, BackoffMax: 300 * time.Millisecond}, src)
	stop := run(t, c)
	defer stop()
	if !testutil.Eventually(5*time.Second, func() bool { return c.Stats().Connected }) {
		t.Fatal("not connected")
	}
	// Idle for four keepalives: mosquitto drops a client silent for 1.5.
	time.Sleep(4 * ka)
	if st := c.Stats(); !st.Connected || st.Connects != 1 {
		t.Fatalf("idle client lost its connection: %+v\n%s", st, m.Log())
	}
	if !strings.Contains(m.Log(), ", k2") {
		t.Fatalf("the broker was not told keepalive 2 s:\n%s", m.Log())
	}
	if strings.Contains(m.Log(), "exceeded timeout") {
		t.Fatalf("the broker timed the client out:\n%s", m.Log())
	}
	// The broker stops answering; nothing is published: only the ping can
	// tell, within half a keepalive plus the ping timeout (2 s here). Back
	// after 5 s, the client reconnects.
	m.Pause()
	if !testutil.Eventually(5*time.Second, func() bool { return strings.Contains(lb.String(), "no answer to a keepalive ping") }) {
		m.Resume()
		t.Fatal("a broker that stopped answering went unnoticed by the keepalive")
	}
	time.Sleep(time.Second)
	m.Resume()
	if !testutil.Eventually(10*time.Second, func() bool { st := c.Stats(); return st.Connects >= 2 && st.Connected }) {
		t.Fatalf("no reconnect after an unanswered ping: %+v", c.Stats())
	}
}
