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
	for name, tc := range map[string]struct {
		mut  func(o *Options)
		want string
	}{
		"keepalive low":  {func(o *Options) { o.Keepalive = 10 * time.Second }, "30s..1200s"},
		"keepalive high": {func(o *Options) { o.Keepalive = 1201 * time.Second }, "30s..1200s"},
		"no secret":      {func(o *Options) { o.DeviceSecret = "" }, "device secret"},
		"no endpoint":    {func(o *Options) { o.Region = "" }, "neither endpoint nor region"},
		"bad endpoint":   {func(o *Options) { o.Endpoint = "nohostport" }, "host:port"},
		"sign method":    {func(o *Options) { o.SignMethod = "sha3" }, "sign method"},
		"platform":       {func(o *Options) { o.Platform = "aws" }, "platform"},
		"mqtt broker":    {func(o *Options) { o.Platform = "mqtt"; o.Broker = "http://x:1" }, "tls:// or tcp://"},
		"client cert":    {func(o *Options) { o.ClientCert = "a.pem" }, "together"},
		"client id":      {func(o *Options) { o.ClientID = "a|b" }, "client id"},
	} {
		o := ok
		tc.mut(&o)
		if _, err := o.withDefaults(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, tc.want)
		}
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
