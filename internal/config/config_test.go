package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `[device]
product_key   = "pk"
device_name   = "dn"
device_secret = "s3cret"

[uplink]
endpoint = "127.0.0.1:8883"

[[sensor]]
name   = "air"
driver = "bme280"
bus    = "emulated"
[sensor.emulate]
temperature = 21.0

[[sensor]]
name = "soil"
driver = "sht4x"
interval = "1m"
`

func TestDefaults(t *testing.T) {
	c, err := Parse("/boot/gatewayd.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Uplink.Platform != "aliyun" || !c.Uplink.UseTLS() || c.Uplink.SignMethod != "hmacsha256" ||
		c.Uplink.Keepalive.Duration != time.Minute || c.Uplink.MaxMessagesPerSecond != 20 ||
		c.Uplink.MaxDelay.Duration != time.Second {
		t.Errorf("uplink defaults: %+v", c.Uplink)
	}
	if c.Buffer.Path != "/var/lib/gatewayd/buffer.db" || c.Buffer.MaxSize != 64<<20 ||
		c.Buffer.MaxAge.Duration != 30*24*time.Hour || c.Buffer.WhenFull != "drop-oldest" ||
		c.Buffer.CommitInterval.Duration != 10*time.Second {
		t.Errorf("buffer defaults: %+v", c.Buffer)
	}
	if c.Sensors[1].Bus != "/dev/i2c-1" || c.Sensors[0].Interval.Duration != 10*time.Second ||
		c.Sensors[1].Interval.Duration != time.Minute {
		t.Errorf("sensor defaults: %+v", c.Sensors)
	}
	if c.Health.ListenAddr() != "127.0.0.1:9102" || c.Log.Level != "info" {
		t.Errorf("health/log defaults: %q %q", c.Health.ListenAddr(), c.Log.Level)
	}
	if got := c.Path("gatewayd.secret"); got != "/boot/gatewayd.secret" {
		t.Errorf("relative path resolved to %q", got)
	}
}

// Every broken file must be refused with a message naming the file, the
// line and the key, and saying what is allowed.
func TestBrokenConfigs(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, edit string // edit: old=>new applied to good
		line       int
		key, want  string
	}{
		{"unknown key", `bus    = "emulated"=>bus    = "emulated"
addres = 0x76`, 13, "sensor.addres", "unknown key"},
		{"typo with hint", `device_name   = "dn"=>devicename = "dn"`, 3, "device.devicename", `did you mean "device_name"`},
		{"plaintext without allow_plaintext", `endpoint = "127.0.0.1:8883"=>endpoint = "127.0.0.1:8883"
tls = false`, 8, "uplink.tls", "impersonate this device"},
		{"keepalive too short", `endpoint = "127.0.0.1:8883"=>endpoint = "127.0.0.1:8883"
keepalive = "10s"`, 8, "uplink.keepalive", "between 30s and 1200s"},
		{"keepalive too long", `endpoint = "127.0.0.1:8883"=>endpoint = "127.0.0.1:8883"
keepalive = "21m"`, 8, "uplink.keepalive", "between 30s and 1200s"},
		{"bad duration", `interval = "1m"=>interval = "1 minute"`, 19, "sensor.interval", "invalid duration"},
		{"wrong type", `interval = "1m"=>interval = 60`, 19, "sensor.interval", ""},
		{"address too big", `driver = "sht4x"=>driver = "sht4x"
address = 0x80`, 19, "sensor[1].address", "is not an address of the sht4x"},
		{"address overflow", `driver = "sht4x"=>driver = "sht4x"
address = 0x1ffff`, 19, "sensor.address", "out of range"},
		{"duplicate sensor name", `name = "soil"=>name = "air"`, 17, "sensor[1].name", "already the name of sensor[0]"},
		{"sign method", `endpoint = "127.0.0.1:8883"=>endpoint = "127.0.0.1:8883"
sign_method = "sha256"`, 8, "uplink.sign_method", "hmacsha256, hmacsha1 or hmacmd5"},
		{"qos 2 on aliyun", `endpoint = "127.0.0.1:8883"=>endpoint = "127.0.0.1:8883"
qos = 2`, 8, "uplink.qos", "no QoS 2"},
		{"retain on aliyun", `endpoint = "127.0.0.1:8883"=>endpoint = "127.0.0.1:8883"
retain = true`, 8, "uplink.retain", "refuses retained"},
		{"mqtt keys on aliyun", `endpoint = "127.0.0.1:8883"=>endpoint = "127.0.0.1:8883"
username = "u"`, 8, "uplink.username", "only for platform"},
		{"missing product key", `product_key   = "pk"
=>`, 1, "device.product_key", "required"},
		{"both secrets", `device_secret = "s3cret"=>device_secret = "s3cret"
device_secret_file = "x"`, 5, "device.device_secret_file", "not both"},
		{"missing secret file", `device_secret = "s3cret"=>device_secret_file = "nope.secret"`, 4, "device.device_secret_file", "cannot read"},
		{"when_full", `[[sensor]]
name   = "air"=>[buffer]
when_full = "drop-all"
[[sensor]]
name   = "air"`, 10, "buffer.when_full", `"drop-oldest" or "drop-newest"`},
		{"max_size", `[[sensor]]
name   = "air"=>[buffer]
max_size = "lots"
[[sensor]]
name   = "air"`, 10, "buffer.max_size", "invalid size"},
		{"emulate on real bus", `bus    = "emulated"=>bus    = "/dev/i2c-1"`, 13, "sensor[0].emulate", "only for bus"},
		{"mux channel", `driver = "sht4x"=>driver = "sht4x"
mux_channel = 9`, 19, "sensor[1].mux_channel", "outside 0..7"},
		{"max_delay negative", `endpoint = "127.0.0.1:8883"=>endpoint = "127.0.0.1:8883"
max_delay = "-1s"`, 8, "uplink.max_delay", "between 0s (send every sample at once) and 30s"},
		{"max_delay too long", `endpoint = "127.0.0.1:8883"=>endpoint = "127.0.0.1:8883"
max_delay = "2m"`, 8, "uplink.max_delay", "no longer live"},
		{"max_delay typo", `endpoint = "127.0.0.1:8883"=>endpoint = "127.0.0.1:8883"
delay = "2s"`, 8, "uplink.delay", `did you mean "max_delay"`},
		{"platform", `endpoint = "127.0.0.1:8883"=>platform = "aws"
endpoint = "127.0.0.1:8883"`, 7, "uplink.platform", `"aliyun" or "mqtt"`},
		{"log level", `interval = "1m"=>interval = "1m"
[log]
level = "verbose"`, 21, "log.level", "debug, info, warn or error"},
		{"syntax", `name = "soil"=>name = "soil`, 17, "sensor.name", "newlines"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parts := strings.SplitN(tc.edit, "=>", 2)
			if !strings.Contains(good, parts[0]) {
				t.Fatalf("edit %q does not apply", parts[0])
			}
			src := strings.Replace(good, parts[0], parts[1], 1)
			path := filepath.Join(dir, "gatewayd.toml")
			_, err := Parse(path, []byte(src))
			if err == nil {
				t.Fatalf("accepted:\n%s", src)
			}
			if !IsInvalid(err) {
				t.Errorf("not a config error: %T", err)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %T is not Errors", err)
			}
			e := es[0]
			for _, x := range es {
				if x.Key == tc.key && strings.Contains(x.Msg, tc.want) {
					e = x
				}
			}
			if e.Line != tc.line || (tc.key != "" && e.Key != tc.key) || !strings.Contains(e.Msg, tc.want) {
				t.Errorf("got %q (line %d key %q), want line %d key %q containing %q", e.Error(), e.Line, e.Key, tc.line, tc.key, tc.want)
			}
			if !strings.HasPrefix(e.Error(), path+":") {
				t.Errorf("message does not start with the file name: %q", e.Error())
			}
		})
	}
}

func TestSecretFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gw.secret"), []byte("abc123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(good, `device_secret = "s3cret"`, `device_secret_file = "gw.secret"`, 1)
	path := filepath.Join(dir, "gatewayd.toml")
	c, err := Parse(path, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Secret()
	if err != nil || s != "abc123" {
		t.Errorf("Secret() = %q, %v", s, err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("unexpected warnings %q", c.Warnings)
	}
	// World-readable: refused, with the line and a fix.
	os.Chmod(filepath.Join(dir, "gw.secret"), 0o644)
	_, err = Parse(path, []byte(src))
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Line != 4 || es[0].Key != "device.device_secret_file" ||
		!strings.Contains(es[0].Msg, "readable by every user") || !strings.Contains(es[0].Msg, "chmod 640") {
		t.Fatalf("world-readable secret file: want one line-4 refusal, got %v", err)
	}
	for _, mode := range []os.FileMode{0o600, 0o640} {
		os.Chmod(filepath.Join(dir, "gw.secret"), mode)
		c, err = Parse(path, []byte(src))
		if err != nil || len(c.Warnings) != 0 {
			t.Errorf("%v secret: warnings %q, err %v", mode, c.Warnings, err)
		}
	}
}

func TestEffectiveMasksSecrets(t *testing.T) {
	src := strings.Replace(good, `[[sensor]]`, "[[sensor]]", 1)
	c, err := Parse("x.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := c.WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, "s3cret") || !strings.Contains(out, `device_secret = "********"`) {
		t.Errorf("secret not masked:\n%s", out)
	}
	if !strings.Contains(out, `keepalive = "1m"`) || !strings.Contains(out, `max_size = "64MiB"`) {
		t.Errorf("defaults not shown:\n%s", out)
	}
	// The effective config must itself be a valid config.
	if _, err := Parse("x.toml", []byte(strings.ReplaceAll(out, "********", "s"))); err != nil {
		t.Errorf("effective config does not parse: %v\n%s", err, out)
	}
	if c.Device.DeviceSecret != "s3cret" {
		t.Error("Masked changed the original")
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml")
	if _, err := Find([]string{a, b}); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty: %v", err)
	}
	os.WriteFile(b, nil, 0o600)
	if p, _ := Find([]string{a, b}); p != b {
		t.Errorf("got %q want %q", p, b)
	}
	os.WriteFile(a, nil, 0o600)
	if p, _ := Find([]string{a, b}); p != a {
		t.Errorf("boot partition first: got %q want %q", p, a)
	}
}

func TestShippedConfigsAreValid(t *testing.T) {
	for _, f := range []string{"../../configs/demo.toml", "../../configs/gatewayd.toml"} {
		_, err := Load(f)
		var es Errors
		if errors.As(err, &es) {
			// The example names a secret file that exists only on a board.
			for _, e := range es {
				// The demo's CA is made by iotsim when the demo starts.
				if !(strings.HasSuffix(f, "gatewayd.toml") && e.Key == "device.device_secret_file") &&
					!(strings.HasSuffix(f, "demo.toml") && e.Key == "uplink.ca_file") {
					t.Errorf("%s: %v", f, e)
				}
			}
		} else if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestParseDurationAndSize(t *testing.T) {
	for d, want := range map[time.Duration]string{10 * time.Second: "10s", time.Minute: "1m", 90 * time.Minute: "1h30m", 2 * time.Hour: "2h", 48 * time.Hour: "2d", 500 * time.Millisecond: "500ms"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q want %q", d, got, want)
		}
	}
	for in, want := range map[string]time.Duration{"10s": 10 * time.Second, "30d": 30 * 24 * time.Hour, "1d12h": 36 * time.Hour, "500ms": 500 * time.Millisecond} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "d", "10", "1x", "-d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
	for in, want := range map[string]int64{"64MiB": 64 << 20, "500KB": 500000, "1GiB": 1 << 30, "4096": 4096, "1.5MiB": 3 << 19} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "MiB", "-1MiB", "lots"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("[[sensor]]\n[sensor.properties]\nx = { a = 1 }\n"))
	f.Add([]byte("a = '''\nb\n'''\n[x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data)
		if err == nil && len(c.Sensors) == 0 {
			t.Fatal("accepted a config without sensors")
		}
	})
}

// max_delay "0s" is a choice (send at once), not a missing value: it stays
// 0, and survives the effective config's round trip.
func TestMaxDelayZeroMeansAtOnce(t *testing.T) {
	src := strings.Replace(good, `endpoint = "127.0.0.1:8883"`, `endpoint = "127.0.0.1:8883"
max_delay = "0s"`, 1)
	c, err := Parse("x.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Uplink.MaxDelay.Duration != 0 {
		t.Fatalf("max_delay = %v, want 0", c.Uplink.MaxDelay.Duration)
	}
	var b strings.Builder
	if err := c.WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	back, err := Parse("x.toml", []byte(strings.ReplaceAll(b.String(), "********", "s")))
	if err != nil || back.Uplink.MaxDelay.Duration != 0 {
		t.Fatalf("effective config round trip: %v, %v\n%s", back, err, b.String())
	}
	src = strings.Replace(good, `endpoint = "127.0.0.1:8883"`, `endpoint = "127.0.0.1:8883"
max_delay = "2500ms"`, 1)
	if c, err := Parse("x.toml", []byte(src)); err != nil || c.Uplink.MaxDelay.Duration != 2500*time.Millisecond {
		t.Fatalf("max_delay 2500ms: %v %v", c, err)
	}
}

// uplink.qos on the Alibaba platform is the posts' QoS: 0 by default (the
// reply acknowledges), 1 on request; the plain-MQTT platform needs 1.
func TestPostQoS(t *testing.T) {
	for _, tc := range []struct {
		line string
		want int
	}{{"", 0}, {"qos = 0", 0}, {"qos = 1", 1}} {
		src := strings.Replace(good, `endpoint = "127.0.0.1:8883"`, "endpoint = \"127.0.0.1:8883\"\n"+tc.line, 1)
		c, err := Parse("x.toml", []byte(src))
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		if got := c.UplinkOptions("s").PostQoS; got != tc.want {
			t.Errorf("%q: PostQoS %d, want %d", tc.line, got, tc.want)
		}
	}
	src := strings.Replace(good, `endpoint = "127.0.0.1:8883"`, "platform = \"mqtt\"\nendpoint = \"127.0.0.1:8883\"\nqos = 0", 1)
	if _, err := Parse("x.toml", []byte(src)); err == nil || !strings.Contains(err.Error(), "uplink.qos") {
		t.Errorf("qos 0 on mqtt: %v, want an error on uplink.qos", err)
	}
}

// A second emulated bus ("emulated:<name>", as the sensor layer allows)
// takes emulated values too.
func TestEmulateOnNamedEmulatedBus(t *testing.T) {
	src := strings.Replace(good, `bus    = "emulated"`, `bus    = "emulated:second"`, 1)
	if _, err := Parse("x.toml", []byte(src)); err != nil {
		t.Fatal(err)
	}
}

// An inline secret in a file every user can read is a warning (and only
// then): FAT /boot is world-readable, so a card in a reader leaks it.
func TestInlineSecretReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gatewayd.toml")
	for _, tc := range []struct {
		mode os.FileMode
		want int
	}{{0o644, 1}, {0o755, 1}, {0o640, 0}, {0o600, 0}} {
		if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, tc.mode)
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Warnings) != tc.want {
			t.Errorf("mode %v: warnings %q, want %d", tc.mode, c.Warnings, tc.want)
			continue
		}
		if tc.want == 1 && (!strings.Contains(c.Warnings[0], "device.device_secret") || !strings.Contains(c.Warnings[0], "every user can read")) {
			t.Errorf("mode %v: warning %q does not name the key and the risk", tc.mode, c.Warnings[0])
		}
		if tc.want == 1 && strings.Contains(c.Warnings[0], "s3cret") {
			t.Errorf("warning echoes the secret: %q", c.Warnings[0])
		}
	}
}

// A parse error never echoes what the file says: an unquoted secret is the
// text the parser would quote, and the error goes to the journal.
func TestParseErrorsDoNotEchoValues(t *testing.T) {
	const secret = "ZqXwJkVbRtYm8p2"
	for _, src := range []string{
		"[device]\ndevice_secret = " + secret + "\n",
		"[device]\ndevice_secret = \"" + secret + "\n",
		"[device]\ndevice_secret = '" + secret + "\n",
		"[device]\ndevice_secret = \"" + secret + "\\q\"\n",
		"[device]\ndevice_secret = [\"a\", " + secret + "]\n",
		"[device]\ndevice_secret = \"x\" " + secret + "\n",
		"[uplink]\npassword = " + secret + "\n",
		"[device]\ndevice_secret = 1" + secret + "\n",
	} {
		_, err := Parse("x.toml", []byte(src))
		if err == nil {
			t.Errorf("%q parsed", src)
			continue
		}
		msg := err.Error()
		for i := 0; i+3 <= len(secret); i++ {
			if strings.Contains(msg, secret[i:i+3]) {
				t.Errorf("%q: error %q echoes part of the value (%q)", src, msg, secret[i:i+3])
				break
			}
		}
		if !strings.HasPrefix(msg, "x.toml:2:") {
			t.Errorf("%q: error %q lost its file:line", src, msg)
		}
	}
	// A type error keeps its key and line.
	_, err := Parse("x.toml", []byte("[device]\ndevice_secret = 1234567\n"))
	var es Errors
	if !errors.As(err, &es) || es[0].Line != 2 || es[0].Key != "device.device_secret" || strings.Contains(err.Error(), "1234567") {
		t.Errorf("type error: %v", err)
	}
}

// tls = false is accepted only with allow_plaintext = true, and then every
// load (check, run) says in words what it costs.
func TestPlaintextIsADecision(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gatewayd.toml")
	src := strings.Replace(good, `endpoint = "127.0.0.1:8883"`, "endpoint = \"127.0.0.1:1883\"\ntls = false\nallow_plaintext = true", 1)
	c, err := Parse(path, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], path+":8: uplink.tls:") ||
		!strings.Contains(c.Warnings[0], "password and every reading travel in clear") || !strings.Contains(c.Warnings[0], "impersonate") {
		t.Fatalf("warnings %q", c.Warnings)
	}
	if c.Uplink.UseTLS() {
		t.Fatal("tls = false not honoured")
	}
	c, err = Parse(path, []byte(good))
	if err != nil || len(c.Warnings) != 0 {
		t.Fatalf("TLS config: %v %q", err, c.Warnings)
	}
}
