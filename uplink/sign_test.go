package uplink

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestSignVectors(t *testing.T) {
	// The SHA-1 vector is the platform documentation's; the others were
	// computed independently with
	// `printf %s clientId12345deviceNamedeviceproductKeypktimestamp789 | openssl dgst -<alg> -hmac secret`.
	for _, tc := range []struct{ method, want string }{
		{"hmacsha1", "fafd82a3d602b37fb0fa8b7892f24a477f851a14"},
		{"hmacsha256", "6074a46a91b1ebb2cc4ea42790ad0e80202c9843859fc292e57c4eb19fad9e57"},
		{"hmacmd5", "14b198324fe55e1d3c88f2e705e201ee"},
		{"HmacSHA1", "fafd82a3d602b37fb0fa8b7892f24a477f851a14"},
	} {
		got, err := Sign(tc.method, "pk", "device", "secret", "12345", "789")
		if err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		if got != tc.want {
			t.Errorf("Sign(%s) = %s, want %s", tc.method, got, tc.want)
		}
	}
	if _, err := Sign("hmacsha512", "pk", "device", "secret", "", ""); err == nil || !strings.Contains(err.Error(), "hmacsha256") {
		t.Errorf("unknown method: err = %v, want one naming the allowed methods", err)
	}
	if got := SignContent("pk", "device", "", ""); got != "deviceNamedeviceproductKeypk" {
		t.Errorf("content without optional fields = %q", got)
	}
}

func TestClientIDField(t *testing.T) {
	f := ClientIDField("greenhouse-7", true, "hmacsha256", sdkTimestamp)
	if f != "greenhouse-7|securemode=2,signmethod=hmacsha256,timestamp=2524608000000|" {
		t.Fatalf("clientId = %q", f)
	}
	id, p, err := ParseClientIDField(f)
	if err != nil || id != "greenhouse-7" || p["securemode"] != "2" || p["signmethod"] != "hmacsha256" || p["timestamp"] != sdkTimestamp {
		t.Fatalf("parse: %q %v %v", id, p, err)
	}
	if f := ClientIDField("x", false, "hmacsha1", "1"); !strings.Contains(f, "securemode=3") {
		t.Fatalf("plain TCP clientId = %q", f)
	}
	for _, bad := range []string{"", "abc", "|securemode=2|", "a|securemode|", "a|b=1"} {
		if _, _, err := ParseClientIDField(bad); err == nil {
			t.Errorf("ParseClientIDField(%q) accepted", bad)
		}
	}
}

func TestEmbeddedRootIsGlobalSignR1(t *testing.T) {
	b, _ := pem.Decode(PlatformRootPEM())
	if b == nil {
		t.Fatal("embedded root is not PEM")
	}
	sum := sha256.Sum256(b.Bytes)
	if got := strings.ToUpper(hex.EncodeToString(sum[:])); got != "EBD41040E4BB3EC742C9E381D31EF2A41A48B6685C96E7CEF3C1DF6CD4331C99" {
		t.Fatalf("fingerprint %s", got)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "GlobalSign Root CA" || !c.NotAfter.Equal(time.Date(2028, 1, 28, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("subject %q until %v", c.Subject.CommonName, c.NotAfter)
	}
}

func TestOptionsValidation(t *testing.T) {
	ok := Options{ProductKey: "pk", DeviceName: "dn", DeviceSecret: "s", Region: "cn-shanghai", TLS: true}
	o, err := ok.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Endpoint != "pk.iot-as-mqtt.cn-shanghai.aliyuncs.com:1883" || o.ClientID != "dn" || o.SignMethod != "hmacsha256" || o.Keepalive != time.Minute {
		t.Fatalf("defaults: %+v", o)
	}
	inst := ok
	inst.Endpoint = "iot-06z00abc.mqtt.iothub.aliyuncs.com:8883"
	if o, err := inst.withDefaults(); err != nil || o.Endpoint != inst.Endpoint {
		t.Fatalf("instance endpoint: %v %q", err, o.Endpoint)
	}
	// Each invalid option is reported under the key the config file uses.
	for name, tc := range map[string]struct {
		mut       func(o *Options)
		key, want string
	}{
		"keepalive low":  {func(o *Options) { o.Keepalive = 10 * time.Second }, "keepalive", "between 30s and 1200s"},
		"keepalive high": {func(o *Options) { o.Keepalive = 1201 * time.Second }, "keepalive", "between 30s and 1200s"},
		"mqtt keepalive": {func(o *Options) { o.Platform = "mqtt"; o.Broker = "tcp://x:1"; o.Keepalive = 19 * time.Hour }, "keepalive", "between 1s and 18h"},
		"no secret":      {func(o *Options) { o.DeviceSecret = "" }, "device_secret", "required"},
		"no endpoint":    {func(o *Options) { o.Region = "" }, "endpoint", "required"},
		"bad endpoint":   {func(o *Options) { o.Endpoint = "nohostport" }, "endpoint", "host:port"},
		"sign method":    {func(o *Options) { o.SignMethod = "sha3" }, "sign_method", "hmacsha256, hmacsha1 or hmacmd5"},
		"platform":       {func(o *Options) { o.Platform = "aws" }, "platform", "aliyun"},
		"mqtt broker":    {func(o *Options) { o.Platform = "mqtt"; o.Broker = "http://x:1" }, "endpoint", "tls:// or tcp://"},
		"client cert":    {func(o *Options) { o.ClientCert = "a.pem" }, "client_cert", "together"},
		"client id":      {func(o *Options) { o.ClientID = "a|b" }, "client_id", "64 characters"},
		"rate negative":  {func(o *Options) { o.MaxMessagesPerSecond = -2 }, "max_messages_per_second", "between 0.01 and 1000"},
		"rate unlimited": {func(o *Options) { o.MaxMessagesPerSecond = Unlimited }, "max_messages_per_second", "only on plain MQTT"},
		"rate too high":  {func(o *Options) { o.MaxMessagesPerSecond = 1001 }, "max_messages_per_second", "between 0.01 and 1000"},
		"delay negative": {func(o *Options) { o.MaxDelay = -time.Second }, "max_delay", "between 0s"},
		"delay too long": {func(o *Options) { o.MaxDelay = 31 * time.Second }, "max_delay", "between 0s"},
	} {
		o := ok
		tc.mut(&o)
		errs := o.Validate()
		if len(errs) != 1 || errs[0].Key != tc.key || !strings.Contains(errs[0].Msg, tc.want) {
			t.Errorf("%s: Validate() = %v, want one error for %q mentioning %q", name, errs, tc.key, tc.want)
		}
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%s: withDefaults accepted what Validate refuses", name)
		}
	}
	// Unlimited is a plain-MQTT setting.
	mq := ok
	mq.Platform, mq.Broker, mq.MaxMessagesPerSecond = "mqtt", "tcp://x:1", Unlimited
	if errs := mq.Validate(); len(errs) != 0 {
		t.Errorf("mqtt unlimited: %v", errs)
	}
	if got := stableClientID(strings.Repeat("x", 70) + "|"); len(got) != 64 {
		t.Errorf("stable client id length %d", len(got))
	}
}

func TestBackoffFullJitterCapped(t *testing.T) {
	c := &Client{o: Options{BackoffMin: 100 * time.Millisecond, BackoffMax: 2 * time.Second}}
	var maxSeen time.Duration
	distinct := map[time.Duration]bool{}
	for i := 0; i < 2000; i++ {
		d := c.backoff(1 + i%40)
		if d < 10*time.Millisecond || d > 2*time.Second+10*time.Millisecond {
			t.Fatalf("backoff(%d) = %v out of [min/10, max+min/10]", 1+i%40, d)
		}
		maxSeen = max(maxSeen, d)
		distinct[d] = true
	}
	if maxSeen < time.Second || len(distinct) < 1000 {
		t.Fatalf("not jittered up to the cap: max %v, %d distinct values", maxSeen, len(distinct))
	}
	for i := 0; i < 100; i++ {
		if d := c.backoff(1); d > 110*time.Millisecond {
			t.Fatalf("first backoff %v exceeds the floor", d)
		}
	}
}
