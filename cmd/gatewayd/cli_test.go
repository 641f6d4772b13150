package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"gatewayd/internal/testutil"
)

// gatewayd check: a broken file exits 78 (EX_CONFIG, systemd does not
// restart on it) with file:line:key; a good one prints the effective config
// with the secret masked.
func TestCheckCommand(t *testing.T) {
	e := newE2E(t)
	good := e.config(t, "very-secret-value")
	var out, errb bytes.Buffer
	err := Run(context.Background(), []string{"check", "--config", good}, &out, &errb)
	if err != nil || exitCode(err) != 0 {
		t.Fatalf("check of a good file: %v\n%s", err, errb.String())
	}
	if strings.Contains(out.String(), "very-secret-value") || !strings.Contains(out.String(), `device_secret = "********"`) {
		t.Errorf("secret not masked:\n%s", out.String())
	}

	src, _ := os.ReadFile(good)
	bad := filepath.Join(e.dir, "bad.toml")
	os.WriteFile(bad, bytes.Replace(src, []byte(`keepalive   = "30s"`), []byte(`keepalive   = "5s"`), 1), 0o600)
	out.Reset()
	errb.Reset()
	err = Run(context.Background(), []string{"check", "--config", bad}, &out, &errb)
	if exitCode(err) != 78 {
		t.Errorf("exit code %d, want 78 (err %v)", exitCode(err), err)
	}
	if want := bad + ":11: uplink.keepalive: must be between 30s and 1200s"; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr %q does not contain %q", errb.String(), want)
	}
	// run refuses the same file with the same status, before touching anything.
	err = Run(context.Background(), []string{"run", "--config", bad}, &out, &errb)
	if exitCode(err) != 78 {
		t.Errorf("run: exit code %d, want 78", exitCode(err))
	}
	// An unknown driver is the sensor layer's knowledge, still located.
	os.WriteFile(bad, bytes.Replace(src, []byte(`driver   = "bme280"`), []byte(`driver   = "bme281"`), 1), 0o600)
	errb.Reset()
	err = Run(context.Background(), []string{"check", "--config", bad}, &out, &errb)
	if exitCode(err) != 78 || !strings.Contains(errb.String(), bad+":19: sensor[0].driver") {
		t.Errorf("unknown driver: exit %d, stderr %q", exitCode(err), errb.String())
	}
}

// platform = "mqtt": readings go to a real Mosquitto over TLS (its own
// certificates, client certificate required) as JSON with the time taken
// and the reading's identity.
func TestMQTTBrokerWithClientCert(t *testing.T) {
	ca := testutil.NewCA(t, "broker")
	cert, key := ca.Issue(t, "server", testutil.CertOpts{})
	ccert, ckey := ca.Issue(t, "gw", testutil.CertOpts{Client: true})
	m := testutil.StartMosquitto(t, testutil.MosquittoOpts{CAFile: ca.File, CertFile: cert, KeyFile: key, RequireClientCert: true})

	// A subscriber with its own client certificate.
	sc, sk := ca.Issue(t, "sub", testutil.CertOpts{Client: true})
	pair, err := tls.LoadX509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	var mu sync.Mutex
	var got []map[string]any
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tls://" + m.Addr).SetClientID("sub").
		SetTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: "localhost"}))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v\n%s", tok.Error(), m.Log())
	}
	defer sub.Disconnect(100)
	tok := sub.Subscribe("sensors/#", 1, func(_ mqtt.Client, msg mqtt.Message) {
		// A live reading travels alone as an object; a backlog as an
		// array of the readings that share the topic.
		var vs []map[string]any
		if p := bytes.TrimSpace(msg.Payload()); len(p) > 0 && p[0] == '[' {
			if err := json.Unmarshal(p, &vs); err != nil {
				t.Errorf("payload %q: %v", p, err)
			}
		} else {
			var v map[string]any
			if err := json.Unmarshal(p, &v); err != nil {
				t.Errorf("payload %q: %v", p, err)
			}
			vs = append(vs, v)
		}
		mu.Lock()
		for _, v := range vs {
			v["topic"] = msg.Topic()
			v["received"] = time.Now()
			got = append(got, v)
		}
		mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "gatewayd.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[device]
device_name = "pumphouse-2"
[uplink]
platform    = "mqtt"
endpoint    = %q
ca_file     = %q
ca_replace  = true
server_name = "localhost"
client_cert = %q
client_key  = %q
topic       = "sensors/{device}/{sensor}"
clock_wait  = "1s"  # this machine's clock may not be NTP-disciplined
[buffer]
path = "buffer.db"
[[sensor]]
name     = "tank"
driver   = "bme280"
bus      = "emulated"
interval = "200ms"
[sensor.properties]
temperature = "water_temperature"
[sensor.emulate]
temperature = 7.25
[health]
listen = ""
`, m.Addr, ca.File, ccert, ckey)), 0o600)
	start := time.Now()
	d := startDaemon(t, cfg)
	waitFor(t, 40*time.Second, "3 readings at the broker", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 3
	})
	d.stop(t)
	mu.Lock()
	defer mu.Unlock()
	ids := map[string]bool{}
	for _, v := range got {
		if v["topic"] != "sensors/pumphouse-2/tank" || v["property"] != "water_temperature" {
			t.Errorf("topic/property: %v", v)
		}
		if x, _ := v["value"].(float64); x < 7.24 || x > 7.31 {
			t.Errorf("value %v, chip set to 7.25", v["value"])
		}
		ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(v["time"]))
		if err != nil || ts.Before(start.Add(-time.Second)) || ts.After(time.Now()) {
			t.Errorf("time %v (%v) outside the run", v["time"], err)
		}
		if synced, _ := v["synced"].(bool); !synced && v["received"].(time.Time).Before(start.Add(time.Second)) {
			t.Errorf("reading marked unsynced was sent before the clock wait: %v", v)
		}
		id := fmt.Sprint(v["id"])
		if ids[id] {
			t.Errorf("id %s delivered twice", id)
		}
		ids[id] = true
	}
}

// gatewayd read: every configured sensor once, through the real driver on
// the emulated chip; JSON on request; non-zero exit when a sensor fails.
func TestReadCommand(t *testing.T) {
	e := newE2E(t)
	cfg := e.config(t, e2eSecret)
	var out, errb bytes.Buffer
	if err := Run(context.Background(), []string{"read", "--config", cfg, "--json"}, &out, &errb); err != nil {
		t.Fatalf("read: %v\n%s", err, errb.String())
	}
	var res []struct {
		Sensor   string
		OK       bool
		Readings []struct {
			Property string
			Value    float64
		}
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("read --json output: %v\n%s", err, out.String())
	}
	if len(res) != 1 || !res[0].OK || len(res[0].Readings) != 3 {
		t.Fatalf("read: %+v", res)
	}
	for _, r := range res[0].Readings {
		want := e2eValues[r.Property]
		if d := r.Value - want.set; d < -want.tol || d > want.wiggle+want.tol {
			t.Errorf("%s = %v, chip set to %v", r.Property, r.Value, want.set)
		}
	}
	// A second sensor at an address where no chip answers: read fails.
	src, _ := os.ReadFile(cfg)
	src = bytes.Replace(src, []byte("[health]"), []byte("[[sensor]]\nname = \"ghost\"\ndriver = \"sht4x\"\nbus = \"/dev/i2c-77\"\n[health]"), 1)
	os.WriteFile(cfg, src, 0o600)
	out.Reset()
	errb.Reset()
	err := Run(context.Background(), []string{"read", "--config", cfg}, &out, &errb)
	if exitCode(err) != 1 || !strings.Contains(out.String(), "ghost") || !strings.Contains(errb.String(), "1 of 2 sensors failed") {
		t.Errorf("read with a missing chip: exit %d\nstdout %s\nstderr %s", exitCode(err), out.String(), errb.String())
	}
}

// gatewayd scan --bus emulated names the chips of the config by their ID
// registers.
func TestScanEmulated(t *testing.T) {
	e := newE2E(t)
	var out, errb bytes.Buffer
	if err := Run(context.Background(), []string{"scan", "--bus", "emulated", "--config", e.config(t, e2eSecret)}, &out, &errb); err != nil {
		t.Fatalf("scan: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "0x76") || !strings.Contains(out.String(), "BME280") {
		t.Errorf("scan output:\n%s", out.String())
	}
}

// gatewayd sign prints the CONNECT fields the daemon uses; the platform
// emulator (which verifies signatures as the platform does) accepts them.
func TestSignCommand(t *testing.T) {
	e := newE2E(t)
	sim := e.startSim(t)
	var out, errb bytes.Buffer
	if err := Run(context.Background(), []string{"sign", "--config", e.config(t, e2eSecret), "--show-password"}, &out, &errb); err != nil {
		t.Fatalf("sign: %v\n%s", err, errb.String())
	}
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			fields[f[0]] = f[1]
		}
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(e.caFile)
	pool.AppendCertsFromPEM(caPEM)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tls://" + sim.TLSAddr()).
		SetClientID(fields["clientId"]).SetUsername(fields["username"]).SetPassword(fields["password"]).
		SetProtocolVersion(4).SetKeepAlive(60 * time.Second).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "localhost"}))
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("login with the printed fields %v refused: %v", fields, tok.Error())
	}
	c.Disconnect(100)
	// Without --show-password the password is masked.
	out.Reset()
	Run(context.Background(), []string{"sign", "--config", e.config(t, e2eSecret)}, &out, &errb)
	pw := fields["password"]
	for i := 0; i+3 <= len(pw); i++ {
		if strings.Contains(out.String(), pw[i:i+3]) {
			t.Errorf("part of the password (%q) printed without --show-password:\n%s", pw[i:i+3], out.String())
			break
		}
	}
	if !strings.Contains(out.String(), "--show-password") {
		t.Errorf("the masked output does not say how to see the password:\n%s", out.String())
	}
}

// check warns a year before a built-in root expires; version names them.
func TestCheckWarnsBeforeRootExpiry(t *testing.T) {
	e := newE2E(t)
	src, _ := os.ReadFile(e.config(t, "x"))
	path := filepath.Join(e.dir, "builtin-roots.toml")
	os.WriteFile(path, bytes.Replace(src, []byte("ca_replace  = true\n"), nil, 1), 0o600)
	defer func(f func() time.Time) { checkNow = f }(checkNow)
	for _, tc := range []struct {
		now  time.Time
		want string
	}{
		{time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), ""},
		{time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC), `warning: built-in root "GlobalSign Root CA" expires on 2028-01-28`},
		{time.Date(2052, 9, 1, 0, 0, 0, 0, time.UTC), `warning: built-in root "Aliyun IoT Root CA" expires on 2053-07-04`},
	} {
		checkNow = func() time.Time { return tc.now }
		var out, errb bytes.Buffer
		if err := Run(context.Background(), []string{"check", "-q", "--config", path}, &out, &errb); err != nil {
			t.Fatal(err)
		}
		if tc.want == "" && strings.Contains(errb.String(), "built-in root") || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: stderr %q, want %q", tc.now, errb.String(), tc.want)
		}
	}
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"built-in root: GlobalSign Root CA, valid until 2028-01-28", "built-in root: Aliyun IoT Root CA, valid until 2053-07-04"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("version output %q lacks %q", out.String(), w)
		}
	}
}

// tls = false needs allow_plaintext = true; then check says what it costs.
func TestCheckPlaintext(t *testing.T) {
	e := newE2E(t)
	src, _ := os.ReadFile(e.config(t, "x"))
	path := filepath.Join(e.dir, "plain.toml")
	plain := bytes.Replace(src, []byte("ca_replace  = true\n"), []byte("tls = false\n"), 1)
	os.WriteFile(path, plain, 0o600)
	var out, errb bytes.Buffer
	err := Run(context.Background(), []string{"check", "-q", "--config", path}, &out, &errb)
	if exitCode(err) != 78 || !strings.Contains(errb.String(), "uplink.tls: false sends the password and every reading in clear") {
		t.Fatalf("exit %d, stderr %q", exitCode(err), errb.String())
	}
	os.WriteFile(path, bytes.Replace(plain, []byte("tls = false\n"), []byte("tls = false\nallow_plaintext = true\n"), 1), 0o600)
	errb.Reset()
	if err := Run(context.Background(), []string{"check", "-q", "--config", path}, &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	if !strings.Contains(errb.String(), "warning: "+path) || !strings.Contains(errb.String(), "impersonate this device") {
		t.Fatalf("stderr %q", errb.String())
	}
}
